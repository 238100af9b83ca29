//! Property tests of the gateway's request parser with hostile numbers
//! (docs/authorization.md, "Numbers from outside"): any integer, float or
//! number-as-string in `max_tokens`, `max_completion_tokens`, `n` and
//! `best_of`, and hostile values nested anywhere, never make
//! [`parse`] panic; every error on a well-formed JSON object is a 400
//! naming one of the body's fields; well-typed values in range are read.

use keyward_gateway::request::{parse, Endpoint};
use proptest::prelude::*;
use proptest::sample::select;

/// Numbers at the edges of every width the parser could read them into.
const EDGES: &[&str] = &[
    "0",
    "-0",
    "0.0",
    "-0.0",
    "1",
    "-1",
    "0.5",
    "1.0",
    "1e3",
    "20",
    "21",
    "128",
    "129",
    "4294967295",
    "4294967296",
    "9007199254740993",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "1e308",
    "-1e308",
    "1.7976931348623157e308",
    "5e-324",
    "123456789012345678901234567890123456789012345678901234567890",
];

/// The fields with a numeric meaning for the gateway.
const NUMERIC_FIELDS: &[&str] = &["max_tokens", "max_completion_tokens", "n", "best_of"];

/// A JSON number, as text: any i64 or u64, a finite float, an edge, or a
/// long run of digits.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
        select(EDGES).prop_map(str::to_owned),
        (1usize..400).prop_map(|digits| "9".repeat(digits)),
    ]
}

/// A hostile value: a number, a number as a string, another scalar, or
/// numbers nested in arrays and objects.
fn value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        4 => number(),
        2 => number().prop_map(|n| format!("\"{n}\"")),
        1 => select(&["null", "true", "false", "\"\"", "[]", "{}", "\"hi\""][..])
            .prop_map(str::to_owned),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((select(NUMERIC_FIELDS), inner), 0..6).prop_map(|v| {
                let members: Vec<String> = v.iter().map(|(k, x)| format!("\"{k}\":{x}")).collect();
                format!("{{{}}}", members.join(","))
            }),
        ]
    })
}

/// A value buried `depth` arrays deep: past serde_json's recursion limit
/// (128) for some depths.
fn deep() -> impl Strategy<Value = String> {
    (0usize..300, number())
        .prop_map(|(depth, n)| format!("{}{n}{}", "[".repeat(depth), "]".repeat(depth)))
}

