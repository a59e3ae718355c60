//! A plain TCP connection's socket, shared by the connection's task and the publishers.
//!
//! The task reads and writes it as any socket (hyper, the WebSocket library and the SSE writer
//! all sit on it). A publisher that finds a stream idle (nothing queued, no write in flight:
//! the outbox decides) frames its event and writes it with one non-blocking call, without
//! waking the task (`hub::outbox`). Frames never interleave on the wire: whoever begins a frame
//! finishes it before anyone else writes. A publisher's frame that the socket took only in
//! part keeps its end here, and the task writes that end before any byte of its own, or the
//! next frame written directly carries it in front, in the same system call. A task
//! that has begun writing (a batch, a ping, a pong the WebSocket library owes) holds the
//! socket until it flushes. The socket stays open until the last handle is gone, so a
//! publisher never writes to a descriptor number that was reused.

use std::cell::RefCell;
use std::io;
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};

use bytes::{Buf, Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::hub::{DirectSocket, Frame, Sent};
use crate::send_ring::SendBatch;
use crate::sse_socket::{CHUNK_SIZE_LINE, chunk_size_line};

/// Room for what goes before an event: the longer of a chunk's size line (18 bytes) and a
/// WebSocket frame's header (10).
const HEAD_ROOM: usize = CHUNK_SIZE_LINE;

/// The socket, and whose turn it is to write.
pub struct SharedSocket {
    tcp: TcpStream,
    turn: Mutex<Turn>,
}

#[derive(Default)]
struct Turn {
    /// The task has written bytes and not flushed yet: one of its frames may be cut midway.
    task_writing: bool,
    /// How publishers frame events: set once the stream knows its transport. Kept here rather
    /// than in a handle of its own, which would be one more allocation per connection.
    framing: Option<Framing>,
    /// The unwritten end of a frame a publisher began, or what must lead every frame (`lead`).
    rest: Option<Bytes>,
    /// A broadcast's send to this socket is in a [`SendBatch`] not yet made: nobody else
    /// writes until it ends (`end_batched`).
    in_batch: bool,
    /// The task, if it tried to write meanwhile: woken when the batched send ends.
    waiting: Option<Waker>,
}

/// How a stream frames one event on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// An HTTP/1.1 SSE body: each event in a chunk of its own.
    SseChunked,
    /// An HTTP/1.0 SSE body, delimited by the connection's end.
    SseRaw,
    /// One WebSocket text frame, unmasked as a server sends it.
    WsText,
}

/// The task's handle: the socket as `AsyncRead`/`AsyncWrite`.
pub struct SharedTcp(Arc<SharedSocket>);

impl SharedTcp {
    pub fn new(tcp: TcpStream) -> SharedTcp {
        SharedTcp(Arc::new(SharedSocket {
            tcp,
            turn: Mutex::default(),
        }))
    }

    pub fn socket(&self) -> Arc<SharedSocket> {
        self.0.clone()
    }
}

impl SharedSocket {
    /// The handle publishers write events through, for `Outbox::attach`.
    pub fn direct(self: &Arc<Self>, framing: Framing) -> Arc<dyn DirectSocket> {
        self.turn.lock().framing = Some(framing);
        self.clone()
    }

    /// Bytes that go before anything else written on the socket: the 101 of an upgrade
    /// answered without hyper, which then leaves with the opening frames in one system call
    /// rather than in one of its own (issue 10, set-up).
    pub fn lead(&self, bytes: Bytes) {
        let mut turn = self.turn.lock();
        turn.rest = Some(match turn.rest.take() {
            None => bytes,
            Some(before) => [before, bytes].concat().into(),
        });
    }

