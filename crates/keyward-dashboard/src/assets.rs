//! The stylesheet, script and chart library, embedded in the binary.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

const STYLE: &str = include_str!("../static/style.css");
const APP: &str = include_str!("../static/app.js");
const USAGE: &str = include_str!("../static/usage.js");
/// Chart.js, vendored from its npm package (see static/vendor/README.md).
const CHART: &str = include_str!("../static/vendor/chart.umd.min.js");
const ICON: &str = include_str!("../static/icon.svg");

pub async fn serve(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "style.css" => (STYLE, "text/css; charset=utf-8"),
        "app.js" => (APP, "text/javascript; charset=utf-8"),
        "usage.js" => (USAGE, "text/javascript; charset=utf-8"),
        "chart.umd.min.js" => (CHART, "text/javascript; charset=utf-8"),
        "icon.svg" => (ICON, "image/svg+xml"),
        _ => return (StatusCode::NOT_FOUND, "No such file.").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// Browsers ask for `/favicon.ico` whatever the page says.
pub async fn favicon() -> Response {
    serve(Path("icon.svg".to_owned())).await
}
