//! One open connection as the hub sees it: identity, outbox and liveness. No transport types.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::outbox::Outbox;
use super::{PlayerId, SessionId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnKind {
    WebSocket,
    Sse,
}

impl ConnKind {
    /// The name used in JSON (`connection_type`, `connection_types`).
    pub fn as_str(self) -> &'static str {
        match self {
            ConnKind::WebSocket => "websocket",
            ConnKind::Sse => "sse",
        }
    }
}

/// Why a connection ends. Each transport maps it to its own way of ending (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    ServerShutdown,
    TokenExpired,
    /// A WebSocket that stopped answering pings.
    Unresponsive,
    SessionReplaced,
    ConnectionReplaced,
    SlowConsumer,
}

impl CloseReason {
    /// The WebSocket close code and reason text.
    pub fn ws_close(self) -> (u16, &'static str) {
        match self {
            CloseReason::ServerShutdown => (1001, "server shutting down"),
            CloseReason::TokenExpired => (1008, "token expired"),
            CloseReason::Unresponsive => (1008, "no pong"),
            CloseReason::SessionReplaced => (4001, "session replaced"),
            CloseReason::ConnectionReplaced => (4002, "replaced by a newer connection"),
            CloseReason::SlowConsumer => (4008, "slow consumer"),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::ServerShutdown => "server_shutdown",
            CloseReason::TokenExpired => "token_expired",
            CloseReason::Unresponsive => "unresponsive",
            CloseReason::SessionReplaced => "session_replaced",
            CloseReason::ConnectionReplaced => "connection_replaced",
            CloseReason::SlowConsumer => "slow_consumer",
        }
    }
}

/// Connections this process has opened, for [`Conn::opened_order`].
static OPENED: AtomicU64 = AtomicU64::new(0);

/// Shared between the hub (which pushes) and the transport task (which drains and reports
/// liveness).
pub struct Conn {
    /// Unique across restarts and nodes: a per-process random prefix and a counter.
    pub id: Box<str>,
    pub kind: ConnKind,
    pub player: PlayerId,
    /// The session this connection joined; set once, when the backplane admits it (in a
    /// cluster that answer comes after the connection is already listening for events).
    session: OnceLock<SessionId>,
    /// Cluster only: the session generation it was admitted under, 0 while joining.
    pub(super) generation: AtomicU64,
    pub outbox: Outbox,
    /// Rises with every connection this process opens: a broadcast writes its sockets in this
    /// order (`HeldWrites::write`).
    pub(super) opened_order: u64,
    /// Paused-time friendly clock origin for the liveness fields below.
    epoch: Instant,
    /// Wall-clock twin of `epoch`, to report times in JSON.
    epoch_wall: SystemTime,
    /// When the connection was registered, in ms since `epoch`.
    opened_ms: u64,
    /// Last sign of life from the peer (WebSocket: any inbound frame or pong; SSE: a write that
    /// completed), in ms since `epoch`.
    last_alive_ms: AtomicU64,
    /// When the transport handed its latest batch to the socket, in ms since `epoch`, or 0
    /// once that write completed. Only SSE uses it: hyper's body polling
    /// is the one place a stalled write shows.
    write_began_ms: AtomicU64,
}

impl Conn {
    pub(super) fn new(
        id: Box<str>,
        kind: ConnKind,
        player: PlayerId,
        outbox: Outbox,
        epoch: Instant,
        epoch_wall: SystemTime,
    ) -> Conn {
        let now = ms_since(epoch, Instant::now());
        Conn {
            id,
            kind,
            player,
            session: OnceLock::new(),
            generation: AtomicU64::new(0),
            outbox,
            opened_order: OPENED.fetch_add(1, Ordering::Relaxed),
            epoch,
            epoch_wall,
            opened_ms: now,
            last_alive_ms: AtomicU64::new(now),
            write_began_ms: AtomicU64::new(0),
        }
    }

    /// The session it belongs to; empty only while it is still joining.
    pub fn session(&self) -> &str {
        self.session.get().map(|s| &**s).unwrap_or("")
    }

    /// Cluster only: the session generation it was admitted under; 0 while joining.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(super) fn set_session(&self, session: SessionId) {
        let _ = self.session.set(session);
    }

    /// Records a sign of life; for SSE, also that the write in flight completed.
    pub fn touch(&self) {
        self.last_alive_ms
            .store(ms_since(self.epoch, Instant::now()), Ordering::Relaxed);
        self.write_began_ms.store(0, Ordering::Relaxed);
    }

    /// A publisher wrote a frame straight to the socket: for SSE, a write that completed.
    pub(super) fn wrote_directly(&self) {
        if self.kind == ConnKind::Sse {
            self.touch();
        }
    }

    /// Records that a batch went to the socket; [`Conn::touch`] marks it written.
    pub fn write_began(&self) {
        // Zero means "no write yet", so a write in the epoch's first millisecond counts as 1.
        let now = ms_since(self.epoch, Instant::now()).max(1);
        self.write_began_ms.store(now, Ordering::Relaxed);
    }

    /// How long the current write has been waiting for the socket; zero when none is.
    pub fn stalled_for(&self, now: Instant) -> Duration {
        let began = self.write_began_ms.load(Ordering::Relaxed);
        if began == 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(ms_since(self.epoch, now).saturating_sub(began))
    }

    /// How long since the last sign of life.
    pub fn idle_for(&self, now: Instant) -> Duration {
        let last = self.last_alive_ms.load(Ordering::Relaxed);
        Duration::from_millis(ms_since(self.epoch, now).saturating_sub(last))
    }

    /// The wall-clock time of the last sign of life.
    pub fn last_activity(&self) -> SystemTime {
        self.epoch_wall + Duration::from_millis(self.last_alive_ms.load(Ordering::Relaxed))
    }

    pub fn opened_at(&self) -> SystemTime {
        self.epoch_wall + Duration::from_millis(self.opened_ms)
    }

    /// SPEC §9: a WebSocket is healthy while the peer spoke within 2 ping intervals; an SSE
    /// stream while its writes complete and its queue is under half its bound.
    pub fn is_healthy(
        &self,
        now: Instant,
        ping_interval: Duration,
        write_timeout: Duration,
    ) -> bool {
        if self.outbox.closing().is_some() {
            return false;
        }
        match self.kind {
            ConnKind::WebSocket => self.idle_for(now) < ping_interval * 2,
            ConnKind::Sse => {
                self.outbox.queued_bytes() < self.outbox.cap() / 2
                    && self.stalled_for(now) < write_timeout
            }
        }
    }
}

fn ms_since(epoch: Instant, now: Instant) -> u64 {
    u64::try_from(now.saturating_duration_since(epoch).as_millis()).unwrap_or(u64::MAX)
}
