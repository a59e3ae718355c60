//! The lifecycle webhook (issue 11): `player_online` once however many transports,
//! `player_offline` only after the grace, none for a reconnect within it, events from the
//! answers after `connected` and in history, retries with one id, signatures, and exactly one
//! online and one offline across the nodes of a cluster. The backend is a real HTTP server;
//! each notice it receives is handed to the test through a channel, so tests wait on arrivals,
//! not on the clock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::mpsc;

const HOOK_SECRET: &str = "lifecycle-hook-secret";
/// Short, so the tests are quick; long enough that a test's own reconnect fits in it.
const GRACE: Duration = Duration::from_millis(600);

/// A game backend on a real socket. It checks each notice's signature, hands every attempt to
/// the test, fails the first attempts of notices it is told to, and answers `player_online`
/// and `session_started` with the events it is given.
#[derive(Clone, Default)]
struct Backend {
    /// Every signed attempt, in arrival order (retries included).
    attempts: Arc<Mutex<Vec<Value>>>,
    /// Attempts whose signature did not match.
    bad_signatures: Arc<Mutex<usize>>,
    /// `type` → how many first attempts answer 503.
    fail_first: Arc<Mutex<HashMap<String, usize>>>,
    /// `type` → the answer's body.
    answers: Arc<Mutex<HashMap<String, Value>>>,
    /// Delivered notices (the attempt that answered 2xx), for the test to await.
    tx: Arc<Mutex<Option<mpsc::UnboundedSender<Value>>>>,
}

impl Backend {
    async fn start(&self) -> (String, mpsc::UnboundedReceiver<Value>) {
        async fn lifecycle(
            axum::extract::State(b): axum::extract::State<Backend>,
            headers: HeaderMap,
            body: Bytes,
        ) -> (StatusCode, String) {
            let expected = dualconn::commands::webhook::signature(HOOK_SECRET.as_bytes(), &body);
            if headers
                .get("x-dualconn-signature")
                .and_then(|v| v.to_str().ok())
                != Some(expected.as_str())
            {
                *b.bad_signatures.lock() += 1;
                return (StatusCode::BAD_REQUEST, "bad signature".into());
            }
            let notice: Value = serde_json::from_slice(&body).expect("a JSON notice");
            b.attempts.lock().push(notice.clone());
            let kind = notice["type"].as_str().unwrap_or("").to_owned();
            if let Some(left) = b.fail_first.lock().get_mut(&kind)
                && *left > 0
            {
                *left -= 1;
                return (StatusCode::SERVICE_UNAVAILABLE, "try again".into());
            }
            if let Some(tx) = &*b.tx.lock() {
                let _ = tx.send(notice);
            }
            let answer = b.answers.lock().get(&kind).cloned();
            (
                StatusCode::OK,
                answer.map(|a| a.to_string()).unwrap_or_default(),
            )
        }
        let (tx, rx) = mpsc::unbounded_channel();
        *self.tx.lock() = Some(tx);
        let app = axum::Router::new()
            .route("/lifecycle", post(lifecycle))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}/lifecycle"), rx)
    }
}

fn hooked(url: String, grace: Duration) -> impl Fn(&mut dualconn::config::Settings) {
    move |s| {
        s.lifecycle_webhook = Some(url.clone());
        s.lifecycle_grace = Some(format!("{}ms", grace.as_millis()));
        // The command webhook's secret signs every webhook unless one has its own.
        s.command_webhook_secret = Some(HOOK_SECRET.into());
    }
}

/// The next delivered notice.
async fn next(rx: &mut mpsc::UnboundedReceiver<Value>) -> Value {
    within(rx.recv()).await.expect("the backend is running")
}

/// The next delivered notice, which must be of this type.
async fn expect(rx: &mut mpsc::UnboundedReceiver<Value>, kind: &str) -> Value {
    let n = next(rx).await;
    assert_eq!(n["type"], kind, "got {n}");
    n
}

