//! A read-only schema registry under `/registry`, speaking the Confluent Schema Registry REST
//! API's read calls: every topic's Avro schema with the id the log's records carry in their
//! header, so a consumer's Avro deserializer (kcat `-r`, confluent-kafka, Kafka's own tools)
//! decodes LiveChat's records with no other server. A subject (`<topic>-value`) lists every
//! version of its topic's schema, the latest being the one new records are written with; the
//! earlier ones keep their ids, which the records written with them carry.
//!
//! Served only where the records carry these ids (the embedded log, or Kafka without a
//! registry); where LiveChat registers its schemas in an external registry, the records carry
//! that registry's ids and every call here answers 404 naming it.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use livechat_schemas::registry::{self as schemas, RegisteredSchema};
use serde_json::{json, Value};

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

fn answer(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        body.to_string(),
    )
        .into_response()
}

/// An error as the Confluent API gives it: an `error_code` clients switch on, and a message.
fn error(status: StatusCode, code: u32, message: &str) -> Response {
    answer(status, json!({"error_code": code, "message": message}))
}

/// Why a lookup found nothing: the status, the API's error code and its message.
type Refusal = (StatusCode, u32, &'static str);

fn refused((status, code, message): Refusal) -> Response {
    error(status, code, message)
}

/// The versions of a subject, oldest first.
fn subject(name: &str) -> Result<Vec<&'static RegisteredSchema>, Refusal> {
    let versions: Vec<_> = schemas::all()
        .iter()
        .filter(|s| s.subject == name)
        .collect();
    if versions.is_empty() {
        return Err((StatusCode::NOT_FOUND, 40401, "Subject not found."));
    }
    Ok(versions)
}

/// A version by its number; `latest` and `-1` name the newest.
fn version(
    versions: Vec<&'static RegisteredSchema>,
    v: &str,
) -> Result<&'static RegisteredSchema, Refusal> {
    let found = match v {
        "latest" | "-1" => versions.last().copied(),
        other => match other.parse::<u32>() {
            Ok(n) if n > 0 => versions.iter().copied().find(|s| s.version == n),
            _ => {
                return Err((
                    StatusCode::UNPROCESSABLE_ENTITY,
                    42202,
                    "The specified version is not a valid version id: a positive integer, -1 or \"latest\".",
                ))
            }
        },
    };
    found.ok_or((StatusCode::NOT_FOUND, 40402, "Version not found."))
}

async fn subjects() -> Response {
    let mut names: Vec<&str> = schemas::all().iter().map(|s| s.subject).collect();
    names.sort_unstable();
    names.dedup();
    answer(StatusCode::OK, json!(names))
}

async fn versions(Path(name): Path<String>) -> Response {
    match subject(&name) {
        Ok(versions) => answer(
            StatusCode::OK,
            json!(versions.iter().map(|s| s.version).collect::<Vec<_>>()),
        ),
        Err(r) => refused(r),
    }
}

async fn subject_version(Path((name, v)): Path<(String, String)>) -> Response {
    match subject(&name).and_then(|s| version(s, &v)) {
        Ok(s) => answer(
            StatusCode::OK,
            json!({"subject": s.subject, "version": s.version, "id": s.id, "schema": s.text}),
        ),
        Err(r) => refused(r),
    }
}

/// The schema alone, as its JSON text.
async fn subject_version_schema(Path((name, v)): Path<(String, String)>) -> Response {
    match subject(&name).and_then(|s| version(s, &v)) {
        Ok(s) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, CONTENT_TYPE)],
            s.text,
        )
            .into_response(),
        Err(r) => refused(r),
    }
}

async fn by_id(Path(id): Path<String>) -> Response {
    match id.parse::<u32>().ok().and_then(schemas::by_id) {
        Some(s) => answer(StatusCode::OK, json!({"schema": s.text})),
        None => error(StatusCode::NOT_FOUND, 40403, "Schema not found."),
    }
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, 404, "HTTP 404 Not Found")
}

/// The registry's routes, or, with `external` (the registry LiveChat registers its schemas in),
/// a 404 naming it for every call.
pub fn router<S: Clone + Send + Sync + 'static>(external: Option<String>) -> Router<S> {
    match external {
        Some(url) => {
            let message = format!("This deployment's schemas are in the schema registry at {url}; records carry its ids.");
            Router::new().fallback(move || {
                let message = message.clone();
                async move { error(StatusCode::NOT_FOUND, 40401, &message) }
            })
        }
        None => Router::new()
            .route("/subjects", get(subjects))
            .route("/subjects/{subject}/versions", get(versions))
            .route(
                "/subjects/{subject}/versions/{version}",
                get(subject_version),
            )
            .route(
                "/subjects/{subject}/versions/{version}/schema",
                get(subject_version_schema),
            )
            .route("/schemas/ids/{id}", get(by_id))
            .fallback(not_found),
    }
}
