//! The plugin's session (`dryci::session`) end to end on a real repository
//! and a real local store: decide, match, publish, decide again; an edit;
//! a worker restored from the controller's answers.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::Repo;
use dryci::analysis::StateCacheMode;
use dryci::cache::{Collection, Matchers};
use dryci::hash::Salt;
use dryci::requirements::Observed;
use dryci::session::{OtherCounts, Session, SessionError, SessionSettings};

fn project() -> Repo {
    Repo::new(&[
        ("app/__init__.py", ""),
        ("app/core.py", "def add(a, b):\n    return a + b\n"),
        ("app/other.py", "X = 1\n"),
        ("tests/test_core.py", "from app.core import add\n"),
        ("tests/test_other.py", "from app.other import X\n"),
    ])
}

fn session(repo: &Repo) -> Session {
    Session::new(settings_of(repo))
}

fn files(repo: &Repo) -> Vec<(String, PathBuf)> {
    ["tests/test_core.py", "tests/test_other.py"]
        .iter()
        .map(|part| (part.to_string(), repo.root().join(part)))
        .collect()
}

const CORE_TESTS: [&str; 2] = ["tests/test_core.py::test_a", "tests/test_core.py::test_b"];
const OTHER_TEST: &str = "tests/test_other.py::test_x";

fn all_tests() -> Vec<String> {
    CORE_TESTS
        .iter()
        .chain([&OTHER_TEST])
        .map(|id| id.to_string())
        .collect()
}

/// Publishes every test of both files as passed, both files complete.
fn publish_all(session: &mut Session) {
    let mut passes: BTreeMap<String, BTreeMap<String, Option<u64>>> = BTreeMap::new();
    for id in all_tests() {
        let part = id.split("::").next().unwrap().to_string();
        passes.entry(part).or_default().insert(id, Some(5));
    }
    let collections: BTreeMap<String, Collection> = passes
        .iter()
        .map(|(part, tests)| {
            let node_ids = tests.keys().cloned().collect();
            (
                part.clone(),
                Collection {
                    node_ids,
                    matchers: None,
                },
            )
        })
        .collect();
    let counts = OtherCounts {
        total: 3,
        ..OtherCounts::default()
    };
    let publication = session
        .publish(
            &passes,
            &BTreeMap::new(),
            &BTreeMap::new(),
            &[],
            &collections,
            counts,
        )
        .unwrap();
    assert_eq!(publication.warnings, Vec::<String>::new());
    assert_eq!(publication.published, 3);
}

#[test]
fn a_published_pass_is_served_until_its_inputs_change() {
    let repo = project();
    let mut first = session(&repo);
    let decision = first.decide(&files(&repo), Matchers::Skip).unwrap();
    assert_eq!(decision.files.len(), 2);
    for file in decision.files.values() {
        assert_eq!(file.hash.as_ref().map(String::len), Ok(12));
        assert_eq!((file.passed_tests, file.complete.clone()), (0, None));
    }
    assert!(first.passed(&all_tests()).is_empty());
    publish_all(&mut first);

    let mut second = session(&repo);
    let decision = second.decide(&files(&repo), Matchers::Skip).unwrap();
    let core = &decision.files["tests/test_core.py"];
    assert_eq!((core.passed_tests, core.passed_ms), (2, 10));
    assert_eq!(
        core.complete.as_deref(),
        Some(&CORE_TESTS.map(String::from)[..])
    );
    let passed: Vec<String> = second
        .passed(&all_tests())
        .into_iter()
        .map(|p| p.0)
        .collect();
    assert_eq!(passed, all_tests());
    // A test the store never saw did not pass.
    assert!(second
        .passed(&["tests/test_core.py::test_new".to_string()])
        .is_empty());

    repo.write("app/core.py", "def add(a, b):\n    return b + a\n");
    let mut third = session(&repo);
    let decision = third.decide(&files(&repo), Matchers::Skip).unwrap();
    assert_eq!(decision.files["tests/test_core.py"].passed_tests, 0);
    assert_eq!(decision.files["tests/test_core.py"].complete, None);
    let passed: Vec<String> = third
        .passed(&all_tests())
        .into_iter()
        .map(|p| p.0)
        .collect();
    assert_eq!(passed, vec![OTHER_TEST.to_string()]);
}

