//! API v1/v2 behaviour and every error path, against the real binary on a
//! temporary SQLite file: tokens (missing, malformed, unknown, expired,
//! revoked, read-only), bodies (oversized, not JSON, unknown fields, wrong
//! hash and id lengths), tenancy, docs, health, metrics, usage and graceful
//! shutdown. Retention is in `server_story.rs`, which runs on every backend.
#![cfg(feature = "server")]

mod server_support;

use std::collections::BTreeMap;
use std::time::Duration;

use dryci::protocol::RunCounts;
use server_support::*;

fn sqlite(dir: &tempfile::TempDir) -> Backend {
    Backend::Sqlite(dir.path().join("dryci.sqlite"))
}

fn publish_body(hash: &str, ids: &[String]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "passed_node_ids_per_test_file": {hash: ids},
        "total_test_count": 1, "passed_test_count": 1, "failed_test_count": 0,
        "skipped_test_count": 0, "skipped_by_cache_test_count": 0
    }))
    .unwrap()
}

fn detail(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("error body is not JSON ({e}): {body}"))
}

#[test]
fn first_start_prints_an_admin_token_once() {
    let dir = tempfile::tempdir().unwrap();
    let backend = sqlite(&dir);
    let server = Server::start(&backend, dir.path(), &[]);
    let token = server
        .admin_token
        .clone()
        .expect("initial admin token on first start");
    assert!(token.starts_with("dryci-") && token.len() == 32, "{token}");
    let admin = server.client(Some(&token));
    assert_eq!(
        admin.query_passed_v1(&[file_hash("x")]).unwrap(),
        vec![Vec::<String>::new()]
    );
    drop(server);
    let again = Server::start(&backend, dir.path(), &[]);
    assert_eq!(
        again.admin_token, None,
        "the admin token must be shown only once"
    );
    // The token is stored hashed: its text is nowhere in the database file.
    let db = std::fs::read(dir.path().join("dryci.sqlite")).unwrap();
    assert!(!db.windows(token.len()).any(|w| w == token.as_bytes()));
}

