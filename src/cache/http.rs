//! The blocking HTTP client of the team cache server (`dryci server`, or
//! the original DryCI server: v1 is byte-compatible).
//!
//! Blocking on purpose: the pytest plugin calls it from a plain thread and
//! must not carry an async runtime. Every call has one overall deadline
//! (connect + send + read), so a slow or dead server costs the test run at
//! most `timeout` per call; the plugin then runs the tests without the cache.
//!
//! A call whose connection breaks before the answer (reset, or closed with
//! nothing answered) is sent once more within what is left of that
//! deadline: a server closes idle keep-alive connections (its idle timeout,
//! its shutdown), and a request can cross the close on the wire. Every call
//! is idempotent: queries read, and a publish of the same ids stores them
//! once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::protocol::{v1, v2, RunCounts};

/// Longest answer read: a query of many hashes with many ids each stays far below.
const MAX_RESPONSE_BYTES: u64 = 256 * 1024 * 1024;
/// How much of an error body is quoted in messages.
const BODY_EXCERPT_CHARS: usize = 300;
/// Most requests one query may be split into (see `HttpClient::in_parts`).
const MAX_QUERY_PARTS: usize = 64;
/// Least time left of a call's deadline worth a second attempt.
const MIN_RETRY_BUDGET: Duration = Duration::from_millis(50);

/// What went wrong talking to the cache server; every message names the URL.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("invalid cache server URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("{method} {url}: no answer within {timeout:?}")]
    Timeout {
        method: &'static str,
        url: String,
        timeout: Duration,
    },
    #[error("{method} {url}: {reason}")]
    Transport {
        method: &'static str,
        url: String,
        reason: String,
    },
    #[error("{method} {url}: HTTP {status}: {body}")]
    Status {
        method: &'static str,
        url: String,
        status: u16,
        body: String,
        /// The `field` of the server's JSON error body, if it has one.
        field: Option<String>,
    },
    #[error("{method} {url}: the answer is not the expected JSON: {reason}")]
    BadJson {
        method: &'static str,
        url: String,
        reason: String,
    },
    #[error("{method} {url}: asked about {expected} test-file hashes, the answer has {got} lists")]
    WrongLength {
        method: &'static str,
        url: String,
        expected: usize,
        got: usize,
    },
}

impl HttpError {
    /// The HTTP status, when the server answered with an error status.
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the server refused a query as too big as a whole: a 422
    /// naming `test_file_hashes` itself, not one of its items. `dryci
    /// server` says so for more hashes than `--max-hashes-per-query` and for
    /// an answer over `--max-ids-per-answer`; asking in parts then works.
    fn is_query_too_big(&self) -> bool {
        matches!(
            self,
            HttpError::Status { status: 422, field: Some(field), .. } if field == "test_file_hashes"
        )
    }
}

/// A client bound to one server and one token.
#[derive(Debug, Clone)]
pub struct HttpClient {
    base_url: String,
    token: Option<String>,
    timeout: Duration,
    agent: ureq::Agent,
}

