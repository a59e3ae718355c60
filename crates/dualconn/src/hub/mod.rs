//! The transport-free core: players, sessions, streams, outboxes and statistics.
//!
//! Per-player state lives in shards, each behind a mutex held for microseconds and never
//! across an `.await`. The node-local half (connections, outboxes, fan-out, shutdown) is always
//! here. Numbering, history, sessions and presence belong to the [`Backplane`]: with the local
//! one they live in the same shard entry, so one lock orders everything for a player (see
//! [`Hub::connect`]); with Redis they live there, and this node keeps only its connections and
//! what it needs to merge live events with history (see `backplane/redis`).

mod budget;
mod conn;
mod held;
mod outbox;
mod player;
mod rooms;
mod stats;
mod trends;
mod warm;

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::time::Instant;

pub use budget::{Budget, BudgetConfig, Full, RETRY_AFTER, default_max_connections};
pub use conn::{CloseReason, Conn, ConnKind};
#[cfg(test)]
pub(crate) use outbox::tests::FakeSocket;
pub use outbox::{DirectSocket, Frame, Outbox, Pushed, Sent};
pub use player::{MAX_SAFE_CURSOR, REPLACED_SESSIONS_REMEMBERED, Replay};
pub use rooms::{RoomError, RoomFigures, RoomId, RoomMember};
pub use stats::{CounterTotals, Counters, Establishment};
pub use trends::{HealthTrends, SAMPLES_PER_DAY};

use held::HeldWrites;
use player::Player;
pub use player::recovered;

use crate::backplane::{Backplane, Unavailable};
use crate::lifecycle::{Kind as LifecycleKind, Notice, Notices};
use crate::wire::{self, EventTemplate, local};

pub type PlayerId = Arc<str>;
pub type SessionId = Arc<str>;

const SHARDS: usize = 64;

/// The hub's knobs, a subset of [`crate::config::Config`].
#[derive(Clone, Debug)]
pub struct HubConfig {
    pub max_connections_per_player: usize,
    pub reject_over_limit: bool,
    pub history_size: usize,
    pub history_ttl: Duration,
    pub outbox_bytes: usize,
    pub session_ttl: Duration,
    pub heartbeat_interval: Duration,
    pub ping_interval: Duration,
    /// An SSE write pending longer than this makes the stream unhealthy.
    pub write_timeout: Duration,
    /// Bounds membership, so no backend bug can grow one room or one player without limit.
    pub max_room_members: usize,
    pub max_rooms_per_player: usize,
}

/// SPEC §6, §8, §9 and §11's defaults.
impl Default for HubConfig {
    fn default() -> HubConfig {
        HubConfig {
            max_connections_per_player: 4,
            reject_over_limit: false,
            history_size: 256,
            history_ttl: Duration::from_secs(300),
            outbox_bytes: 1 << 20,
            session_ttl: Duration::from_secs(86_400),
            heartbeat_interval: Duration::from_secs(15),
            ping_interval: Duration::from_secs(25),
            write_timeout: Duration::from_secs(10),
            max_room_members: 10_000,
            max_rooms_per_player: 64,
        }
    }
}

impl From<&crate::config::Config> for HubConfig {
    fn from(c: &crate::config::Config) -> HubConfig {
        HubConfig {
            max_connections_per_player: c.max_connections_per_player,
            reject_over_limit: c.reject_over_limit,
            history_size: c.history_size,
            history_ttl: c.history_ttl,
            outbox_bytes: c.outbox_bytes,
            session_ttl: c.session_ttl,
            heartbeat_interval: c.heartbeat_interval,
            ping_interval: c.ping_interval,
            write_timeout: Duration::from_secs(10),
            max_room_members: c.max_room_members,
            max_rooms_per_player: c.max_rooms_per_player,
        }
    }
}

/// An event to publish to a player's stream.
pub struct Event<'a> {
    pub event_type: &'a str,
    pub room_id: Option<&'a str>,
    /// Already-serialized JSON, so a broadcast serializes its payload once.
    pub data: &'a RawValue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub sequence_number: u64,
    /// Connections the event was queued on.
    pub connections: usize,
}

/// A connection asking to join.
pub struct Join<'a> {
    pub player: &'a PlayerId,
    pub kind: ConnKind,
    /// `None` joins the current session (or starts one).
    pub session_id: Option<&'a str>,
    /// Resume cursor: the last sequence number the client has.
    pub cursor: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("this session was replaced by a newer one")]
    StaleSession,
    #[error("another session is live for this player")]
    SessionConflict,
    #[error("the player already holds the maximum number of connections")]
    TooManyConnections,
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("the cluster's Redis is unreachable")]
    Unavailable,
    /// SPEC §12.27, decided after the session rules and the per-player cap (§12.15: 409
    /// before the rest), so a request that is refused 409 anywhere is refused 409 here too.
    #[error(transparent)]
    NodeFull(#[from] Full),
}

impl From<Unavailable> for JoinError {
    fn from(_: Unavailable) -> JoinError {
        JoinError::Unavailable
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("this session id was replaced and cannot be made current again")]
    Replaced,
    #[error("the cluster's Redis is unreachable")]
    Unavailable,
}

impl From<Unavailable> for SessionError {
    fn from(_: Unavailable) -> SessionError {
        SessionError::Unavailable
    }
}

pub struct NewSession {
    pub session_id: SessionId,
    pub disconnected: usize,
}

pub struct SessionSnapshot {
    pub session_id: SessionId,
    pub created: SystemTime,
    pub websocket: usize,
    pub sse: usize,
}

/// One player's connections as an operator sees them.
pub struct PlayerSnapshot {
    pub session_id: Option<SessionId>,
    pub websocket: TransportSnapshot,
    pub sse: TransportSnapshot,
    pub last_seen: Option<SystemTime>,
}

#[derive(Default)]
pub struct TransportSnapshot {
    pub connection_ids: Vec<String>,
    pub healthy: usize,
    pub last_activity: Option<SystemTime>,
}

impl TransportSnapshot {
    pub fn count(&self) -> usize {
        self.connection_ids.len()
    }
}

