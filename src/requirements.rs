//! Observed inputs as requirements: what a test read at run time (files,
//! directory listings, modules imported by name, environment variables),
//! with what it found, so that a later run can check that all of it still
//! holds before the test is served.
//!
//! A test's requirements form a set, identified by the blake3 of its
//! encoding, so that the many tests that read the same inputs share one
//! stored set. A requirement that cannot be established when the run
//! publishes (the file is gone, say) keeps the test from being recorded at
//! all; one that cannot be checked later fails, and the test runs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::files::state::StateCache;
use crate::files::{read_facts, Digest, FileDigest, Needs};
use crate::functions::{recent, FunctionIndex, MODULE_LEVEL};
use crate::hash::DependencyHash;
use crate::hashing::hash_field;

/// What the plugin saw one test read (paths absolute, as the test named them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    pub files: Vec<String>,
    pub listings: Vec<String>,
    /// Files of the modules it imported at run time.
    pub modules: Vec<String>,
    /// Variable -> value when read (`None`: not set).
    pub env: BTreeMap<String, Option<String>>,
    /// Under function-level keys, the repository functions it ran
    /// (`path::qualname`, path relative to the root); None when they were
    /// not all seen (or keys are file-level).
    #[serde(default)]
    pub functions: Option<Vec<String>>,
    /// The programs it started (or `(fork)`): code that ran where no hook
    /// could note it.
    #[serde(default)]
    pub subprocesses: Vec<String>,
}

impl Observed {
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
            && self.listings.is_empty()
            && self.modules.is_empty()
            && self.env.is_empty()
            && self.functions.as_ref().is_none_or(Vec::is_empty)
    }
}

/// One input and what it was. Paths are relative to the repository root
/// when inside it (so a record holds wherever the repository is checked
/// out), absolute otherwise.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Requirement {
    File {
        path: String,
        digest: Digest,
    },
    /// The names in a folder (sorted), so adding or removing one counts.
    Listing {
        path: String,
        names: Digest,
    },
    /// A module imported at run time: its file's dependency hash covers its
    /// own static closure.
    Module {
        path: String,
        hash: DependencyHash,
    },
    Env {
        name: String,
        value: Option<Digest>,
    },
    /// Under function-level keys: the code of one file that a test depends
    /// on, its module-level code (`skeleton`) and the bodies of the functions
    /// it ran or could have reached (qualname -> body digest). `file` is the
    /// whole file's digest then: while it holds, so does everything else.
    Code {
        path: String,
        file: Digest,
        skeleton: Digest,
        functions: Vec<(String, Digest)>,
    },
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Requirement::File { path, .. } => write!(f, "file {path}"),
            Requirement::Listing { path, .. } => write!(f, "listing of {path}"),
            Requirement::Module { path, .. } => write!(f, "module {path}"),
            Requirement::Env { name, .. } => write!(f, "environment variable {name}"),
            Requirement::Code { path, .. } => write!(f, "code of {path}"),
        }
    }
}

/// A test's requirements, sorted and without repeats.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequirementSet(pub Vec<Requirement>);

impl RequirementSet {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn encode(&self) -> Vec<u8> {
        // A Vec of plain enums always encodes.
        postcard::to_stdvec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        postcard::from_bytes(bytes).ok()
    }

    /// What the set is stored under: blake3 of its encoding, hex.
    pub fn id(&self) -> String {
        Self::id_of(&self.encode())
    }

    /// The id of a set whose encoding is `bytes`: a stored body is checked
    /// against its id without encoding the decoded set again.
    pub fn id_of(bytes: &[u8]) -> String {
        blake3::hash(bytes).to_hex().to_string()
    }

    /// The set stored as `body` under `id`, if the body is intact.
    pub fn decode_stored(id: &str, body: &[u8]) -> Option<Self> {
        if Self::id_of(body) != id {
            return None;
        }
        Self::decode(body)
    }
}

/// Stands for every function of a file in a test's code requirements: the
/// test ran code no hook could see (in a subprocess), so it depends on all of it.
pub const EVERY_FUNCTION: &str = "*";

/// A Python file's code as it is now.
struct CodeNow {
    file: Digest,
    /// Its module-level code; the whole file when its functions cannot be delimited.
    skeleton: Digest,
    index: Option<Arc<FunctionIndex>>,
}

