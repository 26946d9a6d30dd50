use std::path::Path;

use super::*;

fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn load_yaml(text: &str) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "repo_dagger.yaml", text);
    load(dir.path(), None)
}

#[test]
fn original_config_with_single_strings_loads() {
    let config = load_yaml(
        "base_dir: .\ninputs: \"tests/**/test_*.py\"\nglobal_deps: poetry.lock\nroot_python_packages: app\n\
         path_rules:\n  \"**/*.py\":\n    visit_imported_python_modules: true\n    visit_grand_siblings: conftest.py\n\
         \x20 \"app/loader.py\":\n    regex_rules:\n      'open\\(\"([^\"]+)\"\\)':\n        visit: \"app/$1\"\n",
    )
    .unwrap();
    assert_eq!(config.rules.inputs, ["tests/**/test_*.py"]);
    assert_eq!(config.rules.global_deps, ["poetry.lock"]);
    assert_eq!(config.rules.root_packages, ["app"]);
    assert_eq!(config.rules.path_rules.len(), 2);
    let loader = config
        .rules
        .path_rules
        .iter()
        .find(|r| &*r.pattern == "app/loader.py")
        .unwrap();
    assert_eq!(
        loader.actions.regex_rules[0].actions.visit[0].as_str(),
        "app/$1"
    );
    assert!(matches!(config.source, ConfigSource::Yaml(_)));
    assert!(!config.inferred.contains(&"inputs"));
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let err = load_yaml("inputs: a.py\npath_rules:\n  \"**/*.py\":\n    vist: a.py\n").unwrap_err();
    let message = err.to_string();
    assert!(message.contains("repo_dagger.yaml:4"), "{message}");
    assert!(message.contains("unknown field `vist`"), "{message}");
}

#[test]
fn wrong_type_is_a_syntax_error_with_line() {
    let err = load_yaml("inputs: a.py\nroot_python_packages:\n  nested: 1\n").unwrap_err();
    assert!(err.to_string().contains("repo_dagger.yaml:"), "{err}");
}

#[test]
fn malformed_yaml_is_reported_not_panicked() {
    let err = load_yaml("inputs: [a.py\nglobal_deps: x\n").unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
}

#[test]
fn invalid_regex_names_its_line() {
    let err = load_yaml("inputs: a.py\npath_rules:\n  \"**/*.py\":\n    regex_rules:\n      \"open(\":\n        visit: x\n")
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("repo_dagger.yaml:5"), "{message}");
    assert!(message.contains("invalid regular expression"), "{message}");
}

#[test]
fn invalid_glob_names_key_and_line() {
    let err = load_yaml("inputs: a.py\nglobal_deps:\n  - \"a[.lock\"\n").unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("repo_dagger.yaml:3: global_deps: invalid glob"),
        "{message}"
    );
}

#[test]
fn template_group_beyond_regex_groups_is_rejected() {
    let err = load_yaml("path_rules:\n  \"**/*.py\":\n    regex_rules:\n      \"load\\\\((\\\\w+)\\\\)\":\n        visit: \"$2.json\"\n")
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("uses $2 but the regex has only 1 group"),
        "{err}"
    );
}

#[test]
fn pyproject_tool_dryci_is_read_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "pyproject.toml",
        "[project]\nname = \"x\"\n\n[tool.dryci]\nglobal_deps = \"uv.lock\"\n",
    );
    let config = load(dir.path(), None).unwrap();
    assert_eq!(config.rules.global_deps, ["uv.lock"]);
    assert!(matches!(config.source, ConfigSource::Pyproject(_)));

    write(
        dir.path(),
        "pyproject.toml",
        "[project]\nname = \"x\"\n\n[tool.dryci]\nglobal_dep = \"uv.lock\"\n",
    );
    let err = load(dir.path(), None).unwrap_err().to_string();
    assert!(err.contains("pyproject.toml:5"), "{err}");
    assert!(err.contains("global_dep"), "{err}");
}

#[test]
fn defaults_find_top_level_and_src_packages() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "app/__init__.py", "");
    write(dir.path(), "src/lib_ns/mod.py", "");
    write(dir.path(), "tool.py", "");
    write(dir.path(), "docs/readme.md", "");
    write(dir.path(), ".venv/pyvenv.cfg", "");
    write(dir.path(), ".venv/lib/x.py", "");
    let config = load(dir.path(), None).unwrap();
    assert_eq!(config.source, ConfigSource::Defaults);
    assert_eq!(config.rules.root_packages, ["app", "lib_ns", "tool"]);
    assert_eq!(config.rules.source_roots, ["", "src"]);
    assert!(config.inferred.contains(&"root_python_packages"));
}

#[test]
fn fingerprint_ignores_formatting_but_not_rules() {
    let a = load_yaml("inputs: a.py\n# comment\n").unwrap();
    let b = load_yaml("inputs:\n  - a.py\n").unwrap();
    let c = load_yaml("inputs: b.py\n").unwrap();
    assert_eq!(a.fingerprint, b.fingerprint);
    assert_ne!(a.fingerprint, c.fingerprint);
}

#[test]
fn base_dir_is_relative_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "conf/repo_dagger.yaml",
        "base_dir: ..\ninputs: a.py\n",
    );
    let config = load(dir.path(), Some(&dir.path().join("conf/repo_dagger.yaml"))).unwrap();
    assert_eq!(config.root, std::fs::canonicalize(dir.path()).unwrap());
}
