use super::*;

fn fields(name: &str) -> Option<FieldInfo> {
    let (t, masked) = match name {
        "owner_id" => (FieldType::String, true),
        "brand" | "plate_no" | "name" => (FieldType::String, false),
        "year" => (FieldType::Integer, false),
        "kwh" => (FieldType::Float, false),
        "registered_on" => (FieldType::Date, false),
        "crossed_at" => (FieldType::Timestamp, false),
        "active" => (FieldType::Boolean, false),
        _ => return None,
    };
    Some(FieldInfo {
        field_type: t,
        masked,
    })
}

fn ok(text: &str) -> Filter {
    parse(text)
        .and_then(|f| f.check(&fields))
        .unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn fails(text: &str) -> String {
    match parse(text).and_then(|f| f.check(&fields)) {
        Ok(f) => panic!("{text} was accepted as {f:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_documented_forms_parse() {
    assert_eq!(
        ok("owner_id = '440604198506121234'"),
        Filter::Compare {
            field: "owner_id".into(),
            op: CompareOp::Eq,
            value: Value::Text("440604198506121234".into())
        }
    );
    assert_eq!(ok("owner_id IN ('a', 'b')").value_count(), 2);
    assert!(
        matches!(ok("registered_on BETWEEN '2020-01-01' AND '2020-12-31' AND brand = '比亚迪'"), Filter::And(p) if p.len() == 2)
    );
    assert!(
        matches!(ok("plate_no LIKE '粤E%' OR (year >= 2024 AND kwh < 1000.5)"), Filter::Or(p) if p.len() == 2)
    );
    assert_eq!(
        ok("kwh > 10"),
        Filter::Compare {
            field: "kwh".into(),
            op: CompareOp::Gt,
            value: Value::Float(10.0)
        }
    );
    assert_eq!(ok("active = TRUE and year <> -1").fields().len(), 2);
    assert_eq!(
        ok("crossed_at >= '2025-01-01 00:00:00'")
            .fields()
            .into_iter()
            .collect::<Vec<_>>(),
        vec!["crossed_at"]
    );
    assert_eq!(
        ok("name = 'O''Brien'"),
        Filter::Compare {
            field: "name".into(),
            op: CompareOp::Eq,
            value: Value::Text("O'Brien".into())
        }
    );
}

#[test]
fn canonical_text_round_trips_and_digests_hide_values() {
    for text in [
        "owner_id IN ('440604198506121234', '11010519491231002X')",
        "(brand = '比亚迪' OR brand = 'O''Neil') AND year BETWEEN 2020 AND 2025",
        "plate_no LIKE '粤E%' AND kwh < 1000.5",
    ] {
        let f = ok(text);
        assert_eq!(ok(&f.to_string()), f, "{text} -> {f}");
        assert_eq!(f.digest().len(), 64);
        assert!(!f.digest().contains("4406"));
    }
    assert_eq!(ok("year=2024").digest(), ok("year   =   2024").digest());
}

#[test]
fn injection_attempts_are_values_or_errors_never_sql() {
    // Inside quotes, anything is a value.
    let f = ok("brand = '比亚迪''; DROP TABLE vehicles; --'");
    assert_eq!(
        f,
        Filter::Compare {
            field: "brand".into(),
            op: CompareOp::Eq,
            value: Value::Text("比亚迪'; DROP TABLE vehicles; --".into())
        }
    );
    // Outside quotes, SQL is refused with a reason.
    assert!(fails("brand = 'x'; DROP TABLE vehicles").contains("';'"));
    assert!(fails("brand = 'x' -- comment").contains("comments"));
    assert!(fails("brand = 'x' OR 1=1").contains("field name"));
    assert!(fails("\"brand\" = 'x'").contains("quoted names"));
    assert!(fails("brand = x").contains("quote text values"));
    assert!(fails("brand; = 'x'").contains("';'"));
    assert!(fails("brand = 'x' UNION SELECT owner_id FROM vehicles").contains("AND or OR"));
    assert!(fails("pg_sleep(10) = 1").contains("expected"));
}

#[test]
fn fields_types_and_masks_are_enforced() {
    assert!(fails("owner_name = 'x'").contains("no readable field \"owner_name\""));
    assert!(fails("year = '2024'").contains("whole number"));
    assert!(fails("plate_no = 123").contains("quote the value"));
    assert!(fails("registered_on = '2024-13-01'").contains("YYYY-MM-DD"));
    assert!(fails("active = 1").contains("true or false"));
    assert!(
        fails("crossed_at = '2025-01-0长xxxxxx'").contains("YYYY-MM-DD"),
        "multi-byte text in a date"
    );
    assert!(fails("registered_on = '2025-0长-01'").contains("YYYY-MM-DD"));
    assert!(fails("year LIKE '20%'").contains("text fields"));
    // Masked fields: equality and IN only.
    ok("owner_id = '440604198506121234'");
    ok("owner_id IN ('440604198506121234')");
    assert!(fails("owner_id LIKE '440604%'").contains("masked"));
    assert!(fails("owner_id > '44'").contains("masked"));
    assert!(fails("owner_id BETWEEN '1' AND '5'").contains("masked"));
    assert!(fails("owner_id != 'x'").contains("masked"));
}

#[test]
fn limits_and_malformed_input() {
    let big: Vec<String> = (0..=MAX_IN_VALUES).map(|i| format!("'{i}'")).collect();
    assert!(fails(&format!("owner_id IN ({})", big.join(","))).contains("at most 10000"));
    let fine: Vec<String> = (0..MAX_IN_VALUES).map(|i| format!("'{i}'")).collect();
    assert_eq!(
        ok(&format!("owner_id IN ({})", fine.join(","))).value_count(),
        MAX_IN_VALUES
    );
    let deep = format!(
        "{}year = 1{}",
        "(".repeat(MAX_DEPTH + 1),
        ")".repeat(MAX_DEPTH + 1)
    );
    assert!(fails(&deep).contains("nested"));
    assert!(fails(&format!("brand = '{}'", "长".repeat(MAX_VALUE_CHARS + 1))).contains("longer"));
    assert!(fails(&"x".repeat(MAX_FILTER_BYTES + 1)).contains("longer"));
    for bad in [
        "",
        "   ",
        "brand",
        "brand =",
        "brand = 'x",
        "(brand = 'x'",
        "brand IN ()",
        "brand IN ('a' 'b')",
        "brand LIKE 'abc'",
        "brand LIKE '%'",
        "brand LIKE 'a%b%'",
        "year BETWEEN 1",
        "AND",
        "= 'x'",
        "brand = 'a\u{0}'",
        "年份 = 1",
        "brand = 'x' brand = 'y'",
        "year = 99999999999999999999",
    ] {
        let e = fails(bad);
        assert!(e.starts_with("filter error at character"), "{bad:?}: {e}");
    }
    // Odd but valid Unicode inside values is kept as is.
    let f = ok("brand = '\u{202e}𠀀e\u{301}'");
    assert_eq!(
        f,
        Filter::Compare {
            field: "brand".into(),
            op: CompareOp::Eq,
            value: Value::Text("\u{202e}𠀀e\u{301}".into())
        }
    );
}
