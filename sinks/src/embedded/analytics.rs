//! `analytics.db`: one row per event (primary key = event id, so a replay counts nothing twice)
//! and the seven views of the original, on event time.

use std::path::Path;
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use livechat_core::error::StoreResult;
use livechat_core::model::*;
use livechat_core::ports::AnalyticsStore;
use rusqlite::params;

use super::db::{checksum_query, uuid_col, Db, Durability};
use super::multi_insert::{bind_uuid, MultiInsert};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS analytics_events(
  event_id TEXT PRIMARY KEY, event_type TEXT NOT NULL, user_id TEXT, room_id TEXT,
  occurred_at INTEGER NOT NULL, payload TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS ae_by_type_room ON analytics_events(event_type, room_id, occurred_at);
CREATE INDEX IF NOT EXISTS ae_by_user ON analytics_events(user_id, event_type);
"#;

/// An event's row (several per statement: the events arrive in batches).
static INSERT: LazyLock<MultiInsert> = LazyLock::new(|| {
    MultiInsert::new(
        "INSERT OR IGNORE INTO analytics_events(event_id, event_type, user_id, room_id, occurred_at, payload)",
    )
});

pub struct SqliteAnalytics {
    db: Arc<Db>,
}

impl SqliteAnalytics {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        Ok(SqliteAnalytics {
            // A read model: `livechat replay` rebuilds it if a power loss cuts its tail.
            db: Db::open_with(path, SCHEMA, Durability::Normal)?,
        })
    }

    /// A new file to fill from scratch (`livechat replay --into`): no journal, no fsync.
    pub fn create_for_rebuild(path: &Path) -> anyhow::Result<Self> {
        anyhow::ensure!(!path.exists(), "{} already exists", path.display());
        Ok(SqliteAnalytics {
            db: Db::open_with(path, SCHEMA, Durability::Bulk)?,
        })
    }
}

fn stats_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RoomStats> {
    Ok(RoomStats {
        room_id: uuid_col(r, 0)?,
        total_messages: r.get(1)?,
        users_amount: r.get(2)?,
        last_updated: r.get::<_, Option<i64>>(3)?.map(livechat_core::from_ms),
    })
}

#[async_trait]
impl AnalyticsStore for SqliteAnalytics {
    async fn insert(&self, events: &[AnalyticsEvent]) -> StoreResult<()> {
        let events = events.to_vec();
        // `INSERT OR IGNORE` fails only when the database does: no savepoint (whose sub-journal
        // copied every page the batch touched).
        self.db
            .write_unguarded(move |tx| {
                INSERT.run(tx, &events, |stmt, at, e| {
                    bind_uuid(stmt, at, Some(e.event_id))?;
                    stmt.raw_bind_parameter(at + 1, &e.event_type)?;
                    bind_uuid(stmt, at + 2, e.user_id)?;
                    bind_uuid(stmt, at + 3, e.room_id)?;
                    stmt.raw_bind_parameter(at + 4, e.occurred_at.timestamp_millis())?;
                    stmt.raw_bind_parameter(at + 5, &e.payload)
                })
            })
            .await
    }

    async fn checksum(&self) -> StoreResult<Checksum> {
        self.db
            .read_blocking(|c| checksum_query(c, "SELECT event_id, event_type, user_id, room_id, occurred_at, payload FROM analytics_events ORDER BY event_id"))
            .await
    }

    async fn room_stats(&self, room: RoomId) -> StoreResult<RoomStats> {
        self.db
            .read_blocking(move |c| {
                c.prepare_cached(
                    "SELECT ?1, count(*), count(DISTINCT user_id), max(occurred_at) FROM analytics_events
                     WHERE room_id = ?1 AND event_type = 'MESSAGE_SENT'",
                )?
                .query_row(params![room.to_string()], stats_row)
            })
            .await
    }

