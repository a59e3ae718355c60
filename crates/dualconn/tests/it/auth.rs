//! Authentication, authorization, origins and the order of refusals (SPEC §1, §2, §12.14–16,
//! §12.20–22, §12.24), over real sockets against the real server.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::common::*;
use dualconn::App;
use dualconn::config::Settings;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, handshake::client::Request};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Checks the SPEC §2 error envelope and the status that goes with its type.
fn assert_envelope(what: &str, status: u16, body: &Value, want_status: u16, want_type: &str) {
    assert_eq!(status, want_status, "{what}: status; body {body}");
    assert_eq!(body["error"], true, "{what}: error flag in {body}");
    assert_eq!(
        body["error_type"], want_type,
        "{what}: error_type in {body}"
    );
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: message in {body}"
    );
    assert!(body["details"].is_object(), "{what}: details in {body}");
    let ts = body["timestamp"].as_str().unwrap_or_default();
    assert!(
        humantime::parse_rfc3339(ts).is_ok(),
        "{what}: timestamp {ts:?} is RFC 3339"
    );
}

/// One plain HTTP request; `bearer` goes in `Authorization`.
async fn call(
    server: &Server,
    method: Method,
    path: &str,
    bearer: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = server.http.request(method.clone(), server.url(path));
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    if method == Method::POST {
        req = req.json(&json!({}));
    }
    let res = within(req.send()).await.expect("request sent");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let text = within(res.text()).await.expect("body read");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, headers, body)
}

/// Where a WebSocket client puts its token.
#[derive(Clone, Copy, Debug)]
enum Place {
    Subprotocol,
    Authorization,
    Query,
}

fn ws_request(server: &Server, path: &str, token: Option<&str>, place: Place) -> Request {
    let url = match (token, place) {
        (Some(t), Place::Query) => {
            let sep = if path.contains('?') { '&' } else { '?' };
            server.ws_url(&format!("{path}{sep}token={t}"))
        }
        _ => server.ws_url(path),
    };
    let mut req = url.into_client_request().unwrap();
    match (token, place) {
        (Some(t), Place::Subprotocol) => {
            req.headers_mut().insert(
                "sec-websocket-protocol",
                HeaderValue::from_str(&format!("bearer, {t}")).unwrap(),
            );
        }
        (Some(t), Place::Authorization) => {
            req.headers_mut().insert(
                "authorization",
                HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
            );
        }
        _ => {}
    }
    req
}

/// A WebSocket handshake the server must refuse: its status, headers and JSON body.
async fn ws_refused(server: &Server, req: Request) -> (u16, tungstenite::http::HeaderMap, Value) {
    let uri = req.uri().to_string();
    match server.ws_request(req).await {
        Ok(_) => panic!("{uri}: the handshake was accepted"),
        Err(tungstenite::Error::Http(response)) => {
            let body = response.body().clone().unwrap_or_default();
            let body: Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
                panic!(
                    "{uri}: refused handshake body is not JSON ({e}): {:?}",
                    String::from_utf8_lossy(&body)
                )
            });
            (response.status().as_u16(), response.headers().clone(), body)
        }
        Err(e) => panic!("{uri}: expected an HTTP refusal, got {e:?}"),
    }
}

/// A WebSocket that must open; returns its `connected` event.
async fn ws_opens(server: &Server, req: Request) -> Value {
    let uri = req.uri().to_string();
    let mut ws = match server.ws_request(req).await {
        Ok(ws) => ws,
        Err(tungstenite::Error::Http(r)) => panic!(
            "{uri}: refused with {}: {:?}",
            r.status(),
            r.body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
        ),
        Err(e) => panic!("{uri}: {e:?}"),
    };
    let connected = ws.next_event().await;
    assert_eq!(connected["event_type"], "connected", "{uri}");
    connected
}

/// Opens an SSE stream with `?token=`; returns the response (status checked by the caller).
async fn sse_get(server: &Server, path: &str, token: &str) -> reqwest::Response {
    let sep = if path.contains('?') { '&' } else { '?' };
    within(
        server
            .http
            .get(server.url(&format!("{path}{sep}token={token}")))
            .send(),
    )
    .await
    .expect("request sent")
}

/// An SSE stream that must open; returns its `connected` event.
async fn sse_opens(server: &Server, path: &str, token: &str) -> Value {
    let res = sse_get(server, path, token).await;
    assert_eq!(res.status(), 200, "{path}: SSE opens");
    let mut sse = Sse::from_response(res);
    let connected = sse.next_event().await;
    assert_eq!(connected["event_type"], "connected", "{path}");
    connected
}

async fn sse_refused(server: &Server, path: &str, token: &str) -> (u16, Value) {
    let res = sse_get(server, path, token).await;
    let status = res.status().as_u16();
    (status, res.json().await.expect("a JSON error body"))
}

