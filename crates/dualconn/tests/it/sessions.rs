//! Sessions over real sockets (SPEC §5, §12.6–§12.11): new sessions end every connection in a
//! fixed order, stale and conflicting ids are fenced off, server-made ids are well formed, and
//! the event stream goes on across sessions.

use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;

/// Which transport a refused attempt used.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Ws,
    Sse,
}

/// Attempts a connection that must be refused, returning its status and JSON body.
async fn refused(server: &Server, kind: Kind, player: &str, query: &str) -> (u16, Value) {
    let token = server.token(player);
    match kind {
        Kind::Ws => match server.ws_at(&format!("/api/ws{query}"), &token).await {
            Ok(_) => panic!("the WebSocket with {query:?} was accepted"),
            Err(tungstenite::Error::Http(res)) => {
                let body = res.body().as_deref().expect("the refusal has a body");
                (res.status().as_u16(), serde_json::from_slice(body).unwrap())
            }
            Err(e) => panic!("expected an HTTP refusal, got {e}"),
        },
        Kind::Sse => {
            let sep = if query.is_empty() { "?" } else { "&" };
            let url = server.url(&format!("/sse/{player}{query}{sep}token={token}"));
            let res = within(server.http.get(url).send()).await.unwrap();
            let status = res.status().as_u16();
            assert_ne!(status, 200, "the SSE stream with {query:?} was accepted");
            (status, within(res.json()).await.unwrap())
        }
    }
}

fn assert_error(got: &(u16, Value), status: u16, error_type: &str) {
    assert_eq!(got.0, status, "{got:?}");
    assert_eq!(got.1["error"], true, "{got:?}");
    assert_eq!(got.1["error_type"], error_type, "{got:?}");
}

/// POSTs a new session as the player itself; `body` `None` sends a zero-length body.
async fn post_session(server: &Server, player: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = server
        .http
        .post(server.url(&format!("/api/connections/{player}/session")))
        .bearer_auth(server.token(player));
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = within(req.send()).await.unwrap();
    (res.status().as_u16(), within(res.json()).await.unwrap())
}

async fn get_session(server: &Server, player: &str) -> (u16, Value) {
    let res = server
        .get(
            &format!("/api/connections/{player}/session"),
            &server.token(player),
        )
        .await;
    (res.status().as_u16(), within(res.json()).await.unwrap())
}

