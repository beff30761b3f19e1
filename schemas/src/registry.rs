//! The embedded schema registry: every schema in `schemas/avro/` with a stable id, and the
//! writer schemas learned from the log that those can read.
//!
//! Ids are fixed here (not assigned at start-up) so records written by one build stay readable
//! by every later one. A Confluent/Redpanda registry assigns its own ids; consumers therefore
//! always resolve the schema by the id in the record, never by assumption.

use std::sync::{Arc, OnceLock, RwLock};

use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::Schema;

/// The current version of each topic's schema: the id every new record is written with.
pub const ROOM_EVENTS_SCHEMA_ID: u32 = 10;
pub const USER_EVENTS_SCHEMA_ID: u32 = 2;
pub const NOTIFICATIONS_SCHEMA_ID: u32 = 3;
pub const ROOMS_SCHEMA_ID: u32 = 7;
pub const USERS_SCHEMA_ID: u32 = 8;
pub const MEMBERSHIPS_SCHEMA_ID: u32 = 9;
pub const READ_MARKERS_SCHEMA_ID: u32 = 11;
/// Version 1 of the room events' schema (without `reply_to_seq` and `reaction`): no longer
/// written, still read (every record of a log written before version 2 carries it).
pub const ROOM_EVENTS_V1_SCHEMA_ID: u32 = 1;
/// Version 2 of the room events' schema (without `thread_root_seq`): still read.
pub const ROOM_EVENTS_V2_SCHEMA_ID: u32 = 4;
/// Version 3 of the room events' schema (without `attachments`): still read.
pub const ROOM_EVENTS_V3_SCHEMA_ID: u32 = 5;
/// Version 4 of the room events' schema (without `sealed`: text in clear): still read.
pub const ROOM_EVENTS_V4_SCHEMA_ID: u32 = 6;

/// One registered schema.
#[derive(Debug)]
pub struct RegisteredSchema {
    pub id: u32,
    /// TopicNameStrategy subject: `<topic>-value`.
    pub subject: &'static str,
    pub topic: &'static str,
    /// The subject's version number (1, 2, ...): the order the versions were released in.
    pub version: u32,
    /// Whether new records are written with it (the subject's latest version).
    pub current: bool,
    pub text: &'static str,
    /// Parsed by apache-avro: canonical form, registry compatibility.
    pub schema: Schema,
    /// Parsed by serde_avro_fast: encoding and decoding records (straight between the bytes
    /// and the Rust types, no value tree in between).
    pub codec: serde_avro_fast::Schema,
}

fn build() -> Vec<RegisteredSchema> {
    // (id, subject, topic, version, current, text), in the order of the versions: an earlier
    // version keeps its id forever, since the records written with it carry that id.
    let defs: [(u32, &str, &str, u32, bool, &str); 11] = [
        (
            ROOM_EVENTS_V1_SCHEMA_ID,
            "chat.room-events.v1-value",
            crate::ROOM_EVENTS_TOPIC,
            1,
            false,
            include_str!("../avro/history/chat.room-events.v1-value/1.avsc"),
        ),
        (
            ROOM_EVENTS_V2_SCHEMA_ID,
            "chat.room-events.v1-value",
            crate::ROOM_EVENTS_TOPIC,
            2,
            false,
            include_str!("../avro/history/chat.room-events.v1-value/2.avsc"),
        ),
        (
            ROOM_EVENTS_V3_SCHEMA_ID,
            "chat.room-events.v1-value",
            crate::ROOM_EVENTS_TOPIC,
            3,
            false,
            include_str!("../avro/history/chat.room-events.v1-value/3.avsc"),
        ),
        (
            ROOM_EVENTS_V4_SCHEMA_ID,
            "chat.room-events.v1-value",
            crate::ROOM_EVENTS_TOPIC,
            4,
            false,
            include_str!("../avro/history/chat.room-events.v1-value/4.avsc"),
        ),
        (
            ROOM_EVENTS_SCHEMA_ID,
            "chat.room-events.v1-value",
            crate::ROOM_EVENTS_TOPIC,
            5,
            true,
            include_str!("../avro/chat.room-events.v1.avsc"),
        ),
        (
            USER_EVENTS_SCHEMA_ID,
            "chat.user-events.v1-value",
            crate::USER_EVENTS_TOPIC,
            1,
            true,
            include_str!("../avro/chat.user-events.v1.avsc"),
        ),
        (
            NOTIFICATIONS_SCHEMA_ID,
            "chat.notifications.v1-value",
            crate::NOTIFICATIONS_TOPIC,
            1,
            true,
            include_str!("../avro/chat.notifications.v1.avsc"),
        ),
        (
            ROOMS_SCHEMA_ID,
            "chat.rooms.v1-value",
            crate::ROOMS_TOPIC,
            1,
            true,
            include_str!("../avro/chat.rooms.v1.avsc"),
        ),
        (
            USERS_SCHEMA_ID,
            "chat.users.v1-value",
            crate::USERS_TOPIC,
            1,
            true,
            include_str!("../avro/chat.users.v1.avsc"),
        ),
        (
            MEMBERSHIPS_SCHEMA_ID,
            "chat.memberships.v1-value",
            crate::MEMBERSHIPS_TOPIC,
            1,
            true,
            include_str!("../avro/chat.memberships.v1.avsc"),
        ),
        (
            READ_MARKERS_SCHEMA_ID,
            "chat.read-markers.v1-value",
            crate::READ_MARKERS_TOPIC,
            1,
            true,
            include_str!("../avro/chat.read-markers.v1.avsc"),
        ),
    ];
    defs.into_iter()
        .map(
            |(id, subject, topic, version, current, text)| RegisteredSchema {
                id,
                subject,
                topic,
                version,
                current,
                text,
                // The files are compiled in and covered by a unit test, so a parse failure is a build defect.
                schema: Schema::parse_str(text)
                    .unwrap_or_else(|e| panic!("schema {subject} does not parse: {e}")),
                codec: text
                    .parse()
                    .unwrap_or_else(|e| panic!("schema {subject} does not parse: {e}")),
            },
        )
        .collect()
}

