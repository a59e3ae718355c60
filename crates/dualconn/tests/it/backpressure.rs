//! A client that stops reading is cut off with 4008; nobody else notices.

use crate::common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Reads server frames until a close frame and returns its code.
async fn read_until_close(stream: &mut TcpStream) -> Option<u16> {
    loop {
        let mut h = [0u8; 2];
        stream.read_exact(&mut h).await.ok()?;
        let opcode = h[0] & 0x0f;
        let len = match h[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                stream.read_exact(&mut b).await.ok()?;
                u16::from_be_bytes(b) as usize
            }
            127 => {
                let mut b = [0u8; 8];
                stream.read_exact(&mut b).await.ok()?;
                u64::from_be_bytes(b) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0u8; len];
        stream.read_exact(&mut payload).await.ok()?;
        if opcode == 0x8 {
            return Some(u16::from_be_bytes([payload[0], payload[1]]));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_with_4008_and_others_are_unaffected() {
    let server = Server::start_with(|s| s.max_body_bytes = Some(1 << 20)).await;
    let mut slow = tiny_buffer_ws(&server, "slow").await;
    let mut good = server.ws("good", "").await;
    good.next_event().await;
    let big = "x".repeat(200 * 1024);

    // Flood the slow player until the server drops it from fan-out, checking between floods
    // that the good player still gets every event. Memory and latency under this load are the
    // soak's business (scripts/soak.sh): a sibling test shares this process and its CPU.
    let mut flagged_after = None;
    for round in 0..400 {
        let r = server.publish(&["slow"], "blob", json!({"b": big})).await;
        if r["events"][0]["connections"] == 0 {
            flagged_after = Some(round);
            break;
        }
        server
            .publish(&["good"], "tick", json!({"round": round}))
            .await;
        let e = good.next_event().await;
        assert_eq!(e["data"]["round"], round);
    }
    let rounds = flagged_after.expect("the slow client was cut off");
    // The 1 MiB outbox and the kernel's buffers hold a few of these 200 KiB events, not 200.
    assert!(rounds < 200, "cut off after {rounds} rounds");
    // Keep publishing to it: nothing more is queued for a connection that is closing.
    for _ in 0..100 {
        let r = server.publish(&["slow"], "blob", json!({"b": big})).await;
        assert_eq!(r["events"][0]["connections"], 0);
    }

    // Once it reads again it finds the close frame with 4008 behind what was queued.
    let code = within(read_until_close(&mut slow)).await;
    assert_eq!(code, Some(4008));

    // The good player is still served.
    server
        .publish(&["good"], "tick", json!({"after": true}))
        .await;
    assert_eq!(good.next_event().await["data"]["after"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sse_client_that_stops_reading_loses_its_stream_and_socket() {
    let server = Server::start_with(|s| s.max_body_bytes = Some(1 << 20)).await;
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(server.addr).await.unwrap();
    let request = format!(
        "GET /sse/slowsse?token={} HTTP/1.1\r\nHost: {}\r\n\r\n",
        server.token("slowsse"),
        server.addr
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let big = "y".repeat(200 * 1024);
    let mut cut_off = false;
    for _ in 0..400 {
        let r = server
            .publish(&["slowsse"], "blob", json!({"b": big}))
            .await;
        if r["events"][0]["connections"] == 0 {
            cut_off = true;
            break;
        }
    }
    assert!(cut_off, "the slow SSE client was cut off");
    // Reading again, it drains what the kernel held and then finds the socket closed.
    let mut sink = vec![0u8; 64 * 1024];
    let ended = within(async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(ended);
    let info: serde_json::Value = server
        .get("/api/connections/slowsse", ADMIN_KEY)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(info["connections"]["sse"]["count"], 0);
}
