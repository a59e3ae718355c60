//! The JSON the REST routes answer, pinned two ways: insta snapshots of whole bodies (with
//! timestamps, ids and sequence numbers redacted), and a check that every key of the
//! reference's examples is present with the same JSON type (SPEC §2: add, never rename).

use crate::common::*;
use insta::assert_json_snapshot;
use serde_json::{Value, json};

async fn get_json(server: &Server, path: &str, status: u16) -> Value {
    let res = server.get(path, ADMIN_KEY).await;
    assert_eq!(res.status(), status, "GET {path}");
    res.json().await.unwrap()
}

async fn post_json(server: &Server, path: &str, body: Value, status: u16) -> Value {
    let res = server.post(path, ADMIN_KEY, body).await;
    assert_eq!(res.status(), status, "POST {path}");
    res.json().await.unwrap()
}

/// Redacts a timestamp after checking it is RFC 3339 UTC, so a redaction cannot hide a null.
fn timestamp() -> insta::internals::Redaction {
    insta::dynamic_redaction(|value, path| {
        let s = value
            .as_str()
            .unwrap_or_else(|| panic!("{path}: a timestamp is a string, got {value:?}"));
        assert!(
            s.ends_with('Z') && humantime::parse_rfc3339(s).is_ok(),
            "{path}: {s:?} is not RFC 3339 UTC"
        );
        "[timestamp]"
    })
}

/// Redacts a sequence number after checking JavaScript reads it exactly (SPEC §12.1).
fn sequence_number() -> insta::internals::Redaction {
    insta::dynamic_redaction(|value, path| {
        let n = value
            .as_u64()
            .unwrap_or_else(|| panic!("{path}: not an unsigned number: {value:?}"));
        assert!(n > 0 && n < 1 << 53, "{path}: {n}");
        "[sequence_number]"
    })
}

/// Redacts an id after checking it is a non-empty string.
fn id(label: &'static str) -> insta::internals::Redaction {
    insta::dynamic_redaction(move |value, path| {
        let s = value
            .as_str()
            .unwrap_or_else(|| panic!("{path}: an id is a string, got {value:?}"));
        assert!(!s.is_empty(), "{path}: empty id");
        format!("[{label}]")
    })
}

/// A player with one WebSocket and one SSE stream in session `session_123`.
async fn dual_player(server: &Server, player: &str) -> (Ws, Sse) {
    let mut ws = server.ws(player, "?session_id=session_123").await;
    let mut sse = server.sse(player, "").await;
    assert_eq!(ws.next_event().await["event_type"], "connected");
    assert_eq!(sse.next_event().await["event_type"], "connected");
    (ws, sse)
}

#[tokio::test]
async fn snapshots_of_every_rest_answer() {
    let server = Server::start().await;
    let _dual = dual_player(&server, "test_player").await;

    let session = get_json(&server, "/api/connections/test_player/session", 200).await;
    assert_json_snapshot!("get_session", session, {
        ".session_created" => timestamp(),
    });

    let info = get_json(&server, "/api/connections/test_player", 200).await;
    assert_json_snapshot!("connection_info_online_dual", info, {
        ".connections.*.connection_ids[]" => id("connection_id"),
        ".connections.*.last_activity" => timestamp(),
        ".presence.last_seen" => timestamp(),
    });

    let info = get_json(&server, "/api/connections/never_seen", 200).await;
    assert_json_snapshot!("connection_info_offline_never_seen", info);

    let stats = get_json(&server, "/api/connections/stats", 200).await;
    assert_json_snapshot!("stats", stats);

    let published = post_json(
        &server,
        "/api/publish",
        json!({"player_ids": ["test_player", "offline_player"], "event_type": "chat",
               "data": {"text": "hello"}, "room_id": "library"}),
        200,
    )
    .await;
    assert_json_snapshot!("publish", published, {
        ".events[].sequence_number" => sequence_number(),
        ".timestamp" => timestamp(),
    });

    // Last, because it ends the dual player's connections.
    let made = post_json(
        &server,
        "/api/connections/test_player/session",
        json!({}),
        200,
    )
    .await;
    assert_json_snapshot!("new_session", made, {
        ".session_id" => id("server_made_session_id"),
        ".timestamp" => timestamp(),
    });
}

#[tokio::test]
async fn snapshots_of_error_envelopes() {
    let server = Server::start().await;
    let no_session = get_json(&server, "/api/connections/nobody/session", 404).await;
    assert_json_snapshot!("error_no_session", no_session, {
        ".timestamp" => timestamp(),
    });
    let res = server.get("/api/connections/stats", "not-a-token").await;
    assert_eq!(res.status(), 401);
    let unauthenticated: Value = res.json().await.unwrap();
    assert_json_snapshot!("error_unauthenticated", unauthenticated, {
        ".timestamp" => timestamp(),
    });
}

