//! Single process: `player_offline` once a player has had no connection for the whole grace.
//!
//! The hub reports each time a player's last connection closes; this task looks again when
//! the grace has passed and asks the hub, under the player's lock, whether the player stayed
//! without a connection all that time. A reconnect within the grace means no notice at all,
//! and a later close starts its own grace. (In a cluster Redis keeps the same rule; see
//! `backplane/redis`.)

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Notice, Notices, PENDING_OFFLINE_CAPACITY};
use crate::hub::{Hub, PlayerId};

pub async fn offline_after_grace(
    hub: Arc<Hub>,
    notices: Notices,
    mut checks: mpsc::Receiver<PlayerId>,
    shutdown: CancellationToken,
) {
    let grace = notices.grace;
    // The grace is the same for everyone, so checks fall due in the order they came.
    let mut due: VecDeque<(Instant, PlayerId)> = VecDeque::new();
    loop {
        let next = due.front().map(|(at, _)| *at);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            got = checks.recv() => match got {
                Some(player) if due.len() < PENDING_OFFLINE_CAPACITY => {
                    due.push_back((Instant::now() + grace, player));
                }
                Some(_) => {
                    notices.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("lifecycle: too many players waiting out the grace; an offline notice was dropped");
                }
                None => return,
            },
            _ = sleep_until(next), if next.is_some() => {
                let now = Instant::now();
                while let Some((at, _)) = due.front() && *at <= now {
                    let Some((_, player)) = due.pop_front() else { break };
                    if hub.settle_offline(&player) {
                        notices.send(Notice::offline(player));
                    }
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
