//! The WebSocket transport: one event per text frame, protocol pings, inbound messages.
//!
//! [`serve`] is generic over `Sink`/`Stream` so that tests can drive it with channels and the
//! WebSocket library could be swapped without touching it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{ConnectInfo, Extension, Path, Request, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use futures_util::task::{ArcWake, AtomicWaker, waker_ref};
use futures_util::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tungstenite::{Message, Utf8Bytes};

use super::AppState;
use super::access::Query;
use super::admit::{PathPlayer, admit, join};
use super::error::ApiError;
use super::upgrade::{NotAHandshake, RawUpgrade, Upgrade};
use crate::commands::{Command, CommandError, Runner};
use crate::delivery::{Delivery, Next};
use crate::hub::{CloseReason, ConnKind, DirectSocket, Frame, Sent};
use crate::shared_socket::{Framing, SharedSocket};
use crate::wire::{self, InboundKind, local};

/// `GET /api/ws`: the player comes from the token.
pub async fn preferred(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    socket: Option<Extension<Arc<SharedSocket>>>,
    ws: Result<Upgrade, NotAHandshake>,
    request: Request,
) -> Response {
    let socket = socket.map(|Extension(s)| s);
    open(
        &app,
        peer,
        socket,
        request.headers(),
        request.uri(),
        PathPlayer::FromToken,
        ws,
    )
    .await
    .unwrap_or_else(IntoResponse::into_response)
}

/// The route `preferred` serves.
pub const PREFERRED: &str = "/api/ws";

/// `GET /api/ws` as the first request of a connection whose head `http1_head` read, answered
/// without the router: what `preferred` answers, counted and logged as the router's refusal
/// layer would. The router's other layers have nothing to do here, as such a request has no
/// body, and `Front::direct` is absent where CORS would add headers. The router's layers and
/// extractors were about a fifth of a WebSocket set-up's instructions (BENCHMARKS.md, "A
/// stream without the router, and a timer due sooner").
pub async fn preferred_on_socket(
    app: &AppState,
    peer: SocketAddr,
    socket: Option<Arc<SharedSocket>>,
    request: Request,
    raw: RawUpgrade,
) -> Response {
    let ws = Upgrade::on_socket(&request, raw);
    let response = open(
        app,
        peer,
        socket,
        request.headers(),
        request.uri(),
        PathPlayer::FromToken,
        ws,
    )
    .await
    .unwrap_or_else(IntoResponse::into_response);
    super::refusals::note(app, PREFERRED, None, &response);
    response
}

/// `GET /api/ws/{player_id}` and `/ws/{player_id}`: deprecated, same behaviour, and the path
/// must name the token's player.
pub async fn deprecated(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    socket: Option<Extension<Arc<SharedSocket>>>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    ws: Result<Upgrade, NotAHandshake>,
    request: Request,
) -> Response {
    let path = path.ok();
    let player = PathPlayer::Path(path.as_ref().map(|p| p.0.as_str()));
    let socket = socket.map(|Extension(s)| s);
    let mut response = open(
        &app,
        peer,
        socket,
        request.headers(),
        request.uri(),
        player,
        ws,
    )
    .await
    .unwrap_or_else(IntoResponse::into_response);
    super::deprecate(&mut response, "</api/ws>; rel=\"successor-version\"");
    response
}

async fn open(
    app: &AppState,
    peer: SocketAddr,
    socket: Option<Arc<SharedSocket>>,
    headers: &HeaderMap,
    uri: &Uri,
    path: PathPlayer<'_>,
    ws: Result<Upgrade, NotAHandshake>,
) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    let query = Query::parse(uri.query());
    let admitted = admit(app, peer, headers, &query, path, ConnKind::WebSocket).await?;
    let ws = ws.map_err(NotAHandshake::into_api_error)?;
    let delivery = join(app, &admitted, ConnKind::WebSocket).await?;
    crate::greeting::greet(&app.hub, &admitted.player, &admitted.greeting).await;
    let state = app.clone();
    Ok(ws.accept(&app.tracker, move |upgraded| {
        let took = arrived.elapsed();
        state
            .hub
            .counters
            .establishment(ConnKind::WebSocket)
            .record(took);
        state
            .metrics
            .record_establishment(ConnKind::WebSocket, took);
        let direct = socket.map(|s| s.direct(Framing::WsText));
        let options = Options {
            ping_interval: state.config.ping_interval,
            write_timeout: WRITE_TIMEOUT,
        };
        // The read buffer is allocated, and zero-filled, at this size per connection, and kept
        // for its life (BENCHMARKS.md, issue 10). Commands are small; a larger message is read
        // in more pieces into a buffer reserved for it.
        let config = WebSocketConfig::default()
            .read_buffer_size(WS_READ_BUFFER)
            .write_buffer_size(0)
            .max_message_size(Some(state.config.max_message_bytes))
            .max_frame_size(Some(state.config.max_message_bytes));
        // Ready at once: it only wraps the socket, as no handshake is left to do.
        let Some(socket) =
            WebSocketStream::from_raw_socket(upgraded, Role::Server, Some(config)).now_or_never()
        else {
            return;
        };
        // Split here, not inside `serve`: a future keeps room for its arguments, and the
        // WebSocket (hundreds of bytes, moved into the split halves' shared state) would be
        // paid for twice by every idle connection.
        let (sink, stream) = socket.split();
        let serving = serve(
            sink,
            stream,
            delivery,
            options,
            state.commands.clone(),
            direct,
        );
        // A task of its own: the task that answered the upgrade (hyper's connection, or the
        // one that read the head itself) would keep its own state beside `serve`'s for the
        // connection's whole life (BENCHMARKS.md, issue 10).
        state.tracker.spawn(serving);
    }))
}

