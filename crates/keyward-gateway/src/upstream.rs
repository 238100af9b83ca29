//! HTTP/1.1 connections to upstreams, kept alive and reused. Each thread
//! keeps its own idle connections: Keyward serves each client connection
//! on one thread (see `keyward-server`'s `serve`), so a request, the
//! upstream connection it borrows and that connection's wake-ups all stay
//! on the thread that accepted the client, and no lock is ever taken.
//!
//! A connection is lent for one request ([`Lease`]) and comes back to the
//! pool only when its answer has been read to the end; one whose answer
//! was cut short is closed. (hyper-util's pooled client does the same, but
//! spawns a task per request to wait for the connection to become idle and
//! takes a lock to put it back; under load that showed in profiles.)

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use http_body_util::{BodyDataStream, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, HOST};
use hyper::{Request, Response, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
type Sender = SendRequest<Full<Bytes>>;

/// Why a call could not be made.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// An idle connection is dropped after this long unused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How often [`close_idle_connections`] looks for connections idle too long.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Idle connections kept per upstream and thread; more are closed.
const MAX_IDLE: usize = 256;

/// Where an upstream listens: what to connect to and what to send as `Host`.
#[derive(Debug)]
pub struct Origin {
    /// Tells apart the pools of different upstreams.
    id: u64,
    /// `scheme://authority`, for the connector.
    address: Uri,
    host: HeaderValue,
}

impl Origin {
    /// The origin of `uri`, which must be absolute.
    pub fn of(uri: &Uri) -> Result<Origin, String> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let authority = uri.authority().ok_or("the URL has no host")?;
        let address = Uri::builder()
            .scheme(uri.scheme_str().unwrap_or("http"))
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| e.to_string())?;
        let host = HeaderValue::from_str(authority.as_str()).map_err(|e| e.to_string())?;
        Ok(Origin {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            address,
            host,
        })
    }
}

/// A connection lent for one request. [`Lease::release`] gives it back once
/// the answer has been read to its end; dropped instead, it is closed.
pub struct Lease {
    sender: Option<Sender>,
    origin: u64,
}

impl Lease {
    pub fn release(mut self) {
        if let Some(sender) = self.sender.take() {
            POOL.with_borrow_mut(|pool| pool.put(self.origin, sender));
        }
    }
}

#[derive(Default)]
struct Pool {
    idle: HashMap<u64, Vec<(Sender, Instant)>, foldhash::fast::RandomState>,
}

impl Pool {
    fn take(&mut self, origin: u64) -> Option<Sender> {
        let idle = self.idle.get_mut(&origin)?;
        while let Some((sender, since)) = idle.pop() {
            if !sender.is_closed() && since.elapsed() < IDLE_TIMEOUT {
                return Some(sender);
            }
        }
        None
    }

    fn put(&mut self, origin: u64, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let idle = self.idle.entry(origin).or_default();
        if idle.len() < MAX_IDLE {
            idle.push((sender, Instant::now()));
        }
    }

    /// Closes the connections idle since before `cutoff`, and forgets those
    /// their upstream closed. `take` only looks at the most recently used
    /// ones, so after a burst the rest would otherwise stay open.
    fn expire(&mut self, cutoff: Instant) {
        for idle in self.idle.values_mut() {
            idle.retain(|(sender, since)| !sender.is_closed() && *since >= cutoff);
        }
    }
}

/// Closes this thread's upstream connections once they have been idle for
/// [`IDLE_TIMEOUT`]; runs for as long as the thread's runtime does. Every
/// thread that sends requests to upstreams runs one.
pub async fn close_idle_connections() {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Some(cutoff) = Instant::now().checked_sub(IDLE_TIMEOUT) {
            POOL.with_borrow_mut(|pool| pool.expire(cutoff));
        }
    }
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool::default());
    static CONNECTOR: Connector = connector();
}

/// Plain TCP or TLS (with the Mozilla root certificates, so no system
/// store is needed), `TCP_NODELAY` on.
fn connector() -> Connector {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    http.set_keepalive(Some(Duration::from_secs(60)));
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http)
}

