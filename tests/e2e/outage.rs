//! The state database stops for a minute under two replicas' query load:
//! queries and lookups on grants held in memory go on at both replicas
//! (one of which the nodes do not heartbeat to), in-memory calls answer as
//! fast as before, every change fails within 3 s with `UNAVAILABLE` naming
//! the state database, and both replicas recover without a restart. Under
//! CI=true a missing PostgreSQL fails the test.

use std::time::{Duration, Instant};

use exchange_client::lookup::SourceStatus;
use exchange_client::Client;
use exchange_proto::v1 as pb;
use exchange_testkit::servers::{required, EphemeralPostgres};
use exchange_testkit::ClusterBuilder;
use exchange_transport::TlsIdentity;

const OUTAGE: Duration = Duration::from_secs(60);

/// A lookup of `person` that reads real estate's leases; else why not.
async fn lookup(client: &Client, person: &str) -> Result<(), String> {
    let answer = client
        .lookup(
            "person_id",
            person,
            "停库期间的核查",
            Duration::from_secs(3),
        )
        .await
        .map_err(|e| e.to_string())?;
    let leases = answer
        .answers
        .iter()
        .find(|a| a.dataset == "real-estate/leases")
        .ok_or("no answer from real-estate/leases")?;
    match leases.status {
        SourceStatus::Ok => Ok(()),
        _ => Err(format!("{:?}", leases.status)),
    }
}

async fn lookup_ok(client: &Client, person: &str) -> bool {
    lookup(client, person).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_on_held_grants_ride_out_a_state_database_outage() {
    let Some(mut pg) = required("PostgreSQL", EphemeralPostgres::start()) else {
        return;
    };
    let url = pg.create_database("outage").await.unwrap();
    let cluster = ClusterBuilder::new()
        .add_node("civil-affairs")
        .add_node("real-estate")
        .state(&url)
        .start()
        .await
        .unwrap();
    cluster
        .grant(
            "civil-affairs",
            "real-estate/leases",
            &["lease_id", "tenant_id"],
            // Unmasked: the same person is looked up hundreds of times.
            pb::ApproveRequest {
                unmask: vec!["tenant_id".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // Replica B: the nodes heartbeat to A only, so B knows they are alive
    // from the shared state alone.
    let b = cluster.replica("b").await.unwrap();
    let tls = TlsIdentity::load(&cluster.member_dir("civil-affairs"), "client").unwrap();
    let via_a = cluster.analyst("civil-affairs").await.unwrap();
    let via_b = Client::connect(&b.addr.to_string(), &tls).await.unwrap();
    let person = cluster.planted.official_person_id.clone();
    assert!(lookup_ok(&via_a, &person).await && lookup_ok(&via_b, &person).await);
    let mut baseline = Duration::ZERO;
    for _ in 0..20 {
        let started = Instant::now();
        via_b.who_am_i().await.unwrap();
        baseline = baseline.max(started.elapsed());
    }

    pg.stop();
    let stopped = Instant::now();
    let (mut lookups, mut failed) = (0, Vec::new());
    let mut slowest_whoami = Duration::ZERO;
    let mut slowest_lookup = Duration::ZERO;
    let mut change_checked = false;
    while stopped.elapsed() < OUTAGE {
        for (name, client) in [("A", &via_a), ("B", &via_b)] {
            lookups += 1;
            let asked = Instant::now();
            if let Err(why) = lookup(client, &person).await {
                failed.push(format!("{name} at {:?}: {why}", stopped.elapsed()));
            }
            slowest_lookup = slowest_lookup.max(asked.elapsed());
            let started = Instant::now();
            client.who_am_i().await.unwrap();
            slowest_whoami = slowest_whoami.max(started.elapsed());
        }
        if !change_checked && stopped.elapsed() > Duration::from_secs(20) {
            // A change needs the database: it fails fast, and says why.
            let started = Instant::now();
            let refused = via_b
                .request_access(pb::AccessRequest {
                    dataset: "real-estate/properties".into(),
                    purpose: "停库期间的申请".into(),
                    ..Default::default()
                })
                .await
                .unwrap_err();
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "{:?}",
                started.elapsed()
            );
            let status = match &refused {
                exchange_client::ClientError::Status(s) => s.clone(),
                other => panic!("{other}"),
            };
            assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
            assert!(
                status.message().contains("state database"),
                "{}",
                status.message()
            );
            change_checked = true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "outage of {OUTAGE:?}: {lookups} lookups, {} failed, slowest lookup {slowest_lookup:?}, slowest WhoAmI {slowest_whoami:?} (before: {baseline:?})",
        failed.len()
    );
    assert!(change_checked);
    assert!(
        failed.is_empty(),
        "{} of {lookups} lookups failed during the outage, the first: {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert!(
        slowest_whoami < baseline * 5 + Duration::from_millis(100),
        "WhoAmI took {slowest_whoami:?} during the outage, {baseline:?} before"
    );

    // The database returns; both replicas take changes again, unrestarted.
    pg.start_again().unwrap();
    let back = Instant::now();
    let mut recovered = false;
    while back.elapsed() < Duration::from_secs(20) {
        let asked = via_b
            .request_access(pb::AccessRequest {
                dataset: "real-estate/properties".into(),
                purpose: "恢复后的申请".into(),
                ..Default::default()
            })
            .await;
        if asked.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        recovered,
        "replica B took no change within 20 s of the database's return"
    );
    assert!(lookup_ok(&via_a, &person).await && lookup_ok(&via_b, &person).await);
    b.shutdown().await;
    cluster.shutdown().await;
}
