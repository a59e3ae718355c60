//! How health moves, with paused time: the WebSocket transport driven over channels (its
//! logic is generic over Sink/Stream), and the hub's figures and trends read as it goes.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use dualconn::commands::Runner;
use dualconn::commands::demo::DemoWorld;
use dualconn::config::Rate;
use dualconn::delivery::Delivery;
use dualconn::http::ws::{Options, serve};
use dualconn::hub::{ConnKind, Hub, HubConfig, Join, PlayerId};
use futures_util::{Sink, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{self, Message};

/// The client's end of a WebSocket, as two channels.
struct FakeSocket {
    inbound: mpsc::UnboundedReceiver<Result<Message, tungstenite::Error>>,
    outbound: mpsc::UnboundedSender<Message>,
}

impl Stream for FakeSocket {
    type Item = Result<Message, tungstenite::Error>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inbound.poll_recv(cx)
    }
}

impl Sink<Message> for FakeSocket {
    type Error = tungstenite::Error;
    fn poll_ready(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Result<(), tungstenite::Error>> {
        Poll::Ready(Ok(()))
    }
    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), tungstenite::Error> {
        self.outbound
            .send(item)
            .map_err(|_| tungstenite::Error::ConnectionClosed)
    }
    fn poll_flush(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Result<(), tungstenite::Error>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Result<(), tungstenite::Error>> {
        Poll::Ready(Ok(()))
    }
}

const PING: Duration = Duration::from_secs(25);

fn hub() -> Arc<Hub> {
    Arc::new(Hub::new(HubConfig {
        history_size: 16,
        ping_interval: PING,
        ..HubConfig::default()
    }))
}

/// Opens a WebSocket on the hub; returns the sender of client frames and the receiver of
/// server frames.
async fn open_ws(
    hub: &Arc<Hub>,
    player: &str,
) -> (
    mpsc::UnboundedSender<Result<Message, tungstenite::Error>>,
    mpsc::UnboundedReceiver<Message>,
    tokio::task::JoinHandle<()>,
) {
    let player: PlayerId = player.into();
    let conn = hub
        .connect(Join {
            player: &player,
            kind: ConnKind::WebSocket,
            session_id: None,
            cursor: None,
        })
        .await
        .unwrap();
    let delivery = Delivery::new(
        hub.clone(),
        conn,
        SystemTime::now() + Duration::from_secs(86_400),
    );
    let (client_tx, inbound) = mpsc::unbounded_channel();
    let (outbound, client_rx) = mpsc::unbounded_channel();
    let runner = Runner::new(
        Arc::new(DemoWorld::new()),
        hub.clone(),
        Rate {
            per_second: 20,
            burst: 40,
        },
    );
    let (sink, stream) = FakeSocket { inbound, outbound }.split();
    let task = tokio::spawn(serve(
        sink,
        stream,
        delivery,
        Options {
            ping_interval: PING,
            write_timeout: Duration::from_secs(10),
        },
        runner,
        None,
    ));
    (client_tx, client_rx, task)
}

#[tokio::test(start_paused = true)]
async fn a_websocket_that_stops_answering_becomes_unhealthy_then_is_closed() {
    let hub = hub();
    let (alive_tx, mut alive_rx, _alive) = open_ws(&hub, "alive").await;
    let (_silent_tx, mut silent_rx, silent) = open_ws(&hub, "silent").await;
    assert!(
        matches!(silent_rx.recv().await, Some(Message::Text(_))),
        "connected"
    );
    alive_rx.recv().await;

    let s = hub.stats();
    assert_eq!((s.connections(), s.healthy()), (2, 2));
    hub.sample_health();
    assert_eq!(hub.trends.means(0.0), (100.0, 100.0));

    // Two ping intervals pass. `alive` answers every ping, `silent` answers nothing.
    let answer_pings = tokio::spawn(async move {
        while let Some(msg) = alive_rx.recv().await {
            if let Message::Ping(payload) = msg {
                let _ = alive_tx.send(Ok(Message::Pong(payload)));
            }
        }
    });
    tokio::time::sleep(PING * 2 + Duration::from_secs(1)).await;
    let s = hub.stats();
    assert_eq!(s.connections(), 2);
    assert_eq!(
        s.healthy(),
        1,
        "the silent socket is unhealthy after 2 intervals"
    );
    assert_eq!(s.health_percentage(), 50.0);
    hub.sample_health();
    let (hour, day) = hub.trends.means(0.0);
    assert_eq!(
        (hour, day),
        (75.0, 75.0),
        "the trend follows: mean of 100 and 50"
    );

    // At 3 intervals it is closed with 1008, and leaves the figures.
    tokio::time::sleep(PING).await;
    let mut close = None;
    while let Some(msg) = silent_rx.recv().await {
        if let Message::Close(frame) = msg {
            close = frame;
        }
    }
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1008));
    silent.await.unwrap();
    let s = hub.stats();
    assert_eq!((s.connections(), s.healthy()), (1, 1));
    assert_eq!(s.health_percentage(), 100.0);
    hub.sample_health();
    assert!(hub.trends.means(0.0).0 > 75.0);
    answer_pings.abort();
}

#[tokio::test(start_paused = true)]
async fn an_sse_write_that_stalls_makes_the_stream_unhealthy_until_it_completes() {
    let hub = hub();
    let player: PlayerId = "reader".into();
    let conn = hub
        .connect(Join {
            player: &player,
            kind: ConnKind::Sse,
            session_id: None,
            cursor: None,
        })
        .await
        .unwrap();
    assert_eq!(hub.stats().healthy(), 1);
    conn.write_began();
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert_eq!(hub.stats().healthy(), 1, "within the write timeout");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(hub.stats().healthy(), 0, "a write pending past the timeout");
    conn.touch();
    assert_eq!(hub.stats().healthy(), 1, "the write completed");
    // An idle stream with nothing to write stays healthy however long it waits.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(hub.stats().healthy(), 1);
}
