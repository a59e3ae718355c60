//! What each node tells the cluster about itself every heartbeat: the figures only it can
//! know (connection health, running totals). Readers add up the reports of live nodes, so a
//! node that stops reporting drops out of every figure within [`super::NODE_TTL`].

use serde::{Deserialize, Serialize};

use crate::hub::{CounterTotals, Hub};

/// Most unhealthy connection ids one report names; past it the counts stay exact and the
/// per-connection view of the rest shows them healthy.
const UNHEALTHY_LISTED: usize = 1000;

/// Crosses Redis between nodes of the same version; not part of the network contract.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct NodeReport {
    pub node: String,
    /// When it was taken, ms since the Unix epoch (the node's clock).
    pub at_ms: u64,
    pub websocket_unhealthy: usize,
    pub sse_unhealthy: usize,
    /// Players held in memory, online or not.
    pub players_known: usize,
    pub counters: CounterTotals,
    /// Ids of unhealthy connections, at most [`UNHEALTHY_LISTED`].
    pub unhealthy: Vec<String>,
}

impl NodeReport {
    pub fn take(hub: &Hub, node: &str) -> NodeReport {
        let stats = hub.stats();
        let unhealthy = hub.unhealthy_connection_ids(UNHEALTHY_LISTED);
        NodeReport {
            node: node.to_owned(),
            at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            websocket_unhealthy: stats
                .websocket_connections
                .saturating_sub(stats.websocket_healthy),
            sse_unhealthy: stats.sse_connections.saturating_sub(stats.sse_healthy),
            players_known: stats.players_known,
            counters: hub.counters.totals(),
            unhealthy,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn parse(raw: &str) -> Option<NodeReport> {
        serde_json::from_str(raw).ok()
    }
}
