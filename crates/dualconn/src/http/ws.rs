//! The WebSocket transport: one event per text frame, protocol pings, inbound messages.
//!
//! [`serve`] is generic over `Sink`/`Stream` so that tests can drive it with channels and the
//! WebSocket library could be swapped without touching it.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::time::{Instant, MissedTickBehavior};

use super::AppState;
use super::access::Query;
use super::admit::{PathPlayer, admit, join};
use super::error::ApiError;
use crate::delivery::{Delivery, Next};
use crate::hub::{CloseReason, ConnKind};
use crate::wire::{self, InboundKind, local};

/// When the deprecated paths were deprecated (RFC 9745 `@<unix time>`): 2025-01-01.
const DEPRECATED_AT: &str = "@1735689600";

/// `GET /api/ws`: the player comes from the token.
pub async fn preferred(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    open(&app, peer, &headers, &uri, PathPlayer::FromToken, ws)
        .unwrap_or_else(IntoResponse::into_response)
}

/// `GET /api/ws/{player_id}` and `/ws/{player_id}`: deprecated, same behaviour, and the path
/// must name the token's player.
pub async fn deprecated(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
    uri: Uri,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let path = path.ok();
    let player = PathPlayer::Path(path.as_ref().map(|p| p.0.as_str()));
    let mut response =
        open(&app, peer, &headers, &uri, player, ws).unwrap_or_else(IntoResponse::into_response);
    let h = response.headers_mut();
    h.insert("deprecation", HeaderValue::from_static(DEPRECATED_AT));
    h.insert(
        "link",
        HeaderValue::from_static("</api/ws>; rel=\"successor-version\""),
    );
    response
}

fn open(
    app: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    uri: &Uri,
    path: PathPlayer<'_>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    let query = Query::parse(uri.query());
    let admitted = admit(app, peer, headers, &query, path, ConnKind::WebSocket)?;
    let ws =
        ws.map_err(|e| ApiError::validation(format!("not a valid WebSocket handshake: {e}")))?;
    let delivery = join(app, &admitted, ConnKind::WebSocket)?;
    let options = Options {
        ping_interval: app.config.ping_interval,
        write_timeout: WRITE_TIMEOUT,
    };
    let tracker = app.tracker.clone();
    let hub = app.hub.clone();
    Ok(ws
        .protocols(["bearer"])
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(app.config.max_message_bytes)
        .max_frame_size(app.config.max_message_bytes)
        .on_failed_upgrade(|e| tracing::debug!(error = %e, "websocket upgrade failed"))
        .on_upgrade(move |socket| {
            hub.counters
                .establishment(ConnKind::WebSocket)
                .record(arrived.elapsed());
            tracker.track_future(serve(socket, delivery, options))
        }))
}

/// How long one batch may take to reach the socket before the peer is given up on.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy)]
pub struct Options {
    pub ping_interval: Duration,
    pub write_timeout: Duration,
}

/// Runs one WebSocket until it ends. Every exit path drops `delivery`, which leaves the hub.
pub async fn serve<S>(socket: S, mut delivery: Delivery, options: Options)
where
    S: Sink<Message, Error = axum::Error> + Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let (mut sink, mut stream) = socket.split();
    let period = options.ping_interval;
    let mut ping = tokio::time::interval_at(Instant::now() + period, period);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            next = delivery.next() => match next {
                Next::Frames(frames) => {
                    let write = async {
                        for frame in &frames {
                            let text = Utf8Bytes::try_from(frame.json.clone())
                                .unwrap_or_else(|_| Utf8Bytes::from_static("{}"));
                            sink.feed(Message::Text(text)).await?;
                        }
                        sink.flush().await
                    };
                    let written = matches!(tokio::time::timeout(options.write_timeout, write).await, Ok(Ok(())));
                    delivery.finished(frames, written);
                    if !written {
                        return;
                    }
                }
                Next::Close(reason) => {
                    close(&mut sink, reason.ws_close()).await;
                    return;
                }
            },
            inbound = stream.next() => match inbound {
                Some(Ok(Message::Text(text))) => {
                    delivery.conn().touch();
                    on_text(&delivery, &text);
                }
                Some(Ok(Message::Binary(_))) => {
                    delivery.conn().touch();
                    send_error(&delivery, "validation_error", "binary frames are not accepted; send JSON text");
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => delivery.conn().touch(),
                Some(Ok(Message::Close(_))) | None => return,
                Some(Err(e)) => {
                    if is_too_big(e) {
                        close(&mut sink, (1009, "message too big")).await;
                    }
                    return;
                }
            },
            _ = ping.tick() => {
                let conn = delivery.conn();
                if conn.idle_for(Instant::now()) >= period * 3 {
                    conn.outbox.close(None, CloseReason::Unresponsive);
                } else if tokio::time::timeout(options.write_timeout, sink.send(Message::Ping(Default::default()))).await.map_or(true, |r| r.is_err()) {
                    return;
                }
            }
        }
    }
}

async fn close<S>(sink: &mut S, (code, reason): (u16, &'static str))
where
    S: Sink<Message, Error = axum::Error> + Unpin,
{
    let frame = Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }));
    // A peer that does not take the close frame in a second is not waited for.
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(frame)).await;
}

fn is_too_big(error: axum::Error) -> bool {
    matches!(
        error.into_inner().downcast_ref::<tungstenite::Error>(),
        Some(tungstenite::Error::Capacity(_))
    )
}

fn on_text(delivery: &Delivery, text: &str) {
    match wire::parse_inbound(text) {
        Ok(inbound) if inbound.kind == InboundKind::Ping => {
            delivery
                .hub()
                .send_local(delivery.conn(), local::PONG, &wire::Empty {});
        }
        Ok(_) => send_error(
            delivery,
            "validation_error",
            "commands are not handled by this server yet",
        ),
        Err(e) => send_error(delivery, "validation_error", &e.to_string()),
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
