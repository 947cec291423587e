//! The audit trail end to end: both ends record every query, views follow
//! the caller's certificate, the data-subject report (with an embargo),
//! statistics, Prometheus metrics, reconciliation, offline verification,
//! and a full disk that refuses queries instead of serving them unlogged.

use std::collections::HashSet;
use std::time::Duration;

use arrow_array::RecordBatch;
use exchange_audit::{Event, Record};
use exchange_client::Client;
use exchange_proto::v1 as pb;
use exchange_query::QueryCommand;
use exchange_testkit::ClusterBuilder;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn rows(client: &Client, cmd: QueryCommand) -> Result<usize, String> {
    let mut stream = client.query(cmd).await.map_err(|e| e.to_string())?;
    let mut n = 0;
    while let Some(b) = stream.next().await {
        let b: RecordBatch = b.map_err(|e| e.to_string())?;
        n += b.num_rows();
    }
    Ok(n)
}

fn cmd(dataset: &str, filter: &str, purpose: &str) -> QueryCommand {
    QueryCommand {
        dataset: dataset.into(),
        fields: vec![],
        filter: filter.into(),
        purpose: purpose.into(),
        user: String::new(),
        limit: None,
    }
}

fn records(dir: &std::path::Path) -> Vec<Record> {
    let mut out = Vec::new();
    exchange_audit::read::scan(dir, |_, r| {
        out.push(r);
        true
    })
    .unwrap();
    out
}

async fn scrape(addr: std::net::SocketAddr) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    body
}

