//! A command handler that asks the game backend over HTTP.
//!
//! It POSTs `{player_id, session_id, connection_id, command, args}` and expects
//! `{"events": [{"player_ids", "event_type", "data", "room_id"?}]}`. With a shared secret, the
//! body is signed: `X-Dualconn-Signature: sha256=<hex HMAC-SHA256 of the body>`. A slow,
//! failing or garbage answer becomes an `error` event for the player, never a server failure.

use std::fmt::Write;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::{Command, CommandError, CommandHandler, Outbound};
use crate::hub::Hub;

/// The largest answer read from the backend.
const MAX_REPLY_BYTES: usize = 1 << 20;
/// The most events one answer may ask for.
const MAX_EVENTS: usize = 1000;

pub struct Webhook {
    /// Reused across calls for its connection pool.
    client: reqwest::Client,
    url: reqwest::Url,
    /// HMAC key for the signature header; never logged.
    secret: Option<Vec<u8>>,
}

#[derive(Serialize)]
struct Request<'a> {
    player_id: &'a str,
    session_id: Option<&'a str>,
    connection_id: Option<&'a str>,
    command: &'a str,
    args: &'a [String],
    data: &'a serde_json::Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reply {
    #[serde(default)]
    events: Vec<ReplyEvent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplyEvent {
    player_ids: Vec<String>,
    event_type: String,
    #[serde(default)]
    data: serde_json::Value,
    #[serde(default)]
    room_id: Option<String>,
}

impl Webhook {
    pub fn new(url: &str, secret: Option<String>, timeout: Duration) -> Result<Webhook, String> {
        let url = reqwest::Url::parse(url).map_err(|e| format!("invalid webhook URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("the webhook URL must be http or https".into());
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the webhook client: {e}"))?;
        Ok(Webhook {
            client,
            url,
            secret: secret.map(String::into_bytes),
        })
    }

    async fn call(&self, command: Command) -> Result<Vec<Outbound>, CommandError> {
        let body = serde_json::to_vec(&Request {
            player_id: &command.player_id,
            session_id: command.session_id.as_deref(),
            connection_id: command.connection_id.as_deref(),
            command: &command.command,
            args: &command.args,
            data: &command.data,
        })
        .map_err(|_| CommandError::system("cannot encode the command"))?;
        let response = signed_post(&self.client, &self.url, self.secret.as_deref(), body)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    CommandError::system("the game backend did not answer in time")
                } else {
                    CommandError::system("the game backend could not be reached")
                }
            })?;
        let status = response.status();
        if !status.is_success() {
            return Err(CommandError::system(format!(
                "the game backend failed (HTTP {})",
                status.as_u16()
            )));
        }
        let mut bytes = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                if e.is_timeout() {
                    CommandError::system("the game backend did not answer in time")
                } else {
                    CommandError::system("the game backend's answer was cut off")
                }
            })?;
            if bytes.len() + chunk.len() > MAX_REPLY_BYTES {
                return Err(CommandError::system(
                    "the game backend's answer is too large",
                ));
            }
            bytes.extend_from_slice(&chunk);
        }
        let reply: Reply = serde_json::from_slice(&bytes)
            .map_err(|_| CommandError::system("the game backend's answer is not valid"))?;
        if reply.events.len() > MAX_EVENTS {
            return Err(CommandError::system(
                "the game backend asked for too many events",
            ));
        }
        Ok(reply
            .events
            .into_iter()
            .map(|e| Outbound {
                player_ids: e.player_ids,
                event_type: e.event_type,
                room_id: e.room_id,
                data: e.data,
            })
            .collect())
    }
}

/// `sha256=<hex>` of HMAC-SHA256(secret, body).
/// A JSON POST to a game backend, signed when a secret is set: every webhook is sent this way.
pub fn signed_post(
    client: &reqwest::Client,
    url: &reqwest::Url,
    secret: Option<&[u8]>,
    body: Vec<u8>,
) -> reqwest::RequestBuilder {
    let mut request = client
        .post(url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json");
    if let Some(secret) = secret {
        request = request.header("x-dualconn-signature", signature(secret, &body));
    }
    request.body(body)
}

pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in digest {
        let _ = write!(out, "{b:02x}");
    }
    out
}

impl CommandHandler for Webhook {
    fn handle<'a>(
        &'a self,
        _hub: &'a Hub,
        command: Command,
    ) -> BoxFuture<'a, Result<Vec<Outbound>, CommandError>> {
        Box::pin(self.call(command))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn signature_matches_a_known_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            super::signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
