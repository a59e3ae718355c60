//! HTTP/2 connections (negotiated by ALPN over TLS): their limits, and a slow-reader watch per
//! stream instead of per connection.
//!
//! Over HTTP/1.1 an SSE stream owns its TCP connection, so the connection is dropped when the
//! stream's reader falls behind. Over HTTP/2 many streams share one connection, so only the
//! stalled stream may go. hyper runs each stream's response in a task handed to our executor;
//! the executor races that task against the stream's own [`SlowReaderWatch`], and dropping the
//! task makes h2 reset that one stream (`RST_STREAM`), leaving its neighbours untouched.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::http::sse::SlowReaderWatch;

/// Streams one connection may have open at once. RFC 9113 advises at least 100; a browser page
/// rarely needs more than a dozen, and each stream may hold an outbox and a send buffer.
pub const MAX_CONCURRENT_STREAMS: u32 = 100;
/// Largest decoded header list a request may carry (as the 16 KiB head bound over HTTP/1.1).
pub const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;
/// Streams a client may open and reset before we even answer them. Past it the connection is
/// closed with `ENHANCE_YOUR_CALM` (the "rapid reset" flood, CVE-2023-44487).
pub const MAX_PENDING_RESETS: usize = 20;
/// Streams our side may reset for a client's protocol errors before the connection is closed
/// (the "MadeYouReset" flood).
pub const MAX_LOCAL_ERROR_RESETS: usize = 128;
/// Response bytes h2 buffers per stream beyond what the client's window lets out; past it the
/// stream's body is not polled, its outbox fills, and the stream is closed as a slow consumer.
const MAX_SEND_BUF_BYTES: usize = 256 * 1024;

tokio::task_local! {
    /// The watch of the stream whose response task is running; read once by the service.
    static STREAM_WATCH: SlowReaderWatch;
}

/// Serves one HTTP/2 connection until it ends, or drains it gracefully (GOAWAY) on shutdown.
pub async fn serve<I>(
    io: I,
    peer: SocketAddr,
    router: Router,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    stall_grace: Duration,
) where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        host_from_authority(&mut req);
        let router = router.clone();
        async move {
            // This runs inside the stream's task, where the executor set its watch.
            if let Ok(watch) = STREAM_WATCH.try_with(SlowReaderWatch::clone) {
                req.extensions_mut().insert(watch);
            }
            Ok::<_, Infallible>(router.oneshot(req).await.unwrap_or_else(|e| match e {}))
        }
    });
    let mut builder = hyper::server::conn::http2::Builder::new(StreamExecutor {
        tracker,
        stall_grace,
    });
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(MAX_HEADER_LIST_BYTES)
        .max_pending_accept_reset_streams(MAX_PENDING_RESETS)
        .max_local_error_reset_streams(MAX_LOCAL_ERROR_RESETS)
        .max_send_buf_size(MAX_SEND_BUF_BYTES);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::trace!(error = %e, "http/2 connection ended with an error");
            }
        }
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// HTTP/2 carries the host in `:authority`, which hyper puts in the URI; the same-origin and
/// loopback checks read `Host`, as HTTP/1.1 sends it, so it is filled in from there.
fn host_from_authority<B>(req: &mut hyper::Request<B>) {
    if req.headers().contains_key(http::header::HOST) {
        return;
    }
    let host = req
        .uri()
        .authority()
        .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok());
    if let Some(host) = host {
        req.headers_mut().insert(http::header::HOST, host);
    }
}

/// Runs each stream's response on the server's tracker, with a slow-reader watch of its own.
#[derive(Clone)]
struct StreamExecutor {
    /// Shutdown waits for these tasks like for connections.
    tracker: TaskTracker,
    /// How long a stuck SSE write may last before its stream is reset.
    stall_grace: Duration,
}

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, fut: F) {
        let watch = SlowReaderWatch::default();
        let grace = self.stall_grace;
        self.tracker.spawn(async move {
            tokio::select! {
                _ = STREAM_WATCH.scope(watch.clone(), fut) => {}
                // Dropping the response task resets this stream alone.
                _ = watch.gave_up(grace) => {}
            }
        });
    }
}
