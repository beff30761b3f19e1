//! The analytics processor: every room and user event → one analytics row (by event id).

use std::sync::Arc;

use async_trait::async_trait;
use livechat_core::ports::AnalyticsStore;
use livechat_core::service::analytics_row;
use livechat_schemas::{ROOM_EVENTS_TOPIC, USER_EVENTS_TOPIC};

use crate::runner::{Decoded, Processor};

/// Topics the analytics processor consumes.
pub const TOPICS: &[&str] = &[ROOM_EVENTS_TOPIC, USER_EVENTS_TOPIC];

pub struct AnalyticsProcessor {
    pub store: Arc<dyn AnalyticsStore>,
    pub group: String,
}

#[async_trait]
impl Processor for AnalyticsProcessor {
    fn name(&self) -> &str {
        &self.group
    }
    fn topics(&self) -> Vec<&'static str> {
        TOPICS.to_vec()
    }
    async fn handle(&self, batch: &[Decoded]) -> anyhow::Result<()> {
        let rows: Vec<_> = batch
            .iter()
            .filter_map(|d| analytics_row(&d.event))
            .collect();
        if !rows.is_empty() {
            self.store.insert(&rows).await?;
        }
        Ok(())
    }
}
