//! Access requests and grants: the owner decides.
//!
//! - A request names a dataset, fields, a purpose, a basis and an expiry.
//!   The dataset's sharing class decides what happens next: `unconditional`
//!   is granted at once with the default masks, `conditional` waits for the
//!   owner, `none` is refused with the owner's stated basis.
//! - Only the owning department decides, with its own certificate. An
//!   approval may narrow the fields, lift default masks on some of them, add
//!   a row filter, a daily row quota and an earlier expiry; it can never add
//!   a field that was not requested, and secret fields never enter a grant.
//! - A refusal needs a reason. Every decision is kept on the request record
//!   and listed to both departments; revoking a grant is recorded on it.
//! - Requests waiting longer than the service level (working days) are
//!   shown as overdue.

use exchange_proto::v1::typed;
use exchange_transport::refusal::Refusal;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, RwLock};

use exchange_pki::Identity;
use exchange_policy::text::{request_text, TextRule};
use exchange_policy::{FieldType, Sensitivity};
use exchange_proto::v1 as pb;
use exchange_query::FieldInfo;
use exchange_storage::{Db, StorageError, Tree};
use serde::{Deserialize, Serialize};
use time::{Date, Duration, OffsetDateTime};

use crate::registry::now_unix;

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    /// A refusal of a kind every service reports alike (`transport::refusal`).
    #[error("{1}")]
    Refused(exchange_transport::refusal::Refusal, String),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RequestRecord {
    pub id: String,
    pub dataset: String,
    pub owner: String,
    pub consumer: String,
    pub user: String,
    pub fields: Vec<String>,
    pub purpose: String,
    pub basis: String,
    pub until: String,
    pub status: String,
    pub created_unix: i64,
    pub decided_unix: i64,
    pub decided_by: String,
    pub reason: String,
    pub grant_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GrantRecord {
    pub id: String,
    pub dataset: String,
    pub owner: String,
    pub consumer: String,
    /// (field, mask) pairs.
    pub fields: Vec<(String, String)>,
    pub row_filter: String,
    pub purpose: String,
    pub until: String,
    pub quota_rows_per_day: u64,
    pub status: String,
    pub request_id: String,
    pub approved_by: String,
    pub created_unix: i64,
    pub revoked_unix: i64,
    pub revoked_by: String,
    pub revocation_reason: String,
    /// Accesses under this grant are hidden from subject reports until this date.
    #[serde(default)]
    pub embargo_until: String,
    /// Values the consumer may test per day against its masked fields; 0
    /// for [`DEFAULT_MASKED_VALUE_BUDGET`].
    #[serde(default)]
    pub masked_value_budget_per_day: u64,
}

impl GrantRecord {
    /// Values the consumer may test per day against its masked fields.
    pub fn masked_value_budget(&self) -> u64 {
        match self.masked_value_budget_per_day {
            0 => DEFAULT_MASKED_VALUE_BUDGET,
            n => n,
        }
    }
}

impl RequestRecord {
    /// The requesting department and user, for the audit.
    pub fn consumer_actor(&self) -> String {
        if self.user.is_empty() {
            format!("exchange://{}/client", self.consumer)
        } else {
            format!("exchange://{}/client ({})", self.consumer, self.user)
        }
    }
}

pub struct AccessBook {
    requests: Tree,
    grants: Tree,
    /// Every grant, in memory, indexed by member: every query is checked
    /// against its consumer's grants, and reading (and decoding) the store
    /// for each one would cost the query path dearly. Written through:
    /// each change goes to the store first, then here, under this lock.
    grant_index: RwLock<GrantIndex>,
    counters: Tree,
    usage: Tree,
    sla_working_days: u32,
    /// Held while a request is checked for an identical open one and made.
    creating: Mutex<()>,
    /// Rows served today per grant (keyed as in the store), counted here
    /// and added to the store behind.
    usage_counts: Mutex<HashMap<String, UsageCount>>,
    /// Who is deciding each request, or recording a request, right now
    /// (see [`AccessBook::try_claim`]).
    claims: Tree,
}

/// A grant's rows served today: the store's total as last read, and the
/// rows counted here since.
#[derive(Debug, Clone, Copy)]
struct UsageCount {
    stored: u64,
    pending: u64,
}

impl Drop for AccessBook {
    /// A coordinator that stops adds its last counts to the store.
    fn drop(&mut self) {
        if let Err(e) = self.flush_usage() {
            tracing::warn!(error = %e, "could not store the last row counts");
        }
    }
}

/// Work in progress that must happen once (a decision on one request, the
/// recording of a request): a random nonce naming the call that holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct DecisionClaim {
    nonce: String,
    at_unix: i64,
}