/// Bytes read from a WebSocket per system call, and the idle read buffer. A command frame
/// (a JSON object of a few dozen bytes, masked, with its header) fits in one read.
const WS_READ_BUFFER: usize = 256;

/// How long one batch may take to reach the socket before the peer is given up on.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy)]
pub struct Options {
    pub ping_interval: Duration,
    pub write_timeout: Duration,
}

/// Runs one WebSocket until it ends. Every exit path drops `delivery`, which leaves the hub.
/// With `direct`, publishers write events to the socket themselves while it is idle, from the
/// moment the opening batch is written, and this task writes its batches the same way while
/// the socket takes them.
pub async fn serve<Si, St>(
    mut sink: Si,
    stream: St,
    mut delivery: Delivery,
    options: Options,
    runner: Runner,
    direct: Option<Arc<dyn DirectSocket>>,
) where
    Si: Sink<Message, Error = tungstenite::Error> + Unpin,
    St: Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    let mut stream = WokenReader::new(stream);
    let mut commands = InFlight::new(runner);
    let mut to_attach = direct.clone();
    let period = options.ping_interval;
    delivery.keep_alive(period);
    loop {
        tokio::select! {
            next = delivery.next() => match next {
                Next::Frames(frames) => {
                    // Boxed, as every branch that waits on the socket: the future of a task
                    // that holds it inline is that much larger for the connection's idle life.
                    let outcome = Box::pin(write_batch(&delivery, &mut sink, direct.as_deref(), &frames, options.write_timeout)).await;
                    delivery.finished(frames, outcome);
                    if !outcome {
                        if let Some(reason) = delivery.conn().outbox.closing() {
                            Box::pin(close(&delivery, &mut sink, reason.ws_close(), options.write_timeout)).await;
                        }
                        return;
                    }
                    delivery.conn().outbox.written();
                    if let Some(direct) = to_attach.take() {
                        delivery.attach(direct);
                    }
                }
                Next::Close(reason) => {
                    Box::pin(close(&delivery, &mut sink, reason.ws_close(), options.write_timeout)).await;
                    return;
                }
                Next::KeepAlive => {
                    let conn = delivery.conn();
                    if conn.idle_for(Instant::now()) >= period * 3 {
                        conn.outbox.close(None, CloseReason::Unresponsive);
                    } else if Box::pin(tokio::time::timeout(options.write_timeout, sink.send(Message::Ping(Default::default())))).await.map_or(true, |r| r.is_err()) {
                        return;
                    }
                }
            },
            inbound = stream.next() => match inbound {
                Some(Ok(Message::Text(text))) => {
                    delivery.conn().touch();
                    on_text(&delivery, &mut commands, &text);
                }
                Some(Ok(Message::Binary(_))) => {
                    delivery.conn().touch();
                    send_error(&delivery, "validation_error", "binary frames are not accepted; send JSON text");
                }
                // A raw frame is never read, only written.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => delivery.conn().touch(),
                Some(Ok(Message::Close(_))) => {
                    // Finish the closing handshake: the library queued the echo of the peer's
                    // close frame, and it only leaves on a flush. Nothing may follow it.
                    delivery.conn().outbox.detach();
                    let _ = Box::pin(tokio::time::timeout(Duration::from_secs(1), sink.close())).await;
                    return;
                }
                None => return,
                Some(Err(e)) => {
                    if let Some(code) = close_code_for(e) {
                        Box::pin(close(&delivery, &mut sink, code, options.write_timeout)).await;
                    }
                    return;
                }
            },
            done = commands.finished(), if commands.busy() => {
                if let Err(e) = done {
                    send_error(&delivery, e.error_type, &e.message);
                }
            }
        }
    }
}

