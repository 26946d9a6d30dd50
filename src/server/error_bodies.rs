//! The connection wrapper that does two things hyper leaves to the
//! transport: JSON bodies on hyper's own error answers, and a lingering
//! close.
//!
//! hyper answers a request it cannot parse on its own, before any service
//! runs: 400 (a malformed request line or header, a bad `Content-Length`),
//! 414 (a URI over 64 KB) and 431 (headers over its buffer, or too many),
//! each as a bare head (`content-length: 0`, `connection: close`) with no
//! hook to change it. `ErrorBodies` recognises such a head as it is written
//! and writes it with a body `{"detail": "..."}` instead. Nothing else is
//! touched: every answer of ours carries a `content-type`, and a head is
//! recognised only when one write holds exactly one bodiless error head
//! that closes the connection, which a body chunk never is.
//!
//! A lingering close: when an error answer closes the connection (a 413 for
//! a declared oversize body, sent before the body is read, or one of
//! hyper's), the client may still be sending. Closing a socket with unread
//! data makes the kernel send a reset, which can destroy the answer before
//! the client reads it (ureq, which sends the whole body before reading,
//! saw "broken pipe" instead of the 413). So after such an answer the
//! connection shuts its write side, then reads and discards what still
//! comes for at most `LINGER`, as Apache's and nginx's lingering close do.
//! Every other close lingers too, for at most `CLOSE_LINGER`: when the
//! server closes an idle connection (idle timeout, shutdown), a request
//! the client sent meanwhile is read and dropped, and the client finds a
//! clean end of file with nothing answered, safe to send again, where it
//! found a reset or a broken pipe (issue 13 item 2).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Longest a connection drains what a client still sends after an error
/// answer that closes it: enough for the rest of a refused 8 MiB body at
/// about 2 MB/s, and a bound on what a client can hold a connection for.
const LINGER: Duration = Duration::from_secs(5);

/// Longest a connection drains after any other close: a request that
/// crossed the close on the wire arrives within a round trip; a client
/// that keeps an idle connection open without reading holds it this long.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// A connection that rewrites hyper's bodiless error heads and lingers
/// when it closes (see the module doc).
pub struct ErrorBodies<S> {
    inner: S,
    /// A rewritten answer accepted from hyper and not yet written out.
    pending: Vec<u8>,
    written: usize,
    /// An error answer that closes the connection was written: linger
    /// longer, the client may be sending a large body.
    linger: bool,
    /// Set once the write side is shut and draining has begun.
    linger_until: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> ErrorBodies<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            pending: Vec::new(),
            written: 0,
            linger: false,
            linger_until: None,
        }
    }

    /// Notes whether `first` (the start of a write) is the head of an error
    /// answer that closes the connection.
    fn watch(&mut self, first: &[u8]) {
        let error = [b"HTTP/1.1 4", b"HTTP/1.1 5", b"HTTP/1.0 4", b"HTTP/1.0 5"];
        if error.iter().any(|prefix| first.starts_with(*prefix)) {
            let head = &first[..first.len().min(MAX_ERROR_HEAD)];
            let head = String::from_utf8_lossy(head).to_ascii_lowercase();
            let head = head.split("\r\n\r\n").next().unwrap_or("");
            self.linger |= head.contains("\r\nconnection: close\r\n")
                || head.ends_with("\r\nconnection: close");
        }
    }
}

