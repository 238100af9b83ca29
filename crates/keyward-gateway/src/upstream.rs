//! The HTTP client that calls upstreams. There is one per thread: Keyward
//! serves each connection on one thread (see `keyward-server`'s `serve`),
//! so a request, the upstream connection it borrows and that connection's
//! wake-ups all stay on the thread that accepted the client, and the pool
//! of kept-alive upstream connections is never contended.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use http_body_util::{BodyDataStream, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::time::{Instant, Sleep};

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// An HTTP/1.1 client for `http://` and `https://` upstreams (TLS with the
/// Mozilla root certificates, so no system store is needed).
pub type Client = hyper_util::client::legacy::Client<Connector, Full<Bytes>>;

thread_local! {
    static CLIENT: Client = build();
}

/// This thread's client; cloning it shares its connection pool.
pub fn client() -> Client {
    CLIENT.with(Client::clone)
}

fn build() -> Client {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    http.set_keepalive(Some(Duration::from_secs(60)));
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(https)
}

/// An upstream's streamed body, cut off with a timeout error at `deadline`
/// (the upstream's `timeout` covers the whole call, body included).
pub struct BodyUntil {
    body: BodyDataStream<Incoming>,
    deadline: Pin<Box<Sleep>>,
}

impl BodyUntil {
    pub fn new(body: Incoming, deadline: Instant) -> Self {
        BodyUntil {
            body: BodyDataStream::new(body),
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
        }
    }
}

impl Stream for BodyUntil {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match Pin::new(&mut self.body).poll_next(cx) {
            Poll::Ready(item) => {
                return Poll::Ready(item.map(|r| r.map_err(std::io::Error::other)))
            }
            Poll::Pending => {}
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the upstream did not finish in time",
            )))),
            Poll::Pending => Poll::Pending,
        }
    }
}
