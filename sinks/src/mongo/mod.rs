//! The directory, sessions and outbox on a MongoDB-wire server (MongoDB, or FerretDB in tests),
//! with single-document atomic operations only: no multi-document transactions, no replica set.
//!
//! How a state change and its outbox records stay atomic without transactions: the records
//! ride in the very document the change writes, in an `_outbox` array with a `_pending` count
//! (one `$push`/`$inc` in the same update). The relay collects pending entries from every
//! collection, appends them to the log, then `$pullAll`s exactly those entries. So each
//! collection's shape follows from which changes must be atomic together:
//! - `rooms`: a room owns its memberships (`member_ids` + `members`) and its pending join
//!   requests (`request_ids`, `request_users`, `requests`), so joining, leaving, accepting a
//!   request and the participant count are one-document updates;
//! - `messages`: one document per sent message, the send's atomic step. A unique index on
//!   `(room_id, seq)` makes seq assignment optimistic and gapless: a writer tries the room's next
//!   seq and, when another process took it, reads the new maximum and tries again; a failed
//!   insert consumes nothing. A unique `dedup` key (room, user, client_msg_id) makes retried
//!   sends idempotent across processes.
//! - deletions that carry outbox records (a room, a session) leave a tombstone (`_gone`) holding
//!   the records; the relay deletes it once they are relayed.
//!
//! Read markers (`read_markers`) carry no records and are plain `$max` upserts.

mod convert;
mod directory;
mod outbox;
mod sessions;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use livechat_core::error::{StoreError, StoreResult};
use livechat_core::model::OutboxRecord;
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{doc, Binary, Bson, Document};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{Acknowledgment, ClientOptions, IndexOptions, WriteConcern};
use mongodb::{Collection, Database, IndexModel};
use tokio::sync::watch;
use uuid::Uuid;

pub use crate::config::MongoConfig;

/// Collections whose documents carry outbox entries.
const OUTBOX_SOURCES: [&str; 6] = [
    "outbox",
    "users",
    "rooms",
    "messages",
    "notifications",
    "sessions",
];

/// How often the relay looks for records written by other processes (this process's own
/// writes wake it at once).
const POLL: Duration = Duration::from_millis(200);

pub struct MongoDirectory {
    db: Database,
    pending: watch::Sender<u64>,
    /// Relay positions handed out by `pending`, mapped back to where each entry lives.
    handed_out: std::sync::Mutex<outbox::HandedOut>,
}

impl MongoDirectory {
    /// Connects, and creates the collections' indexes (idempotent) so a fresh database works.
    pub async fn connect(cfg: &MongoConfig) -> anyhow::Result<Arc<Self>> {
        let mut opts = ClientOptions::parse(&cfg.uri)
            .await
            .map_err(|e| anyhow::anyhow!("parsing the MongoDB URI: {e}"))?;
        opts.app_name = Some("livechat".into());
        opts.server_selection_timeout = opts
            .server_selection_timeout
            .or(Some(Duration::from_secs(10)));
        // An acknowledged change is journaled: a crash right after the ack keeps it.
        opts.write_concern = Some(
            WriteConcern::builder()
                .w(Acknowledgment::Majority)
                .journal(true)
                .build(),
        );
        let client = mongodb::Client::with_options(opts)?;
        let db = client.database(&cfg.database);
        db.run_command(doc! { "ping": 1 })
            .await
            .map_err(|e| anyhow::anyhow!("MongoDB at {} does not answer: {e}", cfg.uri))?;
        create_indexes(&db).await?;
        let dir = Arc::new(MongoDirectory {
            db,
            pending: watch::channel(0).0,
            handed_out: Default::default(),
        });
        // Other processes write to the same outbox: wake the relay periodically for them.
        let weak = Arc::downgrade(&dir);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(POLL);
            loop {
                tick.tick().await;
                match weak.upgrade() {
                    Some(d) => d.signal(),
                    None => break,
                }
            }
        });
        Ok(dir)
    }

    pub fn database_name(&self) -> &str {
        self.db.name()
    }

    fn coll(&self, name: &str) -> Collection<Document> {
        self.db.collection(name)
    }

    fn signal(&self) {
        self.pending.send_modify(|v| *v = v.wrapping_add(1));
    }
}

