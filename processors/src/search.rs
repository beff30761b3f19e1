//! The search processor: room events → the message search index, with the history's own
//! mapping (inserts, edits, deletes, purges).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use livechat_core::ports::SearchIndex;
use livechat_schemas::ROOM_EVENTS_TOPIC;

use crate::history::history_ops;
use crate::runner::{Decoded, Processor};

/// Topics the search processor consumes.
pub const TOPICS: &[&str] = &[ROOM_EVENTS_TOPIC];

pub struct SearchProcessor {
    pub index: Arc<dyn SearchIndex>,
    /// One group per index file: every process that keeps an index reads every partition.
    pub group: String,
}

#[async_trait]
impl Processor for SearchProcessor {
    fn name(&self) -> &str {
        &self.group
    }
    fn topics(&self) -> Vec<&'static str> {
        TOPICS.to_vec()
    }
    /// A message is found a quarter of a second after it is sent, at most: many texts go
    /// into the index in one transaction.
    fn gather(&self) -> Duration {
        Duration::from_millis(250)
    }
    async fn handle(&self, batch: &[Decoded]) -> anyhow::Result<()> {
        let ops = history_ops(batch)?;
        if !ops.is_empty() {
            self.index.apply(&ops).await?;
        }
        Ok(())
    }
}
