//! Limits and the server's life over real sockets: the per-player cap, connection-attempt rate
//! limits, body bounds, graceful shutdown, restarts and live statistics (SPEC §3, §8, §9, §11).

use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;

#[derive(Clone, Copy, Debug)]
enum Kind {
    Ws,
    Sse,
}

/// A refused connection attempt: status, `Retry-After` and JSON body.
struct Refusal {
    status: u16,
    retry_after: Option<String>,
    body: Value,
}

async fn refused(server: &Server, kind: Kind, player: &str) -> Refusal {
    refused_with(server, kind, player, "").await
}

/// The same, with a query (`?session_id=…`) on the stream's URL.
async fn refused_with(server: &Server, kind: Kind, player: &str, query: &str) -> Refusal {
    let token = server.token(player);
    match kind {
        Kind::Ws => match server.ws_at(&format!("/api/ws{query}"), &token).await {
            Ok(_) => panic!("the WebSocket was accepted"),
            Err(tungstenite::Error::Http(res)) => Refusal {
                status: res.status().as_u16(),
                retry_after: res
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_owned()),
                body: serde_json::from_slice(res.body().as_deref().expect("a body")).unwrap(),
            },
            Err(e) => panic!("expected an HTTP refusal, got {e}"),
        },
        Kind::Sse => {
            let sep = if query.is_empty() { "?" } else { "&" };
            let url = server.url(&format!("/sse/{player}{query}{sep}token={token}"));
            let res = within(server.http.get(url).send()).await.unwrap();
            assert_ne!(res.status(), 200, "the SSE stream was accepted");
            Refusal {
                status: res.status().as_u16(),
                retry_after: res
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_owned()),
                body: within(res.json()).await.unwrap(),
            }
        }
    }
}

fn assert_rate_limited(r: &Refusal) {
    assert_eq!(r.status, 429, "{:?}", r.body);
    assert_eq!(r.body["error"], true);
    assert_eq!(r.body["error_type"], "rate_limit_error");
    let secs: u64 = r
        .retry_after
        .as_deref()
        .expect("429 carries Retry-After")
        .parse()
        .expect("Retry-After is whole seconds");
    assert!((1..=2).contains(&secs), "Retry-After {secs}");
}

