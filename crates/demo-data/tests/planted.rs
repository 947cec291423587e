//! The planted cases hold in the generated databases, checked with plain SQL
//! that does not reuse the generator's logic, and every manifest validates
//! against its database.

use std::collections::BTreeSet;
use std::path::Path;
use std::str::FromStr;

use exchange_catalog::Manifest;
use exchange_demo_data::ids::{is_valid_resident_id, is_valid_uscc};
use exchange_demo_data::{generate, Options, DEPARTMENTS};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, Row, SqliteConnection};

async fn open(dir: &Path, dept: &str) -> SqliteConnection {
    let mut conn = SqliteConnection::connect_with(
        &SqliteConnectOptions::from_str(&format!(
            "sqlite://{}",
            dir.join(format!("{dept}.db")).display()
        ))
        .unwrap(),
    )
    .await
    .unwrap();
    for other in [
        "vehicle-admin",
        "real-estate",
        "tax",
        "electricity",
        "market-regulation",
        "public-security",
    ] {
        if other != dept {
            sqlx::query(&format!(
                "ATTACH DATABASE '{}' AS \"{other}\"",
                dir.join(format!("{other}.db")).display()
            ))
            .execute(&mut conn)
            .await
            .unwrap();
        }
    }
    conn
}

async fn strings(conn: &mut SqliteConnection, sql: &str) -> Vec<String> {
    sqlx::query(sql)
        .fetch_all(conn)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect()
}

