//! AppError → HTTP response. Bodies follow the original: `{"detail": "<message>"}`, and 422s
//! carry FastAPI's list form `{"detail": [{"loc", "msg", "type"}]}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use livechat_core::AppError;
use serde_json::json;

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError(pub AppError, pub &'static str);

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        ApiError(e, "body")
    }
}

/// The service's errors in a handler whose inputs are query parameters: a 422 names the field
/// under `query` (the default is `body`).
pub fn in_query(e: AppError) -> ApiError {
    ApiError(e, "query")
}

/// A 422 for a malformed field, located like FastAPI (`body`, `query` or `path`).
pub fn invalid(location: &'static str, field: &str, msg: impl Into<String>) -> ApiError {
    ApiError(AppError::validation(field, msg), location)
}

pub fn status_of(e: &AppError) -> StatusCode {
    match e {
        AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
        AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        AppError::Forbidden(_) => StatusCode::FORBIDDEN,
        AppError::NotFound(_) => StatusCode::NOT_FOUND,
        AppError::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        AppError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        AppError::Unsupported(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        AppError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
        AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let ApiError(err, location) = self;
        let status = status_of(&err);
        let body = match &err {
            AppError::Validation {
                field,
                message,
                more,
            } => {
                let entry = |field: &str, message: &str| json!({ "loc": [location, field], "msg": message, "type": "value_error" });
                let all: Vec<_> = std::iter::once(entry(field, message))
                    .chain(more.iter().map(|(f, m)| entry(f, m)))
                    .collect();
                json!({ "detail": all })
            }
            AppError::Internal(e) => {
                // Logged once here, where it is handled; the client sees no internals.
                tracing::error!(error = %format!("{e:#}"), "Request failed.");
                json!({ "detail": "Internal server error" })
            }
            AppError::Unavailable(msg) => {
                tracing::warn!(error = %msg, "Dependency unavailable.");
                json!({ "detail": "Service temporarily unavailable; retry shortly" })
            }
            other => json!({ "detail": other.to_string() }),
        };
        let mut resp = (status, Json(body)).into_response();
        if let AppError::TooManyRequests {
            retry_after_secs, ..
        } = err
        {
            if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
