//! Department databases on real PostgreSQL and MariaDB servers, started
//! ephemerally by the test kit: manifests are checked against their real
//! columns and types, and a running node moves a dataset onto each server
//! and republishes it. Under CI=true a missing server fails these tests.

use std::path::Path;
use std::time::Duration;

use exchange_catalog::Manifest;
use exchange_source::Source;
use exchange_testkit::servers::{required, EphemeralMariaDb, EphemeralPostgres};
use exchange_testkit::ClusterBuilder;
use sqlx::Connection;

const VEHICLES_PG: &str = "CREATE TABLE vehicles (plate_no VARCHAR(16) PRIMARY KEY, vin TEXT, owner_id CHAR(18), owner_name TEXT, brand TEXT, vehicle_type TEXT, registered_on DATE, status TEXT)";
const VEHICLES_MYSQL: &str = "CREATE TABLE vehicles (plate_no VARCHAR(16) PRIMARY KEY, vin VARCHAR(32), owner_id CHAR(18), owner_name VARCHAR(64), brand VARCHAR(64), vehicle_type VARCHAR(32), registered_on DATE, status VARCHAR(16))";

fn manifest_for(kind: &str, url: &str) -> String {
    exchange_demo_data_manifest().replace(
        "[databases.main]\nkind = \"sqlite\"\npath = \"vehicle-admin.db\"",
        &format!("[databases.main]\nkind = \"{kind}\"\nurl = \"{url}\""),
    )
}

fn exchange_demo_data_manifest() -> String {
    let text = include_str!("../crates/demo-data/manifests/vehicle-admin.toml").to_string();
    assert!(text.contains("path = \"vehicle-admin.db\""));
    text
}

async fn check(text: &str) -> Vec<String> {
    let manifest = Manifest::parse(text, Path::new("vehicle-admin.toml"), &|_| None).unwrap();
    let source = Source::open(&manifest.databases["main"]).await.unwrap();
    let mut problems = Vec::new();
    for ds in &manifest.datasets {
        let columns = source.describe(&ds.table).await.unwrap();
        problems.extend(
            manifest
                .check_columns(ds, &columns)
                .into_iter()
                .map(|e| e.to_string()),
        );
    }
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_are_checked_against_postgres_and_mariadb() {
    let Some(pg) = required("PostgreSQL", EphemeralPostgres::start()) else {
        return;
    };
    let Some(maria) = required("MariaDB", EphemeralMariaDb::start()) else {
        return;
    };
    let pg_url = pg.create_database("vehicles").await.unwrap();
    let my_url = maria.create_database("vehicles").await.unwrap();
    let mut conn = sqlx::PgConnection::connect(&pg_url).await.unwrap();
    sqlx::query(VEHICLES_PG).execute(&mut conn).await.unwrap();
    let mut conn = sqlx::MySqlConnection::connect(&my_url).await.unwrap();
    sqlx::query(VEHICLES_MYSQL)
        .execute(&mut conn)
        .await
        .unwrap();

    for (kind, url) in [("postgres", &pg_url), ("mysql", &my_url)] {
        assert_eq!(
            check(&manifest_for(kind, url)).await,
            Vec::<String>::new(),
            "{kind}"
        );
        // A missing column and a wrong type are both reported, with the fix.
        let wrong = manifest_for(kind, url)
            .replace("name = \"brand\"", "name = \"make\"")
            .replace(
                "name = \"registered_on\"\ntype = \"date\"",
                "name = \"registered_on\"\ntype = \"integer\"",
            );
        let problems = check(&wrong).await;
        assert_eq!(problems.len(), 2, "{kind}: {problems:?}");
        assert!(
            problems[0].contains("\"make\" does not exist"),
            "{kind}: {problems:?}"
        );
        assert!(
            problems[1].contains("set type = \"date\""),
            "{kind}: {problems:?}"
        );
        // A missing table.
        let problems =
            check(&manifest_for(kind, url).replace("table = \"vehicles\"", "table = \"lorries\""))
                .await;
        assert!(problems[0].contains("not found"), "{kind}: {problems:?}");
        // Hostile table names are data, not SQL.
        let problems = check(
            &manifest_for(kind, url).replace("table = \"vehicles\"", "table = \"public.vehicles\""),
        )
        .await;
        assert_eq!(
            problems.is_empty(),
            kind == "postgres",
            "{kind}: {problems:?}"
        );
    }

    // An unreachable server: a clear error that does not show the password.
    let down = Manifest::parse(
        &manifest_for(
            "postgres",
            "postgres://reader:s3cret-pw@127.0.0.1:1/vehicles",
        ),
        Path::new("vehicle-admin.toml"),
        &|_| None,
    )
    .unwrap();
    let err = Source::open(&down.databases["main"])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("unreachable"), "{err}");
    assert!(!err.contains("s3cret-pw"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_republishes_when_its_dataset_moves_to_a_server_database() {
    let Some(pg) = required("PostgreSQL", EphemeralPostgres::start()) else {
        return;
    };
    let Some(maria) = required("MariaDB", EphemeralMariaDb::start()) else {
        return;
    };
    let cluster = ClusterBuilder::new()
        .add_node("vehicle-admin")
        .start()
        .await
        .unwrap();
    let analyst = cluster.analyst("vehicle-admin").await.unwrap();
    let manifest = cluster.dir.join("data/vehicle-admin.toml");
    let mut version = 1;
    for (kind, server_url) in [
        ("postgres", pg.create_database("vehicles").await.unwrap()),
        ("mysql", maria.create_database("vehicles").await.unwrap()),
    ] {
        if kind == "postgres" {
            let mut conn = sqlx::PgConnection::connect(&server_url).await.unwrap();
            sqlx::query(VEHICLES_PG).execute(&mut conn).await.unwrap();
        } else {
            let mut conn = sqlx::MySqlConnection::connect(&server_url).await.unwrap();
            sqlx::query(VEHICLES_MYSQL)
                .execute(&mut conn)
                .await
                .unwrap();
        }
        // The URL comes from the environment, as the operator guide recommends.
        let var = format!("EXCHANGE_TEST_{}_URL", kind.to_uppercase());
        std::env::set_var(&var, &server_url);
        let text = exchange_demo_data_manifest().replace(
            "[databases.main]\nkind = \"sqlite\"\npath = \"vehicle-admin.db\"",
            &format!("[databases.main]\nkind = \"{kind}\"\nurl_env = \"{var}\""),
        );
        std::fs::write(&manifest, text).unwrap();
        version += 1;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let d = analyst.dataset("vehicle-admin/vehicles").await.unwrap();
            if d.catalog_version == version {
                assert_eq!(d.source_kind, kind);
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the {kind}-backed catalog was never published"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    cluster.shutdown().await;
}
