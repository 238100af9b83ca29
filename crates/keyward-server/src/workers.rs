//! HTTP served by one thread per CPU, each with its own single-threaded
//! runtime and its own listening socket on the same address
//! (`SO_REUSEPORT`: the kernel spreads new connections over them), as
//! nginx's workers do with `reuseport`. A connection lives on the thread
//! that accepted it, together with the upstream connections its requests
//! borrow (the gateway's client is per thread), so a proxied request never
//! wakes another thread. On a work-stealing runtime requests hop between
//! threads: a scratch hyper proxy served about a quarter fewer requests
//! per second that way than laid out like this (bench/gateway conditions).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::watch;
use tower::Service;

use crate::api::App;

/// Where the workers are in their life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Serving,
    /// Stop accepting; finish the requests in flight.
    Draining,
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

/// Starts `count` workers serving `app` on `addr` (from [`claim`]).
pub fn start(addr: SocketAddr, count: usize, app: App) -> std::io::Result<Workers> {
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
                    serve(listener, app, phase.clone()).await;
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
    /// has been answered.
    pub async fn drain(&mut self) {
        self.phase.send_replace(Phase::Draining);
        for drained in self.drained.drain(..) {
            let _ = drained.await;
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

async fn serve(listener: tokio::net::TcpListener, app: App, mut phase: watch::Receiver<Phase>) {
    let graceful = GracefulShutdown::new();
    let http = auto::Builder::new(TokioExecutor::new());
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before
                    // it was accepted: wait a little rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = phase.wait_for(|p| *p >= Phase::Draining) => break,
        };
        // Small responses and SSE frames must not wait for delayed ACKs.
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut()
                .insert(ConnectInfo::<SocketAddr>(remote));
            let mut app = app.clone();
            async move { Ok::<_, Infallible>(app.call(req).await.unwrap_or_else(|e| match e {})) }
        });
        let connection = http
            .serve_connection(TokioIo::new(tcp), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
