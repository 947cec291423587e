//! A federation of 1,000 departments against three coordinators on one
//! PostgreSQL: what enrolment, the catalog, heartbeats and a fanned-out
//! lookup cost at that size. The departments are lightweight: 900 are
//! simulated members that enrol, publish a one-dataset catalog and
//! heartbeat over mutual TLS exactly as a node does (no database behind
//! them); 100 are real `exchange-node`s in this process, each serving one
//! unconditionally shared dataset over the same SQLite file, so that a
//! lookup of one person fans out to 100 departments.
//!
//! Printed: enrolments/s; catalog size (datasets, bytes in PostgreSQL) and
//! `Catalog.Search` p50/p99; heartbeats at the default interval (5 s, so
//! 200/s offered) and as fast as 64 concurrent senders go, p50/p99; and a
//! one-person lookup fanned out to 100 departments, p50/p99 over 100
//! lookups, with a one-department lookup measured in the same run as the
//! ratio's base. The ephemeral PostgreSQL runs with fsync off.
//!
//! Run: `cargo run --release -p exchange-testkit --example bench_simulated_nodes`

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use exchange_client::lookup::SourceStatus;
use exchange_client::{Client, EnrollOptions};
use exchange_pki::Role;
use exchange_proto::v1 as pb;
use exchange_testkit::servers::EphemeralPostgres;
use exchange_testkit::ClusterBuilder;
use exchange_transport::client::{connect, ClientOptions, ExpectedServer};
use exchange_transport::{Channel, TlsIdentity};
use futures::StreamExt;

const DEPARTMENTS: usize = 1000;
const ANSWERING: usize = 100;
const LOOKUPS: usize = 100;
const HEARTBEAT_SECS: u64 = 5;

type CatalogClient = pb::catalog_client::CatalogClient<Channel>;

/// The manifest of department `id`: one dataset over the demo household
/// register, shared unconditionally, keyed by person.
fn manifest(id: &str, db: &Path) -> String {
    format!(
        r#"department = "{id}"
[databases.main]
kind = "sqlite"
path = "{db}"
[[datasets]]
id = "residents"
title = "模拟部门人口信息"
title_en = "Simulated department's residents"
description = "模拟部门：基准测试用。A simulated department, for benchmarks."
update_cycle = "daily"
sharing = "unconditional"
tags = ["基准", "benchmark"]
[datasets.source]
database = "main"
table = "household_registration"
key_columns = ["person_id"]
[[datasets.fields]]
name = "person_id"
type = "string"
description = "公民身份号码 resident ID"
sensitivity = "internal"
key_type = "person_id"
[[datasets.fields]]
name = "gender"
type = "string"
description = "性别 gender"
sensitivity = "internal"
"#,
        db = db.display()
    )
}

fn percentiles(mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(f64::total_cmp);
    let at = |p: f64| ms[((ms.len() as f64 - 1.0) * p).round() as usize];
    (at(0.5), at(0.99))
}

struct Federation {
    admin: Client,
    ca_fingerprint: String,
    enroll: Vec<String>,
    dir: PathBuf,
}

/// Adds and enrols member `id` as a node through replica `i % 3`.
async fn enrol(f: &Federation, i: usize, id: &str) -> anyhow::Result<PathBuf> {
    let added = f.admin.add_member(id, &format!("模拟部门 {i}"), 0).await?;
    let out_dir = f.dir.join(id);
    exchange_client::enroll(&EnrollOptions {
        enroll_addr: f.enroll[i % f.enroll.len()].clone(),
        token: added.token.context("no token")?.token,
        ca_fingerprint: f.ca_fingerprint.clone(),
        role: Role::Node,
        server_names: vec!["127.0.0.1".into()],
        out_dir: out_dir.clone(),
        force: true,
    })
    .await?;
    Ok(out_dir)
}

