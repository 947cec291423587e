//! Console page latency for the caseworker's lookup across eight
//! departments and for the performance report over 100,000 audit records,
//! each against the same work done directly (the client library's lookup;
//! the three `Audit.Report` calls the page makes), measured in one run.
//!
//! Pages are fetched over HTTPS with the user's certificate on one
//! keep-alive connection, as a browser loads them.
//!
//! Run: `cargo run --release -p exchange-testkit --example bench_console`

#[path = "support/console_http.rs"]
mod console_http;

use std::time::{Duration, Instant};

use exchange_proto::v1 as pb;
use exchange_testkit::ClusterBuilder;
use exchange_transport::TlsIdentity;

const DEPARTMENTS: [&str; 8] = [
    "civil-affairs",
    "vehicle-admin",
    "real-estate",
    "public-security",
    "tax",
    "hrss",
    "market-regulation",
    "education",
];
const AUDIT_RECORDS: usize = 100_000;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn report(name: &str, page: &mut [Duration], direct: &mut [Duration], what: &str) {
    page.sort();
    direct.sort();
    println!(
        "  {name:<8} page p50 {:.2} ms  p99 {:.2} ms   direct p50 {:.2} ms  p99 {:.2} ms   ratio {:.2}x at p50, {:.2}x at p99   ({what})",
        percentile(page, 0.5),
        percentile(page, 0.99),
        percentile(direct, 0.5),
        percentile(direct, 0.99),
        percentile(page, 0.5) / percentile(direct, 0.5),
        percentile(page, 0.99) / percentile(direct, 0.99),
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut builder = ClusterBuilder::new().audit_fsync(true);
    for d in DEPARTMENTS {
        builder = builder.add_node(d);
    }
    let cluster = builder.start().await?;
    let mut grants = 0;
    let keyed = cluster
        .admin
        .search(pb::SearchRequest {
            key_type: "person_id".into(),
            limit: 1000,
            ..Default::default()
        })
        .await?;
    for dataset in keyed.hits.into_iter().filter_map(|h| h.dataset) {
        if dataset.department != "civil-affairs" && dataset.sharing != "none" {
            // The same key is looked up again and again: unmasked, as the
            // probe ledger refuses a masked value tested a fourth time a day
            // (lookups test the key against every masked identity field).
            let unmask = cluster
                .admin
                .dataset(&dataset.id)
                .await?
                .fields
                .iter()
                .filter(|f| !f.mask.is_empty() && f.mask != "none" && f.sensitivity != "secret")
                .map(|f| f.name.clone())
                .collect();
            let approve = pb::ApproveRequest {
                unmask,
                ..Default::default()
            };
            cluster
                .grant("civil-affairs", &dataset.id, &[], approve)
                .await?;
            grants += 1;
        }
    }
    let civil = cluster.analyst("civil-affairs").await?.with_user("bench");
    let person = cluster.planted.official_person_id.clone();
    let purpose = "低保申请人财产核查";
    let tls = TlsIdentity::load(&cluster.member_dir("civil-affairs"), "client")?;
    let console = cluster
        .coordinator
        .console_addr
        .expect("the cluster starts a console");
    let mut pages = console_http::Pages::connect(console, &tls, "bench").await?;
    // Lookup page against the library's lookup, alternating. Each lookup
    // asks for a different person (the official first): the probe ledger
    // refuses a masked value tested a fourth time in a day.
    let key = |i: u16| {
        if i == 0 {
            person.clone()
        } else {
            exchange_policy::ids::resident_id("440605", "19800101", i)
        }
    };
    let (mut page, mut direct) = (Vec::new(), Vec::new());
    for i in 0..200u16 {
        let form = format!("key={}&purpose={}", key(i), console_http::encode(purpose));
        let t = Instant::now();
        let (status, body) = pages.post("/lookup", &form).await?;
        page.push(t.elapsed());
        let statuses: Vec<&str> = body
            .split("data-status=\"")
            .skip(1)
            .filter_map(|r| r.split('"').next())
            .collect();
        anyhow::ensure!(
            status == 200 && statuses.len() == grants && statuses.iter().all(|s| *s == "ok"),
            "lookup page {status}: {grants} grants, statuses {statuses:?}, {}",
            body.split("class=\"detail\">")
                .nth(1)
                .unwrap_or("")
                .chars()
                .take(300)
                .collect::<String>()
        );
        let t = Instant::now();
        civil
            .lookup("person_id", &key(200 + i), purpose, Duration::from_secs(3))
            .await?;
        direct.push(t.elapsed());
    }
    println!(
        "console benchmark, {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    report(
        "lookup",
        &mut page,
        &mut direct,
        &format!(
            "{grants} datasets in {} departments; deadline 3 s",
            DEPARTMENTS.len() - 1
        ),
    );

    // Fill the audit log to 100,000 records with one-row queries (a
    // decision and a completion each), then time the report page.
    let started = Instant::now();
    let mut written = 2 * 400 * grants;
    while written < AUDIT_RECORDS {
        let asks = (0..32).map(|_| async {
            let command = exchange_query::QueryCommand {
                dataset: "vehicle-admin/vehicles".into(),
                fields: vec![],
                filter: String::new(),
                purpose: purpose.into(),
                user: String::new(),
                limit: Some(1),
            };
            let mut rows = civil.query(command).await?;
            while let Some(batch) = futures::StreamExt::next(&mut rows).await {
                batch?;
            }
            anyhow::Ok(())
        });
        for answer in futures::future::join_all(asks).await {
            answer?;
            written += 2;
        }
    }
    println!(
        "  audit    {written} query records in the log; the last {} written by one-row queries in {:.1} s",
        written - 2 * 400 * grants,
        started.elapsed().as_secs_f64()
    );
    let admin = &cluster.admin;
    let admin_tls = TlsIdentity::load(&cluster.pki_out.join("bureau"), "admin")?;
    let mut bureau = console_http::Pages::connect(console, &admin_tls, "bench").await?;
    let (mut page, mut direct) = (Vec::new(), Vec::new());
    for _ in 0..30 {
        let t = Instant::now();
        let (status, body) = bureau.get("/report").await?;
        page.push(t.elapsed());
        anyhow::ensure!(
            status == 200 && body.contains("<svg"),
            "report page {status}"
        );
        let t = Instant::now();
        for kind in ["departments", "datasets", "daily"] {
            admin
                .report(pb::ReportRequest {
                    kind: kind.into(),
                    ..Default::default()
                })
                .await?;
        }
        direct.push(t.elapsed());
    }
    report(
        "report",
        &mut page,
        &mut direct,
        "three Audit.Report kinds over the whole log",
    );
    cluster.shutdown().await;
    Ok(())
}
