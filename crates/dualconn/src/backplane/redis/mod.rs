//! The cluster backplane: Redis holds numbering, history, sessions and presence; each node
//! delivers what Redis announces on its own channel to its own connections.
//!
//! - **Publish** is one script: number, append to history, announce to the nodes that hold
//!   the player. The caller is answered after Redis ran it, so an acknowledged event is stored.
//!   A **broadcast** lists its players in one script, then publishes to them in chunks, so
//!   nodes deliver the first chunks while Redis numbers the rest.
//! - **Join** registers the connection locally first (it hears live events from then on), then
//!   one script decides the session rules and the cap, adds the node to the player's routing
//!   and reads history after the cursor. The replay goes ahead of the live events that arrived
//!   meanwhile; anything at or below the stream position the script saw is dropped, and every
//!   outbox drops numbers it already has. So nothing falls between history and live, and
//!   nothing arrives twice (see `ARCHITECTURE.md`, "Joining in a cluster").
//! - **Failure**: while Redis is unreachable, publishing and joining answer 503; open
//!   connections stay. When it returns the node re-registers its connections, then reads
//!   history for every player it holds, so what was published meanwhile still arrives.

mod listener;
mod report;
mod rooms;
mod scripts;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use parking_lot::Mutex;
use redis::aio::ConnectionManager;
use redis::{Script, Value};
use tokio::sync::{mpsc, watch};

use super::Unavailable;
use crate::auth::valid_player_id;
use crate::hub::{
    Arrival, ConnKind, ConnListing, Frame, Hub, HubConfig, Join, JoinError, NewSession, PlayerId,
    PlayerListing, PlayerSnapshot, Published, SessionError, SessionId, SessionSnapshot,
    StatsSnapshot, TransportSnapshot,
};
use crate::wire::EventTemplate;

pub use listener::run;
use report::NodeReport;

/// A node whose heartbeat is older than this is dead: it drops out of presence, the cap and
/// every figure, and its players' routing forgets it.
pub const NODE_TTL: Duration = Duration::from_secs(10);
/// How often a node proves it is alive and reports its figures.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// A Redis command that takes longer fails, so a publish answers 503 instead of hanging.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Seconds a refused client is told to wait while Redis is unreachable.
pub const RETRY_AFTER_SECS: u64 = 2;
/// Players a broadcast numbers per script call. Redis runs one call at a time and the nodes
/// hear a chunk only when its call ends, so this is how long the first deliveries wait and how
/// long one call holds Redis up (about 4 ms at 256, measured: `bench/redis-script-ab.sh`),
/// against a per-call cost that is negligible from a few hundred players on.
const BROADCAST_CHUNK: usize = 256;
/// Script calls of one broadcast sent ahead of their answers. Redis sends out a chunk's
/// messages only once it has run every command it read in the same go, so chunks queued
/// together reach the nodes together (with eight in flight, nodes waited for several chunks at
/// a time). Two keep the next chunk waiting in Redis while it runs one, so it never idles for
/// a round trip to this node, and the nodes hear each chunk at most one chunk late.
const BROADCAST_CHUNKS_IN_FLIGHT: usize = 2;

/// What a node needs to join a cluster.
#[derive(Clone)]
pub struct RedisSettings {
    /// `redis://` or `rediss://`, with the password in the URL if any. Never logged.
    pub url: String,
    /// Every key and channel starts with it, so deployments and test runs can share a Redis.
    pub prefix: String,
    /// Unique per node; connections are routed to `{prefix}:ch:{node_id}`.
    pub node_id: String,
}

/// The URL may carry a password: it is never printed.
impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &"<redacted>")
            .field("prefix", &self.prefix)
            .field("node_id", &self.node_id)
            .finish()
    }
}

/// Node ids appear in keys, channel names and the `|`-separated connection members.
pub fn valid_node_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
}

/// The scripts, loaded once; `Script` sends EVALSHA and falls back to EVAL when Redis forgot.
struct Scripts {
    publish: Script,
    broadcast_targets: Script,
    join: Script,
    leave: Script,
    new_session: Script,
    player: Script,
    online: Script,
    stats: Script,
    reports: Script,
    heartbeat: Script,
    resync: Script,
    history: Script,
    retire: Script,
    room_join: Script,
    room_leave: Script,
    room_members: Script,
    room_publish: Script,
    room_sweep: Script,
    offline_due: Script,
}

