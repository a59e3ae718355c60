//! Garbage on the port: every input gets an error answer or a close, never a 5xx or a hang,
//! and the server keeps serving afterwards (SPEC §8, §12.14).

use std::time::Duration;

use crate::common::*;
use futures_util::SinkExt;
use futures_util::future::join_all;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the server did with one input.
#[derive(Debug)]
enum Outcome {
    /// An HTTP status line came back, with the body text (empty when there was none).
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
    let read = read_until_closed(&mut stream, &mut answer).await;
    assert!(
        read.is_ok(),
        "the server hung on {:?}",
        String::from_utf8_lossy(&bytes[..bytes.len().min(80)])
    );
    parse(&answer)
}

/// Reads until the server closes (or resets) the socket, for at most 5 s; `Err` if it never does.
async fn read_until_closed(
    stream: &mut TcpStream,
    into: &mut Vec<u8>,
) -> Result<(), tokio::time::error::Elapsed> {
    let mut buf = [0u8; 8192];
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => into.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
}

fn parse(answer: &[u8]) -> Outcome {
    let text = String::from_utf8_lossy(answer);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| text.strip_prefix("HTTP/1.0 "))
        .and_then(|t| t.get(..3));
    match status {
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

/// The statuses hyper itself writes for a request it cannot parse, with no body.
const HYPER_STATUSES: [u16; 3] = [400, 414, 431];

/// Checks an error body is the SPEC §2 envelope, with an error type that fits the status.
/// Returns it, or `None` when there was no body (allowed only for hyper's own refusals).
fn envelope(what: &str, code: u16, body: &str) -> Option<Value> {
    if body.is_empty() || body == "0\r\n\r\n" {
        assert!(
            HYPER_STATUSES.contains(&code),
            "{what}: {code} without the envelope; only the HTTP layer's own refusals may be bodyless"
        );
        return None;
    }
    let start = body
        .find('{')
        .unwrap_or_else(|| panic!("{what}: body is not the envelope: {body:?}"));
    // The first JSON value: a keep-alive connection may carry more after it.
    let v: Value = serde_json::Deserializer::from_str(&body[start..])
        .into_iter()
        .next()
        .unwrap()
        .unwrap_or_else(|e| panic!("{what}: {e}: {body:?}"));
    assert_eq!(v["error"], true, "{what}: {v}");
    assert!(v["message"].is_string(), "{what}: {v}");
    assert!(v["details"].is_object(), "{what}: {v}");
    assert!(v["timestamp"].is_string(), "{what}: {v}");
    let error_type = v["error_type"].as_str().unwrap_or_default();
    let fits = match error_type {
        // §12.14: a wrong method is 405 `validation_error`.
        "validation_error" => [400, 405, 413].contains(&code),
        "authentication_error" => code == 401,
        "authorization_error" => code == 403,
        "not_found_error" => code == 404,
        "session_error" => [404, 409].contains(&code),
        "rate_limit_error" => code == 429,
        "connection_error" => (400..500).contains(&code),
        _ => false,
    };
    assert!(fits, "{what}: {error_type:?} does not go with {code}: {v}");
    Some(v)
}

/// An error status from 400 to 499 (with the envelope where a body is possible), or a close.
/// Never 5xx, never success.
fn assert_refused(what: &str, outcome: &Outcome) {
    if let Outcome::Status(code, body) = outcome {
        assert!((400..500).contains(code), "{what}: status {code} {body}");
        envelope(what, *code, body);
    }
}

/// Exactly this status, with the envelope and this error type.
fn assert_envelope(what: &str, outcome: &Outcome, code: u16, error_type: &str) {
    match outcome {
        Outcome::Status(got, body) => {
            assert_eq!(*got, code, "{what}: {body}");
            let v = envelope(what, *got, body)
                .unwrap_or_else(|| panic!("{what}: no envelope in a {got}"));
            assert_eq!(v["error_type"], error_type, "{what}: {v}");
        }
        Outcome::Closed => panic!("{what}: closed instead of {code} {error_type}"),
    }
}

fn status(outcome: &Outcome) -> Option<u16> {
    match outcome {
        Outcome::Status(code, _) => Some(*code),
        Outcome::Closed => None,
    }
}

/// The same deterministic generator the resume test uses.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Sends every input on its own connection at once and returns the outcomes in order.
async fn send_all(server: &Server, inputs: &[Vec<u8>]) -> Vec<Outcome> {
    join_all(inputs.iter().map(|bytes| send_raw(server, bytes))).await
}

/// The server still serves: liveness, both transports and a publish reaching them.
async fn assert_still_serving(server: &Server, player: &str) {
    let live = server.get("/health/live", "").await;
    assert_eq!(live.status(), 200);
    let mut ws = server.ws(player, "").await;
    let mut sse = server.sse(player, "").await;
    assert_eq!(ws.next_event().await["event_type"], "connected");
    assert_eq!(sse.next_event().await["event_type"], "connected");
    let published = server
        .publish(&[player], "after", json!({"ok": true}))
        .await;
    assert_eq!(published["events"][0]["connections"], 2);
    assert_eq!(ws.next_event().await["data"]["ok"], true);
    assert_eq!(sse.next_event().await["data"]["ok"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_gets_an_error_or_a_close_and_the_server_stays_up() {
    let server = Server::start().await;
    let host = server.addr;

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("no version", b"GET /\r\n\r\n".to_vec()),
        ("not a method", b"GARBAGE\r\n\r\n".to_vec()),
        ("http/0.9", b"GET /health/live\r\n".to_vec()),
        ("http/0.9 version", b"GET /health/live HTTP/0.9\r\n\r\n".to_vec()),
        ("http/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec()),
        ("http/3.0", b"GET /health/live HTTP/3.0\r\nHost: x\r\n\r\n".to_vec()),
        ("a response", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec()),
        ("binary", vec![0, 159, 146, 150, 255, 0, 13, 10, 13, 10]),
        ("tls hello", vec![0x16, 3, 1, 0, 0xa5, 1, 0, 0, 0xa1, 3, 3, 13, 10, 13, 10]),
        ("only newlines", b"\r\n\r\n\r\n\r\n".to_vec()),
        ("header without colon", b"GET / HTTP/1.1\r\nHost x\r\n\r\n".to_vec()),
        ("space in header name", b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n".to_vec()),
        ("nul in header", b"GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n".to_vec()),
        ("folded header", b"GET / HTTP/1.1\r\nHost: x\r\n  folded\r\n\r\n".to_vec()),
        ("bare cr", b"GET / HTTP/1.1\rHost: x\r\r".to_vec()),
        ("half a head", b"GET /health/live HTTP/1.1\r\nHost: x\r\n".to_vec()),
        (
            "invalid utf-8 path",
            b"GET /sse/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "invalid utf-8 header name",
            b"GET / HTTP/1.1\r\nX-\xff: v\r\n\r\n".to_vec(),
        ),
        (
            "lying content-length",
            b"POST /api/publish HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"a\"".to_vec(),
        ),
        (
            "two content-lengths",
            b"POST /api/publish HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}"
                .to_vec(),
        ),
        (
            "negative content-length",
            b"POST /api/publish HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n{}".to_vec(),
        ),
        (
            "chunked garbage",
            b"POST /api/publish HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nnope\r\n"
                .to_vec(),
        ),
        (
            "unknown transfer-encoding",
            b"POST /api/publish HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n{}".to_vec(),
        ),
        (
            "wrong method",
            b"DELETE /api/publish HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        ("unknown route", b"GET /nope/../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("http/1.0 unknown route", b"GET /nope HTTP/1.0\r\n\r\n".to_vec()),
    ];
    let mut inputs: Vec<Vec<u8>> = cases.iter().map(|(_, b)| b.clone()).collect();

    // Bodies promised and not sent, for admins too: once the client is done, a 4xx or a close.
    for path in ["/api/publish", "/api/connections/alice/session"] {
        inputs.push(
            format!(
                "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {ADMIN_KEY}\r\nContent-Length: 100\r\n\r\n{{\"a\""
            )
            .into_bytes(),
        );
        inputs.push(
            format!(
                "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {ADMIN_KEY}\r\nContent-Length: 10000000000\r\n\r\n{{}}"
            )
            .into_bytes(),
        );
        inputs.push(
            format!(
                "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {ADMIN_KEY}\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFFFF\r\n"
            )
            .into_bytes(),
        );
    }
    let outcomes = send_all(&server, &inputs).await;
    for (i, outcome) in outcomes.iter().enumerate() {
        let what = cases.get(i).map_or("unsent body", |c| c.0);
        assert_refused(what, outcome);
    }
    // Where our handlers answer, the answer is the envelope.
    let named = |what: &str| &outcomes[cases.iter().position(|c| c.0 == what).unwrap()];
    assert_envelope(
        "wrong method",
        named("wrong method"),
        405,
        "validation_error",
    );
    assert_envelope(
        "unknown route",
        named("unknown route"),
        404,
        "not_found_error",
    );
    assert_envelope(
        "http/1.0",
        named("http/1.0 unknown route"),
        404,
        "not_found_error",
    );
    // Raw bytes ≥ 0x80 are not a URI: hyper refuses them before any route (bodyless 400).
    assert_eq!(status(named("invalid utf-8 path")), Some(400));
    for outcome in &outcomes[cases.len()..] {
        if let Outcome::Status(code, _) = outcome {
            assert_ne!(
                *code, 200,
                "a body that never came was not taken as a request"
            );
        }
    }

    // Random blobs, then random mutations of valid requests, all deterministic.
    let token = server.token("fuzz");
    let templates = [
        format!(
            "POST /api/publish HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {ADMIN_KEY}\r\nContent-Type: application/json\r\nContent-Length: 52\r\n\r\n{{\"player_ids\":[\"zed\"],\"event_type\":\"t\",\"data\":{{}}}}"
        ),
        format!(
            "POST /api/connections/zed/session HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {ADMIN_KEY}\r\nContent-Length: 21\r\n\r\n{{\"session_id\":\"s-1\"}}"
        ),
        format!(
            "GET /api/ws?token={token} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ),
        format!(
            "GET /api/connections/stats HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {ADMIN_KEY}\r\n\r\n"
        ),
    ];
    let mut rng = XorShift(0x0bad_5eed);
    let blobs: Vec<Vec<u8>> = (0..200)
        .map(|_| {
            let len = 1 + (rng.next() % 600) as usize;
            (0..len).map(|_| rng.next() as u8).collect()
        })
        .collect();
    let mutations: Vec<Vec<u8>> = (0..240)
        .map(|i| {
            let mut mutated = templates[i % templates.len()].clone().into_bytes();
            for _ in 0..1 + rng.next() % 4 {
                let at = (rng.next() as usize) % mutated.len();
                match rng.next() % 4 {
                    0 => mutated[at] = rng.next() as u8,
                    1 => {
                        mutated.remove(at);
                    }
                    2 => mutated.insert(at, rng.next() as u8),
                    // A byte that matters to parsers.
                    _ => mutated[at] = b"\r\n:%\0 \xff{["[(rng.next() % 9) as usize],
                }
            }
            mutated
        })
        .collect();
    let (mut refusals, mut closes) = (0, 0);
    for (n, chunk) in blobs.chunks(40).enumerate() {
        for (j, outcome) in send_all(&server, chunk).await.iter().enumerate() {
            assert_refused(&format!("random blob {}", n * 40 + j), outcome);
            match outcome {
                Outcome::Status(..) => refusals += 1,
                Outcome::Closed => closes += 1,
            }
        }
    }
    for (n, chunk) in mutations.chunks(40).enumerate() {
        for (j, outcome) in send_all(&server, chunk).await.iter().enumerate() {
            let what = format!("mutation {}", n * 40 + j);
            // A mutation can leave the request valid; anything else must be a refusal.
            match status(outcome) {
                Some(101 | 200) => {}
                _ => assert_refused(&what, outcome),
            }
            if let Outcome::Status(400..=499, _) = outcome {
                refusals += 1;
            }
        }
    }
    assert!(
        refusals > 200,
        "the fuzz reached the parser: {refusals} refusals, {closes} closes"
    );

    assert_still_serving(&server, "alice").await;
}

#[tokio::test]
async fn bad_bytes_in_path_query_and_headers_are_4xx_envelopes() {
    let server = Server::start().await;
    let host = server.addr;
    let token = server.token("alice");
    let head = |line: &str, headers: &[u8]| {
        let mut raw = format!("{line} HTTP/1.1\r\nHost: {host}\r\n").into_bytes();
        raw.extend_from_slice(headers);
        raw.extend_from_slice(b"\r\n");
        raw
    };
    let admin = format!("Authorization: Bearer {ADMIN_KEY}\r\n");
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "percent-encoded bad path, admin",
            head("GET /api/connections/%FF%FE", admin.as_bytes()),
            400,
            "validation_error",
        ),
        (
            "percent-encoded bad session path, admin",
            head("POST /api/connections/%C3%28/session", admin.as_bytes()),
            400,
            "validation_error",
        ),
        (
            "percent-encoded bad sse path",
            head(&format!("GET /sse/%FF?token={token}"), b""),
            403,
            "authorization_error",
        ),
        (
            "percent-encoded bad token",
            head("GET /sse/alice?token=%FF%FE", b""),
            401,
            "authentication_error",
        ),
        (
            "raw bytes in the query",
            b"GET /sse/alice?token=\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            400,
            "",
        ),
        (
            "percent-encoded bad session_id",
            head(&format!("GET /sse/alice?token={token}&session_id=%FF"), b""),
            400,
            "validation_error",
        ),
        (
            "percent-encoded bad last_event_id",
            head(
                &format!("GET /sse/alice?token={token}&last_event_id=%FF%00"),
                b"",
            ),
            400,
            "validation_error",
        ),
        (
            "non-text last-event-id header",
            head(
                &format!("GET /sse/alice?token={token}"),
                b"Last-Event-ID: \xff\xfe\r\n",
            ),
            400,
            "validation_error",
        ),
        (
            "non-ascii authorization",
            head(
                "GET /api/connections/alice",
                b"Authorization: Bearer \xc3\x28\xa0\xa1\r\n",
            ),
            401,
            "authentication_error",
        ),
        (
            "non-ascii admin-looking authorization",
            head("GET /api/connections/stats", b"Authorization: \xffBearer\r\n"),
            401,
            "authentication_error",
        ),
        (
            "non-ascii subprotocol",
            head(
                "GET /api/ws",
                b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: bearer, \xff\xfe\r\n",
            ),
            401,
            "authentication_error",
        ),
    ];
    let inputs: Vec<Vec<u8>> = cases.iter().map(|c| c.1.clone()).collect();
    let outcomes = send_all(&server, &inputs).await;
    for ((what, _, code, error_type), outcome) in cases.iter().zip(&outcomes) {
        if error_type.is_empty() {
            // Refused by the HTTP layer before any route sees it.
            assert_eq!(status(outcome), Some(*code), "{what}: {outcome:?}");
            assert_refused(what, outcome);
        } else {
            assert_envelope(what, outcome, *code, error_type);
        }
    }
    // The bad bytes never reached the hub as a connection.
    let info: Value = server
        .get("/api/connections/alice", ADMIN_KEY)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(info["presence"]["total_connections"], 0, "{info}");
    assert_still_serving(&server, "alice").await;
}

#[tokio::test]
async fn websocket_handshakes_that_are_not_handshakes_get_400_envelopes() {
    let server = Server::start().await;
    let host = server.addr;
    let token = server.token("alice");
    let upgrade = |method: &str, headers: &str| {
        format!("{method} /api/ws?token={token} HTTP/1.1\r\nHost: {host}\r\n{headers}\r\n")
            .into_bytes()
    };
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let v13 = "Sec-WebSocket-Version: 13\r\n";
    let up = "Upgrade: websocket\r\nConnection: Upgrade\r\n";
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("no key", upgrade("GET", &format!("{up}{v13}"))),
        (
            "key not base64",
            upgrade(
                "GET",
                &format!("{up}Sec-WebSocket-Key: not base64!\r\n{v13}"),
            ),
        ),
        (
            "key of 4 bytes",
            upgrade("GET", &format!("{up}Sec-WebSocket-Key: AAAAAA==\r\n{v13}")),
        ),
        (
            "empty key",
            upgrade("GET", &format!("{up}Sec-WebSocket-Key: \r\n{v13}")),
        ),
        (
            "version 8",
            upgrade("GET", &format!("{up}{key}Sec-WebSocket-Version: 8\r\n")),
        ),
        (
            "version not a number",
            upgrade("GET", &format!("{up}{key}Sec-WebSocket-Version: x\r\n")),
        ),
        ("no version", upgrade("GET", &format!("{up}{key}"))),
        (
            "no upgrade header",
            upgrade("GET", &format!("Connection: Upgrade\r\n{key}{v13}")),
        ),
        (
            "upgrade to h2c",
            upgrade(
                "GET",
                &format!("Upgrade: h2c\r\nConnection: Upgrade\r\n{key}{v13}"),
            ),
        ),
        (
            "no connection upgrade",
            upgrade(
                "GET",
                &format!("Upgrade: websocket\r\nConnection: keep-alive\r\n{key}{v13}"),
            ),
        ),
        ("plain get", upgrade("GET", "")),
    ];
    let inputs: Vec<Vec<u8>> = cases.iter().map(|c| c.1.clone()).collect();
    for ((what, _), outcome) in cases.iter().zip(send_all(&server, &inputs).await) {
        assert_envelope(what, &outcome, 400, "validation_error");
    }
    let post = send_raw(&server, &upgrade("POST", &format!("{up}{key}{v13}"))).await;
    assert_envelope("post", &post, 405, "validation_error");

    // None of them joined the hub, and a real handshake still works.
    let info: Value = server
        .get("/api/connections/alice", ADMIN_KEY)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(info["presence"]["total_connections"], 0, "{info}");
    let good = send_raw(&server, &upgrade("GET", &format!("{up}{key}{v13}"))).await;
    assert_eq!(status(&good), Some(101), "{good:?}");
}

#[tokio::test]
async fn oversized_heads_uris_and_bodies_are_refused_with_their_status() {
    let server = Server::start().await;
    let host = server.addr;

    let inputs = vec![
        format!(
            "GET /health/live HTTP/1.1\r\nHost: {host}\r\nX-Big: {}\r\n\r\n",
            "a".repeat(20_000)
        ),
        format!(
            "GET /health/live HTTP/1.1\r\nHost: {host}\r\n{}\r\n",
            (0..100)
                .map(|i| format!("X-H{i}: v\r\n"))
                .collect::<String>()
        ),
        format!(
            "GET /health/live HTTP/1.1\r\nHost: {host}\r\n{}\r\n",
            (0..63)
                .map(|i| format!("X-H{i}: v\r\n"))
                .collect::<String>()
        ),
        format!(
            "GET /{} HTTP/1.1\r\nHost: {host}\r\n\r\n",
            "a".repeat(70_000)
        ),
        format!(
            "GET /health/live?{} HTTP/1.1\r\nHost: {host}\r\n\r\n",
            "q=1&".repeat(10_000)
        ),
        // Many small headers that together pass the head limit.
        format!(
            "GET /health/live HTTP/1.1\r\nHost: {host}\r\n{}\r\n",
            (0..40)
                .map(|i| format!("X-H{i}: {}\r\n", "b".repeat(500)))
                .collect::<String>()
        ),
    ];
    let inputs: Vec<Vec<u8>> = inputs.into_iter().map(String::into_bytes).collect();
    let outcomes = send_all(&server, &inputs).await;
    assert_eq!(status(&outcomes[0]), Some(431), "a 20 KiB header");
    assert_eq!(status(&outcomes[1]), Some(431), "100 headers");
    assert_eq!(
        status(&outcomes[2]),
        Some(200),
        "64 headers are within the limit"
    );
    for (what, outcome) in [
        ("a 70 KB path", &outcomes[3]),
        ("a 40 KB query", &outcomes[4]),
    ] {
        assert!(
            matches!(status(outcome), Some(400 | 414 | 431)),
            "{what}: {outcome:?}"
        );
        assert_refused(what, outcome);
    }
    assert_eq!(status(&outcomes[5]), Some(431), "20 KB of headers");
    for outcome in &outcomes {
        if status(outcome) != Some(200) {
            assert_refused("oversized", outcome);
        }
    }

    // Bodies past max_body_bytes (256 KiB): 413 in the envelope, with or without a length.
    let big = format!(
        r#"{{"player_ids":["alice"],"event_type":"x","data":"{}"}}"#,
        "a".repeat(300 * 1024)
    );
    for path in ["/api/publish", "/api/connections/alice/session"] {
        let res = within(
            server
                .http
                .post(server.url(path))
                .bearer_auth(ADMIN_KEY)
                .body(big.clone())
                .send(),
        )
        .await
        .unwrap();
        assert_eq!(res.status(), 413, "{path}");
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["error_type"], "validation_error", "{path}: {v}");
        // Chunked: the length is only known while reading.
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> = big
            .as_bytes()
            .chunks(16 * 1024)
            .map(|c| Ok(c.to_vec()))
            .collect();
        let res = within(
            server
                .http
                .post(server.url(path))
                .bearer_auth(ADMIN_KEY)
                .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                    chunks,
                )))
                .send(),
        )
        .await
        .unwrap();
        assert_eq!(res.status(), 413, "{path}, chunked");
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["error_type"], "validation_error", "{path}: {v}");
    }

    assert_still_serving(&server, "alice").await;
}

