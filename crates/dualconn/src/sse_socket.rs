//! An SSE stream served straight on its socket, once its request head has been read here.
//!
//! hyper's HTTP/1 connection keeps its read and write buffers, and its dispatcher, for as long
//! as a response body streams, which for SSE is the connection's whole life: they were most of
//! an idle stream's memory (BENCHMARKS.md, "Idle memory per connection"). So the first request
//! head on a plain connection is read here. An SSE `GET` goes through the same router as ever,
//! and its response is written by this module, chunk by chunk, with nothing kept between
//! events but the body's own state. Every other request is handed to hyper with the bytes read
//! so far put back in front of the socket, so REST, WebSocket upgrades, keep-alive and every
//! malformed request keep hyper's handling.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version, header};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::{FutureExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tower::ServiceExt;

use crate::http::sse::SlowReaderWatch;
use crate::shared_socket::{Framing, SharedSocket};

/// Read per system call while the head arrives; a browser's SSE request is well under this.
const HEAD_READ: usize = 1024;

/// An error response is collected before it is written; ours are a few hundred bytes.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// What the first request on a connection turned out to be.
pub enum First {
    /// An SSE `GET` without a body: served here.
    Sse(Box<Request<Body>>),
    /// Anything else, or a head this module does not parse: hyper answers it, starting from
    /// these bytes.
    Other(Bytes),
}

/// Reads until the first request head is complete, the connection ends, or `max_bytes` have
/// arrived. Never fails on what the client sent: whatever this does not take is hyper's.
pub async fn first_request<I>(io: &mut I, max_bytes: usize, max_headers: usize) -> io::Result<First>
where
    I: AsyncRead + Unpin,
{
    let mut read = BytesMut::new();
    loop {
        if read.len() >= max_bytes {
            return Ok(First::Other(read.freeze()));
        }
        read.reserve(HEAD_READ.min(max_bytes - read.len()));
        if io.read_buf(&mut read).await? == 0 {
            return Ok(First::Other(read.freeze()));
        }
        let mut headers = vec![httparse::EMPTY_HEADER; max_headers];
        let mut head = httparse::Request::new(&mut headers);
        match head.parse(&read) {
            Ok(httparse::Status::Partial) => continue,
            Ok(httparse::Status::Complete(len)) => {
                return Ok(match sse_request(&head, len == read.len()) {
                    Some(request) => First::Sse(Box::new(request)),
                    None => First::Other(read.freeze()),
                });
            }
            Err(_) => return Ok(First::Other(read.freeze())),
        }
    }
}

/// The head as a request for the router, if it is an SSE `GET` and nothing follows it.
fn sse_request(head: &httparse::Request<'_, '_>, nothing_follows: bool) -> Option<Request<Body>> {
    let path = head.path?;
    let sse_path = path.starts_with("/sse/")
        || path == "/api/events"
        || path.starts_with("/api/events?")
        || path.starts_with("/api/events/");
    if head.method != Some("GET") || !sse_path || !nothing_follows {
        return None;
    }
    let version = match head.version? {
        0 => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut request = Request::builder()
        .method(Method::GET)
        .uri(path)
        .version(version);
    for h in head.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            // A GET with a body: rare enough to leave to hyper.
            return None;
        }
        request = request.header(name, HeaderValue::from_bytes(h.value).ok()?);
    }
    request.body(Body::empty()).ok()
}

/// Answers an SSE request on `io`: the router decides, then the stream is written here until
/// it ends, the client goes away, or its writes stall past `stall_grace`. With `socket`,
/// publishers write events to an idle stream themselves.
pub async fn serve<I>(
    mut io: I,
    socket: Option<Arc<SharedSocket>>,
    mut request: Box<Request<Body>>,
    router: Router,
    peer: SocketAddr,
    stall_grace: Duration,
) where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let watch = SlowReaderWatch::default();
    request.extensions_mut().insert(ConnectInfo(peer));
    request.extensions_mut().insert(watch.clone());
    let http10 = request.version() == Version::HTTP_10;
    // Only what the stream needs stays in scope past this block: the task keeps everything in
    // scope at an await for as long as the stream lives. The router's future is boxed for the
    // same reason: it is over a kilobyte, and done long before the stream.
    let opened = {
        let Ok(response) = Box::pin(router.oneshot(*request)).await;
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

/// A complete response (an error, or anything that is not a stream), then the connection ends.
async fn write_whole<I>(io: &mut I, response: Response<Body>) -> io::Result<()>
where
    I: AsyncWrite + Unpin,
{
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, MAX_ERROR_BODY)
        .await
        .map_err(io::Error::other)?;
    let mut out = BytesMut::with_capacity(512 + body.len());
    put_head(
        &mut out,
        parts.status,
        &parts.headers,
        false,
        Some(body.len()),
    );
    out.put_slice(&body);
    io.write_all(&out).await?;
    io.shutdown().await
}

