//! Room routes: membership, presence and publishing to a room. Admin only, like
//! `/api/publish`: the game backend decides who stands where.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};

use super::AppState;
use super::access::Query;
use super::admit::valid_session_id;
use super::error::ApiError;
use super::rest::{
    MAX_PUBLISH_TARGETS, check_event_type, distinct_players, event_data, json_body, now,
    published_entry,
};
use crate::auth::valid_player_id;
use crate::hub::{Event, RoomError};
use crate::wire;
#[allow(unused_imports)] // Named by the `#[utoipa::path]` attributes.
use crate::wire::ErrorBody;

type ApiResult<T> = Result<T, ApiError>;

const ROOM_RULE: &str = "room_id must match ^[A-Za-z0-9_.:-]{1,128}$";
const PLAYER_RULE: &str = "player_id must match ^[A-Za-z0-9_.:@-]{1,128}$";

fn admin(app: &AppState, headers: &HeaderMap, uri: &Uri) -> ApiResult<()> {
    app.require_admin(headers, &Query::parse(uri.query()))
        .map(drop)
}

fn room_id(id: &str) -> ApiResult<&str> {
    if valid_session_id(id) {
        Ok(id)
    } else {
        Err(ApiError::validation(ROOM_RULE))
    }
}

fn player_id(id: &str) -> ApiResult<&str> {
    if valid_player_id(id) {
        Ok(id)
    } else {
        Err(ApiError::validation(PLAYER_RULE))
    }
}

/// The path's room and player, each checked against its rule.
fn member_path(path: &Result<Path<(String, String)>, PathRejection>) -> ApiResult<(&str, &str)> {
    let Ok(Path((room, player))) = path else {
        return Err(ApiError::validation(
            "the path must name a room and a player",
        ));
    };
    Ok((room_id(room)?, player_id(player)?))
}

fn one_path<'a>(
    path: &'a Result<Path<String>, PathRejection>,
    rule: &'static str,
) -> ApiResult<&'a str> {
    match path {
        Ok(Path(id)) => Ok(id),
        Err(_) => Err(ApiError::validation(rule)),
    }
}

fn unavailable<E>(_: E) -> ApiError {
    ApiError::unavailable()
}

