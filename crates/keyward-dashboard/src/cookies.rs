//! Reading the `Cookie` header and writing `Set-Cookie` values.

use axum::http::HeaderMap;

/// The session token, set at log-in.
pub const SESSION: &str = "kw_session";
/// A random value for browsers without a session, so the log-in and
/// sign-up forms carry a CSRF token too.
pub const PRE_SESSION: &str = "kw_csrf";

/// The value of cookie `name`, if the browser sent it.
pub fn get<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax, the whole site, `Secure`
/// when configured. `max_age: Some(0)` deletes the cookie; `None` makes it
/// last until the browser closes.
pub fn set(name: &str, value: &str, max_age: Option<i64>, secure: bool) -> String {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        c.push_str("; Secure");
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn reads_and_writes() {
        let mut h = HeaderMap::new();
        h.append("cookie", HeaderValue::from_static("a=1; kw_session=abc"));
        h.append("cookie", HeaderValue::from_static("kw_csrf=xyz"));
        assert_eq!(get(&h, SESSION), Some("abc"));
        assert_eq!(get(&h, PRE_SESSION), Some("xyz"));
        assert_eq!(get(&h, "b"), None);
        assert_eq!(
            set("kw_session", "t", Some(60), true),
            "kw_session=t; Path=/; HttpOnly; SameSite=Lax; Max-Age=60; Secure"
        );
    }
}
