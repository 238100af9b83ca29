//! The inference worker: one thread owns the llama.cpp context (contexts
//! are not thread-safe) and decodes every active request together —
//! continuous batching. Each request is a sequence with its own slice of
//! the KV cache; each step adds the next prompt chunk or the last sampled
//! token of every sequence to one batch, decodes it once, and samples one
//! token per sequence. New requests join between steps; finished or
//! abandoned ones leave and free their slot at once.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc::UnboundedSender;

use crate::openai::{Finish, Sampling, Usage};
use crate::text::TextOut;

/// How the worker sizes its context.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Tokens one request may use, prompt and answer together.
    pub context_length: u32,
    /// Requests decoded together.
    pub sequences: u32,
    /// Tokens decoded per step, across all sequences.
    pub batch: u32,
    /// CPU threads for llama.cpp.
    pub threads: i32,
}

/// One request, tokenized and checked.
pub struct Job {
    pub prompt: Vec<LlamaToken>,
    /// The most tokens to generate (the request's limit or what is left of
    /// the context).
    pub max_new: u32,
    pub stop: Vec<String>,
    pub sampling: Sampling,
    pub events: UnboundedSender<Event>,
}

/// What the worker tells a request.
#[derive(Debug)]
pub enum Event {
    Text(String),
    Done { finish: Finish, usage: Usage },
    Failed(String),
}

struct Sequence {
    job: Job,
    /// How many prompt tokens are in the KV cache.
    prefilled: usize,
    /// The next position in the sequence.
    pos: i32,
    /// The token to feed next, once the prompt is in.
    last: LlamaToken,
    generated: u32,
    sampler: LlamaSampler,
    out: TextOut,
    /// Where this sequence's logits are in the current batch.
    logits_at: Option<i32>,
}

/// Creates the context; the worker then runs on the calling thread until
/// every sender of `jobs` is gone.
pub fn run(
    backend: &LlamaBackend,
    model: &LlamaModel,
    shape: Shape,
    jobs: Receiver<Job>,
    active: Arc<AtomicUsize>,
    ready: impl FnOnce(Result<(), String>),
) {
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(shape.context_length * shape.sequences))
        .with_n_batch(shape.batch)
        .with_n_ubatch(shape.batch)
        .with_n_seq_max(shape.sequences)
        .with_kv_unified(false)
        .with_n_threads(shape.threads)
        .with_n_threads_batch(shape.threads);
    let mut ctx = match model.new_context(backend, params) {
        Ok(ctx) => ctx,
        Err(e) => return ready(Err(format!("cannot create a llama.cpp context: {e}"))),
    };
    ready(Ok(()));
    let mut worker = Worker {
        model,
        slots: (0..shape.sequences).map(|_| None).collect(),
        batch: LlamaBatch::new(shape.batch as usize, 1),
        budget: shape.batch as usize,
        context_length: shape.context_length as i32,
    };
    while worker.admit(&jobs, &mut ctx, &active) {
        worker.step(&mut ctx);
    }
    active.store(0, Ordering::Relaxed);
}

struct Worker<'m> {
    model: &'m LlamaModel,
    slots: Vec<Option<Sequence>>,
    batch: LlamaBatch<'static>,
    budget: usize,
    context_length: i32,
}

