//! The coordinator's state on PostgreSQL (`state = "postgres://..."`), on
//! an ephemeral server the test kit starts: a federation runs on it, its
//! state moves to sled and back with nothing lost, concurrent updates from
//! several writers all land, and bad settings get errors that name them.
//! Under CI=true a missing PostgreSQL fails these tests.

use std::time::Duration;

use exchange_proto::v1 as pb;
use exchange_storage::postgres::{self, PgSettings};
use exchange_storage::{transfer, Db};
use exchange_testkit::servers::{required, EphemeralPostgres};
use exchange_testkit::ClusterBuilder;
use sqlx::Connection;

/// An export's entries, without its header line (which names the engine).
fn entries(export: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(export)
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect()
}

/// Civil affairs and real estate with their state at `url`, civil affairs
/// holding a grant on `real-estate/leases`.
async fn leases_granted(url: &str) -> exchange_testkit::Cluster {
    let cluster = ClusterBuilder::new()
        .add_node("civil-affairs")
        .add_node("real-estate")
        .state(url)
        .start()
        .await
        .unwrap();
    cluster
        .grant(
            "civil-affairs",
            "real-estate/leases",
            &[],
            pb::ApproveRequest::default(),
        )
        .await
        .unwrap();
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_federation_runs_on_postgresql_and_moves_to_sled_and_back() {
    let Some(pg) = required("PostgreSQL", EphemeralPostgres::start()) else {
        return;
    };
    let url = pg.create_database("exchange_state").await.unwrap();
    let cluster = leases_granted(&url).await;
    let civil = cluster.analyst("civil-affairs").await.unwrap();
    let answer = civil
        .lookup(
            "person_id",
            &cluster.planted.official_person_id,
            "租赁补贴资格核查",
            Duration::from_secs(3),
        )
        .await
        .unwrap();
    assert!(!answer.answers.is_empty());
    assert_eq!(civil.grants().await.unwrap().len(), 1);

    // The state is in PostgreSQL, at this build's schema version.
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let (version,): (i32,) = sqlx::query_as("SELECT max(version) FROM exchange_schema")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(version, postgres::latest_version());
    let trees: Vec<(String,)> =
        sqlx::query_as("SELECT DISTINCT tree FROM exchange_state ORDER BY tree")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let trees: Vec<&str> = trees.iter().map(|(t,)| t.as_str()).collect();
    for tree in ["access_requests", "catalogs", "grants", "members", "pki"] {
        assert!(trees.contains(&tree), "{tree} in {trees:?}");
    }

    // PostgreSQL to sled to a second PostgreSQL database: nothing lost,
    // nothing changed.
    let from_pg = Db::open_postgres(&PgSettings::new(&url), false).unwrap();
    let mut first = Vec::new();
    let exported = transfer::export(&from_pg, &mut first).unwrap();
    assert!(exported.trees["members"] >= 2, "{exported:?}");
    let sled_dir = tempfile::tempdir().unwrap();
    let sled = Db::open(sled_dir.path()).unwrap();
    assert_eq!(transfer::import(&sled, first.as_slice()).unwrap(), exported);
    let mut second = Vec::new();
    transfer::export(&sled, &mut second).unwrap();
    assert_eq!(entries(&second), entries(&first));
    let url2 = pg.create_database("exchange_state_2").await.unwrap();
    let back = Db::open_postgres(&PgSettings::new(&url2), true).unwrap();
    transfer::import(&back, second.as_slice()).unwrap();
    let mut third = Vec::new();
    transfer::export(&back, &mut third).unwrap();
    assert_eq!(entries(&third), entries(&first));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_state_holds_under_concurrent_writers_and_names_bad_settings() {
    let Some(pg) = required("PostgreSQL", EphemeralPostgres::start()) else {
        return;
    };
    let url = pg.create_database("exchange_cas").await.unwrap();
    let settings = PgSettings::new(&url);

    // A fresh database: migrations pending, refused without them.
    let status = postgres::schema_status(&settings).unwrap();
    assert_eq!(status.current, 0);
    assert_eq!(status.pending.len(), postgres::MIGRATIONS.len());
    let err = Db::open_postgres(&settings, false).unwrap_err().to_string();
    assert!(err.contains("coordinator state migrate"), "{err}");
    let applied = postgres::migrate(&settings).unwrap();
    assert_eq!(applied.len(), postgres::MIGRATIONS.len());
    assert!(postgres::schema_status(&settings)
        .unwrap()
        .pending
        .is_empty());

    // Two stores (two replicas' worth) and four threads incrementing one
    // counter: every increment lands once.
    let stores = [
        Db::open_postgres(&settings, false).unwrap(),
        Db::open_postgres(&settings, false).unwrap(),
    ];
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let tree = stores[i % 2].tree("counters").unwrap();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    tree.update::<u64, _>("grant", |n| Some(n.unwrap_or(0) + 1))
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let counters = stores[0].tree("counters").unwrap();
    assert_eq!(counters.get::<u64>("grant").unwrap(), Some(200));
    // Keys in byte order, as on sled; prefixes; removal.
    counters.insert("b", &1u64).unwrap();
    counters.insert("a_z", &2u64).unwrap();
    counters.insert("Z", &3u64).unwrap();
    let keys: Vec<String> = counters
        .entries::<u64>()
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, ["Z", "a_z", "b", "grant"]);
    assert_eq!(counters.scan_prefix::<u64>("a_").unwrap(), vec![2]);
    assert!(counters.remove("b").unwrap());
    assert_eq!(counters.len(), 3);

    // A newer schema, written by a newer coordinator, is refused.
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("INSERT INTO exchange_schema (version, description) VALUES (99, 'future')")
        .execute(&mut conn)
        .await
        .unwrap();
    let err = Db::open_postgres(&settings, true).unwrap_err().to_string();
    assert!(err.contains("version 99, newer"), "{err}");

    // A database that does not exist; a server that is not there; a
    // password in the URL never shows in the error.
    let missing = PgSettings::new(&pg.url("no_such_database"));
    let err = Db::open_postgres(&missing, true).unwrap_err().to_string();
    assert!(
        err.contains("no_such_database") && err.contains("createdb"),
        "{err}"
    );
    let nowhere = PgSettings {
        connect_timeout: Duration::from_secs(1),
        ..PgSettings::new("postgres://exchange:s3cret-pw@127.0.0.1:1/exchange")
    };
    let err = Db::open_postgres(&nowhere, true).unwrap_err().to_string();
    assert!(err.contains("PostgreSQL") && err.contains("state"), "{err}");
    assert!(!err.contains("s3cret-pw") && err.contains("***"), "{err}");
}

/// PostgreSQL stopped under a running federation and started again: reads
/// on grants the coordinator holds in memory go on, changes are refused
/// as unavailable meanwhile, and the coordinator reconnects by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_rides_out_a_postgresql_restart() {
    let Some(mut pg) = required("PostgreSQL", EphemeralPostgres::start()) else {
        return;
    };
    let url = pg.create_database("restart").await.unwrap();
    let cluster = leases_granted(&url).await;
    let civil = cluster.analyst("civil-affairs").await.unwrap();
    let person = cluster.planted.official_person_id.clone();
    let reads = || async {
        civil
            .lookup(
                "person_id",
                &person,
                "租赁补贴资格核查",
                Duration::from_secs(3),
            )
            .await
            .is_ok_and(|a| a.answers.iter().any(|d| d.dataset == "real-estate/leases"))
    };
    let ask = |purpose: &str| pb::AccessRequest {
        dataset: "real-estate/properties".into(),
        purpose: purpose.into(),
        ..Default::default()
    };
    assert!(reads().await);

    pg.stop();
    assert!(
        reads().await,
        "a read on a grant held in memory failed while PostgreSQL was down"
    );
    let err = civil
        .request_access(ask("数据库停机时申请"))
        .await
        .unwrap_err();
    let status = match &err {
        exchange_client::ClientError::Status(status) => status,
        other => panic!("{other}"),
    };
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("state database"), "{status:?}");

    pg.start_again().unwrap();
    let started = std::time::Instant::now();
    let recorded = loop {
        match civil.request_access(ask("数据库恢复后申请")).await {
            Ok(record) => break record,
            Err(e) if started.elapsed() < Duration::from_secs(15) => {
                eprintln!("not yet: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("the coordinator did not reconnect within 15 s: {e}"),
        }
    };
    assert_eq!(recorded.state(), pb::RequestState::Pending);
    assert!(reads().await);
    cluster.shutdown().await;
}

/// The state database over TLS, as the URL asks: `sslmode=verify-full`
/// with the server's CA in `sslrootcert` connects; a CA that did not sign
/// the server's certificate is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_database_connection_verifies_the_servers_certificate() {
    let Some((pg, ca)) = required("PostgreSQL", EphemeralPostgres::start_with_tls()) else {
        return;
    };
    let url = pg.create_database("tls").await.unwrap();
    let over_tls = format!("{url}?sslmode=verify-full&sslrootcert={}", ca.display());
    let db = Db::open_postgres(&PgSettings::new(&over_tls), true).unwrap();
    db.tree("members")
        .unwrap()
        .insert("tax", &"税务局")
        .unwrap();
    assert_eq!(
        db.tree("members")
            .unwrap()
            .get::<String>("tax")
            .unwrap()
            .as_deref(),
        Some("税务局")
    );

    // A department database reached the way the operator guide shows
    // (`sslmode=require`), through the same driver.
    let mut conn = sqlx::PgConnection::connect(&format!("{url}?sslmode=require"))
        .await
        .unwrap();
    let (encrypted,): (bool,) =
        sqlx::query_as("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(encrypted, "sslmode=require did not encrypt");

    let stranger = tempfile::NamedTempFile::new().unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    std::fs::write(stranger.path(), other.cert.pem()).unwrap();
    let wrong_ca = format!(
        "{url}?sslmode=verify-full&sslrootcert={}",
        stranger.path().display()
    );
    let settings = PgSettings {
        connect_timeout: Duration::from_secs(2),
        ..PgSettings::new(&wrong_ca)
    };
    let err = Db::open_postgres(&settings, true).unwrap_err().to_string();
    assert!(
        err.contains("certificate") && err.contains("sslrootcert"),
        "{err}"
    );
}