/// Waits for the server to notice connections that the client dropped. There is no event to
/// await for that, so this polls, bounded by `within`.
async fn wait_for_active(server: &Server, player: &str, want: u64) {
    within(async {
        loop {
            let (_, s) = get_session(server, player).await;
            if s["active_connections"] == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// `^[A-Za-z0-9_-]{22,}$` (SPEC §12.9).
fn is_server_made(id: &str) -> bool {
    id.len() >= 22
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn without_heartbeats(events: Vec<Value>) -> Vec<Value> {
    events
        .into_iter()
        .filter(|e| e["event_type"] != "heartbeat")
        .collect()
}

#[tokio::test]
async fn a_new_session_ends_every_connection_with_session_terminated_then_the_close() {
    let server = Server::start().await;
    let mut ws = server.ws("alice", "").await;
    let mut sse = server.sse("alice", "").await;
    assert_eq!(ws.next_event().await["event_type"], "connected");
    assert_eq!(sse.next_event().await["event_type"], "connected");

    let (status, body) = post_session(&server, "alice", Some(json!({"session_id": "s-2"}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["session_id"], "s-2");
    assert_eq!(body["previous_connections_disconnected"], 2);

    let (events, ending) = ws.until_close().await;
    let events = without_heartbeats(events);
    assert_eq!(
        events.len(),
        1,
        "only session_terminated, then the close: {events:?}"
    );
    assert_eq!(events[0]["event_type"], "session_terminated");
    assert_eq!(events[0]["data"]["reason"], "new_session");
    assert!(
        events[0].get("sequence_number").is_none(),
        "connection-local"
    );
    assert_eq!(close_code(&ending), Some(4001), "{ending:?}");

    let events = sse.until_end().await;
    assert_eq!(
        events.len(),
        1,
        "only session_terminated, then the end: {events:?}"
    );
    assert_eq!(events[0]["event_type"], "session_terminated");
    assert_eq!(events[0]["data"]["reason"], "new_session");

    let (_, session) = get_session(&server, "alice").await;
    assert_eq!(session["session_id"], "s-2");
    // The new session is joinable with its id.
    let mut again = server.ws("alice", "?session_id=s-2").await;
    assert_eq!(again.next_event().await["data"]["session_id"], "s-2");
}

#[tokio::test]
async fn a_replaced_session_id_is_refused_whether_or_not_anything_is_connected() {
    let server = Server::start().await;
    assert_eq!(
        post_session(&server, "bob", Some(json!({"session_id": "old"})))
            .await
            .0,
        200
    );
    assert_eq!(
        post_session(&server, "bob", Some(json!({"session_id": "new"})))
            .await
            .0,
        200
    );

    // Nothing is connected: the stale id is still fenced off, on both transports.
    for kind in [Kind::Ws, Kind::Sse] {
        let got = refused(&server, kind, "bob", "?session_id=old").await;
        assert_error(&got, 409, "session_error");
    }
    // Something is connected to the current session: still refused.
    let mut ws = server.ws("bob", "?session_id=new").await;
    assert_eq!(ws.next_event().await["data"]["session_id"], "new");
    for kind in [Kind::Ws, Kind::Sse] {
        let got = refused(&server, kind, "bob", "?session_id=old").await;
        assert_error(&got, 409, "session_error");
    }
    // Posting the replaced id cannot take the game back either.
    let got = post_session(&server, "bob", Some(json!({"session_id": "old"}))).await;
    assert_error(&got, 409, "session_error");
    let (_, session) = get_session(&server, "bob").await;
    assert_eq!(
        session["session_id"], "new",
        "the refused post changed nothing"
    );
    assert_eq!(session["active_connections"], 1, "and ended nothing");
}

#[tokio::test]
async fn a_new_id_is_refused_while_the_current_session_has_live_connections() {
    let server = Server::start().await;
    let mut sse = server.sse("carol", "?session_id=first").await;
    assert_eq!(sse.next_event().await["data"]["session_id"], "first");
    for kind in [Kind::Ws, Kind::Sse] {
        let got = refused(&server, kind, "carol", "?session_id=second").await;
        assert_error(&got, 409, "session_error");
    }
    // Joining with no id or with the current one still works.
    let mut ws = server.ws("carol", "").await;
    assert_eq!(ws.next_event().await["data"]["session_id"], "first");
    let mut ws2 = server.ws("carol", "?session_id=first").await;
    assert_eq!(ws2.next_event().await["data"]["session_id"], "first");
    // An empty `session_id` means none was given (SPEC §12.8).
    let mut ws3 = server.ws("carol", "?session_id=").await;
    assert_eq!(ws3.next_event().await["data"]["session_id"], "first");
}

#[tokio::test]
async fn with_no_live_connection_a_new_id_takes_over_and_fences_the_old_one() {
    let server = Server::start().await;
    // A session that never had a connection.
    assert_eq!(
        post_session(&server, "dave", Some(json!({"session_id": "a"})))
            .await
            .0,
        200
    );
    let mut ws = server.ws("dave", "?session_id=b").await;
    assert_eq!(ws.next_event().await["data"]["session_id"], "b");
    assert_eq!(get_session(&server, "dave").await.1["session_id"], "b");
    let got = refused(&server, Kind::Sse, "dave", "?session_id=a").await;
    assert_error(&got, 409, "session_error");

    // A session whose connections all left.
    drop(ws);
    wait_for_active(&server, "dave", 0).await;
    let mut sse = server.sse("dave", "?session_id=c").await;
    assert_eq!(sse.next_event().await["data"]["session_id"], "c");
    let (_, session) = get_session(&server, "dave").await;
    assert_eq!(session["session_id"], "c");
    assert_eq!(session["active_connections"], 1);
    for kind in [Kind::Ws, Kind::Sse] {
        let got = refused(&server, kind, "dave", "?session_id=b").await;
        assert_error(&got, 409, "session_error");
    }
}

#[tokio::test]
async fn server_made_ids_for_an_empty_body_an_empty_object_and_a_null_id() {
    let server = Server::start().await;
    let mut ids = Vec::new();
    for body in [None, Some(json!({})), Some(json!({"session_id": null}))] {
        let (status, res) = post_session(&server, "erin", body.clone()).await;
        assert_eq!(status, 200, "{body:?}: {res}");
        let id = res["session_id"].as_str().unwrap().to_owned();
        assert!(is_server_made(&id), "{id:?} is not a server-made id");
        assert_eq!(get_session(&server, "erin").await.1["session_id"], id);
        ids.push(id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "every server-made id is new");
    // A zero-length body, with no Content-Type at all.
    let res = within(
        server
            .http
            .post(server.url("/api/connections/erin/session"))
            .bearer_auth(ADMIN_KEY)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    let res: Value = res.json().await.unwrap();
    assert!(is_server_made(res["session_id"].as_str().unwrap()));
}

#[tokio::test]
async fn bad_session_ids_are_400_in_the_body_and_in_the_query() {
    let server = Server::start().await;
    let too_long = "a".repeat(129);
    for bad in [
        json!(5),
        json!(true),
        json!(["x"]),
        json!({"id": "x"}),
        json!(""),
        json!("has space"),
        json!("slash/no"),
        json!(too_long),
    ] {
        let got = post_session(&server, "frank", Some(json!({"session_id": bad}))).await;
        assert_error(&got, 400, "validation_error");
    }
    let got = post_session(&server, "frank", Some(json!(["not", "an", "object"]))).await;
    assert_error(&got, 400, "validation_error");
    assert_error(&get_session(&server, "frank").await, 404, "session_error");

    // The longest valid id, with every allowed punctuation mark, is fine.
    let longest = format!("{}_.:-", "Z9".repeat(62));
    assert_eq!(longest.len(), 128);
    let (status, res) = post_session(&server, "frank", Some(json!({"session_id": longest}))).await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["session_id"], longest);

    for query in [
        "?session_id=has%20space".to_owned(),
        "?session_id=slash%2Fno".to_owned(),
        "?session_id=%C3%A9".to_owned(),
        format!("?session_id={too_long}"),
    ] {
        for kind in [Kind::Ws, Kind::Sse] {
            let got = refused(&server, kind, "frank", &query).await;
            assert_error(&got, 400, "validation_error");
        }
    }
}

#[tokio::test]
async fn posting_the_current_id_ends_every_connection_and_keeps_the_id() {
    let server = Server::start().await;
    let mut ws = server.ws("gina", "?session_id=keep").await;
    let mut sse = server.sse("gina", "").await;
    ws.next_event().await;
    assert_eq!(sse.next_event().await["data"]["session_id"], "keep");

    let (status, res) = post_session(&server, "gina", Some(json!({"session_id": "keep"}))).await;
    assert_eq!(status, 200);
    assert_eq!(res["session_id"], "keep");
    assert_eq!(res["previous_connections_disconnected"], 2);
    let (_, ending) = ws.until_close().await;
    assert_eq!(close_code(&ending), Some(4001));
    assert_eq!(sse.until_end().await[0]["event_type"], "session_terminated");
    let (_, session) = get_session(&server, "gina").await;
    assert_eq!(session["session_id"], "keep");
    assert_eq!(session["active_connections"], 0);
    // The kept id is still current, not fenced off as replaced.
    let mut again = server.ws("gina", "?session_id=keep").await;
    assert_eq!(again.next_event().await["data"]["session_id"], "keep");
}

#[tokio::test]
async fn a_new_session_works_for_a_player_never_seen() {
    let server = Server::start().await;
    assert_error(&get_session(&server, "newbie").await, 404, "session_error");
    let (status, res) = post_session(&server, "newbie", Some(json!({"session_id": "first"}))).await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["previous_connections_disconnected"], 0);
    assert_eq!(res["message"], "New game session established");
    let (status, session) = get_session(&server, "newbie").await;
    assert_eq!(status, 200);
    assert_eq!(session["session_id"], "first");
    assert_eq!(session["player_id"], "newbie");
    assert_eq!(session["active_connections"], 0);
    assert_eq!(session["connection_types"], json!([]));
    // An admin may make one too.
    let res = server
        .post(
            "/api/connections/other/session",
            ADMIN_KEY,
            json!({"session_id": "x"}),
        )
        .await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn get_session_lists_the_live_types_websocket_first() {
    let server = Server::start().await;
    assert_error(&get_session(&server, "hank").await, 404, "session_error");
    // SSE first, so the order in the answer cannot come from the order of connecting.
    let mut sse = server.sse("hank", "?session_id=h1").await;
    sse.next_event().await;
    let (status, s) = get_session(&server, "hank").await;
    assert_eq!(status, 200);
    assert_eq!(s["connection_types"], json!(["sse"]));
    assert_eq!(s["active_connections"], 1);
    let mut ws = server.ws("hank", "").await;
    ws.next_event().await;
    let mut ws2 = server.ws("hank", "").await;
    ws2.next_event().await;
    let (_, s) = get_session(&server, "hank").await;
    assert_eq!(s["player_id"], "hank");
    assert_eq!(s["session_id"], "h1");
    assert_eq!(s["active_connections"], 3);
    assert_eq!(s["connection_types"], json!(["websocket", "sse"]));
    assert!(s["session_created"].as_str().unwrap().ends_with('Z'));

    drop(sse);
    wait_for_active(&server, "hank", 2).await;
    assert_eq!(
        get_session(&server, "hank").await.1["connection_types"],
        json!(["websocket"])
    );
    drop((ws, ws2));
    wait_for_active(&server, "hank", 0).await;
    let (status, s) = get_session(&server, "hank").await;
    assert_eq!(
        status, 200,
        "a session with nothing connected is still there"
    );
    assert_eq!(s["session_id"], "h1");
    assert_eq!(s["connection_types"], json!([]));
}

#[tokio::test]
async fn the_event_stream_and_its_numbers_go_on_across_sessions() {
    let server = Server::start().await;
    let mut ws = server.ws("ivy", "?session_id=one").await;
    ws.next_event().await;
    let before =
        server.publish(&["ivy"], "tick", json!({"n": 1})).await["events"][0]["sequence_number"]
            .as_u64()
            .unwrap();
    assert_eq!(ws.next_event().await["sequence_number"], before);

    let (status, _) = post_session(&server, "ivy", Some(json!({"session_id": "two"}))).await;
    assert_eq!(status, 200);
    ws.until_close().await;

    let mut ws = server.ws("ivy", "?session_id=two").await;
    ws.next_event().await;
    let after =
        server.publish(&["ivy"], "tick", json!({"n": 2})).await["events"][0]["sequence_number"]
            .as_u64()
            .unwrap();
    assert!(after > before, "{after} after {before}");
    let event = ws.next_event().await;
    assert_eq!(event["sequence_number"], after);
    assert_eq!(event["data"]["n"], 2);

    // A resume from before the new session still finds the stream (nothing was reset).
    let mut sse = server.sse("ivy", &format!("?last_event_id={before}")).await;
    assert_eq!(sse.next_event().await["event_type"], "connected");
    let recovery = sse.next_event().await;
    assert_eq!(recovery["event_type"], "recovery");
    assert_eq!(recovery["data"]["recovered"], true);
    let replayed = sse.next().await.unwrap();
    assert_eq!(replayed.id, after.to_string());
}
