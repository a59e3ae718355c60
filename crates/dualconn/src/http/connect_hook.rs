//! The connect webhook: for games whose tokens dualconn cannot verify or map, the game backend
//! says who a player is.
//!
//! dualconn POSTs the credentials it received, signed like the command webhook
//! (`X-Dualconn-Signature: sha256=<hex HMAC-SHA256 of the body>`), and the backend answers
//! `{"player_id", "expires_at"?, "events"?}` or refuses with 401 or 403. Anything else (a
//! timeout, another status, a body that is not that shape) refuses the connection with 503
//! `connection_error` and `Retry-After`, because the credentials may well be good. The
//! credentials are never logged; only the backend's status is.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use crate::auth::{Principal, valid_player_id};
use crate::commands::webhook::signed_post;
use crate::config::WebhookConfig;
use crate::greeting::{self, Greeting};
use crate::hub::PlayerId;

/// The largest answer read from the backend.
const MAX_REPLY_BYTES: usize = 256 * 1024;
/// The most events one answer may ask for.
const MAX_EVENTS: usize = 100;
/// What a refused client is told to wait when the backend could not decide.
const RETRY_AFTER_SECS: u64 = 2;
/// Connections of a player the backend gave no expiry still end, a year on, so that every
/// deadline stays representable.
const LONGEST_GRANT: Duration = Duration::from_secs(365 * 86_400);

pub struct ConnectHook {
    /// Reused across calls for its connection pool.
    client: reqwest::Client,
    url: reqwest::Url,
    /// HMAC key for the signature header; never logged.
    secret: Option<Vec<u8>>,
}

/// What the request arrived with, as the backend needs it to decide.
pub struct Presented<'a> {
    /// The bearer credential, from any place dualconn accepts one.
    pub token: Option<&'a str>,
    /// The `Cookie` header, for games that authenticate browsers by cookie.
    pub cookie: Option<&'a str>,
    /// `websocket`, `sse`, or `http` for REST calls.
    pub transport: &'static str,
    /// The player a path names (`/sse/{player_id}`), before anything is verified.
    pub path_player: Option<&'a str>,
    /// The client's address, for backends that bind sessions to one or rate-limit by it.
    pub ip: IpAddr,
}

/// The body POSTed to the backend (documented in the README's "Webhooks").
#[derive(Serialize)]
struct Request<'a> {
    token: Option<&'a str>,
    cookie: Option<&'a str>,
    transport: &'static str,
    /// The path's player, so a backend can refuse a mismatch early with a clear 403.
    player_id: Option<&'a str>,
    remote_addr: String,
}

/// The backend's yes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reply {
    player_id: String,
    /// When the player's connections must end, as a token's `exp` would say.
    #[serde(default)]
    expires_at: Option<ExpiresAt>,
    /// What the player is greeted with once connected (a game's `welcome`, `room_update`).
    #[serde(default)]
    events: Vec<Greeting>,
}

/// Unix seconds, like a JWT's `exp`, or an RFC 3339 time.
#[derive(Deserialize)]
#[serde(untagged)]
enum ExpiresAt {
    Unix(u64),
    Text(String),
}

/// A player the backend vouched for, and what it wants them greeted with.
pub struct Grant {
    pub principal: Principal,
    /// Published once a stream joins; empty for dualconn's own tokens and for REST calls.
    pub greeting: Vec<Greeting>,
}

impl ConnectHook {
    pub fn new(config: &WebhookConfig) -> Result<ConnectHook, String> {
        let url = reqwest::Url::parse(&config.url)
            .map_err(|e| format!("invalid connect webhook URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("the connect webhook URL must be http or https".into());
        }
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the connect webhook client: {e}"))?;
        Ok(ConnectHook {
            client,
            url,
            secret: config.secret.clone().map(String::into_bytes),
        })
    }

    /// Asks the backend who presented these credentials.
    pub async fn ask(&self, presented: Presented<'_>) -> Result<Grant, ApiError> {
        let body = serde_json::to_vec(&Request {
            token: presented.token,
            cookie: presented.cookie,
            transport: presented.transport,
            player_id: presented.path_player,
            remote_addr: presented.ip.to_string(),
        })
        .map_err(|_| unavailable("the credentials could not be encoded"))?;
        let response = signed_post(&self.client, &self.url, self.secret.as_deref(), body)
            .send()
            .await
            .map_err(|e| {
                // reqwest's error text can hold the URL but never the body, where the token is.
                tracing::warn!(timeout = e.is_timeout(), "connect webhook unreachable");
                unavailable("the game backend did not answer")
            })?;
        match response.status() {
            s if s.is_success() => {}
            StatusCode::UNAUTHORIZED => {
                return Err(ApiError::unauthenticated(
                    "the game backend refused these credentials",
                )
                .with_details(serde_json::json!({"error_code": "TOKEN_INVALID"})));
            }
            StatusCode::FORBIDDEN => {
                return Err(ApiError::forbidden(
                    "the game backend refused this player here",
                ));
            }
            s => {
                tracing::warn!(status = s.as_u16(), "connect webhook failed");
                return Err(unavailable("the game backend failed"));
            }
        }
        let mut bytes = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| unavailable("the game backend's answer was cut off"))?;
            if bytes.len() + chunk.len() > MAX_REPLY_BYTES {
                return Err(unavailable("the game backend's answer is too large"));
            }
            bytes.extend_from_slice(&chunk);
        }
        let reply: Reply = serde_json::from_slice(&bytes).map_err(|_| {
            tracing::warn!("connect webhook answered with a body that is not {{player_id, ...}}");
            unavailable("the game backend's answer is not valid")
        })?;
        grant(reply, SystemTime::now())
    }
}

