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
    for registered in livechat_schemas::registry::all() {
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