async fn stats(server: &Server) -> Value {
    let res = server.get("/api/connections/stats", ADMIN_KEY).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// Waits until the stats show `total_connections`, for disconnects the server notices on its
/// own: there is no event to await, so this polls, bounded by `within`.
async fn stats_when_total_is(server: &Server, total: u64) -> Value {
    within(async {
        loop {
            let s = stats(server).await;
            if s["total_connections"] == total {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

fn assert_counts(s: &Value, players: u64, conns: u64, ws_only: u64, sse_only: u64, dual: u64) {
    assert_eq!(s["total_players"], players, "{s}");
    assert_eq!(s["total_connections"], conns, "{s}");
    assert_eq!(
        s["connection_distribution"]["websocket_only"], ws_only,
        "{s}"
    );
    assert_eq!(s["connection_distribution"]["sse_only"], sse_only, "{s}");
    assert_eq!(
        s["connection_distribution"]["dual_connections"], dual,
        "{s}"
    );
    assert_eq!(s["health_statistics"]["healthy_connections"], conns, "{s}");
    assert_eq!(s["health_statistics"]["unhealthy_connections"], 0, "{s}");
    assert_eq!(s["health_statistics"]["health_percentage"], 100.0, "{s}");
}

fn average(s: &Value) -> f64 {
    s["session_statistics"]["average_connections_per_session"]
        .as_f64()
        .unwrap()
}

#[tokio::test]
async fn the_fifth_connection_evicts_the_oldest_with_connection_replaced_then_4002() {
    let server = Server::start().await;
    let mut oldest_ws = server.ws("p", "").await;
    let mut oldest_sse = server.sse("p", "").await;
    let mut ws3 = server.ws("p", "").await;
    let mut sse4 = server.sse("p", "").await;
    for e in [oldest_ws.next_event().await, ws3.next_event().await] {
        assert_eq!(e["event_type"], "connected");
    }
    for e in [oldest_sse.next_event().await, sse4.next_event().await] {
        assert_eq!(e["event_type"], "connected");
    }

    let mut ws5 = server.ws("p", "").await;
    assert_eq!(ws5.next_event().await["event_type"], "connected");
    let (events, ending) = oldest_ws.until_close().await;
    let kinds: Vec<&Value> = events
        .iter()
        .map(|e| &e["event_type"])
        .filter(|t| *t != "heartbeat")
        .collect();
    assert_eq!(kinds, [&json!("connection_replaced")], "{events:?}");
    assert_eq!(close_code(&ending), Some(4002), "{ending:?}");

    // The next oldest is the SSE stream: it is told, then its stream ends.
    let mut sse6 = server.sse("p", "").await;
    assert_eq!(sse6.next_event().await["event_type"], "connected");
    let events = oldest_sse.until_end().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["event_type"], "connection_replaced");

    // The four newest remain and get everything.
    let published = server.publish(&["p"], "tick", json!({})).await;
    assert_eq!(published["events"][0]["connections"], 4);
    assert_eq!(ws3.next_event().await["event_type"], "tick");
    assert_eq!(sse4.next_event().await["event_type"], "tick");
    assert_eq!(ws5.next_event().await["event_type"], "tick");
    assert_eq!(sse6.next_event().await["event_type"], "tick");
}

#[tokio::test]
async fn with_reject_over_limit_the_fifth_connection_is_refused() {
    let server = Server::start_with(|s| s.reject_over_limit = Some(true)).await;
    let mut first = server.ws("p", "").await;
    assert_eq!(first.next_event().await["event_type"], "connected");
    let _others = (
        server.sse("p", "").await,
        server.ws("p", "").await,
        server.sse("p", "").await,
    );
    for kind in [Kind::Ws, Kind::Sse] {
        let r = refused(&server, kind, "p").await;
        assert_eq!(r.status, 409, "{:?}", r.body);
        assert_eq!(r.body["error_type"], "connection_error");
    }
    // Nobody was evicted: the oldest still gets events.
    let published = server.publish(&["p"], "tick", json!({})).await;
    assert_eq!(published["events"][0]["connections"], 4);
    assert_eq!(first.next_event().await["event_type"], "tick");
    // Another player is not affected by p's cap.
    let mut other = server.ws("q", "").await;
    assert_eq!(other.next_event().await["event_type"], "connected");
}

#[tokio::test]
async fn connection_attempts_over_the_per_ip_rate_get_429_with_retry_after() {
    let server = Server::start_with(|s| {
        s.connect_rate_per_ip = Some(1);
        s.connect_burst_per_ip = Some(2);
    })
    .await;
    // WebSocket and SSE draw on the one bucket, whoever the player is.
    let mut ws = server.ws("a", "").await;
    let mut sse = server.sse("b", "").await;
    assert_eq!(ws.next_event().await["event_type"], "connected");
    assert_eq!(sse.next_event().await["event_type"], "connected");
    assert_rate_limited(&refused(&server, Kind::Ws, "c").await);
    assert_rate_limited(&refused(&server, Kind::Sse, "d").await);
}

#[tokio::test]
async fn connection_attempts_over_the_per_player_rate_get_429_with_retry_after() {
    let server = Server::start_with(|s| {
        s.connect_rate_per_player = Some(1);
        s.connect_burst_per_player = Some(2);
    })
    .await;
    let mut sse = server.sse("a", "").await;
    let mut ws = server.ws("a", "").await;
    assert_eq!(sse.next_event().await["event_type"], "connected");
    assert_eq!(ws.next_event().await["event_type"], "connected");
    assert_rate_limited(&refused(&server, Kind::Ws, "a").await);
    assert_rate_limited(&refused(&server, Kind::Sse, "a").await);
    // Another player has its own bucket.
    let mut other = server.ws("b", "").await;
    assert_eq!(other.next_event().await["event_type"], "connected");
}

#[tokio::test]
async fn an_oversized_publish_body_is_413_in_the_error_envelope() {
    let server = Server::start_with(|s| s.max_body_bytes = Some(512)).await;
    let res = server
        .post(
            "/api/publish",
            ADMIN_KEY,
            json!({"player_ids": ["p"], "event_type": "big", "data": {"t": "x".repeat(2000)}}),
        )
        .await;
    assert_eq!(res.status(), 413);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], true, "{body}");
    assert_eq!(body["error_type"], "validation_error");
    assert!(body["message"].is_string() && body["timestamp"].is_string());
    assert!(body["details"].is_object());
    // Within the bound, the same route works.
    server.publish(&["p"], "small", json!({"t": "x"})).await;
}

#[tokio::test]
async fn shutdown_tells_every_connection_then_closes_and_refuses_newcomers() {
    let server = Server::start().await;
    let live = server.get("/health/live", "").await;
    assert_eq!(live.status(), 200);
    let ready = server.get("/health/ready", "").await;
    assert_eq!(ready.status(), 200);

    let mut ws = server.ws("p", "").await;
    let mut sse = server.sse("q", "").await;
    ws.next_event().await;
    sse.next_event().await;

    server.shutdown.cancel();
    let (events, ending) = ws.until_close().await;
    let events: Vec<Value> = events
        .into_iter()
        .filter(|e| e["event_type"] != "heartbeat")
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["event_type"], "server_shutdown");
    assert!(
        events[0]["data"]["reconnect_after_ms"].is_u64(),
        "{events:?}"
    );
    assert_eq!(close_code(&ending), Some(1001), "{ending:?}");

    let events = sse.until_end().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["event_type"], "server_shutdown");
    assert!(events[0]["data"]["reconnect_after_ms"].is_u64());

    // Draining: nobody new gets in, on either transport.
    let fresh = reqwest::Client::new();
    let token = server.token("r");
    let sse_attempt = within(
        fresh
            .get(server.url(&format!("/sse/r?token={token}")))
            .send(),
    )
    .await;
    assert!(
        sse_attempt.as_ref().map_or(true, |r| r.status() == 503),
        "{sse_attempt:?}"
    );
    let ws_attempt = server.ws_at("/api/ws", &token).await;
    match ws_attempt {
        Err(tungstenite::Error::Http(res)) => assert_eq!(res.status(), 503),
        Err(_) => {}
        Ok(_) => panic!("a WebSocket opened during the drain"),
    }

    // And `run` returns.
    server.stop().await;
}

#[tokio::test]
async fn sequence_numbers_keep_rising_across_a_restart_with_no_state() {
    let first = Server::start().await;
    let before = first.publish(&["p"], "tick", json!({})).await["events"][0]["sequence_number"]
        .as_u64()
        .unwrap();
    first.stop().await;

    let second = Server::start().await;
    let mut ws = second.ws("p", "").await;
    ws.next_event().await;
    let after = second.publish(&["p"], "tick", json!({})).await["events"][0]["sequence_number"]
        .as_u64()
        .unwrap();
    assert!(after > before, "{after} after a restart, {before} before");
    assert_eq!(ws.next_event().await["sequence_number"], after);
}

#[tokio::test]
async fn stats_follow_connections_as_they_come_and_go() {
    let server = Server::start().await;
    let s = stats(&server).await;
    assert_counts(&s, 0, 0, 0, 0, 0);
    assert_eq!(s["session_statistics"]["total_sessions"], 0);
    assert_eq!(average(&s), 0.0);
    // Only admins may read it.
    let res = server
        .get("/api/connections/stats", &server.token("p"))
        .await;
    assert_eq!(res.status(), 403);

    let mut ws_only = server.ws("ws_only", "").await;
    let mut sse_only = server.sse("sse_only", "").await;
    let mut dual_ws = server.ws("dual", "").await;
    let mut dual_sse = server.sse("dual", "").await;
    let mut triple = (
        server.ws("triple", "").await,
        server.ws("triple", "").await,
        server.sse("triple", "").await,
    );
    ws_only.next_event().await;
    sse_only.next_event().await;
    dual_ws.next_event().await;
    dual_sse.next_event().await;
    triple.0.next_event().await;
    triple.1.next_event().await;
    triple.2.next_event().await;
    // A session with nothing connected counts as a session, not in the average.
    let res = server
        .post("/api/connections/idle/session", ADMIN_KEY, json!({}))
        .await;
    assert_eq!(res.status(), 200);

    let s = stats(&server).await;
    assert_counts(&s, 4, 7, 1, 1, 2);
    assert_eq!(s["session_statistics"]["total_sessions"], 5);
    assert_eq!(average(&s), 7.0 / 4.0);

    // Dual loses its WebSocket and becomes SSE-only.
    drop(dual_ws);
    let s = stats_when_total_is(&server, 6).await;
    assert_counts(&s, 4, 6, 1, 2, 1);
    assert_eq!(s["session_statistics"]["total_sessions"], 5);
    assert_eq!(average(&s), 6.0 / 4.0);

    // The SSE-only player leaves altogether; its session stays.
    drop(sse_only);
    let s = stats_when_total_is(&server, 5).await;
    assert_counts(&s, 3, 5, 1, 1, 1);
    assert_eq!(s["session_statistics"]["total_sessions"], 5);
    assert_eq!(average(&s), 5.0 / 3.0);

    // Everyone leaves.
    drop((ws_only, dual_sse, triple));
    let s = stats_when_total_is(&server, 0).await;
    assert_counts(&s, 0, 0, 0, 0, 0);
    assert_eq!(average(&s), 0.0);
    assert_eq!(s["session_statistics"]["total_sessions"], 5);
}

// ---------------------------------------------------------------------------------------------
// The node's budget (SPEC §12.27)
// ---------------------------------------------------------------------------------------------

/// The real binary under `prlimit --nofile=128`: its stream cap defaults to the descriptor
/// limit less a reserve (128 − 32 = 96). Past it, new streams on both transports get 503
/// `connection_error` with `Retry-After`; REST and health keep answering; the streams it holds
/// still get their events; and once one closes, a new one is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_lowered_descriptor_limit_the_binary_is_full_at_its_cap_and_says_so() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let mut child = tokio::process::Command::new("prlimit")
        .args([
            "--nofile=128:128",
            "--",
            env!("CARGO_BIN_EXE_dualconn"),
            "serve",
        ])
        .env("DUALCONN_BIND", "127.0.0.1:0")
        .env("DUALCONN_JWT_SECRET", SECRET)
        .env("DUALCONN_ADMIN_KEYS", ADMIN_KEY)
        .env("DUALCONN_CONNECT_RATE_PER_IP", "100000")
        .env("DUALCONN_CONNECT_BURST_PER_IP", "100000")
        .env("DUALCONN_LOG_FORMAT", "json")
        .env("DUALCONN_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("prlimit (util-linux) runs the server binary");
    let mut log = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = within(async {
        loop {
            let line = log.next_line().await.unwrap().expect("the server logs");
            let v: Value = serde_json::from_str(&line).unwrap_or_default();
            if v["fields"]["message"] == "listening" {
                return v["fields"]["addr"].as_str().unwrap().to_owned();
            }
        }
    })
    .await;
    // Keep reading the log so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = log.next_line().await {} });
    let http = reqwest::Client::new();
    let url = |path: &str| format!("http://{addr}{path}");
    let admin_get = |path: &str| http.get(url(path)).bearer_auth(ADMIN_KEY).send();

    let perf: Value = within(admin_get("/monitoring/performance"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cap = perf["node_budget"]["max_connections"].as_u64().unwrap();
    assert_eq!(cap, 96, "128 descriptors less the reserve: {perf}");

    let token = |p: &str| token_with(json!({"sub": p, "exp": now_secs() + 3600}));
    let sse = |p: String| {
        let req = http.get(url(&format!("/sse/{p}?token={}", token(&p))));
        async move { within(req.send()).await.unwrap() }
    };
    let mut held = Vec::new();
    for i in 0..cap {
        let res = sse(format!("held{i}")).await;
        assert_eq!(res.status(), 200, "stream {i} of {cap}");
        held.push(Sse::from_response(res));
    }

    let refused = sse("one-more".into()).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(
        refused.headers()["retry-after"].to_str().unwrap(),
        "5",
        "503 carries Retry-After"
    );
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error_type"], "connection_error", "{body}");
    let mut req = format!("ws://{addr}/api/ws").into_client_request().unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        format!("bearer, {}", token("one-more-ws")).parse().unwrap(),
    );
    match within(tokio_tungstenite::connect_async(req.clone())).await {
        Err(tungstenite::Error::Http(res)) => {
            assert_eq!(res.status(), 503);
            assert!(res.headers().contains_key("retry-after"));
        }
        other => panic!("expected 503, got {other:?}"),
    }

    // REST and health answer, and held streams are untouched.
    let live = within(http.get(url("/health/live")).send()).await.unwrap();
    assert_eq!(live.status(), 200);
    let published = within(
        http.post(url("/api/publish"))
            .bearer_auth(ADMIN_KEY)
            .json(
                &json!({"player_ids": ["held0", "held95"], "event_type": "still_here", "data": {}}),
            )
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(published.status(), 200);
    for i in [0, 95] {
        let stream = &mut held[i];
        assert_eq!(stream.next_event().await["event_type"], "connected");
        assert_eq!(stream.next_event().await["event_type"], "still_here");
    }
    let perf: Value = within(admin_get("/monitoring/performance"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(perf["node_budget"]["connections"], cap);
    assert_eq!(perf["node_budget"]["refused_streams_connections"], 2);
    let metrics = within(admin_get("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("dualconn_node_connections_max 96"),
        "{metrics}"
    );
    assert!(
        metrics.contains("dualconn_node_connections 96"),
        "{metrics}"
    );

    // One stream closes: the server notices and takes a new one.
    drop(held.pop());
    within(async {
        loop {
            let res = sse("after-one-left".into()).await;
            if res.status() == 200 {
                return;
            }
            assert_eq!(res.status(), 503);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    child.kill().await.unwrap();
}

/// SPEC §12.15 and §12.27: on a full node the session rules and the per-player cap still
/// answer first (409), on both transports; only a request all of them let in gets 503, and
/// that refusal changes nothing: the session it would have taken over stays current.
#[tokio::test]
async fn a_full_node_answers_409_where_the_session_rules_refuse_and_503_only_after_them() {
    let server = Server::start_with(|s| {
        s.max_connections = Some(1);
        s.max_connections_per_player = Some(1);
        s.reject_over_limit = Some(true);
    })
    .await;
    let new_session = |player: &'static str, id: &'static str| {
        let server = &server;
        async move {
            let path = format!("/api/connections/{player}/session");
            let res = server
                .post(&path, ADMIN_KEY, json!({"session_id": id}))
                .await;
            assert_eq!(res.status(), 200);
        }
    };
    // alice: "old" was replaced by "current", which holds the node's one stream.
    new_session("alice", "old").await;
    new_session("alice", "current").await;
    let mut held = server.sse("alice", "").await;
    assert_eq!(held.next_event().await["data"]["session_id"], "current");
    // bob: a session with nothing connected, which a new id would take over on a node with room.
    new_session("bob", "bob-1").await;

    for kind in [Kind::Ws, Kind::Sse] {
        for (query, error_type) in [
            ("?session_id=old", "session_error"),
            ("?session_id=another", "session_error"),
            ("", "connection_error"),
        ] {
            let r = refused_with(&server, kind, "alice", query).await;
            assert_eq!(r.status, 409, "alice{query}: {:?}", r.body);
            assert_eq!(r.body["error_type"], error_type, "alice{query}");
        }
        for query in ["?session_id=bob-2", "", "?session_id=bob-1"] {
            let r = refused_with(&server, kind, "bob", query).await;
            assert_eq!(r.status, 503, "bob{query}: {:?}", r.body);
            assert_eq!(r.body["error_type"], "connection_error");
            assert_eq!(r.retry_after.as_deref(), Some("5"));
        }
    }

    let bob = server
        .get_json("/api/connections/bob/session", ADMIN_KEY)
        .await;
    assert_eq!(
        bob["session_id"], "bob-1",
        "a refused join took nothing over: {bob}"
    );
    let perf = server.get_json("/monitoring/performance", ADMIN_KEY).await;
    assert_eq!(
        perf["node_budget"]["refused_streams_connections"], 6,
        "{perf}"
    );
    // The stream the node holds was never touched.
    server.publish(&["alice"], "still_here", json!({})).await;
    assert_eq!(held.next_event().await["event_type"], "still_here");
}

/// With a node-wide queued-bytes bound below one outbox's own bound, a reader that stops
/// reading is closed by the node's budget (4008) before its outbox overflows; a reader that
/// keeps up is untouched, and the shedding shows in the figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_queued_bytes_budget_the_heaviest_reader_is_closed_with_4008() {
    let server = Server::start_with(|s| {
        s.max_body_bytes = Some(1 << 20);
        s.outbox_bytes = Some(4 << 20);
        s.max_queued_bytes = Some(512 << 10);
    })
    .await;
    let mut slow = tiny_buffer_ws(&server, "heavy").await;
    let mut good = server.ws("light", "").await;
    good.next_event().await;
    let blob = "h".repeat(64 * 1024);
    let mut cut_off = false;
    for round in 0..1000 {
        let r = server.publish(&["heavy"], "blob", json!({"b": blob})).await;
        if r["events"][0]["connections"] == 0 {
            cut_off = true;
            break;
        }
        server
            .publish(&["light"], "tick", json!({"round": round}))
            .await;
        assert_eq!(good.next_event().await["data"]["round"], round);
    }
    assert!(cut_off, "the stalled reader was closed");
    let perf: Value = server
        .get("/monitoring/performance", ADMIN_KEY)
        .await
        .json()
        .await
        .unwrap();
    let budget = &perf["node_budget"];
    assert_eq!(budget["shed_connections"], 1, "{budget}");
    assert_eq!(budget["max_queued_bytes"], 512 << 10);
    assert!(
        budget["queued_bytes"].as_u64().unwrap() < 512 << 10,
        "{budget}"
    );
    assert_eq!(
        perf["message_delivery"]["slow_consumer_disconnects"], 1,
        "{perf}"
    );

    // Reading again, the stalled reader finds 4008 after what the kernel held.
    use tokio::io::AsyncReadExt;
    let code = within(async {
        // Only the tail is kept: the close frame is the last thing sent, and what comes
        // before it is megabytes of the events the kernel held.
        let mut tail = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = slow.read(&mut chunk).await.unwrap();
            if n == 0 {
                return None;
            }
            tail.extend_from_slice(&chunk[..n]);
            let keep = tail.len().saturating_sub(64);
            tail.drain(..keep);
            // 0x88, a length of 2 + reason, then the code; event frames are ASCII JSON, so
            // 0x88 cannot appear in them.
            if let Some(at) = tail
                .windows(2)
                .rposition(|w| w[0] == 0x88 && (w[1] as usize) < 126)
                && tail.len() >= at + 4
                && tail.len() == at + 2 + tail[at + 1] as usize
            {
                return Some(u16::from_be_bytes([tail[at + 2], tail[at + 3]]));
            }
        }
    })
    .await;
    assert_eq!(code, Some(4008));
    server
        .publish(&["light"], "tick", json!({"after": true}))
        .await;
    assert_eq!(good.next_event().await["data"]["after"], true);
}
