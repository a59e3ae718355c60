//! `dualconn-bench chaos`: the rough edges of a server's life, in loops, for the soak: slow
//! readers that must be closed with 4008, session changes (4001), tokens that expire on open
//! connections (1008), and garbage on the socket. Each loop counts what it expected and what
//! it did not; the soak fails on anything unexpected.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::BytesMut;
use clap::Args;
use futures_util::StreamExt;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use dualconn_bench::http::{Client, read_head};
use dualconn_bench::mint;

#[derive(Args, Clone)]
pub struct ChaosOpts {
    /// Server port on 127.0.0.1.
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// HS256 secret the server verifies with.
    #[arg(long, env = "DUALCONN_JWT_SECRET", default_value = "")]
    secret: String,
    /// Admin key for /api/publish and sessions (the first of a comma-separated list).
    #[arg(long, env = "DUALCONN_ADMIN_KEYS", default_value = "")]
    admin_key: String,
    /// How long to run, seconds.
    #[arg(long, default_value_t = 10.0)]
    secs: f64,
    /// Token lifetime for the expiry loop, seconds (the server's leeway is added to it).
    #[arg(long, default_value_t = 2)]
    token_ttl: u64,
}

/// What the loops saw, as one JSON line.
#[derive(Default, Serialize)]
struct Tally {
    slow_closed_4008: Cell<u64>,
    session_closed_4001: Cell<u64>,
    expired_closed_1008: Cell<u64>,
    garbage_sent: Cell<u64>,
    unexpected: Cell<u64>,
    #[serde(skip)]
    first_unexpected: std::cell::RefCell<Option<String>>,
}

impl Tally {
    fn count(&self, c: &Cell<u64>) {
        c.set(c.get() + 1);
    }

    fn record(&self, what: &str, outcome: Result<()>) {
        if let Err(e) = outcome {
            self.count(&self.unexpected);
            let mut first = self.first_unexpected.borrow_mut();
            if first.is_none() {
                *first = Some(format!("{what}: {e:#}"));
            }
        }
    }
}

pub async fn run(o: ChaosOpts) -> Result<()> {
    if o.secret.is_empty() || o.admin_key.is_empty() {
        bail!("chaos needs --secret and --admin-key (or DUALCONN_JWT_SECRET, DUALCONN_ADMIN_KEYS)");
    }
    let o = Rc::new(o);
    let tally = Rc::new(Tally::default());
    let until = Instant::now() + Duration::from_secs_f64(o.secs);
    let mut loops = Vec::new();
    for (what, i) in [
        ("slow", 0),
        ("slow", 1),
        ("session", 0),
        ("expiry", 0),
        ("expiry", 1),
        ("garbage", 0),
    ] {
        let (o, tally) = (o.clone(), tally.clone());
        loops.push(tokio::task::spawn_local(async move {
            let mut n = 0u64;
            while Instant::now() < until {
                let player = format!("chaos-{what}-{i}-{n}");
                n += 1;
                let outcome = match what {
                    "slow" => slow_reader(&o, &tally, &player).await,
                    "session" => session_change(&o, &tally, &player).await,
                    "expiry" => token_expiry(&o, &tally, &player).await,
                    _ => garbage(&o, &tally, n).await,
                };
                tally.record(what, outcome);
            }
        }));
    }
    for l in loops {
        l.await?;
    }
    println!("{}", serde_json::to_string(&*tally)?);
    if let Some(first) = tally.first_unexpected.borrow().as_ref() {
        eprintln!("chaos: first unexpected outcome: {first}");
    }
    Ok(())
}

/// Every wait here is bounded, so a server that stops answering fails the soak, not hangs it.
const PATIENCE: Duration = Duration::from_secs(30);

async fn ws(o: &ChaosOpts, token: &str) -> Result<WsStream> {
    let stream = TcpStream::connect(("127.0.0.1", o.port)).await?;
    let mut req = format!("ws://127.0.0.1:{}/api/ws", o.port).into_client_request()?;
    req.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_str(&format!("bearer, {token}"))?,
    );
    let (ws, _) = timeout(PATIENCE, tokio_tungstenite::client_async(req, stream))
        .await
        .context("handshake timed out")??;
    Ok(ws)
}

type WsStream = tokio_tungstenite::WebSocketStream<TcpStream>;

/// Reads until the close frame and returns its code.
async fn close_code(ws: &mut WsStream) -> Result<u16> {
    timeout(PATIENCE, async {
        while let Some(msg) = ws.next().await {
            if let Message::Close(frame) = msg? {
                return Ok(frame.map(|f| u16::from(f.code)).unwrap_or(0));
            }
        }
        bail!("the stream ended without a close frame")
    })
    .await
    .context("no close frame in time")?
}

