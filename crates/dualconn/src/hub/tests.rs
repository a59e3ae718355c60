use super::*;

fn config() -> HubConfig {
    HubConfig {
        session_ttl: Duration::from_secs(3600),
        ..HubConfig::default()
    }
}

fn join<'a>(player: &'a PlayerId, kind: ConnKind, session: Option<&'a str>) -> Join<'a> {
    Join {
        player,
        kind,
        session_id: session,
        cursor: None,
    }
}

fn data() -> Box<RawValue> {
    RawValue::from_string(r#"{"n":1}"#.into()).unwrap()
}

/// A `chat` event with `data` and no room.
fn chat(data: &RawValue) -> Event<'_> {
    Event {
        event_type: "chat",
        room_id: None,
        data,
    }
}

async fn drain(conn: &Conn) -> (Vec<serde_json::Value>, Option<CloseReason>) {
    let mut out = Vec::new();
    let mut frames = Vec::new();
    loop {
        let close = tokio::time::timeout(Duration::from_millis(10), conn.outbox.next(&mut frames))
            .await
            .ok()
            .flatten();
        let done = close.is_some() || frames.is_empty();
        out.extend(
            frames
                .drain(..)
                .map(|f| serde_json::from_slice::<serde_json::Value>(&f.json).unwrap()),
        );
        if done {
            return (out, close);
        }
    }
}

#[tokio::test]
async fn every_connection_of_a_player_gets_each_event_once_in_order() {
    let hub = Hub::new(config());
    let p: PlayerId = "alice".into();
    let ws = hub
        .connect(join(&p, ConnKind::WebSocket, None))
        .await
        .unwrap();
    let sse = hub.connect(join(&p, ConnKind::Sse, None)).await.unwrap();
    assert_eq!(
        ws.session(),
        sse.session(),
        "no session id joins the current one"
    );
    let d = data();
    let event = chat(&d);
    let a = hub.publish(&p, &event).await.unwrap();
    let b = hub.publish(&p, &event).await.unwrap();
    assert_eq!(a.connections, 2);
    assert_eq!(b.sequence_number, a.sequence_number + 1);
    for conn in [&ws, &sse] {
        let (events, close) = drain(conn).await;
        assert_eq!(close, None);
        let types: Vec<_> = events.iter().map(|e| e["event_type"].clone()).collect();
        assert_eq!(types, ["connected", "chat", "chat"]);
        assert_eq!(events[1]["sequence_number"], a.sequence_number);
        assert_eq!(events[2]["sequence_number"], b.sequence_number);
    }
}

#[tokio::test]
async fn session_rules() {
    let hub = Hub::new(config());
    let p: PlayerId = "bob".into();
    let first = hub
        .connect(join(&p, ConnKind::WebSocket, Some("s1")))
        .await
        .unwrap();
    assert_eq!(
        hub.connect(join(&p, ConnKind::Sse, Some("s2"))).await.err(),
        Some(JoinError::SessionConflict)
    );
    let ended = hub.new_session(&p, Some("s3")).await.unwrap();
    assert_eq!(ended.disconnected, 1);
    let (events, close) = drain(&first).await;
    assert_eq!(events.last().unwrap()["event_type"], "session_terminated");
    assert_eq!(events.last().unwrap()["data"]["reason"], "new_session");
    assert_eq!(close, Some(CloseReason::SessionReplaced));
    assert_eq!(
        hub.connect(join(&p, ConnKind::Sse, Some("s1"))).await.err(),
        Some(JoinError::StaleSession)
    );
    assert!(matches!(
        hub.new_session(&p, Some("s1")).await,
        Err(SessionError::Replaced)
    ));
    // No live connection: a new id takes over and fences the old one.
    let c = hub
        .connect(join(&p, ConnKind::Sse, Some("s4")))
        .await
        .unwrap();
    assert_eq!(c.session(), "s4");
    hub.disconnect(&c);
    assert_eq!(
        hub.connect(join(&p, ConnKind::Sse, Some("s3"))).await.err(),
        Some(JoinError::StaleSession)
    );
}

#[tokio::test]
async fn replaced_session_memory_is_bounded() {
    let hub = Hub::new(config());
    let p: PlayerId = "flood".into();
    for i in 0..1000 {
        hub.new_session(&p, Some(&format!("s{i}"))).await.unwrap();
    }
    let shard = hub.shard(&p).lock();
    assert_eq!(shard[&p].replaced.len(), REPLACED_SESSIONS_REMEMBERED);
}

