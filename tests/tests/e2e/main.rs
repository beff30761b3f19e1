//! End-to-end scenarios against the real binary (one test executable; see `harness`).

mod abuse;
mod analytics;
mod bad_input;
mod chat;
mod conversations;
mod crash;
#[cfg(feature = "distributed")]
mod distributed;
mod erasure;
mod export;
mod files;
mod harness;
#[cfg(feature = "kafka")]
mod kafka;
#[cfg(feature = "kafka")]
mod kafka_api;
mod legacy;
mod membership;
mod read_your_writes;
mod replay;
mod trace_context;
