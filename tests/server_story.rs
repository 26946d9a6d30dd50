//! The story every storage backend must tell the same way: users, tokens,
//! scopes, tenants, v1 and v2 publishes and queries, through the real binary
//! and the project's own client. Runs on SQLite, and on PostgreSQL when
//! `DRYCI_TEST_POSTGRES_URL` is set (required in CI).
#![cfg(feature = "server")]

mod server_support;

use std::collections::BTreeMap;

use dryci::protocol::{v2, RunCounts};
use server_support::*;

fn counts(n: u64) -> RunCounts {
    RunCounts {
        total_test_count: n,
        passed_test_count: n,
        ..RunCounts::default()
    }
}

fn story(backend: &Backend, dir: &std::path::Path) {
    let server = Server::start(backend, dir, &[]);
    let tenant = unique("team");
    let alice = unique("alice");
    let bob = unique("bob");
    let eve = unique("eve");
    let alice_token = server.user_token(&alice, Some(&tenant), "read-write");
    let bob_token = server.user_token(&bob, Some(&tenant), "read-only");
    let eve_token = server.user_token(&eve, None, "read-write");
    let alice_c = server.client(Some(&alice_token));
    let bob_c = server.client(Some(&bob_token));
    let eve_c = server.client(Some(&eve_token));

    // Nothing stored yet: one empty list per hash, in order.
    let (h1, h2, h3) = (
        file_hash(&format!("{tenant}1")),
        file_hash(&format!("{tenant}2")),
        file_hash(&format!("{tenant}3")),
    );
    assert_eq!(
        alice_c.query_passed_v1(&[h1.clone(), h2.clone()]).unwrap(),
        vec![Vec::<String>::new(), vec![]]
    );

    // v1 publish, then merge: new ids are appended, known ones kept once.
    let (a, b, c) = (node_id("a"), node_id("b"), node_id("c"));
    let mut passed = BTreeMap::new();
    passed.insert(h1.clone(), vec![a.clone(), b.clone()]);
    alice_c.publish_v1(passed, counts(2)).unwrap();
    let mut passed = BTreeMap::new();
    passed.insert(h1.clone(), vec![b.clone(), c.clone()]);
    passed.insert(h2.clone(), vec![a.clone()]);
    alice_c.publish_v1(passed, counts(3)).unwrap();
    assert_eq!(
        alice_c
            .query_passed_v1(&[h2.clone(), h3.clone(), h1.clone()])
            .unwrap(),
        vec![
            vec![a.clone()],
            vec![],
            vec![a.clone(), b.clone(), c.clone()]
        ]
    );

    // Same tenant, read-only token: reads the team's results, cannot publish.
    assert_eq!(
        bob_c.query_passed_v1(std::slice::from_ref(&h1)).unwrap(),
        vec![vec![a.clone(), b.clone(), c.clone()]]
    );
    let mut passed = BTreeMap::new();
    passed.insert(h3.clone(), vec![a.clone()]);
    let err = bob_c.publish_v1(passed.clone(), counts(1)).unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    assert!(err.to_string().contains("read-only"), "{err}");

    // Another tenant sees nothing of it, and its own publish stays its own.
    assert_eq!(
        eve_c.query_passed_v1(std::slice::from_ref(&h1)).unwrap(),
        vec![Vec::<String>::new()]
    );
    let mut eve_passed = BTreeMap::new();
    eve_passed.insert(h1.clone(), vec![node_id("eve")]);
    eve_c.publish_v1(eve_passed, counts(1)).unwrap();
    assert_eq!(
        eve_c.query_passed_v1(std::slice::from_ref(&h1)).unwrap(),
        vec![vec![node_id("eve")]]
    );
    assert_eq!(
        alice_c.query_passed_v1(std::slice::from_ref(&h1)).unwrap(),
        vec![vec![a.clone(), b.clone(), c.clone()]]
    );

    // v2: durations round trip, `stored` counts only new ids, v1 sees the same ids.
    let caps = alice_c.capabilities().unwrap().expect("v2 server");
    assert_eq!(caps.api_versions, vec![1, 2]);
    let t = |id: &str, d: Option<u64>| v2::PassedTest {
        node_id: id.to_string(),
        duration_ms: d,
    };
    let mut v2_passed = BTreeMap::new();
    v2_passed.insert(h3.clone(), vec![t(&a, Some(120)), t(&b, None)]);
    v2_passed.insert(h1.clone(), vec![t(&a, Some(7))]);
    assert_eq!(alice_c.publish_v2(v2_passed, counts(3)).unwrap(), 2);
    assert_eq!(
        alice_c.query_passed_v2(&[h3.clone(), h1.clone()]).unwrap(),
        vec![
            vec![t(&a, Some(120)), t(&b, None)],
            vec![t(&a, Some(7)), t(&b, None), t(&c, None)]
        ]
    );
    assert_eq!(
        alice_c.query_passed_v1(std::slice::from_ref(&h3)).unwrap(),
        vec![vec![a.clone(), b.clone()]]
    );

    // Revoking and expiring tokens takes effect on the next request.
    let id = server.last_token_id(&bob);
    let (code, _, err) = server.admin(&["revoke-token", &id]);
    assert_eq!(code, 0, "{err}");
    let err = bob_c
        .query_passed_v1(std::slice::from_ref(&h1))
        .unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert!(err.to_string().contains("revoked"), "{err}");
    let id = server.last_token_id(&eve);
    let (code, _, err) = server.admin(&["expire-token", &id]);
    assert_eq!(code, 0, "{err}");
    let err = eve_c
        .query_passed_v1(std::slice::from_ref(&h1))
        .unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");

    // Survives a restart.
    drop(server);
    let server = Server::start(backend, dir, &[]);
    assert!(server.admin_token.is_none() || backend.name() == "sqlite");
    let alice_c = server.client(Some(&alice_token));
    assert_eq!(alice_c.query_passed_v1(&[h1]).unwrap(), vec![vec![a, b, c]]);
}

#[test]
fn the_story_on_every_backend() {
    let dir = tempfile::tempdir().unwrap();
    for backend in backends(&dir) {
        eprintln!("story on {}", backend.name());
        story(&backend, dir.path());
    }
}