    async fn user_activity(&self, user: UserId) -> StoreResult<UserActivity> {
        self.db
            .read_blocking(move |c| {
                c.prepare_cached(
                    "SELECT coalesce(sum(event_type = 'MESSAGE_SENT'), 0),
                            count(DISTINCT CASE WHEN event_type IN ('USER_JOINED_ROOM', 'JOIN_REQUEST_ACCEPTED') THEN room_id END)
                     FROM analytics_events WHERE user_id = ?1",
                )?
                .query_row(params![user.to_string()], |r| Ok(UserActivity { messages: r.get(0)?, rooms_joined: r.get(1)? }))
            })
            .await
    }

    async fn top_active_rooms(&self, limit: u32) -> StoreResult<Vec<RoomStats>> {
        self.db
            .read_blocking(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT room_id, count(*) AS n, count(DISTINCT user_id), max(occurred_at) FROM analytics_events
                     WHERE event_type = 'MESSAGE_SENT' AND room_id IS NOT NULL
                     GROUP BY room_id ORDER BY n DESC, max(occurred_at) DESC LIMIT ?1",
                )?;
                let rows = stmt.query_map(params![limit], stats_row)?;
                rows.collect()
            })
            .await
    }

    async fn messages_since(&self, room: RoomId, since: DateTime<Utc>) -> StoreResult<i64> {
        self.db
            .read_blocking(move |c| {
                c.prepare_cached(
                    "SELECT count(*) FROM analytics_events WHERE event_type = 'MESSAGE_SENT' AND room_id = ?1 AND occurred_at >= ?2",
                )?
                .query_row(params![room.to_string(), since.timestamp_millis()], |r| r.get(0))
            })
            .await
    }

    async fn retention(&self, since: DateTime<Utc>) -> StoreResult<f64> {
        self.db
            .read_blocking(move |c| {
                let (active, registered): (i64, i64) = c
                    .prepare_cached(
                        "SELECT (SELECT count(DISTINCT user_id) FROM analytics_events WHERE event_type = 'USER_LOGGED_IN' AND occurred_at >= ?1),
                                (SELECT count(DISTINCT user_id) FROM analytics_events WHERE event_type = 'USER_REGISTERED')",
                    )?
                    .query_row(params![since.timestamp_millis()], |r| Ok((r.get(0)?, r.get(1)?)))?;
                Ok(if registered == 0 { 0.0 } else { active as f64 * 100.0 / registered as f64 })
            })
            .await
    }

    async fn edit_delete_ratio(&self) -> StoreResult<EditDeleteRatio> {
        self.db
            .read_blocking(move |c| {
                let (sent, edited, deleted): (i64, i64, i64) = c
                    .prepare_cached(
                        "SELECT coalesce(sum(event_type = 'MESSAGE_SENT'), 0), coalesce(sum(event_type = 'MESSAGE_EDITED'), 0),
                                coalesce(sum(event_type = 'MESSAGE_DELETED'), 0)
                         FROM analytics_events WHERE event_type IN ('MESSAGE_SENT', 'MESSAGE_EDITED', 'MESSAGE_DELETED')",
                    )?
                    .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                let base = sent.max(1) as f64;
                Ok(EditDeleteRatio { edit_ratio: edited as f64 / base, delete_ratio: deleted as f64 / base })
            })
            .await
    }

    async fn top_social_users(&self, limit: u32) -> StoreResult<Vec<SocialUser>> {
        self.db
            .read_blocking(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT user_id, count(DISTINCT room_id) AS rooms, coalesce(sum(event_type = 'MESSAGE_SENT'), 0) AS messages
                     FROM analytics_events WHERE user_id IS NOT NULL
                     GROUP BY user_id ORDER BY rooms DESC, messages DESC LIMIT ?1",
                )?;
                let rows = stmt.query_map(params![limit], |r| Ok(SocialUser { user_id: uuid_col(r, 0)?, rooms: r.get(1)?, messages: r.get(2)? }))?;
                rows.collect()
            })
            .await
    }
}
