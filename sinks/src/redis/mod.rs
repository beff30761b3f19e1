//! Sessions and cross-process presence on Redis (`redis` crate, one `ConnectionManager` that
//! reconnects by itself; every call bounded by a response timeout).
//!
//! - A session is one key, `<ns>session:<id>`, holding the session as JSON, expiring with it
//!   (`PXAT` at the earlier of its sliding and absolute expiry). Its outbox records (login and
//!   logout events) go to the directory's outbox: written before the key changes, so a crash in
//!   between leaves an event for a change a retry completes, never a change without its event.
//! - Presence is one sorted set per room, `<ns>presence:<room>`, members `<user>|<node>` scored
//!   by expiry (ms). Each ingress process republishes its own users every few seconds; readers
//!   count members whose expiry is in the future, so a crashed process's users fade out.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use livechat_core::error::{StoreError, StoreResult};
use livechat_core::model::{OutboxRecord, RoomId, Session, UserId};
use livechat_core::ports::{Directory, Presence, SessionStore};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use uuid::Uuid;

pub use crate::config::RedisConfig;

/// A bound on every command, so a stalled Redis cannot stall requests.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// One connection manager, shared by the sessions and presence adapters.
#[derive(Clone)]
pub struct Redis {
    conn: ConnectionManager,
    ns: String,
}

impl Redis {
    pub async fn connect(cfg: &RedisConfig) -> anyhow::Result<Redis> {
        let client = redis::Client::open(cfg.url.as_str())
            .map_err(|e| anyhow::anyhow!("parsing the Redis URL: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(3);
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| anyhow::anyhow!("Redis at {} does not answer: {e}", cfg.url))?;
        Ok(Redis {
            conn,
            ns: cfg.namespace.clone(),
        })
    }

    fn key(&self, kind: &str, id: impl std::fmt::Display) -> String {
        format!("{}{kind}:{id}", self.ns)
    }

    async fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> StoreResult<T> {
        let mut conn = self.conn.clone();
        cmd.query_async(&mut conn).await.map_err(redis_err)
    }
}

fn redis_err(e: redis::RedisError) -> StoreError {
    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() {
        StoreError::Unavailable(anyhow::anyhow!("Redis: {e}"))
    } else {
        StoreError::Other(anyhow::anyhow!("Redis: {e}"))
    }
}

/// Login sessions in Redis; their records go to the directory's outbox.
pub struct RedisSessions {
    redis: Redis,
    outbox: Arc<dyn Directory>,
}

impl RedisSessions {
    pub fn new(redis: Redis, outbox: Arc<dyn Directory>) -> Self {
        RedisSessions { redis, outbox }
    }

    async fn put(&self, s: &Session, only_if_exists: bool) -> StoreResult<()> {
        let body = serde_json::to_string(&SessionJson::from(s))
            .map_err(|e| StoreError::Other(anyhow::anyhow!("encoding a session: {e}")))?;
        let until = s.expires_at.min(s.absolute_expires_at).timestamp_millis();
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.redis.key("session", s.id))
            .arg(body)
            .arg("PXAT")
            .arg(until.max(1));
        if only_if_exists {
            cmd.arg("XX");
        }
        let _: Option<String> = self.redis.run(&cmd).await?;
        Ok(())
    }
}

/// The stored form of a session (times in ms).
#[derive(serde::Serialize, serde::Deserialize)]
struct SessionJson {
    id: Uuid,
    user_id: Uuid,
    created_at: i64,
    expires_at: i64,
    absolute_expires_at: i64,
}

impl From<&Session> for SessionJson {
    fn from(s: &Session) -> Self {
        SessionJson {
            id: s.id,
            user_id: s.user_id,
            created_at: s.created_at.timestamp_millis(),
            expires_at: s.expires_at.timestamp_millis(),
            absolute_expires_at: s.absolute_expires_at.timestamp_millis(),
        }
    }
}

impl From<SessionJson> for Session {
    fn from(s: SessionJson) -> Self {
        Session {
            id: s.id,
            user_id: s.user_id,
            created_at: livechat_core::from_ms(s.created_at),
            expires_at: livechat_core::from_ms(s.expires_at),
            absolute_expires_at: livechat_core::from_ms(s.absolute_expires_at),
        }
    }
}

