//! No lost events: resume on both transports under continuous publishing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::common::*;
use parking_lot::Mutex;
use serde_json::{Value, json};

/// One connection's worth of stream events, read until `take` arrive or the publisher is done
/// and the last published event was seen.
enum Conn {
    Ws(Box<Ws>),
    Sse(Sse),
}

impl Conn {
    async fn next(&mut self) -> Value {
        match self {
            Conn::Ws(ws) => ws.next_event().await,
            Conn::Sse(sse) => sse.next_event().await,
        }
    }
}

async fn open(server: &Server, player: &str, sse: bool, cursor: Option<u64>) -> Conn {
    let query = cursor
        .map(|c| format!("?last_event_id={c}"))
        .unwrap_or_default();
    if sse {
        Conn::Sse(server.sse(player, &query).await)
    } else {
        Conn::Ws(Box::new(server.ws(player, &query).await))
    }
}

/// Events each run publishes.
const EVENTS: usize = 1000;

/// History long enough for every event a run publishes: the property is that nothing is lost
/// or repeated across reconnects, and each resume asserts `recovered: true`. With the default
/// 256 a reader slowed by the rest of the test binary, sharing two cores, could fall more than
/// that behind the publisher and find its gap trimmed, which is SPEC's `recovered: false`, not
/// a fault (`a_cursor_older_than_history_says_not_recovered_and_replays_what_is_left`).
fn keep_every_event(s: &mut dualconn::config::Settings) {
    s.history_size = Some(EVENTS);
}

/// Connections open on a random node each time and publishes go through the nodes in turn, so
/// with more than one node every resume crosses the backplane.
async fn no_loss_with_seed(seed: u64, nodes: &[Arc<Server>]) {
    let player = format!("resumer{seed}");
    let published = Arc::new(Mutex::new(Vec::<u64>::new()));
    let done = Arc::new(AtomicBool::new(false));

    let mut rng = XorShift(seed | 1);
    let pick = |rng: &mut XorShift| nodes[rng.below(nodes.len() as u64) as usize].clone();
    // The first connection is live before publishing starts; every later one resumes.
    let mut first = Some(open(&pick(&mut rng), &player, rng.below(2) == 1, None).await);

    let publisher = {
        let (nodes, published, done, player) = (
            nodes.to_vec(),
            published.clone(),
            done.clone(),
            player.clone(),
        );
        tokio::spawn(async move {
            for i in 0..EVENTS {
                let server = &nodes[i % nodes.len()];
                let r = server.publish(&[&player], "tick", json!({"i": i})).await;
                let seq = r["events"][0]["sequence_number"].as_u64().unwrap();
                published.lock().push(seq);
            }
            done.store(true, Ordering::SeqCst);
        })
    };

    let mut received: Vec<u64> = Vec::new();
    let mut reconnects = 0;
    'outer: loop {
        let use_sse = rng.below(2) == 1;
        let cursor = received.last().copied();
        let mut conn = match first.take() {
            Some(conn) => conn,
            None => open(&pick(&mut rng), &player, use_sse, cursor).await,
        };
        assert_eq!(conn.next().await["event_type"], "connected");
        if let Some(cursor) = cursor {
            let recovery = conn.next().await;
            assert_eq!(recovery["event_type"], "recovery");
            assert_eq!(
                recovery["data"]["recovered"], true,
                "history covers the gap"
            );
            assert_eq!(recovery["data"]["from_sequence_number"], cursor);
        }
        let take = 1 + rng.below(25);
        for _ in 0..take {
            // Stop once everything published has arrived.
            if done.load(Ordering::SeqCst) && received.len() == EVENTS {
                break 'outer;
            }
            let e = conn.next().await;
            let seq = e["sequence_number"].as_u64().expect("a stream event");
            if let Some(&last) = received.last() {
                assert!(seq > last, "no duplicate and in order on one connection");
            }
            received.push(seq);
            if received.len() == EVENTS {
                break 'outer;
            }
        }
        drop(conn);
        reconnects += 1;
    }
    within(publisher).await.unwrap();
    let published = published.lock().clone();
    assert_eq!(
        received, published,
        "joined together, exactly the published sequence"
    );
    assert!(reconnects > 10, "the schedule forced many reconnects");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_event_is_lost_or_repeated_across_random_reconnects_on_both_transports() {
    let server = Arc::new(Server::start_with(keep_every_event).await);
    for seed in [1, 0x5eed, 0xdecaf] {
        no_loss_with_seed(seed, std::slice::from_ref(&server)).await;
    }
}