#[test]
fn token_errors_are_401_and_read_only_cannot_publish() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&sqlite(&dir), dir.path(), &[]);
    let url = format!("{}/api/v1/query-passed", server.url);
    let body = br#"{"test_file_hashes": []}"#.to_vec();
    let cases: Vec<(Option<String>, &str)> = vec![
        (None, "missing Authorization"),
        (Some("Basic dXNlcjpwdw==".into()), "not `Bearer`"),
        (Some("Bearer".into()), "expected `Bearer <token>`"),
        (Some("Bearer abc".into()), "does not start with `dryci-`"),
        (Some("Bearer dryci-tooshort".into()), "26 base32"),
        (
            Some("Bearer dryci-aaaaaaaaaaaaaaaaaaaaaaaaa1".into()),
            "26 base32",
        ),
        (
            Some("Bearer dryci-aaaaaaaaaaaaaaaaaaaaaaaaaa".into()),
            "unknown token",
        ),
    ];
    for (header, expected) in cases {
        let (status, text) = raw_post(&url, header.as_deref(), body.clone());
        assert_eq!(status, 401, "{header:?}: {text}");
        let d = detail(&text)["detail"].as_str().unwrap().to_string();
        assert!(d.contains(expected), "{header:?}: {d}");
    }

    server.admin(&["create-user", "ci"]);
    let expired = server.token("ci", "read-write", &["--expires-in-days", "1"]);
    let id = server.last_token_id("ci");
    assert!(server
        .client(Some(&expired))
        .query_passed_v1(&[file_hash("a")])
        .is_ok());
    assert_eq!(server.admin(&["expire-token", &id]).0, 0);
    let err = server
        .client(Some(&expired))
        .query_passed_v1(&[file_hash("a")])
        .unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert!(err.to_string().contains("token expired"), "{err}");

    let revoked = server.token("ci", "read-write", &[]);
    let id = server.last_token_id("ci");
    assert_eq!(server.admin(&["revoke-token", &id]).0, 0);
    let err = server
        .client(Some(&revoked))
        .query_passed_v1(&[file_hash("a")])
        .unwrap_err();
    assert!(err.to_string().contains("token revoked"), "{err}");

    let read_only = server.token("ci", "read-only", &[]);
    let ro = server.client(Some(&read_only));
    assert!(ro.query_passed_v1(&[file_hash("a")]).is_ok());
    let mut passed = BTreeMap::new();
    passed.insert(file_hash("a"), vec![node_id("1")]);
    let err = ro
        .publish_v1(passed.clone(), RunCounts::default())
        .unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    let err = ro
        .publish_v2(BTreeMap::new(), BTreeMap::new(), RunCounts::default())
        .unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    // The read-only attempt stored nothing.
    let rw = server.client(Some(&server.token("ci", "read-write", &[])));
    assert_eq!(
        rw.query_passed_v1(&[file_hash("a")]).unwrap(),
        vec![Vec::<String>::new()]
    );

    // Admin-only endpoint.
    let (status, _) = raw_get(
        &format!("{}/api/v2/admin/usage", server.url),
        Some(&format!("Bearer {read_only}")),
    );
    assert_eq!(status, 403);

    // Unknown or bad users and tokens in the admin CLI are errors, not panics.
    let (code, _, err) = server.admin(&["create-token", "nobody"]);
    assert_eq!(code, 2);
    assert!(err.contains("user \"nobody\" not found"), "{err}");
    let (code, _, err) = server.admin(&["create-user", "ci"]);
    assert_eq!(code, 2);
    assert!(err.contains("already exists"), "{err}");
    let (code, _, err) = server.admin(&["revoke-token", "999999"]);
    assert_eq!(code, 2);
    assert!(err.contains("token \"999999\" not found"), "{err}");
    let (code, _, err) = server.admin(&["create-token", "ci", "--scope", "root"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown scope"), "{err}");
}

#[test]
fn bad_bodies_are_413_or_422_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&sqlite(&dir), dir.path(), &["--max-ids-per-hash", "4"]);
    let auth = format!("Bearer {}", server.admin_token.clone().unwrap());
    let q = format!("{}/api/v1/query-passed", server.url);
    let p = format!("{}/api/v1/publish", server.url);
    let h = file_hash("h");

    // 8 MiB + 1 byte of otherwise valid JSON.
    let mut big = br#"{"test_file_hashes": [""#.to_vec();
    big.resize(8 * 1024 * 1024 + 1 - 3, b'a');
    big.extend_from_slice(br#""]}"#);
    let (status, text) = raw_post(&q, Some(&auth), big);
    assert_eq!(status, 413, "{text}");

    let cases: Vec<(&str, Vec<u8>, String)> = vec![
        (&q, b"not json".to_vec(), "body".to_string()),
        (&q, b"".to_vec(), "body".to_string()),
        (&q, br#"{"test_file_hashes": ["a"], "extra": 1}"#.to_vec(), "extra".to_string()),
        (&q, br#"{"test_file_hashes": "a"}"#.to_vec(), "test_file_hashes".to_string()),
        (&q, format!(r#"{{"test_file_hashes": ["{h}", "{}"]}}"#, &h[..63]).into_bytes(), "test_file_hashes[1]".to_string()),
        (&q, format!(r#"{{"test_file_hashes": ["{}"]}}"#, h.to_uppercase()).into_bytes(), "test_file_hashes[0]".to_string()),
        (&q, format!(r#"{{"test_file_hashes": ["{h}0"]}}"#).into_bytes(), "test_file_hashes[0]".to_string()),
        (&p, publish_body(&h[..10], &[node_id("a")]), format!("passed_node_ids_per_test_file.{}", &h[..10])),
        (&p, publish_body(&h, &[node_id("a"), "xyz".into()]), format!("passed_node_ids_per_test_file.{h}[1]")),
        (&p, publish_body(&h, &(0..5).map(|i| node_id(&i.to_string())).collect::<Vec<_>>()), format!("passed_node_ids_per_test_file.{h}")),
        (&p, br#"{"passed_node_ids_per_test_file": {}}"#.to_vec(), "body".to_string()),
        (&p, br#"{"passed_node_ids_per_test_file": {}, "total_test_count": -1, "passed_test_count": 0, "failed_test_count": 0, "skipped_test_count": 0, "skipped_by_cache_test_count": 0}"#.to_vec(), "total_test_count".to_string()),
    ];
    for (url, body, field) in cases {
        let shown = String::from_utf8_lossy(&body[..body.len().min(120)]).into_owned();
        let (status, text) = raw_post(url, Some(&auth), body);
        assert_eq!(status, 422, "{shown}: {text}");
        let d = detail(&text);
        assert_eq!(d["field"], field, "{shown}: {text}");
    }
    // Nothing of the rejected publishes was stored, and the server is still well.
    let c = server.client(server.admin_token.as_deref());
    assert_eq!(c.query_passed_v1(&[h]).unwrap(), vec![Vec::<String>::new()]);
    assert_eq!(raw_get(&format!("{}/healthz", server.url), None).0, 200);
}

#[test]
fn docs_health_metrics_and_usage() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&sqlite(&dir), dir.path(), &["--flush-interval-ms", "100"]);
    for path in ["/", "/api"] {
        let (status, text) = raw_get(&format!("{}{path}", server.url), None);
        assert_eq!(status, 200);
        assert!(
            text.contains("POST /api/v1/query-passed") && text.contains("413"),
            "{text}"
        );
    }
    let (status, text) = raw_get(&format!("{}/api/openapi.json", server.url), None);
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/api/v1/query-passed",
        "/api/v1/publish",
        "/api/v2/query-passed",
        "/api/v2/publish",
    ] {
        assert!(
            doc["paths"][path]["post"]["responses"]["422"].is_object(),
            "{path}"
        );
    }
    assert_eq!(
        raw_get(&format!("{}/healthz", server.url), None),
        (200, "ok\n".to_string())
    );
    let (status, text) = raw_get(&format!("{}/no/such/path", server.url), None);
    assert_eq!(status, 404, "{text}");

    let token = server.admin_token.clone().unwrap();
    let c = server.client(Some(&token));
    let mut passed = BTreeMap::new();
    passed.insert(file_hash("m"), vec![node_id("1"), node_id("2")]);
    c.publish_v1(passed, RunCounts::default()).unwrap();
    c.query_passed_v1(&[file_hash("m"), file_hash("n"), file_hash("o")])
        .unwrap();

    let (_, metrics) = raw_get(&format!("{}/metrics", server.url), None);
    for needle in [
        r#"dryci_http_requests_total{route="/api/v1/query-passed",method="POST",status="200"} 1"#,
        r#"dryci_http_requests_total{route="/api/v1/publish",method="POST",status="200"} 1"#,
        "dryci_cache_hits_total 1",
        "dryci_cache_misses_total 2",
        "dryci_published_ids_total 2",
        "dryci_http_request_duration_seconds_bucket",
        "dryci_store_bytes",
    ] {
        assert!(metrics.contains(needle), "{needle} not in\n{metrics}");
    }

    let (status, text) = raw_get(
        &format!("{}/api/v2/admin/usage", server.url),
        Some(&format!("Bearer {token}")),
    );
    assert_eq!(status, 200, "{text}");
    let usage: serde_json::Value = serde_json::from_str(&text).unwrap();
    let admin = &usage["users"][0];
    assert_eq!(admin["user"], "admin");
    assert_eq!(admin["requests"], 2);
    assert_eq!(admin["queried_hashes"], 3);
    assert_eq!(admin["hits"], 1);
    assert_eq!(admin["published_ids"], 2);
    let (code, out, _) = server.admin(&["usage"]);
    assert_eq!(code, 0);
    assert!(
        out.lines()
            .any(|l| l.starts_with("admin") && l.split_whitespace().nth(1) == Some("2")),
        "{out}"
    );
}

#[test]
fn tenants_never_see_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&sqlite(&dir), dir.path(), &[]);
    let a = server.client(Some(&server.user_token("a", None, "read-write")));
    let b = server.client(Some(&server.user_token("b", None, "read-write")));
    let a2 = server.client(Some(&server.user_token("a2", Some("a"), "read-write")));
    let h = file_hash("shared");
    let mut passed = BTreeMap::new();
    passed.insert(h.clone(), vec![node_id("from-a")]);
    a.publish_v1(passed, RunCounts::default()).unwrap();
    assert_eq!(
        b.query_passed_v1(std::slice::from_ref(&h)).unwrap(),
        vec![Vec::<String>::new()]
    );
    assert_eq!(
        a2.query_passed_v1(std::slice::from_ref(&h)).unwrap(),
        vec![vec![node_id("from-a")]]
    );
    let mut passed = BTreeMap::new();
    passed.insert(h.clone(), vec![node_id("from-b")]);
    b.publish_v1(passed, RunCounts::default()).unwrap();
    assert_eq!(
        a.query_passed_v1(std::slice::from_ref(&h)).unwrap(),
        vec![vec![node_id("from-a")]]
    );
    assert_eq!(
        b.query_passed_v1(std::slice::from_ref(&h)).unwrap(),
        vec![vec![node_id("from-b")]]
    );
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&sqlite(&dir), dir.path(), &[]);
    let c = server.client(server.admin_token.as_deref());
    c.query_passed_v1(&[file_hash("x")]).unwrap();
    let status = server
        .terminate(Duration::from_secs(10))
        .expect("server exits after SIGTERM");
    assert!(status.success(), "{status:?}");
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn sigterm_right_after_the_port_is_announced_stops_the_server_cleanly() {
    // The handlers are installed before the announcement, not when the
    // serve loop first waits for a signal.
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&sqlite(&dir), dir.path(), &[]);
    let status = server
        .terminate(Duration::from_secs(10))
        .expect("server exits after SIGTERM");
    assert!(status.success(), "{status:?}");
}

#[test]
fn bad_configuration_is_refused_at_start() {
    let out = std::process::Command::new(BIN)
        .args(["server", "--db", "mysql://x", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unsupported database URL"), "{err}");
    let out = std::process::Command::new(BIN)
        .args(["server", "--max-body-bytes", "0", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--max-body-bytes must be greater than 0")
    );
}

/// Sends the headers of a POST and `first` bytes of its body, keeping the connection open.
fn partial_post(
    url: &str,
    path: &str,
    token: &str,
    body: &[u8],
    first: usize,
) -> std::net::TcpStream {
    use std::io::Write;
    let addr = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(&body[..first]).unwrap();
    stream.flush().unwrap();
    stream
}

fn read_all(mut stream: std::net::TcpStream) -> String {
    use std::io::Read;
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out);
    out
}

#[test]
fn a_stalled_request_times_out_with_408() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&sqlite(&dir), dir.path(), &["--request-timeout-secs", "1"]);
    let token = server.admin_token.clone().unwrap();
    let body = br#"{"test_file_hashes": []}"#;
    let start = std::time::Instant::now();
    let stream = partial_post(&server.url, "/api/v1/query-passed", &token, body, 5);
    let answer = read_all(stream);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn sigterm_finishes_in_flight_requests() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&sqlite(&dir), dir.path(), &[]);
    let token = server.admin_token.clone().unwrap();
    let h = file_hash("in-flight");
    let body = publish_body(&h, &[node_id("1")]);
    let mut stream = partial_post(&server.url, "/api/v1/publish", &token, &body, 10);
    std::thread::sleep(Duration::from_millis(200));
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "exited with a request in flight"
    );
    stream.write_all(&body[10..]).unwrap();
    let answer = read_all(stream);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let status = server
        .terminate(Duration::from_secs(10))
        .expect("exits once the request is done");
    assert!(status.success(), "{status:?}");
    // The publish it acknowledged while shutting down is stored.
    let server = Server::start(&sqlite(&dir), dir.path(), &[]);
    let c = server.client(Some(&token));
    assert_eq!(c.query_passed_v1(&[h]).unwrap(), vec![vec![node_id("1")]]);
}

fn query_body(hashes: &[String]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "test_file_hashes": hashes })).unwrap()
}

