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
pub mod state;

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

/// An error and its causes on one line, as `{:#}` prints them, but with a
/// cause left out when the text before it already says it (many errors
/// name their cause in their own message, and the cause then printed
/// twice: "...: No such file or directory (os error 2): No such file or
/// directory (os error 2)").
pub fn error_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_named_is_not_repeated() {
        let io = std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "No such file or directory (os error 2)",
        );
        let inner = anyhow::Error::new(io)
            .context("certs/admin.crt: No such file or directory (os error 2)");
        let e = inner.context("loading the admin certificate from certs");
        assert_eq!(
            error_text(&e),
            "loading the admin certificate from certs: certs/admin.crt: No such file or directory (os error 2)"
        );
        let plain = anyhow::anyhow!("first").context("second");
        assert_eq!(error_text(&plain), "second: first");
    }
}
