//! The tool's counting is itself tested: a deliberately faulty stand-in server, speaking the
//! same wire subset as dualconn (`/api/ws` with the bearer subprotocol, `/sse/{player}`,
//! `/api/publish`), drops and repeats chosen events, and `dualconn-bench` must report exactly
//! those gaps and duplicates.

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;

const SECRET: &str = "a-test-secret-that-is-at-least-32-bytes-long";
const ADMIN: &str = "admin-key-for-the-stand-in";

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Kind {
    Ws,
    Sse,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    /// The connection never gets this event.
    Drop,
    /// The connection gets this event this many extra times.
    Repeat(u32),
}

/// (player, transport, nth event of the player counting from 1) -> fault
type Faults = HashMap<(String, Kind, u64), Fault>;

/// A connection's queue: (sequence number for SSE's `id:`, envelope).
type Outbox = mpsc::UnboundedSender<(Option<u64>, String)>;

#[derive(Default)]
struct Player {
    seq: u64,
    /// Events published so far to this player.
    published: u64,
    conns: Vec<(Kind, Outbox)>,
}

struct StandIn {
    players: Mutex<HashMap<String, Player>>,
    faults: Faults,
}

fn envelope(event_type: &str, seq: Option<u64>, player: &str, data: &str) -> String {
    let seq = seq.map_or(String::new(), |s| format!("\"sequence_number\":{s},"));
    format!(
        r#"{{"event_type":"{event_type}","timestamp":"2025-01-01T00:00:00Z",{seq}"player_id":"{player}","data":{data}}}"#
    )
}

fn player_of(token: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Claims {
        sub: String,
    }
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    v.required_spec_claims = ["exp", "sub"].iter().map(|s| s.to_string()).collect();
    jsonwebtoken::decode::<Claims>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes()),
        &v,
    )
    .expect("the bench mints valid tokens")
    .claims
    .sub
}

impl StandIn {
    fn join(&self, player: &str, kind: Kind) -> mpsc::UnboundedReceiver<(Option<u64>, String)> {
        let (tx, rx) = mpsc::unbounded_channel();
        let data = format!(r#"{{"connection_id":"c","player_id":"{player}"}}"#);
        tx.send((None, envelope("connected", None, player, &data)))
            .unwrap();
        let mut players = self.players.lock().unwrap();
        players
            .entry(player.to_owned())
            .or_default()
            .conns
            .push((kind, tx));
        rx
    }

    fn publish(&self, body: &serde_json::Value) -> String {
        let data = body["data"].to_string();
        let mut players = self.players.lock().unwrap();
        let targets: Vec<String> = if body["broadcast"] == true {
            let mut ids: Vec<String> = players.keys().cloned().collect();
            ids.sort();
            ids
        } else {
            body["player_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        };
        let mut events = Vec::new();
        for id in targets {
            let p = players.entry(id.clone()).or_default();
            p.seq = if p.seq == 0 { 1000 } else { p.seq + 1 };
            p.published += 1;
            let json = envelope("bench", Some(p.seq), &id, &data);
            for (kind, tx) in &p.conns {
                let copies = match self.faults.get(&(id.clone(), *kind, p.published)) {
                    Some(Fault::Drop) => 0,
                    Some(Fault::Repeat(n)) => 1 + n,
                    None => 1,
                };
                for _ in 0..copies {
                    let _ = tx.send((Some(p.seq), json.clone()));
                }
            }
            events.push(serde_json::json!({"player_id": id, "sequence_number": p.seq, "connections": p.conns.len()}));
        }
        serde_json::json!({"success": true, "events": events}).to_string()
    }
}

async fn serve(stand_in: Arc<StandIn>, listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(connection(stand_in.clone(), stream));
    }
}

#[allow(clippy::result_large_err)] // tungstenite's callback signature
async fn connection(s: Arc<StandIn>, mut stream: TcpStream) {
    let mut peek = vec![0u8; 8192];
    let head_len = loop {
        let n = stream.peek(&mut peek).await.unwrap_or(0);
        if n == 0 {
            return;
        }
        if let Some(i) = peek[..n].windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        tokio::task::yield_now().await;
    };
    let head = String::from_utf8_lossy(&peek[..head_len]).into_owned();
    let path = head.split(' ').nth(1).unwrap_or("").to_owned();
    if path.starts_with("/api/ws") {
        let mut token = String::new();
        let callback = |req: &Request, mut resp: Response| {
            let protocols = req
                .headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            token = protocols.split(',').nth(1).unwrap_or("").trim().to_owned();
            resp.headers_mut()
                .insert("sec-websocket-protocol", HeaderValue::from_static("bearer"));
            Ok(resp)
        };
        let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
            return;
        };
        let player = player_of(&token);
        let mut rx = s.join(&player, Kind::Ws);
        let (mut sink, mut inbound) = ws.split();
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Some((_, json)) => if sink.send(Message::text(json)).await.is_err() { return },
                    None => return,
                },
                m = inbound.next() => match m {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    _ => {}
                }
            }
        }
    }
    let mut buf = vec![0u8; head_len];
    if stream.read_exact(&mut buf).await.is_err() {
        return;
    }
    if let Some(player) = path.strip_prefix("/sse/") {
        let player = player.split('?').next().unwrap_or("").to_owned();
        let token = head
            .lines()
            .find_map(|l| l.strip_prefix("Authorization: Bearer "))
            .unwrap_or("")
            .trim();
        assert_eq!(player_of(token), player);
        let mut rx = s.join(&player, Kind::Sse);
        let open = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
                    Transfer-Encoding: chunked\r\n\r\n";
        if stream.write_all(open.as_bytes()).await.is_err() {
            return;
        }
        let mut scratch = [0u8; 64];
        loop {
            tokio::select! {
                ev = rx.recv() => {
                    let Some((seq, json)) = ev else { return };
                    let id = seq.map_or(String::new(), |s| format!("id: {s}\n"));
                    let event = format!("{id}data: {json}\n\n");
                    let chunk = format!("{:x}\r\n{event}\r\n", event.len());
                    if stream.write_all(chunk.as_bytes()).await.is_err() {
                        return;
                    }
                }
                n = stream.read(&mut scratch) => if matches!(n, Ok(0) | Err(_)) { return },
            }
        }
    }
    if path.starts_with("/api/publish") {
        continue_publish(s, stream, head).await;
    }
}

