//! Reading form fields into domain values, with messages naming the field.

use keyward_core::permissions::Restricted;
use keyward_core::RateLimits;
use keyward_core::{Access, Micros, Permissions};
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

/// The Permissions radio group (`all`, `restricted`, `read_only`) and, for
/// Restricted, one none/read/write choice per endpoint group.
pub struct PermissionFields<'a> {
    pub mode: &'a str,
    pub models: &'a str,
    pub chat_completions: &'a str,
    pub embeddings: &'a str,
    pub usage: &'a str,
    pub keys: &'a str,
}

pub fn permissions(f: PermissionFields<'_>) -> Result<Permissions, ServiceError> {
    match f.mode {
        "" | "all" => Ok(Permissions::All),
        "read_only" => Ok(Permissions::ReadOnly),
        "restricted" => Ok(Permissions::Restricted(Restricted {
            models: access(f.models),
            chat_completions: access(f.chat_completions),
            embeddings: access(f.embeddings),
            usage: access(f.usage),
            keys: access(f.keys),
        })),
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
        Permissions::Restricted(_) => keyward_core::EndpointGroup::ALL
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
fn group_label(g: keyward_core::EndpointGroup) -> &'static str {
    use keyward_core::EndpointGroup::*;
    match g {
        Models => "Models",
        ChatCompletions => "Model capabilities",
        Embeddings => "Embeddings",
        Usage => "Usage",
        Keys => "API keys",
    }
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
        let p = permissions(PermissionFields {
            mode: "restricted",
            models: "read",
            chat_completions: "write",
            embeddings: "none",
            usage: "",
            keys: "bogus",
        })
        .unwrap();
        assert_eq!(p.access(keyward_core::EndpointGroup::Models), Access::Read);
        assert_eq!(p.access(keyward_core::EndpointGroup::Keys), Access::None);
    }
}
