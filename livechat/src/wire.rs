//! Chooses the adapter of each port from the configuration (the only place that matches on
//! technology names).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use livechat_core::ports::EventLog;
use livechat_sinks::embedded::SqliteLog;

use crate::config::{Config, LogKind};

/// The topic log: `log.db` in the data directory, or a Kafka-API broker.
pub async fn log(cfg: &Config) -> anyhow::Result<Arc<dyn EventLog>> {
    match cfg.log.kind {
        LogKind::Embedded => {
            let dir = Path::new(&cfg.data_dir);
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            Ok(Arc::new(
                SqliteLog::open(&dir.join("log.db"), cfg.log.partitions)
                    .context("opening the embedded log")?,
            ))
        }
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
