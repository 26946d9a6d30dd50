//! The HTTP client's own error paths, against tiny fake servers on
//! 127.0.0.1: timeouts, error statuses, bad JSON, answers of the wrong
//! length, a v1-only server (capabilities -> None), and a connection lost
//! before the answer (sent once more).
#![cfg(feature = "server")]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dryci::cache::http::{HttpClient, HttpError};
use dryci::protocol::RunCounts;

/// How a fake server breaks a connection before answering.
#[derive(Debug, Clone, Copy)]
enum Break {
    /// Reads the head only and drops the connection: the unread body makes
    /// the kernel reset it.
    Reset,
    /// Reads the whole request, then closes without a word (end of file).
    Close,
}

/// Serves `answer` (status line + body) to every connection, for a bounded number of them.
fn fake(status: &'static str, body: &'static str, delay: Duration) -> String {
    counting(0, Break::Close, status, body, delay).0
}

/// Like `fake`, but breaks its first `breaks` connections as `how`;
/// returns its URL and how many connections it has taken.
fn counting(
    breaks: usize,
    how: Break,
    status: &'static str,
    body: &'static str,
    delay: Duration,
) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let taken = Arc::new(AtomicUsize::new(0));
    let count = taken.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(8) {
            let Ok(stream) = stream else { break };
            let nth = count.fetch_add(1, Ordering::SeqCst);
            let broken = (nth < breaks).then_some(how);
            // One thread each: a slow answer does not hold the next connection back.
            std::thread::spawn(move || answer(stream, broken, status, body, delay));
        }
    });
    (url, taken)
}

/// Reads a request off `stream`, then answers it or breaks the connection.
fn answer(mut stream: TcpStream, broken: Option<Break>, status: &str, body: &str, delay: Duration) {
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
    match broken {
        Some(Break::Reset) => return,
        Some(Break::Close) => {
            let _ = reader.read_exact(&mut vec![0; length]);
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
        None => {}
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

/// Issue 13 item 2: a request that crossed the server's close of an idle
/// connection (its idle timeout, or its shutdown) failed the call.
#[test]
fn a_connection_lost_before_the_answer_is_sent_once_more() {
    for how in [Break::Reset, Break::Close] {
        let (url, taken) = counting(1, how, "200 OK", r#"{"node_ids": [[]]}"#, Duration::ZERO);
        let client = HttpClient::new(&url, None, Duration::from_secs(5)).unwrap();
        let answer = client.query_passed_v1(&hashes(1));
        assert_eq!(answer.unwrap(), vec![Vec::<String>::new()], "{how:?}");
        assert_eq!(taken.load(Ordering::SeqCst), 2, "{how:?}");

        let (url, taken) = counting(1, how, "200 OK", r#"{"stored": 1}"#, Duration::ZERO);
        let client = HttpClient::new(&url, None, Duration::from_secs(5)).unwrap();
        let mut passed = BTreeMap::new();
        passed.insert(format!("{:064x}", 1), vec![]);
        assert_eq!(
            client
                .publish_v2(passed, BTreeMap::new(), RunCounts::default())
                .unwrap(),
            1,
            "{how:?}"
        );
        assert_eq!(taken.load(Ordering::SeqCst), 2, "{how:?}");
    }
}

#[test]
fn a_connection_lost_twice_is_an_error() {
    let (url, taken) = counting(
        2,
        Break::Close,
        "200 OK",
        r#"{"node_ids": [[]]}"#,
        Duration::ZERO,
    );
    let client = HttpClient::new(&url, None, Duration::from_secs(5)).unwrap();
    let err = client.query_passed_v1(&hashes(1)).unwrap_err();
    assert!(matches!(err, HttpError::Transport { .. }), "{err:?}");
    assert!(err.to_string().contains(&url), "{err}");
    assert_eq!(taken.load(Ordering::SeqCst), 2);
}

#[test]
fn answers_and_timeouts_are_not_sent_again() {
    let (url, taken) = counting(
        0,
        Break::Close,
        "500 Internal Server Error",
        "{}",
        Duration::ZERO,
    );
    let client = HttpClient::new(&url, None, Duration::from_secs(5)).unwrap();
    assert_eq!(
        client.query_passed_v1(&hashes(1)).unwrap_err().status(),
        Some(500)
    );
    assert_eq!(taken.load(Ordering::SeqCst), 1);

    let (url, taken) = counting(0, Break::Close, "200 OK", "{}", Duration::from_secs(3));
    let client = HttpClient::new(&url, None, Duration::from_millis(300)).unwrap();
    let err = client.query_passed_v1(&hashes(1)).unwrap_err();
    assert!(matches!(err, HttpError::Timeout { .. }), "{err:?}");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(taken.load(Ordering::SeqCst), 1);
}
