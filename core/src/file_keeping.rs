//! How long a file shared in a room is kept, and how it goes. Each room's file has one record
//! in the directory ([`Directory::hold_file`] and the calls after it):
//! - an upload **holds** it for `file_hold_secs` (every upload is a new hold);
//! - a message that carries it **claims** it, before the message is stored (a retry of the send
//!   with the same `client_msg_id` makes the same claim);
//! - a deleted message **releases** its claim;
//! - once nothing keeps it — no claim, and no hold since the last claim that has not run out —
//!   one process **takes** it for deletion, deletes its objects, then **forgets** it. Meanwhile
//!   an upload of the same file waits until it is forgotten and starts over, and a send naming
//!   it is refused as naming no file of the room.
//!
//! Deleting a message deletes its files at once (the request that deletes it does, when no
//! other message of the room carries them); an upload no message claimed is deleted by the
//! sweep ([`ChatService::sweep_files`]) once its hold runs out. Every step is one atomic change
//! of the record, so a file is never deleted under a message that claimed it, nor under an
//! upload still holding it. What can go wrong leaves a file kept, never one lost: a claim
//! whose message was not stored after all (the store failed), a release that failed.

use crate::error::{AppError, AppResult};
use crate::model::{MessageId, RoomId, StoredMessage, UserId};
use crate::service::ChatService;

/// A deletion taken this long ago and not finished (its process died midway) is taken again.
const STALE_DELETION_MS: i64 = 10 * 60 * 1000;
/// Files one sweep deletes at most (the next sweep goes on).
const SWEEP_MAX: usize = 200;
/// How long an upload waits for a deletion of the same file under way to finish.
const HOLD_ATTEMPTS: u32 = 40;
const HOLD_RETRY: std::time::Duration = std::time::Duration::from_millis(50);

/// The claim a message makes on its files: by its `client_msg_id` when it has one (a retry of
/// the send claims the same), else by its id.
pub(crate) fn claim_of(user: UserId, client_msg_id: Option<&str>, id: MessageId) -> String {
    match client_msg_id {
        Some(cid) => format!("{user}/{cid}"),
        None => id.to_string(),
    }
}

fn now_ms() -> i64 {
    crate::now().timestamp_millis()
}

impl ChatService {
    /// An upload holds its file in the room; waits while a deletion of it is under way.
    pub(crate) async fn hold_upload(&self, room: RoomId, key: &str) -> AppResult<()> {
        let hold_ms =
            i64::try_from(self.limits.file_hold_secs.saturating_mul(1000)).unwrap_or(i64::MAX / 2);
        for _ in 0..HOLD_ATTEMPTS {
            if self
                .dir()
                .hold_file(room, key, now_ms().saturating_add(hold_ms))
                .await?
            {
                return Ok(());
            }
            tokio::time::sleep(HOLD_RETRY).await;
        }
        Err(AppError::Unavailable(
            "this file is being deleted; upload it again in a moment".into(),
        ))
    }

    /// A deleted message gives up its files; those nothing else keeps are deleted now. Runs
    /// once the delete is stored, so a failure here only leaves files behind (logged).
    pub(crate) async fn release_files(&self, m: &StoredMessage) {
        let claim = claim_of(m.user_id, m.client_msg_id.as_deref(), m.id);
        for a in &m.attachments {
            let released = self
                .dir()
                .release_file(m.room_id, &a.meta.key, &claim)
                .await;
            let outcome = match released {
                Ok(()) => self
                    .delete_if_unkept(m.room_id, &a.meta.key)
                    .await
                    .map(|_| ()),
                Err(e) => Err(e.into()),
            };
            if let Err(e) = outcome {
                tracing::warn!(room = %m.room_id, key = %a.meta.key, error = %e,
                    "A deleted message's file was not deleted; the sweep tries again if nothing keeps it.");
            }
        }
    }

    /// Deletes the file if nothing keeps it (see the module docs); whether it did.
    async fn delete_if_unkept(&self, room: RoomId, key: &str) -> AppResult<bool> {
        let now = now_ms();
        if !self
            .dir()
            .take_file(room, key, now, now - STALE_DELETION_MS)
            .await?
        {
            return Ok(false);
        }
        self.delete_file_objects(room, key).await?;
        self.dir().forget_file(room, key).await?;
        metrics::counter!("livechat_files_deleted_total").increment(1);
        Ok(true)
    }

    /// Deletes the files nothing keeps any more: uploads whose hold ran out with no message
    /// claiming them, files whose release did not delete them, deletions a process left
    /// unfinished. Returns how many it deleted. Run every minute by each ingress process (they
    /// may run at once: each file is taken by one).
    pub async fn sweep_files(&self) -> AppResult<usize> {
        if self.ports.files.is_none() {
            return Ok(0);
        }
        let now = now_ms();
        let due = self
            .dir()
            .unkept_files(now, now - STALE_DELETION_MS, SWEEP_MAX)
            .await?;
        let mut deleted = 0;
        for (room, key) in due {
            if self.delete_if_unkept(room, &key).await? {
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}
