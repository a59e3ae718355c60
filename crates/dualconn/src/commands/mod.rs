//! Commands from players (SPEC §7): the [`CommandHandler`] trait, what runs a command, and the
//! built-in handlers (the demo world and a webhook).

pub mod demo;
pub mod webhook;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::auth::valid_player_id;
use crate::config::Rate;
use crate::hub::{Event, Hub, PlayerId, SessionId};
use crate::wire::{InboundKind, local};

/// A command as a handler sees it.
#[derive(Debug, Clone)]
pub struct Command {
    pub player_id: PlayerId,
    pub session_id: Option<SessionId>,
    /// The WebSocket it came over; `None` for `POST /api/commands`.
    pub connection_id: Option<String>,
    pub kind: InboundKind,
    /// The verb: `data.command`'s first word, or `say` for `chat`.
    pub command: String,
    /// The rest: `data.args` when it is a list of strings, or the words after the verb.
    pub args: Vec<String>,
    /// The message's `data` as sent.
    pub data: Value,
}

/// One event a handler wants delivered, to any players.
#[derive(Debug, Clone, PartialEq)]
pub struct Outbound {
    pub player_ids: Vec<String>,
    pub event_type: String,
    pub room_id: Option<String>,
    pub data: Value,
}

impl Outbound {
    pub fn to(player: impl Into<String>, event_type: &str, data: Value) -> Outbound {
        Outbound {
            player_ids: vec![player.into()],
            event_type: event_type.to_owned(),
            room_id: None,
            data,
        }
    }
}

/// Why a handler could not answer; the player gets an `error` event with this message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct CommandError {
    pub error_type: &'static str,
    pub message: String,
}

impl CommandError {
    pub fn system(message: impl Into<String>) -> CommandError {
        CommandError {
            error_type: "system_error",
            message: message.into(),
        }
    }
}

/// What turns a player's command into events. Implement it to embed dualconn in a game.
///
/// The hub is there to read presence (who is online); the events to deliver are returned, so
/// that the runner validates and publishes them the same way for every handler.
pub trait CommandHandler: Send + Sync + 'static {
    fn handle<'a>(
        &'a self,
        hub: &'a Hub,
        command: Command,
    ) -> BoxFuture<'a, Result<Vec<Outbound>, CommandError>>;
}

impl Command {
    /// Builds a command from an inbound message's kind and data.
    pub fn new(
        player_id: PlayerId,
        session_id: Option<SessionId>,
        connection_id: Option<String>,
        kind: InboundKind,
        data: Value,
    ) -> Command {
        let text = match kind {
            InboundKind::Chat => data
                .get("text")
                .or_else(|| data.get("message"))
                .and_then(Value::as_str)
                .map(|t| format!("say {t}")),
            _ => data
                .get("command")
                .and_then(Value::as_str)
                .map(str::to_owned),
        }
        .or_else(|| data.as_str().map(str::to_owned))
        .unwrap_or_default();
        let mut words = text.split_whitespace().map(str::to_owned);
        let command = words.next().unwrap_or_default().to_ascii_lowercase();
        let args = match data.get("args").and_then(Value::as_array) {
            Some(list) => list
                .iter()
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect(),
            None => words.collect(),
        };
        Command {
            player_id,
            session_id,
            connection_id,
            kind,
            command,
            args,
            data,
        }
    }
}

/// Runs players' commands: the per-player rate limit, the handler, and publishing what it
/// returns. Shared by the WebSocket and `POST /api/commands`. Cheap to clone.
#[derive(Clone)]
pub struct Runner {
    handler: Arc<dyn CommandHandler>,
    hub: Arc<Hub>,
    /// SPEC §7: 20/s with a burst of 40 by default, per player, both transports together.
    limiter: Arc<DefaultKeyedRateLimiter<String>>,
    /// Commands refused by the limit, for `/metrics`.
    rejected: Arc<AtomicU64>,
}

impl Runner {
    pub fn new(handler: Arc<dyn CommandHandler>, hub: Arc<Hub>, rate: Rate) -> Runner {
        let quota = Quota::per_second(NonZeroU32::new(rate.per_second).unwrap_or(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN));
        Runner {
            handler,
            hub,
            limiter: Arc::new(DefaultKeyedRateLimiter::keyed(quota)),
            rejected: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Takes one command from the player's bucket, or says how long to wait.
    pub fn admit(&self, player: &str) -> Result<(), Duration> {
        self.limiter
            .check_key(&player.to_owned())
            .map_err(|not_until| {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                not_until.wait_time_from(DefaultClock::default().now())
            })
    }

    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Forgets idle players' buckets.
    pub fn retain_recent(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Runs a command through the handler and publishes what it returns. Events addressed to
    /// invalid player ids or with reserved types are dropped with a warning, never delivered.
    pub async fn run(self, command: Command) -> Result<(), CommandError> {
        let outbound = self.handler.handle(&self.hub, command).await?;
        for event in outbound {
            deliver(&self.hub, &event).await?;
        }
        Ok(())
    }
}

/// Publishes a handler's event; only an unreachable cluster Redis fails it.
async fn deliver(hub: &Hub, event: &Outbound) -> Result<(), CommandError> {
    if local::ALL.contains(&event.event_type.as_str()) || event.event_type.is_empty() {
        tracing::warn!(
            event_type = %event.event_type.escape_debug(),
            "a command handler returned a reserved event type; dropped"
        );
        return Ok(());
    }
    let Ok(data) = serde_json::value::to_raw_value(&event.data) else {
        return Ok(());
    };
    let data: &RawValue = &data;
    let published = Event {
        event_type: &event.event_type,
        room_id: event.room_id.as_deref(),
        data,
    };
    let players: Vec<&str> = event
        .player_ids
        .iter()
        .map(String::as_str)
        .filter(|p| valid_player_id(p))
        .collect();
    if players.is_empty() {
        return Ok(());
    }
    hub.publish_to(&players, &published)
        .await
        .map(|_| ())
        .map_err(|e| CommandError::system(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cmd(kind: InboundKind, data: Value) -> Command {
        Command::new("p".into(), None, None, kind, data)
    }

    #[test]
    fn commands_parse_from_each_shape() {
        let c = cmd(InboundKind::Command, json!({"command": "Go north"}));
        assert_eq!(
            (c.command.as_str(), c.args.as_slice()),
            ("go", &["north".to_owned()][..])
        );
        let c = cmd(
            InboundKind::GameCommand,
            json!({"command": "whisper", "args": ["bob", "hi there"]}),
        );
        assert_eq!(c.command, "whisper");
        assert_eq!(c.args, ["bob", "hi there"]);
        let c = cmd(InboundKind::Chat, json!({"text": "hello all"}));
        assert_eq!(c.command, "say");
        assert_eq!(c.args, ["hello", "all"]);
        let c = cmd(InboundKind::Command, json!(null));
        assert_eq!(c.command, "");
    }
}
