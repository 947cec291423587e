//! Query-path benchmark (prints figures; not a timed test).
//!
//! 1. Single-key lookups through the full path (client, coordinator, node,
//!    SQLite, and back over Arrow Flight) with 32 concurrent clients, and
//!    the same lookups made directly against the SQLite file, in the same
//!    run: lookups/s, p50, p99 and the ratio. Each way measures 32,000
//!    lookups of distinct keys after an unmeasured warm-up of 3,200 (whose
//!    rate is printed too).
//! 2. Bulk export of a 5,000,000-row dataset with two masked columns
//!    through the coordinator, with the coordinator and the node running as
//!    separate processes (the real binaries): rows/s, MB/s, the ratio
//!    against a direct SELECT of the same rows, and each process's peak
//!    resident memory.
//!
//! 3. The latency the audit's write-ahead rule adds to a single-key query:
//!    the same sequential lookups with the audit's `fsync` on (as always in
//!    production) and off (benchmark-only switch), p50 and p99 of each.
//!
//! 4. Fan-out (issue 5): one person looked up by a consumer-only member
//!    (the procuratorate) across every department's datasets carrying
//!    `person_id` (eight departments), p50
//!    and p99, against the same key lookups run directly on each dataset's
//!    SQLite file in parallel.
//!
//! 5. Batch (issue 5): 100,000 person IDs from a key file against vehicles,
//!    real estate and income tax with `batch_lookup` (chunks of 1,000 keys
//!    as IN queries, six in flight), against the same IN queries run
//!    directly on the three SQLite files with the same parallelism.
//!
//! 6. Join (issue 5): the poverty-relief scenario on a federation of
//!    `JOIN_PERSONS` (default 1,000,000) persons: total time and the peak
//!    resident memory of the process (which hosts the whole federation).
//!
//! 7. State changes (issue 14): acknowledged access requests, approvals
//!    (grants) and grant revocations per second, one operator at a time and
//!    eight at once, each durable in the state store (and the audit log)
//!    before it is acknowledged.
//!
//! 8. Soak (issue 14, only with `BENCH=soak`): 32 clients looking up
//!    without pause for `SOAK_MINUTES` (default 20): lookups/s, p50, p99
//!    and resident memory minute by minute, the last minute against the
//!    first.
//!
//! Run: `cargo bench -p exchange-cli --bench query` (`BULK_ROWS=...` to change the
//! size, `BENCH=lookups`, `audit`, `fanout`, `bulk`, `batch`, `join`, `state` or `soak` to run one part).
//! Diagnostics: `LOOKUPS_PER_CLIENT=N` (default 1,000) changes the
//! measured lookup round; `FSYNC=off` runs the lookups and the fan-out with the
//! audit logs' `fdatasync` switched off, to show what write-ahead costs
//! there (a testkit builder option: no configuration file can turn it off).

use std::process::{Child, Command, Stdio};

/// The allocator the coordinator, node and client binaries use.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::{Duration, Instant};

use exchange_client::Client;
use exchange_proto::v1 as pb;
use exchange_query::QueryCommand;
use exchange_testkit::ClusterBuilder;
use exchange_transport::TlsIdentity;
use futures::StreamExt;
use sqlx::Row;

const CLIENTS: usize = 32;
const LOOKUPS_PER_CLIENT_DEFAULT: usize = 1_000;
/// Lookups per client made, each way, before the measured round.
const WARM_UP_PER_CLIENT: usize = 100;

/// Lookups per client (`LOOKUPS_PER_CLIENT` to change, e.g. for profiling).
fn lookups_per_client() -> usize {
    std::env::var("LOOKUPS_PER_CLIENT")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(LOOKUPS_PER_CLIENT_DEFAULT)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize)
        .saturating_sub(1)
        .min(sorted.len() - 1)]
}

