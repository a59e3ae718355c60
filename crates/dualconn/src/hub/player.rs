//! One player's state: its stream position, retained history, session and live connections.
//! Always accessed under its shard's lock, so nothing here is synchronised itself.

// Resume cursors come from the network (SPEC §12.26): no unchecked arithmetic in this module.
#![deny(clippy::arithmetic_side_effects)]

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use super::SessionId;
use super::conn::Conn;
use super::outbox::Frame;

/// How many replaced session ids a player remembers, so that a flood of new sessions cannot
/// grow memory. Older replaced ids are forgotten and could rejoin only as a new session.
pub const REPLACED_SESSIONS_REMEMBERED: usize = 32;

pub struct Session {
    pub id: SessionId,
    pub created: SystemTime,
}

pub struct Player {
    /// The next stream position (local backplane only; under Redis the counter lives there). Seeded from the clock in microseconds, so a node that
    /// restarts without state still continues above every number it gave before (SPEC §3).
    pub next_seq: u64,
    pub session: Option<Session>,
    /// Session ids this player has had replaced, newest last (SPEC §5's stale-session fence).
    pub replaced: VecDeque<SessionId>,
    /// Live connections, oldest first, which is the order eviction follows.
    pub conns: Vec<Arc<Conn>>,
    pub history: History,
    /// Last time anything happened to this player; it is forgotten `session_ttl` after this
    /// when it has no connections.
    pub last_active: Instant,
    /// When the player was last seen connected, for `presence.last_seen`.
    pub last_seen: Option<SystemTime>,
    /// Cluster only: the newest session generation announced for this player. A connection
    /// admitted under an older one is closed when it opens, whichever message came first.
    pub fence: u64,
    /// Cluster only: the highest sequence number this node has delivered for the player; a
    /// notification that skips past it means one was lost, and history fills the gap.
    pub last_seq: u64,
    /// Cluster only: while history is being read to fill a gap, live events wait here so the
    /// connection still sees them in order.
    pub catching_up: Option<Vec<Frame>>,
    /// Single process only: what the lifecycle webhook's online and offline decisions need.
    pub presence: Presence,
}

/// Whether a player counts as online for the lifecycle webhook (single process; in a cluster
/// Redis keeps the same state, see `backplane/redis/scripts.rs`).
#[derive(Default)]
pub struct Presence {
    /// Connections joined and not yet ended. Unlike `conns`, a connection a new session or
    /// the cap pushed out still counts until its transport has finished, so the count falls
    /// to zero exactly once per departure.
    pub open: usize,
    /// `player_online` was announced and `player_offline` not yet.
    pub online: bool,
    /// When `open` last fell to zero; `player_offline` waits the grace from here.
    pub empty_since: Option<Instant>,
}

impl Player {
    pub fn new(now: Instant, history_bytes: usize) -> Player {
        Player {
            next_seq: clock_seed(),
            session: None,
            replaced: VecDeque::new(),
            conns: Vec::new(),
            history: History::new(history_bytes),
            last_active: now,
            last_seen: None,
            fence: 0,
            last_seq: 0,
            catching_up: None,
            presence: Presence::default(),
        }
    }

    pub fn was_replaced(&self, id: &str) -> bool {
        self.replaced.iter().any(|r| &**r == id)
    }

    /// Makes `id` current, fencing the previous id off.
    pub fn set_session(&mut self, id: SessionId) {
        if let Some(old) = self.session.take()
            && old.id != id
        {
            if self.replaced.len() == REPLACED_SESSIONS_REMEMBERED {
                self.replaced.pop_front();
            }
            self.replaced.push_back(old.id);
        }
        self.session = Some(Session {
            id,
            created: SystemTime::now(),
        });
    }

    pub fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        // Seeded near 1.8e15 and raised by one per event: u64 cannot be reached, and
        // saturating keeps the lint's promise without a branch that could panic.
        self.next_seq = seq.saturating_add(1);
        seq
    }
}

/// Microseconds since the Unix epoch: about 1.8e15 today, far below 2^53 − 1 (9.0e15) until the
/// 2250s, so JavaScript reads every number exactly (SPEC §12.1). A restarted node starts above
/// the numbers it gave before as long as a player averaged under one event per microsecond.
fn clock_seed() -> u64 {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros();
    u64::try_from(micros).unwrap_or(u64::MAX)
}

