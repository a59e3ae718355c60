//! The checks every stream (WebSocket or SSE) passes before it joins the hub, in the order
//! SPEC §12.15 fixes: per-IP limit, authentication, authorization, validation, per-player
//! limit, then (in the hub, as it joins) the session rules, the per-player cap and last the
//! node's budget.

// Cursors, credentials and query strings come from the network (SPEC §12.26): no unchecked
// arithmetic in this module.
#![deny(clippy::arithmetic_side_effects)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use axum::http::{HeaderMap, StatusCode};

use super::AppState;
use super::access::{Caller, Query, TokenPlaces, origin_allowed};
use super::connect_hook::Grant;
use super::error::ApiError;
use crate::delivery::Delivery;
use crate::greeting::Greeting;
use crate::hub::{ConnKind, Join, JoinError, PlayerId, RETRY_AFTER};

/// Where the player of a stream is named.
pub enum PathPlayer<'a> {
    /// `/api/ws`, `/api/events`: the token names it.
    FromToken,
    /// `/sse/{id}`, `/ws/{id}`: the path must match the token. `None` when the path segment
    /// could not even be decoded, which can match no token.
    Path(Option<&'a str>),
}

/// A stream request that passed every check but the session rules.
pub struct Admitted {
    pub player: PlayerId,
    pub expires: SystemTime,
    pub session_id: Option<String>,
    pub cursor: Option<u64>,
    /// Events the connect webhook asked for, published once the connection has joined.
    pub greeting: Vec<Greeting>,
}

pub async fn admit(
    app: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    query: &Query,
    path: PathPlayer<'_>,
    kind: ConnKind,
) -> Result<Admitted, ApiError> {
    app.limits.check_ip(peer.ip())?;
    let places = match kind {
        ConnKind::WebSocket => TokenPlaces::WebSocket,
        ConnKind::Sse => TokenPlaces::Http,
    };
    let caller = Caller {
        transport: kind.as_str(),
        path_player: match &path {
            PathPlayer::Path(p) => *p,
            PathPlayer::FromToken => None,
        },
        ip: peer.ip(),
    };
    let Grant {
        principal,
        greeting,
    } = app
        .authenticate_player(headers, query, places, caller)
        .await?;
    let Some((player, expires)) = principal.stream_player() else {
        return Err(ApiError::forbidden(
            "an admin API key cannot open a player stream; use a player token",
        ));
    };
    // From here on the player is known, and every refusal's log line names it.
    let known = |e: ApiError| e.with_player(player);
    if let PathPlayer::Path(path) = path
        && path != Some(&**player)
    {
        return Err(known(ApiError::forbidden(
            "the token is for another player",
        )));
    }
    if kind == ConnKind::WebSocket && !origin_allowed(&app.config.allowed_origins, headers) {
        return Err(known(ApiError::forbidden("this Origin is not allowed")));
    }
    let session_id = match query.get("session_id") {
        Some(id) if valid_session_id(id) => Some(id.to_owned()),
        Some(_) => {
            return Err(known(ApiError::validation(
                "session_id must match ^[A-Za-z0-9_.:-]{1,128}$",
            )));
        }
        None => None,
    };
    let cursor = query
        .get("last_event_id")
        .or_else(|| {
            headers
                .get("last-event-id")
                // Bytes that are not text are no sequence number: refused below, not ignored.
                .map(|v| v.to_str().unwrap_or("?").trim())
                .filter(|v| !v.is_empty())
        })
        .map(|raw| {
            raw.parse::<u64>()
                .map_err(|_| ApiError::validation("last_event_id must be a sequence number"))
        })
        .transpose()
        .map_err(known)?;
    app.limits.check_player(player).map_err(known)?;
    Ok(Admitted {
        player: player.clone(),
        expires,
        session_id,
        cursor,
        greeting,
    })
}

/// Joins the hub, mapping the session rules to their HTTP answers.
pub async fn join(
    app: &AppState,
    admitted: &Admitted,
    kind: ConnKind,
) -> Result<Delivery, ApiError> {
    let conn = app
        .hub
        .connect(Join {
            player: &admitted.player,
            kind,
            session_id: admitted.session_id.as_deref(),
            cursor: admitted.cursor,
        })
        .await
        .map_err(|e| match e {
            JoinError::StaleSession | JoinError::SessionConflict => {
                ApiError::session(StatusCode::CONFLICT, e.to_string())
            }
            JoinError::TooManyConnections => {
                ApiError::connection(StatusCode::CONFLICT, e.to_string())
            }
            JoinError::ShuttingDown => {
                ApiError::connection(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            JoinError::Unavailable => ApiError::unavailable(),
            // SPEC §12.27: a full node refuses new streams and leaves the ones it holds alone.
            JoinError::NodeFull(full) => {
                ApiError::node_full(full.to_string(), RETRY_AFTER.as_secs())
            }
        })?;
    tracing::debug!(player = %admitted.player, conn = %conn.id, kind = kind.as_str(), "connected");
    Ok(Delivery::new(Arc::clone(&app.hub), conn, admitted.expires))
}

/// SPEC §5: `^[A-Za-z0-9_.:-]{1,128}$`.
pub fn valid_session_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::valid_session_id;

    #[test]
    fn session_ids_are_1_to_128_of_letters_digits_and_four_marks() {
        for ok in ["a", "Z9", "game-1:room_2.x", &"a".repeat(128)] {
            assert!(valid_session_id(ok), "{ok}");
        }
        for bad in ["", &"a".repeat(129), "a b", "a/b", "é", "a\n"] {
            assert!(!valid_session_id(bad), "{bad:?}");
        }
    }
}
