//! Events a game backend asks dualconn to publish to one player in a webhook's answer: the
//! connect webhook's greeting, and the answers to `player_online` and `session_started`.
//!
//! They follow `POST /api/publish`'s rules (an answer cannot forge a connection-local event)
//! and go through the normal publish path: numbered, kept in history, on every connection.

use serde::Deserialize;

use crate::http::{valid_event_type, valid_session_id};
use crate::hub::{Event, Hub};
use crate::wire::local;

/// An event the backend wants one player to get, after `connected`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Greeting {
    /// The publish's `event_type`; checked by [`check`] before anything is published.
    pub(crate) event_type: String,
    /// Parsed rather than kept raw: re-serializing compacts it, so no newline from the
    /// backend's answer can reach SSE framing.
    #[serde(default = "empty_object")]
    pub(crate) data: serde_json::Value,
    /// The publish's `room_id`, for the client's routing.
    #[serde(default)]
    pub(crate) room_id: Option<String>,
}

fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}

/// Why an answer's events cannot be published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    TooMany,
    Invalid,
}

/// The publish rules, applied to a whole answer: all of it is published, or none.
pub fn check(events: &[Greeting], max: usize) -> Result<(), Refused> {
    if events.len() > max {
        return Err(Refused::TooMany);
    }
    if events.iter().any(|e| {
        !valid_event_type(&e.event_type)
            || local::ALL.contains(&e.event_type.as_str())
            || e.room_id.as_deref().is_some_and(|r| !valid_session_id(r))
    }) {
        return Err(Refused::Invalid);
    }
    Ok(())
}

/// Publishes checked events to the player, in order: numbered, retained, and on every
/// connection of the player. In a cluster an event that Redis cannot take is dropped with a
/// warning: the connection is already open, and the backend can publish again.
pub async fn greet(hub: &Hub, player: &str, events: &[Greeting]) {
    for g in events {
        let Ok(data) = serde_json::value::to_raw_value(&g.data) else {
            continue;
        };
        let published = hub
            .publish(
                player,
                &Event {
                    event_type: &g.event_type,
                    room_id: g.room_id.as_deref(),
                    data: &data,
                },
            )
            .await;
        if published.is_err() {
            tracing::warn!(player = %player, "a webhook's greeting was not published: Redis is unreachable");
        }
    }
}
