//! The embedding example builds (cargo test builds examples) and works when run.

use std::process::Stdio;

use crate::common::within;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

fn example_path() -> std::path::PathBuf {
    // target/<profile>/deps/embedding-<hash> -> target/<profile>/examples/embedded_game
    let mut path = std::env::current_exe().unwrap();
    path.pop();
    path.pop();
    path.push("examples");
    path.push("embedded_game");
    path
}

#[tokio::test]
async fn the_embedded_game_answers_commands_and_publishes_from_game_logic() {
    let mut child = tokio::process::Command::new(example_path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the example is built by `cargo test --workspace` (or `cargo build --examples`)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = within(lines.next_line()).await.unwrap().unwrap();
    let addr = addr.strip_prefix("listening on ").unwrap().to_owned();
    let token_line = within(lines.next_line()).await.unwrap().unwrap();
    let token = token_line.rsplit(' ').next().unwrap().to_owned();

    let mut req = format!("ws://{addr}/api/ws").into_client_request().unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        format!("bearer, {token}").parse().unwrap(),
    );
    let (mut ws, _) = within(tokio_tungstenite::connect_async(req)).await.unwrap();
    ws.send(Message::text(
        r#"{"type":"command","data":{"command":"roll 20"}}"#,
    ))
    .await
    .unwrap();
    let (mut answered, mut rolled, mut ticked) = (false, false, false);
    while !(answered && rolled && ticked) {
        let Some(Ok(Message::Text(text))) = within(ws.next()).await else {
            continue;
        };
        let e: Value = serde_json::from_str(&text).unwrap();
        match e["event_type"].as_str().unwrap() {
            "command_response" => {
                let v = e["data"]["value"].as_u64().unwrap();
                assert!((1..=20).contains(&v));
                answered = true;
            }
            "dice_rolled" => {
                assert_eq!(e["room_id"], "table", "told through the table's room");
                rolled = true;
            }
            "world_tick" => ticked = true,
            _ => {}
        }
    }
    // SIGTERM drains and exits 0.
    let pid = child.id().unwrap();
    std::process::Command::new("kill")
        .arg(pid.to_string())
        .status()
        .unwrap();
    let status = within(child.wait()).await.unwrap();
    assert!(status.success(), "{status:?}");
}