#[tokio::test]
async fn online_once_for_two_transports_offline_only_after_the_grace_and_none_for_a_reconnect() {
    let backend = Backend::default();
    let (url, mut rx) = backend.start().await;
    let server = Server::start_with(hooked(url, GRACE)).await;

    let mut ws = server.ws("alice", "").await;
    let connected = ws.next_event().await;
    let session = connected["data"]["session_id"].as_str().unwrap().to_owned();
    let online = expect(&mut rx, "player_online").await;
    assert_eq!(online["player_id"], "alice");
    assert_eq!(online["session_id"], session.as_str());
    assert_eq!(online["transport"], "websocket");
    assert_eq!(online["connection_id"], connected["data"]["connection_id"]);
    let started = expect(&mut rx, "session_started").await;
    assert_eq!(
        (started["session_id"].as_str(), started["reason"].as_str()),
        (Some(&*session), Some("connect"))
    );
    assert_eq!(
        expect(&mut rx, "connection_opened").await["transport"],
        "websocket"
    );

    // A second transport: no second player_online.
    let sse = server.sse("alice", "").await;
    let opened = expect(&mut rx, "connection_opened").await;
    assert_eq!(opened["transport"], "sse");
    assert_eq!(opened["session_id"], session.as_str());

    // Drop the WebSocket: the player still has its SSE stream, so only the connection closes.
    drop(ws);
    let closed = expect(&mut rx, "connection_closed").await;
    assert_eq!(
        (closed["transport"].as_str(), closed["reason"].as_str()),
        (Some("websocket"), Some("client_closed"))
    );

    // Drop the SSE stream too, and reconnect within the grace: no offline, no second online.
    drop(sse);
    assert_eq!(
        expect(&mut rx, "connection_closed").await["transport"],
        "sse"
    );
    let mut ws = server.ws("alice", "").await;
    ws.next_event().await;
    assert_eq!(
        expect(&mut rx, "connection_opened").await["transport"],
        "websocket"
    );
    // Stay for half the grace: the grace is counted from the last connection's close, not
    // from the first time the player had none.
    tokio::time::sleep(GRACE / 2).await;

    // Now leave for good: player_offline, and only once the grace has passed.
    drop(ws);
    let left_at = Instant::now();
    expect(&mut rx, "connection_closed").await;
    let offline = expect(&mut rx, "player_offline").await;
    assert!(
        left_at.elapsed() >= GRACE,
        "offline after {:?}, before the grace",
        left_at.elapsed()
    );
    assert_eq!(offline["player_id"], "alice");

    // Every notice has its own id and a timestamp.
    let attempts = backend.attempts.lock().clone();
    let kinds: Vec<&str> = attempts
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.iter().filter(|k| **k == "player_online").count(), 1);
    assert_eq!(kinds.iter().filter(|k| **k == "player_offline").count(), 1);
    let mut ids: Vec<&str> = attempts.iter().map(|n| n["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), attempts.len(), "ids are unique");
    assert!(
        attempts
            .iter()
            .all(|n| n["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')))
    );

    // Back after the grace: online again.
    let mut ws = server.ws("alice", "").await;
    ws.next_event().await;
    expect(&mut rx, "player_online").await;
}

#[tokio::test]
async fn a_new_session_is_a_session_started_and_ends_connections_with_their_reason() {
    let backend = Backend::default();
    let (url, mut rx) = backend.start().await;
    let server = Server::start_with(hooked(url, GRACE)).await;
    let mut ws = server.ws("bob", "").await;
    ws.next_event().await;
    for kind in ["player_online", "session_started", "connection_opened"] {
        expect(&mut rx, kind).await;
    }
    let res = server
        .post(
            "/api/connections/bob/session",
            ADMIN_KEY,
            json!({"session_id": "round-2"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let started = expect(&mut rx, "session_started").await;
    assert_eq!(
        (started["session_id"].as_str(), started["reason"].as_str()),
        (Some("round-2"), Some("new_session"))
    );
    let closed = expect(&mut rx, "connection_closed").await;
    assert_eq!(closed["reason"], "session_replaced");
    // The player reconnects to the new session within the grace: still online.
    let mut ws = server.ws("bob", "?session_id=round-2").await;
    ws.next_event().await;
    assert_eq!(
        expect(&mut rx, "connection_opened").await["session_id"],
        "round-2"
    );
}

#[tokio::test]
async fn events_in_the_answers_arrive_after_connected_in_order_and_are_kept_in_history() {
    let backend = Backend::default();
    backend.answers.lock().insert(
        "player_online".into(),
        json!({"events": [{"event_type": "game_state", "data": {"hp": 10}}]}),
    );
    backend.answers.lock().insert(
        "session_started".into(),
        json!({"events": [{"event_type": "room_update", "room_id": "hall", "data": {"exits": ["north"]}}]}),
    );
    let (url, mut rx) = backend.start().await;
    let server = Server::start_with(hooked(url, GRACE)).await;

    let mut ws = server.ws("carol", "").await;
    assert_eq!(ws.next_event().await["event_type"], "connected");
    let state = ws.next_event().await;
    assert_eq!(
        (state["event_type"].as_str(), &state["data"]),
        (Some("game_state"), &json!({"hp": 10}))
    );
    let room = ws.next_event().await;
    assert_eq!(
        (room["event_type"].as_str(), room["room_id"].as_str()),
        (Some("room_update"), Some("hall"))
    );
    let first = state["sequence_number"].as_u64().unwrap();
    assert_eq!(
        room["sequence_number"].as_u64(),
        Some(first + 1),
        "numbered like any publish"
    );
    expect(&mut rx, "player_online").await;

    // On every connection, and in history: an SSE stream resuming from before them gets both.
    let mut sse = server
        .sse("carol", &format!("?last_event_id={}", first - 1))
        .await;
    assert_eq!(sse.next_event().await["event_type"], "connected");
    let recovery = sse.next_event().await;
    assert_eq!(recovery["data"]["replayed"], 2);
    assert_eq!(sse.next_event().await, state);
    assert_eq!(sse.next_event().await, room);

    // A second transport is no new player_online and no new session: nothing more is published.
    server.publish(&["carol"], "marker", json!({})).await;
    assert_eq!(ws.next_event().await["event_type"], "marker");
}

#[tokio::test]
async fn failed_attempts_are_retried_with_the_same_id_until_the_backend_answers() {
    let backend = Backend::default();
    backend
        .fail_first
        .lock()
        .insert("connection_opened".into(), 2);
    let (url, mut rx) = backend.start().await;
    let server = Server::start_with(hooked(url, GRACE)).await;
    let mut ws = server.ws("dave", "").await;
    ws.next_event().await;
    expect(&mut rx, "player_online").await;
    expect(&mut rx, "session_started").await;
    let delivered = expect(&mut rx, "connection_opened").await;

    let attempts: Vec<Value> = backend
        .attempts
        .lock()
        .iter()
        .filter(|n| n["type"] == "connection_opened")
        .cloned()
        .collect();
    assert_eq!(
        attempts.len(),
        3,
        "two failures, then the one that was answered"
    );
    assert!(
        attempts.iter().all(|a| *a == delivered),
        "the same body, id included, every time"
    );
    assert_eq!(
        *backend.bad_signatures.lock(),
        0,
        "every attempt was signed with the secret"
    );

    let metrics = server
        .get("/metrics", ADMIN_KEY)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("dualconn_lifecycle_notices_total{outcome=\"delivered\"} 3"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_backend_with_another_secret_refuses_every_notice_and_it_is_not_retried() {
    let backend = Backend::default();
    let (url, mut rx) = backend.start().await;
    let server = Server::start_with(|s| {
        hooked(url.clone(), GRACE)(s);
        s.lifecycle_webhook_secret = Some("not-the-backends-secret".into());
    })
    .await;
    let mut ws = server.ws("erin", "").await;
    ws.next_event().await;
    // The three notices of the join, each refused once with 400 and given up.
    let metrics = within(async {
        loop {
            let text = server
                .get("/metrics", ADMIN_KEY)
                .await
                .text()
                .await
                .unwrap();
            if text.contains("dualconn_lifecycle_notices_total{outcome=\"failed\"} 3") {
                return text;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(metrics.contains("dualconn_lifecycle_notices_total{outcome=\"delivered\"} 0"));
    assert_eq!(*backend.bad_signatures.lock(), 3, "a 4xx is not retried");
    assert!(rx.try_recv().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn across_two_nodes_a_player_is_online_once_and_offline_once() {
    let backend = Backend::default();
    let (url, mut rx) = backend.start().await;
    let nodes = cluster(2, hooked(url, GRACE)).await;
    let (a, b) = (&nodes[0], &nodes[1]);

    let mut ws = a.ws("frank", "").await;
    ws.next_event().await;
    let mut sse = b.sse("frank", "").await;
    sse.next_event().await;
    let mut seen = Vec::new();
    while seen
        .iter()
        .filter(|n: &&Value| n["type"] == "connection_opened")
        .count()
        < 2
    {
        seen.push(next(&mut rx).await);
    }

    // Leave node A, then node B: the player's last connection anywhere is on B.
    drop(ws);
    drop(sse);
    let left_at = Instant::now();
    loop {
        let n = next(&mut rx).await;
        let kind = n["type"].as_str().unwrap().to_owned();
        seen.push(n);
        if kind == "player_offline" {
            break;
        }
    }
    assert!(left_at.elapsed() >= GRACE, "offline before the grace");
    // Both nodes run the offline decision every heartbeat (1 s): give each two more beats to
    // send a second one if they were going to.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    while let Ok(n) = rx.try_recv() {
        seen.push(n);
    }
    let count = |kind: &str| seen.iter().filter(|n| n["type"] == kind).count();
    assert_eq!(count("player_online"), 1, "{seen:#?}");
    assert_eq!(count("player_offline"), 1, "{seen:#?}");
    assert_eq!(count("session_started"), 1, "{seen:#?}");
    assert_eq!(count("connection_closed"), 2, "{seen:#?}");
}
