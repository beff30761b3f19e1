//! Chooses the adapter of each port from the configuration (the only place that matches on
//! technology names).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use livechat_core::ports::{
    AnalyticsStore, Cache, Directory, EventLog, MessageStore, Outbox, Presence, SessionStore,
};
use livechat_sinks::embedded::{SqliteAnalytics, SqliteDirectory, SqliteHistory, SqliteLog};
use livechat_sinks::memory::MemoryCache;

use crate::config::{
    AnalyticsKind, CacheKind, Config, DirectoryKind, HistoryKind, LogKind, PresenceKind,
    SessionsKind,
};

/// The directory together with its outbox and (by default) the sessions: one adapter.
pub trait DirectoryStore: Directory + Outbox + SessionStore {}
impl<T: Directory + Outbox + SessionStore> DirectoryStore for T {}

/// The topic log: `log.db` in the data directory, or a Kafka-API broker.
pub async fn log(cfg: &Config) -> anyhow::Result<Arc<dyn EventLog>> {
    match cfg.log.kind {
        LogKind::Embedded => Ok(Arc::new(
            SqliteLog::open(&data_dir(cfg)?.join("log.db"), cfg.log.partitions)
                .context("opening the embedded log")?,
        )),
        #[cfg(feature = "kafka")]
        LogKind::Kafka => Ok(Arc::new(
            livechat_sinks::kafka::KafkaLog::connect(cfg.log.kafka.clone(), cfg.log.partitions)
                .await
                .with_context(|| format!("connecting to Kafka at {}", cfg.log.kafka.brokers))?,
        )),
        #[cfg(not(feature = "kafka"))]
        LogKind::Kafka => {
            anyhow::bail!("log.kind = \"kafka\" needs a build with `--features kafka`")
        }
    }
}

/// The message history: `history.db`, or Cassandra / ScyllaDB.
pub async fn history(cfg: &Config) -> anyhow::Result<Arc<dyn MessageStore>> {
    match cfg.history.kind {
        HistoryKind::Embedded => Ok(Arc::new(
            SqliteHistory::open(&data_dir(cfg)?.join("history.db"))
                .context("opening the embedded history")?,
        )),
        #[cfg(feature = "cassandra")]
        HistoryKind::Cassandra => Ok(Arc::new(
            livechat_sinks::cassandra::CassandraHistory::connect(cfg.history.cassandra.clone())
                .await
                .with_context(|| {
                    format!(
                        "connecting to Cassandra at {:?}",
                        cfg.history.cassandra.nodes
                    )
                })?,
        )),
        #[cfg(not(feature = "cassandra"))]
        HistoryKind::Cassandra => {
            anyhow::bail!("history.kind = \"cassandra\" needs a build with `--features cassandra`")
        }
    }
}

/// The analytics store: `analytics.db`, or ClickHouse.
pub async fn analytics(cfg: &Config) -> anyhow::Result<Arc<dyn AnalyticsStore>> {
    match cfg.analytics.kind {
        AnalyticsKind::Embedded => Ok(Arc::new(
            SqliteAnalytics::open(&data_dir(cfg)?.join("analytics.db"))
                .context("opening the embedded analytics")?,
        )),
        #[cfg(feature = "clickhouse")]
        AnalyticsKind::Clickhouse => Ok(Arc::new(
            livechat_sinks::clickhouse::ClickHouseAnalytics::connect(
                cfg.analytics.clickhouse.clone(),
            )
            .await
            .with_context(|| {
                format!(
                    "connecting to ClickHouse at {}",
                    cfg.analytics.clickhouse.url
                )
            })?,
        )),
        #[cfg(not(feature = "clickhouse"))]
        AnalyticsKind::Clickhouse => anyhow::bail!(
            "analytics.kind = \"clickhouse\" needs a build with `--features clickhouse`"
        ),
    }
}

