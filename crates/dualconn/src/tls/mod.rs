//! Native TLS: the certificate in force, swapping it for a new one without a restart, and the
//! rustls settings every connection shares. `stream` is the record layer each connection runs.
//!
//! One `ServerConfig` lives for the whole run, so a reload never touches connections already
//! open; only the certificate the resolver hands to new handshakes changes.

use std::fs::Metadata;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use metrics::Counter;
use parking_lot::{Mutex, RwLock};
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

pub mod stream;

/// How often the certificate files are checked for a change. Renewals (certbot, cert-manager)
/// replace files days ahead of expiry, so a few seconds' delay costs nothing.
const FILE_POLL: Duration = Duration::from_secs(2);

/// ALPN ids we offer, preferred first: browsers then multiplex every SSE stream and REST call
/// over one HTTP/2 connection, and WebSocket clients, which ask for `http/1.1`, still get it.
pub const ALPN_H2: &[u8] = b"h2";
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Where the certificate chain and its key are read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM, the server's certificate first, then any intermediates.
    pub cert: PathBuf,
    /// PEM, PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path}: {reason}")]
    BadPem { path: PathBuf, reason: String },
    #[error("the key in {key} cannot serve the certificate in {cert}: {reason}")]
    Unusable {
        cert: PathBuf,
        key: PathBuf,
        reason: rustls::Error,
    },
}

/// The TLS side of a listener: the shared rustls settings and the certificate they present.
pub struct Tls {
    /// Read again on every reload.
    files: TlsFiles,
    /// Shared by every connection; built once so session resumption state survives reloads.
    config: Arc<ServerConfig>,
    /// The one thing a reload changes.
    resolver: Arc<Current>,
    /// Parses and checks new keys the same way the first one was.
    provider: Arc<CryptoProvider>,
    /// The files' size and modification time when last read, so a poll can tell a change
    /// without reading and parsing them every time.
    seen: Mutex<Option<Stamp>>,
}

/// Hands every handshake the certificate currently in force.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().clone())
    }
}

type Stamp = [(u64, Option<SystemTime>); 2];

impl Tls {
    /// Reads and checks both files; a server never starts on a certificate it cannot serve.
    pub fn load(files: &TlsFiles) -> Result<Tls, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let seen = stamp(files);
        let key = read_pair(files, &provider)?;
        let resolver = Arc::new(Current(RwLock::new(Arc::new(key))));
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|reason| TlsError::Unusable {
                cert: files.cert.clone(),
                key: files.key.clone(),
                reason,
            })?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()];
        Ok(Tls {
            files: files.clone(),
            config: Arc::new(config),
            resolver,
            provider,
            seen: Mutex::new(seen),
        })
    }

    pub fn config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }

    /// Reads the files again and, if they hold a usable pair, serves it to new handshakes. A
    /// bad pair leaves the one in force untouched.
    pub fn reload(&self) -> Result<(), TlsError> {
        *self.seen.lock() = stamp(&self.files);
        let key = read_pair(&self.files, &self.provider)?;
        *self.resolver.0.write() = Arc::new(key);
        Ok(())
    }

    /// Reloads on SIGHUP and whenever the files change, until shutdown. Every attempt is
    /// logged and counted, so an operator can tell a refused renewal from a missing one.
    pub async fn watch(self: Arc<Self>, outcomes: Reloads, shutdown: CancellationToken) {
        let mut hangup = hangups();
        let mut poll = tokio::time::interval(FILE_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let why = tokio::select! {
                _ = shutdown.cancelled() => return,
                Some(()) = next_hangup(&mut hangup) => "SIGHUP",
                _ = poll.tick() => {
                    let now = stamp(&self.files);
                    if now == *self.seen.lock() {
                        continue;
                    }
                    "the files changed"
                }
            };
            match self.reload() {
                Ok(()) => {
                    outcomes.loaded.increment(1);
                    tracing::info!(cert = %self.files.cert.display(), why, "TLS certificate reloaded");
                }
                Err(error) => {
                    outcomes.refused.increment(1);
                    tracing::error!(%error, why, "new TLS certificate refused; the one in force stays");
                }
            }
        }
    }
}

/// Counters for reload attempts, from the server's metrics.
pub struct Reloads {
    /// A new certificate went into force.
    pub loaded: Counter,
    /// A new certificate was refused and the old one kept: worth an alert before it expires.
    pub refused: Counter,
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = ();

#[cfg(unix)]
fn hangups() -> Hangups {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP; TLS files are still watched");
            None
        }
    }
}

