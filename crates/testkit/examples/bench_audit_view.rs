//! The audit view replicas share, at scale: `audit log` and `report
//! departments` for one department and for the bureau over 10,000,000
//! queries in the shared table, through a coordinator (`Audit.Log` and
//! `Audit.Report` over mutual TLS), p50 and p99 of 30 calls. The report
//! reads the coordinator's statistics, fed by the view's change feed; the
//! time that feed takes to read all 10,000,000 entries once is what a
//! report without that index would cost at least.
//!
//! The 10,000,000 queries are written straight into the table with SQL
//! (100 departments as consumers, 1 % of them by civil affairs, and 100
//! owners, over about 25 hours: one query every 9 ms), as the replicas' copies would be; the
//! federation itself is a small one on the same database. The ephemeral
//! PostgreSQL runs with the test kit's settings (fsync off).
//!
//! With `ENGINE=sled`, the coordinator runs on the embedded default and
//! the queries (`QUERIES`, default 1,000,000 there) go through its audit
//! index's own write path (observed records, merged and written in
//! batches), into the index in its sled store.
//!
//! Run: `cargo run --release -p exchange-testkit --example bench_audit_view`
//! (`ENGINE=sled QUERIES=1000000` for the embedded index)

use std::time::{Duration, Instant};

use exchange_audit::{Event, Observer, QueryCompletion, QueryDecision, Record};
use exchange_proto::v1 as pb;
use exchange_testkit::servers::EphemeralPostgres;
use exchange_testkit::{Cluster, ClusterBuilder};
use sqlx::Connection;

const CALLS: usize = 30;
/// The first query's time; one follows every 9 ms.
const START_MS: i64 = 1_700_000_000_000;

/// The consumer and owner of synthetic query `i`, as `fill` makes them.
fn parties(i: i64) -> (String, String) {
    let consumer = match i % 100 {
        0 => "civil-affairs".to_string(),
        n => format!("dept-{n}"),
    };
    (consumer, format!("owner-{}", (i / 7) % 100))
}

/// Feeds `queries` synthetic queries (decision and completion records)
/// to the coordinator's audit index, as its log would, and writes them.
fn fill_embedded(cluster: &Cluster, queries: i64) -> anyhow::Result<Duration> {
    let index = &cluster.coordinator.state.audit_index;
    let started = Instant::now();
    for i in 1..=queries {
        let (consumer, owner) = parties(i);
        let query_id = format!("bench-{i}");
        let time_ms = START_MS + i * 9;
        index.observe(&Record {
            time_ms,
            event: Event::QueryDecision(QueryDecision {
                query_id: query_id.clone(),
                consumer,
                purpose: format!("核查 {}", i % 50),
                dataset: format!("{owner}/dataset-{}", i % 5),
                owner,
                fields: vec!["person_id".into()],
                allowed: true,
                rule: "grant required".into(),
                grant_id: "G-1".into(),
                ..Default::default()
            }),
        });
        index.observe(&Record {
            time_ms,
            event: Event::QueryCompletion(QueryCompletion {
                query_id,
                rows: 1,
                bytes: 100,
                duration_ms: 3,
                status: "ok".into(),
                ..Default::default()
            }),
        });
        if i % 10_000 == 0 {
            index.flush()?;
        }
    }
    index.flush()?;
    Ok(started.elapsed())
}

/// Inserts `QUERIES` synthetic entries in the shared audit view's format.
async fn fill(url: &str, queries: i64) -> anyhow::Result<Duration> {
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let started = Instant::now();
    let sql = format!(
        r#"INSERT INTO exchange_audit_queries
           SELECT 'bench-' || i,
                  t,
                  consumer,
                  owner,
                  owner || '/dataset-' || (i % 5),
                  '核查 ' || (i % 50),
                  ('{{"time_ms":' || t || ',"decision":{{"query_id":"bench-' || i
                      || '","ticket_id":"","consumer":"' || consumer || '","user":"","purpose":"核查 ' || (i % 50)
                      || '","dataset":"' || owner || '/dataset-' || (i % 5) || '","owner":"' || owner
                      || '","fields":["person_id"],"filter_digest":"","allowed":true,"rule":"grant required","reason":"","grant_id":"G-1"}},'
                      || '"completion":{{"query_id":"bench-' || i || '","ticket_id":"","dataset":"","consumer":"","rows":1,"bytes":100,"duration_ms":3,"status":"ok"}}}}')::jsonb
           FROM (SELECT i,
                        {START_MS} + i * 9 AS t,
                        CASE WHEN i % 100 = 0 THEN 'civil-affairs' ELSE 'dept-' || (i % 100) END AS consumer,
                        'owner-' || ((i / 7) % 100) AS owner
                 FROM generate_series(1, {queries}) AS i) AS q"#
    );
    sqlx::query(&sql).execute(&mut conn).await?;
    sqlx::query("ANALYZE exchange_audit_queries")
        .execute(&mut conn)
        .await?;
    Ok(started.elapsed())
}

