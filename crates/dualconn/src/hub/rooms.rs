//! Room membership on one process: which players each room holds, and the reverse index.
//!
//! A room only names receivers: publishing to it publishes to each member's own stream. So
//! membership belongs to the player, never to a connection, and is forgotten with the player
//! (the hub's sweep calls [`Rooms::forget`] under the player's shard lock).

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use tokio::time::Instant;

use super::{Event, Hub, PlayerId, Published, player::Player};
use crate::backplane::{Backplane, Unavailable};
use crate::wire::{self, EventTemplate};

pub type RoomId = std::sync::Arc<str>;

/// Why a join was refused; nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RoomError {
    #[error("the room already holds its maximum number of members ({0})")]
    RoomFull(usize),
    #[error("the player is already in its maximum number of rooms ({0})")]
    TooManyRooms(usize),
    #[error("the cluster's Redis is unreachable")]
    Unavailable,
}

impl From<crate::backplane::Unavailable> for RoomError {
    fn from(_: crate::backplane::Unavailable) -> RoomError {
        RoomError::Unavailable
    }
}

/// Rooms and memberships, for the monitoring figures.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RoomFigures {
    pub rooms: usize,
    pub memberships: usize,
}

/// One member of a room as `GET /api/rooms/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomMember {
    pub player_id: PlayerId,
    /// A connection open on any node.
    pub online: bool,
}

#[derive(Default)]
pub struct Rooms {
    /// Each room's members; a room with none is removed, so the map holds only live rooms.
    members: HashMap<RoomId, HashSet<PlayerId>>,
    /// Each player's rooms: the cap per player, `GET /api/players/{id}/rooms`, and forgetting
    /// a player without scanning every room.
    of_player: HashMap<PlayerId, HashSet<RoomId>>,
    memberships: usize,
}

impl Rooms {
    /// Adds the player; idempotent. Answers the member count.
    pub fn join(
        &mut self,
        room: &str,
        player: &PlayerId,
        max_members: usize,
        max_rooms: usize,
    ) -> Result<usize, RoomError> {
        let members = self.members.get(room).map_or(0, HashSet::len);
        let rooms = self.of_player.get(&**player);
        if rooms.is_some_and(|r| r.contains(room)) {
            return Ok(members);
        }
        if members >= max_members {
            return Err(RoomError::RoomFull(max_members));
        }
        if rooms.map_or(0, HashSet::len) >= max_rooms {
            return Err(RoomError::TooManyRooms(max_rooms));
        }
        let room = RoomId::from(room);
        self.of_player
            .entry(player.clone())
            .or_default()
            .insert(room.clone());
        let set = self.members.entry(room).or_default();
        set.insert(player.clone());
        self.memberships += 1;
        Ok(set.len())
    }

    /// Removes the player; idempotent. Answers the member count.
    pub fn leave(&mut self, room: &str, player: &str) -> usize {
        let Some(set) = self.members.get_mut(room) else {
            return 0;
        };
        if set.remove(player) {
            self.memberships -= 1;
            if let Some(rooms) = self.of_player.get_mut(player) {
                rooms.remove(room);
                if rooms.is_empty() {
                    self.of_player.remove(player);
                }
            }
        }
        let left = set.len();
        if left == 0 {
            self.members.remove(room);
        }
        left
    }

    /// The members, in no order: callers sort after letting go of the lock every room shares.
    pub fn members(&self, room: &str) -> Vec<PlayerId> {
        self.members
            .get(room)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The player's rooms, sorted.
    pub fn rooms_of(&self, player: &str) -> Vec<RoomId> {
        let mut out: Vec<RoomId> = self
            .of_player
            .get(player)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        out.sort_unstable();
        out
    }

    /// Drops every membership of a player the hub no longer remembers.
    pub fn forget(&mut self, player: &str) {
        let Some(rooms) = self.of_player.remove(player) else {
            return;
        };
        for room in rooms {
            if let Some(set) = self.members.get_mut(&room) {
                if set.remove(player) {
                    self.memberships -= 1;
                }
                if set.is_empty() {
                    self.members.remove(&room);
                }
            }
        }
    }

    pub fn figures(&self) -> RoomFigures {
        RoomFigures {
            rooms: self.members.len(),
            memberships: self.memberships,
        }
    }
}

/// Rooms for the hub's callers: the REST routes, command handlers and embedders. With the
/// local backplane membership lives in [`Rooms`]; under Redis, in Redis, so every node sees
/// the same rooms and a room publish is one script however the members are spread.
impl Hub {
    /// Puts the player in the room (idempotent); answers the member count. Refused past either
    /// cap, with nothing changed.
    pub async fn join_room(&self, room: &str, player: &str) -> Result<usize, RoomError> {
        match &self.backplane {
            Backplane::Local => {
                let now = Instant::now();
                let history_bytes = self.history_bytes();
                let mut shard = self.shard(player).lock();
                // A member the backend names is a player the hub remembers, and forgets after
                // `session_ttl` like any other, memberships included.
                let id = shard
                    .get_key_value(player)
                    .map_or_else(|| PlayerId::from(player), |(id, _)| id.clone());
                let joined = self.rooms.lock().join(
                    room,
                    &id,
                    self.config.max_room_members,
                    self.config.max_rooms_per_player,
                )?;
                let known = shard
                    .entry(id)
                    .or_insert_with(|| Box::new(Player::new(now, history_bytes)));
                known.last_active = now;
                Ok(joined)
            }
            Backplane::Redis(redis) => redis.join_room(room, player).await,
        }
    }

