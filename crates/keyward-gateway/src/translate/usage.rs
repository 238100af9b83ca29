//! Token counts in the Responses API's shape, read from a chat completion's
//! `usage` (translated routes) or a Response object's (native routes), and
//! written back out as a Response object's `usage` (design §3.5).

use serde_json::{json, Value};

/// A response's token counts. `cached_tokens` is a part of `input_tokens`
/// and `reasoning_tokens` a part of `output_tokens`, never in addition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResponsesUsage {
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_tokens: i64,
    pub reasoning_tokens: i64,
}

impl ResponsesUsage {
    /// Reads a chat completion's `usage` object (`prompt_tokens`,
    /// `completion_tokens` and their details); None when it is not an object.
    pub fn from_chat(usage: &Value) -> Option<Self> {
        usage.as_object()?;
        Some(ResponsesUsage {
            input_tokens: count(usage, &["prompt_tokens"]),
            output_tokens: count(usage, &["completion_tokens"]),
            cached_tokens: count(usage, &["prompt_tokens_details", "cached_tokens"]),
            reasoning_tokens: count(usage, &["completion_tokens_details", "reasoning_tokens"]),
        })
    }

    /// The Response object's `usage` member.
    pub fn to_json(self) -> Value {
        json!({
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": self.cached_tokens, "cache_write_tokens": 0},
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
            "total_tokens": self.input_tokens + self.output_tokens,
        })
    }
}

/// The usage of any Response object (translated or from an upstream that
/// speaks Responses): its `usage` member, None while it is null or absent.
/// A missing count reads as 0.
pub fn usage_of_response(response: &Value) -> Option<ResponsesUsage> {
    let usage = response.get("usage")?;
    usage.as_object()?;
    Some(ResponsesUsage {
        input_tokens: count(usage, &["input_tokens"]),
        output_tokens: count(usage, &["output_tokens"]),
        cached_tokens: count(usage, &["input_tokens_details", "cached_tokens"]),
        reasoning_tokens: count(usage, &["output_tokens_details", "reasoning_tokens"]),
    })
}

/// The integer at `path`, 0 when absent, null or not an integer.
fn count(v: &Value, path: &[&str]) -> i64 {
    path.iter()
        .try_fold(v, |v, key| v.get(key))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_usage_maps_to_responses_usage_and_back() {
        let chat = json!({"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29,
            "prompt_tokens_details": {"cached_tokens": 4},
            "completion_tokens_details": {"reasoning_tokens": 3}});
        let u = ResponsesUsage::from_chat(&chat).unwrap();
        assert_eq!(
            u,
            ResponsesUsage {
                input_tokens: 20,
                output_tokens: 9,
                cached_tokens: 4,
                reasoning_tokens: 3
            }
        );
        let json = u.to_json();
        assert_eq!(json["total_tokens"], 29);
        assert_eq!(json["input_tokens_details"]["cache_write_tokens"], 0);
        assert_eq!(usage_of_response(&json!({ "usage": json })), Some(u));
        // Details absent: zero.
        let bare = ResponsesUsage::from_chat(&json!({"prompt_tokens": 1, "completion_tokens": 2}));
        assert_eq!(bare.unwrap().cached_tokens, 0);
        assert_eq!(ResponsesUsage::from_chat(&Value::Null), None);
        assert_eq!(usage_of_response(&json!({"usage": null})), None);
        assert_eq!(usage_of_response(&json!({})), None);
    }
}
