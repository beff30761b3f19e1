//! Analytics events and the seven views on ClickHouse, over HTTP with the `clickhouse` crate.
//!
//! Runs on Debian's ClickHouse 18.16 and on current servers, so the schema and queries use only
//! what both accept: times are epoch milliseconds in an `Int64` (18.16 has no `DateTime64`), ids
//! are `UUID` / `Nullable(UUID)`, and every aggregate over a nullable column is wrapped in
//! `ifNull(…, 0)` (18.16 types `uniqExact(Nullable)` as `Nullable(UInt64)`, current servers as
//! `UInt64`; the wrapper makes both `UInt64`, which row validation on current servers checks).
//!
//! Deduplication: the table is a `ReplacingMergeTree` whose key ends with the event id, so merges
//! eventually keep one row per event; until they do, a replayed event is a duplicate row, so
//! every view counts `uniqExact(event_id)` (never `count()`) or distinct users or rooms, which
//! duplicates cannot change, and the checksum reads with `FINAL`. An event is immutable (same id,
//! same content), so which copy survives a merge does not matter.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use clickhouse::error::Error as ChError;
use clickhouse::Client;
use livechat_core::error::{StoreError, StoreResult};
use livechat_core::model::*;
use livechat_core::ports::AnalyticsStore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use crate::config::ClickHouseConfig;

const TABLE: &str = "analytics_events";
/// Rows per INSERT statement when a call brings more.
const INSERT_CHUNK: usize = 50_000;