/// The same property with the Redis backplane: two nodes, connections and publishes spread
/// over both, so every join merges Redis history with live events from another node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_event_is_lost_or_repeated_across_nodes_of_a_cluster() {
    let nodes: Vec<Arc<Server>> = cluster(2, keep_every_event)
        .await
        .into_iter()
        .map(Arc::new)
        .collect();
    for seed in [7, 0xc1a5] {
        no_loss_with_seed(seed, &nodes).await;
    }
}

#[tokio::test]
async fn a_cursor_older_than_history_says_not_recovered_and_replays_what_is_left() {
    let server = Server::start_with(|s| s.history_size = Some(3)).await;
    let mut seqs = Vec::new();
    for i in 0..6 {
        let r = server.publish(&["old"], "tick", json!({"i": i})).await;
        seqs.push(r["events"][0]["sequence_number"].as_u64().unwrap());
    }
    let mut ws = server
        .ws("old", &format!("?last_event_id={}", seqs[0]))
        .await;
    ws.next_event().await;
    let recovery = ws.next_event().await;
    assert_eq!(recovery["event_type"], "recovery");
    assert_eq!(recovery["data"]["recovered"], false);
    assert_eq!(recovery["data"]["replayed"], 3);
    for expected in &seqs[3..] {
        assert_eq!(ws.next_event().await["sequence_number"], *expected);
    }
}

/// History is bounded by bytes as well as by count: half the outbox bound, so that a replay
/// always fits in the outbox with room for live events behind it.
#[tokio::test]
async fn history_keeps_half_the_outbox_bound_so_a_replay_leaves_room_for_live_events() {
    let server = Server::start_with(|s| s.outbox_bytes = Some(8 * 1024)).await;
    let blob = "x".repeat(900);
    let mut seqs = Vec::new();
    for i in 0..10 {
        let r = server
            .publish(&["heavy"], "tick", json!({"i": i, "blob": blob}))
            .await;
        seqs.push(r["events"][0]["sequence_number"].as_u64().unwrap());
    }
    let mut ws = server
        .ws("heavy", &format!("?last_event_id={}", seqs[0]))
        .await;
    ws.next_event().await;
    let recovery = ws.next_event().await;
    assert_eq!(recovery["data"]["recovered"], false);
    // About 1 KB each against 4 KiB of history: the last four, not all nine missed.
    let replayed = recovery["data"]["replayed"].as_u64().unwrap();
    assert!((1..=4).contains(&replayed), "replayed {replayed}");
    for expected in &seqs[10 - replayed as usize..] {
        assert_eq!(ws.next_event().await["sequence_number"], *expected);
    }
    for i in 0..4 {
        server
            .publish(&["heavy"], "live", json!({"i": i, "blob": blob}))
            .await;
        assert_eq!(ws.next_event().await["data"]["i"], i, "still open");
    }
}

#[tokio::test]
async fn a_resume_with_nothing_missed_is_recovered_and_nothing_else() {
    let server = Server::start().await;
    let r = server.publish(&["fresh"], "tick", json!({})).await;
    let seq = r["events"][0]["sequence_number"].as_u64().unwrap();
    let mut sse = server.sse("fresh", &format!("?last_event_id={seq}")).await;
    sse.next_event().await;
    let recovery = sse.next_event().await;
    assert_eq!(
        recovery["data"],
        json!({"recovered": true, "from_sequence_number": seq, "replayed": 0})
    );
    // The next thing is the next live event, nothing replayed in between.
    let live = server
        .publish(&["fresh"], "tick", json!({"live": true}))
        .await;
    let next = sse.next_event().await;
    assert_eq!(next["data"]["live"], true);
    assert_eq!(
        next["sequence_number"],
        live["events"][0]["sequence_number"]
    );
}