/// Opens a new connection to `origin`; its I/O runs as a task of its own.
async fn connect(origin: &Origin) -> Result<Sender, Error> {
    let connector = CONNECTOR.with(Connector::clone);
    let io = connector.oneshot(origin.address.clone()).await?;
    let (sender, connection) = http1::handshake(io).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "upstream connection ended");
        }
    });
    Ok(sender)
}

/// Sends `request` (origin-form: a path, no scheme or host) to `origin` on
/// an idle connection, or a new one. A request that never left because its
/// idle connection turned out to be closed (an upstream may close a
/// kept-alive connection at any moment) is sent again on a new connection.
pub async fn send(
    origin: &Origin,
    mut request: Request<Full<Bytes>>,
) -> Result<(Response<Incoming>, Lease), Error> {
    request.headers_mut().insert(HOST, origin.host.clone());
    let idle = POOL.with_borrow_mut(|pool| pool.take(origin.id));
    if let Some(sender) = idle {
        match send_on(sender, request, origin).await {
            Ok(answered) => return Ok(answered),
            Err((Some(unsent), _)) => request = unsent,
            Err((None, e)) => return Err(e),
        }
    }
    // Boxed: connecting is rare, and its future (TLS handshake included)
    // would otherwise make every request's future, moved as a whole, twice
    // as large.
    let sender = Box::pin(connect(origin)).await?;
    send_on(sender, request, origin).await.map_err(|(_, e)| e)
}

/// Sends `request` on one connection; on failure, gives the request back
/// if it was not sent.
async fn send_on(
    mut sender: Sender,
    request: Request<Full<Bytes>>,
    origin: &Origin,
) -> Result<(Response<Incoming>, Lease), (Option<Request<Full<Bytes>>>, Error)> {
    if let Err(e) = sender.ready().await {
        return Err((Some(request), e.into()));
    }
    match sender.try_send_request(request).await {
        Ok(response) => Ok((
            response,
            Lease {
                sender: Some(sender),
                origin: origin.id,
            },
        )),
        Err(mut e) => {
            let unsent = e.take_message();
            Err((unsent, e.into_error().into()))
        }
    }
}

/// An upstream's streamed body, cut off with a timeout error at `deadline`
/// (the upstream's `timeout` covers the whole call, body included). Its
/// connection goes back to the pool when the body has been read to the end.
pub struct BodyUntil {
    body: BodyDataStream<Incoming>,
    deadline: Pin<Box<Sleep>>,
    lease: Option<Lease>,
}

impl BodyUntil {
    pub fn new(body: Incoming, deadline: Instant, lease: Lease) -> Self {
        BodyUntil {
            body: BodyDataStream::new(body),
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            lease: Some(lease),
        }
    }
}