#[utoipa::path(
    put,
    path = "/api/rooms/{room_id}/members/{player_id}",
    tag = "rooms",
    summary = "Put a player in a room",
    description = "Idempotent. Membership belongs to the player: it outlives connections and sessions, until it is removed or the player is forgotten (`session_ttl` with no connection and no event).",
    params(
        ("room_id" = String, Path, description = "The room", pattern = "^[A-Za-z0-9_.:-]{1,128}$"),
        ("player_id" = String, Path, description = "The player", pattern = "^[A-Za-z0-9_.:@-]{1,128}$"),
    ),
    security(("admin_key" = []), ("player_jwt" = []), ("token_query" = [])),
    responses(
        (status = 200, description = "The player is a member", body = wire::RoomMembership),
        (status = 400, description = "A bad room or player id", body = ErrorBody),
        (status = 401, description = "No credential, or a bad or expired one; `details.error_code` is TOKEN_MISSING, TOKEN_INVALID or TOKEN_EXPIRED", body = ErrorBody),
        (status = 403, description = "A player token on an admin route", body = ErrorBody),
        (status = 409, description = "`validation_error`: the room is full, or the player is in as many rooms as allowed; nothing changed", body = ErrorBody),
        (status = 503, description = "`connection_error`: the cluster's Redis is unreachable", body = ErrorBody),
    )
)]
/// `PUT /api/rooms/{room_id}/members/{player_id}`
pub async fn join(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<Json<wire::RoomMembership>> {
    admin(&app, &headers, &uri)?;
    let (room, player) = member_path(&path)?;
    let member_count = app.hub.join_room(room, player).await.map_err(|e| {
        let (bound, limit) = match e {
            RoomError::RoomFull(limit) => ("max_room_members", limit),
            RoomError::TooManyRooms(limit) => ("max_rooms_per_player", limit),
            RoomError::Unavailable => return ApiError::unavailable(),
        };
        let mut err = ApiError::validation(e.to_string())
            .with_details(serde_json::json!({"bound": bound, "limit": limit}));
        err.status = StatusCode::CONFLICT;
        err
    })?;
    Ok(Json(wire::RoomMembership {
        room_id: room.to_owned(),
        player_id: player.to_owned(),
        member_count,
    }))
}

#[utoipa::path(
    delete,
    path = "/api/rooms/{room_id}/members/{player_id}",
    tag = "rooms",
    summary = "Take a player out of a room",
    description = "Idempotent: leaving a room one is not in answers 200 too.",
    params(
        ("room_id" = String, Path, description = "The room", pattern = "^[A-Za-z0-9_.:-]{1,128}$"),
        ("player_id" = String, Path, description = "The player", pattern = "^[A-Za-z0-9_.:@-]{1,128}$"),
    ),
    security(("admin_key" = []), ("player_jwt" = []), ("token_query" = [])),
    responses(
        (status = 200, description = "The player is not a member", body = wire::RoomMembership),
        (status = 400, description = "A bad room or player id", body = ErrorBody),
        (status = 401, description = "No credential, or a bad or expired one; `details.error_code` is TOKEN_MISSING, TOKEN_INVALID or TOKEN_EXPIRED", body = ErrorBody),
        (status = 403, description = "A player token on an admin route", body = ErrorBody),
        (status = 503, description = "`connection_error`: the cluster's Redis is unreachable", body = ErrorBody),
    )
)]
/// `DELETE /api/rooms/{room_id}/members/{player_id}`
pub async fn leave(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<Json<wire::RoomMembership>> {
    admin(&app, &headers, &uri)?;
    let (room, player) = member_path(&path)?;
    let member_count = app
        .hub
        .leave_room(room, player)
        .await
        .map_err(unavailable)?;
    Ok(Json(wire::RoomMembership {
        room_id: room.to_owned(),
        player_id: player.to_owned(),
        member_count,
    }))
}

#[utoipa::path(
    get,
    path = "/api/rooms/{room_id}",
    tag = "rooms",
    summary = "A room's members and their presence",
    description = "An unknown room answers 200 with no members.",
    params(("room_id" = String, Path, description = "The room", pattern = "^[A-Za-z0-9_.:-]{1,128}$")),
    security(("admin_key" = []), ("player_jwt" = []), ("token_query" = [])),
    responses(
        (status = 200, description = "Members, sorted, each online or not", body = wire::RoomInfo),
        (status = 400, description = "A bad room id", body = ErrorBody),
        (status = 401, description = "No credential, or a bad or expired one; `details.error_code` is TOKEN_MISSING, TOKEN_INVALID or TOKEN_EXPIRED", body = ErrorBody),
        (status = 403, description = "A player token on an admin route", body = ErrorBody),
        (status = 503, description = "`connection_error`: the cluster's Redis is unreachable", body = ErrorBody),
    )
)]
/// `GET /api/rooms/{room_id}`
pub async fn info(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<wire::RoomInfo>> {
    admin(&app, &headers, &uri)?;
    let room = room_id(one_path(&path, ROOM_RULE)?)?;
    let members = app.hub.room_members(room).await.map_err(unavailable)?;
    Ok(Json(wire::RoomInfo {
        room_id: room.to_owned(),
        member_count: members.len(),
        online_count: members.iter().filter(|m| m.online).count(),
        members: members
            .into_iter()
            .map(|m| wire::RoomMemberInfo {
                player_id: m.player_id.to_string(),
                online: m.online,
            })
            .collect(),
    }))
}

#[utoipa::path(
    get,
    path = "/api/players/{player_id}/rooms",
    tag = "rooms",
    summary = "The rooms a player is in",
    params(("player_id" = String, Path, description = "The player", pattern = "^[A-Za-z0-9_.:@-]{1,128}$")),
    security(("admin_key" = []), ("player_jwt" = []), ("token_query" = [])),
    responses(
        (status = 200, description = "The rooms, sorted", body = wire::PlayerRooms),
        (status = 400, description = "A bad player id", body = ErrorBody),
        (status = 401, description = "No credential, or a bad or expired one; `details.error_code` is TOKEN_MISSING, TOKEN_INVALID or TOKEN_EXPIRED", body = ErrorBody),
        (status = 403, description = "A player token on an admin route", body = ErrorBody),
        (status = 503, description = "`connection_error`: the cluster's Redis is unreachable", body = ErrorBody),
    )
)]
/// `GET /api/players/{player_id}/rooms`
pub async fn of_player(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<wire::PlayerRooms>> {
    admin(&app, &headers, &uri)?;
    let player = player_id(one_path(&path, PLAYER_RULE)?)?;
    let rooms = app.hub.player_rooms(player).await.map_err(unavailable)?;
    Ok(Json(wire::PlayerRooms {
        player_id: player.to_owned(),
        rooms: rooms.iter().map(|r| r.to_string()).collect(),
    }))
}

#[utoipa::path(
    post,
    path = "/api/rooms/{room_id}/publish",
    tag = "rooms",
    summary = "Publish an event to every member of a room",
    description = "Each member gets the event in its own stream, numbered in its own sequence and kept in its history (so an offline member resumes it), with the envelope's `room_id` set to the room. The answer has one entry per member reached, sorted by player; an empty room answers 200 with no entries.",
    params(("room_id" = String, Path, description = "The room", pattern = "^[A-Za-z0-9_.:-]{1,128}$")),
    request_body(content = wire::RoomPublishRequest, content_type = "application/json"),
    security(("admin_key" = []), ("player_jwt" = []), ("token_query" = [])),
    responses(
        (status = 200, description = "One entry per member reached", body = wire::PublishResponse),
        (status = 400, description = "A bad room id, body or `except` entry", body = ErrorBody),
        (status = 401, description = "No credential, or a bad or expired one; `details.error_code` is TOKEN_MISSING, TOKEN_INVALID or TOKEN_EXPIRED", body = ErrorBody),
        (status = 403, description = "A player token on an admin route", body = ErrorBody),
        (status = 413, description = "The body is over the size limit", body = ErrorBody),
        (status = 503, description = "`connection_error`: the cluster's Redis is unreachable", body = ErrorBody),
    )
)]
/// `POST /api/rooms/{room_id}/publish`
pub async fn publish(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<wire::PublishResponse>> {
    admin(&app, &headers, &uri)?;
    let room = room_id(one_path(&path, ROOM_RULE)?)?;
    let req: wire::RoomPublishRequest =
        json_body(body)?.ok_or_else(|| ApiError::validation("a JSON body is required"))?;
    check_event_type(&req.event_type)?;
    if req.except.len() > MAX_PUBLISH_TARGETS {
        return Err(ApiError::validation(format!(
            "except may name at most {MAX_PUBLISH_TARGETS} players"
        )));
    }
    let except = distinct_players(&req.except, "except")?;
    let data = event_data(req.data.as_deref())?;
    let event = Event {
        event_type: &req.event_type,
        room_id: Some(room),
        data: &data,
    };
    let events = app
        .hub
        .publish_to_room(room, &except, &event)
        .await
        .map_err(unavailable)?
        .into_iter()
        .map(|(id, published)| published_entry(&id, published))
        .collect();
    Ok(Json(wire::PublishResponse {
        success: true,
        events,
        timestamp: now(),
    }))
}
