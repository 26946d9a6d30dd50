//! When a connection that sends nothing useful is closed: one idle between
//! requests for the idle timeout, or one whose request headers are not
//! complete within the header-read timeout of their first byte. Issue 13
//! item 1: a connection that sent nothing, or its headers a byte at a time,
//! stayed open for good (120 of 120 after 150 s).
//!
//! hyper has a header-read timeout, but it starts when hyper begins to
//! wait for a request (hyper 1.x, `Conn::poll_read_head`), so on a
//! keep-alive connection it bounds the idle wait too: idle connections
//! would close after the short header timeout, before clients are done
//! with them (ureq keeps idle connections 15 s), and the two limits could
//! not differ. This clock keeps the phases apart: a request in flight
//! (counted by the service, from its head to its answer) stops it; a byte
//! read with none in flight starts the next request's head; any byte read
//! or written, or the end of a request, restarts the idle time.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// Why a connection's time ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// No request in flight and no byte either way for the idle timeout.
    Idle,
    /// A request's headers began but were not complete in time.
    SlowHeaders,
}

/// The timing of one connection, shared by its transport (`Clocked`), its
/// service (`request_started`) and its task (`expired`).
pub struct ConnectionClock {
    idle_timeout: Duration,
    header_read_timeout: Duration,
    state: Mutex<State>,
    /// Woken when the deadline may have come closer: a request ended, or
    /// the next one's head began.
    sooner: Notify,
}

#[derive(Debug)]
struct State {
    in_flight: usize,
    /// The last byte read or written, or the end of the last request.
    last_activity: Instant,
    /// The first byte read since the last request ended (or since accept).
    head_started: Option<Instant>,
}

impl State {
    /// When the connection expires if nothing happens; none while a
    /// request is in flight (the request timeout bounds that).
    fn deadline(&self, idle: Duration, header_read: Duration) -> Option<(Instant, Expiry)> {
        if self.in_flight > 0 {
            return None;
        }
        let idle = (self.last_activity + idle, Expiry::Idle);
        Some(match self.head_started {
            Some(start) if start + header_read <= idle.0 => {
                (start + header_read, Expiry::SlowHeaders)
            }
            _ => idle,
        })
    }

    fn read(&mut self, now: Instant) -> bool {
        self.last_activity = now;
        let begins_head = self.in_flight == 0 && self.head_started.is_none();
        if begins_head {
            self.head_started = Some(now);
        }
        begins_head
    }

    fn request_started(&mut self) {
        self.in_flight += 1;
        self.head_started = None;
    }

    fn request_ended(&mut self, now: Instant) -> bool {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.last_activity = now;
        self.in_flight == 0
    }
}

impl ConnectionClock {
    pub fn new(idle_timeout: Duration, header_read_timeout: Duration) -> Self {
        Self {
            idle_timeout,
            header_read_timeout,
            state: Mutex::new(State {
                in_flight: 0,
                last_activity: Instant::now(),
                head_started: None,
            }),
            sooner: Notify::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent whatever panicked while holding it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Marks a request as in flight until the returned guard is dropped.
    pub fn request_started(self: &Arc<Self>) -> InFlight {
        self.state().request_started();
        InFlight(self.clone())
    }

    fn bytes_read(&self) {
        if self.state().read(Instant::now()) {
            self.sooner.notify_one();
        }
    }

    fn bytes_written(&self) {
        self.state().last_activity = Instant::now();
    }

    /// Resolves once the connection has expired, and says why.
    pub async fn expired(&self) -> Expiry {
        loop {
            // Made before the state is read: a wake-up in between is kept.
            let sooner = self.sooner.notified();
            let deadline = self
                .state()
                .deadline(self.idle_timeout, self.header_read_timeout);
            match deadline {
                None => sooner.await,
                Some((at, expiry)) if at <= Instant::now() => return expiry,
                // Activity may have moved the deadline on: look again then.
                Some((at, _)) => tokio::select! {
                    () = tokio::time::sleep_until(at.into()) => {}
                    () = sooner => {}
                },
            }
        }
    }
}

/// A request in flight on a connection; dropped when its answer is ready
/// (or the request is abandoned).
pub struct InFlight(Arc<ConnectionClock>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.state().request_ended(Instant::now()) {
            self.0.sooner.notify_one();
        }
    }
}

/// A transport that tells its `ConnectionClock` about every byte.
pub struct Clocked<S> {
    inner: S,
    clock: Arc<ConnectionClock>,
}

impl<S> Clocked<S> {
    pub fn new(inner: S, clock: Arc<ConnectionClock>) -> Self {
        Self { inner, clock }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Clocked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.bytes_read();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Clocked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.clock.bytes_written();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.clock.bytes_written();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(30);
    const HEADERS: Duration = Duration::from_secs(10);

    fn fresh(at: Instant) -> State {
        State {
            in_flight: 0,
            last_activity: at,
            head_started: None,
        }
    }

    #[test]
    fn a_silent_connection_expires_as_idle() {
        let t0 = Instant::now();
        let state = fresh(t0);
        assert_eq!(
            state.deadline(IDLE, HEADERS),
            Some((t0 + IDLE, Expiry::Idle))
        );
    }

    #[test]
    fn headers_are_timed_from_their_first_byte_not_from_the_idle_start() {
        let t0 = Instant::now();
        let mut state = fresh(t0);
        let first_byte = t0 + Duration::from_secs(25);
        assert!(state.read(first_byte), "the first byte begins a head");
        assert!(!state.read(first_byte + Duration::from_secs(5)));
        assert_eq!(
            state.deadline(IDLE, HEADERS),
            Some((first_byte + HEADERS, Expiry::SlowHeaders))
        );
    }

    #[test]
    fn nothing_expires_while_a_request_is_in_flight() {
        let t0 = Instant::now();
        let mut state = fresh(t0);
        state.read(t0);
        state.request_started();
        assert_eq!(state.deadline(IDLE, HEADERS), None);
        // Body bytes are not the next request's head.
        assert!(!state.read(t0 + Duration::from_secs(1)));
        let end = t0 + Duration::from_secs(100);
        assert!(state.request_ended(end));
        assert_eq!(
            state.deadline(IDLE, HEADERS),
            Some((end + IDLE, Expiry::Idle))
        );
    }

    #[test]
    fn a_short_idle_timeout_also_bounds_stalled_headers() {
        let t0 = Instant::now();
        let mut state = fresh(t0);
        state.read(t0);
        let idle = Duration::from_secs(2);
        assert_eq!(
            state.deadline(idle, HEADERS),
            Some((t0 + idle, Expiry::Idle))
        );
    }
}
