//! The error answer of every endpoint: a status code and a JSON body
//! `{"detail": "...", "field": "..."}` (`field` only when one field is at fault).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::protocol::FieldError;

use super::auth::AuthError;
use super::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(#[from] AuthError),
    #[error("this token is {scope}: {action} needs a read-write or admin token")]
    Forbidden {
        scope: &'static str,
        action: &'static str,
    },
    #[error("the request body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("{0}")]
    Invalid(#[from] FieldError),
    #[error("storage error: {0}")]
    Store(#[from] StoreError),
    #[error("no such endpoint: {0}")]
    NotFound(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(AuthError::Store(_) | AuthError::Random(_)) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            // Storage trouble is the server's, and usually passing (a busy or
            // restarting database): 503 tells clients to carry on without the cache.
            ApiError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let body = match &self {
            ApiError::Invalid(e) => {
                serde_json::json!({"detail": self.to_string(), "field": e.field})
            }
            _ => serde_json::json!({"detail": self.to_string()}),
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