/// The user cache: in-process, or memcached.
pub fn cache(cfg: &Config) -> anyhow::Result<Arc<dyn Cache>> {
    match cfg.cache.kind {
        CacheKind::Memory => Ok(Arc::new(MemoryCache::new(50_000))),
        #[cfg(feature = "memcached")]
        CacheKind::Memcached => Ok(Arc::new(
            livechat_sinks::memcached::MemcachedCache::connect(&cfg.cache.memcached)
                .context("setting up memcached")?,
        )),
        #[cfg(not(feature = "memcached"))]
        CacheKind::Memcached => {
            anyhow::bail!("cache.kind = \"memcached\" needs a build with `--features memcached`")
        }
    }
}

/// The directory (users, rooms, sessions, outbox): `directory.db`, or MongoDB / FerretDB.
pub async fn directory(cfg: &Config) -> anyhow::Result<Arc<dyn DirectoryStore>> {
    match cfg.directory.kind {
        DirectoryKind::Embedded => Ok(Arc::new(
            SqliteDirectory::open(&data_dir(cfg)?.join("directory.db"))
                .context("opening the directory")?,
        )),
        #[cfg(feature = "mongo")]
        DirectoryKind::Mongo => Ok(livechat_sinks::mongo::MongoDirectory::connect(
            &cfg.directory.mongo,
        )
        .await
        .with_context(|| {
            format!(
                "connecting to MongoDB at {} (database {})",
                cfg.directory.mongo.uri, cfg.directory.mongo.database
            )
        })?),
        #[cfg(not(feature = "mongo"))]
        DirectoryKind::Mongo => {
            anyhow::bail!("directory.kind = \"mongo\" needs a build with `--features mongo`")
        }
    }
}

/// Login sessions: beside the directory, or in Redis (records still go to the directory's outbox).
pub async fn sessions(
    cfg: &Config,
    directory: &Arc<dyn DirectoryStore>,
) -> anyhow::Result<Arc<dyn SessionStore>> {
    match cfg.sessions.kind {
        SessionsKind::Directory => Ok(directory.clone()),
        #[cfg(feature = "redis")]
        SessionsKind::Redis => {
            let redis = livechat_sinks::redis::Redis::connect(&cfg.sessions.redis)
                .await
                .context("connecting to Redis for sessions")?;
            let outbox: Arc<dyn Directory> = directory.clone();
            Ok(Arc::new(livechat_sinks::redis::RedisSessions::new(
                redis, outbox,
            )))
        }
        #[cfg(not(feature = "redis"))]
        SessionsKind::Redis => {
            anyhow::bail!("sessions.kind = \"redis\" needs a build with `--features redis`")
        }
    }
}

/// The shared presence store, when ingress runs as several processes.
pub async fn presence(cfg: &Config) -> anyhow::Result<Option<Arc<dyn Presence>>> {
    match cfg.presence.kind {
        PresenceKind::Local => Ok(None),
        #[cfg(feature = "redis")]
        PresenceKind::Redis => {
            let redis = livechat_sinks::redis::Redis::connect(&cfg.presence.redis)
                .await
                .context("connecting to Redis for presence")?;
            Ok(Some(Arc::new(livechat_sinks::redis::RedisPresence::new(
                redis,
            ))))
        }
        #[cfg(not(feature = "redis"))]
        PresenceKind::Redis => {
            anyhow::bail!("presence.kind = \"redis\" needs a build with `--features redis`")
        }
    }
}

fn data_dir(cfg: &Config) -> anyhow::Result<&Path> {
    let dir = Path::new(&cfg.data_dir);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Every store a process needs, each from its configured adapter.
pub struct Stores {
    pub directory: Arc<dyn DirectoryStore>,
    pub sessions: Arc<dyn SessionStore>,
    pub history: Arc<dyn MessageStore>,
    pub analytics: Arc<dyn AnalyticsStore>,
    pub cache: Arc<dyn Cache>,
}

pub async fn stores(cfg: &Config) -> anyhow::Result<Stores> {
    let directory = directory(cfg).await?;
    Ok(Stores {
        sessions: sessions(cfg, &directory).await?,
        directory,
        history: history(cfg).await?,
        analytics: analytics(cfg).await?,
        cache: cache(cfg)?,
    })
}