#[async_trait]
impl SessionStore for RedisSessions {
    async fn create_session(&self, s: &Session, outbox: Vec<OutboxRecord>) -> StoreResult<()> {
        self.outbox.enqueue(outbox).await?;
        self.put(s, false).await
    }

    async fn session(&self, id: Uuid) -> StoreResult<Option<Session>> {
        let body: Option<String> = self
            .redis
            .run(redis::cmd("GET").arg(self.redis.key("session", id)))
            .await?;
        match body {
            None => Ok(None),
            Some(b) => serde_json::from_str::<SessionJson>(&b)
                .map(|s| Some(s.into()))
                .map_err(|e| {
                    StoreError::Other(anyhow::anyhow!("malformed session {id} in Redis: {e}"))
                }),
        }
    }

    async fn extend_session(&self, id: Uuid, expires_at: DateTime<Utc>) -> StoreResult<()> {
        let Some(mut s) = self.session(id).await? else {
            return Ok(());
        };
        s.expires_at = expires_at;
        // XX: a session deleted meanwhile (logout) is not brought back.
        self.put(&s, true).await
    }

    async fn delete_session(&self, id: Uuid, outbox: Vec<OutboxRecord>) -> StoreResult<bool> {
        let key = self.redis.key("session", id);
        let exists: bool = self.redis.run(redis::cmd("EXISTS").arg(&key)).await?;
        if !exists {
            return Ok(false);
        }
        self.outbox.enqueue(outbox).await?;
        let deleted: i64 = self.redis.run(redis::cmd("DEL").arg(&key)).await?;
        Ok(deleted == 1)
    }
}

/// Presence across ingress processes.
pub struct RedisPresence {
    redis: Redis,
}

impl RedisPresence {
    pub fn new(redis: Redis) -> Self {
        RedisPresence { redis }
    }
}

#[async_trait]
impl Presence for RedisPresence {
    async fn publish(
        &self,
        node: Uuid,
        online: &[(RoomId, Vec<UserId>)],
        gone: &[(RoomId, Vec<UserId>)],
        ttl_ms: i64,
    ) -> StoreResult<()> {
        let now = livechat_core::now().timestamp_millis();
        let until = now + ttl_ms;
        let mut pipe = redis::pipe();
        let mut commands = 0;
        for (room, users) in gone {
            let key = self.redis.key("presence", room);
            for u in users {
                pipe.cmd("ZREM")
                    .arg(&key)
                    .arg(format!("{u}|{node}"))
                    .ignore();
                commands += 1;
            }
        }
        for (room, users) in online {
            if users.is_empty() {
                continue;
            }
            let key = self.redis.key("presence", room);
            let mut zadd = redis::cmd("ZADD");
            zadd.arg(&key);
            for u in users {
                zadd.arg(until).arg(format!("{u}|{node}"));
            }
            pipe.add_command(zadd).ignore();
            // Expired members of crashed processes, and the key itself once nobody refreshes it.
            pipe.cmd("ZREMRANGEBYSCORE")
                .arg(&key)
                .arg("-inf")
                .arg(now)
                .ignore();
            pipe.cmd("PEXPIRE").arg(&key).arg(ttl_ms * 2).ignore();
            commands += 3;
        }
        if commands == 0 {
            return Ok(());
        }
        let mut conn = self.redis.conn.clone();
        pipe.query_async::<()>(&mut conn).await.map_err(redis_err)
    }

    async fn online(&self, room: RoomId) -> StoreResult<Vec<UserId>> {
        let now = livechat_core::now().timestamp_millis();
        let members: Vec<String> = self
            .redis
            .run(
                redis::cmd("ZRANGE")
                    .arg(self.redis.key("presence", room))
                    .arg(format!("({now}"))
                    .arg("+inf")
                    .arg("BYSCORE"),
            )
            .await?;
        let mut users: Vec<UserId> = members
            .iter()
            .filter_map(|m| m.split('|').next().and_then(|u| Uuid::parse_str(u).ok()))
            .collect();
        users.sort();
        users.dedup();
        Ok(users)
    }
}
