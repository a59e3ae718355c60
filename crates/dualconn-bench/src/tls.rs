//! TLS for the load generator: one connection type for plain TCP and rustls, so every path
//! (WebSocket, SSE, the publishers' HTTP) can run over either without being written twice.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use anyhow::{Context, Result, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// How to speak TLS to the server under test: trust exactly one CA (the bench's self-signed
/// certificate), and check the certificate against one name.
#[derive(Clone)]
pub struct Tls {
    connector: TlsConnector,
    /// Connections are spread over 127.0.0.1–127.0.0.N, but a test certificate names only
    /// `localhost` and `127.0.0.1`, so every handshake checks this one name instead.
    name: ServerName<'static>,
}

impl Tls {
    /// Reads the CA certificate(s) from `ca` (PEM).
    pub fn load(ca: &Path, name: &str) -> Result<Tls> {
        let pem = std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.with_context(|| format!("{}: bad PEM", ca.display()))?;
            roots
                .add(cert)
                .with_context(|| format!("{}: unusable CA certificate", ca.display()))?;
        }
        if roots.is_empty() {
            bail!("{} holds no PEM certificate", ca.display());
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        // WebSocket needs HTTP/1.1, and the SSE reader parses HTTP/1.1 itself.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // Every bench connection stands for another device meeting the server for the first
        // time: a full handshake each, never a resumption from a ticket an earlier one got.
        config.resumption = rustls::client::Resumption::disabled();
        let name = ServerName::try_from(name.to_owned())
            .with_context(|| format!("bad TLS server name {name:?}"))?;
        Ok(Tls {
            connector: TlsConnector::from(Arc::new(config)),
            name,
        })
    }
}

/// A client connection, plain or TLS.
pub enum Conn {
    Plain(TcpStream),
    /// Boxed: rustls' connection state is about a kilobyte, and plain links should not carry it.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Conn {
    /// Dials `host:port` with Nagle off and, given `tls`, completes the TLS handshake.
    pub async fn connect(host: &str, port: u16, tls: Option<&Tls>) -> Result<Conn> {
        let stream = TcpStream::connect((host, port))
            .await
            .with_context(|| format!("connect {host}:{port}"))?;
        stream.set_nodelay(true)?;
        match tls {
            None => Ok(Conn::Plain(stream)),
            Some(t) => {
                let s = t
                    .connector
                    .connect(t.name.clone(), stream)
                    .await
                    .context("TLS handshake")?;
                Ok(Conn::Tls(Box::new(s)))
            }
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Conn::Tls(_))
    }

    /// The socket underneath, for socket options.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => s.get_ref().0,
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
