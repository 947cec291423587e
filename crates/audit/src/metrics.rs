//! Counters derived from audit records as they are written, rendered in the
//! Prometheus text format. Because they are fed from the same records as
//! the log, the metrics and the audit trail cannot disagree about what
//! happened (they reset when the process restarts; the log does not).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use crate::record::{Event, Record};

const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, v: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS.len()];
        }
        for (i, b) in BUCKETS.iter().enumerate() {
            if v <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }
}

#[derive(Default)]
struct Inner {
    counters: BTreeMap<(&'static str, String), u64>,
    histograms: BTreeMap<(&'static str, String), Histogram>,
}

/// Metrics of one process.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels(pairs: &[(&str, &str)]) -> String {
    let body: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    body.join(",")
}

const HELP: &[(&str, &str, &str)] = &[
    ("exchange_audit_entries_total", "counter", "Audit entries made durable."),
    ("exchange_audit_commit_seconds", "histogram", "Time to write and fsync one group commit."),
    ("exchange_audit_write_failures_total", "counter", "Group commits that failed (queries refused)."),
    ("exchange_query_decisions_total", "counter", "Query decisions at the coordinator, by consumer, dataset and decision."),
    ("exchange_query_rows_total", "counter", "Rows returned, by consumer and dataset."),
    ("exchange_query_bytes_total", "counter", "Bytes of Arrow data returned, by consumer and dataset."),
    ("exchange_query_duration_seconds", "histogram", "Query duration from authorization (coordinator) or acceptance (node) to the last batch, by dataset."),
    ("exchange_queries_served_total", "counter", "Queries accepted by this node, by consumer and dataset."),
    ("exchange_queries_refused_total", "counter", "Tickets refused by this node, by consumer and dataset."),
    ("exchange_access_events_total", "counter", "Access requests, decisions and revocations, by action and outcome."),
    ("exchange_subject_requests_total", "counter", "Data-subject reports asked for."),
];

impl Metrics {
    fn add(&self, name: &'static str, l: String, by: u64) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *inner.counters.entry((name, l)).or_default() += by;
    }

    fn time(&self, name: &'static str, l: String, secs: f64) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.histograms.entry((name, l)).or_default().observe(secs);
    }

    /// Counts what a record says happened.
    pub fn observe(&self, record: &Record) {
        match &record.event {
            Event::QueryDecision(d) => self.add(
                "exchange_query_decisions_total",
                labels(&[
                    ("consumer", &d.consumer),
                    ("dataset", &d.dataset),
                    ("decision", if d.allowed { "allowed" } else { "denied" }),
                ]),
                1,
            ),
            Event::QueryCompletion(c) | Event::QueryFinished(c) => {
                let l = labels(&[("consumer", &c.consumer), ("dataset", &c.dataset)]);
                self.add("exchange_query_rows_total", l.clone(), c.rows);
                self.add("exchange_query_bytes_total", l, c.bytes);
                self.time(
                    "exchange_query_duration_seconds",
                    labels(&[("dataset", &c.dataset)]),
                    c.duration_ms as f64 / 1000.0,
                );
            }
            Event::QueryServed(s) => self.add(
                "exchange_queries_served_total",
                labels(&[("consumer", &s.consumer), ("dataset", &s.dataset)]),
                1,
            ),
            Event::QueryRefused(r) => self.add(
                "exchange_queries_refused_total",
                labels(&[("consumer", &r.consumer), ("dataset", &r.dataset)]),
                1,
            ),
            Event::Access(a) => self.add(
                "exchange_access_events_total",
                labels(&[("action", &a.action), ("status", &a.status)]),
                1,
            ),
            Event::SubjectRequest(_) => {
                self.add("exchange_subject_requests_total", String::new(), 1)
            }
            Event::QueryKeys(_) => {}
        }
    }

    pub fn observe_commit(&self, entries: u64, took: Duration) {
        self.add("exchange_audit_entries_total", String::new(), entries);
        self.time(
            "exchange_audit_commit_seconds",
            String::new(),
            took.as_secs_f64(),
        );
    }

    pub fn observe_failure(&self) {
        self.add("exchange_audit_write_failures_total", String::new(), 1);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        for (name, kind, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            if *kind == "counter" {
                let mut any = false;
                for ((n, l), v) in inner.counters.iter().filter(|((n, _), _)| n == name) {
                    any = true;
                    if l.is_empty() {
                        let _ = writeln!(out, "{n} {v}");
                    } else {
                        let _ = writeln!(out, "{n}{{{l}}} {v}");
                    }
                }
                if !any && !name.contains("query") && !name.contains("access") {
                    let _ = writeln!(out, "{name} 0");
                }
            } else {
                for ((n, l), h) in inner.histograms.iter().filter(|((n, _), _)| n == name) {
                    let sep = if l.is_empty() { "" } else { "," };
                    for (i, b) in BUCKETS.iter().enumerate() {
                        let _ = writeln!(out, "{n}_bucket{{{l}{sep}le=\"{b}\"}} {}", h.counts[i]);
                    }
                    let _ = writeln!(out, "{n}_bucket{{{l}{sep}le=\"+Inf\"}} {}", h.count);
                    let braces = if l.is_empty() {
                        String::new()
                    } else {
                        format!("{{{l}}}")
                    };
                    let _ = writeln!(out, "{n}_sum{braces} {}", h.sum);
                    let _ = writeln!(out, "{n}_count{braces} {}", h.count);
                }
            }
        }
        out
    }
}
