//! Counting what arrived: per-connection sequence checks and latency.
//!
//! Every connection keeps one [`StreamCheck`]. A player's stream numbers its events one apart
//! (SPEC §3), so a jump is a gap and a number at or below the last one seen is a duplicate.
//! Events lost before the first or after the last one seen are found against what the
//! publisher was told ([`Expected`]), so a dropped first or last event counts too.

use hdrhistogram::Histogram;
use serde::Deserialize;

/// One connection's view of its player's stream.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StreamCheck {
    /// First sequence number seen; 0 until one is.
    pub first: u64,
    pub last: u64,
    /// Distinct events seen.
    pub unique: u64,
    /// Numbers skipped between events seen.
    pub gaps: u64,
    /// Events whose number was not above the last one seen.
    pub dups: u64,
}

impl StreamCheck {
    pub fn see(&mut self, seq: u64) {
        if self.unique == 0 {
            self.first = seq;
            self.last = seq;
            self.unique = 1;
        } else if seq > self.last {
            self.gaps += seq - self.last - 1;
            self.last = seq;
            self.unique += 1;
        } else {
            self.dups += 1;
        }
    }

    /// Events the publisher put in this stream that this connection never saw at either end.
    pub fn missing_at_ends(&self, expected: Option<Expected>) -> u64 {
        let Some(e) = expected else { return 0 };
        if self.unique == 0 {
            return e.last + 1 - e.first;
        }
        self.first.saturating_sub(e.first) + e.last.saturating_sub(self.last)
    }
}

/// The first and last sequence numbers the publisher was given for one player.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    pub first: u64,
    pub last: u64,
}

impl Expected {
    pub fn widen(slot: &mut Option<Expected>, seq: u64) {
        *slot = Some(match *slot {
            None => Expected {
                first: seq,
                last: seq,
            },
            Some(e) => Expected {
                first: e.first.min(seq),
                last: e.last.max(seq),
            },
        });
    }
}

/// What a receiver needs from one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Msg {
    Connected,
    /// `recovery`: whether history covered the whole gap.
    Recovery(bool),
    /// A stream event: its number and the publisher's send time (Unix ns), if it had one.
    Stream {
        seq: u64,
        sent_ns: Option<u64>,
    },
    /// Heartbeats and anything else connection-local.
    Other,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    event_type: &'a str,
    #[serde(default)]
    sequence_number: Option<u64>,
    #[serde(default)]
    data: Option<Data>,
}

#[derive(Deserialize, Default)]
struct Data {
    #[serde(default)]
    t: Option<u64>,
    #[serde(default)]
    recovered: Option<bool>,
}

/// Reads the envelope of SPEC §3. `None` when it is not one.
pub fn parse_envelope(json: &[u8]) -> Option<Msg> {
    let env: Envelope<'_> = serde_json::from_slice(json).ok()?;
    if let Some(seq) = env.sequence_number {
        return Some(Msg::Stream {
            seq,
            sent_ns: env.data.and_then(|d| d.t),
        });
    }
    Some(match env.event_type {
        "connected" => Msg::Connected,
        "recovery" => Msg::Recovery(env.data.and_then(|d| d.recovered).unwrap_or(false)),
        _ => Msg::Other,
    })
}

/// Microsecond latencies up to a minute, three significant figures.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// A histogram as `[value, count]` pairs, to cross a process boundary.
pub fn to_pairs(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

pub fn add_pairs(h: &mut Histogram<u64>, pairs: &[(u64, u64)]) {
    for &(v, n) in pairs {
        h.saturating_record_n(v, n);
    }
}

pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_and_duplicates_are_counted_exactly() {
        let mut c = StreamCheck::default();
        for s in [10, 11, 13, 13, 14, 12, 17] {
            c.see(s);
        }
        assert_eq!(c.first, 10);
        assert_eq!(c.last, 17);
        assert_eq!(c.unique, 5);
        assert_eq!(c.gaps, 1 + 2);
        assert_eq!(c.dups, 2);
        let e = Expected { first: 8, last: 19 };
        assert_eq!(c.missing_at_ends(Some(e)), 2 + 2);
        assert_eq!(StreamCheck::default().missing_at_ends(Some(e)), 12);
    }

    #[test]
    fn envelopes_are_read() {
        let ev = br#"{"event_type":"bench","timestamp":"x","sequence_number":42,"player_id":"p1","data":{"t":7,"k":1}}"#;
        assert_eq!(
            parse_envelope(ev),
            Some(Msg::Stream {
                seq: 42,
                sent_ns: Some(7)
            })
        );
        assert_eq!(
            parse_envelope(br#"{"event_type":"connected","data":{"connection_id":"a"}}"#),
            Some(Msg::Connected)
        );
        assert_eq!(
            parse_envelope(br#"{"event_type":"recovery","data":{"recovered":true}}"#),
            Some(Msg::Recovery(true))
        );
        assert_eq!(parse_envelope(b"nope"), None);
    }
}