/// Writes one batch and flushes, even when it is empty: a publisher's frame the socket took
/// only in part is finished by the flush. False when the socket did not take it in time, or
/// the outbox overflowed meanwhile (then there is no point waiting: SPEC §6).
///
/// With `direct`, the frames the socket takes at once are written as a publisher writes them:
/// framed here, one system call each, and never copied into the library's write buffer, which
/// would otherwise keep the opening batch's size for the connection's life (issue 10). The
/// rest go through the library, behind the end of any frame the socket took only in part.
async fn write_batch<S>(
    delivery: &Delivery,
    sink: &mut S,
    direct: Option<&dyn DirectSocket>,
    frames: &[Frame],
    patience: Duration,
) -> bool
where
    S: Sink<Message, Error = tungstenite::Error> + Unpin,
{
    let mut frames = frames;
    if let Some(direct) = direct {
        while let Some((frame, more)) = frames.split_first() {
            match direct.try_send(frame) {
                Sent::All => frames = more,
                Sent::Part => {
                    frames = more;
                    break;
                }
                Sent::Nothing => break,
            }
        }
    }
    let write = async {
        for frame in frames {
            let text = Utf8Bytes::try_from(frame.json.clone())
                .unwrap_or_else(|_| Utf8Bytes::from_static("{}"));
            sink.feed(Message::Text(text)).await?;
        }
        sink.flush().await
    };
    tokio::select! {
        r = tokio::time::timeout(patience, write) => matches!(r, Ok(Ok(()))),
        _ = delivery.conn().outbox.overflowed() => false,
    }
}

/// Polls the socket's read side only once it has woken. The writer's wake-ups re-run the
/// whole `select!`, and without this every batch delivered would also poll the reader, which
/// zero-fills its read buffer each time (15 % of server instructions in a fan-out profile,
/// BENCHMARKS.md).
struct WokenReader<S> {
    inner: S,
    flag: Arc<WakeFlag>,
}

struct WakeFlag {
    /// Set when the reader's I/O woke it, or when it may hold more buffered frames.
    woken: AtomicBool,
    /// The connection task, to wake when the reader's I/O is ready.
    task: AtomicWaker,
}

impl ArcWake for WakeFlag {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.woken.store(true, Ordering::Release);
        arc_self.task.wake();
    }
}

impl<S> WokenReader<S> {
    fn new(inner: S) -> WokenReader<S> {
        WokenReader {
            inner,
            flag: Arc::new(WakeFlag {
                woken: AtomicBool::new(true),
                task: AtomicWaker::new(),
            }),
        }
    }
}

impl<S: Stream + Unpin> Stream for WokenReader<S> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let this = self.get_mut();
        this.flag.task.register(cx.waker());
        if !this.flag.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let waker = waker_ref(&this.flag);
        let polled = Pin::new(&mut this.inner).poll_next(&mut Context::from_waker(&waker));
        if polled.is_ready() {
            // The library may hold more whole frames than the one it returned.
            this.flag.woken.store(true, Ordering::Release);
        }
        polled
    }
}

async fn close<S>(
    delivery: &Delivery,
    sink: &mut S,
    (code, reason): (u16, &'static str),
    patience: Duration,
) where
    S: Sink<Message, Error = tungstenite::Error> + Unpin,
{
    // The close frame is the last frame: no publisher writes after it.
    delivery.conn().outbox.detach();
    let frame = Message::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: Utf8Bytes::from_static(reason),
    }));
    // A slow consumer's socket may still be full; give the close frame as long as a write.
    let _ = tokio::time::timeout(patience, sink.send(frame)).await;
}

/// The close a broken inbound stream deserves, when the peer can still be told: 1009 for a
/// message over the limit, 1007 for text that is not UTF-8, 1002 for a protocol violation.
fn close_code_for(error: tungstenite::Error) -> Option<(u16, &'static str)> {
    match error {
        tungstenite::Error::Capacity(_) => Some((1009, "message too big")),
        tungstenite::Error::Utf8(_) => Some((1007, "text is not UTF-8")),
        tungstenite::Error::Protocol(_) => Some((1002, "protocol error")),
        _ => None,
    }
}

