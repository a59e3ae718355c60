//! HTTP/2 over TLS: many SSE streams and the REST API on one connection, a stream whose reader
//! stalls closed alone, and the limits a client cannot push past.

use crate::common::pki::{self, TestCa};
use crate::common::*;
use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const READERS: usize = 10;

/// One HTTP/2 connection whose streams each get a 64 KiB window, so a stream nobody reads
/// stalls quickly while the connection window leaves room for the rest.
async fn h2(server: &Server, ca: &TestCa) -> SendRequest<Full<Bytes>> {
    let tls = pki::connect(server.addr, ca.client(&[b"h2", b"http/1.1"])).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(64 * 1024)
        .initial_connection_window_size(16 << 20)
        .handshake(TokioIo::new(tls))
        .await
        .expect("h2 handshake");
    tokio::spawn(conn);
    send
}

fn request(
    server: &Server,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> hyper::Request<Full<Bytes>> {
    let uri = format!("https://localhost:{}{path}", server.addr.port());
    let builder = hyper::Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {ADMIN_KEY}"));
    match body {
        Some(b) => builder
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(b.to_string()))),
        None => builder.body(Full::new(Bytes::new())),
    }
    .unwrap()
}

async fn call(
    send: &mut SendRequest<Full<Bytes>>,
    req: hyper::Request<Full<Bytes>>,
) -> (u16, Value) {
    within(send.ready()).await.expect("connection usable");
    let res = within(send.send_request(req)).await.expect("answered");
    let status = res.status().as_u16();
    let body = within(res.into_body().collect()).await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn open_sse(
    server: &Server,
    send: &mut SendRequest<Full<Bytes>>,
    player: &str,
) -> hyper::body::Incoming {
    let path = format!("/sse/{player}?token={}", server.token(player));
    within(send.ready()).await.unwrap();
    let mut req = request(server, "GET", &path, None);
    // The player's token is in the query; the admin key would be refused on a stream.
    req.headers_mut().remove("authorization");
    let res = within(send.send_request(req)).await.expect("sse answered");
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), hyper::Version::HTTP_2);
    res.into_body()
}

/// Publishes `{"i": i}` with a 2 KiB pad to every player; returns how many connections the
/// stalled player still had.
async fn publish_tick(
    server: &Server,
    send: &mut SendRequest<Full<Bytes>>,
    players: &[String],
    i: u64,
) -> u64 {
    let body = json!({"player_ids": players, "event_type": "tick", "data": {"i": i, "pad": "p".repeat(2048)}});
    let (status, answer) = call(send, request(server, "POST", "/api/publish", Some(body))).await;
    assert_eq!(status, 200, "{answer}");
    let events = answer["events"].as_array().unwrap();
    let stalled = events.iter().find(|e| e["player_id"] == "stalled").unwrap();
    stalled["connections"].as_u64().unwrap()
}

/// Waits until every reader has seen ticks `0..upto`, in order.
async fn all_reached(rx: &mut mpsc::UnboundedReceiver<(usize, u64)>, seen: &mut [u64], upto: u64) {
    while seen.iter().any(|&n| n < upto) {
        let (reader, i) = within(rx.recv()).await.expect("readers alive");
        assert_eq!(i, seen[reader], "reader {reader} got tick {i} out of order");
        seen[reader] += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_sse_streams_share_one_connection_and_a_stalled_one_is_closed_alone() {
    let ca = TestCa::new();
    let server = ca.server(|s| s.outbox_bytes = Some(64 * 1024)).await;
    let mut send = h2(&server, &ca).await;

    let mut players: Vec<String> = (0..READERS).map(|r| format!("reader{r}")).collect();
    let (tx, mut rx) = mpsc::unbounded_channel();
    for (r, player) in players.iter().enumerate() {
        let body = open_sse(&server, &mut send, player).await;
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut events = body.into_data_stream().eventsource();
            while let Some(Ok(event)) = events.next().await {
                let v: Value = serde_json::from_str(&event.data).unwrap();
                if v["event_type"] == "tick"
                    && tx.send((r, v["data"]["i"].as_u64().unwrap())).is_err()
                {
                    return;
                }
            }
        });
    }
    // Opened on the same connection and never read.
    let mut stalled = open_sse(&server, &mut send, "stalled").await;
    players.push("stalled".into());
    let mut seen = vec![0u64; READERS];

    // 100 KiB per player: more than the stalled stream's window, far less than its outbox and
    // send buffer. Every reader gets all of it while the stalled stream is still open.
    for i in 0..50 {
        assert_eq!(publish_tick(&server, &mut send, &players, i).await, 1);
    }
    all_reached(&mut rx, &mut seen, 50).await;
    let (_, info) = call(
        &mut send,
        request(&server, "GET", "/api/connections/stalled", None),
    )
    .await;
    assert_eq!(
        info["connections"]["sse"]["count"], 1,
        "stalled, not yet given up on"
    );

    // Now fill the stalled stream's send buffer and outbox: it is closed as a slow consumer.
    let mut cut_off_at = None;
    for i in 50..600 {
        if publish_tick(&server, &mut send, &players, i).await == 0 {
            cut_off_at = Some(i);
            break;
        }
    }
    let cut_off_at = cut_off_at.expect("the stalled stream was closed as a slow consumer");
    for i in cut_off_at + 1..cut_off_at + 20 {
        assert_eq!(publish_tick(&server, &mut send, &players, i).await, 0);
    }
    all_reached(&mut rx, &mut seen, cut_off_at + 20).await;

    // The stalled stream's reader finds what was already sent, then the reset.
    let ended = within(async {
        loop {
            match stalled.frame().await {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Some(e),
                None => return None,
            }
        }
    })
    .await;
    assert!(
        ended.is_some(),
        "the stalled stream is reset, not ended cleanly"
    );
    let (_, info) = call(
        &mut send,
        request(&server, "GET", "/api/connections/stalled", None),
    )
    .await;
    assert_eq!(info["connections"]["sse"]["count"], 0);
    let (status, _) = call(&mut send, request(&server, "GET", "/health/live", None)).await;
    assert_eq!(status, 200, "the connection itself carries on");
}