impl CodeNow {
    /// `bytes`' code, delimited once per content: the state cache keeps
    /// what the analysis (or an earlier run) found.
    fn of(bytes: &[u8], state: &StateCache) -> Self {
        let file = Digest::of(bytes);
        let outcome = state
            .functions(&file)
            .unwrap_or_else(|| recent::index(bytes));
        match outcome {
            Ok(index) => CodeNow {
                file,
                skeleton: index.skeleton,
                index: Some(index),
            },
            Err(_) => CodeNow {
                file,
                skeleton: file,
                index: None,
            },
        }
    }

    fn body(&self, qualname: &str) -> Option<Digest> {
        self.index.as_ref()?.body_digest(qualname)
    }
}

/// Reads the current state of inputs, each at most once per run.
pub struct Probe<'a> {
    root: PathBuf,
    state: &'a StateCache,
    /// Module file (relative to the root) -> its current dependency hash.
    module_hashes: &'a HashMap<String, DependencyHash>,
    files: HashMap<String, Option<Digest>>,
    listings: HashMap<String, Option<Digest>>,
    code: HashMap<String, Option<CodeNow>>,
}

impl<'a> Probe<'a> {
    pub fn new(
        root: &Path,
        state: &'a StateCache,
        module_hashes: &'a HashMap<String, DependencyHash>,
    ) -> Self {
        Probe {
            root: root.to_path_buf(),
            state,
            module_hashes,
            files: HashMap::new(),
            listings: HashMap::new(),
            code: HashMap::new(),
        }
    }

    fn stored_path(&self, path: &str) -> String {
        stored_path(&self.root, path)
    }

    fn absolute(&self, stored: &str) -> PathBuf {
        self.root.join(stored) // an absolute `stored` replaces the root
    }

    fn file(&mut self, stored: &str) -> Option<Digest> {
        if let Some(known) = self.files.get(stored) {
            return *known;
        }
        let facts = read_facts(&self.absolute(stored), stored, Needs::default(), self.state);
        let digest = match facts.digest {
            FileDigest::Content(digest) => Some(digest),
            FileDigest::Absent | FileDigest::Unreadable(_) => None,
        };
        self.files.insert(stored.to_string(), digest);
        digest
    }

    fn listing(&mut self, stored: &str) -> Option<Digest> {
        if let Some(known) = self.listings.get(stored) {
            return *known;
        }
        let names = std::fs::read_dir(self.absolute(stored))
            .ok()
            .and_then(|entries| {
                let names: Result<BTreeSet<_>, _> = entries
                    .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
                    .collect();
                names.ok()
            });
        let digest = names.map(|names| {
            let mut hasher = blake3::Hasher::new_derive_key("dryci 2026 directory listing");
            for name in names {
                hash_field(&mut hasher, name.as_bytes());
            }
            Digest(*hasher.finalize().as_bytes())
        });
        self.listings.insert(stored.to_string(), digest);
        digest
    }

    /// The code of the Python file `stored` now; None when it cannot be read.
    fn code(&mut self, stored: &str) -> Option<&CodeNow> {
        if !self.code.contains_key(stored) {
            let now = std::fs::read(self.absolute(stored))
                .ok()
                .map(|bytes| CodeNow::of(&bytes, self.state));
            self.code.insert(stored.to_string(), now);
        }
        self.code.get(stored)?.as_ref()
    }

    fn env(name: &str) -> Option<Digest> {
        std::env::var(name).ok().map(|value| env_digest(&value))
    }

