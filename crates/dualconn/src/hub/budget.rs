//! The node's budget (SPEC §12.27): how many streams it holds and how many bytes wait in all
//! outboxes together. Each outbox is bounded on its own; this bounds their sum, so that many
//! slow readers cannot together take the machine's memory.
//!
//! Outboxes add and remove their bytes on a shared atomic as they queue and drain, and count
//! themselves while they live; admission reads both before a stream joins. When the queued
//! total passes its bound, [`Hub::shed_queued_bytes`] closes the connections holding the most
//! bytes first, as slow consumers (4008): they resume from history.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use super::{CloseReason, Counters, Hub};

/// What a client is told to wait before trying again when the node is full.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);

/// Descriptors kept back from the stream cap for the listener, REST calls, logs and webhooks.
fn descriptor_reserve(limit: u64) -> u64 {
    (limit / 10).clamp(32, 1024)
}

/// The default stream cap: the descriptor limit less a reserve, since each stream holds one
/// socket. Without a readable limit, a cap that is no cap.
pub fn default_max_connections() -> usize {
    match descriptor_limit() {
        Some(limit) => usize::try_from(limit.saturating_sub(descriptor_reserve(limit)))
            .unwrap_or(usize::MAX)
            .max(1),
        None => usize::MAX,
    }
}

/// The soft `RLIMIT_NOFILE`, which is what `accept` runs into.
fn descriptor_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// The two bounds, from `DUALCONN_MAX_CONNECTIONS` and `DUALCONN_MAX_QUEUED_BYTES`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BudgetConfig {
    pub max_connections: usize,
    pub max_queued_bytes: usize,
}

/// No bound at all: for hubs built in tests and benchmarks.
impl Default for BudgetConfig {
    fn default() -> BudgetConfig {
        BudgetConfig {
            max_connections: usize::MAX,
            max_queued_bytes: usize::MAX,
        }
    }
}

/// Why a stream was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Full {
    #[error("this node holds as many connections as it may; try again later")]
    Connections,
    #[error("this node has as many bytes queued for slow readers as it may; try again later")]
    QueuedBytes,
}

/// Shared by the hub and every outbox.
#[derive(Default)]
pub struct Budget {
    config: BudgetConfig,
    /// Live outboxes, which is live streams: one outbox per connection.
    connections: AtomicUsize,
    /// Bytes queued in every outbox together.
    queued_bytes: AtomicUsize,
    /// Wakes the shedder when `queued_bytes` passes its bound.
    over: Notify,
    /// Streams refused by each bound, for `/metrics` and `/monitoring/performance`.
    pub refused_connections: AtomicU64,
    pub refused_queued_bytes: AtomicU64,
    /// Connections closed to bring the queued bytes back under the bound.
    pub shed: AtomicU64,
}

impl Budget {
    pub fn new(config: BudgetConfig) -> Budget {
        Budget {
            config,
            ..Budget::default()
        }
    }

    pub fn config(&self) -> BudgetConfig {
        self.config
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes.load(Ordering::Relaxed)
    }

    /// May one more stream join? Counts the refusal when not. Read while joining, before the
    /// stream is counted, so concurrent handshakes can pass the cap by at most their own
    /// number; the descriptor reserve absorbs that.
    pub fn admit(&self) -> Result<(), Full> {
        self.room().map_err(|full| self.refuse(full))
    }

    /// Whether one more stream fits, without counting anything: for a cluster join, which
    /// reads it before the session rules run in Redis and refuses only after them.
    pub fn room(&self) -> Result<(), Full> {
        if self.connections() >= self.config.max_connections {
            return Err(Full::Connections);
        }
        if self.queued_bytes() >= self.config.max_queued_bytes {
            return Err(Full::QueuedBytes);
        }
        Ok(())
    }

    /// Counts a stream refused because the node is full.
    pub fn refuse(&self, full: Full) -> Full {
        let counter = match full {
            Full::Connections => &self.refused_connections,
            Full::QueuedBytes => &self.refused_queued_bytes,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        full
    }

    pub(super) fn opened(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn closed(&self) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
    }

    pub(super) fn queued(&self, bytes: usize) {
        let before = self.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
        if before.saturating_add(bytes) > self.config.max_queued_bytes {
            self.over.notify_one();
        }
    }

    pub(super) fn drained(&self, bytes: usize) {
        self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Resolves when the queued bytes passed the bound since the last call.
    pub async fn overspent(&self) {
        self.over.notified().await;
    }
}

impl Hub {
    /// Closes the connections holding the most queued bytes until the node is back under its
    /// queued-bytes bound. Returns how many were closed.
    pub fn shed_queued_bytes(&self) -> usize {
        let budget = &self.budget;
        let bound = budget.config.max_queued_bytes;
        if budget.queued_bytes() <= bound {
            return 0;
        }
        let mut heavy: Vec<(usize, std::sync::Arc<super::Conn>)> = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock();
            for conn in shard.values().flat_map(|p| &p.conns) {
                let bytes = conn.outbox.queued_bytes();
                if bytes > 0 {
                    heavy.push((bytes, conn.clone()));
                }
            }
        }
        heavy.sort_unstable_by_key(|(bytes, _)| std::cmp::Reverse(*bytes));
        let mut closed = 0;
        for (_, conn) in heavy {
            if budget.queued_bytes() <= bound {
                break;
            }
            if let Some(dropped) = conn.outbox.shed(CloseReason::SlowConsumer) {
                Counters::add(&self.counters.deliveries_failed, dropped);
                self.counters.slow_consumers.fetch_add(1, Ordering::Relaxed);
                closed += 1;
            }
        }
        budget.shed.fetch_add(closed as u64, Ordering::Relaxed);
        if closed > 0 {
            tracing::warn!(
                closed,
                queued_bytes = budget.queued_bytes(),
                bound,
                "node queued-bytes budget exceeded: closed the heaviest readers"
            );
        }
        closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_leaves_room_for_the_rest_of_the_process() {
        assert_eq!(descriptor_reserve(200), 32);
        assert_eq!(descriptor_reserve(1024), 102);
        assert_eq!(descriptor_reserve(1 << 20), 1024);
        assert!(default_max_connections() >= 1);
    }

    #[test]
    fn admission_stops_at_either_bound() {
        let budget = Budget::new(BudgetConfig {
            max_connections: 2,
            max_queued_bytes: 100,
        });
        budget.opened();
        assert_eq!(budget.admit(), Ok(()));
        budget.opened();
        assert_eq!(budget.admit(), Err(Full::Connections));
        budget.closed();
        budget.queued(100);
        assert_eq!(budget.admit(), Err(Full::QueuedBytes));
        budget.drained(1);
        assert_eq!(budget.admit(), Ok(()));
        assert_eq!(budget.refused_connections.load(Ordering::Relaxed), 1);
        assert_eq!(budget.refused_queued_bytes.load(Ordering::Relaxed), 1);
    }
}
