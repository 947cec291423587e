//! The mission's six scenarios end to end on generated demo data: each
//! asserts the exact planted outcome, that nothing else comes back, and
//! what both ends of the audit trail recorded.

use std::collections::BTreeMap;

use exchange_client::join::{JoinSpec, TableSpec};
use exchange_testkit::scenarios::{self, Trail};
use exchange_testkit::{Cluster, ClusterBuilder};

/// 20,000 persons: 1,000 companies, so the planted 10 tax outliers are
/// exactly the bottom 1%, and 40 relief applicant households.
async fn federation() -> Cluster {
    ClusterBuilder::new()
        .demo_federation()
        .persons(20_000)
        .start()
        .await
        .unwrap()
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(d, n)| (d.to_string(), *n)).collect()
}

/// Every allowed read at the coordinator was served and recorded by its owner node.
fn assert_both_ends(trail: &Trail, expected: &[(&str, usize)], consumer: &str) {
    assert_eq!(trail.decisions, counts(expected), "coordinator decisions");
    assert_eq!(trail.served, counts(expected), "node served records");
    assert!(trail.denials.is_empty(), "{:?}", trail.denials);
    assert_eq!(trail.consumers, vec![consumer.to_string()]);
    assert_eq!(trail.users.len(), 1, "{:?}", trail.users);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poverty_relief_finds_exactly_the_households_with_assets() {
    let cluster = federation().await;
    let planted = cluster.planted.clone();
    let answer = scenarios::poverty(&cluster).await.unwrap();
    assert_eq!(answer.applicant_households, planted.relief_households.len());
    let found: Vec<String> = answer
        .with_assets
        .iter()
        .map(|h| h.household_id.clone())
        .collect();
    assert_eq!(found, planted.relief_households_with_assets);
    assert!(answer
        .with_assets
        .iter()
        .all(|h| h.vehicles + h.properties >= 1));
    assert!(answer.render().contains(&format!(
        "{} household(s) hold assets",
        planted.relief_households_with_assets.len()
    )));
    // The members' IDs went out as chunked IN lookups, one query per chunk.
    let members = answer.members_checked as usize;
    let chunks = members.div_ceil(1_000);
    let trail = scenarios::trail(&cluster, scenarios::POVERTY_PURPOSE).unwrap();
    assert_both_ends(
        &trail,
        &[
            ("vehicle-admin/vehicles", chunks),
            ("real-estate/properties", chunks),
            ("tax/income-tax", chunks),
        ],
        "civil-affairs",
    );

    // A join over a dataset without a grant is refused before any data moves.
    let spec = JoinSpec {
        purpose: "无授权连接测试".into(),
        answer: "SELECT * FROM members".into(),
        tables: vec![
            TableSpec {
                name: "members".into(),
                dataset: Some("vehicle-admin/vehicles".into()),
                file: None,
                fields: vec!["owner_id".into()],
                filter: String::new(),
                matching: None,
            },
            TableSpec {
                name: "insurance".into(),
                dataset: Some("hrss/social-insurance".into()),
                file: None,
                fields: vec![],
                filter: String::new(),
                matching: None,
            },
        ],
    };
    let civil = cluster.analyst("civil-affairs").await.unwrap();
    let e = civil.join(&spec).await.unwrap_err().to_string();
    assert!(
        e.contains("join refused before any data was read")
            && e.contains("no active grant on hrss/social-insurance"),
        "{e}"
    );
    let trail = scenarios::trail(&cluster, "无授权连接测试").unwrap();
    assert_eq!(trail, Trail::default(), "nothing was read or even asked");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolment_is_verified_without_paper() {
    let cluster = federation().await;
    let p = cluster.planted.clone();
    let answer = scenarios::enrolment(&cluster).await.unwrap();
    assert_eq!(answer.checks.len(), 2);
    let owned = &answer.checks[0];
    assert_eq!(owned.application_id, p.enrolment_application);
    assert_eq!((owned.households, owned.unregistered), (1, 0));
    assert_eq!(
        owned.home_owners,
        vec![p.enrolment_guardian_owner_id.clone()]
    );
    assert!(owned.tenants.is_empty());
    assert!(owned.insured.contains(&p.enrolment_guardian_insured_id));
    let leased = &answer.checks[1];
    assert_eq!(leased.application_id, p.enrolment_lease_application);
    assert_eq!(leased.unregistered, 0);
    assert!(leased.home_owners.is_empty(), "{leased:?}");
    assert_eq!(leased.tenants, vec![p.enrolment_lease_guardian_id.clone()]);
    let text = answer.render();
    assert!(
        text.contains("owned by guardian") && text.contains("leased by guardian"),
        "{text}"
    );
    // Only masked IDs are printed.
    assert!(!text.contains(&p.enrolment_guardian_owner_id), "{text}");
    let trail = scenarios::trail(&cluster, scenarios::ENROLMENT_PURPOSE).unwrap();
    assert_both_ends(
        &trail,
        &[
            ("public-security/household-registration", 1),
            ("real-estate/properties", 1),
            ("real-estate/leases", 1),
            ("hrss/social-insurance", 1),
        ],
        "education",
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subsidy_screening_flags_exactly_the_companies_in_arrears() {
    let cluster = federation().await;
    let p = cluster.planted.clone();
    let mut codes = p.arrears_companies.clone();
    codes.extend(p.address_conflicts.iter().cloned());
    let answer = scenarios::subsidy(&cluster, &codes).await.unwrap();
    let flagged: Vec<String> = answer
        .checks
        .iter()
        .filter(|c| c.status == "in arrears")
        .map(|c| c.org_code.clone())
        .collect();
    assert_eq!(flagged, p.arrears_companies);
    assert!(answer
        .checks
        .iter()
        .all(|c| (c.status == "in arrears") == c.months_in_arrears.is_some()));
    assert_eq!(
        answer.checks.iter().filter(|c| c.status == "clear").count(),
        p.address_conflicts.len()
    );
    let trail = scenarios::trail(&cluster, scenarios::SUBSIDY_PURPOSE).unwrap();
    assert_both_ends(
        &trail,
        &[("hrss/contribution-arrears", codes.len())],
        "science",
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tax_versus_electricity_flags_exactly_the_bottom_percent() {
    let cluster = federation().await;
    let p = cluster.planted.clone();
    let answer = scenarios::tax_electricity(&cluster).await.unwrap();
    assert_eq!(answer.companies_compared as usize, p.companies);
    let mut flagged: Vec<String> = answer.outliers.iter().map(|(c, _)| c.clone()).collect();
    flagged.sort();
    assert_eq!(flagged, p.tax_electricity_outliers);
    assert!(answer.outliers.iter().all(|(_, r)| *r < 0.03));
    let trail = scenarios::trail(&cluster, scenarios::TAX_ELECTRICITY_PURPOSE).unwrap();
    assert_both_ends(
        &trail,
        // Its own declarations come from its own database, not through the exchange.
        &[("electricity/usage", 1)],
        "tax",
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integrity_check_under_a_named_conditional_grant_and_embargo() {
    let cluster = federation().await;
    let p = cluster.planted.clone();
    let answer = scenarios::integrity(&cluster).await.unwrap();
    assert!(
        answer.request_was_pending,
        "exit/entry sharing is conditional"
    );
    assert!(
        answer.approved_by.contains("public-security") && answer.approved_by.contains("李队长"),
        "{}",
        answer.approved_by
    );
    assert_eq!(answer.macau_trips_2025, p.official_macau_trips_2025);
    assert_eq!(answer.properties, p.official_properties.len());
    assert_eq!(answer.vehicles, p.official_vehicles.len());
    assert!(
        answer.statuses.iter().all(|(_, s)| s == "ok"),
        "{:?}",
        answer.statuses
    );
    // The subject report never shows the embargoed exit/entry reads; auditors see them marked.
    let mut shown = answer.subject_report.clone();
    shown.sort();
    assert_eq!(
        shown,
        vec![
            "real-estate/properties".to_string(),
            "vehicle-admin/vehicles".to_string()
        ]
    );
    let mut auditors = answer.subject_report_for_auditors.clone();
    auditors.sort();
    assert_eq!(
        auditors,
        vec![
            (
                "public-security/exit-entry".to_string(),
                scenarios::INTEGRITY_EMBARGO.to_string()
            ),
            ("real-estate/properties".to_string(), String::new()),
            ("vehicle-admin/vehicles".to_string(), String::new()),
        ]
    );
    // The approval is kept with the approver's name.
    let decided = cluster
        .analyst("public-security")
        .await
        .unwrap()
        .access_requests()
        .await
        .unwrap();
    let approval = decided
        .iter()
        .find(|r| r.consumer == "procuratorate")
        .unwrap();
    assert_eq!(approval.status, "granted");
    assert!(
        approval
            .decided_by
            .ends_with("(公安局出入境管理支队 李队长)"),
        "{}",
        approval.decided_by
    );
    let trail = scenarios::trail(&cluster, scenarios::INTEGRITY_PURPOSE).unwrap();
    assert_both_ends(
        &trail,
        &[
            ("public-security/exit-entry", 1),
            ("real-estate/properties", 1),
            ("vehicle-admin/vehicles", 1),
        ],
        "procuratorate",
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_report_exactly_the_planted_addresses() {
    let cluster = federation().await;
    let p = cluster.planted.clone();
    let answer = scenarios::conflicts(&cluster).await.unwrap();
    let report = &answer.report;
    let found: Vec<String> = report.conflicts.iter().map(|c| c.key.clone()).collect();
    assert_eq!(found, p.address_conflicts);
    let mut cosmetic = report.cosmetic.clone();
    cosmetic.sort();
    assert_eq!(cosmetic, p.cosmetic_address_differences);
    assert_eq!(report.compared as usize, p.companies);
    assert!(report.conflicts.iter().all(|c| c.values.len() == 2
        && c.values.iter().all(|v| v.is_some())
        && c.values[0] != c.values[1]));
    assert_eq!(
        report
            .sources
            .iter()
            .map(|s| (s.dataset.as_str(), s.authoritative))
            .collect::<Vec<_>>(),
        vec![
            ("market-regulation/companies", true),
            ("tax/taxpayers", false)
        ]
    );
    assert!(report
        .render()
        .contains("market-regulation/companies authoritative for registered_address"));
    let trail = scenarios::trail(&cluster, scenarios::CONFLICTS_PURPOSE).unwrap();
    assert_both_ends(
        &trail,
        &[("market-regulation/companies", 1), ("tax/taxpayers", 1)],
        "data-bureau",
    );
    // An attribute one source does not have: a clear message, nothing read.
    let client = cluster.analyst("data-bureau").await.unwrap();
    cluster
        .grant(
            "data-bureau",
            "hrss/contribution-arrears",
            &[],
            Default::default(),
        )
        .await
        .unwrap();
    let e = client
        .conflicts(&exchange_client::conflicts::ConflictQuery {
            key_type: "org_code".into(),
            attribute: "registered_address".into(),
            datasets: vec![
                "market-regulation/companies".into(),
                "hrss/contribution-arrears".into(),
            ],
            purpose: "缺字段".into(),
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("hrss/contribution-arrears has no field \"registered_address\""),
        "{e}"
    );
    assert_eq!(
        scenarios::trail(&cluster, "缺字段").unwrap(),
        Trail::default()
    );
    cluster.shutdown().await;
}
