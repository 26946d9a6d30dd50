//! Under function-level keys, the code each test depends on: the functions
//! it ran, everything those were seen to call anywhere in the session
//! (transitively: a test that only looks a result up in a cache depends on
//! the code an earlier test ran to fill it), and everything the
//! module-level code of its static closure was seen to call (a decorator or
//! a registry filled at import, which ran once, in whichever test imported
//! the module first).
//!
//! Functions are named `path::qualname` (`crate::functions`), module-level
//! code `path::<module>`; `<session>` calls what ran outside every test,
//! fixture and collector, which every test depends on too.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::functions::MODULE_LEVEL;

/// The calls between the repository's functions seen in a session.
#[derive(Debug, Default)]
pub(super) struct CallGraph {
    ids: HashMap<String, u32>,
    names: Vec<String>,
    callees: Vec<Vec<u32>>,
}

impl CallGraph {
    pub fn new(calls: &[(String, String)]) -> Self {
        let mut graph = CallGraph::default();
        for (caller, callee) in calls {
            let caller = graph.intern(caller);
            let callee = graph.intern(callee);
            graph.callees[caller as usize].push(callee);
        }
        graph
    }

    fn intern(&mut self, name: &str) -> u32 {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = self.names.len() as u32;
        self.ids.insert(name.to_string(), id);
        self.names.push(name.to_string());
        self.callees.push(Vec::new());
        id
    }

    /// The functions reachable from `seeds` (seeds included) by calls.
    pub fn reach<'a>(&'a self, seeds: impl IntoIterator<Item = &'a str>) -> BTreeSet<&'a str> {
        let mut reached = BTreeSet::new();
        let mut visited = vec![false; self.names.len()];
        let mut stack = Vec::new();
        for seed in seeds {
            match self.ids.get(seed) {
                Some(id) => stack.push(*id),
                None => {
                    reached.insert(seed); // ran, and was seen to call nothing
                }
            }
        }
        while let Some(id) = stack.pop() {
            if std::mem::replace(&mut visited[id as usize], true) {
                continue;
            }
            reached.insert(self.names[id as usize].as_str());
            stack.extend(
                self.callees[id as usize]
                    .iter()
                    .filter(|callee| !visited[**callee as usize]),
            );
        }
        reached
    }
}

/// The name of the module-level code of `path`.
pub(super) fn module_level(path: &str) -> String {
    format!("{path}::{MODULE_LEVEL}")
}

/// `reached` as code requirements: path -> qualnames. The module-level code
/// of a file of the static closure (`closure`) is in the test file's key
/// already, so such a file is left out unless a function of it was reached.
pub(super) fn code_requirements(
    reached: &BTreeSet<&str>,
    closure: &HashSet<&str>,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut code: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for name in reached {
        let Some((path, qualname)) = name.split_once("::") else {
            continue;
        };
        if qualname == MODULE_LEVEL && closure.contains(path) {
            continue;
        }
        code.entry(path.to_string())
            .or_default()
            .insert(qualname.to_string());
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calls(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn a_test_depends_on_what_its_functions_were_seen_to_call_transitively() {
        // test_b only looks the result up; test_a's run showed that the
        // lookup computes it.
        let graph = CallGraph::new(&calls(&[
            ("tests/test_a.py::test_a", "pkg/m.py::lookup"),
            ("pkg/m.py::lookup", "pkg/m.py::compute"),
            ("pkg/m.py::compute", "pkg/util.py::helper"),
            ("pkg/util.py::helper", "pkg/m.py::compute"), // a cycle
            ("pkg/m.py::<module>", "pkg/reg.py::register"),
            ("pkg/other.py::unrelated", "pkg/util.py::other"),
        ]));
        let reached = graph.reach(["tests/test_b.py::test_b", "pkg/m.py::lookup"]);
        let names: Vec<&str> = reached.iter().copied().collect();
        assert_eq!(
            names,
            [
                "pkg/m.py::compute",
                "pkg/m.py::lookup",
                "pkg/util.py::helper",
                "tests/test_b.py::test_b",
            ]
        );
        let with_import = graph.reach(["pkg/m.py::<module>"]);
        assert!(with_import.contains("pkg/reg.py::register"));
    }

    #[test]
    fn module_level_code_of_the_closure_is_left_to_the_key() {
        let reached: BTreeSet<&str> = [
            "pkg/m.py::<module>",
            "pkg/m.py::f",
            "pkg/dyn.py::<module>",
            "tests/test_x.py::test_x",
        ]
        .into_iter()
        .collect();
        let closure: HashSet<&str> = ["pkg/m.py", "tests/test_x.py"].into_iter().collect();
        let code = code_requirements(&reached, &closure);
        let expected: BTreeMap<String, BTreeSet<String>> = [
            ("pkg/dyn.py", vec!["<module>"]),
            ("pkg/m.py", vec!["f"]),
            ("tests/test_x.py", vec!["test_x"]),
        ]
        .into_iter()
        .map(|(path, names)| {
            (
                path.to_string(),
                names.into_iter().map(str::to_string).collect(),
            )
        })
        .collect();
        assert_eq!(code, expected);
    }
}
