//! A node's background work in a cluster, one owned task with four loops:
//! - the **subscriber** holds the node's channel and hands each message to the hub;
//! - the **supervisor** sends the heartbeat and report every second, clears dead nodes, and,
//!   when Redis may have missed something, re-registers this node's connections and reads the
//!   history its players may have missed before the node counts as available again; between
//!   beats it clears forgotten players out of a sample of rooms;
//! - the **catch-up** loop reads history for players whose live events skipped a number;
//! - the **leaver** removes ended connections from Redis in batches.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use redis::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::report::NodeReport;
use super::{HEARTBEAT_EVERY, NODE_TTL, RESPONSE_TIMEOUT, RedisBackplane, parse_entries};
use crate::hub::{Frame, Hub, PlayerId};
use crate::lifecycle::Notice;
use crate::wire::EventTemplate;

/// Wait between attempts to (re)open the subscription.
const RESUBSCRIBE_AFTER: Duration = Duration::from_millis(250);
/// Players whose history is read at once after Redis came back.
const CATCH_UP_CONCURRENCY: usize = 32;
/// Ended connections removed per script call.
const LEAVES_PER_CALL: usize = 256;
/// Players at most whose `player_offline` one heartbeat decides; the rest wait a beat.
const OFFLINE_PER_BEAT: usize = 1000;

/// Runs until `shutdown`, then takes the node out of the cluster.
pub async fn run(backplane: Arc<RedisBackplane>, hub: Arc<Hub>, shutdown: CancellationToken) {
    let (gaps_tx, gaps_rx) = mpsc::unbounded_channel();
    let leaves = backplane.leaves_rx.lock().take();
    tokio::join!(
        subscriber(&backplane, &hub, &shutdown, gaps_tx.clone()),
        supervisor(&backplane, &hub, &shutdown, gaps_tx),
        catch_up(&backplane, &hub, &shutdown, gaps_rx),
        leaver(&backplane, &hub, &shutdown, leaves),
    );
    let retired: Result<i64, _> = backplane
        .scripts
        .retire
        .prepare_invoke()
        .arg(backplane.prefix())
        .arg(backplane.node_id())
        .arg(RedisBackplane::ttl_ms(backplane.config.session_ttl))
        .arg(RedisBackplane::grace_ms(&hub))
        .invoke_async(&mut backplane.redis.clone())
        .await;
    if retired.is_err() {
        tracing::warn!(
            "cluster: could not retire this node; the others clear it within {NODE_TTL:?}"
        );
    }
}

async fn subscriber(
    backplane: &RedisBackplane,
    hub: &Hub,
    shutdown: &CancellationToken,
    gaps: mpsc::UnboundedSender<(PlayerId, u64)>,
) {
    let channel = backplane.channel();
    while !shutdown.is_cancelled() {
        let opened = tokio::select! {
            _ = shutdown.cancelled() => return,
            opened = tokio::time::timeout(RESPONSE_TIMEOUT, backplane.client.get_async_pubsub()) => opened,
        };
        if let Ok(Ok(mut pubsub)) = opened
            && pubsub.subscribe(&channel).await.is_ok()
        {
            backplane.set_state(Some(true), None);
            let mut messages = pubsub.into_on_message();
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    msg = messages.next() => match msg {
                        Some(msg) => handle(hub, msg.get_payload_bytes(), &gaps),
                        None => break,
                    },
                }
            }
            // Messages sent while nobody listened are lost: history fills them in later. Redis
            // itself may have restarted, so the node is available again only after a heartbeat
            // has gone through (and re-registered it), not as soon as it is subscribed again.
            backplane.set_state(Some(false), Some(false));
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(RESUBSCRIBE_AFTER) => {}
        }
    }
}

