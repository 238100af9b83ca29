//! A chat completions SSE stream → Responses SSE events (design §2.2, §3.4).
//!
//! Output items are opened and closed one at a time, in order, so each
//! event's `output_index` and `content_index` are the current lengths the
//! SDKs check. Tool-call fragments of another chat `index` than the open
//! call's are kept until that call closes (when text or `finish_reason`
//! comes), then sent whole; fragments of a call already closed are dropped.

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{json, Map, Value};

use super::response::{call_item, logprobs_of, message_item, refusal_part, text_part, Outcome};
use super::{mint_id, ResponseContext, ResponsesUsage};

/// Translates one streamed response. See the module's doc for the calls.
pub struct StreamTranslator {
    ctx: ResponseContext,
    /// The next event's `sequence_number`.
    seq: u64,
    started: bool,
    /// An unfinished SSE line.
    line: Vec<u8>,
    /// The `data:` lines of the SSE event being read.
    data: Vec<u8>,
    /// Items closed, in output order; the open item's index is its length.
    output: Vec<Value>,
    open: Option<Open>,
    /// Calls that came while another was open, in order of appearance.
    waiting: Vec<Call>,
    /// Chat `index`es of calls already closed.
    closed_calls: Vec<i64>,
    /// From `finish_reason`; later deltas are ignored.
    finished: Option<Outcome>,
    /// `data: [DONE]` came.
    done: bool,
    usage: Option<ResponsesUsage>,
    /// The Response of the terminal event, once sent; nothing follows it.
    terminal: Option<Value>,
}

enum Open {
    Message(Message),
    Call(Call),
}

struct Message {
    id: String,
    /// The last part is the open one.
    parts: Vec<Part>,
}

struct Part {
    refusal: bool,
    text: String,
    logprobs: Vec<Value>,
}

impl Part {
    fn json(&self) -> Value {
        if self.refusal {
            refusal_part(&self.text)
        } else {
            text_part(&self.text, self.logprobs.clone())
        }
    }
}

impl Message {
    fn item(&self, status: &str) -> Value {
        message_item(
            &self.id,
            status,
            self.parts.iter().map(Part::json).collect(),
        )
    }
}

struct Call {
    index: i64,
    id: String,
    call_id: String,
    name: String,
    arguments: String,
}

impl Call {
    fn item(&self, status: &str) -> Value {
        call_item(&self.id, &self.call_id, &self.name, &self.arguments, status)
    }
}

impl Open {
    fn item(&self, status: &str) -> Value {
        match self {
            Open::Message(m) => m.item(status),
            Open::Call(c) => c.item(status),
        }
    }
}

impl StreamTranslator {
    pub fn new(ctx: ResponseContext) -> Self {
        StreamTranslator {
            ctx,
            seq: 0,
            started: false,
            line: Vec::new(),
            data: Vec::new(),
            output: Vec::new(),
            open: None,
            waiting: Vec::new(),
            closed_calls: Vec::new(),
            finished: None,
            done: false,
            usage: None,
            terminal: None,
        }
    }

    /// `response.created` and `response.in_progress`: can be sent before
    /// the upstream answers. Called by the others if not called first.
    pub fn start(&mut self) -> Bytes {
        let mut out = BytesMut::new();
        self.start_into(&mut out);
        out.freeze()
    }

    /// Takes bytes of the chat stream, cut anywhere; returns the events
    /// they complete. The usage chunk and `[DONE]` are consumed.
    pub fn feed(&mut self, chunk: &[u8]) -> Bytes {
        let mut out = BytesMut::new();
        self.start_into(&mut out);
        let mut rest = chunk;
        while self.terminal.is_none() {
            let Some(end) = rest.iter().position(|&b| b == b'\n') else {
                self.line.extend_from_slice(rest);
                break;
            };
            self.line.extend_from_slice(&rest[..end]);
            rest = &rest[end + 1..];
            let line = std::mem::take(&mut self.line);
            self.read_line(&line, &mut out);
        }
        out.freeze()
    }