// ---- The reference's examples -------------------------------------------------------------

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every key of `reference` is in `actual` with the same JSON type, recursively; extra keys in
/// `actual` are allowed. Array elements are compared with the reference's first element.
fn shape_mismatches(reference: &Value, actual: &Value, path: &str, out: &mut Vec<String>) {
    if type_name(reference) != type_name(actual) {
        out.push(format!(
            "{path}: the reference has {}, the server {} ({actual})",
            type_name(reference),
            type_name(actual)
        ));
        return;
    }
    match (reference, actual) {
        (Value::Object(r), Value::Object(a)) => {
            for (key, r) in r {
                match a.get(key) {
                    Some(a) => shape_mismatches(r, a, &format!("{path}.{key}"), out),
                    None => out.push(format!("{path}.{key}: missing")),
                }
            }
        }
        (Value::Array(r), Value::Array(a)) => {
            if let Some(r) = r.first() {
                for (i, a) in a.iter().enumerate() {
                    shape_mismatches(r, a, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

fn assert_shape(name: &str, reference: &Value, actual: &Value) {
    let mut out = Vec::new();
    shape_mismatches(reference, actual, name, &mut out);
    assert!(out.is_empty(), "{}\nactual: {actual:#}", out.join("\n"));
}

#[test]
fn the_shape_check_catches_missing_keys_and_wrong_types() {
    let reference = json!({"a": 1, "b": {"c": "x"}, "d": [{"e": true}]});
    let mut out = Vec::new();
    shape_mismatches(
        &reference,
        &json!({"a": 1, "b": {"c": "y", "extra": 0}, "d": [{"e": false}], "z": null}),
        "$",
        &mut out,
    );
    assert!(out.is_empty(), "{out:?}");
    shape_mismatches(
        &reference,
        &json!({"a": "1", "b": {}, "d": [{"e": 0}]}),
        "$",
        &mut out,
    );
    assert_eq!(out.len(), 3, "{out:?}");
}

#[tokio::test]
async fn every_reference_key_is_there_with_the_same_type() {
    let server = Server::start().await;
    let _dual = dual_player(&server, "test_player").await;

    // GET /api/connections/{player_id}/session
    let reference = json!({
        "player_id": "test_player",
        "session_id": "session_123",
        "session_created": "2025-01-06T19:50:00Z",
        "active_connections": 2,
        "connection_types": ["websocket", "sse"]
    });
    let actual = get_json(&server, "/api/connections/test_player/session", 200).await;
    assert_shape("session", &reference, &actual);

    // GET /api/connections/{player_id}
    let reference = json!({
        "player_id": "test_player",
        "session_id": "session_123",
        "connections": {
            "websocket": {
                "count": 1,
                "connection_ids": ["ws_conn_123"],
                "last_activity": "2025-01-06T19:55:00Z"
            },
            "sse": {
                "count": 1,
                "connection_ids": ["sse_conn_456"],
                "last_activity": "2025-01-06T19:55:00Z"
            }
        },
        "presence": {
            "status": "online",
            "last_seen": "2025-01-06T19:55:00Z",
            "total_connections": 2
        },
        "health": {
            "overall_health": "healthy",
            "websocket_health": "healthy",
            "sse_health": "healthy"
        }
    });
    let actual = get_json(&server, "/api/connections/test_player", 200).await;
    assert_shape("connection_info", &reference, &actual);

    // GET /api/connections/stats
    let reference = json!({
        "total_players": 25,
        "total_connections": 50,
        "connection_distribution": {
            "websocket_only": 5,
            "sse_only": 3,
            "dual_connections": 17
        },
        "session_statistics": {
            "total_sessions": 25,
            "average_connections_per_session": 2.0
        },
        "health_statistics": {
            "healthy_connections": 48,
            "unhealthy_connections": 2,
            "health_percentage": 96.0
        }
    });
    let actual = get_json(&server, "/api/connections/stats", 200).await;
    assert_shape("stats", &reference, &actual);

    // The error format. The reference's `details` keys belong to its one example error, so
    // only `details` being an object is required.
    let reference = json!({
        "error": true,
        "error_type": "connection_error",
        "message": "Failed to establish connection",
        "details": {},
        "timestamp": "2025-01-06T19:55:00Z"
    });
    let actual = get_json(&server, "/api/connections/nobody/session", 404).await;
    assert_shape("error", &reference, &actual);
    let actual = get_json(&server, "/no/such/route", 404).await;
    assert_shape("error", &reference, &actual);

    // POST /api/connections/{player_id}/session, last because it ends the connections.
    let reference = json!({
        "success": true,
        "message": "New game session established",
        "session_id": "new_session_456",
        "previous_connections_disconnected": 2,
        "timestamp": "2025-01-06T19:55:00Z"
    });
    let actual = post_json(
        &server,
        "/api/connections/test_player/session",
        json!({"session_id": "new_session_456"}),
        200,
    )
    .await;
    assert_shape("new_session", &reference, &actual);
    assert_eq!(actual["previous_connections_disconnected"], 2);
    assert_eq!(actual["session_id"], "new_session_456");
}

/// The reference's monitoring examples, checked key by key and snapshotted.
#[tokio::test]
async fn monitoring_routes_match_the_reference() {
    let server = Server::start().await;
    let _dual = dual_player(&server, "test_player").await;
    server.publish(&["test_player"], "chat", json!({})).await;

    let dual = get_json(&server, "/monitoring/dual-connections", 200).await;
    assert_shape(
        "dual-connections",
        &json!({
          "connection_distribution": {"total_players": 25, "dual_connection_players": 17,
            "websocket_only_players": 5, "sse_only_players": 3, "dual_connection_percentage": 68.0},
          "connection_health": {"total_connections": 50, "healthy_connections": 48,
            "unhealthy_connections": 2, "health_percentage": 96.0},
          "session_analytics": {"total_sessions": 25, "sessions_with_connections": 25,
            "average_connections_per_session": 2.0}
        }),
        &dual,
    );
    assert_json_snapshot!("monitoring_dual_connections", dual);

    let perf = get_json(&server, "/monitoring/performance", 200).await;
    assert_shape(
        "performance",
        &json!({
          "connection_establishment": {"total_connections": 50, "websocket_connections": 25,
            "sse_connections": 25, "avg_websocket_establishment_ms": 45.2,
            "avg_sse_establishment_ms": 32.1, "max_websocket_establishment_ms": 120.5,
            "max_sse_establishment_ms": 89.3},
          "message_delivery": {"total_messages_sent": 1250, "successful_deliveries": 1245,
            "failed_deliveries": 5, "delivery_success_rate": 99.6},
          "timestamp": "2025-01-06T19:55:00Z"
        }),
        &perf,
    );
    let ms = || {
        insta::dynamic_redaction(|value, path| {
            assert!(
                value.as_f64().is_some_and(|v| v >= 0.0),
                "{path}: {value:?}"
            );
            "[ms]"
        })
    };
    assert_json_snapshot!("monitoring_performance", perf, {
        ".timestamp" => timestamp(),
        ".connection_establishment.avg_websocket_establishment_ms" => ms(),
        ".connection_establishment.avg_sse_establishment_ms" => ms(),
        ".connection_establishment.max_websocket_establishment_ms" => ms(),
        ".connection_establishment.max_sse_establishment_ms" => ms(),
        // Whether the first event is written yet is a race the snapshot must not pin.
        ".message_delivery.successful_deliveries" => "[deliveries]",
        ".message_delivery.delivery_success_rate" => "[rate]",
        // Bytes still queued are the same race; the cap follows this process's descriptors.
        ".node_budget.queued_bytes" => "[bytes]",
        ".node_budget.max_connections" => "[cap]",
    });

    let health = get_json(&server, "/monitoring/connection-health", 200).await;
    assert_shape(
        "connection-health",
        &json!({
          "overall_health": {"total_connections": 50, "healthy_connections": 48,
            "unhealthy_connections": 2, "health_percentage": 96.0},
          "connection_type_health": {
            "websocket": {"total": 25, "healthy": 24, "unhealthy": 1, "health_percentage": 96.0},
            "sse": {"total": 25, "healthy": 24, "unhealthy": 1, "health_percentage": 96.0}},
          "health_trends": {"last_hour_health_percentage": 95.8,
            "last_24_hours_health_percentage": 96.2}
        }),
        &health,
    );
    assert_json_snapshot!("monitoring_connection_health", health);

    let players = get_json(&server, "/monitoring/players", 200).await;
    assert_json_snapshot!("monitoring_players", players, {
        ".players[].session_id" => id("session_id"),
        ".players[].connections[].connection_id" => id("connection_id"),
        ".players[].connections[].last_activity" => timestamp(),
        ".players[].connections[].opened_at" => timestamp(),
    });
}
