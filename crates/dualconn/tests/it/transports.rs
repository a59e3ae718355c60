//! Both transports on every path, over real sockets: each event reaches every connection.

use crate::common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;

#[tokio::test]
async fn one_event_reaches_the_websocket_and_the_sse_stream() {
    let server = Server::start().await;
    let mut ws = server.ws("alice", "").await;
    assert_eq!(
        ws.response_headers["sec-websocket-protocol"], "bearer",
        "the server answers with the bearer subprotocol"
    );
    let mut sse = server.sse("alice", "").await;
    let ws_connected = ws.next_event().await;
    let sse_connected = sse.next_event().await;
    assert_eq!(ws_connected["event_type"], "connected");
    assert_eq!(ws_connected["data"]["connection_type"], "websocket");
    assert_eq!(sse_connected["data"]["connection_type"], "sse");
    assert_eq!(
        ws_connected["data"]["session_id"], sse_connected["data"]["session_id"],
        "both joined the one current session"
    );
    assert_eq!(ws_connected["data"]["heartbeat_interval_ms"], 15_000);

    let published = server
        .publish(&["alice"], "chat", json!({"text": "hello"}))
        .await;
    let entry = &published["events"][0];
    assert_eq!(entry["player_id"], "alice");
    assert_eq!(entry["connections"], 2);
    let seq = entry["sequence_number"].as_u64().unwrap();

    let over_ws = ws.next_event().await;
    let over_sse = sse.next().await.unwrap();
    assert_eq!(over_ws, over_sse.json, "the same bytes on both transports");
    assert_eq!(over_ws["sequence_number"], seq);
    assert_eq!(over_ws["data"]["text"], "hello");
    assert_eq!(over_sse.id, seq.to_string());
    assert!(
        over_ws.get("room_id").is_none(),
        "no room_id when none was given"
    );
}

#[tokio::test]
async fn sequence_numbers_increase_per_player_and_order_holds_per_connection() {
    let server = Server::start().await;
    let mut ws = server.ws("p1", "").await;
    ws.next_event().await;
    let mut last = 0;
    for i in 0..20 {
        let published = server.publish(&["p1", "p2"], "tick", json!({"i": i})).await;
        let seq = published["events"][0]["sequence_number"].as_u64().unwrap();
        assert!(seq > last);
        last = seq;
        assert!(seq < (1u64 << 53), "JavaScript reads it exactly");
    }
    let mut prev = 0;
    for i in 0..20 {
        let e = ws.next_event().await;
        assert_eq!(e["data"]["i"], i);
        let seq = e["sequence_number"].as_u64().unwrap();
        assert!(seq > prev);
        prev = seq;
    }
}

#[tokio::test]
async fn deprecated_websocket_paths_work_and_say_so() {
    let server = Server::start().await;
    for path in ["/api/ws/bob", "/ws/bob"] {
        let mut ws = server.ws_at(path, &server.token("bob")).await.unwrap();
        assert!(
            ws.response_headers["deprecation"]
                .to_str()
                .unwrap()
                .starts_with('@')
        );
        assert_eq!(
            ws.response_headers["link"],
            "</api/ws>; rel=\"successor-version\""
        );
        assert_eq!(ws.next_event().await["event_type"], "connected");
    }
    let preferred = server.ws("bob", "").await;
    assert!(preferred.response_headers.get("deprecation").is_none());
}

#[tokio::test]
async fn websocket_takes_its_token_from_authorization_or_the_query() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let server = Server::start().await;
    let token = server.token("carol");
    let mut req = server.ws_url("/api/ws").into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let mut ws = server.ws_request(req).await.unwrap();
    assert_eq!(ws.next_event().await["data"]["player_id"], "carol");
    let req = server
        .ws_url(&format!("/api/ws?token={token}"))
        .into_client_request()
        .unwrap();
    let mut ws = server.ws_request(req).await.unwrap();
    assert_eq!(ws.next_event().await["data"]["player_id"], "carol");
}

