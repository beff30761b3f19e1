//! The directory: users, rooms, memberships (with read markers), join requests and
//! notifications. Each port method is one SQLite transaction that writes the state change
//! together with its records (see `records.rs`: the log itself, or the outbox), so both commit or
//! neither does. The same
//! file holds the sessions (`sessions.rs`) and the message receipts of the send path
//! (`sequencer.rs`).

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use livechat_core::error::StoreResult;
use livechat_core::keyring::Keyring;
use livechat_core::model::*;
use livechat_core::ports::{ContentKey, Directory, MessageEventsFn, NewMessage, Outbox, Placed};
use livechat_core::to_ms;
use livechat_core::validate::username_key;
use rusqlite::{params, Connection, OptionalExtension, Row};
use tokio::sync::watch;
use uuid::Uuid;

use super::db::{checksum_query, ts_col, uuid_col, Db};
use super::file_refs;
use super::log::SqliteLog;
use super::notifications::{self, notif_row, NOTIF_COLS};
use super::outbox::OutboxTable;
use super::records::{Queued, RecordSink};
use super::retries::Retries;
use super::sequencer::{raise_read_marker, raise_seqs, send_tx};

pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS users(
  id TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE, password_hash TEXT NOT NULL,
  last_active INTEGER, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, name_key TEXT);