async fn supervisor(
    backplane: &RedisBackplane,
    hub: &Hub,
    shutdown: &CancellationToken,
    gaps: mpsc::UnboundedSender<(PlayerId, u64)>,
) {
    let mut every = tokio::time::interval(HEARTBEAT_EVERY / 4);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_beat: Option<tokio::time::Instant> = None;
    let mut missed_beats = 0u32;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        // Beat every second, and sooner while the node waits to become available.
        let due = last_beat.is_none_or(|at| at.elapsed() >= HEARTBEAT_EVERY)
            || (backplane.subscribed.load(Ordering::Acquire) && !backplane.is_available());
        if !due {
            continue;
        }
        last_beat = Some(tokio::time::Instant::now());
        let report = NodeReport::take(hub, backplane.node_id()).to_json();
        let beat: Result<Vec<String>, _> = backplane
            .scripts
            .heartbeat
            .prepare_invoke()
            .arg(backplane.prefix())
            .arg(backplane.node_id())
            .arg(report)
            .arg(RedisBackplane::ttl_ms(NODE_TTL))
            .arg(RedisBackplane::ttl_ms(backplane.config.session_ttl))
            .arg(RedisBackplane::grace_ms(hub))
            .invoke_async(&mut backplane.redis.clone())
            .await;
        let dead = match beat {
            Ok(dead) => {
                missed_beats = 0;
                dead
            }
            Err(e) => {
                backplane.failed(&e);
                // One slow beat on a busy machine is not an outage; two in a row are.
                missed_beats += 1;
                if missed_beats >= 2 {
                    backplane.set_state(None, Some(false));
                }
                continue;
            }
        };
        for node in dead {
            tracing::info!(node = %node, "cluster: a node stopped reporting; its connections were cleared");
        }
        // Forgotten players leave rooms lazily when a room is read; this catches rooms nobody
        // reads, so the figures drop them too. A failure is simply tried again next beat.
        let _ = backplane.sweep_rooms().await;
        if hub.lifecycle().is_some() {
            offline_due(backplane, hub).await;
        }
        if !backplane.subscribed.load(Ordering::Acquire) {
            continue;
        }
        if backplane.resync_needed.swap(false, Ordering::AcqRel) {
            if let Err(e) = resync(backplane, hub).await {
                backplane.failed(&e);
                backplane.resync_needed.store(true, Ordering::Release);
                continue;
            }
            // Park live events, then read what was missed, for every player held here.
            for (player, after) in hub.begin_catch_up() {
                let _ = gaps.send((player, after));
            }
        }
        backplane.set_state(None, Some(true));
    }
}

/// Tells Redis exactly which connections this node holds.
async fn resync(backplane: &RedisBackplane, hub: &Hub) -> Result<(), redis::RedisError> {
    let mut invocation = backplane.scripts.resync.prepare_invoke();
    invocation
        .arg(backplane.prefix())
        .arg(backplane.node_id())
        .arg(RedisBackplane::ttl_ms(backplane.config.session_ttl));
    for (player, conns) in hub.local_connections() {
        let opened: Vec<_> = conns
            .iter()
            .filter(|c| c.generation() > 0 && c.outbox.closing().is_none())
            .collect();
        let Some(first) = opened.first() else {
            continue;
        };
        let generation = opened.iter().map(|c| c.generation()).max().unwrap_or(1);
        invocation
            .arg(&*player)
            .arg(first.session())
            .arg(generation)
            .arg(opened.len());
        for c in &opened {
            invocation.arg(backplane.member(&c.id, c.kind));
        }
    }
    let _: i64 = invocation
        .invoke_async(&mut backplane.redis.clone())
        .await?;
    Ok(())
}

async fn catch_up(
    backplane: &RedisBackplane,
    hub: &Hub,
    shutdown: &CancellationToken,
    gaps: mpsc::UnboundedReceiver<(PlayerId, u64)>,
) {
    let work = tokio_stream_from(gaps).for_each_concurrent(
        CATCH_UP_CONCURRENCY,
        |(player, after)| async move {
            let start = match after.checked_add(1) {
                Some(next) if after > 0 => format!("{next}-0"),
                _ => "-".to_owned(),
            };
            let read: Result<Value, _> = backplane
                .scripts
                .history
                .prepare_invoke()
                .arg(backplane.prefix())
                .arg(&*player)
                .arg(start)
                .arg(backplane.config.history_size.max(1))
                .invoke_async(&mut backplane.redis.clone())
                .await;
            let read = match read {
                Ok(Value::Array(parts)) if parts.len() == 2 => {
                    let base = redis::from_redis_value_ref::<String>(&parts[0])
                        .ok()
                        .and_then(|b| b.parse::<u64>().ok());
                    parse_entries(&parts[1]).map(|entries| {
                        let frames = entries
                            .into_iter()
                            .map(|(seq, _, json)| Frame {
                                seq: Some(seq),
                                json: json.into(),
                            })
                            .collect();
                        (base, frames)
                    })
                }
                Ok(_) => None,
                Err(e) => {
                    backplane.failed(&e);
                    None
                }
            };
            hub.finish_catch_up(&player, read);
        },
    );
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = work => {}
    }
}

