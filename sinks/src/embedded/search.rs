//! `search.db`: the full-text index of messages. An FTS5 table with the trigram tokenizer
//! (substrings of three characters or more, so scripts without spaces between words are
//! searched like any other), beside a table of the indexed messages keyed by (room, seq) whose
//! rowid is the text's. Changes are idempotent and order-insensitive as in the history: an
//! insert is kept once, an edit applies only over an older change, a delete is final.
//!
//! The index holds each text lowercased (Rust's Unicode lowercasing) and is searched with `LIKE`
//! patterns of lowercased words: FTS5 narrows a word of three characters or more to the texts
//! holding its trigrams, and `LIKE` checks each candidate (a shorter word is checked on the
//! candidates of the others, or on every text of the rooms). Because both sides are lowercased,
//! the match is case-insensitive in every script, which `LIKE` alone (ASCII only) is not. The
//! FTS table keeps no positions (`detail=none`: it answers "which texts hold this trigram",
//! all a `LIKE` needs), which makes inserts cheaper and the file smaller (bench/README.md, "The
//! search index's share of a send").

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use livechat_core::error::StoreResult;
use livechat_core::model::{Checksum, HistoryOp};
use livechat_core::ports::{SearchHit, SearchIndex, SearchOrder, SearchQuery};
use rusqlite::{params, Connection, OptionalExtension};
use uuid::Uuid;

use super::db::{checksum_query, uuid_col, Db, Durability};
use super::multi_insert::bind_uuid;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS docs(
  room_id TEXT NOT NULL, seq INTEGER NOT NULL, message_id TEXT NOT NULL,
  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,
  UNIQUE(room_id, seq));
CREATE INDEX IF NOT EXISTS docs_by_message ON docs(message_id);
CREATE VIRTUAL TABLE IF NOT EXISTS docs_lower USING fts5(content, tokenize = 'trigram', detail = none);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
"#;

/// The FTS table of an earlier layout (texts as written, with positions): a file that has it is
/// dropped at open and rebuilt from the log (a new file is a new consumer group, which reads
/// the log from its start).
const EARLIER_LAYOUT: &str = "docs_text";

pub struct SqliteSearch {
    db: Arc<Db>,
}

impl SqliteSearch {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        drop_earlier_layout(path)?;
        Ok(SqliteSearch {
            // A read model: `livechat replay` rebuilds it if a power loss cuts its tail.
            db: Db::open_with(path, SCHEMA, Durability::Normal)?,
        })
    }

    /// A new file to fill from scratch (`livechat replay --into`): no journal, no fsync.
    pub fn create_for_rebuild(path: &Path) -> anyhow::Result<Self> {
        anyhow::ensure!(!path.exists(), "{} already exists", path.display());
        Ok(SqliteSearch {
            db: Db::open_with(path, SCHEMA, Durability::Bulk)?,
        })
    }

    /// This file's own id, made at its first use: the index is fed by a consumer group of its
    /// own (every process keeping one reads every partition), and a new file (lost, deleted)
    /// is a new group that reads the log from its start.
    pub async fn file_id(&self) -> anyhow::Result<Uuid> {
        let fresh = Uuid::new_v4().to_string();
        let id: String = self
            .db
            .write(move |c| {
                c.execute(
                    "INSERT OR IGNORE INTO meta(key, value) VALUES ('file_id', ?1)",
                    params![fresh],
                )?;
                c.query_row("SELECT value FROM meta WHERE key = 'file_id'", [], |r| {
                    r.get(0)
                })
            })
            .await?;
        Ok(Uuid::parse_str(&id)?)
    }
}

/// The rowid of the indexed message, if it is indexed and not deleted.
/// Deletes an index file of an earlier layout (a read model: it is rebuilt from the log).
fn drop_earlier_layout(path: &Path) -> anyhow::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let earlier = {
        let c = Connection::open(path)
            .map_err(|e| anyhow::anyhow!("opening {}: {e}", path.display()))?;
        c.query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = ?1",
            [EARLIER_LAYOUT],
            |r| r.get::<_, i64>(0),
        )
        .map_err(|e| anyhow::anyhow!("reading the layout of {}: {e}", path.display()))?
            > 0
    };
    if earlier {
        tracing::warn!(
            file = %path.display(),
            "The search index has an earlier layout: it is deleted and rebuilt from the log."
        );
        for suffix in ["", "-wal", "-shm"] {
            let file = format!("{}{suffix}", path.display());
            match std::fs::remove_file(&file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    anyhow::bail!("deleting {file}: {e}")
                }
                _ => {}
            }
        }
    }
    Ok(())
}

