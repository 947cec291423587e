//! Reading a dataset through `source`: the same table in SQLite,
//! PostgreSQL and MariaDB must give the same rows for every projection,
//! filter and mask; filter values are bound parameters, never SQL.

use std::path::Path;

use arrow_array::{Array, RecordBatch};
use exchange_catalog::Manifest;
use exchange_policy::mask::HashKey;
use exchange_policy::Mask;
use exchange_query::FieldInfo;
use exchange_source::{Projection, ReadPlan, Source};
use exchange_testkit::servers::{required, EphemeralMariaDb, EphemeralPostgres};
use sqlx::Connection;

const MANIFEST: &str = r#"
department = "test-dept"
[databases.main]
kind = "KIND"
LOCATION
[[datasets]]
id = "readings"
title = "测试"
update_cycle = "daily"
sharing = "conditional"
[datasets.source]
database = "main"
table = "readings"
key_columns = ["id"]
[[datasets.fields]]
name = "id"
type = "string"
sensitivity = "public"
[[datasets.fields]]
name = "owner_id"
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
name = "seats"
type = "integer"
sensitivity = "public"
[[datasets.fields]]
name = "price"
type = "float"
sensitivity = "internal"
[[datasets.fields]]
name = "active"
type = "boolean"
sensitivity = "public"
[[datasets.fields]]
name = "registered_on"
type = "date"
sensitivity = "internal"
[[datasets.fields]]
name = "updated_at"
column = "updated"
type = "timestamp"
sensitivity = "internal"
"#;

const ROWS: &[&str] = &[
    "('A1', '440604198506121234', '张三丰', 5, 123.5, TRUE, '2020-05-01', '2020-05-01 08:30:00')",
    "('A2', '11010519491231002X', '欧阳娜娜', 7, 88.25, FALSE, '2021-12-31', '2021-12-31 23:59:59')",
    "('A_3', '440605199001011111', 'O''Brien', NULL, NULL, NULL, NULL, NULL)",
    "('A%4', '440606200002022222', '李四''; DROP TABLE readings; --', 2, 0.5, TRUE, '2024-02-29', '2024-02-29 12:00:00')",
    "('B5', '440607197003033333', 'ꙮ𠀀é', 4, 1000000.0, FALSE, '1999-01-01', '1999-01-01 00:00:00')",
];

fn ddl(kind: &str) -> String {
    let (text, key, boolean, double, ts) = match kind {
        "mysql" => (
            "VARCHAR(200)",
            "VARCHAR(20)",
            "BOOLEAN",
            "DOUBLE",
            "DATETIME",
        ),
        "postgres" => (
            "TEXT",
            "VARCHAR(20)",
            "BOOLEAN",
            "DOUBLE PRECISION",
            "TIMESTAMP",
        ),
        _ => ("TEXT", "TEXT", "BOOLEAN", "REAL", "TIMESTAMP"),
    };
    format!("CREATE TABLE readings (id {key} PRIMARY KEY, owner_id CHAR(18), name {text}, seats INTEGER, price {double}, active {boolean}, registered_on DATE, updated {ts})")
}

type Backend = (String, Source, Manifest, Box<dyn std::any::Any>);

/// Creates the table, loads the rows and opens the source, for one backend.
async fn backend(
    kind: &str,
    location: String,
    url: &str,
    guard: Box<dyn std::any::Any>,
) -> Backend {
    macro_rules! load {
        ($connection:ty) => {{
            let mut conn = <$connection>::connect(url).await.unwrap();
            sqlx::query(&ddl(kind)).execute(&mut conn).await.unwrap();
            for r in ROWS {
                sqlx::query(&format!("INSERT INTO readings VALUES {r}"))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
        }};
    }
    match kind {
        "postgres" => load!(sqlx::PgConnection),
        "mysql" => load!(sqlx::MySqlConnection),
        _ => load!(sqlx::SqliteConnection),
    }
    let text = MANIFEST
        .replace("KIND", kind)
        .replace("LOCATION", &location);
    let m = Manifest::parse(&text, Path::new("m.toml"), &|_| None).unwrap();
    (
        kind.to_string(),
        Source::open(&m.databases["main"]).await.unwrap(),
        m,
        guard,
    )
}

async fn sources() -> Vec<Backend> {
    let mut out = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("readings.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    out.push(
        backend(
            "sqlite",
            format!("path = \"{}\"", path.display()),
            &url,
            Box::new(dir),
        )
        .await,
    );
    if let Some(pg) = required("PostgreSQL", EphemeralPostgres::start()) {
        let url = pg.create_database("readings").await.unwrap();
        out.push(backend("postgres", format!("url = \"{url}\""), &url, Box::new(pg)).await);
    }
    if let Some(maria) = required("MariaDB", EphemeralMariaDb::start()) {
        let url = maria.create_database("readings").await.unwrap();
        out.push(backend("mysql", format!("url = \"{url}\""), &url, Box::new(maria)).await);
    }
    out
}

fn key() -> HashKey {
    HashKey::new(&[42u8; 32]).unwrap()
}

fn cell(array: &dyn Array, i: usize) -> String {
    use arrow_array::*;
    if array.is_null(i) {
        return "NULL".into();
    }
    let any = array.as_any();
    if let Some(a) = any.downcast_ref::<StringArray>() {
        return a.value(i).to_string();
    }
    if let Some(a) = any.downcast_ref::<Int64Array>() {
        return a.value(i).to_string();
    }
    if let Some(a) = any.downcast_ref::<Int32Array>() {
        return a.value(i).to_string();
    }
    if let Some(a) = any.downcast_ref::<Float64Array>() {
        return a.value(i).to_string();
    }
    if let Some(a) = any.downcast_ref::<BooleanArray>() {
        return a.value(i).to_string();
    }
    if let Some(a) = any.downcast_ref::<Date32Array>() {
        return a.value_as_date(i).unwrap().to_string();
    }
    if let Some(a) = any.downcast_ref::<TimestampMicrosecondArray>() {
        return a.value_as_datetime(i).unwrap().to_string();
    }
    panic!("unexpected type {:?}", array.data_type())
}

fn rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            out.push(b.columns().iter().map(|c| cell(c.as_ref(), r)).collect());
        }
    }
    out.sort();
    out
}

