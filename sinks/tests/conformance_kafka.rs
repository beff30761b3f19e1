//! The Kafka log adapter against the shared conformance suite, on a real broker
//! (`scripts/dev-services up kafka`; address in `LIVECHAT_KAFKA_BROKERS`).
#![cfg(feature = "kafka")]

use livechat_sinks::kafka::{KafkaConfig, KafkaLog};

async fn kafka() -> Option<KafkaLog> {
    let brokers = livechat_conformance::server_env("LIVECHAT_KAFKA_BROKERS", "kafka")?;
    // A namespace, as deployments sharing a cluster use: topics and groups are prefixed on the
    // broker and not in what the adapter hands out.
    let cfg = KafkaConfig {
        brokers,
        namespace: format!("conformance{}.", uuid::Uuid::new_v4().simple()),
        ..KafkaConfig::default()
    };
    Some(KafkaLog::connect(cfg, 4).await.expect("connect to Kafka"))
}

livechat_conformance::log_suite!(kafka());