#[tokio::test]
async fn wrong_json_shapes_are_400_envelopes() {
    let server = Server::start().await;
    let deep = |open: &str, n: usize| open.repeat(n);
    let publish_bodies: Vec<Vec<u8>> = [
        "[]".to_owned(),
        "[1, 2, 3]".to_owned(),
        "\"a string\"".to_owned(),
        "12345678901234567890123456789012345678901234567890".to_owned(),
        "null".to_owned(),
        "true".to_owned(),
        "{".to_owned(),
        deep("[", 10_000),
        deep("{\"a\":", 10_000),
        deep("[", 200) + &deep("]", 200),
        r#"{"player_ids": "alice", "event_type": "x"}"#.to_owned(),
        r#"{"player_ids": [1, 2], "event_type": "x"}"#.to_owned(),
        r#"{"player_ids": [["alice"]], "event_type": "x"}"#.to_owned(),
        r#"{"player_ids": {"alice": true}, "event_type": "x"}"#.to_owned(),
        r#"{"player_ids": null, "event_type": "x"}"#.to_owned(),
        r#"{"player_ids": [], "event_type": "x"}"#.to_owned(),
        r#"{"player_ids": ["../../etc"], "event_type": "x"}"#.to_owned(),
        format!(
            r#"{{"player_ids": ["{}"], "event_type": "x"}}"#,
            "a".repeat(200)
        ),
        r#"{"player_ids": ["alice"]}"#.to_owned(),
        r#"{"player_ids": ["alice"], "event_type": 1e999}"#.to_owned(),
        r#"{"player_ids": ["alice"], "event_type": 123456789012345678901234567890}"#.to_owned(),
        r#"{"player_ids": ["alice"], "event_type": ["x"]}"#.to_owned(),
        r#"{"player_ids": ["alice"], "event_type": ""}"#.to_owned(),
        r#"{"player_ids": ["alice"], "event_type": "connected"}"#.to_owned(),
        r#"{"player_ids": ["alice"], "event_type": "x", "data": 1e999}"#.to_owned(),
        r#"{"player_ids": ["alice"], "event_type": "x", "room_id": 7}"#.to_owned(),
        r#"{"player_ids": ["alice"], "event_type": "x", "unknown": 1}"#.to_owned(),
        r#"{"player_ids": ["alice"], "event_type": "a", "event_type": "b"}"#.to_owned(),
        r#"{"broadcast": "yes", "event_type": "x"}"#.to_owned(),
        r#"{"broadcast": true, "player_ids": ["a"], "event_type": "x"}"#.to_owned(),
        r#"{"player_ids": ["a"], "event_type": "x", "data": {"a": "#.to_owned() + &deep("[", 5_000),
        r#"{"player_ids": ["alice"], "event_type": "x"} trailing"#.to_owned(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .chain([
        b"{\"player_ids\": [\"\xff\xfe\"], \"event_type\": \"x\"}".to_vec(),
        b"\xef\xbb\xbf{\"player_ids\": [\"alice\"], \"event_type\": \"x\"}".to_vec(),
        b"\0\0\0\0".to_vec(),
    ])
    .collect();
    let session_bodies: Vec<Vec<u8>> = [
        "[]".to_owned(),
        "[[[[1]]]]".to_owned(),
        "\"s-1\"".to_owned(),
        "42".to_owned(),
        "null".to_owned(),
        deep("[", 10_000),
        deep("{\"session_id\":", 10_000),
        r#"{"session_id": 1}"#.to_owned(),
        r#"{"session_id": 1e999}"#.to_owned(),
        r#"{"session_id": 123456789012345678901234567890}"#.to_owned(),
        r#"{"session_id": ["s-1"]}"#.to_owned(),
        r#"{"session_id": {"id": "s-1"}}"#.to_owned(),
        r#"{"session_id": true}"#.to_owned(),
        r#"{"session_id": ""}"#.to_owned(),
        r#"{"session_id": "../../etc/passwd"}"#.to_owned(),
        r#"{"session_id": "a\u0000b"}"#.to_owned(),
        format!(r#"{{"session_id": "{}"}}"#, "s".repeat(129)),
        r#"{"session_id": "s-1""#.to_owned(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .chain([b"{\"session_id\": \"\xff\"}".to_vec()])
    .collect();

    let post = |path: &'static str, body: Vec<u8>| {
        let server = &server;
        async move {
            let res = within(
                server
                    .http
                    .post(server.url(path))
                    .bearer_auth(ADMIN_KEY)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send(),
            )
            .await
            .unwrap();
            let what = format!(
                "{path} {:?}",
                String::from_utf8_lossy(&body[..body.len().min(60)])
            );
            assert_eq!(res.status(), 400, "{what}");
            let v: Value = res.json().await.unwrap();
            assert_eq!(v["error"], true, "{what}");
            assert_eq!(v["error_type"], "validation_error", "{what}: {v}");
        }
    };
    join_all(
        publish_bodies
            .into_iter()
            .map(|b| post("/api/publish", b))
            .chain(
                session_bodies
                    .into_iter()
                    .map(|b| post("/api/connections/alice/session", b)),
            ),
    )
    .await;

    // None of that published or made a session.
    let res = server
        .get("/api/connections/alice/session", ADMIN_KEY)
        .await;
    assert_eq!(res.status(), 404, "no session was made");
    assert_still_serving(&server, "alice").await;
}

