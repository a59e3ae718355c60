//! The HTTP face of the hub: routes, transports, REST handlers, errors and access checks.

pub mod access;
pub use metrics::Metrics;
mod admit;
pub mod connect_hook;
pub mod error;
mod metrics;
mod monitoring;
pub mod openapi;
mod pages;
mod refusals;
mod rest;
mod rooms;
pub mod sse;
pub mod upgrade;
pub mod ws;

pub(crate) use admit::valid_session_id;
pub(crate) use rest::valid_event_type;

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware;
use axum::routing::{get, post, put};
use tokio_util::task::TaskTracker;
use tower::ServiceBuilder;
use tower_http::cors::{AllowCredentials, AllowOrigin, CorsLayer};
use tower_http::timeout::RequestBodyTimeoutLayer;

use crate::auth::Authenticator;
use crate::config::{AllowedOrigins, Config};
use crate::hub::Hub;

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub hub: Arc<Hub>,
    pub auth: Authenticator,
    pub config: Config,
    pub limits: access::ConnectLimits,
    /// Owns every connection task, so shutdown can wait for all of them.
    pub tracker: TaskTracker,
    /// Set when shutdown begins; `/health/ready` then answers 503.
    pub draining: AtomicBool,
    /// Requests refused for a missing or bad credential.
    pub auth_failures: AtomicU64,
    /// Runs players' commands (demo world, webhook or an embedder's handler).
    pub commands: crate::commands::Runner,
    /// The Prometheus exporter behind `/metrics`.
    pub metrics: metrics::Metrics,
    /// Asked who a player is when the credentials are not dualconn's own tokens.
    pub connect_hook: Option<connect_hook::ConnectHook>,
}

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

/// What a connection's requests are answered by. One pointer: every connection's task keeps
/// it for its life.
#[derive(Clone)]
pub struct Front(Arc<Routes>);

pub struct Routes {
    /// Every route ([`router`]).
    pub router: Router,
    /// For a stream's request that opens a connection, answered without the router
    /// (`ws::preferred_on_socket`, `sse::on_socket`); absent when CORS is configured, whose
    /// headers only the router's layer adds.
    pub direct: Option<AppState>,
}

impl Front {
    pub fn new(state: AppState) -> Front {
        let direct = match state.config.allowed_origins {
            AllowedOrigins::SameOrigin => Some(state.clone()),
            AllowedOrigins::Any | AllowedOrigins::List(_) => None,
        };
        Front::from(Routes {
            router: router(state),
            direct,
        })
    }
}

impl From<Routes> for Front {
    fn from(routes: Routes) -> Front {
        Front(Arc::new(routes))
    }
}

impl Deref for Front {
    type Target = Routes;
    fn deref(&self) -> &Routes {
        &self.0
    }
}

