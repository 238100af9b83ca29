//! Reading form fields into domain values, with messages naming the field.

use keyward_core::permissions::Restricted;
use keyward_core::RateLimits;
use keyward_core::{Access, EndpointGroup, Micros, Permissions};
use keyward_service::{LimitsPatch, ServiceError};

fn invalid(param: &'static str, message: String) -> ServiceError {
    ServiceError::Invalid {
        param: Some(param),
        message,
    }
}

/// An optional whole number: empty means none.
pub fn opt_count(param: &'static str, label: &str, raw: &str) -> Result<Option<i64>, ServiceError> {
    let raw = raw.trim().replace([',', '_'], "");
    if raw.is_empty() {
        return Ok(None);
    }
    raw.parse::<i64>().map(Some).map_err(|_| {
        invalid(
            param,
            format!("{label} must be a whole number, or empty for no limit."),
        )
    })
}

/// The three rate-limit fields of a limits form, all set (an empty one
/// clears its limit).
pub fn limits(rpm: &str, tpm: &str, concurrent: &str) -> Result<LimitsPatch, ServiceError> {
    Ok(LimitsPatch::set(RateLimits {
        requests_per_minute: opt_count("rpm", "Requests per minute", rpm)?,
        tokens_per_minute: opt_count("tpm", "Tokens per minute", tpm)?,
        max_concurrent_requests: opt_count("concurrent", "Concurrent requests", concurrent)?,
    }))
}

/// An optional amount of US dollars (`12.50`, `$12.50`): empty means none.
pub fn opt_usd(
    param: &'static str,
    label: &str,
    raw: &str,
) -> Result<Option<Micros>, ServiceError> {
    let raw = raw.trim().trim_start_matches('$').replace(',', "");
    if raw.is_empty() {
        return Ok(None);
    }
    raw.parse::<f64>()
        .ok()
        .and_then(|usd| Micros::from_usd(usd).ok())
        .map(Some)
        .ok_or_else(|| {
            invalid(
                param,
                format!("{label} must be an amount in US dollars, such as 25 or 12.50, or empty for none."),
            )
        })
}

fn access(raw: &str) -> Access {
    match raw {
        "read" => Access::Read,
        "write" => Access::Write,
        _ => Access::None,
    }
}

/// Each endpoint group in the create dialog's Restricted editor: its form
/// field, its label and the endpoints it covers, in the dialog's order.
pub const GROUP_FIELDS: [(EndpointGroup, &str, &str, &str); 11] = [
    (EndpointGroup::Models, "perm_models", "Models", "/v1/models"),
    (
        EndpointGroup::ChatCompletions,
        "perm_chat_completions",
        "Model capabilities",
        "/v1/chat/completions, /v1/completions",
    ),
    (
        EndpointGroup::Responses,
        "perm_responses",
        "Responses API",
        "/v1/responses",
    ),
    (
        EndpointGroup::Embeddings,
        "perm_embeddings",
        "Embeddings",
        "/v1/embeddings",
    ),
    (
        EndpointGroup::Moderations,
        "perm_moderations",
        "Moderations",
        "/v1/moderations",
    ),
    (EndpointGroup::Images, "perm_images", "Images", "/v1/images"),
    (EndpointGroup::Audio, "perm_audio", "Audio", "/v1/audio"),
    (EndpointGroup::Files, "perm_files", "Files", "/v1/files"),
    (EndpointGroup::Batch, "perm_batch", "Batch", "/v1/batches"),
    (
        EndpointGroup::Usage,
        "perm_usage",
        "Usage",
        "/v1/organization/usage, /v1/organization/costs",
    ),
    (
        EndpointGroup::Keys,
        "perm_keys",
        "API keys",
        "This project's /api_keys",
    ),
];

/// The groups as the create dialog's template lists them.
pub fn group_fields_json() -> serde_json::Value {
    GROUP_FIELDS
        .iter()
        .map(|(_, field, label, hint)| serde_json::json!({"field": field, "label": label, "hint": hint}))
        .collect()
}

/// The Permissions radio group (`all`, `restricted`, `read_only`) and, for
/// Restricted, one none/read/write choice per group, read by field name
/// (`field` gives a field's value, empty when absent).
pub fn permissions<'a>(
    mode: &str,
    field: impl Fn(&str) -> &'a str,
) -> Result<Permissions, ServiceError> {
    match mode {
        "" | "all" => Ok(Permissions::All),
        "read_only" => Ok(Permissions::ReadOnly),
        "restricted" => Ok(Permissions::Restricted(
            GROUP_FIELDS
                .iter()
                .fold(Restricted::default(), |r, &(group, name, _, _)| {
                    r.with(group, access(field(name)))
                }),
        )),
        _ => Err(invalid(
            "permissions",
            "Choose the key's permissions: All, Restricted or Read only.".into(),
        )),
    }
}

/// How people read a key's permissions.
pub fn permissions_label(p: &Permissions) -> &'static str {
    match p {
        Permissions::All => "All",
        Permissions::ReadOnly => "Read only",
        Permissions::Restricted(_) => "Restricted",
    }
}

/// What a Restricted key may do, group by group (`Models: read, …`).
pub fn permissions_detail(p: &Permissions) -> String {
    match p {
        Permissions::All => "Every model endpoint, and reading usage; not key management".into(),
        Permissions::ReadOnly => "Read access to models and usage; not key management".into(),
        Permissions::Restricted(_) => EndpointGroup::ALL
            .iter()
            .map(|&g| {
                let access = match p.access(g) {
                    Access::None => "none",
                    Access::Read => "read",
                    Access::Write => "write",
                };
                format!("{}: {access}", group_label(g))
            })
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// The name the create dialog gives an endpoint group.
fn group_label(g: EndpointGroup) -> &'static str {
    GROUP_FIELDS
        .iter()
        .find(|(group, ..)| *group == g)
        .map_or("", |&(_, _, label, _)| label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields() {
        assert_eq!(opt_count("rpm", "RPM", " 1,000 ").unwrap(), Some(1000));
        assert_eq!(opt_count("rpm", "RPM", "").unwrap(), None);
        assert!(opt_count("rpm", "RPM", "ten").is_err());
        assert_eq!(
            opt_usd("b", "Budget", "$12.50").unwrap(),
            Some(Micros(12_500_000))
        );
        assert!(opt_usd("b", "Budget", "-1").is_err());
        let fields = |name: &str| match name {
            "perm_models" => "read",
            "perm_chat_completions" => "write",
            "perm_files" => "read",
            "perm_batch" => "write",
            "perm_keys" => "bogus",
            _ => "",
        };
        let p = permissions("restricted", fields).unwrap();
        assert_eq!(p.access(EndpointGroup::Models), Access::Read);
        assert_eq!(p.access(EndpointGroup::Keys), Access::None);
        assert_eq!(p.access(EndpointGroup::Files), Access::Read);
        assert_eq!(p.access(EndpointGroup::Batch), Access::Write);
        assert_eq!(p.access(EndpointGroup::Responses), Access::None);
        // Every group has a field, a label and a place in the dialog.
        for g in EndpointGroup::ALL {
            assert!(GROUP_FIELDS.iter().any(|(group, ..)| *group == g), "{g:?}");
            assert!(!group_label(g).is_empty());
        }
    }
}
