//! The built-in demo world: a few connected rooms, so a first run shows a live game, built on
//! the hub's rooms the way a game backend would use them.

use std::collections::HashMap;

use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use super::{Command, CommandError, CommandHandler, Outbound};
use crate::hub::{Event, Hub};

struct Room {
    id: &'static str,
    name: &'static str,
    description: &'static str,
    exits: &'static [(&'static str, &'static str)],
}

const ROOMS: &[Room] = &[
    Room {
        id: "hall",
        name: "The Great Hall",
        description: "Torches flicker along stone walls. Arches lead north to the library and east to the garden.",
        exits: &[("north", "library"), ("east", "garden")],
    },
    Room {
        id: "library",
        name: "The Library",
        description: "Dusty shelves climb into the dark. A spiral stair winds up; the hall lies south.",
        exits: &[("south", "hall"), ("up", "tower")],
    },
    Room {
        id: "garden",
        name: "The Moonlit Garden",
        description: "Night flowers open under a pale moon. The hall is back to the west.",
        exits: &[("west", "hall")],
    },
    Room {
        id: "tower",
        name: "The Tower Top",
        description: "Wind howls around the battlements. Stairs lead down to the library.",
        exits: &[("down", "library")],
    },
];

const START: &str = "hall";
const MAX_TEXT: usize = 500;

const HELP: &[&str] = &[
    "look",
    "say <text>",
    "emote <text>",
    "go <exit>",
    "who",
    "whisper <player> <text>",
    "help",
];

fn room(id: &str) -> Option<&'static Room> {
    ROOMS.iter().find(|r| r.id == id)
}

/// The demo world. It keeps no state of its own: where a player stands is its membership of
/// one of the world's rooms (the hub's rooms, so cluster-wide under Redis), and what is said
/// in a room is a room publish. A player enters the hall with its first command, whatever it is.
#[derive(Default)]
pub struct DemoWorld;

type Reply = Result<Vec<Outbound>, CommandError>;

fn system(e: impl std::fmt::Display) -> CommandError {
    CommandError::system(e.to_string())
}

impl DemoWorld {
    pub fn new() -> DemoWorld {
        DemoWorld
    }

