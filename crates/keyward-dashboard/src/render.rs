//! Templates, compiled into the binary and rendered with minijinja
//! (autoescaping HTML).

use std::sync::LazyLock;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use minijinja::Environment;
use serde_json::{Map, Value};

use crate::visitor::SignedIn;

macro_rules! templates {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../templates/", $name)))),*]
    };
}

const TEMPLATES: &[(&str, &str)] = templates!(
    "base.html",
    "auth.html",
    "invite.html",
    "error.html",
    "icons.html",
    "keys.html",
    "key_dialogs.html",
    "usage.html",
    "limits.html",
    "projects.html",
    "notifications.html",
);

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    for (name, source) in TEMPLATES {
        if let Err(e) = env.add_template(name, source) {
            // A broken template is a bug caught by the crate's tests.
            tracing::error!(template = name, error = %e, "dashboard template does not compile");
        }
    }
    env
});

/// Renders `name` with `ctx` as an HTML page (a 500 page if that fails).
pub fn html(name: &str, ctx: Value) -> Response {
    match ENV.get_template(name).and_then(|t| t.render(&ctx)) {
        Ok(page) => Html(page).into_response(),
        Err(e) => {
            tracing::error!(template = name, error = %e, "dashboard template failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html("<!doctype html><title>Error</title><p>This page could not be shown. Try again.</p>"),
            )
                .into_response()
        }
    }
}

/// Renders a signed-in page: adds the account, CSRF token and which
/// sidebar entry is current to `ctx`.
pub fn page(who: &SignedIn, active: &str, title: &str, ctx: Value) -> Response {
    let mut map = match ctx {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    map.insert("csrf".into(), who.csrf.clone().into());
    map.insert("active".into(), active.into());
    map.insert("title".into(), title.into());
    map.insert(
        "email".into(),
        who.caller
            .user()
            .map(|u| u.email.clone())
            .unwrap_or_default()
            .into(),
    );
    html(&format!("{active}.html"), Value::Object(map))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(name: &str, ctx: Value) -> String {
        ENV.get_template(name)
            .and_then(|t| t.render(&ctx))
            .unwrap_or_else(|e| panic!("{name}: {e:#}"))
    }

    /// Every page renders with the context its handler builds, and values
    /// are escaped.
    #[test]
    fn every_page_renders() {
        let key = serde_json::json!({
            "id": "key_x", "name": "<b>n</b>", "display_name": "<b>n</b>", "redacted": "sk-kw-…abcd",
            "created": "Nov 22, 2026", "last_used": "Never", "created_by": "a@b.co",
            "permissions": "All", "active": true, "status": "", "rpm": 5, "tpm": "",
            "concurrent": "", "budget": "", "budget_label": "None", "expires": "",
            "expires_label": "Never", "spent": "$0.00",
        });
        let project =
            serde_json::json!({ "id": "proj_x", "name": "Default project", "role": "owner" });
        let projects = serde_json::json!([{ "id": "proj_x", "name": "Default project", "role": "owner", "selected": true }]);
        let base = |extra: Value| {
            let mut v = serde_json::json!({ "csrf": "t", "email": "a@b.co", "title": "T",
                "project": project, "projects": projects, "keys": [key], "can_write": true, "is_owner": true });
            if let (Value::Object(m), Value::Object(e)) = (&mut v, extra) {
                m.extend(e);
            }
            v
        };
        let keys = render(
            "keys.html",
            base(serde_json::json!({
                "created": { "name": "n", "secret": "sk-kw-secret", "rotated": false },
                "groups": [{ "field": "perm_models", "label": "Models", "hint": "/v1/models" }],
            })),
        );
        assert!(keys.contains("sk-kw-secret") && keys.contains("&lt;b&gt;n"));
        assert!(!keys.contains("<b>n</b>"));
        render(
            "limits.html",
            base(
                serde_json::json!({ "budget_value": 10.0, "budget_label": "$10.00", "spent": "$1.00", "spent_value": 1.0 }),
            ),
        );
        render(
            "usage.html",
            base(serde_json::json!({ "rows": [], "chart": { "labels": [] }, "group": "model" })),
        );
        render(
            "projects.html",
            base(
                serde_json::json!({ "list": projects, "members": [{ "id": "user_x", "email": "a@b.co", "role": "owner", "is_you": true }], "roles": ["owner"],
                    "invitations": [{ "id": "inv_x", "email": "c@d.co", "role": "reader", "expires": "Nov 29, 2026" }],
                    "invited": { "email": "c@d.co", "role": "reader", "link": "http://h/invite?token=t", "mailed": true, "expires": "Nov 29, 2026" } }),
            ),
        );
        render(
            "notifications.html",
            base(
                serde_json::json!({ "items": [{ "message": "m", "when": "w", "exposed": true, "key": "sk-kw-a...b" }] }),
            ),
        );
        render(
            "auth.html",
            serde_json::json!({ "mode": "login", "csrf": "t", "email": "", "error": "e" }),
        );
        let closed = render(
            "auth.html",
            serde_json::json!({ "mode": "signup", "csrf": "t", "email": "", "closed": true }),
        );
        assert!(closed.contains("Sign-up is closed") && !closed.contains("type=\"password\""));
        let invite = render(
            "invite.html",
            serde_json::json!({ "csrf": "t", "token": "abc", "project": "<P>", "role": "member",
                "email": "a@b.co", "invited_by": "o@b.co", "expires": "Nov 29, 2026",
                "login": "/login?next=%2Finvite%3Ftoken%3Dabc", "signed_in_as": null }),
        );
        assert!(invite.contains("&lt;P&gt;") && invite.contains("Create account and join"));
        render(
            "error.html",
            serde_json::json!({ "title": "Not Found", "message": "m" }),
        );
    }

    #[test]
    fn every_template_compiles() {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        }
    }
}
