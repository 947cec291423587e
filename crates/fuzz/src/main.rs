//! `exchange-fuzz`: mutation fuzzing, on stable Rust, of everything the
//! exchange parses from outside: `--where` filters, catalog manifests, the
//! JSON query command, query tickets and audit segments.
//!
//! Each target starts from seeds (real inputs) and feeds its parser inputs
//! made by one to eight random edits (bit flips, deletions, duplications,
//! pieces of syntax, boundary numbers, odd Unicode, splices of other
//! seeds). A panic is a crash: the input is saved and counted. There is no
//! coverage feedback (that needs a nightly compiler for libFuzzer); the
//! targets check properties instead of only "does not panic", and the
//! runs are long (`crates/fuzz/run`: ten million executions per target).
//!
//! ```sh
//! cargo run --release -p exchange-fuzz -- all --execs 10000000
//! cargo run --release -p exchange-fuzz -- filter --seconds 60
//! ```

mod mutate;
mod targets;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use mutate::{mutate, Rng};
use targets::Target;

#[derive(Parser, Debug)]
#[command(
    name = "exchange-fuzz",
    about = "Mutation fuzzing of the exchange's parsers"
)]
struct Cli {
    /// filter, manifest, query-command, ticket, audit-segment or all.
    target: String,
    /// Executions per target (across all threads).
    #[arg(long, default_value_t = 1_000_000)]
    execs: u64,
    /// Stop a target after this many seconds even if its executions are not done.
    #[arg(long, default_value_t = 3_600)]
    seconds: u64,
    #[arg(long, default_value_t = 2)]
    threads: u64,
    /// The random seed: a run is reproducible from it.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where crashing inputs are saved.
    #[arg(long, default_value = "target/fuzz-crashes")]
    crashes: PathBuf,
}

/// What one target's run did.
#[derive(Debug)]
pub struct Outcome {
    pub name: &'static str,
    pub executions: u64,
    pub crashes: u64,
    pub elapsed: Duration,
}

/// Runs `target` for `execs` executions or `limit`, on `threads` threads.
pub fn fuzz(
    target: &dyn Target,
    execs: u64,
    limit: Duration,
    threads: u64,
    seed: u64,
    crashes_dir: &std::path::Path,
) -> Outcome {
    let seeds = target.seeds();
    let done = AtomicU64::new(0);
    let crashes = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..threads.max(1) {
            let (seeds, done, crashes) = (&seeds, &done, &crashes);
            scope.spawn(move || {
                let mut rng = Rng::new(seed ^ (t + 1).wrapping_mul(0xA24B_AED4_963E_E407));
                for seed_input in seeds {
                    target.run(seed_input);
                }
                loop {
                    let n = done.fetch_add(1, Ordering::Relaxed);
                    if n >= execs || (n % 4_096 == 0 && started.elapsed() > limit) {
                        break;
                    }
                    let base = &seeds[rng.below(seeds.len())];
                    let other = &seeds[rng.below(seeds.len())];
                    let input = mutate(&mut rng, base, other);
                    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        target.run(&input)
                    }));
                    if run.is_err() {
                        let k = crashes.fetch_add(1, Ordering::Relaxed);
                        let _ = std::fs::create_dir_all(crashes_dir);
                        let path =
                            crashes_dir.join(format!("{}-{seed}-{t}-{k}.bin", target.name()));
                        let _ = std::fs::write(&path, &input);
                        eprintln!(
                            "crash in {}: input saved to {}",
                            target.name(),
                            path.display()
                        );
                    }
                }
            });
        }
    });
    Outcome {
        name: target.name(),
        executions: done.load(Ordering::Relaxed).min(execs),
        crashes: crashes.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Crashes are reported with their saved input, one line each, instead
    // of the default hook's message and backtrace.
    std::panic::set_hook(Box::new(|info| {
        let text = info.to_string();
        eprintln!("panic: {}", text.lines().next().unwrap_or_default());
    }));
    let all = targets::all()?;
    let chosen: Vec<&Box<dyn Target>> = all
        .iter()
        .filter(|t| cli.target == "all" || cli.target == t.name())
        .collect();
    if chosen.is_empty() {
        let names: Vec<&str> = all.iter().map(|t| t.name()).collect();
        anyhow::bail!(
            "no target {:?}; choose one of {} or all",
            cli.target,
            names.join(", ")
        );
    }
    let mut failed = false;
    for target in chosen {
        let limit = Duration::from_secs(cli.seconds);
        let o = fuzz(
            target.as_ref(),
            cli.execs,
            limit,
            cli.threads,
            cli.seed,
            &cli.crashes,
        );
        println!(
            "{:<14} {:>12} executions  {:>3} crashes  {:>7.1} s  {:>9.0} exec/s",
            o.name,
            o.executions,
            o.crashes,
            o.elapsed.as_secs_f64(),
            o.executions as f64 / o.elapsed.as_secs_f64()
        );
        failed |= o.crashes > 0;
    }
    if failed {
        std::process::exit(1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every target runs its seeds and a short burst of mutations without
    /// a crash (the long runs are `crates/fuzz/run`).
    #[test]
    fn every_target_survives_a_short_run() {
        let dir = std::env::temp_dir().join("exchange-fuzz-test");
        for target in targets::all().unwrap() {
            let o = fuzz(target.as_ref(), 3_000, Duration::from_secs(60), 2, 7, &dir);
            assert_eq!(o.crashes, 0, "{}", o.name);
            assert_eq!(o.executions, 3_000, "{}", o.name);
        }
    }

    /// A target that panics is counted as crashing, and its input is kept.
    #[test]
    fn a_panicking_target_is_caught_and_its_input_saved() {
        struct Fragile;
        impl Target for Fragile {
            fn name(&self) -> &'static str {
                "fragile"
            }
            fn seeds(&self) -> Vec<Vec<u8>> {
                vec![b"ok".to_vec()]
            }
            fn run(&self, input: &[u8]) {
                assert!(input.len() < 3, "too long");
            }
        }
        let dir = std::env::temp_dir().join(format!("exchange-fuzz-{}", std::process::id()));
        let o = fuzz(&Fragile, 50, Duration::from_secs(10), 1, 3, &dir);
        assert!(o.crashes > 0);
        assert!(std::fs::read_dir(&dir).unwrap().count() as u64 == o.crashes);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