pub struct RedisBackplane {
    settings: RedisSettings,
    /// Reconnects by itself; every command fails fast while Redis is away.
    redis: ConnectionManager,
    /// Opens the subscriber connection, which the listener owns.
    client: redis::Client,
    scripts: Scripts,
    config: HubConfig,
    /// True while this node's channel subscription is live.
    subscribed: AtomicBool,
    /// True while the last heartbeat reached Redis.
    reachable: AtomicBool,
    /// What was last logged, so a change of state is logged once, not once per request.
    logged_available: Mutex<Option<bool>>,
    /// Set whenever Redis may have missed something from this node (a failed command, a lost
    /// subscription): before the node counts as available again it re-registers its
    /// connections and reads the history it may have missed.
    resync_needed: AtomicBool,
    /// Availability as a value tasks can wait on (tests, start-up).
    available: watch::Sender<bool>,
    /// Connections that ended, for the listener to remove from Redis in batches.
    leaves: mpsc::UnboundedSender<(PlayerId, String)>,
    leaves_rx: Mutex<Option<mpsc::UnboundedReceiver<(PlayerId, String)>>>,
    /// Players numbered per script call of a broadcast: [`BROADCAST_CHUNK`], lowered only by
    /// tests that need several chunks without thousands of players.
    broadcast_chunk: AtomicUsize,
}

/// What the join script decided.
enum Admitted {
    Ok {
        session: SessionId,
        generation: u64,
        last_seq: u64,
        now_ms: u64,
        entries: Vec<(u64, u64, Vec<u8>)>,
        /// Whether the player came online cluster-wide, or a session started, with this join.
        arrival: Arrival,
    },
    Refused(JoinError),
    /// Every session rule and the cap let the connection in, but this node said it was full.
    NodeFull,
}

