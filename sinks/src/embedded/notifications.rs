//! The `notifications` table of the directory's file: written by the notifications processor,
//! or inline with the log append in the embedded store (see `inline.rs`).

use livechat_core::events::quoted_author;
use livechat_core::model::Notification;
use livechat_core::to_ms;
use rusqlite::{params, Connection, Row};

use super::db::{opt_uuid_col, ts_col, user_err, uuid_col};

pub(super) const NOTIF_COLS: &str = "id, user_id, type, payload, read, source_id, created_at";
pub(super) fn notif_row(r: &Row<'_>) -> rusqlite::Result<Notification> {
    let payload: String = r.get(3)?;
    Ok(Notification {
        id: uuid_col(r, 0)?,
        user_id: uuid_col(r, 1)?,
        kind: r.get(2)?,
        payload: serde_json::from_str(&payload).unwrap_or_default(),
        read: r.get(4)?,
        source_id: opt_uuid_col(r, 5)?,
        created_at: ts_col(r, 6)?,
    })
}

/// Stores a notification unless one with its id exists (ids derive from the event, so a
/// redelivered event stores nothing twice); true when it was stored. One that quotes an erased
/// account (a processor read the quote before the erasure) is stored as the erasure leaves the
/// others, a tombstone without its payload.
pub(super) fn insert_in(tx: &Connection, n: &Notification) -> rusqlite::Result<bool> {
    let payload = serde_json::to_string(&n.payload).map_err(user_err)?;
    let quoted = quoted_author(n).map(|s| s.to_string());
    Ok(tx
        .prepare_cached(
            "INSERT OR IGNORE INTO notifications(id, user_id, type, payload, read, source_id, created_at, deleted)
             SELECT ?1, ?2, ?3, CASE WHEN e.erased THEN '{}' ELSE ?4 END, 0, ?5, ?6, e.erased
             FROM (SELECT ?7 IS NOT NULL
                          AND EXISTS (SELECT 1 FROM erased_users WHERE user_id = ?7) AS erased) e",
        )?
        .execute(params![
            n.id.to_string(),
            n.user_id.to_string(),
            n.kind,
            payload,
            n.source_id.map(|s| s.to_string()),
            to_ms(n.created_at),
            quoted
        ])?
        == 1)
}
