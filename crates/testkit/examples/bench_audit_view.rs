//! The audit view replicas share, at scale: `audit log` for one department
//! and for the bureau over 10,000,000 queries in the shared table, through
//! a coordinator (`Audit.Log` over mutual TLS), p50 and p99 of 30 calls.
//!
//! The 10,000,000 queries are written straight into the table with SQL
//! (100 departments as consumers, 1 % of them by civil affairs, and 100
//! owners, over about 3 years), as the replicas' copies would be; the
//! federation itself is a small one on the same database. The ephemeral
//! PostgreSQL runs with the test kit's settings (fsync off).
//!
//! Run: `cargo run --release -p exchange-testkit --example bench_audit_view`

use std::time::{Duration, Instant};

use exchange_client::Client;
use exchange_proto::v1 as pb;
use exchange_testkit::servers::EphemeralPostgres;
use exchange_testkit::ClusterBuilder;
use sqlx::Connection;

const QUERIES: i64 = 10_000_000;
const CALLS: usize = 30;

/// Inserts `QUERIES` synthetic entries in the shared audit view's format.
async fn fill(url: &str) -> anyhow::Result<Duration> {
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
                  convert_to('{{"time_ms":' || t || ',"decision":{{"query_id":"bench-' || i
                      || '","ticket_id":"","consumer":"' || consumer || '","user":"","purpose":"核查 ' || (i % 50)
                      || '","dataset":"' || owner || '/dataset-' || (i % 5) || '","owner":"' || owner
                      || '","fields":["person_id"],"filter_digest":"","allowed":true,"rule":"grant required","reason":"","grant_id":"G-1"}},'
                      || '"completion":{{"query_id":"bench-' || i || '","ticket_id":"","dataset":"","consumer":"","rows":1,"bytes":100,"duration_ms":3,"status":"ok"}}}}', 'UTF8')
           FROM (SELECT i,
                        1700000000000 + i * 9 AS t,
                        CASE WHEN i % 100 = 0 THEN 'civil-affairs' ELSE 'dept-' || (i % 100) END AS consumer,
                        'owner-' || ((i / 7) % 100) AS owner
                 FROM generate_series(1, {QUERIES}) AS i) AS q"#
    );
    sqlx::query(&sql).execute(&mut conn).await?;
    sqlx::query("ANALYZE exchange_audit_queries")
        .execute(&mut conn)
        .await?;
    Ok(started.elapsed())
}

async fn timed(client: &Client, request: pb::AuditLogRequest) -> anyhow::Result<(f64, f64, usize)> {
    let mut ms = Vec::new();
    let mut rows = 0;
    for _ in 0..CALLS {
        let t = Instant::now();
        rows = client.audit_log(request.clone()).await?.rows.len();
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    let at = |p: f64| ms[((ms.len() as f64 - 1.0) * p).round() as usize];
    Ok((at(0.5), at(0.99), rows))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let pg = EphemeralPostgres::start()?;
    let url = pg.create_database("audit_view").await?;
    let cluster = ClusterBuilder::new()
        .add_node("civil-affairs")
        .add_node("real-estate")
        .state(&url)
        .start()
        .await?;
    println!("writing {QUERIES} queries into the shared audit view ...");
    let filled = fill(&url).await?;
    println!(
        "audit view benchmark, {} cores, {QUERIES} queries (written in {:.0} s), {CALLS} calls each",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        filled.as_secs_f64()
    );
    let civil = cluster.analyst("civil-affairs").await?;
    let cases = [
        (
            "a department's audit log (newest 1,000 of its 100,000)",
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
            "the bureau, one owner (newest 1,000 of 100,000)",
            &cluster.admin,
            pb::AuditLogRequest {
                owner: "owner-42".into(),
                ..Default::default()
            },
        ),
    ];
    for (label, client, request) in cases {
        let (p50, p99, rows) = timed(client, request).await?;
        println!("  {label:<52} p50 {p50:>7.1} ms  p99 {p99:>7.1} ms  ({rows} rows)");
    }
    cluster.shutdown().await;
    Ok(())
}
