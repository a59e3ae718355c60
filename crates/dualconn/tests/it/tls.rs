//! The listener over TLS: the REST API and SSE over HTTP/2, WebSocket over HTTP/1.1, the
//! certificate reloaded without a restart, and a handshake that cannot hold a slot.

use std::time::Duration;

use crate::common::pki::{self, TestCa};
use crate::common::*;
use futures_util::StreamExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

#[tokio::test]
async fn rest_sse_and_websocket_work_over_tls() {
    let ca = TestCa::new();
    let server = ca.server(|_| {}).await;

    let live = server.get("/health/live", ADMIN_KEY).await;
    assert_eq!(live.status(), 200);
    assert_eq!(
        live.version(),
        reqwest::Version::HTTP_2,
        "a client offering h2 gets it"
    );

    let mut sse = server.sse("alice", "").await;
    assert_eq!(sse.next_event().await["data"]["connection_type"], "sse");

    // A WebSocket client offers only http/1.1, as browsers do for wss://.
    let tls = pki::connect(server.addr, ca.client(&[b"http/1.1"])).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let mut req = format!("wss://localhost:{}/api/ws", server.addr.port())
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_str(&format!("bearer, {}", server.token("alice"))).unwrap(),
    );
    let (mut ws, _) = within(tokio_tungstenite::client_async(req, tls))
        .await
        .expect("wss opens");
    let connected = next_ws_event(&mut ws).await;
    assert_eq!(connected["data"]["connection_type"], "websocket");

    let published = server
        .publish(&["alice"], "chat", json!({"text": "over tls"}))
        .await;
    assert_eq!(published["events"][0]["connections"], 2);
    let over_ws = next_ws_event(&mut ws).await;
    let over_sse = sse.next_event().await;
    assert_eq!(over_ws, over_sse);
    assert_eq!(over_ws["data"]["text"], "over tls");

    // A REST error keeps its JSON envelope over HTTP/2.
    let missing = server.get("/api/nope", ADMIN_KEY).await;
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["error"], true);
    assert_eq!(body["error_type"], "not_found_error");
}

#[tokio::test]
async fn an_rsa_key_in_pkcs1_form_serves_too() {
    let ca = TestCa::new();
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keys");
    // The same RSA key twice: PKCS#8 for the test CA to certify, PKCS#1 for the server to load.
    let pkcs8 = std::fs::read_to_string(fixtures.join("rsa.pk8.pem")).unwrap();
    let key = rcgen::KeyPair::from_pem(&pkcs8).expect("an RSA key rcgen can certify");
    let cert = ca.dir.join("rsa-cert.pem");
    pki::replace(&cert, ca.issue_for("leaf-9", &key).as_bytes());
    let server = ca.server_on(cert, fixtures.join("rsa.pem"), |_| {}).await;

    let tls = pki::connect(server.addr, ca.client(&[b"h2"])).await;
    assert_eq!(pki::peer_cn(&tls), "leaf-9");
    let live = server.get("/health/live", ADMIN_KEY).await;
    assert_eq!(live.status(), 200);
}

#[tokio::test]
async fn plain_http_to_a_tls_listener_gets_no_http_answer() {
    let ca = TestCa::new();
    let server = ca.server(|_| {}).await;
    let plain = reqwest::Client::new()
        .get(format!("http://{}/health/live", server.addr))
        .send()
        .await;
    assert!(plain.is_err(), "the listener serves HTTPS only");
}

#[tokio::test]
async fn tls_1_2_is_accepted_and_the_server_prefers_1_3() {
    let ca = TestCa::new();
    let server = ca.server(|_| {}).await;
    let modern = pki::connect(server.addr, ca.client(&[])).await;
    assert_eq!(
        modern.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der()).unwrap();
    let only_12 = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let older = pki::connect(server.addr, std::sync::Arc::new(only_12)).await;
    assert_eq!(
        older.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
}

#[tokio::test(start_paused = true)]
async fn a_client_stalled_mid_handshake_is_cut_off() {
    let ca = TestCa::new();
    let server = ca.server(|_| {}).await;
    let mut stalled = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    // The first bytes of a ClientHello record, and then nothing.
    stalled.write_all(&[0x16, 0x03, 0x01, 0x02]).await.unwrap();
    let started = tokio::time::Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(120), stalled.read(&mut buf))
        .await
        .expect("the server hangs up by itself");
    assert!(matches!(read, Ok(0) | Err(_)), "closed, not answered");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(10) && waited < Duration::from_secs(30),
        "cut off after the handshake bound, took {waited:?}"
    );
}

