//! Store adapters.
//!
//! Layout:
//! - [`embedded`]: the default adapters, on SQLite (rusqlite, bundled): one database file per
//!   store in the data directory, WAL journal, `synchronous=FULL` so a commit survives a crash.
//!   - `directory.db`: users, sessions, rooms, memberships (with read markers), join requests,
//!     notifications, message receipts (idempotent sends) and the outbox;
//!   - `log.db`: the partitioned topic log with consumer-group offsets;
//!   - `history.db`: the message history read model;
//!   - `analytics.db`: analytics events and the seven views.
//! - [`memory`]: in-process cache.
//! - [`config`]: settings of the distributed adapters (always compiled).
//! - `kafka` (cargo feature `kafka`): the log on a Kafka-API broker.
//! - `mongo` (cargo feature `mongo`): the directory, sessions and outbox on MongoDB / FerretDB.
//! - `redis` (cargo feature `redis`): sessions and cross-process presence on Redis.

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
