//! What every connection does whatever its transport: wait for frames, send heartbeats, end
//! when the token expires, and leave the hub when it ends. Transports only frame the output.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use std::pin::Pin;

use tokio::time::{Instant, Sleep};

use crate::hub::{CloseReason, Conn, Counters, DirectSocket, Frame, Hub, local_frame};
use crate::wire::{self, local};

/// A registered connection's delivery loop. Dropping it removes the connection from the hub,
/// so a transport that ends for any reason (a close, an error, a panic) never leaks one.
pub struct Delivery {
    hub: Arc<Hub>,
    conn: Arc<Conn>,
    /// The one timer of the connection, armed for the earliest of the next heartbeat, the
    /// transport's keep-alive and the token's expiry. One rather than one each: every timer is
    /// a boxed entry that each idle connection keeps (issue 10). Made once: re-creating a timer
    /// on every wake-up showed in the fan-out profile.
    alarm: Pin<Box<Sleep>>,
    /// Connection-local `heartbeat` events on both transports (SPEC §12.3).
    next_heartbeat: Instant,
    /// The transport's keep-alive (WebSocket pings): when it is next due, and how often.
    keepalive: Option<(Instant, Duration)>,
    /// When to look at the token's expiry; `None` once it has been acted on. Armed at most
    /// [`MAX_TIMER`] ahead, so a token far in the future re-arms it instead of overflowing
    /// the clock (SPEC §12.26).
    expiry_check: Option<Instant>,
    /// When the token expires.
    token_expires: SystemTime,
    /// True while the expiry check is short of the expiry, so its coming means "look again".
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
    /// The keep-alive asked for with [`Delivery::keep_alive`] is due.
    KeepAlive,
}

impl Delivery {
    pub fn new(hub: Arc<Hub>, conn: Arc<Conn>, token_expires: SystemTime) -> Delivery {
        let now = Instant::now();
        let next_heartbeat = later(now, hub.config().heartbeat_interval);
        let (expiry_check, armed_short) = expiry_deadline(token_expires);
        Delivery {
            hub,
            conn,
            alarm: Box::pin(tokio::time::sleep_until(next_heartbeat.min(expiry_check))),
            next_heartbeat,
            keepalive: None,
            expiry_check: Some(expiry_check),
            token_expires,
            armed_short,
            batch: Vec::new(),
        }
    }