fn hs256(claims: Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

fn hour() -> u64 {
    now_secs() + 3600
}

// ---------------------------------------------------------------------------------------------
// 1. Every authentication and authorization failure, on every transport
// ---------------------------------------------------------------------------------------------

/// REST routes that need some credential, with the method to call them with.
const REST_ROUTES: [(&str, &str); 6] = [
    ("GET", "/api/connections/alice"),
    ("GET", "/api/connections/alice/session"),
    ("POST", "/api/connections/alice/session"),
    ("GET", "/api/connections/stats"),
    ("POST", "/api/publish"),
    ("POST", "/api/commands"),
];
const SSE_ROUTES: [&str; 2] = ["/sse/alice", "/api/events"];
const WS_ROUTES: [&str; 3] = ["/api/ws", "/api/ws/alice", "/ws/alice"];

#[tokio::test]
async fn every_bad_credential_is_401_with_the_envelope_on_rest_sse_and_websocket() {
    let server = Server::start().await;
    let expired = token_with(json!({"sub": "alice", "exp": now_secs() - 3600}));
    let other_key = hs256(
        json!({"sub": "alice", "exp": hour()}),
        b"another-secret-entirely-0123456789abcdef",
    );
    let cases: [(&str, Option<&str>, &str); 5] = [
        ("missing", None, "TOKEN_MISSING"),
        ("garbage", Some("garbage"), "TOKEN_INVALID"),
        ("three garbage parts", Some("a.b.c"), "TOKEN_INVALID"),
        ("expired", Some(&expired), "TOKEN_EXPIRED"),
        ("wrong key", Some(&other_key), "TOKEN_INVALID"),
    ];
    for (name, token, code) in cases {
        for (method, path) in REST_ROUTES {
            let (status, _, body) = call(&server, method.parse().unwrap(), path, token).await;
            let what = format!("{name} on {method} {path}");
            assert_envelope(&what, status, &body, 401, "authentication_error");
            assert_eq!(body["details"]["error_code"], code, "{what}");
        }
        for path in SSE_ROUTES {
            // The header and the query are both places for an SSE token.
            let (status, _, body) = call(&server, Method::GET, path, token).await;
            assert_envelope(
                &format!("{name} on SSE {path}"),
                status,
                &body,
                401,
                "authentication_error",
            );
            if let Some(t) = token {
                let (status, body) = sse_refused(&server, path, t).await;
                assert_envelope(
                    &format!("{name} in ?token= on SSE {path}"),
                    status,
                    &body,
                    401,
                    "authentication_error",
                );
            }
        }
        for path in WS_ROUTES {
            for place in [Place::Subprotocol, Place::Authorization, Place::Query] {
                let req = ws_request(&server, path, token, place);
                let (status, _, body) = ws_refused(&server, req).await;
                let what = format!("{name} in {place:?} on WS {path}");
                assert_envelope(&what, status, &body, 401, "authentication_error");
                assert_eq!(body["details"]["error_code"], code, "{what}");
                if token.is_none() {
                    break;
                }
            }
        }
    }
    // The control: the same routes with a good token are not refused for authentication.
    let good = server.token("alice");
    let (status, _, _) = call(&server, Method::GET, "/api/connections/alice", Some(&good)).await;
    assert_eq!(status, 200);
    sse_opens(&server, "/sse/alice", &good).await;
    for place in [Place::Subprotocol, Place::Authorization, Place::Query] {
        ws_opens(&server, ws_request(&server, "/api/ws", Some(&good), place)).await;
    }
}

#[tokio::test]
async fn a_player_is_403_on_another_players_resources_and_on_admin_routes() {
    let server = Server::start().await;
    let alice = server.token("alice");

    for (method, path) in [
        ("GET", "/api/connections/bob"),
        ("GET", "/api/connections/bob/session"),
        ("POST", "/api/connections/bob/session"),
        ("POST", "/api/publish"),
        ("GET", "/api/connections/stats"),
    ] {
        let (status, _, body) = call(&server, method.parse().unwrap(), path, Some(&alice)).await;
        assert_envelope(
            &format!("alice on {method} {path}"),
            status,
            &body,
            403,
            "authorization_error",
        );
    }
    let (status, body) = sse_refused(&server, "/sse/bob", &alice).await;
    assert_envelope(
        "alice on /sse/bob",
        status,
        &body,
        403,
        "authorization_error",
    );
    for path in ["/api/ws/bob", "/ws/bob"] {
        for place in [Place::Subprotocol, Place::Authorization, Place::Query] {
            let req = ws_request(&server, path, Some(&alice), place);
            let (status, _, body) = ws_refused(&server, req).await;
            assert_envelope(
                &format!("alice in {place:?} on WS {path}"),
                status,
                &body,
                403,
                "authorization_error",
            );
        }
    }

    // Refused means nothing happened: bob got no session from alice's POST.
    let (status, _, body) = call(
        &server,
        Method::GET,
        "/api/connections/bob/session",
        Some(ADMIN_KEY),
    )
    .await;
    assert_envelope("bob's session", status, &body, 404, "session_error");

    // The control: alice's own resources and streams are fine with the same token.
    for (method, path) in [
        ("GET", "/api/connections/alice"),
        ("POST", "/api/connections/alice/session"),
        ("GET", "/api/connections/alice/session"),
    ] {
        let (status, _, body) = call(&server, method.parse().unwrap(), path, Some(&alice)).await;
        assert_eq!(status, 200, "alice on {method} {path}: {body}");
    }
    sse_opens(&server, "/sse/alice", &alice).await;
    // The path's id is decoded before it is compared, on the path answered without the router
    // (an id as written) and on the one routed (an id with escapes) alike.
    sse_opens(&server, "/sse/al%69ce", &alice).await;
    let (status, body) = sse_refused(&server, "/sse/al%69ce%2F", &alice).await;
    assert_envelope("alice/ on SSE", status, &body, 403, "authorization_error");
    // No id is no route, on either path.
    let (status, body) = sse_refused(&server, "/sse/", &alice).await;
    assert_envelope("no id on SSE", status, &body, 404, "not_found_error");
    ws_opens(
        &server,
        ws_request(&server, "/api/ws/alice", Some(&alice), Place::Subprotocol),
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// 2. Admin credentials
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_admin_key_reaches_admin_routes_but_opens_no_player_stream() {
    let server = Server::start().await;
    for (method, path) in [
        ("GET", "/api/connections/stats"),
        ("GET", "/api/connections/alice"),
        ("POST", "/api/connections/alice/session"),
        ("GET", "/api/connections/alice/session"),
    ] {
        let (status, _, body) = call(&server, method.parse().unwrap(), path, Some(ADMIN_KEY)).await;
        assert_eq!(status, 200, "admin key on {method} {path}: {body}");
    }
    server.publish(&["alice"], "news", json!({})).await;
    // The key is compared exactly: a prefix or an extension of it is no key at all.
    for near in [&ADMIN_KEY[..ADMIN_KEY.len() - 1], &format!("{ADMIN_KEY}x")] {
        let (status, _, body) =
            call(&server, Method::GET, "/api/connections/stats", Some(near)).await;
        assert_envelope("near-miss key", status, &body, 401, "authentication_error");
    }

    for path in SSE_ROUTES.iter().chain(&["/sse/stats"]) {
        let (status, body) = sse_refused(&server, path, ADMIN_KEY).await;
        assert_envelope(
            &format!("admin key on {path}"),
            status,
            &body,
            403,
            "authorization_error",
        );
    }
    for path in WS_ROUTES {
        let req = ws_request(&server, path, Some(ADMIN_KEY), Place::Subprotocol);
        let (status, _, body) = ws_refused(&server, req).await;
        assert_envelope(
            &format!("admin key on WS {path}"),
            status,
            &body,
            403,
            "authorization_error",
        );
    }
    let (status, _, body) = call(&server, Method::POST, "/api/commands", Some(ADMIN_KEY)).await;
    assert_envelope(
        "admin key on commands",
        status,
        &body,
        403,
        "authorization_error",
    );
}

#[tokio::test]
async fn an_admin_jwt_uses_admin_routes_and_streams_only_as_its_own_sub() {
    let server = Server::start().await;
    let ops = token_with(json!({"sub": "ops", "exp": hour(), "role": "admin"}));
    for (method, path) in [
        ("GET", "/api/connections/stats"),
        ("GET", "/api/connections/alice"),
        ("POST", "/api/connections/alice/session"),
    ] {
        let (status, _, body) = call(&server, method.parse().unwrap(), path, Some(&ops)).await;
        assert_eq!(status, 200, "admin JWT on {method} {path}: {body}");
    }
    let res = server
        .post(
            "/api/publish",
            &ops,
            json!({"player_ids": ["alice"], "event_type": "news", "data": {}}),
        )
        .await;
    assert_eq!(res.status(), 200);

    let connected = ws_opens(
        &server,
        ws_request(&server, "/api/ws", Some(&ops), Place::Subprotocol),
    )
    .await;
    assert_eq!(connected["player_id"], "ops");
    assert_eq!(connected["data"]["player_id"], "ops");
    let connected = sse_opens(&server, "/api/events", &ops).await;
    assert_eq!(connected["player_id"], "ops");
    sse_opens(&server, "/sse/ops", &ops).await;

    let (status, body) = sse_refused(&server, "/sse/alice", &ops).await;
    assert_envelope(
        "admin JWT on /sse/alice",
        status,
        &body,
        403,
        "authorization_error",
    );
    for path in ["/api/ws/alice", "/ws/alice"] {
        let req = ws_request(&server, path, Some(&ops), Place::Subprotocol);
        let (status, _, body) = ws_refused(&server, req).await;
        assert_envelope(
            &format!("admin JWT on {path}"),
            status,
            &body,
            403,
            "authorization_error",
        );
    }

    // Any other role is a plain player.
    let mod_token = token_with(json!({"sub": "mod", "exp": hour(), "role": "moderator"}));
    let (status, _, body) = call(
        &server,
        Method::GET,
        "/api/connections/stats",
        Some(&mod_token),
    )
    .await;
    assert_envelope("role moderator", status, &body, 403, "authorization_error");
}

// ---------------------------------------------------------------------------------------------
// 3. Claims
// ---------------------------------------------------------------------------------------------

async fn status_of(server: &Server, token: &str) -> (u16, Value) {
    let (status, _, body) = call(server, Method::GET, "/api/connections/stats", Some(token)).await;
    (status, body)
}

#[tokio::test]
async fn exp_and_sub_are_required_and_sub_must_be_a_player_id() {
    let server = Server::start().await;
    let refused = [
        ("no exp", json!({"sub": "alice"})),
        (
            "exp not a number",
            json!({"sub": "alice", "exp": "tomorrow"}),
        ),
        ("no sub", json!({"exp": hour()})),
        ("empty sub", json!({"sub": "", "exp": hour()})),
        ("sub with a space", json!({"sub": "a b", "exp": hour()})),
        ("sub with a slash", json!({"sub": "../etc", "exp": hour()})),
        ("sub `stats`", json!({"sub": "stats", "exp": hour()})),
        (
            "sub too long",
            json!({"sub": "a".repeat(129), "exp": hour()}),
        ),
        ("sub not a string", json!({"sub": 42, "exp": hour()})),
        (
            "expired past the leeway",
            json!({"sub": "alice", "exp": now_secs() - 60}),
        ),
    ];
    for (name, claims) in refused {
        // Admin-role tokens, so that only authentication can refuse them.
        let mut claims = claims;
        claims["role"] = json!("admin");
        let token = token_with(claims);
        let (status, body) = status_of(&server, &token).await;
        assert_envelope(name, status, &body, 401, "authentication_error");
        let (status, body) = sse_refused(&server, "/api/events", &token).await;
        assert_envelope(name, status, &body, 401, "authentication_error");
    }
    let accepted = [
        (
            "a long id with every allowed character",
            json!({"sub": format!("A-z_0.9:x@y{}", "a".repeat(117)), "exp": hour()}),
        ),
        (
            "expired within the default 30 s leeway",
            json!({"sub": "alice", "exp": now_secs() - 5}),
        ),
        (
            "aud and iss are ignored when not configured",
            json!({"sub": "alice", "exp": hour(), "aud": "anyone", "iss": "anybody"}),
        ),
    ];
    for (name, mut claims) in accepted {
        claims["role"] = json!("admin");
        let (status, body) = status_of(&server, &token_with(claims)).await;
        assert_eq!(status, 200, "{name}: {body}");
    }
    let long = format!("A-z_0.9:x@y{}", "a".repeat(117));
    let token = token_with(json!({"sub": long, "exp": hour()}));
    let connected = sse_opens(&server, "/api/events", &token).await;
    assert_eq!(connected["player_id"], long.as_str());
}

#[tokio::test]
async fn audience_and_issuer_are_checked_when_configured() {
    let server = Server::start_with(|s| {
        s.jwt_audience = Some("game-players".into());
        s.jwt_issuer = Some("https://login.game.example".into());
    })
    .await;
    let base = || {
        json!({"sub": "alice", "exp": hour(), "role": "admin",
               "aud": "game-players", "iss": "https://login.game.example"})
    };
    let (status, body) = status_of(&server, &token_with(base())).await;
    assert_eq!(status, 200, "the right aud and iss: {body}");
    let mut listed = base();
    listed["aud"] = json!(["other-service", "game-players"]);
    let (status, body) = status_of(&server, &token_with(listed)).await;
    assert_eq!(status, 200, "aud as a list that names us: {body}");

    let mut cases = Vec::new();
    for (name, key, value) in [
        ("wrong aud", "aud", json!("other-service")),
        ("aud list without us", "aud", json!(["a", "b"])),
        ("wrong iss", "iss", json!("https://evil.example")),
    ] {
        let mut claims = base();
        claims[key] = value;
        cases.push((name, claims));
    }
    for (name, key) in [("no aud", "aud"), ("no iss", "iss")] {
        let mut claims = base();
        claims.as_object_mut().unwrap().remove(key);
        cases.push((name, claims));
    }
    for (name, claims) in cases {
        let token = token_with(claims);
        let (status, body) = status_of(&server, &token).await;
        assert_envelope(name, status, &body, 401, "authentication_error");
        let req = ws_request(&server, "/api/ws", Some(&token), Place::Subprotocol);
        let (status, _, body) = ws_refused(&server, req).await;
        assert_envelope(name, status, &body, 401, "authentication_error");
    }
    // The server's own tokens carry what it checks.
    let good = token_with(json!({"sub": "alice", "exp": hour(),
        "aud": "game-players", "iss": "https://login.game.example"}));
    ws_opens(
        &server,
        ws_request(&server, "/api/ws", Some(&good), Place::Subprotocol),
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// 4. RS256 and ES256 with a PEM public key
// ---------------------------------------------------------------------------------------------

/// A key pair in PEM: the private key in the form jsonwebtoken signs with, the public in SPKI.
struct Pair {
    private: Vec<u8>,
    public: Vec<u8>,
}

struct Keys {
    rsa: Pair,
    rsa_other: Pair,
    ec: Pair,
    ec_other: Pair,
}

/// Test-only key pairs, committed under `tests/fixtures/keys` so the tests need no `openssl`.
fn keys() -> &'static Keys {
    macro_rules! pair {
        ($name:literal) => {
            Pair {
                private: include_bytes!(concat!("../fixtures/keys/", $name, ".pem")).to_vec(),
                public: include_bytes!(concat!("../fixtures/keys/", $name, ".pub.pem")).to_vec(),
            }
        };
    }
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        rsa: pair!("rsa"),
        rsa_other: pair!("rsa-other"),
        ec: pair!("ec"),
        ec_other: pair!("ec-other"),
    })
}

fn scratch_dir(what: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!(
        "dualconn-auth-test-{what}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sign(alg: Algorithm, pair: &Pair, claims: Value) -> String {
    let key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pair.private).unwrap(),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pair.private).unwrap(),
        _ => unreachable!(),
    };
    jsonwebtoken::encode(&Header::new(alg), &claims, &key).unwrap()
}

