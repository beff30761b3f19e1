//! Who keeps a room's shared files, in the directory's file (the protocol is in
//! `livechat_core::attachments`): one row per (room, key) with its holds and whether it is
//! taken for deletion, and one row per claim. Each function is one write or read on the
//! committer's transaction, so each step is atomic.

use livechat_core::model::RoomId;
use rusqlite::{params, Connection, OptionalExtension};

use super::db::uuid_col;

pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS room_files(
  room_id TEXT NOT NULL, key TEXT NOT NULL, holds INTEGER NOT NULL, claimed INTEGER NOT NULL,
  held_until INTEGER NOT NULL, taken_at INTEGER, PRIMARY KEY(room_id, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS room_file_claims(
  room_id TEXT NOT NULL, key TEXT NOT NULL, claim TEXT NOT NULL,
  PRIMARY KEY(room_id, key, claim)) WITHOUT ROWID;
"#;

/// The condition under which a file may be taken (`?1` now, `?2` stale), on `room_files f`.
const UNKEPT: &str = "(f.taken_at IS NULL
    AND NOT EXISTS (SELECT 1 FROM room_file_claims c WHERE c.room_id = f.room_id AND c.key = f.key)
    AND (f.claimed >= f.holds OR f.held_until < ?1))
  OR (f.taken_at IS NOT NULL AND f.taken_at < ?2)";

fn taken(c: &Connection, room: &str, key: &str) -> rusqlite::Result<Option<bool>> {
    c.prepare_cached("SELECT taken_at IS NOT NULL FROM room_files WHERE room_id = ?1 AND key = ?2")?
        .query_row(params![room, key], |r| r.get(0))
        .optional()
}

pub(super) fn hold(c: &Connection, room: RoomId, key: &str, until: i64) -> rusqlite::Result<bool> {
    let room = room.to_string();
    if taken(c, &room, key)? == Some(true) {
        return Ok(false);
    }
    c.prepare_cached(
        "INSERT INTO room_files(room_id, key, holds, claimed, held_until) VALUES (?1, ?2, 1, 0, ?3)
         ON CONFLICT(room_id, key) DO UPDATE SET holds = holds + 1, held_until = max(held_until, excluded.held_until)",
    )?
    .execute(params![room, key, until])?;
    Ok(true)
}

pub(super) fn claim(
    c: &Connection,
    room: RoomId,
    key: &str,
    claim: &str,
) -> rusqlite::Result<bool> {
    let room = room.to_string();
    if taken(c, &room, key)? != Some(false) {
        return Ok(false);
    }
    c.prepare_cached("UPDATE room_files SET claimed = holds WHERE room_id = ?1 AND key = ?2")?
        .execute(params![room, key])?;
    c.prepare_cached(
        "INSERT OR IGNORE INTO room_file_claims(room_id, key, claim) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![room, key, claim])?;
    Ok(true)
}

pub(super) fn release(
    c: &Connection,
    room: RoomId,
    key: &str,
    claim: &str,
) -> rusqlite::Result<()> {
    c.prepare_cached(
        "DELETE FROM room_file_claims WHERE room_id = ?1 AND key = ?2 AND claim = ?3",
    )?
    .execute(params![room.to_string(), key, claim])?;
    Ok(())
}

pub(super) fn take(
    c: &Connection,
    room: RoomId,
    key: &str,
    now: i64,
    stale: i64,
) -> rusqlite::Result<bool> {
    let n = c
        .prepare_cached(&format!(
            "UPDATE room_files AS f SET taken_at = ?1 WHERE f.room_id = ?3 AND f.key = ?4 AND ({UNKEPT})"
        ))?
        .execute(params![now, stale, room.to_string(), key])?;
    Ok(n == 1)
}

pub(super) fn unkept(
    c: &Connection,
    now: i64,
    stale: i64,
    max: usize,
) -> rusqlite::Result<Vec<(RoomId, String)>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT f.room_id, f.key FROM room_files f WHERE {UNKEPT}"
    ))?;
    let rows = stmt.query_map(params![now, stale], |r| Ok((uuid_col(r, 0)?, r.get(1)?)))?;
    rows.take(max).collect()
}

pub(super) fn release_room(c: &Connection, room: RoomId) -> rusqlite::Result<()> {
    let room = room.to_string();
    c.prepare_cached("DELETE FROM room_file_claims WHERE room_id = ?1")?
        .execute([&room])?;
    c.prepare_cached("UPDATE room_files SET held_until = 0 WHERE room_id = ?1")?
        .execute([&room])?;
    Ok(())
}

pub(super) fn forget(c: &Connection, room: RoomId, key: &str) -> rusqlite::Result<()> {
    let room = room.to_string();
    c.prepare_cached(
        "DELETE FROM room_files WHERE room_id = ?1 AND key = ?2 AND taken_at IS NOT NULL",
    )?
    .execute(params![room, key])?;
    c.prepare_cached("DELETE FROM room_file_claims WHERE room_id = ?1 AND key = ?2")?
        .execute(params![room, key])?;
    Ok(())
}
