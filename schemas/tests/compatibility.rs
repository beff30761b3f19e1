//! Schema evolution: every topic's current schema must read data written with every earlier
//! version (BACKWARD_TRANSITIVE), so a processor on the newest schema can replay from offset 0.
//! Released versions live in `avro/history/<subject>/<n>.avsc`; add the old file there before
//! changing a schema.

use std::path::{Path, PathBuf};

use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::Schema;

fn history(subject: &str) -> Vec<(PathBuf, Schema)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("avro/history")
        .join(subject);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "avsc"))
        .collect();
    files.sort_by_key(|p| {
        p.file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<u32>().ok())
            .unwrap_or(u32::MAX)
    });
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let schema =
                Schema::parse_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, schema)
        })
        .collect()
}

#[test]
fn current_schemas_read_every_released_version() {
    for registered in livechat_schemas::registry::current() {
        let versions = history(registered.subject);
        assert!(
            !versions.is_empty(),
            "{}: no released version in avro/history",
            registered.subject
        );
        for (path, old) in &versions {
            SchemaCompatibility::can_read(old, &registered.schema).unwrap_or_else(|e| {
                panic!(
                    "{}: the current schema cannot read data written with {}: {e}",
                    registered.subject,
                    path.display()
                )
            });
        }
        // The newest released version is the current one or an ancestor it can read: a schema
        // change without a new history file is caught here.
        let (last_path, last) = versions.last().unwrap();
        let same = last.canonical_form() == registered.schema.canonical_form();
        assert!(
            same || SchemaCompatibility::can_read(last, &registered.schema).is_ok(),
            "{}: {} is neither the current schema nor readable by it",
            registered.subject,
            last_path.display()
        );
    }
}

