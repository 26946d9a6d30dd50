//! One connection, from accept to close: hyper's HTTP/1 over the transport
//! wrappers (`Clocked` for the idle and header-read timeouts, `ErrorBodies`
//! for readable errors and lingering closes), until the client leaves, a
//! timeout closes it, or the server stops.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tower::ServiceExt;

use super::clock::{Clocked, ConnectionClock, Expiry};
use super::error_bodies::ErrorBodies;

/// Longest an idle connection takes to close once its time is out. hyper
/// closes it at once (then it lingers, see `error_bodies`), unless it is
/// still writing an answer to a client that stopped reading.
const CLOSING_BOUND: Duration = Duration::from_secs(5);

/// How long a connection may wait, between requests and for headers.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub idle: Duration,
    pub header_read: Duration,
}

/// Serves `stream` until it closes. Once `stopping` turns true, answers
/// the requests it has read (with `connection: close`) and closes an idle
/// connection at once: hyper's graceful shutdown.
pub async fn serve(
    stream: TcpStream,
    app: Router,
    timeouts: Timeouts,
    mut stopping: watch::Receiver<bool>,
) {
    let clock = Arc::new(ConnectionClock::new(timeouts.idle, timeouts.header_read));
    let io = TokioIo::new(Clocked::new(ErrorBodies::new(stream), clock.clone()));
    let service = service_fn({
        let clock = clock.clone();
        move |request: hyper::Request<Incoming>| {
            let in_flight = clock.request_started();
            let app = app.clone();
            async move {
                let answer = app.oneshot(request).await;
                drop(in_flight);
                answer
            }
        }
    });
    let mut http = http1::Builder::new();
    // `clock` times headers from their first byte instead (see there).
    http.header_read_timeout(None);
    let mut connection = pin!(http.serve_connection(io, service));
    let mut stop_seen = false;
    let mut closing_by: Option<Instant> = None;
    loop {
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            // An error means the server is gone: stop as well.
            _ = stopping.wait_for(|stop| *stop), if !stop_seen => {
                stop_seen = true;
                connection.as_mut().graceful_shutdown();
            }
            expiry = clock.expired(), if closing_by.is_none() => match expiry {
                Expiry::SlowHeaders => {
                    tracing::debug!("request headers incomplete at the header-read timeout; closing");
                    return;
                }
                Expiry::Idle => {
                    connection.as_mut().graceful_shutdown();
                    closing_by = Some(Instant::now() + CLOSING_BOUND);
                }
            },
            () = tokio::time::sleep_until(closing_by.unwrap_or_else(Instant::now)),
                if closing_by.is_some() => return,
        }
    }
}