/// SPEC §12.4: a replay is complete when the first event retained after the cursor is the very
/// next one, or when nothing came after the cursor at all. `cursor < next_seq` here, so
/// `cursor + 1` cannot overflow.
pub fn recovered(cursor: u64, first_replayed: Option<u64>, next_seq: u64) -> bool {
    let Some(first_missing) = cursor.checked_add(1) else {
        return false;
    };
    match first_replayed {
        Some(first) => first == first_missing,
        None => first_missing == next_seq,
    }
}

/// Retained events for resume, bounded by count, age and bytes.
pub struct History {
    entries: VecDeque<(Instant, Frame)>,
    /// Sum of retained frames' lengths.
    bytes: usize,
    /// Byte bound; at most the outbox bound, so any replay fits an empty outbox.
    max_bytes: usize,
}

/// 2^53: the first integer JavaScript cannot tell from its neighbour (SPEC §12.1, §12.26).
pub const MAX_SAFE_CURSOR: u64 = 1 << 53;

/// What a cursor finds in history.
pub struct Replay {
    /// True when nothing after the cursor was lost.
    pub recovered: bool,
    pub frames: Vec<Frame>,
}

impl Replay {
    /// A cursor ahead of the stream: nothing to replay, and not recovered.
    fn nothing() -> Replay {
        Replay {
            recovered: false,
            frames: Vec::new(),
        }
    }
}

impl History {
    pub fn new(max_bytes: usize) -> History {
        History {
            entries: VecDeque::new(),
            bytes: 0,
            max_bytes,
        }
    }

    pub fn push(&mut self, now: Instant, frame: Frame, max_len: usize) {
        if max_len == 0 || frame.json.len() > self.max_bytes {
            return;
        }
        self.bytes = self.bytes.saturating_add(frame.json.len());
        self.entries.push_back((now, frame));
        while self.entries.len() > max_len || self.bytes > self.max_bytes {
            self.pop();
        }
    }

    /// Drops entries older than `ttl`.
    pub fn expire(&mut self, now: Instant, ttl: Duration) {
        while let Some((at, _)) = self.entries.front() {
            if now.saturating_duration_since(*at) <= ttl {
                break;
            }
            self.pop();
        }
        if self.entries.is_empty() && self.entries.capacity() > 0 {
            self.entries = VecDeque::new();
        }
    }

    /// Requests the oldest entry, which `expire` reads on every publish (`warm`).
    pub fn warm(&self) {
        if let Some(oldest) = self.entries.front() {
            super::warm::prefetch(oldest);
        }
    }

    fn pop(&mut self) {
        if let Some((_, frame)) = self.entries.pop_front() {
            self.bytes = self.bytes.saturating_sub(frame.json.len());
        }
    }

