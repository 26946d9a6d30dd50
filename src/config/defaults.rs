//! What DryCI assumes where the configuration is silent: pytest's test file
//! names, the conftest/`__init__` chain, the usual project files as global
//! dependencies, and the packages found at the top level and under `src/`.

use std::path::Path;

use super::compile::is_dotted_name;
use super::raw::{OneOrMany, RawActions, RawConfig};

/// Bumped whenever a default below changes, so that hashes change with it.
pub const DEFAULTS_VERSION: u32 = 1;

const DEFAULT_INPUTS: &[&str] = &["**/test_*.py", "**/*_test.py"];

/// Files whose change may change any test's outcome. Globs that match nothing are fine.
const DEFAULT_GLOBAL_DEPS: &[&str] = &[
    "pyproject.toml",
    "setup.cfg",
    "setup.py",
    "tox.ini",
    "pytest.ini",
    ".pytest.ini",
    "repo_dagger.yaml",
    "requirements*.txt",
    "requirements/**/*.txt",
    "constraints*.txt",
    "Pipfile",
    "Pipfile.lock",
    "poetry.lock",
    "uv.lock",
    "pdm.lock",
    ".python-version",
];

const DEFAULT_GLOBAL_EXCLUDE: &[&str] = &["**/__pycache__/**", "**/*.pyc", "**/*.pyo", ".dryci/**"];

const DEFAULT_SOURCE_ROOTS: &[&str] = &[".", "src"];

fn strings(items: &[&str]) -> OneOrMany {
    OneOrMany::Many(items.iter().map(|s| s.to_string()).collect())
}

/// The rule every Python file gets without a configuration: its imports, and
/// the `conftest.py` and `__init__.py` files in its folder and every folder above.
fn default_path_rules() -> std::collections::BTreeMap<String, RawActions> {
    let python = RawActions {
        visit_imported_python_modules: Some(true),
        visit_grand_siblings: Some(strings(&["conftest.py", "__init__.py"])),
        ..RawActions::default()
    };
    [("**/*.py".to_string(), python)].into_iter().collect()
}

/// Fills every key the configuration left out; returns the names of the keys filled.
pub fn fill(raw: &mut RawConfig, root: &Path) -> Vec<&'static str> {
    let mut inferred = Vec::new();
    if raw.inputs.is_none() {
        raw.inputs = Some(strings(DEFAULT_INPUTS));
        inferred.push("inputs");
    }
    if raw.global_deps.is_none() {
        raw.global_deps = Some(strings(DEFAULT_GLOBAL_DEPS));
        inferred.push("global_deps");
    }
    if raw.global_exclude.is_none() {
        raw.global_exclude = Some(strings(DEFAULT_GLOBAL_EXCLUDE));
        inferred.push("global_exclude");
    }
    if raw.source_roots.is_none() {
        let existing: Vec<String> = DEFAULT_SOURCE_ROOTS
            .iter()
            .filter(|dir| root.join(dir).is_dir())
            .map(|dir| dir.to_string())
            .collect();
        raw.source_roots = Some(OneOrMany::Many(existing));
        inferred.push("source_roots");
    }
    if raw.root_python_packages.is_none() {
        let roots = raw.source_roots.clone().unwrap_or_default().into_vec();
        raw.root_python_packages = Some(OneOrMany::Many(find_top_level_packages(root, &roots)));
        inferred.push("root_python_packages");
    }
    if raw.module_strings.is_none() {
        raw.module_strings = Some(true);
        inferred.push("module_strings");
    }
    if raw.entry_points.is_none() {
        raw.entry_points = Some("global".to_string());
        inferred.push("entry_points");
    }
    if raw.path_rules.is_none() {
        raw.path_rules = Some(default_path_rules());
        inferred.push("path_rules");
    }
    inferred
}

/// Names importable from the source roots: folders holding Python files
/// (regular or namespace packages) and top-level modules.
fn find_top_level_packages(root: &Path, source_roots: &[String]) -> Vec<String> {
    let mut names = std::collections::BTreeSet::new();
    for source_root in source_roots {
        let Ok(entries) = std::fs::read_dir(root.join(source_root)) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_string)
            else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let candidate = if path.is_dir() {
                (!crate::walk::is_skipped_dir(&path) && holds_python(&path)).then_some(name)
            } else {
                name.strip_suffix(".py").map(str::to_string)
            };
            if let Some(module) = candidate.filter(|m| is_dotted_name(m) && !m.contains('.')) {
                names.insert(module);
            }
        }
    }
    names.into_iter().collect()
}

fn holds_python(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let p = e.path();
            p.extension().is_some_and(|ext| ext == "py" || ext == "pyi")
                || (p.is_dir() && p.join("__init__.py").exists())
        })
    })
}