fn is_loopback_host(rest: &str) -> bool {
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl HttpClient {
    /// `base_url` is the server's root, e.g. `http://cache.example:8080`.
    pub fn new(
        base_url: &str,
        token: Option<String>,
        timeout: Duration,
    ) -> Result<Self, HttpError> {
        let invalid = |reason: &str| HttpError::InvalidUrl {
            url: base_url.to_string(),
            reason: reason.to_string(),
        };
        let rest = base_url
            .strip_prefix("http://")
            .or_else(|| base_url.strip_prefix("https://"))
            .ok_or_else(|| invalid("it must start with http:// or https://"))?;
        if rest.is_empty() || rest.starts_with('/') {
            return Err(invalid("it has no host"));
        }
        if timeout.is_zero() {
            return Err(invalid("the timeout must be greater than zero"));
        }
        let mut config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            // Error statuses are answers to read (their body says why), not transport errors.
            .http_status_as_error(false)
            .user_agent(concat!("dryci/", env!("CARGO_PKG_VERSION")));
        if is_loopback_host(rest) {
            // A proxy from the environment must never see a local server's traffic.
            config = config.proxy(None);
        }
        Ok(Self {
            base_url: base_url.trim_end_matches('/').to_string(),
            token,
            timeout,
            agent: config.build().new_agent(),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `GET /api/v2/capabilities`; `None` when the server only speaks v1 (404).
    pub fn capabilities(&self) -> Result<Option<v2::Capabilities>, HttpError> {
        let url = format!("{}/api/v2/capabilities", self.base_url);
        let answer = self.exchange("GET", &url, |budget| {
            self.authorize(self.agent.get(&url))
                .config()
                .timeout_global(Some(budget))
                .build()
                .call()
        })?;
        if answer.status == 404 {
            return Ok(None);
        }
        self.read_json("GET", &url, answer).map(Some)
    }

    /// `POST /api/v1/query-passed`: the passed node-id hashes of each test-file hash, in order.
    pub fn query_passed_v1(
        &self,
        test_file_hashes: &[String],
    ) -> Result<Vec<Vec<String>>, HttpError> {
        self.in_parts(test_file_hashes, |part| {
            let body = v1::QueryPassedRequest {
                test_file_hashes: part.to_vec(),
            };
            let (url, answer): (_, v1::QueryPassedResponse) =
                self.post("/api/v1/query-passed", &body)?;
            self.check_length(&url, part.len(), answer.node_ids.len())?;
            Ok(answer.node_ids)
        })
    }

    /// `POST /api/v1/publish`: merges these passed ids into the server's store.
    pub fn publish_v1(
        &self,
        passed: BTreeMap<String, Vec<String>>,
        counts: RunCounts,
    ) -> Result<(), HttpError> {
        let body = v1::PublishRequest::new(passed, counts);
        let (_, _answer): (_, v1::PublishResponse) = self.post("/api/v1/publish", &body)?;
        Ok(())
    }

    /// `POST /api/v2/query-passed`: like v1, with each test's last duration
    /// and, for tests recorded with one, their sealed requirement set. The
    /// answer's `requirement_sets` is `None` when the server keeps no sets.
    pub fn query_passed_v2(
        &self,
        test_file_hashes: &[String],
    ) -> Result<v2::QueryPassedResponse, HttpError> {
        let sets: std::cell::RefCell<Option<v2::SealedSets>> = Default::default();
        let passed = self.in_parts(test_file_hashes, |part| {
            let body = v2::QueryPassedRequest {
                test_file_hashes: part.to_vec(),
                with_requirements: true,
            };
            let (url, answer): (_, v2::QueryPassedResponse) =
                self.post("/api/v2/query-passed", &body)?;
            self.check_length(&url, part.len(), answer.passed.len())?;
            if let Some(part_sets) = answer.requirement_sets {
                sets.borrow_mut()
                    .get_or_insert_with(Default::default)
                    .extend(part_sets);
            }
            Ok(answer.passed)
        })?;
        Ok(v2::QueryPassedResponse {
            passed,
            requirement_sets: sets.into_inner(),
        })
    }

    /// Asks `ask` about `hashes`, in halves (recursively) while the server
    /// refuses a part as too big (`HttpError::is_query_too_big`), and joins
    /// the answers in order. At most `MAX_QUERY_PARTS` requests are sent:
    /// beyond that the refusal is returned, and the tests run.
    fn in_parts<T>(
        &self,
        hashes: &[String],
        ask: impl Fn(&[String]) -> Result<Vec<T>, HttpError>,
    ) -> Result<Vec<T>, HttpError> {
        let mut requests = 0;
        let mut answers = Vec::with_capacity(hashes.len());
        let mut todo = vec![hashes];
        // Depth first, left half first: answers come in the order asked.
        while let Some(part) = todo.pop() {
            if part.is_empty() {
                continue;
            }
            requests += 1;
            match ask(part) {
                Ok(answer) => answers.extend(answer),
                Err(e) if part.len() > 1 && requests < MAX_QUERY_PARTS && e.is_query_too_big() => {
                    let (left, right) = part.split_at(part.len() / 2);
                    todo.push(right);
                    todo.push(left);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(answers)
    }

    /// `POST /api/v2/publish`; returns how many ids were new to the server.
    pub fn publish_v2(
        &self,
        passed: BTreeMap<String, Vec<v2::PassedTest>>,
        requirement_sets: v2::SealedSets,
        counts: RunCounts,
    ) -> Result<u64, HttpError> {
        let body = v2::PublishRequest {
            passed,
            counts,
            requirement_sets,
        };
        let (_, answer): (_, v2::PublishResponse) = self.post("/api/v2/publish", &body)?;
        Ok(answer.stored)
    }

    fn authorize<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(token) => request.header("Authorization", format!("Bearer {token}")),
            None => request,
        }
    }

    fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<(String, T), HttpError> {
        let url = format!("{}{path}", self.base_url);
        let answer = self.exchange("POST", &url, |budget| {
            self.authorize(self.agent.post(&url))
                .config()
                .timeout_global(Some(budget))
                .build()
                .send_json(body)
        })?;
        let answer = self.read_json("POST", &url, answer)?;
        Ok((url, answer))
    }

    /// Sends a request with `send` (given the time it may take) and reads
    /// its whole answer, within `self.timeout`; once more if the connection
    /// broke before the answer and time is left (see the module doc).
    fn exchange(
        &self,
        method: &'static str,
        url: &str,
        send: impl Fn(Duration) -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Answer, HttpError> {
        let deadline = Instant::now() + self.timeout;
        let attempt = |budget| send(budget).and_then(Answer::read);
        let first = attempt(self.timeout);
        let left = deadline.saturating_duration_since(Instant::now());
        let answer = match first {
            Err(e) if is_connection_lost(&e) && left >= MIN_RETRY_BUDGET => attempt(left),
            first => first,
        };
        answer.map_err(|e| self.transport(method, url, e))
    }

    fn read_json<T: DeserializeOwned>(
        &self,
        method: &'static str,
        url: &str,
        answer: Answer,
    ) -> Result<T, HttpError> {
        let Answer {
            status,
            body: bytes,
        } = answer;
        if !(200..300).contains(&status) {
            let field = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("field")?.as_str().map(str::to_string));
            let text = String::from_utf8_lossy(&bytes);
            let mut body: String = text.trim().chars().take(BODY_EXCERPT_CHARS).collect();
            if text.trim().chars().count() > BODY_EXCERPT_CHARS {
                body.push_str("...");
            }
            return Err(HttpError::Status {
                method,
                url: url.to_string(),
                status,
                body,
                field,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| HttpError::BadJson {
            method,
            url: url.to_string(),
            reason: e.to_string(),
        })
    }

    fn check_length(&self, url: &str, expected: usize, got: usize) -> Result<(), HttpError> {
        if expected != got {
            return Err(HttpError::WrongLength {
                method: "POST",
                url: url.to_string(),
                expected,
                got,
            });
        }
        Ok(())
    }

    fn transport(&self, method: &'static str, url: &str, error: ureq::Error) -> HttpError {
        match error {
            ureq::Error::Timeout(_) => HttpError::Timeout {
                method,
                url: url.to_string(),
                timeout: self.timeout,
            },
            ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => HttpError::Timeout {
                method,
                url: url.to_string(),
                timeout: self.timeout,
            },
            other => HttpError::Transport {
                method,
                url: url.to_string(),
                reason: other.to_string(),
            },
        }
    }
}

/// An answer read whole: its status and body.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl Answer {
    fn read(mut response: ureq::http::Response<ureq::Body>) -> Result<Answer, ureq::Error> {
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec()?;
        Ok(Answer {
            status: response.status().as_u16(),
            body,
        })
    }
}

/// Whether `error` says the connection broke before the answer was read:
/// reset (also a connection the server accepted and then dropped at its
/// shutdown), aborted, a broken pipe while sending, or an end of file
/// before the answer. Not a refused connection (nothing listens: a second
/// try would be refused too), not a timeout (the time is used up), not an
/// HTTP status (an answer).
fn is_connection_lost(error: &ureq::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    matches!(
        error,
        ureq::Error::Io(e)
            if matches!(e.kind(), ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_urls_without_scheme_or_host() {
        let t = Duration::from_secs(1);
        assert!(matches!(
            HttpClient::new("cache:8080", None, t),
            Err(HttpError::InvalidUrl { .. })
        ));
        assert!(matches!(
            HttpClient::new("http://", None, t),
            Err(HttpError::InvalidUrl { .. })
        ));
        assert!(matches!(
            HttpClient::new("http://x", None, Duration::ZERO),
            Err(HttpError::InvalidUrl { .. })
        ));
        let c = HttpClient::new("http://127.0.0.1:9/", None, t).unwrap();
        assert_eq!(c.base_url(), "http://127.0.0.1:9");
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback_host("127.0.0.1:8080/x"));
        assert!(is_loopback_host("localhost"));
        assert!(is_loopback_host("[::1]:80"));
        assert!(!is_loopback_host("cache.example.com:80"));
    }

    #[test]
    fn connection_refused_names_the_url() {
        // Port 9 (discard) on loopback: nothing listens there in the test sandbox.
        let c = HttpClient::new("http://127.0.0.1:9", None, Duration::from_secs(2)).unwrap();
        let err = c.query_passed_v1(&["a".repeat(64)]).unwrap_err();
        assert!(
            err.to_string()
                .contains("http://127.0.0.1:9/api/v1/query-passed"),
            "{err}"
        );
    }
}
