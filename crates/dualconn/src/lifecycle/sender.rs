//! POSTs notices to the backend, one lane at a time, with bounded retries; publishes the
//! events an answer carries.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Counters, Notice};
use crate::commands::webhook::signed_post;
use crate::config::WebhookConfig;
use crate::greeting::{self, Greeting};
use crate::hub::Hub;

/// Attempts per notice, the first included. With the backoff below a notice is given up 3 s
/// (plus the attempts' own timeouts) after its first attempt.
pub const ATTEMPTS: u32 = 5;
/// The wait before the second attempt; it doubles after each failure.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The largest answer read from the backend.
const MAX_REPLY_BYTES: usize = 256 * 1024;
/// The most events one answer may ask for, as for the connect webhook.
const MAX_EVENTS: usize = 100;

/// The HTTP side: one client for its connection pool, the URL and the signing key.
pub struct Poster {
    /// Reused across calls for its connection pool.
    client: reqwest::Client,
    /// `DUALCONN_LIFECYCLE_WEBHOOK`, checked to be http or https.
    url: reqwest::Url,
    /// HMAC key for the signature header; never logged.
    secret: Option<Vec<u8>>,
}

/// The backend's answer to `player_online` or `session_started`.
#[derive(Deserialize, Default)]
struct Reply {
    /// Events for the player; other keys are the backend's business and ignored.
    #[serde(default)]
    events: Vec<Greeting>,
}

/// Why an attempt did not deliver.
enum Failed {
    /// A timeout, a refused connection, a 5xx, 408 or 429: the next attempt may succeed.
    Retry,
    /// Another 4xx: the backend refuses these bytes, and sending them again cannot help.
    Refused(u16),
}

impl Poster {
    pub fn new(config: &WebhookConfig) -> Result<Poster, String> {
        let url = reqwest::Url::parse(&config.url)
            .map_err(|e| format!("invalid lifecycle webhook URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("the lifecycle webhook URL must be http or https".into());
        }
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the lifecycle webhook client: {e}"))?;
        Ok(Poster {
            client,
            url,
            secret: config.secret.clone().map(String::into_bytes),
        })
    }

    /// One attempt: the answer's bytes on a 2xx.
    async fn attempt(&self, body: &[u8]) -> Result<Vec<u8>, Failed> {
        let response = signed_post(
            &self.client,
            &self.url,
            self.secret.as_deref(),
            body.to_vec(),
        )
        .send()
        .await
        .map_err(|_| Failed::Retry)?;
        let status = response.status();
        if !status.is_success() {
            let code = status.as_u16();
            return Err(if status.is_server_error() || code == 408 || code == 429 {
                Failed::Retry
            } else {
                Failed::Refused(code)
            });
        }
        let mut bytes = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            // The notice arrived (2xx); only its answer is lost, and resending would repeat it.
            let Ok(chunk) = chunk else { break };
            if bytes.len() + chunk.len() > MAX_REPLY_BYTES {
                tracing::warn!("lifecycle webhook answer too large; its events are ignored");
                return Ok(Vec::new());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }
}

/// Sends one lane's notices in order until `shutdown`.
pub async fn lane(
    hub: Arc<Hub>,
    poster: Arc<Poster>,
    counters: Arc<Counters>,
    mut notices: mpsc::Receiver<Notice>,
    shutdown: CancellationToken,
) {
    loop {
        let notice = tokio::select! {
            _ = shutdown.cancelled() => return,
            n = notices.recv() => match n {
                Some(n) => n,
                None => return,
            },
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = deliver(&hub, &poster, &counters, &notice) => {}
        }
    }
}

/// POSTs one notice, retrying with backoff; publishes what the answer asks for.
async fn deliver(hub: &Hub, poster: &Poster, counters: &Counters, notice: &Notice) {
    let body = notice.body();
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=ATTEMPTS {
        match poster.attempt(&body).await {
            Ok(answer) => {
                counters.delivered.fetch_add(1, Ordering::Relaxed);
                if notice.kind.answers_with_events() {
                    publish_answer(hub, notice, &answer).await;
                }
                return;
            }
            Err(Failed::Refused(status)) => {
                tracing::warn!(
                    kind = notice.kind.as_str(),
                    status,
                    "lifecycle webhook refused a notice; not retried"
                );
                break;
            }
            Err(Failed::Retry) if attempt < ATTEMPTS => {
                tracing::debug!(
                    kind = notice.kind.as_str(),
                    attempt,
                    "lifecycle webhook failed; retrying"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(Failed::Retry) => {
                tracing::warn!(
                    kind = notice.kind.as_str(),
                    attempts = ATTEMPTS,
                    "lifecycle webhook unreachable; notice given up"
                );
            }
        }
    }
    counters.failed.fetch_add(1, Ordering::Relaxed);
}

/// Publishes the events of an answer to `player_online` or `session_started`. An empty answer
/// is none; one that is not `{"events": [...]}` within the publish rules is logged and ignored
/// (the notice itself was delivered).
async fn publish_answer(hub: &Hub, notice: &Notice, answer: &[u8]) {
    if answer.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    let Ok(reply) = serde_json::from_slice::<Reply>(answer) else {
        tracing::warn!(
            kind = notice.kind.as_str(),
            "lifecycle webhook answered with a body that is not {{\"events\": [...]}}; ignored"
        );
        return;
    };
    if greeting::check(&reply.events, MAX_EVENTS).is_err() {
        tracing::warn!(
            kind = notice.kind.as_str(),
            "lifecycle webhook asked for too many events or an invalid one; none published"
        );
        return;
    }
    greeting::greet(hub, &notice.player, &reply.events).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_leniently_but_events_strictly() {
        let r: Reply = serde_json::from_str(r#"{"ok": true}"#).unwrap();
        assert!(r.events.is_empty());
        let r: Reply =
            serde_json::from_str(r#"{"events": [{"event_type": "game_state"}]}"#).unwrap();
        assert_eq!(r.events.len(), 1);
        assert!(serde_json::from_str::<Reply>(r#"{"events": {}}"#).is_err());
        let r: Reply =
            serde_json::from_str(r#"{"events": [{"event_type": "connected"}]}"#).unwrap();
        assert!(greeting::check(&r.events, MAX_EVENTS).is_err());
    }
}
