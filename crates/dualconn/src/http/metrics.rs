//! `/metrics` in Prometheus text format.
//!
//! The publish path only bumps the hub's relaxed atomics; this module copies them into the
//! exporter's counters and gauges when scraped, so metrics cost the hot path nothing. Only the
//! establishment histograms are fed directly, once per connection. Player ids are never labels.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use super::Shared;
use crate::hub::ConnKind;

static META: Metadata<'static> = Metadata::new("dualconn", Level::INFO, Some("dualconn"));

/// Bucket bounds for connection set-up, in seconds.
const ESTABLISHMENT_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The exporter and the handles it renders; one per `App`, so servers in one process (tests,
/// embedders) never mix figures.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    ws_establishment: Histogram,
    sse_establishment: Histogram,
}

impl Metrics {
    pub fn new() -> Metrics {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("dualconn_connection_establishment_seconds".into()),
                ESTABLISHMENT_BUCKETS,
            )
            .map(PrometheusBuilder::build_recorder)
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        let histogram = |transport: &'static str| {
            recorder.register_histogram(
                &Key::from_parts(
                    "dualconn_connection_establishment_seconds",
                    vec![Label::new("transport", transport)],
                ),
                &META,
            )
        };
        let metrics = Metrics {
            ws_establishment: histogram("websocket"),
            sse_establishment: histogram("sse"),
            recorder,
            handle,
        };
        metrics.describe();
        metrics
    }

    fn describe(&self) {
        let r = &self.recorder;
        let d = |name: &'static str, help: &'static str| (name, help);
        for (name, help) in [
            d("dualconn_connections", "Open connections by transport"),
            d(
                "dualconn_healthy_connections",
                "Healthy open connections by transport",
            ),
            d("dualconn_players", "Players with at least one connection"),
            d(
                "dualconn_dual_connected_players",
                "Players with both a WebSocket and an SSE stream",
            ),
            d(
                "dualconn_sessions",
                "Current sessions within the session ttl",
            ),
            d(
                "dualconn_rooms",
                "Rooms with members, cluster-wide (every node reports the same value)",
            ),
            d(
                "dualconn_room_memberships",
                "Room memberships, cluster-wide (every node reports the same value)",
            ),
            d(
                "dualconn_node_connections",
                "Streams this node holds, against dualconn_node_connections_max",
            ),
            d(
                "dualconn_node_connections_max",
                "The node's stream cap (DUALCONN_MAX_CONNECTIONS)",
            ),
            d(
                "dualconn_node_queued_bytes",
                "Bytes queued in every outbox together",
            ),
            d(
                "dualconn_node_queued_bytes_max",
                "The node's queued-bytes bound (DUALCONN_MAX_QUEUED_BYTES)",
            ),
            d(
                "dualconn_runtime_alive_tasks",
                "Tasks alive in the server's runtime: back to its idle level once load stops",
            ),
        ] {
            r.describe_gauge(name.into(), None, help.into());
        }
        for (name, help) in [
            d(
                "dualconn_messages_sent_total",
                "Stream events times the connections they were addressed to",
            ),
            d(
                "dualconn_deliveries_total",
                "Stream events written to a socket (success) or dropped (failed)",
            ),
            d(
                "dualconn_outbox_overflows_total",
                "Connections closed as slow consumers",
            ),
            d(
                "dualconn_rate_limited_total",
                "Requests refused by a rate limit, by limit",
            ),
            d(
                "dualconn_auth_failures_total",
                "Requests refused for a missing or bad credential",
            ),
            d(
                "dualconn_refusals_total",
                "Refused requests and connections, by error type and status",
            ),
            d(
                "dualconn_session_replacements_total",
                "Connections ended by a new session",
            ),
            d(
                "dualconn_evictions_total",
                "Connections evicted by the per-player cap",
            ),
            d(
                "dualconn_tls_reloads_total",
                "Attempts to load a new TLS certificate, by outcome",
            ),
            d(
                "dualconn_node_full_refusals_total",
                "New streams refused with 503 because the node was full, by bound",
            ),
            d(
                "dualconn_node_shed_connections_total",
                "Connections closed to bring the queued bytes back under their bound",
            ),
            d(
                "dualconn_lifecycle_notices_total",
                "Lifecycle webhook notices by outcome: delivered, failed (retries spent or refused), dropped (queue full)",
            ),
        ] {
            r.describe_counter(name.into(), None, help.into());
        }
        r.describe_histogram(
            "dualconn_connection_establishment_seconds".into(),
            Some(Unit::Seconds),
            "From request to upgraded (WebSocket) or first bytes flushed (SSE)".into(),
        );
    }

    pub fn record_establishment(&self, kind: ConnKind, took: Duration) {
        match kind {
            ConnKind::WebSocket => self.ws_establishment.record(took.as_secs_f64()),
            ConnKind::Sse => self.sse_establishment.record(took.as_secs_f64()),
        }
    }

    /// Counts one refused request. Both labels come from small fixed sets (error types, HTTP
    /// statuses), so the series stay few.
    pub fn count_refusal(&self, error_type: &'static str, status: axum::http::StatusCode) {
        let key = Key::from_parts(
            "dualconn_refusals_total",
            vec![
                Label::new("reason", error_type),
                Label::new("status", status.as_u16().to_string()),
            ],
        );
        self.recorder.register_counter(&key, &META).increment(1);
    }

    /// Counters the TLS reloader bumps itself: reloads are rare and happen off the hot path.
    pub fn tls_reloads(&self) -> crate::tls::Reloads {
        crate::tls::Reloads {
            loaded: self.counter("dualconn_tls_reloads_total", &[("outcome", "loaded")]),
            refused: self.counter("dualconn_tls_reloads_total", &[("outcome", "refused")]),
        }
    }

    fn counter(&self, name: &'static str, labels: &[(&'static str, &'static str)]) -> Counter {
        self.recorder.register_counter(&key(name, labels), &META)
    }

    fn gauge(&self, name: &'static str, labels: &[(&'static str, &'static str)]) -> Gauge {
        self.recorder.register_gauge(&key(name, labels), &META)
    }

    /// Copies the current figures in and renders the text format.
    pub fn render(&self, state: &Shared, rooms: Option<crate::hub::RoomFigures>) -> String {
        let s = state.hub.stats();
        let c = &state.hub.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for (transport, open, healthy) in [
            ("websocket", s.websocket_connections, s.websocket_healthy),
            ("sse", s.sse_connections, s.sse_healthy),
        ] {
            self.gauge("dualconn_connections", &[("transport", transport)])
                .set(open as f64);
            self.gauge("dualconn_healthy_connections", &[("transport", transport)])
                .set(healthy as f64);
        }
        self.gauge("dualconn_players", &[])
            .set(s.players_online as f64);
        self.gauge("dualconn_dual_connected_players", &[])
            .set(s.dual as f64);
        self.gauge("dualconn_sessions", &[]).set(s.sessions as f64);
        if let Some(rooms) = rooms {
            self.gauge("dualconn_rooms", &[]).set(rooms.rooms as f64);
            self.gauge("dualconn_room_memberships", &[])
                .set(rooms.memberships as f64);
        }
        let budget = &state.hub.budget;
        let bounds = budget.config();
        for (name, value) in [
            ("dualconn_node_connections", budget.connections()),
            ("dualconn_node_connections_max", bounds.max_connections),
            ("dualconn_node_queued_bytes", budget.queued_bytes()),
            ("dualconn_node_queued_bytes_max", bounds.max_queued_bytes),
            (
                "dualconn_runtime_alive_tasks",
                tokio::runtime::Handle::try_current()
                    .map(|h| h.metrics().num_alive_tasks())
                    .unwrap_or(0),
            ),
        ] {
            self.gauge(name, &[]).set(value as f64);
        }
        for (name, labels, value) in [
            (
                "dualconn_messages_sent_total",
                &[][..],
                load(&c.messages_sent),
            ),
            (
                "dualconn_deliveries_total",
                &[("outcome", "success")][..],
                load(&c.deliveries_ok),
            ),
            (
                "dualconn_deliveries_total",
                &[("outcome", "failed")][..],
                load(&c.deliveries_failed),
            ),
            (
                "dualconn_outbox_overflows_total",
                &[][..],
                load(&c.slow_consumers),
            ),
            (
                "dualconn_rate_limited_total",
                &[("limit", "connect_ip")][..],
                load(&state.limits.rejected_ip),
            ),
            (
                "dualconn_rate_limited_total",
                &[("limit", "connect_player")][..],
                load(&state.limits.rejected_player),
            ),
            (
                "dualconn_rate_limited_total",
                &[("limit", "command")][..],
                state.commands.rejected(),
            ),
            (
                "dualconn_auth_failures_total",
                &[][..],
                load(&state.auth_failures),
            ),
            (
                "dualconn_session_replacements_total",
                &[][..],
                load(&c.session_replacements),
            ),
            ("dualconn_evictions_total", &[][..], load(&c.evictions)),
            (
                "dualconn_node_full_refusals_total",
                &[("bound", "connections")][..],
                load(&budget.refused_connections),
            ),
            (
                "dualconn_node_full_refusals_total",
                &[("bound", "queued_bytes")][..],
                load(&budget.refused_queued_bytes),
            ),
            (
                "dualconn_node_shed_connections_total",
                &[][..],
                load(&budget.shed),
            ),
        ] {
            self.counter(name, labels).absolute(value);
        }
        if let Some(notices) = state.hub.lifecycle() {
            let n = &notices.counters;
            for (outcome, value) in [
                ("delivered", &n.delivered),
                ("failed", &n.failed),
                ("dropped", &n.dropped),
            ] {
                self.counter("dualconn_lifecycle_notices_total", &[("outcome", outcome)])
                    .absolute(load(value));
            }
        }
        self.handle.render()
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

fn key(name: &'static str, labels: &[(&'static str, &'static str)]) -> Key {
    Key::from_parts(
        name,
        labels
            .iter()
            .map(|(k, v)| Label::new(*k, *v))
            .collect::<Vec<_>>(),
    )
}