/// An unbounded receiver as a stream.
fn tokio_stream_from<T>(mut rx: mpsc::UnboundedReceiver<T>) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Sends `player_offline` for the players whose grace ended with no connection anywhere; the
/// script hands each one to exactly one node.
async fn offline_due(backplane: &RedisBackplane, hub: &Hub) {
    let due: Result<Vec<String>, _> = backplane
        .scripts
        .offline_due
        .prepare_invoke()
        .arg(backplane.prefix())
        .arg(RedisBackplane::ttl_ms(NODE_TTL))
        .arg(OFFLINE_PER_BEAT)
        .invoke_async(&mut backplane.redis.clone())
        .await;
    match due {
        Ok(players) => {
            for player in players {
                hub.notify(|| Notice::offline(PlayerId::from(player)));
            }
        }
        // Nothing was taken off the list: the next beat tries again.
        Err(e) => {
            backplane.failed(&e);
        }
    }
}

async fn leaver(
    backplane: &RedisBackplane,
    hub: &Hub,
    shutdown: &CancellationToken,
    rx: Option<mpsc::UnboundedReceiver<(PlayerId, String)>>,
) {
    let Some(mut rx) = rx else { return };
    let mut batch = Vec::with_capacity(LEAVES_PER_CALL);
    loop {
        batch.clear();
        let got = tokio::select! {
            _ = shutdown.cancelled() => return,
            got = rx.recv_many(&mut batch, LEAVES_PER_CALL) => got,
        };
        if got == 0 {
            return;
        }
        let mut invocation = backplane.scripts.leave.prepare_invoke();
        invocation
            .arg(backplane.prefix())
            .arg(backplane.node_id())
            .arg(RedisBackplane::ttl_ms(backplane.config.session_ttl))
            .arg(RedisBackplane::grace_ms(hub));
        for (player, member) in &batch {
            invocation.arg(&**player).arg(member);
        }
        let left: Result<i64, _> = invocation.invoke_async(&mut backplane.redis.clone()).await;
        if let Err(e) = left {
            // The re-registration after Redis returns removes what this batch could not.
            backplane.failed(&e);
            backplane.resync_needed.store(true, Ordering::Release);
        }
    }
}

/// Acts on one message from the node's channel (see `scripts.rs` for the formats). Anything
/// malformed is ignored: it can only come from a different version or a stray publisher.
fn handle(hub: &Hub, payload: &[u8], gaps: &mpsc::UnboundedSender<(PlayerId, u64)>) {
    let Ok(text) = std::str::from_utf8(payload) else {
        return;
    };
    match text.as_bytes().first() {
        Some(b'E') => {
            let Some((header, body)) = text.split_once('\n') else {
                return;
            };
            let mut lens = header[1..].split_whitespace().map(str::parse::<usize>);
            let (Some(Ok(head_len)), Some(Ok(tail_len))) = (lens.next(), lens.next()) else {
                return;
            };
            let Some(end) = head_len.checked_add(tail_len) else {
                return;
            };
            let (Some(head), Some(tail), Some(rest)) = (
                body.get(..head_len),
                body.get(head_len..end),
                body.get(end..),
            ) else {
                return;
            };
            let template = EventTemplate {
                head: head.to_owned(),
                tail: tail.to_owned(),
            };
            let frames = rest.lines().filter_map(|line| {
                let (player, seq) = line.split_once(' ')?;
                let seq = seq.parse::<u64>().ok()?;
                let json = template.fill(seq, player);
                Some((
                    player,
                    Frame {
                        seq: Some(seq),
                        json,
                    },
                ))
            });
            hub.deliver_all(frames, |player, after| {
                let _ = gaps.send((PlayerId::from(player), after));
            });
        }
        Some(b'T') => {
            let mut parts = text[1..].split_whitespace();
            if let (Some(player), Some(Ok(generation)), Some(session)) = (
                parts.next(),
                parts.next().map(str::parse::<u64>),
                parts.next(),
            ) {
                hub.terminate(player, generation, session);
            }
        }
        Some(b'X') => {
            let mut lines = text.lines();
            let Some(player) = lines.next().and_then(|l| l.get(2..)) else {
                return;
            };
            let ids: Vec<&str> = lines.collect();
            hub.evict(player, &ids);
        }
        _ => {}
    }
}
