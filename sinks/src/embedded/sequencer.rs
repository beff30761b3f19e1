//! The send path: each message gets the next dense seq of its room (`rooms.last_seq + 1`, in
//! the transaction that stores it, so seqs have no gap and no duplicate even with several
//! processes on one file), is deduplicated by `client_msg_id` (from the recent sends of the log,
//! `retries.rs`, when its records go to the log of the same file; else through a receipt row),
//! and queues its records. A send is one write of the file's committer, so it shares its
//! transaction and fsync with every other write waiting (group commit) and is acknowledged once
//! durable.

use livechat_core::model::SendReceipt;
use livechat_core::ports::{MessageEventsFn, NewMessage};
use livechat_core::to_ms;
use rusqlite::{params, Connection, OptionalExtension};

use super::db::{ts_col, user_err, uuid_col};
use super::records::Queued;
use super::retries::Retries;

/// Assigns the next seq and queues the message's records (one send, inside a transaction).
pub(super) fn send_tx(
    tx: &Connection,
    q: &mut Queued,
    msg: NewMessage,
    events: MessageEventsFn,
    retries: Option<&Retries>,
) -> rusqlite::Result<Option<SendReceipt>> {
    let room = msg.room_id.to_string();
    let user = msg.user_id.to_string();
    // The room's last seq, if the sender is a member (one lookup for both).
    let last: Option<i64> = tx
        .prepare_cached(
            "SELECT r.last_seq FROM rooms r JOIN memberships m ON m.room_id = r.id AND m.user_id = ?2
             WHERE r.id = ?1",
        )?
        .query_row(params![room, user], |r| r.get(0))
        .optional()?;
    let Some(last) = last else {
        return Ok(None);
    };
    let seq = last + 1;
    // Every step that may fail for a reason of its own (building the records) comes before the
    // first change: from here on only the database can fail, so a send needs no savepoint.
    let records = events(seq).map_err(user_err)?;
    match (&msg.client_msg_id, retries) {
        (Some(cid), Some(retries)) => {
            // A retry is refused before anything is written, and answered with the first send.
            if let Some(first) = retries.first(tx, msg.room_id, msg.user_id, cid)? {
                return Ok(Some(first));
            }
        }
        (Some(cid), None) => {
            // The receipt is the first change: a retried client_msg_id is refused here, before
            // anything else is written, and answered with the first message.
            let fresh = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO message_receipts(room_id, user_id, client_msg_id, message_id, seq, content, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![room, user, cid, msg.message_id.to_string(), seq, msg.content, to_ms(msg.created_at)])?
                == 1;
            if !fresh {
                return receipt_of(tx, &room, &user, cid).map(Some);
            }
        }
        (None, _) => {}
    }
    raise_seqs(tx, &room, &user, seq)?;
    q.queue(tx, records)?;
    let sent = SendReceipt {
        message_id: msg.message_id,
        seq,
        created_at: msg.created_at,
        content: msg.content,
        duplicate: false,
    };
    if let (Some(cid), Some(retries)) = (msg.client_msg_id, retries) {
        retries.remember(msg.room_id, msg.user_id, cid, &sent);
    }
    Ok(Some(sent))
}

/// The first message of a retried `client_msg_id`, from its receipt row.
fn receipt_of(tx: &Connection, room: &str, user: &str, cid: &str) -> rusqlite::Result<SendReceipt> {
    tx.prepare_cached(
        "SELECT message_id, seq, created_at, content FROM message_receipts
         WHERE room_id = ?1 AND user_id = ?2 AND client_msg_id = ?3",
    )?
    .query_row(params![room, user, cid], |r| {
        Ok(SendReceipt {
            message_id: uuid_col(r, 0)?,
            seq: r.get(1)?,
            created_at: ts_col(r, 2)?,
            content: r.get(3)?,
            duplicate: true,
        })
    })
}

/// Raises the room's last seq to that of a message sent in it, and its author's read marker
/// (the author has read their own message: it never counts as unread for them). Never lowers
/// either, so it also applies messages sequenced elsewhere, again or out of order.
pub(super) fn raise_seqs(
    tx: &Connection,
    room: &str,
    author: &str,
    seq: i64,
) -> rusqlite::Result<()> {
    tx.prepare_cached("UPDATE rooms SET last_seq = max(last_seq, ?2) WHERE id = ?1")?
        .execute(params![room, seq])?;
    raise_read_marker(tx, room, author, seq)
}

/// Raises a member's read marker in a room (never lowers it).
pub(super) fn raise_read_marker(
    tx: &Connection,
    room: &str,
    user: &str,
    seq: i64,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE memberships SET last_read_seq = max(last_read_seq, ?3) WHERE room_id = ?1 AND user_id = ?2",
    )?
    .execute(params![room, user, seq])?;
    Ok(())
}
