//! Commands from players: the demo world, the HTTP fallback, rate limits and the webhook.

use std::sync::Arc;

use crate::common::*;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use parking_lot::Mutex;
use serde_json::{Value, json};

/// Sends a command and returns the next `command_response`, skipping other events.
async fn command(ws: &mut Ws, text: &str) -> Value {
    ws.send_text(&json!({"type": "command", "data": {"command": text}}).to_string())
        .await;
    next_of(ws, "command_response").await
}

async fn next_of(ws: &mut Ws, event_type: &str) -> Value {
    loop {
        let e = ws.next_event().await;
        if e["event_type"] == event_type {
            return e;
        }
    }
}

#[tokio::test]
async fn demo_world_rooms_say_whisper_and_who() {
    let server = Server::start().await;
    let mut alice = server.ws("alice", "").await;
    let mut bob = server.ws("bob", "").await;
    let mut carol = server.ws("carol", "").await;
    for ws in [&mut alice, &mut bob, &mut carol] {
        ws.next_event().await;
    }
    // A player enters the world (the hall) with its first command. Carol walks on to the
    // library; alice and bob stay in the hall.
    command(&mut bob, "look").await;
    let went = command(&mut carol, "go north").await;
    assert_eq!(went["data"]["ok"], true);
    assert_eq!(went["data"]["room"]["id"], "library");
    assert!(
        went["sequence_number"].is_u64(),
        "answers are stream events"
    );

    let look = command(&mut alice, "look").await;
    assert_eq!(look["data"]["room"]["id"], "hall");
    let mut here: Vec<_> = look["data"]["players"].as_array().unwrap().clone();
    here.sort_by_key(|p| p.as_str().unwrap().to_owned());
    assert_eq!(here, [json!("alice"), json!("bob")]);

    // `say` reaches the room only: bob hears it, carol does not.
    alice
        .send_text(r#"{"type":"command","data":{"command":"say hello hall"}}"#)
        .await;
    let heard = next_of(&mut bob, "say").await;
    assert_eq!(
        heard["data"],
        json!({"from": "alice", "text": "hello hall"})
    );
    assert_eq!(heard["room_id"], "hall");
    let said = alice.next_event().await;
    assert_eq!(
        said["data"]["text"], "hello hall",
        "the speaker hears itself"
    );
    let answer = alice.next_event().await;
    assert_eq!(answer["data"]["heard_by"], 2);

    // `whisper` reaches one player across rooms.
    command(&mut bob, "whisper carol psst").await;
    let whisper = next_of(&mut carol, "whisper").await;
    assert_eq!(whisper["data"], json!({"from": "bob", "text": "psst"}));
    // Only to a player who is online.
    let nobody = command(&mut bob, "whisper dave psst").await;
    assert_eq!(nobody["data"]["ok"], false, "{nobody}");
    assert_eq!(nobody["data"]["error"], "no such player online");

    // Carol's next event is the answer to `who`, proving she never got alice's `say`.
    let who = command(&mut carol, "who").await;
    let players: Vec<_> = who["data"]["players"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["player_id"].clone(), p["room"].clone()))
        .collect();
    assert_eq!(
        players,
        [
            (json!("alice"), json!("hall")),
            (json!("bob"), json!("hall")),
            (json!("carol"), json!("library")),
        ]
    );

    // `chat` is `say`; `emote` and `help` answer.
    alice
        .send_text(r#"{"type":"chat","data":{"text":"hi bob"}}"#)
        .await;
    assert_eq!(next_of(&mut bob, "say").await["data"]["text"], "hi bob");
    assert_eq!(
        next_of(&mut alice, "command_response").await["data"]["command"],
        "say"
    );
    let help = command(&mut alice, "help").await;
    assert!(help["data"]["commands"].as_array().unwrap().len() >= 7);
    let bad = command(&mut alice, "go sideways").await;
    assert_eq!(bad["data"]["ok"], false);
}

#[tokio::test]
async fn the_wrapped_form_and_game_command_reach_the_handler() {
    let server = Server::start().await;
    let mut ws = server.ws("dora", "").await;
    ws.next_event().await;
    let inner = json!({"type": "game_command", "data": {"command": "look"}}).to_string();
    ws.send_text(&json!({"message": inner, "timestamp": 1}).to_string())
        .await;
    let answer = next_of(&mut ws, "command_response").await;
    assert_eq!(answer["data"]["command"], "look");
}

#[tokio::test]
async fn commands_over_http_for_sse_only_players() {
    let server = Server::start().await;
    let mut sse = server.sse("erin", "").await;
    sse.next_event().await;
    let token = server.token("erin");
    let res = server
        .post(
            "/api/commands",
            &token,
            json!({"type": "command", "data": {"command": "look"}}),
        )
        .await;
    assert_eq!(res.status(), 202);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"success": true, "accepted": true})
    );
    let answer = sse.next().await.unwrap();
    assert_eq!(answer.json["event_type"], "command_response");
    assert_eq!(answer.id, answer.json["sequence_number"].to_string());
    let pong = server
        .post("/api/commands", &token, json!({"type": "ping"}))
        .await;
    assert_eq!(pong.status(), 200);
    assert_eq!(pong.json::<Value>().await.unwrap()["pong"], true);
    let bad = server
        .post("/api/commands", &token, json!({"type": "dance"}))
        .await;
    assert_eq!(bad.status(), 400);
    let admin = server
        .post("/api/commands", ADMIN_KEY, json!({"type": "command"}))
        .await;
    assert_eq!(admin.status(), 403);
}

