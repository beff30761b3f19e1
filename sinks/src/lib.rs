//! Store adapters: every port of `livechat-core` on its engines.
//!
//! Layout:
//! - [`embedded`]: the default adapters, on SQLite (rusqlite, bundled), WAL journal,
//!   `synchronous=FULL`. When the directory and the log are both embedded (the default) they
//!   share one file, `livechat.db` (`store.rs`), written by one committer thread (`db.rs`):
//!   - users, rooms, memberships (with read markers), join requests (`directory.rs`),
//!     sessions (`sessions.rs`), notifications (`notifications.rs`);
//!   - the send path that assigns seqs (`sequencer.rs`) and answers a retried `client_msg_id`
//!     from the recent sends of the log, kept in memory (`retries.rs`);
//!   - the partitioned topic log with consumer-group offsets (`log.rs`), its newest entries
//!     also kept in memory for the consumers that keep up (`tail.rs`); a change's records are
//!     appended in its own transaction (`records.rs`), with the notifications kept inline
//!     (`inline.rs`).
//!
//!   The message history has its own file, `history.db` (`history.rs`), kept right behind the
//!   log by a follower whose position is in the same file (`history_follower.rs`); the
//!   analytics read model has `analytics.db` (`analytics.rs`). With a Kafka
//!   log the directory's file keeps an outbox table instead (`outbox.rs`), emptied by the relay,
//!   and a receipt row per send with a `client_msg_id` (the log is not there to answer retries).
//! - [`files`]: files shared in rooms, on local disk.
//! - [`memory`]: in-process cache.
//! - [`config`]: settings of the distributed adapters (always compiled).
//! - Distributed adapters, each behind the cargo feature of its name:
//!   - `kafka`: the log on a Kafka-API broker (Redpanda, Apache Kafka), with the schema registry;
//!   - `cassandra`: the message history on Cassandra / ScyllaDB;
//!   - `clickhouse`: the analytics store on ClickHouse;
//!   - `mongo`: the directory, sessions and outbox on MongoDB (tested on SecantusDB);
//!   - `redis`: sessions and cross-process presence on Redis;
//!   - `memcached`: the cache on Memcached.

#[cfg(feature = "cassandra")]
pub mod cassandra;
#[cfg(feature = "clickhouse")]
pub mod clickhouse;
pub mod config;
pub mod embedded;
pub mod files;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "memcached")]
pub mod memcached;
pub mod memory;
#[cfg(feature = "mongo")]
pub mod mongo;
#[cfg(feature = "redis")]
pub mod redis;
