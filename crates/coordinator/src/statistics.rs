//! The running statistics behind `Audit.Report`: a compact, in-memory
//! index of query decisions, their completions and access decisions,
//! built from the audit log once at start and then fed every record as
//! the log writes it. A report reads this index instead of scanning every
//! segment, so the leadership's report page costs the same after a year
//! of traffic as after a day.
//!
//! The index is derived: it is rebuilt from the log at every start and
//! never consulted by `audit verify`, reconciliation or the subject
//! report, which read the signed log itself.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;

use exchange_audit::{Event, Record};
use exchange_proto::v1 as pb;
use tonic::Status;

use crate::audit_index::IndexedQuery;

/// Completions may arrive this long after their decision and still be
/// joined to it; older decisions leave the join table (not the index).
const OPEN_HORIZON_MS: i64 = 24 * 3600 * 1000;
/// The join table is pruned when it reaches this size (then twice its size).
const FIRST_PRUNE_AT: usize = 65_536;
/// Marks a query routed to no owner (refused before routing).
const NO_OWNER: u32 = u32::MAX;

/// One query, as the report needs it (40 bytes instead of a record).
#[derive(Debug, Clone, Copy)]
struct QueryStat {
    time_ms: i64,
    consumer: u32,
    owner: u32,
    dataset: u32,
    allowed: bool,
    /// The last completion said `ok`.
    ok: bool,
    rows: u64,
    duration_ms: u64,
}

/// An approval or refusal, for the owner's turnaround.
#[derive(Debug, Clone, Copy)]
struct DecisionStat {
    time_ms: i64,
    owner: u32,
    consumer: u32,
    turnaround_secs: i64,
}

/// Department and dataset names, each stored once.
#[derive(Debug, Default, Clone)]
struct Names {
    list: Vec<Box<str>>,
    ids: HashMap<Box<str>, u32>,
}

impl Names {
    fn id(&mut self, name: &str) -> u32 {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = self.list.len() as u32;
        self.list.push(name.into());
        self.ids.insert(name.into(), id);
        id
    }

    fn find(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    fn name(&self, id: u32) -> &str {
        self.list.get(id as usize).map(|s| &**s).unwrap_or("")
    }
}

#[derive(Debug, Default)]
struct Inner {
    names: Names,
    queries: Vec<QueryStat>,
    decisions: Vec<DecisionStat>,
    /// Query-id digest → position in `queries`, for joining completions.
    open: HashMap<u64, u32>,
    prune_at: usize,
    newest_ms: i64,
}

fn digest(query_id: &str) -> u64 {
    let mut h = DefaultHasher::new();
    query_id.hash(&mut h);
    h.finish()
}

impl Inner {
    fn observe(&mut self, record: &Record) {
        self.newest_ms = self.newest_ms.max(record.time_ms);
        match &record.event {
            Event::QueryDecision(d) => {
                let owner = if d.owner.is_empty() {
                    NO_OWNER
                } else {
                    self.names.id(&d.owner)
                };
                let stat = QueryStat {
                    time_ms: record.time_ms,
                    consumer: self.names.id(&d.consumer),
                    owner,
                    dataset: self.names.id(&d.dataset),
                    allowed: d.allowed,
                    ok: false,
                    rows: 0,
                    duration_ms: 0,
                };
                self.open
                    .insert(digest(&d.query_id), self.queries.len() as u32);
                self.queries.push(stat);
                self.prune();
            }
            Event::QueryCompletion(c) => {
                if let Some(i) = self.open.get(&digest(&c.query_id)) {
                    let q = &mut self.queries[*i as usize];
                    q.rows += c.rows;
                    q.duration_ms = c.duration_ms;
                    q.ok = c.status == "ok";
                }
            }
            Event::Access(a) if a.action == "approve" || a.action == "refuse" => {
                let stat = DecisionStat {
                    time_ms: record.time_ms,
                    owner: self.names.id(&a.owner),
                    consumer: self.names.id(&a.consumer),
                    turnaround_secs: a.turnaround_secs,
                };
                self.decisions.push(stat);
            }
            _ => {}
        }
    }

    /// Takes in one entry of the shared audit view as it now stands. An
    /// entry is read again each time it changes (its completion arrives),
    /// so a query already counted is updated in place, not counted twice.
    fn apply_shared(&mut self, key: &str, entry: &IndexedQuery) {
        // A completion alone waits for its decision to be copied.
        let Some(time_ms) = entry.time_ms else { return };
        if let Some(a) = &entry.access {
            self.observe(&Record {
                time_ms,
                event: Event::Access(a.clone()),
            });
            return;
        }
        let Some(d) = &entry.decision else { return };
        let at = match self.open.get(&digest(key)) {
            Some(i) => *i as usize,
            None => {
                self.observe(&Record {
                    time_ms,
                    event: Event::QueryDecision(d.clone()),
                });
                self.queries.len() - 1
            }
        };
        if let Some(c) = &entry.completion {
            let q = &mut self.queries[at];
            q.rows = c.rows;
            q.duration_ms = c.duration_ms;
            q.ok = c.status == "ok";
        }
    }

