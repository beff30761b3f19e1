//! SQLite adapters (see the crate docs for the file layout).

mod analytics;
mod db;
mod directory;
mod file_refs;
mod history;
mod history_follower;
mod inline;
mod log;
mod multi_insert;
mod notifications;
mod outbox;
mod records;
mod retries;
mod search;
mod sequencer;
mod sessions;
mod store;
mod tail;

pub use analytics::SqliteAnalytics;
pub use directory::SqliteDirectory;
pub use history::SqliteHistory;
pub use history_follower::FollowedHistory;
pub use inline::{HistoryMapping, NotificationsMapping, ReadModelMappings};
pub use log::{kafka_partition, SqliteLog};
pub use search::SqliteSearch;
pub use store::EmbeddedStore;
