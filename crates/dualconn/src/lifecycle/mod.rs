//! The lifecycle webhook: tells the game backend when a player comes online anywhere and goes
//! offline everywhere, when a session starts, and when each connection opens and closes.
//!
//! - The hub reports what happened as [`Notice`]s through [`Notices`], which never waits: a
//!   notice goes into one of a few bounded lanes, picked by player so that one player's notices
//!   keep their order, and a full lane drops it (counted in `/metrics`, logged).
//! - One task per lane POSTs its notices ([`sender`]), signed like every webhook, retrying
//!   with backoff a bounded number of times. Each notice carries an `id` that stays the same
//!   across retries: delivery is at least once, and the backend deduplicates on the id.
//! - The answer to `player_online` and `session_started` may carry events, published to the
//!   player like any publish (numbered, kept in history, on every connection).
//! - `player_offline` waits out a grace period after the last connection closed, so that a
//!   transport switch or a reconnect does not flap. With one process the hub decides it
//!   ([`presence`]); in a cluster one Redis script decides it for every node at once
//!   (`backplane/redis/scripts.rs`, `OFFLINE_DUE`).

mod presence;
mod sender;

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::WebhookConfig;
use crate::hub::{Conn, ConnKind, Hub, PlayerId, SessionId};

/// Lanes POSTing at once: enough that one slow answer does not hold every player up, few
/// enough that a backend that is down is not hammered.
const LANES: usize = 4;
/// Notices waiting per lane; past it they are dropped, so a backend that is down costs
/// bounded memory.
const LANE_CAPACITY: usize = 1024;
/// Players waiting out the grace at once on one node (single process only); past it, the
/// player's offline notice is dropped and counted like any other.
const PENDING_OFFLINE_CAPACITY: usize = 65_536;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    PlayerOnline,
    PlayerOffline,
    SessionStarted,
    ConnectionOpened,
    ConnectionClosed,
}

impl Kind {
    /// The `type` on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::PlayerOnline => "player_online",
            Kind::PlayerOffline => "player_offline",
            Kind::SessionStarted => "session_started",
            Kind::ConnectionOpened => "connection_opened",
            Kind::ConnectionClosed => "connection_closed",
        }
    }

    /// Whether the backend's answer may carry events for the player.
    fn answers_with_events(self) -> bool {
        matches!(self, Kind::PlayerOnline | Kind::SessionStarted)
    }
}

/// One thing that happened to a player, as the backend is told it.
#[derive(Debug, Clone)]
pub struct Notice {
    /// What happened; the body's `type`.
    pub kind: Kind,
    /// Whom it happened to; also picks the lane, so one player's notices stay in order.
    pub player: PlayerId,
    /// The session the connection joined, or the session that started.
    pub session_id: Option<SessionId>,
    /// The connection a connection notice is about (and the one that brought the player
    /// online), so the backend can pair opens with closes.
    pub connection_id: Option<Box<str>>,
    /// That connection's transport, for backends that treat SSE-only players differently.
    pub transport: Option<ConnKind>,
    /// Why a connection closed, or what started a session (`connect`, `new_session`).
    pub reason: Option<&'static str>,
    /// Fixed when it happened, so that every retry sends the same body: the backend's
    /// deduplication key.
    pub id: String,
    /// When it happened, not when it was sent (a notice may wait behind retries).
    pub at: SystemTime,
}

impl Notice {
    fn new(kind: Kind, player: PlayerId) -> Notice {
        Notice {
            kind,
            player,
            session_id: None,
            connection_id: None,
            transport: None,
            reason: None,
            id: crate::random::token(),
            at: SystemTime::now(),
        }
    }

    /// A notice about one connection (`player_online` names the connection that brought the
    /// player online).
    pub fn about(kind: Kind, conn: &Conn, reason: Option<&'static str>) -> Notice {
        let mut n = Notice::new(kind, conn.player.clone());
        let session = conn.session();
        n.session_id = (!session.is_empty()).then(|| SessionId::from(session));
        n.connection_id = Some(conn.id.clone());
        n.transport = Some(conn.kind);
        n.reason = reason;
        n
    }

    pub fn session_started(player: PlayerId, session: SessionId, reason: &'static str) -> Notice {
        let mut n = Notice::new(Kind::SessionStarted, player);
        n.session_id = Some(session);
        n.reason = Some(reason);
        n
    }

    pub fn offline(player: PlayerId) -> Notice {
        Notice::new(Kind::PlayerOffline, player)
    }

