//! One receiving connection over WebSocket, SSE or the raw TCP floor.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::BytesMut;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

use crate::check::{Msg, parse_envelope};
use crate::tls::{Conn, Tls};

/// The raw TCP floor's message: send time (Unix ns, LE), round (LE), filler. About the size of
/// a small game event's JSON envelope.
pub const FLOOR_MSG: usize = 200;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Ws,
    Sse,
    /// Raw TCP to `tcp-floor`: fixed 200-byte messages, no framing, no JSON.
    Floor,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Ws => "ws",
            Transport::Sse => "sse",
            Transport::Floor => "floor",
        }
    }
}

pub enum Link {
    Ws(Box<WebSocketStream<Conn>>),
    Sse {
        stream: Conn,
        buf: BytesMut,
        dechunk: crate::http::Dechunk,
        parser: crate::http::SseParser,
        chunked: bool,
        /// Body bytes that came with the response head are parsed before reading more.
        leftover: bool,
    },
    Floor {
        stream: Conn,
        buf: BytesMut,
    },
}

/// Where and how to connect.
pub struct Dial<'a> {
    pub transport: Transport,
    pub host: &'a str,
    pub port: u16,
    pub player: &'a str,
    pub token: &'a str,
    pub last_event_id: Option<u64>,
    pub read_buf: usize,
    /// Over TLS (`wss://`, HTTPS) when given; the floor is always plain.
    pub tls: Option<&'a Tls>,
}

impl Link {
    /// Connects and completes the handshake; the caller then waits for `connected`.
    pub async fn open(d: &Dial<'_>) -> Result<Link> {
        let tls = if d.transport == Transport::Floor {
            None
        } else {
            d.tls
        };
        let stream = Conn::connect(d.host, d.port, tls).await?;
        let query = match d.last_event_id {
            Some(id) => format!("?last_event_id={id}"),
            None => String::new(),
        };
        match d.transport {
            Transport::Ws => {
                let scheme = if stream.is_tls() { "wss" } else { "ws" };
                let mut req = format!("{scheme}://{}:{}/api/ws{query}", d.host, d.port)
                    .into_client_request()?;
                req.headers_mut().insert(
                    "sec-websocket-protocol",
                    HeaderValue::from_str(&format!("bearer, {}", d.token))?,
                );
                let config = WebSocketConfig::default()
                    .read_buffer_size(d.read_buf)
                    .write_buffer_size(0);
                let (ws, _) = client_async_with_config(req, stream, Some(config))
                    .await
                    .context("websocket handshake")?;
                Ok(Link::Ws(Box::new(ws)))
            }
            Transport::Sse => {
                let mut stream = stream;
                let req = format!(
                    "GET /sse/{}{query} HTTP/1.1\r\nHost: {}:{}\r\nAuthorization: Bearer {}\r\n\
                     Accept: text/event-stream\r\n\r\n",
                    d.player, d.host, d.port, d.token
                );
                stream.write_all(req.as_bytes()).await?;
                let mut buf = BytesMut::with_capacity(d.read_buf);
                let head = crate::http::read_head(&mut stream, &mut buf).await?;
                if head.status != 200 {
                    bail!("SSE answered {}", head.status);
                }
                Ok(Link::Sse {
                    stream,
                    buf,
                    dechunk: Default::default(),
                    parser: Default::default(),
                    chunked: head.chunked,
                    leftover: true,
                })
            }
            Transport::Floor => Ok(Link::Floor {
                stream,
                buf: BytesMut::with_capacity(d.read_buf.max(FLOOR_MSG)),
            }),
        }
    }

    /// Reads until `connected` (the floor has none). Stream events before it are handed on.
    pub async fn until_connected(&mut self, on_msg: &mut impl FnMut(Msg)) -> Result<()> {
        if matches!(self, Link::Floor { .. }) {
            return Ok(());
        }
        let mut connected = false;
        while !connected {
            let open = self
                .recv(&mut |m| {
                    if m == Msg::Connected {
                        connected = true;
                    } else {
                        on_msg(m)
                    }
                })
                .await?;
            if !open {
                bail!("closed before connected");
            }
        }
        Ok(())
    }

    /// Reads what is available and hands each message on. False once the peer closed.
    pub async fn recv(&mut self, on_msg: &mut impl FnMut(Msg)) -> Result<bool> {
        match self {
            Link::Ws(ws) => match ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    if let Some(m) = parse_envelope(text.as_bytes()) {
                        on_msg(m);
                    }
                    Ok(true)
                }
                Some(Ok(Message::Close(_))) | None => Ok(false),
                Some(Ok(_)) => Ok(true),
                Some(Err(e)) => Err(e.into()),
            },
            Link::Sse {
                stream,
                buf,
                dechunk,
                parser,
                chunked,
                leftover,
            } => {
                if (!std::mem::take(leftover) || buf.is_empty()) && stream.read_buf(buf).await? == 0
                {
                    return Ok(false);
                }
                let mut each = |event: &[u8]| {
                    if let Some(m) = parse_envelope(event) {
                        on_msg(m);
                    }
                };
                if *chunked {
                    let done = dechunk.feed(buf, |part| parser.feed(part, &mut each))?;
                    if done {
                        return Ok(false);
                    }
                } else {
                    parser.feed(buf, &mut each);
                    buf.clear();
                }
                Ok(true)
            }
            Link::Floor { stream, buf } => {
                if stream.read_buf(buf).await? == 0 {
                    return Ok(false);
                }
                let whole = buf.len() / FLOOR_MSG * FLOOR_MSG;
                for msg in buf[..whole].chunks_exact(FLOOR_MSG) {
                    let sent = u64::from_le_bytes(msg[0..8].try_into().unwrap_or_default());
                    let seq = u64::from_le_bytes(msg[8..16].try_into().unwrap_or_default());
                    on_msg(Msg::Stream {
                        seq,
                        sent_ns: Some(sent),
                    });
                }
                let _ = buf.split_to(whole);
                if buf.capacity() - buf.len() < FLOOR_MSG {
                    buf.reserve(FLOOR_MSG);
                }
                Ok(true)
            }
        }
    }

    /// Drops the connection at once with a reset, as a network failure would, losing whatever
    /// was in flight.
    pub fn abort(self) {
        let stream = match &self {
            Link::Ws(ws) => ws.get_ref().tcp(),
            Link::Sse { stream, .. } | Link::Floor { stream, .. } => stream.tcp(),
        };
        let _ = stream.set_zero_linger();
    }

    /// Closes politely where the transport has a way to.
    pub async fn close(self) {
        match self {
            Link::Ws(mut ws) => {
                let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
            }
            other => other.abort(),
        }
    }
}
