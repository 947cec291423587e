use exchange_audit::{AccessEvent, QueryCompletion, QueryDecision};

use super::*;

/// The reference: the `p` quantile (nearest rank) of unsorted values; 0 when empty.
fn percentile(values: &mut [u64], p: f64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    let rank = ((p * values.len() as f64).ceil() as usize).clamp(1, values.len());
    *values.select_nth_unstable(rank - 1).1
}

const DAY1: i64 = 1_790_000_000_000; // 2026-09-21 UTC
const HOUR: i64 = 3_600_000;

fn at(time_ms: i64, event: Event) -> Record {
    Record { time_ms, event }
}

fn decision(q: &str, time_ms: i64, consumer: &str, dataset: &str, allowed: bool) -> Record {
    let owner = dataset.split('/').next().unwrap_or_default();
    at(
        time_ms,
        Event::QueryDecision(QueryDecision {
            query_id: q.into(),
            consumer: consumer.into(),
            dataset: dataset.into(),
            owner: if allowed { owner.into() } else { String::new() },
            allowed,
            ..Default::default()
        }),
    )
}

fn completion(q: &str, time_ms: i64, rows: u64, duration_ms: u64, status: &str) -> Record {
    at(
        time_ms,
        Event::QueryCompletion(QueryCompletion {
            query_id: q.into(),
            rows,
            duration_ms,
            status: status.into(),
            ..Default::default()
        }),
    )
}

fn approval(time_ms: i64, owner: &str, consumer: &str, hours: i64) -> Record {
    at(
        time_ms,
        Event::Access(AccessEvent {
            action: "approve".into(),
            owner: owner.into(),
            consumer: consumer.into(),
            turnaround_secs: hours * 3600,
            ..Default::default()
        }),
    )
}

/// Three queries over two days and one approval, fed as the log would.
fn fed() -> Statistics {
    let s = Statistics::default();
    for r in [
        decision("q1", DAY1, "civil-affairs", "vehicle-admin/vehicles", true),
        completion("q1", DAY1 + 5, 12, 40, "ok"),
        decision("q2", DAY1 + HOUR, "civil-affairs", "tax/payers", false),
        decision(
            "q3",
            DAY1 + 30 * HOUR,
            "tax",
            "vehicle-admin/vehicles",
            true,
        ),
        completion("q3", DAY1 + 30 * HOUR, 3, 7, "ok"),
        completion("q-unknown", DAY1, 99, 1, "ok"),
        approval(DAY1 - HOUR, "vehicle-admin", "civil-affairs", 6),
    ] {
        exchange_audit::Observer::observe(&s, &r);
    }
    s
}

fn cells(report: &pb::ReportResponse, first: &str) -> Vec<String> {
    report
        .rows
        .iter()
        .find(|r| r.cells[0] == first)
        .unwrap_or_else(|| panic!("no {first} in {report:?}"))
        .cells
        .clone()
}

#[test]
fn a_window_at_the_end_of_time_selects_nothing_instead_of_everything() {
    let now_ms = 1_800_000_000_000;
    assert!(!in_window(now_ms, i64::MAX, 0));
    assert!(in_window(now_ms, 0, i64::MAX));
    assert!(!in_window(now_ms, 0, i64::MIN));
    assert!(in_window(now_ms, 1_700_000_000, 0));
}

#[test]
fn percentiles_are_nearest_rank() {
    assert_eq!(percentile(&mut [], 0.5), 0);
    assert_eq!(percentile(&mut [4, 1, 3, 2], 0.5), 2);
    let mut hundred: Vec<u64> = (1..=100).rev().collect();
    assert_eq!(percentile(&mut hundred, 0.99), 99);
    // Counted per millisecond, with the long ones apart: the same ranks.
    let mut values: Vec<u64> = (0..500).map(|i| (i * 37) % 23_000).collect();
    let mut counted = Latencies::default();
    for v in &values {
        counted.push(*v);
    }
    for p in [0.01, 0.5, 0.9, 0.99, 1.0] {
        assert_eq!(counted.percentile(p), percentile(&mut values, p), "p{p}");
    }
    assert_eq!(Latencies::default().percentile(0.5), 0);
}

