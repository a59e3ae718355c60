//! dualconn: a real-time connection server for multiplayer games.
//!
//! Players hold WebSocket and Server-Sent-Events connections at once; every event for a player
//! reaches all of them, in order, resumable from history. See `ARCHITECTURE.md` for the map.

pub mod auth;
pub mod config;
pub mod hub;
mod random;
pub mod wire;
