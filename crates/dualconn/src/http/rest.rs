//! REST handlers: sessions, connection info, stats, publish, dev tokens and health.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::AppState;
use super::access::{Caller, Query, TokenPlaces};
use super::admit::valid_session_id;
use super::error::ApiError;
use crate::auth::valid_player_id;
use crate::commands::Command;
use crate::hub::{ConnKind, Event, PlayerId, SessionError};
#[allow(unused_imports)] // Named by the `#[utoipa::path]` attributes.
use crate::wire::ErrorBody;
use crate::wire::{self, InboundKind, local};

type ApiResult<T> = Result<T, ApiError>;

/// Reads a JSON body within the size bound, with errors in the envelope.
pub(super) fn json_body<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Option<T>> {
    let body = body.map_err(|e| {
        let status = e.status();
        let mut err = ApiError::validation(e.body_text());
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            err.status = status;
            err.message = "the request body is too large".into();
        }
        err
    })?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| ApiError::validation(format!("invalid JSON body: {e}")))
}

/// The path's player, once the caller is known to be allowed to ask about it.
fn path_player(path: Result<Path<String>, PathRejection>) -> ApiResult<PlayerId> {
    match path {
        Ok(Path(id)) if valid_player_id(&id) => Ok(PlayerId::from(id)),
        _ => Err(ApiError::validation(
            "player_id must match ^[A-Za-z0-9_.:@-]{1,128}$",
        )),
    }
}

/// The raw path segment, for the authorization check that comes before validation.
fn raw_player(path: &Result<Path<String>, PathRejection>) -> &str {
    path.as_ref().map(|p| p.0.as_str()).unwrap_or("")
}

pub(super) fn now() -> String {
    wire::timestamp(SystemTime::now())
}

#[utoipa::path(
    post,
    path = "/api/connections/{player_id}/session",
    tag = "connections",
    summary = "Start a new game session",
    description = "Ends every connection of the player with `session_terminated` (WebSocket close 4001, SSE end) and makes a new session current. The body is optional.",
    params(("player_id" = String, Path, description = "The player id", pattern = "^[A-Za-z0-9_.:@-]{1,128}$")),
    request_body(content = Option<super::openapi::NewSessionRequest>, content_type = "application/json"),
    security(("admin_key" = []), ("player_jwt" = []), ("token_query" = [])),
    responses(
        (status = 200, description = "The new session", body = wire::NewSessionResponse),
        (status = 400, description = "A bad player id, body or parameter", body = ErrorBody),
        (status = 401, description = "No credential, or a bad or expired one; `details.error_code` is TOKEN_MISSING, TOKEN_INVALID or TOKEN_EXPIRED", body = ErrorBody),
        (status = 403, description = "A player token for another player", body = ErrorBody),
        (status = 404, description = "`not_found_error`: a path that matches no route, e.g. an empty player id", body = ErrorBody),
        (status = 409, description = "`session_error`: the requested id was replaced before, or another session has live connections", body = ErrorBody),
        (status = 413, description = "The body is over the size limit", body = ErrorBody),
    )
)]
/// `POST /api/connections/{player_id}/session`
pub async fn new_session(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<wire::NewSessionResponse>> {
    let query = Query::parse(uri.query());
    app.require_manager(&headers, &query, raw_player(&path), peer.ip())
        .await?;
    let player = path_player(path)?;
    let body: Option<serde_json::Value> = json_body(body)?;
    let requested = match &body {
        None => None,
        Some(serde_json::Value::Object(map)) => match map.get("session_id") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(id)) if valid_session_id(id) => Some(id.as_str()),
            Some(_) => {
                return Err(ApiError::validation(
                    "session_id must be null or a string matching ^[A-Za-z0-9_.:-]{1,128}$",
                ));
            }
        },
        Some(_) => return Err(ApiError::validation("the body must be a JSON object")),
    };
    let made = app
        .hub
        .new_session(&player, requested)
        .await
        .map_err(|e| match e {
            SessionError::Replaced => ApiError::session(StatusCode::CONFLICT, e.to_string()),
            SessionError::Unavailable => ApiError::unavailable(),
        })?;
    tracing::info!(player = %player, ended = made.disconnected, "new session");
    Ok(Json(wire::NewSessionResponse {
        success: true,
        message: "New game session established",
        session_id: made.session_id.to_string(),
        previous_connections_disconnected: made.disconnected,
        timestamp: now(),
    }))
}