/// A server that verifies with `public` only: no shared secret, so not in dev mode either.
async fn public_key_server(public: &[u8]) -> Server {
    let dir = scratch_dir("pub");
    let file = dir.join("public.pem");
    std::fs::write(&file, public).unwrap();
    let server = Server::start_with(|s| {
        s.jwt_secret = None;
        s.jwt_public_key_file = Some(file.clone());
    })
    .await;
    // The key is read when the settings resolve; the file is no longer needed.
    let _ = std::fs::remove_dir_all(&dir);
    server
}

async fn public_key_tokens_work(alg: Algorithm, ours: &Pair, theirs: &Pair, foreign: String) {
    let server = public_key_server(&ours.public).await;
    let claims = json!({"sub": "alice", "exp": hour()});
    let good = sign(alg, ours, claims.clone());
    let connected = ws_opens(
        &server,
        ws_request(&server, "/api/ws", Some(&good), Place::Subprotocol),
    )
    .await;
    assert_eq!(connected["player_id"], "alice");
    sse_opens(&server, "/sse/alice", &good).await;
    let (status, _, body) = call(&server, Method::GET, "/api/connections/alice", Some(&good)).await;
    assert_eq!(status, 200, "{alg:?}: {body}");
    let admin = sign(
        alg,
        ours,
        json!({"sub": "ops", "exp": hour(), "role": "admin"}),
    );
    assert_eq!(status_of(&server, &admin).await.0, 200, "{alg:?} admin JWT");
    // The admin key still works with a public-key server.
    assert_eq!(status_of(&server, ADMIN_KEY).await.0, 200);

    let refused = [
        ("signed by another key", sign(alg, theirs, claims.clone())),
        ("the other algorithm", foreign),
        (
            "HS256 with the shared test secret",
            token_with(claims.clone()),
        ),
        (
            // The classic confusion: the public key used as an HMAC secret.
            "HS256 keyed with our public key",
            hs256(claims.clone(), &ours.public),
        ),
        (
            "expired",
            sign(alg, ours, json!({"sub": "alice", "exp": now_secs() - 3600})),
        ),
    ];
    for (name, token) in refused {
        let what = format!("{alg:?}: {name}");
        let req = ws_request(&server, "/api/ws", Some(&token), Place::Subprotocol);
        let (status, _, body) = ws_refused(&server, req).await;
        assert_envelope(&what, status, &body, 401, "authentication_error");
        let (status, body) = sse_refused(&server, "/sse/alice", &token).await;
        assert_envelope(&what, status, &body, 401, "authentication_error");
        let (status, _, body) =
            call(&server, Method::GET, "/api/connections/alice", Some(&token)).await;
        assert_envelope(&what, status, &body, 401, "authentication_error");
    }
    // A configured key is not dev mode.
    let (status, _, body) = call(&server, Method::POST, "/auth/dev-token", None).await;
    assert_envelope(
        "dev-token with a public key",
        status,
        &body,
        404,
        "not_found_error",
    );
}

