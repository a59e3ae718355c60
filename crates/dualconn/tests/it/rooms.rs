//! Rooms over real sockets: membership, presence, publishing to a room, `except`, resume of a
//! room event from history, the caps and sessions. Every test runs on one process and on a
//! three-node cluster on the test Redis, where members sit on different nodes and each step
//! goes through another node than the last.

use crate::common::*;
use dualconn::config::Settings;
use serde_json::{Value, json};

/// One process, or three nodes on one Redis under a fresh prefix.
async fn nodes(clustered: bool, tweak: impl Fn(&mut Settings)) -> Vec<Server> {
    if clustered {
        cluster(3, tweak).await
    } else {
        vec![Server::start_with(tweak).await]
    }
}

/// The node for step `i`: with a cluster, consecutive steps use different nodes.
fn at(nodes: &[Server], i: usize) -> &Server {
    &nodes[i % nodes.len()]
}

async fn send(node: &Server, method: reqwest::Method, path: &str, bearer: &str) -> (u16, Value) {
    let res = within(
        node.http
            .request(method, node.url(path))
            .bearer_auth(bearer)
            .send(),
    )
    .await
    .expect("request sent");
    let status = res.status().as_u16();
    (status, within(res.json()).await.expect("a JSON answer"))
}

async fn join(node: &Server, room: &str, player: &str) -> (u16, Value) {
    let path = format!("/api/rooms/{room}/members/{player}");
    send(node, reqwest::Method::PUT, &path, ADMIN_KEY).await
}

async fn leave(node: &Server, room: &str, player: &str) -> (u16, Value) {
    let path = format!("/api/rooms/{room}/members/{player}");
    send(node, reqwest::Method::DELETE, &path, ADMIN_KEY).await
}

async fn room_publish(node: &Server, room: &str, body: Value) -> Value {
    let res = node
        .post(&format!("/api/rooms/{room}/publish"), ADMIN_KEY, body)
        .await;
    assert_eq!(res.status(), 200, "room publish");
    res.json().await.unwrap()
}

/// `(player, connections)` per entry of a publish answer, in its order.
fn reached(answer: &Value) -> Vec<(String, u64)> {
    answer["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["player_id"].as_str().unwrap().to_owned(),
                e["connections"].as_u64().unwrap(),
            )
        })
        .collect()
}

async fn membership_is_idempotent_and_visible(clustered: bool) {
    let nodes = nodes(clustered, |_| {}).await;
    let mut alice = at(&nodes, 0).ws("alice", "").await;
    alice.next_event().await;

    for i in 0..2 {
        let (status, body) = join(at(&nodes, i), "hall", "alice").await;
        assert_eq!(status, 200);
        assert_eq!(
            body,
            json!({"room_id": "hall", "player_id": "alice", "member_count": 1})
        );
    }
    assert_eq!(
        join(at(&nodes, 2), "hall", "bob").await.1["member_count"],
        2
    );
    assert_eq!(
        join(at(&nodes, 0), "yard", "alice").await.1["member_count"],
        1
    );

    let room = at(&nodes, 1).get_json("/api/rooms/hall", ADMIN_KEY).await;
    assert_eq!(
        room,
        json!({
            "room_id": "hall",
            "member_count": 2,
            "online_count": 1,
            "members": [
                {"player_id": "alice", "online": true},
                {"player_id": "bob", "online": false},
            ],
        }),
        "members sorted, presence from every node"
    );
    let rooms = at(&nodes, 2)
        .get_json("/api/players/alice/rooms", ADMIN_KEY)
        .await;
    assert_eq!(
        rooms,
        json!({"player_id": "alice", "rooms": ["hall", "yard"]})
    );

    for i in 0..2 {
        let (status, body) = leave(at(&nodes, i), "hall", "alice").await;
        assert_eq!(status, 200);
        assert_eq!(
            body,
            json!({"room_id": "hall", "player_id": "alice", "member_count": 1})
        );
    }
    let rooms = at(&nodes, 0)
        .get_json("/api/players/alice/rooms", ADMIN_KEY)
        .await;
    assert_eq!(rooms["rooms"], json!(["yard"]));
    let unknown = at(&nodes, 1)
        .get_json("/api/rooms/nobody-here", ADMIN_KEY)
        .await;
    assert_eq!(
        unknown,
        json!({"room_id": "nobody-here", "member_count": 0, "online_count": 0, "members": []})
    );

    // Figures count rooms and memberships, never name them.
    let perf = at(&nodes, 2)
        .get_json("/monitoring/performance", ADMIN_KEY)
        .await;
    assert_eq!(
        perf["rooms"],
        json!({"total_rooms": 2, "total_memberships": 2})
    );
    let dual = at(&nodes, 0)
        .get_json("/monitoring/dual-connections", ADMIN_KEY)
        .await;
    assert_eq!(
        dual["rooms"],
        json!({"total_rooms": 2, "total_memberships": 2})
    );
    let metrics = within(at(&nodes, 1).get("/metrics", ADMIN_KEY).await.text())
        .await
        .unwrap();
    assert!(metrics.contains("\ndualconn_rooms 2\n"), "{metrics}");
    assert!(metrics.contains("\ndualconn_room_memberships 2\n"));
    assert!(!metrics.contains("yard"), "no room id as a label");
}