/// A claim older than this belongs to a decider that died half-way; another
/// may take it over.
const DECISION_CLAIM_SECS: i64 = 30;

/// Drops a claim when the work it guarded is done (or failed), so the
/// claims tree holds only work in progress.
struct ClaimRelease<'a> {
    book: &'a AccessBook,
    key: String,
}

impl Drop for ClaimRelease<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.book.claims.remove(&self.key) {
            tracing::warn!(claim = %self.key, error = %e, "could not release a claim; it lapses in 30 s");
        }
    }
}

/// Grants by id, and the ids of each member's grants (as owner or consumer).
#[derive(Default)]
struct GrantIndex {
    by_id: HashMap<String, GrantRecord>,
    by_member: HashMap<String, BTreeSet<String>>,
}

impl GrantIndex {
    fn put(&mut self, grant: GrantRecord) {
        for member in [&grant.owner, &grant.consumer] {
            self.by_member
                .entry(member.clone())
                .or_default()
                .insert(grant.id.clone());
        }
        self.by_id.insert(grant.id.clone(), grant);
    }
}

impl std::fmt::Debug for AccessBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessBook").finish_non_exhaustive()
    }
}

pub fn today() -> Date {
    OffsetDateTime::now_utc().date()
}

pub fn date_text(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), d.month() as u8, d.day())
}

fn parse_date(text: &str) -> Result<Date, AccessError> {
    let bad = || {
        AccessError::Invalid(format!(
            "{:?} is not a date: use YYYY-MM-DD",
            text.chars().take(40).collect::<String>()
        ))
    };
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(text.trim(), &fmt).map_err(|_| bad())
}

/// Values a consumer may test per day against the fields it sees masked,
/// unless the owner set another budget when approving. Finding a masked
/// resident ID by probing means testing its candidate birth dates (about
/// 2,700 from 1920 to 2010, ~1,700 for a plausible age range): at this
/// default that takes days of the grant's whole budget, every probe in the
/// audit. A search among at most this many candidates remains possible in
/// a day: that is what the budget means, and the owner sets it.
pub const DEFAULT_MASKED_VALUE_BUDGET: u64 = 500;
/// The largest budget an owner may set.
pub const MAX_MASKED_VALUE_BUDGET: u64 = 1_000_000;

/// The most values a grant's row filter may hold: with a consumer's filter
/// (at most `exchange_query::MAX_TOTAL_VALUES`) it stays within every
/// database's limit on bound parameters.
pub const MAX_ROW_FILTER_VALUES: usize = 1_000;

/// A request's text field, checked as `exchange_policy::text` describes:
/// printable, trimmed, at most `max` characters; reasons may span lines.
fn clean_text(what: &str, text: &str, max: usize, required: bool) -> Result<String, AccessError> {
    let rule = TextRule {
        max_chars: max,
        required: required.then_some("say why you need the data"),
        multiline: what == "reason",
    };
    request_text(what, text, rule).map_err(|e| {
        if what == "purpose" && text.trim().is_empty() {
            AccessError::Refused(Refusal::PurposeRequired, e.to_string())
        } else {
            AccessError::Invalid(e.to_string())
        }
    })
}

/// Working days (Monday to Friday) from `from` to `to`, not counting `from`.
pub fn working_days_between(from: Date, to: Date) -> u32 {
    let mut n = 0;
    let mut d = from;
    while d < to && n < 10_000 {
        d = d.next_day().unwrap_or(to);
        if !matches!(d.weekday(), time::Weekday::Saturday | time::Weekday::Sunday) {
            n += 1;
        }
    }
    n
}

fn field<'a>(dataset: &'a pb::Dataset, name: &str) -> Result<&'a pb::Field, AccessError> {
    dataset
        .fields
        .iter()
        .find(|f| f.name == name)
        .ok_or_else(|| {
            AccessError::Refused(
                Refusal::FieldUnknown,
                format!(
                "dataset {} has no field {:?}; see Catalog.GetDataset (`exchange catalog show {}`)",
                dataset.id,
                name.chars().take(64).collect::<String>(),
                dataset.id
            ),
            )
        })
}

