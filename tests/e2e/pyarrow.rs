//! A standard Arrow Flight client, pyarrow from PyPI, queries the
//! coordinator over mutual TLS with an analyst's certificate. Under CI=true
//! a missing pyarrow fails this test; `tests/run` installs it.

use std::process::Command;

use exchange_proto::v1 as pb;
use exchange_testkit::servers::required;
use exchange_testkit::ClusterBuilder;

/// Whether python3 can import `modules` (a comma-separated import list).
pub(crate) fn python_can_import(modules: &str) -> anyhow::Result<()> {
    let out = Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .output()?;
    if out.status.success() {
        Ok(())
    } else {
        anyhow::bail!(
            "python3 cannot import {modules}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
    }
}

fn pyarrow_query(
    addr: &str,
    cert_dir: &std::path::Path,
    dataset: &str,
    filter: &str,
) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/e2e/pyarrow_flight.py");
    let out = Command::new("python3")
        .args([
            script,
            addr,
            cert_dir.to_str().unwrap(),
            dataset,
            "pyarrow 测试",
            filter,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyarrow_queries_over_mutual_tls() {
    if required("pyarrow", python_can_import("pyarrow.flight")).is_none() {
        return;
    }
    let cluster = ClusterBuilder::new()
        .add_node("vehicle-admin")
        .add_node("civil-affairs")
        .start()
        .await
        .unwrap();
    let civil = cluster.analyst("civil-affairs").await.unwrap();
    let owner = cluster.analyst("vehicle-admin").await.unwrap();
    let addr = cluster.coordinator.addr.to_string();
    let dir = cluster.member_dir("civil-affairs");

    // Before any grant: the refusal reaches pyarrow with its reason.
    let denied = pyarrow_query(&addr, &dir, "vehicle-admin/vehicles", "");
    assert!(
        denied["error"]
            .as_str()
            .unwrap_or_default()
            .contains("grant required"),
        "{denied}"
    );

    let r = civil
        .request_access(pb::AccessRequest {
            dataset: "vehicle-admin/vehicles".into(),
            fields: vec!["plate_no".into(), "owner_id".into()],
            purpose: "核查".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    owner
        .approve(pb::ApproveRequest {
            request_id: r.id,
            ..Default::default()
        })
        .await
        .unwrap();
    let official = &cluster.planted.official_person_id;
    let got = pyarrow_query(
        &addr,
        &dir,
        "vehicle-admin/vehicles",
        &format!("owner_id = '{official}'"),
    );
    assert_eq!(
        got["columns"],
        serde_json::json!(["plate_no", "owner_id"]),
        "{got}"
    );
    assert_eq!(
        got["rows"],
        cluster.planted.official_vehicles.len(),
        "{got}"
    );
    let masked = got["first"]["owner_id"].as_str().unwrap();
    assert_eq!(
        masked,
        format!("{}********{}", &official[..6], &official[14..])
    );
    let some = pyarrow_query(&addr, &dir, "vehicle-admin/vehicles", "");
    assert_eq!(some["rows"], 50, "the command's limit");
    cluster.shutdown().await;
}