impl RedisBackplane {
    /// Checks the URL; connects lazily, so a node can start while Redis is still coming up
    /// (it answers 503 until then).
    pub fn new(settings: RedisSettings, config: HubConfig) -> Result<RedisBackplane, String> {
        if !valid_node_id(&settings.node_id) {
            return Err("the node id must match ^[A-Za-z0-9_.:-]{1,64}$".into());
        }
        if settings.prefix.is_empty() || settings.prefix.contains(char::is_whitespace) {
            return Err("the Redis key prefix must be non-empty, without spaces".into());
        }
        // The URL may hold a password: say what is wrong without repeating it.
        let client = redis::Client::open(settings.url.as_str())
            .map_err(|e| format!("the Redis URL is not valid ({})", e.category()))?;
        let manager_config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(RESPONSE_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let redis = ConnectionManager::new_lazy_with_config(client.clone(), manager_config)
            .map_err(|e| format!("cannot use the Redis URL ({})", e.category()))?;
        let (leaves, leaves_rx) = mpsc::unbounded_channel();
        Ok(RedisBackplane {
            settings,
            redis,
            client,
            scripts: Scripts {
                publish: Script::new(scripts::PUBLISH),
                broadcast_targets: Script::new(scripts::BROADCAST_TARGETS),
                join: Script::new(scripts::JOIN),
                leave: Script::new(scripts::LEAVE),
                new_session: Script::new(scripts::NEW_SESSION),
                player: Script::new(scripts::PLAYER),
                online: Script::new(scripts::ONLINE),
                stats: Script::new(scripts::STATS),
                reports: Script::new(scripts::REPORTS),
                heartbeat: Script::new(scripts::HEARTBEAT),
                resync: Script::new(scripts::RESYNC),
                history: Script::new(scripts::HISTORY),
                retire: Script::new(scripts::RETIRE),
                room_join: Script::new(scripts::ROOM_JOIN),
                room_leave: Script::new(scripts::ROOM_LEAVE),
                room_members: Script::new(scripts::ROOM_MEMBERS),
                room_publish: Script::new(scripts::ROOM_PUBLISH),
                room_sweep: Script::new(scripts::ROOM_SWEEP),
                offline_due: Script::new(scripts::OFFLINE_DUE),
            },
            config,
            subscribed: AtomicBool::new(false),
            reachable: AtomicBool::new(false),
            logged_available: Mutex::new(None),
            resync_needed: AtomicBool::new(true),
            available: watch::Sender::new(false),
            leaves,
            leaves_rx: Mutex::new(Some(leaves_rx)),
            broadcast_chunk: AtomicUsize::new(BROADCAST_CHUNK),
        })
    }

    pub fn node_id(&self) -> &str {
        &self.settings.node_id
    }

    fn prefix(&self) -> &str {
        &self.settings.prefix
    }

    fn channel(&self) -> String {
        format!("{}:ch:{}", self.prefix(), self.node_id())
    }

    pub fn is_available(&self) -> bool {
        self.subscribed.load(Ordering::Acquire) && self.reachable.load(Ordering::Acquire)
    }

    /// Resolves once the node is registered and subscribed (or at once if it is).
    pub async fn wait_available(&self) {
        let mut rx = self.available.subscribe();
        let _ = rx.wait_for(|v| *v).await;
    }

    pub fn watch_available(&self) -> watch::Receiver<bool> {
        self.available.subscribe()
    }

    fn check(&self) -> Result<(), Unavailable> {
        if self.is_available() {
            Ok(())
        } else {
            Err(Unavailable)
        }
    }

    /// Records a state change and logs it once.
    fn set_state(&self, subscribed: Option<bool>, reachable: Option<bool>) {
        if let Some(s) = subscribed {
            self.subscribed.store(s, Ordering::Release);
        }
        if let Some(r) = reachable {
            self.reachable.store(r, Ordering::Release);
        }
        let now = self.is_available();
        if !now {
            self.resync_needed.store(true, Ordering::Release);
        }
        self.available
            .send_if_modified(|v| std::mem::replace(v, now) != now);
        let mut logged = self.logged_available.lock();
        if *logged != Some(now) {
            *logged = Some(now);
            if now {
                tracing::info!(
                    node = self.node_id(),
                    "cluster: Redis reachable, node registered"
                );
            } else {
                tracing::warn!(
                    node = self.node_id(),
                    "cluster: Redis unreachable; publishing and new connections answer 503 until it returns"
                );
            }
        }
    }

    /// A command failed: Redis is away until the next heartbeat gets through.
    /// A command failed: this request answers 503. Only a lost connection marks Redis away
    /// for everyone; a slow answer (a timeout under load) does not, and the heartbeat decides.
    /// Either way Redis may have missed a removal, so the node re-registers at the next beat.
    fn failed(&self, e: &redis::RedisError) -> Unavailable {
        tracing::debug!(error = %e.category(), "cluster: Redis command failed");
        if Self::lost_connection(e) {
            self.set_state(None, Some(false));
        }
        self.resync_needed.store(true, Ordering::Release);
        Unavailable
    }

    fn lost_connection(e: &redis::RedisError) -> bool {
        e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal()
    }

    fn ttl_ms(d: Duration) -> String {
        d.as_millis().max(1).to_string()
    }

    /// The scripts' `grace_ms`: the lifecycle webhook's grace, or `''` when none listens (then
    /// no script keeps offline state).
    fn grace_ms(hub: &Hub) -> String {
        hub.lifecycle()
            .map(|n| n.grace.as_millis().to_string())
            .unwrap_or_default()
    }

    /// `node|conn_id|w` or `…|s`: a connection as Redis knows it.
    fn member(&self, conn_id: &str, kind: ConnKind) -> String {
        let k = match kind {
            ConnKind::WebSocket => 'w',
            ConnKind::Sse => 's',
        };
        format!("{}|{conn_id}|{k}", self.node_id())
    }

    pub(crate) async fn connect(
        &self,
        hub: &Hub,
        join: Join<'_>,
    ) -> Result<(Arc<crate::hub::Conn>, Arrival), JoinError> {
        self.check()?;
        if !valid_player_id(join.player) {
            return Err(JoinError::Unavailable);
        }
        // Read before this connection counts itself in the budget; the script refuses a full
        // node only after the session rules and the cap (SPEC §12.15: 409 before 503), and
        // before it changes anything.
        let room = hub.budget.room();
        // If this future is dropped mid-join (the client went away), the connection must not
        // stay registered anywhere.
        let mut guard = JoiningGuard {
            hub,
            backplane: self,
            conn: hub.register_joining(join.player, join.kind),
            armed: true,
        };
        let conn = guard.conn.clone();
        let member = self.member(&conn.id, join.kind);
        let start = join.cursor.map(|c| match c.checked_add(1) {
            Some(next) => format!("{next}-0"),
            // Nothing can follow the largest number.
            None => "+".to_owned(),
        });
        let mut invocation = self.scripts.join.prepare_invoke();
        invocation
            .arg(self.prefix())
            .arg(&**join.player)
            .arg(join.session_id.unwrap_or(""))
            .arg(crate::random::token())
            .arg(self.node_id())
            .arg(&member)
            .arg(self.config.max_connections_per_player)
            .arg(if self.config.reject_over_limit {
                "1"
            } else {
                "0"
            })
            .arg(start.as_deref().unwrap_or(""))
            .arg(Self::ttl_ms(NODE_TTL))
            .arg(self.config.history_size.max(1))
            .arg(if room.is_err() { "1" } else { "0" })
            .arg(if hub.lifecycle().is_some() { "1" } else { "0" });
        let reply: Value = invocation
            .invoke_async(&mut self.redis.clone())
            .await
            .map_err(|e| self.failed(&e))?;
        let admitted = parse_join(reply).ok_or(JoinError::Unavailable)?;
        let (session, generation, last_seq, now_ms, entries, arrival) = match admitted {
            Admitted::Refused(e) => return Err(e),
            Admitted::NodeFull => {
                return Err(match room {
                    Err(full) => hub.budget.refuse(full).into(),
                    // The script says full only when told so.
                    Ok(()) => JoinError::Unavailable,
                });
            }
            Admitted::Ok {
                session,
                generation,
                last_seq,
                now_ms,
                entries,
                arrival,
            } => (session, generation, last_seq, now_ms, entries, arrival),
        };
        guard.armed = false;
        let replay = join
            .cursor
            .map(|cursor| (cursor, self.replay(cursor, last_seq, now_ms, entries)));
        hub.open_joined(&conn, session, generation, replay, last_seq);
        Ok((conn, arrival))
    }

    /// History entries after the cursor, within the retention rules: younger than
    /// `history_ttl`, and the newest that fit `outbox_bytes / 2` (so a replay always fits).
    fn replay(
        &self,
        cursor: u64,
        last_seq: u64,
        now_ms: u64,
        entries: Vec<(u64, u64, Vec<u8>)>,
    ) -> crate::hub::Replay {
        let oldest = now_ms.saturating_sub(self.config.history_ttl.as_millis() as u64);
        let budget = self.config.outbox_bytes / 2;
        let mut used = 0usize;
        let mut frames: Vec<Frame> = Vec::new();
        for (seq, at, json) in entries.into_iter().rev() {
            if at < oldest || seq <= cursor {
                continue;
            }
            used = used.saturating_add(json.len());
            if used > budget {
                break;
            }
            frames.push(Frame {
                seq: Some(seq),
                json: json.into(),
            });
        }
        frames.reverse();
        let next_seq = last_seq.saturating_add(1);
        if cursor >= crate::hub::MAX_SAFE_CURSOR {
            // SPEC §12.26: no stream reaches 2^53, so such a cursor is ahead of every stream.
            return crate::hub::Replay {
                recovered: false,
                frames: Vec::new(),
            };
        }
        let recovered = if cursor >= next_seq {
            cursor.checked_add(1) == Some(next_seq)
        } else {
            crate::hub::recovered(cursor, frames.first().and_then(|f| f.seq), next_seq)
        };
        crate::hub::Replay { recovered, frames }
    }

    /// Queues a connection's removal from Redis; the listener sends them in batches.
    pub(crate) fn leave(&self, conn: &crate::hub::Conn) {
        // The connection may never have been admitted (it ended while joining): a removal of
        // a member Redis does not hold is harmless.
        let _ = self
            .leaves
            .send((conn.player.clone(), self.member(&conn.id, conn.kind)));
    }

    pub(crate) async fn publish(
        &self,
        players: &[&str],
        template: &EventTemplate,
    ) -> Result<Vec<(PlayerId, Published)>, Unavailable> {
        self.check()?;
        let players: Vec<&str> = players
            .iter()
            .copied()
            .filter(|p| {
                let ok = valid_player_id(p);
                if !ok {
                    tracing::warn!("cluster: an invalid player id was not published to");
                }
                ok
            })
            .collect();
        if players.is_empty() {
            return Ok(Vec::new());
        }
        let mut invocation = self.scripts.publish.prepare_invoke();
        invocation
            .arg(self.prefix())
            .arg(&template.head)
            .arg(&template.tail)
            .arg(self.config.history_size)
            .arg(Self::ttl_ms(self.config.history_ttl))
            .arg(Self::ttl_ms(self.config.session_ttl));
        for p in &players {
            invocation.arg(*p);
        }
        let reply: Vec<(u64, usize)> = invocation
            .invoke_async(&mut self.redis.clone())
            .await
            .map_err(|e| self.failed(&e))?;
        Ok(players
            .into_iter()
            .zip(reply)
            .map(|(p, (seq, connections))| {
                (
                    PlayerId::from(p),
                    Published {
                        sequence_number: seq,
                        connections,
                    },
                )
            })
            .collect())
    }

    /// Takes the players online on live nodes in one script, then numbers them in chunks
    /// through PUBLISH, two chunks in flight at once. One script for everyone kept every node
    /// idle until Redis had numbered the last player; in chunks, nodes deliver the first ones
    /// while Redis numbers the rest. Answers only once every chunk is stored, and fails if any
    /// chunk failed (see `ARCHITECTURE.md` for what the players of the other chunks saw).
    pub(crate) async fn broadcast(
        &self,
        template: &EventTemplate,
    ) -> Result<Vec<(PlayerId, Published)>, Unavailable> {
        let targets: Vec<String> = self.across_nodes(&self.scripts.broadcast_targets).await?;
        let targets: Vec<&str> = targets.iter().map(String::as_str).collect();
        let chunk = self.broadcast_chunk.load(Ordering::Relaxed).max(1);
        // Made up front, not in a `map` closure: a closure over borrowed chunks makes the
        // handler's future fail the compiler's `Send` check. A future does nothing until the
        // stream polls it.
        let calls: Vec<_> = targets
            .chunks(chunk)
            .map(|players| self.publish(players, template))
            .collect();
        let mut chunks = futures_util::stream::iter(calls).buffered(BROADCAST_CHUNKS_IN_FLIGHT);
        let mut out = Vec::with_capacity(targets.len());
        while let Some(published) = chunks.next().await {
            out.extend(published?);
        }
        Ok(out)
    }

    /// Lowers the players per broadcast chunk, so a test can spread a broadcast over several
    /// chunks without thousands of players.
    #[doc(hidden)]
    pub fn set_broadcast_chunk(&self, players: usize) {
        self.broadcast_chunk
            .store(players.max(1), Ordering::Relaxed);
    }

    pub(crate) async fn new_session(
        &self,
        hub: &Hub,
        player: &PlayerId,
        requested: Option<&str>,
    ) -> Result<NewSession, SessionError> {
        self.check()?;
        let reply: Vec<String> = self
            .scripts
            .new_session
            .prepare_invoke()
            .arg(self.prefix())
            .arg(&**player)
            .arg(requested.unwrap_or(""))
            .arg(crate::random::token())
            .arg(Self::ttl_ms(NODE_TTL))
            .arg(Self::ttl_ms(self.config.session_ttl))
            .arg(Self::grace_ms(hub))
            .invoke_async(&mut self.redis.clone())
            .await
            .map_err(|e| self.failed(&e))?;
        match reply.as_slice() {
            [status] if status == "REPLACED" => Err(SessionError::Replaced),
            [status, session, generation, ended] if status == "OK" => {
                let generation = generation.parse().map_err(|_| SessionError::Unavailable)?;
                // This node's connections end now; the other nodes hear it on their channel.
                hub.terminate(player, generation, session);
                Ok(NewSession {
                    session_id: SessionId::from(session.as_str()),
                    disconnected: ended.parse().unwrap_or(0),
                })
            }
            _ => Err(SessionError::Unavailable),
        }
    }

    /// The player's session and its live connections on every live node.
    async fn player_state(
        &self,
        player: &str,
    ) -> Result<(Option<(SessionId, SystemTime)>, Vec<Member>), Unavailable> {
        self.check()?;
        let reply: Vec<String> = self
            .scripts
            .player
            .prepare_invoke()
            .arg(self.prefix())
            .arg(player)
            .arg(Self::ttl_ms(NODE_TTL))
            .invoke_async(&mut self.redis.clone())
            .await
            .map_err(|e| self.failed(&e))?;
        let mut it = reply.into_iter();
        let sid = it.next().unwrap_or_default();
        let at = it.next().unwrap_or_default();
        let session = (!sid.is_empty()).then(|| {
            let created = at
                .parse::<u64>()
                .map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
                .unwrap_or_else(|_| SystemTime::now());
            (SessionId::from(sid), created)
        });
        Ok((session, it.filter_map(|m| Member::parse(&m)).collect()))
    }

    pub(crate) async fn session(
        &self,
        player: &str,
    ) -> Result<Option<SessionSnapshot>, Unavailable> {
        let (session, members) = self.player_state(player).await?;
        Ok(session.map(|(session_id, created)| SessionSnapshot {
            session_id,
            created,
            websocket: members
                .iter()
                .filter(|m| m.kind == ConnKind::WebSocket)
                .count(),
            sse: members.iter().filter(|m| m.kind == ConnKind::Sse).count(),
        }))
    }

    pub(crate) async fn player(
        &self,
        hub: &Hub,
        player: &str,
    ) -> Result<PlayerSnapshot, Unavailable> {
        let (session, members) = self.player_state(player).await?;
        let reports = self.reports().await?;
        let local = hub.local_player(player);
        let mut snap = PlayerSnapshot {
            session_id: session.map(|(s, _)| s),
            websocket: TransportSnapshot::default(),
            sse: TransportSnapshot::default(),
            last_seen: local.last_seen,
        };
        for m in &members {
            let t = match m.kind {
                ConnKind::WebSocket => &mut snap.websocket,
                ConnKind::Sse => &mut snap.sse,
            };
            t.connection_ids.push(m.conn_id.clone());
            let (healthy, activity) = remote_health(&reports, m);
            if healthy {
                t.healthy += 1;
            }
            t.last_activity = t.last_activity.max(activity);
        }
        // This node's own connections: their exact health and activity.
        for (local_t, t) in [
            (&local.websocket, &mut snap.websocket),
            (&local.sse, &mut snap.sse),
        ] {
            t.last_activity = t.last_activity.max(local_t.last_activity);
        }
        if !members.is_empty() {
            snap.last_seen = Some(SystemTime::now());
        }
        Ok(snap)
    }

    pub(crate) async fn online_players(&self) -> Result<Vec<PlayerId>, Unavailable> {
        let (listed, _) = self.online_raw(usize::MAX).await?;
        Ok(listed.into_iter().map(|(p, _, _)| p).collect())
    }

    pub(crate) async fn is_online(&self, player: &str) -> Result<bool, Unavailable> {
        let (_, members) = self.player_state(player).await?;
        Ok(!members.is_empty())
    }

    /// Online players with session and members, sorted, at most `limit`; and the total.
    async fn online_raw(
        &self,
        limit: usize,
    ) -> Result<(Vec<(PlayerId, Option<SessionId>, Vec<Member>)>, usize), Unavailable> {
        self.check()?;
        let reply: (usize, Vec<Vec<String>>) = self
            .scripts
            .online
            .prepare_invoke()
            .arg(self.prefix())
            .arg(Self::ttl_ms(NODE_TTL))
            .arg(limit.min(1_000_000))
            .invoke_async(&mut self.redis.clone())
            .await
            .map_err(|e| self.failed(&e))?;
        let (total, rows) = reply;
        let listed = rows
            .into_iter()
            .filter_map(|row| {
                let mut it = row.into_iter();
                let player = PlayerId::from(it.next()?);
                let sid = it.next().filter(|s| !s.is_empty()).map(SessionId::from);
                let members = it.filter_map(|m| Member::parse(&m)).collect();
                Some((player, sid, members))
            })
            .collect();
        Ok((listed, total))
    }

    pub(crate) async fn online(
        &self,
        hub: &Hub,
        limit: usize,
    ) -> Result<(Vec<PlayerListing>, usize), Unavailable> {
        let (rows, total) = self.online_raw(limit).await?;
        let reports = self.reports().await?;
        // This node's own connections report exactly; others through their node's report.
        let (local, _) = hub.local_online(usize::MAX);
        let mut local: std::collections::HashMap<String, ConnListing> = local
            .into_iter()
            .flat_map(|p| p.connections)
            .map(|c| (c.connection_id.clone(), c))
            .collect();
        let listings = rows
            .into_iter()
            .map(|(player_id, session_id, members)| PlayerListing {
                connections: members
                    .iter()
                    .map(|m| {
                        if let Some(c) = local.remove(&m.conn_id) {
                            return c;
                        }
                        let (healthy, activity) = remote_health(&reports, m);
                        let at = activity.unwrap_or_else(SystemTime::now);
                        ConnListing {
                            connection_id: m.conn_id.clone(),
                            kind: m.kind,
                            healthy,
                            last_activity: at,
                            opened_at: at,
                        }
                    })
                    .collect(),
                player_id,
                session_id,
            })
            .collect();
        Ok((listings, total))
    }

    /// Runs a script that reads across the live nodes (its arguments: the prefix, the node ttl).
    async fn across_nodes<T: redis::FromRedisValue>(
        &self,
        script: &Script,
    ) -> Result<T, Unavailable> {
        self.check()?;
        script
            .prepare_invoke()
            .arg(self.prefix())
            .arg(Self::ttl_ms(NODE_TTL))
            .invoke_async(&mut self.redis.clone())
            .await
            .map_err(|e| self.failed(&e))
    }

    /// Every live node's latest report.
    async fn reports(&self) -> Result<Vec<NodeReport>, Unavailable> {
        let raw: Vec<String> = self.across_nodes(&self.scripts.reports).await?;
        Ok(raw.iter().filter_map(|r| NodeReport::parse(r)).collect())
    }

    pub(crate) async fn stats(&self) -> Result<StatsSnapshot, Unavailable> {
        let raw: Vec<Value> = self.across_nodes(&self.scripts.stats).await?;
        let mut counts = [0usize; 7];
        for (slot, v) in counts.iter_mut().zip(&raw) {
            *slot = redis::from_redis_value_ref(v).unwrap_or(0);
        }
        let reports: Vec<NodeReport> = raw
            .iter()
            .skip(7)
            .filter_map(|v| redis::from_redis_value_ref::<String>(v).ok())
            .filter_map(|r| NodeReport::parse(&r))
            .collect();
        let [online, ws_only, sse_only, dual, ws, sse, sessions] = counts;
        let ws_unhealthy: usize = reports.iter().map(|r| r.websocket_unhealthy).sum();
        let sse_unhealthy: usize = reports.iter().map(|r| r.sse_unhealthy).sum();
        Ok(StatsSnapshot {
            players_online: online,
            websocket_only: ws_only,
            sse_only,
            dual,
            websocket_connections: ws,
            sse_connections: sse,
            websocket_healthy: ws.saturating_sub(ws_unhealthy),
            sse_healthy: sse.saturating_sub(sse_unhealthy),
            sessions,
            sessions_with_connections: sessions,
            players_known: reports.iter().map(|r| r.players_known).sum(),
        })
    }

    pub(crate) async fn counters(&self) -> Result<crate::hub::CounterTotals, Unavailable> {
        let mut total = crate::hub::CounterTotals::default();
        for r in self.reports().await? {
            total += r.counters;
        }
        Ok(total)
    }
}

/// Unregisters a connection whose join was abandoned half-way.
struct JoiningGuard<'a> {
    hub: &'a Hub,
    backplane: &'a RedisBackplane,
    conn: Arc<crate::hub::Conn>,
    armed: bool,
}