// ---- Raw frames, to test what the server enforces rather than what a polite client does.

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// HPACK integer with an `n`-bit prefix (RFC 7541 §5.1).
fn hpack_int(out: &mut Vec<u8>, first: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128 + 128) as u8);
        value /= 128;
    }
    out.push(value as u8);
}

fn hpack_str(out: &mut Vec<u8>, s: &str) {
    hpack_int(out, 0, 7, s.len());
    out.extend_from_slice(s.as_bytes());
}

/// A GET's header block: literals without indexing, so every block stands alone.
fn get_block(path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut b = vec![0x82, 0x87]; // :method GET, :scheme https
    hpack_int(&mut b, 0, 4, 4); // :path, by its static-table name
    hpack_str(&mut b, path);
    hpack_int(&mut b, 0, 4, 1); // :authority
    hpack_str(&mut b, "localhost");
    for (name, value) in extra {
        b.push(0);
        hpack_str(&mut b, name);
        hpack_str(&mut b, value);
    }
    b
}

/// A header block in one HEADERS frame and as many CONTINUATIONs as the 16 KiB frame size needs.
fn headers(stream: u32, block: &[u8], flags: u8) -> Vec<u8> {
    let mut chunks = block.chunks(16 * 1024).peekable();
    let mut out = Vec::new();
    let mut first = true;
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        let kind = if first { HEADERS } else { CONTINUATION };
        let f = if first { flags } else { 0 } | if last { END_HEADERS } else { 0 };
        out.extend(frame(kind, f, stream, chunk));
        first = false;
    }
    out
}

struct Raw(tokio_rustls::client::TlsStream<tokio::net::TcpStream>);

impl Raw {
    async fn open(server: &Server, ca: &TestCa) -> Raw {
        let mut tls = pki::connect(server.addr, ca.client(&[b"h2"])).await;
        tls.write_all(PREFACE).await.unwrap();
        tls.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
        Raw(tls)
    }

    async fn send(&mut self, bytes: &[u8]) {
        within(self.0.write_all(bytes)).await.unwrap();
        within(self.0.flush()).await.unwrap();
    }

    /// The next frame as (type, flags, stream, payload); `None` once the server hung up.
    async fn next(&mut self) -> Option<(u8, u8, u32, Vec<u8>)> {
        let mut head = [0u8; 9];
        within(self.0.read_exact(&mut head)).await.ok()?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        within(self.0.read_exact(&mut payload)).await.ok()?;
        Some((head[3], head[4], stream, payload))
    }

    /// Reads until a frame of `kind` on `stream` (0 for the connection), returning it.
    async fn until(&mut self, kind: u8, stream: u32) -> Option<(u8, u32, Vec<u8>)> {
        loop {
            let (k, flags, s, payload) = self.next().await?;
            if k == kind && (stream == 0 || s == stream) {
                return Some((flags, s, payload));
            }
            if k == GOAWAY && kind != GOAWAY {
                return None;
            }
        }
    }
}

/// The `:status` of a response HEADERS block: h2 sends 200 from HPACK's static table and any
/// other status as a Huffman-coded literal, which is matched here against the statuses a test
/// may expect.
fn status_of(block: &[u8]) -> Option<u16> {
    if block.first() == Some(&0x88) {
        return Some(200);
    }
    [400u16, 401, 403, 404, 431, 500]
        .into_iter()
        .find(|&status| {
            let mut literal = huffman_digits(status);
            literal.insert(0, 0x80 | literal.len() as u8);
            block.len() > literal.len() && block[0] & 0x0f == 8 && block[1..].starts_with(&literal)
        })
}

