//! What every connection does whatever its transport: wait for frames, send heartbeats, end
//! when the token expires, and leave the hub when it ends. Transports only frame the output.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use std::pin::Pin;

use tokio::time::{Instant, Interval, MissedTickBehavior, Sleep};

use crate::hub::{CloseReason, Conn, Counters, DirectSocket, Frame, Hub, local_frame};
use crate::wire::{self, local};

/// A registered connection's delivery loop. Dropping it removes the connection from the hub,
/// so a transport that ends for any reason (a close, an error, a panic) never leaks one.
pub struct Delivery {
    hub: Arc<Hub>,
    conn: Arc<Conn>,
    /// Connection-local `heartbeat` events on both transports (SPEC §12.3).
    heartbeat: Interval,
    /// Fires when the token expires (plus leeway). Made once: re-creating a timer on every
    /// wake-up showed in the fan-out profile.
    expiry: Pin<Box<Sleep>>,
    /// Set once the expiry has been acted on, so the fired timer is not polled again.
    expired: bool,
    /// When the token expires. The timer is armed at most [`MAX_TIMER`] ahead, so a token far
    /// in the future re-arms it instead of overflowing the clock (SPEC §12.26).
    token_expires: SystemTime,
    /// True while the timer is armed short of the expiry, so its firing means "look again".
    armed_short: bool,
    /// Frames moved out of the outbox, reused between batches.
    batch: Vec<Frame>,
}

/// The next thing a transport must do.
pub enum Next {
    /// Write these frames, then hand the vector back to [`Delivery::finished`].
    Frames(Vec<Frame>),
    /// Write the transport's end (close frame, end of stream) and stop.
    Close(CloseReason),
}

impl Delivery {
    pub fn new(hub: Arc<Hub>, conn: Arc<Conn>, token_expires: SystemTime) -> Delivery {
        let period = hub.config().heartbeat_interval;
        let mut heartbeat = tokio::time::interval_at(Instant::now() + period, period);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let (deadline, armed_short) = expiry_deadline(token_expires);
        Delivery {
            hub,
            conn,
            heartbeat,
            expiry: Box::pin(tokio::time::sleep_until(deadline)),
            expired: false,
            token_expires,
            armed_short,
            batch: Vec::new(),
        }
    }

    pub fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Waits for the next batch or the end. Cancel-safe.
    pub async fn next(&mut self) -> Next {
        loop {
            tokio::select! {
                biased;
                close = self.conn.outbox.next(&mut self.batch) => {
                    return match close {
                        None => Next::Frames(std::mem::take(&mut self.batch)),
                        Some(reason) => Next::Close(reason),
                    };
                }
                _ = &mut self.expiry, if !self.expired => {
                    if self.armed_short {
                        let (deadline, short) = expiry_deadline(self.token_expires);
                        self.armed_short = short;
                        self.expiry.as_mut().reset(deadline);
                        continue;
                    }
                    self.expired = true;
                    let frame = local_frame(&self.conn.player, local::TOKEN_EXPIRED, &wire::Empty {});
                    self.conn.outbox.close(Some(frame), CloseReason::TokenExpired);
                }
                _ = self.heartbeat.tick() => {
                    self.hub.send_local(&self.conn, local::HEARTBEAT, &wire::Empty {});
                }
            }
        }
    }

    /// Publishers write to the socket themselves from now on, while it is idle (see
    /// [`Outbox::attach`](crate::hub::Outbox::attach)). Batches become rare, so the batch
    /// buffer is given back rather than kept for the connection's idle life.
    pub fn attach(&mut self, direct: Arc<dyn DirectSocket>) {
        self.batch = Vec::new();
        self.conn.outbox.attach(direct);
    }

    /// Counts a batch as delivered or lost, and keeps its buffer for the next one.
    pub fn finished(&mut self, mut frames: Vec<Frame>, written: bool) {
        let stream = frames.iter().filter(|f| f.seq.is_some()).count();
        let counter = if written {
            &self.hub.counters.deliveries_ok
        } else {
            &self.hub.counters.deliveries_failed
        };
        Counters::add(counter, stream);
        frames.clear();
        self.batch = frames;
    }
}

/// The longest a timer is armed for: a year is far inside what every clock represents.
const MAX_TIMER: Duration = Duration::from_secs(365 * 86_400);

/// When to look at the token's expiry next: at the expiry itself, or a year from now when that
/// is further off (a token's `exp` can be as large as a client signs it), and whether it was
/// cut short.
fn expiry_deadline(token_expires: SystemTime) -> (Instant, bool) {
    let left = token_expires
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    (Instant::now() + left.min(MAX_TIMER), left > MAX_TIMER)
}

