//! The web console in a real browser: Debian's headless Chromium driven by
//! playwright-core (`tests/browser/journeys.mjs`), each user in its own
//! browser profile presenting its certificate from a PKCS#12 file. The
//! journeys: a caseworker's lookup, a request approved by the owner in
//! another profile, a query downloaded as CSV, the performance report.
//! `tests/run` installs Chromium and playwright-core; under `CI=true` a
//! missing browser or driver fails this test. With
//! `EXCHANGE_SCREENSHOTS=docs/console` it also saves the main pages.

use std::path::{Path, PathBuf};
use std::process::Command;

use exchange_proto::v1 as pb;
use exchange_testkit::ClusterBuilder;

const PASSWORD: &str = "browser-test-password";

/// Node, Chromium and playwright-core, or why not.
fn browser_tools(dir: &Path) -> Result<(), String> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        return Err(format!(
            "{chromium} is missing (apt-get install chromium; tests/run does this)"
        ));
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Err("node is missing (apt-get install nodejs)".into());
    }
    if !dir.join("node_modules/playwright-core").exists() {
        return Err(format!(
            "playwright-core is missing: cd {} && npm ci (tests/run does this)",
            dir.display()
        ));
    }
    Ok(())
}

/// A member's certificate as the PKCS#12 file a browser imports.
fn export(cert_dir: &Path, name: &str, out: &Path) -> PathBuf {
    let read = |file: &str, label: &str| {
        exchange_pki::files::read_pem_der(&cert_dir.join(file), label).unwrap()
    };
    let bytes = exchange_pki::pkcs12::to_pkcs12(
        name,
        &read(&format!("{name}.key"), "PRIVATE KEY"),
        &read(&format!("{name}.crt"), "CERTIFICATE"),
        &read("ca.crt", "CERTIFICATE"),
        PASSWORD,
    )
    .unwrap();
    std::fs::write(out, bytes).unwrap();
    out.to_path_buf()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_main_journeys_in_headless_chromium() {
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    if let Err(why) = browser_tools(&scripts) {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("the browser test cannot run: {why}");
        }
        eprintln!("SKIPPED the browser test (not under CI=true): {why}");
        return;
    }
    let cluster = ClusterBuilder::new()
        .add_node("civil-affairs")
        .add_node("vehicle-admin")
        .add_node("real-estate")
        .add_node("tax")
        .start()
        .await
        .unwrap();
    for dataset in ["vehicle-admin/vehicles", "real-estate/properties"] {
        cluster
            .grant("civil-affairs", dataset, &[], pb::ApproveRequest::default())
            .await
            .unwrap();
    }
    let files = tempfile::tempdir().unwrap();
    let caseworker = export(
        &cluster.member_dir("civil-affairs"),
        "client",
        &files.path().join("civil.p12"),
    );
    let owner = export(
        &cluster.member_dir("tax"),
        "client",
        &files.path().join("tax.p12"),
    );
    let bureau = export(
        &cluster.pki_out.join("bureau"),
        "admin",
        &files.path().join("bureau.p12"),
    );
    let url = format!(
        "https://127.0.0.1:{}",
        cluster.coordinator.console_addr.unwrap().port()
    );
    let mut node = Command::new("node");
    node.arg(scripts.join("journeys.mjs"))
        .current_dir(&scripts)
        .env("CONSOLE_URL", &url)
        .env("P12_PASSWORD", PASSWORD)
        .env("PERSON_ID", &cluster.planted.official_person_id)
        .env("CASEWORKER_P12", caseworker)
        .env("OWNER_P12", owner)
        .env("BUREAU_P12", bureau);
    if let Ok(dir) = std::env::var("EXCHANGE_SCREENSHOTS") {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        node.env("SCREENSHOTS", dir);
    }
    let out = tokio::task::spawn_blocking(move || node.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser journeys failed:\n{stdout}\n{stderr}"
    );
    for journey in [
        "ok caseworker lookup",
        "ok request approved by the owner",
        "ok query downloaded as CSV",
        "ok performance report",
        "ok cross-site changes refused",
    ] {
        assert!(stdout.contains(journey), "{journey} missing:\n{stdout}");
    }
    cluster.shutdown().await;
}
