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

/// An SSE request on a raw socket, so the test sees the bytes on the wire.
async fn raw_sse(server: &Server, player: &str, version: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let token = server.token(player);
    let head = format!("GET /sse/{player}?token={token} {version}\r\nHost: x\r\n\r\n");
    socket.write_all(head.as_bytes()).await.unwrap();
    socket
}

/// Reads until `needle` has arrived; returns everything read.
async fn read_until(socket: &mut tokio::net::TcpStream, needle: &str) -> String {
    use tokio::io::AsyncReadExt;
    let mut read = Vec::new();
    within(async {
        while !String::from_utf8_lossy(&read).contains(needle) {
            let mut buf = [0u8; 4096];
            let n = socket.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "ended before {needle:?}: {:?}",
                String::from_utf8_lossy(&read)
            );
            read.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    String::from_utf8(read).unwrap()
}

#[tokio::test]
async fn an_sse_stream_on_its_own_connection_is_chunked_dated_and_live() {
    let server = Server::start().await;
    let mut socket = raw_sse(&server, "erin", "HTTP/1.1").await;
    let opening = read_until(&mut socket, "\"connected\"").await;
    let (head, _) = opening.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert!(head.contains("\r\ntransfer-encoding: chunked"), "{head}");
    assert!(
        head.contains("\r\ncontent-type: text/event-stream"),
        "{head}"
    );
    assert!(head.contains("\r\ndate: "), "{head}");
    let published = server.publish(&["erin"], "chat", json!({"n": 1})).await;
    let seq = published["events"][0]["sequence_number"].as_u64().unwrap();
    read_until(&mut socket, &format!("id: {seq}\n")).await;
}

/// The stream notices a client that hangs up while nothing is being written.
#[tokio::test]
async fn an_idle_sse_client_that_hangs_up_leaves_at_once() {
    let server = Server::start().await;
    let mut socket = raw_sse(&server, "fred", "HTTP/1.1").await;
    read_until(&mut socket, "\"connected\"").await;
    assert_eq!(server.hub.stats().connections(), 1);
    drop(socket);
    // Nothing to await for a server noticing a hang-up: poll, bounded by `within`.
    within(async {
        while server.hub.stats().connections() != 0 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// The body of a chunked response read so far, if it ends on a chunk's end; panics on a
/// chunk that is not framed as HTTP/1.1 says.
fn dechunk(wire: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(wire).ok()?;
    let (_, mut chunks) = text.split_once("\r\n\r\n")?;
    let mut body = String::new();
    while !chunks.is_empty() {
        let (size, rest) = chunks.split_once("\r\n")?;
        let size = usize::from_str_radix(size, 16).expect("a hex chunk size");
        if rest.len() < size + 2 {
            return None;
        }
        body.push_str(&rest[..size]);
        assert_eq!(&rest[size..size + 2], "\r\n", "a chunk ends with CRLF");
        chunks = &rest[size + 2..];
    }
    Some(body)
}

/// Publishers write an idle stream's events to its socket themselves; a socket that fills
/// midway leaves part of an event for the stream's task, and what was queued meanwhile waits
/// behind it. Read late, the stream must still be whole chunks holding every event once, in
/// order.
#[tokio::test]
async fn a_stream_whose_socket_fills_midway_still_gets_every_event_once_in_order() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Room to queue what the kernel does not take, so the reader is slow but never dropped.
    let server = Server::start_with(|s| s.outbox_bytes = Some(64 << 20)).await;
    // A small receive buffer, so what the server writes piles up in its send buffer.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut socket = socket.connect(server.addr).await.unwrap();
    let token = server.token("hana");
    let head = format!("GET /sse/hana?token={token} HTTP/1.1\r\nHost: x\r\n\r\n");
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut wire = read_until(&mut socket, "\"connected\"").await.into_bytes();

    // 64 KiB events, 8 MiB in all: more than a socket's send buffer grows to here (4 MiB,
    // `net.ipv4.tcp_wmem`), so the kernel stops taking them, and the one that meets the edge
    // is taken in part.
    let pad = "x".repeat(64 * 1024);
    let mut numbers = Vec::new();
    for n in 0..128 {
        let published = server
            .publish(&["hana"], "chat", json!({"n": n, "pad": pad}))
            .await;
        numbers.push(published["events"][0]["sequence_number"].as_u64().unwrap());
    }
    let last = numbers[numbers.len() - 1];
    // Everything after the head is chunks; their sizes must frame the body exactly.
    let body = within(async {
        loop {
            if let Some(body) = dechunk(&wire)
                && body.contains(&format!("id: {last}\n"))
                && body.ends_with("\n\n")
            {
                return body;
            }
            let mut buf = [0u8; 16 * 1024];
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "the stream ended");
            wire.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    let ids: Vec<u64> = body
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(|id| id.parse().unwrap())
        .collect();
    assert_eq!(ids, numbers, "every event once, in order");
    let events = body
        .lines()
        .filter(|l| l.contains("\"event_type\":\"chat\""));
    for (n, line) in events.enumerate() {
        let event: serde_json::Value =
            serde_json::from_str(line.strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(event["data"]["n"], n, "whole events, in order");
    }
}

/// The same for a WebSocket: events publishers began and could not finish, a batch the
/// connection's task writes, and the pong the WebSocket library owes for a ping that came
/// while the socket was full must never cut into each other's frames.
#[tokio::test]
async fn a_websocket_whose_socket_fills_midway_still_gets_every_event_once_in_order() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::{Message, http::HeaderValue};
    let server = Server::start_with(|s| s.outbox_bytes = Some(64 << 20)).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(server.addr).await.unwrap();
    let mut request = server.ws_url("/api/ws").into_client_request().unwrap();
    let bearer = format!("bearer, {}", server.token("ivan"));
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_str(&bearer).unwrap(),
    );
    let (mut ws, _) = within(tokio_tungstenite::client_async(request, tcp))
        .await
        .unwrap();
    let next_text = async |ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>| loop {
        match within(ws.next()).await {
            Some(Ok(Message::Text(text))) => {
                break serde_json::from_str::<serde_json::Value>(&text).unwrap();
            }
            Some(Ok(Message::Pong(_))) => {}
            other => panic!("expected whole frames, got {other:?}"),
        }
    };
    assert_eq!(next_text(&mut ws).await["event_type"], "connected");

    let pad = "x".repeat(64 * 1024);
    let mut numbers = Vec::new();
    for n in 0..128 {
        if n == 64 {
            within(ws.send(Message::Ping(Default::default())))
                .await
                .unwrap();
        }
        let published = server
            .publish(&["ivan"], "chat", json!({"n": n, "pad": pad}))
            .await;
        numbers.push(published["events"][0]["sequence_number"].as_u64().unwrap());
    }
    for (n, number) in numbers.iter().enumerate() {
        let event = next_text(&mut ws).await;
        assert_eq!(
            event["sequence_number"], *number,
            "every event once, in order"
        );
        assert_eq!(event["data"]["n"], n);
    }
}

#[tokio::test]
async fn an_http_1_0_client_gets_the_stream_delimited_by_the_connection() {
    let server = Server::start().await;
    let mut socket = raw_sse(&server, "gail", "HTTP/1.0").await;
    let opening = read_until(&mut socket, "\"connected\"").await;
    let (head, body) = opening.split_once("\r\n\r\n").unwrap();
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "{head}"
    );
    assert!(body.starts_with("retry: "), "no chunk sizes: {body:?}");
}

#[tokio::test]
async fn a_refused_sse_request_gets_its_error_and_the_connection_ends() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start().await;
    let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    socket
        .write_all(b"GET /sse/hal?token=forged HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    within(socket.read_to_string(&mut answer)).await.unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{head}");
    assert!(
        head.contains(&format!("content-length: {}", body.len())),
        "{head}"
    );
    let error: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(error["error_type"], "authentication_error");
}

/// A connection that made a REST call first is hyper's for good; its SSE stream works too.
#[tokio::test]
async fn an_sse_stream_after_a_rest_call_on_the_same_connection_works() {
    use tokio::io::AsyncWriteExt;
    let server = Server::start().await;
    let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    socket
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    read_until(&mut socket, "\r\n\r\n").await;
    let token = server.token("ivy");
    let head = format!("GET /sse/ivy?token={token} HTTP/1.1\r\nHost: x\r\n\r\n");
    socket.write_all(head.as_bytes()).await.unwrap();
    read_until(&mut socket, "\"connected\"").await;
    server.publish(&["ivy"], "chat", json!({"n": 1})).await;
    read_until(&mut socket, "\"chat\"").await;
}

/// A WebSocket that is not its connection's first request (here after a keep-alive REST call)
/// is upgraded through hyper rather than answered straight on the socket: it behaves the same.
#[tokio::test]
async fn a_websocket_opened_after_a_keep_alive_request_on_the_same_connection_works() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let server = Server::start().await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let live = format!("GET /health/live HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr);
    tcp.write_all(live.as_bytes()).await.unwrap();
    // Read the whole response, and not a byte more: the head, then its declared body.
    let head = read_head(&mut tcp).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_string)
        })
        .expect("a length")
        .trim()
        .parse()
        .unwrap();
    let mut body = vec![0u8; length];
    within(tcp.read_exact(&mut body)).await.unwrap();

    let mut req = server.ws_url("/api/ws").into_client_request().unwrap();
    let offer = format!("bearer, {}", server.token("alice"));
    req.headers_mut()
        .insert("sec-websocket-protocol", offer.parse().unwrap());
    let (mut ws, response) = within(tokio_tungstenite::client_async(req, tcp))
        .await
        .expect("upgraded on the kept-alive connection");
    assert_eq!(response.headers()["sec-websocket-protocol"], "bearer");
    assert_eq!(next_json(&mut ws).await["event_type"], "connected");
    server
        .publish(&["alice"], "chat", json!({"text": "hi"}))
        .await;
    let event = next_json(&mut ws).await;
    assert_eq!(
        (event["event_type"].as_str(), event["data"]["text"].as_str()),
        (Some("chat"), Some("hi"))
    );
    ws.send(tokio_tungstenite::tungstenite::Message::Close(None))
        .await
        .unwrap();
}

async fn next_json(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
) -> serde_json::Value {
    let message = within(ws.next()).await.expect("open").expect("a frame");
    serde_json::from_str(message.to_text().unwrap()).unwrap()
}
