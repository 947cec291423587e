//! `exchange demo`: a whole federation on synthetic data in one process,
//! or one of the mission's scenarios run on it.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::Context;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Synthetic persons to generate.
    #[arg(long, default_value_t = 100_000)]
    persons: usize,
    #[arg(long, default_value_t = exchange_demo_data::Options::default().seed)]
    seed: u64,
    /// Where state and the department databases go (recreated on each run).
    #[arg(long, default_value = "demo-data")]
    dir: PathBuf,
    /// Where the development PKI goes (recreated on each run).
    #[arg(long, default_value = "certs-dev")]
    certs: PathBuf,
    /// Coordinator port; enrolment uses the next one.
    #[arg(long, default_value_t = 7400)]
    port: u16,
    /// Run a mission scenario on the planted data, print its answer and stop
    /// (all runs the six in turn).
    #[arg(long, value_parser = ["poverty", "enrolment", "subsidy", "tax-electricity", "integrity", "conflicts", "all"])]
    scenario: Option<String>,
    /// Only write the nine departments' SQLite databases and catalog
    /// manifests into DIR and stop: for nodes run as separate processes
    /// (deploy/ha/trial.sh does).
    #[arg(long, value_name = "DIR", conflicts_with = "scenario")]
    data_only: Option<PathBuf>,
}

pub async fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    ctx.no_json("demo")?;
    if let Some(out) = &args.data_only {
        let options = exchange_demo_data::Options {
            persons: args.persons,
            seed: args.seed,
        };
        exchange_demo_data::generate(out, &options)
            .await
            .with_context(|| format!("writing the demo databases into {}", out.display()))?;
        exchange_cli::say!(
            "wrote {} synthetic persons' records for nine departments into {}: <department>.db and <department>.toml (its manifest)",
            args.persons,
            out.display()
        );
        return Ok(());
    }
    demo(
        args.persons,
        args.seed,
        &args.dir,
        &args.certs,
        args.port,
        args.scenario.as_deref(),
    )
    .await
}

/// The web console's port: the coordinator's + 43 (7443 by default).
fn console_port(port: u16) -> anyhow::Result<u16> {
    port.checked_add(43).context("--port too high")
}

/// A demo's hold on its directory: `demo.pid` names the running process,
/// removed when the demo stops.
struct DemoClaim {
    pid_file: PathBuf,
}

