//! An SSE stream served straight on its socket, once `http1_head` has read its request head.
//!
//! The stream's response is written here, chunk by chunk, with nothing kept between events but
//! the body's own state: not hyper's HTTP/1 connection, its buffers and dispatcher, which were
//! most of an idle stream's memory (BENCHMARKS.md, "Idle memory per connection").

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response, StatusCode, Version, header};
use bytes::{BufMut, BytesMut};
use futures_util::{FutureExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tower::ServiceExt;

use crate::http::Front;
use crate::http::sse::{self, SlowReaderWatch};
use crate::http1_head::{HEAD_READ, put_head, write_whole};
use crate::shared_socket::{Framing, SharedSocket};

/// The stream's response: without the router where `front` allows it, else routed.
async fn respond(
    front: Front,
    request: Request<Body>,
    peer: SocketAddr,
    watch: SlowReaderWatch,
) -> Response<Body> {
    let mut request = match &front.direct {
        Some(app) => match sse::on_socket(app, peer, request, watch.clone()).await {
            Ok(response) => return response,
            Err(request) => request,
        },
        None => request,
    };
    request.extensions_mut().insert(ConnectInfo(peer));
    request.extensions_mut().insert(watch);
    let Ok(response) = front.router.clone().oneshot(request).await;
    response
}

/// Answers an SSE request on `io`: the router decides, then the stream is written here until
/// it ends, the client goes away, or its writes stall past `stall_grace`. With `socket`,
/// publishers write events to an idle stream themselves.
pub async fn serve<I>(
    mut io: I,
    socket: Option<Arc<SharedSocket>>,
    request: Box<Request<Body>>,
    front: Front,
    peer: SocketAddr,
    stall_grace: Duration,
) where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let watch = SlowReaderWatch::default();
    let http10 = request.version() == Version::HTTP_10;
    // Only what the stream needs stays in scope past this block: the task keeps everything in
    // scope at an await for as long as the stream lives. The router's future is boxed for the
    // same reason: it is over a kilobyte, and done long before the stream.
    let opened = {
        let response = Box::pin(respond(front, *request, peer, watch.clone())).await;
        open_stream(response, http10)
    };
    let (mut out, mut body) = match opened {
        Ok(opened) => opened,
        Err(whole) => {
            // Boxed: an error response is rare, and its state would size every stream's task.
            let _ = Box::pin(write_whole(&mut io, whole)).await;
            return;
        }
    };
    // The stream's connection: the router named it while opening the stream.
    let conn = watch.conn();
    // Publishers may write directly once the opening is on the wire; the hub stops them when
    // the stream's delivery ends, before the last chunk.
    let framing = if http10 {
        Framing::SseRaw
    } else {
        Framing::SseChunked
    };
    let mut attach = socket.map(|socket| socket.direct(framing));
    // The opening chunk (`retry:` and `connected`) is ready at once: it leaves with the head.
    let mut first = body.next().now_or_never();
    // Anything the client sends now is read and dropped, so its hang-up is seen at once.
    let mut probe = [0u8; 64];
    loop {
        let next = match first.take() {
            Some(next) => next,
            None => {
                if !write_all(&mut io, &mut out, &watch, stall_grace).await {
                    return;
                }
                if let Some(conn) = &conn {
                    conn.outbox.written();
                    if let Some(direct) = attach.take() {
                        conn.outbox.attach(direct);
                        // Publishers write most events from now on: the opening chunk's buffer
                        // is given back rather than kept for the stream's idle life.
                        out = BytesMut::new();
                    }
                }
                tokio::select! {
                    next = body.next() => next,
                    read = io.read(&mut probe) => match read {
                        Ok(0) | Err(_) => return,
                        Ok(_) => continue,
                    },
                }
            }
        };
        match next {
            Some(Ok(data)) => put_chunk(&mut out, &data, !http10),
            // The stream ended (the hub closed it, or the server is stopping): end it cleanly.
            Some(Err(_)) | None => break,
        }
    }
    if !http10 {
        out.put_slice(b"0\r\n\r\n");
    }
    if write_all(&mut io, &mut out, &watch, stall_grace).await {
        let _ = io.shutdown().await;
    }
}

/// The response head, ready to write, and the stream's body; or the whole response when it is
/// not a stream (an error), which is written and ends the connection.
#[allow(clippy::result_large_err)]
fn open_stream(
    response: Response<Body>,
    http10: bool,
) -> Result<(BytesMut, axum::body::BodyDataStream), Response<Body>> {
    let is_stream = response.status() == StatusCode::OK
        && response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !is_stream {
        return Err(response);
    }
    let (parts, body) = response.into_parts();
    let mut out = BytesMut::new();
    put_head(&mut out, parts.status, &parts.headers, !http10, None);
    Ok((out, body.into_data_stream()))
}