fn in_a_month() -> String {
    let d = time::OffsetDateTime::now_utc().date() + time::Duration::days(30);
    format!("{:04}-{:02}-{:02}", d.year(), d.month() as u8, d.day())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_ends_record_every_query_and_answer_who_looked() {
    // Our own directory, so the logs outlive the cluster for offline checks.
    let work = tempfile::tempdir().unwrap();
    let cluster = ClusterBuilder::new()
        .dir(work.path())
        .add_node("vehicle-admin")
        .add_node("civil-affairs")
        .add_node("public-security")
        .add_node("tax")
        .start()
        .await
        .unwrap();
    let official = cluster.planted.official_person_id.clone();
    let civil = cluster
        .analyst("civil-affairs")
        .await
        .unwrap()
        .with_user("王小明");
    let tax = cluster.analyst("tax").await.unwrap().with_user("赵检察");

    cluster
        .grant(
            "civil-affairs",
            "vehicle-admin/vehicles",
            &["plate_no", "owner_id"],
            Default::default(),
        )
        .await
        .unwrap();
    // An investigation: the owner approves by name, under an embargo.
    cluster
        .grant(
            "tax",
            "public-security/exit-entry",
            &["person_id", "direction", "port", "crossed_at"],
            pb::ApproveRequest {
                user: "刘处长".into(),
                embargo_until: in_a_month(),
                ..Default::default()
            },
        )
        .await
        .unwrap();

    let vehicles = rows(
        &civil,
        cmd(
            "vehicle-admin/vehicles",
            &format!("owner_id = '{official}'"),
            "低保家庭财产核查",
        ),
    )
    .await
    .unwrap();
    assert_eq!(vehicles, cluster.planted.official_vehicles.len());
    let denied = rows(&civil, cmd("public-security/exit-entry", "", "好奇"))
        .await
        .unwrap_err();
    assert!(denied.contains("grant required"), "{denied}");
    let trips = rows(
        &tax,
        cmd(
            "public-security/exit-entry",
            &format!("person_id = '{official}'"),
            "廉政调查 2026-17",
        ),
    )
    .await
    .unwrap();
    assert!(
        trips >= 80,
        "the official's 40 round trips to Macau, at least"
    );

    // Completion records are written after the stream; let them land.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The bureau sees every decision, joined with its outcome.
    let all = cluster
        .admin
        .audit_log(pb::AuditLogRequest::default())
        .await
        .unwrap();
    let by_purpose = |p: &str| all.rows.iter().find(|r| r.purpose == p).unwrap().clone();
    let v = by_purpose("低保家庭财产核查");
    assert!(
        v.allowed && v.status == "ok" && v.rows == vehicles as u64,
        "{v:?}"
    );
    assert_eq!(
        (v.consumer.as_str(), v.user.as_str()),
        ("civil-affairs", "王小明")
    );
    assert_eq!(v.fields, vec!["plate_no", "owner_id"]);
    assert_eq!(v.filter_digest.len(), 64);
    let d = by_purpose("好奇");
    assert!(!d.allowed && d.rule == "grant required", "{d:?}");
    let t = by_purpose("廉政调查 2026-17");
    assert!(t.allowed && t.rows == trips as u64, "{t:?}");

    // A consumer sees its own queries; an owner sees queries on its data.
    let mine = civil
        .audit_log(pb::AuditLogRequest::default())
        .await
        .unwrap();
    let purposes: HashSet<&str> = mine.rows.iter().map(|r| r.purpose.as_str()).collect();
    assert_eq!(purposes, HashSet::from(["低保家庭财产核查", "好奇"]));
    let owner = cluster.analyst("vehicle-admin").await.unwrap();
    let on_my_data = owner
        .audit_log(pb::AuditLogRequest::default())
        .await
        .unwrap();
    assert_eq!(on_my_data.rows.len(), 1);
    assert_eq!(on_my_data.rows[0].consumer, "civil-affairs");
    let filtered = cluster
        .admin
        .audit_log(pb::AuditLogRequest {
            consumer: "tax".into(),
            purpose: "廉政".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(filtered.rows.len(), 1);

    // The data-subject report: the vehicle lookup is shown; the embargoed
    // investigation is not, except to an auditor, who sees it marked.
    let report = cluster
        .admin
        .subject_report(pb::SubjectReportRequest {
            key_type: "person_id".into(),
            key: official.clone(),
            include_embargoed: false,
        })
        .await
        .unwrap();
    let seen: Vec<(&str, &str, &str)> = report
        .accesses
        .iter()
        .map(|a| (a.owner.as_str(), a.consumer.as_str(), a.purpose.as_str()))
        .collect();
    assert_eq!(
        seen,
        vec![("vehicle-admin", "civil-affairs", "低保家庭财产核查")]
    );
    let when = report.accesses[0].time.unwrap();
    assert_eq!(
        when.seconds * 1000 + i64::from(when.nanos) / 1_000_000,
        report.accesses[0].time_ms
    );
    assert!(
        report.departments.iter().all(|d| d.status == "ok"),
        "{:?}",
        report.departments
    );
    assert_eq!(report.departments.len(), 4);
    let audited = cluster
        .admin
        .subject_report(pb::SubjectReportRequest {
            key_type: "person_id".into(),
            key: official.clone(),
            include_embargoed: true,
        })
        .await
        .unwrap();
    let embargoed: Vec<_> = audited
        .accesses
        .iter()
        .filter(|a| !a.embargo_until.is_empty())
        .collect();
    assert_eq!(embargoed.len(), 1);
    assert_eq!(embargoed[0].owner, "public-security");
    assert_eq!(embargoed[0].consumer, "tax");
    assert_eq!(embargoed[0].user, "赵检察");
    // Bad input: a wrong check character, and a caller who is not the bureau.
    let mut bad = official.clone();
    let last = bad.pop().unwrap();
    bad.push(if last == '0' { '1' } else { '0' });
    let e = cluster
        .admin
        .subject_report(pb::SubjectReportRequest {
            key_type: "person_id".into(),
            key: bad,
            include_embargoed: false,
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("check character"), "{e}");
    let e = cluster
        .admin
        .subject_report(pb::SubjectReportRequest {
            key_type: "org_code".into(),
            key: "91440300MA5FXXXX1Z'; DROP TABLE x;--".into(),
            include_embargoed: false,
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("unified social credit code"), "{e}");
    let e = civil
        .subject_report(pb::SubjectReportRequest {
            key_type: "person_id".into(),
            key: official.clone(),
            include_embargoed: false,
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("admin certificate"), "{e}");

    // Statistics per department, per dataset, per day.
    let deps = cluster
        .admin
        .report(pb::ReportRequest {
            kind: "departments".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let row = |name: &str| {
        deps.rows
            .iter()
            .find(|r| r.cells[0] == name)
            .unwrap_or_else(|| panic!("no {name} in {deps:?}"))
            .cells
            .clone()
    };
    let civil_row = row("civil-affairs");
    assert_eq!(&civil_row[1..4], &["2", "1", &vehicles.to_string()]);
    let vehicle_row = row("vehicle-admin");
    assert_eq!(&vehicle_row[4..6], &["1", &vehicles.to_string()]);
    let ps_row = row("public-security");
    assert_eq!(&ps_row[4..7], &["1", &trips.to_string(), "1"], "{ps_row:?}");
    assert!(
        !ps_row[9].is_empty(),
        "approval turnaround recorded: {ps_row:?}"
    );
    let datasets = cluster
        .admin
        .report(pb::ReportRequest {
            kind: "datasets".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(datasets.rows[0].cells[0], "public-security/exit-entry");
    assert_eq!(datasets.rows[0].cells[2], "2");
    let daily = cluster
        .admin
        .report(pb::ReportRequest {
            kind: "daily".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(daily.rows.len(), 1);
    assert_eq!(daily.rows[0].cells[1], "3");
    assert_eq!(deps.columns.last().unwrap(), "overdue_requests");

    // The statistics are derived from the log: rebuilt from it, as at a
    // restart, they say the same.
    let state = &cluster.coordinator.state;
    state.audit.checkpoint().await.unwrap();
    let rebuilt =
        exchange_coordinator::statistics::Statistics::from_log(&state.audit.roots()).unwrap();
    let overdue = state.access.overdue_by_owner(|_, _| true).unwrap();
    for (kind, live) in [
        ("departments", &deps),
        ("datasets", &datasets),
        ("daily", &daily),
    ] {
        let again = rebuilt
            .report(
                exchange_coordinator::statistics::Viewer::Federation,
                kind,
                (0, 0),
                &overdue,
            )
            .unwrap();
        assert_eq!(&again, live, "{kind} report rebuilt from the log");
    }

    // Prometheus, at the coordinator and at a node.
    let text = scrape(cluster.coordinator.metrics_addr.unwrap()).await;
    assert!(
        text.contains("exchange_query_decisions_total{consumer=\"civil-affairs\",dataset=\"public-security/exit-entry\",decision=\"denied\"} 1"),
        "{text}"
    );
    assert!(text.contains("exchange_subject_requests_total 2"), "{text}");
    let node_text = scrape(cluster.nodes["public-security"].metrics_addr.unwrap()).await;
    assert!(
        node_text.contains("exchange_queries_served_total{consumer=\"tax\",dataset=\"public-security/exit-entry\"} 1"),
        "{node_text}"
    );
    assert!(node_text.contains(&format!("exchange_query_rows_total{{consumer=\"tax\",dataset=\"public-security/exit-entry\"}} {trips}")), "{node_text}");

    // Reconciliation: both ends agree.
    let rec = cluster.admin.reconcile("vehicle-admin", 0).await.unwrap();
    assert_eq!((rec.authorized, rec.served), (1, 1));
    assert!(rec.discrepancies.is_empty(), "{:?}", rec.discrepancies);

    // The node's own records: what it served, the masks, whose rows.
    let ps_audit = cluster.nodes["public-security"]
        .state
        .audit
        .dir()
        .to_path_buf();
    let node_records = records(&ps_audit);
    let served = node_records
        .iter()
        .find_map(|r| match &r.event {
            Event::QueryServed(s) => Some(s.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(served.consumer, "tax");
    assert_eq!(served.user, "赵检察");
    assert!(
        served
            .fields
            .iter()
            .any(|f| f.name == "person_id" && f.mask == "hash"),
        "{served:?}"
    );
    let keys: usize = node_records
        .iter()
        .filter_map(|r| match &r.event {
            Event::QueryKeys(k) if k.query_id == served.query_id => {
                Some(k.keys.iter().filter(|k| **k == official).count())
            }
            _ => None,
        })
        .sum();
    assert_eq!(keys, trips);
    let coordinator_audit = cluster.coordinator.state.audit.dir().to_path_buf();
    assert!(records(&coordinator_audit).iter().any(|r| matches!(&r.event,
        Event::SubjectRequest(s) if s.subject.contains("********") && !s.subject.contains(&official))));

    // Forge a bypass at the node: a query served that the coordinator never
    // authorized, and a row count that differs from what was relayed.
    let ca = cluster.coordinator.state.tls.ca_der.clone();
    let member_dir = cluster.member_dir("vehicle-admin");
    let node_data = cluster.dir.join("nodes").join("vehicle-admin");
    let mut cluster = cluster;
    let node = cluster.nodes.remove("vehicle-admin").unwrap();
    let config = node.state.config.clone();
    node.shutdown().await;
    {
        let tls = exchange_transport::TlsIdentity::load(&member_dir, "node").unwrap();
        let log = exchange_audit::AuditLog::open(
            config.audit.options(&config.data_dir),
            tls.member_signer().unwrap(),
            Default::default(),
        )
        .unwrap();
        log.append(&Record::now(Event::QueryServed(
            exchange_audit::QueryServed {
                query_id: "Q-forged".into(),
                ticket_id: "t-forged".into(),
                consumer: "civil-affairs".into(),
                dataset: "vehicle-admin/vehicles".into(),
                ..Default::default()
            },
        )))
        .await
        .unwrap();
        log.append(&Record::now(Event::QueryFinished(
            exchange_audit::QueryCompletion {
                query_id: v.query_id.clone(),
                rows: vehicles as u64 + 5,
                ..Default::default()
            },
        )))
        .await
        .unwrap();
        tokio::task::spawn_blocking(move || log.close())
            .await
            .unwrap();
    }
    let restarted = exchange_node::start(config).await.unwrap();
    cluster.nodes.insert("vehicle-admin".into(), restarted);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let rec = cluster.admin.reconcile("vehicle-admin", 0).await.unwrap();
    let kinds: Vec<(&str, &str)> = rec
        .discrepancies
        .iter()
        .map(|d| (d.kind.as_str(), d.query_id.as_str()))
        .collect();
    assert!(
        kinds.contains(&("served_without_authorization", "Q-forged")),
        "{kinds:?}"
    );
    assert!(rec.discrepancies.iter().all(
        |d| d.time.map(|t| t.seconds) == (d.time_ms != 0).then_some(d.time_ms.div_euclid(1000))
    ));
    assert!(
        kinds.contains(&("row_count_mismatch", v.query_id.as_str())),
        "{kinds:?}"
    );
    assert_eq!(kinds.len(), 2, "{kinds:?}");

    // Offline verification of both ends after a clean stop.
    cluster.shutdown().await;
    for dir in [&coordinator_audit, &ps_audit, &node_data] {
        let report = exchange_audit::verify(dir, Some(&ca)).unwrap();
        assert!(report.ok(), "{}: {:?}", dir.display(), report.problem);
        assert_eq!(report.unsigned_tail, 0, "a clean stop signs the tail");
    }
}

/// A node whose audit disk is full refuses queries with a clear error and
/// serves again once space is freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_audit_disk_refuses_queries_instead_of_serving_them_unlogged() {
    let mount = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(mount.path())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "this test needs to mount a small tmpfs (root); under CI=true that is a failure"
        );
        eprintln!("skipping: cannot mount a tmpfs here (needs root)");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _unmount = Unmount(mount.path().to_path_buf());
    let audit_dir = mount.path().join("audit");
    let work = tempfile::tempdir().unwrap();
    let cluster = ClusterBuilder::new()
        .dir(work.path())
        .add_node("vehicle-admin")
        .add_node("civil-affairs")
        .node_audit_dir("vehicle-admin", &audit_dir)
        .start()
        .await
        .unwrap();
    // The same person is looked up until the disk fills: the owner unmasks
    // the key, or the probe ledger would refuse the fourth lookup first.
    let unmasked = pb::ApproveRequest {
        unmask: vec!["owner_id".into()],
        ..Default::default()
    };
    cluster
        .grant(
            "civil-affairs",
            "vehicle-admin/vehicles",
            &["plate_no", "owner_id"],
            unmasked,
        )
        .await
        .unwrap();
    let civil = cluster.analyst("civil-affairs").await.unwrap();
    let official = cluster.planted.official_person_id.clone();
    let lookup = || {
        cmd(
            "vehicle-admin/vehicles",
            &format!("owner_id = '{official}'"),
            "核查",
        )
    };
    assert_eq!(
        rows(&civil, lookup()).await.unwrap(),
        cluster.planted.official_vehicles.len()
    );

    // Fill the disk.
    let filler = mount.path().join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).and_then(|_| f.sync_all()).is_ok() {}
    }
    // The zeros the log wrote ahead of its entries (at least 64 KB) take
    // some more entries; then the disk is full for the log too.
    let mut refused = None;
    for _ in 0..2_000 {
        if let Err(e) = rows(&civil, lookup()).await {
            refused = Some(e);
            break;
        }
    }
    let e = refused.expect("a full disk must refuse queries");
    assert!(
        e.contains("audit log") && e.contains("No space left"),
        "{e}"
    );
    assert!(e.contains("queries are refused"), "{e}");
    let node = &cluster.nodes["vehicle-admin"];
    assert!(node.state.audit.failure().is_some());

    // Space freed: the node serves again, and its log is intact.
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(
        rows(&civil, lookup()).await.unwrap(),
        cluster.planted.official_vehicles.len()
    );
    let ca = cluster.coordinator.state.tls.ca_der.clone();
    // The coordinator recorded the refusal as the query's outcome.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = cluster
        .admin
        .audit_log(pb::AuditLogRequest::default())
        .await
        .unwrap();
    assert!(
        log.rows.iter().any(|r| r.status.contains("No space left")),
        "{log:?}"
    );
    cluster.shutdown().await;
    let report = exchange_audit::verify(&audit_dir, Some(&ca)).unwrap();
    assert!(report.ok(), "{:?}", report.problem);
}

/// The audit views on the embedded default (sled) answer from the index in
/// the state store, and the index is derived: lost, it is copied again
/// from the log at the next start, and `coordinator audit reindex`
/// rebuilds it; the answers stay the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_audit_index_answers_the_views_and_is_rebuilt_from_the_log() {
    let work = tempfile::tempdir().unwrap();
    let cluster = ClusterBuilder::new()
        .dir(work.path())
        .add_node("vehicle-admin")
        .add_node("civil-affairs")
        .start()
        .await
        .unwrap();
    let official = cluster.planted.official_person_id.clone();
    let civil = cluster.analyst("civil-affairs").await.unwrap();
    let denied = rows(&civil, cmd("vehicle-admin/vehicles", "", "好奇")).await;
    assert!(denied.unwrap_err().contains("grant required"));
    cluster
        .grant(
            "civil-affairs",
            "vehicle-admin/vehicles",
            &["plate_no", "owner_id"],
            Default::default(),
        )
        .await
        .unwrap();
    let filter = format!("owner_id = '{official}'");
    for purpose in ["低保家庭财产核查", "低保复核", "救助审批"] {
        rows(&civil, cmd("vehicle-admin/vehicles", &filter, purpose))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let views = |admin: Client| async move {
        let log = admin
            .audit_log(pb::AuditLogRequest {
                purpose: "低保".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let report = admin
            .report(pb::ReportRequest {
                kind: "departments".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let log: Vec<(String, String, u64, String)> = log
            .rows
            .into_iter()
            .map(|r| (r.query_id, r.purpose, r.rows, r.status))
            .collect();
        (log, report.rows)
    };
    let (log, report) = views(cluster.admin.clone()).await;
    assert_eq!(
        log.len(),
        2,
        "the two queries whose purpose says 低保: {log:?}"
    );
    assert!(
        log.iter()
            .all(|(_, _, rows, status)| *rows > 0 && status == "ok"),
        "each with its completion: {log:?}"
    );
    let config = cluster.coordinator_config.clone();
    let node_dir = cluster.dir.join("nodes").join("vehicle-admin");
    cluster.shutdown().await;

    // The owner node's subject index, rebuilt from its log as
    // `exchange-node reindex` does, finds the three queries that named
    // the official (and only those).
    {
        let db = exchange_storage::Db::open(&node_dir).unwrap();
        let audit = exchange_audit::AuditConfig::default().options(&node_dir);
        let read = exchange_node::subject_index::SubjectIndex::rebuild(
            &db,
            &[audit.archive_dir, audit.dir],
        )
        .unwrap();
        assert!(read > 3, "{read}");
        let index = exchange_node::subject_index::SubjectIndex::open(&db, Box::new(|| 0)).unwrap();
        let served = index.served_for("person_id", &official).unwrap();
        let purposes: Vec<&str> = served.iter().map(|s| s.purpose.as_str()).collect();
        assert_eq!(purposes, ["低保家庭财产核查", "低保复核", "救助审批"]);
    }

    // The index in the state store holds what the views showed; then it
    // is lost, as if its trees were damaged.
    {
        let db = config.open_state().unwrap();
        let held = db
            .audit_table()
            .unwrap()
            .select(Default::default())
            .unwrap();
        assert_eq!(held.len(), 4, "three queries answered and one refused");
        db.drop_derived().unwrap();
        let held = db
            .audit_table()
            .unwrap()
            .select(Default::default())
            .unwrap();
        assert!(held.is_empty());
    }
    let again = exchange_coordinator::start(&config).await.unwrap();
    let admin_tls = exchange_transport::TlsIdentity::load(&config.pki_dir(), "admin").unwrap();
    let admin = Client::connect(&again.addr.to_string(), &admin_tls)
        .await
        .unwrap();
    assert_eq!(views(admin).await, (log.clone(), report.clone()));
    again.shutdown().await;

    // `coordinator audit reindex` (the coordinator stopped) rebuilds it.
    let copied = exchange_coordinator::reindex_audit(&config).unwrap();
    assert!(copied >= 4, "{copied}");
    let again = exchange_coordinator::start(&config).await.unwrap();
    let admin = Client::connect(&again.addr.to_string(), &admin_tls)
        .await
        .unwrap();
    assert_eq!(views(admin).await, (log, report));
    again.shutdown().await;
}
