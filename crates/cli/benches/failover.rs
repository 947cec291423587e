//! Failover benchmark (prints figures; not a timed test): how long a
//! client given two coordinator replicas takes to get a lookup answered
//! after the replica it uses is killed with SIGKILL.
//!
//! A federation on an ephemeral PostgreSQL (the test kit's), and two
//! `coordinator serve` processes on its key material and database. Each of
//! 20 rounds starts a fresh first replica, connects a client to "first,
//! second", runs lookups back to back, kills the first replica, and
//! measures from the kill to the first lookup that completes afterwards
//! (on the second). Prints p50, p99 and the worst round.
//!
//! Run: `cargo bench -p exchange-cli --bench failover`

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use exchange_client::Client;
use exchange_proto::v1 as pb;
use exchange_testkit::servers::EphemeralPostgres;
use exchange_testkit::{Cluster, ClusterBuilder};
use exchange_transport::TlsIdentity;

const ROUNDS: usize = 20;
const DATASET: &str = "public-security/household-registration";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `coordinator serve` on the cluster's key material and database; its
/// process and address once it accepts connections.
fn replica(cluster: &Cluster, name: &str, url: &str) -> anyhow::Result<(Child, String)> {
    let addr = format!("127.0.0.1:{}", free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_coordinator"))
        .arg("--data-dir")
        .arg(cluster.dir.join(name))
        .arg("--pki-dir")
        .arg(cluster.coordinator_config.pki_dir())
        .args([
            "--replica-id",
            name,
            "--state",
            url,
            "serve",
            "--listen",
            &addr,
        ])
        .args(["--enroll-listen", &format!("127.0.0.1:{}", free_port())])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let started = Instant::now();
    while std::net::TcpStream::connect(&addr).is_err() {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "{name} did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((child, addr))
}

/// One round: lookups through "first,second" until after `first` is
/// killed; the time from the kill to the first lookup completed after it.
async fn round(cluster: &Cluster, url: &str, second: &str, n: usize) -> anyhow::Result<Duration> {
    let (mut first, first_addr) = replica(cluster, &format!("first-{n}"), url)?;
    let tls = TlsIdentity::load(&cluster.member_dir("civil-affairs"), "client")?;
    let client = Client::connect(&format!("{first_addr},{second}"), &tls).await?;
    let person = cluster.planted.official_person_id.clone();
    let done: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let (done, stop) = (done.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let answer = client
                    .lookup("person_id", &person, "故障切换测量", Duration::from_secs(3))
                    .await;
                if answer.is_ok() {
                    done.lock().expect("lock").push(Instant::now());
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed = Instant::now();
    first.kill()?;
    first.wait()?;
    let deadline = killed + Duration::from_secs(10);
    let recovered = loop {
        let after = done
            .lock()
            .expect("lock")
            .iter()
            .copied()
            .find(|t| *t > killed);
        if let Some(t) = after {
            break t - killed;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no lookup succeeded within 10 s of the kill"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    stop.store(true, Ordering::Relaxed);
    worker.await?;
    Ok(recovered)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let pg = EphemeralPostgres::start()?;
    let url = pg.create_database("failover").await?;
    let cluster = ClusterBuilder::new()
        .add_node("public-security")
        .add_node("civil-affairs")
        .state(&url)
        .start()
        .await?;
    // Unmasked: the probe ledger would refuse one masked key tested again and again.
    let approve = pb::ApproveRequest {
        unmask: vec!["person_id".into()],
        ..Default::default()
    };
    cluster
        .grant("civil-affairs", DATASET, &[], approve)
        .await?;
    let (mut second, second_addr) = replica(&cluster, "second", &url)?;
    let mut times = Vec::new();
    for n in 0..ROUNDS {
        times.push(round(&cluster, &url, &second_addr, n).await?);
    }
    second.kill()?;
    second.wait()?;
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let at = |p: f64| times[((times.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "failover benchmark, {} cores: kill -9 of the replica in use to the first lookup answered by the other, {ROUNDS} rounds",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "  p50 {:.1} ms  p99 {:.1} ms  worst {:.1} ms  best {:.1} ms",
        ms(at(0.5)),
        ms(at(0.99)),
        ms(times[times.len() - 1]),
        ms(times[0])
    );
    cluster.shutdown().await;
    Ok(())
}
