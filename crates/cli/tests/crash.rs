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

/// A `coordinator serve` process on fixed ports, killed with SIGKILL on drop.
struct CoordinatorProcess {
    child: Child,
}

impl Drop for CoordinatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A coordinator that asks nodes for a heartbeat once an hour: a node
/// then publishes its catalog once, and never again in the test, so a
/// catalog found after a restart was found in the coordinator's store.
fn spawn_coordinator(data: &Path, main: &str, enrol: &str) -> CoordinatorProcess {
    let config = data.with_extension("toml");
    std::fs::write(
        &config,
        "heartbeat_interval_secs = 3600\noffline_after_secs = 10800\n",
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_coordinator"))
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(data)
        .args(["serve", "--listen", main, "--enroll-listen", enrol])
        .env("EXCHANGE_LOG_FORMAT", "text")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the coordinator starts");
    CoordinatorProcess { child }
}

/// The bureau's admin client, once the coordinator answers.
async fn admin_when_up(data: &Path, main: &str) -> Client {
    let tls = exchange_transport::TlsIdentity::load(&data.join("pki"), "admin").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(admin) = Client::connect(main, &tls).await {
            if admin.members().await.is_ok() {
                return admin;
            }
        }
        assert!(Instant::now() < deadline, "the coordinator never came up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Enrols `role` for `member` with `token` into `dir`; the client for it.
async fn enrol(
    enrol_addr: &str,
    main: &str,
    token: String,
    fingerprint: &str,
    role: exchange_pki::Role,
    dir: &Path,
) -> anyhow::Result<Client> {
    let server_names = match role {
        exchange_pki::Role::Node => vec!["127.0.0.1".to_string()],
        _ => vec![],
    };
    exchange_client::enroll(&exchange_client::EnrollOptions {
        enroll_addr: enrol_addr.to_string(),
        token,
        ca_fingerprint: fingerprint.to_string(),
        role,
        server_names,
        out_dir: dir.to_path_buf(),
        force: true,
    })
    .await?;
    let tls = exchange_transport::TlsIdentity::load(dir, &role.to_string())?;
    Ok(Client::connect(main, &tls).await?)
}

/// What was acknowledged before a kill, to be found after the restart.
#[derive(Default)]
struct Acknowledged {
    members: Vec<String>,
    /// Member, and the certificate count acknowledged for it.
    enrolled: Vec<(String, u32)>,
    spent_tokens: Vec<String>,
    revoked_members: Vec<(String, PathBuf)>,
    grants: Vec<String>,
    revoked_grants: Vec<String>,
    disputes: Vec<String>,
    /// Every request, grant and dispute number ever handed out.
    numbers: std::collections::BTreeSet<String>,
}

impl Acknowledged {
    fn issue(&mut self, number: &str) {
        assert!(
            self.numbers.insert(number.to_string()),
            "{number} was handed out twice: the restart forgot it"
        );
    }

    async fn check(&self, admin: &Client, consumer: &Client, addrs: (&str, &str), fp: &str) {
        let (main, enrol_addr) = addrs;
        let members = admin.members().await.unwrap();
        let member = |id: &str| members.iter().find(|m| m.id == id).cloned();
        for id in &self.members {
            assert!(member(id).is_some(), "member {id} was lost");
        }
        for (id, certificates) in &self.enrolled {
            let m = member(id).unwrap();
            assert!(
                m.certificates >= *certificates,
                "{id}: the certificate issued before the kill was forgotten"
            );
        }
        for (id, dir) in &self.revoked_members {
            assert_eq!(member(id).unwrap().status, "revoked", "{id} came back");
            let tls = exchange_transport::TlsIdentity::load(dir, "node").unwrap();
            let refused = match Client::connect(main, &tls).await {
                Ok(c) => c.who_am_i().await.is_err(),
                Err(_) => true,
            };
            assert!(refused, "the certificate of revoked {id} works again");
        }
        for token in &self.spent_tokens {
            let scratch = tempfile::tempdir().unwrap();
            let again = exchange_client::enroll(&exchange_client::EnrollOptions {
                enroll_addr: enrol_addr.to_string(),
                token: token.clone(),
                ca_fingerprint: fp.to_string(),
                role: exchange_pki::Role::Node,
                server_names: vec!["127.0.0.1".into()],
                out_dir: scratch.path().to_path_buf(),
                force: true,
            })
            .await;
            assert!(again.is_err(), "a spent enrolment token worked again");
        }
        // The catalog the node published once, at the start.
        let vehicles = consumer.dataset("vehicle-admin/vehicles").await;
        assert!(
            vehicles.is_ok(),
            "the published catalog was lost: {vehicles:?}"
        );
        let grants = consumer.grants().await.unwrap();
        let status = |id: &str| grants.iter().find(|g| g.id == id).map(|g| g.status.clone());
        for id in &self.grants {
            assert!(status(id).is_some(), "grant {id} was lost");
        }
        for id in &self.revoked_grants {
            assert_eq!(
                status(id).as_deref(),
                Some("revoked"),
                "grant {id} came back"
            );
        }
        let disputes = consumer.disputes("").await.unwrap();
        for id in &self.disputes {
            assert!(
                disputes.iter().any(|d| &d.id == id),
                "dispute {id} was lost"
            );
        }
    }
}

/// A delay of 0 to 100 ms, different each round.
fn kill_delay(round: u64) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    Duration::from_millis((nanos ^ round.wrapping_mul(2_654_435_761)) % 101)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_state_change_survives_kill_9_within_100_ms() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("coordinator");
    let status = Command::new(env!("CARGO_BIN_EXE_coordinator"))
        .arg("--data-dir")
        .arg(&data)
        .args(["init", "--server-name", "127.0.0.1"])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let main = format!("127.0.0.1:{}", free_port());
    let enrol_addr = format!("127.0.0.1:{}", free_port());
    let mut coordinator = spawn_coordinator(&data, &main, &enrol_addr);
    let mut admin = admin_when_up(&data, &main).await;

    // An owner with a node and an analyst, and a consuming department.
    let demo = work.path().join("demo");
    exchange_demo_data::generate(
        &demo,
        &exchange_demo_data::Options {
            persons: 1_000,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let owner_dir = work.path().join("vehicle-admin");
    let added = admin
        .add_member("vehicle-admin", "车辆管理所", 0)
        .await
        .unwrap();
    let fp = added.ca_fingerprint.clone();
    let node_token = added.token.unwrap().token;
    let owner_node_role = exchange_pki::Role::Node;
    enrol(
        &enrol_addr,
        &main,
        node_token,
        &fp,
        owner_node_role,
        &owner_dir,
    )
    .await
    .unwrap();
    let analyst = |member: &'static str, dir: PathBuf| {
        let (admin, enrol_addr, main, fp) = (&admin, &enrol_addr, &main, &fp);
        async move {
            let token = admin
                .issue_token(member, exchange_pki::Role::Client, 0)
                .await
                .unwrap()
                .token
                .unwrap()
                .token;
            let client = exchange_pki::Role::Client;
            enrol(enrol_addr, main, token, fp, client, &dir)
                .await
                .unwrap();
        }
    };
    analyst("vehicle-admin", owner_dir.clone()).await;
    let consumer_dir = work.path().join("civil-affairs");
    admin
        .add_member("civil-affairs", "民政局", 0)
        .await
        .unwrap();
    analyst("civil-affairs", consumer_dir.clone()).await;
    let node = exchange_node::start(exchange_node::NodeConfig {
        manifest: demo.join("vehicle-admin.toml"),
        coordinator: main.clone(),
        listen: "127.0.0.1:0".into(),
        cert_dir: owner_dir.clone(),
        data_dir: work.path().join("node"),
        heartbeat_interval_secs: 1,
        manifest_poll_secs: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    let connect = |dir: &Path| {
        let tls = exchange_transport::TlsIdentity::load(dir, "client").unwrap();
        let main = main.clone();
        async move { Client::connect(&main, &tls).await.unwrap() }
    };
    let mut owner = connect(&owner_dir).await;
    let mut consumer = connect(&consumer_dir).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while consumer.dataset("vehicle-admin/vehicles").await.is_err() {
        assert!(Instant::now() < deadline, "the catalog was never published");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut acked = Acknowledged::default();
    let mut tokens: Vec<(String, String)> = Vec::new();
    let mut enrolled_members: Vec<(String, PathBuf)> = Vec::new();
    let mut last_grant: Option<String> = None;
    let mut kinds = std::collections::BTreeMap::<&str, u32>::new();
    for round in 0..50u64 {
        // One acknowledged change, then kill -9 within 0 to 100 ms.
        let kind = match round % 6 {
            0 => {
                let id = format!("m{round}");
                let added = admin.add_member(&id, "测试部门", 0).await.unwrap();
                acked.members.push(id.clone());
                tokens.push((id, added.token.unwrap().token));
                "member added"
            }
            1 => {
                let (id, token) = tokens.pop().unwrap();
                let dir = work.path().join(&id);
                enrol(
                    &enrol_addr,
                    &main,
                    token.clone(),
                    &fp,
                    exchange_pki::Role::Node,
                    &dir,
                )
                .await
                .unwrap();
                acked.enrolled.push((id.clone(), 1));
                acked.spent_tokens.push(token);
                enrolled_members.push((id, dir));
                "certificate issued"
            }
            2 => {
                let request = consumer
                    .request_access(pb::AccessRequest {
                        dataset: "vehicle-admin/vehicles".into(),
                        fields: vec!["plate_no".into(), "owner_id".into()],
                        purpose: "崩溃测试".into(),
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                acked.issue(&request.id);
                let approved = owner
                    .approve(pb::ApproveRequest {
                        request_id: request.id.clone(),
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                acked.issue(&approved.grant_id);
                acked.grants.push(approved.grant_id.clone());
                last_grant = Some(approved.grant_id);
                "grant approved"
            }
            3 => {
                let grant = last_grant.take().unwrap();
                owner.revoke_grant(&grant, "崩溃测试").await.unwrap();
                acked.revoked_grants.push(grant);
                "grant revoked"
            }
            5 => {
                let dispute = consumer
                    .file_dispute(pb::FileDisputeRequest {
                        dataset: "vehicle-admin/vehicles".into(),
                        key: format!("粤E{round:05}"),
                        field: "plate_no".into(),
                        note: "崩溃测试".into(),
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                acked.issue(&dispute.id);
                acked.disputes.push(dispute.id);
                "dispute filed"
            }
            _ => {
                let (id, dir) = enrolled_members.pop().unwrap();
                admin.revoke_member(&id, "崩溃测试").await.unwrap();
                acked.revoked_members.push((id, dir));
                "member revoked"
            }
        };
        *kinds.entry(kind).or_default() += 1;
        tokio::time::sleep(kill_delay(round)).await;
        drop(coordinator);
        coordinator = spawn_coordinator(&data, &main, &enrol_addr);
        admin = admin_when_up(&data, &main).await;
        owner = connect(&owner_dir).await;
        consumer = connect(&consumer_dir).await;
        acked
            .check(&admin, &consumer, (&main, &enrol_addr), &fp)
            .await;
    }
    assert_eq!(kinds.values().sum::<u32>(), 50, "{kinds:?}");
    node.shutdown().await;
}

#[path = "support/failover.rs"]
mod failover;

#[path = "support/ha_trial.rs"]
mod ha_trial;
