//! Configuration: compiled-in defaults (the embedded profile), then an optional TOML file
//! (`--config`), then `LIVECHAT_*` environment variables (`__` separates sections, e.g.
//! `LIVECHAT_INGRESS__LISTEN`), then command-line flags. Later layers win.

use std::path::PathBuf;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use livechat_core::limits::Limits;
use livechat_ingress::kafka_api::KafkaApiConfig;
use livechat_ingress::IngressConfig;
use livechat_sinks::config::{
    CassandraConfig, ClickHouseConfig, KafkaConfig, MemcachedConfig, MongoConfig, RedisConfig,
    S3Config,
};
use serde::{Deserialize, Serialize};

/// Top-level keys, the only `LIVECHAT_*` environment variables read as configuration.
const SECTIONS: [&str; 12] = [
    "data_dir",
    "directory",
    "sessions",
    "presence",
    "ingress",
    "limits",
    "log",
    "history",
    "analytics",
    "cache",
    "files",
    "kafka_api",
];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the embedded stores keep their files.
    pub data_dir: String,
    pub ingress: IngressConfig,
    pub limits: Limits,
    pub directory: DirectoryConfig,
    pub sessions: SessionsConfig,
    pub presence: PresenceConfig,
    pub log: LogConfig,
    pub history: HistoryConfig,
    pub analytics: AnalyticsConfig,
    pub cache: CacheConfig,
    pub files: FilesConfig,
    /// The embedded log over the Kafka protocol (off unless `listen` is set).
    pub kafka_api: KafkaApiConfig,
}

/// `[directory]`: users, rooms, memberships, join requests, notifications and the outbox.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct DirectoryConfig {
    /// `embedded` (directory.db) or `mongo` (MongoDB / FerretDB; `--features mongo`).
    pub kind: DirectoryKind,
    pub mongo: MongoConfig,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum DirectoryKind {
    #[default]
    Embedded,
    Mongo,
}

/// `[sessions]`: login sessions.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct SessionsConfig {
    /// `directory` (beside the directory) or `redis` (`--features redis`).
    pub kind: SessionsKind,
    pub redis: RedisConfig,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum SessionsKind {
    #[default]
    Directory,
    Redis,
}

/// `[presence]`: who is online, across ingress processes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PresenceConfig {
    /// `local` (each process knows its own sockets: right for one ingress) or `redis`
    /// (shared by every ingress process; `--features redis`).
    pub kind: PresenceKind,
    pub redis: RedisConfig,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum PresenceKind {
    #[default]
    Local,
    Redis,
}

/// `[history]`: the message history store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    /// `embedded` (history.db) or `cassandra` (Cassandra / ScyllaDB; `--features cassandra`).
    pub kind: HistoryKind,
    pub cassandra: CassandraConfig,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum HistoryKind {
    #[default]
    Embedded,
    Cassandra,
}

/// `[analytics]`: the analytics store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AnalyticsConfig {
    /// `embedded` (analytics.db) or `clickhouse` (`--features clickhouse`).
    pub kind: AnalyticsKind,
    pub clickhouse: ClickHouseConfig,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum AnalyticsKind {
    #[default]
    Embedded,
    Clickhouse,
}

/// `[files]`: files members share in rooms.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct FilesConfig {
    /// `local` (a directory) or `s3` (a bucket of an S3-compatible store; `--features s3`).
    pub kind: FilesKind,
    /// With `local`: the directory; empty for `files/` in the data directory. Every process
    /// serving the API must see the same directory (several machines: use `s3`).
    pub dir: String,
    pub s3: S3Config,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum FilesKind {
    #[default]
    Local,
    S3,
}

impl FilesConfig {
    pub fn path(&self, data_dir: &str) -> std::path::PathBuf {
        if self.dir.is_empty() {
            std::path::Path::new(data_dir).join("files")
        } else {
            std::path::PathBuf::from(&self.dir)
        }
    }
}

/// `[cache]`: the user cache.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// `memory` (in-process) or `memcached` (`--features memcached`).
    pub kind: CacheKind,
    pub memcached: MemcachedConfig,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum CacheKind {
    #[default]
    Memory,
    Memcached,
}

/// `[log]`: the topic log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `embedded` (log.db in the data directory) or `kafka`.
    pub kind: LogKind,
    /// Partitions per topic. Fixed for the life of the data: changing it re-maps rooms.
    pub partitions: u32,
    pub kafka: KafkaConfig,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogKind {
    #[default]
    Embedded,
    Kafka,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            kind: LogKind::Embedded,
            partitions: 4,
            kafka: KafkaConfig::default(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: "./livechat-data".into(),
            ingress: IngressConfig::default(),
            limits: Limits::default(),
            directory: DirectoryConfig::default(),
            sessions: SessionsConfig::default(),
            presence: PresenceConfig::default(),
            log: LogConfig::default(),
            history: HistoryConfig::default(),
            analytics: AnalyticsConfig::default(),
            cache: CacheConfig::default(),
            files: FilesConfig::default(),
            kafka_api: KafkaApiConfig::default(),
        }
    }
}

impl Config {
    pub fn load(file: Option<&PathBuf>) -> anyhow::Result<Config> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(f) = file {
            if !f.exists() {
                anyhow::bail!("config file {} does not exist", f.display());
            }
            fig = fig.merge(Toml::file(f));
        }
        // Only variables of known sections are configuration; others with the same prefix
        // (LIVECHAT_CONFIG, the dev-services addresses, test settings) are not ours to reject.
        let env = Env::prefixed("LIVECHAT_").filter(|key| {
            let key = key.as_str().to_ascii_lowercase();
            SECTIONS.contains(&key.split("__").next().unwrap_or_default())
        });
        fig = fig.merge(env.split("__"));
        let cfg: Config = fig
            .extract()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.log.partitions == 0 || self.log.partitions > 1024 {
            anyhow::bail!("log.partitions must be between 1 and 1024");
        }
        let l = &self.limits;
        if l.outbound_queue_frames == 0 || l.ws_read_buffer_bytes < 256 || l.max_ws_frame_bytes == 0
        {
            anyhow::bail!("limits: outbound_queue_frames, ws_read_buffer_bytes (>= 256) and max_ws_frame_bytes must be positive");
        }
        if l.send_rate_per_sec <= 0.0 || l.typing_rate_per_sec <= 0.0 {
            anyhow::bail!("limits: rates must be positive");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_sample_file_parse() {
        let c = Config::load(None).unwrap();
        assert_eq!(c.ingress.listen, "127.0.0.1:8000");
        let sample = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../config/livechat.example.toml"
        ));
        let s = Config::load(Some(&sample)).unwrap();
        assert_eq!(s.log.partitions, 4);
        let distributed = sample.with_file_name("livechat.distributed.toml");
        let d = Config::load(Some(&distributed)).unwrap();
        assert_eq!(d.directory.kind, DirectoryKind::Mongo);
        assert_eq!(d.presence.kind, PresenceKind::Redis);
        assert_eq!(d.log.kind, LogKind::Kafka);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let dir = std::env::temp_dir().join(format!("lc-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("bad.toml");
        std::fs::write(&f, "[ingress]\nlisten_typo = \"x\"\n").unwrap();
        let err = Config::load(Some(&f)).unwrap_err().to_string();
        assert!(err.contains("listen_typo"), "{err}");
    }
}