/// CPU seconds this process has used so far (user and system, all threads).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    (ticks(11) + ticks(12)) / 100.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn lookups() -> anyhow::Result<()> {
    let cluster = ClusterBuilder::new()
        .add_node("vehicle-admin")
        .add_node("civil-affairs")
        .persons(100_000)
        .audit_fsync(std::env::var("FSYNC").as_deref() != Ok("off"))
        .start()
        .await?;
    let civil = cluster.analyst("civil-affairs").await?;
    let owner = cluster.analyst("vehicle-admin").await?;
    let r = civil
        .request_access(pb::AccessRequest {
            dataset: "vehicle-admin/vehicles".into(),
            fields: vec!["plate_no".into(), "owner_id".into(), "brand".into()],
            purpose: "bench".into(),
            ..Default::default()
        })
        .await?;
    // owner_id stays masked, so every lookup is a probe the coordinator
    // counts in its ledger: the owner allows a heavy consumer's volume.
    owner
        .approve(pb::ApproveRequest {
            request_id: r.id,
            masked_value_budget_per_day: 1_000_000,
            ..Default::default()
        })
        .await?;
    let db = cluster.dir.join("data/vehicle-admin.db");
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(8)
        .connect(&format!("sqlite://{}?mode=ro", db.display()))
        .await?;
    let owners = Arc::new(distinct_owners(&pool).await?);
    let per_client = lookups_per_client();

    // Full path: each client has its own connection to the coordinator.
    let tls = TlsIdentity::load(&cluster.member_dir("civil-affairs"), "client")?;
    let addr = cluster.coordinator.addr.to_string();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(Arc::new(Client::connect(&addr, &tls).await?));
    }
    // A warm-up round (connections, caches, allocator, audit segments), then
    // the measured round, the same for both ways.
    let warm_up = full_path_round(&clients, &owners, WARM_UP_PER_CLIENT, 0).await?;
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let (full, _) =
        full_path_round(&clients, &owners, per_client, CLIENTS * WARM_UP_PER_CLIENT).await?;
    let full_elapsed = started.elapsed();
    let full_cpu = cpu_seconds() - cpu_before;

    // Direct: the same lookups against the same SQLite file, with sqlx and
    // with rusqlite (the binding the node itself reads SQLite with).
    direct_round(&pool, &owners, WARM_UP_PER_CLIENT, 0).await?;
    let started = Instant::now();
    let direct = direct_round(&pool, &owners, per_client, CLIENTS * WARM_UP_PER_CLIENT).await?;
    let direct_elapsed = started.elapsed();
    direct_rusqlite_round(&db, &owners, WARM_UP_PER_CLIENT, 0).await?;
    let (rusqlite_direct, rusqlite_elapsed) =
        direct_rusqlite_round(&db, &owners, per_client, CLIENTS * WARM_UP_PER_CLIENT).await?;

    let n = (CLIENTS * per_client) as f64;
    let full_rate = n / full_elapsed.as_secs_f64();
    let direct_rate = n / direct_elapsed.as_secs_f64();
    let rusqlite_rate = n / rusqlite_elapsed.as_secs_f64();
    println!(
        "single-key lookups, {CLIENTS} concurrent clients, {} lookups each way after a warm-up of {} each way, 100,000 persons",
        n as usize,
        CLIENTS * WARM_UP_PER_CLIENT
    );
    println!(
        "  warm-up     {:>8.0} lookups/s   p99 {:>6.2} ms   (full path, first lookups: connections, caches, audit segments)",
        warm_up.1, ms(percentile(&warm_up.0, 0.99))
    );
    println!("  full path   {:>8.0} lookups/s   p50 {:>6.2} ms   p99 {:>6.2} ms   (client, coordinator, node, SQLite, Flight, masks)", full_rate, ms(percentile(&full, 0.5)), ms(percentile(&full, 0.99)));
    println!("  direct      {:>8.0} lookups/s   p50 {:>6.2} ms   p99 {:>6.2} ms   (sqlx on the same SQLite file)", direct_rate, ms(percentile(&direct, 0.5)), ms(percentile(&direct, 0.99)));
    println!("  direct      {:>8.0} lookups/s   p50 {:>6.2} ms   p99 {:>6.2} ms   (rusqlite, {CLIENTS} threads, one connection each, the node's binding)", rusqlite_rate, ms(percentile(&rusqlite_direct, 0.5)), ms(percentile(&rusqlite_direct, 0.99)));
    println!(
        "  ratio       full path runs at {:.2}x the direct sqlx rate, {:.2}x the direct rusqlite rate",
        full_rate / direct_rate,
        full_rate / rusqlite_rate
    );
    println!(
        "  cpu         full path {:.0} us of CPU per lookup (client, coordinator and node together), {:.0}% of the machine's 2 cores",
        full_cpu * 1e6 / n,
        full_cpu * 100.0 / full_elapsed.as_secs_f64() / 2.0
    );
    println!("  targets     at least 5,000 lookups/s end to end, p99 under 10 ms");
    cluster.shutdown().await;
    Ok(())
}

/// One round of lookups by every client at once, each client taking
/// `per_client` owners, the round starting at owner `first`: sorted latencies and lookups/s.
async fn full_path_round(
    clients: &[Arc<Client>],
    owners: &Arc<Vec<String>>,
    per_client: usize,
    first: usize,
) -> anyhow::Result<(Vec<Duration>, f64)> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (c, client) in clients.iter().enumerate() {
        let owners = owners.clone();
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_client);
            for i in 0..per_client {
                let id = &owners[(first + c * per_client + i) % owners.len()];
                let t = Instant::now();
                let cmd = QueryCommand {
                    dataset: "vehicle-admin/vehicles".into(),
                    fields: vec![],
                    filter: format!("owner_id = '{id}'"),
                    purpose: "bench".into(),
                    user: String::new(),
                    limit: None,
                };
                let mut stream = client.query(cmd).await.expect("query");
                let mut rows = 0;
                while let Some(b) = stream.next().await {
                    rows += b.expect("batch").num_rows();
                }
                assert!(rows >= 1);
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    let rate = all.len() as f64 / started.elapsed().as_secs_f64();
    all.sort();
    Ok((all, rate))
}

/// [`full_path_round`] made directly against the SQLite file.
async fn direct_round(
    pool: &sqlx::SqlitePool,
    owners: &Arc<Vec<String>>,
    per_client: usize,
    first: usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let owners = owners.clone();
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_client);
            for i in 0..per_client {
                let id = &owners[(first + c * per_client + i) % owners.len()];
                let t = Instant::now();
                let rows = sqlx::query(
                    "SELECT plate_no, owner_id, brand FROM vehicles WHERE owner_id = ?",
                )
                .bind(id)
                .fetch_all(&pool)
                .await
                .expect("select");
                assert!(!rows.is_empty());
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    all.sort();
    Ok(all)
}

