//! What the state engine costs the query path, measured in one run:
//! lookups/s and latency through one coordinator on sled, one on
//! PostgreSQL, and three coordinators on one PostgreSQL database with the
//! clients spread over them. Grants are held in memory on every engine;
//! what PostgreSQL adds per lookup is the quota counter's write (a commit
//! instead of a write to sled's log without fsync).
//!
//! Needs PostgreSQL's server binaries (`tests/run` installs them); the
//! database is an ephemeral one started here. Run:
//! `cargo run --release -p exchange-testkit --example bench_state_engines`

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use exchange_client::Client;
use exchange_proto::v1 as pb;
use exchange_testkit::servers::EphemeralPostgres;
use exchange_testkit::{Cluster, ClusterBuilder};
use exchange_transport::TlsIdentity;

const PERSONS: usize = 20_000;
const CLIENTS: usize = 16;
const WARMUP: Duration = Duration::from_secs(2);
const MEASURE: Duration = Duration::from_secs(10);
const ROUNDS: u32 = 2;
/// A daily row quota no run reaches.
const QUOTA: u64 = 1_000_000_000;
const PURPOSE: &str = "户籍信息核验";
const DATASET: &str = "public-security/household-registration";

struct Figures {
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// A federation on `state` whose grant has `quota` rows a day (0: none;
/// with one, every answer adds to a counter in the state store).
async fn federation(state: &str, quota: u64) -> anyhow::Result<Cluster> {
    let cluster = ClusterBuilder::new()
        .persons(PERSONS)
        .add_node("public-security")
        .add_node("civil-affairs")
        .state(state)
        .audit_fsync(true)
        .start()
        .await?;
    // Unmasked: the probe ledger would refuse a masked key tested again and again.
    let approve = pb::ApproveRequest {
        unmask: vec!["person_id".into()],
        quota_rows_per_day: quota,
        ..Default::default()
    };
    cluster
        .grant("civil-affairs", DATASET, &[], approve)
        .await?;
    Ok(cluster)
}

/// `CLIENTS` clients, spread over `addresses`, each looking up the same
/// person as fast as answers come, for `WARMUP` then `MEASURE`.
async fn load(cluster: &Cluster, addresses: &[String]) -> anyhow::Result<Figures> {
    let tls = TlsIdentity::load(&cluster.member_dir("civil-affairs"), "client")?;
    let person = cluster.planted.official_person_id.clone();
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let client = Client::connect(&addresses[i % addresses.len()], &tls).await?;
        let (person, measuring, stop) = (person.clone(), measuring.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let answer = client
                    .lookup("person_id", &person, PURPOSE, Duration::from_secs(5))
                    .await;
                if answer.is_ok() && measuring.load(Ordering::Relaxed) {
                    latencies.push(t.elapsed().as_secs_f64() * 1e3);
                }
            }
            latencies
        }));
    }
    tokio::time::sleep(WARMUP).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(MEASURE).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await?);
    }
    all.sort_by(f64::total_cmp);
    anyhow::ensure!(!all.is_empty(), "no lookup succeeded");
    let at = |p: f64| all[((all.len() as f64 - 1.0) * p).round() as usize];
    Ok(Figures {
        per_sec: all.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: at(0.5),
        p99_ms: at(0.99),
    })
}

fn show(label: &str, f: &Figures, sled: Option<&Figures>) {
    let ratio = sled.map_or(String::new(), |s| {
        format!("   {:.3}x sled's lookups/s", f.per_sec / s.per_sec)
    });
    println!(
        "  {label:<40} {:>7.0} lookups/s  p50 {:>6.2} ms  p99 {:>6.2} ms{ratio}",
        f.per_sec, f.p50_ms, f.p99_ms
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let pg = EphemeralPostgres::start()?;
    println!(
        "state engine benchmark, {} cores, {CLIENTS} clients, {PERSONS} persons, {} s measured after {} s warm-up",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        MEASURE.as_secs(),
        WARMUP.as_secs()
    );

    // Two rounds, so that neither engine always runs first (cold caches).
    for round in 1..=ROUNDS {
        println!("round {round}");
        run_round(&pg, round).await?;
    }
    Ok(())
}

async fn run_round(pg: &EphemeralPostgres, round: u32) -> anyhow::Result<()> {
    let sled = federation("sled", 0).await?;
    let on_sled = load(&sled, &[sled.coordinator.addr.to_string()]).await?;
    show("one coordinator, sled", &on_sled, None);
    sled.shutdown().await;

    let url = pg.create_database(&format!("bench_one_{round}")).await?;
    let one = federation(&url, 0).await?;
    let on_pg = load(&one, &[one.coordinator.addr.to_string()]).await?;
    show("one coordinator, PostgreSQL", &on_pg, Some(&on_sled));
    one.shutdown().await;

    // A daily row quota: each answer adds to the grant's counter.
    let sled_quota = federation("sled", QUOTA).await?;
    let on_sled_quota = load(&sled_quota, &[sled_quota.coordinator.addr.to_string()]).await?;
    show(
        "one coordinator, sled, row quota",
        &on_sled_quota,
        Some(&on_sled),
    );
    sled_quota.shutdown().await;
    let url = pg.create_database(&format!("bench_quota_{round}")).await?;
    let pg_quota = federation(&url, QUOTA).await?;
    let on_pg_quota = load(&pg_quota, &[pg_quota.coordinator.addr.to_string()]).await?;
    show(
        "one coordinator, PostgreSQL, row quota",
        &on_pg_quota,
        Some(&on_sled),
    );
    pg_quota.shutdown().await;

    let url = pg.create_database(&format!("bench_three_{round}")).await?;
    let three = federation(&url, 0).await?;
    let (b, c) = (three.replica("b").await?, three.replica("c").await?);
    let addresses = [
        three.coordinator.addr.to_string(),
        b.addr.to_string(),
        c.addr.to_string(),
    ];
    let on_three = load(&three, &addresses).await?;
    show("three coordinators, PostgreSQL", &on_three, Some(&on_sled));
    b.shutdown().await;
    c.shutdown().await;
    three.shutdown().await;
    Ok(())
}
