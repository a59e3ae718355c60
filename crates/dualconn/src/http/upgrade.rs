//! The WebSocket handshake (RFC 6455 §4.2), the same for an upgrade hyper carries and for one
//! whose head `http1_head` read off the socket itself (answered by `ws_socket`).
//!
//! It replaces axum's `WebSocketUpgrade`, which takes the socket only from hyper: serving the
//! common case without hyper is a share of every WebSocket's set-up (issue 10).

// Headers here come from the network: any arithmetic on them must be checked (SPEC §12.26).
#![deny(clippy::arithmetic_side_effects)]

use std::sync::{Arc, Mutex};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::task::TaskTracker;

use super::error::ApiError;

/// What a WebSocket runs on once upgraded: a plain or TLS socket, or hyper's upgraded one.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

pub type Upgraded = Box<dyn Io>;

type OnUpgrade = Box<dyn FnOnce(Upgraded) + Send>;

/// Among the extensions of a request whose head was read off the socket: the handler leaves
/// here what runs on the socket once the 101 is written.
#[derive(Clone, Default)]
pub struct RawUpgrade(Arc<Mutex<Option<OnUpgrade>>>);

impl RawUpgrade {
    /// What the handler left, if it accepted the handshake.
    pub fn take(&self) -> Option<OnUpgrade> {
        self.0.lock().ok()?.take()
    }

    fn put(&self, on_upgrade: OnUpgrade) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(on_upgrade);
        }
    }
}

/// Who hands the socket over after the 101.
enum Handoff {
    Raw(RawUpgrade),
    Hyper(hyper::upgrade::OnUpgrade),
}

/// A request that is a valid WebSocket handshake, ready to be accepted.
pub struct Upgrade {
    /// `Sec-WebSocket-Key`, which the 101 answers with its digest.
    key: HeaderValue,
    /// Whether the client offered the `bearer` subprotocol (the token's carrier), which the
    /// 101 must then name.
    bearer: bool,
    handoff: Handoff,
}

/// Why a request is not a WebSocket handshake; answered as a 400 `validation_error`.
#[derive(Debug)]
pub struct NotAHandshake(&'static str);

impl NotAHandshake {
    pub fn into_api_error(self) -> ApiError {
        ApiError::validation(format!("not a valid WebSocket handshake: {}", self.0))
    }
}

impl IntoResponse for NotAHandshake {
    fn into_response(self) -> Response {
        self.into_api_error().into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = NotAHandshake;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Upgrade, NotAHandshake> {
        check(parts.version, &parts.method, &parts.headers)?;
        let handoff = if let Some(raw) = parts.extensions.remove::<RawUpgrade>() {
            Handoff::Raw(raw)
        } else if let Some(pending) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() {
            Handoff::Hyper(pending)
        } else {
            return Err(NotAHandshake("this connection cannot be upgraded"));
        };
        Upgrade::checked(&parts.headers, handoff)
    }
}

/// RFC 6455 §4.2.1, over HTTP/1.1.
fn check(version: Version, method: &Method, headers: &HeaderMap) -> Result<(), NotAHandshake> {
    if version != Version::HTTP_11 {
        return Err(NotAHandshake("a WebSocket is opened over HTTP/1.1"));
    }
    if method != Method::GET {
        return Err(NotAHandshake("the method must be GET"));
    }
    let has_token = |name, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value
                .as_bytes()
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    };
    if !has_token(header::CONNECTION, "upgrade") {
        return Err(NotAHandshake("Connection must include upgrade"));
    }
    if !has_token(header::UPGRADE, "websocket") {
        return Err(NotAHandshake("Upgrade must be websocket"));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err(NotAHandshake("Sec-WebSocket-Version must be 13"));
    }
    if !valid_key(headers) {
        return Err(NotAHandshake(
            "Sec-WebSocket-Key must be 16 bytes in base64",
        ));
    }
    Ok(())
}

/// The key is a base64 nonce of 16 bytes.
fn valid_key(headers: &HeaderMap) -> bool {
    use base64::Engine;
    headers
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|key| {
            base64::engine::general_purpose::STANDARD
                .decode(key.as_bytes())
                .ok()
        })
        .is_some_and(|nonce| nonce.len() == 16)
}

impl Upgrade {
    /// The handshake in a head `http1_head` read, answered without the router
    /// (`ws::preferred_on_socket`): the socket is handed over through `raw`.
    pub fn on_socket<B>(request: &Request<B>, raw: RawUpgrade) -> Result<Upgrade, NotAHandshake> {
        check(request.version(), request.method(), request.headers())?;
        Upgrade::checked(request.headers(), Handoff::Raw(raw))
    }

    /// The rest of a handshake that passed `check`.
    fn checked(headers: &HeaderMap, handoff: Handoff) -> Result<Upgrade, NotAHandshake> {
        let key = headers
            .get(header::SEC_WEBSOCKET_KEY)
            .cloned()
            .ok_or(NotAHandshake("Sec-WebSocket-Key is missing"))?;
        let bearer = headers
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .flat_map(|value| value.as_bytes().split(|&b| b == b','))
            .any(|offered| offered.trim_ascii() == b"bearer");
        Ok(Upgrade {
            key,
            bearer,
            handoff,
        })
    }

