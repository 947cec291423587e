//! `deploy/ha/trial.sh`, the operator guide's highly available trial, as
//! an operator runs it: a private PostgreSQL, three coordinator replicas,
//! HAProxy in front, three nodes and an analyst that know only the
//! balancer. The catalog and the members' liveness are read through the
//! balancer, one replica is killed with SIGKILL, and they are read again.
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

    trial.ok(&["kill", "trial", "b"]);
    // HAProxy's health check drops the dead replica within about 1 s; a
    // connection it still sends there fails and is answered by the next.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let again = trial.ok(&["check", "trial"]);
    assert!(again.contains("real-estate/leases found"), "{again}");
    assert!(again.contains("members online through"), "{again}");
}