/// The direct lookups with rusqlite: one thread and one read-only
/// connection per client, all starting together. Sorted latencies and the
/// round's wall time.
async fn direct_rusqlite_round(
    db: &std::path::Path,
    owners: &Arc<Vec<String>>,
    per_client: usize,
    first: usize,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let db = db.to_path_buf();
    let owners = owners.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<(Vec<Duration>, Duration)> {
        let mut connections = Vec::with_capacity(CLIENTS);
        for _ in 0..CLIENTS {
            connections.push(rusqlite::Connection::open_with_flags(
                &db,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )?);
        }
        let start = std::sync::Barrier::new(CLIENTS + 1);
        let (mut latencies, elapsed) = std::thread::scope(|scope| {
            let mut threads = Vec::with_capacity(CLIENTS);
            for (c, conn) in connections.into_iter().enumerate() {
                let (owners, start) = (&owners, &start);
                threads.push(scope.spawn(move || -> rusqlite::Result<Vec<Duration>> {
                    let mut statement = conn.prepare(
                        "SELECT plate_no, owner_id, brand FROM vehicles WHERE owner_id = ?",
                    )?;
                    let mut latencies = Vec::with_capacity(per_client);
                    start.wait();
                    for i in 0..per_client {
                        let id = &owners[(first + c * per_client + i) % owners.len()];
                        let t = Instant::now();
                        let rows: Vec<(Option<String>, Option<String>, Option<String>)> = statement
                            .query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                            .collect::<rusqlite::Result<_>>()?;
                        assert!(!rows.is_empty());
                        latencies.push(t.elapsed());
                    }
                    Ok(latencies)
                }));
            }
            start.wait();
            let started = Instant::now();
            let mut all = Vec::new();
            for thread in threads {
                all.extend(thread.join().expect("lookup thread")?);
            }
            Ok::<_, rusqlite::Error>((all, started.elapsed()))
        })?;
        latencies.sort();
        Ok((latencies, elapsed))
    })
    .await?
}

async fn fanout() -> anyhow::Result<()> {
    let cluster = ClusterBuilder::new()
        .demo_departments()
        .add_consumer("procuratorate", "区人民检察院")
        .persons(100_000)
        .audit_fsync(std::env::var("FSYNC").as_deref() != Ok("off"))
        .start()
        .await?;
    // A consumer-only member (the procuratorate), so every department that
    // holds person data is a target: eight departments.
    let analyst = cluster.analyst("procuratorate").await?;
    let found = analyst
        .search(pb::SearchRequest {
            key_type: "person_id".into(),
            limit: 100,
            ..Default::default()
        })
        .await?;
    // Every other department's dataset carrying person_id, granted in full.
    let mut direct_targets = Vec::new();
    for hit in &found.hits {
        let Some(d) = &hit.dataset else { continue };
        cluster
            .grant("procuratorate", &d.id, &[], Default::default())
            .await?;
        let manifest = exchange_catalog::Manifest::load(
            &cluster.dir.join(format!("data/{}.toml", d.department)),
        )
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let local = d.id.split_once('/').map(|(_, l)| l).unwrap_or_default();
        let spec = manifest
            .datasets
            .iter()
            .find(|s| s.id == local)
            .unwrap()
            .clone();
        let key = spec
            .fields
            .iter()
            .find(|f| f.key_type.as_deref() == Some("person_id"))
            .unwrap()
            .clone();
        let source = exchange_source::Source::open(&manifest.databases[&spec.database]).await?;
        direct_targets.push((source, spec, key));
    }
    let db = cluster.dir.join("data/public-security.db");
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .connect(&format!("sqlite://{}?mode=ro", db.display()))
        .await?;
    let people: Vec<String> =
        sqlx::query("SELECT person_id FROM household_registration ORDER BY rowid LIMIT 400")
            .fetch_all(&pool)
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
    // Compare like with like: only datasets the lookup reads (a grant that
    // leaves out the key field makes a dataset no lookup target).
    let probe = analyst
        .lookup("person_id", &people[0], "bench", Duration::from_secs(3))
        .await?;
    let looked_up: std::collections::BTreeSet<String> =
        probe.answers.iter().map(|a| a.dataset.clone()).collect();
    let departments: std::collections::BTreeSet<String> =
        probe.answers.iter().map(|a| a.department.clone()).collect();
    direct_targets.retain(|(_, spec, _)| {
        looked_up
            .iter()
            .any(|d| d.ends_with(&format!("/{}", spec.id)))
    });
    let n = 300.min(people.len());
    let cpu_before = cpu_seconds();
    let fanout_started = Instant::now();
    let mut full = Vec::new();
    let mut answered = 0usize;
    let mut total_answers = 0usize;
    let mut failures: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    for person in people.iter().take(n) {
        let t = Instant::now();
        let report = analyst
            .lookup("person_id", person, "bench", Duration::from_secs(3))
            .await?;
        full.push(t.elapsed());
        for a in &report.answers {
            total_answers += 1;
            if a.status == exchange_client::lookup::SourceStatus::Ok {
                answered += 1;
            } else if failures.insert(a.dataset.clone()) {
                println!(
                    "  note: {} answered {}: {}",
                    a.dataset,
                    a.status.label(),
                    a.status.detail()
                );
            }
        }
    }
    let fanout_cpu = cpu_seconds() - cpu_before;
    let fanout_wall = fanout_started.elapsed().as_secs_f64();
    full.sort();
    let key = exchange_policy::HashKey::new(&[7u8; 32]).unwrap();
    let mut direct = Vec::new();
    for person in people.iter().take(n) {
        let t = Instant::now();
        let reads = direct_targets.iter().map(|(source, spec, key_field)| {
            let plan = exchange_source::ReadPlan {
                dataset: spec.clone(),
                columns: spec
                    .fields
                    .iter()
                    .map(|f| exchange_source::Projection {
                        field: f.clone(),
                        mask: exchange_policy::Mask::None,
                    })
                    .collect(),
                filter: Some(exchange_query::Filter::Compare {
                    field: key_field.name.clone(),
                    op: exchange_query::CompareOp::Eq,
                    value: exchange_query::Value::Text(person.clone()),
                }),
                limit: None,
                batch_rows: 8192,
                subject_keys: vec![],
            };
            let key = key.clone();
            async move {
                let (_, mut rx) = source.read(plan, key).expect("read");
                while let Some(b) = rx.recv().await {
                    b.expect("batch");
                }
            }
        });
        futures::future::join_all(reads).await;
        direct.push(t.elapsed());
    }
    direct.sort();
    println!(
        "fan-out: one person across {} datasets of {} departments, {n} sequential lookups, 100,000 persons",
        direct_targets.len(),
        departments.len()
    );
    println!(
        "  full path   p50 {:>6.2} ms   p99 {:>6.2} ms   ({answered} dataset answers ok of {total_answers})",
        ms(percentile(&full, 0.5)),
        ms(percentile(&full, 0.99)),
    );
    println!("  direct      p50 {:>6.2} ms   p99 {:>6.2} ms   (the same key reads on each SQLite file, in parallel)", ms(percentile(&direct, 0.5)), ms(percentile(&direct, 0.99)));
    println!(
        "  cpu         full path {:.2} ms of CPU per lookup (client, coordinator and nodes together), {:.0}% of the machine's 2 cores",
        fanout_cpu * 1e3 / n as f64,
        fanout_cpu * 100.0 / fanout_wall / 2.0
    );
    println!(
        "  ratio       full path p50 is {:.1}x the direct p50",
        ms(percentile(&full, 0.5)) / ms(percentile(&direct, 0.5))
    );
    println!("  target      p50 under 5 ms");
    cluster.shutdown().await;
    Ok(())
}

