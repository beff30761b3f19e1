//! REST routes, grouped like the original API under `/api`.

pub mod analytics;
pub mod files;
pub mod messages;
pub mod notifications;
pub mod registry;
pub mod rooms;
pub mod users;

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::AppState;

pub type St = axum::extract::State<Arc<AppState>>;

/// 200 with an empty body, as the original answers routes that return nothing.
pub fn empty_ok() -> Response {
    StatusCode::OK.into_response()
}

pub fn json<T: Serialize>(v: T) -> Response {
    Json(v).into_response()
}
