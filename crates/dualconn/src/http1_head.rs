//! The first request head on a plain HTTP/1.1 connection, read here to choose who serves it,
//! and the response heads written without hyper.
//!
//! hyper's HTTP/1 connection keeps its read and write buffers, and its dispatcher, for as long
//! as a response body streams, which for SSE is the connection's whole life: they were most of
//! an idle stream's memory (BENCHMARKS.md, "Idle memory per connection"). A WebSocket upgrade
//! through hyper costs a second parse of the head, hyper's buffers and its hand-off of the
//! socket, a share of every connection's set-up (BENCHMARKS.md, "Where WebSocket set-up
//! goes"). So the first head is read here. An SSE `GET` and a WebSocket upgrade go through the
//! same router as ever; `sse_socket` and `ws_socket` write their responses. Every other
//! request is handed to hyper with the bytes read so far put back in front of the socket, so
//! REST, keep-alive, pipelining and every malformed request keep hyper's handling.

// Sizes here come from the network: arithmetic on them is checked (SPEC §12.26).
#![deny(clippy::arithmetic_side_effects)]

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version, header,
};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Read per system call while the head arrives; a browser's request is well under this.
pub(crate) const HEAD_READ: usize = 1024;

/// An error response is collected before it is written; ours are a few hundred bytes.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// What the first request on a connection turned out to be.
pub enum First {
    /// An SSE `GET` without a body: its stream is written by `sse_socket`.
    Sse(Box<Request<Body>>),
    /// A WebSocket upgrade over HTTP/1.1 with nothing after its head: `ws_socket` answers
    /// it and hands the socket to the WebSocket.
    WebSocket(Box<Request<Body>>),
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
        read.reserve(HEAD_READ.min(max_bytes.saturating_sub(read.len())));
        if io.read_buf(&mut read).await? == 0 {
            return Ok(First::Other(read.freeze()));
        }
        let mut headers = vec![httparse::EMPTY_HEADER; max_headers];
        let mut head = httparse::Request::new(&mut headers);
        match head.parse(&read) {
            Ok(httparse::Status::Partial) => continue,
            Ok(httparse::Status::Complete(len)) => {
                return Ok(match own_request(&head, len == read.len()) {
                    Some(own) => own,
                    None => First::Other(read.freeze()),
                });
            }
            Err(_) => return Ok(First::Other(read.freeze())),
        }
    }
}

/// The head as a request for the router, if it is an SSE stream's or a WebSocket's `GET` and
/// nothing follows it.
fn own_request(head: &httparse::Request<'_, '_>, nothing_follows: bool) -> Option<First> {
    let path = head.path?;
    if head.method != Some("GET") || !nothing_follows {
        return None;
    }
    let version = match head.version? {
        0 => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let own: fn(Box<Request<Body>>) -> First = if is_sse_path(path) {
        First::Sse
    } else if is_ws_path(path) && version == Version::HTTP_11 {
        First::WebSocket
    } else {
        return None;
    };
    // Built in place: `Request::builder` moves the whole request through every `header` call,
    // about half of this function's time in a WebSocket's set-up (BENCHMARKS.md, "Set-up: user
    // space and the kernel").
    let mut fields = HeaderMap::with_capacity(head.headers.len());
    for h in head.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            // A GET with a body: rare enough to leave to hyper.
            return None;
        }
        fields.append(name, HeaderValue::from_bytes(h.value).ok()?);
    }
    let mut request = Request::new(Body::empty());
    *request.method_mut() = Method::GET;
    *request.uri_mut() = path.parse().ok()?;
    *request.version_mut() = version;
    *request.headers_mut() = fields;
    Some(own(Box::new(request)))
}

fn is_sse_path(path: &str) -> bool {
    path.starts_with("/sse/")
        || path == "/api/events"
        || path.starts_with("/api/events?")
        || path.starts_with("/api/events/")
}

fn is_ws_path(path: &str) -> bool {
    path == "/api/ws"
        || path.starts_with("/api/ws?")
        || path.starts_with("/api/ws/")
        || path.starts_with("/ws/")
}

/// A complete response (an error, or anything that is not a stream), then the connection ends.
pub async fn write_whole<I>(io: &mut I, response: Response<Body>) -> io::Result<()>
where
    I: AsyncWrite + Unpin,
{
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, MAX_ERROR_BODY)
        .await
        .map_err(io::Error::other)?;
    let mut out = BytesMut::with_capacity(body.len().saturating_add(512));
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

