//! HTTP served by one thread per CPU, each with its own single-threaded
//! runtime and its own listening socket on the same address
//! (`SO_REUSEPORT`: the kernel spreads new connections over them), as
//! nginx's workers do with `reuseport`. A connection lives on the thread
//! that accepted it, together with the upstream connections its requests
//! borrow (the gateway's client is per thread), so a proxied request never
//! wakes another thread. On a work-stealing runtime requests hop between
//! threads: a scratch hyper proxy served about a quarter fewer requests
//! per second that way than laid out like this (bench/gateway conditions).
//!
//! Each connection is bounded in time ([`crate::connection`]) and each
//! worker in connections: past `max_connections_per_worker` it stops
//! accepting, and new connections wait in the kernel's backlog. A graceful
//! stop that outlasts its grace drops the connections left; answers cut
//! that way are billed as the client having gone (499) before exit.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::Service;

use crate::api::App;
use crate::client_addr::{ForwardedHeader, TrustedProxies};
use crate::connection::{self, HttpLimits, Watch, Watched};

/// Where the workers are in their life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Serving,
    /// Stop accepting; finish the requests in flight.
    Draining,
    /// The grace is over: drop the connections left.
    Abort,
    /// Everything is stored: the runtimes may end.
    Done,
}

/// The running workers.
pub struct Workers {
    phase: watch::Sender<Phase>,
    drained: Vec<tokio::sync::oneshot::Receiver<()>>,
    threads: Vec<JoinHandle<()>>,
}

/// Reserves `addr` for [`start`]: fails if any other socket listens there,
/// even one that would share it (another Keyward), and resolves port 0.
pub fn claim(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let probe = std::net::TcpListener::bind(addr)?;
    probe.local_addr()
}

fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// How connections are bounded, and whom their addresses are believed from.
pub struct Edge {
    pub limits: HttpLimits,
    pub trusted_proxies: TrustedProxies,
    pub forwarded_header: ForwardedHeader,
}

/// Starts `count` workers serving `app` on `addr` (from [`claim`]).
pub fn start(addr: SocketAddr, count: usize, app: App, edge: Edge) -> std::io::Result<Workers> {
    let edge = Arc::new(edge);
    // Without SO_REUSEPORT the workers would share one socket instead.
    let count = if cfg!(unix) { count.max(1) } else { 1 };
    let (phase, _) = watch::channel(Phase::Serving);
    let mut workers = Workers {
        phase,
        drained: Vec::new(),
        threads: Vec::new(),
    };
    for n in 0..count {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let listener = {
            let _in_runtime = runtime.enter();
            bind(addr)?
        };
        let (drained_tx, drained_rx) = tokio::sync::oneshot::channel();
        let mut phase = workers.phase.subscribe();
        let app = app.clone();
        let edge = edge.clone();
        let thread = std::thread::Builder::new()
            .name(format!("keyward-http-{n}"))
            .spawn(move || {
                runtime.block_on(async move {
                    // Besides closing idle upstream connections, this keeps
                    // a timer pending on the runtime at all times. Without
                    // one, the timer of a request arriving at an idle
                    // thread (its upstream deadline) is the earliest, and
                    // tokio wakes its own thread through the event fd to
                    // say so: a syscall and a turn of the event loop more
                    // per request at low load.
                    tokio::spawn(keyward_gateway::upstream::close_idle_connections());
                    serve(listener, app, edge, phase.clone()).await;
                    let _ = drained_tx.send(());
                    // Connections to the database that this thread's requests
                    // opened are driven by this runtime: keep it running until
                    // the ledger is stored and the store closed.
                    let _ = phase.wait_for(|p| *p == Phase::Done).await;
                });
            })?;
        workers.drained.push(drained_rx);
        workers.threads.push(thread);
    }
    Ok(workers)
}

impl Workers {
    /// Stops accepting connections and waits until every request in flight
    /// has been answered, or until `deadline`: then the connections left
    /// are dropped (their answers cut, and billed as such).
    pub async fn drain(&mut self, deadline: tokio::time::Instant) {
        self.phase.send_replace(Phase::Draining);
        let all = futures_util::future::join_all(self.drained.drain(..));
        tokio::pin!(all);
        if tokio::time::timeout_at(deadline, &mut all).await.is_err() {
            tracing::warn!("shutdown_grace ran out: closing the connections still open");
            self.phase.send_replace(Phase::Abort);
            all.await;
        }
    }

    /// Lets the workers' runtimes end, once nothing needs them.
    pub fn finish(self) {
        self.phase.send_replace(Phase::Done);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    app: App,
    edge: Arc<Edge>,
    mut phase: watch::Receiver<Phase>,
) {
    let mut http = auto::Builder::new(TokioExecutor::new());
    // The watchdog times heads and idleness (crate::connection); hyper's
    // own header timer would also cut idle keep-alive connections at the
    // header timeout.
    http.http1().header_read_timeout(None);
    let max = edge.limits.max_connections_per_worker.max(1);
    let mut connections = JoinSet::new();
    loop {
        let (tcp, remote) = tokio::select! {
            _ = phase.wait_for(|p| *p >= Phase::Draining) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept(), if connections.len() < max => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before
                    // it was accepted: wait a little rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        // Small responses and SSE frames must not wait for delayed ACKs.
        let _ = tcp.set_nodelay(true);
        let watch = Watch::new();
        let service = {
            let (app, edge, watch) = (app.clone(), edge.clone(), watch.clone());
            hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let in_flight = watch.request_started();
                let client =
                    edge.trusted_proxies
                        .client(remote, req.headers(), edge.forwarded_header);
                let mut req = req.map(|body| connection::timed_body(body, &edge.limits));
                req.extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(client));
                let mut app = app.clone();
                async move {
                    let response = app.call(req).await.unwrap_or_else(|e| match e {});
                    Ok::<_, Infallible>(
                        response.map(|body| connection::Tracked::new(body, in_flight)),
                    )
                }
            })
        };
        let connection = http
            .serve_connection(TokioIo::new(Watched::new(tcp, watch.clone())), service)
            .into_owned();
        let (edge, mut phase) = (edge.clone(), phase.clone());
        // Serves the connection until it ends, overstays (idle or slow too
        // long: dropped, with no request in progress), or the server drains
        // (its requests finish, then it closes).
        connections.spawn(async move {
            tokio::pin!(connection);
            let mut draining = false;
            loop {
                tokio::select! {
                    _ = connection.as_mut() => return,
                    _ = watch.overstayed(&edge.limits) => return,
                    _ = phase.wait_for(|p| *p >= Phase::Draining), if !draining => {
                        draining = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
        });
    }
    drop(listener);
    loop {
        tokio::select! {
            done = connections.join_next() => if done.is_none() { break },
            _ = phase.wait_for(|p| *p >= Phase::Abort) => {
                // Dropping a connection drops the answer it was sending,
                // which bills it (the gateway's 499) before the ledger's
                // last write.
                connections.abort_all();
                while connections.join_next().await.is_some() {}
                break;
            }
        }
    }
}
