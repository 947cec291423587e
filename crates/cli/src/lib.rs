//! The command-line front ends: `exchange` (analysts, operators and the
//! demo), `coordinator` (the bureau) and `exchange-node` (a department).
//!
//! This crate holds only argument parsing and presentation: tables for
//! people, JSON for scripts, and logging set-up. All behaviour lives in the
//! library crates.

pub mod audit;
pub mod batch;
pub mod logging;
pub mod output;
