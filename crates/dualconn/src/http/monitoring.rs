//! Admin monitoring routes (reference "Monitoring Endpoints", SPEC §9) and `/metrics`.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::access::Query;
use super::error::ApiError;
use super::rest::health_word;
use crate::hub::{Budget, ConnKind, StatsSnapshot, percentage};
use crate::wire;
#[allow(unused_imports)] // Named by the `#[utoipa::path]` attributes.
use crate::wire::ErrorBody;

type ApiResult<T> = Result<T, ApiError>;

fn admin(app: &AppState, headers: &HeaderMap, uri: &Uri) -> ApiResult<()> {
    app.require_admin(headers, &Query::parse(uri.query()))
        .map(drop)
}

/// Every node's counts: one process's own, or the cluster's through Redis.
async fn cluster_stats(app: &AppState) -> ApiResult<StatsSnapshot> {
    app.hub
        .cluster_stats()
        .await
        .map_err(|_| ApiError::unavailable())
}

fn health_figures(s: &StatsSnapshot) -> wire::HealthFigures {
    wire::HealthFigures {
        total_connections: s.connections(),
        healthy_connections: s.healthy(),
        unhealthy_connections: s.connections() - s.healthy(),
        health_percentage: s.health_percentage(),
    }
}

#[utoipa::path(
    get,
    path = "/monitoring/dual-connections",
    tag = "monitoring",
    summary = "Players by transport, connection health and sessions",
    security(("admin_key" = []), ("player_jwt" = []), ("token_query" = [])),
    responses(
        (status = 200, description = "The figures", body = wire::DualConnectionsResponse),
        (status = 401, description = "No credential, or a bad or expired one; `details.error_code` is TOKEN_MISSING, TOKEN_INVALID or TOKEN_EXPIRED", body = ErrorBody),
        (status = 403, description = "A player token on an admin route", body = ErrorBody),
    )
)]
/// `GET /monitoring/dual-connections`
pub async fn dual_connections(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> ApiResult<Json<wire::DualConnectionsResponse>> {
    admin(&app, &headers, &uri)?;
    let s = cluster_stats(&app).await?;
    Ok(Json(wire::DualConnectionsResponse {
        connection_distribution: wire::DualDistribution {
            total_players: s.players_online,
            dual_connection_players: s.dual,
            websocket_only_players: s.websocket_only,
            sse_only_players: s.sse_only,
            dual_connection_percentage: if s.players_online == 0 {
                0.0
            } else {
                percentage(s.dual, s.players_online)
            },
        },
        connection_health: health_figures(&s),
        session_analytics: wire::SessionAnalytics {
            total_sessions: s.sessions,
            sessions_with_connections: s.sessions_with_connections,
            average_connections_per_session: s.connections_per_session(),
        },
        rooms: room_figures(&app).await?,
    }))
}

/// Room and membership counts: never a room or player id, so the figures stay small.
async fn room_figures(app: &AppState) -> ApiResult<wire::RoomFigures> {
    let f = app
        .hub
        .room_figures()
        .await
        .map_err(|_| ApiError::unavailable())?;
    Ok(wire::RoomFigures {
        total_rooms: f.rooms,
        total_memberships: f.memberships,
    })
}

#[utoipa::path(
    get,
    path = "/monitoring/performance",
    tag = "monitoring",
    summary = "Establishment times and delivery counts since start",
    security(("admin_key" = []), ("player_jwt" = []), ("token_query" = [])),
    responses(
        (status = 200, description = "The figures", body = wire::PerformanceResponse),
        (status = 401, description = "No credential, or a bad or expired one; `details.error_code` is TOKEN_MISSING, TOKEN_INVALID or TOKEN_EXPIRED", body = ErrorBody),
        (status = 403, description = "A player token on an admin route", body = ErrorBody),
    )
)]
/// `GET /monitoring/performance`: counts since start (SPEC §12.13).
pub async fn performance(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> ApiResult<Json<wire::PerformanceResponse>> {
    admin(&app, &headers, &uri)?;
    let local = &app.hub.counters;
    // Set-up times are this node's; counts are every node's.
    let (_, ws_avg, ws_max) = local.establishment(ConnKind::WebSocket).summary();
    let (_, sse_avg, sse_max) = local.establishment(ConnKind::Sse).summary();
    let c = app
        .hub
        .cluster_counters()
        .await
        .map_err(|_| ApiError::unavailable())?;
    let (ws, sse) = (c.ws_established, c.sse_established);
    let (sent, ok, failed) = (c.messages_sent, c.deliveries_ok, c.deliveries_failed);
    Ok(Json(wire::PerformanceResponse {
        connection_establishment: wire::EstablishmentFigures {
            total_connections: ws + sse,
            websocket_connections: ws,
            sse_connections: sse,
            avg_websocket_establishment_ms: ws_avg,
            avg_sse_establishment_ms: sse_avg,
            max_websocket_establishment_ms: ws_max,
            max_sse_establishment_ms: sse_max,
        },
        message_delivery: wire::DeliveryFigures {
            total_messages_sent: sent,
            successful_deliveries: ok,
            failed_deliveries: failed,
            delivery_success_rate: if sent == 0 {
                100.0
            } else {
                // Deliveries still queued count as neither, so the rate never passes 100.
                (ok as f64 * 100.0 / sent as f64).min(100.0)
            },
            slow_consumer_disconnects: c.slow_consumers,
        },
        node_budget: budget_figures(&app.hub.budget),
        rooms: room_figures(&app).await?,
        timestamp: wire::timestamp(SystemTime::now()),
    }))
}

fn budget_figures(b: &Budget) -> wire::BudgetFigures {
    let config = b.config();
    wire::BudgetFigures {
        connections: b.connections(),
        max_connections: config.max_connections,
        queued_bytes: b.queued_bytes(),
        max_queued_bytes: config.max_queued_bytes,
        refused_streams_connections: b.refused_connections.load(Ordering::Relaxed),
        refused_streams_queued_bytes: b.refused_queued_bytes.load(Ordering::Relaxed),
        shed_connections: b.shed.load(Ordering::Relaxed),
    }
}

#[utoipa::path(
    get,
    path = "/monitoring/connection-health",
    tag = "monitoring",
    summary = "Health now, by transport, and its 1 h / 24 h means",
    security(("admin_key" = []), ("player_jwt" = []), ("token_query" = [])),
    responses(
        (status = 200, description = "The figures", body = wire::ConnectionHealthResponse),
        (status = 401, description = "No credential, or a bad or expired one; `details.error_code` is TOKEN_MISSING, TOKEN_INVALID or TOKEN_EXPIRED", body = ErrorBody),
        (status = 403, description = "A player token on an admin route", body = ErrorBody),
    )
)]
/// `GET /monitoring/connection-health`
pub async fn connection_health(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> ApiResult<Json<wire::ConnectionHealthResponse>> {
    admin(&app, &headers, &uri)?;
    let s = cluster_stats(&app).await?;
    let by_type = |total: usize, healthy: usize| wire::TypeHealthFigures {
        total,
        healthy,
        unhealthy: total - healthy,
        health_percentage: percentage(healthy, total),
    };
    let (hour, day) = app.hub.trends.means(s.health_percentage());
    Ok(Json(wire::ConnectionHealthResponse {
        overall_health: health_figures(&s),
        connection_type_health: wire::TypeHealth {
            websocket: by_type(s.websocket_connections, s.websocket_healthy),
            sse: by_type(s.sse_connections, s.sse_healthy),
        },
        health_trends: wire::HealthTrendFigures {
            last_hour_health_percentage: hour,
            last_24_hours_health_percentage: day,
        },
    }))
}

/// Most players `/monitoring/players` lists at once.
const MAX_LISTED: usize = 1000;

#[utoipa::path(
    get,
    path = "/monitoring/players",
    tag = "monitoring",
    summary = "Online players and the health of each connection",
    params(("limit" = Option<u64>, Query, description = "Most players to list (default 200, at most 1000)")),
    security(("admin_key" = []), ("player_jwt" = []), ("token_query" = [])),
    responses(
        (status = 200, description = "The figures", body = wire::PlayersResponse),
        (status = 400, description = "A bad player id, body or parameter", body = ErrorBody),
        (status = 401, description = "No credential, or a bad or expired one; `details.error_code` is TOKEN_MISSING, TOKEN_INVALID or TOKEN_EXPIRED", body = ErrorBody),
        (status = 403, description = "A player token on an admin route", body = ErrorBody),
    )
)]
/// `GET /monitoring/players?limit=N`: online players and each connection's health.
pub async fn players(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> ApiResult<Json<wire::PlayersResponse>> {
    let query = Query::parse(uri.query());
    app.require_admin(&headers, &query)?;
    let limit = match query.get("limit") {
        Some(raw) => raw
            .parse::<usize>()
            .map_err(|_| ApiError::validation("limit must be a number"))?
            .min(MAX_LISTED),
        None => 200,
    };
    let (listed, total) = app
        .hub
        .online(limit)
        .await
        .map_err(|_| ApiError::unavailable())?;
    let players = listed
        .into_iter()
        .map(|p| {
            let healthy = p.connections.iter().filter(|c| c.healthy).count();
            wire::PlayerEntry {
                player_id: p.player_id.to_string(),
                session_id: p.session_id.map(|s| s.to_string()),
                overall_health: health_word(p.connections.len(), healthy),
                connections: p
                    .connections
                    .into_iter()
                    .map(|c| wire::ConnectionEntry {
                        connection_id: c.connection_id,
                        connection_type: c.kind.as_str(),
                        healthy: c.healthy,
                        last_activity: wire::timestamp(c.last_activity),
                        opened_at: wire::timestamp(c.opened_at),
                    })
                    .collect(),
            }
        })
        .collect::<Vec<_>>();
    Ok(Json(wire::PlayersResponse {
        truncated: players.len() < total,
        players,
        total_players: total,
    }))
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "monitoring",
    summary = "Prometheus metrics",
    description = "Prometheus text exposition format 0.0.4. No player id is ever a label.",
    security(("admin_key" = []), ("player_jwt" = []), ("token_query" = [])),
    responses(
        (status = 200, description = "The metrics", content_type = "text/plain; version=0.0.4; charset=utf-8", body = String),
        (status = 401, description = "No credential, or a bad or expired one; `details.error_code` is TOKEN_MISSING, TOKEN_INVALID or TOKEN_EXPIRED", body = ErrorBody),
        (status = 403, description = "A player token on an admin route", body = ErrorBody),
    )
)]
/// `GET /metrics`: Prometheus text format, for admins.
pub async fn metrics(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> ApiResult<Response> {
    admin(&app, &headers, &uri)?;
    // Rooms are cluster state, not this node's: every node reports the same figure, so a
    // Prometheus sum over nodes is wrong for these two (use max). Left out while Redis is away.
    let rooms = app.hub.room_figures().await.ok();
    let mut response = app.metrics.render(&app, rooms).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}