#[tokio::test]
async fn planted_cases_hold_and_manifests_validate() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        persons: 6_000,
        seed: 7,
    };
    let planted = generate(dir.path(), &opts).await.unwrap();
    assert_eq!(planted.persons, 6_000);
    assert_eq!(planted.companies, 300);

    // Identifiers are valid everywhere.
    let mut ps = open(dir.path(), "public-security").await;
    let ids = strings(&mut ps, "SELECT person_id FROM household_registration").await;
    assert_eq!(ids.len(), 6_000);
    assert!(
        ids.iter().all(|id| is_valid_resident_id(id)),
        "invalid resident id"
    );
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        6_000,
        "ids are unique"
    );
    let mut mr = open(dir.path(), "market-regulation").await;
    let codes = strings(&mut mr, "SELECT org_code FROM companies").await;
    assert!(
        codes.iter().all(|c| is_valid_uscc(c)),
        "invalid credit code"
    );

    // Poverty relief: exactly the planted households hold assets.
    let mut ca = open(dir.path(), "civil-affairs").await;
    let with_assets = strings(
        &mut ca,
        "SELECT DISTINCT m.household_id FROM relief_members m
         WHERE m.person_id IN (SELECT owner_id FROM \"vehicle-admin\".vehicles)
            OR m.person_id IN (SELECT owner_id FROM \"real-estate\".properties)
         ORDER BY 1",
    )
    .await;
    assert_eq!(with_assets, planted.relief_households_with_assets);
    assert_eq!(planted.relief_households.len(), 20);
    assert_eq!(with_assets.len(), 4, "18.5% of 20 households, rounded");

    // Arrears.
    let mut hr = open(dir.path(), "hrss").await;
    assert_eq!(
        strings(
            &mut hr,
            "SELECT org_code FROM contribution_arrears ORDER BY 1"
        )
        .await,
        planted.arrears_companies
    );

    // Tax per kWh below 0.05 in 2025: exactly the planted outliers, and the gap is wide.
    let mut tax = open(dir.path(), "tax").await;
    let low = strings(
        &mut tax,
        "SELECT d.org_code FROM tax_declarations d JOIN electricity.electricity_usage u
           ON u.org_code = d.org_code AND u.year = d.year
         WHERE d.year = 2025 AND d.declared_tax / u.kwh < 0.05 ORDER BY 1",
    )
    .await;
    assert_eq!(low, planted.tax_electricity_outliers);
    let min_normal: f64 = sqlx::query(
        "SELECT MIN(d.declared_tax / u.kwh) FROM tax_declarations d JOIN electricity.electricity_usage u
           ON u.org_code = d.org_code AND u.year = d.year WHERE d.declared_tax / u.kwh >= 0.05",
    )
    .fetch_one(&mut tax)
    .await
    .unwrap()
    .get(0);
    assert!(min_normal >= 0.29, "{min_normal}");

    // Address conflicts: differ after normalization only for the planted ones.
    let pairs = sqlx::query("SELECT t.org_code, t.registered_address, c.registered_address FROM taxpayers t JOIN \"market-regulation\".companies c USING (org_code)")
        .fetch_all(&mut tax)
        .await
        .unwrap();
    let normalize = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if ('\u{FF01}'..='\u{FF5E}').contains(&c) {
                    char::from_u32(c as u32 - 0xFEE0).unwrap()
                } else {
                    c
                }
            })
            .filter(|c| !c.is_whitespace())
            .collect()
    };
    let mut real = Vec::new();
    let mut cosmetic = Vec::new();
    for r in pairs {
        let (code, a, b): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        if normalize(&a) != normalize(&b) {
            real.push(code);
        } else if a != b {
            cosmetic.push(code);
        }
    }
    real.sort();
    cosmetic.sort();
    assert_eq!(real, planted.address_conflicts);
    assert_eq!(cosmetic, planted.cosmetic_address_differences);

    // The official: 40 round trips to Macau in 2025; nobody else more than 3 trips.
    let macau: i64 = sqlx::query("SELECT COUNT(*) FROM exit_entry_records WHERE person_id = ? AND destination = '澳门' AND direction = '出境' AND crossed_at LIKE '2025-%'")
        .bind(&planted.official_person_id)
        .fetch_one(&mut ps)
        .await
        .unwrap()
        .get(0);
    assert_eq!(macau, 40);
    let max_other: i64 = sqlx::query("SELECT COALESCE(MAX(n), 0) FROM (SELECT COUNT(*) n FROM exit_entry_records WHERE direction = '出境' AND person_id <> ? GROUP BY person_id)")
        .bind(&planted.official_person_id)
        .fetch_one(&mut ps)
        .await
        .unwrap()
        .get(0);
    assert!(max_other <= 3, "{max_other}");
    let official_props = strings(
        &mut ps,
        &format!(
            "SELECT cert_no FROM \"real-estate\".properties WHERE owner_id = '{}' ORDER BY 1",
            planted.official_person_id
        ),
    )
    .await;
    let mut expected = planted.official_properties.clone();
    expected.sort();
    assert_eq!(official_props, expected);

    // Enrolment: owner guardian owns the registered home; insured guardian is insured; same household.
    let home: i64 = sqlx::query("SELECT COUNT(*) FROM household_registration h JOIN \"real-estate\".properties p ON p.owner_id = h.person_id AND p.address = h.address WHERE h.person_id = ?")
        .bind(&planted.enrolment_guardian_owner_id)
        .fetch_one(&mut ps)
        .await
        .unwrap()
        .get(0);
    assert_eq!(home, 1);
    let households = strings(&mut ps, &format!("SELECT DISTINCT household_id FROM household_registration WHERE person_id IN ('{}','{}','{}')", planted.enrolment_child_id, planted.enrolment_guardian_owner_id, planted.enrolment_guardian_insured_id)).await;
    assert_eq!(households.len(), 1);
    let insured: i64 = sqlx::query(
        "SELECT COUNT(*) FROM social_insurance WHERE person_id = ? AND status = '正常参保'",
    )
    .bind(&planted.enrolment_guardian_insured_id)
    .fetch_one(&mut hr)
    .await
    .unwrap()
    .get(0);
    assert!(insured >= 1);
    let lease: i64 = sqlx::query("SELECT COUNT(*) FROM \"real-estate\".leases WHERE tenant_id = ?")
        .bind(&planted.enrolment_lease_guardian_id)
        .fetch_one(&mut ps)
        .await
        .unwrap()
        .get(0);
    assert_eq!(lease, 1);

    // Every manifest validates and matches its database's real columns.
    for (dept, _) in DEPARTMENTS {
        let manifest = Manifest::load(&dir.path().join(format!("{dept}.toml")))
            .unwrap_or_else(|e| panic!("{dept}: {e}"));
        assert_eq!(&manifest.department, dept);
        let source = exchange_source::Source::open(&manifest.databases["main"])
            .await
            .unwrap();
        for ds in &manifest.datasets {
            let cols = source.describe(&ds.table).await.unwrap();
            let errors = manifest.check_columns(ds, &cols);
            assert!(errors.is_empty(), "{dept}/{}: {errors:?}", ds.id);
        }
    }

    // Deterministic: the same seed gives the same answers.
    let again = tempfile::tempdir().unwrap();
    assert_eq!(generate(again.path(), &opts).await.unwrap(), planted);
}

#[tokio::test]
async fn refuses_silly_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let err = generate(
        dir.path(),
        &Options {
            persons: 10,
            seed: 1,
        },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("between 1,000"), "{err}");
}
