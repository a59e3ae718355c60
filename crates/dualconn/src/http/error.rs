//! The one error shape on every HTTP error (SPEC §2), and the fallbacks that use it.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::refusals::Refusal;
use crate::wire::{self, ErrorBody};

/// An error a handler returns; it renders as `{"error": true, "error_type", ...}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error_type: &'static str,
    pub message: Cow<'static, str>,
    pub details: serde_json::Value,
    /// Whole seconds, for 429 and 503 answers.
    pub retry_after: Option<u64>,
    /// The player refused, once known, for the refusal's log line.
    pub player: Option<Arc<str>>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        error_type: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> ApiError {
        ApiError {
            status,
            error_type,
            message: message.into(),
            details: serde_json::json!({}),
            retry_after: None,
            player: None,
        }
    }

    pub fn with_player(mut self, player: &Arc<str>) -> ApiError {
        self.player = Some(player.clone());
        self
    }

    pub fn with_details(mut self, details: serde_json::Value) -> ApiError {
        self.details = details;
        self
    }

    pub fn validation(message: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "validation_error", message)
    }

    pub fn unauthenticated(message: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "authentication_error", message)
    }

    pub fn forbidden(message: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "authorization_error", message)
    }

    pub fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found_error", "no such route")
    }

    pub fn session(status: StatusCode, message: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError::new(status, "session_error", message)
    }

    pub fn rate_limited(retry_after_secs: u64) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "too many requests; retry later",
        )
        .with_details(serde_json::json!({"retry_after_seconds": retry_after_secs}));
        e.retry_after = Some(retry_after_secs);
        e
    }

    /// 503 while the cluster's Redis is unreachable: nothing is accepted that could be lost.
    pub fn unavailable() -> ApiError {
        let secs = crate::backplane::redis::RETRY_AFTER_SECS;
        let mut e = ApiError::connection(
            StatusCode::SERVICE_UNAVAILABLE,
            "the cluster's Redis is unreachable; retry shortly",
        )
        .with_details(serde_json::json!({"retry_after_seconds": secs}));
        e.retry_after = Some(secs);
        e
    }

    /// SPEC §12.27: the node is full; the client may try again after `retry_after_secs`.
    pub fn node_full(message: impl Into<Cow<'static, str>>, retry_after_secs: u64) -> ApiError {
        let mut e = ApiError::connection(StatusCode::SERVICE_UNAVAILABLE, message)
            .with_details(serde_json::json!({"retry_after_seconds": retry_after_secs}));
        e.retry_after = Some(retry_after_secs);
        e
    }

    pub fn connection(status: StatusCode, message: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError::new(status, "connection_error", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: true,
            error_type: self.error_type.to_owned(),
            message: self.message.into_owned(),
            details: self.details,
            timestamp: wire::timestamp(SystemTime::now()),
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        response.extensions_mut().insert(Refusal {
            error_type: self.error_type,
            player: self.player,
        });
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

pub async fn not_found() -> ApiError {
    ApiError::not_found()
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "validation_error",
        "method not allowed on this route",
    )
}
