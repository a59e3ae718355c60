//! The built-in demo world: a few connected rooms, so a first run shows a live game.

use std::collections::HashMap;

use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use serde_json::{Value, json};

use super::{Command, CommandError, CommandHandler, Outbound};
use crate::hub::{Hub, PlayerId};

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
/// Where players stand is kept for at most this many players; past it, offline players'
/// places are forgotten (they start again in the hall).
const MAX_PLACES: usize = 10_000;
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

fn room(id: &str) -> &'static Room {
    ROOMS.iter().find(|r| r.id == id).unwrap_or(&ROOMS[0])
}

/// The demo world. Each player's room is all the state it keeps.
#[derive(Default)]
pub struct DemoWorld {
    places: Mutex<HashMap<PlayerId, &'static str>>,
}

impl DemoWorld {
    pub fn new() -> DemoWorld {
        DemoWorld::default()
    }

    fn place(&self, player: &PlayerId) -> &'static str {
        self.places.lock().get(player).copied().unwrap_or(START)
    }

    fn move_to(&self, online: &[PlayerId], player: &PlayerId, to: &'static str) {
        let mut places = self.places.lock();
        if places.len() >= MAX_PLACES && !places.contains_key(player) {
            places.retain(|p, _| online.contains(p));
        }
        places.insert(player.clone(), to);
    }

    /// Online players standing in `room`.
    fn in_room(&self, online: &[PlayerId], room: &str) -> Vec<String> {
        let places = self.places.lock();
        online
            .iter()
            .filter(|p| places.get(*p).copied().unwrap_or(START) == room)
            .map(|p| p.to_string())
            .collect()
    }

    fn look(&self, online: &[PlayerId], player: &PlayerId) -> Value {
        let here = room(self.place(player));
        json!({
            "command": "look",
            "room": {
                "id": here.id,
                "name": here.name,
                "description": here.description,
                "exits": here.exits.iter().map(|(dir, _)| *dir).collect::<Vec<_>>(),
            },
            "players": self.in_room(online, here.id),
        })
    }

    fn answer(&self, online: &[PlayerId], cmd: &Command) -> Vec<Outbound> {
        let me = &cmd.player_id;
        let reply = |data: Value| Outbound::to(me.to_string(), "command_response", data);
        let text = clip(&cmd.args.join(" "));
        let here = self.place(me);
        match cmd.command.as_str() {
            "look" | "l" => vec![reply(self.look(online, me))],
            "say" | "emote" if text.is_empty() => {
                vec![reply(
                    json!({"command": cmd.command, "ok": false, "error": "say what?"}),
                )]
            }
            "say" | "emote" => {
                let listeners = self.in_room(online, here);
                let event = Outbound {
                    player_ids: listeners.clone(),
                    event_type: cmd.command.clone(),
                    room_id: Some(here.to_owned()),
                    data: json!({"from": &**me, "text": text}),
                };
                vec![
                    event,
                    reply(json!({"command": cmd.command, "ok": true, "heard_by": listeners.len()})),
                ]
            }
            "go" | "move" => {
                let dir = cmd.args.first().map(|d| d.to_ascii_lowercase());
                let exit = room(here)
                    .exits
                    .iter()
                    .find(|(d, _)| Some(*d) == dir.as_deref());
                let Some((dir, to)) = exit else {
                    return vec![reply(
                        json!({"command": "go", "ok": false, "error": "you cannot go that way"}),
                    )];
                };
                let left_behind = self.in_room(online, here);
                self.move_to(online, me, to);
                let mut ahead = self.in_room(online, to);
                ahead.retain(|p| p != &**me);
                let mut out = Vec::new();
                let others: Vec<String> = left_behind.into_iter().filter(|p| p != &**me).collect();
                if !others.is_empty() {
                    out.push(Outbound {
                        player_ids: others,
                        event_type: "player_left".into(),
                        room_id: Some(here.to_owned()),
                        data: json!({"player_id": &**me, "direction": dir}),
                    });
                }
                if !ahead.is_empty() {
                    out.push(Outbound {
                        player_ids: ahead,
                        event_type: "player_arrived".into(),
                        room_id: Some((*to).to_owned()),
                        data: json!({"player_id": &**me}),
                    });
                }
                let mut look = self.look(online, me);
                look["command"] = json!("go");
                look["ok"] = json!(true);
                out.push(reply(look));
                out
            }
            "who" => {
                let places = self.places.lock();
                let mut players: Vec<Value> = online
                    .iter()
                    .map(|p| {
                        let at = places.get(p).copied().unwrap_or(START);
                        json!({"player_id": p.as_ref(), "room": at})
                    })
                    .collect();
                players.sort_by(|a, b| a["player_id"].as_str().cmp(&b["player_id"].as_str()));
                vec![reply(json!({"command": "who", "players": players}))]
            }
            "whisper" | "tell" => {
                let (Some(target), Some(_)) = (cmd.args.first(), cmd.args.get(1)) else {
                    return vec![reply(
                        json!({"command": "whisper", "ok": false, "error": "whisper <player> <text>"}),
                    )];
                };
                if !online.iter().any(|p| **p == **target) {
                    return vec![reply(
                        json!({"command": "whisper", "ok": false, "error": "no such player online"}),
                    )];
                }
                let text = clip(&cmd.args[1..].join(" "));
                vec![
                    Outbound::to(
                        target.clone(),
                        "whisper",
                        json!({"from": &**me, "text": text}),
                    ),
                    reply(json!({"command": "whisper", "ok": true, "to": target})),
                ]
            }
            "help" | "" => vec![reply(json!({"command": "help", "commands": HELP}))],
            other => vec![reply(json!({
                "command": other,
                "ok": false,
                "error": "unknown command; try help",
            }))],
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
        Box::pin(async move {
            // Presence once per command: cluster-wide under Redis, one round-trip.
            let online = hub
                .online_players()
                .await
                .map_err(|e| CommandError::system(e.to_string()))?;
            Ok(self.answer(&online, &command))
        })
    }
}
