//! Request extractors whose rejections are clear 4xx JSON errors (never a 500).

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde_json::json;
use uuid::Uuid;

use crate::error::{invalid, ApiError};

/// JSON body; malformed JSON or wrong fields → 422 like the original's validation errors.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Response;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(JsonBody(v)),
            Err(JsonRejection::BytesRejection(e))
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err((
                    StatusCode::PAYLOAD_TOO_LARGE,
                    Json(json!({"detail": "Request body too large"})),
                )
                    .into_response())
            }
            Err(JsonRejection::BytesRejection(e)) => Err(ApiError(
                livechat_core::AppError::BadRequest(format!("Cannot read the request body: {e}")),
                "body",
            )
            .into_response()),
            Err(JsonRejection::MissingJsonContentType(_)) => {
                Err(
                    invalid("body", "body", "Content-Type must be application/json")
                        .into_response(),
                )
            }
            Err(e) => Err(invalid("body", "body", e.body_text()).into_response()),
        }
    }
}

/// Query string; bad values → 422.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(QueryParams(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                Err(invalid("query", "query", e.body_text()))
            }
            Err(e) => Err(invalid("query", "query", e.body_text())),
        }
    }
}

/// Parses a path or query id; a malformed UUID is a 422 naming the field.
pub fn uuid_param(location: &'static str, field: &str, value: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(value)
        .map_err(|_| invalid(location, field, format!("{field} is not a valid UUID")))
}
