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
    pub replication_factor: i32,
    /// Extra librdkafka properties for every client (e.g. security settings).
    pub client: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            replication_factor: 1,
            client: BTreeMap::new(),
        }
    }
}
