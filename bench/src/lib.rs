//! LiveChat's benchmark harness. `loadgen` (src/bin/loadgen.rs) drives one scenario against a
//! running server, or the whole suite (`loadgen suite`, what `bench/run` calls); `bare`
//! (src/bin/bare.rs) is the no-persistence broadcast baseline.

pub mod client;
pub mod proto;
pub mod scenarios;
pub mod servers;
pub mod stats;
pub mod suite;
