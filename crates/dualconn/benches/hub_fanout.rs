//! In-process fan-out throughput of the hub: publish to players with a WebSocket-like and an
//! SSE-like connection each, while one task per connection drains its outbox. No sockets, so
//! it measures exactly what the hub's publish path costs (numbering, serialization, history,
//! outbox pushes, wake-ups, drains) and nothing of the kernel.
//!
//! `cargo bench -p dualconn --bench hub_fanout` prints one line per run and the median.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dualconn::hub::{ConnKind, Event, Hub, HubConfig, Join, PlayerId};
use serde_json::value::RawValue;

const PLAYERS: usize = 2_000;
const EVENTS_PER_PLAYER: usize = 50;
const RUNS: usize = 7;

/// Spelled out rather than `HubConfig::default()`, as at the older commits
/// `bench/hub-fanout-ab.sh` compares against (each commit builds its own copy of this file).
fn config() -> HubConfig {
    HubConfig {
        max_connections_per_player: 4,
        reject_over_limit: false,
        history_size: 256,
        history_ttl: Duration::from_secs(300),
        outbox_bytes: 1 << 20,
        session_ttl: Duration::from_secs(86_400),
        heartbeat_interval: Duration::from_secs(15),
        ping_interval: Duration::from_secs(25),
        write_timeout: Duration::from_secs(10),
        max_room_members: 10_000,
        max_rooms_per_player: 64,
    }
}

async fn run_once() -> f64 {
    let hub = Arc::new(Hub::new(config()));
    let drained = Arc::new(AtomicU64::new(0));
    let players: Vec<PlayerId> = (0..PLAYERS)
        .map(|i| PlayerId::from(format!("p{i}")))
        .collect();
    let mut drainers = Vec::new();
    for player in &players {
        for kind in [ConnKind::WebSocket, ConnKind::Sse] {
            let conn = hub
                .connect(Join {
                    player,
                    kind,
                    session_id: None,
                    cursor: None,
                })
                .await
                .expect("joins");
            let drained = drained.clone();
            drainers.push(tokio::spawn(async move {
                let mut batch = Vec::new();
                while conn.outbox.next(&mut batch).await.is_none() {
                    let stream = batch.iter().filter(|f| f.seq.is_some()).count();
                    drained.fetch_add(stream as u64, Ordering::Relaxed);
                    batch.clear();
                }
            }));
        }
    }
    let data = RawValue::from_string(format!(r#"{{"text":"{}"}}"#, "x".repeat(120))).unwrap();
    let event = Event {
        event_type: "chat",
        room_id: Some("hall"),
        data: &data,
    };
    let expected = (PLAYERS * EVENTS_PER_PLAYER * 2) as u64;
    let started = Instant::now();
    for round in 0..EVENTS_PER_PLAYER {
        for player in &players {
            hub.publish(player, &event)
                .await
                .expect("one process is always available");
        }
        if round % 5 == 4 {
            // Let the drainers run, as a server's writer tasks would between publishes.
            tokio::task::yield_now().await;
        }
    }
    while drained.load(Ordering::Relaxed) < expected {
        tokio::task::yield_now().await;
    }
    let took = started.elapsed();
    hub.shutdown_all(Duration::ZERO);
    for d in drainers {
        let _ = d.await;
    }
    expected as f64 / took.as_secs_f64()
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut rates: Vec<f64> = (0..RUNS)
        .map(|i| {
            let rate = rt.block_on(run_once());
            println!("run {i}: {rate:.0} deliveries/s");
            rate
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    println!(
        "hub_fanout median: {:.0} deliveries/s ({PLAYERS} players x 2 connections, {EVENTS_PER_PLAYER} events each, {RUNS} runs)",
        rates[RUNS / 2]
    );
}
