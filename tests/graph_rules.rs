//! Fixture repositories for every configuration key and action, with the
//! expected relations pinned (snapshots) and the soundness sweep run on each:
//! editing a file in a test file's closure changes its hash, editing any
//! other file does not.

mod common;

use common::{assert_sound, closures_of, relations, Repo};

fn snapshot(name: &str, repo: &Repo, inputs: Option<&[&str]>) {
    let analysis = repo.analyze(inputs);
    let pinned = serde_json::json!({
        "relations": relations(&analysis),
        "closures": closures_of(&analysis),
        "unresolved": analysis.graph.unresolved,
    });
    insta::assert_json_snapshot!(name, pinned);
}

fn default_layout() -> Repo {
    Repo::new(&[
        ("conftest.py", "import pytest\n"),
        ("pyproject.toml", "[project]\nname = 'x'\n"),
        ("app/__init__.py", ""),
        (
            "app/core.py",
            "from . import util\nfrom .sub.deep import thing\n",
        ),
        ("app/util.py", "import os\n"),
        ("app/sub/__init__.py", ""),
        ("app/sub/deep.py", "from ..util import helper\nthing = 1\n"),
        ("app/unused.py", "x = 1\n"),
        ("src/lib/__init__.py", "from lib import extra\n"),
        ("src/lib/extra.py", ""),
        ("tests/conftest.py", "import lib\n"),
        ("tests/test_core.py", "import app.core\n"),
        ("tests/test_util.py", "from app import util\n"),
        ("tests/test_missing.py", "import app.generated_pb2\n"),
        ("docs/notes.txt", "not a dependency\n"),
    ])
}

#[test]
fn defaults_follow_imports_relative_imports_src_layout_and_the_conftest_chain() {
    let repo = default_layout();
    let closures = repo.closures(None);
    let core = &closures["tests/test_core.py"];
    for expected in [
        "conftest.py",
        "app/util.py",
        "app/sub/deep.py",
        "app/sub/__init__.py",
        "src/lib/extra.py",
    ] {
        assert!(
            core.contains(&expected.to_string()),
            "{expected} missing from {core:?}"
        );
    }
    assert!(!core.contains(&"app/unused.py".to_string()));
    assert!(!closures["tests/test_util.py"].contains(&"app/core.py".to_string()));
    snapshot("default_layout", &repo, None);
    assert_sound(&repo, None);
}

#[test]
fn root_conftest_is_a_dependency() {
    // Regression: the original's grand-sibling walk stopped below the repo root.
    let repo = default_layout();
    let closures = repo.closures(Some(&["tests/test_util.py"]));
    assert!(closures["tests/test_util.py"].contains(&"conftest.py".to_string()));
}

#[test]
fn unresolved_import_inside_a_root_package_is_reported() {
    let analysis = default_layout().analyze(None);
    let unresolved: Vec<(&str, &str)> = analysis
        .graph
        .unresolved
        .iter()
        .map(|u| (u.file.as_str(), u.module.as_str()))
        .collect();
    assert_eq!(unresolved, [("tests/test_missing.py", "app.generated_pb2")]);
}

#[test]
fn creating_a_conftest_above_a_test_changes_its_hash() {
    let repo = default_layout();
    let before = repo.hashes(Some(&["tests/test_util.py"]));
    repo.write("tests/sub_conftest_is_not_it.py", "");
    assert_eq!(repo.hashes(Some(&["tests/test_util.py"])), before);
    repo.write("docs/conftest.py", ""); // above nothing in the closure: unrelated
    assert_eq!(repo.hashes(Some(&["tests/test_util.py"])), before);
    std::fs::remove_file(repo.path("conftest.py")).unwrap();
    assert_ne!(
        repo.hashes(Some(&["tests/test_util.py"])),
        before,
        "deleting the root conftest"
    );
    repo.write("conftest.py", "import pytest\n");
    assert_eq!(repo.hashes(Some(&["tests/test_util.py"])), before);
    repo.write("tests/__init__.py", "");
    assert_ne!(
        repo.hashes(Some(&["tests/test_util.py"])),
        before,
        "a new __init__.py changes imports"
    );
}

