//! A generic gRPC command line against the coordinator and a node, with no
//! proto file at hand: `buf curl` (npm package `@bufbuild/buf`, installed
//! by `tests/run` into `tests/browser/node_modules`) learns every service
//! and message through server reflection, as `grpcurl` does. Under
//! `CI=true` a missing tool fails this test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine as _;
use exchange_proto::v1 as pb;
use exchange_testkit::servers::required;
use exchange_testkit::ClusterBuilder;

fn buf_binary() -> anyhow::Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    let buf = dir.join("node_modules/.bin/buf");
    anyhow::ensure!(
        buf.exists(),
        "{} is missing: cd {} && npm ci (tests/run does this)",
        buf.display(),
        dir.display()
    );
    Ok(buf)
}

/// `buf curl` over gRPC with the member's analyst certificate.
fn curl(buf: &Path, cert_dir: &Path, url: &str, args: &[&str]) -> Output {
    let file = |name: &str| cert_dir.join(name).display().to_string();
    Command::new(buf)
        .args(["curl", "--protocol", "grpc", "--timeout", "20s"])
        .args(["--cacert", &file("ca.crt")])
        .args(["--cert", &file("client.crt"), "--key", &file("client.key")])
        .args(args)
        .arg(url)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buf_curl_lists_and_calls_services_through_reflection() {
    let Some(buf) = required("buf curl (npm @bufbuild/buf)", buf_binary()) else {
        return;
    };
    let cluster = ClusterBuilder::new()
        .add_node("public-security")
        .add_node("civil-affairs")
        .start()
        .await
        .unwrap();
    let dataset = "public-security/household-registration";
    cluster
        .grant("civil-affairs", dataset, &[], pb::ApproveRequest::default())
        .await
        .unwrap();
    let certs = cluster.member_dir("civil-affairs");
    let coordinator = format!("https://{}", cluster.coordinator.addr);

    let listed = curl(&buf, &certs, &coordinator, &["--list-services"]);
    assert!(listed.status.success(), "{}", text(&listed));
    let services = String::from_utf8_lossy(&listed.stdout);
    for service in [
        "exchange.v1.Access",
        "exchange.v1.Audit",
        "exchange.v1.Catalog",
        "exchange.v1.Disputes",
        "exchange.v1.Lookups",
        "grpc.health.v1.Health",
    ] {
        assert!(
            services.lines().any(|l| l == service),
            "{service} in {services}"
        );
    }

    // A call built from the reflected schema alone, answered as JSON.
    let search = format!("{coordinator}/exchange.v1.Catalog/Search");
    let found = curl(&buf, &certs, &search, &["-d", r#"{"text":"户籍"}"#]);
    assert!(found.status.success(), "{}", text(&found));
    let body: serde_json::Value = serde_json::from_slice(&found.stdout).unwrap();
    let names: Vec<&str> = body["hits"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|hit| hit["dataset"]["id"].as_str())
        .collect();
    assert!(names.contains(&dataset), "{body}");

    // Typed fields come through: the grant's state is an enum name.
    let grants = format!("{coordinator}/exchange.v1.Access/ListGrants");
    let listed = curl(&buf, &certs, &grants, &["-d", "{}"]);
    assert!(listed.status.success(), "{}", text(&listed));
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("GRANT_STATE_ACTIVE"), "{listed}");

    // A refusal keeps its code and its reason.
    let lookup = format!("{coordinator}/exchange.v1.Lookups/Lookup");
    let person = cluster.planted.official_person_id.clone();
    let request = format!(r#"{{"keyType":"person_id","key":"{person}"}}"#);
    let refused = curl(&buf, &certs, &lookup, &["-d", &request]);
    assert!(!refused.status.success());
    let refusal: serde_json::Value = serde_json::from_slice(&refused.stderr)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&refused)));
    assert_eq!(refusal["code"], "invalid_argument", "{refusal}");
    let detail = &refusal["details"][0];
    assert_eq!(detail["type"], "google.rpc.ErrorInfo", "{refusal}");
    // buf curl prints the detail as base64 bytes: they hold the reason
    // and the domain.
    let bytes = STANDARD_NO_PAD
        .decode(detail["value"].as_str().unwrap().trim_end_matches('='))
        .unwrap();
    let info = String::from_utf8_lossy(&bytes);
    assert!(info.contains("PURPOSE_REQUIRED"), "{info}");
    assert!(info.contains("exchange.v1"), "{info}");

    // The node's client-facing services reflect too.
    let node = format!("https://{}", cluster.nodes["public-security"].addr);
    let listed = curl(&buf, &certs, &node, &["--list-services"]);
    assert!(listed.status.success(), "{}", text(&listed));
    let services = String::from_utf8_lossy(&listed.stdout);
    assert!(
        services.lines().any(|l| l == "exchange.v1.Node"),
        "{services}"
    );
    cluster.shutdown().await;
}
