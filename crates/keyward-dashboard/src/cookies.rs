//! Reading the `Cookie` header and writing `Set-Cookie` values. Over HTTPS
//! the cookies are `Secure` and carry the `__Host-` prefix, which browsers
//! accept only from a secure origin, for the whole site and without a
//! `Domain`: a neighbouring subdomain cannot set or overwrite them.

use axum::http::HeaderMap;

/// The dashboard's two cookies, named for how the site is reached.
#[derive(Debug, Clone, Copy)]
pub struct Cookies {
    secure: bool,
}

impl Cookies {
    pub fn new(secure: bool) -> Self {
        Cookies { secure }
    }

    /// The session token, set at log-in.
    pub fn session(self) -> &'static str {
        if self.secure {
            "__Host-kw_session"
        } else {
            "kw_session"
        }
    }

    /// A random value for browsers without a session, so the log-in and
    /// sign-up forms carry a CSRF token too.
    pub fn pre_session(self) -> &'static str {
        if self.secure {
            "__Host-kw_csrf"
        } else {
            "kw_csrf"
        }
    }

    /// A `Set-Cookie` value: HttpOnly, SameSite=Lax, the whole site,
    /// `Secure` over HTTPS. `max_age: Some(0)` deletes the cookie; `None`
    /// makes it last until the browser closes.
    pub fn set(self, name: &str, value: &str, max_age: Option<i64>) -> String {
        let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
        if let Some(age) = max_age {
            c.push_str(&format!("; Max-Age={age}"));
        }
        if self.secure {
            c.push_str("; Secure");
        }
        c
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn reads_and_writes() {
        let plain = Cookies::new(false);
        let mut h = HeaderMap::new();
        h.append("cookie", HeaderValue::from_static("a=1; kw_session=abc"));
        h.append("cookie", HeaderValue::from_static("kw_csrf=xyz"));
        assert_eq!(get(&h, plain.session()), Some("abc"));
        assert_eq!(get(&h, plain.pre_session()), Some("xyz"));
        assert_eq!(get(&h, "b"), None);
        assert_eq!(
            plain.set("kw_session", "t", Some(60)),
            "kw_session=t; Path=/; HttpOnly; SameSite=Lax; Max-Age=60"
        );
        let secure = Cookies::new(true);
        assert_eq!(
            secure.set(secure.session(), "t", Some(60)),
            "__Host-kw_session=t; Path=/; HttpOnly; SameSite=Lax; Max-Age=60; Secure"
        );
        // A plain cookie is not read as the secure one.
        assert_eq!(get(&h, secure.session()), None);
    }
}
