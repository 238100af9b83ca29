//! How many usage-ledger rows per second the writer sustains: producers
//! reserve and record gateway-shaped events as fast as they can (far
//! faster than the gateway answers), through the real queue and writer,
//! into a fresh database; the figure is stored rows over the time until
//! all are stored. SQLite by default; PostgreSQL when
//! `KEYWARD_TEST_DATABASE_URL` names a server.
//!
//!   cargo bench -p keyward-gateway --bench ledger_writer
//!   EVENTS=2000000 cargo bench -p keyward-gateway --bench ledger_writer

#[path = "../tests/support/fresh_store.rs"]
mod support;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyward_gateway::meter::{self, QueueSettings};
use support::{Caller, FreshStore};

fn main() {
    let events: usize = std::env::var("EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(events));
}

async fn run(events: usize) {
    let fresh = FreshStore::open().await;
    let settings = QueueSettings::default();
    let (meter, writer) = meter::start(fresh.sink.clone(), settings);
    let caller = Arc::new(Caller::new());
    let deepest = Arc::new(AtomicI64::new(0));
    let producers = 2;
    let started = Instant::now();
    let tasks: Vec<_> = (0..producers)
        .map(|p| {
            let (meter, caller, deepest) = (meter.clone(), caller.clone(), deepest.clone());
            tokio::spawn(async move {
                let now = keyward_core::time::now_unix();
                for n in 0..events / producers {
                    let slot = meter.reserve().await.expect("a place in the queue");
                    meter.record(slot, caller.event(format!("req_{p}_{n:09}"), now));
                    if n % 1024 == 0 {
                        deepest.fetch_max(meter.queue_depth(), Ordering::Relaxed);
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    meter.flush().await;
    let elapsed = started.elapsed();
    let stored = fresh.ledger_rows().await;
    println!(
        "ledger writer, {}: {stored} rows in {:.2} s = {:.0} rows/s; queue bound {}, deepest seen {}",
        fresh.label(),
        elapsed.as_secs_f64(),
        stored as f64 / elapsed.as_secs_f64(),
        settings.capacity,
        deepest.load(Ordering::Relaxed)
    );
    writer
        .shutdown(tokio::time::Instant::now() + Duration::from_secs(30))
        .await;
    fresh.close().await;
}