/// Checks an answer and turns it into a player principal.
fn grant(reply: Reply, now: SystemTime) -> Result<Grant, ApiError> {
    if !valid_player_id(&reply.player_id) {
        tracing::warn!("connect webhook answered with an invalid player id");
        return Err(unavailable("the game backend named an invalid player id"));
    }
    match greeting::check(&reply.events, MAX_EVENTS) {
        Ok(()) => {}
        Err(greeting::Refused::TooMany) => {
            return Err(unavailable("the game backend asked for too many events"));
        }
        Err(greeting::Refused::Invalid) => {
            tracing::warn!("connect webhook asked for an event with an invalid type or room");
            return Err(unavailable("the game backend asked for an invalid event"));
        }
    }
    let latest = now + LONGEST_GRANT;
    let expires_at = match reply.expires_at {
        None => latest,
        Some(ExpiresAt::Unix(secs)) => UNIX_EPOCH
            .checked_add(Duration::from_secs(secs))
            .map_or(latest, |t| t.min(latest)),
        Some(ExpiresAt::Text(text)) => humantime::parse_rfc3339_weak(&text)
            .map_err(|_| unavailable("the game backend's expires_at is not a time"))?
            .min(latest),
    };
    if expires_at <= now {
        return Err(ApiError::unauthenticated("the credentials have expired")
            .with_details(serde_json::json!({"error_code": "TOKEN_EXPIRED"})));
    }
    Ok(Grant {
        principal: Principal::Player {
            id: PlayerId::from(reply.player_id),
            admin: false,
            expires_at,
        },
        greeting: reply.events,
    })
}

fn unavailable(message: &'static str) -> ApiError {
    let mut e = ApiError::connection(StatusCode::SERVICE_UNAVAILABLE, message)
        .with_details(serde_json::json!({"retry_after_seconds": RETRY_AFTER_SECS}));
    e.retry_after = Some(RETRY_AFTER_SECS);
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(json: &str) -> Reply {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn expiry_is_read_in_either_form_and_bounded() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let at = |json: &str| match grant(reply(json), now).map(|g| g.principal) {
            Ok(Principal::Player { expires_at, .. }) => Ok(expires_at),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e.status),
        };
        assert_eq!(
            at(r#"{"player_id":"p1","expires_at":1800000060}"#),
            Ok(now + Duration::from_secs(60))
        );
        assert_eq!(
            at(r#"{"player_id":"p1","expires_at":"2027-01-15T09:00:00Z"}"#),
            Ok(now + Duration::from_secs(3600))
        );
        assert_eq!(at(r#"{"player_id":"p1"}"#), Ok(now + LONGEST_GRANT));
        assert_eq!(
            at(r#"{"player_id":"p1","expires_at":18446744073709551615}"#),
            Ok(now + LONGEST_GRANT),
            "a time past any deadline is capped, not overflowed"
        );
        assert_eq!(
            at(r#"{"player_id":"p1","expires_at":1700000000}"#),
            Err(StatusCode::UNAUTHORIZED)
        );
        assert_eq!(
            at(r#"{"player_id":"p1","expires_at":"soon"}"#),
            Err(StatusCode::SERVICE_UNAVAILABLE)
        );
        assert_eq!(
            at(r#"{"player_id":"no spaces"}"#),
            Err(StatusCode::SERVICE_UNAVAILABLE)
        );
    }

    #[test]
    fn answers_of_another_shape_are_refused() {
        assert!(serde_json::from_str::<Reply>(r#"{"player":"p1"}"#).is_err());
        assert!(serde_json::from_str::<Reply>(r#"{"player_id":"p1","events":{}}"#).is_err());
        let r = reply(r#"{"player_id":"p1","events":[{"event_type":"welcome"}]}"#);
        assert_eq!(r.events[0].data, serde_json::json!({}));
        let now = SystemTime::now();
        for bad in [
            r#"{"player_id":"p1","events":[{"event_type":"connected"}]}"#,
            r#"{"player_id":"p1","events":[{"event_type":"a b"}]}"#,
            r#"{"player_id":"p1","events":[{"event_type":"x","room_id":"no/slash"}]}"#,
        ] {
            assert_eq!(
                grant(reply(bad), now).err().map(|e| e.status),
                Some(StatusCode::SERVICE_UNAVAILABLE),
                "{bad}"
            );
        }
    }
}
