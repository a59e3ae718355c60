//! A Rust game that embeds dualconn: its own command handler, and events published from game
//! logic. Run it with `cargo run -p dualconn --example embedded_game`, then connect with the
//! token it prints:
//!
//! ```text
//! websocat -H 'Sec-WebSocket-Protocol: bearer, <token>' ws://127.0.0.1:<port>/api/ws
//! {"type":"command","data":{"command":"roll 20"}}
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dualconn::commands::{Command, CommandError, CommandHandler, Outbound};
use dualconn::config::Config;
use dualconn::hub::{Event, Hub};
use futures_util::future::BoxFuture;
use serde_json::json;

/// A dice table: `roll <sides>` answers the roller and tells everyone seated at the table.
struct DiceTable {
    /// Deterministic dice, so the example's output is reproducible.
    state: AtomicU64,
}

impl DiceTable {
    fn roll(&self, sides: u64) -> u64 {
        let x = self
            .state
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_mul(0xBF58_476D_1CE4_E5B9);
        1 + (x >> 33) % sides
    }
}

impl CommandHandler for DiceTable {
    fn handle<'a>(
        &'a self,
        hub: &'a Hub,
        command: Command,
    ) -> BoxFuture<'a, Result<Vec<Outbound>, CommandError>> {
        Box::pin(async move {
            if command.command != "roll" {
                return Ok(vec![Outbound::to(
                    command.player_id.to_string(),
                    "command_response",
                    json!({"ok": false, "error": "try: roll <sides>"}),
                )]);
            }
            let sides = command
                .args
                .first()
                .and_then(|s| s.parse().ok())
                .filter(|&s: &u64| (2..=1000).contains(&s))
                .unwrap_or(6);
            let value = self.roll(sides);
            // Whoever rolls sits down at the table: a room, so the dice are told to everyone
            // seated, on every node when nodes share a Redis. Membership is the player's: it
            // outlives their connections. These fail only if the cluster's Redis is away.
            let system = |e: &dyn std::fmt::Display| CommandError::system(e.to_string());
            hub.join_room("table", &command.player_id)
                .await
                .map_err(|e| system(&e))?;
            let data = serde_json::value::to_raw_value(&json!({
                "by": &*command.player_id,
                "value": value,
            }))
            .map_err(|e| system(&e))?;
            let rolled = Event {
                event_type: "dice_rolled",
                room_id: None, // a room publish sets it to the room
                data: &data,
            };
            hub.publish_to_room("table", &[], &rolled)
                .await
                .map_err(|e| system(&e))?;
            Ok(vec![Outbound::to(
                command.player_id.to_string(),
                "command_response",
                json!({"ok": true, "sides": sides, "value": value}),
            )])
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Dev-mode auth on an ephemeral port; a real game sets DUALCONN_JWT_SECRET and a bind.
    let config = Config::ephemeral();
    let table = Arc::new(DiceTable {
        state: AtomicU64::new(7),
    });
    let app = dualconn::App::build_with_handler(config, table).await?;
    println!("listening on {}", app.local_addr());
    let token = app
        .mint_token("player1", Duration::from_secs(3600))
        .ok_or("dev mode mints tokens")?;
    println!("token for player1: {token}");

    // Game logic publishes on its own clock: a world tick to everyone online, once a second.
    let hub = app.hub().clone();
    let shutdown = app.shutdown_token();
    let ticker_shutdown = shutdown.clone();
    tokio::spawn(async move {
        let mut tick = 0u64;
        let mut every = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = ticker_shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            tick += 1;
            let data = serde_json::value::to_raw_value(&json!({"tick": tick})).unwrap_or_default();
            let event = Event {
                event_type: "world_tick",
                room_id: None,
                data: &data,
            };
            // Publishing is I/O in a cluster: it can fail (Redis away), and then the tick is
            // simply skipped; nothing was numbered or half-delivered.
            if let Err(e) = hub.broadcast(&event).await {
                eprintln!("tick {tick} not published: {e}");
            }
        }
    });

    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        shutdown.cancel();
    });
    #[cfg(unix)]
    {
        let shutdown = app.shutdown_token();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::spawn(async move {
            term.recv().await;
            shutdown.cancel();
        });
    }
    // On a runtime worker rather than as `main`'s own future: see `App::run`.
    tokio::spawn(app.run()).await?;
    println!("stopped");
    Ok(())
}