async fn timed<F, Fut>(mut call: F) -> anyhow::Result<(f64, f64, usize)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<usize>>,
{
    let mut ms = Vec::new();
    let mut rows = 0;
    for _ in 0..CALLS {
        let t = Instant::now();
        rows = call().await?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    let at = |p: f64| ms[((ms.len() as f64 - 1.0) * p).round() as usize];
    Ok((at(0.5), at(0.99), rows))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let embedded = std::env::var("ENGINE").is_ok_and(|e| e == "sled");
    let queries: i64 = match std::env::var("QUERIES") {
        Ok(n) => n.parse()?,
        Err(_) if embedded => 1_000_000,
        Err(_) => 10_000_000,
    };
    let builder = ClusterBuilder::new()
        .add_node("civil-affairs")
        .add_node("real-estate");
    let (_pg, cluster, filled) = if embedded {
        let cluster = builder.start().await?;
        println!("writing {queries} queries through the embedded audit index ...");
        let filled = tokio::task::block_in_place(|| fill_embedded(&cluster, queries))?;
        (None, cluster, filled)
    } else {
        let pg = EphemeralPostgres::start()?;
        let url = pg.create_database("audit_view").await?;
        let cluster = builder.state(&url).start().await?;
        println!("writing {queries} queries into the shared audit view ...");
        let filled = fill(&url, queries).await?;
        (Some(pg), cluster, filled)
    };
    println!(
        "audit view benchmark, {} cores, {} index, {queries} queries (written in {:.0} s), {CALLS} calls each",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        if embedded { "sled" } else { "PostgreSQL" },
        filled.as_secs_f64()
    );
    let civil = cluster.analyst("civil-affairs").await?;
    // The statistics take in the view's 10,000,000 entries through the
    // change feed, then answer reports from memory.
    let fed = Instant::now();
    let statistics = &cluster.coordinator.state.statistics;
    while statistics.queries() < queries as usize {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "  the change feed read all {queries} entries into the statistics in {:.1} s (a report without the index reads at least that); this process's resident memory: {}",
        fed.elapsed().as_secs_f64(),
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(|l| l[6..].trim().to_string()))
            .unwrap_or_default()
    );
    let cases = [
        (
            "a department's audit log (newest 1,000 of its 1 %)",
            &civil,
            pb::AuditLogRequest::default(),
        ),
        (
            "the same, one purpose",
            &civil,
            pb::AuditLogRequest {
                purpose: "核查 0".into(),
                ..Default::default()
            },
        ),
        (
            "the bureau's audit log (newest 1,000 of all)",
            &cluster.admin,
            pb::AuditLogRequest::default(),
        ),
        (
            "the bureau, one owner (newest 1,000 of its 1 %)",
            &cluster.admin,
            pb::AuditLogRequest {
                owner: "owner-42".into(),
                ..Default::default()
            },
        ),
    ];
    for (label, client, request) in cases {
        let (p50, p99, rows) =
            timed(|| async { Ok(client.audit_log(request.clone()).await?.rows.len()) }).await?;
        println!("  {label:<52} p50 {p50:>7.1} ms  p99 {p99:>7.1} ms  ({rows} rows)");
    }
    for (label, client) in [
        ("the bureau's departments report (all)", &cluster.admin),
        ("civil affairs' departments report (its 1 %)", &civil),
    ] {
        let (p50, p99, rows) = timed(|| async {
            let request = pb::ReportRequest {
                kind: "departments".into(),
                ..Default::default()
            };
            Ok(client.report(request).await?.rows.len())
        })
        .await?;
        println!("  {label:<52} p50 {p50:>7.1} ms  p99 {p99:>7.1} ms  ({rows} rows)");
    }
    cluster.shutdown().await;
    Ok(())
}
