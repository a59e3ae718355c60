//! The OpenAPI 3.1 description of the REST routes, built from the handlers' `#[utoipa::path]`
//! attributes and the `wire` types, and served at `/openapi.json`. `docs/openapi.json` is a
//! committed copy that `tests/it/openapi.rs` keeps current.
//!
//! The WebSocket and SSE routes are streams, not request/response pairs: `docs/protocol.md`
//! describes them.

use std::sync::OnceLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::{monitoring, rest, rooms};
use crate::wire;

/// The security scheme names the handlers' attributes refer to.
pub const PLAYER_JWT: &str = "player_jwt";
pub const ADMIN_KEY: &str = "admin_key";
pub const TOKEN_QUERY: &str = "token_query";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "dualconn",
        description = "REST API of dualconn, a real-time WebSocket + SSE connection server for \
            multiplayer games. Every error is the `ErrorBody` envelope. The streaming routes \
            (`/api/ws`, `/sse/{player_id}`, `/api/events`) are described in docs/protocol.md.",
        license(name = "MIT", identifier = "MIT"),
    ),
    paths(
        rest::stats,
        rest::connection_info,
        rest::get_session,
        rest::new_session,
        rest::publish,
        rest::command,
        rooms::join,
        rooms::leave,
        rooms::info,
        rooms::of_player,
        rooms::publish,
        rest::dev_token,
        rest::live,
        rest::ready,
        rest::deprecated_health,
        monitoring::dual_connections,
        monitoring::performance,
        monitoring::connection_health,
        monitoring::players,
        monitoring::metrics,
        openapi_json,
    ),
    components(schemas(wire::ErrorBody)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "connections", description = "A player's connections and sessions"),
        (name = "publish", description = "Events and commands"),
        (name = "rooms", description = "Server-side groups of players, to publish to by name"),
        (name = "monitoring", description = "Figures for operators"),
        (name = "health", description = "Probes for load balancers and orchestrators"),
        (name = "dev", description = "Only in dev mode (no signing key configured)"),
    )
)]
pub struct ApiDoc;

/// The two bearer credentials and the query-string fallback that browsers' `EventSource` needs.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            PLAYER_JWT,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A player token: a JWT whose `sub` is the player id, signed with the \
                         server's HS256 secret or the private half of its RS256/ES256 key. A JWT \
                         with the claim `role: \"admin\"` is an admin credential too.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            ADMIN_KEY,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An admin API key from DUALCONN_ADMIN_KEYS, as `Authorization: Bearer \
                         <key>`. Admins may use every admin route and act on any player.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            TOKEN_QUERY,
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "token",
                "Either credential as `?token=`, for clients that cannot set headers. The \
                 `Authorization` header wins when both are present.",
            ))),
        );
    }
}

/// The document as pretty JSON with a trailing newline, exactly as committed.
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut text = ApiDoc::openapi()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
        text.push('\n');
        text
    })
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "health",
    security(()),
    responses((status = 200, description = "This OpenAPI 3.1 document", content_type = "application/json", body = Object)),
)]
pub async fn openapi_json() -> Response {
    let mut response = document().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

// ---- Shapes the handlers build with `json!`, described here only -----------------------------

/// The optional body of `POST /api/connections/{player_id}/session`. An empty body, `{}` and
/// `{"session_id": null}` let the server choose the id.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct NewSessionRequest {
    /// The id the caller wants; refused with 409 if it was replaced before, or while the
    /// current session with another id has live connections.
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,128}$")]
    session_id: Option<String>,
}

/// A player's message, the same as a WebSocket text frame: `{"type", "data"}`, or that JSON
/// wrapped as a string in `{"message"}`.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum CommandRequest {
    Direct {
        #[serde(rename = "type")]
        #[schema(rename = "type")]
        kind: CommandType,
        /// For `command`: `{"command": "look"}` or `{"command": "say", "args": ["hi"]}`.
        #[serde(default)]
        data: Option<serde_json::Value>,
    },
    Wrapped {
        /// The direct form, serialized as a JSON string.
        message: String,
    },
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum CommandType {
    Command,
    GameCommand,
    Chat,
    Ping,
}

/// `202`: the command was queued; its answers arrive as events on the player's streams.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CommandAccepted {
    success: bool,
    accepted: bool,
}

/// `200`: the answer to `{"type": "ping"}`, which is not queued.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CommandPong {
    success: bool,
    pong: bool,
}

/// `{"status": "ok"}` or `{"status": "ready"}`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ProbeStatus {
    status: String,
}
