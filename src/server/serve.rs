//! The accept loop. Hands each connection to `connection::serve` while
//! fewer than `max_connections` are open and refuses the others with a
//! readable 503; at shutdown stops accepting, lets every connection finish
//! what it has read, and drops what is still open after the grace period.
//!
//! It replaces `axum::serve`, which has no connection cap and no way to
//! time a connection, and which at shutdown waits for every connection
//! without bound: one client holding a half-sent header block kept the
//! server running for over 70 s after SIGTERM (issue 13 item 2).
//! hyper-util's `GracefulShutdown` is not used: it hides the connection it
//! watches, and an idle timeout also needs to shut a connection gracefully.

use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinError, JoinSet};

use super::connection::{self, Timeouts};
use super::error_bodies::ErrorBodies;
use super::metrics::Metrics;

/// Limits on connections (`dryci server` flags of the same names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// A request's headers must be complete this long after their first byte.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight and no byte either way for
    /// this long is closed.
    pub idle_timeout: Duration,
    /// After SIGTERM, connections still open this long are dropped.
    pub shutdown_grace: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

/// nginx's default per worker; with a descriptor each, it leaves room for
/// the database and the logs under the common limit of 1024 open files.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

/// Clients send a head in one write, a few hundred bytes: ample on any
/// network, and a slow client holds a place for no longer.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Twice the 15 s for which the plugin's client (ureq) keeps an idle
/// connection: the client normally closes first, so its next request
/// seldom meets a connection the server is closing.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Requests take milliseconds; 5 s is also well inside the 10 s Docker
/// waits after SIGTERM before it kills, so the counters are written.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Longest a refused connection is kept: long enough for the client's
/// request to arrive and be dropped, so that it reads the 503, not a reset.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` until `shutdown` resolves, then shuts down
/// within `limits.shutdown_grace`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let places = Arc::new(Semaphore::new(limits.max_connections));
    let timeouts = Timeouts {
        idle: limits.idle_timeout,
        header_read: limits.header_read_timeout,
    };
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(ended) = connections.join_next() => report_panic(ended),
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        accept_failed(e).await;
                        continue;
                    }
                };
                match places.clone().try_acquire_owned() {
                    Ok(place) => {
                        let open = Open::new(place, &metrics.open_connections);
                        let served = connection::serve(stream, app.clone(), timeouts, stopping.clone());
                        connections.spawn(async move {
                            served.await;
                            drop(open);
                        });
                    }
                    Err(_) => {
                        metrics.refused_connections.inc();
                        connections.spawn(refuse(stream, limits.max_connections));
                    }
                }
            }
        }
    }
    // New connections are refused by the kernel from here on.
    drop(listener);
    let _ = stop.send(true);
    if !connections.is_empty() {
        tracing::info!(
            open = connections.len(),
            grace_secs = limits.shutdown_grace.as_secs_f64(),
            "finishing the requests read; idle connections close"
        );
    }
    let finished = tokio::time::timeout(limits.shutdown_grace, async {
        while let Some(ended) = connections.join_next().await {
            report_panic(ended);
        }
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            dropped = connections.len(),
            "shutdown grace period over; dropping the connections still open"
        );
        connections.shutdown().await;
    }
}

/// A connection's place under the cap, counted in the open-connections gauge.
struct Open {
    _place: OwnedSemaphorePermit,
    gauge: Gauge,
}

impl Open {
    fn new(place: OwnedSemaphorePermit, gauge: &Gauge) -> Self {
        gauge.inc();
        Self {
            _place: place,
            gauge: gauge.clone(),
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Answers a connection past the cap with a 503 and closes it. The answer
/// is written before the request is read; the lingering close of
/// `ErrorBodies` then drops what the client sends, for `REFUSAL_LINGER` at
/// most, so that it reads the answer instead of a reset.
async fn refuse(stream: TcpStream, max_connections: usize) {
    let body = serde_json::json!({
        "detail": format!(
            "the server has reached its limit of {max_connections} connections \
             (--max-connections); retry shortly"
        )
    })
    .to_string();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut io = ErrorBodies::new(stream);
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        io.write_all(answer.as_bytes()).await?;
        io.shutdown().await
    })
    .await;
}

fn report_panic(ended: Result<(), JoinError>) {
    if let Err(e) = ended {
        if e.is_panic() {
            tracing::error!(error = %e, "a connection task panicked");
        }
    }
}

/// After a failed accept: nothing to do when the failure was the client's;
/// otherwise (out of file descriptors, say) a pause, as hyper and axum do,
/// so that connections closing can free what the next accept needs.
async fn accept_failed(e: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "cannot accept a connection; pausing for a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
