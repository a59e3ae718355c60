//! What every connection does whatever its transport: wait for frames, send heartbeats, end
//! when the token expires, and leave the hub when it ends. Transports only frame the output.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use std::pin::Pin;

use tokio::time::{Instant, Interval, MissedTickBehavior, Sleep};

use crate::hub::{CloseReason, Conn, Counters, Frame, Hub, local_frame};
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
        self.hub.disconnect(&self.conn);
        if self.conn.outbox.closing() == Some(CloseReason::SlowConsumer) {
            tracing::debug!(player = %self.conn.player, conn = %self.conn.id, "slow consumer closed");
        }
    }
}