#[utoipa::path(
    get,
    path = "/api/connections/{player_id}/session",
    tag = "connections",
    summary = "The player's current session",
    params(("player_id" = String, Path, description = "The player id", pattern = "^[A-Za-z0-9_.:@-]{1,128}$")),
    security(("admin_key" = []), ("player_jwt" = []), ("token_query" = [])),
    responses(
        (status = 200, description = "The current session", body = wire::SessionInfo),
        (status = 400, description = "A bad player id, body or parameter", body = ErrorBody),
        (status = 401, description = "No credential, or a bad or expired one; `details.error_code` is TOKEN_MISSING, TOKEN_INVALID or TOKEN_EXPIRED", body = ErrorBody),
        (status = 403, description = "A player token for another player", body = ErrorBody),
        (status = 404, description = "`session_error`: the player has no session (or `not_found_error`: no route, e.g. an empty player id)", body = ErrorBody),
    )
)]
/// `GET /api/connections/{player_id}/session`
pub async fn get_session(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    uri: Uri,
) -> ApiResult<Json<wire::SessionInfo>> {
    let query = Query::parse(uri.query());
    app.require_manager(&headers, &query, raw_player(&path), peer.ip())
        .await?;
    let player = path_player(path)?;
    let session = app
        .hub
        .session(&player)
        .await
        .map_err(|_| ApiError::unavailable())?
        .ok_or_else(|| ApiError::session(StatusCode::NOT_FOUND, "this player has no session"))?;
    let mut types = Vec::with_capacity(2);
    if session.websocket > 0 {
        types.push(ConnKind::WebSocket.as_str());
    }
    if session.sse > 0 {
        types.push(ConnKind::Sse.as_str());
    }
    Ok(Json(wire::SessionInfo {
        player_id: player.to_string(),
        session_id: session.session_id.to_string(),
        session_created: wire::timestamp(session.created),
        active_connections: session.websocket + session.sse,
        connection_types: types,
    }))
}

#[utoipa::path(
    get,
    path = "/api/connections/{player_id}",
    tag = "connections",
    summary = "The player's connections, presence and health",
    description = "Answers for any valid player id, including one never seen (offline, no connections).",
    params(("player_id" = String, Path, description = "The player id", pattern = "^[A-Za-z0-9_.:@-]{1,128}$")),
    security(("admin_key" = []), ("player_jwt" = []), ("token_query" = [])),
    responses(
        (status = 200, description = "Connections by transport, presence and health", body = wire::ConnectionInfo),
        (status = 400, description = "A bad player id, body or parameter", body = ErrorBody),
        (status = 401, description = "No credential, or a bad or expired one; `details.error_code` is TOKEN_MISSING, TOKEN_INVALID or TOKEN_EXPIRED", body = ErrorBody),
        (status = 403, description = "A player token for another player", body = ErrorBody),
        (status = 404, description = "`not_found_error`: a path that matches no route, e.g. an empty player id", body = ErrorBody),
    )
)]
/// `GET /api/connections/{player_id}`
pub async fn connection_info(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    uri: Uri,
) -> ApiResult<Json<wire::ConnectionInfo>> {
    let query = Query::parse(uri.query());
    app.require_manager(&headers, &query, raw_player(&path), peer.ip())
        .await?;
    let player = path_player(path)?;
    let snap = app
        .hub
        .player(&player)
        .await
        .map_err(|_| ApiError::unavailable())?;
    let total = snap.websocket.count() + snap.sse.count();
    let healthy = snap.websocket.healthy + snap.sse.healthy;
    let transport = |t: crate::hub::TransportSnapshot| {
        let health = health_word(t.count(), t.healthy);
        (
            wire::TransportInfo {
                count: t.count(),
                last_activity: t.last_activity.map(wire::timestamp),
                connection_ids: t.connection_ids,
            },
            health,
        )
    };
    let (websocket, websocket_health) = transport(snap.websocket);
    let (sse, sse_health) = transport(snap.sse);
    Ok(Json(wire::ConnectionInfo {
        player_id: player.to_string(),
        session_id: snap.session_id.map(|s| s.to_string()),
        connections: wire::TransportConnections { websocket, sse },
        presence: wire::Presence {
            status: if total > 0 { "online" } else { "offline" },
            last_seen: snap.last_seen.map(wire::timestamp),
            total_connections: total,
        },
        health: wire::PlayerHealth {
            overall_health: health_word(total, healthy),
            websocket_health,
            sse_health,
        },
    }))
}

/// SPEC §9 and §12.12.
pub fn health_word(total: usize, healthy: usize) -> &'static str {
    match (total, healthy) {
        (0, _) => "no_connections",
        (t, h) if h == t => "healthy",
        (_, 0) => "unhealthy",
        _ => "degraded",
    }
}

