//! Login sessions in the directory's file (the default; Redis in distributed mode). Logins and
//! logouts queue their records in the same transaction.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use livechat_core::error::StoreResult;
use livechat_core::model::{OutboxRecord, Session};
use livechat_core::ports::SessionStore;
use livechat_core::to_ms;
use rusqlite::{params, OptionalExtension, Row};
use uuid::Uuid;

use super::db::{ts_col, uuid_col};
use super::directory::SqliteDirectory;

fn session_row(r: &Row<'_>) -> rusqlite::Result<Session> {
    Ok(Session {
        id: uuid_col(r, 0)?,
        user_id: uuid_col(r, 1)?,
        created_at: ts_col(r, 2)?,
        expires_at: ts_col(r, 3)?,
        absolute_expires_at: ts_col(r, 4)?,
    })
}

#[async_trait]
impl SessionStore for SqliteDirectory {
    async fn create_session(&self, s: &Session, outbox: Vec<OutboxRecord>) -> StoreResult<()> {
        let s = s.clone();
        self.write_recording(move |tx, q| {
            // Expired sessions are swept here, on the (rare) login path.
            tx.execute("DELETE FROM sessions WHERE expires_at < ?1 OR absolute_expires_at < ?1", params![to_ms(livechat_core::now())])?;
            tx.execute(
                "INSERT INTO sessions(id, user_id, created_at, expires_at, absolute_expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![s.id.to_string(), s.user_id.to_string(), to_ms(s.created_at), to_ms(s.expires_at), to_ms(s.absolute_expires_at)],
            )?;
            q.queue(tx, outbox)
        })
        .await
    }

    async fn session(&self, id: Uuid) -> StoreResult<Option<Session>> {
        self.db
            .read(move |c| {
                c.prepare_cached("SELECT id, user_id, created_at, expires_at, absolute_expires_at FROM sessions WHERE id = ?1")?
                    .query_row(params![id.to_string()], session_row)
                    .optional()
            })
            .await
    }

    async fn extend_session(&self, id: Uuid, expires_at: DateTime<Utc>) -> StoreResult<()> {
        self.db
            .write(move |tx| {
                tx.execute(
                    "UPDATE sessions SET expires_at = ?2 WHERE id = ?1",
                    params![id.to_string(), to_ms(expires_at)],
                )?;
                Ok(())
            })
            .await
    }

    async fn delete_session(&self, id: Uuid, outbox: Vec<OutboxRecord>) -> StoreResult<bool> {
        self.write_recording(move |tx, q| {
            let n = tx.execute(
                "DELETE FROM sessions WHERE id = ?1",
                params![id.to_string()],
            )?;
            if n == 1 {
                q.queue(tx, outbox)?;
            }
            Ok(n == 1)
        })
        .await
    }
}