impl Drop for JoiningGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.hub.abandon_joining(&self.conn);
            self.backplane.leave(&self.conn);
        }
    }
}

/// A connection as Redis lists it.
struct Member {
    node: String,
    conn_id: String,
    kind: ConnKind,
}

impl Member {
    fn parse(m: &str) -> Option<Member> {
        let mut parts = m.split('|');
        let node = parts.next()?.to_owned();
        let conn_id = parts.next()?.to_owned();
        let kind = match parts.next()? {
            "w" => ConnKind::WebSocket,
            "s" => ConnKind::Sse,
            _ => return None,
        };
        Some(Member {
            node,
            conn_id,
            kind,
        })
    }
}

/// A connection on another node is healthy unless its node's last report says otherwise; its
/// activity is known to that report's time.
fn remote_health(reports: &[NodeReport], m: &Member) -> (bool, Option<SystemTime>) {
    match reports.iter().find(|r| r.node == m.node) {
        Some(r) => (
            !r.unhealthy.contains(&m.conn_id),
            Some(UNIX_EPOCH + Duration::from_millis(r.at_ms)),
        ),
        None => (true, None),
    }
}

fn parse_join(reply: Value) -> Option<Admitted> {
    let Value::Array(items) = reply else {
        return None;
    };
    let status: String = redis::from_redis_value_ref(items.first()?).ok()?;
    match status.as_str() {
        "STALE" => return Some(Admitted::Refused(JoinError::StaleSession)),
        "CONFLICT" => return Some(Admitted::Refused(JoinError::SessionConflict)),
        "FULL" => return Some(Admitted::Refused(JoinError::TooManyConnections)),
        "NODE_FULL" => return Some(Admitted::NodeFull),
        "OK" => {}
        _ => return None,
    }
    let text = |i: usize| -> Option<String> { redis::from_redis_value_ref(items.get(i)?).ok() };
    let session = SessionId::from(text(1)?);
    let generation = text(3)?.parse().ok()?;
    let last_seq = text(4)?.parse().ok()?;
    let now_ms = text(5)?.parse().ok()?;
    let entries = match items.get(6) {
        Some(v) => parse_entries(v)?,
        None => Vec::new(),
    };
    let arrival = Arrival {
        came_online: text(7).as_deref() == Some("1"),
        session_started: text(8).as_deref() == Some("1"),
    };
    Some(Admitted::Ok {
        session,
        generation,
        last_seq,
        now_ms,
        entries,
        arrival,
    })
}