    /// Keeps the join table bounded: decisions older than the horizon
    /// take no more completions.
    fn prune(&mut self) {
        if self.open.len() < self.prune_at.max(FIRST_PRUNE_AT) {
            return;
        }
        let horizon = self.newest_ms - OPEN_HORIZON_MS;
        let queries = &self.queries;
        self.open
            .retain(|_, i| queries[*i as usize].time_ms >= horizon);
        self.prune_at = self.open.len() * 2;
    }
}

/// What one viewer may count: everything (an admin), or only queries and
/// decisions their own department took part in.
#[derive(Debug, Clone, Copy)]
pub enum Viewer<'a> {
    Federation,
    Department(&'a str),
}

/// The report's inputs for one window and viewer: the names and decisions
/// copied out, and the queries indexed when the report began, walked in
/// place a chunk at a time so that the audit log's writers (which feed
/// the index) wait for one chunk at most.
struct Slice<'a> {
    names: Names,
    decisions: Vec<DecisionStat>,
    statistics: &'a Statistics,
    /// Only queries this department took part in; `None`: all.
    me: Option<u32>,
    /// `[since, until)` in milliseconds.
    window: (i64, i64),
    queries: usize,
}

/// Queries walked per hold of the index's lock.
const WALK_CHUNK: usize = 65_536;

impl Slice<'_> {
    /// Calls `f` with every query of the slice, oldest first.
    fn each_query(&self, mut f: impl FnMut(&QueryStat)) {
        let (since, until) = self.window;
        let sees = |q: &QueryStat| self.me.is_none_or(|m| q.consumer == m || q.owner == m);
        for start in (0..self.queries).step_by(WALK_CHUNK) {
            let inner = self.statistics.lock();
            let end = (start + WALK_CHUNK).min(self.queries);
            for q in &inner.queries[start..end] {
                if q.time_ms >= since && q.time_ms < until && sees(q) {
                    f(q);
                }
            }
        }
    }
}

/// The running statistics of one coordinator.
#[derive(Debug, Default)]
pub struct Statistics {
    inner: Mutex<Inner>,
}

impl exchange_audit::Observer for Statistics {
    fn observe(&self, record: &Record) {
        self.lock().observe(record);
    }
}

impl Statistics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Builds the index from every record of the log at `roots`.
    pub fn from_log(roots: &[std::path::PathBuf]) -> std::io::Result<Statistics> {
        let stats = Statistics::default();
        {
            let mut inner = stats.lock();
            exchange_audit::read::scan_roots(roots, |_, r| {
                inner.observe(&r);
                true
            })?;
        }
        Ok(stats)
    }

    /// Takes in entries of the shared audit view (key, entry as it now
    /// stands), as the view's change feed delivers them.
    pub fn apply_shared(&self, entries: &[(String, IndexedQuery)]) {
        let mut inner = self.lock();
        for (key, entry) in entries {
            inner.apply_shared(key, entry);
        }
    }

    /// Queries indexed so far.
    pub fn queries(&self) -> usize {
        self.lock().queries.len()
    }

    fn slice(&self, viewer: Viewer<'_>, since: i64, until: i64) -> Slice<'_> {
        let inner = self.lock();
        let me = match viewer {
            Viewer::Federation => None,
            Viewer::Department(m) => Some(inner.names.find(m).unwrap_or(NO_OWNER - 1)),
        };
        let sees = |consumer: u32, owner: u32| me.is_none_or(|m| consumer == m || owner == m);
        Slice {
            names: inner.names.clone(),
            decisions: inner
                .decisions
                .iter()
                .filter(|d| in_window(d.time_ms, since, until) && sees(d.consumer, d.owner))
                .copied()
                .collect(),
            statistics: self,
            me,
            window: (
                since.saturating_mul(1000),
                match until {
                    0 => i64::MAX,
                    u => u.saturating_mul(1000),
                },
            ),
            queries: inner.queries.len(),
        }
    }

    /// One report table. `overdue` counts, per owner, the requests now
    /// waiting past the service-level limit (departments report only).
    pub fn report(
        &self,
        viewer: Viewer<'_>,
        kind: &str,
        window: (i64, i64),
        overdue: &BTreeMap<String, u64>,
    ) -> Result<pb::ReportResponse, Status> {
        if !matches!(kind, "departments" | "datasets" | "daily") {
            return Err(Status::invalid_argument(format!(
                "unknown report kind {:?}: use departments, datasets or daily",
                kind.chars().take(40).collect::<String>()
            )));
        }
        let slice = self.slice(viewer, window.0, window.1);
        Ok(match kind {
            "departments" => departments_report(&slice, overdue),
            "datasets" => datasets_report(&slice),
            _ => daily_report(&slice),
        })
    }
}

