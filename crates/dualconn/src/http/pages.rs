//! The pages the binary serves from memory: the demo game at `/` and the dashboard at
//! `/dashboard`, with their assets under `/static/`. Built files live in `web/public` and are
//! embedded at compile time, so the server works offline with nothing installed.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use include_dir::{Dir, include_dir};

use super::AppState;
use super::error::ApiError;

static PUBLIC: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../web/public");

/// Scripts and connections only from this origin; nothing inline.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'";

pub async fn demo() -> Response {
    file("index.html")
}

pub async fn dashboard() -> Response {
    file("dashboard.html")
}

pub async fn asset(Path(path): Path<String>) -> Response {
    file(&format!("static/{path}"))
}

fn file(path: &str) -> Response {
    // include_dir paths never contain `..`, so a crafted path can only miss.
    let Some(file) = PUBLIC.get_file(path) else {
        return ApiError::not_found().into_response();
    };
    let mut response = file.contents().into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime(path)));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn mime(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json" | "map") => "application/json",
        _ => "application/octet-stream",
    }
}

/// `GET /api/dev/admin-key`: lets the dashboard sign itself in, in dev mode only, and only for
/// a browser on this machine talking to a loopback host name (so a rebound DNS name cannot
/// read it).
pub async fn dev_admin_key(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let host_name = host.rsplit_once(':').map_or(host, |(name, _)| name);
    let loopback_host = matches!(host_name, "localhost" | "127.0.0.1" | "[::1]");
    if !app.config.auth.dev_mode() || !peer.ip().is_loopback() || !loopback_host {
        return Err(ApiError::forbidden(
            "the admin key is given out only in dev mode, to this machine",
        ));
    }
    let key = app
        .config
        .auth
        .admin_keys
        .0
        .first()
        .cloned()
        .unwrap_or_default();
    Ok(Json(serde_json::json!({"admin_key": key})))
}