/// Issue 13 item 3: a 102 KB query naming one stored hash 1,500 times got
/// a 1.72 GB answer (one copy of the hash's ids per repeat). A repeat is
/// now refused before the store is touched, naming the repeat.
#[test]
fn a_query_repeating_a_hash_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&sqlite(&dir), dir.path(), &[]);
    let auth = format!("Bearer {}", server.admin_token.clone().unwrap());
    let h = file_hash("amplified");
    let ids: Vec<String> = (0..2_000).map(|i| node_id(&i.to_string())).collect();
    let (status, text) = raw_post(
        &format!("{}/api/v1/publish", server.url),
        Some(&auth),
        publish_body(&h, &ids),
    );
    assert_eq!(status, 200, "{text}");
    let repeated = query_body(&vec![h.clone(); 1_500]);
    for version in ["v1", "v2"] {
        let url = format!("{}/api/{version}/query-passed", server.url);
        let start = std::time::Instant::now();
        let (status, text) = raw_post(&url, Some(&auth), repeated.clone());
        let elapsed = start.elapsed();
        // Before the fix: 200 and a 105 MB answer (1,500 x 2,000 ids).
        assert_eq!(status, 422, "{version}: {} bytes", text.len());
        assert!(text.len() < 1_000, "{version}: {text}");
        let d = detail(&text);
        assert_eq!(d["field"], "test_file_hashes[1]", "{text}");
        assert!(
            d["detail"]
                .as_str()
                .unwrap()
                .contains("repeats test_file_hashes[0]"),
            "{text}"
        );
        assert!(elapsed < Duration::from_secs(5), "{version}: {elapsed:?}");
    }
    // The server's memory stayed within its budget (with 1,500 x 32,768
    // ids the answer alone was 1.72 GB and the server grew to 1.77 GB).
    if let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())) {
        let peak_kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        assert!(peak_kb < 100 * 1024, "peak RSS {peak_kb} kB");
    }
    // The hash asked once is answered in full.
    let c = server.client(server.admin_token.as_deref());
    assert_eq!(
        c.query_passed_v1(std::slice::from_ref(&h)).unwrap()[0].len(),
        2_000
    );
}