/// Whether a record's time falls in `[since, until)` (0: open). Seconds
/// are widened to milliseconds without overflow: a bound past the year
/// 292 million (`i64::MAX`) selects nothing after it, not everything.
pub fn in_window(time_ms: i64, since_unix: i64, until_unix: i64) -> bool {
    (since_unix == 0 || time_ms >= since_unix.saturating_mul(1000))
        && (until_unix == 0 || time_ms < until_unix.saturating_mul(1000))
}

/// Durations below this many milliseconds are counted in place.
const DENSE_MS: usize = 10_000;

/// Query durations for exact nearest-rank percentiles: counts per
/// millisecond below 10 s (one increment per query, no growing list),
/// and the rare longer ones kept as they are.
#[derive(Default)]
struct Latencies {
    counts: Vec<u32>,
    dense: u64,
    over: Vec<u64>,
}

impl Latencies {
    fn push(&mut self, ms: u64) {
        match usize::try_from(ms) {
            Ok(at) if at < DENSE_MS => {
                if self.counts.is_empty() {
                    self.counts = vec![0; DENSE_MS];
                }
                self.counts[at] += 1;
                self.dense += 1;
            }
            _ => self.over.push(ms),
        }
    }

    /// The `p` quantile (nearest rank); 0 when empty.
    fn percentile(&mut self, p: f64) -> u64 {
        let n = self.dense + self.over.len() as u64;
        if n == 0 {
            return 0;
        }
        let rank = ((p * n as f64).ceil() as u64).clamp(1, n);
        if rank > self.dense {
            return *self
                .over
                .select_nth_unstable((rank - self.dense - 1) as usize)
                .1;
        }
        let mut seen = 0;
        for (ms, count) in self.counts.iter().enumerate() {
            seen += u64::from(*count);
            if seen >= rank {
                return ms as u64;
            }
        }
        0
    }
}

const DAY_MS: i64 = 86_400_000;

/// The UTC date of a day number (days since 1970-01-01).
fn day_text(day: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(day.saturating_mul(86_400))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let d = t.date();
    format!("{:04}-{:02}-{:02}", d.year(), d.month() as u8, d.day())
}

/// A report table: its column names, the first `text_columns` of them text
/// and the rest figures (integers, but for names ending `_h`, which are
/// hours with a fraction), and the cells as text and typed.
fn table(columns: &[&str], text_columns: usize, body: Vec<Vec<String>>) -> pb::ReportResponse {
    use pb::report_value::Value;
    let types: Vec<pb::ReportColumnType> = columns
        .iter()
        .enumerate()
        .map(|(i, name)| match i {
            i if i < text_columns => pb::ReportColumnType::Text,
            _ if name.ends_with("_h") => pb::ReportColumnType::Number,
            _ => pb::ReportColumnType::Integer,
        })
        .collect();
    let typed = |cell: &String, kind: &pb::ReportColumnType| pb::ReportValue {
        value: match kind {
            _ if cell.is_empty() => None,
            pb::ReportColumnType::Integer => cell.parse().ok().map(Value::Integer),
            pb::ReportColumnType::Number => cell.parse().ok().map(Value::Number),
            _ => Some(Value::Text(cell.clone())),
        },
    };
    pb::ReportResponse {
        columns: columns.iter().map(|c| c.to_string()).collect(),
        rows: body
            .into_iter()
            .map(|cells| pb::ReportRow {
                values: cells.iter().zip(&types).map(|(c, t)| typed(c, t)).collect(),
                cells,
            })
            .collect(),
        column_types: types.into_iter().map(i32::from).collect(),
    }
}

/// One department's figures in the departments report.
#[derive(Default)]
struct DepartmentFigures {
    issued: u64,
    denied: u64,
    rows_received: u64,
    served: u64,
    rows_served: u64,
    refused_on_its_data: u64,
    latencies: Latencies,
    turnaround: Vec<i64>,
    overdue: u64,
}

impl DepartmentFigures {
    fn cells(mut self, name: String) -> Vec<String> {
        self.turnaround.sort_unstable();
        let turnaround = match self.turnaround.len() {
            0 => String::new(),
            n => format!("{:.1}", self.turnaround[(n - 1) / 2] as f64 / 3600.0),
        };
        vec![
            name,
            self.issued.to_string(),
            self.denied.to_string(),
            self.rows_received.to_string(),
            self.served.to_string(),
            self.rows_served.to_string(),
            self.refused_on_its_data.to_string(),
            self.latencies.percentile(0.5).to_string(),
            self.latencies.percentile(0.99).to_string(),
            turnaround,
            self.overdue.to_string(),
        ]
    }
}

