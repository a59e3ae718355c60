//! Entry points for the fuzz targets in `fuzz/` and for the test that replays their corpus on
//! stable Rust, so both feed inputs to exactly the same code. Not part of the public API.
//!
//! Each takes arbitrary bytes and drives one parser that network or operator input reaches.
//! The HTTP ones go through the real router of a real [`App`], so a panic anywhere between the
//! extractor and the handler's answer shows. None may panic; a 500 is a finding too.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use futures_util::StreamExt;
use tower::ServiceExt;

use crate::App;
use crate::config::Settings;
use crate::http::sse::SlowReaderWatch;

/// One inbound WebSocket text message (SPEC §7), as the reader hands it to the parser.
pub fn inbound_message(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::wire::parse_inbound(text);
    }
}

/// A TOML configuration file, read and resolved as at start-up.
pub fn config_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(mut settings) = toml::from_str::<Settings>(text) {
        // A fuzzer must not make the process read files it names.
        settings.jwt_public_key_file = None;
        let _ = settings.resolve();
    }
}

/// A REST body: the first byte picks the route, the rest is the body.
pub fn rest_body(data: &[u8]) {
    let Some((&route, body)) = data.split_first() else {
        return;
    };
    let h = harness();
    let (path, bearer) = match route % 4 {
        0 => ("/api/publish", &h.admin_key),
        1 => ("/api/connections/fuzzer/session", &h.player_token),
        2 => ("/api/commands", &h.player_token),
        _ => ("/auth/dev-token", &h.player_token),
    };
    let req = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {bearer}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_vec()));
    if let Ok(req) = req {
        h.call(req);
    }
}

/// A stream request's query string and `Last-Event-ID` header, split at the first newline,
/// on SSE (a WebSocket needs a real upgrade; both share the same admission code).
pub fn stream_query(data: &[u8]) {
    let (query, last_event_id) = split(data);
    let h = harness();
    let Ok(query) = std::str::from_utf8(query) else {
        return;
    };
    let mut req = Request::builder()
        .uri(format!("/sse/fuzzer?{query}"))
        .header(header::AUTHORIZATION, format!("Bearer {}", h.player_token));
    if let Ok(value) = HeaderValue::from_bytes(last_event_id) {
        req = req.header("last-event-id", value);
    }
    if let Ok(req) = req.body(Body::empty()) {
        h.call(req);
    }
}

/// Credentials in every form: the first byte picks the form, the rest is the credential.
/// One form signs the rest as the claims of a valid token, so the claims' numbers are reached.
pub fn credentials(data: &[u8]) {
    let Some((&form, rest)) = data.split_first() else {
        return;
    };
    let h = harness();
    let mut req = Request::builder().uri("/api/connections/fuzzer");
    match form % 5 {
        0 => match HeaderValue::from_bytes(rest) {
            Ok(v) => req = req.header(header::AUTHORIZATION, v),
            Err(_) => return,
        },
        1 => match HeaderValue::from_bytes(rest) {
            // Read only on the WebSocket routes: checked through the same code directly.
            Ok(v) => {
                let mut headers = axum::http::HeaderMap::new();
                headers.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
                let query = crate::http::access::Query::parse(None);
                let _ = h.app.state().authenticate(
                    &headers,
                    &query,
                    crate::http::access::TokenPlaces::WebSocket,
                );
                return;
            }
            Err(_) => return,
        },
        2 => match std::str::from_utf8(rest) {
            Ok(q) => req = req.uri(format!("/api/connections/fuzzer?{q}")),
            Err(_) => return,
        },
        3 => match std::str::from_utf8(rest) {
            Ok(token) => match HeaderValue::from_str(&format!("Bearer {token}")) {
                Ok(v) => req = req.header(header::AUTHORIZATION, v),
                Err(_) => return,
            },
            Err(_) => return,
        },
        _ => {
            let Ok(claims) = serde_json::from_slice::<serde_json::Value>(rest) else {
                return;
            };
            let Some(token) = h.app.state().auth.sign_any(&claims) else {
                return;
            };
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
    }
    if let Ok(req) = req.body(Body::empty()) {
        h.call(req);
    }
}

/// The bytes a client sends on a new plain connection, served as the server serves them: the
/// first head read off the socket (`http1_head`), then an SSE stream or a WebSocket upgrade
/// answered there, each through the real router; anything else must be handed on with every
/// byte read. `TOKEN` in the input stands for a valid player token, so that seeds get past
/// authentication.
pub fn request_head(data: &[u8]) {
    use crate::http1_head::First;
    let h = harness();
    let data = replace_token(data, h.player_token.as_bytes());
    let peer = SocketAddr::from(([127, 0, 0, 1], 1));
    h.runtime.block_on(async {
        // What the client sent, then its end of file; whatever the server writes is dropped.
        let mut io = tokio::io::join(std::io::Cursor::new(data.clone()), tokio::io::sink());
        let Ok(first) = crate::http1_head::first_request(&mut io, 16 * 1024, 64).await else {
            return;
        };
        match first {
            First::Other(read) => assert!(data.starts_with(&read), "bytes were lost"),
            First::Sse(request) => {
                crate::sse_socket::serve(io, None, request, h.app.front(), peer, Duration::ZERO)
                    .await;
            }
            First::WebSocket(request) => {
                crate::ws_socket::serve(io, None, request, h.app.front(), peer).await;
            }
        }
        // An accepted WebSocket's task meets the end of file and ends.
        tokio::task::yield_now().await;
    });
    h.app.hub().sweep();
}

fn replace_token(data: &[u8], token: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut rest = data;
    while let Some(at) = rest.windows(5).position(|w| w == b"TOKEN") {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(token);
        rest = &rest[at + 5..];
    }
    out.extend_from_slice(rest);
    out
}

fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// One dev-mode server for the whole fuzzing process, never run: requests go straight to its
/// router.
struct Harness {
    runtime: tokio::runtime::Runtime,
    app: App,
    admin_key: String,
    player_token: String,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let settings = Settings {
            bind: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            connect_rate_per_ip: Some(u32::MAX),
            connect_burst_per_ip: Some(u32::MAX),
            connect_rate_per_player: Some(u32::MAX),
            connect_burst_per_player: Some(u32::MAX),
            command_rate_per_player: Some(u32::MAX),
            command_burst_per_player: Some(u32::MAX),
            // Players made by fuzzed publishes are forgotten at the next sweep.
            session_ttl_secs: Some(1),
            ..Settings::default()
        };
        let config = settings.resolve().expect("fuzzing settings are valid");
        let app = runtime
            .block_on(App::build(config))
            .expect("the fuzzing server builds");
        let admin_key = app.admin_keys()[0].clone();
        let player_token = app
            .mint_token("fuzzer", Duration::from_secs(86_400))
            .expect("dev mode mints tokens");
        Harness {
            runtime,
            app,
            admin_key,
            player_token,
        }
    })
}