fn is_secret(f: &pb::Field) -> bool {
    f.sensitivity == Sensitivity::Secret.as_str()
}

/// The fields a request asks for, each once, in the order named; every
/// field but the secret ones when it names none. A secret field is refused.
fn requested_fields(dataset: &pb::Dataset, names: &[String]) -> Result<Vec<String>, AccessError> {
    if names.len() > 500 {
        return Err(AccessError::Invalid("too many fields".into()));
    }
    let mut fields = Vec::new();
    for name in names {
        let f = field(dataset, name)?;
        if is_secret(f) {
            return Err(AccessError::Forbidden(format!(
                "field {name} of {} is secret: it never leaves the owner",
                dataset.id
            )));
        }
        if !fields.contains(&f.name) {
            fields.push(f.name.clone());
        }
    }
    if fields.is_empty() {
        fields = dataset
            .fields
            .iter()
            .filter(|f| !is_secret(f))
            .map(|f| f.name.clone())
            .collect();
    }
    if fields.is_empty() {
        return Err(AccessError::Forbidden(format!(
            "every field of {} is secret",
            dataset.id
        )));
    }
    Ok(fields)
}

impl AccessBook {
    pub fn open(db: &Db, sla_working_days: u32) -> Result<AccessBook, StorageError> {
        let grants = db.tree("grants")?;
        let mut index = GrantIndex::default();
        for grant in grants.values::<GrantRecord>()? {
            index.put(grant);
        }
        Ok(AccessBook {
            requests: db.tree("access_requests")?,
            grants,
            grant_index: RwLock::new(index),
            counters: db.tree("counters")?,
            usage: db.tree("quota_usage")?,
            sla_working_days,
            creating: Mutex::new(()),
            claims: db.tree("decision_claims")?,
            usage_counts: Mutex::new(HashMap::new()),
        })
    }