    /// The body POSTed for it.
    fn body(&self) -> Vec<u8> {
        let timestamp = crate::wire::timestamp(self.at);
        serde_json::to_vec(&crate::wire::LifecycleNotice {
            id: &self.id,
            kind: self.kind.as_str(),
            timestamp: &timestamp,
            player_id: &self.player,
            session_id: self.session_id.as_deref(),
            connection_id: self.connection_id.as_deref(),
            transport: self.transport.map(ConnKind::as_str),
            reason: self.reason,
        })
        // Strings and options only: serializing cannot fail, and an empty body would be
        // refused by any backend rather than misread.
        .unwrap_or_default()
    }
}

/// How many notices ended which way, for `/metrics`.
#[derive(Default, Debug)]
pub struct Counters {
    /// The backend answered 2xx.
    pub delivered: AtomicU64,
    /// Every attempt failed, or the backend refused the notice with a 4xx.
    pub failed: AtomicU64,
    /// Never sent: its lane (or the grace queue) was full.
    pub dropped: AtomicU64,
}

/// Where the hub reports notices. Cheap to clone; never waits.
#[derive(Clone)]
pub struct Notices {
    /// Bounded queues, each drained in order by one sending task.
    lanes: Arc<[mpsc::Sender<Notice>]>,
    /// Single process only: players whose last connection closed, to look at again after the
    /// grace.
    offline_checks: mpsc::Sender<PlayerId>,
    /// Picks a player's lane; per process, like the hub's shards.
    hasher: RandomState,
    /// Shared with the sending tasks, read by `/metrics`.
    pub counters: Arc<Counters>,
    /// How long a player must stay without a connection before `player_offline`.
    pub grace: Duration,
}

impl Notices {
    /// Queues a notice, or drops and counts it when its lane is full.
    pub fn send(&self, notice: Notice) {
        let lane = self.hasher.hash_one(&*notice.player) as usize % self.lanes.len();
        if let Err(e) = self.lanes[lane].try_send(notice) {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            let notice = match e {
                mpsc::error::TrySendError::Full(n) | mpsc::error::TrySendError::Closed(n) => n,
            };
            tracing::warn!(
                kind = notice.kind.as_str(),
                player = %notice.player,
                "lifecycle notice dropped: the webhook's queue is full"
            );
        }
    }

    /// Single process: the player's last connection closed; decide about `player_offline`
    /// once the grace has passed.
    pub fn check_offline_later(&self, player: PlayerId) {
        if self.offline_checks.try_send(player).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("lifecycle: an offline check was dropped: its queue is full");
        }
    }
}

/// What sends the notices: built with the server, run with it.
pub struct Worker {
    /// The signed POST, built (and its URL checked) with the server, so a bad URL fails start.
    poster: sender::Poster,
    /// The receiving ends of [`Notices`]' lanes, one task each once running.
    lanes: Vec<mpsc::Receiver<Notice>>,
    /// Single process: players to look at again after the grace.
    offline_checks: mpsc::Receiver<PlayerId>,
}

/// The hub's end and the worker's end of the lifecycle webhook.
pub fn channel(webhook: &WebhookConfig, grace: Duration) -> Result<(Notices, Worker), String> {
    let poster = sender::Poster::new(webhook)?;
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..LANES).map(|_| mpsc::channel(LANE_CAPACITY)).unzip();
    let (checks_tx, checks_rx) = mpsc::channel(PENDING_OFFLINE_CAPACITY);
    let notices = Notices {
        lanes: senders.into(),
        offline_checks: checks_tx,
        hasher: RandomState::new(),
        counters: Arc::new(Counters::default()),
        grace,
    };
    Ok((
        notices,
        Worker {
            poster,
            lanes: receivers,
            offline_checks: checks_rx,
        },
    ))
}

impl Worker {
    /// Runs the lanes and (with one process) the grace timer until `shutdown`. Notices still
    /// queued then are not sent.
    pub fn spawn(self, hub: Arc<Hub>, tracker: &TaskTracker, shutdown: CancellationToken) {
        let Some(notices) = hub.lifecycle().cloned() else {
            return;
        };
        let poster = Arc::new(self.poster);
        for lane in self.lanes {
            tracker.spawn(sender::lane(
                hub.clone(),
                poster.clone(),
                notices.counters.clone(),
                lane,
                shutdown.clone(),
            ));
        }
        // In a cluster Redis decides `player_offline`; the checks channel stays unused.
        if hub.backplane().node_id().is_none() {
            tracker.spawn(presence::offline_after_grace(
                hub,
                notices,
                self.offline_checks,
                shutdown,
            ));
        }
    }
}