    /// The upstream ended: closes what is open and sends
    /// `response.completed` (or `response.incomplete`), or
    /// `response.failed` when the chat stream stopped before its end.
    pub fn finish(&mut self) -> Bytes {
        let mut out = BytesMut::new();
        self.start_into(&mut out);
        if self.terminal.is_none() {
            // A last line or event without its terminating newline.
            let line = std::mem::take(&mut self.line);
            self.read_line(&line, &mut out);
            self.read_line(b"", &mut out);
        }
        if self.terminal.is_none() {
            match self.finished.clone() {
                Some(outcome) => self.end(outcome, &mut out),
                None if self.done => self.end(Outcome::Completed, &mut out),
                None => self.fail_into(
                    "The upstream's stream ended before the response did (no finish_reason).",
                    &mut out,
                ),
            }
        }
        out.freeze()
    }

    /// The upstream failed or was cut off mid-stream: `response.failed`
    /// with `message` (code `server_error`), unless the stream has ended.
    pub fn fail(&mut self, message: &str) -> Bytes {
        let mut out = BytesMut::new();
        self.start_into(&mut out);
        self.fail_into(message, &mut out);
        out.freeze()
    }

    /// The token counts of the chat usage chunk, once it has come.
    pub fn usage(&self) -> Option<ResponsesUsage> {
        self.usage
    }

    /// The Response object of the terminal event, once it is sent.
    pub fn final_response(&self) -> Option<&Value> {
        self.terminal.as_ref()
    }

    fn start_into(&mut self, out: &mut BytesMut) {
        if self.started {
            return;
        }
        self.started = true;
        let response = self.ctx.response(&Outcome::InProgress, Vec::new(), None);
        for kind in ["response.created", "response.in_progress"] {
            self.emit(out, kind, json!({ "response": response }));
        }
    }

