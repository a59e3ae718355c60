//! What a game backend moving onto dualconn relies on (issue 11): the player claim, the connect
//! webhook, the old paths, credentialed CORS, and refusals an operator can see (counted in
//! `/metrics`, logged by the binary).

use std::sync::Arc;

use crate::common::*;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use parking_lot::Mutex;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

/// A GET with no `Authorization` header, so that `?token=` is what counts.
async fn raw(server: &Server, path: &str) -> reqwest::Response {
    within(server.http.get(server.url(path)).send())
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// The player claim (SPEC §12.28)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_configured_claim_names_the_player_and_sub_is_left_to_the_game() {
    let server = Server::start_with(|s| s.jwt_player_claim = Some("player_id".into())).await;
    let exp = now_secs() + 3600;
    let token = token_with(json!({"sub": "user-1", "player_id": "knight", "exp": exp}));

    let mut ws = server.ws_at("/api/ws", &token).await.expect("ws opens");
    let connected = ws.next_event().await;
    assert_eq!(connected["data"]["player_id"], "knight");
    let res = raw(&server, &format!("/sse/knight?token={token}")).await;
    assert_eq!(res.status(), 200);
    let mut sse = Sse::from_response(res);
    assert_eq!(sse.next_event().await["data"]["player_id"], "knight");

    // Publishing to the player reaches it; the user id is nobody.
    server.publish(&["knight"], "chat", json!({"n": 1})).await;
    assert_eq!(ws.next_event().await["event_type"], "chat");
    let wrong = raw(&server, &format!("/sse/user-1?token={token}")).await;
    assert_eq!(wrong.status(), 403);

    // Everything SPEC says of `sub` now holds for the claim: it must be there and valid.
    for (claims, why) in [
        (json!({"sub": "knight", "exp": exp}), "no player claim"),
        (json!({"player_id": "a b", "exp": exp}), "an invalid id"),
        (json!({"player_id": "stats", "exp": exp}), "a reserved id"),
        (json!({"player_id": {"id": 1}, "exp": exp}), "not a string"),
    ] {
        let res = server.get("/api/events", &token_with(claims)).await;
        assert_eq!(res.status(), 401, "{why}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["details"]["error_code"], "TOKEN_INVALID", "{why}");
    }
    // Numeric ids, common in games' tokens, are the player's decimal id.
    let numbered = token_with(json!({"player_id": 42, "exp": exp}));
    let mut ws = server.ws_at("/api/ws", &numbered).await.expect("ws opens");
    assert_eq!(ws.next_event().await["data"]["player_id"], "42");
}

#[tokio::test]
async fn by_default_the_claim_is_sub_and_a_number_there_is_still_refused() {
    let server = Server::start().await;
    let exp = now_secs() + 3600;
    let res = server
        .get("/api/events", &token_with(json!({"sub": 42, "exp": exp})))
        .await;
    assert_eq!(res.status(), 401);
    let res = server
        .get(
            "/api/events",
            &token_with(json!({"player_id": "knight", "exp": exp})),
        )
        .await;
    assert_eq!(
        res.status(),
        401,
        "without the setting, player_id is not read"
    );
}

// ---------------------------------------------------------------------------------------------
// The connect webhook
// ---------------------------------------------------------------------------------------------

const HOOK_SECRET: &str = "connect-hook-secret";

/// A game backend on a real socket: it checks the signature, records what it was sent, and
/// answers by the token it got.
#[derive(Clone, Default)]
struct GameBackend {
    seen: Arc<Mutex<Vec<Value>>>,
}

impl GameBackend {
    async fn start(&self) -> String {
        async fn connect(
            axum::extract::State(b): axum::extract::State<GameBackend>,
            headers: HeaderMap,
            body: Bytes,
        ) -> (StatusCode, String) {
            let expected = dualconn::commands::webhook::signature(HOOK_SECRET.as_bytes(), &body);
            if headers
                .get("x-dualconn-signature")
                .and_then(|v| v.to_str().ok())
                != Some(expected.as_str())
            {
                return (StatusCode::BAD_REQUEST, "bad signature".into());
            }
            let json: Value = serde_json::from_slice(&body).unwrap();
            b.seen.lock().push(json.clone());
            let token = json["token"].as_str().unwrap_or("");
            match token {
                "x-refuse" => (StatusCode::UNAUTHORIZED, "no".into()),
                "x-banned" => (StatusCode::FORBIDDEN, "no".into()),
                "x-crash" => (StatusCode::INTERNAL_SERVER_ERROR, "boom".into()),
                "x-garbage" => (StatusCode::OK, "<html>".into()),
                "x-wrong-id" => (StatusCode::OK, json!({"player_id": "a b"}).to_string()),
                "x-expired" => (
                    StatusCode::OK,
                    json!({"player_id": "p", "expires_at": 1_000_000}).to_string(),
                ),
                "x-hang" => std::future::pending().await,
                _ => match token.strip_prefix("game-") {
                    Some(player) => (
                        StatusCode::OK,
                        json!({
                            "player_id": player,
                            "expires_at": now_secs() + 600,
                            "events": [
                                {"event_type": "game_state", "data": {"hp": 10}},
                                {"event_type": "room_update", "room_id": "hall",
                                 "data": {"line": "two\nlines"}},
                            ],
                        })
                        .to_string(),
                    ),
                    None => match json["cookie"].as_str() {
                        Some("sid=cookie-player") => (
                            StatusCode::OK,
                            json!({"player_id": "from-cookie"}).to_string(),
                        ),
                        _ => (StatusCode::UNAUTHORIZED, "unknown".into()),
                    },
                },
            }
        }
        let app = axum::Router::new()
            .route("/connect", post(connect))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}/connect")
    }

    fn calls(&self) -> usize {
        self.seen.lock().len()
    }
}

