//! The Kafka log adapter against the shared conformance suite, on a real broker
//! (`scripts/dev-services up kafka`; address in `LIVECHAT_KAFKA_BROKERS`).
#![cfg(feature = "kafka")]

use livechat_sinks::kafka::{KafkaConfig, KafkaLog};

/// Connects to the broker named by the environment. Without one the test is skipped with a
/// note, except under CI, where a missing server is a failure.
async fn kafka() -> Option<KafkaLog> {
    let Ok(brokers) = std::env::var("LIVECHAT_KAFKA_BROKERS") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must provide LIVECHAT_KAFKA_BROKERS (scripts/dev-services up kafka)"
        );
        eprintln!("skipped: LIVECHAT_KAFKA_BROKERS is not set (run scripts/dev-services up kafka)");
        return None;
    };
    let cfg = KafkaConfig {
        brokers,
        ..KafkaConfig::default()
    };
    Some(KafkaLog::connect(cfg, 4).await.expect("connect to Kafka"))
}

macro_rules! kafka_checks {
    ($($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                if let Some(log) = kafka().await {
                    livechat_conformance::log::$check(&log).await;
                }
            }
        )*
    };
}

kafka_checks!(
    records_of_a_key_stay_in_order_in_one_partition,
    offsets_are_dense_and_end_offset_is_next,
    group_offsets_are_per_group_and_survive,
    offset_for_time_seeks_by_timestamp,
    appends_wake_waiting_consumers,
    a_group_resumes_after_its_committed_offsets,
    headers_round_trip,
);