/// Current, cluster-free counts for the stats routes.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct StatsSnapshot {
    pub players_online: usize,
    pub websocket_only: usize,
    pub sse_only: usize,
    pub dual: usize,
    pub websocket_connections: usize,
    pub sse_connections: usize,
    pub websocket_healthy: usize,
    pub sse_healthy: usize,
    pub sessions: usize,
    pub sessions_with_connections: usize,
    /// Players held in memory, online or not: what the session ttl frees.
    pub players_known: usize,
}

impl StatsSnapshot {
    pub fn connections(&self) -> usize {
        self.websocket_connections + self.sse_connections
    }

    pub fn healthy(&self) -> usize {
        self.websocket_healthy + self.sse_healthy
    }

    /// connections ÷ sessions that have connections, and 0 when none do (SPEC §12.13).
    pub fn connections_per_session(&self) -> f64 {
        if self.sessions_with_connections == 0 {
            0.0
        } else {
            self.connections() as f64 / self.sessions_with_connections as f64
        }
    }

    /// healthy ÷ total × 100, and 100.0 with no connections (SPEC §9).
    pub fn health_percentage(&self) -> f64 {
        percentage(self.healthy(), self.connections())
    }
}

/// part ÷ total × 100, and 100.0 when there is nothing to measure.
pub fn percentage(part: usize, total: usize) -> f64 {
    if total == 0 {
        100.0
    } else {
        part as f64 * 100.0 / total as f64
    }
}

/// One player in the operators' list.
pub struct PlayerListing {
    pub player_id: PlayerId,
    pub session_id: Option<SessionId>,
    pub connections: Vec<ConnListing>,
}

pub struct ConnListing {
    pub connection_id: String,
    pub kind: ConnKind,
    pub healthy: bool,
    pub last_activity: SystemTime,
    pub opened_at: SystemTime,
}

/// One shard of the players. Each player is boxed: the table then holds a key and a pointer per
/// slot, and its spare capacity (up to half of it right after a resize) costs 24 bytes a slot
/// instead of a whole `Player` (issue 10, BENCHMARKS.md).
type Shard = HashMap<PlayerId, Box<Player>>;

pub struct Hub {
    shards: Box<[Mutex<Shard>]>,
    /// Picks a player's shard; seeded per process so ids cannot be chosen to collide.
    hasher: RandomState,
    config: HubConfig,
    pub counters: Counters,
    /// Health percentage samples for the trend figures.
    pub trends: HealthTrends,
    /// Random per process, so connection ids never repeat across restarts or nodes.
    conn_prefix: String,
    next_conn: AtomicU64,
    /// Origin of the connections' liveness clocks (tokio time, so tests can pause it).
    epoch: Instant,
    epoch_wall: SystemTime,
    shutting_down: AtomicBool,
    /// Where numbering, history, sessions and presence live: this process, or Redis.
    backplane: Backplane,
    /// Streams and queued bytes on this node, shared with every outbox.
    pub budget: Arc<Budget>,
    /// Room membership with the local backplane (Redis keeps it for a cluster). Locked after a
    /// player's shard, never before, so forgetting a player and joining it cannot interleave.
    rooms: Mutex<rooms::Rooms>,
    /// Where lifecycle notices go when the lifecycle webhook is configured.
    lifecycle: Option<Notices>,
}

/// What a join changed beyond adding a connection, for the lifecycle webhook.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Arrival {
    /// The player had no connection anywhere (and was not within the grace after one).
    pub came_online: bool,
    /// The join started a session or took one over (SPEC §5).
    pub session_started: bool,
}

impl Hub {
    /// A single-process hub: the local backplane.
    pub fn new(config: HubConfig) -> Hub {
        Hub::build(config, Backplane::Local, BudgetConfig::default())
    }

    /// A single-process hub under the node-wide bounds of SPEC §12.27.
    pub fn with_budget(config: HubConfig, budget: BudgetConfig) -> Hub {
        Hub::build(config, Backplane::Local, budget)
    }

    /// A hub on the given backplane, with the default node-wide bounds.
    pub fn with_backplane(config: HubConfig, backplane: Backplane) -> Hub {
        Hub::build(config, backplane, BudgetConfig::default())
    }

    pub fn build(config: HubConfig, backplane: Backplane, budget: BudgetConfig) -> Hub {
        Hub {
            budget: Arc::new(Budget::new(budget)),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            config,
            counters: Counters::default(),
            trends: HealthTrends::default(),
            conn_prefix: crate::random::token()[..8].to_owned(),
            next_conn: AtomicU64::new(1),
            epoch: Instant::now(),
            epoch_wall: SystemTime::now(),
            shutting_down: AtomicBool::new(false),
            backplane,
            rooms: Mutex::new(rooms::Rooms::default()),
            lifecycle: None,
        }
    }

    /// Reports players' lifecycle to `notices` from now on (the lifecycle webhook).
    pub fn set_lifecycle(&mut self, notices: Notices) {
        self.lifecycle = Some(notices);
    }

    /// Where lifecycle notices go; `None` when no lifecycle webhook is configured.
    pub fn lifecycle(&self) -> Option<&Notices> {
        self.lifecycle.as_ref()
    }

    /// Queues a lifecycle notice, built only when someone listens.
    pub(crate) fn notify(&self, notice: impl FnOnce() -> Notice) {
        if let Some(n) = &self.lifecycle {
            n.send(notice());
        }
    }

    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    pub fn backplane(&self) -> &Backplane {
        &self.backplane
    }

    fn shard(&self, player: &str) -> &Mutex<Shard> {
        let i = self.hasher.hash_one(player) as usize % SHARDS;
        &self.shards[i]
    }

    fn history_bytes(&self) -> usize {
        self.config.outbox_bytes / 2
    }

