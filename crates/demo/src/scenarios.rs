//! The mission's scenarios, end to end on a demo federation: the grants
//! each needs (requested by the consumer, decided by the owner), the
//! question asked with ordinary audited queries, and a readable answer.
//!
//! `exchange demo --scenario <name>` runs one and prints it; the scenario
//! tests run the same functions and compare the answers with the planted
//! facts of the demo data.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use exchange_audit::{Event, Record};
use exchange_client::join::{JoinSpec, MatchSpec, TableRead, TableSpec};
use exchange_client::lookup::SourceStatus;
use exchange_proto::v1 as pb;
use serde_json::Value;

use crate::Cluster;

/// The scenario names, in the mission's order.
pub const SCENARIOS: &[&str] = &[
    "poverty",
    "enrolment",
    "subsidy",
    "tax-electricity",
    "integrity",
    "conflicts",
];

/// The consumer-only departments the scenarios need besides the nine demo
/// departments: (member id, display name).
pub const SCENARIO_CONSUMERS: &[(&str, &str)] = &[
    ("science", "科学技术局 Science and Technology Bureau"),
    ("procuratorate", "人民检察院 People's Procuratorate"),
    ("data-bureau", "数据资源管理局 Data Bureau analysts"),
];

pub const POVERTY_PURPOSE: &str = "最低生活保障资格核查 minimum-living-allowance eligibility check";
pub const ENROLMENT_PURPOSE: &str = "义务教育入学资格核验 school enrolment verification";
pub const SUBSIDY_PURPOSE: &str = "科技项目资助前社保欠费核查 subsidy screening for arrears";
pub const TAX_ELECTRICITY_PURPOSE: &str = "纳税与用电比对 tax versus electricity screening";
pub const INTEGRITY_PURPOSE: &str = "案件线索核查（立案编号 2026-031） integrity investigation";
pub const CONFLICTS_PURPOSE: &str = "企业登记信息一致性核查 registration data consistency";

/// Runs one scenario by name and renders its answer for people.
pub async fn run(cluster: &Cluster, name: &str) -> anyhow::Result<String> {
    Ok(match name {
        "poverty" => poverty(cluster).await?.render(),
        "enrolment" => enrolment(cluster).await?.render(),
        "subsidy" => {
            let p = &cluster.planted;
            let mut codes: Vec<String> = p.arrears_companies.iter().take(2).cloned().collect();
            codes.extend(p.address_conflicts.iter().take(3).cloned());
            subsidy(cluster, &codes).await?.render()
        }
        "tax-electricity" => tax_electricity(cluster).await?.render(),
        "integrity" => integrity(cluster).await?.render(),
        "conflicts" => conflicts(cluster).await?.render(),
        other => anyhow::bail!(
            "no scenario {other:?}: choose one of {}",
            SCENARIOS.join(", ")
        ),
    })
}

