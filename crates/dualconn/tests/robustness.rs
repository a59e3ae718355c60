//! Garbage on the port: every input gets an error answer or a close, never a 5xx or a hang,
//! and the server keeps serving afterwards.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the server did with one input.
#[derive(Debug)]
enum Outcome {
    /// An HTTP status line came back, with the body text.
    Status(u16, String),
    /// The connection closed (or was reset) with no answer.
    Closed,
}

/// Sends raw bytes and reads the server's answer. A server that waits for more (a body it was
/// promised, the next keep-alive request) is told the client is done by a half-close, after
/// which it must answer or close: nothing may hang.
async fn send_raw(server: &Server, bytes: &[u8]) -> Outcome {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    // A server may close before reading everything; that is an answer too.
    let _ = stream.write_all(bytes).await;
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    // Without half-closing first: hyper drops a request whose client half-closed mid-way.
    loop {
        match tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return parse(&answer),
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) if !answer.is_empty() => return parse(&answer),
            Err(_) => break,
        }
    }
    let _ = stream.shutdown().await;
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the server hung on {:?}",
        String::from_utf8_lossy(&bytes[..bytes.len().min(80)])
    );
    parse(&answer)
}

fn parse(answer: &[u8]) -> Outcome {
    let text = String::from_utf8_lossy(answer);
    match text.strip_prefix("HTTP/1.1 ").and_then(|t| t.get(..3)) {
        Some(code) => Outcome::Status(
            code.parse().unwrap(),
            text.split_once("\r\n\r\n")
                .map(|(_, b)| b.to_owned())
                .unwrap_or_default(),
        ),
        None => {
            assert!(answer.is_empty(), "not HTTP: {text:?}");
            Outcome::Closed
        }
    }
}

/// An error status from 400 to 499, or a close. Never 5xx, never 2xx for garbage.
fn assert_refused(what: &str, outcome: &Outcome) {
    match outcome {
        Outcome::Closed => {}
        Outcome::Status(code, body) => {
            assert!((400..500).contains(code), "{what}: status {code} {body}");
            // Our handlers always write the envelope; hyper's own refusals (400 for a
            // malformed request, 431) have no body.
            if !body.is_empty() && !body.starts_with('0') {
                let json = body
                    .lines()
                    .find(|l| l.starts_with('{'))
                    .unwrap_or_else(|| panic!("{what}: body is not the envelope: {body:?}"));
                // The first JSON value: a keep-alive connection may carry more after it.
                let v: serde_json::Value = serde_json::Deserializer::from_str(json)
                    .into_iter()
                    .next()
                    .unwrap()
                    .unwrap_or_else(|e| panic!("{what}: {e}: {json:?}"));
                assert_eq!(v["error"], true, "{what}");
            }
        }
    }
}

