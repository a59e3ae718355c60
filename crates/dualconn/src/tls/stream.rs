//! A server-side TLS stream that holds no buffer while its connection is idle.
//!
//! rustls's ordinary connection type keeps a 4 KiB record buffer for as long as a read waits,
//! which is the whole life of an idle WebSocket; with a few hundred bytes of keys on top, a TLS
//! connection cost more than twice a plain one (BENCHMARKS.md, "TLS beside plain"). This stream
//! drives rustls's unbuffered API instead and owns the buffers itself:
//!
//! - bytes are read from the socket only once it reports them ready, and the buffer they land
//!   in is freed as soon as every complete record in it is decrypted; only a record cut short by
//!   the network keeps it;
//! - a write is sealed into a buffer on the stack and handed straight to the socket; only what
//!   the socket will not take yet is copied to the heap, and that copy is freed once sent.
//!
//! Back-pressure is the socket's: a write waits until what an earlier one left behind has gone
//! out, so at most one record's ciphertext waits here (the outbox rules above it still decide
//! what a slow reader costs).

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use rustls::ServerConfig;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The most plaintext sealed per write: one TLS record's worth.
const MAX_PLAINTEXT: usize = 16 * 1024;

/// Room for one sealed record: the plaintext, the record header, the content type and the AEAD
/// tag (TLS 1.3), or the explicit nonce and tag (TLS 1.2).
const MAX_SEALED: usize = MAX_PLAINTEXT + 256;

thread_local! {
    /// Where writes are sealed before the socket takes them: one per worker thread, so a write
    /// neither allocates nor zeroes a record's worth of stack.
    static SEALED: RefCell<Vec<u8>> = RefCell::new(vec![0; MAX_SEALED]);
}

/// How much room a read asks for. Records are at most 16 KiB plus overhead; a larger one
/// arrives over several reads.
const READ_CHUNK: usize = 8 * 1024;

pub struct TlsStream {
    /// The socket; read and written only when it reports readiness, so a waiting read holds no
    /// buffer.
    io: TcpStream,
    /// rustls's state machine: keys, handshake progress and alerts, but no buffers of its own.
    conn: UnbufferedServerConnection,
    /// Received bytes not yet decrypted: empty and unallocated unless a record arrived only in
    /// part.
    incoming: Vec<u8>,
    /// Decrypted bytes the reader has not taken yet, from `plain_at` on; freed once taken.
    plaintext: Vec<u8>,
    plain_at: usize,
    /// Sealed bytes the socket would not take yet (handshake messages, alerts, or the tail of a
    /// record), from `out_at` on; freed once sent.
    outgoing: Vec<u8>,
    out_at: usize,
    /// The peer sent close_notify, or the socket reached its end: reads return end of file.
    read_closed: bool,
    /// Our close_notify is sealed; nothing more may be written.
    write_closed: bool,
    /// rustls reported a fatal error: it must not be driven again (it would decode the same
    /// bytes and raise the same alert twice), so every later call fails at once.
    failed: bool,
}

/// Where processing the received records stopped.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    /// The handshake needs more bytes from the peer.
    NeedBytes,
    /// Application data may be sent (the handshake may still await the client's Finished).
    Writable,
    /// Both sides have closed.
    Closed,
}

/// Completes a server handshake on `io`. The caller bounds how long this may take.
pub async fn accept(io: TcpStream, config: Arc<ServerConfig>) -> io::Result<TlsStream> {
    let conn = UnbufferedServerConnection::new(config).map_err(tls_error)?;
    let mut stream = TlsStream {
        io,
        conn,
        incoming: Vec::new(),
        plaintext: Vec::new(),
        plain_at: 0,
        outgoing: Vec::new(),
        out_at: 0,
        read_closed: false,
        write_closed: false,
        failed: false,
    };
    std::future::poll_fn(|cx| stream.poll_handshake(cx)).await?;
    Ok(stream)
}

