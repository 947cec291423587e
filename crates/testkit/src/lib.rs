//! Test-only helpers, never linked into a shipped binary.
//!
//! - [`servers`]: ephemeral PostgreSQL and MariaDB instances started from the
//!   system's server binaries, a failure rather than a skip under `CI=true`.
//! - Everything of [`exchange_demo`] is re-exported, so a test says
//!   `exchange_testkit::ClusterBuilder` and the demo's federation builder is
//!   the one the tests exercise.
//! - `examples/bench_catalog.rs`: the catalog benchmark.

pub mod servers;

pub use exchange_demo::*;
