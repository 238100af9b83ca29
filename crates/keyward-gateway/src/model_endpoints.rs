//! The model endpoints' POSTs, served before the router sees them.
//!
//! Every call through the gateway is one of three POSTs. Through axum's
//! router each paid for route matching, a boxed request body, a cloned and
//! boxed route service and three layers of futures around the handler:
//! about 4% of the gateway's instructions per request (callgrind). Other
//! requests, and other methods on these paths (answered 405 by the
//! router), go to the router as before.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::http::{Method, Request};
use axum::response::Response;
use futures_util::future::Either;
use tower::Service;

use crate::request::Endpoint;
use crate::{proxy, Gateway};

/// Serves `POST /v1/chat/completions`, `/v1/completions` and
/// `/v1/embeddings` itself and passes every other request to `inner`.
#[derive(Clone)]
pub struct ModelEndpoints<S> {
    gateway: Gateway,
    inner: S,
}

impl<S> ModelEndpoints<S> {
    pub fn new(gateway: Gateway, inner: S) -> Self {
        ModelEndpoints { gateway, inner }
    }
}

/// The endpoint a POST to `path` calls, if it is one: `/v1` and the path
/// the endpoint has under an upstream's base URL. `Endpoint::Batches` is
/// the ledger's name for a batch's bill, not a model call: a POST to
/// `/v1/batches` creates a batch (the router's `stored` routes).
fn endpoint_of(path: &str) -> Option<Endpoint> {
    let path = path.strip_prefix("/v1")?;
    Endpoint::ALL
        .into_iter()
        .find(|e| e.path() == path && *e != Endpoint::Batches)
}

type Served = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl<S, B> Service<Request<B>> for ModelEndpoints<S>
where
    S: Service<Request<B>, Response = Response, Error = Infallible>,
    B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Served, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if req.method() == Method::POST {
            if let Some(endpoint) = endpoint_of(req.uri().path()) {
                let gateway = self.gateway.clone();
                return Either::Left(Box::pin(async move {
                    Ok(proxy::serve(gateway, endpoint, req).await)
                }));
            }
        }
        Either::Right(self.inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_model_paths_are_served_directly() {
        assert_eq!(
            endpoint_of("/v1/chat/completions"),
            Some(Endpoint::ChatCompletions)
        );
        assert_eq!(endpoint_of("/v1/completions"), Some(Endpoint::Completions));
        assert_eq!(endpoint_of("/v1/embeddings"), Some(Endpoint::Embeddings));
        assert_eq!(endpoint_of("/v1/responses"), Some(Endpoint::Responses));
        assert_eq!(
            endpoint_of("/v1/audio/transcriptions"),
            Some(Endpoint::AudioTranscriptions)
        );
        for other in [
            "/v1/batches",
            "/v1/responses/resp_1",
            "/v1/chat/completions/",
            "/v1/models",
            "/v1/chat",
            "/V1/completions",
            "/v1/organization/usage/completions",
            "/v1/batches",
        ] {
            assert_eq!(endpoint_of(other), None, "{other}");
        }
    }
}
