//! `dryci graph` and `dryci why` as a user runs them: the real binary on
//! repositories written into temp folders, outputs pinned as snapshots,
//! exit codes 0/1/2, errors on stderr with a hint.

mod common;

use std::process::{Command, Output};

use common::Repo;

fn dryci(repo: &Repo, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dryci"))
        .args(args)
        .current_dir(repo.root())
        .env_remove("DRYCI_SALT")
        .output()
        .expect("run dryci")
}

/// stdout and stderr with the temp folder replaced, for snapshots.
fn text(repo: &Repo, output: &Output) -> String {
    let root = repo.root().display().to_string();
    let stdout = String::from_utf8_lossy(&output.stdout).replace(&root, "<root>");
    let stderr = String::from_utf8_lossy(&output.stderr).replace(&root, "<root>");
    format!(
        "exit: {:?}\n--- stdout\n{stdout}--- stderr\n{stderr}",
        output.status.code()
    )
}

fn sample() -> Repo {
    Repo::new(&[
        ("repo_dagger.yaml", "root_python_packages: [app]\n"),
        ("conftest.py", ""),
        ("app/__init__.py", ""),
        (
            "app/a.py",
            "from . import b\nPLUGINS = ['app.plugins.p1']\n",
        ),
        ("app/b.py", "import json\n"),
        ("app/plugins/__init__.py", ""),
        ("app/plugins/p1.py", ""),
        ("tests/test_a.py", "import app.a\n"),
        ("tests/test_b.py", "from app import b\n"),
    ])
}

#[test]
fn stats_relations_and_closures() {
    let repo = sample();
    let stats = dryci(
        &repo,
        &[
            "graph",
            "--no-state-cache",
            "--print-dep-stats",
            "--print-rev-dep-stats",
            "--stats-sort",
            "name",
        ],
    );
    insta::assert_snapshot!("stats", text(&repo, &stats));
    let relations = dryci(
        &repo,
        &[
            "graph",
            "--no-state-cache",
            "--out-relations",
            "-",
            "--with-reasons",
        ],
    );
    assert_eq!(relations.status.code(), Some(0));
    insta::assert_snapshot!("relations_with_reasons", text(&repo, &relations));
    let closure = dryci(
        &repo,
        &[
            "graph",
            "--no-state-cache",
            "-out-recursive-deps",
            "-",
            "-out-recursive-deps-for",
            "tests/test_b.py",
        ],
    );
    insta::assert_snapshot!("closure_single_dash_flags", text(&repo, &closure));
}

#[test]
fn hashes_are_json_and_follow_the_salt_and_input_overrides() {
    let repo = sample();
    let hashes = |extra: &[&str]| {
        let mut args = vec!["graph", "--no-state-cache", "--out-dep-hashes", "-"];
        args.extend_from_slice(extra);
        let output = dryci(&repo, &args);
        assert_eq!(output.status.code(), Some(0), "{}", text(&repo, &output));
        serde_json::from_slice::<std::collections::BTreeMap<String, String>>(&output.stdout)
            .expect("JSON")
    };
    let plain = hashes(&[]);
    assert_eq!(
        plain.keys().collect::<Vec<_>>(),
        ["tests/test_a.py", "tests/test_b.py"]
    );
    assert!(plain.values().all(|h| h.len() == 64));
    let salted = hashes(&["--hash-salt", "x"]);
    assert_ne!(plain["tests/test_a.py"], salted["tests/test_a.py"]);
    let only_b = hashes(&["--input-files", "tests/test_b.py"]);
    assert_eq!(only_b.len(), 1);
    assert_eq!(only_b["tests/test_b.py"], plain["tests/test_b.py"]);
    // The same hashes from another folder: paths are relative to the root.
    let output = Command::new(env!("CARGO_BIN_EXE_dryci"))
        .args([
            "graph",
            "--no-state-cache",
            "--root",
            &repo.root().display().to_string(),
        ])
        .current_dir(repo.path("app"))
        .output()
        .unwrap();
    let from_subfolder: std::collections::BTreeMap<String, String> =
        serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(from_subfolder, plain);
}

#[test]
fn the_state_cache_gives_the_same_hashes_and_sees_edits() {
    let repo = sample();
    let run = || dryci(&repo, &["graph"]).stdout;
    let cold = run();
    assert!(repo.path(".dryci/state-v1.bin").exists());
    assert_eq!(run(), cold, "warm run");
    repo.append("app/b.py", "x = 1\n");
    let edited = run();
    assert_ne!(edited, cold);
    assert!(repo.path(".dryci/.gitignore").exists());
}

#[test]
fn why_explains_the_chain_and_says_when_there_is_none() {
    let repo = sample();
    let why = dryci(
        &repo,
        &[
            "why",
            "--no-state-cache",
            "tests/test_a.py",
            "app/plugins/p1.py",
        ],
    );
    insta::assert_snapshot!("why_by_name", text(&repo, &why));
    let none = dryci(
        &repo,
        &[
            "why",
            "--no-state-cache",
            "tests/test_b.py",
            "app/plugins/p1.py",
        ],
    );
    assert_eq!(none.status.code(), Some(1));
}

#[test]
fn pictures_in_dot_and_mermaid() {
    let repo = sample();
    let dot = dryci(
        &repo,
        &["graph", "--no-state-cache", "--dot", "tests/test_a.py"],
    );
    insta::assert_snapshot!("dot", text(&repo, &dot));
    let mermaid = dryci(
        &repo,
        &["graph", "--no-state-cache", "--mermaid", "tests/test_a.py"],
    );
    insta::assert_snapshot!("mermaid", text(&repo, &mermaid));
}

#[test]
fn show_config_prints_what_was_inferred() {
    let repo = Repo::new(&[("pkg/__init__.py", ""), ("tests/test_x.py", "import pkg\n")]);
    let output = dryci(&repo, &["graph", "--no-state-cache", "--show-config"]);
    insta::assert_snapshot!("show_config_defaults", text(&repo, &output));
}

#[test]
fn configuration_errors_exit_2_with_file_line_and_hint() {
    let repo = Repo::new(&[("repo_dagger.yaml", "inputs: a.py\nglobal_dep: x\n")]);
    let output = dryci(&repo, &["graph"]);
    assert_eq!(output.status.code(), Some(2));
    insta::assert_snapshot!("unknown_key_error", text(&repo, &output));
    let regex = Repo::new(&[(
        "repo_dagger.yaml",
        "path_rules:\n  '*.py':\n    regex_rules:\n      '(':\n        visit: x\n",
    )]);
    let output = dryci(&regex, &["graph"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr)
        .contains("repo_dagger.yaml:4: path_rules.*.py.regex_rules: invalid regular expression"));
    let missing = dryci(&regex, &["graph", "--config", "nope.yaml"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr)
        .contains("hint: check the path given with --config"));
}

#[test]
fn unknown_input_is_an_error_naming_it() {
    let repo = sample();
    let output = dryci(
        &repo,
        &["graph", "--no-state-cache", "--dot", "tests/nope.py"],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("tests/nope.py is not one of the inputs")
    );
}
