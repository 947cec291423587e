//! Analysts' own tools against the Rust client, measured in one run:
//!
//! - a single-key `SELECT` through ADBC's Flight SQL driver (Python)
//!   against the same one-dataset lookup through the Rust client's query,
//!   and through the coordinator's `Lookups.Lookup`;
//! - a bulk export of a whole dataset into pandas through ADBC
//!   (`fetch_df`) against pyarrow's plain Flight `DoGet` + `to_pandas`.
//!
//! Needs python3 with pyarrow and adbc-driver-flightsql (`tests/run`
//! installs them). Run:
//! `cargo run --release -p exchange-testkit --example bench_analyst_tools`

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use exchange_proto::v1 as pb;
use exchange_testkit::ClusterBuilder;
use futures::TryStreamExt;

const PERSONS: usize = 200_000;
const SINGLE_ROUNDS: u16 = 300;
const EXPORT_ROUNDS: usize = 3;
const PURPOSE: &str = "户籍信息核验";
const DATASET: &str = "public-security/household-registration";

fn percentiles(mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(f64::total_cmp);
    let at = |p: f64| ms[((ms.len() as f64 - 1.0) * p).round() as usize];
    (at(0.5), at(0.99))
}

fn python(job: &serde_json::Value) -> anyhow::Result<serde_json::Value> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/bench_analyst_tools.py"
    );
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(job.to_string().as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(out.status.success(), "the Python half failed");
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn rows_per_sec(runs: &serde_json::Value) -> (u64, f64) {
    let runs = runs.as_array().expect("runs");
    let rows = runs[0][0].as_u64().unwrap_or(0);
    let best = runs
        .iter()
        .filter_map(|r| r[1].as_f64())
        .fold(f64::MAX, f64::min);
    (rows, rows as f64 / best)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    println!("generating {PERSONS} persons ...");
    let cluster = ClusterBuilder::new()
        .persons(PERSONS)
        .add_node("public-security")
        .add_node("civil-affairs")
        .start()
        .await?;
    // Unmasked: the probe ledger would refuse a masked key tested again and again.
    let approve = pb::ApproveRequest {
        unmask: vec!["person_id".into()],
        ..Default::default()
    };
    cluster
        .grant("civil-affairs", DATASET, &[], approve)
        .await?;
    let civil = cluster.analyst("civil-affairs").await?.with_user("bench");
    let official = cluster.planted.official_person_id.clone();

    // The Rust client: the same single-key query, then the Lookup RPC.
    let (mut query_ms, mut lookup_ms) = (Vec::new(), Vec::new());
    for _ in 0..SINGLE_ROUNDS {
        let command = exchange_query::QueryCommand {
            dataset: DATASET.into(),
            fields: vec![],
            filter: format!("person_id = '{official}'"),
            purpose: PURPOSE.into(),
            user: String::new(),
            limit: None,
        };
        let t = Instant::now();
        let batches: Vec<_> = civil.query(command).await?.try_collect().await?;
        query_ms.push(t.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(batches.iter().map(|b| b.num_rows()).sum::<usize>() == 1);
        let t = Instant::now();
        civil
            .lookup("person_id", &official, PURPOSE, Duration::from_secs(3))
            .await?;
        lookup_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let job = serde_json::json!({
        "address": cluster.coordinator.addr.to_string(),
        "cert_dir": cluster.member_dir("civil-affairs"),
        "purpose": PURPOSE,
        "keys": vec![official.clone(); SINGLE_ROUNDS as usize],
        "table": ["public-security", "household-registration"],
        "export_rounds": EXPORT_ROUNDS,
    });
    let out = python(&job)?;
    let adbc_ms: Vec<f64> = out["adbc_single_ms"]
        .as_array()
        .expect("timings")
        .iter()
        .filter_map(|v| v.as_f64())
        .collect();
    let (adbc50, adbc99) = percentiles(adbc_ms);
    let (rust50, rust99) = percentiles(query_ms);
    let (look50, look99) = percentiles(lookup_ms);
    let (adbc_rows, adbc_rate) = rows_per_sec(&out["adbc_export"]);
    let (flight_rows, flight_rate) = rows_per_sec(&out["pyarrow_export"]);
    println!(
        "analyst tools benchmark, {} cores, {SINGLE_ROUNDS} single-key reads of {DATASET} ({PERSONS} rows)",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    println!("  single key   ADBC Flight SQL SELECT  p50 {adbc50:.2} ms  p99 {adbc99:.2} ms");
    println!("               Rust client query       p50 {rust50:.2} ms  p99 {rust99:.2} ms   ADBC/Rust {:.2}x at p50, {:.2}x at p99", adbc50 / rust50, adbc99 / rust99);
    println!("               Rust client Lookup RPC  p50 {look50:.2} ms  p99 {look99:.2} ms");
    println!("  bulk export  ADBC fetch_df           {adbc_rows} rows  {adbc_rate:.0} rows/s (best of {EXPORT_ROUNDS})");
    println!("               pyarrow DoGet+to_pandas {flight_rows} rows  {flight_rate:.0} rows/s   ADBC/pyarrow {:.2}x", adbc_rate / flight_rate);
    cluster.shutdown().await;
    Ok(())
}