/// Opens a WebSocket by hand, reading the 101 head and leaving the frames after it.
async fn raw_ws(server: &Server, player: &str) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    raw_ws_handshake(server, player, &mut stream).await;
    stream
}

/// A client frame: `first` is FIN, RSV and opcode; masked unless told otherwise.
fn frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = vec![first];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n < 65_536 => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        out.extend_from_slice(&mask);
        out.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// Reads the server's frames until the socket ends (which must happen within 5 s) and returns
/// the close code, if a close frame came.
async fn ending(mut stream: TcpStream) -> Option<u16> {
    let mut bytes = Vec::new();
    let ended = read_until_closed(&mut stream, &mut bytes).await;
    assert!(ended.is_ok(), "the socket was left open");
    // Server frames are unmasked: opcode, length, payload.
    let mut at = 0;
    while at + 2 <= bytes.len() {
        let opcode = bytes[at] & 0x0f;
        let (len, header) = match bytes[at + 1] & 0x7f {
            126 if at + 4 <= bytes.len() => (
                u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]) as usize,
                4,
            ),
            127 if at + 10 <= bytes.len() => (
                u64::from_be_bytes(bytes[at + 2..at + 10].try_into().unwrap()) as usize,
                10,
            ),
            126 | 127 => return None,
            n => (n as usize, 2),
        };
        let payload = bytes.get(at + header..at + header + len)?;
        if opcode == 0x8 {
            return Some(
                payload
                    .get(..2)
                    .map_or(1005, |c| u16::from_be_bytes([c[0], c[1]])),
            );
        }
        at += header + len;
    }
    None
}

