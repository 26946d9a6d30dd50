//! The HTTP routes and the layers around them (body limit, timeout,
//! metrics, request logs, JSON bodies for errors made outside handlers).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use super::error::{fill_error_bodies, ApiError};
use super::handlers::{self, AppState};
use super::{docs, metrics};

pub fn router(state: Arc<AppState>, request_timeout: Duration) -> Router {
    let metrics_state = state.metrics.clone();
    let trace = TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
        tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), user = tracing::field::Empty)
    });
    Router::new()
        .route("/", get(docs::text))
        .route("/api", get(docs::text))
        .route("/api/openapi.json", get(docs::openapi))
        .route("/api/v1/query-passed", post(handlers::v1_query))
        .route("/api/v1/publish", post(handlers::v1_publish))
        .route("/api/v2/capabilities", get(handlers::capabilities))
        .route("/api/v2/query-passed", post(handlers::v2_query))
        .route("/api/v2/publish", post(handlers::v2_publish))
        .route("/api/v2/admin/usage", get(handlers::admin_usage))
        .route("/healthz", get(handlers::healthz))
        .route("/metrics", get(handlers::metrics))
        .fallback(handlers::not_found)
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.limits.max_body_bytes,
            refuse_declared_oversize,
        ))
        .layer(axum::middleware::from_fn_with_state(
            metrics_state,
            metrics::track,
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        // Outside the timeout, so that its 408 gets a body too.
        .layer(axum::middleware::from_fn(fill_error_bodies))
        .layer(trace)
        .with_state(state)
}

/// Answers 413 at once to a request whose `Content-Length` is over the
/// body limit. `DefaultBodyLimit` alone refuses such a body only once the
/// limit's worth of it has arrived: a client that declared 100 MB and sent
/// a byte waited for the request timeout (a 408 after 30 s).
async fn refuse_declared_oversize(
    State(max_body_bytes): State<usize>,
    request: Request,
    next: Next,
) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body_bytes as u64) {
        // With `connection: close` (see `ApiError::into_response`).
        return ApiError::TooLarge {
            limit: max_body_bytes,
        }
        .into_response();
    }
    next.run(request).await
}
