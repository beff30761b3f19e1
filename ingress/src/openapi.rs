//! The OpenAPI 3.0 document of the REST API, built from one table of operations, and the
//! Swagger UI that renders it.

use std::sync::{Arc, OnceLock};

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use serde_json::{json, Map, Value};

/// (method, path, tag, summary, authenticated, parameters, request body schema, response schema)
type Op = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    &'static [Param],
    Option<&'static str>,
    Option<Value>,
);
/// (name, location, type, required)
type Param = (&'static str, &'static str, &'static str, bool);

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn array_of(name: &str) -> Value {
    json!({ "type": "array", "items": schema_ref(name) })
}

fn operations() -> Vec<Op> {
    const ROOM: &[Param] = &[("room_id", "path", "uuid", true)];
    const MSG: &[Param] = &[("message_id", "path", "uuid", true)];
    const NOTIF: &[Param] = &[("notification_id", "path", "uuid", true)];
    const ROOM_USER: &[Param] = &[
        ("room_id", "path", "uuid", true),
        ("user_id", "path", "uuid", true),
    ];
    vec![
        ("get", "/api/health", "status", "Liveness check (200, empty body)", false, &[], None, None),
        ("post", "/api/users/register-user", "users", "Register (username 3-32 letters/digits/_.- in one script, unique by case-folded look-alike form; password 8-128, not easily guessed)", false, &[], Some("UserAuth"), Some(schema_ref("UserPublic"))),
        ("post", "/api/users/login-user", "users", "Log in: sets the session_id cookie (429 when throttled)", false, &[], Some("UserAuth"), None),
        ("post", "/api/users/logout-user", "users", "Log out: ends this session and closes its sockets", false, &[], None, None),
        ("get", "/api/users/get-me", "users", "The caller", true, &[], None, Some(schema_ref("UserPublic"))),
        ("get", "/api/users/export-my-data", "users", "The caller's own data as a JSON file (Content-Disposition: attachment), streamed as it is written: the account, the rooms they are in (room, role, last_read_seq), their notifications (the latest 10,000) and every message they wrote in those rooms, tombstones included, oldest first per room. Reads every room the caller is in, so at most 2 exports run at once per process: 429 with Retry-After beyond. Rooms left earlier are not included", true, &[], None, Some(json!({"type": "object", "properties": {"format": {"type": "string"}, "version": {"type": "integer"}, "exported_at": {"type": "string", "format": "date-time"}, "user": schema_ref("UserPublic"), "rooms": {"type": "array", "items": {"type": "object", "properties": {"room": schema_ref("RoomPublic"), "role": {"type": "string"}}}}, "notifications": {"type": "array", "items": schema_ref("NotificationPublic")}, "messages": {"type": "array", "items": schema_ref("MessagePublic")}}}))),
        ("post", "/api/users/delete-account", "users", "Delete the caller's account for good, after confirming their password (403 when it is wrong): they leave every room (rooms they own are deleted, as when an owner leaves), every message of theirs is deleted, then the account is erased with its content key, so what they wrote stays unreadable in every copy of the log. Clears the session cookie and closes this session's sockets", true, &[], Some("AccountDeletion"), None),
        ("post", "/api/rooms/create-room", "rooms", "Create a room (the caller owns it)", true, &[], Some("RoomCreate"), Some(schema_ref("RoomPublic"))),
        ("post", "/api/rooms/create-direct", "rooms", "Open the caller's direct conversation with one person or a group (up to max_direct_members with the caller): the same room for the same people whoever opens it, everyone who left back in; visibility direct, named for the caller by the other people's names; never listed, joined, changed or deleted", true, &[], Some("DirectOpen"), Some(schema_ref("RoomPublic"))),
        ("put", "/api/rooms/update-room/{room_id}", "rooms", "Owner: change description / visibility", true, ROOM, Some("RoomUpdate"), Some(schema_ref("RoomPublic"))),
        ("delete", "/api/rooms/delete-room/{room_id}", "rooms", "Owner: delete the room", true, ROOM, None, None),
        ("get", "/api/rooms/get-room/{room_id}", "rooms", "A room's details, private rooms too (found to be requested)", true, ROOM, None, Some(schema_ref("RoomPublic"))),
        ("get", "/api/rooms/get-users/{room_id}", "rooms", "Members of a room (members only)", true, ROOM, None, Some(array_of("UserPublic"))),
        ("get", "/api/rooms/get-rooms", "rooms", "The caller's rooms with unread counts", true, &[], None, Some(array_of("RoomPublic"))),
        ("get", "/api/rooms/get-top-rooms", "rooms", "Rooms by participants (private rooms too unless only_public)", true, &[("limit", "query", "integer", false), ("only_public", "query", "boolean", false)], None, Some(array_of("RoomPublic"))),
        ("get", "/api/rooms/get-join-requests-by-room/{room_id}", "rooms", "Owner: pending join requests", true, ROOM, None, Some(array_of("JoinRequestPublic"))),
        ("get", "/api/rooms/get-join-requests-by-user", "rooms", "The caller's pending join requests", true, &[], None, Some(array_of("JoinRequestPublic"))),
        ("get", "/api/rooms/get-search-rooms", "rooms", "Literal, case-insensitive search on name and description (private rooms too)", true, &[("text", "query", "string", true), ("limit", "query", "integer", false)], None, Some(array_of("RoomPublic"))),
        ("post", "/api/rooms/create-join-request", "rooms", "Join a public room, or request to join a private one", true, &[], Some("SendJoinRequest"), None),
        ("post", "/api/rooms/handle-join-request/{request_id}", "rooms", "Owner: accept or reject a request", true, &[("request_id", "path", "uuid", true), ("accept", "query", "boolean", false)], None, None),
        ("delete", "/api/rooms/remove-user/{room_id}/{user_id}", "rooms", "Owner: remove a member (their stream ends at once)", true, ROOM_USER, None, None),
        ("delete", "/api/rooms/leave-room/{room_id}", "rooms", "Leave a room (the owner leaving deletes it)", true, ROOM, None, None),
        ("put", "/api/rooms/read-marker/{room_id}", "rooms", "Set the caller's read marker (last read seq)", true, ROOM, Some("ReadMarker"), None),
        ("post", "/api/messages/create-message/{room_id}", "messages", "Send a message (durable before the response); optional client_msg_id makes retries idempotent", true, ROOM, Some("SendMessageRequest"), Some(schema_ref("MessagePublic"))),
        ("put", "/api/messages/update-message/{message_id}", "messages", "Author: edit a message", true, MSG, Some("EditMessageRequest"), Some(schema_ref("MessagePublic"))),
        ("delete", "/api/messages/delete-message/{message_id}", "messages", "Author or room owner: delete a message (and its files, once no other message of the room carries them)", true, MSG, None, None),
        ("post", "/api/messages/add-reaction/{message_id}", "messages", "Member: react to a message with an emoji (or its :shortcode:); idempotent per user and emoji; at most max_reaction_emojis different emojis per message; counted against the send rate", true, MSG, Some("ReactionRequest"), Some(schema_ref("MessagePublic"))),
        ("post", "/api/messages/pin-message/{message_id}", "messages", "Member: pin a message in its room (at most max_pinned_per_room at a time; pinning a pinned one changes nothing)", true, MSG, None, Some(schema_ref("MessagePublic"))),
        ("post", "/api/messages/unpin-message/{message_id}", "messages", "Member: unpin a message", true, MSG, None, Some(schema_ref("MessagePublic"))),
        ("get", "/api/messages/search-messages", "messages", "Full-text search over the messages of the caller's rooms (or of room_id, a member's): every word of text (1-200 characters, at most 8 words) must occur, as a case-insensitive substring, in any script; order newest (default) or best; limit 1-50 (20), offset up to 1000; each result is the message as it is now with highlights, [start, end) character offsets of the matches. The index follows the log by a fraction of a second", true, &[("text", "query", "string", true), ("room_id", "query", "uuid", false), ("order", "query", "string", false), ("limit", "query", "integer", false), ("offset", "query", "integer", false)], None, Some(array_of("SearchResult"))),
        ("get", "/api/messages/get-thread/{room_id}/{root_seq}", "messages", "Members: a thread's root and its live replies, oldest first, seq > after_seq (0); limit 1-100 (50); 404 when root_seq is no thread root (no message, or a reply in a thread)", true, &[("room_id", "path", "uuid", true), ("root_seq", "path", "integer", true), ("after_seq", "query", "integer", false), ("limit", "query", "integer", false)], None, Some(schema_ref("ThreadPage"))),
        ("put", "/api/messages/thread-read-marker/{room_id}/{root_seq}", "messages", "Members: mark a thread read up to seq (clamped to its last reply; never moves back); answers room_id, root_seq and read_seq, the marker now stored. A reply marks its own thread read for its author; history pages and get-thread carry the caller's marker (thread.read_seq, read_seq)", true, &[("room_id", "path", "uuid", true), ("root_seq", "path", "integer", true)], Some("ReadMarker"), Some(json!({"type": "object", "properties": {"room_id": {"type": "string", "format": "uuid"}, "root_seq": {"type": "integer"}, "read_seq": {"type": "integer"}}}))),
        ("put", "/api/messages/thread-follow/{room_id}/{root_seq}", "messages", "Members: follow a thread (told of each reply by a REPLY notification) or stop following it; overrides the default (the root's author and those who replied follow it); answers room_id, root_seq and following. get-thread carries the caller's following", true, &[("room_id", "path", "uuid", true), ("root_seq", "path", "integer", true)], Some("ThreadFollow"), Some(json!({"type": "object", "properties": {"room_id": {"type": "string", "format": "uuid"}, "root_seq": {"type": "integer"}, "following": {"type": "boolean"}}}))),
        ("get", "/api/messages/get-pinned/{room_id}", "messages", "Members: the room's pinned messages, the latest pinned first", true, ROOM, None, Some(array_of("MessagePublic"))),
        ("post", "/api/messages/remove-reaction/{message_id}", "messages", "Member: take back one's reaction (nothing to take back is not an error)", true, MSG, Some("ReactionRequest"), Some(schema_ref("MessagePublic"))),
        ("get", "/api/messages/get-recent-messages/{room_id}", "messages", "History, newest first, keyset on created_at < before; a full page also takes the rest of its oldest millisecond (it may hold more than limit), so paging by the oldest created_at never skips a message", true, &[("room_id", "path", "uuid", true), ("before", "query", "date-time", false), ("limit", "query", "integer", false)], None, Some(array_of("MessagePublic"))),
        ("get", "/api/messages/get-messages/{room_id}", "messages", "History by seq: after_seq (ascending) or before_seq (descending); tombstones included", true, &[("room_id", "path", "uuid", true), ("after_seq", "query", "integer", false), ("before_seq", "query", "integer", false), ("limit", "query", "integer", false)], None, Some(array_of("MessagePublic"))),
        ("post", "/api/files/upload-file/{room_id}", "files", "Members: share a file in the room. The body is the file's bytes (at most max_file_bytes, 10 MiB: 413 beyond); its type is found from the bytes (the request's Content-Type is ignored), programs are refused (415), an image's EXIF, XMP and text metadata are removed before it is stored (its orientation alone kept), and its width and height given as shown; larger than 320 x 240, it gets a thumbnail (thumbnail_url). name (query) is the name to show, without any path. Stored once by content (key = SHA-256 of the stored bytes); the answer's url is where the room's members download it. Counted against the send rate and upload_bytes_per_minute (100 MiB per user; 429 with Retry-After beyond); at most concurrent_uploads (4) per process at once (429 beyond). A file no message carries within file_hold_secs (1 h) is deleted; 503 while the same file is being deleted", true, &[("room_id", "path", "uuid", true), ("name", "query", "string", false)], Some("FileUpload"), Some(schema_ref("FilePublic"))),
        ("get", "/api/files/get-file/{room_id}/{key}", "files", "Members: a file shared in the room, with the Content-Type found at upload, X-Content-Type-Options: nosniff and a sandboxing Content-Security-Policy; PNG, JPEG, GIF and WebP images inline, anything else as a download (Content-Disposition: attachment). thumbnail=true: the image's thumbnail (404 when it has none). 404 for a key not shared in this room", true, &[("room_id", "path", "uuid", true), ("key", "path", "string", true), ("thumbnail", "query", "boolean", false)], None, Some(json!({"type": "string", "format": "binary"}))),
        ("get", "/api/notifications/get-notifications", "notifications", "The caller's notifications, newest first", true, &[("unread_only", "query", "boolean", false), ("limit", "query", "integer", false)], None, Some(array_of("NotificationPublic"))),
        ("put", "/api/notifications/update-notification/{notification_id}", "notifications", "Mark one read", true, NOTIF, None, None),
        ("put", "/api/notifications/update-notifications/read-all", "notifications", "Mark all read", true, &[], None, None),
        ("get", "/api/notifications/get-notifications-count-unread", "notifications", "Unread count", true, &[], None, Some(json!({"type": "object", "properties": {"unread_count": {"type": "integer"}}}))),
        ("delete", "/api/notifications/delete-notification/{notification_id}", "notifications", "Delete one of the caller's notifications", true, NOTIF, None, None),
        ("get", "/api/analytics/get-room-stats", "analytics", "Messages, distinct senders, last message time (members; anyone for public rooms)", true, &[("room_id", "query", "uuid", true)], None, Some(schema_ref("RoomStats"))),
        ("get", "/api/analytics/get-user-activity", "analytics", "The caller's own activity", true, &[("user_id", "query", "uuid", true)], None, Some(json!({"type": "object", "properties": {"messages": {"type": "integer"}, "rooms_joined": {"type": "integer"}}}))),
        ("get", "/api/analytics/get-top-active-rooms", "analytics", "Most active rooms the caller may see", true, &[("limit", "query", "integer", false)], None, Some(array_of("RoomStats"))),
        ("get", "/api/analytics/get-message-per-minutes", "analytics", "Messages in the room in the last since_minutes (1-525600)", true, &[("room_id", "query", "uuid", true), ("since_minutes", "query", "integer", true)], None, Some(json!({"type": "integer"}))),
        ("get", "/api/analytics/get-user-retention", "analytics", "Percent of registered users who logged in within days (1-3650)", true, &[("days", "query", "integer", true)], None, Some(json!({"type": "number"}))),
        ("get", "/api/analytics/get-message-edit-delete-ratio", "analytics", "Edits and deletes per sent message", true, &[], None, Some(json!({"type": "object", "properties": {"edit_ratio": {"type": "number"}, "delete_ratio": {"type": "number"}}}))),
        ("get", "/api/analytics/get-top-social-users", "analytics", "Users by distinct rooms, then messages", true, &[("limit", "query", "integer", true)], None, Some(json!({"type": "array", "items": {"type": "object", "properties": {"user_id": {"type": "string", "format": "uuid"}, "rooms": {"type": "integer"}, "messages": {"type": "integer"}}}}))),
        ("get", "/api/ws/get-active-user-ids/{room_id}", "websocket", "Members online in the room (members only)", true, ROOM, None, Some(json!({"type": "array", "items": {"type": "string", "format": "uuid"}}))),
        ("delete", "/api/ws/disconnect-user/{room_id}/{user_id}", "websocket", "Owner: end a user's live stream of the room", true, ROOM_USER, None, None),
        ("get", "/api/ws/stream", "websocket", "WebSocket upgrade (see the README for every frame); optional room_id subscribes at once", true, &[("room_id", "query", "uuid", false)], None, None),
    ]
}

fn param_schema(kind: &str) -> Value {
    match kind {
        "uuid" => json!({"type": "string", "format": "uuid"}),
        "date-time" => json!({"type": "string", "format": "date-time"}),
        other => json!({"type": other}),
    }
}

fn components() -> Value {
    let s = |f: &str| json!({"type": f});
    let uuid = json!({"type": "string", "format": "uuid"});
    let dt = json!({"type": "string", "format": "date-time"});
    let nullable_str = json!({"type": "string", "nullable": true});
    // Built apart: one `json!` of every schema exceeds the macro's recursion limit.
    let message = json!({ "type": "object", "properties": { "id": uuid, "room_id": uuid, "user_id": uuid, "username": s("string"), "content": s("string"), "edited": s("boolean"), "deleted": s("boolean"), "seq": s("integer"), "client_msg_id": nullable_str, "created_at": dt, "updated_at": dt, "reply_to_seq": {"type": "integer", "nullable": true}, "reactions": {"type": "array", "items": schema_ref("Reaction")}, "pinned_by": {"type": "string", "format": "uuid", "nullable": true}, "pinned_at": {"type": "string", "format": "date-time", "nullable": true}, "thread_root_seq": {"type": "integer", "nullable": true}, "thread": {"allOf": [schema_ref("ThreadSummary")], "nullable": true}, "attachments": {"type": "array", "items": schema_ref("FilePublic")} } });
    json!({
        "securitySchemes": { "session": { "type": "apiKey", "in": "cookie", "name": "session_id" } },
        "schemas": {
            "Error": { "type": "object", "properties": { "detail": {} } },
            "UserAuth": { "type": "object", "required": ["username", "password"], "properties": { "username": s("string"), "password": s("string") } },
            "AccountDeletion": { "type": "object", "required": ["password"], "properties": { "password": s("string") } },
            "UserPublic": { "type": "object", "properties": { "id": uuid, "username": s("string"), "last_active": {"type": "string", "format": "date-time", "nullable": true}, "created_at": dt, "updated_at": dt } },
            "RoomCreate": { "type": "object", "required": ["name"], "properties": { "name": s("string"), "description": nullable_str, "is_public": s("boolean"), "visibility": {"type": "string", "enum": ["public", "private", "unlisted"]} } },
            "RoomUpdate": { "type": "object", "properties": { "description": nullable_str, "is_public": {"type": "boolean", "nullable": true}, "visibility": {"type": "string", "enum": ["public", "private", "unlisted"]} } },
            "DirectOpen": { "type": "object", "required": ["usernames"], "properties": { "usernames": {"type": "array", "items": s("string")} } },
            "RoomPublic": { "type": "object", "properties": { "id": uuid, "name": s("string"), "description": nullable_str, "is_public": s("boolean"), "visibility": {"type": "string", "enum": ["public", "private", "unlisted", "direct"]}, "created_by": uuid, "participants_count": s("integer"), "created_at": dt, "updated_at": dt, "last_seq": s("integer"), "unread_count": s("integer"), "last_read_seq": s("integer") } },
            "SendJoinRequest": { "type": "object", "required": ["room_id"], "properties": { "room_id": uuid, "message": nullable_str } },
            "JoinRequestPublic": { "type": "object", "properties": { "id": uuid, "message": nullable_str, "username": s("string"), "room_name": s("string"), "room_id": uuid, "user_id": uuid, "created_at": dt } },
            "ReadMarker": { "type": "object", "required": ["seq"], "properties": { "seq": s("integer") } },
            "SendMessageRequest": { "type": "object", "properties": { "content": s("string"), "client_msg_id": nullable_str, "reply_to_seq": {"type": "integer", "nullable": true, "description": "The seq of the message of the same room this one replies to"}, "thread_root_seq": {"type": "integer", "nullable": true, "description": "A thread reply: the seq of the thread's root, or of any message in that thread (threads are one level deep)"}, "attachments": {"type": "array", "description": "Files shared in this room (upload-file) that go with the message, at most max_files_per_message (10); with at least one, content may be empty", "items": {"type": "object", "required": ["key"], "properties": {"key": s("string"), "name": {"type": "string", "description": "the name to show (default: file)"}}}} } },
            "ThreadSummary": { "type": "object", "properties": { "reply_count": s("integer"), "last_reply_seq": s("integer"), "last_reply_at": dt, "read_seq": {"type": "integer", "description": "the caller's marker in the thread (0: never read), on history pages"} } },
            "ThreadPage": { "type": "object", "properties": { "root": schema_ref("MessagePublic"), "replies": {"type": "array", "items": schema_ref("MessagePublic")}, "read_seq": s("integer"), "following": s("boolean"), "follow_choice": {"type": "boolean", "nullable": true} } },
            "ThreadFollow": { "type": "object", "required": ["follow"], "properties": { "follow": s("boolean") } },
            "SearchResult": { "type": "object", "properties": { "message": schema_ref("MessagePublic"), "highlights": {"type": "array", "items": {"type": "array", "items": s("integer"), "minItems": 2, "maxItems": 2}} } },
            "ReactionRequest": { "type": "object", "required": ["emoji"], "properties": { "emoji": s("string") } },
            "Reaction": { "type": "object", "properties": { "emoji": s("string"), "count": s("integer"), "user_ids": {"type": "array", "items": uuid} } },
            "MessagePublic": message,
            "FileUpload": { "type": "string", "format": "binary" },
            "FilePublic": { "type": "object", "properties": { "key": {"type": "string", "description": "SHA-256 of the stored bytes, hex"}, "content_type": s("string"), "size": s("integer"), "width": {"type": "integer", "description": "images only"}, "height": {"type": "integer", "description": "images only"}, "thumbnail": {"type": "string", "description": "the thumbnail's type, for an image larger than 320 x 240"}, "name": s("string"), "url": s("string"), "thumbnail_url": {"type": "string", "description": "where the thumbnail is, when there is one"} } },
            "EditMessageRequest": { "type": "object", "required": ["new_content"], "properties": { "new_content": s("string") } },
            "NotificationPublic": { "type": "object", "properties": { "id": uuid, "type": s("string"), "payload": {"type": "object", "additionalProperties": s("string")}, "read": s("boolean"), "source_id": {"type": "string", "format": "uuid", "nullable": true}, "created_at": dt } },
            "RoomStats": { "type": "object", "properties": { "room_id": uuid, "total_messages": s("integer"), "users_amount": s("integer"), "last_updated": {"type": "string", "format": "date-time", "nullable": true} } },
        }
    })
}

/// The OpenAPI document.
pub fn spec() -> Value {
    let mut paths = Map::new();
    for (method, path, tag, summary, authed, params, body, response) in operations() {
        let mut op = Map::new();
        op.insert("tags".into(), json!([tag]));
        op.insert("summary".into(), json!(summary));
        op.insert(
            "operationId".into(),
            json!(path
                .trim_start_matches("/api/")
                .replace(['/', '-', '{', '}'], "_")),
        );
        let params: Vec<Value> = params
            .iter()
            .map(|(name, loc, kind, required)| json!({"name": name, "in": loc, "required": required, "schema": param_schema(kind)}))
            .collect();
        if !params.is_empty() {
            op.insert("parameters".into(), Value::Array(params));
        }
        if let Some(b) = body {
            // A file is sent as its bytes; every other body is JSON.
            let media = if b == "FileUpload" {
                "application/octet-stream"
            } else {
                "application/json"
            };
            op.insert(
                "requestBody".into(),
                json!({"required": true, "content": {media: {"schema": schema_ref(b)}}}),
            );
        }
        let mut responses = Map::new();
        let ok = match response {
            Some(schema) if schema["format"] == "binary" => {
                json!({"description": "OK", "content": {"*/*": {"schema": schema}}})
            }
            Some(schema) => {
                json!({"description": "OK", "content": {"application/json": {"schema": schema}}})
            }
            None => json!({"description": "OK (empty body)"}),
        };
        responses.insert("200".into(), ok);
        let err = json!({"description": "Error", "content": {"application/json": {"schema": schema_ref("Error")}}});
        for code in ["400", "401", "403", "404", "422", "429"] {
            responses.insert(code.into(), err.clone());
        }
        if body == Some("FileUpload") {
            for code in ["413", "415"] {
                responses.insert(code.into(), err.clone());
            }
        }
        op.insert("responses".into(), Value::Object(responses));
        if authed {
            op.insert("security".into(), json!([{"session": []}]));
        }
        paths
            .entry(path.to_string())
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .map(|m| m.insert(method.into(), Value::Object(op)));
    }
    json!({
        "openapi": "3.0.3",
        "info": { "title": "LiveChat API", "version": env!("CARGO_PKG_VERSION"),
                  "description": "REST API of LiveChat. Errors are {\"detail\": message}; 422 errors carry a list of {loc, msg, type}." },
        "paths": paths,
        "components": components(),
    })
}

pub async fn document() -> Response {
    Json(spec()).into_response()
}

/// `/api/internal/docs` → the Swagger UI (bundled at build time from crates.io, no download
/// at run time) pointed at the document above.
pub async fn docs_root() -> Redirect {
    Redirect::permanent("/api/internal/docs/")
}

pub async fn docs_file(tail: Option<Path<String>>) -> Response {
    static CONFIG: OnceLock<Arc<utoipa_swagger_ui::Config<'static>>> = OnceLock::new();
    let config = CONFIG
        .get_or_init(|| {
            Arc::new(utoipa_swagger_ui::Config::from(
                "/api/internal/openapi.json",
            ))
        })
        .clone();
    let tail = tail.map(|Path(t)| t).unwrap_or_default();
    match utoipa_swagger_ui::serve(&tail, config) {
        Ok(Some(file)) => (
            [(header::CONTENT_TYPE, file.content_type)],
            file.bytes.into_owned(),
        )
            .into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, Json(json!({"detail": "Not Found"}))).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "Serving Swagger UI failed.");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"detail": "Internal server error"})),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_operation_is_in_the_document_once() {
        let doc = super::spec();
        let n: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|p| p.as_object().unwrap().len())
            .sum();
        assert_eq!(n, super::operations().len());
        assert!(
            doc["paths"]["/api/messages/create-message/{room_id}"]["post"]["requestBody"]
                .is_object()
        );
    }
}