#[test]
fn the_check_rejects_an_incompatible_change() {
    let v1 = livechat_schemas::registry::by_id(livechat_schemas::registry::USER_EVENTS_SCHEMA_ID)
        .unwrap()
        .schema
        .clone();
    // A new required field without a default cannot read old records.
    let text = livechat_schemas::registry::by_id(livechat_schemas::registry::USER_EVENTS_SCHEMA_ID)
        .unwrap()
        .text
        .replace(
            r#"{"name": "event_id", "type": "string"},"#,
            r#"{"name": "event_id", "type": "string"}, {"name": "tenant", "type": "string"},"#,
        );
    let breaking = Schema::parse_str(&text).unwrap();
    assert!(SchemaCompatibility::can_read(&v1, &breaking).is_err());
    // An optional field with a default can.
    let text = livechat_schemas::registry::by_id(livechat_schemas::registry::USER_EVENTS_SCHEMA_ID)
        .unwrap()
        .text
        .replace(r#"{"name": "event_id", "type": "string"},"#, r#"{"name": "event_id", "type": "string"}, {"name": "tenant", "type": ["null", "string"], "default": null},"#);
    let compatible = Schema::parse_str(&text).unwrap();
    SchemaCompatibility::can_read(&v1, &compatible).unwrap();
}

/// The room events schema with `edit` applied to its list of fields.
fn room_schema_with(edit: impl FnOnce(&mut Vec<serde_json::Value>)) -> String {
    let current =
        livechat_schemas::registry::by_id(livechat_schemas::registry::ROOM_EVENTS_SCHEMA_ID)
            .unwrap()
            .text;
    let mut schema: serde_json::Value = serde_json::from_str(current).unwrap();
    edit(schema["fields"].as_array_mut().unwrap());
    schema.to_string()
}

fn message_sent() -> livechat_schemas::RoomEvent {
    livechat_schemas::RoomEvent {
        event_id: "e-1".into(),
        event_type: "MESSAGE_SENT".into(),
        occurred_at: 1_764_000_000_000,
        room_id: "r-1".into(),
        actor_id: Some("u-1".into()),
        seq: Some(7),
        content: Some("héllo".into()),
        ..Default::default()
    }
}

/// The body of `ev` (without the wire header) as this build writes it.
fn body(ev: &livechat_schemas::RoomEvent) -> Vec<u8> {
    livechat_schemas::codec::encode_room_event(ev).unwrap()[5..].to_vec()
}

fn framed(id: u32, body: &[u8]) -> Vec<u8> {
    [&[0u8][..], &id.to_be_bytes(), body].concat()
}

/// A processor of this build reading records of a later LiveChat (a rolling upgrade: the
/// producers already run the next version, which added a field): the record is read, the field
/// it does not know skipped.
#[test]
fn records_of_a_later_version_are_read_by_this_one() {
    let later = room_schema_with(|f| {
        f.push(
            serde_json::json!({"name": "edited_by_seq", "type": ["null", "long"], "default": null}),
        )
    });
    let id =
        livechat_schemas::registry::reader_id_for(&later).expect("a later version is readable");
    assert!(
        id >= livechat_schemas::registry::LEARNED_IDS_FROM,
        "learned, not one of ours"
    );
    assert_eq!(
        livechat_schemas::registry::reader_id_for(&later),
        Some(id),
        "learned once"
    );
    let ev = message_sent();
    // Avro writes a record's fields in order: the later record is this one and then the new
    // field, here the union's second branch (zig-zag 1 = 0x02) and the long 5 (0x0a).
    let record = framed(id, &[body(&ev), vec![0x02, 0x0a]].concat());
    match livechat_schemas::codec::decode(&record).unwrap() {
        livechat_schemas::TopicEvent::Room(read) => assert_eq!(read, ev),
        other => panic!("decoded as {other:?}"),
    }
}

/// A processor of this build reading records an earlier LiveChat wrote (a replay from offset
/// 0): a field added since is missing from them, and takes its default.
#[test]
fn records_of_an_earlier_version_are_read_with_the_defaults() {
    let earlier = room_schema_with(|f| {
        let last = f.pop().unwrap();
        assert_eq!(last["name"], "sealed");
    });
    let id = livechat_schemas::registry::reader_id_for(&earlier)
        .expect("an earlier version is readable");
    let ev = message_sent();
    let mut old = body(&ev);
    // Without its last field: a null union is one byte (the branch index 0).
    assert_eq!(old.pop(), Some(0));
    match livechat_schemas::codec::decode(&framed(id, &old)).unwrap() {
        livechat_schemas::TopicEvent::Room(read) => {
            assert_eq!(read, ev);
            assert!(read.sealed.is_none());
        }
        other => panic!("decoded as {other:?}"),
    }
    // A record with a field left over after it is refused, never half-read.
    assert!(livechat_schemas::codec::decode(&framed(id, &body(&ev))).is_err());
}

/// Records written with versions 1 to 4 of the room events' schema (every log from before
/// version 5) carry their ids, 1, 4, 5 and 6, and are read into today's type with the added
/// fields at their defaults.
#[test]
fn records_written_with_earlier_room_events_versions_are_read() {
    use livechat_schemas::registry::{
        by_id, ROOM_EVENTS_SCHEMA_ID, ROOM_EVENTS_V1_SCHEMA_ID, ROOM_EVENTS_V2_SCHEMA_ID,
        ROOM_EVENTS_V3_SCHEMA_ID, ROOM_EVENTS_V4_SCHEMA_ID,
    };
    let v1 = by_id(ROOM_EVENTS_V1_SCHEMA_ID).unwrap();
    assert_eq!((v1.version, v1.current), (1, false));
    assert_eq!(v1.subject, by_id(ROOM_EVENTS_SCHEMA_ID).unwrap().subject);
    let ev = livechat_schemas::RoomEvent {
        mentioned_user_ids: vec!["u-2".into()],
        ..message_sent()
    };
    let mut old = body(&ev);
    // Versions 2 to 5 appended six fields with defaults, all null or empty here: one byte
    // each.
    assert_eq!(old.split_off(old.len() - 6), vec![0, 0, 0, 0, 0, 0]);
    match livechat_schemas::codec::decode(&framed(ROOM_EVENTS_V1_SCHEMA_ID, &old)).unwrap() {
        livechat_schemas::TopicEvent::Room(read) => assert_eq!(read, ev),
        other => panic!("decoded as {other:?}"),
    }
    // Version 2's records (id 4) lack version 3's `thread_root_seq` and `answered_user_ids`,
    // version 4's `attachments` and version 5's `sealed`.
    let ev = livechat_schemas::RoomEvent {
        reply_to_seq: Some(3),
        ..ev
    };
    let mut old = body(&ev);
    assert_eq!(old.split_off(old.len() - 4), vec![0, 0, 0, 0]);
    let v2 = by_id(ROOM_EVENTS_V2_SCHEMA_ID).unwrap();
    assert_eq!((v2.version, v2.current), (2, false));
    match livechat_schemas::codec::decode(&framed(ROOM_EVENTS_V2_SCHEMA_ID, &old)).unwrap() {
        livechat_schemas::TopicEvent::Room(read) => assert_eq!(read, ev),
        other => panic!("decoded as {other:?}"),
    }
    // Version 3's records (id 5) lack `attachments` and `sealed`.
    let ev = livechat_schemas::RoomEvent {
        thread_root_seq: Some(2),
        ..ev
    };
    let mut old = body(&ev);
    assert_eq!(old.split_off(old.len() - 2), vec![0, 0]);
    let v3 = by_id(ROOM_EVENTS_V3_SCHEMA_ID).unwrap();
    assert_eq!((v3.version, v3.current), (3, false));
    match livechat_schemas::codec::decode(&framed(ROOM_EVENTS_V3_SCHEMA_ID, &old)).unwrap() {
        livechat_schemas::TopicEvent::Room(read) => assert_eq!(read, ev),
        other => panic!("decoded as {other:?}"),
    }
    // Version 4's records (id 6) lack only `sealed`: their text is in clear.
    let mut old = body(&ev);
    assert_eq!(old.split_off(old.len() - 1), vec![0]);
    let v4 = by_id(ROOM_EVENTS_V4_SCHEMA_ID).unwrap();
    assert_eq!((v4.version, v4.current), (4, false));
    match livechat_schemas::codec::decode(&framed(ROOM_EVENTS_V4_SCHEMA_ID, &old)).unwrap() {
        livechat_schemas::TopicEvent::Room(read) => assert_eq!(read, ev),
        other => panic!("decoded as {other:?}"),
    }
    // A message's files go through the log and come back as they were.
    let ev = livechat_schemas::RoomEvent {
        attachments: vec![livechat_schemas::Attachment {
            key: "ab".repeat(32),
            name: "photo.jpg".into(),
            content_type: "image/jpeg".into(),
            size: 1234,
            width: Some(640),
            height: Some(480),
            thumbnail: Some("image/jpeg".into()),
        }],
        ..ev
    };
    match livechat_schemas::codec::decode(&livechat_schemas::codec::encode_room_event(&ev).unwrap())
        .unwrap()
    {
        livechat_schemas::TopicEvent::Room(read) => assert_eq!(read, ev),
        other => panic!("decoded as {other:?}"),
    }
    // New records carry the current version's id.
    let new = livechat_schemas::codec::encode_room_event(&ev).unwrap();
    assert_eq!(
        livechat_schemas::codec::schema_id(&new).unwrap(),
        ROOM_EVENTS_SCHEMA_ID
    );
}

/// Schemas this build cannot read get no id: their records are refused (and dead-lettered by
/// the processors), never misread.
#[test]
fn schemas_this_build_cannot_read_are_not_learned() {
    // The same record name with a field's type changed.
    let changed = room_schema_with(|f| {
        let seq = f.iter_mut().find(|x| x["name"] == "seq").unwrap();
        seq["type"] = serde_json::json!("string");
    });
    assert_eq!(livechat_schemas::registry::reader_id_for(&changed), None);
    // Another record altogether.
    let other = r#"{"type":"record","name":"Invoice","namespace":"billing","fields":[{"name":"total","type":"long"}]}"#;
    assert_eq!(livechat_schemas::registry::reader_id_for(other), None);
    assert_eq!(
        livechat_schemas::registry::reader_id_for("not a schema"),
        None
    );
    // Our own schema is ours, not learned.
    let current =
        livechat_schemas::registry::by_id(livechat_schemas::registry::ROOM_EVENTS_SCHEMA_ID)
            .unwrap();
    assert_eq!(
        livechat_schemas::registry::reader_id_for(current.text),
        Some(livechat_schemas::registry::ROOM_EVENTS_SCHEMA_ID)
    );
}