async fn read(
    source: &Source,
    manifest: &Manifest,
    fields: &[(&str, Mask)],
    filter: Option<&str>,
    limit: Option<u64>,
    batch_rows: usize,
) -> Result<Vec<RecordBatch>, String> {
    let ds = manifest.datasets[0].clone();
    let subject_keys: Vec<_> = ds
        .fields
        .iter()
        .filter(|f| f.key_type.as_deref() == Some("person_id"))
        .cloned()
        .collect();
    let columns: Vec<Projection> = fields
        .iter()
        .map(|(name, mask)| Projection {
            field: ds.fields.iter().find(|f| f.name == *name).unwrap().clone(),
            mask: *mask,
        })
        .collect();
    let lookup = |name: &str| {
        columns
            .iter()
            .find(|p| p.field.name == name)
            .map(|p| FieldInfo {
                field_type: p.field.field_type,
                masked: p.mask != Mask::None,
            })
    };
    let filter = match filter {
        Some(text) => Some(
            exchange_query::parse(text)
                .and_then(|f| f.check(&lookup))
                .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    let (schema, mut rx) = source
        .read(
            ReadPlan {
                dataset: ds,
                columns,
                filter,
                limit,
                batch_rows,
                subject_keys: subject_keys.clone(),
            },
            key(),
        )
        .map_err(|e| e.to_string())?;
    let mut batches = Vec::new();
    while let Some(b) = rx.recv().await {
        let b = b.map_err(|e| e.to_string())?;
        assert_eq!(b.batch.schema(), schema);
        // Subject keys come back raw (for the node's audit), whatever the
        // mask on the output column, and never inside the batch.
        assert_eq!(b.subject_keys.len(), 1);
        assert!(b.subject_keys[0].len() <= b.batch.num_rows());
        assert!(
            b.subject_keys[0]
                .iter()
                .all(|k| k.len() == 18 && !k.contains('*')),
            "{:?}",
            b.subject_keys
        );
        assert!(b.batch.schema().fields().iter().all(|f| !subject_keys
            .iter()
            .any(|k| k.name == *f.name() && !fields.iter().any(|(n, _)| n == f.name()))));
        batches.push(b.batch);
    }
    Ok(batches)
}

const ALL: &[(&str, Mask)] = &[
    ("id", Mask::None),
    ("owner_id", Mask::None),
    ("name", Mask::None),
    ("seats", Mask::None),
    ("price", Mask::None),
    ("active", Mask::None),
    ("registered_on", Mask::None),
    ("updated_at", Mask::None),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_reads_on_sqlite_postgres_and_mariadb() {
    let backends = sources().await;
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        assert_eq!(
            backends.len(),
            3,
            "all three backends are required under CI"
        );
    }
    let mut reference: Option<Vec<Vec<Vec<String>>>> = None;
    for (kind, source, manifest, _guard) in &backends {
        let mut answers = Vec::new();
        // Everything, unmasked, in batches of 2.
        let all = read(source, manifest, ALL, None, None, 2).await.unwrap();
        assert_eq!(all.len(), 3, "{kind}: 5 rows in batches of 2");
        let everything = rows(&all);
        assert_eq!(everything.len(), 5);
        let a1 = everything.iter().find(|r| r[0] == "A1").unwrap();
        assert_eq!(
            a1,
            &[
                "A1",
                "440604198506121234",
                "张三丰",
                "5",
                "123.5",
                "true",
                "2020-05-01",
                "2020-05-01 08:30:00"
            ],
            "{kind}"
        );
        let a3 = everything.iter().find(|r| r[0] == "A_3").unwrap();
        assert_eq!(&a3[3..], &["NULL"; 5], "{kind}");
        answers.push(everything);

        // Masks at the source.
        let masked = rows(
            &read(
                source,
                manifest,
                &[
                    ("id", Mask::None),
                    ("owner_id", Mask::IdNumber),
                    ("name", Mask::Surname),
                    ("price", Mask::Null),
                    ("registered_on", Mask::Year),
                    ("updated_at", Mask::Year),
                    ("seats", Mask::Hash),
                ],
                None,
                None,
                100,
            )
            .await
            .unwrap(),
        );
        let a1 = masked.iter().find(|r| r[0] == "A1").unwrap();
        assert_eq!(
            &a1[..6],
            &["A1", "440604********1234", "张**", "NULL", "2020", "2020"],
            "{kind}"
        );
        assert_eq!(
            a1[6],
            key().digest("5"),
            "{kind}: hash of the integer's text"
        );
        let a2 = masked.iter().find(|r| r[0] == "A2").unwrap();
        assert_eq!(&a2[1..3], &["110105********002X", "欧阳**"], "{kind}");
        assert!(
            masked
                .iter()
                .all(|r| !r.iter().any(|c| c.contains("198506121"))),
            "{kind}: no raw id leaks"
        );
        answers.push(masked);

        // Filters.
        let ids = |batches: Vec<RecordBatch>| -> Vec<String> {
            let mut v: Vec<String> = rows(&batches).into_iter().map(|r| r[0].clone()).collect();
            v.sort();
            v
        };
        let q = |f: &'static str| read(source, manifest, ALL, Some(f), None, 100);
        assert_eq!(
            ids(q("owner_id = '440604198506121234'").await.unwrap()),
            ["A1"],
            "{kind}"
        );
        assert_eq!(
            ids(
                q("owner_id IN ('440604198506121234', '11010519491231002X', 'nobody')")
                    .await
                    .unwrap()
            ),
            ["A1", "A2"],
            "{kind}"
        );
        assert_eq!(
            ids(q("seats BETWEEN 3 AND 7").await.unwrap()),
            ["A1", "A2", "B5"],
            "{kind}"
        );
        assert_eq!(
            ids(q("id LIKE 'A_%'").await.unwrap()),
            ["A_3"],
            "{kind}: _ is literal in a prefix"
        );
        assert_eq!(
            ids(q("name = '李四''; DROP TABLE readings; --'").await.unwrap()),
            ["A%4"],
            "{kind}: injection is just a value"
        );
        assert_eq!(
            ids(q("registered_on >= '2021-01-01' AND active = true")
                .await
                .unwrap()),
            ["A%4"],
            "{kind}"
        );
        assert_eq!(
            ids(q("updated_at < '2000-01-01'").await.unwrap()),
            ["B5"],
            "{kind}"
        );
        assert_eq!(
            ids(q("(seats > 4 OR price < 1) AND id != 'A1'").await.unwrap()),
            ["A%4", "A2"],
            "{kind}"
        );
        assert_eq!(
            ids(q("name = 'ꙮ𠀀é'").await.unwrap()),
            ["B5"],
            "{kind}: odd Unicode round-trips"
        );
        assert!(ids(q("price > 1000000.5").await.unwrap()).is_empty());
        // A masked field cannot be probed.
        let masked_filter = read(
            source,
            manifest,
            &[("id", Mask::None), ("owner_id", Mask::IdNumber)],
            Some("owner_id LIKE '4406%'"),
            None,
            100,
        )
        .await
        .unwrap_err();
        assert!(masked_filter.contains("masked"), "{kind}: {masked_filter}");
        // The table survived every hostile value.
        assert_eq!(
            rows(&read(source, manifest, ALL, None, None, 100).await.unwrap()).len(),
            5,
            "{kind}"
        );
        // Limit.
        assert_eq!(
            rows(
                &read(source, manifest, ALL, None, Some(2), 100)
                    .await
                    .unwrap()
            )
            .len(),
            2,
            "{kind}"
        );
        // Dropping the stream early does not hang or fail the next read.
        let ds = manifest.datasets[0].clone();
        let cols = ds
            .fields
            .iter()
            .map(|f| Projection {
                field: f.clone(),
                mask: Mask::None,
            })
            .collect();
        let (_, rx) = source
            .read(
                ReadPlan {
                    dataset: ds,
                    columns: cols,
                    filter: None,
                    limit: None,
                    batch_rows: 1,
                    subject_keys: Vec::new(),
                },
                key(),
            )
            .unwrap();
        drop(rx);
        assert_eq!(
            rows(&read(source, manifest, ALL, None, None, 100).await.unwrap()).len(),
            5
        );

        match &reference {
            None => reference = Some(answers),
            Some(r) => assert_eq!(&answers, r, "{kind} differs from sqlite"),
        }
    }
}