fn status(outcome: &Outcome) -> Option<u16> {
    match outcome {
        Outcome::Status(code, _) => Some(*code),
        Outcome::Closed => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_gets_an_error_or_a_close_and_the_server_stays_up() {
    let server = Server::start().await;
    let token = server.token("alice");
    let host = server.addr;

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("no version", b"GET /\r\n\r\n".to_vec()),
        ("not a method", b"GARBAGE\r\n\r\n".to_vec()),
        ("http/0.9", b"GET /health/live\r\n".to_vec()),
        ("binary", vec![0, 159, 146, 150, 255, 0, 13, 10, 13, 10]),
        ("invalid utf-8 path", b"GET /sse/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        (
            "huge header",
            format!("GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000))
                .into_bytes(),
        ),
        (
            "too many headers",
            format!(
                "GET /health/live HTTP/1.1\r\nHost: x\r\n{}\r\n",
                (0..100).map(|i| format!("X-H{i}: v\r\n")).collect::<String>()
            )
            .into_bytes(),
        ),
        (
            "huge uri",
            format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000)).into_bytes(),
        ),
        (
            "lying content-length",
            b"POST /api/publish HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"a\"".to_vec(),
        ),
        (
            "chunked garbage",
            b"POST /api/publish HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nnope\r\n"
                .to_vec(),
        ),
    ];
    for (what, bytes) in &cases {
        let outcome = send_raw(&server, bytes).await;
        assert_refused(what, &outcome);
    }
    let big_header = send_raw(&server, &cases[5].1).await;
    assert_eq!(status(&big_header), Some(431), "oversized headers are 431");

    // Bad bytes where credentials go: 401 with the envelope.
    let outcome = send_raw(
        &server,
        format!("GET /sse/alice?token=%FF%FE HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status(&outcome), Some(401));
    assert_refused("bad token bytes", &outcome);
    let mut raw =
        format!("GET /api/connections/alice HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer ")
            .into_bytes();
    raw.extend_from_slice(b"\xc3\x28\xa0\xa1\r\n\r\n");
    let outcome = send_raw(&server, &raw).await;
    assert_eq!(status(&outcome), Some(401));
    assert_refused("non-ascii authorization", &outcome);

    // A WebSocket handshake that is not one, with a valid token: 400 with the envelope.
    let outcome = send_raw(
        &server,
        format!(
            "GET /api/ws?token={token} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(status(&outcome), Some(400));
    assert_refused("bad handshake", &outcome);

    // Wrong JSON shapes: 400 envelopes, whatever the nesting.
    for body in [
        "[]".to_owned(),
        "[".repeat(10_000),
        r#"{"player_ids": "alice", "event_type": "x"}"#.to_owned(),
        r#"{"player_ids": ["alice"], "event_type": 1e999}"#.to_owned(),
        r#"{"broadcast": true, "player_ids": ["a"], "event_type": "x"}"#.to_owned(),
        r#"{"player_ids": ["a"], "event_type": "x", "data": {"a": "#.to_owned()
            + &"[".repeat(5_000),
    ] {
        let res = server
            .http
            .post(server.url("/api/publish"))
            .bearer_auth(ADMIN_KEY)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{}", &body[..body.len().min(60)]);
        let v: serde_json::Value = res.json().await.unwrap();
        assert_eq!(v["error_type"], "validation_error");
    }
    let res = server
        .http
        .post(server.url("/api/connections/alice/session"))
        .bearer_auth(ADMIN_KEY)
        .body("[[[[1]]]]")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);

    // Random blobs, then random mutations of a valid request, 25 connections at a time.
    let mut rng = XorShift(0x0bad_5eed);
    let blobs: Vec<Vec<u8>> = (0..200)
        .map(|_| {
            let len = 1 + (rng.next() % 600) as usize;
            (0..len).map(|_| rng.next() as u8).collect()
        })
        .collect();
    let valid = format!(
        "POST /api/publish HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {ADMIN_KEY}\r\nContent-Length: 52\r\n\r\n{{\"player_ids\":[\"zed\"],\"event_type\":\"t\",\"data\":{{}}}}"
    )
    .into_bytes();
    let mutations: Vec<Vec<u8>> = (0..200)
        .map(|_| {
            let mut mutated = valid.clone();
            for _ in 0..1 + rng.next() % 4 {
                let at = (rng.next() as usize) % mutated.len();
                match rng.next() % 3 {
                    0 => mutated[at] = rng.next() as u8,
                    1 => {
                        mutated.remove(at);
                    }
                    _ => mutated.insert(at, rng.next() as u8),
                }
            }
            mutated
        })
        .collect();
    for (i, chunk) in blobs.chunks(25).chain(mutations.chunks(25)).enumerate() {
        let outcomes =
            futures_util::future::join_all(chunk.iter().map(|bytes| send_raw(&server, bytes)))
                .await;
        for (j, outcome) in outcomes.iter().enumerate() {
            // A mutation can leave the request valid (200); anything else must be a refusal.
            if status(outcome) != Some(200) {
                assert_refused(&format!("random input {}", i * 25 + j), outcome);
            }
        }
    }

    // Still up, and still right.
    let live = server
        .http
        .get(server.url("/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    let mut ws = server.ws("alice", "").await;
    let mut sse = server.sse("alice", "").await;
    ws.next_event().await;
    sse.next_event().await;
    server
        .publish(&["alice"], "after", json!({"ok": true}))
        .await;
    assert_eq!(ws.next_event().await["data"]["ok"], true);
    assert_eq!(sse.next_event().await["data"]["ok"], true);
}

#[tokio::test]
async fn invalid_utf8_in_a_websocket_text_frame_closes_that_socket_only() {
    let server = Server::start().await;
    let mut good = server.ws("good", "").await;
    good.next_event().await;

    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let handshake = format!(
        "GET /api/ws?token={} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        server.token("bad"),
        server.addr
    );
    stream.write_all(handshake.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    within(stream.read_exact(&mut head)).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
    // A masked text frame whose payload is not UTF-8.
    let payload = [0xff, 0xfe, 0xfd];
    let mask = [1, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    stream.write_all(&frame).await.unwrap();
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    assert!(ended.is_ok(), "the bad socket was closed");

    server
        .publish(&["good"], "tick", json!({"still": true}))
        .await;
    assert_eq!(good.next_event().await["data"]["still"], true);
}
