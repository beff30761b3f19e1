//! A user's own data as one JSON document (the right of access): their account, the rooms they
//! are in with their role and read marker, their notifications, and every message they wrote in
//! those rooms (tombstones included), oldest first per room. Written in pieces into a bounded
//! channel as the download takes them, so a long history never sits in memory whole and a slow
//! download holds at most a few pieces.
//!
//! Messages are found by reading each room's history in seq order: the stores index messages by
//! room, not by author, so an export costs a read of every room the user is in. Exports are
//! therefore few at a time (see `ChatService::export_data`). Rooms the user has left are not
//! listed, nor what they wrote there.

use std::sync::Arc;

use serde::Serialize;
use serde_json::json;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use crate::error::StoreError;
use crate::model::{MessagePublic, NotificationPublic, RoomPublic, User, UserPublic};
use crate::ports::{Directory, MessageStore};

/// Messages read from a room's history per store call.
const PAGE: u32 = 500;
/// Most notifications exported (the directory keeps a user's latest).
const NOTIFICATIONS: u32 = 10_000;
/// Pieces written ahead of the download.
const AHEAD: usize = 4;
/// A piece is sent once it holds about this many bytes.
const PIECE_BYTES: usize = 64 * 1024;

/// The document's pieces, in order; an `Err` ends it unfinished (the download is then cut off,
/// and what was received is not valid JSON).
pub type Pieces = mpsc::Receiver<Result<Vec<u8>, String>>;

/// Starts writing `user`'s export; it holds `permit` until done.
pub fn start(
    directory: Arc<dyn Directory>,
    history: Arc<dyn MessageStore>,
    user: User,
    permit: OwnedSemaphorePermit,
) -> Pieces {
    let (tx, rx) = mpsc::channel(AHEAD);
    let span = tracing::info_span!("export", user = %user.id);
    tokio::spawn(tracing::Instrument::instrument(
        async move {
            let _permit = permit;
            let mut out = Writer {
                tx,
                buf: Vec::new(),
            };
            match write(directory.as_ref(), history.as_ref(), &user, &mut out).await {
                Ok(true) => tracing::info!("Export written."),
                Ok(false) => tracing::info!("Export abandoned by its download."),
                Err(e) => {
                    tracing::warn!(error = %e, "Export failed.");
                    let _ = out.tx.send(Err(e.to_string())).await;
                }
            }
        },
        span,
    ));
    rx
}

/// Collects bytes and hands them on in pieces.
struct Writer {
    tx: mpsc::Sender<Result<Vec<u8>, String>>,
    buf: Vec<u8>,
}

impl Writer {
    fn raw(&mut self, s: &str) {
        self.buf.extend_from_slice(s.as_bytes());
    }

    fn value(&mut self, v: &impl Serialize) -> Result<(), StoreError> {
        serde_json::to_writer(&mut self.buf, v)
            .map_err(|e| StoreError::Other(anyhow::anyhow!("writing the export: {e}")))
    }

    /// Sends what is collected once it is big enough (or `now`); false when the download is gone.
    async fn flush(&mut self, now: bool) -> bool {
        if self.buf.is_empty() || (!now && self.buf.len() < PIECE_BYTES) {
            return true;
        }
        let piece = std::mem::take(&mut self.buf);
        self.tx.send(Ok(piece)).await.is_ok()
    }
}

/// Writes the whole document; false when the download went away first.
async fn write(
    dir: &dyn Directory,
    history: &dyn MessageStore,
    user: &User,
    out: &mut Writer,
) -> Result<bool, StoreError> {
    let rooms = dir.rooms_of_user(user.id).await?;
    let notifications = dir.notifications(user.id, false, NOTIFICATIONS).await?;
    out.raw("{\"format\":\"livechat-export\",\"version\":1,\"exported_at\":");
    out.value(&crate::now().to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))?;
    out.raw(",\"user\":");
    out.value(&UserPublic::from(user))?;
    out.raw(",\"rooms\":[");
    for (i, (room, role, read)) in rooms.iter().enumerate() {
        let mut p = RoomPublic::from(room);
        p.name = room.name_for(&user.username);
        p.last_read_seq = Some(*read);
        if i > 0 {
            out.raw(",");
        }
        out.value(&json!({ "room": p, "role": role }))?;
    }
    out.raw("],\"notifications\":");
    let notifications: Vec<NotificationPublic> =
        notifications.iter().map(NotificationPublic::from).collect();
    out.value(&notifications)?;
    out.raw(",\"messages\":[");
    let mut first = true;
    for (room, ..) in &rooms {
        let mut after = 0;
        loop {
            let page = history.after_seq(room.id, after, PAGE).await?;
            for m in page.iter().filter(|m| m.user_id == user.id) {
                if !first {
                    out.raw(",");
                }
                first = false;
                out.value(&MessagePublic::from(m))?;
            }
            if !out.flush(false).await {
                return Ok(false);
            }
            match page.last() {
                Some(last) if page.len() == PAGE as usize => after = last.seq,
                _ => break,
            }
        }
    }
    out.raw("]}\n");
    Ok(out.flush(true).await)
}
