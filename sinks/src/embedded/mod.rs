//! SQLite adapters (see the crate docs for the file layout).

mod analytics;
mod db;
mod directory;
mod history;
mod log;
mod sequencer;

pub use analytics::SqliteAnalytics;
pub use db::Db;
pub use directory::SqliteDirectory;
pub use history::SqliteHistory;
pub use log::{kafka_partition, SqliteLog};

use std::path::Path;
use std::sync::Arc;

/// Every embedded store, opened in one data directory.
pub struct EmbeddedStores {
    pub directory: Arc<SqliteDirectory>,
    pub history: Arc<SqliteHistory>,
    pub analytics: Arc<SqliteAnalytics>,
}

impl EmbeddedStores {
    /// Opens the directory, history and analytics stores (the log is opened on its own, as it
    /// may be Kafka instead).
    pub fn open(data_dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| anyhow::anyhow!("creating data directory {}: {e}", data_dir.display()))?;
        Ok(EmbeddedStores {
            directory: Arc::new(SqliteDirectory::open(&data_dir.join("directory.db"))?),
            history: Arc::new(SqliteHistory::open(&data_dir.join("history.db"))?),
            analytics: Arc::new(SqliteAnalytics::open(&data_dir.join("analytics.db"))?),
        })
    }
}