    /// The requirements `observed` makes, and under function-level keys
    /// those of `code` (path relative to the root -> qualnames, `<module>`
    /// for module-level code only), with what each input is now; or the
    /// first input that cannot be established (the test is not recorded).
    pub fn establish(
        &mut self,
        observed: &Observed,
        code: &BTreeMap<String, BTreeSet<String>>,
    ) -> Result<RequirementSet, String> {
        let mut set = BTreeSet::new();
        for (path, qualnames) in code {
            let now = self.code(path).ok_or_else(|| format!("code of {path}"))?;
            let mut functions = Vec::new();
            if qualnames.contains(EVERY_FUNCTION) {
                let index = now.index.as_ref().map(|index| index.functions.as_slice());
                let mut names: Vec<&str> = index
                    .unwrap_or_default()
                    .iter()
                    .map(|function| function.qualname.as_str())
                    .collect();
                names.sort_unstable();
                names.dedup(); // a name defined twice has one digest
                for qualname in names {
                    if let Some(body) = now.body(qualname) {
                        functions.push((qualname.to_string(), body));
                    }
                }
            }
            for qualname in qualnames
                .iter()
                .filter(|q| *q != MODULE_LEVEL && *q != EVERY_FUNCTION)
            {
                let body = now
                    .body(qualname)
                    .ok_or_else(|| format!("function {path}::{qualname}"))?;
                functions.push((qualname.clone(), body));
            }
            functions.sort();
            functions.dedup();
            set.insert(Requirement::Code {
                path: path.clone(),
                file: now.file,
                skeleton: now.skeleton,
                functions,
            });
        }
        for path in &observed.files {
            let path = self.stored_path(path);
            let digest = self.file(&path).ok_or_else(|| format!("file {path}"))?;
            set.insert(Requirement::File { path, digest });
        }
        for path in &observed.listings {
            let path = self.stored_path(path);
            let names = self
                .listing(&path)
                .ok_or_else(|| format!("listing of {path}"))?;
            set.insert(Requirement::Listing { path, names });
        }
        for path in &observed.modules {
            let path = self.stored_path(path);
            let hash = self
                .module_hashes
                .get(&path)
                .cloned()
                .ok_or_else(|| format!("module {path}"))?;
            set.insert(Requirement::Module { path, hash });
        }
        for (name, value) in &observed.env {
            let value = value.as_deref().map(env_digest);
            set.insert(Requirement::Env {
                name: name.clone(),
                value,
            });
        }
        Ok(RequirementSet(set.into_iter().collect()))
    }

    /// Why the first requirement of `set` that no longer holds does not
    /// (a sentence for `explain`), if any.
    pub fn first_unmet(&mut self, set: &RequirementSet) -> Option<String> {
        set.0.iter().find_map(|requirement| self.unmet(requirement))
    }

    fn unmet(&mut self, requirement: &Requirement) -> Option<String> {
        let holds = match requirement {
            Requirement::File { path, digest } => self.file(path) == Some(*digest),
            Requirement::Listing { path, names } => self.listing(path) == Some(*names),
            Requirement::Module { path, hash } => self.module_hashes.get(path) == Some(hash),
            Requirement::Env { name, value } => Self::env(name) == *value,
            Requirement::Code {
                path,
                file,
                skeleton,
                functions,
            } => {
                // The state cache answers for an unchanged file with a stat.
                if self.file(path) == Some(*file) {
                    return None;
                }
                return self.code_unmet(path, skeleton, functions);
            }
        };
        (!holds).then(|| format!("an observed input changed: {requirement}"))
    }

    fn code_unmet(
        &mut self,
        path: &str,
        skeleton: &Digest,
        functions: &[(String, Digest)],
    ) -> Option<String> {
        let Some(now) = self.code(path) else {
            return Some(format!("{path}, whose code it ran, cannot be read"));
        };
        if now.skeleton != *skeleton {
            return Some(format!(
                "the module-level code of {path}, which it ran, changed"
            ));
        }
        functions
            .iter()
            .find(|(qualname, body)| now.body(qualname) != Some(*body))
            .map(|(qualname, _)| {
                format!("a function it ran or could reach changed: {path}::{qualname}")
            })
    }
}

/// `path` as stored: relative to the root when inside it, else as given.
pub fn stored_path(root: &Path, path: &str) -> String {
    match Path::new(path).strip_prefix(root) {
        Ok(rel) => rel.to_string_lossy().replace('\\', "/"),
        Err(_) => path.to_string(),
    }
}

