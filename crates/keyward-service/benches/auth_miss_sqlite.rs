//! A key check that misses every cache and reads SQLite holding one million
//! keys: `Services::active_key` (parse, checksum, SHA-256, the hash lookup
//! joined to the key, the project check). Target: p99 under 1 ms.
//!
//! `cargo bench -p keyward-service --bench auth_miss_sqlite`
//! (`KEYWARD_BENCH_KEYS=100000` for a quicker run). The database is built
//! fresh in a temporary directory; plaintext keys stay in memory.

use std::sync::Arc;
use std::time::Instant;

use keyward_core::{KeyHash, KeyId, KeyKind, PlainKey, ProjectId, UserId};
use keyward_service::{Policy, Services};
use keyward_store::{SqlStore, Store};

const SAMPLE: usize = 20_000;
const ROWS_PER_INSERT: usize = 1_000;

fn main() {
    let keys: usize = std::env::var("KEYWARD_BENCH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(keys));
}

async fn run(total: usize) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::open_sqlite_dir(dir.path()).await.unwrap();
    store.migrate().await.unwrap();
    let (user, project) = (UserId::generate(), ProjectId::generate());
    let pool = store.pool();
    sqlx::query("INSERT INTO users (id, email, name, password_hash, role, created_at) VALUES ($1, 'b@example.com', 'b', 'x', 'user', 0)")
        .bind(user.as_str())
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO projects (id, name, created_at) VALUES ($1, 'bench', 0)")
        .bind(project.as_str())
        .execute(pool)
        .await
        .unwrap();

    let started = Instant::now();
    let mut sample: Vec<String> = Vec::with_capacity(SAMPLE);
    let every = (total / SAMPLE).max(1);
    let mut written = 0;
    while written < total {
        let n = ROWS_PER_INSERT.min(total - written);
        let batch: Vec<(KeyId, PlainKey)> = (0..n)
            .map(|_| (KeyId::generate(), PlainKey::generate(KeyKind::Project)))
            .collect();
        let key_rows = (0..n)
            .map(|i| {
                format!(
                    "(${}, 'project', ${}, ${}, 'bench', '', ${}, '{{\"mode\":\"all\"}}', 0)",
                    i * 4 + 1,
                    i * 4 + 2,
                    i * 4 + 3,
                    i * 4 + 4
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let key_sql = format!(
            "INSERT INTO api_keys (id, kind, project_id, owner_id, created_by, name, redacted_value, permissions, created_at) VALUES {key_rows}"
        );
        let mut q = sqlx::query(&key_sql);
        for (id, key) in &batch {
            q = q
                .bind(id.as_str().to_owned())
                .bind(project.as_str().to_owned())
                .bind(user.as_str().to_owned())
                .bind(key.redacted());
        }
        let secret_rows = (0..n)
            .map(|i| format!("(${}, ${}, 0)", i * 2 + 1, i * 2 + 2))
            .collect::<Vec<_>>()
            .join(", ");
        let secret_sql =
            format!("INSERT INTO api_key_secrets (hash, key_id, created_at) VALUES {secret_rows}");
        let mut s = sqlx::query(&secret_sql);
        for (id, key) in &batch {
            s = s
                .bind(key.hash().as_bytes().to_vec())
                .bind(id.as_str().to_owned());
        }
        let mut tx = pool.begin().await.unwrap();
        q.execute(&mut *tx).await.unwrap();
        s.execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
        for (i, (_, key)) in batch.iter().enumerate() {
            if (written + i) % every == 0 && sample.len() < SAMPLE {
                sample.push(key.expose().to_owned());
            }
        }
        written += n;
    }
    let size: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .sum();
    println!(
        "populated {total} keys in {:.1?}; database files {:.0} MB",
        started.elapsed(),
        size as f64 / 1e6
    );

    let store: Arc<dyn Store> = Arc::new(store);
    let services = Services::new(store.clone(), Policy::default());
    // Warm up the connection pool and SQLite's page cache a little, as a running server would be.
    for k in sample.iter().take(1000) {
        services.active_key(k).await.unwrap();
    }
    let mut order: Vec<usize> = (0..sample.len()).collect();
    shuffle(&mut order);

    let mut lookups = Vec::with_capacity(order.len());
    for &i in &order {
        let t = Instant::now();
        let found = store.key_by_hash(&KeyHash::of(&sample[i])).await.unwrap();
        lookups.push(t.elapsed().as_nanos() as u64);
        assert!(found.is_some());
    }
    report("store.key_by_hash (hit)", lookups);

    let mut full = Vec::with_capacity(order.len());
    for &i in &order {
        let t = Instant::now();
        services.active_key(&sample[i]).await.unwrap();
        full.push(t.elapsed().as_nanos() as u64);
    }
    report("Services::active_key (cache miss, key exists)", full);

    let mut misses = Vec::with_capacity(5_000);
    for _ in 0..5_000 {
        let unknown = PlainKey::generate(KeyKind::Project);
        let t = Instant::now();
        assert!(services.active_key(unknown.expose()).await.is_err());
        misses.push(t.elapsed().as_nanos() as u64);
    }
    report("Services::active_key (unknown key)", misses);
}

fn report(what: &str, mut nanos: Vec<u64>) {
    nanos.sort_unstable();
    let at =
        |q: f64| nanos[((nanos.len() as f64 * q) as usize).min(nanos.len() - 1)] as f64 / 1000.0;
    let mean = nanos.iter().sum::<u64>() as f64 / nanos.len() as f64 / 1000.0;
    println!(
        "{what}: n={} mean={mean:.1}µs p50={:.1}µs p90={:.1}µs p99={:.1}µs p99.9={:.1}µs max={:.1}µs",
        nanos.len(),
        at(0.5),
        at(0.9),
        at(0.99),
        at(0.999),
        nanos[nanos.len() - 1] as f64 / 1000.0
    );
}

/// Fisher–Yates with a small xorshift: the order only has to be unrelated to insertion.
fn shuffle(v: &mut [usize]) {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
}