/// Every registered schema, earlier versions included, in the order of their versions.
pub fn all() -> &'static [RegisteredSchema] {
    static ALL: OnceLock<Vec<RegisteredSchema>> = OnceLock::new();
    ALL.get_or_init(build)
}

/// The current schema of each topic (the ones records are written with).
pub fn current() -> impl Iterator<Item = &'static RegisteredSchema> {
    all().iter().filter(|s| s.current)
}

/// The schema with this id, if it is registered.
pub fn by_id(id: u32) -> Option<&'static RegisteredSchema> {
    all().iter().find(|s| s.id == id)
}

/// The current schema of the topic whose records a schema (of any version) describes.
pub fn current_of(s: &RegisteredSchema) -> &'static RegisteredSchema {
    current()
        .find(|c| c.subject == s.subject)
        .expect("every subject has a current version")
}

/// Ids given to learned writer schemas: far from the embedded ones and from a registry's.
pub const LEARNED_IDS_FROM: u32 = 0x4000_0000;

/// A writer schema met on the log that is not one of ours but that one of ours can read: an
/// earlier or a later version of a topic's schema (a replay of old records, or a producer
/// already upgraded while this process is not). Its records are decoded with it, straight into
/// the Rust type of the schema that reads it: a field it lacks takes its default (every field
/// added to a schema has one), a field it adds is skipped.
#[derive(Debug)]
pub struct LearnedWriter {
    pub id: u32,
    /// The registered schema whose type its records decode into.
    pub reader: &'static RegisteredSchema,
    pub codec: serde_avro_fast::Schema,
    canonical: String,
}

fn learned() -> &'static RwLock<Vec<Arc<LearnedWriter>>> {
    static LEARNED: OnceLock<RwLock<Vec<Arc<LearnedWriter>>>> = OnceLock::new();
    LEARNED.get_or_init(|| RwLock::new(Vec::new()))
}

/// The id under which records written with the schema `text` decode: a registered schema's own
/// id when it is one of ours (the same Parsing Canonical Form), a learned writer's id when one
/// of ours can read it (the same record name, and compatible by Avro's resolution rules), None
/// otherwise (its records are refused by the codec).
pub fn reader_id_for(text: &str) -> Option<u32> {
    let writer = Schema::parse_str(text).ok()?;
    let form = writer.canonical_form();
    if let Some(s) = all().iter().find(|s| s.schema.canonical_form() == form) {
        return Some(s.id);
    }
    let find = |l: &[Arc<LearnedWriter>]| l.iter().find(|w| w.canonical == form).map(|w| w.id);
    if let Some(id) = find(&learned().read().unwrap_or_else(|p| p.into_inner())) {
        return Some(id);
    }
    let fullname = |s: &Schema| s.name().map(|n| n.fullname(None));
    let reader = current().find(|s| {
        fullname(&s.schema) == fullname(&writer)
            && SchemaCompatibility::can_read(&writer, &s.schema).is_ok()
    })?;
    let codec: serde_avro_fast::Schema = text.parse().ok()?;
    let mut l = learned().write().unwrap_or_else(|p| p.into_inner());
    if let Some(id) = find(&l) {
        return Some(id);
    }
    let id = LEARNED_IDS_FROM + l.len() as u32;
    l.push(Arc::new(LearnedWriter {
        id,
        reader,
        codec,
        canonical: form,
    }));
    Some(id)
}

/// The learned writer schema with this id (its place in the list: ids are handed out in order).
pub fn learned_writer(id: u32) -> Option<Arc<LearnedWriter>> {
    let index = id.checked_sub(LEARNED_IDS_FROM)? as usize;
    learned()
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(index)
        .cloned()
}