/// A WebSocket that never reads, with a tiny receive buffer, flooded until the server cuts it
/// off; reading again, it must find 4008.
async fn slow_reader(o: &ChaosOpts, tally: &Tally, player: &str) -> Result<()> {
    let token = mint(o.secret.as_bytes(), player, 3600)?;
    let socket = TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4096)?;
    let mut stream = socket.connect(([127, 0, 0, 1], o.port).into()).await?;
    let req = format!(
        "GET /api/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: bearer, {token}\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).await?;
    let mut buf = BytesMut::new();
    let head = timeout(PATIENCE, read_head(&mut stream, &mut buf)).await??;
    if head.status != 101 {
        bail!("slow reader: handshake answered {}", head.status);
    }
    let mut publisher = Client::connect("127.0.0.1", o.port).await?;
    let blob = "z".repeat(64 * 1024);
    let body =
        serde_json::json!({"player_ids": [player], "event_type": "blob", "data": {"b": blob}})
            .to_string();
    let mut cut_off = false;
    for _ in 0..2000 {
        let (status, answer) = publisher
            .post("/api/publish", &o.admin_key, body.as_bytes())
            .await?;
        if status != 200 {
            bail!("publish answered {status}");
        }
        let answer: serde_json::Value = serde_json::from_slice(answer)?;
        if answer["events"][0]["connections"] == 0 {
            cut_off = true;
            break;
        }
    }
    if !cut_off {
        bail!("a reader that never reads was not cut off");
    }
    let code = timeout(PATIENCE, read_close_code(&mut stream, buf)).await??;
    if code != 4008 {
        bail!("slow reader closed with {code}, not 4008");
    }
    tally.count(&tally.slow_closed_4008);
    Ok(())
}

/// Reads raw server frames (after the handshake's leftover bytes) until a close frame.
async fn read_close_code(stream: &mut TcpStream, mut buf: BytesMut) -> Result<u16> {
    loop {
        // Parse whole frames from the buffer.
        while buf.len() >= 2 {
            let opcode = buf[0] & 0x0f;
            let (len, header) = match buf[1] & 0x7f {
                126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
                127 if buf.len() >= 10 => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&buf[2..10]);
                    (usize::try_from(u64::from_be_bytes(b))?, 10)
                }
                126 | 127 => break,
                n => (n as usize, 2),
            };
            if buf.len() < header + len {
                break;
            }
            if opcode == 0x8 {
                if len < 2 {
                    bail!("close frame without a code");
                }
                return Ok(u16::from_be_bytes([buf[header], buf[header + 1]]));
            }
            let _ = buf.split_to(header + len);
        }
        if stream.read_buf(&mut buf).await? == 0 {
            bail!("the socket closed without a close frame");
        }
    }
}

/// A new session ends the player's open connection with 4001.
async fn session_change(o: &ChaosOpts, tally: &Tally, player: &str) -> Result<()> {
    let token = mint(o.secret.as_bytes(), player, 3600)?;
    let mut ws = ws(o, &token).await?;
    // `connected` first, so the connection is registered before the session changes.
    timeout(PATIENCE, ws.next())
        .await
        .context("no connected event")?;
    let mut client = Client::connect("127.0.0.1", o.port).await?;
    let (status, _) = client
        .post(
            &format!("/api/connections/{player}/session"),
            &o.admin_key,
            b"{}",
        )
        .await?;
    if status != 200 {
        bail!("new session answered {status}");
    }
    let code = close_code(&mut ws).await?;
    if code != 4001 {
        bail!("session change closed with {code}, not 4001");
    }
    tally.count(&tally.session_closed_4001);
    Ok(())
}

/// A connection opened with a short-lived token ends with `token_expired` and 1008.
async fn token_expiry(o: &ChaosOpts, tally: &Tally, player: &str) -> Result<()> {
    let token = mint(o.secret.as_bytes(), player, o.token_ttl)?;
    let mut ws = ws(o, &token).await?;
    let code = close_code(&mut ws).await?;
    if code != 1008 {
        bail!("an expiring token closed with {code}, not 1008");
    }
    tally.count(&tally.expired_closed_1008);
    Ok(())
}

/// Bytes no client should send: random bytes instead of HTTP, a request line that never ends,
/// and a WebSocket that sends an unmasked frame with a huge length. The server must answer or
/// hang up; the soak's log check catches a panic.
async fn garbage(o: &ChaosOpts, tally: &Tally, n: u64) -> Result<()> {
    let mut seed = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut bytes = vec![0u8; 512];
    for b in bytes.iter_mut() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        *b = seed as u8;
    }
    let payload: Vec<u8> = match n % 3 {
        0 => bytes,
        1 => [b"GET /api/ws?last_event_id=".as_slice(), &[b'9'; 4000]].concat(),
        _ => {
            let token = mint(o.secret.as_bytes(), &format!("chaos-garbage-{n}"), 3600)?;
            let mut ws = ws(o, &token).await?;
            // An unmasked binary frame claiming 2^63 bytes: a protocol error, closed at once.
            let frame = [0x82u8, 0x7f, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
            ws.get_mut().write_all(&frame).await?;
            let _ = timeout(PATIENCE, async { while ws.next().await.is_some() {} }).await;
            tally.count(&tally.garbage_sent);
            return Ok(());
        }
    };
    let mut stream = TcpStream::connect(("127.0.0.1", o.port)).await?;
    stream.write_all(&payload).await?;
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    timeout(PATIENCE, async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .context("the server kept a garbage connection open")?;
    tally.count(&tally.garbage_sent);
    Ok(())
}