#[tokio::test]
async fn sse_framing_and_headers_are_exactly_the_spec() {
    let server = Server::start().await;
    let token = server.token("dave");
    let res = server
        .http
        .get(server.url(&format!("/api/events?token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    assert_eq!(res.headers()["cache-control"], "no-cache");
    assert_eq!(res.headers()["x-accel-buffering"], "no");
    let mut body = res.bytes_stream();
    let mut text = String::new();
    while !text.contains("\"connected\"") {
        let chunk = within(body.next()).await.unwrap().unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(text.starts_with("retry: "), "the stream opens with retry:");
    let published = server.publish(&["dave"], "chat", json!({"a": 1})).await;
    let seq = published["events"][0]["sequence_number"].as_u64().unwrap();
    let mut more = String::new();
    while !more.ends_with("\n\n") {
        let chunk = within(body.next()).await.unwrap().unwrap();
        more.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let lines: Vec<&str> = more.trim_end().lines().collect();
    assert_eq!(lines.len(), 2, "id and data only, no event: line: {more:?}");
    assert_eq!(lines[0], format!("id: {seq}"));
    assert!(lines[1].starts_with("data: {"));
    // Connection-local events carry no id.
    let (first_event, _) = text
        .split_once("\n\n")
        .unwrap()
        .1
        .split_once("\n\n")
        .unwrap();
    assert!(first_event.starts_with("data: "), "{first_event:?}");
}

#[tokio::test]
async fn ping_is_answered_with_pong_and_bad_frames_get_an_error_but_stay_open() {
    let server = Server::start().await;
    let mut ws = server.ws("erin", "").await;
    ws.next_event().await;
    ws.send_text(r#"{"type":"ping"}"#).await;
    let pong = ws.next_event().await;
    assert_eq!(pong["event_type"], "pong");
    assert!(pong.get("sequence_number").is_none());
    assert_eq!(pong["data"], json!({}));
    ws.send_text("{not json").await;
    let err = ws.next_event().await;
    assert_eq!(err["event_type"], "error");
    assert_eq!(err["data"]["error_type"], "validation_error");
    ws.send_text(r#"{"type":"dance"}"#).await;
    assert_eq!(ws.next_event().await["event_type"], "error");
    // The wrapped form.
    ws.send_text(r#"{"message":"{\"type\":\"ping\"}","timestamp":1}"#)
        .await;
    assert_eq!(ws.next_event().await["event_type"], "pong");
}

#[tokio::test]
async fn an_oversized_message_closes_with_1009() {
    let server = Server::start().await;
    let mut ws = server.ws("frank", "").await;
    ws.next_event().await;
    let big = format!(
        r#"{{"type":"chat","data":{{"t":"{}"}}}}"#,
        "x".repeat(70_000)
    );
    ws.send_text(&big).await;
    let (_, ending) = ws.until_close().await;
    assert_eq!(close_code(&ending), Some(1009), "{ending:?}");
}

#[tokio::test]
async fn broadcast_reaches_every_online_player() {
    let server = Server::start().await;
    let mut a = server.ws("a", "").await;
    let mut b = server.sse("b", "").await;
    a.next_event().await;
    b.next_event().await;
    let res = server
        .post(
            "/api/publish",
            ADMIN_KEY,
            json!({"broadcast": true, "event_type": "announce", "data": {"m": "hi"}, "room_id": "lobby"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    let mut players: Vec<_> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["player_id"].as_str().unwrap().to_owned())
        .collect();
    players.sort();
    assert_eq!(players, ["a", "b"]);
    assert_eq!(a.next_event().await["room_id"], "lobby");
    assert_eq!(b.next_event().await["data"]["m"], "hi");
}

#[tokio::test]
async fn heartbeats_reach_both_transports_as_connection_local_events() {
    use tokio_tungstenite::tungstenite::Message;
    let server = Server::start_with(|s| s.heartbeat_secs = Some(1)).await;
    let mut ws = server.ws("beat", "").await;
    let connected = ws.next_event().await;
    assert_eq!(connected["data"]["heartbeat_interval_ms"], 1000);
    let beat = loop {
        match within(ws.stream.next()).await {
            Some(Ok(Message::Text(t))) => {
                break serde_json::from_str::<serde_json::Value>(&t).unwrap();
            }
            Some(Ok(_)) => continue,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(beat["event_type"], "heartbeat");
    assert_eq!(beat["data"], json!({}));
    assert!(beat.get("sequence_number").is_none());

    let token = server.token("beat");
    let res = server
        .http
        .get(server.url(&format!("/sse/beat?token={token}")))
        .send()
        .await
        .unwrap();
    let mut body = res.bytes_stream();
    let mut text = String::new();
    while !text.contains("\"heartbeat\"") {
        let chunk = within(body.next()).await.unwrap().unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let beat_frame = text
        .split("\n\n")
        .find(|f| f.contains("\"heartbeat\""))
        .unwrap();
    assert!(
        beat_frame.starts_with("data: "),
        "no id: line: {beat_frame:?}"
    );
}

#[tokio::test]
async fn a_client_close_is_answered_with_a_close_frame() {
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    let server = Server::start().await;
    let mut ws = server.ws("leaver", "").await;
    ws.next_event().await;
    within(ws.stream.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    }))))
    .await
    .unwrap();
    let echo = loop {
        match within(ws.stream.next()).await {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected the close echo, got {other:?}"),
        }
    };
    assert_eq!(echo.map(|f| u16::from(f.code)), Some(1000));
}