#[test]
fn a_collection_is_recorded_whatever_passed_and_complete_only_when_each_test_passed() {
    // A run under `-m 'not slow'`: test_b was deselected, so only test_a
    // passed; the whole collection is recorded, with the plugin's matchers.
    let repo = project();
    let mut first = session(&repo);
    first.decide(&files(&repo), Matchers::Skip).unwrap();
    let passes = BTreeMap::from([(
        "tests/test_core.py".to_string(),
        BTreeMap::from([(CORE_TESTS[0].to_string(), Some(3))]),
    )]);
    let collections = BTreeMap::from([
        (
            "tests/test_core.py".to_string(),
            Collection {
                node_ids: CORE_TESTS.map(String::from).to_vec(),
                matchers: Some("{\"v\":1}".to_string()),
            },
        ),
        (
            "tests/test_other.py".to_string(),
            Collection {
                node_ids: vec![OTHER_TEST.to_string()],
                matchers: None,
            },
        ),
    ]);
    first
        .publish(
            &passes,
            &BTreeMap::new(),
            &BTreeMap::new(),
            &[],
            &collections,
            OtherCounts::default(),
        )
        .unwrap();

    let mut selecting = session(&repo);
    let decision = selecting.decide(&files(&repo), Matchers::Read).unwrap();
    let core = &decision.files["tests/test_core.py"];
    assert_eq!(core.complete, None, "test_b has no result to serve");
    assert_eq!(
        core.collection,
        Some(collections["tests/test_core.py"].clone())
    );
    // A record without matcher data cannot answer a selection.
    assert_eq!(decision.files["tests/test_other.py"].collection, None);

    let mut plain = session(&repo);
    let decision = plain.decide(&files(&repo), Matchers::Skip).unwrap();
    assert!(decision.files.values().all(|f| f.collection.is_none()));
    assert_eq!(decision.files["tests/test_core.py"].complete, None);
}

#[test]
fn a_worker_matches_with_the_controllers_answers_and_does_nothing_else() {
    let repo = project();
    let mut first = session(&repo);
    first.decide(&files(&repo), Matchers::Skip).unwrap();
    publish_all(&mut first);
    let mut controller = session(&repo);
    controller.decide(&files(&repo), Matchers::Skip).unwrap();

    let mut worker = Session::restore(&controller.export()).unwrap();
    assert_eq!(worker.passed(&all_tests()), controller.passed(&all_tests()));
    assert_eq!(worker.passed(&all_tests()).len(), 3);
    assert!(matches!(
        worker.decide(&files(&repo), Matchers::Skip),
        Err(SessionError::WorkerOnly)
    ));
    let nothing = BTreeMap::new();
    assert!(matches!(
        worker.publish(
            &nothing,
            &BTreeMap::new(),
            &BTreeMap::new(),
            &[],
            &BTreeMap::new(),
            OtherCounts::default()
        ),
        Err(SessionError::WorkerOnly)
    ));
    assert!(matches!(
        Session::restore(b"\xff\xff\xff"),
        Err(SessionError::Decode(_))
    ));
}

#[test]
fn a_file_that_cannot_be_hashed_says_why_and_nothing_of_it_is_published() {
    let repo = project();
    let mut session = session(&repo);
    let missing = (
        "tests/test_gone.py".to_string(),
        repo.root().join("tests/test_gone.py"),
    );
    let decision = session.decide(&[missing], Matchers::Skip).unwrap();
    let why = decision.files["tests/test_gone.py"]
        .hash
        .clone()
        .unwrap_err();
    assert!(why.contains("not in the repository"), "{why}");
    let passes = BTreeMap::from([(
        "tests/test_gone.py".to_string(),
        BTreeMap::from([("tests/test_gone.py::t".to_string(), None)]),
    )]);
    let publication = session
        .publish(
            &passes,
            &BTreeMap::new(),
            &BTreeMap::new(),
            &[],
            &BTreeMap::new(),
            OtherCounts::default(),
        )
        .unwrap();
    assert_eq!(publication.published, 0);
}

#[test]
fn without_query_nothing_is_asked_but_passes_are_published() {
    let repo = project();
    let mut first = session(&repo);
    first.decide(&files(&repo), Matchers::Skip).unwrap();
    publish_all(&mut first);
    let mut no_skip = Session::new(SessionSettings {
        query: false,
        ..settings_of(&repo)
    });
    let decision = no_skip.decide(&files(&repo), Matchers::Skip).unwrap();
    assert!(decision.files.values().all(|f| f.passed_tests == 0));
    assert!(no_skip.passed(&all_tests()).is_empty());
    publish_all(&mut no_skip);
}

fn settings_of(repo: &Repo) -> SessionSettings {
    SessionSettings {
        root: repo.root(),
        config_path: None,
        salt: Salt::new("test", None),
        state_cache: StateCacheMode::Off,
        local_store: true,
        server: None,
        query: true,
        function_level: None,
    }
}

/// Publishes `tests/test_other.py::test_x` as passed, observed to read
/// `observed`; returns how many passes were published.
fn publish_observed(session: &mut Session, observed: Observed) -> usize {
    publish_test(session, OTHER_TEST, observed, &[])
}

