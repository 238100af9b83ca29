//! The translation's tests: requests (items, tools, refusals), whole
//! responses, and streams checked against the event rules of design §2.2.

use serde_json::{json, Value};

use super::*;

mod request {
    use super::*;

    fn chat(body: Value) -> Value {
        chat_request(&body, &[], "upstream-m").unwrap().body
    }

    fn refused(body: Value) -> (String, String) {
        let e = chat_request(&body, &[], "m").unwrap_err();
        assert_eq!(e.status(), 400, "{}", e.message());
        (
            e.param().unwrap_or_default().to_owned(),
            e.message().to_owned(),
        )
    }

    #[test]
    fn a_string_input_with_instructions_is_a_system_and_a_user_message() {
        let r = chat_request(
            &json!({"model": "m", "instructions": "Be brief.", "input": "Hi",
                    "max_output_tokens": 50, "temperature": 0.2, "store": false,
                    "metadata": {"a": "b"}, "include": [], "stream_options": {"include_obfuscation": false}}),
            &[],
            "upstream-m",
        )
        .unwrap();
        assert_eq!(
            r.body,
            json!({"model": "upstream-m", "messages": [
                {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
                "max_completion_tokens": 50, "max_tokens": 50, "temperature": 0.2})
        );
        assert!(!r.stream);
        assert_eq!(r.input_items.len(), 1);
        let item = &r.input_items[0];
        assert!(item["id"].as_str().unwrap().starts_with("msg_"));
        assert_eq!(
            item["content"],
            json!([{"type": "input_text", "text": "Hi"}])
        );
        assert_eq!(
            (&item["role"], &item["status"]),
            (&json!("user"), &json!("completed"))
        );
        let echo = ResponseContext {
            id: "resp_1".into(),
            created_at: 1,
            model: "m".into(),
            echo: r.echo,
        }
        .response(&response::Outcome::Completed, vec![], None);
        assert_eq!(echo["instructions"], "Be brief.");
        assert_eq!(echo["store"], false);
        assert_eq!(echo["metadata"], json!({"a": "b"}));
        assert_eq!(echo["tool_choice"], "auto");
        assert_eq!(echo["text"], json!({"format": {"type": "text"}}));
    }

    #[test]
    fn streaming_asks_for_usage() {
        let r = chat_request(&json!({"input": "x", "stream": true}), &[], "m").unwrap();
        assert!(r.stream);
        assert_eq!(r.body["stream"], true);
        assert_eq!(r.body["stream_options"], json!({"include_usage": true}));
    }

    #[test]
    fn items_become_messages_with_calls_grouped() {
        let input = json!([
            {"role": "user", "content": "Weather in Paris and Rome?"},
            // An output item echoed back verbatim.
            {"type": "message", "id": "msg_a", "role": "assistant", "status": "completed",
             "content": [{"type": "output_text", "text": "Looking.", "annotations": [], "logprobs": []}]},
            {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "weather",
             "arguments": "{\"city\":\"Paris\"}", "status": "completed"},
            {"type": "function_call", "call_id": "call_2", "name": "weather", "arguments": ""},
            {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
            {"type": "function_call_output", "call_id": "call_2",
             "output": [{"type": "input_text", "text": "21C"}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "function_call", "call_id": "call_3", "name": "clock", "arguments": "{}"},
            {"type": "message", "role": "developer",
             "content": [{"type": "input_text", "text": "Answer in French."},
                         {"type": "input_image", "image_url": "https://x/y.png", "detail": "low"}]},
        ]);
        let r = chat_request(&json!({"input": input}), &[], "m").unwrap();
        assert_eq!(
            r.body["messages"],
            json!([
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {"role": "assistant", "content": "Looking.", "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "weather", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
                {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "21C"}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_3", "type": "function", "function": {"name": "clock", "arguments": "{}"}}]},
                {"role": "developer", "content": [{"type": "text", "text": "Answer in French."},
                    {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}}]},
            ])
        );
        // Stored: every item typed, with an id (the client's kept).
        let ids: Vec<&str> = r
            .input_items
            .iter()
            .map(|i| i["id"].as_str().unwrap())
            .collect();
        assert_eq!((ids[1], ids[2], ids[6]), ("msg_a", "fc_1", "rs_1"));
        assert!(
            ids[0].starts_with("msg_") && ids[3].starts_with("fc_") && ids[4].starts_with("fco_")
        );
        assert_eq!(r.input_items[0]["type"], "message");
    }

    #[test]
    fn history_comes_after_instructions_and_before_input() {
        let history = [
            json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "1"}]}),
            json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "2"},
                {"type": "refusal", "refusal": "no"}]}),
        ];
        let r = chat_request(
            &json!({"instructions": "new", "input": "3", "previous_response_id": "resp_x"}),
            &history,
            "m",
        )
        .unwrap();
        assert_eq!(
            r.body["messages"],
            json!([{"role": "system", "content": "new"},
                   {"role": "user", "content": [{"type": "text", "text": "1"}]},
                   {"role": "assistant", "content": "2", "refusal": "no"},
                   {"role": "user", "content": "3"}])
        );
        assert_eq!(r.input_items.len(), 1);
        let bad = [json!({"type": "web_search_call", "id": "ws_1"})];
        let e = chat_request(&json!({"input": "x"}), &bad, "m").unwrap_err();
        assert_eq!(e.param(), Some("previous_response_id"));
    }

    #[test]
    fn tools_and_choices_are_nested() {
        let body = chat(json!({"input": "x",
            "tools": [{"type": "function", "name": "weather", "description": "d",
                       "parameters": {"type": "object"}, "strict": true, "defer_loading": false}],
            "tool_choice": {"type": "function", "name": "weather"}, "parallel_tool_calls": false,
            "text": {"format": {"type": "json_schema", "name": "s", "schema": {"type": "object"}, "strict": true},
                     "verbosity": "low"},
            "reasoning": {"effort": "low", "summary": null},
            "include": ["reasoning.encrypted_content", "message.output_text.logprobs"], "top_logprobs": 2}));
        assert_eq!(
            body["tools"],
            json!([{"type": "function", "function": {"name": "weather", "description": "d",
                    "parameters": {"type": "object"}, "strict": true}}])
        );
        assert_eq!(
            body["tool_choice"],
            json!({"type": "function", "function": {"name": "weather"}})
        );
        assert_eq!(body["parallel_tool_calls"], false);
        assert_eq!(
            body["response_format"],
            json!({"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object"}, "strict": true}})
        );
        assert_eq!(
            (&body["verbosity"], &body["reasoning_effort"]),
            (&json!("low"), &json!("low"))
        );
        assert_eq!(
            (&body["logprobs"], &body["top_logprobs"]),
            (&json!(true), &json!(2))
        );

        let allowed = chat(
            json!({"input": "x", "tools": [{"type": "function", "name": "f"}],
            "tool_choice": {"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "f"}]}}),
        );
        assert_eq!(
            allowed["tool_choice"],
            json!({"type": "allowed_tools", "allowed_tools": {"mode": "required",
                   "tools": [{"type": "function", "function": {"name": "f"}}]}})
        );
        // The Agents SDK's defaults: empty tools, tool_choice and
        // parallel_tool_calls are not sent (chat upstreams refuse them).
        let bare = chat(
            json!({"input": [{"role": "user", "content": "x"}], "tools": [],
            "tool_choice": "auto", "parallel_tool_calls": true, "text": {"format": {"type": "text"}}}),
        );
        assert_eq!(
            bare,
            json!({"model": "upstream-m", "messages": [{"role": "user", "content": "x"}]})
        );
        assert_eq!(
            chat(json!({"input": "x", "text": {"format": {"type": "json_object"}}}))
                ["response_format"],
            json!({"type": "json_object"})
        );
    }

    #[test]
    fn what_chat_cannot_do_is_refused_by_name() {
        let cases = [
            (
                json!({"tools": [{"type": "function", "name": "f"}, {"type": "web_search"}]}),
                "tools[1].type",
            ),
            (
                json!({"tools": [{"type": "function", "name": "f"}], "tool_choice": {"type": "file_search"}}),
                "tool_choice.type",
            ),
            (
                json!({"tools": [{"type": "function", "name": "f"}],
                    "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "mcp"}]}}),
                "tool_choice.tools[0].type",
            ),
            (json!({"tool_choice": "required"}), "tool_choice"),
            (json!({"background": true}), "background"),
            (json!({"conversation": "conv_1"}), "conversation"),
            (json!({"prompt": {"id": "pmpt_1"}}), "prompt"),
            (
                json!({"context_management": [{"type": "compaction"}]}),
                "context_management",
            ),
            (json!({"max_tool_calls": 3}), "max_tool_calls"),
            (json!({"truncation": "auto"}), "truncation"),
            (
                json!({"include": ["file_search_call.results"]}),
                "include[0]",
            ),
            (
                json!({"reasoning": {"effort": "low", "summary": "auto"}}),
                "reasoning.summary",
            ),
            (
                json!({"text": {"format": {"type": "grammar"}}}),
                "text.format.type",
            ),
            (json!({"max_output_tokens": 0}), "max_output_tokens"),
            (json!({"frobnicate": 1}), "frobnicate"),
            (
                json!({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file_1"}]}]}),
                "input[0].content[0]",
            ),
            (
                json!({"input": [{"role": "user", "content": [{"type": "input_audio"}]}]}),
                "input[0].content[0]",
            ),
            (
                json!({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}]}),
                "input[0].content[0].file_id",
            ),
            (
                json!({"input": ["x", {"type": "computer_call_output", "call_id": "c"}]}),
                "input[0]",
            ),
            (
                json!({"input": [{"role": "user", "content": "x"}, {"type": "computer_call_output", "call_id": "c"}]}),
                "input[1].type",
            ),
            (
                json!({"input": [{"type": "item_reference", "id": "msg_1"}]}),
                "input[0].type",
            ),
            (
                json!({"input": [{"type": "function_call", "name": "f"}]}),
                "input[0].call_id",
            ),
            (
                json!({"input": [{"type": "function_call_output", "call_id": "c",
                               "output": [{"type": "input_image", "image_url": "u"}]}]}),
                "input[0].output[0]",
            ),
            (
                json!({"input": [{"role": "tool", "content": "x"}]}),
                "input[0].role",
            ),
            (json!({"input": []}), "input"),
            (json!({"instructions": "only"}), "input"),
        ];
        for (mut body, param) in cases {
            if body.get("input").is_none() && body.get("instructions").is_none() {
                body["input"] = json!("x");
            }
            let (got, message) = refused(body.clone());
            assert_eq!(got, param, "{body}: {message}");
        }
        let (_, message) = refused(json!({"input": "x", "tools": [{"type": "code_interpreter"}]}));
        assert!(
            message.contains("`code_interpreter`") && message.contains("Remove it"),
            "{message}"
        );
    }
}

mod whole {
    use super::*;

    pub(super) fn ctx() -> ResponseContext {
        ResponseContext {
            id: "resp_1".into(),
            created_at: 1_700_000_000,
            model: "local".into(),
            echo: Echo::default(),
        }
    }

    #[test]
    fn text_and_tool_calls_become_items() {
        let chat = json!({"id": "chatcmpl-1", "object": "chat.completion", "choices": [{"index": 0,
            "message": {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "call_9", "type": "function", "function": {"name": "weather", "arguments": "{\"c\":1}"}}]},
            "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17,
                      "prompt_tokens_details": {"cached_tokens": 2}}});
        let r = response_from_chat(&chat, &ctx());
        assert_eq!(
            (&r["id"], &r["object"], &r["status"]),
            (&json!("resp_1"), &json!("response"), &json!("completed"))
        );
        assert_eq!(
            (&r["model"], &r["error"], &r["incomplete_details"]),
            (&json!("local"), &Value::Null, &Value::Null)
        );
        let output = r["output"].as_array().unwrap();
        assert_eq!(output.len(), 2);
        assert!(output[0]["id"].as_str().unwrap().starts_with("msg_"));
        assert_eq!(
            output[0]["content"],
            json!([{"type": "output_text", "text": "Checking.", "annotations": [], "logprobs": []}])
        );
        assert_eq!(
            (&output[0]["role"], &output[0]["status"]),
            (&json!("assistant"), &json!("completed"))
        );
        assert!(output[1]["id"].as_str().unwrap().starts_with("fc_"));
        assert_eq!(
            (
                &output[1]["type"],
                &output[1]["call_id"],
                &output[1]["name"],
                &output[1]["arguments"]
            ),
            (
                &json!("function_call"),
                &json!("call_9"),
                &json!("weather"),
                &json!("{\"c\":1}")
            )
        );
        assert_eq!(
            r["usage"],
            json!({"input_tokens": 12, "input_tokens_details": {"cached_tokens": 2, "cache_write_tokens": 0},
            "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 17})
        );
        assert_eq!(usage_of_response(&r).unwrap().input_tokens, 12);
        assert_eq!(
            (
                &r["truncation"],
                &r["parallel_tool_calls"],
                &r["background"]
            ),
            (&json!("disabled"), &json!(true), &json!(false))
        );
    }

    #[test]
    fn length_and_content_filter_are_incomplete() {
        for (reason, why) in [
            ("length", "max_output_tokens"),
            ("content_filter", "content_filter"),
        ] {
            let chat = json!({"choices": [{"message": {"role": "assistant", "content": "Once upon"}, "finish_reason": reason}]});
            let r = response_from_chat(&chat, &ctx());
            assert_eq!(r["status"], "incomplete");
            assert_eq!(r["incomplete_details"], json!({"reason": why}));
            assert_eq!(r["output"][0]["status"], "incomplete");
            assert_eq!(r["usage"], Value::Null);
        }
        // No text: no message item.
        let empty = json!({"choices": [{"message": {"role": "assistant", "content": ""}, "finish_reason": "stop"}]});
        assert_eq!(response_from_chat(&empty, &ctx())["output"], json!([]));
    }
}

mod streamed {
    use std::collections::{HashMap, HashSet};

    use proptest::prelude::*;

    use super::whole::ctx;
    use super::*;

    /// A chat SSE stream of these chunks (each `data:` JSON), then `[DONE]`.
    fn chat_stream(chunks: &[Value]) -> String {
        let mut s: String = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
        s.push_str("data: [DONE]\n\n");
        s
    }

    fn delta(delta: Value) -> Value {
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
               "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": null}]})
    }

    fn finish(reason: &str) -> Value {
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
               "choices": [{"index": 0, "delta": {}, "logprobs": null, "finish_reason": reason}]})
    }

    fn usage_chunk() -> Value {
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
               "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18,
                         "completion_tokens_details": {"reasoning_tokens": 1}}})
    }

    fn call(index: i64, id: Option<&str>, name: Option<&str>, arguments: &str) -> Value {
        let mut function = json!({"arguments": arguments});
        if let Some(name) = name {
            function["name"] = json!(name);
        }
        let mut call = json!({"index": index, "function": function});
        if let Some(id) = id {
            call["id"] = json!(id);
            call["type"] = json!("function");
        }
        delta(json!({"tool_calls": [call]}))
    }

    fn text_stream() -> String {
        chat_stream(&[
            delta(json!({"role": "assistant", "content": ""})),
            delta(json!({"content": "Hel"})),
            delta(json!({"content": "lo, wörld"})),
            delta(json!({"content": "!"})),
            finish("stop"),
            usage_chunk(),
        ])
    }

    fn tool_stream() -> String {
        chat_stream(&[
            delta(json!({"role": "assistant", "content": "Let me check."})),
            call(0, Some("call_a"), Some("weather"), ""),
            call(0, None, None, "{\"city\":"),
            call(0, None, None, "\"Paris\"}"),
            call(1, Some("call_b"), Some("clock"), ""),
            call(1, None, None, "{}"),
            finish("tool_calls"),
            usage_chunk(),
        ])
    }

    /// Feeds `stream` cut at `cuts`, then finishes.
    fn translate(stream: &str, cuts: &[usize]) -> (Vec<u8>, StreamTranslator) {
        let mut t = StreamTranslator::new(ctx());
        let mut out = t.start().to_vec();
        let mut last = 0;
        for &cut in cuts.iter().chain([&stream.len()]) {
            out.extend_from_slice(&t.feed(&stream.as_bytes()[last..cut]));
            last = cut;
        }
        out.extend_from_slice(&t.finish());
        (out, t)
    }

    /// SSE events: (the `event:` name, the data JSON).
    type Events = Vec<(String, Value)>;

    fn events(bytes: &[u8]) -> Events {
        let text = std::str::from_utf8(bytes).unwrap();
        assert!(text.is_empty() || text.ends_with("\n\n"), "{text}");
        text.split_terminator("\n\n")
            .map(|event| {
                let (name, data) = event.split_once('\n').unwrap();
                let name = name.strip_prefix("event: ").unwrap();
                let data = data.strip_prefix("data: ").unwrap();
                (name.to_owned(), serde_json::from_str(data).unwrap())
            })
            .collect()
    }

    fn names(events: &[(String, Value)]) -> Vec<&str> {
        events.iter().map(|(name, _)| name.as_str()).collect()
    }

    /// Holds a stream to design §2.2's rules (as the Node SDK's accumulator
    /// enforces them) and returns its terminal Response.
    fn validate(events: &[(String, Value)]) -> Value {
        const KNOWN: &[&str] = &[
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.refusal.delta",
            "response.refusal.done",
            "response.content_part.done",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
            "response.incomplete",
            "response.failed",
        ];
        let mut output: Vec<Value> = Vec::new();
        let mut done: Vec<bool> = Vec::new();
        let mut ids = HashSet::new();
        let mut terminal = None;
        for (n, (name, data)) in events.iter().enumerate() {
            let at = format!("event {n} {name}: {data}");
            assert!(terminal.is_none(), "an event after the terminal one: {at}");
            assert!(KNOWN.contains(&name.as_str()), "{at}");
            assert_eq!(data["type"], name.as_str(), "{at}");
            assert_eq!(data["sequence_number"], n, "{at}");
            assert!(
                data.get("error").is_none_or(Value::is_null),
                "top-level error: {at}"
            );
            if n == 0 {
                assert_eq!(name, "response.created", "{at}");
            }
            let index = data["output_index"].as_u64().map(|i| i as usize);
            let item_of = |output: &[Value], kind: &str| {
                let i = index.unwrap_or_else(|| panic!("no output_index: {at}"));
                let item = output.get(i).unwrap_or_else(|| panic!("no item {i}: {at}"));
                assert_eq!(item["type"], kind, "{at}");
                assert_eq!(item["id"], data["item_id"], "{at}");
                i
            };
            let part_of = |output: &[Value], i: usize, kind: &str| {
                let j = data["content_index"].as_u64().unwrap() as usize;
                let part = &output[i]["content"][j];
                assert_eq!(part["type"], kind, "{at}");
                j
            };
            match name.as_str() {
                "response.created" | "response.in_progress" => {
                    let r = &data["response"];
                    assert_eq!(
                        (&r["status"], &r["output"], &r["usage"]),
                        (&json!("in_progress"), &json!([]), &Value::Null),
                        "{at}"
                    );
                    assert_eq!(r["error"], Value::Null);
                }
                "response.output_item.added" => {
                    assert_eq!(index, Some(output.len()), "{at}");
                    let item = &data["item"];
                    assert_eq!(item["status"], "in_progress", "{at}");
                    match item["type"].as_str() {
                        Some("message") => assert_eq!(item["content"], json!([]), "{at}"),
                        Some("function_call") => {
                            assert_eq!(item["arguments"], "", "{at}");
                            let call_id = item["call_id"].as_str().unwrap();
                            assert!(
                                !call_id.is_empty() && ids.insert(format!("call:{call_id}")),
                                "{at}"
                            );
                        }
                        _ => panic!("{at}"),
                    }
                    let id = item["id"].as_str().unwrap();
                    assert!(!id.is_empty() && ids.insert(id.to_owned()), "{at}");
                    output.push(item.clone());
                    done.push(false);
                }
                "response.content_part.added" => {
                    let i = item_of(&output, "message");
                    let parts = output[i]["content"].as_array().map_or(0, Vec::len);
                    assert_eq!(data["content_index"], parts, "{at}");
                    output[i]["content"]
                        .as_array_mut()
                        .unwrap()
                        .push(data["part"].clone());
                }
                "response.output_text.delta" | "response.refusal.delta" => {
                    let i = item_of(&output, "message");
                    let (kind, key) = part_kind(name);
                    let j = part_of(&output, i, kind);
                    assert!(
                        name.contains("refusal") || data["logprobs"].is_array(),
                        "{at}"
                    );
                    let part = &mut output[i]["content"][j][key];
                    *part = json!(format!(
                        "{}{}",
                        part.as_str().unwrap(),
                        data["delta"].as_str().unwrap()
                    ));
                }
                "response.output_text.done" | "response.refusal.done" => {
                    let i = item_of(&output, "message");
                    let (kind, key) = part_kind(name);
                    let j = part_of(&output, i, kind);
                    assert_eq!(output[i]["content"][j][key], data[key], "{at}");
                }
                "response.content_part.done" => {
                    let i = item_of(&output, "message");
                    let j = data["content_index"].as_u64().unwrap() as usize;
                    assert_eq!(output[i]["content"][j], data["part"], "{at}");
                }
                "response.function_call_arguments.delta" => {
                    let i = item_of(&output, "function_call");
                    let args = &mut output[i]["arguments"];
                    *args = json!(format!(
                        "{}{}",
                        args.as_str().unwrap(),
                        data["delta"].as_str().unwrap()
                    ));
                }
                "response.function_call_arguments.done" => {
                    let i = item_of(&output, "function_call");
                    assert_eq!(
                        (&output[i]["arguments"], &output[i]["name"]),
                        (&data["arguments"], &data["name"]),
                        "{at}"
                    );
                }
                "response.output_item.done" => {
                    let i = index.unwrap();
                    assert!(i < output.len() && !done[i], "{at}");
                    let item = &data["item"];
                    assert_eq!(
                        (&item["id"], &item["type"]),
                        (&output[i]["id"], &output[i]["type"]),
                        "{at}"
                    );
                    assert_ne!(item["status"], "in_progress", "{at}");
                    // Everything streamed so far is in the full item.
                    for key in ["content", "arguments", "call_id", "name"] {
                        assert_eq!(item.get(key), output[i].get(key), "{at}");
                    }
                    output[i] = item.clone();
                    done[i] = true;
                }
                _ => {
                    let r = &data["response"];
                    let status = name.strip_prefix("response.").unwrap();
                    assert_eq!(r["status"], status, "{at}");
                    if status == "failed" {
                        assert_eq!(r["error"]["code"], "server_error", "{at}");
                        assert!(r["error"]["message"].is_string(), "{at}");
                    } else {
                        assert_eq!(r["error"], Value::Null, "{at}");
                        assert!(done.iter().all(|&d| d), "items left open: {at}");
                        assert_eq!(r["output"], json!(output), "{at}");
                    }
                    assert_eq!(
                        r["incomplete_details"].is_null(),
                        status != "incomplete",
                        "{at}"
                    );
                    terminal = Some(r.clone());
                }
            }
        }
        terminal.expect("no terminal event")
    }

    fn part_kind(event: &str) -> (&'static str, &'static str) {
        if event.contains("refusal") {
            ("refusal", "refusal")
        } else {
            ("output_text", "text")
        }
    }

    /// The events with minted ids numbered in order of appearance and the
    /// completion time zeroed, so that runs can be compared.
    fn normalized(bytes: &[u8]) -> Vec<Value> {
        fn walk(v: &mut Value, seen: &mut HashMap<String, String>) {
            match v {
                Value::String(s) => {
                    for prefix in ["msg_", "fc_", "call_"] {
                        let minted = s.strip_prefix(prefix).is_some_and(|r| r.len() == 24);
                        if minted {
                            let n = seen.len();
                            *s = seen
                                .entry(s.clone())
                                .or_insert_with(|| format!("{prefix}#{n}"))
                                .clone();
                        }
                    }
                }
                Value::Array(items) => items.iter_mut().for_each(|v| walk(v, seen)),
                Value::Object(map) => {
                    if let Some(at) = map.get_mut("completed_at").filter(|v| !v.is_null()) {
                        *at = json!(0);
                    }
                    map.values_mut().for_each(|v| walk(v, seen));
                }
                _ => {}
            }
        }
        let mut seen = HashMap::new();
        events(bytes)
            .into_iter()
            .map(|(_, mut data)| {
                walk(&mut data, &mut seen);
                data
            })
            .collect()
    }

    #[test]
    fn a_text_answer_streams_as_the_documented_events() {
        let (out, t) = translate(&text_stream(), &[]);
        let events = events(&out);
        assert_eq!(
            names(&events),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        let r = validate(&events);
        let deltas: Vec<&Value> = events[4..7].iter().map(|(_, d)| &d["delta"]).collect();
        assert_eq!(deltas, [&json!("Hel"), &json!("lo, wörld"), &json!("!")]);
        assert_eq!(events[7].1["text"], "Hello, wörld!");
        assert_eq!(r["output"][0]["content"][0]["text"], "Hello, wörld!");
        assert_eq!(r["output"][0]["status"], "completed");
        assert_eq!(r["usage"]["output_tokens_details"]["reasoning_tokens"], 1);
        assert!(r["completed_at"].is_i64());
        assert_eq!(
            t.usage(),
            Some(ResponsesUsage {
                input_tokens: 11,
                output_tokens: 7,
                cached_tokens: 0,
                reasoning_tokens: 1
            })
        );
        assert_eq!(t.final_response(), Some(&r));
        let text = String::from_utf8(out).unwrap();
        assert!(
            !text.contains("[DONE]")
                && !text.contains("prompt_tokens")
                && !text.contains("chatcmpl"),
            "{text}"
        );
    }

    #[test]
    fn tool_calls_stream_as_function_call_items() {
        let (out, t) = translate(&tool_stream(), &[]);
        let events = events(&out);
        assert_eq!(
            names(&events),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                // The second call waits until the first one closes.
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        let r = validate(&events);
        let output = r["output"].as_array().unwrap();
        assert_eq!(output.len(), 3);
        assert_eq!(
            (
                &output[1]["call_id"],
                &output[1]["name"],
                &output[1]["arguments"]
            ),
            (
                &json!("call_a"),
                &json!("weather"),
                &json!("{\"city\":\"Paris\"}")
            )
        );
        assert_eq!(
            (&output[2]["call_id"], &output[2]["arguments"]),
            (&json!("call_b"), &json!("{}"))
        );
        assert!(output[1]["id"].as_str().unwrap().starts_with("fc_"));
        assert_eq!(t.usage().unwrap().input_tokens, 11);
    }

    #[test]
    fn any_cut_of_the_bytes_gives_the_same_events() {
        for stream in [
            text_stream(),
            tool_stream(),
            tool_stream().replace('\n', "\r\n"),
        ] {
            let expected = normalized(&translate(&stream, &[]).0);
            let one_by_one: Vec<usize> = (1..stream.len()).collect();
            assert_eq!(normalized(&translate(&stream, &one_by_one).0), expected);
            for cut in 1..stream.len() {
                let (out, _) = translate(&stream, &[cut]);
                validate(&events(&out));
                assert_eq!(normalized(&out), expected, "cut at {cut}");
            }
        }
    }

    proptest! {
        #[test]
        fn random_cuts_give_the_same_events(mut cuts in proptest::collection::vec(0..1usize << 16, 0..12)) {
            let stream = tool_stream();
            cuts.iter_mut().for_each(|c| *c %= stream.len());
            cuts.sort_unstable();
            prop_assert_eq!(normalized(&translate(&stream, &cuts).0), normalized(&translate(&stream, &[]).0));
        }
    }

    #[test]
    fn length_is_incomplete() {
        let stream = chat_stream(&[
            delta(json!({"content": "Once upon"})),
            finish("length"),
            usage_chunk(),
        ]);
        let events = events(&translate(&stream, &[]).0);
        assert_eq!(events.last().unwrap().0, "response.incomplete");
        let r = validate(&events);
        assert_eq!(
            r["incomplete_details"],
            json!({"reason": "max_output_tokens"})
        );
        assert_eq!(r["output"][0]["status"], "incomplete");
        assert_eq!(r["usage"]["input_tokens"], 11);
    }

    #[test]
    fn interleaved_calls_keep_their_own_arguments() {
        let stream = chat_stream(&[
            call(0, Some("call_a"), Some("f"), "{\"a\""),
            call(1, Some("call_b"), Some("g"), "{\"b\""),
            call(0, None, None, ":1}"),
            call(1, None, None, ":2}"),
            finish("tool_calls"),
        ]);
        let r = validate(&events(&translate(&stream, &[]).0));
        assert_eq!(
            (&r["output"][0]["arguments"], &r["output"][1]["arguments"]),
            (&json!("{\"a\":1}"), &json!("{\"b\":2}"))
        );
        assert_eq!(r["usage"], Value::Null);
    }

    #[test]
    fn a_refusal_streams_as_a_refusal_part() {
        let stream = chat_stream(&[
            delta(json!({"refusal": "I can"})),
            delta(json!({"refusal": "not."})),
            finish("stop"),
        ]);
        let events = events(&translate(&stream, &[]).0);
        let r = validate(&events);
        assert!(names(&events).contains(&"response.refusal.done"));
        assert_eq!(
            r["output"][0]["content"],
            json!([{"type": "refusal", "refusal": "I cannot."}])
        );
    }

    #[test]
    fn an_error_chunk_or_a_cut_fails_the_response() {
        // An `error` member mid-stream: response.failed, then nothing more.
        let stream = format!(
            "data: {}\n\ndata: {}\n\n",
            delta(json!({"content": "Hi"})),
            json!({"error": {"message": "model crashed", "type": "server_error"}})
        );
        let mut t = StreamTranslator::new(ctx());
        let mut out = t.feed(stream.as_bytes()).to_vec();
        assert!(
            t.feed(b"data: [DONE]\n\n").is_empty()
                && t.finish().is_empty()
                && t.fail("again").is_empty()
        );
        out.extend_from_slice(&t.finish());
        let r = validate(&events(&out));
        assert_eq!(
            r["error"],
            json!({"code": "server_error", "message": "model crashed"})
        );
        assert_eq!(r["output"][0]["status"], "incomplete");
        assert_eq!(r["output"][0]["content"][0]["text"], "Hi");
        assert_eq!(t.final_response(), Some(&r));

        // The upstream ends without finish_reason or [DONE].
        let cut = format!("data: {}\n\n", delta(json!({"content": "Hi"})));
        let r = validate(&events(&translate(&cut, &[]).0));
        assert_eq!(r["status"], "failed");

        // The caller reports a failure.
        let mut t = StreamTranslator::new(ctx());
        let mut out = t.start().to_vec();
        out.extend_from_slice(&t.fail("upstream timed out"));
        let r = validate(&events(&out));
        assert_eq!(r["error"]["message"], "upstream timed out");

        // A last event without its blank line still counts.
        let unterminated = format!(
            "data: {}\n\ndata: {}",
            delta(json!({"content": "Hi"})),
            finish("stop")
        );
        assert_eq!(
            validate(&events(&translate(&unterminated, &[]).0))["status"],
            "completed"
        );
    }

    #[test]
    fn the_validator_catches_broken_streams() {
        let good = events(&translate(&tool_stream(), &[]).0);
        validate(&good);
        let broken: [fn(&mut Events); 5] = [
            |e| e.swap(3, 4),
            |e| e[5].1["sequence_number"] = json!(99),
            |e| e[9].1["item_id"] = json!("fc_other"),
            |e| e[2].1["output_index"] = json!(1),
            |e| {
                e[17].1["response"]["output"]
                    .as_array_mut()
                    .unwrap()
                    .truncate(1)
            },
        ];
        for (n, mutate) in broken.iter().enumerate() {
            let mut events = good.clone();
            mutate(&mut events);
            let caught = std::panic::catch_unwind(|| validate(&events));
            assert!(caught.is_err(), "mutation {n} passed");
        }
    }
}
