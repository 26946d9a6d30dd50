//! Durability: publish in a loop, `kill -9` the server mid-load, restart it,
//! and check that every acknowledged publish is there. On every backend.
#![cfg(feature = "server")]

mod server_support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dryci::protocol::RunCounts;
use server_support::*;

fn crash_once(backend: &Backend, dir: &std::path::Path) {
    let mut server = Server::start(backend, dir, &[]);
    let user = unique("crash");
    let token = server.user_token(&user, None, "read-write");
    let acknowledged: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let client = server.client(Some(&token));
            let acknowledged = acknowledged.clone();
            let user = user.clone();
            std::thread::spawn(move || {
                // Bounded: at most 20 s or 100k publishes, whichever comes first.
                let start = Instant::now();
                for i in 0..100_000 {
                    if start.elapsed() > Duration::from_secs(20) {
                        break;
                    }
                    let (h, id) = (
                        file_hash(&format!("{user}/{w}/{i}")),
                        node_id(&format!("{w}/{i}")),
                    );
                    let mut passed = BTreeMap::new();
                    passed.insert(h.clone(), vec![id.clone()]);
                    match client.publish_v1(passed, RunCounts::default()) {
                        Ok(()) => acknowledged.lock().unwrap().push((h, id)),
                        Err(_) => break, // the server is gone
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    server.kill9();
    for w in writers {
        w.join().unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > 20,
        "too few publishes before the kill: {}",
        acknowledged.len()
    );

    let server = Server::start(backend, dir, &[]);
    let client = server.client(Some(&token));
    for chunk in acknowledged.chunks(1000) {
        let hashes: Vec<String> = chunk.iter().map(|(h, _)| h.clone()).collect();
        let answer = client.query_passed_v1(&hashes).unwrap();
        for ((h, id), ids) in chunk.iter().zip(answer) {
            assert_eq!(
                ids,
                vec![id.clone()],
                "acknowledged publish of {h} lost after kill -9"
            );
        }
    }
    eprintln!(
        "{}: {} acknowledged publishes survived kill -9",
        backend.name(),
        acknowledged.len()
    );
}

#[test]
fn acknowledged_publishes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    for backend in backends(&dir) {
        crash_once(&backend, dir.path());
    }
}