CREATE TABLE IF NOT EXISTS sessions(
  id TEXT PRIMARY KEY, user_id TEXT NOT NULL, created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL, absolute_expires_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions(user_id);
CREATE TABLE IF NOT EXISTS rooms(
  id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, description TEXT, is_public INTEGER NOT NULL,
  created_by TEXT NOT NULL, participants_count INTEGER NOT NULL, last_seq INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, unlisted INTEGER NOT NULL DEFAULT 0,
  direct INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS rooms_by_participants ON rooms(participants_count DESC);
CREATE TABLE IF NOT EXISTS memberships(
  room_id TEXT NOT NULL, user_id TEXT NOT NULL, role TEXT NOT NULL, joined_at INTEGER NOT NULL,
  last_read_seq INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(room_id, user_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS memberships_by_user ON memberships(user_id);
CREATE TABLE IF NOT EXISTS join_requests(
  id TEXT PRIMARY KEY, room_id TEXT NOT NULL, user_id TEXT NOT NULL, message TEXT,
  created_at INTEGER NOT NULL, UNIQUE(room_id, user_id));
CREATE INDEX IF NOT EXISTS join_requests_by_user ON join_requests(user_id);
CREATE TABLE IF NOT EXISTS notifications(
  id TEXT PRIMARY KEY, user_id TEXT NOT NULL, type TEXT NOT NULL, payload TEXT NOT NULL,
  read INTEGER NOT NULL DEFAULT 0, source_id TEXT, created_at INTEGER NOT NULL,
  deleted INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS notifications_by_user ON notifications(user_id, created_at DESC);
CREATE TABLE IF NOT EXISTS thread_reads(
  user_id TEXT NOT NULL, room_id TEXT NOT NULL, root_seq INTEGER NOT NULL, read_seq INTEGER NOT NULL,
  PRIMARY KEY(user_id, room_id, root_seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS thread_reads_by_room ON thread_reads(room_id);
CREATE TABLE IF NOT EXISTS thread_follows(
  room_id TEXT NOT NULL, root_seq INTEGER NOT NULL, user_id TEXT NOT NULL, follow INTEGER NOT NULL,
  PRIMARY KEY(room_id, root_seq, user_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS content_keys(user_id TEXT PRIMARY KEY, key BLOB NOT NULL) WITHOUT ROWID;
-- Erased accounts, so that a notification quoting one, stored after the erasure, is not shown.
CREATE TABLE IF NOT EXISTS erased_users(user_id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox(
  pos INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL, topic TEXT NOT NULL,
  key TEXT NOT NULL, payload BLOB NOT NULL, created_at INTEGER NOT NULL);
"#;

/// The sends' receipts, when the directory's file has no log to answer retries from (see
/// `retries.rs` for the file that has one).
const RECEIPTS_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS message_receipts(
  room_id TEXT NOT NULL, user_id TEXT NOT NULL, client_msg_id TEXT NOT NULL, message_id TEXT NOT NULL,
  seq INTEGER NOT NULL, content TEXT NOT NULL, created_at INTEGER NOT NULL,
  PRIMARY KEY(room_id, user_id, client_msg_id)) WITHOUT ROWID;
"#;

pub struct SqliteDirectory {
    pub(super) db: Arc<Db>,
    records: RecordSink,
    /// Where a retried `client_msg_id` is looked up when the sends' records go to the log of
    /// this file (else the `message_receipts` table is).
    retries: Option<Arc<Retries>>,
}

impl SqliteDirectory {
    /// The directory in a file of its own: changes queue their records in its outbox, which
    /// the relay moves to the log.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let db = Db::open(path, &[SCHEMA, RECEIPTS_SCHEMA, file_refs::SCHEMA].concat())?;
        prepare(&db)?;
        let outbox = Arc::new(OutboxTable::new(db.clone()));
        Ok(SqliteDirectory {
            db,
            records: RecordSink::Outbox(outbox),
            retries: None,
        })
    }

    /// The directory in the embedded store's file: changes append their records to the log of
    /// that file in their own transaction.
    pub(super) fn on(db: Arc<Db>, log: SqliteLog, keyring: Arc<Keyring>) -> Self {
        SqliteDirectory {
            retries: Some(Arc::new(Retries::new(&db, log.clone(), keyring))),
            db,
            records: RecordSink::Log(log),
        }
    }

    /// The log this directory appends its records to, when it lives in the same file.
    pub fn log(&self) -> Option<SqliteLog> {
        match &self.records {
            RecordSink::Log(log) => Some(log.clone()),
            RecordSink::Outbox(_) => None,
        }
    }

    /// The database file (another handle on it acts as another process).
    pub fn path(&self) -> &Path {
        self.db.path()
    }

    /// Runs a write whose change queues topic records (`q.queue`) in the same transaction; they
    /// are announced (relay woken, or log entries published) once it is committed.
    pub(super) async fn write_recording<R, F>(&self, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection, &mut Queued) -> rusqlite::Result<R> + Send + 'static,
    {
        let (run, after) = self.recorded(f);
        Ok(self.db.write_then(run, after).await?.0)
    }

    /// [`SqliteDirectory::write_recording`] without a savepoint, queued when this returns (see
    /// `Db::queue_unguarded_then`); the future answers once it is committed.
    fn queue_recording_unguarded<R, F>(
        &self,
        f: F,
    ) -> StoreResult<impl std::future::Future<Output = StoreResult<R>>>
    where
        R: Send + 'static,
        F: FnOnce(&Connection, &mut Queued) -> rusqlite::Result<R> + Send + 'static,
    {
        let (run, after) = self.recorded(f);
        let written = self.db.queue_unguarded_then(run, after)?;
        Ok(async move { Ok(written.await?.0) })
    }

    /// `f` as the committer runs it (with the records it queues), and what announces those
    /// records once committed.
    #[allow(clippy::type_complexity)]
    fn recorded<R, F>(
        &self,
        f: F,
    ) -> (
        impl FnOnce(&Connection) -> rusqlite::Result<(R, Queued)> + Send + 'static,
        impl FnOnce(&mut (R, Queued)) + Send + 'static,
    )
    where
        R: Send + 'static,
        F: FnOnce(&Connection, &mut Queued) -> rusqlite::Result<R> + Send + 'static,
    {
        let sink = self.records.clone();
        let run = move |conn: &Connection| {
            let mut q = Queued::new(sink);
            let out = f(conn, &mut q)?;
            Ok((out, q))
        };
        (run, |(_, q): &mut (R, Queued)| q.published())
    }
}

const USER_COLS: &str = "id, username, password_hash, last_active, created_at, updated_at";

/// The account a name designates: the one of exactly that name, else the one whose key it
/// shares (see [`username_key`]: "Alice" signs in and is mentioned as "alice").
fn user_named(c: &Connection, name: &str) -> rusqlite::Result<Option<User>> {
    let exact = c
        .prepare_cached(&format!(
            "SELECT {USER_COLS} FROM users WHERE username = ?1"
        ))?
        .query_row(params![name], user_row)
        .optional()?;
    if exact.is_some() {
        return Ok(exact);
    }
    c.prepare_cached(&format!(
        "SELECT {USER_COLS} FROM users WHERE name_key = ?1"
    ))?
    .query_row(params![username_key(name)], user_row)
    .optional()
}

/// What a file holding the directory needs besides its schema: usernames keyed.
pub(super) fn prepare(db: &Db) -> anyhow::Result<()> {
    db.migrate("keying usernames", key_usernames)
}

/// Gives every account written before usernames had keys its key, oldest first (a later
/// account whose key is taken keeps a key of its own, `key#id`: it still signs in by its exact
/// name), then makes keys unique. Idempotent.
fn key_usernames(conn: &Connection) -> rusqlite::Result<()> {
    let unkeyed: Vec<(String, String)> = conn
        .prepare("SELECT id, username FROM users WHERE name_key IS NULL ORDER BY created_at, id")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (id, name) in &unkeyed {
        let key = username_key(name);
        let taken: bool = conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM users WHERE name_key = ?1)",
            params![key],
            |r| r.get(0),
        )?;
        let key = if taken { format!("{key}#{id}") } else { key };
        conn.execute(
            "UPDATE users SET name_key = ?2 WHERE id = ?1",
            params![id, key],
        )?;
    }
    if !unkeyed.is_empty() {
        tracing::info!(
            accounts = unkeyed.len(),
            "Usernames keyed for case- and look-alike-insensitive lookup."
        );
    }
    conn.execute_batch("CREATE UNIQUE INDEX IF NOT EXISTS users_by_key ON users(name_key)")
}
/// Every content key in the directory's file (keys that do not parse are left out).
pub(super) fn all_content_keys(c: &Connection) -> rusqlite::Result<Vec<(UserId, ContentKey)>> {
    let mut stmt = c.prepare("SELECT user_id, key FROM content_keys")?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
    })?;
    let mut keys = Vec::new();
    for row in rows {
        let (user, key) = row?;
        keys.extend(user.parse().ok().zip(key.try_into().ok()));
    }
    Ok(keys)
}

fn user_row(r: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: uuid_col(r, 0)?,
        username: r.get(1)?,
        password_hash: r.get(2)?,
        last_active: r.get::<_, Option<i64>>(3)?.map(livechat_core::from_ms),
        created_at: ts_col(r, 4)?,
        updated_at: ts_col(r, 5)?,
    })
}

const ROOM_COLS: &str = "r.id, r.name, r.description, r.is_public, r.created_by, r.participants_count, r.last_seq, r.created_at, r.updated_at, r.unlisted, r.direct";
/// How many columns [`ROOM_COLS`] selects (what a query selects after them starts here).
const ROOM_COLS_COUNT: usize = 11;
fn room_row(r: &Row<'_>) -> rusqlite::Result<Room> {
    Ok(Room {
        id: uuid_col(r, 0)?,
        name: r.get(1)?,
        description: r.get(2)?,
        is_public: r.get(3)?,
        unlisted: r.get(9)?,
        direct: r.get(10)?,
        created_by: uuid_col(r, 4)?,
        participants_count: r.get(5)?,
        last_seq: r.get(6)?,
        created_at: ts_col(r, 7)?,
        updated_at: ts_col(r, 8)?,
    })
}

const JR_COLS: &str = "j.id, j.message, u.username, r.name, j.room_id, j.user_id, j.created_at";
fn jr_public_row(r: &Row<'_>) -> rusqlite::Result<JoinRequestPublic> {
    Ok(JoinRequestPublic {
        id: uuid_col(r, 0)?,
        message: r.get(1)?,
        username: r
            .get::<_, Option<String>>(2)?
            .unwrap_or_else(|| "Unknown".into()),
        room_name: r.get(3)?,
        room_id: uuid_col(r, 4)?,
        user_id: uuid_col(r, 5)?,
        created_at: ts_col(r, 6)?,
    })
}

fn add_member_tx(
    tx: &Connection,
    room: RoomId,
    user: UserId,
    role: Role,
) -> rusqlite::Result<bool> {
    let added = tx.execute(
        "INSERT OR IGNORE INTO memberships(room_id, user_id, role, joined_at) VALUES (?1, ?2, ?3, ?4)",
        params![room.to_string(), user.to_string(), role.as_str(), to_ms(livechat_core::now())],
    )? == 1;
    if added {
        tx.execute(
            "UPDATE rooms SET participants_count = participants_count + 1 WHERE id = ?1",
            params![room.to_string()],
        )?;
    }
    Ok(added)
}

#[async_trait]
impl Directory for SqliteDirectory {
    async fn create_user(&self, user: &User, outbox: Vec<OutboxRecord>) -> StoreResult<()> {
        let u = user.clone();
        self.write_recording(move |tx, q| {
            tx.execute(
                "INSERT INTO users(id, username, password_hash, last_active, created_at, updated_at, name_key) VALUES (?1, ?2, ?3, NULL, ?4, ?5, ?6)",
                params![u.id.to_string(), u.username, u.password_hash, to_ms(u.created_at), to_ms(u.updated_at), username_key(&u.username)],
            )?;
            q.queue(tx, outbox)
        })
        .await
    }

    async fn user_by_id(&self, id: UserId) -> StoreResult<Option<User>> {
        self.db
            .read(move |c| {
                c.prepare_cached(&format!("SELECT {USER_COLS} FROM users WHERE id = ?1"))?
                    .query_row(params![id.to_string()], user_row)
                    .optional()
            })
            .await
    }

    async fn user_by_name(&self, username: &str) -> StoreResult<Option<User>> {
        let name = username.to_string();
        self.db.read(move |c| user_named(c, &name)).await
    }

    async fn users_by_ids(&self, ids: &[UserId]) -> StoreResult<Vec<User>> {
        let ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        self.db
            .read(move |c| {
                let mut stmt =
                    c.prepare_cached(&format!("SELECT {USER_COLS} FROM users WHERE id = ?1"))?;
                let mut out = Vec::new();
                for id in ids {
                    if let Some(u) = stmt.query_row(params![id], user_row).optional()? {
                        out.push(u);
                    }
                }
                Ok(out)
            })
            .await
    }

    async fn users_by_names(&self, names: &[String]) -> StoreResult<Vec<User>> {
        let names = names.to_vec();
        self.db
            .read(move |c| {
                let mut out: Vec<User> = Vec::new();
                for n in names {
                    if let Some(u) = user_named(c, &n)? {
                        if !out.iter().any(|o| o.id == u.id) {
                            out.push(u);
                        }
                    }
                }
                Ok(out)
            })
            .await
    }

    async fn touch_user(&self, id: UserId, at: DateTime<Utc>) -> StoreResult<()> {
        self.db
            .write(move |tx| {
                tx.execute(
                    "UPDATE users SET last_active = ?2 WHERE id = ?1",
                    params![id.to_string(), to_ms(at)],
                )?;
                Ok(())
            })
            .await
    }

    async fn content_key(&self, user: UserId) -> StoreResult<Option<ContentKey>> {
        let fresh = livechat_schemas::sealed::new_key();
        self.db
            .write(move |tx| {
                let id = user.to_string();
                // Made only for an account that exists; a key already there is kept.
                tx.execute(
                    "INSERT OR IGNORE INTO content_keys(user_id, key)
                     SELECT ?1, ?2 WHERE EXISTS (SELECT 1 FROM users WHERE id = ?1)",
                    params![id, fresh.as_slice()],
                )?;
                tx.query_row(
                    "SELECT key FROM content_keys WHERE user_id = ?1",
                    params![id],
                    |r| r.get::<_, Vec<u8>>(0),
                )
                .optional()
                .map(|k| k.and_then(|k| k.try_into().ok()))
            })
            .await
    }

    async fn content_keys(
        &self,
        users: Option<&[UserId]>,
    ) -> StoreResult<Vec<(UserId, ContentKey)>> {
        let users: Option<Vec<String>> = users.map(|u| u.iter().map(|i| i.to_string()).collect());
        self.db
            .read(move |c| {
                let row = |r: &Row<'_>| -> rusqlite::Result<(String, Vec<u8>)> {
                    Ok((r.get(0)?, r.get(1)?))
                };
                let rows: Vec<(String, Vec<u8>)> = match users {
                    None => return all_content_keys(c),
                    Some(ids) => {
                        let mut stmt = c.prepare_cached(
                            "SELECT user_id, key FROM content_keys WHERE user_id = ?1",
                        )?;
                        let mut out = Vec::new();
                        for id in ids {
                            out.extend(stmt.query_row(params![id], row).optional()?);
                        }
                        out
                    }
                };
                Ok(rows
                    .into_iter()
                    .filter_map(|(u, k)| Some((u.parse().ok()?, k.try_into().ok()?)))
                    .collect())
            })
            .await
    }

    async fn erase_user(&self, user: UserId, outbox: Vec<OutboxRecord>) -> StoreResult<()> {
        let receipts = self.retries.is_none();
        self.write_recording(move |tx, q| {
            let id = user.to_string();
            for sql in [
                "DELETE FROM content_keys WHERE user_id = ?1",
                "INSERT OR IGNORE INTO erased_users(user_id) VALUES (?1)",
                "DELETE FROM sessions WHERE user_id = ?1",
                "DELETE FROM join_requests WHERE user_id = ?1",
                "DELETE FROM memberships WHERE user_id = ?1",
                "DELETE FROM thread_reads WHERE user_id = ?1",
                "DELETE FROM thread_follows WHERE user_id = ?1",
                // Tombstones, as for a notification its owner deletes: a replay does not store
                // them again.
                "UPDATE notifications SET deleted = 1, payload = '{}'
                 WHERE (user_id = ?1 OR source_id = ?1) AND deleted = 0",
                "DELETE FROM users WHERE id = ?1",
            ] {
                tx.execute(sql, params![id])?;
            }
            if receipts {
                tx.execute(
                    "DELETE FROM message_receipts WHERE user_id = ?1",
                    params![id],
                )?;
            }
            q.queue(tx, outbox)
        })
        .await
    }

    async fn create_room(&self, room: &Room, outbox: Vec<OutboxRecord>) -> StoreResult<()> {
        let r = room.clone();
        self.write_recording(move |tx, q| {
            tx.execute(
                "INSERT INTO rooms(id, name, description, is_public, created_by, participants_count, last_seq, created_at, updated_at, unlisted, direct)
                 VALUES (?1, ?2, ?3, ?4, ?5, 0, 0, ?6, ?7, ?8, ?9)",
                params![r.id.to_string(), r.name, r.description, r.is_public, r.created_by.to_string(), to_ms(r.created_at), to_ms(r.updated_at), r.unlisted, r.direct],
            )?;
            add_member_tx(tx, r.id, r.created_by, Role::Owner)?;
            q.queue(tx, outbox)
        })
        .await
    }

    async fn room(&self, id: RoomId) -> StoreResult<Option<Room>> {
        self.db
            .read(move |c| {
                c.prepare_cached(&format!("SELECT {ROOM_COLS} FROM rooms r WHERE r.id = ?1"))?
                    .query_row(params![id.to_string()], room_row)
                    .optional()
            })
            .await
    }

    async fn update_room(&self, room: &Room, outbox: Vec<OutboxRecord>) -> StoreResult<()> {
        let r = room.clone();
        self.write_recording(move |tx, q| {
            tx.execute(
                "UPDATE rooms SET description = ?2, is_public = ?3, updated_at = ?4, unlisted = ?5 WHERE id = ?1",
                params![
                    r.id.to_string(),
                    r.description,
                    r.is_public,
                    to_ms(r.updated_at),
                    r.unlisted
                ],
            )?;
            q.queue(tx, outbox)
        })
        .await
    }

    async fn delete_room(&self, id: RoomId, outbox: Vec<OutboxRecord>) -> StoreResult<()> {
        let receipts = self.retries.is_none();
        self.write_recording(move |tx, q| {
            let id = id.to_string();
            tx.execute("DELETE FROM rooms WHERE id = ?1", params![id])?;
            tx.execute("DELETE FROM memberships WHERE room_id = ?1", params![id])?;
            tx.execute("DELETE FROM join_requests WHERE room_id = ?1", params![id])?;
            tx.execute("DELETE FROM thread_reads WHERE room_id = ?1", params![id])?;
            tx.execute("DELETE FROM thread_follows WHERE room_id = ?1", params![id])?;
            if receipts {
                tx.execute(
                    "DELETE FROM message_receipts WHERE room_id = ?1",
                    params![id],
                )?;
            }
            q.queue(tx, outbox)
        })
        .await
    }

    async fn rooms_of_user(&self, user: UserId) -> StoreResult<Vec<(Room, Role, i64)>> {
        self.db
            .read(move |c| {
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT {ROOM_COLS}, m.role, m.last_read_seq FROM memberships m JOIN rooms r ON r.id = m.room_id
                     WHERE m.user_id = ?1 ORDER BY r.updated_at DESC"
                ))?;
                let rows = stmt.query_map(params![user.to_string()], |r| {
                    // After the ROOM_COLS_COUNT room columns.
                    let role: String = r.get(ROOM_COLS_COUNT)?;
                    Ok((room_row(r)?, Role::parse(&role).unwrap_or(Role::Member), r.get::<_, i64>(ROOM_COLS_COUNT + 1)?))
                })?;
                rows.collect()
            })
            .await
    }

    async fn top_rooms(&self, limit: u32, only_public: bool) -> StoreResult<Vec<Room>> {
        self.db
            .read(move |c| {
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT {ROOM_COLS} FROM rooms r WHERE (r.is_public = 1 OR ?1 = 0) AND r.unlisted = 0
                     ORDER BY r.participants_count DESC, r.created_at DESC LIMIT ?2"
                ))?;
                let rows = stmt.query_map(params![only_public, limit], room_row)?;
                rows.collect()
            })
            .await
    }

    async fn search_rooms(&self, text: &str, limit: u32) -> StoreResult<Vec<Room>> {
        // instr() is a literal substring match: no pattern characters, no regex (user text never acts
        // as a pattern, unlike the original's regex search).
        let needle = text.to_lowercase();
        self.db
            .read(move |c| {
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT {ROOM_COLS} FROM rooms r
                     WHERE (instr(unicode_lower(r.name), ?1) > 0 OR instr(unicode_lower(coalesce(r.description, '')), ?1) > 0)
                       AND r.unlisted = 0
                     ORDER BY r.created_at DESC LIMIT ?2"
                ))?;
                let rows = stmt.query_map(params![needle, limit], room_row)?;
                rows.collect()
            })
            .await
    }

    async fn membership(&self, room: RoomId, user: UserId) -> StoreResult<Option<Role>> {
        self.db
            .read(move |c| {
                let role: Option<String> = c
                    .prepare_cached(
                        "SELECT role FROM memberships WHERE room_id = ?1 AND user_id = ?2",
                    )?
                    .query_row(params![room.to_string(), user.to_string()], |r| r.get(0))
                    .optional()?;
                Ok(role.and_then(|r| Role::parse(&r)))
            })
            .await
    }

    async fn add_member(
        &self,
        room: RoomId,
        user: UserId,
        role: Role,
        outbox: Vec<OutboxRecord>,
    ) -> StoreResult<bool> {
        self.write_recording(move |tx, q| {
            let added = add_member_tx(tx, room, user, role)?;
            if added {
                q.queue(tx, outbox)?;
            }
            Ok(added)
        })
        .await
    }

    async fn remove_member(
        &self,
        room: RoomId,
        user: UserId,
        outbox: Vec<OutboxRecord>,
    ) -> StoreResult<bool> {
        self.write_recording(move |tx, q| {
            let removed = tx.execute(
                "DELETE FROM memberships WHERE room_id = ?1 AND user_id = ?2",
                params![room.to_string(), user.to_string()],
            )? == 1;
            if removed {
                tx.execute(
                    "UPDATE rooms SET participants_count = max(participants_count - 1, 0) WHERE id = ?1",
                    params![room.to_string()],
                )?;
                q.queue(tx, outbox)?;
            }
            Ok(removed)
        })
        .await
    }

    async fn members(&self, room: RoomId) -> StoreResult<Vec<(User, Role)>> {
        self.db
            .read(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT u.id, u.username, u.password_hash, u.last_active, u.created_at, u.updated_at, m.role
                     FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.room_id = ?1 ORDER BY m.joined_at",
                )?;
                let rows = stmt.query_map(params![room.to_string()], |r| {
                    let role: String = r.get(6)?;
                    Ok((user_row(r)?, Role::parse(&role).unwrap_or(Role::Member)))
                })?;
                rows.collect()
            })
            .await
    }

    async fn create_join_request(
        &self,
        req: &JoinRequest,
        outbox: Vec<OutboxRecord>,
    ) -> StoreResult<()> {
        let j = req.clone();
        self.write_recording(move |tx, q| {
            tx.execute(
                "INSERT INTO join_requests(id, room_id, user_id, message, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![j.id.to_string(), j.room_id.to_string(), j.user_id.to_string(), j.message, to_ms(j.created_at)],
            )?;
            q.queue(tx, outbox)
        })
        .await
    }

    async fn join_request(&self, id: Uuid) -> StoreResult<Option<JoinRequest>> {
        self.db
            .read(move |c| {
                c.prepare_cached("SELECT id, room_id, user_id, message, created_at FROM join_requests WHERE id = ?1")?
                    .query_row(params![id.to_string()], |r| {
                        Ok(JoinRequest {
                            id: uuid_col(r, 0)?,
                            room_id: uuid_col(r, 1)?,
                            user_id: uuid_col(r, 2)?,
                            message: r.get(3)?,
                            created_at: ts_col(r, 4)?,
                        })
                    })
                    .optional()
            })
            .await
    }

    async fn join_requests_of_room(&self, room: RoomId) -> StoreResult<Vec<JoinRequestPublic>> {
        self.db
            .read(move |c| {
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT {JR_COLS} FROM join_requests j JOIN rooms r ON r.id = j.room_id LEFT JOIN users u ON u.id = j.user_id
                     WHERE j.room_id = ?1 ORDER BY j.created_at"
                ))?;
                let rows = stmt.query_map(params![room.to_string()], jr_public_row)?;
                rows.collect()
            })
            .await
    }

    async fn join_requests_of_user(&self, user: UserId) -> StoreResult<Vec<JoinRequestPublic>> {
        self.db
            .read(move |c| {
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT {JR_COLS} FROM join_requests j JOIN rooms r ON r.id = j.room_id LEFT JOIN users u ON u.id = j.user_id
                     WHERE j.user_id = ?1 ORDER BY j.created_at DESC"
                ))?;
                let rows = stmt.query_map(params![user.to_string()], jr_public_row)?;
                rows.collect()
            })
            .await
    }

    async fn handle_join_request(
        &self,
        req: &JoinRequest,
        accept: bool,
        outbox: Vec<OutboxRecord>,
    ) -> StoreResult<bool> {
        let j = req.clone();
        self.write_recording(move |tx, q| {
            if tx.execute(
                "DELETE FROM join_requests WHERE id = ?1",
                params![j.id.to_string()],
            )? == 0
            {
                return Ok(false);
            }
            if accept {
                add_member_tx(tx, j.room_id, j.user_id, Role::Member)?;
            }
            q.queue(tx, outbox)?;
            Ok(true)
        })
        .await
    }

    async fn send_message(
        &self,
        msg: NewMessage,
        events: MessageEventsFn,
        mut placed: Placed,
    ) -> StoreResult<Option<SendReceipt>> {
        // Sends share the committer's transactions with every other write: one fsync for many.
        // A send refuses (not a member, a retried client_msg_id) before it changes anything, so
        // it needs no savepoint of its own.
        let retries = self.retries.clone();
        let stored = self.queue_recording_unguarded(move |tx, q| {
            send_tx(tx, q, msg, events, retries.as_deref())
        })?;
        // Queued: the committer takes the room's next seq for it before any later send's.
        placed.now();
        stored.await
    }

    async fn insert_notification(&self, n: &Notification) -> StoreResult<bool> {
        let n = n.clone();
        self.db
            .write(move |tx| notifications::insert_in(tx, &n))
            .await
    }

    async fn notifications(
        &self,
        user: UserId,
        unread_only: bool,
        limit: u32,
    ) -> StoreResult<Vec<Notification>> {
        self.db
            .read(move |c| {
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT {NOTIF_COLS} FROM notifications
                     WHERE user_id = ?1 AND deleted = 0 AND (?2 = 0 OR read = 0)
                     ORDER BY created_at DESC"
                ))?;
                let rows = stmt.query_map(params![user.to_string(), unread_only], notif_row)?;
                rows.take(limit as usize).collect()
            })
            .await
    }

    async fn notification(&self, id: Uuid) -> StoreResult<Option<Notification>> {
        self.db
            .read(move |c| {
                c.prepare_cached(&format!(
                    "SELECT {NOTIF_COLS} FROM notifications WHERE id = ?1 AND deleted = 0"
                ))?
                .query_row(params![id.to_string()], notif_row)
                .optional()
            })
            .await
    }

    async fn mark_notification_read(&self, id: Uuid, outbox: Vec<OutboxRecord>) -> StoreResult<()> {
        self.write_recording(move |tx, q| {
            tx.execute(
                "UPDATE notifications SET read = 1 WHERE id = ?1",
                params![id.to_string()],
            )?;
            q.queue(tx, outbox)
        })
        .await
    }

    async fn mark_all_notifications_read(
        &self,
        user: UserId,
        up_to: DateTime<Utc>,
        outbox: Vec<OutboxRecord>,
    ) -> StoreResult<u64> {
        self.write_recording(move |tx, q| {
            let n = tx.execute(
                "UPDATE notifications SET read = 1
                 WHERE user_id = ?1 AND read = 0 AND deleted = 0 AND created_at <= ?2",
                params![user.to_string(), to_ms(up_to)],
            )?;
            q.queue(tx, outbox)?;
            Ok(n as u64)
        })
        .await
    }

    async fn count_unread_notifications(&self, user: UserId) -> StoreResult<i64> {
        self.db
            .read(move |c| {
                c.prepare_cached(
                    "SELECT count(*) FROM notifications WHERE user_id = ?1 AND read = 0 AND deleted = 0",
                )?
                .query_row(params![user.to_string()], |r| r.get(0))
            })
            .await
    }

    async fn delete_notification(
        &self,
        id: Uuid,
        user: UserId,
        outbox: Vec<OutboxRecord>,
    ) -> StoreResult<bool> {
        self.write_recording(move |tx, q| {
            // A tombstone: the payload goes, the row stays so the notification is not stored
            // again when the event that created it is redelivered or replayed.
            let deleted = tx.execute(
                "UPDATE notifications SET deleted = 1, payload = '{}'
                 WHERE id = ?1 AND user_id = ?2 AND deleted = 0",
                params![id.to_string(), user.to_string()],
            )? == 1;
            if deleted {
                q.queue(tx, outbox)?;
            }
            Ok(deleted)
        })
        .await
    }

    async fn notifications_checksum(&self) -> StoreResult<Checksum> {
        self.db
            .read(|c| checksum_query(c, "SELECT id, user_id, type, payload, read, deleted, source_id, created_at FROM notifications ORDER BY id"))
            .await
    }

    async fn messages_sequenced(&self, sent: &[(RoomId, UserId, i64)]) -> StoreResult<()> {
        if sent.is_empty() {
            return Ok(());
        }
        let sent: Vec<(String, String, i64)> = sent
            .iter()
            .map(|(r, u, s)| (r.to_string(), u.to_string(), *s))
            .collect();
        self.db
            .write(move |tx| {
                for (room, user, seq) in &sent {
                    raise_seqs(tx, room, user, *seq)?;
                }
                Ok(())
            })
            .await
    }

    async fn set_read_marker(
        &self,
        user: UserId,
        room: RoomId,
        seq: i64,
        outbox: Vec<OutboxRecord>,
    ) -> StoreResult<i64> {
        self.write_recording(move |tx, q| {
            let (room, user) = (room.to_string(), user.to_string());
            let stored: Option<i64> = tx
                .prepare_cached(
                    "SELECT last_read_seq FROM memberships WHERE room_id = ?1 AND user_id = ?2",
                )?
                .query_row(params![room, user], |r| r.get(0))
                .optional()?;
            match stored {
                Some(before) if seq > before => {
                    raise_read_marker(tx, &room, &user, seq)?;
                    q.queue(tx, outbox)?;
                    Ok(seq)
                }
                other => Ok(other.unwrap_or(0)),
            }
        })
        .await
    }

    async fn read_marker(&self, user: UserId, room: RoomId) -> StoreResult<Option<i64>> {
        self.db
            .read(move |c| {
                c.prepare_cached(
                    "SELECT last_read_seq FROM memberships WHERE room_id = ?1 AND user_id = ?2",
                )?
                .query_row(params![room.to_string(), user.to_string()], |r| r.get(0))
                .optional()
            })
            .await
    }

    async fn set_thread_read(
        &self,
        user: UserId,
        room: RoomId,
        root_seq: i64,
        seq: i64,
    ) -> StoreResult<i64> {
        self.db
            .write(move |tx| {
                tx.prepare_cached(
                    "INSERT INTO thread_reads(user_id, room_id, root_seq, read_seq) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(user_id, room_id, root_seq) DO UPDATE SET read_seq = max(read_seq, excluded.read_seq)
                     RETURNING read_seq",
                )?
                .query_row(
                    params![user.to_string(), room.to_string(), root_seq, seq],
                    |r| r.get(0),
                )
            })
            .await
    }

    async fn set_thread_follow(
        &self,
        user: UserId,
        room: RoomId,
        root_seq: i64,
        follow: bool,
    ) -> StoreResult<()> {
        self.db
            .write(move |tx| {
                tx.prepare_cached(
                    "INSERT INTO thread_follows(room_id, root_seq, user_id, follow) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(room_id, root_seq, user_id) DO UPDATE SET follow = excluded.follow",
                )?
                .execute(params![room.to_string(), root_seq, user.to_string(), follow])?;
                Ok(())
            })
            .await
    }

    async fn thread_follows(
        &self,
        room: RoomId,
        root_seq: i64,
    ) -> StoreResult<std::collections::HashMap<UserId, bool>> {
        self.db
            .read(move |c| {
                c.prepare_cached(
                    "SELECT user_id, follow FROM thread_follows WHERE room_id = ?1 AND root_seq = ?2",
                )?
                .query_map(params![room.to_string(), root_seq], |r| {
                    Ok((uuid_col(r, 0)?, r.get(1)?))
                })?
                .collect()
            })
            .await
    }

    async fn thread_reads(
        &self,
        user: UserId,
        room: RoomId,
        roots: &[i64],
    ) -> StoreResult<std::collections::HashMap<i64, i64>> {
        if roots.is_empty() {
            return Ok(Default::default());
        }
        // A JSON array for `json_each`: one statement whatever the number of roots.
        let roots = format!(
            "[{}]",
            roots
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        );
        self.db
            .read(move |c| {
                c.prepare_cached(
                    "SELECT root_seq, read_seq FROM thread_reads
                     WHERE user_id = ?1 AND room_id = ?2 AND root_seq IN (SELECT value FROM json_each(?3))",
                )?
                .query_map(params![user.to_string(), room.to_string(), roots], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect()
            })
            .await
    }

    async fn enqueue(&self, outbox: Vec<OutboxRecord>) -> StoreResult<()> {
        self.write_recording(move |tx, q| q.queue(tx, outbox)).await
    }

    async fn hold_file(&self, room: RoomId, key: &str, until_ms: i64) -> StoreResult<bool> {
        let key = key.to_string();
        self.db
            .write(move |tx| file_refs::hold(tx, room, &key, until_ms))
            .await
    }

    async fn claim_file(&self, room: RoomId, key: &str, claim: &str) -> StoreResult<bool> {
        let (key, claim) = (key.to_string(), claim.to_string());
        self.db
            .write(move |tx| file_refs::claim(tx, room, &key, &claim))
            .await
    }

    async fn release_file(&self, room: RoomId, key: &str, claim: &str) -> StoreResult<()> {
        let (key, claim) = (key.to_string(), claim.to_string());
        self.db
            .write(move |tx| file_refs::release(tx, room, &key, &claim))
            .await
    }

    async fn take_file(
        &self,
        room: RoomId,
        key: &str,
        now_ms: i64,
        stale_ms: i64,
    ) -> StoreResult<bool> {
        let key = key.to_string();
        self.db
            .write(move |tx| file_refs::take(tx, room, &key, now_ms, stale_ms))
            .await
    }

    async fn unkept_files(
        &self,
        now_ms: i64,
        stale_ms: i64,
        max: usize,
    ) -> StoreResult<Vec<(RoomId, String)>> {
        self.db
            .read_blocking(move |c| file_refs::unkept(c, now_ms, stale_ms, max))
            .await
    }

    async fn forget_file(&self, room: RoomId, key: &str) -> StoreResult<()> {
        let key = key.to_string();
        self.db
            .write(move |tx| file_refs::forget(tx, room, &key))
            .await
    }

    async fn release_room_files(&self, room: RoomId) -> StoreResult<()> {
        self.db
            .write(move |tx| file_refs::release_room(tx, room))
            .await
    }
}