    /// Claims the decision on request `id` for one approval or refusal. Of
    /// two decisions at the same moment, in this process or on another
    /// coordinator sharing the store, exactly one claims it (the claim is a
    /// compare-and-swap in the store); the other is refused, before it
    /// creates anything. The request is then read again: a decision that
    /// finished first has left it no longer pending.
    fn claim_decision(&self, owner: &Identity, id: &str) -> Result<ClaimRelease<'_>, AccessError> {
        let Some(release) = self.try_claim(format!("decide:{id}"))? else {
            return Err(AccessError::Conflict(format!(
                "request {id} is being decided by someone else at this moment; see its outcome with `exchange access list`"
            )));
        };
        self.request_for_owner(owner, id)?;
        Ok(release)
    }

    /// Waits (up to 2 s) for the right to check and record `consumer`'s
    /// request on `dataset`: another coordinator sharing the store may be
    /// recording an identical one this instant, and then this one must
    /// find it rather than make a second.
    fn claim_recording(
        &self,
        consumer: &str,
        dataset: &str,
    ) -> Result<ClaimRelease<'_>, AccessError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            if let Some(release) = self.try_claim(format!("record:{consumer}:{dataset}"))? {
                return Ok(release);
            }
            if std::time::Instant::now() > deadline {
                return Err(AccessError::Conflict(format!(
                    "another request by {consumer} for {dataset} is being recorded at this moment; try again"
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Claims `key` in the store for this call, unless someone else (here
    /// or on another coordinator sharing the store) holds a claim on it
    /// younger than [`DECISION_CLAIM_SECS`]: a compare-and-swap, so of two
    /// callers at once exactly one gets it. `None` when it is held.
    fn try_claim(&self, key: String) -> Result<Option<ClaimRelease<'_>>, AccessError> {
        let mut nonce = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
            .map_err(|_| AccessError::Conflict("no randomness for a claim".into()))?;
        let mine = DecisionClaim {
            nonce: hex::encode(nonce),
            at_unix: now_unix(),
        };
        let held = self
            .claims
            .update::<DecisionClaim, _>(&key, |old| match old {
                Some(c) if mine.at_unix - c.at_unix < DECISION_CLAIM_SECS => Some(c),
                _ => Some(mine.clone()),
            })?;
        Ok((held.as_ref() == Some(&mine)).then_some(ClaimRelease { book: self, key }))
    }

    fn next_id(&self, prefix: &str) -> Result<String, AccessError> {
        let n = self
            .counters
            .update::<u64, _>(prefix, |old| Some(old.unwrap_or(0) + 1))?
            .unwrap_or(1);
        Ok(format!("{prefix}-{n:06}"))
    }

    pub fn is_overdue(&self, r: &RequestRecord) -> bool {
        r.status == "pending"
            && OffsetDateTime::from_unix_timestamp(r.created_unix)
                .map(|c| working_days_between(c.date(), today()) > self.sla_working_days)
                .unwrap_or(false)
    }

    /// A consumer's request, unless the same department already has one
    /// open for the same dataset and fields (pending, or granted with the
    /// grant still active): then that one, and `false`. Checked and created
    /// under one lock, so two identical requests at once make one.
    pub fn request_once(
        &self,
        consumer: &Identity,
        req: &pb::AccessRequest,
        dataset: &pb::Dataset,
    ) -> Result<(RequestRecord, bool), AccessError> {
        let _one_at_a_time = self.creating.lock().unwrap_or_else(|p| p.into_inner());
        let _one_across_replicas = self.claim_recording(&consumer.member_id, &dataset.id)?;
        let mut fields = requested_fields(dataset, &req.fields)?;
        fields.sort_unstable();
        let today = date_text(today());
        for r in self.requests.values::<RequestRecord>()? {
            if r.consumer != consumer.member_id || r.dataset != dataset.id {
                continue;
            }
            let mut same = r.fields.clone();
            same.sort_unstable();
            let open = match r.status.as_str() {
                "pending" => true,
                "granted" => self
                    .grant(&r.grant_id)?
                    .is_some_and(|g| g.status == "active" && g.until >= today),
                _ => false,
            };
            if open && same == fields {
                return Ok((r, false));
            }
        }
        self.request(consumer, req, dataset).map(|r| (r, true))
    }

    /// A consumer's request. `dataset` is the catalog entry it names.
    pub fn request(
        &self,
        consumer: &Identity,
        req: &pb::AccessRequest,
        dataset: &pb::Dataset,
    ) -> Result<RequestRecord, AccessError> {
        if dataset.department == consumer.member_id {
            return Err(AccessError::Invalid(format!(
                "{} is your own department's dataset; query it in your own systems",
                dataset.id
            )));
        }
        let purpose = clean_text("purpose", &req.purpose, 500, true)?;
        let basis = clean_text("basis", &req.basis, 500, false)?;
        let user = clean_text("user", &req.user, 100, false)?;
        let until = if req.until.trim().is_empty() {
            today() + Duration::days(365)
        } else {
            let d = parse_date(&req.until)?;
            if d < today() {
                return Err(AccessError::Invalid(
                    "until is in the past (`--until` on the command line)".into(),
                ));
            }
            if d > today() + Duration::days(3 * 366) {
                return Err(AccessError::Invalid(
                    "until may be at most three years ahead (`--until` on the command line)".into(),
                ));
            }
            d
        };
        let fields = requested_fields(dataset, &req.fields)?;
        let mut record = RequestRecord {
            id: self.next_id("R")?,
            dataset: dataset.id.clone(),
            owner: dataset.department.clone(),
            consumer: consumer.member_id.clone(),
            user,
            fields,
            purpose,
            basis,
            until: date_text(until),
            status: "pending".into(),
            created_unix: now_unix(),
            decided_unix: 0,
            decided_by: String::new(),
            reason: String::new(),
            grant_id: String::new(),
        };
        match dataset.sharing.as_str() {
            "unconditional" => {
                let grant = self.create_grant(
                    &record,
                    dataset,
                    &record.fields,
                    &[],
                    "",
                    0,
                    &record.until,
                    "policy: unconditional sharing",
                )?;
                record.status = "granted".into();
                record.decided_unix = record.created_unix;
                record.decided_by = "policy: unconditional sharing".into();
                record.grant_id = grant.id;
            }
            "none" => {
                record.status = "refused".into();
                record.decided_unix = record.created_unix;
                record.decided_by = "policy: not shared".into();
                record.reason = format!("{} is not shared: {}", dataset.id, dataset.basis);
            }
            _ => {}
        }
        self.requests.insert(&record.id, &record)?;
        Ok(record)
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "one call site per decision path; a struct would only rename the same fields"
    )]
    fn create_grant(
        &self,
        request: &RequestRecord,
        dataset: &pb::Dataset,
        fields: &[String],
        unmask: &[String],
        row_filter: &str,
        quota: u64,
        until: &str,
        approved_by: &str,
    ) -> Result<GrantRecord, AccessError> {
        let mut granted = Vec::new();
        for name in fields {
            let f = field(dataset, name)?;
            if is_secret(f) {
                return Err(AccessError::Forbidden(format!(
                    "field {name} is secret and never leaves the owner"
                )));
            }
            let mask = if unmask.contains(name) {
                "none".to_string()
            } else {
                f.mask.clone()
            };
            granted.push((name.clone(), mask));
        }
        let grant = GrantRecord {
            id: self.next_id("G")?,
            dataset: dataset.id.clone(),
            owner: dataset.department.clone(),
            consumer: request.consumer.clone(),
            fields: granted,
            row_filter: row_filter.to_string(),
            purpose: request.purpose.clone(),
            until: until.to_string(),
            quota_rows_per_day: quota,
            status: "active".into(),
            request_id: request.id.clone(),
            approved_by: approved_by.to_string(),
            created_unix: now_unix(),
            revoked_unix: 0,
            revoked_by: String::new(),
            revocation_reason: String::new(),
            embargo_until: String::new(),
            masked_value_budget_per_day: 0,
        };
        self.store_grant(&grant)?;
        Ok(grant)
    }

    /// Writes a grant to the store, then to the in-memory index.
    /// Reads grant `id` from the store into the in-memory index: how an
    /// approval or revocation made on another coordinator sharing the store
    /// reaches this one's query path. The index lock is taken first, as in
    /// [`Self::store_grant`], so the index ends with the store's latest.
    pub fn reload_grant(&self, id: &str) -> Result<(), StorageError> {
        let mut index = self.grant_index.write().unwrap_or_else(|p| p.into_inner());
        if let Some(grant) = self.grants.get::<GrantRecord>(id)? {
            index.put(grant);
        }
        Ok(())
    }

    /// Reads every grant into the index again.
    pub fn reload_grants(&self) -> Result<(), StorageError> {
        let mut index = self.grant_index.write().unwrap_or_else(|p| p.into_inner());
        for grant in self.grants.values::<GrantRecord>()? {
            index.put(grant);
        }
        Ok(())
    }

    fn store_grant(&self, grant: &GrantRecord) -> Result<(), AccessError> {
        let mut index = self.grant_index.write().unwrap_or_else(|p| p.into_inner());
        self.grants.insert(&grant.id, grant)?;
        index.put(grant.clone());
        Ok(())
    }

    fn request_for_owner(&self, owner: &Identity, id: &str) -> Result<RequestRecord, AccessError> {
        let r: RequestRecord = self.requests.get(id)?.ok_or_else(|| {
            AccessError::NotFound(format!(
                "no access request {id:?}; see `exchange access pending`"
            ))
        })?;
        if r.owner != owner.member_id {
            return Err(AccessError::Forbidden(format!(
                "request {id} is for {}'s data: only its owner decides",
                r.owner
            )));
        }
        if r.status != "pending" {
            return Err(AccessError::Conflict(format!(
                "request {id} was already {} by {}",
                r.status, r.decided_by
            )));
        }
        Ok(r)
    }

    /// The owner approves, possibly narrowing.
    pub fn approve(
        &self,
        owner: &Identity,
        req: &pb::ApproveRequest,
        dataset: &pb::Dataset,
    ) -> Result<RequestRecord, AccessError> {
        self.request_for_owner(owner, &req.request_id)?;
        let _claim = self.claim_decision(owner, &req.request_id)?;
        let mut r = self.request_for_owner(owner, &req.request_id)?;
        let fields = if req.fields.is_empty() {
            r.fields.clone()
        } else {
            for f in &req.fields {
                if !r.fields.contains(f) {
                    return Err(AccessError::Invalid(format!("field {f:?} was not requested: an approval may narrow a request, never widen it")));
                }
            }
            req.fields.clone()
        };
        for u in &req.unmask {
            if !fields.contains(u) {
                return Err(AccessError::Invalid(format!(
                    "cannot unmask {u:?}: it is not among the approved fields"
                )));
            }
        }
        let until = if req.until.trim().is_empty() {
            r.until.clone()
        } else {
            let d = parse_date(&req.until)?;
            if date_text(d) > r.until {
                return Err(AccessError::Invalid(format!(
                    "until {} is later than requested ({}): an approval may only shorten (`--until` on the command line)",
                    date_text(d),
                    r.until
                )));
            }
            if d < today() {
                return Err(AccessError::Invalid(
                    "until is in the past (`--until` on the command line)".into(),
                ));
            }
            date_text(d)
        };
        if req.masked_value_budget_per_day > MAX_MASKED_VALUE_BUDGET {
            return Err(AccessError::Invalid(format!(
                "masked_value_budget_per_day {} is too large; at most {MAX_MASKED_VALUE_BUDGET} (`--masked-value-budget` on the command line)",
                req.masked_value_budget_per_day
            )));
        }
        let row_filter = if req.row_filter.trim().is_empty() {
            String::new()
        } else {
            let filter = exchange_query::parse(&req.row_filter)
                .map_err(|e| AccessError::Invalid(format!("row filter: {e}")))?;
            let lookup = |name: &str| -> Option<FieldInfo> {
                let f = dataset
                    .fields
                    .iter()
                    .find(|f| f.name == name && !is_secret(f))?;
                Some(FieldInfo {
                    field_type: f.r#type.parse::<FieldType>().ok()?,
                    masked: false,
                })
            };
            let checked = filter
                .check(&lookup)
                .map_err(|e| AccessError::Invalid(format!("row filter: {e}")))?;
            if checked.value_count() > MAX_ROW_FILTER_VALUES {
                return Err(AccessError::Invalid(format!(
                    "row filter: it holds {} values; at most {MAX_ROW_FILTER_VALUES} are allowed",
                    checked.value_count()
                )));
            }
            checked
                .canonical()
                .map_err(|e| AccessError::Invalid(format!("row filter: {e}")))?
        };
        let embargo_until = if req.embargo_until.trim().is_empty() {
            String::new()
        } else {
            let d = parse_date(&req.embargo_until).map_err(|e| {
                AccessError::Invalid(format!(
                    "embargo_until: {e} (`--embargo-until` on the command line)"
                ))
            })?;
            if d < today() {
                return Err(AccessError::Invalid(
                    "embargo_until is in the past (`--embargo-until` on the command line)".into(),
                ));
            }
            date_text(d)
        };
        let user = clean_text("user", &req.user, 100, false)?;
        let decided_by = if user.is_empty() {
            owner.uri()
        } else {
            format!("{} ({user})", owner.uri())
        };
        let mut grant = self.create_grant(
            &r,
            dataset,
            &fields,
            &req.unmask,
            &row_filter,
            req.quota_rows_per_day,
            &until,
            &decided_by,
        )?;
        if !embargo_until.is_empty() || req.masked_value_budget_per_day > 0 {
            grant.embargo_until = embargo_until;
            grant.masked_value_budget_per_day = req.masked_value_budget_per_day;
            self.store_grant(&grant)?;
        }
        r.status = "granted".into();
        r.decided_unix = now_unix();
        r.decided_by = decided_by;
        r.grant_id = grant.id;
        self.requests.insert(&r.id, &r)?;
        Ok(r)
    }

    /// The owner refuses; a reason is mandatory.
    pub fn refuse(
        &self,
        owner: &Identity,
        req: &pb::RefuseRequest,
    ) -> Result<RequestRecord, AccessError> {
        let reason = clean_text("reason", &req.reason, 1000, false)?;
        if reason.is_empty() {
            return Err(AccessError::Invalid(
                "a refusal must give its reason (the request's `reason`; `--reason` on the command line)".into(),
            ));
        }
        self.request_for_owner(owner, &req.request_id)?;
        let _claim = self.claim_decision(owner, &req.request_id)?;
        let mut r = self.request_for_owner(owner, &req.request_id)?;
        let user = clean_text("user", &req.user, 100, false)?;
        r.status = "refused".into();
        r.decided_unix = now_unix();
        r.decided_by = if user.is_empty() {
            owner.uri()
        } else {
            format!("{} ({user})", owner.uri())
        };
        r.reason = reason;
        self.requests.insert(&r.id, &r)?;
        Ok(r)
    }

    pub fn request_record(&self, id: &str) -> Result<RequestRecord, AccessError> {
        self.requests.get(id)?.ok_or_else(|| {
            AccessError::NotFound(format!(
                "no access request {:?}; see `exchange access pending`",
                id.chars().take(40).collect::<String>()
            ))
        })
    }

    pub fn pending(&self, owner: &str) -> Result<Vec<RequestRecord>, AccessError> {
        Ok(self
            .requests
            .values::<RequestRecord>()?
            .into_iter()
            .filter(|r| r.owner == owner && r.status == "pending")
            .collect())
    }

    /// Requests now past the service-level limit, counted per owner, of
    /// those `counted(owner, consumer)` selects.
    pub fn overdue_by_owner(
        &self,
        counted: impl Fn(&str, &str) -> bool,
    ) -> Result<std::collections::BTreeMap<String, u64>, AccessError> {
        let mut by = std::collections::BTreeMap::new();
        for r in self.requests.values::<RequestRecord>()? {
            if self.is_overdue(&r) && counted(&r.owner, &r.consumer) {
                *by.entry(r.owner).or_default() += 1;
            }
        }
        Ok(by)
    }

    /// Requests the member made or received, newest first.
    pub fn requests_of(&self, member: &str) -> Result<Vec<RequestRecord>, AccessError> {
        let mut v: Vec<RequestRecord> = self
            .requests
            .values::<RequestRecord>()?
            .into_iter()
            .filter(|r| r.owner == member || r.consumer == member)
            .collect();
        v.reverse();
        Ok(v)
    }

    /// Grants the member holds or gave, with expiry applied.
    pub fn grants_of(&self, member: &str) -> Result<Vec<GrantRecord>, AccessError> {
        let today = date_text(today());
        let index = self.grant_index.read().unwrap_or_else(|p| p.into_inner());
        let Some(ids) = index.by_member.get(member) else {
            return Ok(Vec::new());
        };
        Ok(ids
            .iter()
            .filter_map(|id| index.by_id.get(id))
            .map(|g| {
                let mut g = g.clone();
                if g.status == "active" && g.until < today {
                    g.status = "expired".into();
                }
                g
            })
            .collect())
    }

    /// The consumer's active, unexpired grant on a dataset, if any: what
    /// every query is checked against.
    pub fn active_grant(&self, consumer: &str, dataset: &str) -> Option<GrantRecord> {
        let today = date_text(today());
        let index = self.grant_index.read().unwrap_or_else(|p| p.into_inner());
        index
            .by_member
            .get(consumer)?
            .iter()
            .filter_map(|id| index.by_id.get(id))
            .find(|g| {
                g.consumer == consumer
                    && g.dataset == dataset
                    && g.status == "active"
                    && g.until >= today
            })
            .cloned()
    }

    pub fn grant(&self, id: &str) -> Result<Option<GrantRecord>, AccessError> {
        Ok(self
            .grant_index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_id
            .get(id)
            .cloned())
    }

    /// The owner revokes a grant.
    pub fn revoke(
        &self,
        owner: &Identity,
        id: &str,
        reason: &str,
    ) -> Result<GrantRecord, AccessError> {
        let reason = clean_text("reason", reason, 1000, false)?;
        let g: GrantRecord = self.grants.get(id)?.ok_or_else(|| {
            AccessError::NotFound(format!("no grant {id:?}; see `exchange access grants`"))
        })?;
        if g.owner != owner.member_id {
            return Err(AccessError::Forbidden(format!(
                "grant {id} is on {}'s data: only its owner revokes it",
                g.owner
            )));
        }
        if g.status == "revoked" {
            return Err(AccessError::Conflict(format!(
                "grant {id} is already revoked"
            )));
        }
        let updated = GrantRecord {
            status: "revoked".into(),
            revoked_unix: now_unix(),
            revoked_by: owner.uri(),
            revocation_reason: reason,
            ..g
        };
        self.store_grant(&updated)?;
        Ok(updated)
    }

    fn usage_key(grant_id: &str) -> String {
        format!("{grant_id}:{}", date_text(today()))
    }

    /// Rows a grant has served today: the store's count as last read,
    /// plus what this coordinator counted since.
    pub fn rows_served_today(&self, grant_id: &str) -> Result<u64, AccessError> {
        self.count_rows(grant_id, 0)
    }

    /// Adds rows served under a grant today; returns the new total.
    ///
    /// Counted on the query path, once per relayed batch, in memory, and
    /// added to the store's counter behind, every 200 ms
    /// ([`Self::flush_usage`]): a write per batch would cost a store round
    /// trip per answer (on PostgreSQL, a third of the lookups/s). So a
    /// kill -9 can lose the rows counted in the last 200 ms, which the
    /// consumer could then read again today, and coordinators sharing a
    /// store see each other's counts up to 200 ms late. Every acknowledged
    /// state change is written at once; this counter is the one tolerated
    /// exception.
    pub fn add_rows_served(&self, grant_id: &str, rows: u64) -> Result<u64, AccessError> {
        self.count_rows(grant_id, rows)
    }

    fn count_rows(&self, grant_id: &str, rows: u64) -> Result<u64, AccessError> {
        let key = Self::usage_key(grant_id);
        let known = self
            .usage_counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&key);
        // Read outside the lock: other grants' queries do not wait for it.
        let stored = match known {
            true => 0,
            false => self.usage.get::<u64>(&key)?.unwrap_or(0),
        };
        let mut counts = self.usage_counts.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts
            .entry(key)
            .or_insert(UsageCount { stored, pending: 0 });
        count.pending += rows;
        Ok(count.stored + count.pending)
    }

    /// Adds the rows counted in memory to the store's counters, and reads
    /// back each total (which includes what other coordinators sharing the
    /// store added). Forgets earlier days' counts.
    pub fn flush_usage(&self) -> Result<(), AccessError> {
        let due: Vec<(String, u64)> = {
            let counts = self.usage_counts.lock().unwrap_or_else(|p| p.into_inner());
            counts
                .iter()
                .filter(|(_, c)| c.pending > 0)
                .map(|(k, c)| (k.clone(), c.pending))
                .collect()
        };
        for (key, added) in due {
            let total = self
                .usage
                .update_relaxed::<u64, _>(&key, |old| Some(old.unwrap_or(0) + added))?
                .unwrap_or(added);
            let mut counts = self.usage_counts.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(count) = counts.get_mut(&key) {
                count.stored = total;
                count.pending -= added;
            }
        }
        let today = date_text(today());
        self.usage_counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|key, c| key.ends_with(&today) || c.pending > 0);
        Ok(())
    }

    pub fn request_message(&self, r: &RequestRecord) -> pb::AccessRequestRecord {
        pb::AccessRequestRecord {
            id: r.id.clone(),
            dataset: r.dataset.clone(),
            owner: r.owner.clone(),
            consumer: r.consumer.clone(),
            user: r.user.clone(),
            fields: r.fields.clone(),
            purpose: r.purpose.clone(),
            basis: r.basis.clone(),
            until: r.until.clone(),
            status: r.status.clone(),
            created_unix: r.created_unix,
            decided_unix: r.decided_unix,
            decided_by: r.decided_by.clone(),
            reason: r.reason.clone(),
            grant_id: r.grant_id.clone(),
            overdue: self.is_overdue(r),
            state: typed::request_state(&r.status).into(),
            created_at: typed::timestamp(r.created_unix),
            decided_at: typed::timestamp(r.decided_unix),
            until_date: typed::date(&r.until),
        }
    }
}