/// Sorted by type first (every view filters on it), then by event id, the dedup key. Partitioned
/// by month of event time so old months can be dropped whole.
const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS analytics_events (
    event_id UUID,
    event_type String,
    user_id Nullable(UUID),
    room_id Nullable(UUID),
    occurred_at Int64,
    payload String
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(toDateTime(intDiv(occurred_at, 1000)))
ORDER BY (event_type, event_id)";

#[derive(clickhouse::Row, Serialize, Deserialize)]
struct EventRow {
    #[serde(with = "clickhouse::serde::uuid")]
    event_id: Uuid,
    event_type: String,
    #[serde(with = "clickhouse::serde::uuid::option")]
    user_id: Option<Uuid>,
    #[serde(with = "clickhouse::serde::uuid::option")]
    room_id: Option<Uuid>,
    occurred_at: i64,
    payload: String,
}

/// A checksum row: ids rendered by the server as text, NULL kept as NULL. (Result columns are
/// aliased to names no table column has: ClickHouse resolves aliases in WHERE, and rejects an
/// alias that shadows the column its own expression reads.)
#[derive(clickhouse::Row, Deserialize)]
struct TextRow {
    id_text: String,
    event_type: String,
    user_text: Option<String>,
    room_text: Option<String>,
    occurred_at: i64,
    payload: String,
}

#[derive(clickhouse::Row, Deserialize)]
struct StatsRow {
    #[serde(with = "clickhouse::serde::uuid")]
    rid: Uuid,
    msgs: u64,
    users: u64,
    last_at: i64,
}

impl StatsRow {
    fn stats(self) -> RoomStats {
        RoomStats {
            room_id: self.rid,
            total_messages: self.msgs as i64,
            users_amount: self.users as i64,
            // No message: no time (max over nothing is 0 on ClickHouse, NULL on SQLite).
            last_updated: (self.msgs > 0).then(|| livechat_core::from_ms(self.last_at)),
        }
    }
}

#[derive(clickhouse::Row, Deserialize)]
struct SocialRow {
    #[serde(with = "clickhouse::serde::uuid")]
    uid: Uuid,
    rooms: u64,
    messages: u64,
}

/// ClickHouse error codes that mean "overloaded or unreachable now, retry later".
const RETRYABLE_CODES: &[u32] = &[
    159, // TIMEOUT_EXCEEDED
    202, // TOO_MANY_SIMULTANEOUS_QUERIES
    209, // SOCKET_TIMEOUT
    210, // NETWORK_ERROR
    241, // MEMORY_LIMIT_EXCEEDED
    252, // TOO_MANY_PARTS
];

/// The `Code: N` a server error starts with.
fn server_code(msg: &str) -> Option<u32> {
    let rest = &msg[msg.find("Code: ")? + 6..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

fn ch_err(e: ChError) -> StoreError {
    let retryable = match &e {
        ChError::Network(_) | ChError::TimedOut => true,
        ChError::BadResponse(msg) => server_code(msg).is_some_and(|c| RETRYABLE_CODES.contains(&c)),
        _ => false,
    };
    let e = anyhow::anyhow!("clickhouse: {e}");
    if retryable {
        StoreError::Unavailable(e)
    } else {
        StoreError::Other(e)
    }
}

/// A database name that is safe to splice into SQL.
fn valid_database(db: &str) -> bool {
    let mut chars = db.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The outcome of one request made while connecting, as a start-up error.
fn setup_step<T>(
    url: &str,
    what: &str,
    timeout: Duration,
    r: Result<Result<T, ChError>, tokio::time::error::Elapsed>,
) -> anyhow::Result<T> {
    match r {
        Ok(r) => r.map_err(|e| anyhow::anyhow!("clickhouse at {url}: {what}: {e}")),
        Err(_) => Err(anyhow::anyhow!(
            "clickhouse at {url}: {what}: no answer in {timeout:?}"
        )),
    }
}

pub struct ClickHouseAnalytics {
    client: Client,
    timeout: Duration,
}

impl ClickHouseAnalytics {
    /// Connects, creates the database and table if missing, and decides on row validation: on
    /// when configured and the server knows `RowBinaryWithNamesAndTypes`, off otherwise (18.16).
    pub async fn connect(cfg: ClickHouseConfig) -> anyhow::Result<ClickHouseAnalytics> {
        anyhow::ensure!(
            valid_database(&cfg.database),
            "clickhouse database {:?}: letters, digits and _ only",
            cfg.database
        );
        let mut base = Client::default().with_url(&cfg.url);
        if let Some(user) = &cfg.user {
            base = base.with_user(user);
        }
        if let Some(password) = &cfg.password {
            base = base.with_password(password);
        }
        let timeout = Duration::from_millis(cfg.request_timeout_ms.max(1));
        let url = cfg.url.as_str();
        let validation = cfg.validation
            && match tokio::time::timeout(
                timeout,
                base.clone()
                    .with_validation(true)
                    .query("SELECT toUInt8(1)")
                    .fetch_one::<u8>(),
            )
            .await
            {
                Ok(Err(ChError::BadResponse(msg))) if server_code(&msg) == Some(73) => {
                    tracing::warn!(
                        url,
                        "clickhouse server too old for row validation (no RowBinaryWithNamesAndTypes); validation off"
                    );
                    false
                }
                r => setup_step(url, "probing the server", timeout, r).map(|_| true)?,
            };
        let client = base.with_validation(validation);
        let create_db = format!("CREATE DATABASE IF NOT EXISTS {}", cfg.database);
        let r = tokio::time::timeout(timeout, client.query(&create_db).execute()).await;
        setup_step(url, "creating the database", timeout, r)?;
        let client = client.with_database(&cfg.database);
        let r = tokio::time::timeout(timeout, client.query(CREATE_TABLE).execute()).await;
        setup_step(url, "creating the table", timeout, r)?;
        Ok(ClickHouseAnalytics { client, timeout })
    }

    /// Runs a request within the timeout; a server that does not answer is unavailable.
    async fn within<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, ChError>>,
    ) -> StoreResult<T> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r.map_err(ch_err),
            Err(_) => Err(StoreError::Unavailable(anyhow::anyhow!(
                "clickhouse: no answer in {:?}",
                self.timeout
            ))),
        }
    }

    async fn insert_chunk(&self, events: &[AnalyticsEvent]) -> Result<(), ChError> {
        let mut insert = self
            .client
            .insert::<EventRow>(TABLE)
            .await?
            .with_timeouts(Some(self.timeout), Some(self.timeout));
        for e in events {
            insert
                .write(&EventRow {
                    event_id: e.event_id,
                    event_type: e.event_type.clone(),
                    user_id: e.user_id,
                    room_id: e.room_id,
                    occurred_at: e.occurred_at.timestamp_millis(),
                    payload: e.payload.clone(),
                })
                .await?;
        }
        insert.end().await
    }
}

#[async_trait]
impl AnalyticsStore for ClickHouseAnalytics {
    /// One INSERT per call (per 50,000 events): a batch lands in one part.
    async fn insert(&self, events: &[AnalyticsEvent]) -> StoreResult<()> {
        for chunk in events.chunks(INSERT_CHUNK) {
            self.within(self.insert_chunk(chunk)).await?;
        }
        Ok(())
    }

    async fn room_stats(&self, room: RoomId) -> StoreResult<RoomStats> {
        let row: StatsRow = self
            .within(
                self.client
                    .query(
                        "SELECT toUUID(?) AS rid, uniqExact(event_id) AS msgs,
                                ifNull(uniqExact(user_id), 0) AS users, max(occurred_at) AS last_at
                         FROM analytics_events
                         WHERE event_type = 'MESSAGE_SENT' AND room_id = toUUID(?)",
                    )
                    .bind(room.to_string())
                    .bind(room.to_string())
                    .fetch_one(),
            )
            .await?;
        Ok(row.stats())
    }

    async fn user_activity(&self, user: UserId) -> StoreResult<UserActivity> {
        let (messages, rooms): (u64, u64) = self
            .within(
                self.client
                    .query(
                        "SELECT uniqExactIf(event_id, event_type = 'MESSAGE_SENT'),
                                ifNull(uniqExactIf(room_id, event_type IN ('USER_JOINED_ROOM', 'JOIN_REQUEST_ACCEPTED')), 0)
                         FROM analytics_events WHERE user_id = toUUID(?)",
                    )
                    .bind(user.to_string())
                    .fetch_one(),
            )
            .await?;
        Ok(UserActivity {
            messages: messages as i64,
            rooms_joined: rooms as i64,
        })
    }

    async fn top_active_rooms(&self, limit: u32) -> StoreResult<Vec<RoomStats>> {
        let rows: Vec<StatsRow> = self
            .within(
                self.client
                    .query(
                        "SELECT assumeNotNull(room_id) AS rid, uniqExact(event_id) AS msgs,
                                ifNull(uniqExact(user_id), 0) AS users, max(occurred_at) AS last_at
                         FROM analytics_events
                         WHERE event_type = 'MESSAGE_SENT' AND isNotNull(room_id)
                         GROUP BY rid ORDER BY msgs DESC, last_at DESC LIMIT ?",
                    )
                    .bind(limit)
                    .fetch_all(),
            )
            .await?;
        Ok(rows.into_iter().map(StatsRow::stats).collect())
    }

    async fn messages_since(&self, room: RoomId, since: DateTime<Utc>) -> StoreResult<i64> {
        let n: u64 = self
            .within(
                self.client
                    .query(
                        "SELECT uniqExact(event_id) FROM analytics_events
                         WHERE event_type = 'MESSAGE_SENT' AND room_id = toUUID(?) AND occurred_at >= ?",
                    )
                    .bind(room.to_string())
                    .bind(since.timestamp_millis())
                    .fetch_one(),
            )
            .await?;
        Ok(n as i64)
    }

    async fn retention(&self, since: DateTime<Utc>) -> StoreResult<f64> {
        let (active, registered): (u64, u64) = self
            .within(
                self.client
                    .query(
                        "SELECT ifNull(uniqExactIf(user_id, event_type = 'USER_LOGGED_IN' AND occurred_at >= ?), 0),
                                ifNull(uniqExactIf(user_id, event_type = 'USER_REGISTERED'), 0)
                         FROM analytics_events WHERE event_type IN ('USER_LOGGED_IN', 'USER_REGISTERED')",
                    )
                    .bind(since.timestamp_millis())
                    .fetch_one(),
            )
            .await?;
        Ok(if registered == 0 {
            0.0
        } else {
            active as f64 * 100.0 / registered as f64
        })
    }

    async fn edit_delete_ratio(&self) -> StoreResult<EditDeleteRatio> {
        let (sent, edited, deleted): (u64, u64, u64) = self
            .within(
                self.client
                    .query(
                        "SELECT uniqExactIf(event_id, event_type = 'MESSAGE_SENT'),
                                uniqExactIf(event_id, event_type = 'MESSAGE_EDITED'),
                                uniqExactIf(event_id, event_type = 'MESSAGE_DELETED')
                         FROM analytics_events
                         WHERE event_type IN ('MESSAGE_SENT', 'MESSAGE_EDITED', 'MESSAGE_DELETED')",
                    )
                    .fetch_one(),
            )
            .await?;
        let base = sent.max(1) as f64;
        Ok(EditDeleteRatio {
            edit_ratio: edited as f64 / base,
            delete_ratio: deleted as f64 / base,
        })
    }

    async fn top_social_users(&self, limit: u32) -> StoreResult<Vec<SocialUser>> {
        let rows: Vec<SocialRow> = self
            .within(
                self.client
                    .query(
                        "SELECT assumeNotNull(user_id) AS uid, ifNull(uniqExact(room_id), 0) AS rooms,
                                uniqExactIf(event_id, event_type = 'MESSAGE_SENT') AS messages
                         FROM analytics_events WHERE isNotNull(user_id)
                         GROUP BY uid ORDER BY rooms DESC, messages DESC LIMIT ?",
                    )
                    .bind(limit)
                    .fetch_all(),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| SocialUser {
                user_id: r.uid,
                rooms: r.rooms as i64,
                messages: r.messages as i64,
            })
            .collect())
    }

    /// The rows in the text form of the SQLite adapter's `checksum_query` (`|` between columns,
    /// NULL as `\N`, times as epoch milliseconds), ordered by the id's text like SQLite's
    /// `ORDER BY event_id` (ClickHouse orders `UUID` values differently), one row per event.
    /// Streamed, and without the per-request timeout: it reads the whole table.
    async fn checksum(&self) -> StoreResult<Checksum> {
        let digest = async {
            let mut cursor = self
                .client
                .query(
                    "SELECT toString(event_id) AS id_text, event_type, toString(user_id) AS user_text,
                            toString(room_id) AS room_text, occurred_at, payload
                     FROM analytics_events FINAL ORDER BY id_text",
                )
                .fetch::<TextRow>()?;
            let mut h = Sha256::new();
            let mut n = 0u64;
            while let Some(r) = cursor.next().await? {
                let line = [
                    r.id_text,
                    r.event_type,
                    r.user_text.unwrap_or_else(|| "\\N".into()),
                    r.room_text.unwrap_or_else(|| "\\N".into()),
                    r.occurred_at.to_string(),
                    r.payload,
                ]
                .join("|");
                h.update(line.as_bytes());
                h.update(b"\n");
                n += 1;
            }
            let sha256 = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
            Ok::<_, ChError>(Checksum { rows: n, sha256 })
        };
        digest.await.map_err(ch_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_codes_and_names() {
        assert_eq!(
            server_code("Code: 202, e.displayText() = DB::Exception: Too many"),
            Some(202)
        );
        assert_eq!(
            server_code("bad response: Code: 73. DB::Exception: Unknown format"),
            Some(73)
        );
        assert_eq!(server_code("no code"), None);
        assert!(valid_database("livechat_1") && valid_database("_x"));
        assert!(!valid_database("a-b") && !valid_database("") && !valid_database("x; DROP"));
    }
}