impl Stream for BodyUntil {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match Pin::new(&mut self.body).poll_next(cx) {
            Poll::Ready(None) => {
                if let Some(lease) = self.lease.take() {
                    lease.release();
                }
                return Poll::Ready(None);
            }
            Poll::Ready(Some(item)) => {
                return Poll::Ready(Some(item.map_err(std::io::Error::other)))
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// What the test upstream saw: one entry per connection, each the
    /// request heads read on it.
    type Seen = Arc<Mutex<Vec<Vec<String>>>>;

    /// A raw HTTP/1.1 upstream answering `{"ok":n}` to each request; with
    /// `one_per_connection` it closes every connection after one answer,
    /// without saying so (as an upstream whose keep-alive timeout just ran
    /// out would).
    async fn upstream(one_per_connection: bool) -> (Origin, Seen) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Seen = Arc::default();
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let (mut tcp, _) = listener.accept().await.unwrap();
                let n = {
                    let mut log = log.lock().unwrap();
                    log.push(Vec::new());
                    log.len() - 1
                };
                let log = log.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let mut chunk = [0u8; 4096];
                        let read = tcp.read(&mut chunk).await.unwrap_or(0);
                        if read == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..read]);
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        let length: usize = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length: ")
                                    .map(|v| v.trim().parse().unwrap())
                            })
                            .unwrap_or(0);
                        if buf.len() < end + 4 + length {
                            continue;
                        }
                        buf.drain(..end + 4 + length);
                        let answered = {
                            let mut log = log.lock().unwrap();
                            log[n].push(head);
                            log.iter().map(Vec::len).sum::<usize>()
                        };
                        let body = format!("{{\"ok\":{answered}}}");
                        let response = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        tcp.write_all(response.as_bytes()).await.unwrap();
                        if one_per_connection {
                            return;
                        }
                    }
                });
            }
        });
        let origin = Origin::of(&format!("http://{addr}/v1").parse().unwrap()).unwrap();
        (origin, seen)
    }

    fn post() -> Request<Full<Bytes>> {
        Request::post("/v1/chat/completions")
            .body(Full::new(Bytes::from_static(b"{\"model\":\"m\"}")))
            .unwrap()
    }

    async fn call(origin: &Origin, read_to_end: bool) -> String {
        let (response, lease) = send(origin, post()).await.unwrap();
        assert_eq!(response.status(), 200);
        if !read_to_end {
            return String::new();
        }
        let body = response.into_body().collect().await.unwrap().to_bytes();
        lease.release();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_connection_is_reused_once_its_answer_is_read() {
        let (origin, seen) = upstream(false).await;
        for n in 1..=3 {
            assert_eq!(call(&origin, true).await, format!("{{\"ok\":{n}}}"));
        }
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1, "one connection for three calls: {seen:?}");
        let head = &seen[0][0];
        assert!(
            head.starts_with("POST /v1/chat/completions HTTP/1.1\r\n"),
            "{head}"
        );
        let host = format!("host: {}", origin.host.to_str().unwrap());
        assert!(head.to_ascii_lowercase().contains(&host), "{head}");
    }

    #[tokio::test]
    async fn a_connection_whose_answer_was_not_read_is_not_reused() {
        let (origin, seen) = upstream(false).await;
        call(&origin, false).await;
        call(&origin, true).await;
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_connection_closed_by_the_upstream_is_replaced() {
        let (origin, seen) = upstream(true).await;
        for n in 1..=4 {
            assert_eq!(call(&origin, true).await, format!("{{\"ok\":{n}}}"));
            // Give the closed connection time to be noticed, or not: both
            // must work.
            if n % 2 == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 4, "{seen:?}");
        assert!(seen.iter().all(|c| c.len() == 1), "{seen:?}");
    }

    #[tokio::test]
    async fn a_request_is_sent_again_when_its_idle_connection_was_closed() {
        let (origin, seen) = upstream(false).await;
        // An idle connection in the pool that its upstream has closed, which
        // nothing has noticed yet: the request must go out on a new one.
        let gone = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = tokio::net::TcpStream::connect(gone.local_addr().unwrap())
            .await
            .unwrap();
        drop(gone.accept().await.unwrap());
        let (sender, connection) = http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(connection);
        POOL.with_borrow_mut(|pool| pool.put(origin.id, sender));
        assert_eq!(POOL.with_borrow(|pool| pool.idle[&origin.id].len()), 1);

        assert_eq!(call(&origin, true).await, "{\"ok\":1}");
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn connections_idle_too_long_are_closed() {
        let (origin, seen) = upstream(false).await;
        call(&origin, true).await;
        // Idle for less than the timeout: kept, and used again.
        POOL.with_borrow_mut(|pool| pool.expire(Instant::now() - Duration::from_secs(1)));
        call(&origin, true).await;
        assert_eq!(seen.lock().unwrap().len(), 1);
        // Idle since before the cutoff: closed, so the next call opens a
        // new connection.
        POOL.with_borrow_mut(|pool| pool.expire(Instant::now() + Duration::from_secs(1)));
        assert!(POOL.with_borrow(|pool| pool.idle[&origin.id].is_empty()));
        call(&origin, true).await;
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn an_upstream_that_is_not_listening_is_an_error() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let origin = Origin::of(&format!("http://{addr}/v1").parse().unwrap()).unwrap();
        assert!(send(&origin, post()).await.is_err());
    }
}
