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

pub mod analytics;
pub mod delivery;
pub mod history;
pub mod notifications;
pub mod relay;
pub mod runner;

pub use runner::{Decoded, Processor, StartAt};
