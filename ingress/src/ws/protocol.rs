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

/// A frame and its `ref`, read in one pass (no JSON tree in between).
#[derive(Deserialize)]
struct Framed {
    #[serde(rename = "ref", default)]
    r#ref: Value,
    #[serde(flatten)]
    frame: ClientFrame,
}

/// A client's text frame: the frame and its `ref`, or the error frame that answers it
/// (`bad_json`, `bad_frame`). Pure, so it is fuzzed on its own (`fuzz/`).
pub fn parse(raw: &str) -> Result<(ClientFrame, Value), String> {
    // A well-formed frame is read in one pass. One that is refused is read again as a JSON
    // tree, which tells JSON from frame errors and finds the `ref` to answer with.
    if let Ok(Framed { r#ref, frame }) = serde_json::from_str(raw) {
        return Ok((frame, r#ref));
    }
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

/// `{"type":"ack", ...}`: the answer to a send, written straight from the message (no JSON
/// tree per send). Its keys are written by name, as a control frame's are in a build where
/// `serde_json` keeps maps sorted (the default; the MongoDB adapter's `bson` makes them keep
/// insertion order): the JSON object is the same either way.
pub fn ack(
    room: RoomId,
    m: &MessagePublic,
    duplicate: bool,
    r#ref: &Value,
) -> serde_json::Result<String> {
    #[derive(Serialize)]
    struct Ack<'a> {
        attachments: &'a [livechat_core::model::AttachmentPublic],
        client_msg_id: &'a Option<String>,
        created_at: &'a chrono::DateTime<chrono::Utc>,
        duplicate: bool,
        message_id: livechat_core::model::MessageId,
        #[serde(skip_serializing_if = "Value::is_null")]
        r#ref: &'a Value,
        room_id: RoomId,
        seq: i64,
        r#type: &'static str,
    }
    serde_json::to_string(&Ack {
        attachments: &m.attachments,
        client_msg_id: &m.client_msg_id,
        created_at: &m.created_at,
        duplicate,
        message_id: m.id,
        r#ref,
        room_id: room,
        seq: m.seq,
        r#type: "ack",
    })
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use uuid::Uuid;

    fn message(client_msg_id: Option<&str>) -> MessagePublic {
        let at = Utc.timestamp_opt(1_764_400_000, 123_456_000).unwrap();
        MessagePublic {
            id: Uuid::now_v7(),
            room_id: Uuid::new_v4(),
            user_id: Uuid::new_v4(),
            username: "alice".into(),
            content: "hi \"there\"".into(),
            edited: false,
            created_at: at,
            updated_at: at,
            seq: 42,
            deleted: false,
            client_msg_id: client_msg_id.map(str::to_string),
            reply_to_seq: None,
            reactions: Vec::new(),
            pinned_by: None,
            pinned_at: None,
            thread_root_seq: None,
            thread: None,
            attachments: Vec::new(),
        }
    }

    /// The one-pass read takes what the tree read takes, with the same fields and `ref`; what it
    /// refuses is answered as before.
    #[test]
    fn frames_read_in_one_pass_are_those_of_the_tree() {
        let room = Uuid::new_v4();
        for raw in [
            format!(
                r#"{{"type":"send","room_id":"{room}","content":"hi \"x\"","client_msg_id":"c1","ref":5}}"#
            ),
            format!(
                r#"{{"ref":{{"a":[1]}},"type":"subscribe","room_id":"{room}","since_seq":3,"extra":true}}"#
            ),
            r#"{"type":"ping"}"#.to_string(),
            r#"{"type":"PONG","ref":null}"#.to_string(),
            format!(
                r#"{{"type":"history","room_id":"{room}","before_seq":9,"limit":50,"ref":"h"}}"#
            ),
            format!(r#"{{"type":"react","message_id":"{room}","emoji":"👍"}}"#),
            // A repeated key: the tree keeps the last one, and so does the frame.
            format!(r#"{{"type":"unsubscribe","room_id":"x","room_id":"{room}","ref":1,"ref":2}}"#),
            r#"{"type":"ping","type":"ping"}"#.to_string(),
        ] {
            let (frame, r) = parse(&raw).unwrap();
            let tree: Value = serde_json::from_str(&raw).unwrap();
            let expected: ClientFrame = serde_json::from_value(tree.clone()).unwrap();
            assert_eq!(format!("{frame:?}"), format!("{expected:?}"), "{raw}");
            assert_eq!(r, tree.get("ref").cloned().unwrap_or(Value::Null), "{raw}");
        }
        for (raw, code, r) in [
            ("{", "bad_json", Value::Null),
            (r#"{"type":"nope","ref":4}"#, "bad_frame", json!(4)),
            (
                r#"{"type":"send","content":"x","ref":"s"}"#,
                "bad_frame",
                json!("s"),
            ),
            (
                r#"{"type":"subscribe","room_id":"r","since_seq":1.5,"ref":1}"#,
                "bad_frame",
                json!(1),
            ),
        ] {
            let err: Value = serde_json::from_str(&parse(raw).unwrap_err()).unwrap();
            assert_eq!(err["code"], code, "{raw}: {err}");
            assert_eq!(err["ref"], r, "{raw}: {err}");
        }
    }

    /// The ack is the JSON object of the control frame it replaced: the same keys and values,
    /// the time spelled the same; and its type reads `"type":"ack"`, as clients that match on
    /// text (the bench's load generator) look for it.
    #[test]
    fn an_ack_is_written_as_the_control_frame_was() {
        for (cid, r, duplicate) in [
            (Some("c-1"), json!("r1"), false),
            (None, Value::Null, true),
            (Some("c\"2"), json!(7), false),
        ] {
            let m = message(cid);
            let room = m.room_id;
            let as_control = control(
                "ack",
                json!({
                    "room_id": room, "client_msg_id": m.client_msg_id, "message_id": m.id,
                    "seq": m.seq, "created_at": m.created_at, "duplicate": duplicate,
                    "attachments": m.attachments,
                }),
                &r,
            );
            let written = ack(room, &m, duplicate, &r).unwrap();
            assert!(written.contains(r#""type":"ack""#), "{written}");
            let written: Value = serde_json::from_str(&written).unwrap();
            let as_control: Value = serde_json::from_str(&as_control).unwrap();
            assert_eq!(written, as_control);
        }
    }
}
