//! LiveChat's benchmark harness. `loadgen` (src/bin/loadgen.rs) drives one scenario against a
//! running server, or the whole suite (`loadgen suite`, what `bench/run` calls); `bare`
//! (src/bin/bare.rs) is the no-persistence broadcast baseline; `loadgen distributed` runs the
//! scale-out comparison (embedded beside distributed, `bench/run distributed`); `faults`
//! (src/bin/faults.rs) is the fault and abuse suite (`scripts/faults`).

pub mod client;
pub mod faults;
pub mod proto;
pub mod scaleout;
pub mod scenarios;
pub mod servers;
pub mod stats;
pub mod suite;