/// Publishes `test` as passed, observed to read (or run) `observed`, with
/// the calls between functions the session saw; returns how many passes
/// were published.
fn publish_test(
    session: &mut Session,
    test: &str,
    observed: Observed,
    calls: &[(String, String)],
) -> usize {
    let part = test.split("::").next().unwrap().to_string();
    let passes = BTreeMap::from([(part, BTreeMap::from([(test.to_string(), Some(1))]))]);
    let observed = BTreeMap::from([(test.to_string(), observed)]);
    let publication = session
        .publish(
            &passes,
            &BTreeMap::new(),
            &observed,
            calls,
            &BTreeMap::new(),
            OtherCounts::default(),
        )
        .unwrap();
    assert_eq!(publication.warnings, Vec::<String>::new());
    publication.published
}

fn served(repo: &Repo) -> bool {
    let mut session = session(repo);
    session.decide(&files(repo), Matchers::Skip).unwrap();
    !session.passed(&[OTHER_TEST.to_string()]).is_empty()
}

#[test]
fn a_pass_observed_reading_inputs_is_served_while_they_hold() {
    let repo = project();
    repo.write("data/expected.txt", "1\n");
    repo.write("plugins/csv.py", "from app.core import add\n");
    let mut first = session(&repo);
    first.decide(&files(&repo), Matchers::Skip).unwrap();
    let root = repo.root();
    let published = publish_observed(
        &mut first,
        Observed {
            files: vec![root.join("data/expected.txt").display().to_string()],
            listings: vec![root.join("data").display().to_string()],
            modules: vec![root.join("plugins/csv.py").display().to_string()],
            env: BTreeMap::from([("DRYCI_SESSION_TEST_NEVER_SET".to_string(), None)]),
            ..Observed::default()
        },
    );
    assert_eq!(published, 1);
    assert!(served(&repo));
    // Each input in turn: a change makes the test run, the undo serves it again.
    repo.write("data/expected.txt", "2\n");
    assert!(!served(&repo), "a data file changed");
    repo.write("data/expected.txt", "1\n");
    assert!(served(&repo));
    repo.write("data/new.txt", "");
    assert!(!served(&repo), "a file was added to a listed folder");
    std::fs::remove_file(repo.root().join("data/new.txt")).unwrap();
    assert!(served(&repo));
    // The module's own static closure counts, not only its file.
    repo.write("app/core.py", "def add(a, b):\n    return b + a\n");
    assert!(
        !served(&repo),
        "a module imported by the observed module changed"
    );
}

#[test]
fn a_pass_whose_input_is_gone_by_publish_time_is_not_recorded() {
    let repo = project();
    let mut first = session(&repo);
    first.decide(&files(&repo), Matchers::Skip).unwrap();
    let gone = Observed {
        files: vec![repo.root().join("gone.txt").display().to_string()],
        ..Observed::default()
    };
    assert_eq!(publish_observed(&mut first, gone), 0);
    assert!(!served(&repo));
}

/// `outside_static_graph` answers the test files whose reads the graph does
/// not hold from the decisions' graph alone; the others, and a file never
/// decided, from a full analysis. Both answers agree with the closures.
#[test]
fn outside_static_graph_with_and_without_an_analysis() {
    let repo = project();
    repo.write("data/expected.txt", "1\n");
    repo.write("tests/test_late.py", "from app.other import X\n");
    let mut session = session(&repo);
    session.decide(&files(&repo), Matchers::Skip).unwrap();
    let root = repo.root();
    let abs = |rel: &str| root.join(rel).display().to_string();
    let observed = BTreeMap::from([
        // Its closure holds app/core.py: the analysis says so.
        (
            "tests/test_core.py".to_string(),
            vec![abs("app/core.py"), abs("data/expected.txt")],
        ),
        // app/core.py is in the graph, but not in this file's closure.
        ("tests/test_other.py".to_string(), vec![abs("app/core.py")]),
        // Never decided: analysed, whatever it read.
        (
            "tests/test_late.py".to_string(),
            vec![abs("data/expected.txt")],
        ),
    ]);
    let outside = session.outside_static_graph(&observed).unwrap();
    let expected = BTreeMap::from([
        (
            "tests/test_core.py".to_string(),
            vec![abs("data/expected.txt")],
        ),
        ("tests/test_other.py".to_string(), vec![abs("app/core.py")]),
        (
            "tests/test_late.py".to_string(),
            vec![abs("data/expected.txt")],
        ),
    ]);
    assert_eq!(outside, expected);
    // Only paths no graph file is: answered without an analysis.
    let data_only = BTreeMap::from([(
        "tests/test_other.py".to_string(),
        vec![abs("data/expected.txt"), abs("data")],
    )]);
    assert_eq!(session.outside_static_graph(&data_only).unwrap(), data_only);
}

