//! The SSE transport: `retry:`, then `id:`/`data:` per stream event and `data:` alone for
//! connection-local ones, no `event:` line (SPEC §4).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{ConnectInfo, Extension, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::AppState;
use super::access::Query;
use super::admit::{PathPlayer, admit, join};
use super::error::ApiError;
use crate::delivery::{Delivery, Next};
use crate::hub::{Conn, ConnKind, Frame};

/// `GET /sse/{player_id}`.
pub async fn by_path(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    path: Result<Path<String>, PathRejection>,
    watch: Option<Extension<SlowReaderWatch>>,
    request: Request,
) -> Response {
    let path = path.ok();
    let player = PathPlayer::Path(path.as_ref().map(|p| p.0.as_str()));
    open(&app, peer, request.headers(), request.uri(), player, watch)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// `GET /api/events/{player_id}`: the path an older game's client uses. Deprecated, and the
/// same as `/sse/{player_id}`: the path must name the token's player.
pub async fn deprecated(
    app: State<AppState>,
    peer: ConnectInfo<SocketAddr>,
    path: Result<Path<String>, PathRejection>,
    watch: Option<Extension<SlowReaderWatch>>,
    request: Request,
) -> Response {
    let mut response = by_path(app, peer, path, watch, request).await;
    super::deprecate(&mut response, "</api/events>; rel=\"successor-version\"");
    response
}

/// `GET /api/events`: the player comes from the token.
pub async fn by_token(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    watch: Option<Extension<SlowReaderWatch>>,
    request: Request,
) -> Response {
    open(
        &app,
        peer,
        request.headers(),
        request.uri(),
        PathPlayer::FromToken,
        watch,
    )
    .await
    .unwrap_or_else(IntoResponse::into_response)
}

/// `GET /api/events`, and `GET /sse/{player_id}` with a valid player id as written, as the
/// first request of a connection whose head `http1_head` read, answered without the router as
/// `ws::preferred_on_socket` is: what `by_token` and `by_path` answer, counted and logged as
/// the router's refusal layer would. Any other path is handed back for the router.
pub async fn on_socket(
    app: &AppState,
    peer: SocketAddr,
    request: Request,
    watch: SlowReaderWatch,
) -> Result<Response, Request> {
    let path = request.uri().path();
    let by_token = path == "/api/events";
    // A valid player id has no character that decodes, so it is what the router's `Path` would
    // give; anything else (escapes, a further `/`, nothing) is the router's to decide.
    let plain_id = path
        .strip_prefix("/sse/")
        .filter(|id| crate::auth::valid_player_id(id));
    let (route, player) = match (by_token, plain_id) {
        (true, _) => ("/api/events", PathPlayer::FromToken),
        (false, Some(id)) => ("/sse/{player_id}", PathPlayer::Path(Some(id))),
        (false, None) => return Err(request),
    };
    let response = open(
        app,
        peer,
        request.headers(),
        request.uri(),
        player,
        Some(Extension(watch)),
    )
    .await
    .unwrap_or_else(IntoResponse::into_response);
    super::refusals::note(app, route, plain_id, &response);
    Ok(response)
}

async fn open(
    app: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    uri: &Uri,
    path: PathPlayer<'_>,
    watch: Option<Extension<SlowReaderWatch>>,
) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    let query = Query::parse(uri.query());
    let admitted = admit(app, peer, headers, &query, path, ConnKind::Sse).await?;
    let delivery = join(app, &admitted, ConnKind::Sse).await?;
    crate::greeting::greet(&app.hub, &admitted.player, &admitted.greeting).await;
    if let Some(Extension(watch)) = watch {
        watch.watch(delivery.conn().clone());
    }
    let retry = Bytes::from(format!("retry: {}\n\n", app.config.sse_retry.as_millis()));
    let state = Stream {
        app: app.clone(),
        delivery,
        opening: Some((retry, arrived)),
    };
    let body = futures_util::stream::unfold(state, Stream::next_chunk);
    let mut response = Response::new(Body::from_stream(body));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// The body's state: hyper asks for the next chunk only once the last one was written, which
/// is what the SSE health model calls a completed write.
struct Stream {
    /// For the establishment histogram when the first chunk goes out.
    app: AppState,
    delivery: Delivery,
    /// The `retry:` line and the request's arrival, until the first chunk goes out.
    opening: Option<(Bytes, Instant)>,
}

impl Stream {
    async fn next_chunk(mut self) -> Option<(Result<Bytes, Infallible>, Stream)> {
        self.delivery.conn().touch();
        let frames = loop {
            match self.delivery.next().await {
                Next::Frames(frames) => break frames,
                Next::Close(_) => return None,
                // SSE asks for none: its heartbeat events keep it alive.
                Next::KeepAlive => {}
            }
        };
        let mut chunk = BytesMut::new();
        let opening = self.opening.take();
        let first = opening.is_some();
        if let Some((retry, arrived)) = opening {
            chunk.put_slice(&retry);
            encode(&frames, &mut chunk);
            let took = arrived.elapsed();
            self.delivery
                .hub()
                .counters
                .establishment(ConnKind::Sse)
                .record(took);
            self.app.metrics.record_establishment(ConnKind::Sse, took);
        } else {
            encode(&frames, &mut chunk);
        }
        // Counted as written once handed to hyper; a failed write drops this body and
        // the hub counts what was still queued.
        self.delivery.finished(frames, true);
        if first {
            // Once the opening is written, publishers write most events to the socket
            // themselves (`sse_socket`): the batch buffer is not worth keeping.
            self.delivery.release_batch();
        }
        self.delivery.conn().write_began();
        Some((Ok(chunk.freeze()), self))
    }
}

/// Lets the HTTP connection under an SSE stream drop itself when the stream's outbox
/// overflows or its writes stall. hyper stops polling a body whose socket is full, so the body itself can never
/// notice; without this, a client that stops reading would hold its socket forever.
#[derive(Clone, Default)]
pub struct SlowReaderWatch(Arc<WatchInner>);

#[derive(Default)]
struct WatchInner {
    /// The SSE connection currently served over this HTTP connection.
    conn: Mutex<Option<Arc<Conn>>>,
    changed: Notify,
}

impl SlowReaderWatch {
    pub(crate) fn watch(&self, conn: Arc<Conn>) {
        *self.0.conn.lock() = Some(conn);
        self.0.changed.notify_one();
    }

    /// The stream's connection, once the router opened one.
    pub fn conn(&self) -> Option<Arc<Conn>> {
        self.0.conn.lock().clone()
    }

    /// Resolves when the watched stream overflowed, or its write has been stuck for `grace`.
    pub async fn gave_up(&self, grace: Duration) {
        loop {
            let changed = self.0.changed.notified();
            let conn = self.0.conn.lock().clone();
            match conn {
                Some(conn) => tokio::select! {
                    _ = conn.outbox.overflowed() => return,
                    _ = stuck(&conn, grace) => return,
                    _ = changed => {}
                },
                None => changed.await,
            }
        }
    }
}

/// Resolves once a write to this stream has waited longer than `grace` (SPEC §9: unhealthy
/// connections are closed after a grace period).
async fn stuck(conn: &Conn, grace: Duration) {
    let mut every = tokio::time::interval(grace / 4);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if conn.stalled_for(Instant::now()) >= grace {
            return;
        }
    }
}

/// Frames a batch into one chunk, so a burst leaves in one write.
pub fn encode(frames: &[Frame], out: &mut BytesMut) {
    out.reserve(frames.iter().map(|f| f.json.len() + 32).sum());
    for frame in frames {
        if let Some(seq) = frame.seq {
            out.put_slice(b"id: ");
            out.put_slice(itoa::Buffer::new().format(seq).as_bytes());
            out.put_u8(b'\n');
        }
        // Compact JSON has no newline; anything else is split into `data:` lines, which the
        // SSE parser joins back with `\n`.
        for line in frame.json.split(|&b| b == b'\n') {
            out.put_slice(b"data: ");
            out.put_slice(line);
            out.put_u8(b'\n');
        }
        out.put_u8(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_follow_the_spec() {
        let frames = [
            Frame {
                seq: None,
                json: Bytes::from_static(br#"{"event_type":"connected"}"#),
            },
            Frame {
                seq: Some(42),
                json: Bytes::from_static(b"{\"a\":\n1}"),
            },
        ];
        let mut out = BytesMut::new();
        encode(&frames, &mut out);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "data: {\"event_type\":\"connected\"}\n\nid: 42\ndata: {\"a\":\ndata: 1}\n\n"
        );
    }
}
