//! The monitoring figures match the connections a test opened and closed, and `/metrics`
//! parses as Prometheus text with counters that move.

use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};

async fn get(server: &Server, path: &str) -> Value {
    let res = server.get(path, ADMIN_KEY).await;
    assert_eq!(res.status(), 200, "GET {path}");
    res.json().await.unwrap()
}

/// Polls until `ok` holds; only for server-side disconnects, which no event announces.
async fn until(server: &Server, path: &str, ok: impl Fn(&Value) -> bool) -> Value {
    within(async {
        loop {
            let v = get(server, path).await;
            if ok(&v) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

#[tokio::test]
async fn figures_follow_dual_websocket_only_and_sse_only_players() {
    let server = Server::start().await;
    let mut dual_ws = server.ws("dual", "").await;
    let mut dual_sse = server.sse("dual", "").await;
    let mut ws_only = server.ws("wsonly", "").await;
    let mut sse_only = server.sse("sseonly", "").await;
    for e in [
        dual_ws.next_event().await,
        dual_sse.next_event().await,
        ws_only.next_event().await,
        sse_only.next_event().await,
    ] {
        assert_eq!(e["event_type"], "connected");
    }

    let d = get(&server, "/monitoring/dual-connections").await;
    assert_eq!(
        d["connection_distribution"],
        json!({"total_players": 3, "dual_connection_players": 1, "websocket_only_players": 1,
               "sse_only_players": 1, "dual_connection_percentage": 100.0 / 3.0})
    );
    assert_eq!(d["connection_health"]["total_connections"], 4);
    assert_eq!(d["connection_health"]["health_percentage"], 100.0);
    assert_eq!(d["session_analytics"]["sessions_with_connections"], 3);
    assert_eq!(
        d["session_analytics"]["average_connections_per_session"],
        4.0 / 3.0
    );

    let h = get(&server, "/monitoring/connection-health").await;
    assert_eq!(h["connection_type_health"]["websocket"]["total"], 2);
    assert_eq!(h["connection_type_health"]["sse"]["total"], 2);
    assert_eq!(
        h["health_trends"]["last_hour_health_percentage"], 100.0,
        "before the first sample, trends report the current figure"
    );

    let p = get(&server, "/monitoring/performance").await;
    assert_eq!(p["connection_establishment"]["websocket_connections"], 2);
    assert_eq!(p["connection_establishment"]["sse_connections"], 2);
    assert!(
        p["connection_establishment"]["avg_websocket_establishment_ms"]
            .as_f64()
            .unwrap()
            > 0.0
    );

    // Publish to all three: 4 connections addressed, all delivered.
    server
        .publish(&["dual", "wsonly", "sseonly"], "tick", json!({}))
        .await;
    dual_ws.next_event().await;
    dual_sse.next_event().await;
    ws_only.next_event().await;
    sse_only.next_event().await;
    let p = get(&server, "/monitoring/performance").await;
    assert_eq!(p["message_delivery"]["total_messages_sent"], 4);
    assert_eq!(p["message_delivery"]["successful_deliveries"], 4);
    assert_eq!(p["message_delivery"]["delivery_success_rate"], 100.0);

    // Close the dual player's WebSocket: it becomes SSE-only.
    drop(dual_ws);
    let d = until(&server, "/monitoring/dual-connections", |d| {
        d["connection_distribution"]["dual_connection_players"] == 0
    })
    .await;
    assert_eq!(d["connection_distribution"]["sse_only_players"], 2);
    assert_eq!(d["connection_distribution"]["websocket_only_players"], 1);
    let players = get(&server, "/monitoring/players").await;
    assert_eq!(players["total_players"], 3);
    let dual = players["players"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["player_id"] == "dual")
        .unwrap();
    assert_eq!(dual["connections"].as_array().unwrap().len(), 1);
    assert_eq!(dual["connections"][0]["connection_type"], "sse");
    assert_eq!(dual["overall_health"], "healthy");

    // Players may not read monitoring.
    let res = server
        .get("/monitoring/connection-health", &server.token("dual"))
        .await;
    assert_eq!(res.status(), 403);
}

fn sample(scrape: &prometheus_parse::Scrape, name: &str, label: Option<(&str, &str)>) -> f64 {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
        .map(|s| match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            other => panic!("{name}: unexpected {other:?}"),
        })
        .unwrap_or_else(|| panic!("{name} {label:?} missing"))
}

async fn scrape(server: &Server) -> prometheus_parse::Scrape {
    let res = server.get("/metrics", ADMIN_KEY).await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    assert!(!text.contains("player_id"), "no player id is ever a label");
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

#[tokio::test]
async fn metrics_parse_and_move() {
    let server = Server::start_with(|s| {
        s.connect_rate_per_player = Some(1);
        s.connect_burst_per_player = Some(2);
    })
    .await;
    let before = scrape(&server).await;
    assert_eq!(
        sample(
            &before,
            "dualconn_connections",
            Some(("transport", "websocket"))
        ),
        0.0
    );
    assert_eq!(
        sample(
            &before,
            "dualconn_deliveries_total",
            Some(("outcome", "success"))
        ),
        0.0
    );

    let mut ws = server.ws("m1", "").await;
    let mut sse = server.sse("m1", "").await;
    ws.next_event().await;
    sse.next_event().await;
    server.publish(&["m1"], "tick", json!({})).await;
    ws.next_event().await;
    sse.next_event().await;
    // A third attempt for m1 hits the per-player bucket; a bad token is an auth failure.
    let refused = server
        .http
        .get(server.url(&format!("/sse/m1?token={}", server.token("m1"))))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    let bad = server.get("/api/connections/m1", "garbage").await;
    assert_eq!(bad.status(), 401);
    server
        .post("/api/connections/m1/session", ADMIN_KEY, json!({}))
        .await;
    ws.until_close().await;
    sse.until_end().await;

    let after = scrape(&server).await;
    assert_eq!(sample(&after, "dualconn_messages_sent_total", None), 2.0);
    assert_eq!(
        sample(
            &after,
            "dualconn_deliveries_total",
            Some(("outcome", "success"))
        ),
        2.0
    );
    assert_eq!(
        sample(
            &after,
            "dualconn_rate_limited_total",
            Some(("limit", "connect_player"))
        ),
        1.0
    );
    assert!(sample(&after, "dualconn_auth_failures_total", None) >= 1.0);
    assert_eq!(
        sample(&after, "dualconn_session_replacements_total", None),
        2.0
    );
    // Two connections were set up: the histogram counted both transports.
    let histogram = after
        .samples
        .iter()
        .filter(|s| s.metric == "dualconn_connection_establishment_seconds")
        .count();
    assert!(histogram >= 2, "an establishment histogram per transport");

    // Only admins scrape.
    let res = server.get("/metrics", &server.token("m1")).await;
    assert_eq!(res.status(), 403);
    // Health routes need nothing.
    let live = server
        .http
        .get(server.url("/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
}

/// SPEC §12.25: a replayed event counts as sent when queued and as delivered when written, so
/// `successful_deliveries + failed_deliveries <= total_messages_sent` at every moment, and after
/// resumes with replays the counts are exact.
#[tokio::test]
async fn replayed_events_count_as_sent_and_the_delivery_figures_add_up() {
    let server = Server::start().await;
    let mut seqs = Vec::new();
    for i in 0..5 {
        let r = server.publish(&["replayer"], "tick", json!({"i": i})).await;
        seqs.push(r["events"][0]["sequence_number"].as_u64().unwrap());
    }
    let invariant = |p: &Value| {
        let d = &p["message_delivery"];
        let (sent, ok, failed) = (
            d["total_messages_sent"].as_u64().unwrap(),
            d["successful_deliveries"].as_u64().unwrap(),
            d["failed_deliveries"].as_u64().unwrap(),
        );
        assert!(ok + failed <= sent, "{d}");
        (sent, ok, failed)
    };
    assert_eq!(
        invariant(&get(&server, "/monitoring/performance").await),
        (0, 0, 0),
        "no connection was addressed"
    );

    // A WebSocket resumes after the first event (4 replayed), an SSE stream after the third
    // (2 replayed), then one live event reaches both.
    let mut ws = server
        .ws("replayer", &format!("?last_event_id={}", seqs[0]))
        .await;
    let mut sse = server
        .sse("replayer", &format!("?last_event_id={}", seqs[2]))
        .await;
    for (conn, replayed) in [(0, 4), (1, 2)] {
        let mut events = Vec::new();
        for _ in 0..replayed + 2 {
            events.push(if conn == 0 {
                ws.next_event().await
            } else {
                sse.next_event().await
            });
        }
        assert_eq!(events[1]["data"]["replayed"], replayed);
        assert_eq!(events[1]["data"]["recovered"], true);
        invariant(&get(&server, "/monitoring/performance").await);
    }
    server
        .publish(&["replayer"], "tick", json!({"live": true}))
        .await;
    assert_eq!(ws.next_event().await["data"]["live"], true);
    assert_eq!(sse.next_event().await["data"]["live"], true);
    invariant(&get(&server, "/monitoring/performance").await);

    drop(ws);
    drop(sse);
    until(&server, "/api/connections/stats", |s| {
        s["total_connections"] == 0
    })
    .await;
    let p = get(&server, "/monitoring/performance").await;
    assert_eq!(invariant(&p), (8, 8, 0), "4 + 2 replayed and 2 live: {p}");
    assert_eq!(p["message_delivery"]["delivery_success_rate"], 100.0);
}