#[utoipa::path(
    get,
    path = "/api/connections/stats",
    tag = "monitoring",
    summary = "Global connection statistics",
    security(("admin_key" = []), ("player_jwt" = []), ("token_query" = [])),
    responses(
        (status = 200, description = "Players, connections, sessions and health", body = wire::StatsResponse),
        (status = 401, description = "No credential, or a bad or expired one; `details.error_code` is TOKEN_MISSING, TOKEN_INVALID or TOKEN_EXPIRED", body = ErrorBody),
        (status = 403, description = "A player token on an admin route", body = ErrorBody),
    )
)]
/// `GET /api/connections/stats`
pub async fn stats(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> ApiResult<Json<wire::StatsResponse>> {
    app.require_admin(&headers, &Query::parse(uri.query()))?;
    let s = app
        .hub
        .cluster_stats()
        .await
        .map_err(|_| ApiError::unavailable())?;
    let (total, healthy) = (s.connections(), s.healthy());
    Ok(Json(wire::StatsResponse {
        total_players: s.players_online,
        total_connections: total,
        connection_distribution: wire::ConnectionDistribution {
            websocket_only: s.websocket_only,
            sse_only: s.sse_only,
            dual_connections: s.dual,
        },
        session_statistics: wire::SessionStatistics {
            total_sessions: s.sessions,
            average_connections_per_session: s.connections_per_session(),
        },
        health_statistics: wire::HealthStatistics {
            healthy_connections: healthy,
            unhealthy_connections: total - healthy,
            health_percentage: s.health_percentage(),
        },
    }))
}

/// Most players one publish may name.
pub(super) const MAX_PUBLISH_TARGETS: usize = 10_000;

#[utoipa::path(
    post,
    path = "/api/publish",
    tag = "publish",
    summary = "Publish an event to players",
    description = "Numbers the event in each player's stream, keeps it in history for resume and queues it on every connection of each player.",
    request_body(content = wire::PublishRequest, content_type = "application/json"),
    security(("admin_key" = []), ("player_jwt" = []), ("token_query" = [])),
    responses(
        (status = 200, description = "One entry per distinct player", body = wire::PublishResponse),
        (status = 400, description = "A bad player id, body or parameter", body = ErrorBody),
        (status = 401, description = "No credential, or a bad or expired one; `details.error_code` is TOKEN_MISSING, TOKEN_INVALID or TOKEN_EXPIRED", body = ErrorBody),
        (status = 403, description = "A player token on an admin route", body = ErrorBody),
        (status = 413, description = "The body is over the size limit", body = ErrorBody),
    )
)]
/// `POST /api/publish`
pub async fn publish(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<wire::PublishResponse>> {
    app.require_admin(&headers, &Query::parse(uri.query()))?;
    let req: wire::PublishRequest =
        json_body(body)?.ok_or_else(|| ApiError::validation("a JSON body is required"))?;
    check_event_type(&req.event_type)?;
    if let Some(room) = &req.room_id
        && !valid_session_id(room)
    {
        return Err(ApiError::validation(
            "room_id must match ^[A-Za-z0-9_.:-]{1,128}$",
        ));
    }
    let data = event_data(req.data.as_deref())?;
    let event = Event {
        event_type: &req.event_type,
        room_id: req.room_id.as_deref(),
        data: &data,
    };
    let events = match (req.player_ids, req.broadcast) {
        (Some(ids), false) => {
            if ids.is_empty() || ids.len() > MAX_PUBLISH_TARGETS {
                return Err(ApiError::validation(format!(
                    "player_ids must name 1 to {MAX_PUBLISH_TARGETS} players"
                )));
            }
            let ids = distinct_players(&ids, "player_ids")?;
            app.hub
                .publish_to(&ids, &event)
                .await
                .map_err(|_| ApiError::unavailable())?
                .into_iter()
                .map(|(id, published)| published_entry(&id, published))
                .collect()
        }
        (None, true) => app
            .hub
            .broadcast(&event)
            .await
            .map_err(|_| ApiError::unavailable())?
            .into_iter()
            .map(|(id, published)| published_entry(&id, published))
            .collect(),
        _ => {
            return Err(ApiError::validation(
                "give either player_ids or \"broadcast\": true",
            ));
        }
    };
    Ok(Json(wire::PublishResponse {
        success: true,
        events,
        timestamp: now(),
    }))
}

/// Each id once, in the order given, after checking every one; `field` names the list in the
/// error.
pub(super) fn distinct_players<'a>(ids: &'a [String], field: &str) -> ApiResult<Vec<&'a str>> {
    if let Some(bad) = ids.iter().find(|id| !valid_player_id(id)) {
        return Err(
            ApiError::validation(format!("{field} holds an invalid id")).with_details(
                serde_json::json!({"player_id": bad.chars().take(128).collect::<String>()}),
            ),
        );
    }
    let mut seen = HashSet::new();
    Ok(ids
        .iter()
        .map(String::as_str)
        .filter(|id| seen.insert(*id))
        .collect())
}