    /// The 101 response; `on_upgrade` runs with the socket once it is written. An upgrade
    /// through hyper waits for hyper's hand-off in a task of `tracker`'s.
    pub fn accept<F>(self, tracker: &TaskTracker, on_upgrade: F) -> Response
    where
        F: FnOnce(Upgraded) + Send + 'static,
    {
        match self.handoff {
            Handoff::Raw(raw) => raw.put(Box::new(on_upgrade)),
            Handoff::Hyper(pending) => {
                tracker.spawn(async move {
                    match pending.await {
                        Ok(upgraded) => on_upgrade(Box::new(TokioIo::new(upgraded))),
                        Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
                    }
                });
            }
        }
        let accept = tungstenite::handshake::derive_accept_key(self.key.as_bytes());
        let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(accept) = HeaderValue::try_from(accept) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        if self.bearer {
            headers.insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_static("bearer"),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(lines: &[(&str, &str)]) -> Parts {
        let mut request = axum::http::Request::get("/api/ws");
        for (name, value) in lines {
            request = request.header(*name, *value);
        }
        let (mut parts, ()) = request.body(()).unwrap().into_parts();
        parts.extensions.insert(RawUpgrade::default());
        parts
    }

    const HANDSHAKE: [(&str, &str); 4] = [
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "WebSocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    /// RFC 6455 §1.3's worked example, and the subprotocol named only when offered.
    #[tokio::test]
    async fn a_handshake_is_answered_with_the_keys_digest_and_the_offered_subprotocol() {
        let mut with_bearer = HANDSHAKE.to_vec();
        with_bearer.push(("sec-websocket-protocol", "chat, bearer, tok.en"));
        let mut without_bearer = HANDSHAKE.to_vec();
        without_bearer.push(("sec-websocket-protocol", "chat"));
        for (lines, bearer) in [
            (HANDSHAKE.to_vec(), false),
            (with_bearer, true),
            (without_bearer, false),
        ] {
            let mut parts = parts(&lines);
            let upgrade = Upgrade::from_request_parts(&mut parts, &()).await.unwrap();
            let response = upgrade.accept(&TaskTracker::new(), |_| {});
            assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
            let headers = response.headers();
            assert_eq!(
                headers["sec-websocket-accept"],
                "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
            );
            assert_eq!(headers["connection"], "upgrade");
            assert_eq!(headers["upgrade"], "websocket");
            assert_eq!(
                headers.get("sec-websocket-protocol").map(|v| v.as_bytes()),
                bearer.then_some(&b"bearer"[..])
            );
        }
    }

    #[tokio::test]
    async fn the_handler_leaves_what_runs_on_the_socket_for_the_raw_path() {
        let mut parts = parts(&HANDSHAKE);
        let raw = parts.extensions.get::<RawUpgrade>().unwrap().clone();
        let upgrade = Upgrade::from_request_parts(&mut parts, &()).await.unwrap();
        assert!(raw.take().is_none(), "nothing before it is accepted");
        let (ran, mut told) = tokio::sync::mpsc::unbounded_channel();
        upgrade.accept(&TaskTracker::new(), move |_| {
            let _ = ran.send(());
        });
        let on_upgrade = raw.take().expect("left for the raw path");
        on_upgrade(Box::new(tokio::io::empty()));
        assert!(told.try_recv().is_ok());
    }

    #[tokio::test]
    async fn what_is_not_a_handshake_says_why() {
        let without = |name: &str| -> Vec<(&str, &str)> {
            HANDSHAKE
                .iter()
                .copied()
                .filter(|(n, _)| *n != name)
                .collect()
        };
        let with = |name: &'static str, value: &'static str| -> Vec<(&str, &str)> {
            let mut lines = without(name);
            lines.push((name, value));
            lines
        };
        let cases = [
            (without("connection"), "Connection"),
            (with("connection", "upgrades"), "Connection"),
            (without("upgrade"), "Upgrade must"),
            (with("upgrade", "h2c"), "Upgrade must"),
            (with("sec-websocket-version", "8"), "Version"),
            (without("sec-websocket-version"), "Version"),
            (without("sec-websocket-key"), "Key"),
            (
                with("sec-websocket-key", "AAAAAA=="),
                "Key must be 16 bytes",
            ),
            (
                with("sec-websocket-key", "not base64!"),
                "Key must be 16 bytes",
            ),
        ];
        for (lines, says) in cases {
            let mut parts = parts(&lines);
            let Err(NotAHandshake(why)) = Upgrade::from_request_parts(&mut parts, &()).await else {
                panic!("{lines:?} was taken as a handshake");
            };
            assert!(why.contains(says), "{lines:?}: {why}");
        }

        let mut head = parts(&HANDSHAKE);
        head.method = Method::HEAD;
        let refused = Upgrade::from_request_parts(&mut head, &()).await;
        assert!(refused.is_err_and(|NotAHandshake(why)| why.contains("GET")));

        let mut no_socket = parts(&HANDSHAKE);
        no_socket.extensions.clear();
        let refused = Upgrade::from_request_parts(&mut no_socket, &()).await;
        assert!(refused.is_err_and(|NotAHandshake(why)| why.contains("cannot be upgraded")));
    }
}