pub fn grant_message(g: &GrantRecord) -> pb::Grant {
    pb::Grant {
        id: g.id.clone(),
        dataset: g.dataset.clone(),
        owner: g.owner.clone(),
        consumer: g.consumer.clone(),
        fields: g
            .fields
            .iter()
            .map(|(n, m)| pb::GrantField {
                name: n.clone(),
                mask: m.clone(),
                key_type: String::new(),
            })
            .collect(),
        row_filter: g.row_filter.clone(),
        purpose: g.purpose.clone(),
        until: g.until.clone(),
        quota_rows_per_day: g.quota_rows_per_day,
        status: g.status.clone(),
        request_id: g.request_id.clone(),
        approved_by: g.approved_by.clone(),
        created_unix: g.created_unix,
        revoked_unix: g.revoked_unix,
        embargo_until: g.embargo_until.clone(),
        masked_value_budget_per_day: g.masked_value_budget(),
        state: typed::grant_state(&g.status).into(),
        created_at: typed::timestamp(g.created_unix),
        revoked_at: typed::timestamp(g.revoked_unix),
        until_date: typed::date(&g.until),
        embargo_until_date: typed::date(&g.embargo_until),
        revocation_reason: g.revocation_reason.clone(),
        revoked_by: g.revoked_by.clone(),
    }
}

#[cfg(test)]
mod tests;