fn approve(user: &str, unmask: &[&str]) -> pb::ApproveRequest {
    pb::ApproveRequest {
        user: user.into(),
        unmask: unmask.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn table(name: &str, dataset: &str, fields: &[&str]) -> TableSpec {
    TableSpec {
        name: name.into(),
        dataset: Some(dataset.into()),
        file: None,
        fields: fields.iter().map(|s| s.to_string()).collect(),
        filter: String::new(),
        matching: None,
    }
}

fn matching(mut t: TableSpec, field: &str, keys: &str) -> TableSpec {
    t.matching = Some(MatchSpec {
        field: field.into(),
        keys: keys.into(),
    });
    t
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn list(v: &Value) -> Vec<String> {
    let mut items: Vec<String> = text(v)
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    items.sort();
    items
}

fn reads_text(reads: &[TableRead]) -> String {
    reads
        .iter()
        .map(|r| {
            format!(
                "  read {:<12} {:>7} row(s) from {} ({} quer{})\n",
                r.name,
                r.rows,
                r.source,
                r.queries,
                if r.queries == 1 { "y" } else { "ies" }
            )
        })
        .collect()
}

// ---- 1. Poverty relief ------------------------------------------------------

#[derive(Debug, Clone)]
pub struct HouseholdAssets {
    pub household_id: String,
    pub vehicles: i64,
    pub properties: i64,
    pub tax_records: i64,
}

#[derive(Debug, Clone)]
pub struct Poverty {
    pub applicant_households: usize,
    pub members_checked: u64,
    /// Applicant households where a member owns a vehicle or real estate.
    pub with_assets: Vec<HouseholdAssets>,
    pub reads: Vec<TableRead>,
}

/// Civil affairs checks every member of every relief applicant household
/// against vehicles, real estate and income tax: a batch of thousands of
/// ID lookups across three departments, answered as households with assets.
pub async fn poverty(cluster: &Cluster) -> anyhow::Result<Poverty> {
    let who = "民政局社会救助科 王科长";
    for (dataset, fields, unmask, owner_user) in [
        (
            "vehicle-admin/vehicles",
            vec!["owner_id", "plate_no"],
            vec!["owner_id"],
            "车管所 陈所长",
        ),
        (
            "real-estate/properties",
            vec!["owner_id", "cert_no"],
            vec!["owner_id"],
            "不动产登记中心 黄主任",
        ),
        (
            "tax/income-tax",
            vec!["person_id", "year"],
            vec!["person_id"],
            "税务局 刘科长",
        ),
    ] {
        cluster
            .grant_for(
                "civil-affairs",
                dataset,
                &fields,
                POVERTY_PURPOSE,
                approve(owner_user, &unmask),
            )
            .await
            .with_context(|| format!("granting {dataset} to civil-affairs"))?;
    }
    let spec = JoinSpec {
        purpose: POVERTY_PURPOSE.into(),
        answer: "SELECT m.household_id AS household_id,
                        COUNT(DISTINCT v.plate_no) AS vehicles,
                        COUNT(DISTINCT p.cert_no) AS properties,
                        (SELECT COUNT(*) FROM members m2 JOIN tax t ON t.person_id = m2.person_id
                          WHERE m2.household_id = m.household_id) AS tax_records
                 FROM members m
                 LEFT JOIN vehicles v ON v.owner_id = m.person_id
                 LEFT JOIN properties p ON p.owner_id = m.person_id
                 GROUP BY m.household_id
                 ORDER BY m.household_id"
            .into(),
        tables: vec![
            own_list(
                cluster,
                "civil-affairs",
                "members",
                "SELECT household_id, person_id FROM relief_members ORDER BY household_id, person_id",
            )
            .await?,
            matching(
                table("vehicles", "vehicle-admin/vehicles", &["owner_id", "plate_no"]),
                "owner_id",
                "members.person_id",
            ),
            matching(
                table("properties", "real-estate/properties", &["owner_id", "cert_no"]),
                "owner_id",
                "members.person_id",
            ),
            matching(
                table("tax", "tax/income-tax", &["person_id", "year"]),
                "person_id",
                "members.person_id",
            ),
        ],
    };
    let client = cluster.analyst("civil-affairs").await?.with_user(who);
    let answer = client.join(&spec).await?;
    let applicant_households = answer.rows.len();
    let with_assets = answer
        .rows
        .iter()
        .map(|r| HouseholdAssets {
            household_id: text(&r[0]),
            vehicles: int(&r[1]),
            properties: int(&r[2]),
            tax_records: int(&r[3]),
        })
        .filter(|h| h.vehicles + h.properties > 0)
        .collect();
    Ok(Poverty {
        applicant_households,
        members_checked: answer.reads[0].rows,
        with_assets,
        reads: answer.reads,
    })
}

impl Poverty {
    pub fn render(&self) -> String {
        let mut s = format!(
            "Poverty relief: {} applicant household(s), {} member(s) checked against vehicles, real estate and income tax.\n",
            self.applicant_households, self.members_checked
        );
        s.push_str(&reads_text(&self.reads));
        s.push_str(&format!(
            "{} household(s) hold assets and need review:\n",
            self.with_assets.len()
        ));
        for h in &self.with_assets {
            s.push_str(&format!(
                "  {}  vehicles {}  properties {}  income-tax records {}\n",
                h.household_id, h.vehicles, h.properties, h.tax_records
            ));
        }
        s
    }
}

// ---- 2. Paperless enrolment ---------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolmentCheck {
    pub application_id: String,
    /// Distinct registered households of the child and both guardians.
    pub households: i64,
    /// Applicants with no household registration.
    pub unregistered: i64,
    pub home_owners: Vec<String>,
    /// Guardians holding a lease running past 2026-09-01.
    pub tenants: Vec<String>,
    /// Guardians with an active social-insurance record.
    pub insured: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Enrolment {
    pub checks: Vec<EnrolmentCheck>,
    pub reads: Vec<TableRead>,
}

/// The education bureau verifies household registration, home ownership
/// or lease, and social insurance for each pending application's child and
/// guardians. Its own applications come from its own database.
pub async fn enrolment(cluster: &Cluster) -> anyhow::Result<Enrolment> {
    let who = "教育局招生办 周老师";
    for (dataset, fields, unmask, owner_user) in [
        (
            "public-security/household-registration",
            vec!["person_id", "household_id"],
            vec!["person_id"],
            "公安局户政科 吴科长",
        ),
        (
            "real-estate/properties",
            vec!["owner_id", "cert_no"],
            vec!["owner_id"],
            "不动产登记中心 黄主任",
        ),
        (
            "real-estate/leases",
            vec!["tenant_id", "lease_id", "end_on"],
            vec!["tenant_id"],
            "不动产登记中心 黄主任",
        ),
        (
            "hrss/social-insurance",
            vec!["person_id", "status"],
            vec!["person_id"],
            "人社局 郑科长",
        ),
    ] {
        cluster
            .grant_for(
                "education",
                dataset,
                &fields,
                ENROLMENT_PURPOSE,
                approve(owner_user, &unmask),
            )
            .await
            .with_context(|| format!("granting {dataset} to education"))?;
    }
    // The bureau's own pending applications, from its own system.
    let own = own_list(
        cluster,
        "education",
        "applicants",
        "SELECT application_id, 'child' AS role, child_id AS person_id FROM enrolment_applications
         UNION ALL SELECT application_id, 'guardian', guardian1_id FROM enrolment_applications
         UNION ALL SELECT application_id, 'guardian', guardian2_id FROM enrolment_applications
         ORDER BY 1, 2, 3",
    )
    .await?;
    let for_app = "FROM applicants x JOIN";
    let spec = JoinSpec {
        purpose: ENROLMENT_PURPOSE.into(),
        answer: format!(
            "SELECT a.application_id,
               (SELECT COUNT(DISTINCT h.household_id) {for_app} household h ON h.person_id = x.person_id
                 WHERE x.application_id = a.application_id) AS households,
               (SELECT COUNT(*) FROM applicants x WHERE x.application_id = a.application_id
                 AND x.person_id NOT IN (SELECT person_id FROM household)) AS unregistered,
               (SELECT group_concat(DISTINCT p.owner_id) {for_app} properties p ON p.owner_id = x.person_id
                 WHERE x.application_id = a.application_id AND x.role = 'guardian') AS home_owners,
               (SELECT group_concat(DISTINCT l.tenant_id) {for_app} leases l ON l.tenant_id = x.person_id
                 WHERE x.application_id = a.application_id AND x.role = 'guardian' AND l.end_on >= '2026-09-01') AS tenants,
               (SELECT group_concat(DISTINCT s.person_id) {for_app} insurance s ON s.person_id = x.person_id
                 WHERE x.application_id = a.application_id AND x.role = 'guardian' AND s.status = '正常参保') AS insured
             FROM (SELECT DISTINCT application_id FROM applicants) a ORDER BY a.application_id"
        ),
        tables: vec![
            own,
            matching(
                table(
                    "household",
                    "public-security/household-registration",
                    &["person_id", "household_id"],
                ),
                "person_id",
                "applicants.person_id",
            ),
            matching(
                table("properties", "real-estate/properties", &["owner_id", "cert_no"]),
                "owner_id",
                "applicants.person_id",
            ),
            matching(
                table(
                    "leases",
                    "real-estate/leases",
                    &["tenant_id", "lease_id", "end_on"],
                ),
                "tenant_id",
                "applicants.person_id",
            ),
            matching(
                table("insurance", "hrss/social-insurance", &["person_id", "status"]),
                "person_id",
                "applicants.person_id",
            ),
        ],
    };
    let client = cluster.analyst("education").await?.with_user(who);
    let answer = client.join(&spec).await?;
    let checks = answer
        .rows
        .iter()
        .map(|r| EnrolmentCheck {
            application_id: text(&r[0]),
            households: int(&r[1]),
            unregistered: int(&r[2]),
            home_owners: list(&r[3]),
            tenants: list(&r[4]),
            insured: list(&r[5]),
        })
        .collect();
    Ok(Enrolment {
        checks,
        reads: answer.reads,
    })
}

/// A department's own rows, read from its own database (never through the
/// exchange: a department does not query itself), as a local list for a join.
async fn own_list(
    cluster: &Cluster,
    department: &str,
    name: &str,
    sql: &str,
) -> anyhow::Result<TableSpec> {
    use sqlx::{Column, Connection, Row};
    let db = cluster.dir.join("data").join(format!("{department}.db"));
    let url = format!("sqlite://{}?mode=ro", db.display());
    let mut conn = sqlx::SqliteConnection::connect(&url)
        .await
        .with_context(|| format!("opening {department}'s own database {}", db.display()))?;
    let rows = sqlx::query(sql).fetch_all(&mut conn).await?;
    let mut text = String::new();
    if let Some(first) = rows.first() {
        let names: Vec<&str> = first.columns().iter().map(|c| c.name()).collect();
        text.push_str(&names.join(","));
        text.push('\n');
    }
    for row in &rows {
        let cells: Vec<String> = (0..row.len())
            .map(|i| {
                row.try_get::<String, _>(i)
                    .or_else(|_| row.try_get::<i64, _>(i).map(|v| v.to_string()))
                    .or_else(|_| row.try_get::<f64, _>(i).map(|v| v.to_string()))
                    .unwrap_or_default()
            })
            .collect();
        text.push_str(&cells.join(","));
        text.push('\n');
    }
    let path = cluster.dir.join(format!("own-{department}-{name}.csv"));
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(TableSpec {
        name: name.into(),
        dataset: None,
        file: Some(path),
        fields: vec![],
        filter: String::new(),
        matching: None,
    })
}

impl Enrolment {
    pub fn render(&self) -> String {
        let mut s = String::from(
            "Paperless enrolment: each application's child and guardians verified without paper certificates.\n",
        );
        s.push_str(&reads_text(&self.reads));
        for c in &self.checks {
            let mask = |ids: &[String]| {
                ids.iter()
                    .map(|i| exchange_catalog::policy::ids::mask_subject(i))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            s.push_str(&format!(
                "  {}: {} ({} registered household(s), {} unregistered)\n    home: {}\n    social insurance: {}\n",
                c.application_id,
                if c.households == 1 && c.unregistered == 0 {
                    "one registered household"
                } else {
                    "NOT one registered household"
                },
                c.households,
                c.unregistered,
                if !c.home_owners.is_empty() {
                    format!("owned by guardian {}", mask(&c.home_owners))
                } else if !c.tenants.is_empty() {
                    format!("leased by guardian {}", mask(&c.tenants))
                } else {
                    "no owned or leased home found".into()
                },
                if c.insured.is_empty() {
                    "no active record".into()
                } else {
                    format!("active for guardian {}", mask(&c.insured))
                }
            ));
        }
        s
    }
}

// ---- 3. Subsidy screening -------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubsidyCheck {
    pub org_code: String,
    pub status: String,
    pub months_in_arrears: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct Subsidy {
    pub checks: Vec<SubsidyCheck>,
}

/// The science and technology bureau checks each applicant company by its
/// unified social credit code for social-insurance arrears.
pub async fn subsidy(cluster: &Cluster, codes: &[String]) -> anyhow::Result<Subsidy> {
    cluster
        .grant_for(
            "science",
            "hrss/contribution-arrears",
            &["org_code", "months_in_arrears", "amount_owed"],
            SUBSIDY_PURPOSE,
            approve("人社局 郑科长", &[]),
        )
        .await?;
    let client = cluster
        .analyst("science")
        .await?
        .with_user("科技局资助科 孙科员");
    let mut checks = Vec::new();
    for code in codes {
        let report = client
            .lookup("org_code", code, SUBSIDY_PURPOSE, Duration::from_secs(5))
            .await?;
        let arrears = report
            .answers
            .iter()
            .find(|a| a.dataset == "hrss/contribution-arrears")
            .context("the arrears dataset was not looked up")?;
        let months = arrears
            .batches
            .iter()
            .find(|b| b.num_rows() > 0)
            .and_then(|b| {
                let c = b.schema().index_of("months_in_arrears").ok()?;
                exchange_client::values::cell(b.column(c).as_ref(), 0)?
                    .parse()
                    .ok()
            });
        checks.push(SubsidyCheck {
            org_code: report.key.clone(),
            status: match &arrears.status {
                SourceStatus::Ok if arrears.rows() > 0 => "in arrears".into(),
                SourceStatus::Ok => "clear".into(),
                other => format!("{}: {}", other.label(), other.detail()),
            },
            months_in_arrears: months,
        });
    }
    Ok(Subsidy { checks })
}

impl Subsidy {
    pub fn render(&self) -> String {
        let mut s = String::from(
            "Subsidy screening: social-insurance arrears per applicant company (human resources and social security).\n",
        );
        for c in &self.checks {
            s.push_str(&format!(
                "  {}  {}{}\n",
                c.org_code,
                c.status,
                c.months_in_arrears
                    .map(|m| format!(", {m} month(s) unpaid: do not fund until settled"))
                    .unwrap_or_default()
            ));
        }
        s
    }
}

// ---- 4. Tax versus electricity ----------------------------------------------------

#[derive(Debug, Clone)]
pub struct TaxElectricity {
    pub companies_compared: i64,
    /// (org code, declared 2025 tax per kWh), lowest first: the bottom 1%.
    pub outliers: Vec<(String, f64)>,
    pub reads: Vec<TableRead>,
}

/// The tax bureau joins its 2025 declarations with the utility's 2025
/// consumption and flags the bottom 1% of tax per kWh.
pub async fn tax_electricity(cluster: &Cluster) -> anyhow::Result<TaxElectricity> {
    let who = "税务局风险管理科 何科长";
    cluster
        .grant_for(
            "tax",
            "electricity/usage",
            &["org_code", "year", "kwh"],
            TAX_ELECTRICITY_PURPOSE,
            approve("供电局 林经理", &[]),
        )
        .await?;
    let declarations = own_list(
        cluster,
        "tax",
        "declarations",
        "SELECT org_code, declared_tax FROM tax_declarations WHERE year = 2025 ORDER BY org_code",
    )
    .await?;
    let mut usage = table(
        "electricity",
        "electricity/usage",
        &["org_code", "year", "kwh"],
    );
    usage.filter = "year = 2025".into();
    let spec = JoinSpec {
        purpose: TAX_ELECTRICITY_PURPOSE.into(),
        answer: "WITH t AS (SELECT org_code, SUM(CAST(declared_tax AS REAL)) AS tax FROM declarations GROUP BY org_code),
                      e AS (SELECT org_code, SUM(kwh) AS kwh FROM electricity GROUP BY org_code),
                      r AS (SELECT t.org_code, t.tax / e.kwh AS per_kwh FROM t JOIN e ON e.org_code = t.org_code WHERE e.kwh > 0),
                      ranked AS (SELECT org_code, per_kwh, NTILE(100) OVER (ORDER BY per_kwh) AS percentile,
                                        COUNT(*) OVER () AS compared FROM r)
                 SELECT org_code, per_kwh, compared FROM ranked WHERE percentile = 1 ORDER BY per_kwh"
            .into(),
        tables: vec![declarations, usage],
    };
    let client = cluster.analyst("tax").await?.with_user(who);
    let answer = client.join(&spec).await?;
    Ok(TaxElectricity {
        companies_compared: answer.rows.first().map(|r| int(&r[2])).unwrap_or(0),
        outliers: answer
            .rows
            .iter()
            .map(|r| (text(&r[0]), r[1].as_f64().unwrap_or(f64::NAN)))
            .collect(),
        reads: answer.reads,
    })
}

impl TaxElectricity {
    pub fn render(&self) -> String {
        let mut s = format!(
            "Tax versus electricity: {} companies compared on declared 2025 tax per kWh; the bottom 1% ({}) flagged.\n",
            self.companies_compared,
            self.outliers.len()
        );
        s.push_str(&reads_text(&self.reads));
        for (code, per_kwh) in &self.outliers {
            s.push_str(&format!("  {code}  {per_kwh:.4} yuan per kWh\n"));
        }
        s
    }
}

// ---- 5. Integrity check ------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Integrity {
    /// The exit/entry request waited for the owner (conditional sharing).
    pub request_was_pending: bool,
    /// Who approved it, by name, and until when it is hidden from subject reports.
    pub approved_by: String,
    pub embargo_until: String,
    pub macau_trips_2025: usize,
    pub properties: usize,
    pub vehicles: usize,
    pub statuses: Vec<(String, String)>,
    /// Datasets in the official's subject report, without and with embargoed accesses.
    pub subject_report: Vec<String>,
    pub subject_report_for_auditors: Vec<(String, String)>,
}

pub const INTEGRITY_EMBARGO: &str = "2027-12-31";

/// The procuratorate checks an official's exit/entry records, properties
/// and vehicles under a conditional grant with a named approval; the exit
/// and entry reads are embargoed from the official's subject report.
pub async fn integrity(cluster: &Cluster) -> anyhow::Result<Integrity> {
    let who = "检察院反贪局 赵检察官";
    let approver = "公安局出入境管理支队 李队长";
    let official = cluster.planted.official_person_id.clone();
    let procuratorate = cluster.analyst("procuratorate").await?.with_user(who);
    let request = procuratorate
        .request_access(pb::AccessRequest {
            dataset: "public-security/exit-entry".into(),
            fields: ["person_id", "direction", "destination", "crossed_at"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            purpose: INTEGRITY_PURPOSE.into(),
            basis: "《监察法》第二十八条 Supervision Law art. 28".into(),
            ..Default::default()
        })
        .await?;
    let request_was_pending = request.status == "pending";
    let decided = cluster
        .analyst("public-security")
        .await?
        .approve(pb::ApproveRequest {
            request_id: request.id.clone(),
            unmask: vec!["destination".into()],
            embargo_until: INTEGRITY_EMBARGO.into(),
            ..approve(approver, &[])
        })
        .await?;
    for (dataset, fields, owner_user) in [
        (
            "real-estate/properties",
            vec!["owner_id", "cert_no", "area_m2"],
            "不动产登记中心 黄主任",
        ),
        (
            "vehicle-admin/vehicles",
            vec!["owner_id", "plate_no", "brand"],
            "车管所 陈所长",
        ),
    ] {
        cluster
            .grant_for(
                "procuratorate",
                dataset,
                &fields,
                INTEGRITY_PURPOSE,
                approve(owner_user, &[]),
            )
            .await?;
    }
    let report = procuratorate
        .lookup(
            "person_id",
            &official,
            INTEGRITY_PURPOSE,
            Duration::from_secs(5),
        )
        .await?;
    let answer = |dataset: &str| report.answers.iter().find(|a| a.dataset == dataset);
    let mut macau_trips_2025 = 0;
    if let Some(a) = answer("public-security/exit-entry") {
        for b in &a.batches {
            let col = |name: &str| b.schema().index_of(name).ok().map(|i| b.column(i).clone());
            let (Some(direction), Some(destination), Some(crossed)) =
                (col("direction"), col("destination"), col("crossed_at"))
            else {
                continue;
            };
            for r in 0..b.num_rows() {
                let cell = |c: &std::sync::Arc<dyn exchange_client::values::Array>| {
                    exchange_client::values::cell(c.as_ref(), r).unwrap_or_default()
                };
                if cell(&direction) == "出境"
                    && cell(&destination) == "澳门"
                    && cell(&crossed).starts_with("2025")
                {
                    macau_trips_2025 += 1;
                }
            }
        }
    }
    let bureau = &cluster.admin;
    let subject = |include_embargoed| pb::SubjectReportRequest {
        key_type: "person_id".into(),
        key: official.clone(),
        include_embargoed,
    };
    let plain = bureau.subject_report(subject(false)).await?;
    let auditors = bureau.subject_report(subject(true)).await?;
    Ok(Integrity {
        request_was_pending,
        approved_by: decided.decided_by.clone(),
        embargo_until: INTEGRITY_EMBARGO.into(),
        macau_trips_2025,
        properties: answer("real-estate/properties").map_or(0, |a| a.rows()),
        vehicles: answer("vehicle-admin/vehicles").map_or(0, |a| a.rows()),
        statuses: report
            .answers
            .iter()
            .map(|a| (a.dataset.clone(), a.status.label().to_string()))
            .collect(),
        subject_report: plain
            .accesses
            .iter()
            .filter(|a| a.purpose == INTEGRITY_PURPOSE)
            .map(|a| a.dataset.clone())
            .collect(),
        subject_report_for_auditors: auditors
            .accesses
            .iter()
            .filter(|a| a.purpose == INTEGRITY_PURPOSE)
            .map(|a| (a.dataset.clone(), a.embargo_until.clone()))
            .collect(),
    })
}

impl Integrity {
    pub fn render(&self) -> String {
        let mut s = format!(
            "Integrity check: exit/entry records shared on a conditional grant ({}), approved by {} and hidden from subject reports until {}.\n",
            if self.request_was_pending { "the request waited for the owner" } else { "granted at once" },
            self.approved_by,
            self.embargo_until
        );
        for (d, st) in &self.statuses {
            s.push_str(&format!("  {d}: {st}\n"));
        }
        s.push_str(&format!(
            "  trips to Macau (澳门) in 2025: {}\n  properties: {}\n  vehicles: {}\n",
            self.macau_trips_2025, self.properties, self.vehicles
        ));
        s.push_str(&format!(
            "  the official's subject report shows {} of these reads; auditors see {} (the exit/entry reads marked embargoed)\n",
            self.subject_report.len(),
            self.subject_report_for_auditors.len()
        ));
        s
    }
}

// ---- 6. Data conflicts ------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Conflicts {
    pub report: exchange_client::conflicts::ConflictReport,
}

/// The data bureau's analysts compare market regulation's registered
/// addresses with the tax bureau's.
pub async fn conflicts(cluster: &Cluster) -> anyhow::Result<Conflicts> {
    let who = "数据资源管理局 质量科 冯科长";
    cluster
        .grant_for(
            "data-bureau",
            "market-regulation/companies",
            &["org_code", "registered_address"],
            CONFLICTS_PURPOSE,
            approve("市场监管局 登记科", &[]),
        )
        .await?;
    cluster
        .grant_for(
            "data-bureau",
            "tax/taxpayers",
            &["org_code", "registered_address"],
            CONFLICTS_PURPOSE,
            approve("税务局 刘科长", &[]),
        )
        .await?;
    let client = cluster.analyst("data-bureau").await?.with_user(who);
    let report = client
        .conflicts(&exchange_client::conflicts::ConflictQuery {
            key_type: "org_code".into(),
            attribute: "registered_address".into(),
            datasets: vec!["market-regulation/companies".into(), "tax/taxpayers".into()],
            purpose: CONFLICTS_PURPOSE.into(),
        })
        .await?;
    Ok(Conflicts { report })
}

impl Conflicts {
    pub fn render(&self) -> String {
        self.report.render()
    }
}

// ---- The audit trail of a scenario ----------------------------------------------------

/// What both ends recorded for one purpose: per dataset, the coordinator's
/// allowed decisions and the owner nodes' served records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trail {
    pub decisions: BTreeMap<String, usize>,
    pub denials: BTreeMap<String, usize>,
    pub served: BTreeMap<String, usize>,
    /// Distinct consumers and users named in the decisions.
    pub consumers: Vec<String>,
    pub users: Vec<String>,
}

/// Reads the coordinator's and every node's audit log for `purpose`.
pub fn trail(cluster: &Cluster, purpose: &str) -> anyhow::Result<Trail> {
    let mut t = Trail::default();
    let scan = |dir: &Path, f: &mut dyn FnMut(Record)| -> anyhow::Result<()> {
        exchange_audit::read::scan(dir, |_, r| {
            f(r);
            true
        })?;
        Ok(())
    };
    scan(&cluster.dir.join("coordinator/audit"), &mut |r| {
        if let Event::QueryDecision(d) = r.event {
            if d.purpose == purpose {
                let map = if d.allowed {
                    &mut t.decisions
                } else {
                    &mut t.denials
                };
                *map.entry(d.dataset).or_default() += 1;
                if !t.consumers.contains(&d.consumer) {
                    t.consumers.push(d.consumer);
                }
                if !t.users.contains(&d.user) {
                    t.users.push(d.user);
                }
            }
        }
    })?;
    for id in cluster.nodes.keys() {
        let dir = cluster.dir.join("nodes").join(id).join("audit");
        if !dir.exists() {
            continue;
        }
        scan(&dir, &mut |r| {
            if let Event::QueryServed(s) = r.event {
                if s.purpose == purpose {
                    *t.served.entry(s.dataset).or_default() += 1;
                }
            }
        })?;
    }
    Ok(t)
}
