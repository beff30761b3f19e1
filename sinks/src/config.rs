//! Settings of the distributed adapters. Always compiled (even without the adapters' cargo
//! features) so that one configuration file is valid for every build.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `[log.kafka]`: a Kafka-API broker (Redpanda, Apache Kafka).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated.
    pub brokers: String,
    /// Prefix of every topic and consumer-group name on the broker, so several deployments
    /// (or test runs) can share a cluster. Empty: the plain names of docs/topics.md.
    pub namespace: String,
    pub replication_factor: i32,
    /// Extra librdkafka properties for every client (e.g. security settings).
    pub client: BTreeMap<String, String>,
    /// A Confluent-API schema registry (Redpanda's, Confluent's, Karapace, Apicurio's
    /// `/apis/ccompat/v7`), plain HTTP. When set, LiveChat registers its schemas there at start
    /// (subjects `<namespace><topic>-value`, `BACKWARD_TRANSITIVE`) and records carry the
    /// registry's schema ids on the broker. None: the embedded ids (1, 2, 3) go on the wire.
    pub schema_registry_url: Option<String>,
    /// This process's sequencer identity, kept across its restarts (its transactional id and
    /// its static membership of the sequencers' group), unique among live processes: e.g. a
    /// StatefulSet pod's name. None: a slot of the data directory (`instance-N.id`), which a
    /// restart on the same directory takes again.
    pub instance_id: Option<String>,
    /// How long a sequencer remembers a send's `client_msg_id`, in seconds: a retry within it is
    /// answered with the first message (a partition's new owner reads back that much of the
    /// room events), after it is a new message.
    pub dedup_window_secs: u64,
    /// How long the ingress gathers sends before producing them as commands, in ms (librdkafka's
    /// `linger.ms`). 1 favours the acknowledgement's latency at low load; 5 gave ~20 % more
    /// acknowledged sends/s under heavy load on a 2-core test machine, and ~3 ms more latency
    /// at one send at a time (bench/README.md).
    pub linger_ms: u32,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            namespace: String::new(),
            replication_factor: 1,
            client: BTreeMap::new(),
            schema_registry_url: None,
            instance_id: None,
            dedup_window_secs: 600,
            linger_ms: 1,
        }
    }
}

/// `[history.cassandra]`: a CQL cluster (ScyllaDB, Apache Cassandra) for the message history.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CassandraConfig {
    /// Contact points, `host:port` each.
    pub nodes: Vec<String>,
    /// Created at connect (with `SimpleStrategy`) if it does not exist.
    pub keyspace: String,
    pub replication_factor: u32,
    /// Optional password authentication.
    pub user: Option<String>,
    pub password: Option<String>,
    /// Client-side limit of one request, in milliseconds.
    pub request_timeout_ms: u64,
}

impl Default for CassandraConfig {
    fn default() -> Self {
        CassandraConfig {
            nodes: vec!["127.0.0.1:9042".into()],
            keyspace: "livechat".into(),
            replication_factor: 1,
            user: None,
            password: None,
            request_timeout_ms: 10_000,
        }
    }
}

/// `[analytics.clickhouse]`: a ClickHouse server (HTTP interface) for the analytics events.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClickHouseConfig {
    /// HTTP endpoint, e.g. `http://127.0.0.1:8123`.
    pub url: String,
    /// Created at connect if it does not exist.
    pub database: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// Row type validation (`RowBinaryWithNamesAndTypes`). The adapter turns it off, with a
    /// warning, on a server that lacks that format (18.16 does).
    pub validation: bool,
    /// Client-side limit of one request, in milliseconds.
    pub request_timeout_ms: u64,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig {
            url: "http://127.0.0.1:8123".into(),
            database: "livechat".into(),
            user: None,
            password: None,
            validation: true,
            request_timeout_ms: 30_000,
        }
    }
}

/// `[cache.memcached]`: memcached servers (keys are spread over them by a stable hash).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MemcachedConfig {
    /// `host:port` each.
    pub servers: Vec<String>,
    /// Connect, read and write timeout of one call, in milliseconds (the cache is called from
    /// async code, so calls must stay short).
    pub timeout_ms: u64,
    /// Connections per server.
    pub pool_size: u32,
}

impl Default for MemcachedConfig {
    fn default() -> Self {
        MemcachedConfig {
            servers: vec!["127.0.0.1:11211".into()],
            timeout_ms: 200,
            pool_size: 8,
        }
    }
}

/// `[directory.mongo]`: a MongoDB-wire server (MongoDB, FerretDB) for users, rooms,
/// memberships, join requests, notifications, sessions and the outbox.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MongoConfig {
    /// A `mongodb://` connection string.
    pub uri: String,
    pub database: String,
}

impl Default for MongoConfig {
    fn default() -> Self {
        MongoConfig {
            uri: "mongodb://127.0.0.1:27017".into(),
            database: "livechat".into(),
        }
    }
}

/// `[files.s3]`: a bucket of an S3-compatible object store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    pub region: String,
    /// Empty for AWS; the URL of any other S3-compatible store (SeaweedFS, MinIO, Ceph, …),
    /// which is then addressed by path.
    pub endpoint: String,
    /// Empty to take the credentials from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`.
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Prefix of every object's name, so several deployments (or test runs) can share a bucket.
    pub prefix: String,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            bucket: "livechat".into(),
            region: "us-east-1".into(),
            endpoint: String::new(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            prefix: String::new(),
        }
    }
}

/// `[presence.redis]` / `[sessions.redis]`: a Redis server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// A `redis://` URL.
    pub url: String,
    /// Prefix of every key, so several deployments (or test runs) can share a server.
    pub namespace: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379".into(),
            namespace: "livechat:".into(),
        }
    }
}