/// Messages the parser accepts, or messages with hostile values inside.
fn messages() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just(r#"[{"role":"user","content":"hi"}]"#.to_owned()),
        1 => value().prop_map(|v| format!(r#"[{{"role":"user","content":{v}}}]"#)),
        1 => value().prop_map(|v| format!(r#"[{{"role":"user","content":"hi","max_tokens":{v}}}]"#)),
        1 => deep().prop_map(|v| format!(r#"[{{"role":"user","content":{v}}}]"#)),
    ]
}

/// The endpoints whose body is JSON read by `request::parse` (forms are
/// read by `request::form`, batches by the batch routes).
fn endpoint() -> impl Strategy<Value = Endpoint> {
    select(
        Endpoint::ALL
            .into_iter()
            .filter(|e| !e.multipart() && *e != Endpoint::Batches)
            .collect::<Vec<_>>(),
    )
}

/// A body: `model`, every endpoint's input, then hostile fields (numeric
/// ones, possibly twice, and others holding nested values) in any order.
fn body() -> impl Strategy<Value = (Vec<String>, String)> {
    let field = prop_oneof![
        4 => (select(NUMERIC_FIELDS), value()),
        1 => (select(NUMERIC_FIELDS), deep()),
        1 => (select(&["temperature", "extra", "metadata"][..]), value()),
        1 => (select(&["extra"][..]), deep()),
    ];
    (messages(), prop::collection::vec(field, 0..6))
        .prop_flat_map(|(messages, fields)| {
            let mut members: Vec<(String, String)> = vec![
                ("model".into(), "\"m\"".into()),
                ("messages".into(), messages),
                ("prompt".into(), "\"hi\"".into()),
                ("input".into(), "\"hi\"".into()),
            ];
            members.extend(fields.into_iter().map(|(k, v)| (k.to_owned(), v)));
            Just(members).prop_shuffle()
        })
        .prop_map(|members| {
            let keys = members.iter().map(|(k, _)| k.clone()).collect();
            let text: Vec<String> = members
                .iter()
                .map(|(k, v)| format!("\"{k}\":{v}"))
                .collect();
            (keys, format!("{{{}}}", text.join(",")))
        })
}

/// The field a `param` names: `messages[0].content` → `messages`.
fn root(param: &str) -> &str {
    param.split(['.', '[']).next().unwrap_or(param)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Any bytes at all: an answer, never a panic.
    #[test]
    fn never_panics_on_any_bytes(
        endpoint in endpoint(),
        count in any::<bool>(),
        bytes in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let _ = parse(endpoint, &bytes, count);
    }

    /// Hostile numbers anywhere in an object: never a panic; on valid JSON
    /// every error is a 400 `invalid_request_error` naming a field of the body.
    #[test]
    fn errors_on_json_objects_name_a_field(
        endpoint in endpoint(),
        count in any::<bool>(),
        (keys, body) in body(),
    ) {
        let result = parse(endpoint, body.as_bytes(), count);
        let valid_json = serde_json::from_str::<serde_json::Value>(&body).is_ok();
        if let Err(e) = result {
            prop_assert_eq!(e.status().as_u16(), 400, "{}: {}", body, e.message());
            prop_assert_eq!(e.kind().error_type(), "invalid_request_error");
            prop_assert!(!e.message().trim().is_empty());
            if valid_json {
                let param = e.param().unwrap_or_default();
                prop_assert!(
                    !param.is_empty() && keys.iter().any(|k| k == root(param)),
                    "error on {} names `{}`, not one of its fields: {}",
                    body, param, e.message()
                );
            }
        }
    }

    /// The same bodies cut short or with a byte changed: never a panic.
    #[test]
    fn never_panics_on_damaged_objects(
        endpoint in endpoint(),
        count in any::<bool>(),
        (_, body) in body(),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut bytes = body.into_bytes();
        let at = flip.index(bytes.len());
        bytes[at] = byte;
        bytes.truncate(cut.index(bytes.len() + 1));
        let _ = parse(endpoint, &bytes, count);
    }

    /// Well-typed values in range are read, and the output cap is
    /// `max_completion_tokens`, else `max_tokens`.
    #[test]
    fn in_range_values_are_read(
        endpoint in endpoint(),
        count in any::<bool>(),
        max_tokens in prop::option::of(1u64..=1_000_000),
        max_completion_tokens in prop::option::of(1u64..=1_000_000),
        (n, best_of) in (1u64..=20).prop_flat_map(|n| (Just(n), prop::option::of(n..=20))),
        big_n in 1u64..=128,
        use_big_n in any::<bool>(),
    ) {
        let mut body = String::from(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"prompt":"hi","input":"hi""#);
        if let Some(m) = max_tokens {
            body += &format!(r#","max_tokens":{m}"#);
        }
        if let Some(m) = max_completion_tokens {
            body += &format!(r#","max_completion_tokens":{m}"#);
        }
        if use_big_n {
            // Images allow fewer per request than completions.
            let big_n = if endpoint == Endpoint::ImagesGenerations { big_n.min(10) } else { big_n };
            body += &format!(r#","n":{big_n}"#);
        } else if endpoint == Endpoint::ImagesGenerations {
            body += &format!(r#","n":{}"#, n.min(10));
        } else {
            body += &format!(r#","n":{n}"#);
            if let Some(b) = best_of {
                body += &format!(r#","best_of":{b}"#);
            }
        }
        body.push('}');
        let head = parse(endpoint, body.as_bytes(), count)
            .map_err(|e| TestCaseError::fail(format!("{body}: {:?} {}", e.param(), e.message())))?;
        prop_assert_eq!(head.model, "m");
        prop_assert_eq!(head.max_tokens, max_completion_tokens.or(max_tokens));
    }

    /// `max_tokens` / `max_completion_tokens` that are negative, fractional,
    /// past u64, or strings: a 400 naming that field.
    #[test]
    fn ill_typed_token_caps_are_refused_by_name(
        endpoint in endpoint(),
        count in any::<bool>(),
        field in select(&["max_tokens", "max_completion_tokens"][..]),
        bad in prop_oneof![
            (i64::MIN..0).prop_map(|n| n.to_string()),
            any::<f64>()
                .prop_filter("finite and not an integer", |f| f.is_finite() && f.fract() != 0.0)
                .prop_map(|f| format!("{f:e}")),
            Just("-1".to_owned()),
            Just("0.5".to_owned()),
            Just("18446744073709551616".to_owned()),
            Just("1e308".to_owned()),
            Just("-1e308".to_owned()),
            any::<u64>().prop_map(|n| format!("\"{n}\"")),
            Just("[1]".to_owned()),
            Just("{}".to_owned()),
            Just("true".to_owned()),
        ],
    ) {
        let body = format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}],"prompt":"hi","input":"hi","{field}":{bad}}}"#
        );
        match parse(endpoint, body.as_bytes(), count) {
            Ok(head) => prop_assert!(false, "{} accepted: max_tokens {:?}", body, head.max_tokens),
            Err(e) => {
                prop_assert_eq!(e.status().as_u16(), 400);
                prop_assert_eq!(e.param(), Some(field), "{}: {}", body, e.message());
            }
        }
    }
}
