//! Client → server frames (the original's and the native ones) and server control frames.
//!
//! Every client frame is a JSON object with a `type`. A frame may carry `ref`, echoed in the
//! reply or error it causes, so clients can match answers to requests.

use livechat_core::model::{MessagePublic, RoomId};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Debug, Deserialize)]
#[serde(tag = "type")]
pub enum ClientFrame {
    /// The original's heartbeat reply.
    #[serde(rename = "PONG", alias = "pong")]
    Pong,
    #[serde(rename = "ping")]
    Ping,
    /// The original's typing frame (room = the socket's `room_id`).
    #[serde(rename = "USER_TYPING")]
    LegacyTyping {
        username: Option<String>,
        is_typing: bool,
        room_id: Option<String>,
    },
    #[serde(rename = "typing")]
    Typing { room_id: String, is_typing: bool },
    #[serde(rename = "subscribe")]
    Subscribe {
        room_id: String,
        since_seq: Option<i64>,
    },
    #[serde(rename = "unsubscribe")]
    Unsubscribe { room_id: String },
    #[serde(rename = "send")]
    Send(SendFrame),
    /// Adds (or with `added: false` takes back) the caller's reaction to a message.
    #[serde(rename = "react")]
    React {
        message_id: String,
        emoji: String,
        #[serde(default = "yes")]
        added: bool,
    },
    #[serde(rename = "read")]
    Read { room_id: String, seq: i64 },
    /// A page of the room's history by seq, as `GET /api/messages/get-messages/{room_id}`:
    /// after `after_seq` (ascending) or before `before_seq` (descending; neither: the newest).
    #[serde(rename = "history")]
    History {
        room_id: String,
        after_seq: Option<i64>,
        before_seq: Option<i64>,
        limit: Option<u32>,
    },
}

/// A `send` frame's fields.
#[derive(Debug, Deserialize)]
pub struct SendFrame {
    pub room_id: String,
    pub content: String,
    pub client_msg_id: Option<String>,
    /// The seq of the message of the same room this one replies to.
    pub reply_to_seq: Option<i64>,
    /// The seq of the root of the thread (or of a message in it) this one replies in.
    pub thread_root_seq: Option<i64>,
    /// Files shared in the room (uploaded to it) that go with the message.
    #[serde(default)]
    pub attachments: Vec<livechat_core::model::FileChoice>,
    /// W3C Trace Context of the client's send, carried onto the message's topic records.
    pub traceparent: Option<String>,
}

fn yes() -> bool {
    true
}

/// A client's text frame: the frame and its `ref`, or the error frame that answers it
/// (`bad_json`, `bad_frame`). Pure, so it is fuzzed on its own (`fuzz/`).
pub fn parse(raw: &str) -> Result<(ClientFrame, Value), String> {
    let v: Value = serde_json::from_str(raw).map_err(|e| {
        error(
            "bad_json",
            &format!("frame is not valid JSON: {e}"),
            &Value::Null,
        )
    })?;
    let r = v.get("ref").cloned().unwrap_or(Value::Null);
    match serde_json::from_value(v) {
        Ok(frame) => Ok((frame, r)),
        Err(e) => Err(error("bad_frame", &format!("unrecognised frame: {e}"), &r)),
    }
}

/// `{"type":"error", "code", "message", "ref"}`.
pub fn error(code: &str, message: &str, r#ref: &Value) -> String {
    json!({ "type": "error", "code": code, "message": message, "ref": r#ref }).to_string()
}

/// `{"type":"history", "room_id", "messages", "ref"}`, written straight from the page (no
/// intermediate JSON tree for up to a page of messages).
pub fn history(
    room: RoomId,
    messages: &[MessagePublic],
    r#ref: &Value,
) -> serde_json::Result<String> {
    #[derive(Serialize)]
    struct Page<'a> {
        r#type: &'static str,
        room_id: RoomId,
        messages: &'a [MessagePublic],
        #[serde(skip_serializing_if = "Value::is_null")]
        r#ref: &'a Value,
    }
    let page = Page {
        r#type: "history",
        room_id: room,
        messages,
        r#ref,
    };
    // Sized up front: a page is tens of KiB, which growing from serde_json's 128 bytes copies
    // eight times over.
    let size = messages
        .iter()
        .map(|m| MESSAGE_JSON_BYTES + m.content.len() + m.username.len())
        .sum::<usize>();
    let mut out = Vec::with_capacity(64 + size);
    serde_json::to_writer(&mut out, &page)?;
    String::from_utf8(out).map_err(serde::ser::Error::custom)
}

/// About what a message's JSON takes besides its text and author's name (ids, times, keys).
const MESSAGE_JSON_BYTES: usize = 400;

/// A control frame `{"type": kind, ...fields, "ref"}`.
pub fn control(kind: &str, mut fields: Value, r#ref: &Value) -> String {
    if let Value::Object(m) = &mut fields {
        m.insert("type".into(), Value::String(kind.into()));
        if !r#ref.is_null() {
            m.insert("ref".into(), r#ref.clone());
        }
    }
    fields.to_string()
}
