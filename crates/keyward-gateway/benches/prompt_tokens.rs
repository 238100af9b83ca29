//! What counting a prompt's tokens costs on the gateway's request path:
//! parsing the fields the gateway reads, without and with the o200k count.
//!
//! `cargo bench -p keyward-gateway --bench prompt_tokens`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
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

fn bench(c: &mut Criterion) {
    tokens::warm();
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Bytes(SMALL.len() as u64));
    g.bench_function("small chat, fields only", |b| {
        b.iter(|| parse(Endpoint::ChatCompletions, SMALL.as_bytes(), false).unwrap())
    });
    g.bench_function("small chat, with token count", |b| {
        b.iter(|| parse(Endpoint::ChatCompletions, SMALL.as_bytes(), true).unwrap())
    });
    g.finish();

    let prose = "The quick brown fox jumps over the lazy dog, and then it rests. ";
    let mut g = c.benchmark_group("parse with token count");
    for kib in [4usize, 32, 256, 1024] {
        let text = prose.repeat(kib * 1024 / prose.len());
        let body = chat_body(&text);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(BenchmarkId::new("prose KiB", kib), &body, |b, body| {
            b.iter(|| parse(Endpoint::ChatCompletions, body, true).unwrap())
        });
        g.bench_with_input(
            BenchmarkId::new("fields only, prose KiB", kib),
            &body,
            |b, body| b.iter(|| parse(Endpoint::ChatCompletions, body, false).unwrap()),
        );
    }
    // Worst case for BPE: one long run without whitespace.
    let body = chat_body(&"x".repeat(256 * 1024));
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("no whitespace, 256 KiB", |b| {
        b.iter(|| parse(Endpoint::ChatCompletions, &body, true).unwrap())
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