    /// Everything retained after `cursor`. `next_seq` is the stream's next position: a cursor at
    /// or past it has nothing to replay and, past it, is not from this stream (SPEC §12.4).
    /// A cursor at or above 2^53 is always ahead of the stream (SPEC §12.26): no stream number
    /// reaches it, and clients in JavaScript could not have read it exactly.
    pub fn after(&self, cursor: u64, next_seq: u64) -> Replay {
        // The cursor comes from the network: every step on it is checked.
        let Some(first_missing) = cursor.checked_add(1).filter(|_| cursor < MAX_SAFE_CURSOR) else {
            return Replay::nothing();
        };
        if cursor >= next_seq {
            return Replay {
                recovered: first_missing == next_seq,
                frames: Vec::new(),
            };
        }
        let frames: Vec<Frame> = self
            .entries
            .iter()
            .filter(|(_, f)| f.seq.is_some_and(|s| s > cursor))
            .map(|(_, f)| f.clone())
            .collect();
        // Complete when the first retained event after the cursor is the very next one, or
        // when the cursor is the last event given.
        let recovered = match frames.first().and_then(|f| f.seq) {
            Some(first) => first == first_missing,
            None => first_missing == next_seq,
        };
        Replay { recovered, frames }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.entries.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn frame(seq: u64) -> Frame {
        Frame {
            seq: Some(seq),
            json: Bytes::from_static(b"0123456789"),
        }
    }

    #[test]
    fn bounds_by_count_and_bytes() {
        let now = Instant::now();
        let mut h = History::new(35);
        for seq in 1..=5 {
            h.push(now, frame(seq), 4);
        }
        assert_eq!(h.len(), 3, "35 bytes hold three 10-byte frames");
        assert_eq!(h.bytes(), 30);
        let mut h = History::new(1000);
        for seq in 1..=5 {
            h.push(now, frame(seq), 4);
        }
        assert_eq!(h.len(), 4);
    }

    #[test]
    fn replay_outcomes() {
        let now = Instant::now();
        let mut h = History::new(1000);
        for seq in 10..15 {
            h.push(now, frame(seq), 3);
        }
        // Retained: 12, 13, 14; next is 15.
        let r = h.after(11, 15);
        assert!(r.recovered);
        assert_eq!(r.frames.len(), 3);
        let r = h.after(5, 15);
        assert!(!r.recovered, "10 and 11 are gone");
        assert_eq!(r.frames.len(), 3, "everything retained is still replayed");
        let r = h.after(14, 15);
        assert!(r.recovered);
        assert!(r.frames.is_empty());
        let r = h.after(99, 15);
        assert!(!r.recovered, "a cursor ahead of the stream");
        assert!(r.frames.is_empty());
    }

    #[test]
    fn cursors_at_the_edges_of_u64_and_javascript_are_ahead_of_the_stream() {
        let now = Instant::now();
        let mut h = History::new(1000);
        h.push(now, frame(5), 3);
        for cursor in [u64::MAX, u64::MAX - 1, MAX_SAFE_CURSOR] {
            let r = h.after(cursor, 6);
            assert!(!r.recovered, "{cursor}");
            assert!(r.frames.is_empty(), "{cursor}");
        }
        // Even a stream that had reached 2^53 would not take such a cursor as its own.
        let r = h.after(MAX_SAFE_CURSOR, MAX_SAFE_CURSOR + 1);
        assert!(!r.recovered);
        // 2^53 - 1 is still an ordinary number: here, one ahead of the stream.
        let r = h.after(MAX_SAFE_CURSOR - 1, 6);
        assert!(!r.recovered);
        assert!(r.frames.is_empty());
        let r = h.after(MAX_SAFE_CURSOR - 1, MAX_SAFE_CURSOR);
        assert!(
            r.recovered,
            "the last event given, at the top of the safe range"
        );
    }

    #[test]
    fn a_frame_that_exactly_fills_the_bound_is_kept_and_a_bigger_one_is_not() {
        let now = Instant::now();
        let mut h = History::new(30);
        for seq in 1..=3 {
            h.push(now, frame(seq), 10);
        }
        assert_eq!(h.len(), 3, "30 bytes hold three 10-byte frames exactly");
        assert_eq!(h.bytes(), 30);
        let mut h = History::new(10);
        h.push(now, frame(1), 10);
        assert_eq!(h.len(), 1, "a frame as big as the bound is retained");
        let big = Frame {
            seq: Some(2),
            json: Bytes::from_static(b"0123456789A"),
        };
        h.push(now, big, 10);
        assert_eq!(h.len(), 1, "a frame bigger than the bound is not retained");
        assert_eq!(
            h.after(0, 3).frames.first().and_then(|f| f.seq),
            Some(1),
            "and does not push out what is there"
        );
    }

    #[test]
    fn a_new_player_numbers_events_above_the_clock_in_microseconds() {
        // SPEC §3: a node restarted without state continues above every number it gave.
        let before = u64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_micros(),
        )
        .unwrap();
        let mut player = Player::new(Instant::now(), 1000);
        let first = player.take_seq();
        assert!(first >= before, "{first} < {before}");
        assert_eq!(player.take_seq(), first.checked_add(1).unwrap());
    }

    #[test]
    fn a_cluster_replay_is_complete_only_when_it_starts_right_after_the_cursor() {
        // Retained 12..=14, next 15: the cursor's successor is there, or is the next event.
        assert!(recovered(11, Some(12), 15));
        assert!(!recovered(10, Some(12), 15), "11 is gone");
        assert!(
            recovered(14, None, 15),
            "the cursor is the last event given"
        );
        assert!(!recovered(13, None, 15), "14 is gone");
        assert!(!recovered(u64::MAX, None, 0), "no successor to u64::MAX");
    }

    #[tokio::test(start_paused = true)]
    async fn a_history_that_expired_entirely_gives_its_memory_back() {
        let mut h = History::new(1000);
        for seq in 1..=20 {
            h.push(Instant::now(), frame(seq), 100);
        }
        assert!(h.capacity() >= 20);
        tokio::time::advance(Duration::from_secs(301)).await;
        h.expire(Instant::now(), Duration::from_secs(300));
        assert_eq!(h.len(), 0);
        assert_eq!(h.capacity(), 0, "an idle player keeps no history buffer");
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire() {
        let mut h = History::new(1000);
        h.push(Instant::now(), frame(1), 10);
        tokio::time::advance(Duration::from_secs(301)).await;
        h.push(Instant::now(), frame(2), 10);
        h.expire(Instant::now(), Duration::from_secs(300));
        assert_eq!(h.len(), 1);
    }
}
