//! The usage ledger's queue against a real database (SQLite, or PostgreSQL
//! when `KEYWARD_TEST_DATABASE_URL` is set), driven far faster than any
//! gateway could answer: the queue stays within its bound (calls wait for
//! room, then are refused), and every event that got a place is stored
//! exactly once, across a database that stops taking writes for a while.

#[path = "support/fresh_store.rs"]
mod support;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyward_gateway::meter::{self, LedgerFull, QueueSettings};
use support::{Caller, FreshStore};

/// Producers that reserve and record as fast as they can, `each` events
/// apiece; returns how many were recorded and how many were refused.
async fn produce(meter: &keyward_gateway::Meter, producers: usize, each: usize) -> (usize, usize) {
    let caller = Arc::new(Caller::new());
    let tasks: Vec<_> = (0..producers)
        .map(|p| {
            let meter = meter.clone();
            let caller = caller.clone();
            tokio::spawn(async move {
                let (mut recorded, mut refused) = (0, 0);
                for n in 0..each {
                    match meter.reserve().await {
                        Ok(slot) => {
                            meter.record(slot, caller.event(format!("req_{p}_{n}"), 1_800_000_000));
                            recorded += 1;
                        }
                        Err(LedgerFull) => refused += 1,
                    }
                }
                (recorded, refused)
            })
        })
        .collect();
    let mut total = (0, 0);
    for t in tasks {
        let (r, f) = t.await.unwrap();
        total.0 += r;
        total.1 += f;
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_faster_than_any_gateway_keeps_the_queue_bounded_and_every_event_is_stored_once()
{
    let fresh = FreshStore::open().await;
    let capacity = 2_000;
    let (meter, writer) = meter::start(
        fresh.sink.clone(),
        QueueSettings {
            capacity,
            wait: Duration::from_secs(30),
        },
    );
    // Watch the depth while producers push 120,000 events with no pause.
    let deepest = Arc::new(AtomicI64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (meter, deepest, done) = (meter.clone(), deepest.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                deepest.fetch_max(meter.queue_depth(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        })
    };
    let started = Instant::now();
    let (recorded, refused) = produce(&meter, 4, 30_000).await;
    meter.flush().await;
    let elapsed = started.elapsed();
    done.store(true, Ordering::Relaxed);
    watcher.await.unwrap();
    let stored = fresh.ledger_rows().await;
    println!(
        "{}: {recorded} events stored in {:.2} s ({:.0} rows/s), deepest queue {}",
        fresh.label(),
        elapsed.as_secs_f64(),
        recorded as f64 / elapsed.as_secs_f64(),
        deepest.load(Ordering::Relaxed)
    );
    assert_eq!(refused, 0, "with a long wait nothing is refused");
    assert_eq!(recorded, 120_000);
    assert_eq!(stored, 120_000, "every recorded event stored, once");
    let deepest = deepest.load(Ordering::Relaxed);
    assert!(
        deepest <= capacity as i64,
        "the queue held {deepest} events, above its bound of {capacity}"
    );
    assert!(deepest > 0, "the watcher saw no queue at all");
    assert_eq!(meter.queue_depth(), 0);
    writer
        .shutdown(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
    fresh.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_after_its_wait_and_what_it_held_is_stored_when_writes_resume() {
    let fresh = FreshStore::open().await;
    let (meter, writer) = meter::start(
        fresh.sink.clone(),
        QueueSettings {
            capacity: 50,
            wait: Duration::from_millis(150),
        },
    );
    let caller = Caller::new();
    let block = fresh.block_writes().await;
    // 50 places: all taken and recorded while nothing can be written.
    for n in 0..50 {
        let slot = meter
            .reserve()
            .await
            .expect("a place while the queue has room");
        meter.record(slot, caller.event(format!("req_held_{n}"), 1_800_000_000));
    }
    let asked = Instant::now();
    assert_eq!(meter.reserve().await.err(), Some(LedgerFull));
    let waited = asked.elapsed();
    assert!(
        waited >= Duration::from_millis(140) && waited < Duration::from_secs(2),
        "a full queue answered after {waited:?}, not after its 150 ms wait"
    );
    assert_eq!(meter.queue_depth(), 50);
    // Writes resume: the held events are stored, once, and room returns.
    tokio::time::sleep(Duration::from_millis(300)).await;
    block.release().await;
    tokio::time::timeout(Duration::from_secs(30), meter.flush())
        .await
        .expect("the writer stored the backlog once writes resumed");
    assert_eq!(fresh.ledger_rows().await, 50);
    assert_eq!(meter.queue_depth(), 0);
    let slot = meter.reserve().await.expect("room again");
    meter.record(slot, caller.event("req_after".into(), 1_800_000_000));
    meter.flush().await;
    assert_eq!(fresh.ledger_rows().await, 51);
    writer
        .shutdown(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
    fresh.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_with_writes_blocked_gives_up_at_its_deadline() {
    let fresh = FreshStore::open().await;
    let (meter, writer) = meter::start(fresh.sink.clone(), QueueSettings::default());
    let caller = Caller::new();
    let block = fresh.block_writes().await;
    let slot = meter.reserve().await.unwrap();
    meter.record(slot, caller.event("req_stuck".into(), 1_800_000_000));
    let asked = Instant::now();
    writer
        .shutdown(tokio::time::Instant::now() + Duration::from_millis(500))
        .await;
    let took = asked.elapsed();
    // An attempt under way when the grace ends is given up (PostgreSQL)
    // or ends within the ledger's 1 s lock wait (SQLite's blocking call).
    assert!(
        took < Duration::from_millis(1800),
        "shutdown took {took:?} with a 500 ms grace"
    );
    block.release().await;
    fresh.close().await;
}