/// On a first run no test has a recorded result: each ran because nothing
/// of its file passed here; a test that passed under its key says so.
#[test]
fn explain_a_first_run_and_a_test_run_anyway() {
    let repo = project();
    let mut first = session(&repo);
    first.decide(&files(&repo), Matchers::Skip).unwrap();
    let reasons = first.explain(&all_tests());
    assert_eq!(reasons.len(), 3);
    for (_, why) in &reasons {
        assert_eq!(why, "no pass of its test file recorded on this machine");
    }
    publish_all(&mut first);
    let mut second = session(&repo);
    second.decide(&files(&repo), Matchers::Skip).unwrap();
    let new_test = "tests/test_core.py::test_new".to_string();
    let reasons: BTreeMap<String, String> = second
        .explain(&[CORE_TESTS[0].to_string(), new_test.clone()])
        .into_iter()
        .collect();
    assert!(
        reasons[CORE_TESTS[0]].starts_with("it passed before under its current key"),
        "{reasons:?}"
    );
    assert!(
        reasons[&new_test].starts_with("its test file's key is unchanged"),
        "{reasons:?}"
    );
}

/// Under function-level keys: a project whose package `__init__` imports
/// every module, a test recorded with the functions it ran and the calls
/// seen in the session.
mod function_level {
    use super::*;
    use dryci::analysis::FunctionLevel;

    const TEST: &str = "tests/test_m.py::test_lookup";

    fn project() -> Repo {
        Repo::new(&[
            ("pkg/__init__.py", "from . import m, other\n"),
            (
                "pkg/m.py",
                "def lookup(k):\n    return compute(k)\n\ndef compute(k):\n    return k\n",
            ),
            ("pkg/other.py", "def unrelated():\n    return 1\n"),
            (
                "tests/test_m.py",
                "from pkg.m import lookup\n\ndef test_lookup():\n    assert lookup(1) == 1\n",
            ),
        ])
    }

    fn session(repo: &Repo) -> Session {
        Session::new(SessionSettings {
            function_level: Some(FunctionLevel::default()),
            ..settings_of(repo)
        })
    }

    fn test_files(repo: &Repo) -> Vec<(String, PathBuf)> {
        vec![(
            "tests/test_m.py".to_string(),
            repo.root().join("tests/test_m.py"),
        )]
    }

    /// Publishes TEST, seen to run `ran`, with `calls` seen in the session.
    fn publish(repo: &Repo, ran: Option<&[&str]>, calls: &[(&str, &str)]) -> usize {
        let mut session = session(repo);
        session.decide(&test_files(repo), Matchers::Skip).unwrap();
        let observed = Observed {
            functions: ran.map(|names| names.iter().map(|n| n.to_string()).collect()),
            ..Observed::default()
        };
        let calls: Vec<(String, String)> = calls
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        publish_test(&mut session, TEST, observed, &calls)
    }

    fn served(repo: &Repo) -> bool {
        let mut session = session(repo);
        session.decide(&test_files(repo), Matchers::Skip).unwrap();
        !session.passed(&[TEST.to_string()]).is_empty()
    }

    #[test]
    fn an_edit_runs_the_test_only_when_it_ran_or_could_reach_the_code() {
        let repo = project();
        // The test only looked the result up; another test's run showed
        // that `lookup` calls `compute`.
        let ran = ["tests/test_m.py::test_lookup", "pkg/m.py::lookup"];
        let calls = [("pkg/m.py::lookup", "pkg/m.py::compute")];
        assert_eq!(publish(&repo, Some(&ran), &calls), 1);
        assert!(served(&repo));
        // A function no test ran: still served, though the whole package is
        // in the test file's static closure.
        repo.write("pkg/other.py", "def unrelated():\n    return 2\n");
        assert!(
            served(&repo),
            "an edit of a function the test never reached"
        );
        // The callee it could reach through the call graph.
        repo.write(
            "pkg/m.py",
            "def lookup(k):\n    return compute(k)\n\ndef compute(k):\n    return k + 1\n",
        );
        assert!(!served(&repo), "an edit of a function it could reach");
        // Module-level code is in the key.
        assert_eq!(publish(&repo, Some(&ran), &calls), 1);
        assert!(served(&repo));
        repo.write(
            "pkg/other.py",
            "LIMIT = 3\ndef unrelated():\n    return 2\n",
        );
        assert!(
            !served(&repo),
            "an edit of module-level code of the closure"
        );
    }

    #[test]
    fn a_test_whose_functions_were_not_all_seen_is_not_recorded() {
        let repo = project();
        assert_eq!(publish(&repo, None, &[]), 0);
        assert!(!served(&repo));
    }

    #[test]
    fn a_function_that_is_gone_by_publish_time_is_not_recorded() {
        let repo = project();
        let ran = ["tests/test_m.py::test_lookup", "pkg/m.py::renamed"];
        assert_eq!(publish(&repo, Some(&ran), &[]), 0);
    }
}
