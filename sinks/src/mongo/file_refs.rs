//! Who keeps a room's shared files, on MongoDB (the protocol is in
//! `livechat_core::attachments`): one `room_files` document per (room, key) holding its holds,
//! its claims and whether it is taken for deletion. Each step is one single-document update
//! whose filter pins what the step decided on (the hold count, no claims, the taking time), so
//! a step that raced another matches nothing and is retried or refused — it never applies over
//! a state it did not see.

use livechat_core::error::{StoreError, StoreResult};
use livechat_core::model::RoomId;
use mongodb::bson::{doc, Bson, Document};
use mongodb::Collection;

use super::{db_err, id, is_duplicate, MongoDirectory};

/// A claim re-reads the document when a hold landed between its read and its update.
const CLAIM_ATTEMPTS: usize = 8;

fn doc_id(room: RoomId, key: &str) -> String {
    format!("{}:{key}", id(room))
}

fn taken_at(d: &Document) -> Option<i64> {
    d.get_i64("taken_at").ok()
}

/// Whether nothing keeps the file at `now`, or its deletion was taken before `stale`.
fn unkept(d: &Document, now: i64, stale: i64) -> bool {
    match taken_at(d) {
        Some(t) => t < stale,
        None => {
            let claims = d.get_array("claims").map(|c| c.len()).unwrap_or(0);
            let holds = d.get_i64("holds").unwrap_or(0);
            claims == 0
                && (d.get_i64("claimed").unwrap_or(0) >= holds
                    || d.get_i64("held_until").unwrap_or(0) < now)
        }
    }
}

impl MongoDirectory {
    fn room_files(&self) -> Collection<Document> {
        self.coll("room_files")
    }

    async fn file_record(&self, _id: &str) -> StoreResult<Option<Document>> {
        self.room_files()
            .find_one(doc! { "_id": _id })
            .await
            .map_err(db_err)
    }

    pub(super) async fn file_hold(&self, room: RoomId, key: &str, until: i64) -> StoreResult<bool> {
        let update = doc! {
            "$inc": { "holds": 1_i64 },
            "$max": { "held_until": until },
            "$setOnInsert": { "room_id": id(room), "key": key, "claimed": 0_i64, "claims": [] },
        };
        // A document taken for deletion does not match; the upsert then collides on `_id`.
        match self
            .room_files()
            .update_one(
                doc! { "_id": doc_id(room, key), "taken_at": Bson::Null },
                update,
            )
            .upsert(true)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_duplicate(&e) => Ok(false),
            Err(e) => Err(db_err(e)),
        }
    }

    pub(super) async fn file_claim(
        &self,
        room: RoomId,
        key: &str,
        claim: &str,
    ) -> StoreResult<bool> {
        let _id = doc_id(room, key);
        for _ in 0..CLAIM_ATTEMPTS {
            let Some(d) = self.file_record(&_id).await? else {
                return Ok(false);
            };
            if taken_at(&d).is_some() {
                return Ok(false);
            }
            let holds = d.get_i64("holds").unwrap_or(0);
            let done = self
                .room_files()
                .update_one(
                    doc! { "_id": &_id, "taken_at": Bson::Null, "holds": holds },
                    doc! { "$set": { "claimed": holds }, "$addToSet": { "claims": claim } },
                )
                .await
                .map_err(db_err)?;
            if done.matched_count == 1 {
                return Ok(true);
            }
        }
        Err(StoreError::Unavailable(anyhow::anyhow!(
            "claiming file {key} in room {room}: it kept changing"
        )))
    }

    pub(super) async fn file_release(
        &self,
        room: RoomId,
        key: &str,
        claim: &str,
    ) -> StoreResult<()> {
        self.room_files()
            .update_one(
                doc! { "_id": doc_id(room, key) },
                doc! { "$pull": { "claims": claim } },
            )
            .await
            .map_err(db_err)?;
        Ok(())
    }

    pub(super) async fn file_take(
        &self,
        room: RoomId,
        key: &str,
        now: i64,
        stale: i64,
    ) -> StoreResult<bool> {
        let _id = doc_id(room, key);
        let Some(d) = self.file_record(&_id).await? else {
            return Ok(false);
        };
        if !unkept(&d, now, stale) {
            return Ok(false);
        }
        // Pinned: the hold count (a new hold changes it, and with it `held_until`), no claims,
        // and the taking time a stale deletion had.
        let filter = match taken_at(&d) {
            Some(t) => doc! { "_id": &_id, "taken_at": t },
            None => doc! {
                "_id": &_id,
                "taken_at": Bson::Null,
                "holds": d.get_i64("holds").unwrap_or(0),
                "claims": { "$size": 0 },
            },
        };
        let done = self
            .room_files()
            .update_one(filter, doc! { "$set": { "taken_at": now } })
            .await
            .map_err(db_err)?;
        Ok(done.matched_count == 1)
    }

    pub(super) async fn files_unkept(
        &self,
        now: i64,
        stale: i64,
        max: usize,
    ) -> StoreResult<Vec<(RoomId, String)>> {
        use futures::TryStreamExt;
        let mut found = self
            .room_files()
            .find(doc! { "$or": [
                { "taken_at": Bson::Null, "claims": { "$size": 0 } },
                { "taken_at": { "$lt": stale } },
            ] })
            .await
            .map_err(db_err)?;
        let mut out = Vec::new();
        while let Some(d) = found.try_next().await.map_err(db_err)? {
            if out.len() >= max {
                break;
            }
            if !unkept(&d, now, stale) {
                continue;
            }
            let room = d.get_str("room_id").ok().and_then(|r| r.parse().ok());
            if let (Some(room), Ok(key)) = (room, d.get_str("key")) {
                out.push((room, key.to_string()));
            }
        }
        Ok(out)
    }

    /// Every document of the room: no claims, no hold. Each is its own update (what a
    /// concurrent step on one of them did is then overwritten whole or not at all).
    pub(super) async fn files_of_room_released(&self, room: RoomId) -> StoreResult<()> {
        self.room_files()
            .update_many(
                doc! { "room_id": id(room) },
                doc! { "$set": { "claims": [], "held_until": 0_i64 } },
            )
            .await
            .map_err(db_err)?;
        Ok(())
    }

    pub(super) async fn file_forget(&self, room: RoomId, key: &str) -> StoreResult<()> {
        self.room_files()
            .delete_one(doc! { "_id": doc_id(room, key), "taken_at": { "$ne": Bson::Null } })
            .await
            .map_err(db_err)?;
        Ok(())
    }
}
