//! `deploy/ha/trial.sh`, the operator guide's highly available trial, as
//! an operator runs it: a private PostgreSQL, three coordinator replicas,
//! HAProxy in front, three nodes and an analyst that know only the
//! balancer. The catalog and the members' liveness are read through the
//! balancer; then, under a steady load of queries and catalog searches
//! through the balancer, two replicas are killed in turn with SIGKILL, and
//! not one call fails.
//! `tests/run` installs HAProxy and PostgreSQL; under CI=true a missing one
//! fails this test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use exchange_testkit::servers::required;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/ha/trial.sh")
}

fn tools() -> anyhow::Result<()> {
    let found = |name: &str| {
        Command::new("sh")
            .args([
                "-c",
                &format!("command -v {name} || ls /usr/lib/postgresql/*/bin/{name}"),
            ])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    anyhow::ensure!(
        found("haproxy"),
        "haproxy is missing (apt-get install haproxy; tests/run does this)"
    );
    anyhow::ensure!(
        found("initdb"),
        "PostgreSQL's initdb is missing (apt-get install postgresql)"
    );
    Ok(())
}

/// A base port whose next 21 ports are free now.
fn free_ports() -> u16 {
    for _ in 0..50 {
        let base = super::free_port().clamp(20_000, 60_000);
        let all_free =
            (0..=21).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if all_free {
            return base;
        }
    }
    panic!("no run of 22 free ports");
}

struct Trial {
    work: tempfile::TempDir,
    base: u16,
}

impl Trial {
    fn run(&self, args: &[&str]) -> Output {
        let bin = Path::new(env!("CARGO_BIN_EXE_coordinator"))
            .parent()
            .unwrap();
        Command::new("bash")
            .arg(script())
            .args(args)
            .current_dir(self.work.path())
            .env("EXCHANGE_BIN", bin)
            .env("EXCHANGE_TRIAL_PORT", self.base.to_string())
            .env_remove("EXCHANGE_CONFIG")
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "trial.sh {args:?} failed: {text}");
        text
    }
}

impl Drop for Trial {
    fn drop(&mut self) {
        self.run(&["stop", "trial"]);
    }
}

#[test]
fn the_ha_trial_script_serves_through_haproxy_and_survives_a_replica_killed() {
    if required("HAProxy and PostgreSQL", tools()).is_none() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    // PostgreSQL's user (when run as root) must reach its directory.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let trial = Trial {
        work,
        base: free_ports(),
    };
    let started = trial.ok(&["start", "trial"]);
    assert!(started.contains("up. Try:"), "{started}");
    let checked = trial.ok(&["check", "trial"]);
    assert!(checked.contains("real-estate/leases found"), "{checked}");
    assert!(checked.contains("members online through"), "{checked}");

    let load = Load::start(trial.work.path().join("trial"), trial.base);
    std::thread::sleep(std::time::Duration::from_secs(2));
    trial.ok(&["kill", "trial", "b"]);
    std::thread::sleep(std::time::Duration::from_secs(3));
    trial.ok(&["kill", "trial", "c"]);
    std::thread::sleep(std::time::Duration::from_secs(3));
    let (calls, failures, longest) = load.stop();
    println!(
        "HAProxy failover under load: {calls} calls, {} failed, longest pause {longest:?}",
        failures.len()
    );
    assert!(calls > 100, "only {calls} calls were made");
    assert!(
        failures.is_empty(),
        "{} of {calls} calls failed: {failures:?}",
        failures.len()
    );
    let again = trial.ok(&["check", "trial"]);
    assert!(again.contains("real-estate/leases found"), "{again}");
    assert!(again.contains("members online through"), "{again}");
}

/// Civil affairs' analyst querying real estate's leases and searching the
/// catalog through the balancer, one call after another, until stopped.
struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<(usize, Vec<String>, std::time::Duration)>,
}

impl Load {
    fn start(dir: PathBuf, base: u16) -> Load {
        use exchange_transport::TlsIdentity;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async move {
                let lb = format!("127.0.0.1:{base}");
                let client = |member: &str| {
                    let tls = TlsIdentity::load(&dir.join("certs").join(member), "client").unwrap();
                    let lb = lb.clone();
                    async move { exchange_client::Client::connect(&lb, &tls).await.unwrap() }
                };
                let civil = client("civil-affairs").await;
                let owner = client("real-estate").await;
                let asked = civil
                    .request_access(exchange_proto::v1::AccessRequest {
                        dataset: "real-estate/leases".into(),
                        purpose: "负载下的故障切换".into(),
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                if asked.grant_id.is_empty() {
                    owner
                        .approve(exchange_proto::v1::ApproveRequest {
                            request_id: asked.id,
                            ..Default::default()
                        })
                        .await
                        .unwrap();
                }
                ready_tx.send(()).unwrap();
                let (mut calls, mut failures) = (0, Vec::new());
                let mut longest = std::time::Duration::ZERO;
                let mut last_ok = std::time::Instant::now();
                while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
                    calls += 1;
                    let answered = if calls % 2 == 0 {
                        rows(&civil).await
                    } else {
                        civil
                            .search(exchange_proto::v1::SearchRequest {
                                text: "租赁".into(),
                                ..Default::default()
                            })
                            .await
                            .map(|_| ())
                            .map_err(|e| e.to_string())
                    };
                    match answered {
                        Ok(()) => {
                            longest = longest.max(last_ok.elapsed());
                            last_ok = std::time::Instant::now();
                        }
                        Err(e) => failures.push(e),
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                (calls, failures, longest)
            })
        });
        ready_rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the load's grant was not in place within 60 s");
        Load { stop, thread }
    }

    fn stop(self) -> (usize, Vec<String>, std::time::Duration) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// Five leases, read whole.
async fn rows(client: &exchange_client::Client) -> Result<(), String> {
    use futures::StreamExt;
    let mut stream = client
        .query(exchange_query::QueryCommand {
            dataset: "real-estate/leases".into(),
            fields: Vec::new(),
            filter: String::new(),
            purpose: "负载下的故障切换".into(),
            user: String::new(),
            limit: Some(5),
        })
        .await
        .map_err(|e| e.to_string())?;
    while let Some(batch) = stream.next().await {
        batch.map_err(|e| e.to_string())?;
    }
    Ok(())
}