/// Sequential single-key lookups by one client; sorted latencies.
async fn sequential_lookups(fsync: bool, n: usize) -> anyhow::Result<Vec<Duration>> {
    let cluster = ClusterBuilder::new()
        .add_node("vehicle-admin")
        .add_node("civil-affairs")
        .persons(20_000)
        .audit_fsync(fsync)
        .start()
        .await?;
    cluster
        .grant(
            "civil-affairs",
            "vehicle-admin/vehicles",
            &["plate_no", "owner_id", "brand"],
            Default::default(),
        )
        .await?;
    let db = cluster.dir.join("data/vehicle-admin.db");
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .connect(&format!("sqlite://{}?mode=ro", db.display()))
        .await?;
    let owners: Vec<String> =
        sqlx::query("SELECT owner_id FROM vehicles ORDER BY plate_no LIMIT 1000")
            .fetch_all(&pool)
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
    let client = cluster.analyst("civil-affairs").await?;
    let mut latencies = Vec::with_capacity(n);
    for i in 0..n + 50 {
        let cmd = QueryCommand {
            dataset: "vehicle-admin/vehicles".into(),
            fields: vec![],
            filter: format!("owner_id = '{}'", owners[i % owners.len()]),
            purpose: "bench".into(),
            user: String::new(),
            limit: None,
        };
        let t = Instant::now();
        let mut stream = client.query(cmd).await?;
        while let Some(b) = stream.next().await {
            b?;
        }
        if i >= 50 {
            latencies.push(t.elapsed());
        }
    }
    cluster.shutdown().await;
    latencies.sort();
    Ok(latencies)
}

async fn write_ahead_latency() -> anyhow::Result<()> {
    let n = 1_000;
    let with = sequential_lookups(true, n).await?;
    let without = sequential_lookups(false, n).await?;
    println!("write-ahead audit cost on a single-key query, {n} sequential lookups by one client:");
    println!("  fsync on (production)   p50 {:>6.2} ms   p99 {:>6.2} ms   (coordinator decision, then the node's served record with the first batch's subject keys, each durable before going on)", ms(percentile(&with, 0.5)), ms(percentile(&with, 0.99)));
    println!(
        "  fsync off (bench only)  p50 {:>6.2} ms   p99 {:>6.2} ms",
        ms(percentile(&without, 0.5)),
        ms(percentile(&without, 0.99))
    );
    println!(
        "  added by write-ahead    p50 {:>6.2} ms   p99 {:>6.2} ms",
        ms(percentile(&with, 0.5)) - ms(percentile(&without, 0.5)),
        ms(percentile(&with, 0.99)) - ms(percentile(&without, 0.99))
    );
    Ok(())
}