/// Issue 13 item 3: the ids of one answer are capped (`--max-ids-per-answer`),
/// checked before the answer is built, with a 422 naming `test_file_hashes`.
#[test]
fn an_answer_over_the_ids_cap_is_refused_before_it_is_built() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&sqlite(&dir), dir.path(), &["--max-ids-per-answer", "5000"]);
    let auth = format!("Bearer {}", server.admin_token.clone().unwrap());
    let hashes: Vec<String> = (0..3).map(|i| file_hash(&format!("big-{i}"))).collect();
    for (i, h) in hashes.iter().enumerate() {
        let ids: Vec<String> = (0..2_000).map(|j| node_id(&format!("{i}-{j}"))).collect();
        let (status, text) = raw_post(
            &format!("{}/api/v1/publish", server.url),
            Some(&auth),
            publish_body(h, &ids),
        );
        assert_eq!(status, 200, "{text}");
    }
    for version in ["v1", "v2"] {
        let url = format!("{}/api/{version}/query-passed", server.url);
        let (status, text) = raw_post(&url, Some(&auth), query_body(&hashes));
        assert_eq!(status, 422, "{version}: {} bytes", text.len());
        let d = detail(&text);
        assert_eq!(d["field"], "test_file_hashes", "{text}");
        assert!(
            d["detail"]
                .as_str()
                .unwrap()
                .contains("node ids, at most 5000 per answer"),
            "{text}"
        );
        let (status, text) = raw_post(&url, Some(&auth), query_body(&hashes[..2]));
        assert_eq!(status, 200, "{version}");
        let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
        let lists = answer.as_object().unwrap().values().next().unwrap();
        assert_eq!(lists[1].as_array().unwrap().len(), 2_000, "{version}");
    }
}

