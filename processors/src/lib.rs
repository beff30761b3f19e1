//! LiveChat's stream processors.
//!
//! Layout:
//! - [`runner`]: the consume → decode → handle → commit loop every processor shares, with
//!   retries, dead-lettering of records that cannot be decoded or processed, and shutdown.
//! - [`relay`]: drains the outbox into the log (at-least-once; consumers deduplicate).
//! - [`history`]: writes messages, edits and deletes into the message store.
//! - [`delivery`]: pushes room events to online subscribers.
//! - [`notifications`]: persists notifications (join requests, decisions, mentions) and pushes them.
//! - [`analytics`]: records every event, at event time, in the analytics store.
//! - [`search`]: keeps the full-text index of messages.
//! - [`Durable`]: the names of the durable processors (and of the stores they keep).

pub mod analytics;
pub mod delivery;
pub mod history;
pub mod notifications;
pub mod relay;
pub mod runner;
pub mod search;

pub use runner::{Decoded, Processor, StartAt};

/// The durable processors: each is a consumer group that commits its offsets and keeps one
/// store up to date (so it also names the store `livechat replay` rebuilds with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Durable {
    History,
    Notifications,
    Analytics,
    /// Keeps the process's own search index: unlike the others, one consumer group per index
    /// file (see `livechat_sinks::embedded::SqliteSearch::file_id`).
    Search,
}

impl Durable {
    pub const ALL: [Durable; 4] = [
        Durable::History,
        Durable::Notifications,
        Durable::Analytics,
        Durable::Search,
    ];
    /// Their names, as on the command line and as consumer-group names (the search
    /// processor's groups start with it).
    pub const NAMES: [&'static str; 4] = ["history", "notifications", "analytics", "search"];

    pub fn name(self) -> &'static str {
        match self {
            Durable::History => Self::NAMES[0],
            Durable::Notifications => Self::NAMES[1],
            Durable::Analytics => Self::NAMES[2],
            Durable::Search => Self::NAMES[3],
        }
    }

    pub fn parse(name: &str) -> Option<Durable> {
        Self::ALL.into_iter().find(|d| d.name() == name)
    }

    /// The topics the processor consumes.
    pub fn topics(self) -> &'static [&'static str] {
        match self {
            Durable::History => history::TOPICS,
            Durable::Notifications => notifications::TOPICS,
            Durable::Analytics => analytics::TOPICS,
            Durable::Search => search::TOPICS,
        }
    }
}

impl std::fmt::Display for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