/// Vehicle owners in plate order, each once: a lookup tests its key at
/// most twice a day even when the round wraps around the list (the probe
/// ledger allows 3 tests of one masked value a day).
async fn distinct_owners(pool: &sqlx::SqlitePool) -> anyhow::Result<Vec<String>> {
    let mut seen = std::collections::HashSet::new();
    Ok(
        sqlx::query("SELECT owner_id FROM vehicles ORDER BY plate_no")
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| r.get::<String, _>(0))
            .filter(|o| seen.insert(o.clone()))
            .collect(),
    )
}

/// Minutes of the soak (`SOAK_MINUTES`, default 20).
fn soak_minutes() -> u64 {
    std::env::var("SOAK_MINUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(20)
}

/// Sustained load: 32 clients look vehicle owners up without pause for
/// `SOAK_MINUTES`; each minute's lookups/s, p50, p99 and the resident
/// memory of the process (which hosts the whole federation) are printed,
/// then the last minute against the first. The grant unmasks owner_id, as
/// for a department matching its own list, so the same keys can be looked
/// up all day.
async fn soak() -> anyhow::Result<()> {
    let cluster = ClusterBuilder::new()
        .add_node("vehicle-admin")
        .add_node("civil-affairs")
        .persons(100_000)
        .start()
        .await?;
    let unmask = pb::ApproveRequest {
        unmask: vec!["owner_id".into()],
        ..Default::default()
    };
    cluster
        .grant(
            "civil-affairs",
            "vehicle-admin/vehicles",
            &["plate_no", "owner_id", "brand"],
            unmask,
        )
        .await?;
    let db = cluster.dir.join("data/vehicle-admin.db");
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .connect(&format!("sqlite://{}?mode=ro", db.display()))
        .await?;
    let owners = Arc::new(distinct_owners(&pool).await?);
    let tls = TlsIdentity::load(&cluster.member_dir("civil-affairs"), "client")?;
    let addr = cluster.coordinator.addr.to_string();
    let minutes = soak_minutes();
    let deadline = Instant::now() + Duration::from_secs(60 * minutes);
    let bucket = Arc::new(std::sync::Mutex::new(Vec::<Duration>::new()));
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let client = Client::connect(&addr, &tls).await?;
        let (owners, bucket) = (owners.clone(), bucket.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = c * 7_919;
            while Instant::now() < deadline {
                let id = &owners[i % owners.len()];
                i += CLIENTS;
                let t = Instant::now();
                let cmd = QueryCommand {
                    dataset: "vehicle-admin/vehicles".into(),
                    fields: vec![],
                    filter: format!("owner_id = '{id}'"),
                    purpose: "soak".into(),
                    user: String::new(),
                    limit: None,
                };
                let mut stream = client.query(cmd).await.expect("query");
                while let Some(b) = stream.next().await {
                    b.expect("batch");
                }
                bucket.lock().unwrap().push(t.elapsed());
            }
        }));
    }
    println!(
        "soak: {CLIENTS} clients looking up vehicle owners for {minutes} minutes, 100,000 persons"
    );
    let mut per_minute = Vec::new();
    for minute in 1..=minutes {
        tokio::time::sleep_until((deadline - Duration::from_secs(60 * (minutes - minute))).into())
            .await;
        let mut lat = std::mem::take(&mut *bucket.lock().unwrap());
        lat.sort();
        let rate = lat.len() as f64 / 60.0;
        let rss = rss_mb();
        let at = |p| {
            if lat.is_empty() {
                f64::NAN
            } else {
                ms(percentile(&lat, p))
            }
        };
        println!(
            "  minute {minute:>3}   {rate:>7.0} lookups/s   p50 {:>6.2} ms   p99 {:>6.2} ms   RSS {rss:>5.0} MB",
            at(0.5),
            at(0.99)
        );
        per_minute.push((rate, rss));
    }
    for t in tasks {
        t.await?;
    }
    let (first, last) = (per_minute[0], per_minute[per_minute.len() - 1]);
    println!(
        "  last minute against the first: {:.2}x the lookups/s, RSS {:+.0} MB (target: within 10%, RSS flat)",
        last.0 / first.0,
        last.1 - first.1
    );
    cluster.shutdown().await;
    Ok(())
}

/// Resident memory of this process now.
fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn peak_rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const BULK_MANIFEST: &str = r#"
department = "bulk"
[databases.main]
kind = "sqlite"
path = "bulk.db"
[[datasets]]
id = "records"
title = "批量记录"
update_cycle = "daily"
sharing = "unconditional"
[datasets.source]
database = "main"
table = "records"
key_columns = ["id"]
[[datasets.fields]]
name = "id"
type = "integer"
sensitivity = "public"
[[datasets.fields]]
name = "person_id"
type = "string"
sensitivity = "sensitive"
mask = "id_number"
key_type = "person_id"
[[datasets.fields]]
name = "name"
type = "string"
sensitivity = "sensitive"
mask = "surname"
[[datasets.fields]]
name = "amount"
type = "float"
sensitivity = "internal"
[[datasets.fields]]
name = "registered_on"
type = "date"
sensitivity = "internal"
"#;

