//! dualconn: a real-time connection server for multiplayer games.
//!
//! Players hold WebSocket and Server-Sent-Events connections at once; every event for a player
//! reaches all of them, in order, resumable from history. See `ARCHITECTURE.md` for the map.
//!
//! ```no_run
//! # async fn demo() -> Result<(), dualconn::BuildError> {
//! let app = dualconn::App::build(dualconn::config::Config::ephemeral()).await?;
//! println!("listening on {}", app.local_addr());
//! let shutdown = app.shutdown_token();
//! tokio::spawn(app.run());
//! shutdown.cancel();
//! # Ok(()) }
//! ```

pub mod auth;
pub mod backplane;
pub mod commands;
pub mod config;
pub mod delivery;
#[doc(hidden)]
pub mod fuzzing;
pub mod greeting;
pub mod http;
mod http1_head;
mod http2;
pub mod hub;
pub mod lifecycle;
mod random;
mod send_ring;
mod server;
mod shared_socket;
mod sse_socket;
pub mod tls;
pub mod wire;
mod ws_socket;

pub use server::{App, BuildError};