    /// Registers a connection and queues its opening events: `connected`, then `recovery` and
    /// the replay when a cursor is given, then live events. The session rules (SPEC §5) and the
    /// per-player cap are decided by the backplane, cluster-wide under Redis; then, if they let
    /// the connection in, the node's budget (SPEC §12.27). A refused join changes nothing.
    pub async fn connect(&self, join: Join<'_>) -> Result<Arc<Conn>, JoinError> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Err(JoinError::ShuttingDown);
        }
        let (conn, arrival) = match &self.backplane {
            Backplane::Local => self.connect_local(join)?,
            Backplane::Redis(redis) => redis.connect(self, join).await?,
        };
        if arrival.came_online {
            self.notify(|| Notice::about(LifecycleKind::PlayerOnline, &conn, None));
        }
        if arrival.session_started {
            self.notify(|| {
                Notice::session_started(
                    conn.player.clone(),
                    SessionId::from(conn.session()),
                    "connect",
                )
            });
        }
        self.notify(|| Notice::about(LifecycleKind::ConnectionOpened, &conn, None));
        Ok(conn)
    }

    /// Registers a connection and queues its opening events.
    ///
    /// **Ordering.** Under the player's shard lock this: resolves the session, evicts past
    /// the cap, queues `connected`, then `recovery` and the replay from history, and only then
    /// adds the connection to the player's fan-out list. [`Hub::publish`] numbers an event,
    /// appends it to history and pushes it to the fan-out list under the same lock. So every
    /// event is either published before the join (its number is at most `next_seq - 1` and it
    /// is in the replay if retained) or after it (it reaches the outbox after the replay).
    /// No event falls in between and none arrives twice, and per-connection order is
    /// `sequence_number` order because the outbox is FIFO.
    fn connect_local(&self, join: Join<'_>) -> Result<(Arc<Conn>, Arrival), JoinError> {
        let now = Instant::now();
        let mut shard = self.shard(join.player).lock();
        let history_bytes = self.history_bytes();
        let player = shard
            .entry(join.player.clone())
            .or_insert_with(|| Box::new(Player::new(now, history_bytes)));
        player.last_active = now;

        // Session rules (SPEC §5), decided before anything changes: a join refused further down
        // must not have taken the session over.
        let mut arrival = Arrival::default();
        let (session, take_over) = match (join.session_id, &player.session) {
            (Some(id), _) if player.was_replaced(id) => return Err(JoinError::StaleSession),
            (None, Some(current)) => (current.id.clone(), false),
            (Some(id), Some(current)) if *current.id == *id => (current.id.clone(), false),
            (Some(_), Some(_)) if !player.conns.is_empty() => {
                return Err(JoinError::SessionConflict);
            }
            (Some(id), _) => (SessionId::from(id), true),
            (None, None) => (SessionId::from(crate::random::token()), true),
        };
        let over_cap = player.conns.len() >= self.config.max_connections_per_player;
        if over_cap && self.config.reject_over_limit {
            return Err(JoinError::TooManyConnections);
        }
        // Only a join every rule above lets in can be refused for the node being full (503
        // comes after 409), and it leaves the player's connections and session alone.
        self.budget.admit()?;
        if take_over {
            player.set_session(session.clone());
            arrival.session_started = true;
        }

        if over_cap {
            let excess = player.conns.len() + 1 - self.config.max_connections_per_player;
            for old in player.conns.drain(..excess) {
                let frame = local_frame(&old.player, local::CONNECTION_REPLACED, &wire::Empty {});
                old.outbox
                    .close(Some(frame), CloseReason::ConnectionReplaced);
                self.counters.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }

        let conn = self.new_conn(join.player, join.kind);
        conn.set_session(session.clone());

        let mut opening = vec![self.connected_frame(&conn, &session)];
        if let Some(cursor) = join.cursor {
            player.history.expire(now, self.config.history_ttl);
            let replay = player.history.after(cursor, player.next_seq);
            opening.push(recovery_frame(join.player, cursor, &replay));
            // SPEC §12.25: a replayed event is sent like any other, so that its write is
            // never counted as a delivery of something not sent.
            Counters::add(&self.counters.messages_sent, replay.frames.len());
            opening.extend(replay.frames);
        }
        // History holds at most half the outbox bound, so the opening always fits.
        conn.outbox.push_unbounded(opening);
        player.conns.push(conn.clone());
        player.last_seen = Some(SystemTime::now());
        let presence = &mut player.presence;
        presence.open = presence.open.saturating_add(1);
        presence.empty_since = None;
        arrival.came_online = !std::mem::replace(&mut presence.online, true);
        Ok((conn, arrival))
    }

    fn new_conn(&self, player: &PlayerId, kind: ConnKind) -> Arc<Conn> {
        let n = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let prefix = match kind {
            ConnKind::WebSocket => "ws",
            ConnKind::Sse => "sse",
        };
        Arc::new(Conn::new(
            format!("{prefix}_{}{n}", self.conn_prefix).into_boxed_str(),
            kind,
            player.clone(),
            Outbox::with_budget(self.config.outbox_bytes, self.budget.clone()),
            self.epoch,
            self.epoch_wall,
        ))
    }

    fn connected_frame(&self, conn: &Conn, session: &str) -> Frame {
        local_frame(
            &conn.player,
            local::CONNECTED,
            &wire::ConnectedData {
                connection_id: &conn.id,
                connection_type: conn.kind.as_str(),
                player_id: &conn.player,
                session_id: session,
                heartbeat_interval_ms: self.config.heartbeat_interval.as_millis() as u64,
            },
        )
    }

    /// Cluster join, step 1: the connection listens for the player's live events before the
    /// backplane admits it, so nothing published during the join can slip past it. Its outbox
    /// is not drained until [`Hub::open_joined`].
    pub(crate) fn register_joining(&self, player: &PlayerId, kind: ConnKind) -> Arc<Conn> {
        let conn = self.new_conn(player, kind);
        let now = Instant::now();
        let history_bytes = self.history_bytes();
        let mut shard = self.shard(player).lock();
        let entry = shard
            .entry(player.clone())
            .or_insert_with(|| Box::new(Player::new(now, history_bytes)));
        entry.last_active = now;
        entry.conns.push(conn.clone());
        conn
    }

    /// Cluster join, step 2: the backplane admitted the connection under `session` and
    /// `generation`; its opening goes ahead of whatever arrived meanwhile, and live events at or
    /// below `floor` (covered by the replay, or older than the join) are dropped.
    pub(crate) fn open_joined(
        &self,
        conn: &Arc<Conn>,
        session: SessionId,
        generation: u64,
        replay: Option<(u64, player::Replay)>,
        floor: u64,
    ) {
        let mut opening = vec![self.connected_frame(conn, &session)];
        if let Some((cursor, replay)) = replay {
            opening.push(recovery_frame(&conn.player, cursor, &replay));
            // SPEC §12.25, as for a single node's replay.
            Counters::add(&self.counters.messages_sent, replay.frames.len());
            opening.extend(replay.frames);
        }
        conn.set_session(session.clone());
        conn.generation.store(generation, Ordering::Release);
        let mut shard = self.shard(&conn.player).lock();
        let fenced = shard.get_mut(&*conn.player).map(|p| {
            p.last_seq = p.last_seq.max(floor);
            p.last_seen = Some(SystemTime::now());
            p.fence
        });
        conn.outbox.open(opening, floor);
        if fenced.is_some_and(|fence| fence > generation) {
            // A newer session was announced while this one joined.
            let frame = terminated_frame(&conn.player, "");
            conn.outbox.close(Some(frame), CloseReason::SessionReplaced);
        }
    }

    /// Cluster join refused: the connection never opened.
    pub(crate) fn abandon_joining(&self, conn: &Arc<Conn>) {
        let mut shard = self.shard(&conn.player).lock();
        if let Some(player) = shard.get_mut(&*conn.player) {
            player.conns.retain(|c| !Arc::ptr_eq(c, conn));
        }
    }

    /// Removes a connection that ended, counting the stream events it never wrote.
    pub fn disconnect(&self, conn: &Conn) {
        Counters::add(
            &self.counters.deliveries_failed,
            conn.outbox.queued_stream_frames(),
        );
        let now = Instant::now();
        let mut emptied = false;
        let mut shard = self.shard(&conn.player).lock();
        if let Some(player) = shard.get_mut(&*conn.player) {
            player.conns.retain(|c| !std::ptr::eq(&**c, conn));
            player.last_active = now;
            player.last_seen = Some(SystemTime::now());
            let presence = &mut player.presence;
            if matches!(self.backplane, Backplane::Local) && presence.open > 0 {
                presence.open -= 1;
                if presence.open == 0 {
                    presence.empty_since = Some(now);
                    emptied = true;
                }
            }
        }
        drop(shard);
        self.notify(|| {
            let reason = conn
                .outbox
                .closing()
                .map_or("client_closed", CloseReason::as_str);
            Notice::about(LifecycleKind::ConnectionClosed, conn, Some(reason))
        });
        match &self.backplane {
            Backplane::Local => {
                if emptied && let Some(n) = &self.lifecycle {
                    n.check_offline_later(conn.player.clone());
                }
            }
            // Redis decides whether this was the player's last connection anywhere.
            Backplane::Redis(redis) => redis.leave(conn),
        }
    }

    /// Single process: whether a player whose last connection closed has stayed without one
    /// for the whole grace; if so it is offline now, and this answers true once.
    pub(crate) fn settle_offline(&self, player_id: &str) -> bool {
        let Some(grace) = self.lifecycle.as_ref().map(|n| n.grace) else {
            return false;
        };
        let now = Instant::now();
        let mut shard = self.shard(player_id).lock();
        let Some(presence) = shard.get_mut(player_id).map(|p| &mut p.presence) else {
            return false;
        };
        let gone_long_enough = presence
            .empty_since
            .is_some_and(|since| now.saturating_duration_since(since) >= grace);
        if presence.open == 0 && presence.online && gone_long_enough {
            presence.online = false;
            return true;
        }
        false
    }

    /// Numbers an event, retains it and queues it on every connection of the player, on every
    /// node. Under Redis it answers once Redis has stored the event.
    pub async fn publish(
        &self,
        player_id: &str,
        event: &Event<'_>,
    ) -> Result<Published, Unavailable> {
        let stamp = wire::timestamp(SystemTime::now());
        let template = EventTemplate::new(event.event_type, &stamp, event.room_id, event.data);
        match &self.backplane {
            Backplane::Local => Ok(self.publish_local(player_id, &template)),
            Backplane::Redis(redis) => {
                let mut out = redis.publish(&[player_id], &template).await?;
                out.pop().map(|(_, p)| p).ok_or(Unavailable)
            }
        }
    }

    /// [`Hub::publish`] to several players, with the payload serialized once; under Redis, one
    /// round-trip for all of them.
    pub async fn publish_to(
        &self,
        players: &[&str],
        event: &Event<'_>,
    ) -> Result<Vec<(PlayerId, Published)>, Unavailable> {
        let stamp = wire::timestamp(SystemTime::now());
        let template = EventTemplate::new(event.event_type, &stamp, event.room_id, event.data);
        match (&self.backplane, players) {
            // One player's sockets have nothing to be gathered with: written at once.
            (Backplane::Local, [one]) => Ok(vec![(
                PlayerId::from(*one),
                self.publish_local(one, &template),
            )]),
            (Backplane::Local, _) => {
                Ok(self.publish_many_local(players.iter().map(|p| PlayerId::from(*p)), &template))
            }
            (Backplane::Redis(redis), _) => redis.publish(players, &template).await,
        }
    }

    fn publish_local(&self, player_id: &str, template: &EventTemplate) -> Published {
        self.publish_local_held(player_id, template, None)
    }

    /// [`Hub::publish_local`] for each player, with the idle connections' writes held and
    /// made together once every player is numbered, as a broadcast's are (`held`): one
    /// system call for the lot where the thread has an io_uring, not one per connection.
    pub(super) fn publish_many_local(
        &self,
        players: impl IntoIterator<Item = PlayerId>,
        template: &EventTemplate,
    ) -> Vec<(PlayerId, Published)> {
        let mut held = HeldWrites::default();
        let out = players
            .into_iter()
            .map(|p| {
                let published = self.publish_local_held(&p, template, Some(&mut held));
                (p, published)
            })
            .collect();
        self.write_held(held);
        out
    }

    fn publish_local_held(
        &self,
        player_id: &str,
        template: &EventTemplate,
        held: Option<&mut HeldWrites>,
    ) -> Published {
        let now = Instant::now();
        let mut shard = self.shard(player_id).lock();
        let history_bytes = self.history_bytes();
        let player = match shard.get_mut(player_id) {
            Some(p) => p,
            None => shard
                .entry(PlayerId::from(player_id))
                .or_insert_with(|| Box::new(Player::new(now, history_bytes))),
        };
        self.publish_locked(player_id, player, template, now, held)
    }

    /// `held`: where a broadcast, or a publish to several players, collects the connections
    /// whose event waits for it to write (`fan_out`).
    fn publish_locked(
        &self,
        player_id: &str,
        player: &mut Player,
        template: &EventTemplate,
        now: Instant,
        held: Option<&mut HeldWrites>,
    ) -> Published {
        let seq = player.take_seq();
        let frame = Frame {
            seq: Some(seq),
            json: template.fill(seq, player_id),
        };
        player.last_active = now;
        player.history.expire(now, self.config.history_ttl);
        player
            .history
            .push(now, frame.clone(), self.config.history_size);
        Published {
            sequence_number: seq,
            connections: self.fan_out(player, &frame, held),
        }
    }

    /// Pushes one numbered frame to every connection of the player, closing those that
    /// overflow; returns how many queued it. With `held`, a connection that would be written
    /// directly is held there instead, for the broadcast to write in opening order.
    fn fan_out(
        &self,
        player: &mut Player,
        frame: &Frame,
        mut held: Option<&mut HeldWrites>,
    ) -> usize {
        let (mut queued, mut addressed) = (0, 0);
        // Where `held` keeps this player's frame, once one of its connections is held.
        let mut kept = None;
        player.conns.retain(|conn| {
            let pushed = match held {
                Some(_) => conn.outbox.push_deferred(frame),
                None => conn.outbox.push(frame.clone()),
            };
            match pushed {
                (Pushed::Deferred, _) => {
                    queued += 1;
                    addressed += 1;
                    if let Some(held) = held.as_deref_mut() {
                        let at = *kept.get_or_insert_with(|| held.keep(frame));
                        held.hold(conn, at);
                    }
                    true
                }
                (Pushed::Queued, _) => {
                    queued += 1;
                    addressed += 1;
                    true
                }
                (Pushed::Written, _) => {
                    queued += 1;
                    addressed += 1;
                    self.counters.deliveries_ok.fetch_add(1, Ordering::Relaxed);
                    conn.wrote_directly();
                    true
                }
                (Pushed::Overflowed, dropped) => {
                    addressed += 1;
                    self.counters.slow_consumers.fetch_add(1, Ordering::Relaxed);
                    Counters::add(&self.counters.deliveries_failed, dropped + 1);
                    false
                }
                (Pushed::Closed, _) => {
                    addressed += 1;
                    Counters::add(&self.counters.deliveries_failed, 1);
                    true
                }
                // The connection already has it: not sent again, so not counted again.
                (Pushed::Duplicate, _) => true,
            }
        });
        // SPEC §12.25: every connection addressed counts as sent, so drops count against it.
        Counters::add(&self.counters.messages_sent, addressed);
        queued
    }

    /// Publishes to every player with a live connection (on any node, under Redis).
    pub async fn broadcast(
        &self,
        event: &Event<'_>,
    ) -> Result<Vec<(PlayerId, Published)>, Unavailable> {
        let stamp = wire::timestamp(SystemTime::now());
        let template = EventTemplate::new(event.event_type, &stamp, event.room_id, event.data);
        match &self.backplane {
            Backplane::Local => Ok(self.broadcast_local(&template)),
            Backplane::Redis(redis) => redis.broadcast(&template).await,
        }
    }

    /// One pass under each shard's lock, with no await: a broadcast is never cut short by a
    /// caller that gives up (a publisher's HTTP request dropped midway), so every player or
    /// none gets its number. Idle connections then take their event straight from here, one
    /// system call each (`outbox`), in the order they opened (`held`), so this is
    /// milliseconds of writing for thousands.
    fn broadcast_local(&self, template: &EventTemplate) -> Vec<(PlayerId, Published)> {
        let now = Instant::now();
        let mut out = Vec::new();
        let mut held = HeldWrites::with_capacity(self.budget.connections());
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            // Reading each box's address here, in a loop with no system call, lets the CPU
            // wait for many of the table's lines at once (`warm`).
            let mut players: Vec<_> = shard.iter_mut().map(|(id, p)| (id, &mut **p)).collect();
            for i in 0..players.len() {
                warm::ahead(&players, i);
                let (id, player) = &mut players[i];
                if !player.conns.is_empty() {
                    out.push((
                        (*id).clone(),
                        self.publish_locked(id, player, template, now, Some(&mut held)),
                    ));
                }
            }
        }
        self.write_held(held);
        out
    }

    /// Makes the held writes, counting each the socket took as delivered.
    fn write_held(&self, held: HeldWrites) {
        held.write(|conn| {
            self.counters.deliveries_ok.fetch_add(1, Ordering::Relaxed);
            conn.wrote_directly();
        });
    }

    /// Cluster: queues a frame the backplane numbered on this node's connections of the
    /// player. A number that skips past the last one delivered means a notification was lost:
    /// the frame is parked and [`Delivered::Gap`] asks the caller to fill in from history.
    /// (The listener delivers through [`Hub::deliver_all`].)
    #[cfg(test)]
    pub(crate) fn deliver(&self, player_id: &str, frame: Frame) -> Delivered {
        self.deliver_or_hold(player_id, frame, None)
    }

    /// Cluster: [`Hub::deliver`] for each player of one notification (a broadcast's chunk, or
    /// a publish to several players), with the idle connections' writes held and made
    /// together once all are numbered, as a local broadcast's are (`held`). `gap` hears of
    /// each [`Delivered::Gap`].
    pub(crate) fn deliver_all<'a>(
        &self,
        frames: impl IntoIterator<Item = (&'a str, Frame)>,
        mut gap: impl FnMut(&'a str, u64),
    ) {
        let mut held = HeldWrites::default();
        for (player_id, frame) in frames {
            if let Delivered::Gap(after) = self.deliver_or_hold(player_id, frame, Some(&mut held)) {
                gap(player_id, after);
            }
        }
        self.write_held(held);
    }

    fn deliver_or_hold(
        &self,
        player_id: &str,
        frame: Frame,
        held: Option<&mut HeldWrites>,
    ) -> Delivered {
        let mut shard = self.shard(player_id).lock();
        let Some(player) = shard.get_mut(player_id) else {
            return Delivered::NotHere;
        };
        if player.conns.is_empty() {
            return Delivered::NotHere;
        }
        let seq = frame.seq.unwrap_or(0);
        if let Some(parked) = &mut player.catching_up {
            if parked.len() < self.config.history_size.max(64) {
                parked.push(frame);
            } else {
                // More waiting than history could replay: let each client resume instead.
                player.catching_up = None;
                self.close_for_resume(player);
            }
            return Delivered::Parked;
        }
        if player.last_seq != 0 && seq > player.last_seq.saturating_add(1) {
            player.catching_up = Some(vec![frame]);
            return Delivered::Gap(player.last_seq);
        }
        player.last_seq = player.last_seq.max(seq);
        player.last_active = Instant::now();
        self.fan_out(player, &frame, held);
        Delivered::Done
    }

    /// Cluster: parks live events for the player (or every player with connections when
    /// `None`) until history has been read; returns each one's last delivered number.
    pub(crate) fn begin_catch_up(&self) -> Vec<(PlayerId, u64)> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            for (id, player) in shard.iter_mut() {
                if !player.conns.is_empty() && player.catching_up.is_none() {
                    player.catching_up = Some(Vec::new());
                    out.push((id.clone(), player.last_seq));
                }
            }
        }
        out
    }

    /// Cluster: history after the last delivered number has been read. A complete read is
    /// delivered, then the parked live events, in order and without repeats; an incomplete one
    /// (history trimmed past the gap, or Redis unreachable) closes the player's connections
    /// as slow consumers, so each client resumes and learns from `recovery` what was lost.
    ///
    /// `base` is where Redis seeded the player's counter (`None`: Redis has no counter, so
    /// nothing was published since it lost its data). Nothing exists between an older number
    /// and `base`, so a jump to it is no loss.
    pub(crate) fn finish_catch_up(
        &self,
        player_id: &str,
        history: Option<(Option<u64>, Vec<Frame>)>,
    ) {
        let mut shard = self.shard(player_id).lock();
        let Some(player) = shard.get_mut(player_id) else {
            return;
        };
        let parked = player.catching_up.take().unwrap_or_default();
        let Some((base, history)) = history else {
            self.close_for_resume(player);
            return;
        };
        match base {
            None => player.last_seq = 0,
            Some(base) => player.last_seq = player.last_seq.max(base),
        }
        // History first, then what arrived live meanwhile: both ascending, with overlaps.
        let mut next: Vec<Frame> = Vec::with_capacity(history.len() + parked.len());
        let mut top = player.last_seq;
        for frame in history.into_iter().chain(parked) {
            if let Some(seq) = frame.seq
                && seq > top
            {
                top = seq;
                next.push(frame);
            }
        }
        let first = next.first().and_then(|f| f.seq);
        if player.last_seq != 0 && first.is_some_and(|s| s > player.last_seq.saturating_add(1)) {
            self.close_for_resume(player);
            return;
        }
        for frame in &next {
            player.last_seq = frame.seq.unwrap_or(player.last_seq);
            self.fan_out(player, frame, None);
        }
    }

    /// Ends every connection of the player as a slow consumer: each client resumes with its
    /// cursor and learns from `recovery` whether anything was lost.
    fn close_for_resume(&self, player: &mut Player) {
        for conn in player.conns.drain(..) {
            let dropped = conn.outbox.queued_stream_frames();
            if conn.outbox.close(None, CloseReason::SlowConsumer) {
                self.counters.slow_consumers.fetch_add(1, Ordering::Relaxed);
                Counters::add(&self.counters.deliveries_failed, dropped);
            }
        }
    }

    /// Ids of this node's unhealthy connections, at most `limit`, for the node's report.
    pub(crate) fn unhealthy_connection_ids(&self, limit: usize) -> Vec<String> {
        let now = Instant::now();
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock();
            for conn in shard.values().flat_map(|p| &p.conns) {
                if out.len() >= limit {
                    return out;
                }
                if !self.is_healthy(conn, now) {
                    out.push(conn.id.to_string());
                }
            }
        }
        out
    }

    /// Cluster: a new session (generation `generation`) was made somewhere; this node's
    /// connections admitted under an older one end with `session_terminated`.
    pub(crate) fn terminate(&self, player_id: &str, generation: u64, session_id: &str) -> usize {
        let mut shard = self.shard(player_id).lock();
        let Some(player) = shard.get_mut(player_id) else {
            return 0;
        };
        player.fence = player.fence.max(generation);
        let mut ended = 0;
        player.conns.retain(|conn| {
            let admitted = conn.generation.load(Ordering::Acquire);
            // Still joining (0): `open_joined` checks the fence itself.
            if admitted == 0 || admitted >= generation {
                return true;
            }
            let frame = terminated_frame(player_id, session_id);
            conn.outbox.close(Some(frame), CloseReason::SessionReplaced);
            ended += 1;
            false
        });
        Counters::add(&self.counters.session_replacements, ended);
        ended
    }

    /// Cluster: the per-player cap evicted these connections, wherever the newest one joined.
    pub(crate) fn evict(&self, player_id: &str, conn_ids: &[&str]) {
        let mut shard = self.shard(player_id).lock();
        let Some(player) = shard.get_mut(player_id) else {
            return;
        };
        player.conns.retain(|conn| {
            if !conn_ids.contains(&&*conn.id) {
                return true;
            }
            let frame = local_frame(player_id, local::CONNECTION_REPLACED, &wire::Empty {});
            conn.outbox
                .close(Some(frame), CloseReason::ConnectionReplaced);
            self.counters.evictions.fetch_add(1, Ordering::Relaxed);
            false
        });
    }

    /// This node's connections, per player, for re-registering them after Redis came back.
    pub(crate) fn local_connections(&self) -> Vec<(PlayerId, Vec<Arc<Conn>>)> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock();
            out.extend(
                shard
                    .iter()
                    .filter(|(_, p)| !p.conns.is_empty())
                    .map(|(id, p)| (id.clone(), p.conns.clone())),
            );
        }
        out
    }

    /// Makes a session current and ends every connection of the player, on every node
    /// (SPEC §5).
    pub async fn new_session(
        &self,
        player_id: &PlayerId,
        requested: Option<&str>,
    ) -> Result<NewSession, SessionError> {
        let made = match &self.backplane {
            Backplane::Local => self.new_session_local(player_id, requested),
            Backplane::Redis(redis) => redis.new_session(self, player_id, requested).await,
        }?;
        self.notify(|| {
            Notice::session_started(player_id.clone(), made.session_id.clone(), "new_session")
        });
        Ok(made)
    }

    fn new_session_local(
        &self,
        player_id: &PlayerId,
        requested: Option<&str>,
    ) -> Result<NewSession, SessionError> {
        let now = Instant::now();
        let mut shard = self.shard(player_id).lock();
        let history_bytes = self.history_bytes();
        let player = shard
            .entry(player_id.clone())
            .or_insert_with(|| Box::new(Player::new(now, history_bytes)));
        if let Some(id) = requested
            && player.was_replaced(id)
        {
            return Err(SessionError::Replaced);
        }
        let session_id = match requested {
            Some(id) => SessionId::from(id),
            None => SessionId::from(crate::random::token()),
        };
        player.set_session(session_id.clone());
        player.last_active = now;
        let ended: Vec<Arc<Conn>> = std::mem::take(&mut player.conns);
        drop(shard);
        let terminated = terminated_frame(player_id, &session_id);
        for conn in &ended {
            conn.outbox
                .close(Some(terminated.clone()), CloseReason::SessionReplaced);
        }
        Counters::add(&self.counters.session_replacements, ended.len());
        Ok(NewSession {
            session_id,
            disconnected: ended.len(),
        })
    }

    /// The player's current session, cluster-wide.
    pub async fn session(&self, player_id: &str) -> Result<Option<SessionSnapshot>, Unavailable> {
        match &self.backplane {
            Backplane::Local => Ok(self.local_session(player_id)),
            Backplane::Redis(redis) => redis.session(player_id).await,
        }
    }

    fn local_session(&self, player_id: &str) -> Option<SessionSnapshot> {
        let shard = self.shard(player_id).lock();
        let player = shard.get(player_id)?;
        let session = player.session.as_ref()?;
        let count = |kind| player.conns.iter().filter(|c| c.kind == kind).count();
        Some(SessionSnapshot {
            session_id: session.id.clone(),
            created: session.created,
            websocket: count(ConnKind::WebSocket),
            sse: count(ConnKind::Sse),
        })
    }

    /// One player's connections and presence, cluster-wide.
    pub async fn player(&self, player_id: &str) -> Result<PlayerSnapshot, Unavailable> {
        match &self.backplane {
            Backplane::Local => Ok(self.local_player(player_id)),
            Backplane::Redis(redis) => redis.player(self, player_id).await,
        }
    }

    /// This node's view of one player.
    pub fn local_player(&self, player_id: &str) -> PlayerSnapshot {
        let now = Instant::now();
        let shard = self.shard(player_id).lock();
        let mut snap = PlayerSnapshot {
            session_id: None,
            websocket: TransportSnapshot::default(),
            sse: TransportSnapshot::default(),
            last_seen: None,
        };
        let Some(player) = shard.get(player_id) else {
            return snap;
        };
        snap.session_id = player.session.as_ref().map(|s| s.id.clone());
        snap.last_seen = player.last_seen;
        for conn in &player.conns {
            let t = match conn.kind {
                ConnKind::WebSocket => &mut snap.websocket,
                ConnKind::Sse => &mut snap.sse,
            };
            t.connection_ids.push(conn.id.to_string());
            if self.is_healthy(conn, now) {
                t.healthy += 1;
            }
            let activity = conn.last_activity();
            t.last_activity = t.last_activity.max(Some(activity));
        }
        if !player.conns.is_empty() {
            snap.last_seen = Some(SystemTime::now());
        }
        snap
    }

    /// Players with at least one live connection, on any node.
    pub async fn online_players(&self) -> Result<Vec<PlayerId>, Unavailable> {
        match &self.backplane {
            Backplane::Local => Ok(self.local_online_players()),
            Backplane::Redis(redis) => redis.online_players().await,
        }
    }

    /// Whether the player has a live connection on any node.
    pub async fn is_online(&self, player_id: &str) -> Result<bool, Unavailable> {
        match &self.backplane {
            Backplane::Local => Ok(self.is_online_here(player_id)),
            Backplane::Redis(redis) => redis.is_online(player_id).await,
        }
    }

    /// Players with at least one live connection on this node.
    pub fn local_online_players(&self) -> Vec<PlayerId> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock();
            out.extend(
                shard
                    .iter()
                    .filter(|(_, p)| !p.conns.is_empty())
                    .map(|(id, _)| id.clone()),
            );
        }
        out
    }

    pub fn is_online_here(&self, player_id: &str) -> bool {
        let shard = self.shard(player_id).lock();
        shard.get(player_id).is_some_and(|p| !p.conns.is_empty())
    }

    /// Queues a connection-local event on every connection of a player, for answers to
    /// commands that came over no connection.
    pub fn send_local_to_player<D: Serialize + ?Sized>(
        &self,
        player_id: &str,
        event_type: &str,
        data: &D,
    ) {
        let conns: Vec<Arc<Conn>> = {
            let shard = self.shard(player_id).lock();
            shard
                .get(player_id)
                .map(|p| p.conns.clone())
                .unwrap_or_default()
        };
        for conn in conns {
            self.send_local(&conn, event_type, data);
        }
    }

    pub fn is_healthy(&self, conn: &Conn, now: Instant) -> bool {
        conn.is_healthy(now, self.config.ping_interval, self.config.write_timeout)
    }

    /// Current counts over every node (SPEC §9); a node that stopped reporting drops out.
    pub async fn cluster_stats(&self) -> Result<StatsSnapshot, Unavailable> {
        match &self.backplane {
            Backplane::Local => Ok(self.stats()),
            Backplane::Redis(redis) => redis.stats().await,
        }
    }

    /// Running totals over every node.
    pub async fn cluster_counters(&self) -> Result<CounterTotals, Unavailable> {
        match &self.backplane {
            Backplane::Local => Ok(self.counters.totals()),
            Backplane::Redis(redis) => redis.counters().await,
        }
    }

    /// This node's current counts (what `/metrics` reports; Prometheus sums the nodes).
    pub fn stats(&self) -> StatsSnapshot {
        let now = Instant::now();
        let mut s = StatsSnapshot::default();
        for shard in self.shards.iter() {
            let shard = shard.lock();
            s.players_known += shard.len();
            for player in shard.values() {
                let (mut ws, mut sse) = (0, 0);
                for conn in &player.conns {
                    let healthy = self.is_healthy(conn, now) as usize;
                    match conn.kind {
                        ConnKind::WebSocket => {
                            ws += 1;
                            s.websocket_healthy += healthy;
                        }
                        ConnKind::Sse => {
                            sse += 1;
                            s.sse_healthy += healthy;
                        }
                    }
                }
                s.websocket_connections += ws;
                s.sse_connections += sse;
                match (ws > 0, sse > 0) {
                    (true, true) => s.dual += 1,
                    (true, false) => s.websocket_only += 1,
                    (false, true) => s.sse_only += 1,
                    (false, false) => {}
                }
                if ws + sse > 0 {
                    s.players_online += 1;
                }
                if player.session.is_some() {
                    s.sessions += 1;
                    if ws + sse > 0 {
                        s.sessions_with_connections += 1;
                    }
                }
            }
        }
        s
    }

    /// Takes one health sample for the trends.
    pub fn sample_health(&self) {
        self.trends.record(self.stats().health_percentage());
    }

    /// Online players with their connections, up to `limit`, sorted by id, on every node; and
    /// how many are online in all.
    pub async fn online(&self, limit: usize) -> Result<(Vec<PlayerListing>, usize), Unavailable> {
        match &self.backplane {
            Backplane::Local => Ok(self.local_online(limit)),
            Backplane::Redis(redis) => redis.online(self, limit).await,
        }
    }

    /// [`Hub::online`] for this node alone.
    pub fn local_online(&self, limit: usize) -> (Vec<PlayerListing>, usize) {
        let now = Instant::now();
        let mut out = Vec::new();
        let mut total = 0;
        for shard in self.shards.iter() {
            let shard = shard.lock();
            for (id, player) in shard.iter().filter(|(_, p)| !p.conns.is_empty()) {
                total += 1;
                out.push(PlayerListing {
                    player_id: id.clone(),
                    session_id: player.session.as_ref().map(|s| s.id.clone()),
                    connections: player
                        .conns
                        .iter()
                        .map(|c| ConnListing {
                            connection_id: c.id.to_string(),
                            kind: c.kind,
                            healthy: self.is_healthy(c, now),
                            last_activity: c.last_activity(),
                            opened_at: c.opened_at(),
                        })
                        .collect(),
                });
            }
        }
        out.sort_by(|a, b| a.player_id.cmp(&b.player_id));
        out.truncate(limit);
        (out, total)
    }

    /// Forgets players idle past `session_ttl` and drops expired history. Memory then tracks
    /// the players present, not every player ever seen (SPEC §5).
    pub fn sweep(&self) {
        let now = Instant::now();
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            let mut forgotten = Vec::new();
            shard.retain(|id, player| {
                player.history.expire(now, self.config.history_ttl);
                let keep = !player.conns.is_empty()
                    || now.saturating_duration_since(player.last_active) < self.config.session_ttl;
                if !keep {
                    forgotten.push(id.clone());
                }
                keep
            });
            if !forgotten.is_empty() {
                // Under the shard lock, so a join of the same player waits for this.
                let mut rooms = self.rooms.lock();
                for player in &forgotten {
                    rooms.forget(player);
                }
            }
            if shard.capacity() > 2 * shard.len() + 16 {
                shard.shrink_to_fit();
            }
        }
    }

    /// Refuses new connections and tells every open one to go (SPEC §11).
    pub fn shutdown_all(&self, reconnect_after: Duration) {
        self.shutting_down.store(true, Ordering::Release);
        let data = serde_json::json!({"reconnect_after_ms": reconnect_after.as_millis() as u64});
        for shard in self.shards.iter() {
            let shard = shard.lock();
            for conn in shard.values().flat_map(|p| &p.conns) {
                let frame = local_frame(&conn.player, local::SERVER_SHUTDOWN, &data);
                conn.outbox.close(Some(frame), CloseReason::ServerShutdown);
            }
        }
    }

    /// Queues a connection-local event on one connection, within its bound.
    pub fn send_local<D: Serialize + ?Sized>(&self, conn: &Conn, event_type: &str, data: &D) {
        let (pushed, dropped) = conn
            .outbox
            .push(local_frame(&conn.player, event_type, data));
        match pushed {
            Pushed::Overflowed => {
                self.counters.slow_consumers.fetch_add(1, Ordering::Relaxed);
                Counters::add(&self.counters.deliveries_failed, dropped);
            }
            Pushed::Written => conn.wrote_directly(),
            Pushed::Queued | Pushed::Deferred | Pushed::Closed | Pushed::Duplicate => {}
        }
    }
}