async fn bulk(rows: u64) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    // The department's database, generated inside SQLite.
    let db = d.join("bulk.db");
    {
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect(&format!("sqlite://{}?mode=rwc", db.display()))
            .await?;
        sqlx::query("CREATE TABLE records (id INTEGER PRIMARY KEY, person_id TEXT, name TEXT, amount REAL, registered_on DATE)").execute(&pool).await?;
        sqlx::query(&format!(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows})
             INSERT INTO records SELECT x, printf('440604%012d', x), '张' || (x % 1000), x * 1.5, date('2000-01-01', '+' || (x % 9000) || ' days') FROM c"
        ))
        .execute(&pool)
        .await?;
        pool.close().await;
    }
    std::fs::write(d.join("bulk.toml"), BULK_MANIFEST)?;

    // A development PKI, then the coordinator and the node as separate processes.
    let coordinator_bin = env!("CARGO_BIN_EXE_coordinator");
    let node_bin = env!("CARGO_BIN_EXE_exchange-node");
    let state = d.join("coordinator");
    let certs = d.join("certs");
    let status = Command::new(coordinator_bin)
        .args([
            "--data-dir",
            state.to_str().unwrap(),
            "dev-pki",
            "--out",
            certs.to_str().unwrap(),
            "--member",
            "bulk=Bulk",
            "--member",
            "consumer=Consumer",
        ])
        .stdout(Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "dev-pki failed");
    let (main, enroll, node_port) = (free_port(), free_port(), free_port());
    let coordinator = Killed(
        Command::new(coordinator_bin)
            .args([
                "--data-dir",
                state.to_str().unwrap(),
                "--pki-dir",
                certs.join("bureau").to_str().unwrap(),
                "serve",
                "--listen",
                &format!("127.0.0.1:{main}"),
                "--enroll-listen",
                &format!("127.0.0.1:{enroll}"),
            ])
            .env("EXCHANGE_LOG", "warn")
            .stderr(Stdio::null())
            .spawn()?,
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let node = Killed(
        Command::new(node_bin)
            .args([
                "--cert-dir",
                certs.join("bulk").to_str().unwrap(),
                "serve",
                "--manifest",
                d.join("bulk.toml").to_str().unwrap(),
                "--coordinator",
                &format!("127.0.0.1:{main}"),
                "--listen",
                &format!("127.0.0.1:{node_port}"),
                "--data-dir",
                d.join("node").to_str().unwrap(),
            ])
            .env("EXCHANGE_LOG", "warn")
            .stderr(Stdio::null())
            .spawn()?,
    );
    let tls = TlsIdentity::load(&certs.join("consumer"), "client")?;
    let client = Client::connect(&format!("127.0.0.1:{main}"), &tls).await?;
    // Wait until the node has published and received the keys.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if client.dataset("bulk/records").await.is_ok() {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the node never published");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    client
        .request_access(pb::AccessRequest {
            dataset: "bulk/records".into(),
            purpose: "bench".into(),
            ..Default::default()
        })
        .await?;
    tokio::time::sleep(Duration::from_secs(6)).await; // one heartbeat: the node holds the ticket and mask keys

    let cmd = QueryCommand {
        dataset: "bulk/records".into(),
        fields: vec![],
        filter: String::new(),
        purpose: "bulk export bench".into(),
        user: String::new(),
        limit: None,
    };
    let started = Instant::now();
    let mut stream = client.query(cmd).await?;
    let (mut got, mut bytes) = (0u64, 0u64);
    while let Some(b) = stream.next().await {
        let b = b?;
        got += b.num_rows() as u64;
        bytes += b.get_array_memory_size() as u64;
    }
    let full = started.elapsed();
    anyhow::ensure!(got == rows, "exported {got} of {rows} rows");
    let coordinator_peak = peak_rss_mb(coordinator.0.id());
    let node_peak = peak_rss_mb(node.0.id());

    // Direct: the same rows from the same file, decoded the same way (no masks, no network).
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&format!("sqlite://{}?mode=ro", db.display()))
        .await?;
    let started = Instant::now();
    let mut direct_rows = 0u64;
    let mut cursor =
        sqlx::query("SELECT id, person_id, name, amount, registered_on FROM records").fetch(&pool);
    while let Some(row) = cursor.next().await {
        let row = row?;
        let _: (i64, &str, &str, f64, &str) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        direct_rows += 1;
    }
    let direct = started.elapsed();
    anyhow::ensure!(direct_rows == rows);

    // Direct again with rusqlite, the binding the node itself reads SQLite
    // with: the fastest plain SELECT of these rows this machine can do.
    let path = db.clone();
    let (direct_rusqlite, rusqlite_rows) =
        tokio::task::spawn_blocking(move || -> anyhow::Result<(Duration, u64)> {
            let conn = rusqlite::Connection::open_with_flags(
                &path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )?;
            let started = Instant::now();
            let mut statement =
                conn.prepare("SELECT id, person_id, name, amount, registered_on FROM records")?;
            let mut cursor = statement.query([])?;
            let mut n = 0u64;
            while let Some(row) = cursor.next()? {
                let _: (i64, String, String, f64, String) = (
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                );
                n += 1;
            }
            Ok((started.elapsed(), n))
        })
        .await??;
    anyhow::ensure!(rusqlite_rows == rows);

    let rate = rows as f64 / full.as_secs_f64();
    let sqlx_rate = rows as f64 / direct.as_secs_f64();
    let direct_rate = rows as f64 / direct_rusqlite.as_secs_f64();
    println!("bulk export, {rows} rows, two masked columns (id_number, surname), coordinator and node as separate processes");
    println!(
        "  full path   {:>10.0} rows/s   {:>6.1} MB/s of Arrow data   {:.1} s",
        rate,
        bytes as f64 / 1e6 / full.as_secs_f64(),
        full.as_secs_f64()
    );
    println!("  direct      {:>10.0} rows/s   (rusqlite SELECT of the same rows from the same file)   {:.1} s", direct_rate, direct_rusqlite.as_secs_f64());
    println!("  direct sqlx {:>10.0} rows/s   (sqlx SELECT of the same rows from the same file)   {:.1} s", sqlx_rate, direct.as_secs_f64());
    println!(
        "  ratio       full path runs at {:.2}x the direct (rusqlite) rate, {:.2}x the sqlx rate",
        rate / direct_rate,
        rate / sqlx_rate
    );
    println!("  peak RSS    coordinator {coordinator_peak:.0} MB, node {node_peak:.0} MB");
    println!("  targets     at least 500,000 rows/s; coordinator under 200 MB whatever the size");
    drop(node);
    drop(coordinator);
    Ok(())
}