async fn create_indexes(db: &Database) -> anyhow::Result<()> {
    let unique = || IndexOptions::builder().unique(true).build();
    let plan: Vec<(&str, Document, bool)> = vec![
        ("users", doc! { "username": 1 }, true),
        ("rooms", doc! { "name": 1 }, true),
        ("rooms", doc! { "member_ids": 1 }, false),
        ("rooms", doc! { "request_ids": 1 }, false),
        ("rooms", doc! { "request_users": 1 }, false),
        ("rooms", doc! { "participants_count": -1 }, false),
        ("messages", doc! { "room_id": 1, "seq": 1 }, true),
        ("messages", doc! { "dedup": 1 }, true),
        (
            "notifications",
            doc! { "user_id": 1, "created_at": -1 },
            false,
        ),
        ("sessions", doc! { "user_id": 1 }, false),
    ];
    for (coll, keys, is_unique) in plan {
        let model = IndexModel::builder().keys(keys.clone());
        let model = if is_unique {
            model.options(unique()).build()
        } else {
            model.build()
        };
        db.collection::<Document>(coll)
            .create_index(model)
            .await
            .map_err(|e| anyhow::anyhow!("creating index {keys} on {coll}: {e}"))?;
    }
    for coll in OUTBOX_SOURCES {
        db.collection::<Document>(coll)
            .create_index(IndexModel::builder().keys(doc! { "_pending": 1 }).build())
            .await
            .map_err(|e| anyhow::anyhow!("creating the outbox index on {coll}: {e}"))?;
    }
    Ok(())
}

/// A strictly increasing stamp (microseconds since the epoch, bumped when the clock repeats)
/// that orders outbox entries written by this process; across processes, clock order.
fn next_ord() -> i64 {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = livechat_core::now().timestamp_micros();
    let prev = LAST
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
            Some(now.max(last + 1))
        })
        .unwrap_or(now);
    now.max(prev + 1)
}

/// The outbox entries of `records`, as stored in a document's `_outbox` array.
fn entries(records: &[OutboxRecord]) -> Vec<Bson> {
    records
        .iter()
        .map(|r| {
            let headers: Vec<Bson> = r
                .headers
                .iter()
                .map(|(k, v)| Bson::Array(vec![k.clone().into(), v.clone().into()]))
                .collect();
            Bson::Document(doc! {
                "ord": next_ord(),
                "event_id": r.event_id.to_string(),
                "topic": &r.topic,
                "key": &r.key,
                "payload": Binary { subtype: BinarySubtype::Generic, bytes: r.payload.clone() },
                "created_at_ms": r.created_at_ms,
                "headers": headers,
            })
        })
        .collect()
}

/// Adds `records` to an update: `$push` to `_outbox` and `$inc` of `_pending`, beside the
/// update's own operators (so state and records change in one atomic update).
fn with_outbox(mut update: Document, records: &[OutboxRecord]) -> Document {
    if records.is_empty() {
        return update;
    }
    let n = records.len() as i64;
    update.insert("$push", doc! { "_outbox": { "$each": entries(records) } });
    match update.get_document_mut("$inc") {
        Ok(inc) => {
            inc.insert("_pending", n);
        }
        Err(_) => {
            update.insert("$inc", doc! { "_pending": n });
        }
    }
    update
}

/// Fields a newly inserted document carries for its outbox records.
fn insert_outbox(mut d: Document, records: &[OutboxRecord]) -> Document {
    d.insert("_outbox", entries(records));
    d.insert("_pending", records.len() as i64);
    d
}

/// Filter term: the document is not a tombstone.
fn live() -> Document {
    doc! { "_gone": { "$ne": true } }
}

fn id(u: Uuid) -> String {
    u.to_string()
}

fn parse_id(s: &str) -> StoreResult<Uuid> {
    Uuid::parse_str(s)
        .map_err(|e| StoreError::Other(anyhow::anyhow!("bad id {s:?} in MongoDB: {e}")))
}

/// Maps a driver error: connection and server-selection failures are retryable.
fn db_err(e: mongodb::error::Error) -> StoreError {
    match e.kind.as_ref() {
        ErrorKind::Io(_)
        | ErrorKind::ServerSelection { .. }
        | ErrorKind::ConnectionPoolCleared { .. } => {
            StoreError::Unavailable(anyhow::anyhow!("MongoDB: {e}"))
        }
        _ => StoreError::Other(anyhow::anyhow!("MongoDB: {e}")),
    }
}

/// Whether the error is a unique-index violation (E11000).
fn is_duplicate(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == 11000,
        ErrorKind::Command(c) => c.code == 11000,
        ErrorKind::InsertMany(im) => im
            .write_errors
            .as_ref()
            .is_some_and(|ws| ws.iter().any(|w| w.code == 11000)),
        _ => false,
    }
}

/// Inserts a document; a unique-index violation is `Conflict(what)`.
async fn insert_unique(coll: &Collection<Document>, d: Document, what: &str) -> StoreResult<()> {
    match coll.insert_one(d).await {
        Ok(_) => Ok(()),
        Err(e) if is_duplicate(&e) => Err(StoreError::Conflict(what.to_string())),
        Err(e) => Err(db_err(e)),
    }
}
