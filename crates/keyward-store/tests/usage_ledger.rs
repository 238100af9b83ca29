//! The usage ledger's batched writes against a real database: SQLite always,
//! and PostgreSQL too when `KEYWARD_TEST_DATABASE_URL` is set.

use keyward_core::{KeyId, Micros, ProjectId, UserId};
use keyward_core::{SpendOwner, UsageEvent, UsageFilter};
use keyward_store::{SqlStore, Store};
use sqlx::Executor;

const DAY: i64 = 86_400;
/// 2026-11-01 00:00 UTC.
const NOVEMBER: i64 = 1_793_491_200;

struct Ids {
    project: ProjectId,
    user: UserId,
    even: KeyId,
    odd: KeyId,
}

fn event(ids: &Ids, n: usize, day: i64) -> UsageEvent {
    UsageEvent {
        request_id: format!("req_{n:06}"),
        key_id: if n.is_multiple_of(2) {
            &ids.even
        } else {
            &ids.odd
        }
        .clone(),
        project_id: ids.project.clone(),
        user_id: ids.user.clone(),
        model: "m".into(),
        endpoint: keyward_core::Endpoint::ChatCompletions,
        prompt_tokens: 10,
        completion_tokens: 5,
        cost: Micros(3),
        status: if n.is_multiple_of(10) { 500 } else { 200 },
        latency_ms: 1,
        created_at: day + (n as i64 % 3_600),
    }
}

async fn check(store: &dyn Store) {
    store.migrate().await.unwrap();
    let ids = Ids {
        project: ProjectId::generate(),
        user: UserId::generate(),
        even: KeyId::generate(),
        odd: KeyId::generate(),
    };
    // 700 events: more than one statement's worth, two keys, two days.
    let events: Vec<UsageEvent> = (0..700)
        .map(|n| event(&ids, n, if n < 400 { NOVEMBER } else { NOVEMBER + DAY }))
        .collect();
    store.record_usage(&events).await.unwrap();
    // A batch retried after an unknown outcome, with some new rows in it
    // and one request id twice: only the new rows count, once each.
    let mut retried: Vec<UsageEvent> = events[600..].to_vec();
    retried.extend((700..720).map(|n| event(&ids, n, NOVEMBER + DAY)));
    retried.push(event(&ids, 719, NOVEMBER + DAY));
    store.record_usage(&retried).await.unwrap();
    store.record_usage(&[]).await.unwrap();

    let project = ids.project.clone();
    let ledger = store
        .usage_events(&project, NOVEMBER, NOVEMBER + 2 * DAY)
        .await
        .unwrap();
    assert_eq!(ledger.len(), 720);
    assert_eq!(
        ledger
            .iter()
            .find(|e| e.request_id == "req_000010")
            .unwrap()
            .status,
        500
    );

    let spent_by = |owner| store.spend_since(owner, NOVEMBER);
    assert_eq!(
        spent_by(SpendOwner::Project(&project)).await.unwrap(),
        Micros(3 * 720)
    );
    assert_eq!(
        spent_by(SpendOwner::Key(&ids.odd)).await.unwrap(),
        Micros(3 * 360)
    );

    let daily = store
        .usage(&UsageFilter {
            projects: vec![project.clone()],
            keys: vec![],
            models: vec![],
            from: NOVEMBER,
            to: NOVEMBER + 2 * DAY,
            bucket_seconds: DAY,
            by_project: false,
            by_key: true,
            by_model: false,
        })
        .await
        .unwrap();
    let requests = |day: i64, key: &KeyId| {
        daily
            .iter()
            .find(|r| r.bucket_start == day && r.key_id.as_ref() == Some(key))
            .map(|r| (r.requests, r.prompt_tokens, r.completion_tokens, r.cost))
    };
    assert_eq!(
        requests(NOVEMBER, &ids.even),
        Some((200, 2_000, 1_000, Micros(600)))
    );
    assert_eq!(
        requests(NOVEMBER, &ids.odd),
        Some((200, 2_000, 1_000, Micros(600)))
    );
    assert_eq!(
        requests(NOVEMBER + DAY, &ids.even),
        Some((160, 1_600, 800, Micros(480)))
    );
    assert_eq!(
        requests(NOVEMBER + DAY, &ids.odd),
        Some((160, 1_600, 800, Micros(480)))
    );
    // The hourly view reads the ledger itself and must agree.
    let hourly: i64 = store
        .usage(&UsageFilter {
            projects: vec![project],
            keys: vec![],
            models: vec![],
            from: NOVEMBER,
            to: NOVEMBER + 2 * DAY,
            bucket_seconds: 3_600,
            by_project: false,
            by_key: false,
            by_model: false,
        })
        .await
        .unwrap()
        .iter()
        .map(|r| r.requests)
        .sum();
    assert_eq!(hourly, 720);
}

#[tokio::test]
async fn batches_are_stored_once_and_rolled_up_per_day_key_and_model_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::open_sqlite_dir(dir.path()).await.unwrap();
    check(&store).await;
}

#[tokio::test]
async fn batches_are_stored_once_and_rolled_up_per_day_key_and_model_on_postgres() {
    let Ok(admin_url) = std::env::var("KEYWARD_TEST_DATABASE_URL") else {
        return; // the SQLite run covers the logic; scripts/test sets the URL
    };
    let mut suffix = [0u8; 12];
    keyward_core::base62::fill_random(&mut suffix);
    let name = format!(
        "kw_store_{}",
        String::from_utf8_lossy(&suffix).to_lowercase()
    );
    let admin = SqlStore::connect(&admin_url).await.unwrap();
    admin
        .pool()
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap();
    let (base, _) = admin_url.rsplit_once('/').unwrap();
    let store = SqlStore::connect(&format!("{base}/{name}")).await.unwrap();
    check(&store).await;
    store.close().await;
    admin
        .pool()
        .execute(format!("DROP DATABASE {name} WITH (FORCE)").as_str())
        .await
        .unwrap();
}
