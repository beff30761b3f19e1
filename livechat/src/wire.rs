//! Chooses the adapter of each port from the configuration: the only place that matches on
//! technology names (the serving roles and `livechat replay` both open their stores here).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use livechat_core::keyring::Keyring;
use livechat_core::ports::{
    AnalyticsStore, Cache, Directory, EventLog, FileStore, MessageStore, Outbox, Presence,
    SearchIndex, Sequencing, SessionStore, WriteThrough,
};
use livechat_processors::Durable;
use livechat_sinks::embedded::{
    EmbeddedStore, HistoryMapping, NotificationsMapping, ReadModelMappings, SqliteAnalytics,
    SqliteDirectory, SqliteHistory, SqliteLog, SqliteSearch,
};
use livechat_sinks::files::LocalFiles;
use livechat_sinks::memory::MemoryCache;

use crate::config::{
    AnalyticsKind, CacheKind, Config, DirectoryKind, FilesKind, HistoryKind, LogKind, PresenceKind,
    SessionsKind,
};

/// The directory together with its outbox and (by default) the sessions: one adapter.
pub trait DirectoryStore: Directory + Outbox + SessionStore {}
impl<T: Directory + Outbox + SessionStore> DirectoryStore for T {}

/// Whether the directory and the log share the embedded store's single file (the default): a
/// change and its records then commit together with no outbox and no relay, the notifications
/// are kept inline and the history (when embedded too) right behind the log, not by consumers.
pub fn colocated(cfg: &Config) -> bool {
    cfg.directory.kind == DirectoryKind::Embedded && cfg.log.kind == LogKind::Embedded
}

/// The durable processors whose read models the embedded store keeps itself (they do not run
/// as consumers; `livechat replay` still rebuilds them with their own code).
pub fn inline_processors(cfg: &Config) -> Vec<Durable> {
    if !colocated(cfg) {
        return Vec::new();
    }
    let mut kept = vec![Durable::Notifications];
    if cfg.history.kind == HistoryKind::Embedded {
        kept.push(Durable::History);
    }
    kept
}

/// The embedded store of the configured data directory, opened once per process.
fn embedded_store(cfg: &Config) -> anyhow::Result<Arc<EmbeddedStore>> {
    static OPEN: std::sync::Mutex<Vec<(std::path::PathBuf, Arc<EmbeddedStore>)>> =
        std::sync::Mutex::new(Vec::new());
    let dir = data_dir(cfg)?.to_path_buf();
    let mut open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, store)) = open.iter().find(|(d, _)| *d == dir) {
        return Ok(store.clone());
    }
    let kept = ReadModelMappings {
        history: (cfg.history.kind == HistoryKind::Embedded)
            .then_some(livechat_processors::history::history_op as HistoryMapping),
        notifications: Some(
            livechat_processors::notifications::notifications_for as NotificationsMapping,
        ),
    };
    let store = Arc::new(
        EmbeddedStore::open(&dir, cfg.log.partitions, kept)
            .with_context(|| format!("opening {}", EmbeddedStore::path(&dir).display()))?,
    );
    open.push((dir, store.clone()));
    Ok(store)
}

/// The topic log: the embedded store's, `log.db` in the data directory, or a Kafka-API broker.
pub async fn log(cfg: &Config) -> anyhow::Result<Arc<dyn EventLog>> {
    match cfg.log.kind {
        LogKind::Embedded if colocated(cfg) => Ok(Arc::new(embedded_store(cfg)?.log.clone())),
        LogKind::Embedded => Ok(Arc::new(
            SqliteLog::open(&data_dir(cfg)?.join("log.db"), cfg.log.partitions)
                .context("opening the embedded log")?,
        )),
        #[cfg(feature = "kafka")]
        LogKind::Kafka => Ok(kafka_log(cfg).await?),
        #[cfg(not(feature = "kafka"))]
        LogKind::Kafka => {
            anyhow::bail!("log.kind = \"kafka\" needs a build with `--features kafka`")
        }
    }
}

/// The Kafka log, connected once per process (the log, the send path and the sequencer share it).
#[cfg(feature = "kafka")]
async fn kafka_log(cfg: &Config) -> anyhow::Result<Arc<livechat_sinks::kafka::KafkaLog>> {
    use livechat_sinks::kafka::KafkaLog;
    static OPEN: tokio::sync::Mutex<Vec<(String, Arc<KafkaLog>)>> =
        tokio::sync::Mutex::const_new(Vec::new());
    let k = &cfg.log.kafka;
    let key = format!("{}|{}", k.brokers, k.namespace);
    let mut open = OPEN.lock().await;
    if let Some((_, log)) = open.iter().find(|(o, _)| *o == key) {
        return Ok(log.clone());
    }
    let log = Arc::new(
        KafkaLog::connect(k.clone(), cfg.log.partitions)
            .await
            .with_context(|| format!("connecting to Kafka at {}", k.brokers))?,
    );
    open.push((key, log.clone()));
    Ok(log)
}