impl Drop for Delivery {
    fn drop(&mut self) {
        // Publishers stop writing to the socket before the transport writes its end.
        self.conn.outbox.detach();
        self.hub.disconnect(&self.conn);
        if self.conn.outbox.closing() == Some(CloseReason::SlowConsumer) {
            tracing::debug!(player = %self.conn.player, conn = %self.conn.id, "slow consumer closed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::{ConnKind, Event, HubConfig, Join, PlayerId};
    use serde_json::value::RawValue;

    /// A hub whose heartbeat never comes within a test, so only the token's expiry and the
    /// outbox can wake a delivery.
    async fn delivery(player: &PlayerId, token_expires: SystemTime) -> Delivery {
        let hub = Arc::new(Hub::new(HubConfig {
            heartbeat_interval: Duration::from_secs(100 * 365 * 86_400),
            ..HubConfig::default()
        }));
        let conn = hub
            .connect(Join {
                player,
                kind: ConnKind::WebSocket,
                session_id: None,
                cursor: None,
            })
            .await
            .unwrap();
        let mut delivery = Delivery::new(hub, conn, token_expires);
        // The `connected` event.
        let Next::Frames(frames) = delivery.next().await else {
            panic!("connected first");
        };
        delivery.finished(frames, true);
        delivery
    }

    fn event_type(frame: &Frame) -> String {
        let v: serde_json::Value = serde_json::from_slice(&frame.json).unwrap();
        v["event_type"].as_str().unwrap().to_owned()
    }

    // Paused time moves tokio's clock, not SystemTime: the token's expiry stays as far off as it
    // was, so each test says what happens when that much time has passed on the timer alone.
    #[tokio::test(start_paused = true)]
    async fn a_token_ends_the_connection_when_it_expires_and_not_before() {
        let p: PlayerId = "ann".into();
        let hour = Duration::from_secs(3600);
        let mut d = delivery(&p, SystemTime::now() + hour).await;
        let early = tokio::time::timeout(hour - Duration::from_secs(60), d.next()).await;
        assert!(early.is_err(), "nothing before the token expires");
        let Next::Frames(frames) = tokio::time::timeout(hour, d.next())
            .await
            .expect("token_expired within the hour")
        else {
            panic!("token_expired goes out before the close");
        };
        assert_eq!(frames.len(), 1);
        assert_eq!(event_type(&frames[0]), "token_expired");
        d.finished(frames, true);
        assert!(matches!(
            d.next().await,
            Next::Close(CloseReason::TokenExpired)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_years_ahead_is_not_taken_as_expired_when_the_timer_cap_passes() {
        let p: PlayerId = "ben".into();
        let mut d = delivery(&p, SystemTime::now() + 2 * MAX_TIMER).await;
        let after_the_cap = tokio::time::timeout(MAX_TIMER + MAX_TIMER / 10, d.next()).await;
        assert!(after_the_cap.is_err(), "the timer re-armed instead");
        assert_eq!(d.conn().outbox.closing(), None);
    }

    #[tokio::test]
    async fn written_stream_frames_count_as_delivered_and_unwritten_ones_as_failed() {
        let p: PlayerId = "cat".into();
        let mut d = delivery(&p, SystemTime::now() + Duration::from_secs(3600)).await;
        let counters = |d: &Delivery| {
            let c = &d.hub().counters;
            (
                c.deliveries_ok.load(std::sync::atomic::Ordering::Relaxed),
                c.deliveries_failed
                    .load(std::sync::atomic::Ordering::Relaxed),
            )
        };
        assert_eq!(counters(&d), (0, 0), "`connected` is no delivery");
        let data = RawValue::from_string("1".into()).unwrap();
        let event = Event {
            event_type: "chat",
            room_id: None,
            data: &data,
        };
        for written in [true, false] {
            d.hub().publish(&p, &event).await.unwrap();
            d.hub().publish(&p, &event).await.unwrap();
            let Next::Frames(frames) = d.next().await else {
                panic!("two events");
            };
            assert_eq!(frames.len(), 2);
            d.finished(frames, written);
        }
        assert_eq!(counters(&d), (2, 2));
    }

    #[tokio::test]
    async fn dropping_a_delivery_leaves_the_hub() {
        let p: PlayerId = "dan".into();
        let d = delivery(&p, SystemTime::now() + Duration::from_secs(3600)).await;
        let hub = Arc::clone(d.hub());
        assert_eq!(hub.stats().connections(), 1);
        drop(d);
        assert_eq!(hub.stats().connections(), 0);
    }
}
