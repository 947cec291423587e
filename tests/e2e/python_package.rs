//! The Python package (`crates/exchange-py`) as an analyst installs it:
//! `pip install` into a fresh directory, then its pytest suite against a
//! federation started here. Under CI=true missing Python modules fail this
//! test; it never skips.

use std::process::Command;

use exchange_proto::v1 as pb;
use exchange_testkit::servers::required;
use exchange_testkit::ClusterBuilder;
use serde_json::json;

use crate::pyarrow::python_can_import;

/// Installs the package with pip into `target`, as `pip install ./crates/exchange-py` would.
fn pip_install(target: &std::path::Path) {
    let package = concat!(env!("CARGO_MANIFEST_DIR"), "/../crates/exchange-py");
    let out = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(["--no-deps", "--no-build-isolation", "--target"])
        .arg(target)
        .arg(package)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pip install {package} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_package_passes_its_tests_against_a_federation() {
    let modules =
        "pyarrow.flight, grpc, google.rpc.status_pb2, pytest, pandas, grpc_tools, setuptools";
    if required(
        "the Python package's dependencies",
        python_can_import(modules),
    )
    .is_none()
    {
        return;
    }
    let cluster = ClusterBuilder::new()
        .add_node("public-security")
        .add_node("real-estate")
        .add_node("civil-affairs")
        .start()
        .await
        .unwrap();
    for dataset in [
        "public-security/household-registration",
        "real-estate/leases",
    ] {
        cluster
            .grant("civil-affairs", dataset, &[], pb::ApproveRequest::default())
            .await
            .unwrap();
    }
    let installed = tempfile::tempdir().unwrap();
    pip_install(installed.path());
    let planted = &cluster.planted;
    let job = json!({
        "analyst": "civil-affairs",
        "analyst_config": cluster.member_dir("civil-affairs").join("exchange.toml"),
        "owner_config": cluster.member_dir("real-estate").join("exchange.toml"),
        "person": planted.official_person_id,
        "others": [planted.enrolment_child_id, planted.enrolment_guardian_owner_id],
        "ungranted": "real-estate/properties",
    });
    let tests = concat!(env!("CARGO_MANIFEST_DIR"), "/../crates/exchange-py/tests");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", tests])
            .env("PYTHONPATH", installed.path())
            .env("EXCHANGE_PY_TEST_JOB", job.to_string())
            .env_remove("EXCHANGE_CONFIG")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pytest failed:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The whole suite ran: a file that failed to import would show fewer.
    assert!(report.contains("13 passed"), "{report}");
}
