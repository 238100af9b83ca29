//! Checks on values that come from outside, each naming the field it rejects.

use crate::error::{Result, ServiceError};

/// Names of keys and projects: at most this many characters.
pub const MAX_NAME_CHARS: usize = 256;
const MAX_LIST_ITEMS: usize = 100;

pub fn name(param: &'static str, value: &str) -> Result<String> {
    let trimmed = value.trim();
    if trimmed.chars().count() > MAX_NAME_CHARS {
        return Err(ServiceError::invalid(
            param,
            format!("`{param}` is too long: use at most {MAX_NAME_CHARS} characters."),
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(ServiceError::invalid(
            param,
            format!("`{param}` contains a control character; use printable text."),
        ));
    }
    Ok(trimmed.to_owned())
}

pub fn required_name(param: &'static str, value: &str) -> Result<String> {
    let v = name(param, value)?;
    if v.is_empty() {
        return Err(ServiceError::invalid(
            param,
            format!("`{param}` must not be empty."),
        ));
    }
    Ok(v)
}

/// A model allow-list: model ids, at most 100.
pub fn models(list: Vec<String>) -> Result<Vec<String>> {
    if list.len() > MAX_LIST_ITEMS {
        return Err(ServiceError::invalid(
            "allowed_models",
            format!("`allowed_models` lists too many models: at most {MAX_LIST_ITEMS}."),
        ));
    }
    list.into_iter()
        .map(|m| {
            let m = required_name("allowed_models", &m)?;
            if m.contains(char::is_whitespace) {
                return Err(ServiceError::invalid(
                    "allowed_models",
                    format!("`{m}` is not a model id: model ids contain no spaces."),
                ));
            }
            Ok(m)
        })
        .collect()
}

/// An IP allow-list: addresses or CIDR blocks, normalised to CIDR.
pub fn ips(list: Vec<String>) -> Result<Vec<String>> {
    if list.len() > MAX_LIST_ITEMS {
        return Err(ServiceError::invalid(
            "allowed_ips",
            format!("`allowed_ips` lists too many entries: at most {MAX_LIST_ITEMS}."),
        ));
    }
    list.into_iter()
        .map(|entry| {
            let e = entry.trim();
            let net = e
                .parse::<ipnet::IpNet>()
                .or_else(|_| e.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    ServiceError::invalid(
                        "allowed_ips",
                        format!(
                            "`{}` is not an IP address or CIDR block (for example 203.0.113.7 or 10.0.0.0/8).",
                            e.chars().take(64).collect::<String>()
                        ),
                    )
                })?;
            Ok(net.trunc().to_string())
        })
        .collect()
}

/// A positive limit such as requests per minute.
pub fn limit(param: &'static str, value: i64) -> Result<i64> {
    if (1..=1_000_000_000).contains(&value) {
        Ok(value)
    } else {
        Err(ServiceError::invalid(
            param,
            format!("`{param}` must be a whole number from 1 to 1000000000, or null for no limit."),
        ))
    }
}

/// An expiry time: in the future, within ten years.
pub fn expires_at(value: i64, now: i64) -> Result<i64> {
    const TEN_YEARS: i64 = 10 * 366 * 86_400;
    if value <= now {
        return Err(ServiceError::invalid(
            "expires_at",
            "`expires_at` must be in the future (Unix seconds).",
        ));
    }
    if value > now + TEN_YEARS {
        return Err(ServiceError::invalid(
            "expires_at",
            "`expires_at` must be within ten years from now.",
        ));
    }
    Ok(value)
}

pub fn email(value: &str) -> Result<String> {
    let e = value.trim().to_lowercase();
    let valid = e.len() <= 254
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        && e.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
        });
    if valid {
        Ok(e)
    } else {
        Err(ServiceError::invalid(
            "email",
            "Enter a valid email address, such as you@example.com.",
        ))
    }
}

/// Password rules, each with a message saying how to meet it.
pub fn password(value: &str) -> Result<()> {
    const MIN: usize = 12;
    const MAX: usize = 1024;
    let n = value.chars().count();
    if n < MIN {
        return Err(ServiceError::invalid(
            "password",
            format!("The password must be at least {MIN} characters long."),
        ));
    }
    if value.len() > MAX {
        return Err(ServiceError::invalid(
            "password",
            format!("The password must be at most {MAX} bytes long."),
        ));
    }
    if value.trim().is_empty() {
        return Err(ServiceError::invalid(
            "password",
            "The password must not be only spaces.",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_lists() {
        assert_eq!(name("name", "  ci key ").unwrap(), "ci key");
        assert!(name("name", &"x".repeat(257)).is_err());
        assert!(name("name", &"é".repeat(256)).is_ok());
        assert!(name("name", "a\u{7}b").is_err());
        assert_eq!(
            ips(vec!["10.1.2.3/8".into(), "::1".into()]).unwrap(),
            vec!["10.0.0.0/8", "::1/128"]
        );
        assert!(ips(vec!["10.0.0.300".into()]).is_err());
        assert!(models(vec!["gpt 4".into()]).is_err());
        assert!(limit("rpm", 0).is_err());
        assert!(email("a@b.co").is_ok());
        assert!(email("nobody").is_err());
        assert!(password("short").is_err());
        assert!(password("correct horse battery").is_ok());
    }
}