/// A publishable `event_type` (SPEC §12), or the error that says why not.
pub(super) fn check_event_type(event_type: &str) -> ApiResult<()> {
    if !valid_event_type(event_type) {
        return Err(ApiError::validation(
            "event_type must match ^[A-Za-z0-9_.:-]{1,64}$",
        ));
    }
    if local::ALL.contains(&event_type) {
        return Err(ApiError::validation(
            "this event_type is reserved for connection-local events",
        ));
    }
    Ok(())
}

/// An event's `data`, compacted once, so no event carries a newline into SSE framing and a
/// fan-out reuses it; `{}` when absent.
pub(super) fn event_data(data: Option<&RawValue>) -> ApiResult<Box<RawValue>> {
    match data {
        Some(raw) => {
            let value: serde_json::Value = serde_json::from_str(raw.get())
                .map_err(|e| ApiError::validation(format!("invalid data: {e}")))?;
            serde_json::value::to_raw_value(&value)
                .map_err(|e| ApiError::validation(format!("invalid data: {e}")))
        }
        None => Ok(RawValue::from_string("{}".into()).unwrap_or_default()),
    }
}

pub(super) fn published_entry(id: &str, p: crate::hub::Published) -> wire::PublishedEvent {
    wire::PublishedEvent {
        player_id: id.to_owned(),
        sequence_number: p.sequence_number,
        connections: p.connections,
    }
}

pub(crate) fn valid_event_type(t: &str) -> bool {
    (1..=64).contains(&t.len())
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
}

#[utoipa::path(
    post,
    path = "/auth/dev-token",
    tag = "dev",
    summary = "Mint a player token (dev mode only)",
    description = "Routed only when no signing key is configured; otherwise 404.",
    request_body(content = wire::DevTokenRequest, content_type = "application/json"),
    security(()),
    responses(
        (status = 200, description = "A player token", body = wire::DevTokenResponse),
        (status = 400, description = "A bad player id, body or parameter", body = ErrorBody),
        (status = 404, description = "Not in dev mode", body = ErrorBody),
        (status = 413, description = "The body is over the size limit", body = ErrorBody),
        (status = 429, description = "Over the rate limit; wait `Retry-After` seconds", body = ErrorBody, headers(("Retry-After" = u64, description = "Whole seconds to wait"))),
    )
)]
/// `POST /auth/dev-token`, routed only in dev mode.
pub async fn dev_token(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<wire::DevTokenResponse>> {
    app.limits.check_ip(peer.ip())?;
    let req: wire::DevTokenRequest = json_body(body)?
        .ok_or_else(|| ApiError::validation("body must be {\"player_id\": \"...\"}"))?;
    if !valid_player_id(&req.player_id) {
        return Err(ApiError::validation(
            "player_id must match ^[A-Za-z0-9_.:@-]{1,128}$ and not be `stats`",
        ));
    }
    let ttl = app.config.auth.dev_token_ttl;
    let token = app.auth.mint(&req.player_id, ttl, false).ok_or_else(|| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "system_error",
            "cannot mint tokens",
        )
    })?;
    Ok(Json(wire::DevTokenResponse {
        access_token: token,
        token_type: "bearer",
        expires_in: ttl.as_secs(),
    }))
}