fn put_head(
    out: &mut BytesMut,
    status: StatusCode,
    headers: &axum::http::HeaderMap,
    chunked: bool,
    length: Option<usize>,
) {
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(status.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.put_slice(b"\r\n");
    // RFC 9110 §6.6.1: an origin server with a clock dates its responses, as hyper does.
    out.put_slice(b"date: ");
    out.put_slice(httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes());
    out.put_slice(b"\r\n");
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::CONNECTION
            || name == header::DATE
        {
            continue;
        }
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    if chunked {
        out.put_slice(b"transfer-encoding: chunked\r\n");
    }
    if let Some(length) = length {
        out.put_slice(b"content-length: ");
        out.put_slice(itoa::Buffer::new().format(length).as_bytes());
        out.put_slice(b"\r\nconnection: close\r\n");
    }
    out.put_slice(b"\r\n");
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

/// The socket with the bytes already read put back in front, for hyper.
pub struct Prefixed<I> {
    /// Read before it was known who serves the connection; emptied (and freed) as hyper reads.
    prefix: Bytes,
    io: I,
}

impl<I> Prefixed<I> {
    pub fn new(prefix: Bytes, io: I) -> Prefixed<I> {
        Prefixed { prefix, io }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Prefixed<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            if self.prefix.is_empty() {
                self.prefix = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Prefixed<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::duplex;

    use super::*;

    async fn first_of(pieces: &[&[u8]]) -> First {
        let (mut client, mut server) = duplex(64 * 1024);
        for piece in pieces {
            client.write_all(piece).await.unwrap();
        }
        drop(client);
        first_request(&mut server, 16 * 1024, 64).await.unwrap()
    }

    fn other(first: First) -> Bytes {
        match first {
            First::Other(bytes) => bytes,
            First::Sse(request) => panic!("served here: {request:?}"),
        }
    }

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

    #[tokio::test]
    async fn an_sse_get_is_served_here_with_its_path_query_and_headers() {
        let (mut client, mut server) = duplex(1024);
        let reader = tokio::spawn(async move { first_request(&mut server, 16 * 1024, 64).await });
        // The head arrives in pieces, as it may over a network.
        for piece in [
            &b"GET /sse/al"[..],
            b"ice?token=t HTTP/1.1\r\nHost: x\r\n",
            b"Accept: text/event-stream\r\n\r\n",
        ] {
            client.write_all(piece).await.unwrap();
            tokio::task::yield_now().await;
        }
        let First::Sse(request) = reader.await.unwrap().unwrap() else {
            panic!("not served here");
        };
        assert_eq!(request.uri(), "/sse/alice?token=t");
        assert_eq!(request.version(), Version::HTTP_11);
        assert_eq!(request.headers()["accept"], "text/event-stream");
        assert_eq!(request.headers()["host"], "x");
    }

    #[tokio::test]
    async fn every_other_request_goes_to_hyper_with_every_byte_read() {
        let post = b"POST /api/publish HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(other(first_of(&[post]).await), &post[..]);

        let ws = b"GET /api/ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n";
        assert_eq!(other(first_of(&[ws]).await), &ws[..]);

        // Bytes after the head (a pipelined request) are hyper's to answer.
        let pipelined = b"GET /sse/a HTTP/1.1\r\n\r\nGET /health/live HTTP/1.1\r\n\r\n";
        assert_eq!(other(first_of(&[pipelined]).await), &pipelined[..]);

        // A GET with a body.
        let with_body = b"GET /api/events HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(other(first_of(&[with_body]).await), &with_body[..]);

        // Malformed, cut short, or a header hyper must refuse: hyper answers them as before.
        let garbage = b"\x16\x03\x01 not http\r\n\r\n";
        assert_eq!(other(first_of(&[garbage]).await), &garbage[..]);
        let cut = b"GET /sse/a HTTP/1.1\r\nHost";
        assert_eq!(other(first_of(&[cut]).await), &cut[..]);
        let bad_value = b"GET /sse/a HTTP/1.1\r\nX: \x7f\r\n\r\n";
        assert_eq!(other(first_of(&[bad_value]).await), &bad_value[..]);
    }

    #[tokio::test]
    async fn a_head_past_the_bound_stops_being_read() {
        let (mut client, mut server) = duplex(64 * 1024);
        let mut long = b"GET /sse/a HTTP/1.1\r\nX: ".to_vec();
        long.resize(40 * 1024, b'a');
        client.write_all(&long).await.unwrap();
        let read = other(first_request(&mut server, 16 * 1024, 64).await.unwrap());
        assert!(
            read.len() >= 16 * 1024 && read.len() < 16 * 1024 + HEAD_READ,
            "{}",
            read.len()
        );
        assert!(long.starts_with(&read));
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

    #[tokio::test]
    async fn hyper_reads_the_prefix_then_the_socket() {
        let (mut client, server) = duplex(1024);
        let mut io = Prefixed::new(Bytes::from_static(b"read "), server);
        client.write_all(b"later").await.unwrap();
        drop(client);
        let mut all = Vec::new();
        io.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"read later");
        assert_eq!(io.prefix.len(), 0);
    }
}
