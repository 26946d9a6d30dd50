//! The error answer of every endpoint: a status code and a JSON body
//! `{"detail": "...", "field": "..."}` (`field` only when one field is at fault).
//! Handlers answer with `ApiError`; `fill_error_bodies` gives the same body
//! to the errors made around them (axum's 405, the timeout's 408), and
//! `super::listener` to those hyper makes itself (400, 414, 431).

use axum::body::HttpBody;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::protocol::FieldError;

use super::auth::AuthError;
use super::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(#[from] AuthError),
    /// `needs` names the scopes that would do, so the answer says which
    /// token to ask for.
    #[error("this token is {scope}: {action} needs {needs}")]
    Forbidden {
        scope: &'static str,
        action: &'static str,
        needs: &'static str,
    },
    #[error("the request body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("{0}")]
    Invalid(#[from] FieldError),
    #[error("storage error: {0}")]
    Store(#[from] StoreError),
    #[error("no such endpoint: {0}")]
    NotFound(String),
    /// An error answered by a layer or by axum, given its body afterwards.
    #[error("{detail}")]
    Other { status: StatusCode, detail: String },
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
            ApiError::Other { status, .. } => *status,
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
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body is not read, so the connection cannot
            // carry another request; closing it says so, and makes the
            // connection linger (`super::listener`) so the client, still
            // sending, can read this answer.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// Gives an error answer made without a body (axum's 405 for a method a
/// route does not take, the timeout layer's 408) the JSON body every other
/// error has, keeping its status and headers.
pub async fn fill_error_bodies(request: Request, next: Next) -> Response {
    // Cheap clones (a small enum, a reference-counted URI), taken for every
    // request so that an error can name what was asked.
    let method = request.method().clone();
    let uri = request.uri().clone();
    let response = next.run(request).await;
    let status = response.status();
    let bodiless = response.body().size_hint().exact() == Some(0)
        && !response.headers().contains_key(header::CONTENT_TYPE);
    if !(status.is_client_error() || status.is_server_error()) || !bodiless {
        return response;
    }
    let path = crate::server::wire::excerpt(uri.path(), 200);
    let detail = match status {
        // axum adds `Allow` to the answer outside this layer: not quoted here.
        StatusCode::METHOD_NOT_ALLOWED => format!(
            "method {method} is not allowed on {path}; the Allow header lists those that are"
        ),
        StatusCode::REQUEST_TIMEOUT => {
            format!("{method} {path}: the request was not complete within the request timeout")
        }
        _ => format!(
            "{method} {path}: {}",
            status.canonical_reason().unwrap_or("error")
        ),
    };
    let (parts, _) = response.into_parts();
    let mut filled = ApiError::Other { status, detail }.into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_LENGTH && name != header::CONTENT_TYPE {
            filled.headers_mut().append(name.clone(), value.clone());
        }
    }
    filled
}