impl TlsStream {
    /// The protocol ALPN settled on, if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let stop = self.process()?;
            ready!(self.poll_send_outgoing(cx))?;
            match stop {
                Stop::Writable if !self.conn.is_handshaking() => return Poll::Ready(Ok(())),
                Stop::Closed => return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into())),
                Stop::Writable | Stop::NeedBytes => {}
            }
            if self.read_closed {
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
            ready!(self.poll_receive(cx))?;
        }
    }

    /// Decrypts every complete record received, queues whatever rustls wants sent (handshake
    /// messages, key updates, alerts) in `outgoing`, and drops the bytes it consumed.
    fn process(&mut self) -> io::Result<Stop> {
        self.usable()?;
        loop {
            let UnbufferedStatus { mut discard, state } =
                self.conn.process_tls_records(&mut self.incoming);
            let state = match state {
                Ok(state) => state,
                Err(error) => {
                    self.failed = true;
                    self.incoming.drain(..discard);
                    self.queue_alert();
                    return Err(tls_error(error));
                }
            };
            let stop = match state {
                ConnectionState::ReadTraffic(mut records) => {
                    while let Some(record) = records.next_record() {
                        let record = record.map_err(|e| {
                            self.failed = true;
                            tls_error(e)
                        })?;
                        discard += record.discard;
                        self.plaintext.extend_from_slice(record.payload);
                    }
                    None
                }
                ConnectionState::EncodeTlsData(mut message) => {
                    encode_into(&mut self.outgoing, |buf| message.encode(buf))?;
                    None
                }
                // Sent in order with everything else in `outgoing`, by whoever flushes next.
                ConnectionState::TransmitTlsData(sent) => {
                    sent.done();
                    None
                }
                ConnectionState::PeerClosed => {
                    self.read_closed = true;
                    None
                }
                ConnectionState::Closed => {
                    self.read_closed = true;
                    Some(Stop::Closed)
                }
                ConnectionState::BlockedHandshake => Some(Stop::NeedBytes),
                ConnectionState::WriteTraffic(_) => Some(Stop::Writable),
                // Early data is never enabled in our config, and later states are unknown to us.
                _ => return Err(io::Error::other("unexpected TLS state")),
            };
            self.incoming.drain(..discard);
            if let Some(stop) = stop {
                if self.incoming.is_empty() {
                    self.incoming = Vec::new();
                }
                return Ok(stop);
            }
        }
    }

    /// After a fatal error, rustls may have queued an alert for the peer. It goes out if the
    /// socket takes it now, and is dropped otherwise: the connection is ending either way. Only
    /// one more call is made: a second would decode the offending bytes again.
    fn queue_alert(&mut self) {
        if let UnbufferedStatus {
            state: Ok(ConnectionState::EncodeTlsData(mut message)),
            ..
        } = self.conn.process_tls_records(&mut self.incoming)
        {
            let _ = encode_into(&mut self.outgoing, |buf| message.encode(buf));
        }
        while self.out_at < self.outgoing.len() {
            match self.io.try_write(&self.outgoing[self.out_at..]) {
                Ok(n) if n > 0 => self.out_at += n,
                _ => break,
            }
        }
    }

    fn usable(&self) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the TLS connection failed earlier",
            ));
        }
        Ok(())
    }

    /// Reads what the socket has, once it has something.
    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.io.poll_read_ready(cx))?;
        self.incoming.reserve(READ_CHUNK);
        match self.io.try_read_buf(&mut self.incoming) {
            Ok(0) => self.read_closed = true,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Poll::Ready(Err(e)),
        }
        Poll::Ready(Ok(()))
    }

    /// Sends everything in `outgoing`, then frees it.
    fn poll_send_outgoing(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out_at < self.outgoing.len() {
            match self.io.try_write(&self.outgoing[self.out_at..]) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => self.out_at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.io.poll_write_ready(cx))?;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        self.outgoing = Vec::new();
        self.out_at = 0;
        Poll::Ready(Ok(()))
    }

    /// Seals `plain` into `sealed` as application data, or, with `None`, a close_notify.
    /// `process` first deals with whatever rustls has pending (a key update to answer, records
    /// that arrived whole beside a partial one), so the state it stops at is the one to seal in.
    fn seal(&mut self, plain: Option<&[u8]>, sealed: &mut [u8]) -> io::Result<usize> {
        if self.process()? != Stop::Writable {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let UnbufferedStatus { discard, state } = self.conn.process_tls_records(&mut self.incoming);
        let sealing = match state {
            Ok(ConnectionState::WriteTraffic(mut traffic)) => match plain {
                Some(plain) => traffic.encrypt(plain, sealed),
                None => traffic.queue_close_notify(sealed),
            },
            Ok(_) => return Err(io::ErrorKind::BrokenPipe.into()),
            Err(error) => {
                self.failed = true;
                return Err(tls_error(error));
            }
        };
        self.incoming.drain(..discard);
        sealing.map_err(|e| match e {
            EncryptError::InsufficientSize(_) => {
                io::Error::other("a TLS record outgrew its buffer")
            }
            other => io::Error::other(other.to_string()),
        })
    }

    /// Writes `sealed` after anything already waiting; what the socket will not take now
    /// waits in `outgoing`.
    fn send_or_keep(&mut self, sealed: &[u8]) -> io::Result<()> {
        let mut at = 0;
        if self.out_at == self.outgoing.len() {
            while at < sealed.len() {
                match self.io.try_write(&sealed[at..]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => at += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
        }
        self.outgoing.extend_from_slice(&sealed[at..]);
        Ok(())
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.plain_at < this.plaintext.len() {
                let n = buf.remaining().min(this.plaintext.len() - this.plain_at);
                buf.put_slice(&this.plaintext[this.plain_at..this.plain_at + n]);
                this.plain_at += n;
                if this.plain_at == this.plaintext.len() {
                    this.plaintext = Vec::new();
                    this.plain_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.read_closed {
                return Poll::Ready(Ok(()));
            }
            this.process()?;
            // Key updates and alerts rustls answered with: sent now if the socket takes them,
            // else by the next write or flush.
            if this.out_at < this.outgoing.len() {
                match this.poll_send_outgoing(cx) {
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Ready(Ok(())) | Poll::Pending => {}
                }
            }
            if this.plain_at < this.plaintext.len() || this.read_closed {
                continue;
            }
            ready!(this.poll_receive(cx))?;
        }
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_send_outgoing(cx))?;
        if this.write_closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let plain = &data[..data.len().min(MAX_PLAINTEXT)];
        SEALED.with_borrow_mut(|sealed| {
            let n = this.seal(Some(plain), sealed)?;
            this.send_or_keep(&sealed[..n])
        })?;
        Poll::Ready(Ok(plain.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_send_outgoing(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.write_closed {
            this.write_closed = true;
            let mut sealed = [0u8; 64];
            // A connection that cannot seal any more (it already failed) just closes.
            if let Ok(n) = this.seal(None, &mut sealed) {
                this.outgoing.extend_from_slice(&sealed[..n]);
            }
        }
        ready!(this.poll_send_outgoing(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

/// Appends one handshake message or alert to `out`, growing it to the size rustls asks for.
fn encode_into(
    out: &mut Vec<u8>,
    mut encode: impl FnMut(&mut [u8]) -> Result<usize, EncodeError>,
) -> io::Result<()> {
    let start = out.len();
    let mut room = 512;
    loop {
        out.resize(start + room, 0);
        match encode(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(EncodeError::InsufficientSize(need)) if need.required_size > room => {
                room = need.required_size;
            }
            Err(other) => {
                out.truncate(start);
                return Err(io::Error::other(other.to_string()));
            }
        }
    }
}

fn tls_error(error: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::net::SocketAddr;

    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A server config for `localhost` and a client config that trusts it, from a CA made here.
    fn configs() -> (Arc<ServerConfig>, Arc<rustls::ClientConfig>) {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(ca.der().to_vec())).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (Arc::new(server), Arc::new(client))
    }

    /// A client socket wrapper that can hold back what the TLS client writes, so a test can
    /// deliver a record to the server in pieces of its choosing.
    struct Holding {
        tcp: TcpStream,
        hold: bool,
        held: Vec<u8>,
    }

    impl AsyncRead for Holding {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.tcp).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Holding {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            if self.hold {
                self.held.extend_from_slice(data);
                return Poll::Ready(Ok(data.len()));
            }
            Pin::new(&mut self.tcp).poll_write(cx, data)
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.tcp).poll_flush(cx)
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.tcp).poll_shutdown(cx)
        }
    }

    type Client = tokio_rustls::client::TlsStream<Holding>;

    async fn pair() -> (TlsStream, Client) {
        let (server_config, client_config) = configs();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let client = async {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let holding = Holding {
                tcp,
                hold: false,
                held: Vec::new(),
            };
            tokio_rustls::TlsConnector::from(client_config)
                .connect(ServerName::try_from("localhost").unwrap(), holding)
                .await
                .unwrap()
        };
        let server = async {
            let (tcp, _) = listener.accept().await.unwrap();
            accept(tcp, server_config).await.unwrap()
        };
        let (server, client) = tokio::join!(server, client);
        (server, client)
    }

    /// Polls `f` once: `None` when it is still waiting.
    async fn poll_once<F: Future>(f: F) -> Option<F::Output> {
        tokio::select! {
            biased;
            out = f => Some(out),
            () = std::future::ready(()) => None,
        }
    }

    /// Makes the server pass its TLS 1.3 handshake's end (the client's Finished), so the
    /// tests below see application records only.
    async fn settle(server: &mut TlsStream, client: &mut Client) {
        client.write_all(b"hi").await.unwrap();
        client.flush().await.unwrap();
        let mut two = [0u8; 2];
        server.read_exact(&mut two).await.unwrap();
        assert_eq!(&two, b"hi");
    }

    #[tokio::test]
    async fn data_larger_than_a_record_crosses_both_ways_intact() {
        let (mut server, client) = pair().await;
        let sent: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let echo = tokio::spawn(async move {
            // Small reads, as the WebSocket layer makes: a record is handed out in pieces.
            let mut buf = [0u8; 512];
            loop {
                let n = server.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                server.write_all(&buf[..n]).await.unwrap();
            }
            server.shutdown().await.unwrap();
        });
        let (mut read_half, mut write_half) = tokio::io::split(client);
        let writer = {
            let sent = sent.clone();
            tokio::spawn(async move {
                write_half.write_all(&sent).await.unwrap();
                write_half.shutdown().await.unwrap();
            })
        };
        let mut back = Vec::new();
        // A clean end: tokio-rustls reports an end without close_notify as an error.
        read_half.read_to_end(&mut back).await.unwrap();
        writer.await.unwrap();
        echo.await.unwrap();
        assert_eq!(back.len(), sent.len());
        assert!(back == sent, "the echo differs from what was sent");
    }

    #[tokio::test]
    async fn an_idle_connection_holds_no_buffer() {
        let (mut server, mut client) = pair().await;
        settle(&mut server, &mut client).await;
        server.write_all(b"event").await.unwrap();
        server.flush().await.unwrap();
        let mut five = [0u8; 5];
        client.read_exact(&mut five).await.unwrap();

        let mut buf = [0u8; 64];
        assert!(poll_once(server.read(&mut buf)).await.is_none());
        assert_eq!(
            (
                server.incoming.capacity(),
                server.plaintext.capacity(),
                server.outgoing.capacity()
            ),
            (0, 0, 0)
        );
    }

    #[tokio::test]
    async fn a_record_cut_in_two_waits_for_its_tail() {
        let (mut server, mut client) = pair().await;
        settle(&mut server, &mut client).await;
        client.get_mut().0.hold = true;
        client.write_all(b"a command in one record").await.unwrap();
        client.flush().await.unwrap();
        let record = std::mem::take(&mut client.get_mut().0.held);
        let half = record.len() / 2;

        client
            .get_mut()
            .0
            .tcp
            .write_all(&record[..half])
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        while server.incoming.len() < half {
            assert!(poll_once(server.read(&mut buf)).await.is_none());
            if server.incoming.len() < half {
                server.io.readable().await.unwrap();
            }
        }
        assert_eq!(
            server.incoming.len(),
            half,
            "half a record is kept, not dropped"
        );

        client
            .get_mut()
            .0
            .tcp
            .write_all(&record[half..])
            .await
            .unwrap();
        let n = server.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"a command in one record");
        assert_eq!(server.incoming.capacity(), 0);
    }

    #[tokio::test]
    async fn a_writer_facing_a_peer_that_never_reads_waits_holding_one_record_at_most() {
        let (mut server, mut client) = pair().await;
        settle(&mut server, &mut client).await;
        let chunk = vec![7u8; MAX_PLAINTEXT];
        let mut accepted = 0usize;
        loop {
            match poll_once(server.write(&chunk)).await {
                Some(written) => accepted += written.unwrap(),
                None => break,
            }
            assert!(server.outgoing.len() - server.out_at <= MAX_SEALED);
        }
        assert!(accepted > 0);
        assert!(server.outgoing.len() - server.out_at <= MAX_SEALED);

        // Once the peer reads, the writer goes on.
        let drain = tokio::spawn(async move {
            let mut sink = vec![0u8; 64 * 1024];
            let mut got = 0usize;
            while got < accepted + MAX_PLAINTEXT {
                got += client.read(&mut sink).await.unwrap();
            }
        });
        server.write_all(&chunk).await.unwrap();
        server.flush().await.unwrap();
        drain.await.unwrap();
    }

    #[tokio::test]
    async fn a_peer_that_does_not_speak_tls_is_refused_with_an_alert() {
        let (server_config, _) = configs();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut peer = TcpStream::connect(addr).await.unwrap();
        peer.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        let refused = accept(tcp, server_config).await;
        assert_eq!(
            refused.err().map(|e| e.kind()),
            Some(io::ErrorKind::InvalidData)
        );
        let mut answer = Vec::new();
        peer.read_to_end(&mut answer).await.unwrap();
        // A TLS alert record: content type 21.
        assert_eq!(answer.first(), Some(&21), "answer: {answer:?}");
    }

    #[tokio::test]
    async fn a_peer_that_hangs_up_mid_handshake_ends_the_accept() {
        let (server_config, _) = configs();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = TcpStream::connect(addr).await.unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        drop(peer);
        let ended = accept(tcp, server_config).await;
        assert_eq!(
            ended.err().map(|e| e.kind()),
            Some(io::ErrorKind::UnexpectedEof)
        );
    }
}