/// Department `id`'s figures in `ids`, made when first met.
fn figures(ids: &mut Vec<Option<DepartmentFigures>>, id: u32) -> &mut DepartmentFigures {
    let at = id as usize;
    if at >= ids.len() {
        ids.resize_with(at + 1, || None);
    }
    ids[at].get_or_insert_with(DepartmentFigures::default)
}

/// Per department: queries issued and served, rows, denials, latency, the
/// median time it took to decide on requests for its data, and the
/// requests for its data now overdue.
fn departments_report(slice: &Slice, overdue: &BTreeMap<String, u64>) -> pb::ReportResponse {
    // By name id while walking (no string per query), by name after.
    let mut ids: Vec<Option<DepartmentFigures>> = Vec::new();
    slice.each_query(|q| {
        let c = figures(&mut ids, q.consumer);
        c.issued += 1;
        if q.allowed {
            c.rows_received += q.rows;
        } else {
            c.denied += 1;
        }
        if q.owner == NO_OWNER {
            return;
        }
        let o = figures(&mut ids, q.owner);
        if !q.allowed {
            o.refused_on_its_data += 1;
        } else if q.ok {
            o.served += 1;
            o.rows_served += q.rows;
            o.latencies.push(q.duration_ms);
        }
    });
    for d in &slice.decisions {
        figures(&mut ids, d.owner)
            .turnaround
            .push(d.turnaround_secs);
    }
    let mut by: BTreeMap<&str, DepartmentFigures> = ids
        .into_iter()
        .enumerate()
        .filter_map(|(id, d)| Some((slice.names.name(id as u32), d?)))
        .collect();
    for (owner, n) in overdue {
        by.entry(owner).or_default().overdue = *n;
    }
    let body = by
        .into_iter()
        .map(|(name, d)| d.cells(name.to_string()))
        .collect();
    table(
        &[
            "department",
            "queries_issued",
            "denied",
            "rows_received",
            "queries_served",
            "rows_served",
            "denied_on_its_data",
            "served_p50_ms",
            "served_p99_ms",
            "approval_turnaround_median_h",
            "overdue_requests",
        ],
        1,
        body,
    )
}

/// Per dataset, most queried first: queries, denials, consumers, rows.
fn datasets_report(slice: &Slice) -> pb::ReportResponse {
    #[derive(Default)]
    struct D {
        owner: u32,
        queries: u64,
        denied: u64,
        rows: u64,
        consumers: HashSet<u32>,
    }
    let mut by: HashMap<u32, D> = HashMap::new();
    slice.each_query(|q| {
        let e = by.entry(q.dataset).or_insert_with(|| D {
            owner: q.owner,
            ..D::default()
        });
        e.queries += 1;
        if q.allowed {
            e.rows += q.rows;
            e.consumers.insert(q.consumer);
        } else {
            e.denied += 1;
        }
    });
    let mut rows: Vec<(&str, D)> = by
        .into_iter()
        .map(|(ds, d)| (slice.names.name(ds), d))
        .collect();
    // Most popular first.
    rows.sort_by(|a, b| b.1.queries.cmp(&a.1.queries).then(a.0.cmp(b.0)));
    let body = rows
        .into_iter()
        .map(|(ds, d)| {
            let owner = if d.owner == NO_OWNER {
                ""
            } else {
                slice.names.name(d.owner)
            };
            vec![
                ds.to_string(),
                owner.to_string(),
                d.queries.to_string(),
                d.denied.to_string(),
                d.consumers.len().to_string(),
                d.rows.to_string(),
            ]
        })
        .collect();
    table(
        &["dataset", "owner", "queries", "denied", "consumers", "rows"],
        2,
        body,
    )
}

/// Per day: queries, denials, rows and latency.
fn daily_report(slice: &Slice) -> pb::ReportResponse {
    let mut by: BTreeMap<i64, (u64, u64, u64, Latencies)> = BTreeMap::new();
    slice.each_query(|q| {
        let e = by.entry(q.time_ms.div_euclid(DAY_MS)).or_default();
        e.0 += 1;
        if q.allowed {
            e.2 += q.rows;
            if q.ok {
                e.3.push(q.duration_ms);
            }
        } else {
            e.1 += 1;
        }
    });
    let body = by
        .into_iter()
        .map(|(day, (q, denied, rows, mut lat))| {
            vec![
                day_text(day),
                q.to_string(),
                denied.to_string(),
                rows.to_string(),
                lat.percentile(0.5).to_string(),
                lat.percentile(0.99).to_string(),
            ]
        })
        .collect();
    table(
        &["day", "queries", "denied", "rows", "p50_ms", "p99_ms"],
        1,
        body,
    )
}

#[cfg(test)]
mod tests;
