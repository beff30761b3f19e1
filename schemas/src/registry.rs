//! The embedded schema registry: every schema in `schemas/avro/` with a stable id.
//!
//! Ids are fixed here (not assigned at start-up) so records written by one build stay readable
//! by every later one. A Confluent/Redpanda registry assigns its own ids; consumers therefore
//! always resolve the schema by the id in the record, never by assumption.

use std::sync::OnceLock;

use apache_avro::Schema;

pub const ROOM_EVENTS_SCHEMA_ID: u32 = 1;
pub const USER_EVENTS_SCHEMA_ID: u32 = 2;
pub const NOTIFICATIONS_SCHEMA_ID: u32 = 3;

/// One registered schema.
#[derive(Debug)]
pub struct RegisteredSchema {
    pub id: u32,
    /// TopicNameStrategy subject: `<topic>-value`.
    pub subject: &'static str,
    pub topic: &'static str,
    pub text: &'static str,
    /// Parsed by apache-avro: canonical form, registry compatibility.
    pub schema: Schema,
    /// Parsed by serde_avro_fast: encoding and decoding records (straight between the bytes
    /// and the Rust types, no value tree in between).
    pub codec: serde_avro_fast::Schema,
}

fn build() -> Vec<RegisteredSchema> {
    let defs: [(u32, &str, &str, &str); 3] = [
        (
            ROOM_EVENTS_SCHEMA_ID,
            "chat.room-events.v1-value",
            crate::ROOM_EVENTS_TOPIC,
            include_str!("../avro/chat.room-events.v1.avsc"),
        ),
        (
            USER_EVENTS_SCHEMA_ID,
            "chat.user-events.v1-value",
            crate::USER_EVENTS_TOPIC,
            include_str!("../avro/chat.user-events.v1.avsc"),
        ),
        (
            NOTIFICATIONS_SCHEMA_ID,
            "chat.notifications.v1-value",
            crate::NOTIFICATIONS_TOPIC,
            include_str!("../avro/chat.notifications.v1.avsc"),
        ),
    ];
    defs.into_iter()
        .map(|(id, subject, topic, text)| RegisteredSchema {
            id,
            subject,
            topic,
            text,
            // The files are compiled in and covered by a unit test, so a parse failure is a build defect.
            schema: Schema::parse_str(text)
                .unwrap_or_else(|e| panic!("schema {subject} does not parse: {e}")),
            codec: text
                .parse()
                .unwrap_or_else(|e| panic!("schema {subject} does not parse: {e}")),
        })
        .collect()
}

/// Every registered schema.
pub fn all() -> &'static [RegisteredSchema] {
    static ALL: OnceLock<Vec<RegisteredSchema>> = OnceLock::new();
    ALL.get_or_init(build)
}

/// The schema with this id, if it is registered.
pub fn by_id(id: u32) -> Option<&'static RegisteredSchema> {
    all().iter().find(|s| s.id == id)
}