#[tokio::test]
async fn a_stalled_handshake_does_not_block_other_clients() {
    let ca = TestCa::new();
    let server = ca.server(|_| {}).await;
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        s.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
        stalled.push(s);
    }
    let live = server.get("/health/live", ADMIN_KEY).await;
    assert_eq!(live.status(), 200);
}

#[tokio::test]
async fn a_new_certificate_is_served_without_a_restart_and_a_bad_one_is_refused() {
    let ca = TestCa::new();
    let server = ca.server(|_| {}).await;
    let client = ca.client(&[b"http/1.1"]);
    let before = pki::connect(server.addr, client.clone()).await;
    assert_eq!(pki::peer_cn(&before), "leaf-1");

    // A renewal: both files replaced. New handshakes get it once the server notices.
    ca.write("leaf-2");
    within(async {
        loop {
            let s = pki::connect(server.addr, client.clone()).await;
            if pki::peer_cn(&s) == "leaf-2" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;

    // A broken renewal: a certificate that does not match the key in place.
    let (other_cert, _) = ca.issue("leaf-3");
    pki::replace(&ca.dir.join("cert.pem"), other_cert.as_bytes());
    within(async {
        loop {
            if metric(&server, "dualconn_tls_reloads_total{outcome=\"refused\"}").await >= 1.0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let after = pki::connect(server.addr, client.clone()).await;
    assert_eq!(pki::peer_cn(&after), "leaf-2", "the good certificate stays");
    assert!(metric(&server, "dualconn_tls_reloads_total{outcome=\"loaded\"}").await >= 1.0);

    // Garbage is refused too, and the server keeps serving.
    pki::replace(&ca.dir.join("cert.pem"), b"not a certificate");
    within(async {
        loop {
            if metric(&server, "dualconn_tls_reloads_total{outcome=\"refused\"}").await >= 2.0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let still = pki::connect(server.addr, client).await;
    assert_eq!(pki::peer_cn(&still), "leaf-2");
    drop(before);
}

#[cfg(unix)]
#[tokio::test]
async fn sighup_reloads_the_certificate_even_when_the_files_look_unchanged() {
    // Held for the whole test, so SIGHUP can never take the default action (ending the process).
    let _hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).unwrap();
    let ca = TestCa::new();
    let (cert, key) = ca.write_indistinguishable("leaf-1");
    let mut server = Server::start_with(|s| {
        s.tls_cert_file = Some(cert);
        s.tls_key_file = Some(key);
    })
    .await;
    server.scheme = "https";
    server.http = ca.reqwest();
    let client = ca.client(&[]);
    assert_eq!(
        pki::peer_cn(&pki::connect(server.addr, client.clone()).await),
        "leaf-1"
    );

    // Same sizes, same times: only the signal can make the server read them again.
    ca.write_indistinguishable("leaf-2");
    // SAFETY: kill(2) on our own pid with a signal this test handles.
    assert_eq!(unsafe { libc::kill(libc::getpid(), libc::SIGHUP) }, 0);
    within(async {
        loop {
            let s = pki::connect(server.addr, client.clone()).await;
            if pki::peer_cn(&s) == "leaf-2" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_server_will_not_start_on_a_key_that_does_not_match() {
    let ca = TestCa::new();
    let (cert, _) = ca.write("leaf-1");
    let (_, other_key) = ca.issue("leaf-2");
    let key = ca.dir.join("other-key.pem");
    std::fs::write(&key, other_key).unwrap();
    let mut settings = base_settings();
    settings.tls_cert_file = Some(cert);
    settings.tls_key_file = Some(key);
    let built = dualconn::App::build(settings.resolve().unwrap()).await;
    let error = built.err().expect("refused").to_string();
    assert!(error.contains("TLS"), "{error}");

    let mut half = base_settings();
    half.tls_cert_file = Some(ca.dir.join("cert.pem"));
    assert!(
        half.resolve().is_err(),
        "a certificate without a key is refused"
    );
}

async fn metric(server: &Server, line_start: &str) -> f64 {
    let text = server
        .get("/metrics", ADMIN_KEY)
        .await
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn next_ws_event<S>(ws: &mut S) -> serde_json::Value
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match within(ws.next()).await {
            Some(Ok(Message::Text(text))) => {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                if v["event_type"] != "heartbeat" {
                    return v;
                }
            }
            Some(Ok(_)) => {}
            other => panic!("expected an event, got {other:?}"),
        }
    }
}
