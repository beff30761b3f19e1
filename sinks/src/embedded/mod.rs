//! SQLite adapters (see the crate docs for the file layout).

mod analytics;
mod db;
mod directory;
mod history;
mod log;
mod outbox;
mod sequencer;
mod sessions;

pub use analytics::SqliteAnalytics;
pub use directory::SqliteDirectory;
pub use history::SqliteHistory;
pub use log::SqliteLog;