impl Drop for DemoClaim {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

/// Checks, before anything is removed, that no running demo uses `dir` and
/// that the demo's two ports are free, then claims `dir`. A second demo
/// started by mistake thus stops with nothing changed, instead of wiping
/// the running federation's data and certificates first.
fn claim_demo_dir(dir: &Path, port: u16) -> anyhow::Result<DemoClaim> {
    let enrol = port.checked_add(1).context("--port too high")?;
    for p in [port, enrol, console_port(port)?] {
        if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", p)) {
            anyhow::bail!(
                "port {p} on 127.0.0.1 is not free ({e}); nothing was changed. Is a demo already running? Stop it, or start this one with --port {} (it uses that port, the next, and that port + 43 for the web console)",
                port.saturating_add(10)
            );
        }
    }
    let pid_file = dir.join("demo.pid");
    if let Ok(text) = std::fs::read_to_string(&pid_file) {
        let pid = text.trim();
        let alive = std::fs::read_link(format!("/proc/{pid}/exe"))
            .is_ok_and(|exe| exe.to_string_lossy().contains("exchange"));
        if alive && pid != std::process::id().to_string() {
            anyhow::bail!(
                "a demo (process {pid}) is running from {}; nothing was changed. Stop it with Ctrl-C first, or give this one its own --dir, --certs and --port",
                dir.display()
            );
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(&pid_file, std::process::id().to_string())
        .with_context(|| format!("writing {}", pid_file.display()))?;
    Ok(DemoClaim { pid_file })
}

/// Removes what a previous demo run created, and nothing else.
fn clean_previous_demo(dir: &Path, certs: &Path) -> anyhow::Result<()> {
    for sub in ["coordinator", "nodes", "data"] {
        let p = dir.join(sub);
        if p.exists() {
            std::fs::remove_dir_all(&p).with_context(|| format!("removing {}", p.display()))?;
        }
    }
    if certs.exists() {
        for entry in std::fs::read_dir(certs)? {
            let entry = entry?;
            let name = entry.file_name();
            let known = name == "bureau"
                || name == "ca.crt"
                || exchange_demo_data::DEPARTMENTS
                    .iter()
                    .any(|(id, _)| name == *id);
            if known {
                let p = entry.path();
                if p.is_dir() {
                    std::fs::remove_dir_all(&p)?;
                } else {
                    std::fs::remove_file(&p)?;
                }
            }
        }
    }
    Ok(())
}

async fn demo(
    persons: usize,
    seed: u64,
    dir: &Path,
    certs: &Path,
    port: u16,
    scenario: Option<&str>,
) -> anyhow::Result<()> {
    let _claim = claim_demo_dir(dir, port)?;
    clean_previous_demo(dir, certs)?;
    exchange_cli::say_err!(
        "generating {persons} synthetic persons for nine departments into {} ...",
        dir.join("data").display()
    );
    let started = std::time::Instant::now();
    let main = format!("127.0.0.1:{port}");
    let enrol = format!(
        "127.0.0.1:{}",
        port.checked_add(1).context("--port too high")?
    );
    let cluster = exchange_demo::ClusterBuilder::new()
        .demo_federation()
        .persons(persons)
        .seed(seed)
        .dir(dir)
        .pki_out(certs)
        .coordinator_listen(&main, &enrol)
        .console_listen(&format!("127.0.0.1:{}", console_port(port)?))
        .heartbeat_secs(5)
        .start()
        .await
        .with_context(|| {
            format!(
                "starting the demo federation (is port {port} or {} already in use? try --port)",
                port + 1
            )
        })?;
    if let Some(name) = scenario {
        return run_scenarios(cluster, name, dir, started).await;
    }
    for line in banner(&cluster, dir, certs, started.elapsed()) {
        exchange_cli::say!("{line}");
    }
    exchange_cli::say!("Press Ctrl-C to stop.");
    exchange_coordinator::wait_for_signal().await;
    exchange_cli::say_err!("stopping ...");
    cluster.shutdown().await;
    Ok(())
}

/// Runs one scenario, or all six, on the started federation, then stops it.
async fn run_scenarios(
    cluster: exchange_demo::Cluster,
    name: &str,
    dir: &Path,
    started: std::time::Instant,
) -> anyhow::Result<()> {
    let names: Vec<&str> = if name == "all" {
        exchange_demo::scenarios::SCENARIOS.to_vec()
    } else {
        vec![name]
    };
    exchange_cli::say_err!(
        "demo federation up in {:.1} s; running {} ...",
        started.elapsed().as_secs_f64(),
        names.join(", ")
    );
    let mut failed = None;
    for name in names {
        let t = std::time::Instant::now();
        match exchange_demo::scenarios::run(&cluster, name).await {
            Ok(text) => exchange_cli::say!(
                "== scenario {name} ({:.2} s)\n{text}",
                t.elapsed().as_secs_f64()
            ),
            Err(e) => {
                exchange_cli::say!(
                    "== scenario {name}: FAILED: {}",
                    exchange_cli::error_text(&e)
                );
                failed = Some(name);
            }
        }
    }
    exchange_cli::say!(
        "Every read above is in the audit logs under {}: `exchange audit verify {}`.",
        dir.display(),
        dir.join("coordinator").display()
    );
    cluster.shutdown().await;
    if let Some(name) = failed {
        anyhow::bail!("scenario {name} failed");
    }
    Ok(())
}

/// What the running demo prints: where everything is, and commands to try,
/// each of which works as printed from the directory the demo started in
/// (the demo-commands test runs them all).
fn banner(
    cluster: &exchange_demo::Cluster,
    dir: &Path,
    certs: &Path,
    took: std::time::Duration,
) -> Vec<String> {
    let exchange = "cargo run --release --bin exchange --";
    let coordinator = "cargo run --release --bin coordinator --";
    let bureau = certs.join("bureau");
    let addr = cluster.coordinator.addr;
    let datasets = cluster.coordinator.state.federation.dataset_count();
    let mut lines = vec![
        String::new(),
        format!("Exchange demo federation is running ({:.1} s to start).", took.as_secs_f64()),
        format!(
            "  coordinator     {addr} (mutual TLS)   enrolment {}",
            cluster.coordinator.enroll_addr
        ),
        format!("  CA fingerprint  {}", cluster.ca_fingerprint),
        format!(
            "  departments     {} nodes online, {datasets} datasets published",
            cluster.nodes.len()
        ),
        format!(
            "  data            {} persons, {} companies in {}",
            cluster.planted.persons,
            cluster.planted.companies,
            dir.join("data").display()
        ),
        format!(
            "  certificates    {} (one directory per department, plus bureau/)",
            certs.display()
        ),
        format!(
            "  web console     https://{}/ (import a certificate exported below; README, \"Web console\")",
            cluster.coordinator.console_addr.map(|a| a.to_string()).unwrap_or_else(|| "off".into())
        ),
        String::new(),
        "In another terminal, act as a civil-affairs analyst:".into(),
        format!(
            "  export EXCHANGE_CONFIG={}",
            certs.join("civil-affairs/exchange.toml").display()
        ),
        format!("  {exchange} catalog search 机动车"),
        format!("  {exchange} catalog search 登记 --department real-estate"),
        format!("  {exchange} catalog search --key-type person_id"),
        format!("  {exchange} catalog show vehicle-admin/vehicles"),
        format!("  {exchange} members list"),
        format!("  {exchange} whoami"),
        format!("  {exchange} cert export --p12 civil-affairs.p12"),
        format!(
            "Act for another department with {}/<department>/exchange.toml.",
            certs.display()
        ),
        String::new(),
        "As the bureau operator:".into(),
        format!(
            "  {coordinator} --pki-dir {} member list --coordinator {addr}",
            bureau.display()
        ),
        format!(
            "  {coordinator} --pki-dir {} member add housing --name '住房和城乡建设局' --coordinator {addr}",
            bureau.display()
        ),
        String::new(),
        "The audit trail (every query is recorded at the coordinator and at the owner node):".into(),
        format!("  {exchange} audit log        # your queries, and queries on your data"),
        format!("  {exchange} report departments"),
        format!(
            "  EXCHANGE_CONFIG={} {exchange} audit subject --person-id {}",
            bureau.join("exchange.toml").display(),
            cluster.planted.official_person_id
        ),
        format!(
            "  {exchange} audit verify {} --ca {}",
            dir.join("nodes/vehicle-admin").display(),
            bureau.join("ca.crt").display()
        ),
        format!(
            "  {coordinator} --pki-dir {} audit reconcile --node vehicle-admin --coordinator {addr}",
            bureau.display()
        ),
    ];
    if let Some(m) = cluster.coordinator.metrics_addr {
        lines.push(format!(
            "  Prometheus: coordinator http://{m}/metrics; nodes:"
        ));
        for (id, node) in &cluster.nodes {
            if let Some(m) = node.metrics_addr {
                lines.push(format!("    {id:<18} http://{m}/metrics"));
            }
        }
    }
    lines.push(String::new());
    lines
}
