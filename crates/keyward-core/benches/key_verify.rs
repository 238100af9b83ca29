//! Parse + checksum + SHA-256 + in-memory lookup, the work the gateway does
//! for a key that is already cached. Target: ≥ 2 million per second on one core.

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use keyward_core::key::{self, KeyHash, KeyKind, PlainKey};

fn verify_and_lookup(c: &mut Criterion) {
    const KEYS: usize = 100_000;
    let keys: Vec<String> = (0..KEYS)
        .map(|_| PlainKey::generate(KeyKind::Project).expose().to_owned())
        .collect();
    let table: HashMap<KeyHash, u32, key::KeyHashBuilder> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (KeyHash::of(k), i as u32))
        .collect();

    let mut group = c.benchmark_group("key");
    group.throughput(Throughput::Elements(1));
    let mut i = 0;
    group.bench_function("parse+checksum+sha256+lookup", |b| {
        b.iter(|| {
            let k = &keys[i % KEYS];
            i += 1;
            key::verify(black_box(k.as_bytes())).unwrap();
            black_box(table.get(&KeyHash::of(k)))
        })
    });
    group.bench_function("sha256", |b| {
        b.iter(|| {
            let k = &keys[i % KEYS];
            i += 1;
            KeyHash::of(black_box(k))
        })
    });
    group.bench_function("generate", |b| {
        b.iter(|| PlainKey::generate(KeyKind::Project))
    });
    group.finish();
}

criterion_group!(benches, verify_and_lookup);
criterion_main!(benches);