/// A simulated node's connection to one replica, its catalog published.
async fn simulated(addr: &str, dir: &Path, id: &str, db: &Path) -> anyhow::Result<CatalogClient> {
    let tls = TlsIdentity::load(dir, "node")?;
    let channel = connect(
        addr,
        &tls,
        ExpectedServer::Role(Role::Coordinator),
        ClientOptions::default(),
    )
    .await?;
    let path = dir.join("catalog.toml");
    let text = manifest(id, db);
    let parsed = exchange_catalog::manifest::Manifest::parse(&text, &path, &|_| None)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut client = CatalogClient::new(channel);
    client
        .publish(pb::PublishRequest {
            datasets: parsed.to_published(),
            digest: parsed.digest.clone(),
            node_address: "127.0.0.1:9".into(),
        })
        .await?;
    Ok(client)
}

/// What a node holds after its first heartbeat: the CRL's number and the
/// digest of the mask keys, so that later answers carry neither again.
#[derive(Debug, Clone)]
struct Held {
    crl_number: u64,
    mask_keys_digest: String,
}

/// One heartbeat as a running node sends it, holding `held`.
async fn heartbeat(client: &mut CatalogClient, held: &Held) -> anyhow::Result<f64> {
    let t = Instant::now();
    client
        .heartbeat(pb::HeartbeatRequest {
            crl_number: held.crl_number,
            mask_keys_digest: held.mask_keys_digest.clone(),
            ..Default::default()
        })
        .await?;
    Ok(t.elapsed().as_secs_f64() * 1e3)
}

/// What a node learns from its first heartbeat; the answer's size.
async fn first_heartbeat(client: &CatalogClient) -> anyhow::Result<(Held, usize)> {
    let mut client = client.clone();
    let answer = client.heartbeat(pb::HeartbeatRequest::default()).await?;
    let answer = answer.into_inner();
    let size = prost::Message::encoded_len(&answer);
    Ok((
        Held {
            crl_number: answer.crl_number,
            mask_keys_digest: answer.mask_keys_digest,
        },
        size,
    ))
}

/// Every simulated node heartbeats once per `HEARTBEAT_SECS`, spread
/// evenly, for `rounds` intervals; the latencies.
async fn paced_heartbeats(
    clients: &[CatalogClient],
    held: &Held,
    rounds: usize,
) -> anyhow::Result<Vec<f64>> {
    let gap = Duration::from_secs(HEARTBEAT_SECS) / clients.len() as u32;
    let mut tasks = Vec::new();
    for (i, client) in clients.iter().enumerate() {
        let mut client = client.clone();
        let held = held.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(gap * i as u32).await;
            let mut ms = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_secs(HEARTBEAT_SECS));
            for _ in 0..rounds {
                tick.tick().await;
                ms.push(heartbeat(&mut client, &held).await?);
            }
            anyhow::Ok(ms)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    Ok(all)
}