    /// Has [`Delivery::next`] answer [`Next::KeepAlive`] every `period`, the first a period
    /// from now.
    pub fn keep_alive(&mut self, period: Duration) {
        self.keepalive = Some((later(Instant::now(), period), period));
        self.rearm();
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
                () = &mut self.alarm => {
                    if self.on_alarm(Instant::now()) {
                        return Next::KeepAlive;
                    }
                }
            }
        }
    }

    /// Does what is due at `now` and re-arms; true when the keep-alive is due.
    fn on_alarm(&mut self, now: Instant) -> bool {
        if self.expiry_check.is_some_and(|at| at <= now) {
            if self.armed_short {
                let (at, short) = expiry_deadline(self.token_expires);
                self.expiry_check = Some(at);
                self.armed_short = short;
            } else {
                self.expiry_check = None;
                let frame = local_frame(&self.conn.player, local::TOKEN_EXPIRED, &wire::Empty {});
                self.conn
                    .outbox
                    .close(Some(frame), CloseReason::TokenExpired);
            }
        }
        if self.next_heartbeat <= now {
            self.next_heartbeat = later(now, self.hub.config().heartbeat_interval);
            self.hub
                .send_local(&self.conn, local::HEARTBEAT, &wire::Empty {});
        }
        let mut keep_alive = false;
        if let Some((at, period)) = &mut self.keepalive
            && *at <= now
        {
            *at = later(now, *period);
            keep_alive = true;
        }
        self.rearm();
        keep_alive
    }

    fn rearm(&mut self) {
        let mut at = self.next_heartbeat;
        if let Some(check) = self.expiry_check {
            at = at.min(check);
        }
        if let Some((due, _)) = self.keepalive {
            at = at.min(due);
        }
        self.alarm.as_mut().reset(at);
    }

    /// Publishers write to the socket themselves from now on, while it is idle (see
    /// [`Outbox::attach`](crate::hub::Outbox::attach)). Batches become rare, so the batch
    /// buffer is given back rather than kept for the connection's idle life.
    pub fn attach(&mut self, direct: Arc<dyn DirectSocket>) {
        self.release_batch();
        self.conn.outbox.attach(direct);
    }

    /// Gives back the batch buffer: for a connection whose batches have become rare.
    pub fn release_batch(&mut self) {
        self.batch = Vec::new();
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

/// `now + period`, or a year ahead ([`MAX_TIMER`]) for a period the clock cannot add.
fn later(now: Instant, period: Duration) -> Instant {
    now.checked_add(period).unwrap_or_else(|| now + MAX_TIMER)
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
    use crate::hub::{ConnKind, Event, FakeSocket, HubConfig, Join, PlayerId};
    use bytes::Bytes;
    use serde_json::value::RawValue;

    /// A hub whose heartbeat never comes within a test, so only the token's expiry and the
    /// outbox can wake a delivery.
    async fn delivery(player: &PlayerId, token_expires: SystemTime) -> Delivery {
        with_heartbeat(
            player,
            token_expires,
            Duration::from_secs(100 * 365 * 86_400),
        )
        .await
    }

    async fn with_heartbeat(
        player: &PlayerId,
        token_expires: SystemTime,
        heartbeat_interval: Duration,
    ) -> Delivery {
        let hub = Arc::new(Hub::new(HubConfig {
            heartbeat_interval,
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

    /// What the one timer must keep apart: heartbeats every 30 s, keep-alives every 20 s, and
    /// the token's expiry at 70 s, each on its own schedule, whichever comes first.
    #[tokio::test(start_paused = true)]
    async fn heartbeats_keep_alives_and_the_expiry_each_keep_their_own_schedule() {
        let p: PlayerId = "eve".into();
        let start = Instant::now();
        let expires = SystemTime::now() + Duration::from_secs(70);
        let mut d = with_heartbeat(&p, expires, Duration::from_secs(30)).await;
        d.keep_alive(Duration::from_secs(20));
        let mut seen = Vec::new();
        loop {
            let next = d.next().await;
            let at = start.elapsed().as_secs();
            match next {
                Next::KeepAlive => seen.push(format!("{at} keep-alive")),
                Next::Frames(frames) => {
                    for frame in &frames {
                        seen.push(format!("{at} {}", event_type(frame)));
                    }
                    d.finished(frames, true);
                }
                Next::Close(reason) => {
                    seen.push(format!("{at} close {}", reason.as_str()));
                    break;
                }
            }
        }
        assert_eq!(
            seen,
            [
                "20 keep-alive",
                "30 heartbeat",
                "40 keep-alive",
                // Both at once: the heartbeat is queued, and the keep-alive answered first.
                "60 keep-alive",
                "60 heartbeat",
                "70 token_expired",
                "70 close token_expired",
            ]
        );
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

    /// Once the opening is written and a socket attached, a publisher writes an event to the
    /// idle connection itself: the task is not woken, and keeps no batch buffer for it.
    #[tokio::test]
    async fn after_attaching_publishers_write_to_the_socket_and_the_batch_buffer_goes() {
        let p: PlayerId = "fay".into();
        let mut d = delivery(&p, SystemTime::now() + Duration::from_secs(3600)).await;
        assert!(
            d.batch.capacity() > 0,
            "the opening's batch is kept until then"
        );
        let socket = Arc::new(FakeSocket::default());
        d.conn().outbox.written();
        d.attach(socket.clone());
        assert_eq!(d.batch.capacity(), 0);
        let data = RawValue::from_string("1".into()).unwrap();
        let event = Event {
            event_type: "chat",
            room_id: None,
            data: &data,
        };
        d.hub().publish(&p, &event).await.unwrap();
        // The fake socket does not frame: what it took is the one event's JSON.
        let frame = Frame {
            seq: None,
            json: Bytes::from(socket.wire.lock().clone()),
        };
        assert_eq!(event_type(&frame), "chat", "the publisher wrote it");
        let woken = tokio::time::timeout(Duration::from_millis(50), d.next()).await;
        assert!(woken.is_err(), "nothing left for the task");
    }
}