    /// The world room the player stands in, entering the hall if it stands nowhere yet.
    async fn place(hub: &Hub, player: &str) -> Result<&'static Room, CommandError> {
        let rooms = hub.player_rooms(player).await.map_err(system)?;
        if let Some(here) = rooms.iter().find_map(|r| room(r)) {
            return Ok(here);
        }
        // A full hall still lets the player look around; it just hears nothing.
        if let Err(e) = hub.join_room(START, player).await {
            tracing::debug!(error = %e, "demo world: could not enter the hall");
        }
        Ok(&ROOMS[0])
    }

    /// Online members of a world room.
    async fn online_in(hub: &Hub, here: &Room) -> Result<Vec<String>, CommandError> {
        Ok(hub
            .room_members(here.id)
            .await
            .map_err(system)?
            .into_iter()
            .filter(|m| m.online)
            .map(|m| m.player_id.to_string())
            .collect())
    }

    async fn look(hub: &Hub, here: &Room) -> Result<Value, CommandError> {
        Ok(json!({
            "command": "look",
            "room": {
                "id": here.id,
                "name": here.name,
                "description": here.description,
                "exits": here.exits.iter().map(|(dir, _)| *dir).collect::<Vec<_>>(),
            },
            "players": Self::online_in(hub, here).await?,
        }))
    }

    /// Publishes to everyone in a world room but `except`; answers how many are online.
    async fn tell_room(
        hub: &Hub,
        here: &Room,
        except: &[&str],
        event_type: &str,
        data: Value,
    ) -> Result<usize, CommandError> {
        let data = serde_json::value::to_raw_value(&data).map_err(system)?;
        let event = Event {
            event_type,
            room_id: Some(here.id),
            data: &data,
        };
        let reached = hub
            .publish_to_room(here.id, except, &event)
            .await
            .map_err(system)?;
        Ok(reached.iter().filter(|(_, p)| p.connections > 0).count())
    }

    async fn answer(&self, hub: &Hub, cmd: &Command) -> Reply {
        let me = &cmd.player_id;
        let reply = |data: Value| Outbound::to(me.to_string(), "command_response", data);
        let text = clip(&cmd.args.join(" "));
        // Any command enters the world: a player who only asked `who` is standing somewhere.
        let here = Self::place(hub, me).await?;
        match cmd.command.as_str() {
            "look" | "l" => Ok(vec![reply(Self::look(hub, here).await?)]),
            "say" | "emote" if text.is_empty() => Ok(vec![reply(
                json!({"command": cmd.command, "ok": false, "error": "say what?"}),
            )]),
            "say" | "emote" => {
                let data = json!({"from": &**me, "text": text});
                let heard_by = Self::tell_room(hub, here, &[], &cmd.command, data).await?;
                Ok(vec![reply(
                    json!({"command": cmd.command, "ok": true, "heard_by": heard_by}),
                )])
            }
            "go" | "move" => {
                let dir = cmd.args.first().map(|d| d.to_ascii_lowercase());
                let exit = here.exits.iter().find(|(d, _)| Some(*d) == dir.as_deref());
                let Some(((dir, to), Some(to_room))) = exit.map(|e| (e, room(e.1))) else {
                    return Ok(vec![reply(
                        json!({"command": "go", "ok": false, "error": "you cannot go that way"}),
                    )]);
                };
                if let Err(e) = hub.join_room(to, me).await {
                    return Ok(vec![reply(
                        json!({"command": "go", "ok": false, "error": e.to_string()}),
                    )]);
                }
                hub.leave_room(here.id, me).await.map_err(system)?;
                let left = json!({"player_id": &**me, "direction": dir});
                Self::tell_room(hub, here, &[], "player_left", left).await?;
                let arrived = json!({"player_id": &**me});
                Self::tell_room(hub, to_room, &[me], "player_arrived", arrived).await?;
                let mut look = Self::look(hub, to_room).await?;
                look["command"] = json!("go");
                look["ok"] = json!(true);
                Ok(vec![reply(look)])
            }
            "who" => {
                let online = hub.online_players().await.map_err(system)?;
                let mut at: HashMap<String, &str> = HashMap::new();
                for r in ROOMS {
                    for p in Self::online_in(hub, r).await? {
                        at.insert(p, r.id);
                    }
                }
                let mut players: Vec<Value> = online
                    .iter()
                    .map(|p| json!({"player_id": p.as_ref(), "room": at.get(p.as_ref())}))
                    .collect();
                players.sort_by(|a, b| a["player_id"].as_str().cmp(&b["player_id"].as_str()));
                Ok(vec![reply(json!({"command": "who", "players": players}))])
            }
            "whisper" | "tell" => {
                let (Some(target), Some(_)) = (cmd.args.first(), cmd.args.get(1)) else {
                    return Ok(vec![reply(
                        json!({"command": "whisper", "ok": false, "error": "whisper <player> <text>"}),
                    )]);
                };
                if !crate::auth::valid_player_id(target)
                    || !hub.is_online(target).await.map_err(system)?
                {
                    return Ok(vec![reply(
                        json!({"command": "whisper", "ok": false, "error": "no such player online"}),
                    )]);
                }
                let text = clip(&cmd.args[1..].join(" "));
                Ok(vec![
                    Outbound::to(
                        target.clone(),
                        "whisper",
                        json!({"from": &**me, "text": text}),
                    ),
                    reply(json!({"command": "whisper", "ok": true, "to": target})),
                ])
            }
            "help" | "" => Ok(vec![reply(json!({"command": "help", "commands": HELP}))]),
            other => Ok(vec![reply(json!({
                "command": other,
                "ok": false,
                "error": "unknown command; try help",
            }))]),
        }
    }
}

fn clip(text: &str) -> String {
    text.chars().take(MAX_TEXT).collect()
}

impl CommandHandler for DemoWorld {
    fn handle<'a>(
        &'a self,
        hub: &'a Hub,
        command: Command,
    ) -> BoxFuture<'a, Result<Vec<Outbound>, CommandError>> {
        Box::pin(async move { self.answer(hub, &command).await })
    }
}