fn live_row(c: &Connection, room: &str, id: &str) -> rusqlite::Result<Option<i64>> {
    c.prepare_cached(
        "SELECT rowid FROM docs WHERE room_id = ?1 AND message_id = ?2 AND deleted = 0",
    )?
    .query_row(params![room, id], |r| r.get(0))
    .optional()
}

fn apply_in(c: &Connection, ops: &[HistoryOp]) -> rusqlite::Result<()> {
    // Inserts, nearly every op, take their statements once per batch and bind ids from the
    // stack.
    let mut insert_doc = c.prepare_cached(
        "INSERT OR IGNORE INTO docs(room_id, seq, message_id, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let mut insert_text =
        c.prepare_cached("INSERT INTO docs_lower(rowid, content) VALUES (?1, ?2)")?;
    for op in ops {
        match op {
            HistoryOp::Insert(m) if !m.deleted => {
                bind_uuid(&mut insert_doc, 1, Some(m.room_id))?;
                insert_doc.raw_bind_parameter(2, m.seq)?;
                bind_uuid(&mut insert_doc, 3, Some(m.id))?;
                insert_doc.raw_bind_parameter(4, m.created_at.timestamp_millis())?;
                insert_doc.raw_bind_parameter(5, m.updated_at.timestamp_millis())?;
                if insert_doc.raw_execute()? == 1 {
                    insert_text
                        .execute(params![c.last_insert_rowid(), m.content.to_lowercase()])?;
                }
            }
            HistoryOp::Insert(_) => {}
            HistoryOp::Edit {
                room_id,
                message_id,
                content,
                at,
            } => {
                let (room, id) = (room_id.to_string(), message_id.to_string());
                let Some(row) = live_row(c, &room, &id)? else {
                    continue;
                };
                // The newest edit wins, whatever the order edits are applied in.
                let newer = c
                    .prepare_cached(
                        "UPDATE docs SET updated_at = ?2 WHERE rowid = ?1 AND updated_at <= ?2",
                    )?
                    .execute(params![row, at.timestamp_millis()])?;
                if newer == 1 {
                    c.prepare_cached("UPDATE docs_lower SET content = ?2 WHERE rowid = ?1")?
                        .execute(params![row, content.to_lowercase()])?;
                }
            }
            HistoryOp::Delete {
                room_id,
                message_id,
                at,
            } => {
                let (room, id) = (room_id.to_string(), message_id.to_string());
                if let Some(row) = live_row(c, &room, &id)? {
                    c.prepare_cached(
                        "UPDATE docs SET deleted = 1, updated_at = max(updated_at, ?2) WHERE rowid = ?1",
                    )?
                    .execute(params![row, at.timestamp_millis()])?;
                    // A delete removes the text from the index too.
                    c.prepare_cached("DELETE FROM docs_lower WHERE rowid = ?1")?
                        .execute(params![row])?;
                }
            }
            HistoryOp::PurgeRoom { room_id } => {
                let room = room_id.to_string();
                c.prepare_cached(
                    "DELETE FROM docs_lower WHERE rowid IN (SELECT rowid FROM docs WHERE room_id = ?1)",
                )?
                .execute(params![room])?;
                c.prepare_cached("DELETE FROM docs WHERE room_id = ?1")?
                    .execute(params![room])?;
            }
            HistoryOp::React { .. } | HistoryOp::Pin { .. } => {}
        }
    }
    Ok(())
}

/// A lowercased term as a `LIKE` pattern matching it anywhere (`\\` escapes the wildcards).
fn like_pattern(term: &str) -> String {
    let escaped: String = term
        .to_lowercase()
        .chars()
        .flat_map(|c| match c {
            '%' | '_' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    format!("%{escaped}%")
}

fn search_in(c: &Connection, q: &SearchQuery) -> rusqlite::Result<Vec<SearchHit>> {
    let rooms = serde_json::to_string(&q.rooms.iter().map(|r| r.to_string()).collect::<Vec<_>>())
        .map_err(super::db::user_err)?;
    let mut sql = String::from(
        "SELECT d.room_id, d.seq, d.message_id FROM docs_lower JOIN docs d ON d.rowid = docs_lower.rowid
         WHERE d.deleted = 0 AND d.room_id IN (SELECT value FROM json_each(?1))",
    );
    let mut args: Vec<Box<dyn rusqlite::ToSql>> = vec![Box::new(rooms)];
    for t in &q.terms {
        args.push(Box::new(like_pattern(t)));
        sql.push_str(&format!(
            " AND docs_lower.content LIKE ?{} ESCAPE '\\'",
            args.len()
        ));
    }
    sql.push_str(match q.order {
        SearchOrder::Best => " ORDER BY bm25(docs_lower), d.created_at DESC, d.seq DESC",
        SearchOrder::Newest => " ORDER BY d.created_at DESC, d.seq DESC",
    });
    args.push(Box::new(q.limit));
    sql.push_str(&format!(" LIMIT ?{}", args.len()));
    args.push(Box::new(q.offset));
    sql.push_str(&format!(" OFFSET ?{}", args.len()));
    let mut stmt = c.prepare_cached(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), |r| {
        Ok(SearchHit {
            room_id: uuid_col(r, 0)?,
            seq: r.get(1)?,
            message_id: uuid_col(r, 2)?,
        })
    })?;
    rows.collect()
}

#[async_trait]
impl SearchIndex for SqliteSearch {
    async fn apply(&self, ops: &[HistoryOp]) -> StoreResult<()> {
        let ops = ops.to_vec();
        // Its statements refuse nothing (`INSERT OR IGNORE`, updates and deletes of rows that
        // may be missing), so it fails only when the database does: no savepoint, whose
        // sub-journal would copy every page the batch touches.
        self.db.write_unguarded(move |c| apply_in(c, &ops)).await
    }

    async fn search(&self, query: &SearchQuery) -> StoreResult<Vec<SearchHit>> {
        let q = query.clone();
        self.db.read(move |c| search_in(c, &q)).await
    }

    async fn checksum(&self) -> StoreResult<Checksum> {
        self.db
            .read_blocking(|c| {
                checksum_query(
                    c,
                    "SELECT d.room_id, d.seq, d.message_id, d.created_at, d.updated_at, d.deleted, t.content
                     FROM docs d LEFT JOIN docs_lower t ON t.rowid = d.rowid ORDER BY d.room_id, d.seq",
                )
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use livechat_core::model::StoredMessage;

    fn msg(room: Uuid, seq: i64, content: &str) -> StoredMessage {
        StoredMessage {
            id: Uuid::new_v4(),
            room_id: room,
            seq,
            user_id: Uuid::new_v4(),
            username: "u".into(),
            content: content.into(),
            edited: false,
            deleted: false,
            created_at: livechat_core::from_ms(1_000 + seq),
            updated_at: livechat_core::from_ms(1_000 + seq),
            client_msg_id: None,
            reply_to_seq: None,
            reactions: Vec::new(),
            pin: None,
            thread_root_seq: None,
            thread: None,
            attachments: Vec::new(),
        }
    }

    fn query(rooms: &[Uuid], terms: &[&str], order: SearchOrder) -> SearchQuery {
        SearchQuery {
            rooms: rooms.to_vec(),
            terms: terms.iter().map(|t| t.to_string()).collect(),
            order,
            limit: 10,
            offset: 0,
        }
    }

    async fn seqs(s: &SqliteSearch, q: SearchQuery) -> Vec<i64> {
        s.search(&q).await.unwrap().iter().map(|h| h.seq).collect()
    }

    #[tokio::test]
    async fn finds_words_in_any_script_only_in_the_given_rooms_and_follows_changes() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteSearch::open(&dir.path().join("search.db")).unwrap();
        let (room, other) = (Uuid::new_v4(), Uuid::new_v4());
        let ms = [
            msg(room, 1, "Pizza tonight at LiveChat HQ?"),
            msg(room, 2, "東京で会いましょう"),
            msg(room, 3, "pizza pizza PIZZA, and Ünïcode"),
            msg(other, 1, "pizza elsewhere"),
        ];
        let ops: Vec<HistoryOp> = ms.iter().cloned().map(HistoryOp::Insert).collect();
        s.apply(&ops).await.unwrap();
        s.apply(&ops).await.unwrap();
        let newest = SearchOrder::Newest;
        assert_eq!(
            seqs(&s, query(&[room], &["pizza"], newest)).await,
            vec![3, 1]
        );
        assert_eq!(
            seqs(&s, query(&[room, other], &["PIZZA"], newest))
                .await
                .len(),
            3
        );
        assert_eq!(
            seqs(&s, query(&[room], &["chat"], newest)).await,
            vec![1],
            "substrings"
        );
        assert_eq!(
            seqs(&s, query(&[room], &["ünïcode"], newest)).await,
            vec![3]
        );
        assert_eq!(
            seqs(&s, query(&[room], &["東京で会"], newest)).await,
            vec![2]
        );
        assert_eq!(
            seqs(&s, query(&[room], &["会い"], newest)).await,
            vec![2],
            "two characters"
        );
        assert_eq!(
            seqs(&s, query(&[room], &["üN"], SearchOrder::Best)).await,
            vec![3],
            "short words fold case in any script too"
        );
        assert_eq!(
            seqs(&s, query(&[room], &["ÜNÏCODE"], newest)).await,
            vec![3]
        );
        assert_eq!(
            seqs(&s, query(&[room], &["pizza", "HQ"], newest)).await,
            vec![1],
            "every word"
        );
        assert_eq!(
            seqs(&s, query(&[room], &["pizza"], SearchOrder::Best)).await,
            vec![3, 1],
            "the best match first"
        );
        assert!(
            seqs(&s, query(&[room], &["100%"], newest)).await.is_empty(),
            "wildcards are literal"
        );
        let mut paged = query(&[room], &["pizza"], newest);
        (paged.limit, paged.offset) = (1, 1);
        assert_eq!(seqs(&s, paged).await, vec![1]);

        // An edit (a late, older one loses), a delete, a purge.
        let at = |ms: i64| livechat_core::from_ms(10_000 + ms);
        s.apply(&[
            HistoryOp::Edit {
                room_id: room,
                message_id: ms[0].id,
                content: "sushi instead".into(),
                at: at(2),
            },
            HistoryOp::Edit {
                room_id: room,
                message_id: ms[0].id,
                content: "pizza again".into(),
                at: at(1),
            },
            HistoryOp::Delete {
                room_id: room,
                message_id: ms[2].id,
                at: at(3),
            },
        ])
        .await
        .unwrap();
        assert!(seqs(&s, query(&[room], &["pizza"], newest))
            .await
            .is_empty());
        assert_eq!(seqs(&s, query(&[room], &["sushi"], newest)).await, vec![1]);
        let before = s.checksum().await.unwrap();
        s.apply(&ops).await.unwrap();
        assert_eq!(
            s.checksum().await.unwrap(),
            before,
            "a replay changes nothing"
        );
        s.apply(&[HistoryOp::PurgeRoom { room_id: other }])
            .await
            .unwrap();
        assert!(seqs(&s, query(&[other], &["pizza"], newest))
            .await
            .is_empty());
        let id = s.file_id().await.unwrap();
        assert_eq!(s.file_id().await.unwrap(), id, "one id per file");
    }

    #[tokio::test]
    async fn a_file_of_the_earlier_layout_is_rebuilt_under_a_new_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("search.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE VIRTUAL TABLE docs_text USING fts5(content, tokenize = 'trigram');
                 CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 INSERT INTO meta VALUES ('file_id', '6f1c1a52-8d7e-4c55-9d0a-3f1b2c4d5e6f');",
            )
            .unwrap();
        }
        let s = SqliteSearch::open(&path).unwrap();
        assert_ne!(
            s.file_id().await.unwrap().to_string(),
            "6f1c1a52-8d7e-4c55-9d0a-3f1b2c4d5e6f",
            "a new file reads the log from its start"
        );
        let room = Uuid::new_v4();
        s.apply(&[HistoryOp::Insert(msg(room, 1, "Rebuilt"))])
            .await
            .unwrap();
        let found = seqs(&s, query(&[room], &["rebuilt"], SearchOrder::Newest)).await;
        assert_eq!(found, vec![1]);
        drop(s);
        let again = SqliteSearch::open(&path).unwrap();
        let found = seqs(&again, query(&[room], &["rebuilt"], SearchOrder::Newest)).await;
        assert_eq!(found, vec![1], "today's layout is kept");
    }
}
