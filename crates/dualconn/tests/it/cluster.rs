//! Cluster mode: several real `App`s in this process on one real Redis, each test under its own
//! key prefix. A node that must die without a graceful shutdown runs on its own runtime, which
//! is dropped; a Redis that must go away is a `redis-server` this test starts on a free port.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use dualconn::App;
use dualconn::backplane::Backplane;
use dualconn::config::Settings;
use futures_util::StreamExt;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_on_one_node_and_sse_on_another_get_everything_published_through_a_third() {
    let nodes = cluster(3, |_| {}).await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let mut ws = a.ws("alice", "").await;
    let mut sse = b.sse("alice", "").await;
    let ws_hello = ws.next_event().await;
    let sse_hello = sse.next_event().await;
    assert_eq!(ws_hello["event_type"], "connected");
    assert_eq!(
        ws_hello["data"]["session_id"], sse_hello["data"]["session_id"],
        "one session across nodes"
    );

    let mut seqs = Vec::new();
    for i in 0..5 {
        let r = c.publish(&["alice"], "chat", json!({"i": i})).await;
        assert_eq!(r["events"][0]["connections"], 2, "both connections counted");
        seqs.push(r["events"][0]["sequence_number"].as_u64().unwrap());
    }
    assert!(seqs.windows(2).all(|w| w[1] > w[0]));
    for (i, seq) in seqs.iter().enumerate() {
        let w = ws.next_event().await;
        let s = sse.next().await.unwrap();
        assert_eq!(w["sequence_number"], *seq);
        assert_eq!(w["data"]["i"], i);
        assert_eq!(s.json, w, "the same bytes on both transports and nodes");
        assert_eq!(s.id, seq.to_string());
    }

    // A command over the WebSocket on A: the answer is a stream event on both.
    ws.send_text(r#"{"type":"command","data":{"command":"look"}}"#)
        .await;
    let answer = ws.next_event().await;
    assert_eq!(answer["event_type"], "command_response");
    assert_eq!(sse.next_event().await, answer);

    // A broadcast through B reaches alice once per connection, and bob on C.
    let mut bob = c.ws("bob", "").await;
    bob.next_event().await;
    let r = b
        .post(
            "/api/publish",
            ADMIN_KEY,
            json!({"broadcast": true, "event_type": "news", "data": {}}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r: Value = r.json().await.unwrap();
    let mut players: Vec<&str> = r["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["player_id"].as_str().unwrap())
        .collect();
    players.sort();
    assert_eq!(players, ["alice", "bob"]);
    assert_eq!(ws.next_event().await["event_type"], "news");
    assert_eq!(sse.next_event().await["event_type"], "news");
    assert_eq!(bob.next_event().await["event_type"], "news");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_session_through_any_node_ends_connections_on_every_node() {
    let nodes = cluster(3, |_| {}).await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let mut ws = a.ws("carol", "").await;
    let mut sse = c.sse("carol", "").await;
    let old = ws.next_event().await["data"]["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    sse.next_event().await;

    let r = b
        .post(
            "/api/connections/carol/session",
            ADMIN_KEY,
            json!({"session_id": "round-2"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r: Value = r.json().await.unwrap();
    assert_eq!(r["previous_connections_disconnected"], 2);

    let (events, ending) = ws.until_close().await;
    let last = events.last().expect("session_terminated before the close");
    assert_eq!(last["event_type"], "session_terminated");
    assert_eq!(last["data"]["session_id"], "round-2");
    assert_eq!(close_code(&ending), Some(4001));
    let rest = sse.until_end().await;
    assert_eq!(rest.last().unwrap()["event_type"], "session_terminated");

    // The replaced id is refused everywhere; the new one is current everywhere.
    for node in &nodes {
        let res = node
            .http
            .get(node.url(&format!(
                "/sse/carol?session_id={old}&token={}",
                node.token("carol")
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 409);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error_type"], "session_error");
    }
    let mut again = c.ws("carol", "?session_id=round-2").await;
    assert_eq!(again.next_event().await["data"]["session_id"], "round-2");
    let info: Value = a
        .get_json("/api/connections/carol/session", ADMIN_KEY)
        .await;
    assert_eq!(info["session_id"], "round-2");
    assert_eq!(info["active_connections"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_evicts_the_oldest_connection_wherever_it_is() {
    let nodes = cluster(3, |s| s.max_connections_per_player = Some(2)).await;
    let mut first = nodes[0].ws("dave", "").await;
    first.next_event().await;
    let mut second = nodes[1].sse("dave", "").await;
    second.next_event().await;
    let mut third = nodes[2].ws("dave", "").await;
    third.next_event().await;

    let (events, ending) = first.until_close().await;
    assert_eq!(events.last().unwrap()["event_type"], "connection_replaced");
    assert_eq!(close_code(&ending), Some(4002));
    let r = nodes[2].publish(&["dave"], "still", json!({})).await;
    assert_eq!(r["events"][0]["connections"], 2);
    assert_eq!(second.next_event().await["event_type"], "still");
    assert_eq!(third.next_event().await["event_type"], "still");
}

/// SPEC §12.15 and §12.27 in a cluster: the JOIN script applies the session rules and the
/// cap cluster-wide before it hears that the joining node is full, and refuses a full node
/// before it writes anything. Both nodes hold their one stream; alice's is on node 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_answers_409_where_the_cluster_session_rules_refuse_and_503_only_after() {
    let nodes = cluster(2, |s| {
        s.max_connections = Some(1);
        s.max_connections_per_player = Some(1);
        s.reject_over_limit = Some(true);
    })
    .await;
    let set_session = |player: &'static str, id: &'static str| {
        let node = &nodes[1];
        async move {
            let path = format!("/api/connections/{player}/session");
            let res = node.post(&path, ADMIN_KEY, json!({"session_id": id})).await;
            assert_eq!(res.status(), 200);
        }
    };
    set_session("alice", "old").await;
    set_session("alice", "current").await;
    let mut alice = nodes[1].sse("alice", "").await;
    assert_eq!(alice.next_event().await["data"]["session_id"], "current");
    let mut carol = nodes[0].sse("carol", "").await;
    carol.next_event().await;
    set_session("bob", "bob-1").await;

    let node = &nodes[0];
    let status = |player: &'static str, query: &'static str| async move {
        let url = node.url(&format!(
            "/sse/{player}?{query}&token={}",
            node.token(player)
        ));
        let res = node.http.get(url).send().await.unwrap();
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap();
        (status, body["error_type"].as_str().unwrap().to_owned())
    };
    assert_eq!(
        status("alice", "session_id=old").await,
        (409, "session_error".into())
    );
    assert_eq!(
        status("alice", "session_id=new").await,
        (409, "session_error".into())
    );
    assert_eq!(status("alice", "").await, (409, "connection_error".into()));
    assert_eq!(
        status("bob", "session_id=bob-2").await,
        (503, "connection_error".into())
    );
    assert_eq!(status("bob", "").await, (503, "connection_error".into()));

    let bob = nodes[1]
        .get_json("/api/connections/bob/session", ADMIN_KEY)
        .await;
    assert_eq!(
        bob["session_id"], "bob-1",
        "the refused join took nothing over"
    );
    assert_eq!(bob["active_connections"], 0, "nor left a connection behind");
    let r = nodes[0]
        .publish(&["alice", "carol"], "still", json!({}))
        .await;
    assert_eq!(r["events"][0]["connections"], 1);
    assert_eq!(alice.next_event().await["event_type"], "still");
    assert_eq!(carol.next_event().await["event_type"], "still");
    assert_eq!(
        nodes[0].hub.stats().connections(),
        1,
        "the refused joins left no connection on the node that refused them: carol's only"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_racing_for_a_new_session_never_both_win() {
    let nodes = cluster(2, |_| {}).await;
    for round in 0..20 {
        let player = format!("racer{round}");
        let open = |node: &Server, session: String| {
            let url = node.url(&format!(
                "/sse/{player}?session_id={session}&token={}",
                node.token(&player)
            ));
            let http = node.http.clone();
            async move { http.get(url).send().await.unwrap() }
        };
        let (x, y) = tokio::join!(
            open(&nodes[0], format!("a{round}")),
            open(&nodes[1], format!("b{round}"))
        );
        let mut statuses = [x.status().as_u16(), y.status().as_u16()];
        statuses.sort();
        assert_eq!(
            statuses,
            [200, 409],
            "round {round}: exactly one session wins"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn figures_count_every_node() {
    let nodes = cluster(3, |_| {}).await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let mut w = a.ws("erin", "").await;
    let mut s = b.sse("erin", "").await;
    let mut f = c.ws("frank", "").await;
    for e in [
        w.next_event().await,
        s.next_event().await,
        f.next_event().await,
    ] {
        assert_eq!(e["event_type"], "connected");
    }
    for node in &nodes {
        let stats: Value = node.get_json("/api/connections/stats", ADMIN_KEY).await;
        assert_eq!(stats["total_players"], 2);
        assert_eq!(stats["total_connections"], 3);
        assert_eq!(stats["connection_distribution"]["dual_connections"], 1);
        assert_eq!(stats["connection_distribution"]["websocket_only"], 1);
        assert_eq!(stats["connection_distribution"]["sse_only"], 0);
    }
    let info: Value = c.get_json("/api/connections/erin", ADMIN_KEY).await;
    assert_eq!(info["connections"]["websocket"]["count"], 1);
    assert_eq!(info["connections"]["sse"]["count"], 1);
    assert_eq!(info["presence"]["status"], "online");
    assert_eq!(info["presence"]["total_connections"], 2);
    let dual: Value = b.get_json("/monitoring/dual-connections", ADMIN_KEY).await;
    assert_eq!(
        dual["connection_distribution"]["dual_connection_players"],
        1
    );
    assert_eq!(dual["connection_health"]["total_connections"], 3);
    let listed: Value = a.get_json("/monitoring/players", ADMIN_KEY).await;
    assert_eq!(listed["total_players"], 2);
    assert_eq!(listed["players"][0]["player_id"], "erin");
    assert_eq!(
        listed["players"][0]["connections"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

/// A node on a runtime of its own, so the test can drop it the way a crash would: no
/// `server_shutdown`, no goodbye to Redis.
struct Doomed {
    addr: SocketAddr,
    kill: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Doomed {
    fn start(settings: Settings) -> Doomed {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (kill_tx, kill_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let app = App::build(settings.resolve().unwrap()).await.unwrap();
                let addr = app.local_addr();
                let hub = app.hub().clone();
                tokio::spawn(app.run());
                hub.backplane().wait_available().await;
                addr_tx.send(addr).unwrap();
            });
            let _ = kill_rx.recv();
            // Every task and socket dropped on the spot.
            rt.shutdown_background();
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the doomed node started");
        Doomed {
            addr,
            kill: Some(kill_tx),
            thread: Some(thread),
        }
    }

    fn kill(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for Doomed {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One client of one player that reconnects to `fallback` with its cursor whenever its
/// connection drops, until it has `want` events; returns the stream numbers it saw.
async fn resilient_client(
    player: String,
    first: SocketAddr,
    fallback: Arc<Server>,
    sse: bool,
    published: Arc<Mutex<Vec<u64>>>,
    done: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<u64> {
    use std::sync::atomic::Ordering;
    let token = fallback.token(&player);
    let mut received: Vec<u64> = Vec::new();
    let mut addr = first;
    let mut attempts = 0;
    loop {
        let cursor = received
            .last()
            .map(|c| format!("last_event_id={c}&"))
            .unwrap_or_default();
        let mut events: Box<dyn futures_util::Stream<Item = Value> + Send + Unpin> = if sse {
            let url = format!("http://{addr}/sse/{player}?{cursor}token={token}");
            match fallback.http.get(url).send().await {
                Ok(res) if res.status() == 200 => {
                    use eventsource_stream::Eventsource;
                    Box::new(
                        res.bytes_stream()
                            .eventsource()
                            .take_while(|e| std::future::ready(e.is_ok()))
                            .filter_map(|e| {
                                std::future::ready(
                                    e.ok().and_then(|e| serde_json::from_str(&e.data).ok()),
                                )
                            }),
                    )
                }
                _ => {
                    attempts += 1;
                    assert!(attempts < 200, "could not reconnect");
                    addr = fallback.addr;
                    tokio::task::yield_now().await;
                    continue;
                }
            }
        } else {
            let mut req =
                tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                    format!("ws://{addr}/api/ws?{cursor}"),
                )
                .unwrap();
            req.headers_mut().insert(
                "sec-websocket-protocol",
                format!("bearer, {token}").parse().unwrap(),
            );
            match tokio_tungstenite::connect_async(req).await {
                Ok((stream, _)) => Box::new(
                    stream
                        .take_while(|m| std::future::ready(m.is_ok()))
                        .filter_map(|m| {
                            std::future::ready(match m {
                                Ok(Message::Text(t)) => serde_json::from_str(&t).ok(),
                                _ => None,
                            })
                        }),
                ),
                Err(_) => {
                    attempts += 1;
                    assert!(attempts < 200, "could not reconnect");
                    addr = fallback.addr;
                    tokio::task::yield_now().await;
                    continue;
                }
            }
        };
        loop {
            let finished = done.load(Ordering::SeqCst) && {
                let published = published.lock();
                received.len() == published.len()
            };
            if finished {
                return received;
            }
            let next = tokio::time::timeout(Duration::from_secs(15), events.next())
                .await
                .expect("events keep coming or the connection ends");
            let Some(event) = next else { break };
            if let Some(seq) = event["sequence_number"].as_u64() {
                if let Some(&last) = received.last() {
                    assert!(seq > last, "in order and never twice");
                }
                received.push(seq);
            }
        }
        // The connection ended: carry on on the surviving node.
        addr = fallback.addr;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_under_load_loses_nothing() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let prefix = unique_prefix();
    let url = test_redis_url();
    let mut doomed = Doomed::start(cluster_settings(&url, &prefix, "doomed"));
    let survivor =
        Arc::new(Server::from_settings(cluster_settings(&url, &prefix, "survivor")).await);
    let publisher_node =
        Arc::new(Server::from_settings(cluster_settings(&url, &prefix, "publisher")).await);
    survivor.ready().await;
    publisher_node.ready().await;

    const PLAYERS: usize = 4;
    const EVENTS: usize = 150;
    let players: Vec<String> = (0..PLAYERS).map(|i| format!("victim{i}")).collect();
    let published: Vec<Arc<Mutex<Vec<u64>>>> = (0..PLAYERS)
        .map(|_| Arc::new(Mutex::new(Vec::new())))
        .collect();
    let done = Arc::new(AtomicBool::new(false));

    // Every client starts on the doomed node, half over SSE; each first connection is
    // confirmed open (its `connected` came) before publishing starts.
    let mut clients = Vec::new();
    for (i, player) in players.iter().enumerate() {
        clients.push(tokio::spawn(resilient_client(
            player.clone(),
            doomed.addr,
            survivor.clone(),
            i % 2 == 1,
            published[i].clone(),
            done.clone(),
        )));
    }
    let online = |n: &Server| {
        let (http, url) = (n.http.clone(), n.url("/api/connections/stats"));
        async move {
            let s: Value = http
                .get(url)
                .bearer_auth(ADMIN_KEY)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            s["total_connections"].as_u64().unwrap_or(0)
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while online(&publisher_node).await < PLAYERS as u64 {
        assert!(tokio::time::Instant::now() < deadline, "clients connected");
        tokio::task::yield_now().await;
    }

    let names: Vec<&str> = players.iter().map(String::as_str).collect();
    for i in 0..EVENTS {
        if i == EVENTS / 3 {
            doomed.kill();
        }
        let r = publisher_node
            .publish(&names, "tick", json!({"i": i}))
            .await;
        for (j, e) in r["events"].as_array().unwrap().iter().enumerate() {
            published[j]
                .lock()
                .push(e["sequence_number"].as_u64().unwrap());
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    done.store(true, Ordering::SeqCst);

    for (i, client) in clients.into_iter().enumerate() {
        let received = tokio::time::timeout(Duration::from_secs(60), client)
            .await
            .expect("every client caught up")
            .unwrap();
        assert_eq!(
            received,
            *published[i].lock(),
            "{}: zero gaps and zero duplicates",
            players[i]
        );
    }

    // The clients have hung up; what the dead node held drops out of the figures within its
    // ttl instead of being counted forever.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let n = online(&publisher_node).await;
        if n == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still counting the dead node: {n}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A `redis-server` of this test's own, on a port it picked.
struct OwnRedis {
    port: u16,
    child: Child,
}

impl OwnRedis {
    fn start(port: u16) -> OwnRedis {
        let mut child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/redis-setup.sh)");
        // It listens within milliseconds; nothing to await but the port itself.
        for _ in 0..500 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return OwnRedis { port, child };
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("redis-server did not start on {port}");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn availability_becomes(node: &Server, want: bool) {
    let mut rx = node.hub.backplane().watch_available().unwrap();
    tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|v| *v == want))
        .await
        .expect("availability changed")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_refuses_new_work_keeps_connections_and_comes_back() {
    let port = free_port();
    let mut redis = OwnRedis::start(port);
    let prefix = unique_prefix();
    let heartbeat = |s: &mut Settings| s.heartbeat_secs = Some(1);
    let mut settings_a = cluster_settings(&redis.url(), &prefix, "a");
    heartbeat(&mut settings_a);
    let mut settings_b = cluster_settings(&redis.url(), &prefix, "b");
    heartbeat(&mut settings_b);
    let a = Server::from_settings(settings_a).await;
    let b = Server::from_settings(settings_b).await;
    a.ready().await;
    b.ready().await;

    let mut ws = a.ws("gina", "").await;
    let mut sse = b.sse("gina", "").await;
    ws.next_event().await;
    sse.next_event().await;
    let before = a.publish(&["gina"], "before", json!({})).await["events"][0]["sequence_number"]
        .as_u64()
        .unwrap();
    assert_eq!(ws.next_event().await["sequence_number"], before);
    assert_eq!(sse.next_event().await["sequence_number"], before);

    redis.stop();
    availability_becomes(&a, false).await;
    availability_becomes(&b, false).await;

    let refused = a
        .post(
            "/api/publish",
            ADMIN_KEY,
            json!({"player_ids": ["gina"], "event_type": "lost", "data": {}}),
        )
        .await;
    assert_eq!(refused.status(), 503, "never a silent drop");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error_type"], "connection_error");
    assert_eq!(a.get("/health/ready", "").await.status(), 503);
    let new_stream = b
        .http
        .get(b.url(&format!("/sse/hank?token={}", b.token("hank"))))
        .send()
        .await
        .unwrap();
    assert_eq!(new_stream.status(), 503);
    assert!(new_stream.headers().contains_key("retry-after"));

    // Open connections stay open and keep their heartbeats.
    let heartbeat_on_ws = async {
        loop {
            match ws.stream.next().await {
                Some(Ok(Message::Text(t))) if t.contains("\"heartbeat\"") => return,
                Some(Ok(_)) => {}
                other => panic!("the WebSocket ended: {other:?}"),
            }
        }
    };
    within(heartbeat_on_ws).await;

    let _redis = OwnRedis::start(port);
    availability_becomes(&a, true).await;
    availability_becomes(&b, true).await;
    assert_eq!(a.get("/health/ready", "").await.status(), 200);

    let after = b.publish(&["gina"], "after", json!({})).await["events"][0]["sequence_number"]
        .as_u64()
        .unwrap();
    assert!(
        after > before,
        "numbers never go backwards, even after Redis lost its data"
    );
    let on_ws = ws.next_event().await;
    assert_eq!(on_ws["event_type"], "after");
    assert_eq!(on_ws["sequence_number"], after);
    assert_eq!(sse.next_event().await["sequence_number"], after);
    let info: Value = a.get_json("/api/connections/gina/session", ADMIN_KEY).await;
    assert_eq!(
        info["active_connections"], 2,
        "the nodes registered their connections again"
    );
}

/// Redis lost its data under a node holding connections admitted under a later session: the
/// node restores the session's generation from them, so the next new session still ends them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_redis_lost_its_data_a_new_session_still_ends_connections_of_the_old_one() {
    let port = free_port();
    let mut redis = OwnRedis::start(port);
    let mut settings = cluster_settings(&redis.url(), &unique_prefix(), "a");
    settings.heartbeat_secs = Some(1);
    let a = Server::from_settings(settings).await;
    a.ready().await;

    // The session's second generation: the first one's connection ends, one opens under it.
    let mut first = a.ws("ivy", "").await;
    first.next_event().await;
    let new_session = |id: &'static str| {
        a.post(
            "/api/connections/ivy/session",
            ADMIN_KEY,
            json!({"session_id": id}),
        )
    };
    assert_eq!(new_session("second").await.status(), 200);
    assert_eq!(close_code(&first.until_close().await.1), Some(4001));
    let mut second = a.ws("ivy", "?session_id=second").await;
    assert_eq!(second.next_event().await["data"]["session_id"], "second");

    redis.stop();
    availability_becomes(&a, false).await;
    let _redis = OwnRedis::start(port);
    availability_becomes(&a, true).await;

    let third = new_session("third").await;
    assert_eq!(third.status(), 200);
    let third: Value = third.json().await.unwrap();
    assert_eq!(third["previous_connections_disconnected"], 1);
    let (events, ending) = second.until_close().await;
    assert_eq!(
        close_code(&ending),
        Some(4001),
        "the connection of the session Redis forgot was ended: {events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stopped_gracefully_leaves_the_figures_at_once() {
    let mut nodes = cluster(2, |_| {}).await;
    let b = nodes.pop().unwrap();
    let a = nodes.pop().unwrap();
    let mut ws = a.ws("ivy", "").await;
    ws.next_event().await;
    let mut sse = b.sse("ivy", "").await;
    sse.next_event().await;
    let connections = |stats: Value| stats["total_connections"].as_u64().unwrap();
    let stats: Value = b.get_json("/api/connections/stats", ADMIN_KEY).await;
    assert_eq!(connections(stats), 2);
    // `stop` returns once the node drained and took itself out of Redis: no ttl to wait for.
    a.stop().await;
    let stats: Value = b.get_json("/api/connections/stats", ADMIN_KEY).await;
    assert_eq!(connections(stats), 1);
    let info: Value = b.get_json("/api/connections/ivy", ADMIN_KEY).await;
    assert_eq!(info["presence"]["total_connections"], 1);
}

/// Lowers the players per broadcast chunk, so a few players make several chunks.
fn broadcast_chunk(node: &Server, players: usize) {
    match node.hub.backplane() {
        Backplane::Redis(redis) => redis.set_broadcast_chunk(players),
        Backplane::Local => panic!("a cluster node"),
    }
}

/// Broadcasts through `node` and returns each player's `(sequence_number, connections)` from
/// the answer, checking that no player is listed twice.
async fn broadcast(node: &Server, event_type: &str) -> HashMap<String, (u64, u64)> {
    let r = node
        .post(
            "/api/publish",
            ADMIN_KEY,
            json!({"broadcast": true, "event_type": event_type, "data": {}}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r: Value = r.json().await.unwrap();
    let mut answer = HashMap::new();
    for e in r["events"].as_array().unwrap() {
        let player = e["player_id"].as_str().unwrap().to_owned();
        let figures = (
            e["sequence_number"].as_u64().unwrap(),
            e["connections"].as_u64().unwrap(),
        );
        assert!(
            answer.insert(player.clone(), figures).is_none(),
            "{player} numbered twice by one broadcast"
        );
    }
    answer
}

/// A broadcast to more players than one chunk holds, spread over three nodes (one player with
/// two connections on one node, some with connections on two nodes): every player is in the
/// answer once with its connections counted, and each connection gets the event once, with
/// the answer's number, and nothing else before the next event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_in_several_chunks_reaches_every_player_once() {
    let nodes = cluster(3, |_| {}).await;
    for node in &nodes {
        broadcast_chunk(node, 4);
    }
    const PLAYERS: usize = 11;
    let players: Vec<String> = (0..PLAYERS).map(|i| format!("crowd{i}")).collect();
    let (mut sockets, mut streams) = (Vec::new(), Vec::new());
    let mut expected = HashMap::new();
    for (i, player) in players.iter().enumerate() {
        sockets.push((player.clone(), nodes[i % 3].ws(player, "").await));
        let mut connections = 1;
        if i % 2 == 0 {
            streams.push((player.clone(), nodes[(i + 1) % 3].sse(player, "").await));
            connections += 1;
        } else if i == 1 {
            streams.push((player.clone(), nodes[i % 3].sse(player, "").await));
            connections += 1;
        }
        expected.insert(player.clone(), connections);
    }
    for (_, ws) in &mut sockets {
        assert_eq!(ws.next_event().await["event_type"], "connected");
    }
    for (_, sse) in &mut streams {
        assert_eq!(sse.next_event().await["event_type"], "connected");
    }

    let answer = broadcast(&nodes[1], "news").await;
    let figures: HashMap<String, u64> = answer.iter().map(|(p, f)| (p.clone(), f.1)).collect();
    assert_eq!(
        figures, expected,
        "every player once, its connections counted"
    );

    // A second event right behind: whatever a connection receives between the two would be
    // a repeat of the broadcast.
    let names: Vec<&str> = players.iter().map(String::as_str).collect();
    nodes[2].publish(&names, "after", json!({})).await;
    for (player, ws) in &mut sockets {
        let seq = answer[player.as_str()].0;
        let news = ws.next_event().await;
        assert_eq!(
            (&news["event_type"], &news["sequence_number"]),
            (&json!("news"), &json!(seq))
        );
        assert_eq!(
            ws.next_event().await["sequence_number"],
            seq + 1,
            "{player}: once"
        );
    }
    for (player, sse) in &mut streams {
        let seq = answer[player.as_str()].0;
        let news = sse.next_event().await;
        assert_eq!(
            (&news["event_type"], &news["sequence_number"]),
            (&json!("news"), &json!(seq))
        );
        assert_eq!(
            sse.next_event().await["sequence_number"],
            seq + 1,
            "{player}: once"
        );
    }
}

/// A chunk that fails in Redis fails the whole broadcast: 503, never a 200 that names only the
/// players of the chunks that went through. The failure is made by hand: one player's counter
/// holds something that is not a number, so the script numbering its chunk stops there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_whose_chunk_fails_answers_503() {
    let prefix = unique_prefix();
    let url = test_redis_url();
    let node = Server::from_settings(cluster_settings(&url, &prefix, "only")).await;
    node.ready().await;
    broadcast_chunk(&node, 1);
    let mut sockets = Vec::new();
    for player in ["jo", "kim", "lee"] {
        let mut ws = node.ws(player, "").await;
        ws.next_event().await;
        sockets.push(ws);
    }
    assert_eq!(broadcast(&node, "fine").await.len(), 3);

    let mut redis = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg(format!("{prefix}:p:kim"))
        .arg("seq")
        .arg("broken")
        .query_async(&mut redis)
        .await
        .unwrap();
    let r = node
        .post(
            "/api/publish",
            ADMIN_KEY,
            json!({"broadcast": true, "event_type": "partial", "data": {}}),
        )
        .await;
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error_type"], "connection_error");
}

/// A TCP proxy in front of Redis that a test can cut: every connection through it ends at
/// once, and new ones wait until it is opened again. It takes one node off Redis, subscriber
/// and all, while the others keep it.
struct CuttableProxy {
    port: u16,
    /// The cut's generation (a connection ends when it changes) and whether new connections
    /// may go through.
    state: tokio::sync::watch::Sender<(u64, bool)>,
}

impl CuttableProxy {
    async fn start(upstream: String) -> CuttableProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (state, _) = tokio::sync::watch::channel((0, true));
        let states = state.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut rx = states.subscribe();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(open) = rx.wait_for(|(_, open)| *open).await.map(|s| s.0) else {
                        return;
                    };
                    let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = rx.wait_for(|(generation, _)| *generation != open) => {}
                    }
                });
            }
        });
        CuttableProxy { port, state }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn cut(&self) {
        self.state.send_modify(|(generation, open)| {
            *generation += 1;
            *open = false;
        });
    }

    fn restore(&self) {
        self.state.send_modify(|(_, open)| *open = true);
    }
}

/// A node whose subscription was cut misses what was published meanwhile. Once it is back on
/// Redis it reads that from history by itself: its clients get every event without waiting for
/// a later one to show the gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_redis_catches_up_on_what_was_published_meanwhile() {
    let redis = test_redis_url();
    let upstream = redis
        .strip_prefix("redis://")
        .unwrap_or(&redis)
        .trim_end_matches('/')
        .to_owned();
    let proxy = CuttableProxy::start(upstream).await;
    let prefix = unique_prefix();
    let mut settings_a = cluster_settings(&proxy.url(), &prefix, "a");
    settings_a.heartbeat_secs = Some(1);
    let mut settings_b = cluster_settings(&redis, &prefix, "b");
    settings_b.heartbeat_secs = Some(1);
    let a = Server::from_settings(settings_a).await;
    let b = Server::from_settings(settings_b).await;
    a.ready().await;
    b.ready().await;

    let mut ws = a.ws("ivy", "").await;
    ws.next_event().await;
    let seq = |r: Value| r["events"][0]["sequence_number"].as_u64().unwrap();
    let live = seq(b.publish(&["ivy"], "live", json!({})).await);
    assert_eq!(ws.next_event().await["sequence_number"], live);

    proxy.cut();
    let missed = [
        seq(b.publish(&["ivy"], "missed", json!({"n": 1})).await),
        seq(b.publish(&["ivy"], "missed", json!({"n": 2})).await),
    ];
    proxy.restore();
    // Nothing more is published: only the node's own catch-up can bring these.
    for expected in missed {
        let event = tokio::time::timeout(Duration::from_secs(20), ws.next_event())
            .await
            .expect("the node caught up by itself");
        assert_eq!(event["event_type"], "missed");
        assert_eq!(event["sequence_number"], expected);
    }
}
