use std::path::Path;

use super::*;

const GOOD: &str = r#"
department = "vehicle-admin"

[databases.main]
kind = "sqlite"
path = "vehicle.db"

[[datasets]]
id = "vehicles"
title = "机动车登记信息"
title_en = "Motor vehicle registrations"
description = "在册机动车及其所有人"
update_cycle = "daily"
sharing = "conditional"
tags = ["车辆"]
[datasets.source]
database = "main"
table = "vehicles"
key_columns = ["plate_no"]
[[datasets.fields]]
name = "plate_no"
type = "string"
description = "号牌号码"
sensitivity = "internal"
key_type = "vehicle_plate"
[[datasets.fields]]
name = "owner_id"
type = "string"
description = "所有人身份证号"
sensitivity = "sensitive"
mask = "id_number"
key_type = "person_id"
[[datasets.fields]]
name = "registered_on"
type = "date"
sensitivity = "public"
"#;

fn parse(text: &str) -> Result<Manifest, ManifestErrors> {
    Manifest::parse(text, Path::new("/etc/exchange/catalog.toml"), &|_| None)
}

fn one_error(text: &str) -> ManifestError {
    let errs = parse(text).unwrap_err().0;
    assert_eq!(errs.len(), 1, "{errs:#?}");
    errs.into_iter().next().unwrap()
}

#[test]
fn a_good_manifest_parses() {
    let m = parse(GOOD).unwrap();
    assert_eq!(m.department, "vehicle-admin");
    assert_eq!(m.databases["main"].location, "/etc/exchange/vehicle.db");
    let d = &m.datasets[0];
    assert_eq!(d.sharing, Sharing::Conditional);
    assert_eq!(d.fields[1].mask, Mask::IdNumber);
    assert_eq!(d.fields[0].column, "plate_no");
    assert_eq!(m.digest.len(), 64);
    let published = m.to_published();
    assert_eq!(published[0].fields[1].key_type, "person_id");
    assert_eq!(published[0].source_kind, "sqlite");
}

#[test]
fn unknown_keys_are_refused_with_the_line() {
    let text = GOOD.replace(
        "update_cycle = \"daily\"",
        "update_cycle = \"daily\"\nowner = \"tax\"",
    );
    let e = one_error(&text);
    assert!(e.problem.contains("unknown field `owner`"), "{e}");
    assert!(e.key.starts_with("line "), "{e}");
    assert!(e.to_string().contains("/etc/exchange/catalog.toml"));
}

#[test]
fn malformed_toml_is_refused() {
    let e = one_error("department = \"tax\"\n[[datasets]\n");
    assert!(e.key.starts_with("line 2"), "{e}");
}

#[test]
fn none_sharing_needs_a_basis() {
    let text = GOOD.replace("sharing = \"conditional\"", "sharing = \"none\"");
    let e = one_error(&text);
    assert_eq!(e.dataset.as_deref(), Some("vehicles"));
    assert_eq!(e.key, "datasets[0].basis");
    assert!(e.fix.contains("basis ="), "{e}");
    let text = GOOD.replace(
        "sharing = \"conditional\"",
        "sharing = \"none\"\nbasis = \"《中华人民共和国道路交通安全法》第十二条\"",
    );
    assert!(parse(&text).is_ok());
}

#[test]
fn bad_values_name_key_and_fix() {
    let cases = [
        (
            "sensitivity = \"internal\"",
            "sensitivity = \"secrett\"",
            "datasets[0].fields[0].sensitivity",
            "public, internal, sensitive, secret",
        ),
        (
            "type = \"date\"",
            "type = \"datetime\"",
            "datasets[0].fields[2].type",
            "timestamp",
        ),
        (
            "mask = \"id_number\"",
            "mask = \"none\"",
            "datasets[0].fields[1].mask",
            "hash",
        ),
        (
            "key_type = \"person_id\"",
            "key_type = \"person\"",
            "datasets[0].fields[1].key_type",
            "person_id",
        ),
        (
            "sharing = \"conditional\"",
            "sharing = \"sometimes\"",
            "datasets[0].sharing",
            "unconditional",
        ),
        (
            "database = \"main\"",
            "database = \"other\"",
            "datasets[0].source.database",
            "main",
        ),
        (
            "table = \"vehicles\"",
            "table = \"vehicles; drop table x\"",
            "datasets[0].source.table",
            "table",
        ),
        (
            "name = \"owner_id\"",
            "name = \"Owner Id\"",
            "datasets[0].fields[1].name",
            "lowercase",
        ),
        (
            "key_columns = [\"plate_no\"]",
            "key_columns = [\"vin\"]",
            "datasets[0].source.key_columns[0]",
            "fields",
        ),
        (
            "department = \"vehicle-admin\"",
            "department = \"车管所\"",
            "department",
            "member id",
        ),
    ];
    for (from, to, key, fix) in cases {
        let text = GOOD.replace(from, to);
        assert_ne!(text, GOOD, "{from}");
        let e = one_error(&text);
        assert_eq!(e.key, key, "{e}");
        assert!(e.fix.contains(fix) || e.problem.contains(fix), "{key}: {e}");
    }
}

#[test]
fn all_problems_are_reported_at_once() {
    let text = GOOD
        .replace("sensitivity = \"internal\"", "sensitivity = \"x\"")
        .replace("update_cycle = \"daily\"", "update_cycle = \"hourly\"");
    assert_eq!(parse(&text).unwrap_err().0.len(), 2);
}

#[test]
fn server_databases_take_urls_from_the_environment() {
    let text = GOOD.replace(
        "kind = \"sqlite\"\npath = \"vehicle.db\"",
        "kind = \"postgres\"\nurl_env = \"VEHICLE_DB_URL\"",
    );
    let m = Manifest::parse(&text, Path::new("c.toml"), &|v| {
        (v == "VEHICLE_DB_URL").then(|| "postgres://u:secret@h/db".into())
    })
    .unwrap();
    assert_eq!(m.databases["main"].kind, SourceKind::Postgres);
    assert!(
        !format!("{:?}", m.databases["main"]).contains("secret"),
        "passwords stay out of debug output"
    );
    let e = one_error(&text);
    assert!(e.problem.contains("VEHICLE_DB_URL"), "{e}");
}

#[test]
fn columns_are_checked_against_the_source() {
    let m = parse(GOOD).unwrap();
    let d = &m.datasets[0];
    let col = |n: &str, t: &str, c: ColumnClass| SourceColumn {
        name: n.into(),
        declared_type: t.into(),
        class: c,
    };
    let good = vec![
        col("plate_no", "TEXT", ColumnClass::Text),
        col("owner_id", "TEXT", ColumnClass::Text),
        col("registered_on", "TEXT", ColumnClass::Text),
    ];
    assert!(m.check_columns(d, &good).is_empty());
    let missing = vec![
        col("plate_no", "TEXT", ColumnClass::Text),
        col("registered_on", "TEXT", ColumnClass::Text),
    ];
    let errs = m.check_columns(d, &missing);
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].problem.contains("\"owner_id\" does not exist"),
        "{}",
        errs[0]
    );
    assert!(errs[0].fix.contains("plate_no"));
    let wrong = vec![
        col("plate_no", "INTEGER", ColumnClass::Integer),
        col("owner_id", "TEXT", ColumnClass::Text),
        col("registered_on", "TEXT", ColumnClass::Text),
    ];
    let errs = m.check_columns(d, &wrong);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].fix, "set type = \"integer\"");
    let errs = m.check_columns(d, &[]);
    assert!(errs[0].problem.contains("not found"));
}