const RULES_CONFIG: &str = r#"
inputs: "tests/test_*.py"
global_deps: [poetry.lock, missing.lock]
global_exclude: "**/*.generated"
root_python_packages: [app]
path_rules:
  "**/*.py":
    visit_imported_python_modules: true
    visit_grand_siblings: [conftest.py, __init__.py]
  "tests/test_data.py":
    visit: "data/**/*.json"
    visit_siblings: "fixtures.txt"
  "tests/test_plugins.py":
    visit_python_all_submodules_for: [app.plugins, plug]
  "app/[lm]*.py":
    exclude: "app/legacy.py"
    visit: "app/schema.sql"
  "tests/test_regex.py":
    regex_rules:
      'load\("(\w+)"\)':
        visit: "data/$1.json"
      '(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)(k)':
        visit: "data/$10$1.json"
      'skip\("(\w+)"\)':
        exclude: "tests/test_regex.py"
        visit: "data/$1.json"
"#;

fn rules_layout() -> Repo {
    Repo::new(&[
        ("repo_dagger.yaml", RULES_CONFIG),
        ("poetry.lock", "lock\n"),
        ("app/__init__.py", ""),
        ("app/schema.sql", "create table t;\n"),
        ("app/model.py", "x = 1\n"),
        ("app/legacy.py", "x = 2\n"),
        ("app/plugins/__init__.py", ""),
        ("app/plugins/a.py", ""),
        ("app/plugins/b/__init__.py", ""),
        ("app/plugins/b/c.py", ""),
        ("app/plug2/__init__.py", ""),
        ("app/plug2/x.py", ""),
        ("data/a.json", "{}"),
        ("data/nested/b.json", "{}"),
        ("data/other.json", "{}"),
        ("data/ja.json", "{}"),
        ("data/skipped.json", "{}"),
        ("data/readme.txt", ""),
        ("tests/fixtures.txt", "f\n"),
        ("tests/big.generated", "x\n"),
        ("tests/test_data.py", ""),
        ("tests/test_model.py", "import app.model\n"),
        ("tests/test_legacy.py", "import app.legacy\n"),
        ("tests/test_plugins.py", "import app.plug2 as plug\n"),
        (
            "tests/test_regex.py",
            "load(\"other\")\nskip(\"skipped\")\nabcdefghijk\n",
        ),
    ])
}

#[test]
fn every_action_of_the_original_has_its_meaning() {
    let repo = rules_layout();
    let analysis = repo.analyze(None);
    let closures = closures_of(&analysis);
    let has = |input: &str, file: &str| closures[input].contains(&file.to_string());

    // visit (a glob from the root) and visit_siblings
    assert!(
        has("tests/test_data.py", "data/a.json") && has("tests/test_data.py", "data/nested/b.json")
    );
    assert!(!has("tests/test_data.py", "data/readme.txt"));
    assert!(has("tests/test_data.py", "tests/fixtures.txt"));
    // global_deps; global_exclude keeps a matching file out of everything
    assert!(has("tests/test_model.py", "poetry.lock"));
    assert!(!analysis
        .graph
        .nodes
        .iter()
        .any(|n| n.path == "tests/big.generated"));
    // exclude on a path rule (ignored by the original)
    assert!(has("tests/test_model.py", "app/schema.sql"));
    assert!(!has("tests/test_legacy.py", "app/schema.sql"));
    // visit_python_all_submodules_for, by module name and by alias
    assert!(has("tests/test_plugins.py", "app/plugins/b/c.py"));
    assert!(has("tests/test_plugins.py", "app/plug2/x.py"));
    // regex rules: $1, $10 is group ten, exclude inside a regex rule
    assert!(has("tests/test_regex.py", "data/other.json"));
    assert!(
        has("tests/test_regex.py", "data/ja.json"),
        "$10$1 must expand to j + a"
    );
    assert!(!has("tests/test_regex.py", "data/skipped.json"));
    // a missing global dependency is hashed as absent, with a warning
    assert!(
        analysis
            .warnings
            .iter()
            .any(|w| w.contains("missing.lock does not exist")),
        "{:?}",
        analysis.warnings
    );
    snapshot("rules_layout", &repo, None);
    assert_sound(&repo, None);
}

#[test]
fn creating_a_missing_global_dependency_changes_every_hash() {
    let repo = rules_layout();
    let before = repo.hashes(None);
    assert!(before.values().all(Option::is_some));
    repo.write("missing.lock", "now here\n");
    let after = repo.hashes(None);
    for (input, hash) in &before {
        assert_ne!(hash, &after[input], "{input}");
    }
}