/// Writes `out` and clears it; false when the socket failed or the watch gave up first.
///
/// The watch (overflow, or a write stalled past `stall_grace`) matters only while a write
/// waits for the socket, and it arms a timer: so it is made only for a write that did not
/// finish at once. Kept for the stream's life instead, every idle stream would hold a timer
/// and wake on it every few seconds (issue 10). Idle, an overflow still ends the stream, through
/// the body.
async fn write_all<I>(
    io: &mut I,
    out: &mut BytesMut,
    watch: &SlowReaderWatch,
    stall_grace: Duration,
) -> bool
where
    I: AsyncWrite + Unpin,
{
    // Flushed even with nothing to write: a publisher's event the socket took only in part
    // is finished by the flush.
    let write = async {
        io.write_all(out).await?;
        io.flush().await
    };
    tokio::pin!(write);
    let written = match (&mut write).now_or_never() {
        Some(done) => done.is_ok(),
        // Boxed: the watch's state would otherwise be part of the stream's task, idle or not.
        None => {
            Box::pin(async {
                tokio::select! {
                    done = write => done.is_ok(),
                    () = watch.gave_up(stall_grace) => false,
                }
            })
            .await
        }
    };
    out.clear();
    if out.capacity() > HEAD_READ {
        // A burst's buffer is not kept for an idle stream.
        *out = BytesMut::new();
    }
    written
}

fn put_chunk(out: &mut BytesMut, data: &[u8], chunked: bool) {
    if data.is_empty() {
        // An empty chunk would end a chunked body.
        return;
    }
    if chunked {
        out.put_slice(chunk_size_line(data.len(), &mut [0; CHUNK_SIZE_LINE]));
        out.put_slice(data);
        out.put_slice(b"\r\n");
    } else {
        out.put_slice(data);
    }
}

/// Room for a chunk's size line: 16 hex digits and CRLF.
pub(crate) const CHUNK_SIZE_LINE: usize = 18;

/// A chunk's size line, `{len:x}\r\n`, without a formatted string.
pub(crate) fn chunk_size_line(mut len: usize, buf: &mut [u8; CHUNK_SIZE_LINE]) -> &[u8] {
    buf[16] = b'\r';
    buf[17] = b'\n';
    let mut at = 16;
    loop {
        at -= 1;
        buf[at] = b"0123456789abcdef"[len & 0xf];
        len >>= 4;
        if len == 0 {
            break;
        }
    }
    &buf[at..]
}

#[cfg(test)]
mod tests {
    use tokio::io::duplex;

    use super::*;

    /// A write the socket takes at once returns at once; one that waits past the grace gives
    /// up through the stall watch (SPEC §9).
    #[tokio::test(start_paused = true)]
    async fn a_write_that_waits_past_the_grace_gives_up_and_one_the_socket_takes_does_not_wait() {
        use crate::hub::{ConnKind, Hub, HubConfig, Join, PlayerId};
        let hub = Hub::new(HubConfig::default());
        let player: PlayerId = "reader".into();
        let conn = hub
            .connect(Join {
                player: &player,
                kind: ConnKind::Sse,
                session_id: None,
                cursor: None,
            })
            .await
            .unwrap();
        let watch = SlowReaderWatch::default();
        watch.watch(conn.clone());
        let grace = Duration::from_secs(20);
        let (mut server, mut client) = duplex(16);

        let start = tokio::time::Instant::now();
        let mut out = BytesMut::from(&b"fits"[..]);
        conn.write_began();
        assert!(write_all(&mut server, &mut out, &watch, grace).await);
        assert!(out.is_empty());
        assert_eq!(start.elapsed(), Duration::ZERO);
        conn.touch();
        let mut got = [0u8; 4];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"fits");

        let mut out = BytesMut::from(&[b'x'; 64][..]);
        conn.write_began();
        assert!(
            !write_all(&mut server, &mut out, &watch, grace).await,
            "given up"
        );
        let waited = start.elapsed();
        assert!(
            waited >= grace && waited <= grace + grace / 4,
            "gave up after {waited:?}"
        );
    }

    #[test]
    fn chunk_sizes_are_lowercase_hex() {
        for (n, hex) in [
            (1, "1"),
            (15, "f"),
            (255, "ff"),
            (4096, "1000"),
            (0x1a2b3c, "1a2b3c"),
        ] {
            let mut out = BytesMut::new();
            put_chunk(&mut out, &vec![b'x'; n], true);
            let expected = format!("{hex}\r\n{}\r\n", "x".repeat(n));
            assert!(out == expected.as_bytes(), "{n}");
        }
        let mut out = BytesMut::new();
        put_chunk(&mut out, b"", true);
        assert!(out.is_empty(), "an empty chunk would end the body");
    }
}
