//! One person across every department: parallel, grouped, with a status
//! per department, and bounded by the deadline when a node is dead.

use std::time::{Duration, Instant};

use exchange_client::lookup::SourceStatus;
use exchange_proto::v1 as pb;
use exchange_testkit::ClusterBuilder;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_person_across_departments_with_a_status_each() {
    let mut cluster = ClusterBuilder::new()
        .add_node("civil-affairs")
        .add_node("vehicle-admin")
        .add_node("real-estate")
        .add_node("public-security")
        .add_node("education")
        // The public security bureau refuses civil affairs at its own node.
        .veto("public-security", &["civil-affairs"], &[])
        .start()
        .await
        .unwrap();
    for (dataset, fields) in [
        ("vehicle-admin/vehicles", vec!["plate_no", "owner_id"]),
        ("real-estate/properties", vec![]),
        (
            "public-security/household-registration",
            vec!["person_id", "gender"],
        ),
        // Granted, but without its person_id field: not a lookup target.
        ("education/students", vec!["student_id"]),
    ] {
        cluster
            .grant(
                "civil-affairs",
                dataset,
                &fields,
                pb::ApproveRequest::default(),
            )
            .await
            .unwrap();
    }
    let civil = cluster.analyst("civil-affairs").await.unwrap();
    let official = cluster.planted.official_person_id.clone();

    let report = civil
        .lookup(
            "person_id",
            &official,
            "低保申请人财产核查",
            Duration::from_secs(3),
        )
        .await
        .unwrap();
    let summary: Vec<(&str, &str, usize)> = report
        .answers
        .iter()
        .map(|a| (a.dataset.as_str(), a.status.label(), a.rows()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("public-security/household-registration", "denied", 0),
            (
                "real-estate/properties",
                "ok",
                cluster.planted.official_properties.len()
            ),
            (
                "vehicle-admin/vehicles",
                "ok",
                cluster.planted.official_vehicles.len()
            ),
        ]
    );
    assert!(report.answers[0].status.detail().contains("local veto"));
    // Each dataset read is a normal query: audited with the purpose.
    let log = civil
        .audit_log(pb::AuditLogRequest {
            purpose: "低保申请人".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(log.rows.len(), 3);

    // A node dies: its department is marked, the rest still answer, and
    // the lookup ends within the deadline.
    let node = cluster.nodes.remove("real-estate").unwrap();
    node.shutdown().await;
    let started = Instant::now();
    let report = civil
        .lookup(
            "person_id",
            &official,
            "低保申请人财产核查",
            Duration::from_secs(2),
        )
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(2_500),
        "{:?}",
        started.elapsed()
    );
    let real_estate = report
        .answers
        .iter()
        .find(|a| a.department == "real-estate")
        .unwrap();
    assert!(
        matches!(
            real_estate.status,
            SourceStatus::Offline(_) | SourceStatus::TimedOut
        ),
        "{:?}",
        real_estate.status
    );
    let vehicles = report
        .answers
        .iter()
        .find(|a| a.department == "vehicle-admin")
        .unwrap();
    assert_eq!(vehicles.status, SourceStatus::Ok);
    assert_eq!(vehicles.rows(), cluster.planted.official_vehicles.len());

    // Bad input: a mistyped ID is refused before anything is asked.
    let mut bad = official.clone();
    let last = bad.pop().unwrap();
    bad.push(if last == '1' { '2' } else { '1' });
    let e = civil
        .lookup("person_id", &bad, "核查", Duration::from_secs(2))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("check character"), "{e}");
    let e = civil
        .lookup("person_id", &official, " ", Duration::from_secs(2))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("purpose"), "{e}");
    cluster.shutdown().await;
}