#[test]
fn base_dir_moves_the_root_and_paths_stay_root_relative() {
    let repo = Repo::new(&[
        (
            "ci/repo_dagger.yaml",
            "base_dir: ..\ninputs: \"tests/*.py\"\nroot_python_packages: app\n",
        ),
        ("app/__init__.py", ""),
        ("tests/test_a.py", "import app\n"),
    ]);
    let mut request = repo.request(None);
    request.config_path = Some(repo.path("ci/repo_dagger.yaml"));
    let analysis = dryci::analysis::analyze(&request).unwrap();
    let closures = closures_of(&analysis);
    assert_eq!(
        closures["tests/test_a.py"],
        ["app/__init__.py", "tests/test_a.py"]
    );
}

fn by_name_layout(extra_config: &str) -> Repo {
    Repo::new(&[
        (
            "pyproject.toml",
            &format!(
                "[project]\nname = 'x'\n[project.scripts]\nx = 'app.cli:main'\n\
                 [project.entry-points.pytest11]\nmine = 'app.pytest_plugin'\n\
                 [project.entry-points.'app.exporters']\ncsv = 'app.exporters.csv_out:Exporter'\n\
                 [tool.dryci]\nroot_python_packages = ['app']\n{extra_config}"
            ),
        ),
        ("app/__init__.py", ""),
        ("app/cli.py", "def main(): pass\n"),
        ("app/pytest_plugin.py", ""),
        ("app/exporters/__init__.py", ""),
        ("app/exporters/csv_out.py", ""),
        (
            "app/registry.py",
            "HANDLERS = ['app.handlers.json_handler:handle']\n",
        ),
        ("app/handlers/__init__.py", ""),
        ("app/handlers/json_handler.py", ""),
        (
            "app/loader.py",
            "from importlib.metadata import entry_points\n",
        ),
        ("tests/test_registry.py", "from app import registry\n"),
        ("tests/test_loader.py", "import app.loader\n"),
        ("tests/test_plain.py", "x = 1\n"),
    ])
}

#[test]
fn modules_named_in_strings_and_entry_points_are_dependencies() {
    let repo = by_name_layout("");
    let analysis = repo.analyze(None);
    let closures = closures_of(&analysis);
    assert!(
        closures["tests/test_registry.py"].contains(&"app/handlers/json_handler.py".to_string())
    );
    // Default policy `global`: every test depends on every declared entry point.
    for input in ["tests/test_plain.py", "tests/test_loader.py"] {
        assert!(
            closures[input].contains(&"app/cli.py".to_string()),
            "{input}"
        );
        assert!(
            closures[input].contains(&"app/pytest_plugin.py".to_string()),
            "{input}"
        );
    }
    let by_name = analysis
        .graph
        .nodes
        .iter()
        .flat_map(|n| &n.edges)
        .filter(|e| e.reason.is_by_name())
        .count();
    assert!(by_name > 0);
    snapshot("by_name_global", &repo, None);
    assert_sound(&repo, None);
}

#[test]
fn entry_points_loaders_policy_and_module_strings_off() {
    let repo = by_name_layout("entry_points = 'loaders'\nmodule_strings = false\n");
    let closures = repo.closures(None);
    let plain = &closures["tests/test_plain.py"];
    assert!(
        plain.contains(&"app/pytest_plugin.py".to_string()),
        "pytest loads pytest11 plugins in every run"
    );
    assert!(!plain.contains(&"app/cli.py".to_string()));
    assert!(closures["tests/test_loader.py"].contains(&"app/exporters/csv_out.py".to_string()));
    assert!(
        !closures["tests/test_registry.py"].contains(&"app/handlers/json_handler.py".to_string())
    );
    assert_sound(&repo, None);
}

#[test]
fn example_project_graph_is_pinned() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("example_project");
    let request = dryci::analysis::Request {
        root: root.clone(),
        config_path: None,
        inputs: None,
        salt: dryci::hash::Salt::new("", None),
        state_cache: dryci::analysis::StateCacheMode::Off,
        function_level: None,
    };
    let analysis = dryci::analysis::analyze(&request).unwrap();
    assert!(analysis.warnings.is_empty(), "{:?}", analysis.warnings);
    let pinned =
        serde_json::json!({"relations": relations(&analysis), "closures": closures_of(&analysis)});
    insta::assert_json_snapshot!("example_project", pinned);
}
