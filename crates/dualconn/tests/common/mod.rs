//! A real `App` on port 0 and real clients over real sockets, shared by the integration tests.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use dualconn::App;
use dualconn::config::Settings;
use dualconn::hub::Hub;
use futures_util::{SinkExt, Stream, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

pub const SECRET: &str = "integration-test-secret-0123456789abcdef";
pub const ADMIN_KEY: &str = "integration-admin-key-0123456789";

/// Any await in a test is bounded, so a bug fails a test instead of hanging CI.
pub async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("timed out waiting")
}

pub mod pki;

pub struct Server {
    pub addr: SocketAddr,
    /// `https` when the server was given a certificate.
    pub scheme: &'static str,
    pub shutdown: CancellationToken,
    handle: Option<tokio::task::JoinHandle<()>>,
    pub http: reqwest::Client,
    pub hub: Arc<Hub>,
}

/// The Redis the cluster tests share, each under its own key prefix:
/// `DUALCONN_TEST_REDIS_URL`, or the machine's usual `redis://127.0.0.1:6379`
/// (`scripts/redis-setup.sh` makes sure one runs).
pub fn test_redis_url() -> String {
    std::env::var("DUALCONN_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A key prefix no other test (or test run) uses.
pub fn unique_prefix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "dctest:{}:{}:{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Settings for one node of a cluster on `redis_url` under `prefix`.
pub fn cluster_settings(redis_url: &str, prefix: &str, node: &str) -> Settings {
    Settings {
        redis_url: Some(redis_url.into()),
        redis_prefix: Some(prefix.into()),
        node_id: Some(node.into()),
        ..base_settings()
    }
}

/// `n` nodes sharing one Redis under a fresh prefix, each registered and subscribed.
pub async fn cluster(n: usize, tweak: impl Fn(&mut Settings)) -> Vec<Server> {
    let prefix = unique_prefix();
    let url = test_redis_url();
    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        let mut settings = cluster_settings(&url, &prefix, &format!("node{i}"));
        tweak(&mut settings);
        nodes.push(Server::from_settings(settings).await);
    }
    for node in &nodes {
        node.ready().await;
    }
    nodes
}

/// Settings every test starts from: a known secret and admin key, generous limits.
pub fn base_settings() -> Settings {
    Settings {
        bind: Some("127.0.0.1:0".parse().unwrap()),
        jwt_secret: Some(SECRET.into()),
        admin_keys: Some(ADMIN_KEY.into()),
        connect_rate_per_ip: Some(10_000),
        connect_burst_per_ip: Some(10_000),
        connect_rate_per_player: Some(10_000),
        connect_burst_per_player: Some(10_000),
        ..Default::default()
    }
}

impl Server {
    pub async fn start() -> Server {
        Server::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Settings)) -> Server {
        let mut settings = base_settings();
        tweak(&mut settings);
        Server::from_settings(settings).await
    }

    pub async fn from_settings(settings: Settings) -> Server {
        let app = App::build(settings.resolve().expect("valid test settings"))
            .await
            .expect("server builds");
        Server::from_app(app)
    }

    /// Runs an already built `App`, for tests that must read it first (e.g. its admin keys).
    pub fn from_app(app: App) -> Server {
        let addr = app.local_addr();
        let shutdown = app.shutdown_token();
        let hub = app.hub().clone();
        let handle = tokio::spawn(app.run());
        Server {
            addr,
            scheme: "http",
            shutdown,
            handle: Some(handle),
            http: reqwest::Client::new(),
            hub,
        }
    }

    /// Resolves once the node serves: at once alone, once registered in a cluster.
    pub async fn ready(&self) {
        tokio::time::timeout(
            Duration::from_secs(20),
            self.hub.backplane().wait_available(),
        )
        .await
        .expect("the node joined its cluster");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.addr, path)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// A player token valid for an hour.
    pub fn token(&self, player: &str) -> String {
        token_with(json!({"sub": player, "exp": now_secs() + 3600}))
    }

    /// Stops the server gracefully and waits until `run` returns.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            within(handle).await.expect("run returned cleanly");
        }
    }

    pub async fn get(&self, path: &str, bearer: &str) -> reqwest::Response {
        within(self.http.get(self.url(path)).bearer_auth(bearer).send())
            .await
            .expect("request sent")
    }

    /// A GET whose answer is JSON, read whole.
    pub async fn get_json(&self, path: &str, bearer: &str) -> Value {
        within(self.get(path, bearer).await.json())
            .await
            .expect("a JSON answer")
    }

    pub async fn post(&self, path: &str, bearer: &str, body: Value) -> reqwest::Response {
        within(
            self.http
                .post(self.url(path))
                .bearer_auth(bearer)
                .json(&body)
                .send(),
        )
        .await
        .expect("request sent")
    }

    /// Publishes one event as admin and returns the response JSON.
    pub async fn publish(&self, players: &[&str], event_type: &str, data: Value) -> Value {
        let res = self
            .post(
                "/api/publish",
                ADMIN_KEY,
                json!({"player_ids": players, "event_type": event_type, "data": data}),
            )
            .await;
        assert_eq!(res.status(), 200, "publish failed");
        res.json().await.unwrap()
    }

    /// Opens `/api/ws` with the bearer subprotocol.
    pub async fn ws(&self, player: &str, query: &str) -> Ws {
        self.ws_at(&format!("/api/ws{query}"), &self.token(player))
            .await
            .expect("websocket opens")
    }

    /// Opens a WebSocket with the token in the subprotocol.
    pub async fn ws_at(&self, path: &str, token: &str) -> Result<Ws, tungstenite::Error> {
        let mut req = self.ws_url(path).into_client_request().unwrap();
        req.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_str(&format!("bearer, {token}")).unwrap(),
        );
        self.ws_request(req).await
    }

    pub async fn ws_request(
        &self,
        req: tungstenite::handshake::client::Request,
    ) -> Result<Ws, tungstenite::Error> {
        let (stream, response) = within(tokio_tungstenite::connect_async(req)).await?;
        Ok(Ws {
            stream,
            response_headers: response.headers().clone(),
        })
    }

    /// Opens `/sse/{player}` with the token in the query.
    pub async fn sse(&self, player: &str, query: &str) -> Sse {
        let sep = if query.is_empty() { "?" } else { "&" };
        let path = format!("/sse/{player}{query}{sep}token={}", self.token(player));
        let res = within(self.http.get(self.url(&path)).send()).await.unwrap();
        assert_eq!(res.status(), 200, "sse opens");
        Sse::from_response(res)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Signs arbitrary claims with the test secret.
pub fn token_with(claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

pub struct Ws {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub response_headers: tungstenite::http::HeaderMap,
}

/// How a WebSocket ended, as the client saw it.
#[derive(Debug)]
pub enum Ending {
    Closed(Option<CloseFrame>),
    Dropped,
}

impl Ws {
    /// The next event, skipping heartbeats; bounded as a whole, as heartbeats never stop.
    pub async fn next_event(&mut self) -> Value {
        within(async {
            loop {
                match self.stream.next().await {
                    Some(Ok(Message::Text(text))) => {
                        let v: Value = serde_json::from_str(&text).expect("events are JSON");
                        if v["event_type"] != "heartbeat" {
                            return v;
                        }
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    other => panic!("expected an event, got {other:?}"),
                }
            }
        })
        .await
    }

    /// Reads until the close frame, returning the events seen before it. Bounded as a whole,
    /// not only per frame: heartbeats would otherwise keep a connection that never closes
    /// from failing the test.
    pub async fn until_close(&mut self) -> (Vec<Value>, Ending) {
        let mut events = Vec::new();
        let read = async {
            loop {
                match within(self.stream.next()).await {
                    Some(Ok(Message::Text(text))) => {
                        events.push(serde_json::from_str(&text).unwrap());
                    }
                    Some(Ok(Message::Close(frame))) => return Ending::Closed(frame),
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return Ending::Dropped,
                }
            }
        };
        let ending = tokio::time::timeout(Duration::from_secs(30), read)
            .await
            .expect("the connection closed in time");
        (events, ending)
    }

    pub async fn send_text(&mut self, text: &str) {
        within(self.stream.send(Message::text(text)))
            .await
            .expect("sent");
    }
}

/// The close code of an ending, if a close frame came.
pub fn close_code(ending: &Ending) -> Option<u16> {
    match ending {
        Ending::Closed(Some(frame)) => Some(frame.code.into()),
        _ => None,
    }
}

type EventStream = Pin<
    Box<
        dyn Stream<
                Item = Result<
                    eventsource_stream::Event,
                    eventsource_stream::EventStreamError<reqwest::Error>,
                >,
            > + Send,
    >,
>;

pub struct Sse {
    pub headers: reqwest::header::HeaderMap,
    events: EventStream,
}

/// One SSE event: its `id:` (empty when none) and its JSON.
#[derive(Debug)]
pub struct SseEvent {
    pub id: String,
    pub json: Value,
}

impl Sse {
    pub fn from_response(res: reqwest::Response) -> Sse {
        use eventsource_stream::Eventsource;
        Sse {
            headers: res.headers().clone(),
            events: Box::pin(res.bytes_stream().eventsource()),
        }
    }

    /// The next event, skipping heartbeats; `None` when the stream ended. Bounded as a whole,
    /// as heartbeats never stop.
    pub async fn next(&mut self) -> Option<SseEvent> {
        within(async {
            loop {
                match self.events.next().await {
                    Some(Ok(e)) => {
                        let json: Value = serde_json::from_str(&e.data).expect("events are JSON");
                        if json["event_type"] != "heartbeat" {
                            return Some(SseEvent { id: e.id, json });
                        }
                    }
                    Some(Err(_)) | None => return None,
                }
            }
        })
        .await
    }

    pub async fn next_event(&mut self) -> Value {
        self.next().await.expect("an event before the end").json
    }

    /// Reads to the end of the stream, returning what came.
    /// Every event until the stream ends, which must be within 30 seconds.
    pub async fn until_end(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        let read = async {
            while let Some(e) = self.next().await {
                out.push(e.json);
            }
        };
        tokio::time::timeout(Duration::from_secs(30), read)
            .await
            .expect("the stream ended in time");
        out
    }
}

/// A tiny deterministic generator: the same seed gives the same schedule or inputs.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Opens a WebSocket by hand on `stream` (the token in the query) and reads the 101's head,
/// leaving every frame after it unread.
pub async fn raw_ws_handshake(server: &Server, player: &str, stream: &mut TcpStream) {
    use tokio::io::AsyncWriteExt;
    let request = format!(
        "GET /api/ws?token={} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        server.token(player),
        server.addr
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let head = read_head(stream).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
}

/// A raw WebSocket with a tiny receive buffer, so that the kernel holds little on the
/// client's behalf once it stops reading.
pub async fn tiny_buffer_ws(server: &Server, player: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(server.addr).await.unwrap();
    raw_ws_handshake(server, player, &mut stream).await;
    stream
}

/// A response head, read a byte at a time so that nothing after it is consumed.
pub async fn read_head(stream: &mut TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        within(stream.read_exact(&mut byte)).await.unwrap();
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}
