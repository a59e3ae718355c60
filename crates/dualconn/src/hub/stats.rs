//! Counters kept on the hot path: plain relaxed atomics, never a lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::conn::ConnKind;

/// Running totals since start. Current counts (connections, players) are not kept here: they
/// are read off the player shards when asked, so they can never drift from the truth.
#[derive(Default)]
pub struct Counters {
    /// Stream events times the connections they were addressed to, replays included (SPEC
    /// §12.25): every delivery counted below was first counted here.
    pub messages_sent: AtomicU64,
    /// Stream events written to a socket.
    pub deliveries_ok: AtomicU64,
    /// Stream events dropped: by overflow, or queued when a connection ended.
    pub deliveries_failed: AtomicU64,
    /// Connections closed because their outbox overflowed.
    pub slow_consumers: AtomicU64,
    /// Connections evicted by the per-player cap.
    pub evictions: AtomicU64,
    /// Connections ended by a new session.
    pub session_replacements: AtomicU64,
    pub ws_established: Establishment,
    pub sse_established: Establishment,
}

/// Connection set-up times for one transport.
#[derive(Default)]
pub struct Establishment {
    pub count: AtomicU64,
    pub total_us: AtomicU64,
    pub max_us: AtomicU64,
}

impl Establishment {
    pub fn record(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.total_us.fetch_add(us, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
    }

    /// (count, average ms, max ms)
    pub fn summary(&self) -> (u64, f64, f64) {
        let count = self.count.load(Ordering::Relaxed);
        let total = self.total_us.load(Ordering::Relaxed) as f64;
        let avg = if count == 0 {
            0.0
        } else {
            total / count as f64 / 1000.0
        };
        (
            count,
            avg,
            self.max_us.load(Ordering::Relaxed) as f64 / 1000.0,
        )
    }
}

/// A copy of the running totals: one node's, or every node's added up.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CounterTotals {
    pub messages_sent: u64,
    pub deliveries_ok: u64,
    pub deliveries_failed: u64,
    pub slow_consumers: u64,
    pub evictions: u64,
    pub session_replacements: u64,
    pub ws_established: u64,
    pub sse_established: u64,
}

impl std::ops::AddAssign for CounterTotals {
    fn add_assign(&mut self, o: CounterTotals) {
        self.messages_sent = self.messages_sent.saturating_add(o.messages_sent);
        self.deliveries_ok = self.deliveries_ok.saturating_add(o.deliveries_ok);
        self.deliveries_failed = self.deliveries_failed.saturating_add(o.deliveries_failed);
        self.slow_consumers = self.slow_consumers.saturating_add(o.slow_consumers);
        self.evictions = self.evictions.saturating_add(o.evictions);
        self.session_replacements = self
            .session_replacements
            .saturating_add(o.session_replacements);
        self.ws_established = self.ws_established.saturating_add(o.ws_established);
        self.sse_established = self.sse_established.saturating_add(o.sse_established);
    }
}

impl Counters {
    pub fn totals(&self) -> CounterTotals {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CounterTotals {
            messages_sent: get(&self.messages_sent),
            deliveries_ok: get(&self.deliveries_ok),
            deliveries_failed: get(&self.deliveries_failed),
            slow_consumers: get(&self.slow_consumers),
            evictions: get(&self.evictions),
            session_replacements: get(&self.session_replacements),
            ws_established: get(&self.ws_established.count),
            sse_established: get(&self.sse_established.count),
        }
    }

    pub fn establishment(&self, kind: ConnKind) -> &Establishment {
        match kind {
            ConnKind::WebSocket => &self.ws_established,
            ConnKind::Sse => &self.sse_established,
        }
    }

    pub fn add(counter: &AtomicU64, n: usize) {
        if n > 0 {
            counter.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/monitoring/performance` reports these as milliseconds: an average and a maximum.
    #[test]
    fn set_up_times_are_summarized_as_count_mean_and_maximum_in_milliseconds() {
        let times = Establishment::default();
        assert_eq!(
            times.summary(),
            (0, 0.0, 0.0),
            "nothing yet, no division by zero"
        );
        times.record(Duration::from_micros(1_500));
        times.record(Duration::from_micros(4_500));
        times.record(Duration::from_micros(3_000));
        assert_eq!(times.summary(), (3, 3.0, 4.5));
    }

    /// A cluster's figures are every node's added up, field by field, never wrapping.
    #[test]
    fn totals_add_field_by_field_and_saturate() {
        let one = CounterTotals {
            messages_sent: 1,
            deliveries_ok: 2,
            deliveries_failed: 3,
            slow_consumers: 4,
            evictions: 5,
            session_replacements: 6,
            ws_established: 7,
            sse_established: 8,
        };
        let mut sum = one;
        sum += CounterTotals {
            messages_sent: 10,
            deliveries_ok: 20,
            deliveries_failed: 30,
            slow_consumers: 40,
            evictions: 50,
            session_replacements: 60,
            ws_established: 70,
            sse_established: u64::MAX,
        };
        assert_eq!(
            sum,
            CounterTotals {
                messages_sent: 11,
                deliveries_ok: 22,
                deliveries_failed: 33,
                slow_consumers: 44,
                evictions: 55,
                session_replacements: 66,
                ws_established: 77,
                sse_established: u64::MAX,
            }
        );
    }
}