#[tokio::test]
async fn the_cap_evicts_the_oldest_with_connection_replaced() {
    let hub = Hub::new(config());
    let p: PlayerId = "carol".into();
    let mut conns = Vec::new();
    for _ in 0..5 {
        conns.push(hub.connect(join(&p, ConnKind::Sse, None)).await.unwrap());
    }
    let (events, close) = drain(&conns[0]).await;
    assert_eq!(events.last().unwrap()["event_type"], "connection_replaced");
    assert_eq!(close, Some(CloseReason::ConnectionReplaced));
    assert_eq!(hub.stats().sse_connections, 4);
}

#[tokio::test]
async fn resume_replays_after_the_cursor_then_goes_live() {
    let hub = Hub::new(config());
    let p: PlayerId = "dave".into();
    let d = data();
    let event = Event {
        event_type: "tick",
        room_id: Some("hall"),
        data: &d,
    };
    let mut seqs = Vec::new();
    for _ in 0..5 {
        seqs.push(hub.publish(&p, &event).await.unwrap().sequence_number);
    }
    let conn = hub
        .connect(Join {
            player: &p,
            kind: ConnKind::WebSocket,
            session_id: None,
            cursor: Some(seqs[1]),
        })
        .await
        .unwrap();
    let live = hub.publish(&p, &event).await.unwrap().sequence_number;
    let (events, _) = drain(&conn).await;
    assert_eq!(events[0]["event_type"], "connected");
    assert_eq!(events[1]["event_type"], "recovery");
    assert_eq!(events[1]["data"]["recovered"], true);
    assert_eq!(events[1]["data"]["replayed"], 3);
    let got: Vec<u64> = events[2..]
        .iter()
        .map(|e| e["sequence_number"].as_u64().unwrap())
        .collect();
    assert_eq!(got, [seqs[2], seqs[3], seqs[4], live]);
}

