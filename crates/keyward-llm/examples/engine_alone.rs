//! The reference for bench/local-model: the same GGUF decoded by llama.cpp
//! through llama-cpp-2 directly — no HTTP, no server, no batching of
//! several requests — so the HTTP figures can be read as a share of what
//! the engine alone does on this machine.
//!
//! Usage: engine_alone MODEL.gguf [TOKENS] [THREADS] [SEQUENCES]
//! Prints one JSON line: prompt tokens, prefill tokens/s, decode tokens/s
//! (over all sequences). With SEQUENCES > 1 the same prompt is decoded as
//! that many sequences in one batch per step: the engine's own ceiling for
//! batched decoding on this machine.

use std::num::NonZeroU32;
use std::time::Instant;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;

/// The bench's prompt; bench/local-model/run.sh sends the same one over HTTP.
const PROMPT: &str = "Write a long story about a lighthouse keeper and a storm.";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: engine_alone MODEL.gguf [TOKENS] [THREADS] [SEQUENCES]")?;
    let tokens: i32 = args.next().map_or(Ok(256), |s| s.parse())?;
    let threads: i32 = match args.next() {
        Some(s) => s.parse()?,
        None => std::thread::available_parallelism().map_or(1, |n| n.get() as i32),
    };
    let seqs: i32 = args.next().map_or(Ok(1), |s| s.parse())?;

    let mut backend = LlamaBackend::init()?;
    backend.void_logs();
    let model = LlamaModel::load_from_file(&backend, path, &LlamaModelParams::default())?;
    let template = model.chat_template(None)?;
    let chat = [LlamaChatMessage::new("user".into(), PROMPT.into())?];
    let text = model.apply_chat_template(&template, &chat, true)?;
    let prompt = model.vocab().tokenize(text.as_bytes(), true, true);

    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(2048 * seqs as u32))
        .with_n_seq_max(seqs as u32)
        .with_kv_unified(false)
        .with_n_batch(512)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let mut ctx = model.new_context(&backend, params)?;
    let mut batch = LlamaBatch::new(512, 1);
    let mut samplers: Vec<_> = (0..seqs).map(|_| LlamaSampler::greedy()).collect();

    let started = Instant::now();
    let last = prompt.len() - 1;
    let mut at = Vec::new();
    for seq in 0..seqs {
        for (i, t) in prompt.iter().enumerate() {
            batch.add(*t, i as i32, &[seq], i == last)?;
        }
        at.push(batch.n_tokens() - 1);
    }
    ctx.decode(&mut batch)?;
    let prefill = started.elapsed();

    // Decode exactly `tokens` tokens (end-of-generation tokens are fed back
    // like any other, so every run does the same work).
    let decoding = Instant::now();
    for pos in (prompt.len() as i32..).take(tokens as usize) {
        let next: Vec<_> = samplers
            .iter_mut()
            .zip(&at)
            .map(|(s, &i)| s.sample(&ctx, i))
            .collect();
        batch.clear();
        for (seq, token) in (0..seqs).zip(next) {
            batch.add(token, pos, &[seq], true)?;
        }
        ctx.decode(&mut batch)?;
        at = (0..seqs).collect();
    }
    let decode = decoding.elapsed();

    println!(
        "{{\"sequences\":{seqs},\"prompt_tokens\":{},\"prefill_tokens_per_s\":{:.1},\"decode_tokens\":{},\"decode_tokens_per_s\":{:.1},\"threads\":{threads}}}",
        prompt.len(),
        (prompt.len() as i32 * seqs) as f64 / prefill.as_secs_f64(),
        tokens * seqs,
        f64::from(tokens * seqs) / decode.as_secs_f64(),
    );
    Ok(())
}
