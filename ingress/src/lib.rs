//! LiveChat's ingress: the REST API (`/api/...`, the original's routes and more), the WebSocket
//! gateway (`/api/ws/stream`), the OpenAPI document, and the web client's static files.
//!
//! Layout:
//! - [`routes`]: one module per API area; handlers only parse input and call the service.
//! - [`ws`]: the WebSocket endpoint, its protocol, and the per-connection loop.
//! - [`hub`]: in-process live delivery and presence (the `Fanout` port).
//! - [`presence`]: publishes this process's presence to the shared store and pushes other
//!   processes' presence changes to local sockets (distributed mode).
//! - [`metrics`]: `GET /metrics` in the Prometheus text format.
//! - [`auth`]: the session cookie and the middleware that authenticates requests.
//! - [`error`], [`extract`]: error responses and extractors that never produce a 500.
//! - [`openapi`]: the OpenAPI 3 document and the docs page.
//! - [`web`]: the web client's files (revalidated caching) and the security headers.

pub mod auth;
pub mod error;
pub mod extract;
pub mod hub;
pub mod kafka_api;
pub mod metrics;
pub mod openapi;
pub mod presence;
pub mod routes;
pub mod web;
pub mod ws;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put};
use axum::{middleware, Json, Router};
use livechat_core::service::ChatService;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tower_http::compression::predicate::SizeAbove;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::hub::Hub;
use crate::routes::{analytics, files, messages, notifications, registry, rooms, users};

/// `[ingress]` settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IngressConfig {
    /// Address to listen on.
    pub listen: String,
    /// Origins allowed to open a WebSocket (and to call the API cross-origin with credentials).
    /// Empty: the listen address as `http://` origin, plus localhost/127.0.0.1 on the same port.
    pub allowed_origins: Vec<String>,
    /// Mark the session cookie `Secure` (enable behind HTTPS).
    pub secure_cookies: bool,
    /// Directory of the web client; empty: `web/` of the source tree.
    pub web_dir: String,
    /// Serve the API docs page (`/api/internal/docs`).
    pub docs: bool,
    /// Who may read `/metrics`: `"loopback"` (a scraper on this host), `"public"` or `"off"`.
    pub metrics: MetricsAccess,
    /// The schema registry LiveChat registers its schemas in, when there is one (distributed
    /// mode, from the log's configuration): `/registry` then points there instead of serving
    /// the embedded ids.
    #[serde(skip)]
    pub external_registry: Option<String>,
}

/// Who may read `/metrics` (it names rooms' consumer lag, routes and rates: not for everyone).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MetricsAccess {
    Off,
    /// Requests from a loopback address only. Behind a reverse proxy on the same host every
    /// request comes from loopback: block `/metrics` at the proxy, or set `off`.
    #[default]
    Loopback,
    Public,
}

impl Default for IngressConfig {
    fn default() -> Self {
        IngressConfig {
            listen: "127.0.0.1:8000".into(),
            allowed_origins: vec![],
            secure_cookies: false,
            web_dir: String::new(),
            docs: true,
            metrics: MetricsAccess::default(),
            external_registry: None,
        }
    }
}

impl IngressConfig {
    /// Fills in the default origin allowlist for the actual bound address.
    pub fn with_bound_address(mut self, addr: SocketAddr) -> Self {
        if self.allowed_origins.is_empty() {
            let port = addr.port();
            self.allowed_origins = vec![
                format!("http://{addr}"),
                format!("http://127.0.0.1:{port}"),
                format!("http://localhost:{port}"),
            ];
        }
        self
    }

    pub fn origin_allowed(&self, origin: &str) -> bool {
        self.allowed_origins.iter().any(|o| o == origin)
    }

    pub fn web_path(&self) -> PathBuf {
        if self.web_dir.is_empty() {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../web"))
        } else {
            PathBuf::from(&self.web_dir)
        }
    }
}