/// Sends `request` as is on a new connection and reads the answer to its
/// end; returns (status, body).
fn raw_exchange(url: &str, request: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // The server may answer and close before taking all of it.
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_string();
    (status, body)
}

/// Issue 13 item 5: 405, 408, 400, 414 and 431 were answered with an empty
/// body (axum's 405, the timeout layer's 408, hyper's own 400, 414 and 431).
#[test]
fn every_error_answer_has_a_json_body() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&sqlite(&dir), dir.path(), &["--request-timeout-secs", "1"]);
    let many_headers: String = (0..200).map(|i| format!("X-{i}: 1\r\n")).collect();
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "GET on a POST route",
            b"GET /api/v1/query-passed HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
            405,
            "not allowed",
        ),
        (
            "POST on a GET route",
            b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                .to_vec(),
            405,
            "not allowed",
        ),
        (
            "a header line without a colon",
            b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n".to_vec(),
            400,
            "malformed HTTP request",
        ),
        (
            "a Content-Length that is not a number",
            b"POST /api/v1/query-passed HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{"
                .to_vec(),
            400,
            "malformed HTTP request",
        ),
        (
            "a 70 KB URI",
            format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000)).into_bytes(),
            414,
            "URI is too long",
        ),
        (
            "a 500 KB header",
            format!(
                "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
                "a".repeat(500_000)
            )
            .into_bytes(),
            431,
            "headers are too large",
        ),
        (
            "200 headers",
            format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n").into_bytes(),
            431,
            "headers are too large",
        ),
        (
            "a body that stops",
            b"POST /api/v1/query-passed HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{"
                .to_vec(),
            408,
            "request timeout",
        ),
    ];
    for (what, request, status, expected) in cases {
        let (got, body) = raw_exchange(&server.url, &request);
        assert_eq!(got, status, "{what}: {body:?}");
        let d = detail(&body);
        let text = d["detail"].as_str().unwrap_or_default();
        assert!(text.contains(expected), "{what}: {body}");
    }
    assert_eq!(raw_get(&format!("{}/healthz", server.url), None).0, 200);
}