#[tokio::test]
async fn bad_websocket_frames_close_that_socket_only() {
    let server = Server::start().await;
    let mut good = server.ws("good", "").await;
    good.next_event().await;

    let over = |n: u64| {
        let mut out = vec![0x81, 0x80 | 127];
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(&[1, 2, 3, 4]);
        out
    };
    let forty_k = vec![b'a'; 40_000];
    // (what, bytes, the close code it must get; None: any protocol-error ending)
    let cases: Vec<(&str, Vec<u8>, Option<u16>)> = vec![
        (
            "invalid utf-8 text",
            frame(0x81, &[0xff, 0xfe, 0xfd], true),
            Some(1007),
        ),
        (
            "invalid utf-8 across fragments",
            [
                frame(0x01, b"{\"a\":\"\xc3", true),
                frame(0x80, b"\x28\"}", true),
            ]
            .concat(),
            Some(1007),
        ),
        ("unmasked", frame(0x81, b"{}", false), None),
        ("reserved opcode", frame(0x83, b"{}", true), None),
        ("rsv bits", frame(0xc1, b"{}", true), None),
        ("fragmented ping", frame(0x09, b"", true), None),
        ("continuation first", frame(0x80, b"{}", true), None),
        ("ping of 200 bytes", frame(0x89, &[0; 200], true), None),
        (
            "close with code 999",
            frame(0x88, &999u16.to_be_bytes(), true),
            None,
        ),
        ("close of one byte", frame(0x88, &[3], true), None),
        ("frame claiming 2^62 bytes", over(1 << 62), Some(1009)),
        ("frame claiming 2^64-1 bytes", over(u64::MAX), Some(1009)),
        (
            "one 70 KB frame",
            frame(0x81, &vec![b'a'; 70_000], true),
            Some(1009),
        ),
        (
            "80 KB in two fragments",
            [frame(0x01, &forty_k, true), frame(0x80, &forty_k, true)].concat(),
            Some(1009),
        ),
    ];
    let endings = join_all(cases.iter().enumerate().map(|(i, (_, bytes, _))| {
        let server = &server;
        async move {
            let mut stream = raw_ws(server, &format!("raw-{i}")).await;
            // The server may stop reading before the end of a big frame.
            let _ = stream.write_all(bytes).await;
            ending(stream).await
        }
    }))
    .await;
    for ((what, _, want), code) in cases.iter().zip(endings) {
        match want {
            Some(want) => assert_eq!(code, Some(*want), "{what}"),
            // Dropping the socket or closing with a protocol-error code; never 1011.
            None => assert!(
                matches!(code, None | Some(1000 | 1002 | 1005 | 1007 | 1009)),
                "{what}: {code:?}"
            ),
        }
    }

    // A 70 KB message from a real client: 1009.
    let mut big = server.ws("big", "").await;
    big.next_event().await;
    let _ = within(
        big.stream
            .send(tokio_tungstenite::tungstenite::Message::text(
                "a".repeat(70_000),
            )),
    )
    .await;
    let (_, end) = big.until_close().await;
    assert_eq!(close_code(&end), Some(1009), "{end:?}");

    // The good socket never noticed.
    server
        .publish(&["good"], "tick", json!({"still": true}))
        .await;
    assert_eq!(good.next_event().await["data"]["still"], true);
    assert_still_serving(&server, "alice").await;
}