#[tokio::test]
async fn rs256_tokens_verify_against_a_pem_public_key() {
    let k = keys();
    let foreign = sign(
        Algorithm::ES256,
        &k.ec,
        json!({"sub": "alice", "exp": hour()}),
    );
    public_key_tokens_work(Algorithm::RS256, &k.rsa, &k.rsa_other, foreign).await;
}

#[tokio::test]
async fn es256_tokens_verify_against_a_pem_public_key() {
    let k = keys();
    let foreign = sign(
        Algorithm::RS256,
        &k.rsa,
        json!({"sub": "alice", "exp": hour()}),
    );
    public_key_tokens_work(Algorithm::ES256, &k.ec, &k.ec_other, foreign).await;
}

// ---------------------------------------------------------------------------------------------
// 5. Dev mode
// ---------------------------------------------------------------------------------------------

fn dev_settings() -> Settings {
    Settings {
        jwt_secret: None,
        admin_keys: None,
        ..base_settings()
    }
}

#[tokio::test]
async fn dev_mode_mints_tokens_that_open_streams() {
    let app = App::build(dev_settings().resolve().unwrap()).await.unwrap();
    let random_key = app.admin_keys().to_vec();
    assert_eq!(random_key.len(), 1, "dev mode makes one random admin key");
    let server = Server::from_app(app);

    let res = server
        .http
        .post(server.url("/auth/dev-token"))
        .json(&json!({"player_id": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 3600);
    let token = body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();

    let connected = ws_opens(
        &server,
        ws_request(&server, "/api/ws", Some(&token), Place::Subprotocol),
    )
    .await;
    assert_eq!(connected["player_id"], "x");
    sse_opens(&server, "/sse/x", &token).await;
    // It is a player token for x, nothing more.
    let (status, body) = sse_refused(&server, "/sse/y", &token).await;
    assert_envelope(
        "dev token on /sse/y",
        status,
        &body,
        403,
        "authorization_error",
    );
    let (status, body) = status_of(&server, &token).await;
    assert_envelope(
        "dev token on stats",
        status,
        &body,
        403,
        "authorization_error",
    );

    // The random secret is nobody's: a token signed with the test secret is refused.
    let (status, body) = sse_refused(&server, "/sse/x", &server.token("x")).await;
    assert_envelope(
        "foreign token in dev mode",
        status,
        &body,
        401,
        "authentication_error",
    );
    // The random admin key works; the harness's key was not configured here.
    assert_eq!(status_of(&server, &random_key[0]).await.0, 200);
    let (status, body) = status_of(&server, ADMIN_KEY).await;
    assert_envelope(
        "unconfigured key",
        status,
        &body,
        401,
        "authentication_error",
    );

    for bad in [
        json!({"player_id": "a b"}),
        json!({"player_id": "stats"}),
        json!({}),
    ] {
        let res = server
            .http
            .post(server.url("/auth/dev-token"))
            .json(&bad)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap();
        assert_envelope(
            &format!("dev-token {bad}"),
            status,
            &body,
            400,
            "validation_error",
        );
    }
}

#[tokio::test]
async fn with_a_secret_there_is_no_dev_token_route() {
    let server = Server::start().await;
    for bearer in [None, Some(ADMIN_KEY)] {
        let res = server.http.post(server.url("/auth/dev-token"));
        let res = match bearer {
            Some(b) => res.bearer_auth(b),
            None => res,
        };
        let res = res.json(&json!({"player_id": "x"})).send().await.unwrap();
        let status = res.status().as_u16();
        let body: Value = res.json().await.expect("a JSON 404, not an empty body");
        assert_envelope(
            "dev-token with a secret",
            status,
            &body,
            404,
            "not_found_error",
        );
    }
}

#[tokio::test]
async fn in_dev_mode_a_configured_admin_key_replaces_the_random_one() {
    let settings = Settings {
        admin_keys: Some(ADMIN_KEY.into()),
        ..dev_settings()
    };
    let app = App::build(settings.resolve().unwrap()).await.unwrap();
    assert_eq!(app.admin_keys(), [ADMIN_KEY], "no random key beside it");
    let server = Server::from_app(app);
    assert_eq!(status_of(&server, ADMIN_KEY).await.0, 200);
    // Still dev mode: the route is there.
    let res = server
        .http
        .post(server.url("/auth/dev-token"))
        .json(&json!({"player_id": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

// ---------------------------------------------------------------------------------------------
// 6. Token expiry on an open connection
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_expiring_token_ends_both_transports_with_token_expired() {
    let server = Server::start_with(|s| s.jwt_leeway_secs = Some(0)).await;
    let exp = now_secs() + 2;
    let token = token_with(json!({"sub": "alice", "exp": exp}));
    let mut ws = server.ws_at("/api/ws", &token).await.expect("opens");
    assert_eq!(ws.next_event().await["event_type"], "connected");
    let mut sse = Sse::from_response(sse_get(&server, "/sse/alice", &token).await);
    assert_eq!(sse.next_event().await["event_type"], "connected");

    let expired_ms = |event: &Value| {
        let at = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        assert!(
            at.as_millis() + 50 >= u128::from(exp) * 1000,
            "token_expired came before exp: {event}"
        );
    };

    let event = ws.next_event().await;
    expired_ms(&event);
    assert_eq!(event["event_type"], "token_expired");
    assert_eq!(event["player_id"], "alice");
    assert_eq!(event["data"], json!({}));
    assert!(event.get("sequence_number").is_none(), "connection-local");
    let (after, ending) = ws.until_close().await;
    assert!(after.is_empty(), "nothing after token_expired: {after:?}");
    assert_eq!(close_code(&ending), Some(1008), "{ending:?}");

    let event = sse.next().await.expect("token_expired on SSE");
    assert_eq!(event.json["event_type"], "token_expired");
    assert_eq!(event.id, "", "connection-local events carry no id");
    assert!(sse.next().await.is_none(), "the SSE stream ends");

    // The same token can no longer open anything; a fresh one can.
    let req = ws_request(&server, "/api/ws", Some(&token), Place::Subprotocol);
    let (status, _, body) = ws_refused(&server, req).await;
    assert_envelope("expired token", status, &body, 401, "authentication_error");
    assert_eq!(body["details"]["error_code"], "TOKEN_EXPIRED");
    server.ws("alice", "").await.next_event().await;
}

/// SPEC §12.26: a correctly signed token whose time claims are as large as JSON allows. One
/// whose `exp` no clock represents is 401 with the envelope on every transport, never a cut
/// connection; one far off but representable (2^53 s) opens streams that work.
#[tokio::test]
async fn signed_tokens_with_huge_exp_iat_and_nbf_are_answered_not_panicked_on() {
    let server = Server::start_with(|s| s.jwt_leeway_secs = Some(60)).await;
    let max = u64::MAX;
    for claims in [
        json!({"sub": "alice", "exp": max, "iat": max, "nbf": max}),
        json!({"sub": "alice", "exp": max - 60, "iat": max}),
        json!({"sub": "alice", "exp": 1e300, "nbf": 1e300}),
    ] {
        let token = token_with(claims.clone());
        let what = claims.to_string();
        let req = ws_request(&server, "/api/ws", Some(&token), Place::Subprotocol);
        let (status, _, body) = ws_refused(&server, req).await;
        assert_envelope(&what, status, &body, 401, "authentication_error");
        let (status, body) = sse_refused(&server, "/sse/alice", &token).await;
        assert_envelope(&what, status, &body, 401, "authentication_error");
        let (status, body) = status_of(&server, &token).await;
        assert_envelope(&what, status, &body, 401, "authentication_error");
    }
    let far = 1u64 << 53;
    let token = token_with(json!({"sub": "alice", "exp": far, "iat": far, "nbf": far}));
    let mut ws = server.ws_at("/api/ws", &token).await.expect("opens");
    assert_eq!(ws.next_event().await["event_type"], "connected");
    let mut sse = Sse::from_response(sse_get(&server, "/sse/alice", &token).await);
    assert_eq!(sse.next_event().await["event_type"], "connected");
    server.publish(&["alice"], "tick", json!({})).await;
    assert_eq!(ws.next_event().await["event_type"], "tick");
    assert_eq!(sse.next_event().await["event_type"], "tick");
}

// ---------------------------------------------------------------------------------------------
// 7. Cross-origin use
// ---------------------------------------------------------------------------------------------

async fn preflight(
    server: &Server,
    path: &str,
    origin: &str,
    method: &str,
    headers: &str,
) -> reqwest::Response {
    within(
        server
            .http
            .request(Method::OPTIONS, server.url(path))
            .header("origin", origin)
            .header("access-control-request-method", method)
            .header("access-control-request-headers", headers)
            .send(),
    )
    .await
    .unwrap()
}

fn header_list(res: &reqwest::Response, name: &str) -> String {
    res.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_ascii_lowercase())
        .unwrap_or_default()
}

fn ws_with_origin(server: &Server, token: &str, origin: &str) -> Request {
    let mut req = ws_request(server, "/api/ws", Some(token), Place::Subprotocol);
    req.headers_mut()
        .insert("origin", HeaderValue::from_str(origin).unwrap());
    req
}

#[tokio::test]
async fn configured_origins_get_cors_and_websockets_and_others_do_not() {
    const GAME: &str = "https://game.example";
    const EVIL: &str = "https://evil.example";
    let server = Server::start_with(|s| s.allowed_origins = Some(GAME.into())).await;

    for (path, method, headers) in [
        ("/api/publish", "POST", "authorization, content-type"),
        ("/sse/x", "GET", "last-event-id"),
        ("/api/connections/x/session", "POST", "authorization"),
    ] {
        let res = preflight(&server, path, GAME, method, headers).await;
        assert!(res.status().is_success(), "{path}: {}", res.status());
        assert_eq!(res.headers()["access-control-allow-origin"], GAME, "{path}");
        assert!(
            header_list(&res, "access-control-allow-methods").contains(&method.to_lowercase()),
            "{path}: {:?}",
            res.headers()
        );
        for h in headers.split(", ") {
            assert!(
                header_list(&res, "access-control-allow-headers").contains(h),
                "{path}: {h} in {:?}",
                res.headers()
            );
        }

        let res = preflight(&server, path, EVIL, method, headers).await;
        assert!(
            res.headers().get("access-control-allow-origin").is_none(),
            "{path}: no CORS grant for another origin: {:?}",
            res.headers()
        );
    }

    // A browser can read the error of a refused cross-origin SSE request.
    let res = within(
        server
            .http
            .get(server.url("/sse/x"))
            .header("origin", GAME)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["access-control-allow-origin"], GAME);

    let token = server.token("x");
    let (status, _, body) = ws_refused(&server, ws_with_origin(&server, &token, EVIL)).await;
    assert_envelope("WS from evil", status, &body, 403, "authorization_error");
    // A WebSocket refused to a listed origin carries its grant, as every route's answer does:
    // with origins configured, `/api/ws` goes through the router's CORS layer too.
    let (status, headers, body) =
        ws_refused(&server, ws_with_origin(&server, "not-a-token", GAME)).await;
    assert_envelope("WS bad token", status, &body, 401, "authentication_error");
    assert_eq!(headers["access-control-allow-origin"], GAME);
    ws_opens(&server, ws_with_origin(&server, &token, GAME)).await;
    // Case and a trailing slash do not matter to an origin.
    ws_opens(
        &server,
        ws_with_origin(&server, &token, "HTTPS://Game.Example/"),
    )
    .await;
    // SPEC §12.24: the server's own pages are same-origin and always work.
    let own = format!("http://{}", server.addr);
    ws_opens(&server, ws_with_origin(&server, &token, &own)).await;
    // Non-browser clients send no Origin.
    ws_opens(
        &server,
        ws_request(&server, "/api/ws", Some(&token), Place::Subprotocol),
    )
    .await;
}

#[tokio::test]
async fn by_default_only_the_servers_own_origin_may_open_a_websocket() {
    let server = Server::start().await;
    let token = server.token("x");
    let port = server.addr.port();
    for origin in [
        "https://evil.example".to_owned(),
        format!("http://localhost:{port}"),
        format!("http://127.0.0.1:{}", port.wrapping_add(1)),
        "null".to_owned(),
    ] {
        let (status, _, body) = ws_refused(&server, ws_with_origin(&server, &token, &origin)).await;
        assert_envelope(
            &format!("WS from {origin}"),
            status,
            &body,
            403,
            "authorization_error",
        );
    }
    ws_opens(
        &server,
        ws_with_origin(&server, &token, &format!("http://127.0.0.1:{port}")),
    )
    .await;
    // And no CORS grants at all.
    let res = preflight(
        &server,
        "/api/publish",
        "https://evil.example",
        "POST",
        "authorization",
    )
    .await;
    assert!(res.headers().get("access-control-allow-origin").is_none());
}

// ---------------------------------------------------------------------------------------------
// 8. Precedence
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_per_ip_limit_comes_before_authentication() {
    let server = Server::start_with(|s| {
        s.connect_rate_per_ip = Some(1);
        s.connect_burst_per_ip = Some(1);
    })
    .await;
    // The first attempt spends the one token in the bucket and is judged on its credential.
    let (status, _, body) = call(&server, Method::GET, "/sse/alice", None).await;
    assert_envelope("first attempt", status, &body, 401, "authentication_error");
    // The second, on the other transport (the buckets are shared), is 429 before anything else.
    let req = ws_request(&server, "/api/ws", None, Place::Subprotocol);
    let (status, headers, body) = ws_refused(&server, req).await;
    assert_envelope("second attempt", status, &body, 429, "rate_limit_error");
    let retry: u64 = headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in whole seconds");
    assert!((1..=2).contains(&retry), "Retry-After {retry}");

    // An unknown route is 404 whatever the credentials, even for a limited client.
    for path in [
        "/api/nope",
        "/sse",
        "/api/connections/alice/extra",
        "/api/ws/a/b",
    ] {
        for bearer in [None, Some("garbage"), Some(ADMIN_KEY)] {
            let (status, _, body) = call(&server, Method::GET, path, bearer).await;
            assert_envelope(
                &format!("{path} with {bearer:?}"),
                status,
                &body,
                404,
                "not_found_error",
            );
        }
    }
}

#[tokio::test]
async fn wrong_methods_are_405_and_checks_run_in_the_spec_order() {
    let server = Server::start().await;
    let alice = server.token("alice");
    for (method, path) in [
        (Method::GET, "/api/publish"),
        (Method::DELETE, "/api/publish"),
        (Method::PUT, "/api/connections/alice/session"),
        (Method::POST, "/api/connections/stats"),
        (Method::POST, "/sse/alice"),
    ] {
        for bearer in [ADMIN_KEY, &alice] {
            let (status, _, body) = call(&server, method.clone(), path, Some(bearer)).await;
            assert_envelope(
                &format!("{method} {path}"),
                status,
                &body,
                405,
                "validation_error",
            );
        }
    }

    // 401 before 403 before 400, on streams and on REST.
    let (status, _, body) = call(&server, Method::GET, "/sse/bob?last_event_id=x", None).await;
    assert_envelope(
        "no token, bad cursor",
        status,
        &body,
        401,
        "authentication_error",
    );
    let (status, body) = sse_refused(&server, "/sse/bob?last_event_id=x", &alice).await;
    assert_envelope(
        "other player, bad cursor",
        status,
        &body,
        403,
        "authorization_error",
    );
    let (status, body) = sse_refused(&server, "/sse/alice?last_event_id=x", &alice).await;
    assert_envelope(
        "own stream, bad cursor",
        status,
        &body,
        400,
        "validation_error",
    );
    let (status, _, body) = ws_refused(
        &server,
        ws_with_origin(&server, "garbage", "https://evil.example"),
    )
    .await;
    assert_envelope(
        "bad token, bad origin",
        status,
        &body,
        401,
        "authentication_error",
    );

    let bad_id = "/api/connections/bad%20id";
    let (status, _, body) = call(&server, Method::GET, bad_id, None).await;
    assert_envelope(
        "bad id, no token",
        status,
        &body,
        401,
        "authentication_error",
    );
    let (status, _, body) = call(&server, Method::GET, bad_id, Some(&alice)).await;
    assert_envelope("bad id, player", status, &body, 403, "authorization_error");
    let (status, _, body) = call(&server, Method::GET, bad_id, Some(ADMIN_KEY)).await;
    assert_envelope("bad id, admin", status, &body, 400, "validation_error");

    // A publish with an invalid body is judged on its credential first.
    let res = within(
        server
            .http
            .post(server.url("/api/publish"))
            .bearer_auth(&alice)
            .body("{not json")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 403);
}
