//! Decisions that must happen once, and several coordinators that agree:
//! an approval and a refusal of the same request at the same moment, of
//! which exactly one wins and the other is told why, with no grant left
//! behind by the loser; and two coordinators on one PostgreSQL store, each
//! enforcing what the other decided. Under CI=true a missing PostgreSQL
//! fails the second test.

use std::time::{Duration, Instant};

use exchange_client::lookup::SourceStatus;
use exchange_client::{Client, EnrollOptions};
use exchange_pki::Role;
use exchange_proto::v1 as pb;
use exchange_testkit::servers::{required, EphemeralPostgres};
use exchange_testkit::{Cluster, ClusterBuilder};
use exchange_transport::TlsIdentity;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_and_a_refusal_at_once_decide_a_request_once() {
    let cluster = ClusterBuilder::new()
        .add_node("civil-affairs")
        .add_node("real-estate")
        .start()
        .await
        .unwrap();
    let civil = cluster.analyst("civil-affairs").await.unwrap();
    let owner = cluster.analyst("real-estate").await.unwrap();
    let owner2 = cluster.analyst("real-estate").await.unwrap();
    let (mut approved, mut refused) = (0, 0);
    for round in 0..12 {
        let request = civil
            .request_access(pb::AccessRequest {
                dataset: "real-estate/leases".into(),
                purpose: format!("并发决定测试 {round}"),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(request.state(), pb::RequestState::Pending, "round {round}");
        let approve = owner.approve(pb::ApproveRequest {
            request_id: request.id.clone(),
            ..Default::default()
        });
        let refuse = owner2.refuse(&request.id, "同时拒绝");
        let (a, r) = tokio::join!(approve, refuse);
        assert!(
            a.is_ok() != r.is_ok(),
            "round {round}: exactly one decision wins: {a:?} / {r:?}"
        );
        let loser = a.as_ref().err().or(r.as_ref().err()).unwrap().to_string();
        assert!(
            loser.contains("being decided by someone else") || loser.contains("already"),
            "{loser}"
        );
        let grants = civil.grants().await.unwrap();
        let granted: Vec<_> = grants
            .iter()
            .filter(|g| g.request_id == request.id)
            .collect();
        let record = civil
            .access_requests()
            .await
            .unwrap()
            .into_iter()
            .find(|x| x.id == request.id)
            .unwrap();
        match a {
            Ok(decided) => {
                approved += 1;
                assert_eq!(record.state(), pb::RequestState::Granted);
                assert_eq!(granted.len(), 1);
                owner
                    .revoke_grant(&decided.grant_id, "下一轮")
                    .await
                    .unwrap();
            }
            Err(_) => {
                refused += 1;
                assert_eq!(record.state(), pb::RequestState::Refused);
                assert!(granted.is_empty(), "the refused request left a grant");
            }
        }
    }
    assert_eq!(approved + refused, 12);
    cluster.shutdown().await;
}

/// Polls `check` every 50 ms until it holds or `within` passes; returns
/// how long it took.
async fn within<F, Fut>(within: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < within {
        if check().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Civil affairs and real estate on a fresh PostgreSQL database `name`
/// (`None`, the test skipped, only outside CI without PostgreSQL).
async fn on_postgresql(name: &str) -> Option<(EphemeralPostgres, Cluster)> {
    let pg = required("PostgreSQL", EphemeralPostgres::start())?;
    let url = pg.create_database(name).await.unwrap();
    let cluster = ClusterBuilder::new()
        .add_node("civil-affairs")
        .add_node("real-estate")
        .state(&url)
        .start()
        .await
        .unwrap();
    Some((pg, cluster))
}

const LEASES: &str = "real-estate/leases";

/// Civil affairs' grant on real estate's leases, approved.
async fn grant_leases(cluster: &Cluster) {
    cluster
        .grant(
            "civil-affairs",
            LEASES,
            &["lease_id", "tenant_id"],
            Default::default(),
        )
        .await
        .unwrap();
}

/// Whether `client`'s lookup of `person` reads `dataset` successfully.
async fn reads(client: &Client, person: &str, dataset: &str) -> bool {
    client
        .lookup(
            "person_id",
            person,
            "副本一致性测试",
            Duration::from_secs(3),
        )
        .await
        .is_ok_and(|answer| {
            answer
                .answers
                .iter()
                .any(|a| a.dataset == dataset && a.status == SourceStatus::Ok)
        })
}

/// Two coordinators on one PostgreSQL store, both serving: what one
/// decides, the other enforces within a second; liveness and catalogs
/// agree; one enrolment token enrols once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_coordinators_on_one_postgresql_see_each_others_decisions() {
    let Some((_pg, cluster)) = on_postgresql("replicas").await else {
        return;
    };
    // Replica B: the same key material and database, its own listeners and
    // audit log.
    let b = cluster.replica("coordinator-b").await.unwrap();
    let tls = TlsIdentity::load(&cluster.member_dir("civil-affairs"), "client").unwrap();
    let civil_b = Client::connect(&b.addr.to_string(), &tls).await.unwrap();
    let civil_a = cluster.analyst("civil-affairs").await.unwrap();
    let owner_a = cluster.analyst("real-estate").await.unwrap();
    let person = cluster.planted.official_person_id.clone();
    let leases = "real-estate/leases";

    // Published to A, searchable on B; heartbeats to A, online on B.
    let hits = civil_b
        .search(pb::SearchRequest {
            text: "租赁".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        hits.hits
            .iter()
            .any(|h| h.dataset.as_ref().is_some_and(|d| d.id == leases)),
        "{hits:?}"
    );
    let members = civil_b.members().await.unwrap();
    assert!(
        members
            .iter()
            .all(|m| m.node.as_ref().is_some_and(|n| n.online)),
        "{members:?}"
    );

    // Asked on B, approved on A, read through B within a second.
    let request = civil_b
        .request_access(pb::AccessRequest {
            dataset: leases.into(),
            purpose: "副本一致性测试".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let pending = owner_a.pending().await.unwrap();
    assert!(pending.iter().any(|r| r.id == request.id));
    let decided = owner_a
        .approve(pb::ApproveRequest {
            request_id: request.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let seen = within(Duration::from_secs(1), || reads(&civil_b, &person, leases)).await;
    assert!(
        seen.is_some(),
        "the approval made on A did not reach B within 1 s"
    );
    // The audit log asked of A shows the lookup B served: the replicas
    // share one audit view, and A alone has served no such lookup.
    let served_by_b = || async {
        civil_a
            .audit_log(pb::AuditLogRequest {
                dataset: leases.into(),
                purpose: "副本一致性测试".into(),
                ..Default::default()
            })
            .await
            .is_ok_and(|log| log.rows.iter().any(|r| r.allowed && r.status == "ok"))
    };
    let shared = within(Duration::from_secs(2), served_by_b).await;
    assert!(
        shared.is_some(),
        "A's audit log does not show the lookup B served"
    );
    // A replica rebuilds its share of the view from its own log.
    assert!(reads(&civil_a, &person, leases).await);
    let copied = exchange_coordinator::reindex_audit(&cluster.coordinator_config).unwrap();
    assert!(copied > 0, "A's log holds the lookup it just served");

    // A ticket taken on A before the revocation.
    let mut flight_a =
        arrow_flight::flight_service_client::FlightServiceClient::new(civil_a.channel());
    let command = serde_json::json!({"dataset": leases, "purpose": "副本一致性测试"});
    let ticket = flight_a
        .get_flight_info(arrow_flight::FlightDescriptor::new_cmd(
            serde_json::to_vec(&command).unwrap(),
        ))
        .await
        .unwrap()
        .into_inner()
        .endpoint[0]
        .ticket
        .clone()
        .unwrap();

    // Revoked on A: refused through B within a second, on B's open
    // connection.
    owner_a
        .revoke_grant(&decided.grant_id, "副本撤销测试")
        .await
        .unwrap();
    let refused = within(Duration::from_secs(1), || async {
        !reads(&civil_b, &person, leases).await
    })
    .await;
    assert!(
        refused.is_some(),
        "the revocation made on A was not enforced on B within 1 s"
    );
    assert!(!reads(&civil_a, &person, leases).await);
    // The ticket taken on A before the revocation, redeemed on B: refused,
    // with the owner's reason.
    let mut flight_b =
        arrow_flight::flight_service_client::FlightServiceClient::new(civil_b.channel());
    let redeemed = flight_b.do_get(ticket).await.unwrap_err();
    assert_eq!(
        exchange_transport::refusal::reason_of(&redeemed).as_deref(),
        Some("GRANT_REVOKED"),
        "{redeemed:?}"
    );
    assert!(
        redeemed.message().contains("副本撤销测试"),
        "{}",
        redeemed.message()
    );

    // One token, presented to A and B at once: one certificate.
    let admin = &cluster.admin;
    let added = admin.add_member("tax", "税务局", 3600).await.unwrap();
    let token = added.token.unwrap().token;
    let enrol = |addr: String, dir: &str| {
        let out_dir = cluster.dir.join(dir);
        let options = EnrollOptions {
            enroll_addr: addr,
            token: token.clone(),
            ca_fingerprint: cluster.ca_fingerprint.clone(),
            role: Role::Node,
            server_names: vec!["127.0.0.1".into()],
            out_dir,
            force: false,
        };
        async move { exchange_client::enroll(&options).await }
    };
    let (on_a, on_b) = tokio::join!(
        enrol(cluster.coordinator.enroll_addr.to_string(), "tax-a"),
        enrol(b.enroll_addr.to_string(), "tax-b"),
    );
    assert!(on_a.is_ok() != on_b.is_ok(), "{on_a:?} / {on_b:?}");
    let refusal = on_a.err().or(on_b.err()).unwrap().to_string();
    assert!(refusal.contains("already used"), "{refusal}");

    // The same request sent to A and B at once is recorded once.
    let same = || pb::AccessRequest {
        dataset: "real-estate/properties".into(),
        purpose: "同时申请测试".into(),
        ..Default::default()
    };
    let (on_a, on_b) = tokio::join!(
        civil_a.request_access(same()),
        civil_b.request_access(same())
    );
    assert_eq!(on_a.unwrap().id, on_b.unwrap().id, "one request, not two");

    // A page token issued by A is accepted by B.
    let mut requests_a = pb::access_client::AccessClient::new(civil_a.channel());
    let mut requests_b = pb::access_client::AccessClient::new(civil_b.channel());
    let page = |page_token: String| pb::ListRequestsRequest {
        page_size: 1,
        page_token,
    };
    let first = requests_a
        .list_requests(page(String::new()))
        .await
        .unwrap()
        .into_inner();
    assert!(!first.next_page_token.is_empty(), "{first:?}");
    let second = requests_b
        .list_requests(page(first.next_page_token))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(second.requests[0].id, first.requests[0].id);

    // A member revoked on A is refused on B's open connection within 1 s.
    let owner_tls = TlsIdentity::load(&cluster.member_dir("real-estate"), "client").unwrap();
    let owner_b = Client::connect(&b.addr.to_string(), &owner_tls)
        .await
        .unwrap();
    owner_b.pending().await.unwrap();
    admin
        .revoke_member("real-estate", "副本吊销测试")
        .await
        .unwrap();
    let shut_out = within(Duration::from_secs(1), || async {
        owner_b.pending().await.is_err()
    })
    .await;
    assert!(
        shut_out.is_some(),
        "a member revoked on A was still served by B after 1 s"
    );

    // A replica with key material of its own is refused at start.
    let other_pki = cluster.dir.join("other-pki");
    exchange_coordinator::init(&other_pki, &["127.0.0.1".into()]).unwrap();
    let refusal = refused_replica(&cluster, "stranger", other_pki).await;
    assert!(
        refusal.contains("differs from the other replicas")
            && refusal.contains("the CA certificate")
            && refusal.contains("ticket-signing key"),
        "{refusal}"
    );

    // A replica whose copy of the shared keys others can read is refused,
    // and told how to fix it.
    let copied_pki = cluster.dir.join("copied-pki");
    std::fs::create_dir_all(&copied_pki).unwrap();
    for entry in std::fs::read_dir(cluster.coordinator_config.pki_dir()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), copied_pki.join(entry.file_name())).unwrap();
        }
    }
    let loose = copied_pki.join("ticket.key");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refusal = refused_replica(&cluster, "careless", copied_pki).await;
    assert!(
        refusal.contains("ticket.key is readable by group or others (mode 644)")
            && refusal.contains("chmod 600"),
        "{refusal}"
    );

    // A second coordinator given B's replica id while B runs is refused,
    // naming B: the two would mix up how far each log is indexed.
    let refusal = refused_replica_id(
        &cluster,
        "twin",
        "coordinator-b",
        cluster.coordinator_config.pki_dir(),
    )
    .await;
    assert!(
        refusal.contains("replica_id \"coordinator-b\" is in use")
            && refusal.contains("coordinator-b/audit")
            && refusal.contains("its own replica_id"),
        "{refusal}"
    );

    b.shutdown().await;
    cluster.shutdown().await;
}

/// Why a replica with the directory and id `name`, on `cluster`'s state
/// with the key material in `pki`, refused to start (it must).
async fn refused_replica(cluster: &Cluster, name: &str, pki: std::path::PathBuf) -> String {
    refused_replica_id(cluster, name, name, pki).await
}

/// Why a replica with the directory `name` and the replica id `id`
/// refused to start (it must).
async fn refused_replica_id(
    cluster: &Cluster,
    name: &str,
    id: &str,
    pki: std::path::PathBuf,
) -> String {
    let started = exchange_coordinator::start(&exchange_coordinator::CoordinatorConfig {
        data_dir: cluster.dir.join(format!("coordinator-{name}")),
        pki_dir: Some(pki),
        listen: "127.0.0.1:0".into(),
        enroll_listen: "127.0.0.1:0".into(),
        console_listen: None,
        metrics_listen: None,
        replica_id: Some(id.to_string()),
        ..cluster.coordinator_config.clone()
    })
    .await;
    match started {
        Ok(_) => panic!("replica {name} started"),
        Err(refusal) => format!("{refusal:#}"),
    }
}

/// The departments report of one replica, as `(department, cells)`.
async fn departments(admin: &Client) -> Vec<Vec<String>> {
    let report = admin
        .report(pb::ReportRequest {
            kind: "departments".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    report.rows.into_iter().map(|r| r.cells).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_and_reconciliation_count_every_replicas_queries() {
    let Some((_pg, cluster)) = on_postgresql("replica_reports").await else {
        return;
    };
    let b = cluster.replica("coordinator-b").await.unwrap();
    let leases = LEASES;
    grant_leases(&cluster).await;
    let tls = TlsIdentity::load(&cluster.member_dir("civil-affairs"), "client").unwrap();
    let civil_a = cluster.analyst("civil-affairs").await.unwrap();
    let civil_b = Client::connect(&b.addr.to_string(), &tls).await.unwrap();
    let person = cluster.planted.official_person_id.clone();
    // One lookup through each replica.
    assert!(reads(&civil_a, &person, leases).await);
    assert!(reads(&civil_b, &person, leases).await);
    // One query decided on A (its ticket) and relayed by B (its rows).
    let command = serde_json::json!({
        "dataset": leases, "fields": ["lease_id"],
        "purpose": "跨副本对账测试", "user": "测试员",
    });
    let body = serde_json::to_vec(&command).unwrap();
    let mut flight_a =
        arrow_flight::flight_service_client::FlightServiceClient::new(civil_a.channel());
    let mut flight_b =
        arrow_flight::flight_service_client::FlightServiceClient::new(civil_b.channel());
    let info = flight_a
        .get_flight_info(arrow_flight::FlightDescriptor::new_cmd(body))
        .await
        .unwrap()
        .into_inner();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let mut stream = flight_b.do_get(ticket).await.unwrap().into_inner();
    let mut frames = 0;
    while let Some(frame) = futures::StreamExt::next(&mut stream).await {
        frame.unwrap();
        frames += 1;
    }
    assert!(frames > 1, "the query relayed by B returned no rows");

    // Both replicas' reports count all three queries, the split one once
    // and with its rows; the approval's turnaround is on both.
    let b_admin = {
        let admin_tls = TlsIdentity::load(&cluster.coordinator_config.pki_dir(), "admin").unwrap();
        Client::connect(&b.addr.to_string(), &admin_tls)
            .await
            .unwrap()
    };
    let counted = |rows: &[Vec<String>]| {
        rows.iter()
            .find(|r| r[0] == "civil-affairs")
            .map(|r| r[1].clone())
    };
    let agreed = within(Duration::from_secs(3), || async {
        let on_a = departments(&cluster.admin).await;
        let on_b = departments(&b_admin).await;
        on_a == on_b && counted(&on_a).as_deref() == Some("3")
    })
    .await;
    let (on_a, on_b) = (
        departments(&cluster.admin).await,
        departments(&b_admin).await,
    );
    assert!(agreed.is_some(), "A: {on_a:?}\nB: {on_b:?}");
    let owner = on_a.iter().find(|r| r[0] == "real-estate").unwrap();
    assert_eq!(owner[4], "3", "answered by real-estate: {owner:?}");
    assert!(!owner[9].is_empty(), "approval turnaround: {owner:?}");

    // The audit log shows the split query once, completed.
    let log = civil_a
        .audit_log(pb::AuditLogRequest {
            purpose: "跨副本对账测试".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(log.rows.len(), 1, "{log:?}");
    assert!(
        log.rows[0].rows > 0 && log.rows[0].status == "ok",
        "{log:?}"
    );

    // Reconciliation on either replica: every query real-estate served was
    // authorized by some replica, and the relayed rows match.
    for admin in [&cluster.admin, &b_admin] {
        let settled = within(Duration::from_secs(5), || async {
            admin
                .reconcile("real-estate", 0)
                .await
                .is_ok_and(|r| r.served == 3 && r.discrepancies.is_empty())
        })
        .await;
        let answer = admin.reconcile("real-estate", 0).await;
        assert!(settled.is_some(), "{answer:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_and_batches_move_to_the_next_replica_when_theirs_is_gone() {
    let Some((_pg, cluster)) = on_postgresql("replica_failover").await else {
        return;
    };
    let leases = LEASES;
    grant_leases(&cluster).await;
    let b = cluster.replica("coordinator-b").await.unwrap();
    // The client's list names B first: it keeps to B while B answers.
    let list = format!("{},{}", b.addr, cluster.coordinator.addr);
    let tls = TlsIdentity::load(&cluster.member_dir("civil-affairs"), "client").unwrap();
    let civil = Client::connect(&list, &tls).await.unwrap();
    let person = cluster.planted.official_person_id.clone();
    assert!(reads(&civil, &person, leases).await);
    let targets = civil
        .key_targets("person_id", &[leases.to_string()])
        .await
        .unwrap();
    b.shutdown().await;

    // A batch opened after B is gone goes to A, whole.
    let keys = cluster.dir.join("keys.txt");
    std::fs::write(&keys, format!("{person}\n")).unwrap();
    let mut reader = exchange_client::batch::KeyReader::open(&keys, "person_id").unwrap();
    let options = exchange_client::batch::BatchOptions {
        purpose: "副本切换测试".into(),
        ..Default::default()
    };
    let summary = civil
        .batch_lookup(&mut reader, &targets, &options, |_| Ok(()))
        .await
        .unwrap();
    assert_eq!(summary.keys, 1);
    let answered = &summary.totals[0];
    assert!(
        answered.keys_asked == 1 && answered.keys_failed == 0,
        "{summary:?}"
    );
    // And so does a single lookup.
    assert!(reads(&civil, &person, leases).await);
    cluster.shutdown().await;
}