#[tokio::test]
async fn a_command_flood_is_refused_and_the_connection_stays() {
    let server = Server::start_with(|s| {
        s.command_rate_per_player = Some(1);
        s.command_burst_per_player = Some(3);
    })
    .await;
    let mut ws = server.ws("flood", "").await;
    ws.next_event().await;
    for _ in 0..4 {
        ws.send_text(r#"{"type":"command","data":{"command":"help"}}"#)
            .await;
    }
    let err = next_of(&mut ws, "error").await;
    assert_eq!(err["data"]["error_type"], "rate_limit_error");
    // Pings are not commands and still work.
    ws.send_text(r#"{"type":"ping"}"#).await;
    next_of(&mut ws, "pong").await;
    // The HTTP route shares the bucket and answers 429 with Retry-After.
    let res = server
        .post(
            "/api/commands",
            &server.token("flood"),
            json!({"type": "command", "data": {"command": "help"}}),
        )
        .await;
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
}

/// What the fake game backend saw and how it should answer.
#[derive(Clone, Default)]
struct Backend {
    seen: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
}

async fn start_backend(backend: Backend) -> String {
    async fn reply(
        axum::extract::State(b): axum::extract::State<Backend>,
        headers: HeaderMap,
        body: Bytes,
    ) -> (StatusCode, String) {
        let json: Value = serde_json::from_slice(&body).unwrap();
        b.seen.lock().push((headers.clone(), json.clone()));
        let expected = dualconn::commands::webhook::signature(b"hook-secret", &body);
        if headers
            .get("x-dualconn-signature")
            .map(|v| v.to_str().unwrap())
            != Some(&expected)
        {
            return (StatusCode::UNAUTHORIZED, "bad signature".into());
        }
        match json["command"].as_str().unwrap() {
            // Never answers: only the server's timeout ends the call.
            "slow" => std::future::pending().await,
            "fail" => (StatusCode::INTERNAL_SERVER_ERROR, "boom".into()),
            "garbage" => (StatusCode::OK, "<html>not json".into()),
            _ => (
                StatusCode::OK,
                json!({"events": [
                    {"player_ids": [json["player_id"]], "event_type": "command_response",
                     "data": {"echo": json["args"]}},
                    {"player_ids": ["watcher"], "event_type": "spotted", "room_id": "arena",
                     "data": {"who": json["player_id"]}},
                ]})
                .to_string(),
            ),
        }
    }
    let app = axum::Router::new()
        .route("/hook", post(reply))
        .with_state(backend);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/hook")
}

#[tokio::test]
async fn the_webhook_delivers_its_events_and_failures_become_error_events() {
    let backend = Backend::default();
    let url = start_backend(backend.clone()).await;
    let server = Server::start_with(|s| {
        s.command_webhook = Some(url);
        s.command_webhook_secret = Some("hook-secret".into());
        // Far above any scheduling delay on a busy machine: these calls must succeed or fail
        // on their own merits. The timeout has its own test below.
        s.command_webhook_timeout_ms = Some(30_000);
    })
    .await;
    let mut watcher = server.sse("watcher", "").await;
    watcher.next_event().await;
    let mut ws = server.ws("gina", "").await;
    let connected = ws.next_event().await;

    ws.send_text(r#"{"type":"command","data":{"command":"attack goblin"}}"#)
        .await;
    let answer = next_of(&mut ws, "command_response").await;
    assert_eq!(answer["data"]["echo"], json!(["goblin"]));
    let spotted = watcher.next_event().await;
    assert_eq!(spotted["event_type"], "spotted");
    assert_eq!(spotted["room_id"], "arena");
    {
        let seen = backend.seen.lock();
        let (_, body) = &seen[0];
        assert_eq!(body["player_id"], "gina");
        assert_eq!(body["command"], "attack");
        assert_eq!(body["args"], json!(["goblin"]));
        assert_eq!(body["session_id"], connected["data"]["session_id"]);
        assert_eq!(body["connection_id"], connected["data"]["connection_id"]);
    }

    for (cmd, why) in [("fail", "HTTP 500"), ("garbage", "not valid")] {
        ws.send_text(&json!({"type": "command", "data": {"command": cmd}}).to_string())
            .await;
        let err = next_of(&mut ws, "error").await;
        assert_eq!(err["data"]["error_type"], "system_error");
        let message = err["data"]["message"].as_str().unwrap();
        assert!(message.contains(why), "{cmd}: {message}");
    }
    // The socket is still fine.
    ws.send_text(r#"{"type":"ping"}"#).await;
    next_of(&mut ws, "pong").await;
}

#[tokio::test]
async fn a_webhook_that_does_not_answer_in_time_becomes_an_error_event() {
    let url = start_backend(Backend::default()).await;
    let server = Server::start_with(|s| {
        s.command_webhook = Some(url);
        s.command_webhook_secret = Some("hook-secret".into());
        // Short, and nothing here is expected to succeed within it: the backend never answers.
        s.command_webhook_timeout_ms = Some(200);
    })
    .await;
    let mut ws = server.ws("ivan", "").await;
    ws.next_event().await;
    ws.send_text(r#"{"type":"command","data":{"command":"slow"}}"#)
        .await;
    let err = next_of(&mut ws, "error").await;
    assert_eq!(err["data"]["error_type"], "system_error");
    let message = err["data"]["message"].as_str().unwrap();
    assert!(message.contains("in time"), "{message}");
    ws.send_text(r#"{"type":"ping"}"#).await;
    next_of(&mut ws, "pong").await;
}

#[tokio::test]
async fn a_wrong_webhook_secret_is_refused_by_the_backend() {
    let backend = Backend::default();
    let url = start_backend(backend.clone()).await;
    let server = Server::start_with(|s| {
        s.command_webhook = Some(url);
        s.command_webhook_secret = Some("not-the-secret".into());
    })
    .await;
    let mut ws = server.ws("hank", "").await;
    ws.next_event().await;
    ws.send_text(r#"{"type":"command","data":{"command":"look"}}"#)
        .await;
    let err = next_of(&mut ws, "error").await;
    assert!(
        err["data"]["message"]
            .as_str()
            .unwrap()
            .contains("HTTP 401")
    );
    assert_eq!(backend.seen.lock().len(), 1);
}
