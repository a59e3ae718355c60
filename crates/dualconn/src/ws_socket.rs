//! A WebSocket upgrade answered straight on its socket, once `http1_head` has read its request
//! head: the router decides as ever, the 101 is written here, and the socket goes to what the
//! handler left in the request's [`RawUpgrade`]. Without hyper in between there is no second
//! parse of the head, no hyper connection with its buffers, and no hand-off of the socket
//! through hyper's upgrade (BENCHMARKS.md, "Where WebSocket set-up goes").

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tower::ServiceExt;

use crate::http::upgrade::{Io, RawUpgrade};
use crate::http::{Front, ws};
use crate::http1_head::{put_head, write_whole};
use crate::shared_socket::SharedSocket;

/// Answers the upgrade request on `io`, and hands the socket over if the handler accepted it.
/// With `socket`, publishers may write to the WebSocket directly.
pub async fn serve<I: Io>(
    mut io: I,
    socket: Option<Arc<SharedSocket>>,
    mut request: Box<Request<Body>>,
    front: Front,
    peer: SocketAddr,
) {
    let raw = RawUpgrade::default();
    let response = match &front.direct {
        Some(app) if request.uri().path() == ws::PREFERRED => {
            let socket = socket.clone();
            ws::preferred_on_socket(app, peer, socket, *request, raw.clone()).await
        }
        _ => {
            let extensions = request.extensions_mut();
            extensions.insert(ConnectInfo(peer));
            extensions.insert(raw.clone());
            if let Some(socket) = &socket {
                extensions.insert(socket.clone());
            }
            let Ok(response) = front.router.clone().oneshot(*request).await;
            response
        }
    };
    let on_upgrade = match raw.take() {
        Some(on_upgrade) if response.status() == StatusCode::SWITCHING_PROTOCOLS => on_upgrade,
        // Refused (or, without the handler's hand-over, nothing to switch to): the response
        // is written whole and the connection ends.
        _ => {
            let _ = write_whole(&mut io, response).await;
            return;
        }
    };
    let mut head = BytesMut::with_capacity(256);
    put_head(
        &mut head,
        response.status(),
        response.headers(),
        false,
        None,
    );
    drop(response);
    match socket {
        // The 101 leaves with the opening frames, in one system call.
        Some(socket) => socket.lead(head.freeze()),
        // Dropped unrun if the client is gone: the connection leaves the hub with it.
        None => {
            if io.write_all(&head).await.is_err() {
                return;
            }
        }
    }
    on_upgrade(Box::new(io));
}
