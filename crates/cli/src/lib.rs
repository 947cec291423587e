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

/// Prints a line to standard output with every control, invisible and
/// direction-changing character spelled `\uXXXX`
/// (`exchange_policy::text::visible`): text that came from a request, a
/// manifest or a database cannot recolour, retitle or overwrite the
/// reader's terminal. JSON stays valid JSON with the same meaning.
#[macro_export]
macro_rules! say {
    () => { println!() };
    ($($arg:tt)*) => {
        println!("{}", $crate::visible(&format!($($arg)*)))
    };
}

/// [`say!`] for standard error.
#[macro_export]
macro_rules! say_err {
    ($($arg:tt)*) => {
        eprintln!("{}", $crate::visible(&format!($($arg)*)))
    };
}

/// [`say!`] without the line break.
#[macro_export]
macro_rules! say_part {
    ($($arg:tt)*) => {
        print!("{}", $crate::visible(&format!($($arg)*)))
    };
}

pub use exchange_policy::text::visible;
