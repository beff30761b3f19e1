//! Store adapters: every port of `livechat-core` on its engines.
//!
//! Layout:
//! - [`embedded`]: the default adapters, on SQLite (rusqlite, bundled): one database file per
//!   store in the data directory, WAL journal, `synchronous=FULL` for the sources of truth.
//!   - `directory.db`: users, rooms, memberships (with read markers), join requests and
//!     notifications (`directory.rs`), sessions (`sessions.rs`), the outbox (`outbox.rs`), and
//!     the send path that assigns seqs and deduplicates sends with its message receipts
//!     (`sequencer.rs`);
//!   - `log.db`: the partitioned topic log with consumer-group offsets (`log.rs`);
//!   - `history.db`: the message history read model (`history.rs`);
//!   - `analytics.db`: analytics events and the seven views (`analytics.rs`).
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
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "memcached")]
pub mod memcached;
pub mod memory;
#[cfg(feature = "mongo")]
pub mod mongo;
#[cfg(feature = "redis")]
pub mod redis;
