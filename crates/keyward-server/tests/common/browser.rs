//! A browser without JavaScript for the dashboard's tests: keeps cookies,
//! reads CSRF tokens from forms, signs up, logs in, invites, joins through
//! an invitation and creates keys.

use std::collections::BTreeMap;

use reqwest::blocking::Client;
use reqwest::header::{HeaderMap, COOKIE, HOST, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use reqwest::StatusCode;

use super::{Server, PASSWORD};

/// A browser without JavaScript: keeps cookies, follows nothing by itself.
pub struct Browser<'a> {
    pub server: &'a Server,
    pub client: Client,
    pub cookies: BTreeMap<String, String>,
    /// Every Set-Cookie header received, as sent.
    pub set_cookies: Vec<String>,
    /// A `Host` header to send instead of the server's address.
    pub host: Option<String>,
}

pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The CSRF token of the first form on the page.
    pub fn csrf(&self) -> String {
        let marker = "name=\"csrf_token\" value=\"";
        let start = self
            .body
            .find(marker)
            .unwrap_or_else(|| panic!("no form on the page: {}", self.body))
            + marker.len();
        let end = start + self.body[start..].find('"').unwrap();
        self.body[start..end].to_owned()
    }
}

impl<'a> Browser<'a> {
    pub fn new(server: &'a Server) -> Self {
        Browser {
            server,
            client: Client::builder().redirect(Policy::none()).build().unwrap(),
            cookies: BTreeMap::new(),
            set_cookies: Vec::new(),
            host: None,
        }
    }

    /// A browser that names `host` in every request's `Host` header (as
    /// through a proxy, or a rebound DNS name).
    pub fn with_host(server: &'a Server, host: &str) -> Self {
        Browser {
            host: Some(host.to_owned()),
            ..Browser::new(server)
        }
    }

    pub fn send(&mut self, req: reqwest::blocking::RequestBuilder) -> Page {
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut req = req.header(COOKIE, cookie);
        if let Some(host) = &self.host {
            req = req.header(HOST, host.as_str());
        }
        let resp = req.send().expect("request");
        for v in resp.headers().get_all(SET_COOKIE) {
            let v = v.to_str().unwrap().to_owned();
            let (pair, attrs) = v.split_once(';').unwrap_or((&v, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
            self.set_cookies.push(v.clone());
        }
        Page {
            status: resp.status(),
            headers: resp.headers().clone(),
            body: resp.text().unwrap(),
        }
    }

    pub fn get(&mut self, path: &str) -> Page {
        let req = self.client.get(format!("{}{path}", self.server.base));
        self.send(req)
    }

    pub fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        self.post_with(path, form, &[])
    }

    pub fn post_with(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Page {
        let mut req = self
            .client
            .post(format!("{}{path}", self.server.base))
            .form(form);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req)
    }

    pub fn sign_up(&mut self, email: &str) -> Page {
        let csrf = self.get("/signup").csrf();
        let page = self.post(
            "/signup",
            &[
                ("csrf_token", &csrf),
                ("email", email),
                ("password", PASSWORD),
            ],
        );
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        assert_eq!(page.location(), "/api-keys");
        page
    }

    pub fn log_in(&mut self, email: &str, password: &str) -> Page {
        let csrf = self.get("/login").csrf();
        self.post(
            "/login",
            &[
                ("csrf_token", &csrf),
                ("email", email),
                ("password", password),
            ],
        )
    }

    /// Invites `email` to `project` as `role` from the Projects page;
    /// returns the invitation link's path (`/invite?token=…`), shown once.
    pub fn invite(&mut self, project: &str, email: &str, role: &str) -> String {
        let page = self.try_invite(project, email, role);
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        invitation_link(&page)
    }

    /// Posts the invitation form and returns the page it answers.
    pub fn try_invite(&mut self, project: &str, email: &str, role: &str) -> Page {
        let csrf = self.get(&format!("/projects?project={project}")).csrf();
        self.post(
            &format!("/projects/{project}/invitations"),
            &[("csrf_token", &csrf), ("email", email), ("role", role)],
        )
    }

    /// Opens an invitation link and creates the invited account with
    /// `password`; returns the answer (303 to the project's keys when it
    /// worked).
    pub fn join_with(&mut self, link: &str, password: &str) -> Page {
        let page = self.get(link);
        if page.status != StatusCode::OK {
            return page;
        }
        let csrf = page.csrf();
        let token = link.split("token=").nth(1).unwrap_or_default().to_owned();
        self.post(
            "/invite",
            &[
                ("csrf_token", &csrf),
                ("token", &token),
                ("password", password),
            ],
        )
    }

    /// Creates the invited account through `link`, or panics.
    pub fn join(&mut self, link: &str) -> Page {
        let page = self.join_with(link, PASSWORD);
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        assert!(page.location().starts_with("/api-keys?project=proj_"));
        page
    }

    /// Accepts `link` as the signed-in account; returns the answer.
    pub fn accept(&mut self, link: &str) -> Page {
        let page = self.get(link);
        if page.status != StatusCode::OK {
            return page;
        }
        let csrf = page.csrf();
        let token = link.split("token=").nth(1).unwrap_or_default().to_owned();
        self.post(
            "/invite/accept",
            &[("csrf_token", &csrf), ("token", &token)],
        )
    }

    /// The id of the project the API keys page shows first.
    pub fn project(&mut self) -> String {
        let page = self.get("/api-keys");
        assert_eq!(page.status, 200, "{}", page.body);
        let start = page.body.find("value=\"proj_").expect("a project") + 7;
        let end = start + page.body[start..].find('"').unwrap();
        page.body[start..end].to_owned()
    }

    /// Creates a key; returns the page that shows it once.
    pub fn create_key(&mut self, project: &str, name: &str) -> Page {
        let csrf = self.get("/api-keys").csrf();
        self.post(
            "/api-keys/create",
            &[("csrf_token", &csrf), ("project", project), ("name", name)],
        )
    }
}

/// The secret shown in the "Save your key" dialog.
pub fn shown_secret(page: &Page) -> String {
    let marker = "id=\"new-secret\" class=\"mono\" type=\"text\" readonly value=\"";
    let start = page.body.find(marker).expect("the secret is shown") + marker.len();
    let end = start + page.body[start..].find('"').unwrap();
    page.body[start..end].to_owned()
}

/// The invitation link shown once on the Projects page, as a path.
pub fn invitation_link(page: &Page) -> String {
    let marker = "id=\"invitation-link\" class=\"mono\" type=\"text\" readonly value=\"";
    let start = page
        .body
        .find(marker)
        .expect("the invitation link is shown")
        + marker.len();
    let end = start + page.body[start..].find('"').unwrap();
    let link = unescape(&page.body[start..end]);
    let path = link.find("/invite?token=").expect("a link to /invite");
    link[path..].to_owned()
}

/// An attribute's text as the browser reads it (the templates escape `/`
/// and quotes).
pub fn unescape(html: &str) -> String {
    html.replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}