    /// Writes what is left of a publisher's frame; Pending until all of it is in the socket.
    fn finish_rest(&self, turn: &mut Turn, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(rest) = &mut turn.rest {
            ready!(self.tcp.poll_write_ready(cx))?;
            match self.tcp.try_write(rest) {
                Ok(n) => {
                    rest.advance(n);
                    if rest.is_empty() {
                        turn.rest = None;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }
}

thread_local! {
    /// Where a direct write frames its event: one buffer per thread, not per connection.
    static SCRATCH: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// A larger scratch than this, left by a big event, is given back.
const SCRATCH_KEPT: usize = 64 * 1024;

impl DirectSocket for SharedSocket {
    fn try_send(&self, frame: &Frame) -> Sent {
        let mut turn = self.turn.lock();
        let Some(framing) = turn.framing else {
            return Sent::Nothing;
        };
        if turn.task_writing || turn.in_batch {
            return Sent::Nothing;
        }
        SCRATCH.with_borrow_mut(|out| {
            // Whatever must go first leaves in the same system call as the frame. The parts
            // are copied together: a few hundred bytes copied cost less than `writev`'s
            // extra file-layer work per call (BENCHMARKS.md, "One send per direct write").
            out.clear();
            frame_after_lead(&turn, framing, frame, out);
            // Straight to the descriptor, past tokio's readiness flag: reading that flag is a
            // cache miss per delivery, and a full socket answers `WouldBlock` just the same.
            // The task's own writes still go through tokio, which learns of a full socket
            // from its own attempt, so no readiness event is missed.
            let sent = after_send(&mut turn, out, socket2::SockRef::from(&self.tcp).send(out));
            if out.capacity() > SCRATCH_KEPT {
                *out = BytesMut::new();
            }
            sent
        })
    }

    fn begin_batched(&self, frame: &Frame, batch: &mut SendBatch) -> Option<usize> {
        let mut turn = self.turn.lock();
        let framing = turn.framing?;
        if turn.task_writing || turn.in_batch {
            return None;
        }
        turn.in_batch = true;
        Some(batch.add(self.tcp.as_raw_fd(), |out| {
            frame_after_lead(&turn, framing, frame, out)
        }))
    }

    fn end_batched(&self, batch: &SendBatch, place: usize) -> Sent {
        let mut turn = self.turn.lock();
        turn.in_batch = false;
        let sent = after_send(&mut turn, batch.bytes(place), batch.result(place));
        let waiting = turn.waiting.take();
        drop(turn);
        if let Some(task) = waiting {
            task.wake();
        }
        sent
    }
}

/// Appends what must lead (it stays in `rest` until a send takes it), then `frame`: both
/// leave in one send.
fn frame_after_lead(turn: &Turn, framing: Framing, frame: &Frame, out: &mut BytesMut) {
    if let Some(lead) = &turn.rest {
        out.extend_from_slice(lead);
    }
    frame_into(framing, frame, out);
}

/// Notes in `turn` what one send of `bytes` (`frame_after_lead`'s) did: all of it is gone,
/// or its unwritten end is kept to go first next time.
fn after_send(turn: &mut Turn, bytes: &[u8], result: io::Result<usize>) -> Sent {
    match result {
        Ok(n) if n >= bytes.len() => {
            turn.rest = None;
            Sent::All
        }
        Ok(n) => {
            turn.rest = Some(Bytes::copy_from_slice(&bytes[n..]));
            Sent::Part
        }
        // Full, or failed (the task meets the same error on its next write and ends): what
        // had to lead is still in `rest`, in front of whatever is written next.
        Err(_) => Sent::Nothing,
    }
}

/// Appends `frame` as one event of the stream's transport.
fn frame_into(framing: Framing, frame: &Frame, out: &mut BytesMut) {
    let mut head = [0u8; HEAD_ROOM];
    match framing {
        Framing::WsText => {
            out.extend_from_slice(ws_text_head(frame.json.len(), &mut head));
            out.extend_from_slice(&frame.json);
        }
        Framing::SseRaw => crate::http::sse::encode(std::slice::from_ref(frame), out),
        Framing::SseChunked => {
            let start = out.len();
            crate::http::sse::encode(std::slice::from_ref(frame), out);
            let size_line = chunk_size_line(out.len() - start, &mut head);
            out.extend_from_slice(size_line);
            out[start..].rotate_right(size_line.len());
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// RFC 6455 §5.2: FIN and opcode 1 (text), no mask, and the payload length in 7, 7+16 or
/// 7+64 bits.
fn ws_text_head(len: usize, buf: &mut [u8; HEAD_ROOM]) -> &[u8] {
    buf[0] = 0x81;
    if len < 126 {
        buf[1] = len as u8;
        &buf[..2]
    } else if let Ok(len) = u16::try_from(len) {
        buf[1] = 126;
        buf[2..4].copy_from_slice(&len.to_be_bytes());
        &buf[..4]
    } else {
        buf[1] = 127;
        buf[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        &buf[..10]
    }
}

impl AsyncRead for SharedTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.tcp.poll_read_ready(cx))?;
            // Zero-fills only what was never initialized: the WebSocket library and the SSE
            // writer read into initialized buffers, hyper into its request buffer.
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
        let socket = &self.0;
        let mut turn = socket.turn.lock();
        ready!(wait_for_batch(&mut turn, cx));
        // Held from the first byte to the flush, so no publisher's frame lands inside ours.
        turn.task_writing = true;
        ready!(socket.finish_rest(&mut turn, cx))?;
        loop {
            ready!(socket.tcp.poll_write_ready(cx))?;
            match socket.tcp.try_write(data) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                done => return Poll::Ready(done),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let socket = &self.0;
        let mut turn = socket.turn.lock();
        ready!(wait_for_batch(&mut turn, cx));
        ready!(socket.finish_rest(&mut turn, cx))?;
        // Everything the task began is written: publishers may write whole frames again.
        turn.task_writing = false;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        // The end of the stream, sent now: a publisher's handle may keep the socket open a
        // little longer.
        Poll::Ready(socket2::SockRef::from(&self.0.tcp).shutdown(Shutdown::Write))
    }
}

/// Pending while a broadcast's batched send to the socket is not made yet (until the io_uring
/// call that makes it returns): the task's bytes must not go before or inside it.
fn wait_for_batch(turn: &mut Turn, cx: &mut Context<'_>) -> Poll<()> {
    if turn.in_batch {
        turn.waiting = Some(cx.waker().clone());
        return Poll::Pending;
    }
    Poll::Ready(())
}

/// A connection's socket as its task takes it.
pub trait StreamSocket: AsyncRead + AsyncWrite + Unpin + Send + Sized + 'static {
    /// What the task reads and writes.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// The socket for the task, and the handle that lets publishers write to it directly:
    /// only a plain TCP socket has one (a TLS stream's state is the task's alone).
    fn shared(self) -> (Self::Io, Option<Arc<SharedSocket>>);
}

impl StreamSocket for TcpStream {
    type Io = SharedTcp;

    fn shared(self) -> (SharedTcp, Option<Arc<SharedSocket>>) {
        let shared = SharedTcp::new(self);
        let socket = shared.socket();
        (shared, Some(socket))
    }
}

/// A TLS stream's state is its task's alone.
impl StreamSocket for Box<crate::tls::stream::TlsStream> {
    type Io = Self;

    fn shared(self) -> (Self, Option<Arc<SharedSocket>>) {
        (self, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connected pair over loopback: the server side shared, the client side plain.
    async fn pair() -> (SharedTcp, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (SharedTcp::new(accepted.unwrap().0), client.unwrap())
    }

    fn frame(len: usize, byte: u8) -> Frame {
        Frame {
            seq: Some(1),
            json: Bytes::from(vec![byte; len]),
        }
    }

    /// Publishes 100 kB events until the socket takes one only in part (the client reads
    /// nothing); returns each event's filler byte, in order.
    fn fill_until_part(direct: &Arc<dyn DirectSocket>) -> Vec<u8> {
        let mut sent = Vec::new();
        loop {
            let byte = b'a' + (sent.len() % 26) as u8;
            let outcome = direct.try_send(&frame(100_000, byte));
            assert_ne!(
                outcome,
                Sent::Nothing,
                "a full socket takes part of a frame first"
            );
            sent.push(byte);
            if outcome == Sent::Part {
                return sent;
            }
        }
    }

    /// Everything the client will read, until the server's end.
    fn read_to_end(mut client: TcpStream) -> tokio::task::JoinHandle<Vec<u8>> {
        use tokio::io::AsyncReadExt;
        tokio::spawn(async move {
            let mut wire = Vec::new();
            client.read_to_end(&mut wire).await.unwrap();
            wire
        })
    }

    /// The task writes an event of its own and ends the stream: the client reads `before`,
    /// whole, then that event.
    async fn own_event_follows(
        mut shared: SharedTcp,
        direct: Arc<dyn DirectSocket>,
        client: TcpStream,
        mut before: Vec<u8>,
    ) {
        use tokio::io::AsyncWriteExt;
        let reader = read_to_end(client);
        shared.write_all(b"data: own\n\n").await.unwrap();
        shared.shutdown().await.unwrap();
        drop((shared, direct));
        let wire = reader.await.unwrap();
        before.extend_from_slice(b"data: own\n\n");
        assert!(
            wire == before,
            "{} bytes, expected {}",
            wire.len(),
            before.len()
        );
    }

    /// The raw SSE bytes of `frame(len, byte)` events, one after another.
    fn sse_events(events: impl IntoIterator<Item = (usize, u8)>) -> Vec<u8> {
        let mut out = Vec::new();
        for (len, byte) in events {
            out.extend_from_slice(b"id: 1\ndata: ");
            out.resize(out.len() + len, byte);
            out.extend_from_slice(b"\n\n");
        }
        out
    }

    #[tokio::test]
    async fn the_task_writes_the_end_of_a_publishers_frame_before_its_own_bytes() {
        let (shared, client) = pair().await;
        let direct = shared.socket().direct(Framing::SseRaw);
        let sent = fill_until_part(&direct);
        assert_eq!(
            direct.try_send(&frame(10, b'!')),
            Sent::Nothing,
            "nothing starts before the end is written"
        );
        // The task's own bytes go after the publisher's end, however the socket drains.
        let expected = sse_events(sent.into_iter().map(|byte| (100_000, byte)));
        own_event_follows(shared, direct, client, expected).await;
    }

    /// Once the socket has room again, the next frame written directly carries the end of the
    /// one before it in front, in the same system call.
    #[tokio::test]
    async fn a_direct_write_finishes_the_frame_before_it_first() {
        use tokio::io::AsyncWriteExt;
        let (mut shared, client) = pair().await;
        let direct = shared.socket().direct(Framing::SseRaw);
        let sent = fill_until_part(&direct);
        let reader = read_to_end(client);
        let next = async {
            loop {
                shared.0.tcp.writable().await.unwrap();
                if direct.try_send(&frame(10, b'!')) != Sent::Nothing {
                    return;
                }
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), next)
            .await
            .expect("a frame is written once the socket has room");
        shared.shutdown().await.unwrap();
        drop((shared, direct));
        let wire = reader.await.unwrap();
        let expected = sse_events(
            sent.into_iter()
                .map(|byte| (100_000, byte))
                .chain([(10, b'!')]),
        );
        assert!(
            wire == expected,
            "{} bytes, expected {}",
            wire.len(),
            expected.len()
        );
    }

    /// An upgrade's 101 leads: it leaves with the first frame, written directly or by the task.
    #[tokio::test]
    async fn what_leads_goes_before_the_first_frame_whoever_writes_it() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        for by_task in [false, true] {
            let (mut shared, mut client) = pair().await;
            let socket = shared.socket();
            socket.lead(Bytes::from_static(b"HTTP/1.1 101 "));
            socket.lead(Bytes::from_static(b"Switching Protocols\r\n\r\n"));
            if by_task {
                shared.write_all(b"own").await.unwrap();
                shared.flush().await.unwrap();
            } else {
                let direct = socket.direct(Framing::WsText);
                assert_eq!(direct.try_send(&frame(3, b'x')), Sent::All);
            }
            let first: &[u8] = if by_task { b"own" } else { b"\x81\x03xxx" };
            let expected = [&b"HTTP/1.1 101 Switching Protocols\r\n\r\n"[..], first].concat();
            let mut wire = vec![0u8; expected.len()];
            client.read_exact(&mut wire).await.unwrap();
            assert_eq!(wire, expected, "written by the task: {by_task}");
        }
    }

    /// A direct write is one whole frame of the stream's transport, byte for byte.
    #[tokio::test]
    async fn each_framing_writes_its_whole_frame() {
        use tokio::io::AsyncReadExt;
        let sse = sse_events([(200, b'e')]);
        let chunked = [format!("{:x}\r\n", sse.len()).as_bytes(), &sse, b"\r\n"].concat();
        let ws = [&[0x81, 126, 0, 200][..], &[b'e'; 200]].concat();
        for (framing, expected) in [
            (Framing::SseChunked, chunked),
            (Framing::SseRaw, sse.clone()),
            (Framing::WsText, ws),
        ] {
            let (shared, mut client) = pair().await;
            let direct = shared.socket().direct(framing);
            assert_eq!(direct.try_send(&frame(200, b'e')), Sent::All);
            drop((shared, direct));
            let mut wire = Vec::new();
            client.read_to_end(&mut wire).await.unwrap();
            assert_eq!(wire, expected, "{framing:?}");
        }
    }

    /// A broadcast's batched send carries what must lead, and the task's own bytes wait for
    /// it: they go after it on the wire, and the task is woken once it is made.
    #[tokio::test]
    async fn the_tasks_bytes_wait_for_a_batched_send_and_go_after_it() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        if !crate::send_ring::tests::io_uring_allowed() {
            eprintln!("io_uring is disabled on this machine: nothing to test");
            return;
        }
        let (mut shared, mut client) = pair().await;
        let socket = shared.socket();
        socket.lead(Bytes::from_static(b"101 "));
        let direct = socket.direct(Framing::WsText);
        let place = crate::send_ring::with_batch(|batch| {
            let batch = batch.expect("a ring where io_uring is allowed");
            batch.clear();
            direct.begin_batched(&frame(3, b'x'), batch)
        })
        .expect("an idle socket joins a batch");
        assert_eq!(
            direct.try_send(&frame(1, b'y')),
            Sent::Nothing,
            "nobody else writes while the send waits in the batch"
        );
        let task = tokio::spawn(async move {
            shared.write_all(b"own").await.unwrap();
            shared.flush().await.unwrap();
            shared
        });
        tokio::task::yield_now().await;
        assert!(!task.is_finished(), "the task waits for the batched send");
        crate::send_ring::with_batch(|batch| {
            let batch = batch.expect("the same thread's ring");
            batch.send();
            assert_eq!(direct.end_batched(batch, place), Sent::All);
            batch.clear();
        });
        let shared = tokio::time::timeout(std::time::Duration::from_secs(10), task)
            .await
            .expect("the task is woken when the batched send is made")
            .unwrap();
        let expected = b"101 \x81\x03xxxown";
        let mut wire = vec![0u8; expected.len()];
        client.read_exact(&mut wire).await.unwrap();
        assert_eq!(wire, expected);
        drop(shared);
    }

    /// A batched send the socket takes only in part keeps its end, which the task's flush
    /// writes before anything else: the client reads the whole frame.
    #[tokio::test]
    async fn the_end_of_a_batched_send_the_socket_took_in_part_is_written_by_the_task() {
        if !crate::send_ring::tests::io_uring_allowed() {
            eprintln!("io_uring is disabled on this machine: nothing to test");
            return;
        }
        let (shared, client) = pair().await;
        let direct = shared.socket().direct(Framing::SseRaw);
        // Larger than any loopback socket's buffers: the client has read nothing yet.
        let big = frame(16 * 1024 * 1024, b'b');
        let sent = crate::send_ring::with_batch(|batch| {
            let batch = batch.expect("a ring where io_uring is allowed");
            batch.clear();
            let place = direct.begin_batched(&big, batch).expect("an idle socket");
            batch.send();
            let sent = direct.end_batched(batch, place);
            batch.clear();
            sent
        });
        assert_eq!(sent, Sent::Part);
        own_event_follows(
            shared,
            direct,
            client,
            sse_events([(16 * 1024 * 1024, b'b')]),
        )
        .await;
    }

    #[tokio::test]
    async fn while_the_task_is_writing_publishers_keep_off_the_socket() {
        use tokio::io::AsyncWriteExt;
        let (mut shared, _client) = pair().await;
        let direct = shared.socket().direct(Framing::WsText);
        shared.write_all(b"part of a frame").await.unwrap();
        assert_eq!(direct.try_send(&frame(10, b'x')), Sent::Nothing);
        shared.flush().await.unwrap();
        assert_eq!(direct.try_send(&frame(10, b'x')), Sent::All);
    }

    #[test]
    fn websocket_text_frames_carry_their_length_as_rfc_6455_says() {
        let mut buf = [0u8; HEAD_ROOM];
        assert_eq!(ws_text_head(5, &mut buf), [0x81, 5]);
        assert_eq!(ws_text_head(125, &mut buf), [0x81, 125]);
        assert_eq!(ws_text_head(126, &mut buf), [0x81, 126, 0, 126]);
        assert_eq!(ws_text_head(65_535, &mut buf), [0x81, 126, 0xff, 0xff]);
        assert_eq!(
            ws_text_head(65_536, &mut buf),
            [0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]
        );
    }
}