/// A response head. The connection ends after a whole response, is chunked or raw for a
/// stream, and is the upgrade's after a 101.
pub fn put_head(
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
    put_date(out, SystemTime::now());
    for (name, value) in headers {
        let upgrade = name == header::CONNECTION && status == StatusCode::SWITCHING_PROTOCOLS;
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || (name == header::CONNECTION && !upgrade)
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

/// `date: ...\r\n`. The text changes once a second, so each thread formats it once a second
/// (as hyper does) instead of once per response.
fn put_date(out: &mut BytesMut, now: SystemTime) {
    thread_local! {
        // No second is `u64::MAX`, so the first call formats.
        static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let second = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    DATE.with_borrow_mut(|(at, text)| {
        if *at != second {
            *text = httpdate::fmt_http_date(now);
            *at = second;
        }
        out.put_slice(b"date: ");
        out.put_slice(text.as_bytes());
        out.put_slice(b"\r\n");
    });
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
            First::Sse(request) | First::WebSocket(request) => panic!("served here: {request:?}"),
        }
    }

    fn websocket(first: First) -> Box<Request<Body>> {
        match first {
            First::WebSocket(request) => request,
            First::Sse(request) => panic!("taken as SSE: {request:?}"),
            First::Other(bytes) => panic!("left to hyper: {bytes:?}"),
        }
    }

    #[tokio::test]
    async fn an_sse_get_is_served_here_with_its_path_query_and_headers() {
        let (mut client, mut server) = duplex(1024);
        let reader = tokio::spawn(async move { first_request(&mut server, 16 * 1024, 64).await });
        // The head arrives in pieces, as it may over a network.
        for piece in [
            &b"GET /sse/al"[..],
            b"ice?token=t HTTP/1.1\r\nHost: x\r\n",
            b"Accept: text/event-stream\r\nX-Twice: 1\r\nx-twice: 2\r\n\r\n",
        ] {
            client.write_all(piece).await.unwrap();
            tokio::task::yield_now().await;
        }
        let First::Sse(request) = reader.await.unwrap().unwrap() else {
            panic!("not served here");
        };
        assert_eq!(request.method(), Method::GET);
        assert_eq!(request.uri(), "/sse/alice?token=t");
        assert_eq!(request.version(), Version::HTTP_11);
        assert_eq!(request.headers()["accept"], "text/event-stream");
        assert_eq!(request.headers()["host"], "x");
        // A header given twice keeps both values, in order, as hyper would give them.
        let twice: Vec<_> = request.headers().get_all("x-twice").iter().collect();
        assert_eq!(twice, ["1", "2"]);
    }

    #[test]
    fn a_head_is_dated_with_the_second_it_was_written_in() {
        let date = |now: SystemTime| {
            let mut out = BytesMut::new();
            put_date(&mut out, now);
            let text = String::from_utf8(out.to_vec()).unwrap();
            let text = text
                .strip_prefix("date: ")
                .unwrap()
                .strip_suffix("\r\n")
                .unwrap();
            httpdate::parse_http_date(text).unwrap()
        };
        let second = |s: u64| UNIX_EPOCH + std::time::Duration::from_secs(s);
        let at = second(1_764_547_200);
        assert_eq!(date(at), at);
        // Kept within its second, formatted again in the next, and back again.
        assert_eq!(date(at + std::time::Duration::from_millis(900)), at);
        assert_eq!(date(second(1_764_547_201)), second(1_764_547_201));
        assert_eq!(date(at), at);
        let mut head = BytesMut::new();
        put_head(&mut head, StatusCode::OK, &HeaderMap::new(), false, None);
        assert!(head.starts_with(b"HTTP/1.1 200 OK\r\ndate: "), "{head:?}");
    }

    #[test]
    fn a_head_writes_framing_headers_only_its_own_way() {
        let mut given = HeaderMap::new();
        given.insert(header::CONTENT_LENGTH, HeaderValue::from_static("999"));
        given.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("gzip"));
        given.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        given.insert(header::DATE, HeaderValue::from_static("yesterday"));
        given.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let head = |given: &HeaderMap, status, chunked, length| {
            let mut out = BytesMut::new();
            put_head(&mut out, status, given, chunked, length);
            String::from_utf8(out.to_vec()).unwrap()
        };
        let whole = head(&given, StatusCode::BAD_REQUEST, false, Some(12));
        let lines: Vec<&str> = whole.split("\r\n").collect();
        let named = |name: &str| lines.iter().filter(|l| l.starts_with(name)).count();
        // The body's own length and `close` replace whatever the response carried.
        assert_eq!(named("content-length: "), 1, "{whole}");
        assert!(whole.contains("content-length: 12\r\n"), "{whole}");
        assert_eq!(named("transfer-encoding: "), 0, "{whole}");
        assert_eq!(named("connection: "), 1, "{whole}");
        assert!(whole.contains("connection: close\r\n"), "{whole}");
        assert_eq!(named("date: "), 1, "{whole}");
        assert!(!whole.contains("yesterday"), "{whole}");
        assert!(
            whole.contains("content-type: application/json\r\n"),
            "{whole}"
        );
        let stream = head(&given, StatusCode::OK, true, None);
        assert!(
            stream.contains("transfer-encoding: chunked\r\n"),
            "{stream}"
        );
        assert!(
            !stream.contains("gzip") && !stream.contains("999"),
            "{stream}"
        );
        // A 101 keeps its `connection: upgrade`.
        given.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        let switched = head(&given, StatusCode::SWITCHING_PROTOCOLS, false, None);
        assert!(switched.contains("connection: upgrade\r\n"), "{switched}");
    }

    #[tokio::test]
    async fn an_sse_get_is_served_here_on_each_of_its_paths() {
        for path in [
            "/sse/alice",
            "/api/events",
            "/api/events?token=t",
            "/api/events/alice",
        ] {
            let head = format!("GET {path} HTTP/1.1\r\nAccept: text/event-stream\r\n\r\n");
            match first_of(&[head.as_bytes()]).await {
                First::Sse(request) => assert_eq!(request.uri(), path),
                First::WebSocket(_) => panic!("{path} taken as a WebSocket"),
                First::Other(_) => panic!("{path} left to hyper"),
            }
        }
    }

    #[tokio::test]
    async fn a_websocket_get_is_served_here_on_each_of_its_paths() {
        for path in [
            "/api/ws",
            "/api/ws?token=t",
            "/api/ws/alice",
            "/ws/alice?token=t",
        ] {
            let head =
                format!("GET {path} HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
            let request = websocket(first_of(&[head.as_bytes()]).await);
            assert_eq!(request.uri(), path);
            assert_eq!(request.headers()["upgrade"], "websocket");
        }
        // Whether it is a valid handshake is the handler's to say, with an error it explains.
        let plain = websocket(first_of(&[b"GET /api/ws HTTP/1.1\r\n\r\n"]).await);
        assert!(plain.headers().is_empty());
    }

    #[tokio::test]
    async fn every_other_request_goes_to_hyper_with_every_byte_read() {
        let cases: [&[u8]; 10] = [
            b"POST /api/publish HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
            // A WebSocket over HTTP/1.0, or with bytes after its head.
            b"GET /api/ws HTTP/1.0\r\nUpgrade: websocket\r\n\r\n",
            b"GET /api/ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n\x81\x80",
            // Paths that only start like a WebSocket's.
            b"GET /api/wsx HTTP/1.1\r\n\r\n",
            b"GET /wsx/a HTTP/1.1\r\n\r\n",
            // Bytes after the head (a pipelined request) are hyper's to answer.
            b"GET /sse/a HTTP/1.1\r\n\r\nGET /health/live HTTP/1.1\r\n\r\n",
            // A GET with a body.
            b"GET /api/events HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            // Malformed, cut short, or a header hyper must refuse: hyper answers them as before.
            b"\x16\x03\x01 not http\r\n\r\n",
            b"GET /sse/a HTTP/1.1\r\nHost",
            b"GET /sse/a HTTP/1.1\r\nX: \x7f\r\n\r\n",
        ];
        for bytes in cases {
            assert_eq!(
                other(first_of(&[bytes]).await),
                bytes,
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
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

    #[tokio::test]
    async fn a_whole_response_is_written_with_its_length_then_the_write_side_closes() {
        let (mut client, mut server) = duplex(64 * 1024);
        // Larger than any error of ours, within the bound.
        let body = vec![b'x'; 20 * 1024];
        let response = Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .body(Body::from(body.clone()))
            .unwrap();
        write_whole(&mut server, response).await.unwrap();
        let mut all = Vec::new();
        client.read_to_end(&mut all).await.unwrap();
        let text = String::from_utf8(all).unwrap();
        let (head, rest) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(head.contains("\r\ncontent-length: 20480\r\n"), "{head}");
        assert_eq!(rest.as_bytes(), body);
    }

    #[tokio::test]
    async fn hyper_writes_through_to_the_socket_and_closes_it() {
        let (mut client, server) = duplex(1024);
        // Whether hyper may write vectored is the socket's answer.
        assert!(server.is_write_vectored());
        /// A writer that takes one buffer at a time.
        struct Plain;
        impl AsyncWrite for Plain {
            fn poll_write(
                self: Pin<&mut Self>,
                _: &mut Context<'_>,
                data: &[u8],
            ) -> Poll<io::Result<usize>> {
                Poll::Ready(Ok(data.len()))
            }
            fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }
            fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }
        }
        assert!(!Prefixed::new(Bytes::new(), Plain).is_write_vectored());
        let mut io = Prefixed::new(Bytes::from_static(b"unread"), server);
        assert!(io.is_write_vectored());
        io.write_all(b"one ").await.unwrap();
        let parts = [io::IoSlice::new(b"two "), io::IoSlice::new(b"three")];
        let written = io.write_vectored(&parts).await.unwrap();
        assert!(written > 0);
        io.write_all(&b"two three"[written..]).await.unwrap();
        io.flush().await.unwrap();
        io.shutdown().await.unwrap();
        let mut all = Vec::new();
        // The end arrives while `io` is still alive: the shutdown reached the socket.
        client.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"one two three");
        drop(io);
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