/// A status code in HPACK's Huffman code (RFC 7541 Appendix B: digits 0-2 take 5 bits, 3-9 take
/// 6), padded with ones.
fn huffman_digits(status: u16) -> Vec<u8> {
    let mut bits: Vec<bool> = Vec::new();
    for digit in status.to_string().bytes().map(|b| b - b'0') {
        let (code, len) = if digit < 3 {
            (digit as u32, 5)
        } else {
            (0b011001 + digit as u32 - 3, 6)
        };
        bits.extend((0..len).rev().map(|i| code >> i & 1 == 1));
    }
    while !bits.len().is_multiple_of(8) {
        bits.push(true);
    }
    bits.chunks(8)
        .map(|byte| byte.iter().fold(0u8, |acc, &b| acc << 1 | b as u8))
        .collect()
}

#[tokio::test]
async fn stream_concurrency_is_capped_at_the_announced_limit() {
    let ca = TestCa::new();
    let server = ca.server(|_| {}).await;
    let mut raw = Raw::open(&server, &ca).await;
    let (_, _, settings) = raw.until(SETTINGS, 0).await.expect("server settings");
    let announced = settings
        .chunks(6)
        .find(|s| u16::from_be_bytes([s[0], s[1]]) == 0x3)
        .map(|s| u32::from_be_bytes([s[2], s[3], s[4], s[5]]));
    assert_eq!(announced, Some(100), "SETTINGS_MAX_CONCURRENT_STREAMS");
    raw.send(&frame(SETTINGS, 0x1, 0, &[])).await;

    // 100 SSE streams stay open; the 101st is refused, not queued behind them.
    let mut bytes = Vec::new();
    for n in 0..101u32 {
        let player = format!("cap{n}");
        let path = format!("/sse/{player}?token={}", server.token(&player));
        bytes.extend(headers(2 * n + 1, &get_block(&path, &[]), END_STREAM));
    }
    raw.send(&bytes).await;
    let mut answered = 0;
    let mut refused = None;
    while answered < 100 || refused.is_none() {
        let (kind, _, stream, payload) = raw.next().await.expect("server still talking");
        match kind {
            HEADERS => {
                assert_eq!(status_of(&payload), Some(200));
                answered += 1;
            }
            RST_STREAM => {
                let code = u32::from_be_bytes(payload[..4].try_into().unwrap());
                assert_eq!(code, 0x7, "REFUSED_STREAM");
                assert_eq!(stream, 201, "only the stream past the limit");
                refused = Some(stream);
            }
            GOAWAY => panic!("the connection survives a client at the limit"),
            _ => {}
        }
    }
}

#[tokio::test]
async fn an_oversized_header_list_is_refused_and_the_connection_lives_on() {
    let ca = TestCa::new();
    let server = ca.server(|_| {}).await;
    let mut raw = Raw::open(&server, &ca).await;
    // 3 KiB once into the dynamic table, then the same header six times more by its index: a
    // small block, as HPACK allows, that decodes past the 16 KiB limit.
    let mut block = get_block("/health/live", &[]);
    block.push(0x40); // literal with incremental indexing, new name: dynamic index 62
    hpack_str(&mut block, "x-big");
    hpack_str(&mut block, &"b".repeat(3 * 1024));
    block.extend([0x80 | 62; 6]);
    raw.send(&headers(1, &block, END_STREAM)).await;
    let (_, _, block) = raw.until(HEADERS, 1).await.expect("an answer on stream 1");
    assert_eq!(status_of(&block), Some(431));
    raw.send(&headers(3, &get_block("/health/live", &[]), END_STREAM))
        .await;
    let (_, _, block) = raw.until(HEADERS, 3).await.expect("an answer on stream 3");
    assert_eq!(status_of(&block), Some(200));
}

#[tokio::test]
async fn a_reset_flood_closes_the_connection_but_a_few_resets_do_not() {
    let ca = TestCa::new();
    let server = ca.server(|_| {}).await;
    let cancel = 0x8u32.to_be_bytes();

    let mut polite = Raw::open(&server, &ca).await;
    let mut bytes = Vec::new();
    for n in 0..5u32 {
        bytes.extend(headers(
            2 * n + 1,
            &get_block("/health/live", &[]),
            END_STREAM,
        ));
        bytes.extend(frame(RST_STREAM, 0, 2 * n + 1, &cancel));
    }
    bytes.extend(headers(11, &get_block("/health/live", &[]), END_STREAM));
    polite.send(&bytes).await;
    let (_, _, block) = polite.until(HEADERS, 11).await.expect("still answered");
    assert_eq!(status_of(&block), Some(200));

    let mut flood = Raw::open(&server, &ca).await;
    let mut bytes = Vec::new();
    for n in 0..200u32 {
        bytes.extend(headers(
            2 * n + 1,
            &get_block("/health/live", &[]),
            END_STREAM,
        ));
        bytes.extend(frame(RST_STREAM, 0, 2 * n + 1, &cancel));
    }
    flood.send(&bytes).await;
    let (_, _, payload) = flood.until(GOAWAY, 0).await.expect("GOAWAY");
    let code = u32::from_be_bytes(payload[4..8].try_into().unwrap());
    assert_eq!(code, 0xb, "ENHANCE_YOUR_CALM");
}
