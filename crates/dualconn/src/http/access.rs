//! Who may come in: credentials, connection-attempt limits and origin checks.

// Cursors, credentials and query strings come from the network (SPEC §12.26): no unchecked
// arithmetic in this module.
#![deny(clippy::arithmetic_side_effects)]

use std::borrow::Cow;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::{HeaderMap, header};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use super::AppState;
use super::connect_hook::{Grant, Presented};
use super::error::ApiError;
use crate::auth::{AuthError, Principal};
use crate::config::{AllowedOrigins, Rate};

/// A request's query string, decoded once. Unknown keys are ignored.
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        Query(
            form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }

    /// The first value of `key`; an empty value counts as absent (SPEC §12.8).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
}

/// Where a token may come from on this route.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TokenPlaces {
    /// `Authorization: Bearer`, or `?token=`.
    Http,
    /// Those, and `Sec-WebSocket-Protocol: bearer, <jwt>`.
    WebSocket,
}

/// The presented credential, if any. The WebSocket subprotocol comes first because browsers
/// can set nothing else.
fn credential<'a>(
    headers: &'a HeaderMap,
    query: &'a Query,
    places: TokenPlaces,
) -> Option<Cow<'a, str>> {
    if places == TokenPlaces::WebSocket
        && let Some(token) = headers
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .skip_while(|p| !p.eq_ignore_ascii_case("bearer"))
            .nth(1)
    {
        return Some(Cow::Borrowed(token));
    }
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| Cow::Borrowed(token.trim()));
    }
    query.get("token").map(Cow::Borrowed)
}

/// Where a request that may be a player's came from, for the connect webhook.
#[derive(Clone, Copy)]
pub struct Caller<'a> {
    /// `websocket`, `sse` or `http`.
    pub transport: &'static str,
    /// The player a path names, unverified.
    pub path_player: Option<&'a str>,
    /// The peer's address, passed on to the backend.
    pub ip: IpAddr,
}

impl AppState {
    /// Verifies the request's credential: 401 when it is missing or bad.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        query: &Query,
        places: TokenPlaces,
    ) -> Result<Principal, ApiError> {
        let result = match credential(headers, query, places) {
            None => Err(AuthError::Missing),
            Some(token) => self.auth.authenticate(&token),
        };
        result.map_err(|e| self.auth_error(e))
    }

    fn auth_error(&self, e: AuthError) -> ApiError {
        self.auth_failures.fetch_add(1, Ordering::Relaxed);
        let code = match e {
            AuthError::Missing => "TOKEN_MISSING",
            AuthError::Expired => "TOKEN_EXPIRED",
            AuthError::Invalid(_) => "TOKEN_INVALID",
        };
        ApiError::unauthenticated(e.to_string())
            .with_details(serde_json::json!({"error_code": code}))
    }

    /// As [`AppState::authenticate`], but credentials dualconn cannot verify itself (another
    /// signer, an opaque token, a cookie) go to the connect webhook when one is configured.
    /// Admin keys and dualconn's own tokens, valid or expired, never leave the process.
    pub async fn authenticate_player(
        &self,
        headers: &HeaderMap,
        query: &Query,
        places: TokenPlaces,
        caller: Caller<'_>,
    ) -> Result<Grant, ApiError> {
        let token = credential(headers, query, places);
        let verified = match &token {
            None => Err(AuthError::Missing),
            Some(token) => self.auth.authenticate(token),
        };
        let cookie = headers
            .get(header::COOKIE)
            .and_then(|v| v.to_str().ok())
            .filter(|c| !c.is_empty());
        match (verified, &self.connect_hook) {
            (Ok(principal), _) => Ok(Grant {
                principal,
                greeting: Vec::new(),
            }),
            (Err(AuthError::Invalid(_)), Some(hook)) | (Err(AuthError::Missing), Some(hook))
                if token.is_some() || cookie.is_some() =>
            {
                let grant = hook
                    .ask(Presented {
                        token: token.as_deref(),
                        cookie,
                        transport: caller.transport,
                        path_player: caller.path_player,
                        ip: caller.ip,
                    })
                    .await;
                if grant
                    .as_ref()
                    .is_err_and(|e| e.status == axum::http::StatusCode::UNAUTHORIZED)
                {
                    self.auth_failures.fetch_add(1, Ordering::Relaxed);
                }
                grant
            }
            (Err(e), _) => Err(self.auth_error(e)),
        }
    }

    /// An admin, or 403.
    pub fn require_admin(&self, headers: &HeaderMap, query: &Query) -> Result<Principal, ApiError> {
        let principal = self.authenticate(headers, query, TokenPlaces::Http)?;
        if principal.is_admin() {
            Ok(principal)
        } else {
            Err(ApiError::forbidden("this route is for admins"))
        }
    }

    /// The player itself or an admin, or 403.
    pub async fn require_manager(
        &self,
        headers: &HeaderMap,
        query: &Query,
        player: &str,
        ip: IpAddr,
    ) -> Result<Principal, ApiError> {
        let caller = Caller {
            transport: "http",
            path_player: Some(player),
            ip,
        };
        let principal = self
            .authenticate_player(headers, query, TokenPlaces::Http, caller)
            .await?
            .principal;
        if principal.may_manage(player) {
            Ok(principal)
        } else {
            Err(ApiError::forbidden(
                "a player may act only on its own connections",
            ))
        }
    }
}

