//! Which site the dashboard is: the host names it answers to and the
//! origin its forms must come from. With `public_url` that is its host
//! alone; without, the loopback names (`localhost`, `127.0.0.1`, `[::1]`)
//! and the listen address. Any other `Host` is refused, so a web page that
//! points its own name at a developer's 127.0.0.1 (DNS rebinding) reaches
//! nothing, and a form's `Origin` is compared with these names, never with
//! the request's own `Host`. Host names are compared without their ports:
//! a tunnel (`ssh -L`) or a proxy may change the port, while rebinding
//! needs another name.

use std::net::{IpAddr, SocketAddr};

/// The site the dashboard serves.
#[derive(Debug, Clone)]
pub struct Site {
    /// `public_url` as given, without a trailing slash.
    public_url: Option<String>,
    https: bool,
    /// Host names accepted in `Host` and `Origin`, lower-case, IPv6 in brackets.
    hosts: Vec<String>,
}

impl Default for Site {
    fn default() -> Self {
        Site::local(SocketAddr::from(([127, 0, 0, 1], 8080)))
    }
}

/// The host name of an authority (`name`, `name:port`, `[v6]:port`),
/// lower-case, without its port; `None` when it is not one.
fn host_name(authority: &str) -> Option<String> {
    let authority = authority.trim();
    let name = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let rest = &authority[end + 1..];
        if !(rest.is_empty() || rest.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        &authority[..=end]
    } else {
        match authority.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return None,
            None => authority,
        }
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.[]:_".contains(&b));
    valid.then_some(name)
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

/// `https://name[:port]` → (https, name).
fn origin_parts(origin: &str) -> Option<(bool, String)> {
    let (https, rest) = if let Some(rest) = origin.strip_prefix("https://") {
        (true, rest)
    } else {
        (false, origin.strip_prefix("http://")?)
    };
    Some((https, host_name(rest)?))
}

impl Site {
    /// The site without a `public_url`: loopback names and `listen`'s address.
    pub fn local(listen: SocketAddr) -> Site {
        let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "[::1]"]
            .into_iter()
            .map(String::from)
            .collect();
        let ip = listen.ip();
        if !ip.is_unspecified() {
            let name = match ip {
                IpAddr::V4(v4) => v4.to_string(),
                IpAddr::V6(v6) => format!("[{v6}]"),
            };
            if !hosts.contains(&name) {
                hosts.push(name);
            }
        }
        Site {
            public_url: None,
            https: false,
            hosts,
        }
    }

    /// The site named by `public_url` (`https://keys.example.com`), or the
    /// local one without it. An error says what is wrong with the URL.
    pub fn new(public_url: Option<&str>, listen: SocketAddr) -> Result<Site, String> {
        let Some(url) = public_url.map(str::trim).filter(|u| !u.is_empty()) else {
            return Ok(Site::local(listen));
        };
        let url = url.trim_end_matches('/');
        let bad = |why: &str| {
            format!("public_url `{url}` {why}; give the dashboard's origin, such as https://keys.example.com")
        };
        let Some((https, host)) = origin_parts(url) else {
            let rest = url.split_once("://").map_or(url, |(_, r)| r);
            return Err(
                if rest.contains('/') || rest.contains('?') || rest.contains('#') {
                    bad("has a path; Keyward is served at the root of its host")
                } else if url.contains("://") && !url.starts_with("http") {
                    bad("must start with https:// or http://")
                } else {
                    bad("is not a URL")
                },
            );
        };
        Ok(Site {
            public_url: Some(url.to_owned()),
            https,
            hosts: vec![host],
        })
    }

    /// Whether users reach the dashboard over HTTPS (`public_url` is https).
    pub fn https(&self) -> bool {
        self.https
    }

    pub fn public_url(&self) -> Option<&str> {
        self.public_url.as_deref()
    }

    /// Whether a request's `Host` names this site.
    pub fn allows_host(&self, host: &str) -> bool {
        host_name(host).is_some_and(|name| self.hosts.contains(&name))
    }

    /// Whether a form's `Origin` is this site.
    pub fn allows_origin(&self, origin: &str) -> bool {
        origin_parts(origin).is_some_and(|(https, name)| {
            self.hosts.contains(&name) && (self.public_url.is_none() || https == self.https)
        })
    }

    /// Where links to the dashboard point (`public_url`, or the host this
    /// request came to, which [`Site::allows_host`] has accepted).
    pub fn base_url(&self, request_host: &str) -> String {
        match &self.public_url {
            Some(url) => url.clone(),
            None => format!("http://{request_host}"),
        }
    }

    /// What to tell a browser that asked for another host.
    pub fn wrong_host_message(&self) -> String {
        match &self.public_url {
            Some(url) => format!(
                "This Keyward dashboard answers at {url} (its public_url). Open it there."
            ),
            None => format!(
                "This Keyward dashboard answers only at {}. To reach it under another name, \
                 its operator sets public_url (KEYWARD_PUBLIC_URL), such as https://keys.example.com.",
                self.hosts.join(", ")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listen() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    #[test]
    fn without_public_url_only_loopback_names_any_port() {
        let s = Site::new(None, listen()).unwrap();
        for ok in [
            "127.0.0.1:8080",
            "localhost",
            "LOCALHOST:9000",
            "[::1]:80",
            "127.0.0.1",
        ] {
            assert!(s.allows_host(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "127.0.0.1.evil.example",
            "",
            "a b",
            "127.0.0.1:x",
        ] {
            assert!(!s.allows_host(bad), "{bad}");
        }
        assert!(s.allows_origin("http://127.0.0.1:8080"));
        assert!(!s.allows_origin("http://evil.example:8080"));
        assert!(!s.allows_origin("null"));
        assert!(!s.https());
    }

    #[test]
    fn the_listen_address_is_allowed_but_not_all_interfaces() {
        let s = Site::new(None, "10.1.2.3:8080".parse().unwrap()).unwrap();
        assert!(s.allows_host("10.1.2.3:8080"));
        let s = Site::new(None, "0.0.0.0:8080".parse().unwrap()).unwrap();
        assert!(!s.allows_host("0.0.0.0:8080"));
        assert!(!s.allows_host("10.1.2.3:8080"));
        assert!(s.wrong_host_message().contains("public_url"));
    }

    #[test]
    fn public_url_names_the_only_host_and_origin() {
        let s = Site::new(Some("https://Keys.Example.com/"), listen()).unwrap();
        assert!(s.https());
        assert_eq!(s.public_url(), Some("https://Keys.Example.com"));
        assert!(s.allows_host("keys.example.com"));
        assert!(s.allows_host("keys.example.com:443"));
        assert!(!s.allows_host("127.0.0.1:8080"));
        assert!(s.allows_origin("https://keys.example.com"));
        assert!(!s.allows_origin("http://keys.example.com"));
        assert!(!s.allows_origin("https://evil.example"));
        assert_eq!(s.base_url("ignored"), "https://Keys.Example.com");
    }

    #[test]
    fn a_public_url_that_is_not_an_origin_is_refused() {
        for bad in [
            "keys.example.com",
            "ftp://keys.example.com",
            "https://keys.example.com/keyward",
            "https://",
        ] {
            let e = Site::new(Some(bad), listen()).unwrap_err();
            assert!(e.contains("https://keys.example.com"), "{bad}: {e}");
        }
    }
}