/// Shared state of every handler.
pub struct AppState {
    pub svc: Arc<ChatService>,
    pub hub: Arc<Hub>,
    pub config: IngressConfig,
    /// Consumer lag for `/metrics` (None: not exported).
    pub lag: Option<metrics::LagSource>,
    /// The process's metrics recorder, rendered by `/metrics` (None: only the scrape-time gauges).
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

async fn health() -> StatusCode {
    StatusCode::OK
}

async fn api_not_found() -> impl IntoResponse {
    (StatusCode::NOT_FOUND, Json(json!({"detail": "Not Found"})))
}

/// The whole HTTP application.
pub fn router(st: Arc<AppState>) -> Router {
    let authed = Router::new()
        .route("/users/get-me", get(users::get_me))
        .route("/users/export-my-data", get(users::export_my_data))
        .route("/users/delete-account", post(users::delete_account))
        .route("/rooms/create-room", post(rooms::create))
        .route("/rooms/create-direct", post(rooms::create_direct))
        .route("/rooms/update-room/{room_id}", put(rooms::update))
        .route("/rooms/delete-room/{room_id}", delete(rooms::delete))
        .route("/rooms/get-room/{room_id}", get(rooms::get))
        .route("/rooms/get-users/{room_id}", get(rooms::users))
        .route("/rooms/get-rooms", get(rooms::mine))
        .route("/rooms/get-top-rooms", get(rooms::top))
        .route(
            "/rooms/get-join-requests-by-room/{room_id}",
            get(rooms::requests_of_room),
        )
        .route("/rooms/get-join-requests-by-user", get(rooms::my_requests))
        .route("/rooms/get-search-rooms", get(rooms::search))
        .route("/rooms/create-join-request", post(rooms::request_join))
        .route(
            "/rooms/handle-join-request/{request_id}",
            post(rooms::handle_request),
        )
        .route(
            "/rooms/remove-user/{room_id}/{user_id}",
            delete(rooms::remove_user),
        )
        .route("/rooms/leave-room/{room_id}", delete(rooms::leave))
        .route("/rooms/read-marker/{room_id}", put(rooms::read_marker))
        .route("/messages/create-message/{room_id}", post(messages::create))
        .route(
            "/messages/update-message/{message_id}",
            put(messages::update),
        )
        .route(
            "/messages/delete-message/{message_id}",
            delete(messages::delete),
        )
        .route(
            "/messages/add-reaction/{message_id}",
            post(messages::add_reaction),
        )
        .route(
            "/messages/remove-reaction/{message_id}",
            post(messages::remove_reaction),
        )
        .route("/messages/pin-message/{message_id}", post(messages::pin))
        .route(
            "/messages/unpin-message/{message_id}",
            post(messages::unpin),
        )
        .route("/messages/get-pinned/{room_id}", get(messages::pinned))
        .route(
            "/messages/get-thread/{room_id}/{root_seq}",
            get(messages::thread),
        )
        .route(
            "/messages/thread-read-marker/{room_id}/{root_seq}",
            put(messages::thread_read_marker),
        )
        .route(
            "/messages/thread-follow/{room_id}/{root_seq}",
            put(messages::thread_follow),
        )
        .route("/messages/search-messages", get(messages::search))
        .route(
            "/messages/get-recent-messages/{room_id}",
            get(messages::recent),
        )
        .route("/messages/get-messages/{room_id}", get(messages::by_seq))
        // Its body is read, within the file limit, by the handler (a file is not JSON).
        .route("/files/upload-file/{room_id}", post(files::upload))
        .route("/files/get-file/{room_id}/{key}", get(files::download))
        .route("/notifications/get-notifications", get(notifications::list))
        .route(
            "/notifications/update-notification/{notification_id}",
            put(notifications::mark_read),
        )
        .route(
            "/notifications/update-notifications/read-all",
            put(notifications::mark_all),
        )
        .route(
            "/notifications/get-notifications-count-unread",
            get(notifications::count_unread),
        )
        .route(
            "/notifications/delete-notification/{notification_id}",
            delete(notifications::delete),
        )
        .route("/analytics/get-room-stats", get(analytics::room_stats))
        .route(
            "/analytics/get-user-activity",
            get(analytics::user_activity),
        )
        .route(
            "/analytics/get-top-active-rooms",
            get(analytics::top_active_rooms),
        )
        .route(
            "/analytics/get-message-per-minutes",
            get(analytics::messages_per_minutes),
        )
        .route("/analytics/get-user-retention", get(analytics::retention))
        .route(
            "/analytics/get-message-edit-delete-ratio",
            get(analytics::edit_delete_ratio),
        )
        .route(
            "/analytics/get-top-social-users",
            get(analytics::top_social_users),
        )
        .route(
            "/ws/get-active-user-ids/{room_id}",
            get(rooms::active_users),
        )
        .route(
            "/ws/disconnect-user/{room_id}/{user_id}",
            delete(rooms::disconnect_user),
        )
        .route_layer(middleware::from_fn_with_state(
            st.clone(),
            auth::require_session,
        ));
    let mut open = Router::new()
        .route("/health", get(health))
        .route("/users/register-user", post(users::register))
        .route("/users/login-user", post(users::login))
        .route("/users/logout-user", post(users::logout))
        .route("/ws/stream", get(ws::stream))
        .route("/internal/openapi.json", get(openapi::document));
    if st.config.docs {
        open = open
            .route("/internal/docs", get(openapi::docs_root))
            .route("/internal/docs/", get(openapi::docs_file))
            .route("/internal/docs/{*tail}", get(openapi::docs_file));
    }
    let api = open
        .merge(authed)
        .route_layer(middleware::from_fn(metrics::track_requests))
        .layer(middleware::from_fn(trace_context))
        .fallback(api_not_found);
    let origins: Vec<HeaderValue> = st
        .config
        .allowed_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_credentials(true)
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers([
            header::CONTENT_TYPE,
            axum::http::HeaderName::from_static("traceparent"),
        ]);
    Router::new()
        .route("/metrics", get(metrics::render))
        .nest("/api", api)
        .nest(
            "/registry",
            registry::router(st.config.external_registry.clone()),
        )
        .fallback_service(web::client(&st.config.web_path()))
        .layer(axum::extract::DefaultBodyLimit::max(
            st.svc.limits.max_body_bytes,
        ))
        .layer(
            // One span per request; failures (5xx) are logged by the layer itself.
            tower_http::trace::TraceLayer::new_for_http().make_span_with(
                |req: &axum::http::Request<_>| {
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path())
                },
            ),
        )
        .layer(
            CompressionLayer::new()
                .gzip(true)
                .compress_when(SizeAbove::new(1000)),
        )
        .layer(cors)
        .layer(middleware::from_fn_with_state(
            st.clone(),
            web::security_headers,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"detail": "Internal server error"})),
            )
                .into_response()
        }))
        .with_state(st)
}

/// The request's W3C `traceparent`, if it sent a valid one, goes onto the topic records of the
/// changes it makes (see `livechat_core::trace`).
async fn trace_context(
    req: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    let traceparent = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(livechat_core::trace::parse);
    livechat_core::trace::scope(traceparent, next.run(req)).await
}

/// Serves until `shutdown`; then closes every socket (1001) and stops accepting.
pub async fn serve(
    listener: tokio::net::TcpListener,
    st: Arc<AppState>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let hub = st.hub.clone();
    let app = router(st);
    let token = shutdown.clone();
    tokio::spawn(async move {
        token.cancelled().await;
        hub.close_all(1001, "server shutting down");
    });
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await
    .map_err(|e| anyhow::anyhow!("HTTP server failed: {e}"))
}