fn on_text(delivery: &Delivery, commands: &mut InFlight, text: &str) {
    let inbound = match wire::parse_inbound(text) {
        Ok(inbound) => inbound,
        Err(e) => return send_error(delivery, "validation_error", &e.to_string()),
    };
    let conn = delivery.conn();
    if inbound.kind == InboundKind::Ping {
        return delivery
            .hub()
            .send_local(conn, local::PONG, &wire::Empty {});
    }
    if let Err(wait) = commands.runner.admit(&conn.player) {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        return delivery.hub().send_local(
            conn,
            local::ERROR,
            &wire::ErrorData {
                error_type: "rate_limit_error",
                message: "too many commands; slow down",
                details: serde_json::json!({"retry_after_seconds": secs}),
            },
        );
    }
    let command = Command::new(
        conn.player.clone(),
        Some(crate::hub::SessionId::from(conn.session())),
        Some(conn.id.to_string()),
        inbound.kind,
        inbound.data,
    );
    if !commands.submit(command) {
        send_error(
            delivery,
            "rate_limit_error",
            "too many commands waiting; slow down",
        );
    }
}

/// Most commands one socket may have waiting behind the one running.
const MAX_QUEUED_COMMANDS: usize = 32;

/// This socket's commands, run one at a time in arrival order while the socket keeps writing.
struct InFlight {
    runner: Runner,
    running: Option<BoxFuture<'static, Result<(), CommandError>>>,
    queue: VecDeque<Command>,
}

impl InFlight {
    fn new(runner: Runner) -> InFlight {
        InFlight {
            runner,
            running: None,
            queue: VecDeque::new(),
        }
    }

    fn busy(&self) -> bool {
        self.running.is_some()
    }

    /// False when too many are waiting.
    fn submit(&mut self, command: Command) -> bool {
        if self.running.is_none() {
            self.running = Some(Box::pin(self.runner.clone().run(command)));
        } else if self.queue.len() < MAX_QUEUED_COMMANDS {
            self.queue.push_back(command);
        } else {
            return false;
        }
        true
    }

    /// Waits for the running command, then starts the next. Cancel-safe: the running future
    /// stays in `self` if this is dropped.
    async fn finished(&mut self) -> Result<(), CommandError> {
        let result = match &mut self.running {
            Some(running) => running.await,
            None => std::future::pending().await,
        };
        self.running = self
            .queue
            .pop_front()
            .map(|c| Box::pin(self.runner.clone().run(c)) as BoxFuture<'static, _>);
        result
    }
}

fn send_error(delivery: &Delivery, error_type: &str, message: &str) {
    delivery.hub().send_local(
        delivery.conn(),
        local::ERROR,
        &wire::ErrorData {
            error_type,
            message,
            details: serde_json::json!({}),
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::demo::DemoWorld;
    use crate::config::Rate;
    use crate::hub::{Hub, HubConfig, Join, PlayerId};
    use std::time::SystemTime;

    /// A socket that never moves: only the size of the task over it matters here.
    struct Still;

    impl Stream for Still {
        type Item = Result<Message, tungstenite::Error>;
        fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            Poll::Pending
        }
    }

    impl Sink<Message> for Still {
        type Error = tungstenite::Error;
        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Pending
        }
        fn start_send(self: Pin<&mut Self>, _: Message) -> Result<(), Self::Error> {
            Ok(())
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Pending
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Pending
        }
    }

    /// What every idle WebSocket's task holds (issue 10): its halves, the delivery, the
    /// commands and the select over them. Waits on the socket (a batch, a ping, a close) are
    /// boxed, and the WebSocket itself is split before the task starts; any of them inline
    /// would pass this.
    #[tokio::test]
    async fn a_websocket_task_keeps_only_what_an_idle_connection_needs() {
        let hub = Arc::new(Hub::new(HubConfig::default()));
        let player: PlayerId = "p".into();
        let conn = hub
            .connect(Join {
                player: &player,
                kind: ConnKind::WebSocket,
                session_id: None,
                cursor: None,
            })
            .await
            .unwrap();
        let delivery = Delivery::new(hub.clone(), conn, SystemTime::now());
        let runner = Runner::new(
            Arc::new(DemoWorld::new()),
            hub,
            Rate {
                per_second: 1,
                burst: 1,
            },
        );
        let options = Options {
            ping_interval: Duration::from_secs(1),
            write_timeout: Duration::from_secs(1),
        };
        let task = serve(Still, Still, delivery, options, runner, None);
        let size = std::mem::size_of_val(&task);
        assert!(size <= 928, "a WebSocket's task is {size} bytes");
    }
}