/// What [`Hub::deliver`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivered {
    Done,
    /// No connection of the player is here.
    NotHere,
    /// Waiting behind a history read that fills a gap.
    Parked,
    /// A gap after this number: read history after it, then [`Hub::finish_catch_up`].
    Gap(u64),
}

/// `recovery` (SPEC §12.4): what the cursor found.
fn recovery_frame(player: &str, cursor: u64, replay: &player::Replay) -> Frame {
    local_frame(
        player,
        local::RECOVERY,
        &wire::RecoveryData {
            recovered: replay.recovered,
            from_sequence_number: cursor,
            replayed: replay.frames.len(),
        },
    )
}

/// `session_terminated` (SPEC §5), naming the new session when it is known.
fn terminated_frame(player: &str, session_id: &str) -> Frame {
    local_frame(
        player,
        local::SESSION_TERMINATED,
        &serde_json::json!({"reason": "new_session", "session_id": session_id}),
    )
}

/// A connection-local event (SPEC §12.2): no sequence number, never in history.
pub fn local_frame<D: Serialize + ?Sized>(player: &str, event_type: &str, data: &D) -> Frame {
    Frame {
        seq: None,
        json: wire::event_bytes(event_type, SystemTime::now(), None, player, None, data),
    }
}

#[cfg(test)]
mod tests;
