//! Login sessions in MongoDB (used when no Redis is configured for sessions).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use livechat_core::error::StoreResult;
use livechat_core::model::{OutboxRecord, Session};
use livechat_core::ports::SessionStore;
use mongodb::bson::doc;
use uuid::Uuid;

use super::convert::{self, ms};
use super::{db_err, id, insert_outbox, live_id, with_outbox, MongoDirectory};

#[async_trait]
impl SessionStore for MongoDirectory {
    async fn create_session(&self, s: &Session, outbox: Vec<OutboxRecord>) -> StoreResult<()> {
        let sessions = self.coll("sessions");
        // Expired sessions are swept here, on the (rare) login path; tombstones wait for the relay.
        let now = ms(livechat_core::now());
        sessions
            .delete_many(doc! {
                "$or": [ { "expires_at": { "$lt": now } }, { "absolute_expires_at": { "$lt": now } } ],
                "_ords.0": { "$exists": false },
            })
            .await
            .map_err(db_err)?;
        sessions
            .insert_one(insert_outbox(convert::session_doc(s), &outbox))
            .await
            .map_err(db_err)?;
        self.queued("sessions", id(s.id));
        Ok(())
    }

    async fn session(&self, sid: Uuid) -> StoreResult<Option<Session>> {
        let filter = live_id(id(sid));
        self.coll("sessions")
            .find_one(filter)
            .projection(doc! { "_outbox": 0 })
            .await
            .map_err(db_err)?
            .map(convert::session)
            .transpose()
    }

    async fn extend_session(&self, sid: Uuid, expires_at: DateTime<Utc>) -> StoreResult<()> {
        let filter = live_id(id(sid));
        self.update_doc(
            "sessions",
            filter,
            doc! { "$set": { "expires_at": ms(expires_at) } },
        )
        .await?;
        Ok(())
    }

    async fn delete_session(&self, sid: Uuid, outbox: Vec<OutboxRecord>) -> StoreResult<bool> {
        let filter = live_id(id(sid));
        if outbox.is_empty() {
            let res = self
                .coll("sessions")
                .delete_one(doc! { "_id": id(sid), "_ords.0": { "$exists": false }, "_gone": { "$ne": true } })
                .await
                .map_err(db_err)?;
            if res.deleted_count == 1 {
                return Ok(true);
            }
        }
        // The records stay with a tombstone until the relay has them.
        let res = self
            .update_doc(
                "sessions",
                filter,
                with_outbox(doc! { "$set": { "_gone": true } }, &outbox),
            )
            .await?;
        self.queued("sessions", id(sid));
        Ok(res.modified_count == 1)
    }
}
