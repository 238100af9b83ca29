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