impl Worker<'_> {
    fn active(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    /// Takes new requests into free slots, waiting for one when idle, and
    /// drops requests whose client has gone. False when the model is shut down.
    fn admit(
        &mut self,
        jobs: &Receiver<Job>,
        ctx: &mut LlamaContext,
        active: &AtomicUsize,
    ) -> bool {
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if slot.as_ref().is_some_and(|s| s.job.events.is_closed()) {
                *slot = None;
                free(ctx, i);
            }
        }
        loop {
            active.store(self.active(), Ordering::Relaxed);
            let Some(free) = self.slots.iter().position(Option::is_none) else {
                return true;
            };
            let idle = self.slots.iter().all(Option::is_none);
            let job = if idle {
                match jobs.recv() {
                    Ok(job) => job,
                    Err(_) => return false,
                }
            } else {
                match jobs.try_recv() {
                    Ok(job) => job,
                    Err(TryRecvError::Empty) => return true,
                    // Finish what is running; the next idle wait ends the worker.
                    Err(TryRecvError::Disconnected) => return true,
                }
            };
            if job.events.is_closed() {
                continue;
            }
            let sampler = sampler(&job.sampling, self.model.n_vocab(), self.context_length);
            self.slots[free] = Some(Sequence {
                out: TextOut::new(job.stop.clone()),
                job,
                prefilled: 0,
                pos: 0,
                last: LlamaToken(0),
                generated: 0,
                sampler,
                logits_at: None,
            });
        }
    }

    /// One decode over every active sequence, then one token for each
    /// sequence that is past its prompt.
    fn step(&mut self, ctx: &mut LlamaContext) {
        self.batch.clear();
        let mut room = self.budget;
        // Sequences already answering go first, one token each, so that a
        // long prompt joining never stalls them; prompts share what is left.
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let Some(seq) = slot else { continue };
            seq.logits_at = None;
            if seq.prefilled == seq.job.prompt.len() && room > 0 {
                // The batch has room for `budget` tokens; `room` counts them.
                let _ = self.batch.add(seq.last, seq.pos, &[i as i32], true);
                seq.logits_at = Some(self.batch.n_tokens() - 1);
                seq.pos += 1;
                room -= 1;
            }
        }
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let Some(seq) = slot else { continue };
            let left = seq.job.prompt.len() - seq.prefilled;
            let n = left.min(room);
            for k in 0..n {
                let last = k + 1 == left;
                let token = seq.job.prompt[seq.prefilled + k];
                let _ = self.batch.add(token, seq.pos, &[i as i32], last);
                if last {
                    seq.logits_at = Some(self.batch.n_tokens() - 1);
                }
                seq.pos += 1;
            }
            seq.prefilled += n;
            room -= n;
        }
        if self.batch.n_tokens() == 0 {
            return;
        }
        if let Err(e) = ctx.decode(&mut self.batch) {
            tracing::error!(error = %e, "local model decode failed");
            for (i, slot) in self.slots.iter_mut().enumerate() {
                if let Some(seq) = slot.take() {
                    let _ = seq.job.events.send(Event::Failed(
                        "The local model failed to process this request. Try again; if it persists, tell the operator.".into(),
                    ));
                    free(ctx, i);
                }
            }
            return;
        }
        for i in 0..self.slots.len() {
            let Some(seq) = &mut self.slots[i] else {
                continue;
            };
            let Some(at) = seq.logits_at else { continue };
            let token = seq.sampler.sample(ctx, at);
            let finish = self.advance(i, token);
            if let Some(finish) = finish {
                if let Some(mut seq) = self.slots[i].take() {
                    let rest = seq.out.finish();
                    if !rest.is_empty() {
                        let _ = seq.job.events.send(Event::Text(rest));
                    }
                    let usage = Usage {
                        prompt_tokens: seq.job.prompt.len() as u32,
                        completion_tokens: seq.generated,
                    };
                    let _ = seq.job.events.send(Event::Done { finish, usage });
                }
                free(ctx, i);
            }
        }
    }

    /// Takes a sampled token into sequence `i`; says why it ends, if it does.
    fn advance(&mut self, i: usize, token: LlamaToken) -> Option<Finish> {
        let vocab = self.model.vocab();
        let seq = self.slots[i].as_mut()?;
        if vocab.is_eog(token) {
            return Some(Finish::Stop);
        }
        seq.generated += 1;
        seq.last = token;
        let piece = vocab.token_to_piece(token, false, None);
        let text = seq.out.push(&piece);
        if !text.is_empty() && seq.job.events.send(Event::Text(text)).is_err() {
            // The client has gone; the next admit frees the slot.
            return None;
        }
        if seq.out.stopped() {
            Some(Finish::Stop)
        } else if seq.generated >= seq.job.max_new {
            Some(Finish::Length)
        } else {
            None
        }
    }
}

fn free(ctx: &mut LlamaContext, slot: usize) {
    let _ = ctx.clear_kv_cache_seq(Some(slot as u32), None, None);
}

/// The sampler chain for one request: penalties, then greedy at
/// temperature 0, else nucleus sampling at the temperature with the seed.
fn sampler(s: &Sampling, n_vocab: i32, window: i32) -> LlamaSampler {
    let mut chain = Vec::new();
    if s.presence_penalty != 0.0 || s.frequency_penalty != 0.0 {
        chain.push(LlamaSampler::penalties(
            n_vocab,
            window,
            1.0,
            s.frequency_penalty,
            s.presence_penalty,
        ));
    }
    if s.temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
    } else {
        let seed = s.seed.unwrap_or_else(|| {
            let mut b = [0u8; 4];
            let _ = getrandom::fill(&mut b);
            u32::from_le_bytes(b)
        });
        chain.push(LlamaSampler::top_p(s.top_p, 1));
        chain.push(LlamaSampler::temp(s.temperature));
        chain.push(LlamaSampler::dist(seed));
    }
    LlamaSampler::chain_simple(chain)
}