#[tokio::test]
async fn last_event_id_header_resumes_sse_and_the_query_wins() {
    let server = Server::start().await;
    let mut seqs = Vec::new();
    for i in 0..3 {
        let r = server.publish(&["hdr"], "tick", json!({"i": i})).await;
        seqs.push(r["events"][0]["sequence_number"].as_u64().unwrap());
    }
    let token = server.token("hdr");
    let res = server
        .http
        .get(server.url(&format!("/sse/hdr?token={token}")))
        .header("last-event-id", seqs[0].to_string())
        .send()
        .await
        .unwrap();
    let mut sse = Sse::from_response(res);
    sse.next_event().await;
    assert_eq!(sse.next_event().await["data"]["replayed"], 2);
    let res = server
        .http
        .get(server.url(&format!("/sse/hdr?token={token}&last_event_id={}", seqs[1])))
        .header("last-event-id", seqs[0].to_string())
        .send()
        .await
        .unwrap();
    let mut sse = Sse::from_response(res);
    sse.next_event().await;
    assert_eq!(sse.next_event().await["data"]["replayed"], 1);
    let bad = server
        .http
        .get(server.url(&format!("/sse/hdr?token={token}&last_event_id=abc")))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let ahead = server
        .ws("hdr", &format!("?last_event_id={}", seqs[2] + 100))
        .await;
    let mut ahead = ahead;
    ahead.next_event().await;
    let recovery = ahead.next_event().await;
    assert_eq!(recovery["data"]["recovered"], false);
    assert_eq!(recovery["data"]["replayed"], 0);
}

/// SPEC §12.26: cursors at the edges of u64 and of JavaScript's exact integers, in the query
/// and in `Last-Event-ID`, on both transports. Each is a cursor ahead of the stream: the
/// connection opens, says `recovered: false`, replays nothing and then carries live events.
/// (Debug builds check overflow, so an unchecked `+ 1` on the cursor fails this test.)
#[tokio::test]
async fn huge_cursors_are_ahead_of_the_stream_on_both_transports_in_query_and_header() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::HeaderValue;

    let server = Server::start().await;
    server.publish(&["edge"], "tick", json!({})).await;
    let token = server.token("edge");
    for cursor in [u64::MAX, 1 << 53, (1 << 53) - 1] {
        for in_header in [false, true] {
            let query = if in_header {
                String::new()
            } else {
                format!("?last_event_id={cursor}")
            };
            let what = format!("cursor {cursor}, header {in_header}");

            let mut req = server
                .ws_url(&format!("/api/ws{query}"))
                .into_client_request()
                .unwrap();
            let headers = req.headers_mut();
            headers.insert(
                "sec-websocket-protocol",
                HeaderValue::from_str(&format!("bearer, {token}")).unwrap(),
            );
            if in_header {
                headers.insert("last-event-id", HeaderValue::from(cursor));
            }
            let mut ws = server.ws_request(req).await.expect(&what);

            let sep = if query.is_empty() { "?" } else { "&" };
            let mut get = server
                .http
                .get(server.url(&format!("/sse/edge{query}{sep}token={token}")));
            if in_header {
                get = get.header("last-event-id", cursor.to_string());
            }
            let res = within(get.send()).await.unwrap();
            assert_eq!(res.status(), 200, "{what}");
            let mut sse = Sse::from_response(res);

            assert_eq!(ws.next_event().await["event_type"], "connected", "{what}");
            assert_eq!(sse.next_event().await["event_type"], "connected", "{what}");
            let expected =
                json!({"recovered": false, "from_sequence_number": cursor, "replayed": 0});
            assert_eq!(ws.next_event().await["data"], expected, "{what}");
            assert_eq!(sse.next_event().await["data"], expected, "{what}");

            let live = server
                .publish(&["edge"], "tick", json!({"live": true}))
                .await;
            let seq = &live["events"][0]["sequence_number"];
            assert_eq!(&ws.next_event().await["sequence_number"], seq, "{what}");
            assert_eq!(&sse.next_event().await["sequence_number"], seq, "{what}");
        }
    }
    // One past u64 is not a number at all: 400, never a wrap.
    let res = within(
        server
            .http
            .get(server.url(&format!(
                "/sse/edge?token={token}&last_event_id=18446744073709551616"
            )))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 400);
}
