//! The parts of the `keel` command line that other programs reuse: the JSON
//! API (`serve`: its router with every middleware, and the accept loop with
//! its limits), its log format (`logging`), and the workload's loader
//! (`seed`). keel-bench drives the very router `keel serve` runs, beside a
//! hand-written one.

pub mod logging;
pub mod seed;
pub mod serve;