#[tokio::test]
async fn membership_is_idempotent_and_visible_on_one_node() {
    membership_is_idempotent_and_visible(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_is_idempotent_and_visible_across_nodes() {
    membership_is_idempotent_and_visible(true).await;
}

async fn a_room_publish_reaches_exactly_its_members(clustered: bool) {
    let nodes = nodes(clustered, |_| {}).await;
    let mut alice_ws = at(&nodes, 0).ws("alice", "").await;
    let mut alice_sse = at(&nodes, 1).sse("alice", "").await;
    let mut bob = at(&nodes, 2).ws("bob", "").await;
    let mut carol = at(&nodes, 0).ws("carol", "").await;
    alice_ws.next_event().await;
    alice_sse.next_event().await;
    bob.next_event().await;
    carol.next_event().await;
    join(at(&nodes, 1), "hall", "alice").await;
    join(at(&nodes, 2), "hall", "bob").await;
    join(at(&nodes, 0), "yard", "carol").await;

    let answer = room_publish(
        at(&nodes, 1),
        "hall",
        json!({"event_type": "say", "data": {"text": "hello"}}),
    )
    .await;
    assert_eq!(answer["success"], true);
    assert_eq!(
        reached(&answer),
        [("alice".to_owned(), 2), ("bob".to_owned(), 1)],
        "one entry per member, with each member's connections"
    );
    let seq_of = |player: &str| {
        answer["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["player_id"] == player)
            .unwrap()["sequence_number"]
            .clone()
    };
    for (event, player) in [
        (alice_ws.next_event().await, "alice"),
        (alice_sse.next_event().await, "alice"),
        (bob.next_event().await, "bob"),
    ] {
        assert_eq!(event["event_type"], "say");
        assert_eq!(event["room_id"], "hall");
        assert_eq!(event["player_id"], player);
        assert_eq!(event["data"], json!({"text": "hello"}));
        assert_eq!(event["sequence_number"], seq_of(player));
    }

    // `except` skips the speaker; everyone else in the room still hears it.
    let answer = room_publish(
        at(&nodes, 2),
        "hall",
        json!({"event_type": "say", "data": {"text": "hi all"}, "except": ["alice", "alice"]}),
    )
    .await;
    assert_eq!(reached(&answer), [("bob".to_owned(), 1)]);
    assert_eq!(bob.next_event().await["data"]["text"], "hi all");

    // Each connection's next event is a marker sent afterwards: carol never heard the hall,
    // and alice did not get the second message, nor the first twice.
    for p in ["alice", "carol"] {
        at(&nodes, 0).publish(&[p], "marker", json!({})).await;
    }
    assert_eq!(alice_ws.next_event().await["event_type"], "marker");
    assert_eq!(alice_sse.next_event().await["event_type"], "marker");
    assert_eq!(carol.next_event().await["event_type"], "marker");

    // An empty room answers with no entries.
    let answer = room_publish(at(&nodes, 0), "empty", json!({"event_type": "say"})).await;
    assert_eq!(answer["events"], json!([]));
}

#[tokio::test]
async fn a_room_publish_reaches_exactly_its_members_on_one_node() {
    a_room_publish_reaches_exactly_its_members(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_publish_reaches_exactly_its_members_across_nodes() {
    a_room_publish_reaches_exactly_its_members(true).await;
}

async fn an_offline_member_resumes_a_room_event(clustered: bool) {
    let nodes = nodes(clustered, |_| {}).await;
    // Dave has a stream position: connect once, note it, leave.
    let mut first = at(&nodes, 0).ws("dave", "").await;
    first.next_event().await;
    let answer = at(&nodes, 0).publish(&["dave"], "before", json!({})).await;
    let before = answer["events"][0]["sequence_number"].as_u64().unwrap();
    assert_eq!(first.next_event().await["sequence_number"], before);
    drop(first);

    join(at(&nodes, 1), "hall", "dave").await;
    let answer = room_publish(
        at(&nodes, 2),
        "hall",
        json!({"event_type": "say", "data": {"text": "while you were out"}}),
    )
    .await;
    let entry = &answer["events"][0];
    assert_eq!(entry["player_id"], "dave");
    let seq = entry["sequence_number"].as_u64().unwrap();
    assert!(seq > before);

    let mut back = at(&nodes, 1)
        .ws("dave", &format!("?last_event_id={before}"))
        .await;
    assert_eq!(back.next_event().await["event_type"], "connected");
    assert_eq!(back.next_event().await["event_type"], "recovery");
    let missed = back.next_event().await;
    assert_eq!(missed["event_type"], "say");
    assert_eq!(missed["room_id"], "hall");
    assert_eq!(missed["sequence_number"], seq);
    assert_eq!(missed["data"]["text"], "while you were out");
}

#[tokio::test]
async fn an_offline_member_resumes_a_room_event_on_one_node() {
    an_offline_member_resumes_a_room_event(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_member_resumes_a_room_event_across_nodes() {
    an_offline_member_resumes_a_room_event(true).await;
}

async fn caps_refuse_with_409_and_change_nothing(clustered: bool) {
    let nodes = nodes(clustered, |s| {
        s.max_room_members = Some(2);
        s.max_rooms_per_player = Some(2);
    })
    .await;
    join(at(&nodes, 0), "r1", "a").await;
    join(at(&nodes, 1), "r1", "b").await;
    let (status, body) = join(at(&nodes, 2), "r1", "c").await;
    assert_eq!(status, 409);
    assert_eq!(body["error_type"], "validation_error", "{body}");
    assert_eq!(
        body["details"],
        json!({"bound": "max_room_members", "limit": 2})
    );
    // A member joining again is not a new member: still 200.
    assert_eq!(join(at(&nodes, 0), "r1", "a").await.0, 200);

    join(at(&nodes, 1), "r2", "a").await;
    let (status, body) = join(at(&nodes, 2), "r3", "a").await;
    assert_eq!(status, 409);
    assert_eq!(body["details"]["bound"], "max_rooms_per_player");

    let room = at(&nodes, 0).get_json("/api/rooms/r1", ADMIN_KEY).await;
    assert_eq!(room["member_count"], 2);
    let rooms = at(&nodes, 1)
        .get_json("/api/players/c/rooms", ADMIN_KEY)
        .await;
    assert_eq!(rooms["rooms"], json!([]));
    let rooms = at(&nodes, 2)
        .get_json("/api/players/a/rooms", ADMIN_KEY)
        .await;
    assert_eq!(rooms["rooms"], json!(["r1", "r2"]));
    let r3 = at(&nodes, 0).get_json("/api/rooms/r3", ADMIN_KEY).await;
    assert_eq!(r3["member_count"], 0);

    // Leaving makes room again.
    leave(at(&nodes, 1), "r1", "b").await;
    assert_eq!(join(at(&nodes, 2), "r1", "c").await.0, 200);
}

#[tokio::test]
async fn caps_refuse_with_409_and_change_nothing_on_one_node() {
    caps_refuse_with_409_and_change_nothing(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caps_refuse_with_409_and_change_nothing_across_nodes() {
    caps_refuse_with_409_and_change_nothing(true).await;
}

async fn membership_outlives_connections_and_sessions(clustered: bool) {
    let nodes = nodes(clustered, |_| {}).await;
    let mut ws = at(&nodes, 0).ws("erin", "").await;
    ws.next_event().await;
    join(at(&nodes, 1), "hall", "erin").await;

    let res = at(&nodes, 2)
        .post("/api/connections/erin/session", ADMIN_KEY, json!({}))
        .await;
    assert_eq!(res.status(), 200);
    let session: Value = res.json().await.unwrap();
    let (events, _) = ws.until_close().await;
    assert_eq!(events.last().unwrap()["event_type"], "session_terminated");

    let rooms = at(&nodes, 0)
        .get_json("/api/players/erin/rooms", ADMIN_KEY)
        .await;
    assert_eq!(
        rooms["rooms"],
        json!(["hall"]),
        "membership is the player's"
    );

    let sid = session["session_id"].as_str().unwrap();
    let mut sse = at(&nodes, 1)
        .sse("erin", &format!("?session_id={sid}"))
        .await;
    sse.next_event().await;
    let answer = room_publish(at(&nodes, 2), "hall", json!({"event_type": "say"})).await;
    assert_eq!(reached(&answer), [("erin".to_owned(), 1)]);
    let heard = sse.next_event().await;
    assert_eq!(heard["event_type"], "say");
    assert_eq!(heard["room_id"], "hall");
}

#[tokio::test]
async fn membership_outlives_connections_and_sessions_on_one_node() {
    membership_outlives_connections_and_sessions(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_outlives_connections_and_sessions_across_nodes() {
    membership_outlives_connections_and_sessions(true).await;
}

#[tokio::test]
async fn room_routes_are_for_admins_and_check_their_input() {
    let server = Server::start().await;
    let player = server.token("alice");
    for (method, path) in [
        (reqwest::Method::PUT, "/api/rooms/hall/members/alice"),
        (reqwest::Method::DELETE, "/api/rooms/hall/members/alice"),
        (reqwest::Method::GET, "/api/rooms/hall"),
        (reqwest::Method::GET, "/api/players/alice/rooms"),
        (reqwest::Method::POST, "/api/rooms/hall/publish"),
    ] {
        let (status, body) = send(&server, method.clone(), path, &player).await;
        assert_eq!(status, 403, "{method} {path}: a player token");
        assert_eq!(body["error_type"], "authorization_error");
        let res = within(server.http.request(method.clone(), server.url(path)).send())
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{method} {path}: no credential");
    }
    for (method, path) in [
        (reqwest::Method::PUT, "/api/rooms/a%20b/members/alice"),
        (reqwest::Method::PUT, "/api/rooms/hall/members/al%20ice"),
        (reqwest::Method::GET, "/api/rooms/a%2Fb"),
        (reqwest::Method::GET, "/api/players/al%20ice/rooms"),
    ] {
        let (status, body) = send(&server, method.clone(), path, ADMIN_KEY).await;
        assert_eq!(status, 400, "{method} {path}");
        assert_eq!(body["error_type"], "validation_error");
    }
    let long = "r".repeat(129);
    let (status, _) = join(&server, &long, "alice").await;
    assert_eq!(status, 400, "a room id over 128 characters");

    for body in [
        json!({}),
        json!({"event_type": "connected"}),
        json!({"event_type": "say", "except": ["bad id"]}),
        json!({"event_type": "say", "player_ids": ["alice"]}),
        json!({"event_type": "say", "data": {"x": 1}, "except": "alice"}),
    ] {
        let res = server
            .post("/api/rooms/hall/publish", ADMIN_KEY, body.clone())
            .await;
        assert_eq!(res.status(), 400, "{body}");
        let err: Value = res.json().await.unwrap();
        assert_eq!(err["error_type"], "validation_error", "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn across_nodes_a_forgotten_player_leaves_its_rooms_and_the_figures() {
    let nodes = nodes(true, |s| s.session_ttl_secs = Some(1)).await;
    let mut kept = at(&nodes, 0).ws("kept", "").await;
    kept.next_event().await;
    join(at(&nodes, 1), "hall", "kept").await;
    join(at(&nodes, 2), "hall", "gone").await;
    join(at(&nodes, 0), "yard", "gone").await;
    // Redis expires the idle player's keys on its own clock; nothing to await but the answer.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let perf = at(&nodes, 1)
            .get_json("/monitoring/performance", ADMIN_KEY)
            .await;
        if perf["rooms"] == json!({"total_rooms": 1, "total_memberships": 1}) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the figures never dropped the forgotten player: {}",
            perf["rooms"]
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let room = at(&nodes, 2).get_json("/api/rooms/hall", ADMIN_KEY).await;
    assert_eq!(
        room["members"],
        json!([{"player_id": "kept", "online": true}])
    );
    let rooms = at(&nodes, 0)
        .get_json("/api/players/gone/rooms", ADMIN_KEY)
        .await;
    assert_eq!(rooms["rooms"], json!([]));
}