async fn hooked_server(backend: &GameBackend) -> Server {
    let url = backend.start().await;
    Server::start_with(|s| {
        s.connect_webhook = Some(url);
        // The command webhook's secret signs this one too unless it has its own.
        s.command_webhook_secret = Some(HOOK_SECRET.into());
        s.connect_webhook_timeout_ms = Some(300);
    })
    .await
}

#[tokio::test]
async fn the_backend_names_the_player_and_its_events_follow_connected_in_history() {
    let backend = GameBackend::default();
    let server = hooked_server(&backend).await;

    let mut ws = server.ws_at("/api/ws", "game-hero").await.expect("opens");
    let connected = ws.next_event().await;
    assert_eq!(connected["event_type"], "connected");
    assert_eq!(connected["data"]["player_id"], "hero");
    let state = ws.next_event().await;
    assert_eq!(state["event_type"], "game_state");
    assert_eq!(state["data"], json!({"hp": 10}));
    let room = ws.next_event().await;
    assert_eq!(room["event_type"], "room_update");
    assert_eq!(room["room_id"], "hall");
    let first = state["sequence_number"].as_u64().unwrap();
    assert_eq!(room["sequence_number"].as_u64().unwrap(), first + 1);

    let seen = backend.seen.lock()[0].clone();
    assert_eq!(seen["token"], "game-hero");
    assert_eq!(seen["transport"], "websocket");
    assert_eq!(seen["player_id"], Value::Null);
    assert_eq!(seen["remote_addr"], "127.0.0.1");

    // The greeting is in history: an SSE stream resuming from before it gets it replayed,
    // framed on one line although the data held a newline.
    let path = format!("/sse/hero?token=game-hero&last_event_id={}", first - 1);
    let res = raw(&server, &path).await;
    assert_eq!(res.status(), 200);
    let mut sse = Sse::from_response(res);
    assert_eq!(sse.next_event().await["event_type"], "connected");
    assert_eq!(sse.next_event().await["event_type"], "recovery");
    let replayed = sse.next().await.unwrap();
    assert_eq!(replayed.id, first.to_string());
    assert_eq!(sse.next_event().await["data"]["line"], "two\nlines");
    // Then this connection's own greeting, which the WebSocket gets too, numbered after.
    assert_eq!(
        sse.next_event().await["sequence_number"].as_u64().unwrap(),
        first + 2
    );
    assert_eq!(
        ws.next_event().await["sequence_number"].as_u64().unwrap(),
        first + 2
    );
    assert_eq!(
        backend.seen.lock()[1]["player_id"],
        "hero",
        "the path's player is sent"
    );
}

