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
    let text = include_str!("../../crates/demo-data/manifests/vehicle-admin.toml").to_string();
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

/// The node's warnings for key columns that lead no index.
async fn unindexed(text: &str) -> Vec<String> {
    let manifest = Manifest::parse(text, Path::new("vehicle-admin.toml"), &|_| None).unwrap();
    let source = Source::open(&manifest.databases["main"]).await.unwrap();
    let mut warnings = Vec::new();
    for ds in &manifest.datasets {
        let indexed = source.indexed_columns(&ds.table).await.unwrap();
        warnings.extend(manifest.unindexed_keys(ds, &indexed));
    }
    warnings
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
        // The key column owner_id leads no index yet (plate_no, the
        // primary key, does): one warning, with the fix. An index that
        // does not start with owner_id is no help; one that does clears it.
        let warned = unindexed(&manifest_for(kind, url)).await;
        assert_eq!(warned.len(), 1, "{kind}: {warned:?}");
        assert!(
            warned[0].contains("field owner_id carries person_id keys")
                && warned[0].contains("CREATE INDEX ON vehicles (owner_id)"),
            "{kind}: {warned:?}"
        );
        for (i, sql) in [
            "CREATE INDEX idx_brand_owner ON vehicles (brand, owner_id)",
            "CREATE INDEX idx_owner ON vehicles (owner_id)",
        ]
        .into_iter()
        .enumerate()
        {
            if kind == "postgres" {
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query(sql).execute(&mut conn).await.unwrap();
            } else {
                let mut conn = sqlx::MySqlConnection::connect(url).await.unwrap();
                sqlx::query(sql).execute(&mut conn).await.unwrap();
            }
            let warned = unindexed(&manifest_for(kind, url)).await;
            assert_eq!(warned.len(), 1 - i, "{kind} after {sql}: {warned:?}");
        }
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

const ROWS: &str = "INSERT INTO vehicles VALUES ('粤E00001', 'LVS00000000000001', '440604198506121234', '张三丰', '比亚迪', '小型普通客车', '2020-01-01', '正常'), ('粤X00002', 'LVS00000000000002', '11010519491231002X', '欧阳娜娜', '吉利', '轻型货车', '2021-06-30', '抵押')";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_serves_queries_from_postgres_and_mariadb() {
    use futures::StreamExt;
    let Some(pg) = required("PostgreSQL", EphemeralPostgres::start()) else {
        return;
    };
    let Some(maria) = required("MariaDB", EphemeralMariaDb::start()) else {
        return;
    };
    let cluster = ClusterBuilder::new()
        .add_node("vehicle-admin")
        .add_node("civil-affairs")
        .start()
        .await
        .unwrap();
    let analyst = cluster.analyst("vehicle-admin").await.unwrap();
    let civil = cluster.analyst("civil-affairs").await.unwrap();
    let request = civil
        .request_access(exchange_proto::v1::AccessRequest {
            dataset: "vehicle-admin/vehicles".into(),
            fields: vec![
                "plate_no".into(),
                "owner_id".into(),
                "owner_name".into(),
                "registered_on".into(),
            ],
            purpose: "核查".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    analyst
        .approve(exchange_proto::v1::ApproveRequest {
            request_id: request.id,
            ..Default::default()
        })
        .await
        .unwrap();
    let query = |filter: &str| exchange_query::QueryCommand {
        dataset: "vehicle-admin/vehicles".into(),
        fields: vec![],
        filter: filter.into(),
        purpose: "核查".into(),
        user: String::new(),
        limit: None,
    };
    let manifest = cluster.dir.join("data/vehicle-admin.toml");
    let mut version = 1;
    let mut pg = Some(pg);
    for (kind, server_url) in [
        (
            "postgres",
            pg.as_ref()
                .unwrap()
                .create_database("vehicles")
                .await
                .unwrap(),
        ),
        ("mysql", maria.create_database("vehicles").await.unwrap()),
    ] {
        if kind == "postgres" {
            let mut conn = sqlx::PgConnection::connect(&server_url).await.unwrap();
            sqlx::query(VEHICLES_PG).execute(&mut conn).await.unwrap();
            sqlx::query(ROWS).execute(&mut conn).await.unwrap();
        } else {
            let mut conn = sqlx::MySqlConnection::connect(&server_url).await.unwrap();
            sqlx::query(VEHICLES_MYSQL)
                .execute(&mut conn)
                .await
                .unwrap();
            sqlx::query(ROWS).execute(&mut conn).await.unwrap();
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
        // The full path: grant, ticket, node, the server database, masks, Flight.
        let mut stream = civil
            .query(query("owner_id = '440604198506121234'"))
            .await
            .unwrap();
        let mut got = Vec::new();
        while let Some(b) = stream.next().await {
            got.push(b.unwrap());
        }
        let b = &got[0];
        assert_eq!(b.num_rows(), 1, "{kind}");
        let text = |name: &str| {
            b.column_by_name(name)
                .unwrap()
                .as_any()
                .downcast_ref::<arrow_array::StringArray>()
                .unwrap()
                .value(0)
                .to_string()
        };
        assert_eq!(text("plate_no"), "粤E00001", "{kind}");
        assert_eq!(text("owner_id"), "440604********1234", "{kind}");
        assert_eq!(text("owner_name"), "张**", "{kind}");
        let mut all = civil.query(query("")).await.unwrap();
        let mut n = 0;
        while let Some(b) = all.next().await {
            n += b.unwrap().num_rows();
        }
        assert_eq!(n, 2, "{kind}");

        if kind == "postgres" {
            // The source goes down: a clear error, and the node stays up.
            drop(pg.take());
            let asked = std::time::Instant::now();
            let err = match civil.query(query("")).await {
                Err(e) => e.to_string(),
                Ok(mut s) => loop {
                    match s.next().await {
                        Some(Err(e)) => break exchange_client::flight_error_text(&e),
                        Some(Ok(_)) => continue,
                        None => break String::new(),
                    }
                },
            };
            // It says which department's database and why, in the
            // exchange's words (no gRPC code names or Flight prefixes), and
            // well inside a lookup's 3 s deadline.
            assert!(
                err.contains("vehicle-admin's database \"main\" is unreachable"),
                "{err}"
            );
            for leaked in ["Internal error", "External error", "Tonic", "status:"] {
                assert!(!err.contains(leaked), "{leaked} leaked: {err}");
            }
            assert!(asked.elapsed() < Duration::from_millis(2_900), "{err}");
            // A lookup reports the dataset offline with that reason, not a
            // bare time-out.
            let report = civil
                .lookup(
                    "person_id",
                    "11010519491231002X",
                    "核查",
                    Duration::from_secs(3),
                )
                .await
                .unwrap();
            let answer = report
                .answers
                .iter()
                .find(|a| a.dataset == "vehicle-admin/vehicles")
                .expect("the vehicles dataset is asked");
            assert_eq!(answer.status.label(), "offline", "{:?}", answer.status);
            assert!(
                answer.status.detail().contains("is unreachable"),
                "{:?}",
                answer.status
            );
            let node_tls = exchange_transport::TlsIdentity::load(
                &cluster.member_dir("civil-affairs"),
                "client",
            )
            .unwrap();
            let channel = exchange_transport::client::connect(
                &cluster.nodes["vehicle-admin"].addr.to_string(),
                &node_tls,
                exchange_transport::client::ExpectedServer::Role(exchange_pki::Role::Node),
                Default::default(),
            )
            .await
            .unwrap();
            let described = exchange_proto::v1::node_client::NodeClient::new(channel)
                .describe(exchange_proto::v1::DescribeRequest {})
                .await;
            assert!(described.is_ok(), "the node stays up");
        }
    }
    cluster.shutdown().await;
}
