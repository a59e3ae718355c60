//! Rooms in a cluster: membership lives in Redis, so a join through one node is seen by a
//! publish through any other, and a room publish is one script however its members are spread
//! (the scripts are in `scripts.rs`).

use super::{NODE_TTL, RedisBackplane, published};
use crate::backplane::Unavailable;
use crate::hub::{PlayerId, Published, RoomError, RoomFigures, RoomId, RoomMember};
use crate::wire::EventTemplate;

/// Rooms sampled per sweep, and members checked in each: at most 1,000 checks per beat per
/// node, however large rooms grow.
const SWEEP_ROOMS: usize = 5;
const SWEEP_MEMBERS: usize = 200;

impl RedisBackplane {
    pub(crate) async fn join_room(&self, room: &str, player: &str) -> Result<usize, RoomError> {
        self.check()?;
        let reply: Vec<String> = self
            .scripts
            .room_join
            .prepare_invoke()
            .arg(self.prefix())
            .arg(room)
            .arg(player)
            .arg(self.config.max_room_members)
            .arg(self.config.max_rooms_per_player)
            .arg(Self::ttl_ms(self.config.session_ttl))
            .invoke_async(&mut self.redis.clone())
            .await
            .map_err(|e| self.failed(&e))?;
        match reply.as_slice() {
            [ok, members] if ok == "OK" => members.parse().map_err(|_| RoomError::Unavailable),
            [refused] if refused == "ROOM_FULL" => {
                Err(RoomError::RoomFull(self.config.max_room_members))
            }
            [refused] if refused == "TOO_MANY_ROOMS" => {
                Err(RoomError::TooManyRooms(self.config.max_rooms_per_player))
            }
            _ => Err(RoomError::Unavailable),
        }
    }

    pub(crate) async fn leave_room(&self, room: &str, player: &str) -> Result<usize, Unavailable> {
        self.check()?;
        self.scripts
            .room_leave
            .prepare_invoke()
            .arg(self.prefix())
            .arg(room)
            .arg(player)
            .invoke_async(&mut self.redis.clone())
            .await
            .map_err(|e| self.failed(&e))
    }

    pub(crate) async fn room_members(&self, room: &str) -> Result<Vec<RoomMember>, Unavailable> {
        self.check()?;
        let reply: Vec<(String, u8)> = self
            .scripts
            .room_members
            .prepare_invoke()
            .arg(self.prefix())
            .arg(room)
            .arg(Self::ttl_ms(NODE_TTL))
            .invoke_async(&mut self.redis.clone())
            .await
            .map_err(|e| self.failed(&e))?;
        let mut members: Vec<RoomMember> = reply
            .into_iter()
            .map(|(player, online)| RoomMember {
                player_id: PlayerId::from(player),
                online: online == 1,
            })
            .collect();
        members.sort_unstable_by(|a, b| a.player_id.cmp(&b.player_id));
        Ok(members)
    }

    pub(crate) async fn player_rooms(&self, player: &str) -> Result<Vec<RoomId>, Unavailable> {
        self.check()?;
        let rooms: Vec<String> = redis::cmd("SMEMBERS")
            .arg(format!("{}:pr:{player}", self.prefix()))
            .query_async(&mut self.redis.clone())
            .await
            .map_err(|e| self.failed(&e))?;
        let mut rooms: Vec<RoomId> = rooms.into_iter().map(RoomId::from).collect();
        rooms.sort_unstable();
        Ok(rooms)
    }

    pub(crate) async fn publish_to_room(
        &self,
        room: &str,
        except: &[&str],
        template: &EventTemplate,
    ) -> Result<Vec<(PlayerId, Published)>, Unavailable> {
        self.check()?;
        let mut invocation = self.scripts.room_publish.prepare_invoke();
        invocation
            .arg(self.prefix())
            .arg(&template.head)
            .arg(&template.tail)
            .arg(self.config.history_size)
            .arg(Self::ttl_ms(self.config.history_ttl))
            .arg(Self::ttl_ms(self.config.session_ttl))
            .arg(room)
            .arg(except.len());
        for player in except {
            invocation.arg(*player);
        }
        let reply: Vec<(String, u64, usize)> = invocation
            .invoke_async(&mut self.redis.clone())
            .await
            .map_err(|e| self.failed(&e))?;
        Ok(published(reply))
    }

    pub(crate) async fn room_figures(&self) -> Result<RoomFigures, Unavailable> {
        self.check()?;
        let (rooms, memberships): (usize, Option<i64>) = redis::pipe()
            .cmd("SCARD")
            .arg(format!("{}:rooms", self.prefix()))
            .cmd("GET")
            .arg(format!("{}:memberships", self.prefix()))
            .query_async(&mut self.redis.clone())
            .await
            .map_err(|e| self.failed(&e))?;
        Ok(RoomFigures {
            rooms,
            memberships: memberships.unwrap_or(0).max(0) as usize,
        })
    }

    /// Clears forgotten players from a random sample of rooms (see `ROOM_SWEEP`).
    pub(crate) async fn sweep_rooms(&self) -> Result<(), Unavailable> {
        self.check()?;
        let _: i64 = self
            .scripts
            .room_sweep
            .prepare_invoke()
            .arg(self.prefix())
            .arg(SWEEP_ROOMS)
            .arg(SWEEP_MEMBERS)
            .invoke_async(&mut self.redis.clone())
            .await
            .map_err(|e| self.failed(&e))?;
        Ok(())
    }
}