#[cfg(unix)]
async fn next_hangup(h: &mut Hangups) -> Option<()> {
    match h {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
fn hangups() -> Hangups {}

#[cfg(not(unix))]
async fn next_hangup(_: &mut Hangups) -> Option<()> {
    std::future::pending().await
}

fn stamp(files: &TlsFiles) -> Option<Stamp> {
    let one = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m: Metadata| (m.len(), m.modified().ok()))
    };
    Some([one(&files.cert)?, one(&files.key)?])
}

fn read_pair(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.clone(),
            source,
        })
    };
    let bad = |path: &PathBuf, e: rustls_pki_types::pem::Error| TlsError::BadPem {
        path: path.clone(),
        reason: e.to_string(),
    };
    let cert_pem = read(&files.cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&files.cert, e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: files.cert.clone(),
        });
    }
    let key_pem = read(&files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| bad(&files.key, e))?;
    // Checks the key parses and matches the certificate's public key, so a half-written
    // renewal (new certificate, old key) is refused here rather than failing every handshake.
    CertifiedKey::from_der(chain, key, provider).map_err(|reason| TlsError::Unusable {
        cert: files.cert.clone(),
        key: files.key.clone(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rcgen::{CertificateParams, KeyPair};

    use super::*;

    /// A directory of this test's own, removed on drop.
    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let dir = std::env::temp_dir()
                .join(format!("dualconn-tls-unit-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Dir(dir)
        }

        fn files(&self) -> TlsFiles {
            TlsFiles {
                cert: self.0.join("cert.pem"),
                key: self.0.join("key.pem"),
            }
        }

        /// Writes a fresh self-signed certificate for `name` and its key; returns the
        /// certificate's DER.
        fn write_pair(&self, name: &str) -> Vec<u8> {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(vec![name.to_string()])
                .unwrap()
                .self_signed(&key)
                .unwrap();
            write(&self.files().cert, cert.pem().as_bytes());
            write(&self.files().key, key.serialize_pem().as_bytes());
            cert.der().to_vec()
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn write(path: &Path, bytes: &[u8]) {
        std::fs::write(path, bytes).unwrap();
    }

    fn served(tls: &Tls) -> Vec<u8> {
        tls.resolver.0.read().cert[0].to_vec()
    }

    #[test]
    fn a_matching_pair_loads_and_offers_h2_first() {
        let dir = Dir::new("good");
        let der = dir.write_pair("localhost");
        let tls = Tls::load(&dir.files()).unwrap();
        assert_eq!(served(&tls), der);
        assert_eq!(
            tls.config().alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }

    #[test]
    fn each_kind_of_bad_file_is_named_in_its_error() {
        let dir = Dir::new("bad");
        let files = dir.files();
        assert!(
            matches!(Tls::load(&files), Err(TlsError::Read { path, .. }) if path == files.cert)
        );

        dir.write_pair("localhost");
        write(&files.cert, b"no PEM block in here\n");
        assert!(
            matches!(Tls::load(&files), Err(TlsError::NoCertificate { path }) if path == files.cert)
        );

        dir.write_pair("localhost");
        write(
            &files.key,
            b"-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----\n",
        );
        assert!(
            matches!(Tls::load(&files), Err(TlsError::BadPem { path, .. }) if path == files.key)
        );
    }

    #[test]
    fn a_key_that_does_not_match_the_certificate_is_refused() {
        let dir = Dir::new("mismatch");
        dir.write_pair("localhost");
        let other = KeyPair::generate().unwrap();
        write(&dir.files().key, other.serialize_pem().as_bytes());
        assert!(matches!(
            Tls::load(&dir.files()),
            Err(TlsError::Unusable { .. })
        ));
    }

    #[test]
    fn a_reload_serves_a_good_pair_and_keeps_the_old_one_over_a_bad_one() {
        let dir = Dir::new("reload");
        let first = dir.write_pair("localhost");
        let tls = Tls::load(&dir.files()).unwrap();

        let second = dir.write_pair("localhost");
        tls.reload().unwrap();
        assert_eq!(served(&tls), second);

        // A renewal caught half-written: the new certificate with the old key.
        dir.write_pair("localhost");
        write(
            &dir.files().key,
            KeyPair::generate().unwrap().serialize_pem().as_bytes(),
        );
        assert!(tls.reload().is_err());
        assert_eq!(served(&tls), second);
        assert_ne!(first, second);
    }
}