/// Issue 13 item 5: a body declared larger than the limit waited for the
/// request timeout (a 408 after 30 s); it is now refused with 413 at once.
#[test]
fn a_declared_oversize_body_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&sqlite(&dir), dir.path(), &[]);
    let token = server.admin_token.clone().unwrap();
    let start = std::time::Instant::now();
    let request = format!(
        "POST /api/v1/query-passed HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 100000000\r\n\r\n{{"
    );
    let (status, body) = raw_exchange(&server.url, request.as_bytes());
    assert_eq!(status, 413, "{body}");
    assert!(
        detail(&body)["detail"]
            .as_str()
            .unwrap()
            .contains("larger than 8388608 bytes"),
        "{body}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

/// A body over the limit sent without a declared length (chunked) is
/// refused once the limit is read; the client, still sending, reads the 413
/// (the connection closes and lingers) instead of a reset.
#[test]
fn an_oversize_chunked_body_gets_a_readable_413() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&sqlite(&dir), dir.path(), &["--max-body-bytes", "100000"]);
    let token = server.admin_token.clone().unwrap();
    let mut request = format!(
        "POST /api/v1/query-passed HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    let chunk = vec![b' '; 0x10000];
    // 32 MB: more than the kernel's buffers take in while the server closes.
    for _ in 0..512 {
        request.extend_from_slice(b"10000\r\n");
        request.extend_from_slice(&chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    // Like ureq: send it all, then read; a reset fails the send.
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect(server.url.trim_start_matches("http://")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
        .write_all(&request)
        .expect("the server keeps reading while its 413 is on the way");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    assert!(detail(body)["detail"]
        .as_str()
        .unwrap()
        .contains("larger than 100000 bytes"));
}

/// Issue 13 item 5: a 1 MB bad key got a 2 MB error (the key in `field`
/// and again in `detail`), and so did a 1 MB unknown field.
#[test]
fn errors_quote_a_bounded_excerpt_of_bad_keys_and_fields() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&sqlite(&dir), dir.path(), &[]);
    let auth = format!("Bearer {}", server.admin_token.clone().unwrap());
    let long = "k".repeat(1_000_000);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "/api/v1/publish",
            publish_body(&long, &[node_id("a")]),
            "passed_node_ids_per_test_file.kkk",
        ),
        (
            "/api/v2/publish",
            serde_json::to_vec(&serde_json::json!({
                "passed": {&long: [{"node_id": node_id("a")}]},
                "counts": {"total_test_count": 1, "passed_test_count": 1, "failed_test_count": 0,
                           "skipped_test_count": 0, "skipped_by_cache_test_count": 0}
            }))
            .unwrap(),
            "passed.kkk",
        ),
        (
            "/api/v1/query-passed",
            format!(r#"{{"test_file_hashes": [], "{long}": 1}}"#).into_bytes(),
            "kkk",
        ),
        (
            "/api/v1/query-passed",
            format!(r#"{{"test_file_hashes": ["{long}"]}}"#).into_bytes(),
            "test_file_hashes[0]",
        ),
    ];
    // A 404 quotes a part of a 60 KB path.
    let (status, text) = raw_get(&format!("{}/{}", server.url, "p".repeat(60_000)), None);
    assert_eq!(status, 404, "{} bytes", text.len());
    assert!(text.len() < 2_000, "a {} byte 404", text.len());
    for (path, body, field_start) in cases {
        let (status, text) = raw_post(&format!("{}{path}", server.url), Some(&auth), body);
        assert_eq!(status, 422, "{path}: {} bytes", text.len());
        assert!(text.len() < 2_000, "{path}: a {} byte error", text.len());
        let d = detail(&text);
        let field = d["field"].as_str().unwrap();
        assert!(field.starts_with(field_start), "{path}: {field}");
        assert!(
            field.contains("characters left out") || field.len() < 100,
            "{path}: {field}"
        );
    }
}

/// Issue 13 item 3: when the server refuses a query as too big as a whole
/// (more ids than `--max-ids-per-answer`, more hashes than
/// `--max-hashes-per-query`), the client asks in halves and joins the answers.
#[test]
fn the_client_splits_a_query_the_server_finds_too_big() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &sqlite(&dir),
        dir.path(),
        &[
            "--max-ids-per-answer",
            "5000",
            "--max-hashes-per-query",
            "4",
        ],
    );
    let c = server.client(server.admin_token.as_deref());
    let mut expected = Vec::new();
    let mut hashes = Vec::new();
    for i in 0..6 {
        let h = file_hash(&format!("split-{i}"));
        // Every other hash is stored, with 2,000 ids.
        let ids: Vec<String> = if i % 2 == 0 {
            (0..2_000).map(|j| node_id(&format!("{i}-{j}"))).collect()
        } else {
            Vec::new()
        };
        if !ids.is_empty() {
            let mut passed = BTreeMap::new();
            passed.insert(h.clone(), ids.clone());
            c.publish_v1(passed, RunCounts::default()).unwrap();
        }
        hashes.push(h);
        expected.push(ids);
    }
    assert_eq!(c.query_passed_v1(&hashes).unwrap(), expected);
    let v2: Vec<Vec<String>> = c
        .query_passed_v2(&hashes)
        .unwrap()
        .passed
        .into_iter()
        .map(|tests| tests.into_iter().map(|t| t.node_id).collect())
        .collect();
    assert_eq!(v2, expected);
    // A refusal that names one hash is not split: it is returned.
    let mut repeated = hashes.clone();
    repeated[1] = hashes[0].clone();
    let err = c.query_passed_v1(&repeated[..2]).unwrap_err();
    assert_eq!(err.status(), Some(422), "{err}");
    assert!(err.to_string().contains("test_file_hashes[1]"), "{err}");
}

/// Issue 13 item 6: the database holds every tenant's results and the
/// token hashes; with the usual umask (022) it was created world-readable,
/// and SQLite gives its `-wal` and `-shm` files the main file's mode.
#[cfg(unix)]
#[test]
fn the_database_file_and_its_wal_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let backend = sqlite(&dir);
    let server = Server::start(&backend, dir.path(), &[]);
    let c = server.client(server.admin_token.as_deref());
    let mut passed = BTreeMap::new();
    passed.insert(file_hash("private"), vec![node_id("1")]);
    c.publish_v1(passed, RunCounts::default()).unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let path = dir.path().join(format!("dryci.sqlite{suffix}"));
        let mode = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}: {:o}", path.display(), mode);
    }
}

/// Issue 13 item 6: the first-start admin token is stored hashed and
/// printed once. It was printed before the port was bound, so a start that
/// could not listen (the port taken) showed it and exited, and no later
/// start printed another: the server had an administrator nobody could be.
#[test]
fn the_first_admin_token_is_printed_only_once_the_port_is_bound() {
    let dir = tempfile::tempdir().unwrap();
    let backend = sqlite(&dir);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = std::process::Command::new(BIN)
        .args(["server", "--db", &backend.db_arg(), "--listen"])
        .arg(taken.local_addr().unwrap().to_string())
        .env("DRYCI_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot listen"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains("admin token"), "{stdout}");
    drop(taken);
    let server = Server::start(&backend, dir.path(), &[]);
    let token = server
        .admin_token
        .clone()
        .expect("the first start that listens prints the admin token");
    let (status, body) = raw_get(
        &format!("{}/api/v2/admin/usage", server.url),
        Some(&format!("Bearer {token}")),
    );
    assert_eq!(status, 200, "{body}");
}

