//! The caches under `.dryci/` (state, visits, hash memo) never change an
//! answer: after each kind of change a cached run gives exactly the hashes
//! of a run without any cache, and a run with nothing changed replays them.

mod common;

use std::collections::BTreeMap;

use common::Repo;

fn layout() -> Repo {
    Repo::new(&[
        ("conftest.py", ""),
        ("pkg/__init__.py", ""),
        // `pkg.plugin` does not exist yet: adding it must change the hash.
        (
            "pkg/core.py",
            "from pkg import plugin\nfrom . import util\n",
        ),
        ("pkg/util.py", "X = 1\n"),
        ("pkg/data.json", "{}\n"),
        ("tests/test_core.py", "import pkg.core\n"),
        ("tests/test_util.py", "import pkg.util\n"),
    ])
}

/// Checks a cached run against an uncached one and returns the hashes.
fn agree(repo: &Repo, why: &str) -> BTreeMap<String, Option<String>> {
    let uncached = repo.hashes(None);
    let (cached, _) = repo.cached_hashes(None);
    assert_eq!(cached, uncached, "{why}: cached and uncached hashes differ");
    uncached
}

#[test]
fn every_kind_of_change_gives_the_uncached_answer() {
    let repo = layout();
    let first = agree(&repo, "first run");
    let (_, remembered) = repo.cached_hashes(None);
    assert!(remembered, "nothing changed: the hashes are replayed");

    // A new file an import now resolves to (the repository's layout changed).
    repo.write("pkg/plugin.py", "Y = 2\n");
    let added = agree(&repo, "file added");
    assert_ne!(added["tests/test_core.py"], first["tests/test_core.py"]);
    assert_eq!(added["tests/test_util.py"], first["tests/test_util.py"]);
    let (_, remembered) = repo.cached_hashes(None);
    assert!(remembered);

    // A new import in a file whose visit was cached.
    repo.append("pkg/util.py", "import pkg.plugin\n");
    let edited = agree(&repo, "import added");
    assert_ne!(edited["tests/test_util.py"], added["tests/test_util.py"]);

    // A configuration rule that adds a data file.
    repo.write(
        "repo_dagger.yaml",
        concat!(
            "inputs: ['tests/test_*.py']\n",
            "root_python_packages: [pkg]\n",
            "path_rules:\n",
            "  '**/*.py':\n",
            "    visit_imported_python_modules: true\n",
            "    visit_grand_siblings: [conftest.py, __init__.py]\n",
            "  'pkg/core.py':\n",
            "    visit_siblings: data.json\n",
        ),
    );
    let configured = agree(&repo, "configuration written");
    repo.write("pkg/data.json", "{\"a\": 1}\n");
    let data = agree(&repo, "data file edited");
    assert_ne!(data["tests/test_core.py"], configured["tests/test_core.py"]);

    // A file removed.
    std::fs::remove_file(repo.path("pkg/plugin.py")).unwrap();
    agree(&repo, "file removed");
}

#[test]
fn corrupt_cache_files_are_ignored_with_a_warning() {
    let repo = layout();
    let expected = agree(&repo, "first run");
    for name in ["visits-v1.bin", "hashes-v1.bin", "state-v1.bin"] {
        let path = repo.path(".dryci").join(name);
        assert!(path.exists(), "{name} was written");
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x55;
        std::fs::write(&path, &bytes).unwrap();
    }
    let mut request = repo.request(None);
    request.state_cache = dryci::analysis::StateCacheMode::Default;
    let run = dryci::analysis::dependency_hashes(&request).unwrap();
    assert!(!run.remembered);
    for name in ["visits-v1.bin", "hashes-v1.bin", "state-v1.bin"] {
        assert!(
            run.warnings
                .iter()
                .any(|w| w.contains(name) && w.contains("starting afresh")),
            "no warning about {name}: {:?}",
            run.warnings
        );
    }
    let hashes: BTreeMap<String, Option<String>> = run
        .inputs
        .iter()
        .map(|i| (i.path.clone(), i.hash().map(|h| h.to_string())))
        .collect();
    assert_eq!(hashes, expected);
}