    /// One SSE line (without its `\n`): `data:` lines gather until the
    /// blank line that ends the event; comments and other fields are ignored.
    fn read_line(&mut self, line: &[u8], out: &mut BytesMut) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if !self.data.is_empty() {
                let data = std::mem::take(&mut self.data);
                self.read_data(&data, out);
            }
        } else if let Some(data) = line.strip_prefix(b"data:") {
            if !self.data.is_empty() {
                self.data.push(b'\n');
            }
            self.data
                .extend_from_slice(data.strip_prefix(b" ").unwrap_or(data));
        }
    }

    /// One event's data: a chat chunk, or `[DONE]`.
    fn read_data(&mut self, data: &[u8], out: &mut BytesMut) {
        let data = data.trim_ascii();
        if data == b"[DONE]" {
            self.done = true;
            return;
        }
        let chunk: Value = match serde_json::from_slice(data) {
            Ok(chunk) => chunk,
            Err(_) => {
                return self.fail_into("The upstream sent a stream chunk that is not JSON.", out)
            }
        };
        if let Some(error) = chunk.get("error").filter(|e| !e.is_null()) {
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("The upstream reported an error mid-stream.");
            return self.fail_into(message, out);
        }
        if let Some(usage) = chunk.get("usage").and_then(ResponsesUsage::from_chat) {
            self.usage = Some(usage);
        }
        let choices = chunk.get("choices").and_then(Value::as_array);
        // One choice is asked for (`n` is not a Responses field).
        let Some(choice) = choices.and_then(|c| c.first()) else {
            return;
        };
        if self.finished.is_some() {
            return;
        }
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        if let Some(text) = delta.get("content").and_then(Value::as_str) {
            self.text(false, text, logprobs_of(choice), out);
        }
        if let Some(text) = delta.get("refusal").and_then(Value::as_str) {
            self.text(true, text, Vec::new(), out);
        }
        for fragment in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.call_fragment(fragment, out);
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            let outcome = Outcome::of_finish(Some(reason));
            self.close_all(outcome.item_status(), out);
            self.finished = Some(outcome);
        }
    }

    /// Text (or refusal) for the message item, opened (with a part of
    /// that kind) as needed.
    fn text(&mut self, refusal: bool, text: &str, logprobs: Vec<Value>, out: &mut BytesMut) {
        if text.is_empty() {
            return;
        }
        if matches!(self.open, Some(Open::Call(_))) {
            self.close_all("completed", out);
        }
        let output_index = self.output.len();
        if self.open.is_none() {
            let message = Message {
                id: mint_id("msg_"),
                parts: Vec::new(),
            };
            let item = message.item("in_progress");
            self.emit(
                out,
                "response.output_item.added",
                json!({"output_index": output_index, "item": item}),
            );
            self.open = Some(Open::Message(message));
        }
        let Some(Open::Message(mut message)) = self.open.take() else {
            unreachable!("a message was opened above");
        };
        if message.parts.last().is_none_or(|p| p.refusal != refusal) {
            self.close_part(&message, out);
            let part = Part {
                refusal,
                text: String::new(),
                logprobs: Vec::new(),
            };
            let fields = json!({"item_id": message.id, "output_index": output_index,
                "content_index": message.parts.len(), "part": part.json()});
            self.emit(out, "response.content_part.added", fields);
            message.parts.push(part);
        }
        let content_index = message.parts.len() - 1;
        let mut fields = json!({"item_id": message.id, "output_index": output_index,
            "content_index": content_index, "delta": text});
        let part = &mut message.parts[content_index];
        part.text.push_str(text);
        let kind = if refusal {
            "response.refusal.delta"
        } else {
            fields["logprobs"] = Value::Array(logprobs.clone());
            part.logprobs.extend(logprobs);
            "response.output_text.delta"
        };
        self.emit(out, kind, fields);
        self.open = Some(Open::Message(message));
    }

    /// One `delta.tool_calls[]` fragment.
    fn call_fragment(&mut self, fragment: &Value, out: &mut BytesMut) {
        let index = fragment.get("index").and_then(Value::as_i64).unwrap_or(0);
        if self.closed_calls.contains(&index) {
            return;
        }
        let text = |pointer| {
            fragment
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or("")
        };
        let (name, arguments) = (text("/function/name"), text("/function/arguments"));
        let same = |open: &mut Open| matches!(open, Open::Call(call) if call.index == index);
        if let Some(Open::Call(mut call)) = self.open.take_if(same) {
            if call.name.is_empty() {
                call.name = name.to_owned();
            }
            if !arguments.is_empty() {
                call.arguments.push_str(arguments);
                let fields = json!({"item_id": call.id, "output_index": self.output.len(), "delta": arguments});
                self.emit(out, "response.function_call_arguments.delta", fields);
            }
            self.open = Some(Open::Call(call));
        } else if matches!(self.open, Some(Open::Call(_))) {
            match self.waiting.iter_mut().find(|c| c.index == index) {
                Some(call) => {
                    if call.name.is_empty() {
                        call.name = name.to_owned();
                    }
                    call.arguments.push_str(arguments);
                }
                None => self
                    .waiting
                    .push(new_call(index, text("/id"), name, arguments)),
            }
        } else {
            self.close_all("completed", out);
            self.open_call(new_call(index, text("/id"), name, ""), arguments, out);
        }
    }

    /// Sends `output_item.added` for `call`, then `arguments` as its
    /// first delta, and leaves it open.
    fn open_call(&mut self, call: Call, arguments: &str, out: &mut BytesMut) {
        let output_index = self.output.len();
        let fields = json!({"output_index": output_index, "item": call.item("in_progress")});
        self.emit(out, "response.output_item.added", fields);
        let mut call = call;
        if !arguments.is_empty() {
            call.arguments.push_str(arguments);
            let fields =
                json!({"item_id": call.id, "output_index": output_index, "delta": arguments});
            self.emit(out, "response.function_call_arguments.delta", fields);
        }
        self.open = Some(Open::Call(call));
    }

    /// Closes the open item, then sends each waiting call whole.
    fn close_all(&mut self, status: &str, out: &mut BytesMut) {
        self.close_open(status, out);
        for mut call in std::mem::take(&mut self.waiting) {
            let arguments = std::mem::take(&mut call.arguments);
            self.open_call(call, &arguments, out);
            self.close_open(status, out);
        }
    }

    /// Sends the `….done` events of the open item and moves it to `output`.
    fn close_open(&mut self, status: &str, out: &mut BytesMut) {
        let Some(open) = self.open.take() else {
            return;
        };
        let output_index = self.output.len();
        match &open {
            Open::Message(message) => self.close_part(message, out),
            Open::Call(call) => {
                let fields = json!({"item_id": call.id, "output_index": output_index,
                    "name": call.name, "arguments": call.arguments});
                self.emit(out, "response.function_call_arguments.done", fields);
                self.closed_calls.push(call.index);
            }
        }
        let item = open.item(status);
        self.emit(
            out,
            "response.output_item.done",
            json!({"output_index": output_index, "item": item}),
        );
        self.output.push(item);
    }

    /// Sends the `….done` and `content_part.done` events of a message's
    /// last part, if it has one.
    fn close_part(&mut self, message: &Message, out: &mut BytesMut) {
        let Some(part) = message.parts.last() else {
            return;
        };
        let mut fields = json!({"item_id": message.id, "output_index": self.output.len(),
            "content_index": message.parts.len() - 1});
        let kind = if part.refusal {
            fields["refusal"] = json!(part.text);
            "response.refusal.done"
        } else {
            fields["text"] = json!(part.text);
            fields["logprobs"] = Value::Array(part.logprobs.clone());
            "response.output_text.done"
        };
        self.emit(out, kind, fields.clone());
        fields["part"] = part.json();
        if let Some(map) = fields.as_object_mut() {
            map.remove("text");
            map.remove("refusal");
            map.remove("logprobs");
        }
        self.emit(out, "response.content_part.done", fields);
    }

    /// Closes what is open and sends the terminal event for `outcome`.
    fn end(&mut self, outcome: Outcome, out: &mut BytesMut) {
        self.close_all(outcome.item_status(), out);
        self.terminate(outcome, self.output.clone(), out);
    }

    /// `response.failed`: the output so far, an open item as incomplete.
    fn fail_into(&mut self, message: &str, out: &mut BytesMut) {
        if self.terminal.is_some() {
            return;
        }
        let mut output = self.output.clone();
        output.extend(self.open.as_ref().map(|open| open.item("incomplete")));
        self.terminate(Outcome::Failed(message.to_owned()), output, out);
    }

    fn terminate(&mut self, outcome: Outcome, output: Vec<Value>, out: &mut BytesMut) {
        let response = self.ctx.response(&outcome, output, self.usage);
        self.emit(
            out,
            outcome.terminal_event(),
            json!({ "response": response }),
        );
        self.terminal = Some(response);
    }

    /// Writes `event: <kind>\ndata: <json>\n\n`, the JSON being `fields`
    /// with `type` and the next `sequence_number`.
    fn emit(&mut self, out: &mut BytesMut, kind: &str, fields: Value) {
        let mut data = match fields {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        data.insert("type".into(), kind.into());
        data.insert("sequence_number".into(), self.seq.into());
        self.seq += 1;
        out.put_slice(b"event: ");
        out.put_slice(kind.as_bytes());
        out.put_slice(b"\ndata: ");
        out.put_slice(Value::Object(data).to_string().as_bytes());
        out.put_slice(b"\n\n");
    }
}

/// A call from its first fragment: a new `fc_…` item id; the chat `id` as
/// `call_id` (one is minted if the upstream sent none).
fn new_call(index: i64, chat_id: &str, name: &str, arguments: &str) -> Call {
    Call {
        index,
        id: mint_id("fc_"),
        call_id: if chat_id.is_empty() {
            mint_id("call_")
        } else {
            chat_id.to_owned()
        },
        name: name.to_owned(),
        arguments: arguments.to_owned(),
    }
}