/// Issue 13 item 7: every flush of read times dropped the entries it
/// touched from the cache of hot entries. With a short touch granularity
/// every read entry is touched at every flush, so the cache was emptied of
/// its hot entries every flush interval and hardly ever answered.
#[test]
fn touch_flushes_keep_hot_entries_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &sqlite(&dir),
        dir.path(),
        &[
            "--touch-granularity-secs",
            "0",
            "--flush-interval-ms",
            "100",
        ],
    );
    let c = server.client(server.admin_token.as_deref());
    let hot = file_hash("hot");
    let mut passed = BTreeMap::new();
    passed.insert(hot.clone(), vec![node_id("1")]);
    c.publish_v1(passed, RunCounts::default()).unwrap();
    // Two misses let the entry in; then each read follows a flush that
    // touched it.
    for _ in 0..12 {
        assert_eq!(
            c.query_passed_v1(std::slice::from_ref(&hot)).unwrap(),
            vec![vec![node_id("1")]]
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let served = metric(&server.url, "dryci_hot_cache_hits_total").unwrap();
    assert!(served >= 9.0, "{served} of 12 reads answered from memory");
    // The reads were recorded all the same: the entry outlives an age
    // limit its publish alone would not (covered by server_story.rs).
}

/// Issue 13 item 7: `/healthz` read `SELECT 1`, which a database that can
/// no longer be written (a full disk) still answers. Here every write of
/// the server fails as on a full disk: its file size limit drops to one
/// byte (SIGXFSZ ignored, so a write fails with EFBIG instead of killing
/// it). Skipped where `prlimit` (util-linux) is missing.
#[cfg(target_os = "linux")]
#[test]
fn healthz_reports_a_database_that_cannot_be_written() {
    let has_prlimit = std::process::Command::new("prlimit")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_prlimit {
        eprintln!("note: prlimit not found; skipping");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_under(
        &sqlite(&dir),
        dir.path(),
        &[],
        &["sh", "-c", r#"trap '' XFSZ; exec "$0" "$@""#],
    );
    let healthz = || raw_get(&format!("{}/healthz", server.url), None);
    assert_eq!(healthz(), (200, "ok\n".to_string()));
    let limit = |size: &str| {
        let status = std::process::Command::new("prlimit")
            .args(["--pid", &server.child.id().to_string()])
            .arg(format!("--fsize={size}"))
            .status()
            .unwrap();
        assert!(status.success());
    };
    limit("1:unlimited");
    let c = server.client(server.admin_token.as_deref());
    let mut passed = BTreeMap::new();
    passed.insert(file_hash("full"), vec![node_id("1")]);
    let err = c.publish_v1(passed, RunCounts::default()).unwrap_err();
    assert_eq!(err.status(), Some(503), "{err}");
    // Within the probe interval (5 s) of the last probe.
    let mut last = (0, String::new());
    let unhealthy = eventually(Duration::from_secs(12), || {
        last = healthz();
        last.0 == 503
    });
    assert!(unhealthy, "{last:?}");
    assert!(last.1.contains("cannot be written"), "{last:?}");
    limit("unlimited:unlimited");
    let healthy = eventually(Duration::from_secs(12), || {
        last = healthz();
        last.0 == 200
    });
    assert!(healthy, "{last:?}");
}

/// Issue 13 item 4, found by schemathesis: a count written `0.0` is the
/// integer 0 to JSON Schema, so to the OpenAPI document, but was refused
/// with a 422; `duration_ms: null`, which the document does not allow, was
/// stored as "no duration". Counts are now read as JSON writes them, and a
/// null duration is refused (our client leaves an unknown one out).
#[test]
fn counts_are_read_as_json_writes_them_and_a_null_duration_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&sqlite(&dir), dir.path(), &[]);
    let auth = format!("Bearer {}", server.admin_token.clone().unwrap());
    let v1 = format!("{}/api/v1/publish", server.url);
    let v2 = format!("{}/api/v2/publish", server.url);
    let h = file_hash("counts");
    let id = node_id("1");
    let v1_body = |total: &str| {
        format!(
            r#"{{"passed_node_ids_per_test_file": {{"{h}": ["{id}"]}}, "total_test_count": {total},
                "passed_test_count": 1, "failed_test_count": 0.0, "skipped_test_count": 0,
                "skipped_by_cache_test_count": 0}}"#
        )
        .into_bytes()
    };
    let counts = r#"{"total_test_count": 5.0, "passed_test_count": 5e0, "failed_test_count": -0.0,
        "skipped_test_count": 0, "skipped_by_cache_test_count": 0}"#;
    let v2_body = |duration: &str| {
        format!(r#"{{"passed": {{"{h}": [{{"node_id": "{id}", "duration_ms": {duration}}}]}}, "counts": {counts}}}"#)
            .into_bytes()
    };

    for total in ["5.0", "5e0", "1.5e1", "18446744073709551615"] {
        let (status, text) = raw_post(&v1, Some(&auth), v1_body(total));
        assert_eq!(status, 200, "total_test_count {total}: {text}");
    }
    let (status, text) = raw_post(&v2, Some(&auth), v2_body("7.0"));
    assert_eq!(status, 200, "{text}");
    let passed = server
        .client(Some(&server.admin_token.clone().unwrap()))
        .query_passed_v2(std::slice::from_ref(&h))
        .unwrap()
        .passed;
    assert_eq!(passed[0][0].duration_ms, Some(7), "{passed:?}");

    for total in [
        "5.5",
        "-1",
        "-1.0",
        "1e20",
        "18446744073709551616",
        "null",
        "\"5\"",
    ] {
        let (status, text) = raw_post(&v1, Some(&auth), v1_body(total));
        assert_eq!(status, 422, "total_test_count {total}: {text}");
        assert_eq!(
            detail(&text)["field"],
            "total_test_count",
            "{total}: {text}"
        );
    }
    for duration in ["null", "0.5", "-3"] {
        let (status, text) = raw_post(&v2, Some(&auth), v2_body(duration));
        assert_eq!(status, 422, "duration_ms {duration}: {text}");
        assert_eq!(
            detail(&text)["field"],
            format!("passed.{h}[0].duration_ms"),
            "{duration}: {text}"
        );
    }
}

