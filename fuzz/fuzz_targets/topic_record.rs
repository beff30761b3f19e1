//! A record's bytes on a topic (anyone with write access to a topic can put bytes there):
//! decoding never panics; a room event that decodes encodes and decodes again to itself; the
//! live frame built from it is the original's envelope — a JSON object with `event_type`, a
//! `payload` of strings only, and a `timestamp`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use livechat_schemas::{codec, TopicEvent};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(TopicEvent::Room(ev)) = codec::decode(data) else {
        return;
    };
    let bytes = codec::encode_room_event(&ev).expect("a decoded event encodes");
    match codec::decode(&bytes) {
        Ok(TopicEvent::Room(again)) => assert_eq!(again, ev),
        other => panic!("re-decoded as {other:?}"),
    }
    if let Some(frame) = livechat_core::frames::from_room_event(&ev) {
        let v: Value = serde_json::from_str(&frame.text).expect("a live frame is JSON");
        assert!(v["event_type"].is_string(), "{v}");
        assert!(v["timestamp"].is_string(), "{v}");
        let payload = v["payload"].as_object().expect("a payload object");
        assert!(
            payload.values().all(Value::is_string),
            "the original's payload values are strings: {v}"
        );
    }
});
