//! A plain TCP socket under an SSE stream, shared by the stream's task and the publishers.
//!
//! The task reads and writes it as any socket. A publisher that finds the stream idle (nothing
//! queued, no write in flight: the outbox decides) frames its event and writes it with one
//! non-blocking call, without waking the task (`hub::outbox`). Both go through `&TcpStream`,
//! whose readiness tokio tracks for either caller; the socket stays open until the last
//! handle is gone, so a publisher never writes to a descriptor number that was reused.

use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::net::Shutdown;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::hub::{DirectSocket, Frame, Sent};
use crate::sse_socket::{CHUNK_SIZE_LINE, chunk_size_line};

/// The socket and how its stream frames an event.
pub struct SseSocket {
    tcp: TcpStream,
    /// HTTP/1.1 streams are chunked; an HTTP/1.0 stream is the raw body until the close.
    chunked: bool,
}

/// The task's handle: the socket as `AsyncRead`/`AsyncWrite`, through `&TcpStream`.
pub struct SharedTcp(Arc<SseSocket>);

impl SharedTcp {
    pub fn new(tcp: TcpStream, chunked: bool) -> SharedTcp {
        SharedTcp(Arc::new(SseSocket { tcp, chunked }))
    }

    /// The handle publishers write through, for `Outbox::attach`.
    pub fn direct(&self) -> Arc<dyn DirectSocket> {
        self.0.clone()
    }
}

thread_local! {
    /// Where a direct write frames its event: one buffer per thread, not per connection.
    static SCRATCH: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// A larger scratch than this, left by a big event, is given back.
const SCRATCH_KEPT: usize = 64 * 1024;

impl DirectSocket for SseSocket {
    fn try_send(&self, frame: &Frame) -> Sent {
        SCRATCH.with_borrow_mut(|body| {
            body.clear();
            crate::http::sse::encode(std::slice::from_ref(frame), body);
            let mut size = [0u8; CHUNK_SIZE_LINE];
            let (head, tail): (&[u8], &[u8]) = if self.chunked {
                (chunk_size_line(body.len(), &mut size), b"\r\n")
            } else {
                (b"", b"")
            };
            let parts = [head, &body[..], tail];
            // One system call for the chunk's three parts, without copying them together.
            let slices = parts.map(IoSlice::new);
            let sent = match self.tcp.try_write_vectored(&slices) {
                Ok(n) if n == parts.iter().map(|p| p.len()).sum::<usize>() => Sent::All,
                Ok(n) => Sent::Part(rest_after(&parts, n)),
                // Full, or failed: the task meets the same error on its next write and ends.
                Err(_) => Sent::Nothing,
            };
            if body.capacity() > SCRATCH_KEPT {
                *body = BytesMut::new();
            }
            sent
        })
    }
}

/// The bytes of `parts`, one after another, from `written` on.
fn rest_after(parts: &[&[u8]], mut written: usize) -> Bytes {
    let mut rest = BytesMut::new();
    for part in parts {
        let skip = written.min(part.len());
        written -= skip;
        rest.extend_from_slice(&part[skip..]);
    }
    rest.freeze()
}

impl AsyncRead for SharedTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.tcp.poll_read_ready(cx))?;
            // The stream only reads into small buffers that are initialized already, so this
            // fills nothing.
            match self.0.tcp.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // `try_read` cleared the readiness: poll it again to register for the next.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for SharedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.tcp.poll_write_ready(cx))?;
            match self.0.tcp.try_write(data) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                done => return Poll::Ready(done),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The end of the stream, sent now: a publisher's handle may keep the socket open a
        // little longer.
        Poll::Ready(socket2::SockRef::from(&self.0.tcp).shutdown(Shutdown::Write))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rest_of_a_part_written_frame_is_what_follows_the_written_bytes() {
        let parts: [&[u8]; 3] = [b"5\r\n", b"hello", b"\r\n"];
        assert_eq!(rest_after(&parts, 0), &b"5\r\nhello\r\n"[..]);
        assert_eq!(rest_after(&parts, 2), &b"\nhello\r\n"[..]);
        assert_eq!(rest_after(&parts, 3), &b"hello\r\n"[..]);
        assert_eq!(rest_after(&parts, 9), &b"\n"[..]);
        assert_eq!(rest_after(&parts, 10), &b""[..]);
    }
}
