//! How nodes share what one node cannot keep alone: sequence numbers, history, sessions and
//! their generation, presence, the per-player cap, and delivery to the nodes that hold a
//! player.
//!
//! Two backplanes, chosen once at start:
//! - [`Backplane::Local`]: one process. Numbering, history and sessions live in the hub's own
//!   player entries, under the same shard lock as the player's connections, so a single lock
//!   orders everything for a player and the single-node publish path costs what it did before
//!   the split (see `ARCHITECTURE.md`).
//! - [`Backplane::Redis`]: a cluster. Redis holds the state and numbers events in one atomic
//!   script per publish; each node's [`redis::RedisBackplane`] delivers what Redis announces to
//!   the node's own connections.
//!
//! Callers use [`crate::hub::Hub`]; only the hub's dispatch and this module know which one
//! runs.

pub mod redis;

use std::sync::Arc;

/// The cluster's Redis cannot be reached, so nothing that needs it can be answered; HTTP maps
/// this to 503 `connection_error` with `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the cluster's Redis is unreachable")]
pub struct Unavailable;

/// Where numbering, history, sessions and presence live.
pub enum Backplane {
    Local,
    Redis(Arc<redis::RedisBackplane>),
}

impl Backplane {
    /// False while the cluster's Redis is unreachable; a single process is always available.
    pub fn is_available(&self) -> bool {
        match self {
            Backplane::Local => true,
            Backplane::Redis(redis) => redis.is_available(),
        }
    }

    /// Resolves once the node can serve: at once for one process; in a cluster, once it is
    /// registered in Redis and subscribed to its channel.
    pub async fn wait_available(&self) {
        if let Backplane::Redis(redis) = self {
            redis.wait_available().await;
        }
    }

    /// Availability as a value to wait on; `None` for one process, which is always available.
    pub fn watch_available(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        match self {
            Backplane::Local => None,
            Backplane::Redis(redis) => Some(redis.watch_available()),
        }
    }

    /// This node's id in the cluster; `None` for a single process.
    pub fn node_id(&self) -> Option<&str> {
        match self {
            Backplane::Local => None,
            Backplane::Redis(redis) => Some(redis.node_id()),
        }
    }
}