#[utoipa::path(
    post,
    path = "/api/commands",
    tag = "publish",
    summary = "Send a command without a WebSocket",
    description = "For SSE-only clients. The body is what a WebSocket text frame would carry. Answers arrive as events on the player's streams; a failure arrives as an `error` event.",
    request_body(content = super::openapi::CommandRequest, content_type = "application/json"),
    security(("player_jwt" = []), ("token_query" = [])),
    responses(
        (status = 200, description = "The answer to a `ping`", body = super::openapi::CommandPong),
        (status = 202, description = "Queued for the game", body = super::openapi::CommandAccepted),
        (status = 400, description = "Not JSON, not a known message type, or not UTF-8", body = ErrorBody),
        (status = 401, description = "No credential, or a bad or expired one; `details.error_code` is TOKEN_MISSING, TOKEN_INVALID or TOKEN_EXPIRED", body = ErrorBody),
        (status = 403, description = "An admin credential: commands come from players", body = ErrorBody),
        (status = 413, description = "Larger than the message limit (`--max-message-bytes`) or the body limit", body = ErrorBody),
        (status = 429, description = "Over the rate limit; wait `Retry-After` seconds", body = ErrorBody, headers(("Retry-After" = u64, description = "Whole seconds to wait"))),
    )
)]
/// `POST /api/commands`: a command without a WebSocket, for SSE-only clients (SPEC §7).
pub async fn command(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let caller = Caller {
        transport: "http",
        path_player: None,
        ip: peer.ip(),
    };
    let principal = app
        .authenticate_player(
            &headers,
            &Query::parse(uri.query()),
            TokenPlaces::Http,
            caller,
        )
        .await?
        .principal;
    let Some((player, _)) = principal.stream_player() else {
        return Err(ApiError::forbidden(
            "commands come from players; use a player token",
        ));
    };
    let player = player.clone();
    let body = body.map_err(|e| ApiError::validation(e.body_text()))?;
    if body.len() > app.config.max_message_bytes {
        let mut err = ApiError::validation("the command is larger than the message limit");
        err.status = StatusCode::PAYLOAD_TOO_LARGE;
        return Err(err);
    }
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::validation("the body must be UTF-8 JSON"))?;
    let inbound = wire::parse_inbound(text).map_err(|e| ApiError::validation(e.to_string()))?;
    if inbound.kind == InboundKind::Ping {
        return Ok(Json(serde_json::json!({"success": true, "pong": true})).into_response());
    }
    app.commands.admit(&player).map_err(|wait| {
        ApiError::rate_limited(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
    })?;
    let session = app
        .hub
        .session(&player)
        .await
        .map_err(|_| ApiError::unavailable())?
        .map(|s| s.session_id);
    let command = Command::new(player.clone(), session, None, inbound.kind, inbound.data);
    let runner = app.commands.clone();
    let hub = app.hub.clone();
    app.tracker.spawn(async move {
        if let Err(e) = runner.run(command).await {
            hub.send_local_to_player(
                &player,
                local::ERROR,
                &wire::ErrorData {
                    error_type: e.error_type,
                    message: &e.message,
                    details: serde_json::json!({}),
                },
            );
        }
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"success": true, "accepted": true})),
    )
        .into_response())
}

/// Liveness: 200 while the process serves HTTP.
#[utoipa::path(
    get,
    path = "/health/live",
    tag = "health",
    security(()),
    responses((status = 200, description = "Alive", body = super::openapi::ProbeStatus))
)]
pub async fn live() -> Response {
    Json(serde_json::json!({"status": "ok"})).into_response()
}

#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "health",
    summary = "Readiness",
    security(()),
    responses(
        (status = 200, description = "Accepting players", body = super::openapi::ProbeStatus),
        (status = 503, description = "`connection_error`: draining for shutdown, or the cluster's Redis is unreachable", body = ErrorBody),
    )
)]
/// 503 while draining (SPEC §12.23), so load balancers stop sending new players here, and
/// while the cluster's Redis is unreachable.
pub async fn ready(State(app): State<AppState>) -> Response {
    if app.draining.load(Ordering::Acquire) {
        ApiError::connection(StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response()
    } else if !app.hub.backplane().is_available() {
        ApiError::unavailable().into_response()
    } else {
        Json(serde_json::json!({"status": "ready"})).into_response()
    }
}

#[utoipa::path(
    get,
    path = "/api/monitoring/health",
    tag = "health",
    summary = "Readiness under its old path (deprecated)",
    security(()),
    responses(
        (status = 200, description = "Accepting players", body = super::openapi::ProbeStatus),
        (status = 503, description = "`connection_error`: draining for shutdown, or the cluster's Redis is unreachable", body = ErrorBody),
    )
)]
/// `GET /api/monitoring/health`: where an older game's client looks. Deprecated; it answers as
/// `/health/ready` does.
pub async fn deprecated_health(app: State<AppState>) -> Response {
    let mut response = ready(app).await;
    super::deprecate(&mut response, "</health/ready>; rel=\"successor-version\"");
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_words() {
        assert_eq!(health_word(0, 0), "no_connections");
        assert_eq!(health_word(2, 2), "healthy");
        assert_eq!(health_word(2, 1), "degraded");
        assert_eq!(health_word(2, 0), "unhealthy");
    }
}