#[tokio::test]
async fn a_declared_oversized_body_is_refused_before_it_is_sent() {
    let server = Server::start().await;
    let outcome = send_raw(
        &server,
        format!(
            "POST /api/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_KEY}\r\nContent-Length: 10000000000\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(status(&outcome), Some(413));
}

/// Waits up to `within` for the server to close `stream` (its end of file, or a reset: either
/// way the connection is closed) and returns how long after `since` it did; the server must
/// have written nothing on it.
async fn closed_silently(
    mut stream: TcpStream,
    since: tokio::time::Instant,
    within: Duration,
) -> Duration {
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(within, stream.read_to_end(&mut answer))
        .await
        .expect("the server never closed the connection");
    let waited = since.elapsed();
    assert!(
        answer.is_empty(),
        "wrote {:?}",
        String::from_utf8_lossy(&answer)
    );
    waited
}

/// A client that begins a request head and stops (slowloris) is cut off once the head timeout
/// of 10 s has passed, not before, with nothing written; the server serves others meanwhile
/// and afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_that_stalls_is_closed_at_the_head_timeout() {
    let server = Server::start().await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /api/events HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    let began = tokio::time::Instant::now();
    assert_still_serving(&server, "beside-a-stalled-head").await;
    let waited = closed_silently(stream, began, Duration::from_secs(15)).await;
    assert!(
        waited >= Duration::from_secs(9),
        "cut off after {waited:?}, before the head timeout"
    );
    assert_still_serving(&server, "after-a-stalled-head").await;
}

/// A client that connects and sends nothing: the kernel holds it back from `accept` until its
/// wait runs out (Linux, `TCP_DEFER_ACCEPT`, about 15 s for the head timeout's 10), then the
/// head timeout applies, so it is closed about 25 s after connecting, with nothing written.
/// Ignored for its length: `cargo test -p dualconn --test it -- --ignored a_silent`.
#[cfg(target_os = "linux")]
#[ignore = "takes about 25 s"]
#[tokio::test]
async fn a_silent_connection_is_closed_after_the_kernels_wait_and_the_head_timeout() {
    let server = Server::start().await;
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let began = tokio::time::Instant::now();
    let waited = closed_silently(stream, began, Duration::from_secs(40)).await;
    assert!(
        (Duration::from_secs(20)..Duration::from_secs(35)).contains(&waited),
        "closed after {waited:?}"
    );
}
