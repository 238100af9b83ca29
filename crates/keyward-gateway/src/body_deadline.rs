//! A deadline on reading a request's body, apart from the upstream's
//! timeout: a client that trickles its body (one byte a minute) must not
//! hold a connection, a concurrency slot and a ledger place for ever.
//!
//! The timer is made only when the body is not already there at the first
//! read: the usual small JSON body arrives with its head and costs nothing.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// The body did not arrive whole in time.
#[derive(Debug, Clone, Copy)]
pub struct BodyTimedOut(pub Duration);

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body did not arrive within {} s",
            self.0.as_secs()
        )
    }
}

impl std::error::Error for BodyTimedOut {}

/// Whether `error`, or one of its causes, is a [`BodyTimedOut`].
pub fn timed_out(error: &(dyn std::error::Error + 'static)) -> Option<BodyTimedOut> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(t) = e.downcast_ref::<BodyTimedOut>() {
            return Some(*t);
        }
        cause = e.source();
    }
    None
}

/// `inner`, failing with [`BodyTimedOut`] once `limit` has passed since
/// `started` (the request's arrival).
pub struct DeadlineBody<B> {
    inner: B,
    started: Instant,
    limit: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B> DeadlineBody<B> {
    pub fn new(inner: B, started: Instant, limit: Duration) -> Self {
        DeadlineBody {
            inner,
            started,
            limit,
            timer: None,
        }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => return Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => {}
        }
        let deadline = this.started + this.limit;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut(this.limit))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    #[tokio::test]
    async fn a_body_that_stalls_fails_at_the_deadline_naming_it() {
        use futures_util::StreamExt;
        let first: Result<Frame<Bytes>, std::io::Error> = Ok(Frame::data(Bytes::from_static(b"{")));
        let stalled = futures_util::stream::iter([first]).chain(futures_util::stream::pending());
        let limit = Duration::from_millis(100);
        let body = DeadlineBody::new(StreamBody::new(stalled), Instant::now(), limit);
        let err = body.collect().await.expect_err("a stalled body must fail");
        assert_eq!(timed_out(&*err).map(|t| t.0), Some(limit));
    }

    #[tokio::test]
    async fn a_whole_body_is_read_without_a_timer() {
        let body = DeadlineBody::new(
            http_body_util::Full::new(Bytes::from_static(b"{}")),
            Instant::now(),
            Duration::from_secs(60),
        );
        assert_eq!(&body.collect().await.unwrap().to_bytes()[..], b"{}");
    }
}