#[tokio::test]
async fn an_overflowing_connection_is_dropped_and_others_are_not() {
    let mut cfg = config();
    cfg.outbox_bytes = 2048;
    let hub = Hub::new(cfg);
    let slow: PlayerId = "slow".into();
    let conn = hub
        .connect(join(&slow, ConnKind::WebSocket, None))
        .await
        .unwrap();
    let d = RawValue::from_string(format!(r#""{}""#, "x".repeat(300))).unwrap();
    let event = Event {
        event_type: "big",
        room_id: None,
        data: &d,
    };
    // The publish that overflows is the first to reach no connection.
    let mut overflowed_at = None;
    for i in 1..=10u64 {
        let published = hub.publish(&slow, &event).await.unwrap();
        if published.connections == 0 && overflowed_at.is_none() {
            overflowed_at = Some(i);
        }
    }
    let k = overflowed_at.expect("the outbox overflowed");
    assert!(k > 1, "something was queued first");
    assert_eq!(conn.outbox.closing(), Some(CloseReason::SlowConsumer));
    // SPEC §12.25: each publish that addressed the connection counts as sent, and every one of
    // them failed: the k - 1 dropped from the queue and the one that overflowed it.
    let totals = hub.counters.totals();
    assert_eq!(
        (
            totals.messages_sent,
            totals.deliveries_failed,
            totals.deliveries_ok,
            totals.slow_consumers
        ),
        (k, k, 0, 1)
    );
}

#[tokio::test]
async fn an_event_for_a_connection_already_closing_counts_as_sent_and_failed() {
    let hub = Hub::new(config());
    let p: PlayerId = "leaving".into();
    let conn = hub.connect(join(&p, ConnKind::Sse, None)).await.unwrap();
    conn.outbox.close(None, CloseReason::TokenExpired);
    let d = RawValue::from_string("1".into()).unwrap();
    let event = Event {
        event_type: "late",
        room_id: None,
        data: &d,
    };
    assert_eq!(hub.publish(&p, &event).await.unwrap().connections, 0);
    let totals = hub.counters.totals();
    assert_eq!(
        (
            totals.messages_sent,
            totals.deliveries_failed,
            totals.deliveries_ok
        ),
        (1, 1, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_player_is_forgotten_after_the_session_ttl() {
    let hub = Hub::new(config());
    let p: PlayerId = "eve".into();
    let conn = hub.connect(join(&p, ConnKind::Sse, None)).await.unwrap();
    tokio::time::advance(Duration::from_secs(7200)).await;
    hub.sweep();
    assert_eq!(hub.stats().players_known, 1, "connected players are kept");
    hub.disconnect(&conn);
    tokio::time::advance(Duration::from_secs(3599)).await;
    hub.sweep();
    assert_eq!(hub.stats().players_known, 1, "not idle for the ttl yet");
    assert!(hub.session(&p).await.unwrap().is_some());
    tokio::time::advance(Duration::from_secs(2)).await;
    hub.sweep();
    assert_eq!(hub.stats().players_known, 0);
    assert!(hub.session(&p).await.unwrap().is_none());
}

#[tokio::test]
async fn shutdown_tells_everyone_and_refuses_newcomers() {
    let hub = Hub::new(config());
    let p: PlayerId = "frank".into();
    let conn = hub
        .connect(join(&p, ConnKind::WebSocket, None))
        .await
        .unwrap();
    hub.shutdown_all(Duration::from_millis(1500));
    let (events, close) = drain(&conn).await;
    let last = events.last().unwrap();
    assert_eq!(last["event_type"], "server_shutdown");
    assert_eq!(last["data"]["reconnect_after_ms"], 1500);
    assert_eq!(close, Some(CloseReason::ServerShutdown));
    assert_eq!(
        hub.connect(join(&p, ConnKind::Sse, None)).await.err(),
        Some(JoinError::ShuttingDown)
    );
}

#[tokio::test(start_paused = true)]
async fn memberships_are_forgotten_with_the_player_and_kept_while_it_connects_or_hears() {
    let hub = Hub::new(config());
    let (online, quiet, listener): (PlayerId, PlayerId, PlayerId) =
        ("olga".into(), "quinn".into(), "lena".into());
    let conn = hub
        .connect(join(&online, ConnKind::Sse, None))
        .await
        .unwrap();
    for p in [&online, &quiet, &listener] {
        hub.join_room("hall", p).await.unwrap();
    }
    hub.join_room("yard", &listener).await.unwrap();
    tokio::time::advance(Duration::from_secs(3000)).await;
    // An event keeps a member remembered, like any event for an offline player.
    let d = data();
    let event = chat(&d);
    hub.publish(&listener, &event).await.unwrap();
    tokio::time::advance(Duration::from_secs(601)).await;
    hub.sweep();
    let members: Vec<_> = hub
        .room_members("hall")
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.player_id.to_string(), m.online))
        .collect();
    assert_eq!(
        members,
        [("lena".into(), false), ("olga".into(), true)],
        "quinn was idle past the session ttl"
    );
    assert!(hub.player_rooms(&quiet).await.unwrap().is_empty());
    assert_eq!(
        hub.room_figures().await.unwrap(),
        RoomFigures {
            rooms: 2,
            memberships: 3
        }
    );
    hub.disconnect(&conn);
    tokio::time::advance(Duration::from_secs(3601)).await;
    hub.sweep();
    assert_eq!(hub.room_figures().await.unwrap(), RoomFigures::default());
}

#[tokio::test]
async fn an_sse_stream_is_unhealthy_once_its_queue_reaches_half_the_bound() {
    let mut cfg = config();
    cfg.outbox_bytes = 100;
    let hub = Hub::new(cfg);
    let p: PlayerId = "frank".into();
    let sse = hub.connect(join(&p, ConnKind::Sse, None)).await.unwrap();
    drain(&sse).await;
    let local = |len: usize| Frame {
        seq: None,
        json: bytes::Bytes::from(vec![b'x'; len]),
    };
    assert_eq!(sse.outbox.push(local(49)).0, Pushed::Queued);
    assert!(
        hub.is_healthy(&sse, Instant::now()),
        "49 of 100 bytes queued"
    );
    assert_eq!(sse.outbox.push(local(1)).0, Pushed::Queued);
    assert!(
        !hub.is_healthy(&sse, Instant::now()),
        "half the bound queued (SPEC §9)"
    );
}

/// Cluster delivery (the backplane numbered the frames): consecutive numbers are delivered,
/// and a number that skips one means a notification was lost, so the frame waits for history.
#[tokio::test]
async fn a_delivered_number_that_skips_one_asks_for_history_and_consecutive_ones_do_not() {
    let hub = Hub::new(config());
    let p: PlayerId = "far".into();
    let _conn = hub
        .connect(join(&p, ConnKind::WebSocket, None))
        .await
        .unwrap();
    let frame = |seq: u64| Frame {
        seq: Some(seq),
        json: bytes::Bytes::from(format!(r#"{{"sequence_number":{seq}}}"#)),
    };
    assert_eq!(
        hub.deliver(&p, frame(10)),
        Delivered::Done,
        "the first number heard"
    );
    assert_eq!(hub.deliver(&p, frame(11)), Delivered::Done);
    assert_eq!(
        hub.deliver(&p, frame(13)),
        Delivered::Gap(11),
        "12 was lost"
    );
    assert_eq!(
        hub.deliver(&p, frame(14)),
        Delivered::Parked,
        "behind the history read"
    );
    assert_eq!(hub.deliver("nobody", frame(1)), Delivered::NotHere);
}

/// Cluster: one notification's players are numbered, then their idle connections written
/// together, each once and in the order the connections opened; a player whose number skips
/// one is reported as a gap, and its frame waits for history.
#[tokio::test]
async fn a_notifications_players_are_written_together_and_gaps_reported() {
    let hub = Hub::new(config());
    let socket = Arc::new(FakeSocket::default());
    let players: Vec<PlayerId> = ["n-a", "n-b", "n-c"].map(PlayerId::from).to_vec();
    for p in &players {
        let conn = hub
            .connect(join(p, ConnKind::WebSocket, None))
            .await
            .unwrap();
        drain(&conn).await;
        conn.outbox.written();
        conn.outbox.attach(socket.clone());
    }
    let tagged = |p: &PlayerId, seq: u64| Frame {
        seq: Some(seq),
        json: bytes::Bytes::from(format!("[{p} {seq}]")),
    };
    hub.deliver_all(players.iter().map(|p| (&**p, tagged(p, 1))), |_, _| {
        panic!("no gap")
    });
    let before = hub.counters.totals();
    let mut gaps = Vec::new();
    // Written in opening order, whatever order the notification lists them in.
    let listed = [(&players[2], 2), (&players[0], 2), (&players[1], 3)];
    hub.deliver_all(
        listed.iter().map(|(p, seq)| (&***p, tagged(p, *seq))),
        |p, after| gaps.push((p.to_owned(), after)),
    );
    assert_eq!(gaps, [("n-b".to_owned(), 1)], "n-b's 2 was lost");
    assert_eq!(
        hub.counters.totals().deliveries_ok - before.deliveries_ok,
        2
    );
    assert_eq!(
        String::from_utf8(socket.wire.lock().clone()).unwrap(),
        "[n-a 1][n-b 1][n-c 1][n-a 2][n-c 2]"
    );
}

/// Cluster catch-up after the subscription came back: each player with a connection here is
/// listed once, with the last number it was given; a player without one, or one already
/// waiting for history, is not read again.
#[tokio::test]
async fn a_catch_up_lists_each_player_held_here_once() {
    let hub = Hub::new(config());
    let here: PlayerId = "here".into();
    let gone: PlayerId = "gone".into();
    let _conn = hub
        .connect(join(&here, ConnKind::WebSocket, None))
        .await
        .unwrap();
    let left = hub.connect(join(&gone, ConnKind::Sse, None)).await.unwrap();
    hub.disconnect(&left);
    assert_eq!(hub.begin_catch_up(), [(here.clone(), 0)]);
    assert_eq!(hub.begin_catch_up(), [], "already waiting for history");
}

fn numbered(seq: u64) -> Frame {
    Frame {
        seq: Some(seq),
        json: bytes::Bytes::from(format!(r#"{{"sequence_number":{seq}}}"#)),
    }
}

fn numbers(events: &[serde_json::Value]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| e["sequence_number"].as_u64())
        .collect()
}

/// Cluster catch-up that read everything missed: history, then what was parked meanwhile,
/// reaches the connection once each and in order, although the two overlap.
#[tokio::test]
async fn a_complete_catch_up_delivers_history_then_parked_events_without_repeats() {
    let hub = Hub::new(config());
    let p: PlayerId = "behind".into();
    let conn = hub.connect(join(&p, ConnKind::Sse, None)).await.unwrap();
    assert_eq!(hub.deliver(&p, numbered(10)), Delivered::Done);
    assert_eq!(hub.deliver(&p, numbered(11)), Delivered::Done);
    assert_eq!(hub.deliver(&p, numbered(13)), Delivered::Gap(11));
    assert_eq!(hub.deliver(&p, numbered(14)), Delivered::Parked);
    let history = (12..=14).map(numbered).collect();
    hub.finish_catch_up(&p, Some((Some(1), history)));
    let (events, close) = drain(&conn).await;
    assert_eq!(close, None);
    assert_eq!(numbers(&events), [10, 11, 12, 13, 14]);
    assert_eq!(
        hub.deliver(&p, numbered(15)),
        Delivered::Done,
        "caught up: the next number is no gap"
    );
}

/// Cluster catch-up whose history no longer reaches back to the gap (trimmed), or could not
/// be read at all: nothing past the gap is delivered out of order; the connections end as
/// slow consumers, so each client resumes and learns from `recovery` what was lost.
#[tokio::test]
async fn an_incomplete_catch_up_closes_the_players_connections_for_resume() {
    let hub = Hub::new(config());
    for (name, history) in [
        (
            "trimmed",
            Some((Some(1), (13..=14).map(numbered).collect())),
        ),
        ("unreadable", None),
    ] {
        let p: PlayerId = name.into();
        let ws = hub
            .connect(join(&p, ConnKind::WebSocket, None))
            .await
            .unwrap();
        let sse = hub.connect(join(&p, ConnKind::Sse, None)).await.unwrap();
        assert_eq!(hub.deliver(&p, numbered(10)), Delivered::Done);
        assert_eq!(hub.deliver(&p, numbered(11)), Delivered::Done);
        assert_eq!(hub.deliver(&p, numbered(13)), Delivered::Gap(11));
        hub.finish_catch_up(&p, history);
        for conn in [&ws, &sse] {
            let (events, close) = drain(conn).await;
            assert_eq!(numbers(&events), [10, 11], "{name}: nothing past the gap");
            assert_eq!(close, Some(CloseReason::SlowConsumer), "{name}");
        }
    }
}

/// The node's report names its unhealthy connections, and only those, up to the limit.
#[tokio::test]
async fn the_unhealthy_connections_listed_are_exactly_the_unhealthy_ones() {
    let mut cfg = config();
    cfg.outbox_bytes = 100;
    let hub = Hub::new(cfg);
    let p: PlayerId = "grace".into();
    let fine = hub.connect(join(&p, ConnKind::Sse, None)).await.unwrap();
    let stuck = hub.connect(join(&p, ConnKind::Sse, None)).await.unwrap();
    drain(&fine).await;
    drain(&stuck).await;
    let local = Frame {
        seq: None,
        json: bytes::Bytes::from(vec![b'x'; 50]),
    };
    assert_eq!(hub.unhealthy_connection_ids(10), Vec::<String>::new());
    assert_eq!(stuck.outbox.push(local).0, Pushed::Queued);
    assert_eq!(hub.unhealthy_connection_ids(10), [stuck.id.to_string()]);
    assert_eq!(hub.unhealthy_connection_ids(0), Vec::<String>::new());
}

/// Cluster: a session made elsewhere ends only the connections admitted under an older one;
/// one admitted under the new session already, or still joining (it checks the fence itself),
/// stays.
#[tokio::test]
async fn terminating_a_session_ends_only_connections_admitted_under_an_older_one() {
    let hub = Hub::new(config());
    let p: PlayerId = "hal".into();
    let old = hub
        .connect(join(&p, ConnKind::WebSocket, None))
        .await
        .unwrap();
    let new = hub.connect(join(&p, ConnKind::Sse, None)).await.unwrap();
    let joining = hub.connect(join(&p, ConnKind::Sse, None)).await.unwrap();
    old.generation.store(1, Ordering::Release);
    new.generation.store(2, Ordering::Release);
    assert_eq!(hub.terminate(&p, 2, "round-2"), 1);
    let (events, close) = drain(&old).await;
    assert_eq!(close, Some(CloseReason::SessionReplaced));
    let last = events.last().unwrap();
    assert_eq!(last["event_type"], "session_terminated");
    for conn in [&new, &joining] {
        assert_eq!(drain(conn).await.1, None);
    }
}

/// `presence.last_seen`: now while the player is connected; once it has left, the moment it
/// left, however often it is asked.
#[tokio::test]
async fn last_seen_is_now_while_connected_and_the_leaving_moment_after() {
    let hub = Hub::new(config());
    let p: PlayerId = "ida".into();
    let conn = hub.connect(join(&p, ConnKind::Sse, None)).await.unwrap();
    let asked = SystemTime::now();
    let seen = hub.local_player(&p).last_seen.unwrap();
    assert!(seen >= asked, "connected: seen now");
    hub.disconnect(&conn);
    let left = SystemTime::now();
    let first = hub.local_player(&p).last_seen.unwrap();
    assert!(first <= left, "the moment it left");
    assert_eq!(hub.local_player(&p).last_seen, Some(first));
}

/// An answer to a command that came over no connection (`POST /api/command`) reaches every
/// connection of the player.
#[tokio::test]
async fn a_local_event_for_a_player_reaches_each_of_its_connections() {
    let hub = Hub::new(config());
    let p: PlayerId = "jon".into();
    let ws = hub
        .connect(join(&p, ConnKind::WebSocket, None))
        .await
        .unwrap();
    let sse = hub.connect(join(&p, ConnKind::Sse, None)).await.unwrap();
    drain(&ws).await;
    drain(&sse).await;
    hub.send_local_to_player(&p, "error", &serde_json::json!({"n": 1}));
    for conn in [&ws, &sse] {
        let (events, _) = drain(conn).await;
        let types: Vec<_> = events.iter().map(|e| e["event_type"].clone()).collect();
        assert_eq!(types, ["error"]);
    }
}

/// A player with no connections is remembered for `session_ttl` after its last activity, and
/// forgotten from that moment on; the tables give the memory back.
#[tokio::test(start_paused = true)]
async fn a_player_without_connections_is_forgotten_at_the_session_ttl_and_its_slot_given_back() {
    let hub = Hub::new(config());
    let ttl = config().session_ttl;
    let players: Vec<PlayerId> = (0..2000).map(|i| format!("p{i}").into()).collect();
    for p in &players {
        let conn = hub.connect(join(p, ConnKind::Sse, None)).await.unwrap();
        hub.disconnect(&conn);
    }
    let capacity = |hub: &Hub| {
        hub.shards
            .iter()
            .map(|s| s.lock().capacity())
            .sum::<usize>()
    };
    let full = capacity(&hub);
    assert!(full >= 2000);
    tokio::time::advance(ttl - Duration::from_millis(1)).await;
    hub.sweep();
    assert!(hub.local_player(&players[0]).session_id.is_some());
    tokio::time::advance(Duration::from_millis(1)).await;
    hub.sweep();
    assert!(hub.local_player(&players[0]).session_id.is_none());
    assert!(
        capacity(&hub) < full / 4,
        "{} of {full} slots kept",
        capacity(&hub)
    );
}

/// A publisher's direct write is a sign of life for an SSE stream (a write that completed is
/// all SSE has), but never for a WebSocket, whose peer must answer for itself: a dead peer's
/// socket can take writes for a long time.
#[tokio::test(start_paused = true)]
async fn a_direct_write_keeps_an_sse_stream_alive_and_not_a_websocket() {
    let hub = Hub::new(config());
    let p: PlayerId = "kim".into();
    let ws = hub
        .connect(join(&p, ConnKind::WebSocket, None))
        .await
        .unwrap();
    let sse = hub.connect(join(&p, ConnKind::Sse, None)).await.unwrap();
    let socket = Arc::new(FakeSocket::default());
    for conn in [&ws, &sse] {
        drain(conn).await;
        conn.outbox.written();
        conn.outbox.attach(socket.clone());
    }
    tokio::time::advance(Duration::from_secs(10)).await;
    let d = data();
    let event = chat(&d);
    hub.publish(&p, &event).await.unwrap();
    assert!(!socket.wire.lock().is_empty(), "written directly");
    let now = Instant::now();
    assert_eq!(sse.idle_for(now), Duration::ZERO);
    assert!(ws.idle_for(now) >= Duration::from_secs(10));
}

/// SPEC §9 at its edges: a WebSocket is healthy until its peer has been silent for two ping
/// intervals; an SSE stream until a write has waited for the socket for the write timeout.
#[tokio::test(start_paused = true)]
async fn health_ends_exactly_at_two_silent_ping_intervals_or_a_write_stalled_for_the_timeout() {
    let hub = Hub::new(config());
    let (ping, timeout) = (config().ping_interval, config().write_timeout);
    let p: PlayerId = "lea".into();
    let ws = hub
        .connect(join(&p, ConnKind::WebSocket, None))
        .await
        .unwrap();
    let milli = Duration::from_millis(1);
    tokio::time::advance(2 * ping - milli).await;
    assert!(
        hub.is_healthy(&ws, Instant::now()),
        "silent for less than 2 intervals"
    );
    tokio::time::advance(milli).await;
    assert!(
        !hub.is_healthy(&ws, Instant::now()),
        "silent for 2 intervals"
    );

    let sse = hub.connect(join(&p, ConnKind::Sse, None)).await.unwrap();
    sse.write_began();
    tokio::time::advance(timeout - milli).await;
    assert!(
        hub.is_healthy(&sse, Instant::now()),
        "a write waiting less than the timeout"
    );
    tokio::time::advance(milli).await;
    assert!(
        !hub.is_healthy(&sse, Instant::now()),
        "a write stalled for the timeout"
    );
}

/// The wall-clock times a connection reports are the hub's start plus the time since then.
#[tokio::test(start_paused = true)]
async fn a_connections_reported_times_are_wall_clock_times() {
    let before = SystemTime::now();
    let hub = Hub::new(config());
    let after = SystemTime::now();
    tokio::time::advance(Duration::from_secs(5)).await;
    let p: PlayerId = "max".into();
    let conn = hub.connect(join(&p, ConnKind::Sse, None)).await.unwrap();
    tokio::time::advance(Duration::from_secs(2)).await;
    conn.touch();
    let five = Duration::from_secs(5);
    let seven = Duration::from_secs(7);
    assert!((before + five..=after + five).contains(&conn.opened_at()));
    assert!((before + seven..=after + seven).contains(&conn.last_activity()));
}

/// Players with an idle WebSocket each, then an idle SSE stream each, all writing to one
/// socket that records what it is given.
async fn idle_players_on_one_socket(
    hub: &Hub,
    n: usize,
) -> (Vec<PlayerId>, Arc<FakeSocket>, Vec<Arc<Conn>>) {
    let socket = Arc::new(FakeSocket::default());
    let players: Vec<PlayerId> = (0..n).map(|i| format!("order-{i}").into()).collect();
    let mut conns = Vec::new();
    for kind in [ConnKind::WebSocket, ConnKind::Sse] {
        for p in &players {
            let conn = hub.connect(join(p, kind, None)).await.unwrap();
            drain(&conn).await;
            conn.outbox.written();
            conn.outbox.attach(socket.clone());
            conns.push(conn);
        }
    }
    (players, socket, conns)
}

/// The players' events on `socket`, each once, in the order their connections opened: every
/// WebSocket, then every SSE stream.
fn assert_written_in_opening_order(socket: &FakeSocket, players: &[PlayerId]) {
    let wire = String::from_utf8(socket.wire.lock().clone()).unwrap();
    let mut written: Vec<(usize, &str)> = players
        .iter()
        .flat_map(|p| wire.match_indices(&format!("\"{p}\"")).collect::<Vec<_>>())
        .collect();
    written.sort();
    let written: Vec<&str> = written
        .into_iter()
        .map(|(_, p)| p.trim_matches('"'))
        .collect();
    let opened: Vec<&str> = players.iter().chain(players).map(|p| &**p).collect();
    assert_eq!(written, opened, "written once each, in opening order");
}

/// A broadcast numbers every player, then writes the idle connections in the order they
/// opened, whatever shards their players hash to; a player's connections share its frame.
#[tokio::test]
async fn a_broadcast_writes_idle_connections_in_the_order_they_opened() {
    let hub = Hub::new(config());
    let (players, socket, _conns) = idle_players_on_one_socket(&hub, 8).await;
    let d = data();
    let event = chat(&d);
    let before = hub.counters.totals();
    let published = hub.broadcast(&event).await.unwrap();
    assert_eq!(published.len(), players.len());
    assert!(
        published.iter().all(|(_, p)| p.connections == 2),
        "the answer counts both of each player's connections"
    );
    let after = hub.counters.totals();
    let conns = 2 * players.len() as u64;
    assert_eq!(
        (
            after.messages_sent - before.messages_sent,
            after.deliveries_ok - before.deliveries_ok
        ),
        (conns, conns),
        "every held write counts as sent and as delivered"
    );
    assert_written_in_opening_order(&socket, &players);
}

/// A publish to a list of players, and one to a room, hold their idle connections' writes
/// as a broadcast does and make them together once every player is numbered (so through one
/// io_uring call where there is one), not player by player.
#[tokio::test]
async fn a_publish_to_several_players_writes_them_together_in_opening_order() {
    let d = data();
    let event = chat(&d);
    let hub = Hub::new(config());
    let (players, socket, _conns) = idle_players_on_one_socket(&hub, 4).await;
    let ids: Vec<&str> = players.iter().map(|p| &**p).collect();
    let before = hub.counters.totals();
    let published = hub.publish_to(&ids, &event).await.unwrap();
    assert!(published.iter().all(|(_, p)| p.connections == 2));
    let after = hub.counters.totals();
    assert_eq!(after.deliveries_ok - before.deliveries_ok, 8);
    assert_written_in_opening_order(&socket, &players);

    let hub = Hub::new(config());
    let (players, socket, _conns) = idle_players_on_one_socket(&hub, 4).await;
    for p in &players {
        hub.join_room("hall", p).await.unwrap();
    }
    let published = hub.publish_to_room("hall", &[], &event).await.unwrap();
    assert_eq!(published.len(), players.len());
    assert_written_in_opening_order(&socket, &players);
}

/// A player named twice in one publish gets both events, in order, even though the first
/// holds its connections' turn when the second arrives.
#[tokio::test]
async fn a_player_named_twice_in_one_publish_gets_both_events_in_order() {
    let hub = Hub::new(config());
    let (players, socket, conns) = idle_players_on_one_socket(&hub, 2).await;
    let d = data();
    let event = chat(&d);
    let ids = [&*players[0], &*players[1], &*players[0]];
    let published = hub.publish_to(&ids, &event).await.unwrap();
    let seqs: Vec<u64> = published.iter().map(|(_, p)| p.sequence_number).collect();
    assert_eq!(seqs[2], seqs[0] + 1);
    // The held frame went straight to the socket; the second waits for the writer.
    let wire = String::from_utf8(socket.wire.lock().clone()).unwrap();
    assert_eq!(wire.matches("\"order-0\"").count(), 2, "one per connection");
    // Player 0's WebSocket and SSE stream.
    for conn in [&conns[0], &conns[2]] {
        let (queued, close) = drain(conn).await;
        assert_eq!(close, None);
        assert_eq!(
            queued
                .iter()
                .map(|e| e["sequence_number"].as_u64())
                .collect::<Vec<_>>(),
            [Some(seqs[2])],
            "the second event queues behind the first"
        );
    }
}

/// A held frame that was never written (a broadcast that unwound midway) is written when it
/// is dropped, so the connection gets its turn back.
#[tokio::test]
async fn a_held_frame_dropped_unwritten_is_written_and_the_turn_given_back() {
    let hub = Hub::new(config());
    let p: PlayerId = "held".into();
    let conn = hub.connect(join(&p, ConnKind::Sse, None)).await.unwrap();
    drain(&conn).await;
    conn.outbox.written();
    let socket = Arc::new(FakeSocket::default());
    conn.outbox.attach(socket.clone());
    let frame = |seq: u64, json: &'static str| Frame {
        seq: Some(seq),
        json: bytes::Bytes::from_static(json.as_bytes()),
    };
    let held_frame = frame(u64::MAX - 1, "held");
    assert_eq!(conn.outbox.push_deferred(&held_frame).0, Pushed::Deferred);
    let mut held = HeldWrites::default();
    let at = held.keep(&held_frame);
    held.hold(&conn, at);
    drop(held);
    assert_eq!(&socket.wire.lock()[..], b"held");
    assert_eq!(
        conn.outbox.push(frame(u64::MAX, "next")).0,
        Pushed::Written,
        "the turn is free again"
    );
}

/// Where the thread has an io_uring, a broadcast hands the idle sockets' sends to the kernel
/// together: each client reads its own event, and a socket that is full gets its event queued
/// for its writer instead, so nothing is lost and nobody waits for it.
#[tokio::test]
async fn a_batched_broadcast_reaches_every_socket_and_queues_for_a_full_one() {
    use crate::shared_socket::{Framing, SharedTcp};
    use tokio::io::AsyncReadExt;
    if !crate::send_ring::tests::io_uring_allowed() {
        eprintln!("io_uring is disabled on this machine: nothing to test");
        return;
    }
    let hub = Hub::new(config());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (mut conns, mut clients, mut sockets) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..3 {
        let p: PlayerId = format!("ring-{i}").into();
        let conn = hub
            .connect(join(&p, ConnKind::WebSocket, None))
            .await
            .unwrap();
        drain(&conn).await;
        conn.outbox.written();
        let (client, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let accepted = accepted.unwrap().0;
        if i == 0 {
            // This client never reads: its socket is full before the broadcast.
            let chunk = vec![b'f'; 64 * 1024];
            while accepted.try_write(&chunk).is_ok() {}
        }
        let shared = SharedTcp::new(accepted);
        conn.outbox.attach(shared.socket().direct(Framing::WsText));
        conns.push(conn);
        clients.push(client.unwrap());
        sockets.push(shared);
    }
    let d = data();
    let event = chat(&d);
    let before = hub.counters.totals();
    hub.broadcast(&event).await.unwrap();
    let after = hub.counters.totals();
    assert_eq!(
        after.deliveries_ok - before.deliveries_ok,
        2,
        "the two sockets with room took their event at once"
    );
    for (i, client) in clients.iter_mut().enumerate().skip(1) {
        let mut wire = Vec::new();
        let id = format!("\"ring-{i}\"");
        while !String::from_utf8_lossy(&wire).contains(&id) {
            let mut buf = [0u8; 512];
            let n = tokio::time::timeout(Duration::from_secs(10), client.read(&mut buf))
                .await
                .expect("the event arrives")
                .unwrap();
            assert_ne!(n, 0, "the socket stays open");
            wire.extend_from_slice(&buf[..n]);
        }
        assert_eq!(wire[0], 0x81, "one WebSocket text frame");
        assert_eq!(String::from_utf8_lossy(&wire).matches(&id).count(), 1);
    }
    let (queued, close) = drain(&conns[0]).await;
    assert_eq!(close, None);
    assert_eq!(
        queued
            .iter()
            .map(|e| (e["event_type"].as_str(), e["player_id"].as_str()))
            .collect::<Vec<_>>(),
        [(Some("chat"), Some("ring-0"))],
        "the full socket's event waits in its queue"
    );
}