async fn batch() -> anyhow::Result<()> {
    use exchange_client::batch::{BatchEvent, BatchOptions, KeyReader};
    let cluster = ClusterBuilder::new()
        .add_node("civil-affairs")
        .add_node("vehicle-admin")
        .add_node("real-estate")
        .add_node("tax")
        .persons(100_000)
        .start()
        .await?;
    let targets = [
        (
            "vehicle-admin/vehicles",
            "vehicle-admin.db",
            "vehicles",
            "owner_id",
            "plate_no, owner_id, brand",
        ),
        (
            "real-estate/properties",
            "real-estate.db",
            "properties",
            "owner_id",
            "cert_no, owner_id, area_m2",
        ),
        (
            "tax/income-tax",
            "tax.db",
            "individual_income_tax",
            "person_id",
            "person_id, year, taxable_income",
        ),
    ];
    for (dataset, _, _, key, fields) in &targets {
        let fields: Vec<&str> = fields.split(", ").collect();
        cluster
            .grant(
                "civil-affairs",
                dataset,
                &fields,
                pb::ApproveRequest {
                    unmask: vec![key.to_string()],
                    ..Default::default()
                },
            )
            .await?;
    }
    let db = cluster.dir.join("data/public-security.db");
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .connect(&format!("sqlite://{}?mode=ro", db.display()))
        .await?;
    let people: Vec<String> =
        sqlx::query("SELECT person_id FROM household_registration ORDER BY rowid")
            .fetch_all(&pool)
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
    let keys_file = cluster.dir.join("batch-ids.csv");
    std::fs::write(&keys_file, people.join("\n"))?;
    let civil = cluster.analyst("civil-affairs").await?;
    let datasets: Vec<String> = targets.iter().map(|t| t.0.to_string()).collect();
    let options = BatchOptions {
        purpose: "benchmark batch".into(),
        ..Default::default()
    };
    // Through the exchange.
    let started = Instant::now();
    let mut reader = KeyReader::open(&keys_file, "person_id")?;
    let found = civil.key_targets("person_id", &datasets).await?;
    let mut exchange_rows = 0u64;
    let summary = civil
        .batch_lookup(&mut reader, &found, &options, |e| {
            if let BatchEvent::Rows { batch, .. } = e {
                exchange_rows += batch.num_rows() as u64;
            }
            Ok(())
        })
        .await?;
    let exchange_time = started.elapsed();
    let failed: u64 = summary.totals.iter().map(|t| t.keys_failed).sum();
    // Directly: the same IN chunks on the three SQLite files, six in flight.
    let mut pools = Vec::new();
    for (_, file, _, _, _) in &targets {
        pools.push(
            sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(6)
                .connect(&format!(
                    "sqlite://{}?mode=ro",
                    cluster.dir.join("data").join(file).display()
                ))
                .await?,
        );
    }
    let started = Instant::now();
    let jobs = people.chunks(options.chunk_size).flat_map(|chunk| {
        targets
            .iter()
            .zip(&pools)
            .map(move |((_, _, table, key, fields), pool)| async move {
                let marks = vec!["?"; chunk.len()].join(",");
                let sql = format!("SELECT {fields} FROM {table} WHERE {key} IN ({marks})");
                let mut q = sqlx::query(&sql);
                for k in chunk {
                    q = q.bind(k);
                }
                q.fetch_all(pool).await.map(|rows| rows.len() as u64)
            })
    });
    let direct_rows: u64 = futures::stream::iter(jobs)
        .buffer_unordered(options.parallel)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .sum::<Result<u64, _>>()?;
    let direct_time = started.elapsed();
    println!("batch lookup: {} person IDs against vehicles, real estate and income tax (chunks of {}, {} in flight)", summary.keys, options.chunk_size, options.parallel);
    println!(
        "  through the exchange: {:.2} s, {:.0} keys/s, {} rows ({} keys unanswered)",
        exchange_time.as_secs_f64(),
        summary.keys as f64 / exchange_time.as_secs_f64(),
        exchange_rows,
        failed
    );
    println!(
        "  direct SQLite IN:     {:.2} s, {:.0} keys/s, {} rows",
        direct_time.as_secs_f64(),
        summary.keys as f64 / direct_time.as_secs_f64(),
        direct_rows
    );
    println!(
        "  ratio exchange/direct time: {:.1}x (target: under 10 s end to end)",
        exchange_time.as_secs_f64() / direct_time.as_secs_f64()
    );
    if exchange_rows != direct_rows || failed > 0 {
        anyhow::bail!("the two paths disagree: {exchange_rows} vs {direct_rows} rows, {failed} keys unanswered");
    }
    cluster.shutdown().await;
    Ok(())
}

