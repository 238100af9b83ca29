//! What counting a prompt's tokens costs on the gateway's request path:
//! parsing the fields the gateway reads, without and with the o200k count.
//! Each thread remembers the counts of pieces it has seen lately, so each
//! case is measured twice: the same body again and again ("seen", as a
//! resent system prompt or chat history), and a body whose every sentence
//! is new ("new": every piece is tokenized).
//!
//! `cargo bench -p keyward-gateway --bench prompt_tokens`

use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use keyward_gateway::request::{parse, tokens, Endpoint};

/// A small chat request, as the load benchmark sends (about 200 bytes).
const SMALL: &str = r#"{"model":"bench-model","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Say hello to the load test, briefly please."}],"max_tokens":16}"#;

fn chat_body(text: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "model": "bench-model",
        "messages": [{"role": "user", "content": text}],
        "max_tokens": 16,
    }))
    .unwrap()
}

/// About `bytes` of prose in which every sentence carries a number never
/// used before, so no piece of it has been counted yet.
fn new_prose(bytes: usize) -> String {
    static SENTENCE: AtomicU64 = AtomicU64::new(0);
    let mut text = String::with_capacity(bytes + 80);
    while text.len() < bytes {
        let n = SENTENCE.fetch_add(1, Ordering::Relaxed);
        text.push_str(&format!(
            "The quick brown fox {n} jumps over the lazy dog, and then it rests. "
        ));
    }
    text
}

/// `bytes` pseudo-random lowercase letters, different on every call.
fn new_letters(bytes: usize) -> String {
    static SEED: AtomicU64 = AtomicU64::new(1);
    let mut x = SEED.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed) | 1;
    (0..bytes)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    tokens::warm();
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Bytes(SMALL.len() as u64));
    g.bench_function("small chat, fields only", |b| {
        b.iter(|| parse(Endpoint::ChatCompletions, SMALL.as_bytes(), false).unwrap())
    });
    g.bench_function("small chat, with token count, seen", |b| {
        b.iter(|| parse(Endpoint::ChatCompletions, SMALL.as_bytes(), true).unwrap())
    });
    g.bench_function("small chat, with token count, new", |b| {
        b.iter_batched(
            || SMALL.replace("briefly", &new_prose(1)),
            |body| parse(Endpoint::ChatCompletions, body.as_bytes(), true).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.finish();

    let prose = "The quick brown fox jumps over the lazy dog, and then it rests. ";
    let mut g = c.benchmark_group("parse with token count");
    for kib in [4usize, 32, 256, 1024] {
        let text = prose.repeat(kib * 1024 / prose.len());
        let body = chat_body(&text);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(
            BenchmarkId::new("prose KiB, seen", kib),
            &body,
            |b, body| b.iter(|| parse(Endpoint::ChatCompletions, body, true).unwrap()),
        );
        g.bench_function(BenchmarkId::new("prose KiB, new", kib), |b| {
            b.iter_batched(
                || chat_body(&new_prose(kib * 1024)),
                |body| parse(Endpoint::ChatCompletions, &body, true).unwrap(),
                BatchSize::LargeInput,
            )
        });
        g.bench_with_input(
            BenchmarkId::new("fields only, prose KiB", kib),
            &body,
            |b, body| b.iter(|| parse(Endpoint::ChatCompletions, body, false).unwrap()),
        );
    }
    // Worst case for BPE: one long run without whitespace, letters never
    // seen before.
    g.throughput(Throughput::Bytes(256 * 1024));
    g.bench_function("no whitespace, 256 KiB, new", |b| {
        b.iter_batched(
            || chat_body(&new_letters(256 * 1024)),
            |body| parse(Endpoint::ChatCompletions, &body, true).unwrap(),
            BatchSize::LargeInput,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("o200k alone");
    g.bench_function("small chat text", |b| {
        b.iter(|| {
            tiktoken_rs::o200k_base_singleton().count_ordinary("You are a helpful assistant.")
                + tiktoken_rs::o200k_base_singleton()
                    .count_ordinary("Say hello to the load test, briefly please.")
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
