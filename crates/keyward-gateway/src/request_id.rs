//! Gives every request an id (`req_…`), sent back in `x-request-id` and
//! carried by the request's tracing span.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use axum::http::{HeaderName, HeaderValue, Method, Request, Response, Uri};

/// Built once: a header name given as a string is parsed on every insert.
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the request being served, in its extensions: the gateway
/// records it in the usage ledger.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// Random bytes read from the OS 4 KiB at a time: ids need to be unique,
/// not secret, and a `getrandom` call per request costs a syscall.
struct Pool {
    bytes: [u8; 4096],
    used: usize,
}

thread_local! {
    static POOL: std::cell::RefCell<Pool> = const {
        std::cell::RefCell::new(Pool { bytes: [0; 4096], used: 4096 })
    };
}

/// A fresh `req_` + 24 base-62 characters: the time in milliseconds (8
/// characters) then 16 random ones (95 bits). Ids made later sort later, so
/// the ledger's unique index on them grows at its end instead of touching
/// a random page per row.
pub fn generate() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut random = [0u8; 16];
    POOL.with_borrow_mut(|pool| {
        keyward_core::base62::fill_from(&mut random, |chunk| {
            if pool.used == pool.bytes.len() {
                keyward_core::base62::os_random(&mut pool.bytes);
                pool.used = 0;
            }
            chunk.copy_from_slice(&pool.bytes[pool.used..pool.used + 64]);
            pool.used += 64;
        })
    });
    let mut id = String::with_capacity(28);
    id.push_str("req_");
    let time = keyward_core::base62::encode_fixed::<8>(millis);
    id.extend(time.iter().chain(&random).map(|&b| char::from(b)));
    id
}

/// The layer that gives every request its id (in its extensions, and in
/// the response's `x-request-id`) and writes the access log line when the
/// request has been answered. The line carries the id rather than a span
/// around the request: a span costs an allocation and field formatting per
/// request, while the id is all that ties a line to the ledger.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestIdLayer;

impl<S> tower::Layer<S> for RequestIdLayer {
    type Service = AssignId<S>;

    fn layer(&self, inner: S) -> AssignId<S> {
        AssignId { inner }
    }
}

/// See [`RequestIdLayer`].
#[derive(Clone, Debug)]
pub struct AssignId<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for AssignId<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Answered<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        // Started before the inner service is called: routing counts too.
        let started = Instant::now();
        let id = generate();
        let header = HeaderValue::from_str(&id).ok();
        let method = req.method().clone();
        let uri = req.uri().clone();
        req.extensions_mut().insert(RequestId(id));
        Answered {
            inner: self.inner.call(req),
            header,
            method,
            uri,
            started,
        }
    }
}

pin_project_lite::pin_project! {
    /// A request being answered; see [`RequestIdLayer`].
    pub struct Answered<F> {
        #[pin]
        inner: F,
        header: Option<HeaderValue>,
        method: Method,
        uri: Uri,
        started: Instant,
    }
}

impl<F, ResBody, E> Future for Answered<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        let id = this.header.take();
        tracing::info!(
            id = %id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or_default(),
            method = %this.method,
            path = this.uri.path(),
            status = response.status().as_u16(),
            elapsed_ms = this.started.elapsed().as_millis() as u64,
            "served"
        );
        if let Some(id) = id {
            response.headers_mut().insert(X_REQUEST_ID.clone(), id);
        }
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_unique_well_formed_and_sort_by_time() {
        let first = super::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let ids: Vec<String> = (0..10_000).map(|_| super::generate()).collect();
        for id in &ids {
            assert_eq!(id.len(), 28, "{id}");
            assert!(id.starts_with("req_"), "{id}");
            assert!(id[4..].bytes().all(|b| b.is_ascii_alphanumeric()), "{id}");
            assert!(*id > first, "{id} made after {first}");
        }
        let unique: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
    }
}