#[test]
fn an_unknown_kind_names_the_kinds() {
    let e = fed()
        .report(Viewer::Federation, "weekly", (0, 0), &BTreeMap::new())
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("departments, datasets or daily"));
}

#[test]
fn departments_count_both_sides_of_each_query_and_the_overdue_requests() {
    let overdue = BTreeMap::from([("tax".to_string(), 2)]);
    let r = fed()
        .report(Viewer::Federation, "departments", (0, 0), &overdue)
        .unwrap();
    assert_eq!(r.columns.last().unwrap(), "overdue_requests");
    //                                  issued denied rec served rows refused p50 p99 turn overdue
    assert_eq!(
        cells(&r, "civil-affairs")[1..],
        ["2", "1", "12", "0", "0", "0", "0", "0", "", "0"]
    );
    assert_eq!(
        cells(&r, "vehicle-admin")[1..],
        ["0", "0", "0", "2", "15", "0", "7", "40", "6.0", "0"]
    );
    assert_eq!(cells(&r, "tax")[1..4], ["1", "0", "3"]);
    assert_eq!(cells(&r, "tax")[10], "2");

    // The same cells typed: text, integers, hours as a number, and empty
    // where there is no figure.
    use pb::report_value::Value;
    let types: Vec<_> = r.column_types().collect();
    assert_eq!(types[0], pb::ReportColumnType::Text);
    assert_eq!(types[1], pb::ReportColumnType::Integer);
    assert_eq!(types[9], pb::ReportColumnType::Number);
    let row = |name: &str| {
        r.rows
            .iter()
            .find(|row| row.cells[0] == name)
            .unwrap()
            .values
            .iter()
            .map(|v| v.value.clone())
            .collect::<Vec<_>>()
    };
    let vehicles = row("vehicle-admin");
    assert_eq!(vehicles[0], Some(Value::Text("vehicle-admin".into())));
    assert_eq!(vehicles[5], Some(Value::Integer(15)));
    assert_eq!(vehicles[9], Some(Value::Number(6.0)));
    assert_eq!(row("civil-affairs")[9], None);
}

#[test]
fn a_department_sees_only_the_queries_it_took_part_in() {
    let s = fed();
    let r = s
        .report(
            Viewer::Department("tax"),
            "datasets",
            (0, 0),
            &BTreeMap::new(),
        )
        .unwrap();
    assert_eq!(r.rows.len(), 1, "{r:?}");
    assert_eq!(
        r.rows[0].cells,
        [
            "vehicle-admin/vehicles",
            "vehicle-admin",
            "1",
            "0",
            "1",
            "3"
        ]
    );
    let none = s
        .report(
            Viewer::Department("nobody"),
            "departments",
            (0, 0),
            &BTreeMap::new(),
        )
        .unwrap();
    assert!(none.rows.is_empty(), "{none:?}");
}

#[test]
fn days_and_windows() {
    let s = fed();
    let daily = s
        .report(Viewer::Federation, "daily", (0, 0), &BTreeMap::new())
        .unwrap();
    let days: Vec<&str> = daily.rows.iter().map(|r| r.cells[0].as_str()).collect();
    assert_eq!(days, ["2026-09-21", "2026-09-22"]);
    assert_eq!(daily.rows[0].cells[1..], ["2", "1", "12", "40", "40"]);
    // Only the second day.
    let since = (DAY1 + 24 * HOUR) / 1000;
    let datasets = s
        .report(Viewer::Federation, "datasets", (since, 0), &BTreeMap::new())
        .unwrap();
    assert_eq!(datasets.rows.len(), 1);
    assert_eq!(datasets.rows[0].cells[2], "1");
}

#[test]
fn the_join_table_forgets_old_decisions_but_the_index_keeps_them() {
    let s = Statistics::default();
    let n = FIRST_PRUNE_AT as i64 + 10;
    for i in 0..n {
        let time = DAY1 + i * 60_000; // one a minute: most are over a day old
        exchange_audit::Observer::observe(
            &s,
            &decision(&format!("q{i}"), time, "tax", "a/b", true),
        );
    }
    let inner = s.lock();
    assert_eq!(inner.queries.len(), n as usize);
    assert!(
        inner.open.len() < 24 * 60 + 20,
        "join table pruned to the horizon: {}",
        inner.open.len()
    );
}