/// Where sends get their seqs when the directory does not assign them: with the log on Kafka,
/// the sequencers behind the commands topic (the directory's seqs would put a database round
/// trip on every message, and several ingress processes share the rooms).
pub async fn sequencing(cfg: &Config) -> anyhow::Result<Option<Arc<dyn Sequencing>>> {
    match cfg.log.kind {
        LogKind::Embedded => Ok(None),
        #[cfg(feature = "kafka")]
        LogKind::Kafka => {
            let sends = livechat_sinks::kafka::KafkaSends::start(kafka_log(cfg).await?).await?;
            Ok(Some(sends))
        }
        #[cfg(not(feature = "kafka"))]
        LogKind::Kafka => {
            anyhow::bail!("log.kind = \"kafka\" needs a build with `--features kafka`")
        }
    }
}

/// A running sequencer's thread, and the identity it holds while it runs.
#[cfg_attr(not(feature = "kafka"), allow(dead_code))] // only the log on Kafka has sequencers
pub struct Sequencer {
    pub thread: std::thread::JoinHandle<()>,
    #[cfg(feature = "kafka")]
    _instance: crate::instance::Instance,
}

/// Starts this process's sequencer when sends are sequenced on the log (see [`sequencing`]);
/// it stops once `stop` is set.
pub async fn start_sequencer(
    cfg: &Config,
    directory: Arc<dyn Directory>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<Option<Sequencer>> {
    match cfg.log.kind {
        LogKind::Embedded => {
            let _ = (directory, stop);
            Ok(None)
        }
        #[cfg(feature = "kafka")]
        LogKind::Kafka => {
            let instance = crate::instance::Instance::claim(
                cfg.log.kafka.instance_id.as_deref(),
                data_dir(cfg)?,
            )
            .context("claiming this process's sequencer identity")?;
            let thread = livechat_sinks::kafka::spawn_sequencer(
                kafka_log(cfg).await?,
                directory,
                &instance.id,
                stop,
            )?;
            Ok(Some(Sequencer {
                thread,
                _instance: instance,
            }))
        }
        #[cfg(not(feature = "kafka"))]
        LogKind::Kafka => {
            anyhow::bail!("log.kind = \"kafka\" needs a build with `--features kafka`")
        }
    }
}

/// The message history: the embedded store's, `history.db`, or Cassandra / ScyllaDB.
pub async fn history(cfg: &Config) -> anyhow::Result<Arc<dyn MessageStore>> {
    match cfg.history.kind {
        HistoryKind::Embedded if colocated(cfg) => Ok(embedded_store(cfg)?.history.clone()),
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

/// Where files shared in rooms are kept: a local directory, or an S3-compatible bucket.
pub fn files(cfg: &Config) -> anyhow::Result<Arc<dyn FileStore>> {
    match cfg.files.kind {
        FilesKind::Local => Ok(Arc::new(
            LocalFiles::open(cfg.files.path(&cfg.data_dir))
                .context("opening the shared files' directory")?,
        )),
        #[cfg(feature = "s3")]
        FilesKind::S3 => Ok(Arc::new(
            livechat_sinks::files::S3Files::open(&cfg.files.s3).context("setting up S3")?,
        )),
        #[cfg(not(feature = "s3"))]
        FilesKind::S3 => anyhow::bail!("files.kind = \"s3\" needs a build with `--features s3`"),
    }
}

/// The directory (users, rooms, sessions, outbox): the embedded store's, `directory.db`, or
/// MongoDB / FerretDB.
pub async fn directory(cfg: &Config) -> anyhow::Result<Arc<dyn DirectoryStore>> {
    match cfg.directory.kind {
        DirectoryKind::Embedded if colocated(cfg) => Ok(embedded_store(cfg)?.directory.clone()),
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

/// The content keys (see `livechat_core::keyring`): the embedded store holds every key from
/// its open on; any other directory is asked for the keys as records need them.
pub fn keyring(cfg: &Config, directory: &Arc<dyn DirectoryStore>) -> anyhow::Result<Arc<Keyring>> {
    if cfg.directory.kind == DirectoryKind::Embedded && colocated(cfg) {
        return Ok(embedded_store(cfg)?.keyring.clone());
    }
    let keyring = Keyring::fetching();
    keyring.attach(directory.clone());
    Ok(keyring)
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
    /// The search index this process keeps: `search.db` in the data directory, in both modes
    /// (every process that answers searches keeps one, fed from the log).
    pub search: Arc<SqliteSearch>,
    /// The content keys that seal and open what people write.
    pub keyring: Arc<Keyring>,
}

pub async fn stores(cfg: &Config) -> anyhow::Result<Stores> {
    let directory = directory(cfg).await?;
    Ok(Stores {
        keyring: keyring(cfg, &directory)?,
        sessions: sessions(cfg, &directory).await?,
        directory,
        history: history(cfg).await?,
        analytics: analytics(cfg).await?,
        cache: cache(cfg)?,
        search: Arc::new(search(cfg)?),
    })
}

/// The search index of this process: `search.db` in the data directory.
pub fn search(cfg: &Config) -> anyhow::Result<SqliteSearch> {
    SqliteSearch::open(&data_dir(cfg)?.join("search.db")).context("opening the search index")
}

/// The log of an existing deployment: for the embedded log, its file must already exist (a
/// replay against a mistyped `--data-dir` fails instead of creating an empty log).
pub async fn existing_log(cfg: &Config) -> anyhow::Result<Arc<dyn EventLog>> {
    if cfg.log.kind == LogKind::Embedded {
        let dir = Path::new(&cfg.data_dir);
        let file = if colocated(cfg) {
            EmbeddedStore::path(dir)
        } else {
            dir.join("log.db")
        };
        anyhow::ensure!(
            file.exists(),
            "no log at {}: is --data-dir right?",
            file.display()
        );
    }
    log(cfg).await
}

/// A read model `livechat replay` rebuilds: the store a durable processor keeps.
pub enum ReadModel {
    History(Arc<dyn MessageStore>),
    Analytics(Arc<dyn AnalyticsStore>),
    Notifications(Arc<dyn Directory>),
    Search(Arc<dyn SearchIndex>),
}

/// The live read model the configuration names.
pub async fn read_model(kind: Durable, cfg: &Config) -> anyhow::Result<ReadModel> {
    Ok(match kind {
        Durable::History => ReadModel::History(history(cfg).await?),
        Durable::Analytics => ReadModel::Analytics(analytics(cfg).await?),
        Durable::Notifications => ReadModel::Notifications(directory(cfg).await?),
        Durable::Search => ReadModel::Search(Arc::new(search(cfg)?)),
    })
}

/// A read model in a SQLite file of its own (`replay --into`). A new file is filled without
/// journal or fsync (a crash leaves a partial file to delete; nothing depends on it until the
/// replay is done); an existing one is opened as usual.
pub fn read_model_file(kind: Durable, path: &Path) -> anyhow::Result<ReadModel> {
    let fresh = !path.exists();
    Ok(match kind {
        Durable::History if fresh => {
            ReadModel::History(Arc::new(SqliteHistory::create_for_rebuild(path)?))
        }
        Durable::History => ReadModel::History(Arc::new(SqliteHistory::open(path)?)),
        Durable::Analytics if fresh => {
            ReadModel::Analytics(Arc::new(SqliteAnalytics::create_for_rebuild(path)?))
        }
        Durable::Analytics => ReadModel::Analytics(Arc::new(SqliteAnalytics::open(path)?)),
        Durable::Notifications => ReadModel::Notifications(Arc::new(SqliteDirectory::open(path)?)),
        Durable::Search if fresh => {
            ReadModel::Search(Arc::new(SqliteSearch::create_for_rebuild(path)?))
        }
        Durable::Search => ReadModel::Search(Arc::new(SqliteSearch::open(path)?)),
    })
}

/// How the live read model is named in messages (a file, a keyspace, a database).
pub fn read_model_name(kind: Durable, cfg: &Config) -> String {
    let data = Path::new(&cfg.data_dir);
    match kind {
        Durable::History => match cfg.history.kind {
            HistoryKind::Cassandra => {
                format!("cassandra keyspace {}", cfg.history.cassandra.keyspace)
            }
            HistoryKind::Embedded => EmbeddedStore::history_path(data).display().to_string(),
        },
        Durable::Analytics => match cfg.analytics.kind {
            AnalyticsKind::Clickhouse => {
                format!("clickhouse database {}", cfg.analytics.clickhouse.database)
            }
            AnalyticsKind::Embedded => data.join("analytics.db").display().to_string(),
        },
        Durable::Notifications => match cfg.directory.kind {
            DirectoryKind::Mongo => format!("mongo database {}", cfg.directory.mongo.database),
            DirectoryKind::Embedded if colocated(cfg) => {
                format!("{} (notifications)", EmbeddedStore::path(data).display())
            }
            DirectoryKind::Embedded => data.join("directory.db").display().to_string(),
        },
        Durable::Search => data.join("search.db").display().to_string(),
    }
}

/// The read models a change is written to before it is acknowledged: the history, when the
/// embedded store does not keep it (see [`colocated`]).
pub fn write_through(cfg: &Config, stores: &Stores) -> Option<Arc<dyn WriteThrough>> {
    if inline_processors(cfg).contains(&Durable::History) {
        return None;
    }
    Some(Arc::new(
        livechat_processors::history::HistoryWriteThrough::start(stores.history.clone()),
    ))
}