/// Every route, with JSON fallbacks for unknown routes and wrong methods.
pub fn router(state: AppState) -> Router {
    let mut api = Router::new()
        .route("/api/ws", get(ws::preferred))
        .route("/api/ws/{player_id}", get(ws::deprecated))
        .route("/ws/{player_id}", get(ws::deprecated))
        .route("/sse/{player_id}", get(sse::by_path))
        .route("/api/events", get(sse::by_token))
        .route("/api/events/{player_id}", get(sse::deprecated))
        // A static segment outranks `{player_id}`, so `stats` is never taken for a player.
        .route("/api/connections/stats", get(rest::stats))
        .route("/api/connections/{player_id}", get(rest::connection_info))
        .route(
            "/api/connections/{player_id}/session",
            get(rest::get_session).post(rest::new_session),
        )
        .route("/api/publish", post(rest::publish))
        .route("/api/commands", post(rest::command))
        .route(
            "/api/rooms/{room_id}/members/{player_id}",
            put(rooms::join).delete(rooms::leave),
        )
        .route("/api/rooms/{room_id}", get(rooms::info))
        .route("/api/rooms/{room_id}/publish", post(rooms::publish))
        .route("/api/players/{player_id}/rooms", get(rooms::of_player))
        .route(
            "/monitoring/dual-connections",
            get(monitoring::dual_connections),
        )
        .route("/monitoring/performance", get(monitoring::performance))
        .route(
            "/monitoring/connection-health",
            get(monitoring::connection_health),
        )
        .route("/monitoring/players", get(monitoring::players))
        .route("/metrics", get(monitoring::metrics))
        .route("/health/live", get(rest::live))
        .route("/health/ready", get(rest::ready))
        .route("/api/monitoring/health", get(rest::deprecated_health))
        .route("/openapi.json", get(openapi::openapi_json));
    if state.config.auth.dev_mode() {
        api = api
            .route("/auth/dev-token", post(rest::dev_token))
            .route("/api/dev/admin-key", get(pages::dev_admin_key));
    }
    api = api
        .route("/", get(pages::demo))
        .route("/dashboard", get(pages::dashboard))
        .route("/static/{*path}", get(pages::asset));
    // One stack, outermost first, given to the router as one layer: the router wraps each layer
    // it is given around every route, and each wrap costs a clone of the route's boxed service
    // and a boxed future per request (BENCHMARKS.md, "Set-up: user space and the kernel").
    let shared = ServiceBuilder::new()
        .layer(middleware::from_fn_with_state(state.clone(), refusals::log))
        .layer(middleware::from_fn_with_state(
            state.config.max_body_bytes,
            refuse_declared_oversize,
        ))
        // A body that stalls is cut off instead of holding its connection forever.
        .layer(RequestBodyTimeoutLayer::new(BODY_TIMEOUT))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes));
    let api = api
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(shared);
    let api = match cors(&state.config.allowed_origins) {
        Some(cors) => api.layer(cors),
        None => api,
    };
    api.with_state(state)
}

/// When the deprecated paths were deprecated (RFC 9745 `@<unix time>`): 2025-01-01.
const DEPRECATED_AT: &str = "@1735689600";

/// Marks an answer from a deprecated path (SPEC §12.19): `Deprecation`, and a `Link` to the
/// path that replaces it (a header value such as `</api/ws>; rel="successor-version"`).
pub fn deprecate(response: &mut axum::response::Response, link: &'static str) {
    let h = response.headers_mut();
    h.insert(
        "deprecation",
        axum::http::HeaderValue::from_static(DEPRECATED_AT),
    );
    h.insert("link", axum::http::HeaderValue::from_static(link));
}

/// Longest wait for the next piece of a request body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// 413 as soon as a declared `Content-Length` is over the bound, before waiting for the body.
async fn refuse_declared_oversize(
    axum::extract::State(max): axum::extract::State<usize>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        let mut err = error::ApiError::validation("the request body is too large");
        err.status = axum::http::StatusCode::PAYLOAD_TOO_LARGE;
        return axum::response::IntoResponse::into_response(err);
    }
    next.run(request).await
}

/// CORS for the REST and SSE routes (SPEC §12.24); none when only the same origin may call.
///
/// Listed origins may send credentials (`EventSource(url, {withCredentials: true})`, cookies):
/// the browser needs `Access-Control-Allow-Credentials: true` for that. It is never sent with
/// `*`, which browsers refuse in that combination anyway.
fn cors(allowed: &AllowedOrigins) -> Option<CorsLayer> {
    let (origins, credentials) = match allowed {
        AllowedOrigins::SameOrigin => return None,
        AllowedOrigins::Any => (AllowOrigin::any(), AllowCredentials::from(false)),
        AllowedOrigins::List(list) => {
            let list: Arc<[HeaderValue]> = list.iter().filter_map(|o| o.parse().ok()).collect();
            let granted = list.clone();
            (
                AllowOrigin::list(list.iter().cloned()),
                // Only with the origin it grants: a refused origin gets no CORS header at all.
                AllowCredentials::predicate(move |origin, _| granted.contains(origin)),
            )
        }
    };
    Some(
        CorsLayer::new()
            .allow_origin(origins)
            .allow_credentials(credentials)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("last-event-id"),
            ])
            .expose_headers([header::RETRY_AFTER])
            .max_age(Duration::from_secs(600)),
    )
}