/// Token buckets for connection attempts (SPEC §8, §12.16).
pub struct ConnectLimits {
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    per_player: DefaultKeyedRateLimiter<String>,
    /// Attempts refused by each bucket, for `/metrics`.
    pub rejected_ip: AtomicU64,
    pub rejected_player: AtomicU64,
}

fn quota(rate: Rate) -> Quota {
    let per_second = NonZeroU32::new(rate.per_second).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(per_second).allow_burst(burst)
}

impl ConnectLimits {
    pub fn new(per_ip: Rate, per_player: Rate) -> ConnectLimits {
        ConnectLimits {
            per_ip: DefaultKeyedRateLimiter::keyed(quota(per_ip)),
            per_player: DefaultKeyedRateLimiter::keyed(quota(per_player)),
            rejected_ip: AtomicU64::new(0),
            rejected_player: AtomicU64::new(0),
        }
    }

    pub fn check_ip(&self, ip: IpAddr) -> Result<(), ApiError> {
        self.per_ip.check_key(&ip).map_err(|not_until| {
            self.rejected_ip.fetch_add(1, Ordering::Relaxed);
            ApiError::rate_limited(retry_secs(
                not_until.wait_time_from(DefaultClock::default().now()),
            ))
        })
    }

    pub fn check_player(&self, player: &str) -> Result<(), ApiError> {
        // The map is keyed by owned ids; the lookup allocates only on this admitted path.
        self.per_player
            .check_key(&player.to_owned())
            .map_err(|not_until| {
                self.rejected_player.fetch_add(1, Ordering::Relaxed);
                ApiError::rate_limited(retry_secs(
                    not_until.wait_time_from(DefaultClock::default().now()),
                ))
            })
    }

    /// Forgets keys whose buckets are full again, so the maps track recent clients only.
    pub fn retain_recent(&self) {
        self.per_ip.retain_recent();
        self.per_ip.shrink_to_fit();
        self.per_player.retain_recent();
        self.per_player.shrink_to_fit();
    }
}

fn retry_secs(wait: std::time::Duration) -> u64 {
    wait.as_secs()
        .saturating_add(u64::from(wait.subsec_nanos() > 0))
}

/// SPEC §12.24: with a list, a browser's `Origin` must be on it; with none, it must be this
/// server's own origin. Clients that send no `Origin` are not browsers and pass.
pub fn origin_allowed(allowed: &AllowedOrigins, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = origin.trim_end_matches('/').to_ascii_lowercase();
    let same_origin = || {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_ascii_lowercase);
        let origin_host = origin.split_once("://").map(|(_, h)| h);
        matches!((host, origin_host), (Some(h), Some(o)) if h == o)
    };
    match allowed {
        AllowedOrigins::Any => true,
        // The server's own pages (demo, dashboard) are same-origin and always work.
        AllowedOrigins::List(list) => list.contains(&origin) || same_origin(),
        AllowedOrigins::SameOrigin => same_origin(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn credentials_are_found_in_each_place() {
        let q = Query::parse(Some("token=from-query&session_id="));
        assert_eq!(q.get("session_id"), None);
        let mut h = HeaderMap::new();
        assert_eq!(
            credential(&h, &q, TokenPlaces::Http).as_deref(),
            Some("from-query")
        );
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer from-header"),
        );
        assert_eq!(
            credential(&h, &q, TokenPlaces::Http).as_deref(),
            Some("from-header")
        );
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("bearer, from-protocol"),
        );
        assert_eq!(
            credential(&h, &q, TokenPlaces::WebSocket).as_deref(),
            Some("from-protocol")
        );
        assert_eq!(
            credential(&h, &q, TokenPlaces::Http).as_deref(),
            Some("from-header")
        );
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(
            credential(&h, &q, TokenPlaces::Http),
            None,
            "a non-bearer scheme is no credential"
        );
    }

    #[test]
    fn origins() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8000"));
        assert!(origin_allowed(&AllowedOrigins::SameOrigin, &h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8000"),
        );
        assert!(origin_allowed(&AllowedOrigins::SameOrigin, &h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!origin_allowed(&AllowedOrigins::SameOrigin, &h));
        let list = AllowedOrigins::List(vec!["https://game.example".into()]);
        assert!(!origin_allowed(&list, &h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://game.example"),
        );
        assert!(origin_allowed(&list, &h));
        assert!(origin_allowed(&AllowedOrigins::Any, &h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8000"),
        );
        assert!(
            origin_allowed(&list, &h),
            "the server's own origin works with a list too"
        );
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_secs(std::time::Duration::from_millis(1)), 1);
        assert_eq!(retry_secs(std::time::Duration::from_secs(2)), 2);
    }
}