/// A script's `[player, seq, connections]…` answer, as the hub reports publishes.
pub(super) fn published(reply: Vec<(String, u64, usize)>) -> Vec<(PlayerId, Published)> {
    reply
        .into_iter()
        .map(|(player, sequence_number, connections)| {
            let published = Published {
                sequence_number,
                connections,
            };
            (PlayerId::from(player), published)
        })
        .collect()
}

/// XRANGE's answer: `[[id, [field, value, …]], …]` into `(seq, at_ms, json)`.
fn parse_entries(v: &Value) -> Option<Vec<(u64, u64, Vec<u8>)>> {
    let Value::Array(rows) = v else {
        return Some(Vec::new());
    };
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let Value::Array(pair) = row else { continue };
        let (Some(id), Some(Value::Array(fields))) = (pair.first(), pair.get(1)) else {
            continue;
        };
        let id: String = redis::from_redis_value_ref(id).ok()?;
        let Some(seq) = id.split('-').next().and_then(|s| s.parse::<u64>().ok()) else {
            continue;
        };
        let (mut at, mut json) = (0u64, None);
        for kv in fields.chunks(2) {
            let [k, v] = kv else { continue };
            let k: String = redis::from_redis_value_ref(k).ok()?;
            match k.as_str() {
                "t" => {
                    at = redis::from_redis_value_ref::<String>(v)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                }
                "j" => json = redis::from_redis_value_ref::<Vec<u8>>(v).ok(),
                _ => {}
            }
        }
        if let Some(json) = json {
            out.push((seq, at, json));
        }
    }
    Some(out)
}