/// The relay drains the outbox of the directory's own file. In the embedded store records go
/// straight to the log, so there is never anything pending (and no relay runs).
#[async_trait]
impl Outbox for SqliteDirectory {
    async fn pending(&self, limit: u32) -> StoreResult<Vec<(i64, OutboxRecord)>> {
        match &self.records {
            RecordSink::Outbox(outbox) => outbox.pending(limit).await,
            RecordSink::Log(_) => Ok(Vec::new()),
        }
    }
    async fn remove(&self, positions: &[i64]) -> StoreResult<()> {
        match &self.records {
            RecordSink::Outbox(outbox) => outbox.remove(positions).await,
            RecordSink::Log(_) => Ok(()),
        }
    }
    fn pending_signal(&self) -> watch::Receiver<u64> {
        match &self.records {
            RecordSink::Outbox(outbox) => outbox.pending_signal(),
            RecordSink::Log(_) => watch::channel(0).1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file written before usernames had keys: "Bob" (older) and "bob" both keep signing in
    /// by their exact names; any other spelling finds the older one.
    #[tokio::test]
    async fn accounts_from_before_keys_are_keyed_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE users(id TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE,
                   password_hash TEXT NOT NULL, last_active INTEGER, created_at INTEGER NOT NULL,
                   updated_at INTEGER NOT NULL);
                 INSERT INTO users VALUES ('00000000-0000-0000-0000-000000000002', 'bob', 'h', NULL, 2, 2);
                 INSERT INTO users VALUES ('00000000-0000-0000-0000-000000000001', 'Bob', 'h', NULL, 1, 1);",
            )
            .unwrap();
        }
        let d = SqliteDirectory::open(&path).unwrap();
        let name_of = |n: &'static str| {
            let d = &d;
            async move { d.user_by_name(n).await.unwrap().unwrap().username }
        };
        assert_eq!(name_of("bob").await, "bob");
        assert_eq!(name_of("Bob").await, "Bob");
        assert_eq!(name_of("BOB").await, "Bob");
        // Keys are unique from now on.
        let mut late = livechat_core::model::User {
            id: Uuid::new_v4(),
            username: "bOb".into(),
            password_hash: "h".into(),
            last_active: None,
            created_at: livechat_core::now(),
            updated_at: livechat_core::now(),
        };
        assert!(d.create_user(&late, vec![]).await.is_err());
        late.username = "robert".into();
        d.create_user(&late, vec![]).await.unwrap();
        drop(d);
        // Opening again changes nothing.
        let d = SqliteDirectory::open(&path).unwrap();
        assert_eq!(
            d.user_by_name("BOB").await.unwrap().unwrap().username,
            "Bob"
        );
    }

    #[test]
    fn room_cols_count_matches_the_column_list() {
        assert_eq!(ROOM_COLS.split(',').count(), ROOM_COLS_COUNT);
    }
}