#[tokio::test]
async fn dualconns_own_credentials_never_go_to_the_backend() {
    let backend = GameBackend::default();
    let server = hooked_server(&backend).await;
    let mut ws = server.ws("alice", "").await;
    assert_eq!(ws.next_event().await["data"]["player_id"], "alice");
    let expired = token_with(json!({"sub": "alice", "exp": now_secs() - 3600}));
    assert_eq!(server.get("/api/events", &expired).await.status(), 401);
    let admin = server.get("/api/events", ADMIN_KEY).await;
    assert_eq!(admin.status(), 403);
    assert_eq!(raw(&server, "/api/events").await.status(), 401);
    assert_eq!(backend.calls(), 0);
}

#[tokio::test]
async fn refusals_and_failures_map_to_the_error_envelope() {
    let backend = GameBackend::default();
    let server = hooked_server(&backend).await;
    for (token, status, error_type) in [
        ("x-refuse", 401, "authentication_error"),
        ("x-expired", 401, "authentication_error"),
        ("x-banned", 403, "authorization_error"),
        ("x-crash", 503, "connection_error"),
        ("x-garbage", 503, "connection_error"),
        ("x-wrong-id", 503, "connection_error"),
        ("x-hang", 503, "connection_error"),
    ] {
        let res = server.get("/api/events", token).await;
        assert_eq!(res.status(), status, "{token}");
        if status == 503 {
            assert_eq!(res.headers()["retry-after"], "2", "{token}");
        }
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], true);
        assert_eq!(body["error_type"], error_type, "{token}");
        assert!(!body.to_string().contains(token), "{token} echoed back");
    }
    // A path for another player than the backend named is 403, as with a token.
    let res = raw(&server, "/sse/villain?token=game-hero").await;
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn the_same_credentials_work_on_the_players_rest_routes_and_cookies_are_passed_on() {
    let backend = GameBackend::default();
    let server = hooked_server(&backend).await;
    let res = server.get("/api/connections/hero", "game-hero").await;
    assert_eq!(res.status(), 200);
    let res = server.get("/api/connections/villain", "game-hero").await;
    assert_eq!(res.status(), 403);
    let res = server
        .post(
            "/api/commands",
            "game-hero",
            json!({"type": "ping", "data": {}}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert!(
        backend.seen.lock().iter().all(|s| s["transport"] == "http"),
        "REST calls say so"
    );

    // A browser signed in by cookie sends no token at all.
    let res = within(
        server
            .http
            .get(server.url("/sse/from-cookie"))
            .header("cookie", "sid=cookie-player")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        Sse::from_response(res).next_event().await["data"]["player_id"],
        "from-cookie"
    );
}

// ---------------------------------------------------------------------------------------------
// Compatibility: old paths, credentialed CORS
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_old_paths_work_and_say_they_are_deprecated() {
    let server = Server::start().await;
    let token = server.token("bard");
    let res = raw(&server, &format!("/api/events/bard?token={token}")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    assert_eq!(res.headers()["deprecation"], "@1735689600");
    assert_eq!(
        res.headers()["link"],
        "</api/events>; rel=\"successor-version\""
    );
    let mut sse = Sse::from_response(res);
    assert_eq!(sse.next_event().await["data"]["player_id"], "bard");

    // The same rule as /sse/{player_id}: the path must be the token's player.
    let res = raw(&server, &format!("/api/events/other?token={token}")).await;
    assert_eq!(res.status(), 403);
    assert_eq!(res.headers()["deprecation"], "@1735689600");
    assert_eq!(raw(&server, "/api/events/bard").await.status(), 401);

    let res = raw(&server, "/api/monitoring/health").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["deprecation"], "@1735689600");
    assert_eq!(
        res.headers()["link"],
        "</health/ready>; rel=\"successor-version\""
    );
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "ready");
}

async fn with_origin(
    server: &Server,
    method: Method,
    path: &str,
    origin: &str,
) -> reqwest::Response {
    within(
        server
            .http
            .request(method.clone(), server.url(path))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn listed_origins_may_send_credentials_and_a_wildcard_never_says_so() {
    const GAME: &str = "http://localhost:5173";
    let server = Server::start_with(|s| s.allowed_origins = Some(GAME.into())).await;
    let token = server.token("cleric");
    for (method, path) in [
        (Method::OPTIONS, "/api/connections/cleric".to_owned()),
        (Method::GET, "/health/ready".to_owned()),
        (Method::GET, format!("/sse/cleric?token={token}")),
    ] {
        let res = with_origin(&server, method.clone(), &path, GAME).await;
        assert!(res.status().is_success(), "{method} {path}");
        assert_eq!(res.headers()["access-control-allow-origin"], GAME);
        assert_eq!(
            res.headers()["access-control-allow-credentials"],
            "true",
            "{method} {path}"
        );
    }
    let other = with_origin(&server, Method::GET, "/health/ready", "http://evil.example").await;
    assert!(
        other
            .headers()
            .get("access-control-allow-credentials")
            .is_none()
    );

    let any = Server::start_with(|s| s.allowed_origins = Some("*".into())).await;
    for method in [Method::OPTIONS, Method::GET] {
        let res = with_origin(&any, method, "/health/ready", GAME).await;
        assert_eq!(res.headers()["access-control-allow-origin"], "*");
        assert!(
            res.headers()
                .get("access-control-allow-credentials")
                .is_none()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Refusals an operator can see
// ---------------------------------------------------------------------------------------------

async fn refusals(server: &Server) -> Vec<(String, String, f64)> {
    let text = server
        .get("/metrics", ADMIN_KEY)
        .await
        .text()
        .await
        .unwrap();
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
    scrape
        .samples
        .into_iter()
        .filter(|s| s.metric == "dualconn_refusals_total")
        .map(|s| {
            let value = match s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
                other => panic!("{other:?}"),
            };
            (
                s.labels.get("reason").unwrap().to_owned(),
                s.labels.get("status").unwrap().to_owned(),
                value,
            )
        })
        .collect()
}

#[tokio::test]
async fn every_refusal_is_counted_by_reason() {
    let server = Server::start().await;
    assert!(refusals(&server).await.is_empty());
    let token = server.token("rogue");
    server.get("/api/events", "nonsense").await;
    server.get("/api/events", "nonsense").await;
    raw(&server, &format!("/sse/else?token={token}")).await;
    raw(&server, "/no/such/route").await;
    raw(
        &server,
        &format!("/api/ws?token={token}&session_id=bad%20id"),
    )
    .await;
    // Refused on its declared length alone, before the body is read: still a refusal counted.
    let oversized = server
        .http
        .post(server.url("/api/publish"))
        .bearer_auth(ADMIN_KEY)
        .body(vec![b' '; 300 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(oversized.status(), 413);
    let mut counted = refusals(&server).await;
    counted.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    assert_eq!(
        counted,
        vec![
            ("authentication_error".into(), "401".into(), 2.0),
            ("authorization_error".into(), "403".into(), 1.0),
            ("not_found_error".into(), "404".into(), 1.0),
            ("validation_error".into(), "400".into(), 1.0),
            ("validation_error".into(), "413".into(), 1.0),
        ]
    );
}

/// The binary, with JSON logs read line by line.
struct Binary {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    seen: Vec<Value>,
    addr: String,
}

impl Binary {
    async fn start(env: &[(&str, &str)]) -> Binary {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_dualconn"))
            .arg("serve")
            .env("DUALCONN_BIND", "127.0.0.1:0")
            .env("DUALCONN_JWT_SECRET", SECRET)
            .env("DUALCONN_ADMIN_KEYS", ADMIN_KEY)
            .env("DUALCONN_LOG_FORMAT", "json")
            .env("DUALCONN_LOG", "info")
            .env_remove("DUALCONN_ALLOWED_ORIGINS")
            .envs(env.iter().copied())
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the binary starts");
        let lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut bin = Binary {
            child,
            lines,
            seen: Vec::new(),
            addr: String::new(),
        };
        let listening = bin.until(|l| l["fields"]["message"] == "listening").await;
        bin.addr = listening["fields"]["addr"].as_str().unwrap().to_owned();
        bin
    }

    /// Reads log lines until one matches, keeping every line read.
    async fn until(&mut self, matches: impl Fn(&Value) -> bool) -> Value {
        loop {
            let line = within(self.lines.next_line())
                .await
                .unwrap()
                .expect("the log went on");
            let value: Value = serde_json::from_str(&line).unwrap_or(json!({"raw": line}));
            self.seen.push(value.clone());
            if matches(&value) {
                return value;
            }
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    async fn stop(mut self) -> Vec<Value> {
        let pid = self.child.id().unwrap();
        std::process::Command::new("kill")
            .arg(pid.to_string())
            .status()
            .unwrap();
        while let Ok(Some(line)) = within(self.lines.next_line()).await {
            self.seen
                .push(serde_json::from_str(&line).unwrap_or(json!({"raw": line})));
        }
        within(self.child.wait()).await.unwrap();
        self.seen
    }
}

fn refused(line: &Value) -> bool {
    line["fields"]["message"] == "refused"
}

#[tokio::test]
async fn the_binary_logs_one_line_per_refusal_and_never_the_token() {
    let mut bin = Binary::start(&[]).await;
    // With no allow-list, the start-up log says how to let a dev server's origin in.
    assert!(
        bin.seen.iter().any(|l| l["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("DUALCONN_ALLOWED_ORIGINS=http://localhost:5173"))),
        "{:?}",
        bin.seen
    );
    let http = reqwest::Client::new();
    const SECRETISH: &str = "eyJhbGciOiJIUzI1NiJ9.not-a-real-token.signature-part";
    let get = |path: String| {
        let http = http.clone();
        async move { within(http.get(path).send()).await.unwrap().status() }
    };
    assert_eq!(
        get(bin.url(&format!("/sse/monk?token={SECRETISH}"))).await,
        401
    );
    let line = bin.until(refused).await;
    let f = &line["fields"];
    assert_eq!(line["level"], "INFO");
    assert_eq!(f["status"], 401);
    assert_eq!(f["error_type"], "authentication_error");
    assert_eq!(f["route"], "/sse/{player_id}");
    assert_eq!(f["route_kind"], "stream");
    assert_eq!(f["transport"], "sse");
    assert_eq!(f["player"], "monk", "the path's player");
    // The same through the router (a deprecated path), whose refusal layer reads the player
    // from the matched route's parameters.
    assert_eq!(
        get(bin.url(&format!("/api/events/monk?token={SECRETISH}"))).await,
        401
    );
    let line = bin.until(refused).await;
    let f = &line["fields"];
    assert_eq!(f["route"], "/api/events/{player_id}");
    assert_eq!(f["transport"], "sse");
    assert_eq!(f["player"], "monk", "the routed path's player");

    // After authentication the token's player is named, on the WebSocket route too.
    let token = token_with(json!({"sub": "monk", "exp": now_secs() + 60}));
    // (A plain GET: the session id is checked before the handshake is.)
    let status = get(bin.url(&format!("/api/ws?token={token}&session_id=bad%20id"))).await;
    assert_eq!(status, 400);
    let line = bin.until(refused).await;
    let f = &line["fields"];
    assert_eq!(f["status"], 400);
    assert_eq!(f["route"], "/api/ws");
    assert_eq!(f["route_kind"], "stream");
    assert_eq!(f["transport"], "websocket");
    assert_eq!(f["player"], "monk");

    // A 404 is logged at debug, so not at this level: the next refused line is the 403.
    assert_eq!(get(bin.url("/nothing/here")).await, 404);
    assert_eq!(
        get(bin.url(&format!("/sse/other?token={token}"))).await,
        403
    );
    let line = bin.until(refused).await;
    assert_eq!(line["fields"]["status"], 403);

    let log = bin.stop().await;
    let text = serde_json::to_string(&log).unwrap();
    assert!(
        !text.contains("not-a-real-token"),
        "a token reached the log"
    );
    assert!(!text.contains(&token), "a token reached the log");
}

#[tokio::test]
async fn with_an_allow_list_the_hint_is_not_logged() {
    let bin = Binary::start(&[("DUALCONN_ALLOWED_ORIGINS", "http://localhost:5173")]).await;
    let log = bin.stop().await;
    assert!(
        !serde_json::to_string(&log)
            .unwrap()
            .contains("to allow a dev server")
    );
}
