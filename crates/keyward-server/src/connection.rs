//! One client connection's bounds in time: how long a request's head may
//! take to arrive, how long an idle keep-alive connection stays open, and
//! how long a request's body may take ([`DeadlineBody`]).
//!
//! hyper's own header timeout also times the idle wait between requests
//! (so the two could not differ), and hyper-util's protocol detection has
//! none at all (a client that connects and sends nothing is held for
//! ever); so each connection has a watchdog instead, fed by its socket and
//! its requests:
//!
//! - between requests, a connection that has sent nothing is *idle*, and is
//!   closed after `keep_alive_timeout`;
//! - from the first byte of a request (or from the connection's opening),
//!   the head must be whole within `header_read_timeout`;
//! - while a request is being answered, no limit: bodies have their own
//!   deadline, and answers (streams) take what the upstream takes.
//!
//! A connection closed by the watchdog has no request in progress, so
//! nothing is cut short and nothing is left unbilled.

use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use keyward_gateway::body_deadline::DeadlineBody;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// `[http]`: limits on client connections.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpLimits {
    /// How long a request's head (request line and headers) may take to
    /// arrive, from its first byte or the connection's opening, e.g. `10s`.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// How long a request's body may take to arrive, from its head, e.g.
    /// `60s`; separate from the upstream's timeout. Late: 408.
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// How long a connection may stay open with no request, e.g. `75s`.
    #[serde(with = "humantime_serde")]
    pub keep_alive_timeout: Duration,
    /// Open connections per HTTP worker thread; further connections wait in
    /// the listening socket's backlog until one closes (never refused).
    pub max_connections_per_worker: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(60),
            keep_alive_timeout: Duration::from_secs(75),
            max_connections_per_worker: 10_000,
        }
    }
}

/// No time recorded.
const NEVER: u64 = u64::MAX;

/// What the watchdog knows of one connection; shared with its socket
/// ([`Watched`]) and its requests ([`Watch::request_started`]).
pub struct Watch {
    epoch: Instant,
    /// Requests being answered (several at once on HTTP/2).
    in_flight: AtomicU32,
    /// When the connection last had no request (ms since `epoch`).
    idle_since: AtomicU64,
    /// When the head of the next request began to arrive, or [`NEVER`].
    head_since: AtomicU64,
}

impl Watch {
    /// A connection just opened: its first head is already being awaited.
    pub fn new() -> Arc<Watch> {
        Arc::new(Watch {
            epoch: Instant::now(),
            in_flight: AtomicU32::new(0),
            idle_since: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
        })
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn at(&self, millis: u64) -> Instant {
        self.epoch + Duration::from_millis(millis)
    }

    /// Bytes arrived from the client.
    fn read(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_since.load(Ordering::Relaxed) == NEVER
        {
            self.head_since.store(self.now(), Ordering::Relaxed);
        }
    }

    /// A request's head has been read; the returned guard ends it when its
    /// answer has been sent (or abandoned).
    pub fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_since.store(NEVER, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// When the connection is to be closed as things stand now; `None`
    /// while a request is being answered.
    fn deadline(&self, limits: &HttpLimits) -> Option<Instant> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        Some(match self.head_since.load(Ordering::Relaxed) {
            NEVER => self.at(self.idle_since.load(Ordering::Relaxed)) + limits.keep_alive_timeout,
            head => self.at(head) + limits.header_read_timeout,
        })
    }

    /// Waits until the connection has overstayed: idle too long, or a head
    /// too slow. Re-checks while requests are answered.
    pub async fn overstayed(&self, limits: &HttpLimits) {
        let recheck = limits.header_read_timeout.min(limits.keep_alive_timeout) / 2;
        loop {
            match self.deadline(limits) {
                Some(at) if at <= Instant::now() => return,
                Some(at) => tokio::time::sleep_until(at).await,
                None => tokio::time::sleep(recheck.max(Duration::from_millis(100))).await,
            }
        }
    }
}

/// One request being answered; dropped with its answer's body.
pub struct InFlight(Arc<Watch>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.idle_since.store(self.0.now(), Ordering::Relaxed);
        }
    }
}

/// A request's body with its read deadline.
pub fn timed_body<B>(body: B, limits: &HttpLimits) -> DeadlineBody<B> {
    DeadlineBody::new(body, Instant::now(), limits.body_read_timeout)
}

/// An answer's body that ends its request in the [`Watch`] when dropped:
/// sent whole, or abandoned.
pub struct Tracked<B> {
    inner: B,
    _in_flight: InFlight,
}

impl<B> Tracked<B> {
    pub fn new(inner: B, in_flight: InFlight) -> Self {
        Tracked {
            inner,
            _in_flight: in_flight,
        }
    }
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// A client socket that tells its [`Watch`] when bytes arrive.
pub struct Watched<T> {
    io: T,
    watch: Arc<Watch>,
}

impl<T> Watched<T> {
    pub fn new(io: T, watch: Arc<Watch>) -> Self {
        Watched { io, watch }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.watch.read();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> HttpLimits {
        HttpLimits {
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(75),
            ..HttpLimits::default()
        }
    }

    #[tokio::test]
    async fn a_new_connection_has_the_header_timeout_then_idle_has_keep_alive() {
        let w = Watch::new();
        let l = limits();
        let opened = w.epoch;
        assert_eq!(w.deadline(&l), Some(opened + l.header_read_timeout));
        let req = w.request_started();
        assert_eq!(w.deadline(&l), None, "no limit while a request is answered");
        drop(req);
        let idle = w.deadline(&l).unwrap();
        assert!(idle >= opened + l.keep_alive_timeout);
        w.read();
        let head = w.deadline(&l).unwrap();
        assert!(
            head < idle,
            "a head that began is timed by the header timeout"
        );
    }

    #[tokio::test]
    async fn two_requests_at_once_keep_the_connection_busy_until_both_end() {
        let w = Watch::new();
        let l = limits();
        let a = w.request_started();
        let b = w.request_started();
        drop(a);
        assert_eq!(w.deadline(&l), None);
        drop(b);
        assert!(w.deadline(&l).is_some());
    }
}
