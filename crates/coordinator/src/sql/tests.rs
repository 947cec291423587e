use super::*;

fn ok(sql: &str) -> Select1 {
    translate(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn refused(sql: &str) -> Status {
    translate(sql).expect_err(sql)
}

#[test]
fn a_select_becomes_a_dataset_fields_filter_and_limit() {
    let q = ok(
        "SELECT plate_no, owner_id FROM \"vehicle-admin\".\"vehicles\" \
                WHERE owner_id = '440604198506121234' AND registered_on >= '2020-01-01' LIMIT 10",
    );
    assert_eq!(q.dataset, "vehicle-admin/vehicles");
    assert_eq!(q.fields, ["plate_no", "owner_id"]);
    assert_eq!(
        q.filter,
        "owner_id = '440604198506121234' AND registered_on >= '2020-01-01'"
    );
    assert_eq!(q.limit, Some(10));
    let star = ok("select * from exchange.tax.taxpayers");
    assert_eq!(
        (star.dataset.as_str(), star.fields.len()),
        ("tax/taxpayers", 0)
    );
    assert_eq!(
        ok("SELECT * FROM \"tax/taxpayers\"").dataset,
        "tax/taxpayers"
    );
}

#[test]
fn conditions_map_onto_the_filter_language() {
    let f = |w: &str| ok(&format!("SELECT * FROM a.b WHERE {w}")).filter;
    assert_eq!(f("x IN ('a', 'b')"), "x IN ('a', 'b')");
    assert_eq!(f("5 < x"), "x > 5");
    assert_eq!(f("x BETWEEN -1 AND 2.5"), "x BETWEEN -1 AND 2.5");
    assert_eq!(f("plate LIKE '粤E%'"), "plate LIKE '粤E%'");
    assert_eq!(
        f("(a = 1 OR b = true) AND c <> 'z'"),
        "(a = 1 OR b = true) AND c <> 'z'"
    );
}

#[test]
fn injection_stays_inside_the_literal_or_the_name() {
    // A quote inside a literal is data, quoted again in the filter text.
    let q = ok("SELECT * FROM a.b WHERE name = 'x'' OR ''1''=''1'");
    assert_eq!(q.filter, "name = 'x'' OR ''1''=''1'");
    // A quoted identifier is one name, however it is spelled.
    let q = ok("SELECT \"a; DROP TABLE t\" FROM \"x\".\"y--\"");
    assert_eq!(q.fields, ["a; DROP TABLE t"]);
    assert_eq!(q.dataset, "x/y--");
    let e = refused("SELECT * FROM a.b; DROP TABLE c");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("2 statements"), "{}", e.message());
}

#[test]
fn what_the_exchange_does_not_do_is_named_with_its_alternative() {
    for (sql, says) in [
        ("DELETE FROM a.b", "only reads"),
        ("CREATE TABLE t (x int)", "only reads"),
        (
            "SELECT * FROM a.b JOIN c.d ON a.b.x = c.d.x",
            "exchange join",
        ),
        ("SELECT count(*) FROM a.b", "functions and aggregates"),
        (
            "SELECT x FROM a.b GROUP BY x",
            "aggregate them in your client",
        ),
        (
            "SELECT x FROM a.b ORDER BY x",
            "sort the answer in your client",
        ),
        ("SELECT x FROM a.b WHERE x NOT IN (1)", "NOT"),
        (
            "SELECT x FROM a.b WHERE x IN (SELECT y FROM c.d)",
            "sub-queries",
        ),
        ("SELECT x AS y FROM a.b", "aliases"),
        ("SELECT x FROM a.b WHERE x LIKE '%a'", "one trailing %"),
        ("SELECT x FROM a.b UNION SELECT x FROM c.d", "UNION"),
        ("SELECT x FROM a.b LIMIT 5 OFFSET 10", "OFFSET"),
    ] {
        let e = refused(sql);
        assert!(
            matches!(
                e.code(),
                tonic::Code::Unimplemented | tonic::Code::InvalidArgument
            ),
            "{sql}: {e}"
        );
        assert!(e.message().contains(says), "{sql}: {}", e.message());
    }
}

#[test]
fn oversized_and_malformed_text_is_refused_clearly() {
    let huge = format!("SELECT * FROM a.b WHERE x = '{}'", "x".repeat(10 << 20));
    let e = refused(&huge);
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("bytes"), "{}", e.message());
    assert!(refused("SELEC * FROM")
        .message()
        .contains("could not be parsed"));
    assert!(refused("").message().contains("no statement"));
    assert!(refused("SELECT * FROM a.b LIMIT 0")
        .message()
        .contains("at least 1"));
    let deep = format!(
        "SELECT * FROM a.b WHERE {}x = 1{}",
        "(".repeat(500),
        ")".repeat(500)
    );
    assert_eq!(refused(&deep).code(), tonic::Code::InvalidArgument);
}