async fn continue_publish(s: Arc<StandIn>, mut stream: TcpStream, mut head: String) {
    loop {
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        assert!(head.contains(&format!("Authorization: Bearer {ADMIN}")));
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let answer = s.publish(&body);
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if stream.write_all(resp.as_bytes()).await.is_err() {
            return;
        }
        let mut next = Vec::new();
        let mut byte = [0u8; 1];
        while !next.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte).await {
                Ok(1) => next.push(byte[0]),
                _ => return,
            }
        }
        head = String::from_utf8_lossy(&next).into_owned();
    }
}

/// Runs the bench binary against a stand-in with these faults and returns its JSON line.
fn run_against(faults: Faults, args: &[&str]) -> serde_json::Value {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt.block_on(TcpListener::bind("0.0.0.0:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    let stand_in = Arc::new(StandIn {
        players: Mutex::default(),
        faults,
    });
    rt.spawn(serve(stand_in, listener));
    let out = Command::new(env!("CARGO_BIN_EXE_dualconn-bench"))
        .args(args)
        .args(["--port", &port.to_string(), "--hosts", "2"])
        .args([
            "--secret",
            SECRET,
            "--admin-key",
            ADMIN,
            "--quiet-ms",
            "300",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap())
        .unwrap_or_else(|e| panic!("{e}: {stdout} {stderr}"))
}

fn key(p: &str, k: Kind, n: u64) -> (String, Kind, u64) {
    (p.to_owned(), k, n)
}

#[test]
fn a_faulty_server_gets_exactly_its_gaps_and_duplicates_reported() {
    let faults: Faults = [
        (key("p0", Kind::Ws, 2), Fault::Drop), // a gap in the middle
        (key("p1", Kind::Sse, 3), Fault::Repeat(2)), // two duplicates
        (key("p2", Kind::Ws, 5), Fault::Drop), // the last event: only the publisher knows
        (key("p3", Kind::Sse, 1), Fault::Drop), // the first event
        (key("p4", Kind::Sse, 3), Fault::Drop),
        (key("p4", Kind::Ws, 4), Fault::Repeat(1)),
        (key("p5", Kind::Ws, 1), Fault::Drop), // two in a row
        (key("p5", Kind::Ws, 2), Fault::Drop),
    ]
    .into_iter()
    .collect();
    let v = run_against(
        faults,
        &[
            "fanout",
            "--players",
            "8",
            "--transport",
            "both",
            "--rate",
            "50",
            "--publishes",
            "5",
            "--secs",
            "10",
            "--workers",
            "2",
        ],
    );
    assert_eq!(v["connections"], 16, "{v}");
    assert_eq!(v["publishes"], 5, "{v}");
    assert_eq!(v["gaps"], 6, "{v}");
    assert_eq!(v["duplicates"], 3, "{v}");
    assert_eq!(v["deliveries"], 16 * 5 - 6, "{v}");
}

#[test]
fn targeted_publishes_count_per_player() {
    let faults: Faults = [
        (key("p7", Kind::Sse, 1), Fault::Drop),
        (key("p9", Kind::Sse, 2), Fault::Repeat(3)),
    ]
    .into_iter()
    .collect();
    // 10 players, 2 per publish, 10 publishes: every player gets exactly 2 events.
    let v = run_against(
        faults,
        &[
            "fanout",
            "--players",
            "10",
            "--transport",
            "sse",
            "--mode",
            "targeted",
            "--batch",
            "2",
            "--rate",
            "100",
            "--publishes",
            "10",
            "--publishers",
            "2",
        ],
    );
    assert_eq!(v["gaps"], 1, "{v}");
    assert_eq!(v["duplicates"], 3, "{v}");
    assert_eq!(v["deliveries"], 20 - 1, "{v}");
}

#[test]
fn a_correct_server_gets_zero() {
    let v = run_against(
        Faults::new(),
        &[
            "fanout",
            "--players",
            "20",
            "--transport",
            "both",
            "--rate",
            "100",
            "--publishes",
            "20",
        ],
    );
    assert_eq!(v["gaps"], 0, "{v}");
    assert_eq!(v["duplicates"], 0, "{v}");
    assert_eq!(v["deliveries"], 40 * 20, "{v}");
}
