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
fn canonical_text_round_trips() {
    for text in [
        "owner_id IN ('440604198506121234', '11010519491231002X')",
        "(brand = '比亚迪' OR brand = 'O''Neil') AND year BETWEEN 2020 AND 2025",
        "plate_no LIKE '粤E%' AND kwh < 1000.5",
    ] {
        let f = ok(text);
        assert_eq!(ok(&f.to_string()), f, "{text} -> {f}");
    }
    assert_eq!(
        ok("year=2024").to_string(),
        ok("year   =   2024").to_string()
    );
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

/// A small deterministic generator (xorshift), so the property test needs
/// no dependency and every failure reproduces from its seed.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn digits(&mut self, len: u64) -> String {
        (0..len)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }
    fn text(&mut self) -> String {
        const PIECES: [&str; 9] = ["a", "'", "粤E", " ", "O''", "𠀀", "e\u{301}", "\\", "%"];
        (0..self.below(6))
            .map(|_| PIECES[self.below(PIECES.len() as u64) as usize])
            .collect()
    }
    fn value(&mut self) -> Value {
        match self.below(5) {
            0 => Value::Text(self.text()),
            1 => Value::Integer(self.next() as i64 >> self.below(63)),
            2 => Value::Bool(self.below(2) == 0),
            // A float as a user could write it: at most 40 characters.
            _ => {
                let whole = self.below(20) + 1;
                let frac = self.below(39 - whole) + 1;
                let sign = if self.below(2) == 0 { "" } else { "-" };
                let text = format!("{sign}{}.{}", self.digits(whole), self.digits(frac));
                Value::Float(text.parse().unwrap())
            }
        }
    }
    fn field(&mut self) -> String {
        ["brand", "year", "kwh", "owner_id", "x_1"][self.below(5) as usize].into()
    }
    fn filter(&mut self, depth: u32) -> Filter {
        let kind = if depth == 0 {
            self.below(4)
        } else {
            self.below(6)
        };
        match kind {
            0 => Filter::Compare {
                field: self.field(),
                op: [
                    CompareOp::Eq,
                    CompareOp::Ne,
                    CompareOp::Lt,
                    CompareOp::Le,
                    CompareOp::Gt,
                    CompareOp::Ge,
                ][self.below(6) as usize],
                value: self.value(),
            },
            1 => Filter::In {
                field: self.field(),
                values: (0..self.below(5) + 1).map(|_| self.value()).collect(),
            },
            2 => Filter::Between {
                field: self.field(),
                low: self.value(),
                high: self.value(),
            },
            3 => Filter::Prefix {
                field: self.field(),
                prefix: format!("{}p", self.text().replace('%', "")),
            },
            4 => Filter::And(
                (0..self.below(3) + 2)
                    .map(|_| self.filter(depth - 1))
                    .collect(),
            ),
            _ => Filter::Or(
                (0..self.below(3) + 2)
                    .map(|_| self.filter(depth - 1))
                    .collect(),
            ),
        }
    }
}

#[test]
fn parse_print_parse_gives_the_same_filter() {
    for seed in 1..=3_000u64 {
        let mut g = Gen(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let f = g.filter(3);
        let text = f.to_string();
        let back = parse(&text).unwrap_or_else(|e| panic!("seed {seed}: {text}: {e}"));
        assert_eq!(back, f, "seed {seed}: {text}");
        assert_eq!(back.to_string(), text, "seed {seed}: printing is stable");
    }
}

#[test]
fn numbers_print_as_the_parser_reads_them() {
    // Floats once printed as 1e16 and 1e-5, which the node could not read.
    let kwh = |t: &str| ok(&format!("kwh < {t}"));
    for (written, canonical) in [
        ("10000000000000000", "kwh < 10000000000000000.0"),
        ("0.00001", "kwh < 0.00001"),
        ("1000.5", "kwh < 1000.5"),
        ("-0.5", "kwh < -0.5"),
        (
            "9999999999999999999999999999999999999.5",
            "kwh < 10000000000000000000000000000000000000.0",
        ),
    ] {
        let f = kwh(written);
        assert_eq!(f.to_string(), canonical);
        assert_eq!(ok(&f.to_string()), f);
    }
    assert!(fails("kwh < 100.").contains("ends with a point"));
    let huge = format!("kwh < {}.0", "9".repeat(39));
    assert!(fails(&huge).contains("longer than 40"));
}

#[test]
fn limits_hold_on_the_canonical_text_the_node_reads() {
    // Written tightly, the filter fits; spaced out canonically, it would
    // not: the coordinator refuses it, naming the limit.
    let values: Vec<String> = (0..MAX_IN_VALUES).map(|i| format!("{i:0>23}")).collect();
    let tight = format!("brand IN ('{}')", values.join("','"));
    assert!(tight.len() <= MAX_FILTER_BYTES);
    let f = ok(&tight);
    assert!(f.to_string().len() > MAX_FILTER_BYTES);
    let e = f.canonical().unwrap_err().to_string();
    assert!(e.contains(&format!("at most {MAX_FILTER_BYTES}")), "{e}");
    // Too many values in all, although each IN list is within its limit.
    let list: Vec<String> = (0..MAX_IN_VALUES).map(|i| i.to_string()).collect();
    let two = format!("year IN ({0}) OR year IN ({0}) OR year = 1", list.join(","));
    let e = ok(&two).canonical().unwrap_err().to_string();
    assert!(e.contains(&format!("at most {MAX_TOTAL_VALUES}")), "{e}");
    assert_eq!(ok("year = 1").canonical().unwrap(), "year = 1");
}

#[test]
fn values_tested_against_masked_fields_are_counted() {
    let masked = |f: &str| f == "owner_id";
    let f = ok("plate_no = 'x' AND (owner_id IN ('a', 'b', 'c') OR owner_id = 'd')");
    let values: Vec<String> = f
        .values_on(&masked)
        .iter()
        .map(|(_, v)| v.to_string())
        .collect();
    assert_eq!(values, ["'a'", "'b'", "'c'", "'d'"]);
    assert!(ok("brand = 'x'").values_on(&masked).is_empty());
}