/// 64 senders heartbeat as fast as they can for `window`; the rate and
/// the latencies.
async fn flat_out_heartbeats(
    clients: &[CatalogClient],
    held: &Held,
    window: Duration,
) -> anyhow::Result<(f64, Vec<f64>)> {
    let started = Instant::now();
    let clients = Arc::new(clients.to_vec());
    let mut tasks = Vec::new();
    for sender in 0..64 {
        let clients = clients.clone();
        let held = held.clone();
        tasks.push(tokio::spawn(async move {
            let mut ms = Vec::new();
            let mut i = sender;
            while started.elapsed() < window {
                let mut client = clients[i % clients.len()].clone();
                ms.push(heartbeat(&mut client, &held).await?);
                i += 64;
            }
            anyhow::Ok(ms)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    Ok((all.len() as f64 / started.elapsed().as_secs_f64(), all))
}

async fn timed_lookups(client: &Client, person: &str, expect: usize) -> anyhow::Result<Vec<f64>> {
    let mut ms = Vec::new();
    for _ in 0..LOOKUPS {
        let t = Instant::now();
        let report = client
            .lookup("person_id", person, "千部门基准", Duration::from_secs(10))
            .await?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        let answered = report
            .answers
            .iter()
            .filter(|a| matches!(a.status, SourceStatus::Ok))
            .count();
        anyhow::ensure!(
            answered == expect,
            "{answered} of {expect} departments answered"
        );
    }
    Ok(ms)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let pg = EphemeralPostgres::start()?;
    let url = pg.create_database("thousand").await?;
    let cluster = ClusterBuilder::new()
        .add_node("public-security")
        .add_consumer("audit-office", "审计局")
        .persons(2000)
        .heartbeat_secs(HEARTBEAT_SECS as u32)
        .audit_fsync(false)
        .state(&url)
        .start()
        .await?;
    let b = cluster.replica("coordinator-b").await?;
    let c = cluster.replica("coordinator-c").await?;
    let mains: Vec<String> = [cluster.coordinator.addr, b.addr, c.addr]
        .iter()
        .map(|a| a.to_string())
        .collect();
    let federation = Federation {
        admin: cluster.admin.clone(),
        ca_fingerprint: cluster.ca_fingerprint.clone(),
        enroll: [
            cluster.coordinator.enroll_addr,
            b.enroll_addr,
            c.enroll_addr,
        ]
        .iter()
        .map(|a| a.to_string())
        .collect(),
        dir: cluster.dir.join("simulated"),
    };
    let db = cluster.dir.join("data").join("public-security.db");
    println!(
        "1,000 departments against three coordinators on PostgreSQL, {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    // Enrolment: 16 at a time, across the three replicas.
    let started = Instant::now();
    let ids: Vec<String> = (0..DEPARTMENTS).map(|i| format!("sim-{i:04}")).collect();
    let dirs: Vec<PathBuf> = futures::stream::iter(ids.iter().enumerate())
        .map(|(i, id)| enrol(&federation, i, id))
        .buffered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let took = started.elapsed().as_secs_f64();
    println!(
        "  enrolled {DEPARTMENTS} nodes in {took:.1} s: {:.0} enrolments/s",
        DEPARTMENTS as f64 / took
    );

    // 100 real nodes, each with the coordinators' failover list.
    let mut nodes = Vec::new();
    for (id, dir) in ids.iter().zip(&dirs).take(ANSWERING) {
        let manifest_path = dir.join("catalog.toml");
        std::fs::write(&manifest_path, manifest(id, &db))?;
        nodes.push(
            exchange_node::start(exchange_node::NodeConfig {
                manifest: manifest_path,
                coordinator: mains.join(","),
                listen: "127.0.0.1:0".into(),
                cert_dir: dir.clone(),
                data_dir: dir.join("node"),
                heartbeat_interval_secs: HEARTBEAT_SECS as u32,
                audit: exchange_audit::AuditConfig {
                    benchmark_without_fsync: true,
                    ..Default::default()
                },
                ..Default::default()
            })
            .await
            .with_context(|| format!("starting node {id}"))?,
        );
    }
    // 900 simulated ones, spread over the replicas.
    let started = Instant::now();
    let mut clients = Vec::new();
    for (i, (id, dir)) in ids.iter().zip(&dirs).enumerate().skip(ANSWERING) {
        clients.push(simulated(&mains[i % 3], dir, id, &db).await?);
    }
    println!(
        "  {} simulated nodes published their catalogs in {:.1} s",
        DEPARTMENTS - ANSWERING,
        started.elapsed().as_secs_f64()
    );

    // The catalog at this size.
    let catalog_bytes: i64 = {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&url).await?;
        sqlx::query_scalar(
            "SELECT COALESCE(sum(length(value)), 0)::bigint FROM exchange_state WHERE tree = 'catalogs'",
        )
        .fetch_one(&mut conn)
        .await?
    };
    let analyst = Client::connect(
        &mains.join(","),
        &TlsIdentity::load(&cluster.member_dir("audit-office"), "client")?,
    )
    .await?;
    let mut search_ms = Vec::new();
    let mut hits = 0;
    for _ in 0..30 {
        let t = Instant::now();
        let found = analyst
            .search(pb::SearchRequest {
                text: "模拟部门".into(),
                ..Default::default()
            })
            .await?;
        search_ms.push(t.elapsed().as_secs_f64() * 1e3);
        hits = found.total.max(found.hits.len() as u32);
    }
    let members = cluster.admin.members().await?.len();
    let (p50, p99) = percentiles(search_ms);
    println!(
        "  catalog: {members} members, {catalog_bytes} bytes of catalogs in PostgreSQL; Catalog.Search matching {hits}: p50 {p50:.1} ms, p99 {p99:.1} ms"
    );

    // Heartbeats: at the default interval, then flat out.
    let (held, first_size) = first_heartbeat(&clients[0]).await?;
    println!("  a node's first heartbeat answer: {first_size} bytes (every other member's mask key); later ones leave the keys out");
    let paced = paced_heartbeats(&clients, &held, 4).await?;
    let offered = DEPARTMENTS as f64 / HEARTBEAT_SECS as f64;
    let (p50, p99) = percentiles(paced);
    println!(
        "  heartbeats every {HEARTBEAT_SECS} s from all {DEPARTMENTS} nodes ({offered:.0}/s offered): p50 {p50:.2} ms, p99 {p99:.2} ms"
    );
    let (rate, flat) = flat_out_heartbeats(&clients, &held, Duration::from_secs(10)).await?;
    let (p50, p99) = percentiles(flat);
    println!(
        "  heartbeats flat out from 64 senders: {rate:.0}/s (p50 {p50:.2} ms, p99 {p99:.2} ms): {:.1}x the default interval's load",
        rate / offered
    );

    // A one-person lookup fanned out to the 100 answering departments.
    for id in ids.iter().take(ANSWERING) {
        analyst
            .request_access(pb::AccessRequest {
                dataset: format!("{id}/residents"),
                purpose: "千部门基准".into(),
                ..Default::default()
            })
            .await?;
    }
    let person = cluster.planted.official_person_id.clone();
    let fanned = timed_lookups(&analyst, &person, ANSWERING).await?;
    // The base: the same lookup against one department, by a department
    // that holds one grant.
    let single = {
        cluster.admin.add_member("single", "单部门基准", 0).await?;
        let token = cluster.admin.issue_token("single", Role::Client, 0).await?;
        let out_dir = cluster.dir.join("single");
        exchange_client::enroll(&EnrollOptions {
            enroll_addr: federation.enroll[0].clone(),
            token: token.token.context("no token")?.token,
            ca_fingerprint: cluster.ca_fingerprint.clone(),
            role: Role::Client,
            server_names: vec![],
            out_dir: out_dir.clone(),
            force: true,
        })
        .await?;
        let client =
            Client::connect(&mains.join(","), &TlsIdentity::load(&out_dir, "client")?).await?;
        client
            .request_access(pb::AccessRequest {
                dataset: format!("{}/residents", ids[0]),
                purpose: "千部门基准".into(),
                ..Default::default()
            })
            .await?;
        timed_lookups(&client, &person, 1).await?
    };
    let (f50, f99) = percentiles(fanned);
    let (s50, s99) = percentiles(single);
    println!(
        "  lookup of one person in 100 departments: p50 {f50:.1} ms, p99 {f99:.1} ms ({LOOKUPS} lookups)"
    );
    println!(
        "  lookup of one person in 1 department:    p50 {s50:.1} ms, p99 {s99:.1} ms; 100 departments cost {:.1}x at p50",
        f50 / s50
    );

    for node in nodes {
        node.shutdown().await;
    }
    b.shutdown().await;
    c.shutdown().await;
    cluster.shutdown().await;
    Ok(())
}
