//! The HTTP routes and the layers around them (body limit, timeout,
//! metrics, request logs).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

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
            metrics_state,
            metrics::track,
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .layer(trace)
        .with_state(state)
}
