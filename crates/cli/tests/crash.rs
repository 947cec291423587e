//! Write-ahead under crashes: a real `exchange-node` process is killed at
//! injected points (`EXCHANGE_FAULT`) while serving a query. After a
//! restart its log verifies, and every query whose rows reached the client
//! has its record at the node (with the subject keys of every row that
//! left) and at the coordinator.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use exchange_audit::{Event, Record};
use exchange_client::Client;
use exchange_proto::v1 as pb;
use exchange_query::QueryCommand;
use exchange_testkit::{Cluster, ClusterBuilder};
use futures::StreamExt;

const NODE: &str = "public-security";

struct NodeProcess {
    child: Child,
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_node(
    cluster: &Cluster,
    manifest: &Path,
    data_dir: &Path,
    fault: Option<&str>,
) -> NodeProcess {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_exchange-node"));
    cmd.args(["--cert-dir"])
        .arg(cluster.member_dir(NODE))
        .args(["serve", "--manifest"])
        .arg(manifest)
        .args([
            "--coordinator",
            &cluster.coordinator.addr.to_string(),
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data_dir)
        .env("EXCHANGE_LOG_FORMAT", "text")
        .env_remove("EXCHANGE_FAULT");
    if let Some(f) = fault {
        cmd.env("EXCHANGE_FAULT", f);
    }
    NodeProcess {
        child: cmd.spawn().expect("exchange-node starts"),
    }
}

/// Waits until the coordinator sees the node online at a new address.
async fn wait_online(cluster: &Cluster, old_address: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let view = cluster.coordinator.state.federation.node_view(NODE);
        if view.online && view.address != old_address && !view.address.is_empty() {
            return view.address;
        }
        assert!(
            Instant::now() < deadline,
            "the node process never came online"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Rows received before the stream ended or failed.
async fn query(client: &Client, purpose: &str) -> (usize, Option<String>) {
    let cmd = QueryCommand {
        dataset: format!("{NODE}/household-registration"),
        fields: vec!["person_id".into(), "gender".into()],
        filter: String::new(),
        purpose: purpose.into(),
        user: String::new(),
        limit: None,
    };
    let mut stream = match client.query(cmd).await {
        Ok(s) => s,
        Err(e) => return (0, Some(e.to_string())),
    };
    let mut n = 0;
    while let Some(b) = stream.next().await {
        match b {
            Ok(b) => n += b.num_rows(),
            Err(e) => return (n, Some(e.to_string())),
        }
    }
    (n, None)
}

fn records(dir: &Path) -> Vec<Record> {
    let mut out = Vec::new();
    exchange_audit::read::scan(dir, |_, r| {
        out.push(r);
        true
    })
    .unwrap();
    out
}

fn verify_with_the_cli(data_dir: &Path, ca: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_exchange"))
        .args(["audit", "verify"])
        .arg(data_dir)
        .arg("--ca")
        .arg(ca)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "verify failed after a crash:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("OK"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_row_reaches_a_consumer_without_its_audit_record_whatever_the_crash_point() {
    let work = tempfile::tempdir().unwrap();
    let mut cluster = ClusterBuilder::new()
        .dir(work.path())
        .persons(20_000)
        .add_node(NODE)
        .add_node("civil-affairs")
        .start()
        .await
        .unwrap();
    cluster
        .grant(
            "civil-affairs",
            &format!("{NODE}/household-registration"),
            &["person_id", "gender"],
            pb::ApproveRequest::default(),
        )
        .await
        .unwrap();
    let civil = cluster.analyst("civil-affairs").await.unwrap();
    // The department's node runs as its own process from here on.
    let in_process = cluster.nodes.remove(NODE).unwrap();
    let manifest: PathBuf = in_process.state.config.manifest.clone();
    in_process.shutdown().await;
    let ca = cluster.member_dir(NODE).join("ca.crt");
    let coordinator_audit = cluster.coordinator.state.audit.dir().to_path_buf();

    let mut address = cluster.coordinator.state.federation.node_view(NODE).address;
    let mut running: Option<NodeProcess> = None;
    for (i, fault) in [
        "audit-before-sync",
        "audit-after-sync",
        "node-before-first-batch",
        "node-mid-stream",
    ]
    .into_iter()
    .enumerate()
    {
        drop(running.take());
        let data_dir = work.path().join(format!("node-process-{i}"));
        let mut node = spawn_node(&cluster, &manifest, &data_dir, Some(fault));
        address = wait_online(&cluster, &address).await;
        let purpose = format!("crash test {fault}");
        let (received, error) = query(&civil, &purpose).await;
        assert!(
            error.is_some(),
            "{fault}: the node died, the query cannot have succeeded"
        );
        let status = tokio::task::spawn_blocking(move || {
            let s = node.child.wait().unwrap();
            drop(node);
            s
        })
        .await
        .unwrap();
        assert!(!status.success(), "{fault}: the node must have aborted");
        if fault == "node-mid-stream" {
            assert_eq!(
                received, 8_192,
                "the first batch reached the consumer before the crash"
            );
        } else {
            assert_eq!(received, 0, "{fault}");
        }

        // Restart cleanly on the same data directory.
        let restarted = spawn_node(&cluster, &manifest, &data_dir, None);
        address = wait_online(&cluster, &address).await;
        running = Some(restarted);
        verify_with_the_cli(&data_dir, &ca);

        let node_records = records(&data_dir.join("audit"));
        let served = node_records.iter().find_map(|r| match &r.event {
            Event::QueryServed(s) if s.purpose == purpose => Some(s.clone()),
            _ => None,
        });
        let served =
            served.unwrap_or_else(|| panic!("{fault}: the served record is missing after restart"));
        let keys: usize = node_records
            .iter()
            .filter_map(|r| match &r.event {
                Event::QueryKeys(k) if k.query_id == served.query_id => Some(k.keys.len()),
                _ => None,
            })
            .sum();
        assert!(keys >= received, "{fault}: {received} rows reached the consumer but only {keys} subject keys were recorded");
        let decided = records(&coordinator_audit).iter().any(|r| {
            matches!(&r.event,
            Event::QueryDecision(d) if d.query_id == served.query_id && d.allowed)
        });
        assert!(decided, "{fault}: the coordinator's decision is missing");
    }

    // The same trail from the command line.
    let civil_config = cluster.member_dir("civil-affairs").join("exchange.toml");
    let exchange = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_exchange"))
            .arg("--config")
            .arg(&civil_config)
            .args(args)
            .output()
            .unwrap()
    };
    let out = exchange(&["report", "departments", "--format", "csv"]);
    let csv = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{csv}");
    assert!(
        csv.starts_with("department,queries_issued,denied,rows_received,queries_served"),
        "{csv}"
    );
    assert!(
        csv.lines().any(|l| l.starts_with("civil-affairs,4,0,")),
        "{csv}"
    );
    let out = exchange(&["--json", "audit", "log", "--purpose", "crash test"]);
    let lines = String::from_utf8_lossy(&out.stdout);
    assert_eq!(lines.lines().count(), 4, "{lines}");
    let mid: serde_json::Value = lines
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["purpose"] == "crash test node-mid-stream")
        .unwrap();
    assert_eq!(mid["rows"], 8_192, "{mid}");
    assert!(
        mid["status"].as_str().unwrap().starts_with("error"),
        "{mid}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_coordinator"))
        .arg("--pki-dir")
        .arg(cluster.pki_out.join("bureau"))
        .args([
            "audit",
            "reconcile",
            "--node",
            NODE,
            "--since",
            "1h",
            "--coordinator",
        ])
        .arg(cluster.coordinator.addr.to_string())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("queries authorized by the coordinator"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    drop(running);

    // A hex-editor edit of the node's log: verify exits 1 and names the entry.
    let dir = work.path().join("node-process-0");
    let segment = dir.join("audit/seg-00000001.log");
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x04;
    std::fs::write(&segment, &bytes).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_exchange"))
        .args(["audit", "verify"])
        .arg(&dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("TAMPERED: first bad entry"), "{text}");
    cluster.shutdown().await;
}