    /// Takes the player out of the room (idempotent); answers the member count.
    pub async fn leave_room(&self, room: &str, player: &str) -> Result<usize, Unavailable> {
        match &self.backplane {
            Backplane::Local => {
                let _shard = self.shard(player).lock();
                Ok(self.rooms.lock().leave(room, player))
            }
            Backplane::Redis(redis) => redis.leave_room(room, player).await,
        }
    }

    /// The room's members, sorted, each with its presence on every node. An unknown room has
    /// none.
    pub async fn room_members(&self, room: &str) -> Result<Vec<RoomMember>, Unavailable> {
        match &self.backplane {
            Backplane::Local => {
                let mut members = self.rooms.lock().members(room);
                members.sort_unstable();
                Ok(members
                    .into_iter()
                    .map(|player_id| RoomMember {
                        online: self.is_online_here(&player_id),
                        player_id,
                    })
                    .collect())
            }
            Backplane::Redis(redis) => redis.room_members(room).await,
        }
    }

    /// The rooms the player is in, sorted.
    pub async fn player_rooms(&self, player: &str) -> Result<Vec<RoomId>, Unavailable> {
        match &self.backplane {
            Backplane::Local => Ok(self.rooms.lock().rooms_of(player)),
            Backplane::Redis(redis) => redis.player_rooms(player).await,
        }
    }

    /// Publishes to every member but those in `except`, each in its own stream, with the
    /// envelope's `room_id` set to the room. Offline members get it in history. Sorted by
    /// player.
    pub async fn publish_to_room(
        &self,
        room: &str,
        except: &[&str],
        event: &Event<'_>,
    ) -> Result<Vec<(PlayerId, Published)>, Unavailable> {
        let stamp = wire::timestamp(SystemTime::now());
        let template = EventTemplate::new(event.event_type, &stamp, Some(room), event.data);
        let mut out = match &self.backplane {
            Backplane::Local => {
                let members = self.rooms.lock().members(room);
                let except: HashSet<&str> = except.iter().copied().collect();
                self.publish_many_local(
                    members.into_iter().filter(|m| !except.contains(&**m)),
                    &template,
                )
            }
            Backplane::Redis(redis) => redis.publish_to_room(room, except, &template).await?,
        };
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// How many rooms have members, and how many memberships there are, cluster-wide.
    pub async fn room_figures(&self) -> Result<RoomFigures, Unavailable> {
        match &self.backplane {
            Backplane::Local => Ok(self.rooms.lock().figures()),
            Backplane::Redis(redis) => redis.room_figures().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(id: &str) -> PlayerId {
        PlayerId::from(id)
    }

    #[test]
    fn join_and_leave_are_idempotent_and_counted() {
        let mut rooms = Rooms::default();
        assert_eq!(rooms.join("hall", &p("a"), 10, 10), Ok(1));
        assert_eq!(rooms.join("hall", &p("a"), 10, 10), Ok(1));
        assert_eq!(rooms.join("hall", &p("b"), 10, 10), Ok(2));
        assert_eq!(rooms.join("yard", &p("a"), 10, 10), Ok(1));
        assert_eq!(
            rooms.figures(),
            RoomFigures {
                rooms: 2,
                memberships: 3
            }
        );
        assert_eq!(rooms.leave("hall", "a"), 1);
        assert_eq!(rooms.leave("hall", "a"), 1);
        assert_eq!(rooms.rooms_of("a"), vec![RoomId::from("yard")]);
        assert_eq!(rooms.leave("yard", "a"), 0);
        assert_eq!(rooms.leave("nowhere", "a"), 0);
        assert!(rooms.rooms_of("a").is_empty());
        assert_eq!(
            rooms.figures(),
            RoomFigures {
                rooms: 1,
                memberships: 1
            }
        );
    }

    #[test]
    fn caps_refuse_without_changing_anything() {
        let mut rooms = Rooms::default();
        rooms.join("r", &p("a"), 2, 1).unwrap();
        rooms.join("r", &p("b"), 2, 1).unwrap();
        assert_eq!(rooms.join("r", &p("c"), 2, 1), Err(RoomError::RoomFull(2)));
        // Already a member: idempotent even when the room is full.
        assert_eq!(rooms.join("r", &p("a"), 2, 1), Ok(2));
        assert_eq!(
            rooms.join("s", &p("a"), 2, 1),
            Err(RoomError::TooManyRooms(1))
        );
        let mut members = rooms.members("r");
        members.sort_unstable();
        assert_eq!(members, vec![p("a"), p("b")]);
        assert!(rooms.members("s").is_empty());
        assert_eq!(rooms.figures().memberships, 2);
    }

    #[test]
    fn forgetting_a_player_drops_all_its_memberships() {
        let mut rooms = Rooms::default();
        rooms.join("r", &p("a"), 9, 9).unwrap();
        rooms.join("s", &p("a"), 9, 9).unwrap();
        rooms.join("s", &p("b"), 9, 9).unwrap();
        rooms.forget("a");
        rooms.forget("a");
        assert_eq!(rooms.members("s"), vec![p("b")]);
        assert!(rooms.members("r").is_empty());
        assert_eq!(
            rooms.figures(),
            RoomFigures {
                rooms: 1,
                memberships: 1
            }
        );
    }
}