impl<S: AsyncRead + Unpin> ErrorBodies<S> {
    /// Reads and discards until the client closes, fails, or the lingering
    /// time ends (`LINGER` after an error answer, `CLOSE_LINGER` otherwise).
    fn poll_discard(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let linger = if self.linger { LINGER } else { CLOSE_LINGER };
        let deadline = self
            .linger_until
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(linger)));
        if deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        let mut scratch = [0u8; 8192];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(()),
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> ErrorBodies<S> {
    /// Writes out what is pending; ready once nothing is.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending = Vec::new();
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    /// Takes `buf` as a rewritten answer if it is one of hyper's error heads.
    fn take_rewritten(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Option<io::Result<usize>> {
        let answer = with_json_body(buf)?;
        self.linger = true;
        self.pending = answer;
        self.written = 0;
        // Accepted whole; what the socket does not take now goes out on flush.
        match self.poll_drain(cx) {
            Poll::Ready(Err(e)) => Some(Err(e)),
            _ => Some(Ok(buf.len())),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ErrorBodies<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ErrorBodies<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_drain(cx))?;
        if let Some(done) = self.take_rewritten(cx, buf) {
            return Poll::Ready(done);
        }
        self.watch(buf);
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_drain(cx))?;
        let mut filled = bufs.iter().filter(|b| !b.is_empty());
        let (first, second) = (filled.next(), filled.next());
        if let (Some(only), None) = (first, second) {
            if let Some(done) = self.take_rewritten(cx, only) {
                return Poll::Ready(done);
            }
        }
        if let Some(first) = first {
            self.watch(first);
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.linger_until.is_none() {
            ready!(self.poll_drain(cx))?;
            ready!(Pin::new(&mut self.inner).poll_shutdown(cx))?;
        }
        ready!(self.poll_discard(cx));
        Poll::Ready(Ok(()))
    }
}

/// Longest head recognised: hyper's error heads are about 100 bytes.
const MAX_ERROR_HEAD: usize = 512;

/// `head` with a JSON body, if it is a whole bodiless error head that
/// closes the connection and has no content type; `None` otherwise.
fn with_json_body(head: &[u8]) -> Option<Vec<u8>> {
    if head.len() > MAX_ERROR_HEAD || !head.ends_with(b"\r\n\r\n") {
        return None;
    }
    let head = std::str::from_utf8(head).ok()?;
    let rest = head
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| head.strip_prefix("HTTP/1.0 "))?;
    let status: u16 = rest.get(..3)?.parse().ok()?;
    if !(400..600).contains(&status) {
        return None;
    }
    let mut lines = head.trim_end_matches("\r\n").split("\r\n");
    let status_line = lines.next()?;
    let headers: Vec<&str> = lines.collect();
    let is = |line: &str, name: &str, value: Option<&str>| {
        line.split_once(':').is_some_and(|(n, v)| {
            n.trim().eq_ignore_ascii_case(name)
                && value.is_none_or(|value| v.trim().eq_ignore_ascii_case(value))
        })
    };
    let closes = headers.iter().any(|l| is(l, "connection", Some("close")));
    let empty = headers.iter().any(|l| is(l, "content-length", Some("0")));
    let typed = headers.iter().any(|l| is(l, "content-type", None));
    if !closes || !empty || typed {
        return None;
    }
    let detail = match status {
        400 => {
            "malformed HTTP request: its request line, a header or its framing \
             (Content-Length, Transfer-Encoding) cannot be parsed"
        }
        414 => "the request URI is too long",
        431 => "the request headers are too large (too long or too many)",
        _ => status_line.get(13..).unwrap_or("error"),
    };
    let body = serde_json::json!({ "detail": detail }).to_string();
    let mut out = String::with_capacity(head.len() + body.len() + 64);
    out.push_str(status_line);
    out.push_str("\r\n");
    for line in headers.iter().filter(|l| !is(l, "content-length", None)) {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("content-type: application/json\r\n");
    out.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    out.push_str(&body);
    Some(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_error_heads_get_a_json_body() {
        let head = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\n\
                     content-length: 0\r\ndate: Sun, 29 Nov 2026 20:47:01 GMT\r\n\r\n";
        let out = String::from_utf8(with_json_body(head).unwrap()).unwrap();
        let (new_head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(new_head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(new_head.contains("\r\nconnection: close\r\n"));
        assert!(new_head.contains("\r\ndate: Sun, 29 Nov 2026 20:47:01 GMT\r\n"));
        assert!(new_head.contains("\r\ncontent-type: application/json\r\n"));
        assert!(new_head.ends_with(&format!("content-length: {}", body.len())));
        assert!(!new_head.contains("content-length: 0"));
        let detail: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(detail["detail"]
            .as_str()
            .unwrap()
            .contains("headers are too large"));
    }

    #[test]
    fn everything_else_is_left_alone() {
        for other in [
            // Ours: typed.
            &b"HTTP/1.1 422 Unprocessable Entity\r\ncontent-type: application/json\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"[..],
            // Keeps the connection: a HEAD answer, say.
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
            // A head with its body, or a body chunk.
            b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\nx",
            b"{\"node_ids\":[]}",
        ] {
            assert_eq!(
                with_json_body(other),
                None,
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }

    #[test]
    fn lingers_longer_only_after_an_error_that_closes() {
        let mut conn = ErrorBodies::new(());
        conn.watch(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n");
        conn.watch(b"HTTP/1.1 404 Not Found\r\ncontent-length: 3\r\n\r\n");
        assert!(!conn.linger);
        conn.watch(
            b"HTTP/1.1 413 Payload Too Large\r\nconnection: close\r\ncontent-length: 3\r\n\r\n",
        );
        assert!(conn.linger);
    }
}
