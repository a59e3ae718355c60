//! A throwaway certificate authority made at test time, server certificates it signs, and TLS
//! clients that trust only it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dualconn::config::Settings;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::Server;

pub struct TestCa {
    /// The root clients trust; it signs every server certificate.
    cert: rcgen::Certificate,
    /// Kept to sign more server certificates, e.g. a renewal.
    key: KeyPair,
    /// Where this test's certificate files live; removed on drop.
    pub dir: PathBuf,
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "dualconn test CA");
        let cert = params.self_signed(&key).expect("CA signs itself");
        let dir = std::env::temp_dir().join(format!(
            "dualconn-tls-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TestCa { cert, key, dir }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// A certificate for `localhost` and 127.0.0.1 named `cn`, as PEM (chain, PKCS#8 key).
    pub fn issue(&self, cn: &str) -> (String, String) {
        let key = KeyPair::generate().expect("leaf key");
        let chain = self.issue_for(cn, &key);
        (chain, key.serialize_pem())
    }

    /// A certificate named `cn` for `key`'s public half, as a PEM chain (leaf, then CA).
    pub fn issue_for(&self, cn: &str, key: &KeyPair) -> String {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params
            .signed_by(key, &self.cert, &self.key)
            .expect("CA signs leaf");
        // A full chain: the leaf, then the CA (as an intermediate would be sent).
        format!("{}{}", cert.pem(), self.cert.pem())
    }

    /// Writes a certificate named `cn` into this CA's directory; returns (cert, key) paths.
    pub fn write(&self, cn: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = self.issue(cn);
        let paths = (self.dir.join("cert.pem"), self.dir.join("key.pem"));
        replace(&paths.0, cert.as_bytes());
        replace(&paths.1, key.as_bytes());
        paths
    }

    /// As [`TestCa::write`], padded to fixed sizes and stamped with one fixed modification
    /// time, so a file watcher that compares sizes and times cannot tell two of them apart.
    pub fn write_indistinguishable(&self, cn: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = self.issue(cn);
        let paths = (self.dir.join("cert.pem"), self.dir.join("key.pem"));
        for (path, pem, size) in [(&paths.0, cert, 4096), (&paths.1, key, 1024)] {
            assert!(pem.len() < size);
            // Text outside PEM blocks is ignored by readers.
            let padded = format!("{pem}{}", "\n".repeat(size - pem.len()));
            // Stamped before it is renamed into place, so no poll ever sees another time.
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, padded).expect("write temp file");
            let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
            std::fs::File::options()
                .write(true)
                .open(&tmp)
                .and_then(|f| f.set_modified(when))
                .expect("set the modification time");
            std::fs::rename(&tmp, path).expect("rename into place");
        }
        paths
    }

    /// A client that trusts this CA alone and offers `alpn`.
    pub fn client(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der()).expect("CA is a valid root");
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// A reqwest client that trusts this CA alone; it negotiates HTTP/2 by ALPN.
    pub fn reqwest(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(self.pem().as_bytes()).unwrap())
            .build()
            .expect("https client")
    }

    /// A server on port 0 serving a certificate named `leaf-1` from this CA, with a client
    /// that trusts it.
    pub async fn server(&self, tweak: impl FnOnce(&mut Settings)) -> Server {
        let (cert, key) = self.write("leaf-1");
        self.server_on(cert, key, tweak).await
    }

    /// A server on port 0 serving these certificate and key files.
    pub async fn server_on(
        &self,
        cert: PathBuf,
        key: PathBuf,
        tweak: impl FnOnce(&mut Settings),
    ) -> Server {
        let mut server = Server::start_with(|s| {
            s.tls_cert_file = Some(cert);
            s.tls_key_file = Some(key);
            tweak(s);
        })
        .await;
        server.scheme = "https";
        server.http = self.reqwest();
        server
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Replaces a file the way deployment tools do: write beside it, then rename over it, so the
/// server never reads half a file.
pub fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).expect("write temp file");
    std::fs::rename(&tmp, path).expect("rename into place");
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// Opens TLS to `addr` for the name `localhost` with `config`.
pub async fn connect(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("tcp connects");
    TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake")
}

/// The common name of the certificate a server presented.
pub fn peer_cn(stream: &TlsStream<TcpStream>) -> String {
    let der = &stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("a certificate")[0];
    let text = String::from_utf8_lossy(der.as_ref()).into_owned();
    // Test CNs are ASCII "leaf-N"; finding it in the DER is enough to tell certificates apart.
    let at = text.find("leaf-").expect("a test leaf certificate");
    text[at..at + 6].to_string()
}
