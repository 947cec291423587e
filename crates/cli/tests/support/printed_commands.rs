//! Every command the README's walkthrough and the running demo's banner
//! print works as printed, from the directory the demo was started in:
//! this starts `exchange demo` in an empty directory and runs each one
//! through `sh`, with `cargo run --release --bin X --` standing for the
//! built binary. Only what a reader must fill in is filled in: the demo's
//! port when it is not the default, `<id>` (the ID the banner offers), an
//! org code for `<org code>`, and the files the README asks the reader to
//! write (ids.csv, members.csv, relief.toml).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

/// The README's walkthrough: its shell lines up to the test command, with
/// continuation lines joined, and the TOML of relief.toml.
fn readme_walkthrough() -> (Vec<String>, String) {
    let readme = include_str!("../../../../README.md");
    let mut commands = Vec::new();
    let mut relief = String::new();
    let mut in_block = false;
    let mut in_relief = false;
    let mut pending = String::new();
    for line in readme.lines() {
        if line.starts_with("```") {
            in_block = !in_block;
            in_relief = false;
            continue;
        }
        if !in_block {
            continue;
        }
        if line.starts_with("# relief.toml") {
            in_relief = true;
            continue;
        }
        if in_relief {
            if line.starts_with("cargo run") {
                in_relief = false;
            } else {
                relief.push_str(line);
                relief.push('\n');
                continue;
            }
        }
        if line == "tests/run" {
            break;
        }
        pending.push_str(line.trim_end_matches('\\'));
        if line.ends_with('\\') {
            continue;
        }
        let command = std::mem::take(&mut pending);
        if command.starts_with("cargo run") || command.starts_with("export EXCHANGE_CONFIG=") {
            commands.push(command);
        }
    }
    (commands, relief)
}

/// Runs one printed line: `export` sets the config for the next ones;
/// anything else runs through `sh` and must succeed.
fn run_printed(
    line: &str,
    cwd: &Path,
    env: &mut BTreeMap<String, String>,
    fill: &[(&'static str, String)],
) {
    if let Some(value) = line.strip_prefix("export EXCHANGE_CONFIG=") {
        env.insert("EXCHANGE_CONFIG".into(), value.trim().to_string());
        return;
    }
    let mut script = line.to_string();
    for (from, to) in fill {
        script = script.replace(from, to);
    }
    let out = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the printed command failed:\n  {line}\n(run as: {script})\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An org code the reader would take from the conflicts report just run.
fn conflicting_org_code(cwd: &Path, env: &BTreeMap<String, String>) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_exchange"))
        .args(["--json", "conflicts", "--key", "org-code"])
        .args(["--attribute", "registered_address"])
        .args(["--datasets", "market-regulation/companies,tax/taxpayers"])
        .current_dir(cwd)
        .envs(env.iter())
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    report["conflicts"][0]["key"]
        .as_str()
        .unwrap_or_else(|| {
            panic!(
                "no conflict to dispute: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .to_string()
}

/// A port P with P + 1 free too, for the demo's two listeners, below
/// Linux's ephemeral range (32768 and up), where the other tests' own
/// connections would take P + 1 between this check and the demo's start.
fn two_free_ports() -> u16 {
    let free = |port: u16| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
    let start = 20_000 + (std::process::id() % 5_000) as u16 * 2;
    (0..2_000u16)
        .map(|i| 20_000 + (start - 20_000 + i * 2) % 12_000)
        .find(|p| free(*p) && free(*p + 1))
        .expect("no two free ports between 20000 and 32000")
}

#[test]
fn every_command_the_readme_and_the_demo_print_works_as_printed() {
    let work = tempfile::tempdir().unwrap();
    let port = two_free_ports();
    let mut demo = Command::new(env!("CARGO_BIN_EXE_exchange"))
        .args(["demo", "--persons", "2000", "--port", &port.to_string()])
        .current_dir(work.path())
        .env_remove("EXCHANGE_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(demo.stdout.take().unwrap());
    let mut banner = Vec::new();
    loop {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "the demo ended early: {banner:?}"
        );
        if line.contains("Press Ctrl-C") {
            break;
        }
        banner.push(line.trim_end().to_string());
    }
    let person = banner
        .iter()
        .find_map(|l| l.split("audit subject --person-id ").nth(1))
        .expect("the banner offers an ID to try")
        .trim()
        .to_string();

    let exchange = format!("'{}'", env!("CARGO_BIN_EXE_exchange"));
    let coordinator = format!("'{}'", env!("CARGO_BIN_EXE_coordinator"));
    let mut fill = vec![
        ("cargo run --release --bin exchange --", exchange),
        ("cargo run --release --bin coordinator --", coordinator),
        ("127.0.0.1:7400", format!("127.0.0.1:{port}")),
        ("<id>", person.clone()),
        (
            "<the right value>",
            "广东省佛山市禅城区季华五路1号".to_string(),
        ),
    ];

    let (walkthrough, relief) = readme_walkthrough();
    assert!(walkthrough.len() > 25, "{walkthrough:?}");
    std::fs::write(work.path().join("relief.toml"), relief).unwrap();
    std::fs::write(work.path().join("ids.csv"), format!("{person}\n")).unwrap();
    std::fs::write(
        work.path().join("members.csv"),
        format!("household_id,person_id\nH1,{person}\n"),
    )
    .unwrap();
    let mut env = BTreeMap::new();
    let mut ran = 0;
    for line in &walkthrough {
        // A second demo would need the running one's ports: `demo
        // --scenario` is the one command the README runs on its own (the
        // scenarios' answers are checked in tests/e2e/scenarios.rs).
        if line.contains("-- demo") {
            continue;
        }
        if line.contains("<org code>") {
            fill.push(("<org code>", conflicting_org_code(work.path(), &env)));
        }
        run_printed(line, work.path(), &mut env, &fill);
        ran += 1;
    }
    // Then the banner's, as its reader would run them.
    env.clear();
    for line in &banner {
        let line = line.trim();
        let printed = ["export ", "cargo run", "EXCHANGE_CONFIG="];
        if printed.iter().any(|p| line.starts_with(p)) {
            run_printed(line, work.path(), &mut env, &fill);
            ran += 1;
        }
    }
    assert!(ran > 40, "only {ran} commands ran");
    let _ = demo.kill();
    let _ = demo.wait();
}
