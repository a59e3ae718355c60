//! One log line and one count per refused request, so an operator can tell why players bounce.
//!
//! A browser cannot read why a WebSocket or an `EventSource` was refused, so the server's log
//! is the only place the reason shows. The line names the status, the error type, the route
//! (its template, never the URI, which may carry `?token=`), the transport and the player when
//! known. 404s are logged at debug level: scanners make many.

use std::sync::Arc;

use axum::extract::{MatchedPath, RawPathParams, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use crate::auth::valid_player_id;

/// Put on an error response by `ApiError`, for the log line.
#[derive(Clone, Debug)]
pub struct Refusal {
    /// The envelope's `error_type`: the log's and the counter's reason.
    pub error_type: &'static str,
    /// The player, when the refusal came after authentication.
    pub player: Option<Arc<str>>,
}

/// What kind of route a template is, and the transport it serves.
fn classify(route: Option<&str>) -> (&'static str, &'static str) {
    match route {
        Some("/api/ws" | "/api/ws/{player_id}" | "/ws/{player_id}") => ("stream", "websocket"),
        Some("/sse/{player_id}" | "/api/events" | "/api/events/{player_id}") => ("stream", "sse"),
        Some(
            "/api/connections/{player_id}"
            | "/api/connections/{player_id}/session"
            | "/api/commands",
        ) => ("player", "http"),
        Some("/api/publish" | "/api/connections/stats" | "/metrics") => ("admin", "http"),
        Some(r) if r.starts_with("/monitoring/") || r.starts_with("/api/dev/") => ("admin", "http"),
        Some(r) if r.starts_with("/health/") || r == "/api/monitoring/health" => ("health", "http"),
        Some("/auth/dev-token") => ("dev", "http"),
        Some(_) => ("page", "http"),
        None => ("unknown", "http"),
    }
}

pub async fn log(
    State(app): State<AppState>,
    route: Option<MatchedPath>,
    params: Result<RawPathParams, axum::extract::rejection::RawPathParamsRejection>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    if is_refusal(&response) {
        let path_player = params.as_ref().ok().and_then(|params| {
            params
                .iter()
                .find(|(name, _)| *name == "player_id")
                .map(|(_, value)| value)
        });
        let route = route.as_ref().map(MatchedPath::as_str);
        record(&app, route, path_player, &response);
    }
    response
}

/// What `log` does for a route answered without the router (`ws::preferred_on_socket`,
/// `sse::on_socket`), with the player its path names, if any.
pub fn note(app: &AppState, route: &'static str, path_player: Option<&str>, response: &Response) {
    if is_refusal(response) {
        record(app, Some(route), path_player, response);
    }
}

fn is_refusal(response: &Response) -> bool {
    let status = response.status();
    status.is_client_error() || status.is_server_error()
}

fn record(app: &AppState, route: Option<&str>, path_player: Option<&str>, response: &Response) {
    let status = response.status();
    let refusal = response.extensions().get::<Refusal>();
    let error_type = refusal.map_or("unknown", |r| r.error_type);
    // The path's player is only a claim, but it is what the operator searches for. Anything
    // that is not a valid id is left out rather than written raw into the log.
    let path_player = path_player.filter(|id| valid_player_id(id));
    let player = refusal.and_then(|r| r.player.as_deref()).or(path_player);
    let (route_kind, transport) = classify(route);
    app.metrics.count_refusal(error_type, status);
    let status = status.as_u16();
    let route = route.unwrap_or("(none)");
    if status == 404 {
        tracing::debug!(
            status, error_type, route, route_kind, transport, player, "refused"
        );
    } else {
        tracing::info!(
            status, error_type, route, route_kind, transport, player, "refused"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::classify;

    #[test]
    fn routes_are_classified() {
        assert_eq!(classify(Some("/api/ws")), ("stream", "websocket"));
        assert_eq!(classify(Some("/api/events/{player_id}")), ("stream", "sse"));
        assert_eq!(classify(Some("/api/commands")), ("player", "http"));
        assert_eq!(classify(Some("/monitoring/players")), ("admin", "http"));
        assert_eq!(classify(Some("/api/monitoring/health")), ("health", "http"));
        assert_eq!(classify(None), ("unknown", "http"));
    }
}