fn vm_hwm_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

async fn join_bench() -> anyhow::Result<()> {
    let persons: usize = std::env::var("JOIN_PERSONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let started = Instant::now();
    let cluster = ClusterBuilder::new()
        .demo_federation()
        .persons(persons)
        .start()
        .await?;
    let setup = started.elapsed();
    let before = vm_hwm_mb();
    let started = Instant::now();
    let answer = exchange_testkit::scenarios::poverty(&cluster).await?;
    let took = started.elapsed();
    let planted = &cluster.planted.relief_households_with_assets;
    let found: Vec<&String> = answer.with_assets.iter().map(|h| &h.household_id).collect();
    println!(
        "join: poverty relief on {persons} persons ({} applicant households, {} members)",
        answer.applicant_households, answer.members_checked
    );
    println!(
        "  federation generated and started in {:.1} s",
        setup.as_secs_f64()
    );
    for r in &answer.reads {
        println!(
            "  read {:<10} {:>8} rows in {} queries",
            r.name, r.rows, r.queries
        );
    }
    println!(
        "  scenario (grants, join, answer): {:.2} s; {} households with assets (planted {})",
        took.as_secs_f64(),
        found.len(),
        planted.len()
    );
    println!(
        "  peak resident memory of the process hosting the federation and the client: {:.0} MB (after start-up: {:.0} MB)",
        vm_hwm_mb(),
        before
    );
    if found.len() != planted.len() || found.iter().zip(planted).any(|(a, b)| *a != b) {
        anyhow::bail!("the join's answer differs from the planted households");
    }
    cluster.shutdown().await;
    Ok(())
}

/// Acknowledged state changes per second: requests, approvals and
/// revocations, with `parallel` operators at a time.
async fn state_round(
    civil: &Arc<Client>,
    owner: &Arc<Client>,
    changes: usize,
    parallel: usize,
) -> anyhow::Result<[f64; 3]> {
    let timed = |started: Instant| changes as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let requests: Vec<String> = futures::stream::iter(0..changes)
        .map(|i| {
            let civil = civil.clone();
            async move {
                let request = pb::AccessRequest {
                    dataset: "vehicle-admin/vehicles".into(),
                    fields: vec!["plate_no".into()],
                    purpose: format!("bench {i}"),
                    ..Default::default()
                };
                civil.request_access(request).await.map(|r| r.id)
            }
        })
        .buffer_unordered(parallel)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let requested = timed(started);
    let started = Instant::now();
    let grants: Vec<String> = futures::stream::iter(requests)
        .map(|id| {
            let owner = owner.clone();
            async move {
                let approve = pb::ApproveRequest {
                    request_id: id,
                    ..Default::default()
                };
                owner.approve(approve).await.map(|r| r.grant_id)
            }
        })
        .buffer_unordered(parallel)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let approved = timed(started);
    let started = Instant::now();
    futures::stream::iter(grants)
        .map(|id| {
            let owner = owner.clone();
            async move { owner.revoke_grant(&id, "bench").await.map(|_| ()) }
        })
        .buffer_unordered(parallel)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<()>, _>>()?;
    Ok([requested, approved, timed(started)])
}

async fn state_changes() -> anyhow::Result<()> {
    let cluster = ClusterBuilder::new()
        .add_node("vehicle-admin")
        .add_node("civil-affairs")
        .persons(1_000)
        .start()
        .await?;
    let civil = Arc::new(cluster.analyst("civil-affairs").await?);
    let owner = Arc::new(cluster.analyst("vehicle-admin").await?);
    state_round(&civil, &owner, 50, 1).await?;
    println!(
        "acknowledged state changes, each durable before its answer (state store and audit log)"
    );
    for parallel in [1, 8] {
        let [requested, approved, revoked] = state_round(&civil, &owner, 400, parallel).await?;
        println!(
            "  {parallel} at a time   requests {requested:>7.0}/s   approvals (grants) {approved:>7.0}/s   grant revocations {revoked:>7.0}/s"
        );
    }
    cluster.shutdown().await;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let rows: u64 = std::env::var("BULK_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let which = std::env::var("BENCH").unwrap_or_default();
    runtime.block_on(async {
        if which.is_empty() || which == "lookups" {
            lookups().await?;
            println!();
        }
        if which.is_empty() || which == "audit" {
            write_ahead_latency().await?;
            println!();
        }
        if which.is_empty() || which == "fanout" {
            fanout().await?;
            println!();
        }
        if which.is_empty() || which == "batch" {
            batch().await?;
            println!();
        }
        if which.is_empty() || which == "join" {
            join_bench().await?;
            println!();
        }
        // Twenty minutes: only when asked for.
        if which == "soak" {
            soak().await?;
            println!();
        }
        if which.is_empty() || which == "state" {
            state_changes().await?;
            println!();
        }
        if which.is_empty() || which == "bulk" {
            bulk(rows).await?;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(())
}