impl Harness {
    /// Sends one request through the router and reads a little of the answer. A 500 means a
    /// handler failed in a way the SPEC never allows.
    fn call(&self, mut req: Request<Body>) {
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))));
        req.extensions_mut().insert(SlowReaderWatch::default());
        let router = self.app.front().router.clone();
        self.runtime.block_on(async {
            let res = router.oneshot(req).await.unwrap_or_else(|e| match e {});
            assert_ne!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
            // A stream answers with its opening events at once; a bounded wait covers both.
            let mut body = res.into_body().into_data_stream();
            let _ = tokio::time::timeout(Duration::from_millis(50), body.next()).await;
        });
        self.app.hub().sweep();
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// The stream target must get past admission, or fuzzing it would only test 401s.
    #[test]
    fn the_stream_target_opens_real_streams() {
        use std::sync::atomic::Ordering;
        let sse = || {
            super::harness()
                .app
                .hub()
                .counters
                .establishment(crate::hub::ConnKind::Sse)
                .count
                .load(Ordering::Relaxed)
        };
        let before = sse();
        super::stream_query(b"last_event_id=18446744073709551615");
        super::stream_query(b"\n9007199254740991");
        // At least: the corpus replay may open streams through the same harness meanwhile.
        assert!(
            sse() >= before + 2,
            "both streams opened and sent their first bytes"
        );
    }

    /// The head target must open real streams and WebSockets, or fuzzing it would only test
    /// refusals.
    #[test]
    fn the_head_target_opens_real_streams_and_websockets() {
        use std::sync::atomic::Ordering;
        let opened = |kind| {
            super::harness()
                .app
                .hub()
                .counters
                .establishment(kind)
                .count
                .load(Ordering::Relaxed)
        };
        let (ws, sse) = (crate::hub::ConnKind::WebSocket, crate::hub::ConnKind::Sse);
        let before = (opened(ws), opened(sse));
        super::request_head(
            b"GET /api/ws?token=TOKEN HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Version: 13\r\n\r\n",
        );
        super::request_head(b"GET /sse/fuzzer?token=TOKEN HTTP/1.1\r\nHost: x\r\n\r\n");
        // At least: the corpus replay may open more through the same harness meanwhile.
        assert!(opened(ws) > before.0, "the WebSocket was accepted");
        assert!(opened(sse) > before.1, "the stream opened");
    }

    /// Every committed corpus file through its target, on stable Rust, in every test run.
    #[test]
    fn the_fuzz_corpus_replays_cleanly() {
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
        type Target = fn(&[u8]);
        let targets: [(&str, Target); 6] = [
            ("inbound_message", super::inbound_message),
            ("config_toml", super::config_toml),
            ("rest_body", super::rest_body),
            ("stream_query", super::stream_query),
            ("credentials", super::credentials),
            ("request_head", super::request_head),
        ];
        for (name, target) in targets {
            let dir = corpus.join(name);
            let mut files = 0;
            for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir:?}: {e}")) {
                let path = entry.unwrap().path();
                target(&std::fs::read(&path).unwrap());
                files += 1;
            }
            assert!(files > 0, "{name} has a seed corpus");
        }
    }
}