fn env_digest(value: &str) -> Digest {
    let mut hasher = blake3::Hasher::new_derive_key("dryci 2026 environment value");
    hasher.update(value.as_bytes());
    Digest(*hasher.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_holds_until_an_input_changes() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(root.join("res")).unwrap();
        std::fs::write(root.join("res/a.txt"), "a").unwrap();
        let state = StateCache::disabled();
        let modules = HashMap::new();
        let observed = Observed {
            files: vec![root.join("res/a.txt").display().to_string()],
            listings: vec![root.join("res").display().to_string()],
            modules: vec![],
            env: BTreeMap::from([("DRYCI_REQUIREMENTS_TEST_UNSET".to_string(), None)]),
            ..Observed::default()
        };
        let set = Probe::new(&root, &state, &modules)
            .establish(&observed, &BTreeMap::new())
            .unwrap();
        assert_eq!(set.0.len(), 3);
        assert!(matches!(&set.0[0], Requirement::File { path, .. } if path == "res/a.txt"));
        assert_eq!(RequirementSet::decode(&set.encode()), Some(set.clone()));
        let body = set.encode();
        assert_eq!(
            RequirementSet::decode_stored(&set.id(), &body),
            Some(set.clone())
        );
        let mut damaged = body.clone();
        *damaged.last_mut().unwrap() ^= 1;
        assert_eq!(RequirementSet::decode_stored(&set.id(), &damaged), None);
        assert_eq!(Probe::new(&root, &state, &modules).first_unmet(&set), None);

        std::fs::write(root.join("res/b.txt"), "b").unwrap();
        let unmet = Probe::new(&root, &state, &modules).first_unmet(&set);
        assert!(
            unmet
                .as_deref()
                .is_some_and(|u| u.ends_with("listing of res")),
            "{unmet:?}"
        );
        std::fs::remove_file(root.join("res/b.txt")).unwrap();
        std::fs::write(root.join("res/a.txt"), "changed").unwrap();
        let unmet = Probe::new(&root, &state, &modules).first_unmet(&set);
        assert!(
            unmet
                .as_deref()
                .is_some_and(|u| u.ends_with("file res/a.txt")),
            "{unmet:?}"
        );
        std::fs::remove_file(root.join("res/a.txt")).unwrap();
        let unmet = Probe::new(&root, &state, &modules).first_unmet(&set);
        assert!(
            unmet
                .as_deref()
                .is_some_and(|u| u.ends_with("file res/a.txt")),
            "{unmet:?}"
        );
    }

    #[test]
    fn an_input_that_is_gone_cannot_be_established() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateCache::disabled();
        let modules = HashMap::new();
        let observed = Observed {
            files: vec![dir.path().join("gone.txt").display().to_string()],
            ..Observed::default()
        };
        let mut probe = Probe::new(dir.path(), &state, &modules);
        assert!(probe.establish(&observed, &BTreeMap::new()).is_err());
        let module = Observed {
            modules: vec![dir.path().join("pkg/mod.py").display().to_string()],
            ..Observed::default()
        };
        assert_eq!(
            probe.establish(&module, &BTreeMap::new()),
            Err("module pkg/mod.py".to_string())
        );
    }

    #[test]
    fn an_environment_variable_is_checked_by_value() {
        let state = StateCache::disabled();
        let modules = HashMap::new();
        let mut probe = Probe::new(Path::new("/"), &state, &modules);
        let path_value = std::env::var("PATH").ok();
        let observed = Observed {
            env: BTreeMap::from([("PATH".to_string(), path_value.clone())]),
            ..Observed::default()
        };
        let set = probe.establish(&observed, &BTreeMap::new()).unwrap();
        assert_eq!(probe.first_unmet(&set), None);
        let other = Observed {
            env: BTreeMap::from([("PATH".to_string(), Some("/elsewhere".to_string()))]),
            ..Observed::default()
        };
        let set = probe.establish(&other, &BTreeMap::new()).unwrap();
        assert!(probe.first_unmet(&set).is_some());
    }

    #[test]
    fn code_holds_until_a_body_it_names_or_the_module_level_code_changes() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let source = "X = 1\n\ndef f():\n    return 1\n\ndef g():\n    return 2\n";
        std::fs::write(root.join("m.py"), source).unwrap();
        let state = StateCache::disabled();
        let modules = HashMap::new();
        let code = |names: &[&str]| {
            BTreeMap::from([(
                "m.py".to_string(),
                names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>(),
            )])
        };
        let establish = |names: &[&str]| {
            Probe::new(&root, &state, &modules)
                .establish(&Observed::default(), &code(names))
                .unwrap()
        };
        let only_f = establish(&["f"]);
        let every = establish(&[EVERY_FUNCTION]);
        assert!(matches!(&every.0[0], Requirement::Code { functions, .. } if functions.len() == 2));
        let unmet = |set: &RequirementSet| Probe::new(&root, &state, &modules).first_unmet(set);
        std::fs::write(root.join("m.py"), source.replace("return 2", "return 3")).unwrap();
        assert_eq!(unmet(&only_f), None, "g changed, f did not");
        assert_eq!(
            unmet(&every).as_deref(),
            Some("a function it ran or could reach changed: m.py::g")
        );
        std::fs::write(root.join("m.py"), source.replace("X = 1", "X = 2")).unwrap();
        assert_eq!(
            unmet(&only_f).as_deref(),
            Some("the module-level code of m.py, which it ran, changed")
        );
        std::fs::write(root.join("m.py"), source.replace("def f", "def h")).unwrap();
        assert!(unmet(&only_f).is_some(), "f is gone");
        let gone =
            Probe::new(&root, &state, &modules).establish(&Observed::default(), &code(&["f"]));
        assert_eq!(gone, Err("function m.py::f".to_string()));
    }
}
