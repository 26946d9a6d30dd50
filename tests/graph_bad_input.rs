//! Bad input never panics and never yields a hash it cannot stand behind:
//! non-UTF-8 sources, files that cannot be tokenized, a 50 MB file, a FIFO
//! where a data file should be, symlink loops.

mod common;

use common::Repo;

#[test]
fn non_utf8_source_is_scanned_and_hashed() {
    let repo = Repo::new(&[
        ("app/__init__.py", ""),
        ("app/dep.py", ""),
        ("tests/test_x.py", ""),
    ]);
    repo.write_bytes(
        "tests/test_x.py",
        b"# -*- coding: latin-1 -*-\nimport app.dep\nname = '\xe9t\xe9'\n",
    );
    let closures = repo.closures(None);
    assert!(closures["tests/test_x.py"].contains(&"app/dep.py".to_string()));
}

#[test]
fn a_file_that_does_not_tokenize_is_scanned_conservatively_and_reported() {
    let repo = Repo::new(&[
        ("app/__init__.py", ""),
        ("app/dep.py", ""),
        ("tests/test_x.py", "import app.dep\ns = '''never closed\n"),
    ]);
    let analysis = repo.analyze(None);
    let closures = common::closures_of(&analysis);
    assert!(closures["tests/test_x.py"].contains(&"app/dep.py".to_string()));
    assert!(
        analysis
            .warnings
            .iter()
            .any(|w| w.contains("tests/test_x.py:") && w.contains("conservative")),
        "{:?}",
        analysis.warnings
    );
    assert!(analysis.inputs[0].hash().is_some());
}

#[test]
fn a_fifty_megabyte_file_is_hashed() {
    let repo = Repo::new(&[
        (
            "repo_dagger.yaml",
            "root_python_packages: app\npath_rules:\n  'tests/*.py':\n    visit: data/big.bin\n",
        ),
        ("tests/test_x.py", ""),
    ]);
    let mut big = vec![b'x'; 50 * 1024 * 1024];
    repo.write_bytes("data/big.bin", &big);
    let before = repo.hashes(None);
    big[25 * 1024 * 1024] = b'y';
    repo.write_bytes("data/big.bin", &big);
    assert_ne!(repo.hashes(None), before);
}

#[cfg(unix)]
#[test]
fn a_dependency_that_cannot_be_read_leaves_its_dependents_without_a_hash() {
    let repo = Repo::new(&[
        (
            "repo_dagger.yaml",
            "path_rules:\n  'tests/test_x.py':\n    visit: data/pipe\n",
        ),
        ("tests/test_x.py", ""),
        ("tests/test_y.py", ""),
    ]);
    std::fs::create_dir_all(repo.path("data")).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(repo.path("data/pipe"))
        .status()
        .unwrap();
    assert!(status.success());
    let analysis = repo.analyze(None);
    let x = analysis
        .inputs
        .iter()
        .find(|i| i.path == "tests/test_x.py")
        .unwrap();
    assert!(
        x.hash().is_none(),
        "a test whose inputs cannot be hashed must never be skipped"
    );
    assert!(
        x.problem().unwrap().to_string().contains("data/pipe"),
        "{:?}",
        x.problem()
    );
    let y = analysis
        .inputs
        .iter()
        .find(|i| i.path == "tests/test_y.py")
        .unwrap();
    assert!(y.hash().is_some());
    assert!(analysis.warnings.iter().any(|w| w.contains("data/pipe")));
}

#[cfg(unix)]
#[test]
fn symlink_loops_are_reported_not_followed_forever() {
    let repo = Repo::new(&[("app/__init__.py", ""), ("tests/test_x.py", "import app\n")]);
    std::os::unix::fs::symlink(repo.path("app"), repo.path("app/again")).unwrap();
    let analysis = repo.analyze(None);
    assert!(
        analysis.warnings.iter().any(|w| w.contains("symlink loop")),
        "{:?}",
        analysis.warnings
    );
    assert!(analysis.inputs[0].hash().is_some());
}

#[test]
fn an_input_outside_the_root_has_no_hash_and_says_why() {
    let repo = Repo::new(&[("tests/test_x.py", "")]);
    let outside = tempfile::NamedTempFile::new().unwrap();
    let mut request = repo.request(None);
    request.inputs = Some(vec![outside.path().to_path_buf(), "tests/test_x.py".into()]);
    let analysis = dryci::analysis::analyze(&request).unwrap();
    assert_eq!(analysis.inputs.len(), 2);
    assert!(analysis.inputs[0].hash().is_none());
    assert!(analysis.inputs[0]
        .problem()
        .unwrap()
        .to_string()
        .contains("outside the repository root"));
    assert!(analysis.inputs[1].hash().is_some());
}

#[test]
fn concurrent_runs_sharing_the_state_cache_agree() {
    let repo = Repo::new(&[
        ("app/__init__.py", ""),
        ("app/a.py", "from . import b\n"),
        ("app/b.py", ""),
        ("tests/test_a.py", "import app.a\n"),
    ]);
    let mut request = repo.request(None);
    request.state_cache = dryci::analysis::StateCacheMode::Default;
    let expected = repo.hashes(None);
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let request = request.clone();
            std::thread::spawn(move || {
                let analysis = dryci::analysis::analyze(&request).expect("analysis");
                analysis
                    .inputs
                    .iter()
                    .map(|i| (i.path.clone(), i.hash().map(|h| h.to_string())))
                    .collect::<std::collections::BTreeMap<_, _>>()
            })
        })
        .collect();
    for run in runs {
        assert_eq!(run.join().expect("thread"), expected);
    }
    // The cache file written by the last of them is whole and gives the same answer.
    let analysis = dryci::analysis::analyze(&request).unwrap();
    assert!(analysis.warnings.is_empty(), "{:?}", analysis.warnings);
}