/// Issue 13 item 4: the OpenAPI document left out the 401 of the admin
/// route, every 403, the errors answered around the handlers (400, 408,
/// 413, 414, 431, 503), the form of publish map keys, and described the
/// default limits rather than the server's own.
#[test]
fn the_openapi_document_lists_every_answer_of_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &sqlite(&dir),
        dir.path(),
        &["--max-ids-per-hash", "4", "--max-hashes-per-query", "10"],
    );
    let (status, text) = raw_get(&format!("{}/api/openapi.json", server.url), None);
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    // Follows `$ref`s within the document.
    let resolve = |value: &serde_json::Value| -> serde_json::Value {
        let mut value = value.clone();
        while let Some(path) = value["$ref"].as_str() {
            let pointer = path.strip_prefix('#').unwrap();
            value = doc
                .pointer(pointer)
                .unwrap_or_else(|| panic!("{path}"))
                .clone();
        }
        value
    };
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            let name = format!("{method} {path}");
            let responses = op["responses"].as_object().unwrap();
            let protected = op["security"].as_array().is_some_and(|s| !s.is_empty());
            let mut expected = vec!["200", "400", "408", "413", "414", "431"];
            if protected {
                expected.extend(["401", "503"]);
            }
            if path.ends_with("/publish") || path.contains("/admin/") {
                expected.push("403");
            }
            if op.get("requestBody").is_some() {
                expected.push("422");
            }
            for code in &expected {
                assert!(responses.contains_key(*code), "{name}: no {code}");
            }
            for (code, response) in responses {
                let response = resolve(response);
                let content = response["content"].as_object();
                assert!(content.is_some_and(|c| !c.is_empty()), "{name} {code}");
                if code.starts_with('4') || (code == "503" && protected) {
                    let schema = &response["content"]["application/json"]["schema"];
                    assert_eq!(
                        schema["$ref"], "#/components/schemas/Error",
                        "{name} {code}"
                    );
                }
            }
        }
    }
    assert_eq!(operations, 11);
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["Error"]["properties"]["detail"]["type"], "string",
        "{}",
        schemas["Error"]
    );
    let key = "^[0-9a-f]{64}$";
    for map in [
        &schemas["V1PublishRequest"]["properties"]["passed_node_ids_per_test_file"],
        &schemas["V2PublishRequest"]["properties"]["passed"],
    ] {
        assert_eq!(map["additionalProperties"], false, "{map}");
        assert_eq!(resolve(&map["propertyNames"])["pattern"], key, "{map}");
        assert_eq!(map["patternProperties"][key]["maxItems"], 4, "{map}");
    }
    let hashes = resolve(&schemas["QueryRequest"]["properties"]["test_file_hashes"]);
    assert_eq!(hashes["maxItems"], 10, "{hashes}");
    assert_eq!(hashes["uniqueItems"], true, "{hashes}");
    let duration = resolve(&schemas["PassedTest"]["properties"]["duration_ms"]["allOf"][0]);
    assert_eq!(duration["type"], "integer", "{duration}");
    let requires = resolve(&schemas["PassedTest"]["properties"]["requires"]["allOf"][0]);
    assert_eq!(requires["pattern"], key, "{requires}");
    let sets = resolve(&schemas["V2PublishRequest"]["properties"]["requirement_sets"]["allOf"][0]);
    assert_eq!(
        sets["patternProperties"][key]["contentEncoding"], "base64",
        "{sets}"
    );
    let with = &schemas["V2QueryRequest"]["properties"]["with_requirements"];
    assert_eq!(with["type"], "boolean", "{with}");
}
