//! The HTTP client's own error paths, against tiny fake servers on
//! 127.0.0.1: timeouts, error statuses, bad JSON, answers of the wrong
//! length, and a v1-only server (capabilities -> None).
#![cfg(feature = "server")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use dryci::cache::http::{HttpClient, HttpError};

/// Serves `answer` (status line + body) to every connection, for a bounded number of them.
fn fake(status: &'static str, body: &'static str, delay: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().take(8) {
            let Ok(mut stream) = stream else { break };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body_in = vec![0; length];
            let _ = reader.read_exact(&mut body_in);
            std::thread::sleep(delay);
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

fn hashes(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{i:064x}")).collect()
}

#[test]
fn a_slow_server_times_out_within_the_deadline() {
    let url = fake("200 OK", r#"{"node_ids": [[]]}"#, Duration::from_secs(5));
    let client = HttpClient::new(&url, None, Duration::from_millis(300)).unwrap();
    let start = Instant::now();
    let err = client.query_passed_v1(&hashes(1)).unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "took {:?}",
        start.elapsed()
    );
    assert!(matches!(err, HttpError::Timeout { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains(&format!("{url}/api/v1/query-passed")),
        "{err}"
    );
}

#[test]
fn error_statuses_quote_the_body() {
    let url = fake(
        "401 Unauthorized",
        r#"{"detail":"unknown token"}"#,
        Duration::ZERO,
    );
    let client = HttpClient::new(&url, Some("dryci-x".into()), Duration::from_secs(5)).unwrap();
    let err = client.query_passed_v1(&hashes(1)).unwrap_err();
    assert_eq!(err.status(), Some(401));
    let text = err.to_string();
    assert!(
        text.contains("HTTP 401") && text.contains("unknown token") && text.contains(&url),
        "{text}"
    );
}

#[test]
fn bad_json_and_wrong_lengths_are_errors() {
    let url = fake("200 OK", "<html>proxy login</html>", Duration::ZERO);
    let client = HttpClient::new(&url, None, Duration::from_secs(5)).unwrap();
    let err = client.query_passed_v1(&hashes(1)).unwrap_err();
    assert!(matches!(err, HttpError::BadJson { .. }), "{err:?}");
    assert!(err.to_string().contains("not the expected JSON"), "{err}");

    let url = fake("200 OK", r#"{"node_ids": [[]]}"#, Duration::ZERO);
    let client = HttpClient::new(&url, None, Duration::from_secs(5)).unwrap();
    let err = client.query_passed_v1(&hashes(3)).unwrap_err();
    assert!(
        matches!(
            err,
            HttpError::WrongLength {
                expected: 3,
                got: 1,
                ..
            }
        ),
        "{err:?}"
    );
    let url = fake("200 OK", r#"{"passed": [[], []]}"#, Duration::ZERO);
    let client = HttpClient::new(&url, None, Duration::from_secs(5)).unwrap();
    assert!(matches!(
        client.query_passed_v2(&hashes(1)),
        Err(HttpError::WrongLength { .. })
    ));
}

#[test]
fn a_v1_only_server_has_no_capabilities() {
    let url = fake("404 Not Found", r#"{"detail":"Not Found"}"#, Duration::ZERO);
    let client = HttpClient::new(&url, None, Duration::from_secs(5)).unwrap();
    assert_eq!(client.capabilities().unwrap(), None);
}

#[test]
fn an_empty_query_needs_no_server() {
    let client = HttpClient::new("http://127.0.0.1:9", None, Duration::from_secs(1)).unwrap();
    assert!(client.query_passed_v1(&[]).unwrap().is_empty());
}
