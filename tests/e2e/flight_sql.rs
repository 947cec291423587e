//! Analysts' own tools against the coordinator: ADBC's Flight SQL driver
//! (the protocol DBeaver, JDBC and BI tools speak) and pyarrow's plain
//! Flight client, installed by `tests/run`. Under CI=true a missing client
//! fails this test; it never skips.

use std::io::Write;
use std::process::Command;

use exchange_audit::{Event, Record};
use exchange_proto::v1 as pb;
use exchange_testkit::servers::required;
use exchange_testkit::ClusterBuilder;

use crate::pyarrow::python_can_import;
use serde_json::{json, Value};

fn run_clients(job: &Value) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/e2e/flight_sql_clients.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let body = job.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(body.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn error_of(step: &Value) -> &str {
    step["error"]
        .as_str()
        .unwrap_or_else(|| panic!("expected a refusal: {step}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adbc_and_pyarrow_query_through_flight_sql_and_plain_flight() {
    let modules = "adbc_driver_flightsql.dbapi, pyarrow.flight, grpc_reflection";
    if required("ADBC Flight SQL and pyarrow", python_can_import(modules)).is_none() {
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
    let official = cluster.planted.official_person_id.clone();
    let huge = format!(
        "SELECT * FROM tax.taxpayers WHERE x = '{}'",
        "x".repeat(10 << 20)
    );
    let sql = [
        format!("SELECT person_id, birth_date FROM \"public-security\".\"household-registration\" WHERE person_id = '{official}'"),
        "SELECT * FROM \"real-estate\".\"leases\" LIMIT 5".to_string(),
        "SELECT person_id FROM \"public-security\".\"household-registration\" WHERE person_id = 'x'' OR ''1''=''1'".to_string(),
        "SELECT landlord_id FROM \"real-estate\".\"leases\"".to_string(),
        "SELECT * FROM \"real-estate\".\"properties\"".to_string(),
        "DELETE FROM \"real-estate\".\"leases\"".to_string(),
        "SELECT * FROM \"real-estate\".\"leases\"; DROP TABLE leases".to_string(),
        "SELECT count(*) FROM \"real-estate\".\"leases\"".to_string(),
        huge,
    ];
    let job = json!({
        "address": cluster.coordinator.addr.to_string(),
        "cert_dir": cluster.member_dir("civil-affairs"),
        "purpose": "低保家庭财产核查",
        "sql": sql,
        "table": ["public-security", "household-registration"],
        "path": ["public-security", "household-registration"],
        "node_address": cluster.nodes["public-security"].addr.to_string(),
    });
    let out = run_clients(&job);

    // The catalog: one schema per department, one table per dataset, with
    // the types this grant delivers (a year-masked date is an int32).
    let tables = out["catalog"]["tables"].as_array().unwrap();
    assert!(
        tables.contains(&json!(["exchange", "real-estate", "leases"])),
        "{tables:?}"
    );
    let schema = &out["catalog"]["schema"];
    assert_eq!(schema["birth_date"], "int32", "{schema}");
    assert_eq!(schema["person_id"], "string", "{schema}");

    let steps = out["sql"].as_array().unwrap();
    // A masked single-key SELECT.
    assert_eq!(
        steps[0]["columns"],
        json!(["person_id", "birth_date"]),
        "{}",
        steps[0]
    );
    assert_eq!(steps[0]["types"], json!(["string", "int32"]));
    assert_eq!(steps[0]["rows"], 1, "{}", steps[0]);
    let masked = steps[0]["first"]["person_id"].as_str().unwrap();
    assert_eq!(
        masked,
        format!("{}********{}", &official[..6], &official[14..])
    );
    // SELECT * leaves the secret field out.
    assert_eq!(steps[1]["rows"], 5, "{}", steps[1]);
    let columns = steps[1]["columns"].as_array().unwrap();
    assert!(!columns.contains(&json!("landlord_id")), "{columns:?}");
    assert!(columns.contains(&json!("tenant_id")), "{columns:?}");
    // An injection attempt is one literal that matches nothing.
    assert_eq!(steps[2]["rows"], 0, "{}", steps[2]);
    // Refusals, each naming what is wrong.
    assert!(
        error_of(&steps[3]).contains("outside grant"),
        "{}",
        steps[3]
    );
    assert!(
        error_of(&steps[4]).contains("grant required"),
        "{}",
        steps[4]
    );
    assert!(error_of(&steps[5]).contains("only reads"), "{}", steps[5]);
    assert!(error_of(&steps[6]).contains("2 statements"), "{}", steps[6]);
    assert!(error_of(&steps[7]).contains("aggregates"), "{}", steps[7]);
    let big = error_of(&steps[8]);
    assert!(
        big.contains("bytes") || big.contains("message larger"),
        "{big}"
    );
    // Without a purpose header, the refusal says how to give one.
    let nameless = error_of(&out["without_purpose"]);
    assert!(nameless.contains("x-exchange-purpose"), "{nameless}");

    // Plain Flight: the schema before any row, the grants as flights, a
    // path descriptor with its purpose in a header.
    let f = &out["flight"];
    assert_eq!(f["get_schema"]["birth_date"], "int32", "{f}");
    let flights = f["list_flights"].as_array().unwrap();
    assert_eq!(flights.len(), 2, "{flights:?}");
    assert!(flights
        .iter()
        .any(|x| x[0] == "real-estate/leases" && x[1].as_u64() > Some(3)));
    let no_purpose = f["path_without_purpose"].as_str().unwrap();
    assert!(no_purpose.contains("x-exchange-purpose"), "{no_purpose}");
    assert_eq!(f["path_query"]["same_schema"], true, "{f}");
    assert!(f["path_query"]["rows"].as_u64() > Some(0), "{f}");
    let garbage = f["garbage_command"].as_str().unwrap();
    assert!(
        garbage.contains("neither a JSON query command"),
        "{garbage}"
    );

    // gRPC server reflection lists every service, without proto files.
    let coordinator = &out["reflection"]["coordinator"];
    for service in [
        "exchange.v1.Access",
        "exchange.v1.Audit",
        "exchange.v1.Catalog",
        "grpc.health.v1.Health",
        "file:exchange/v1/control.proto",
    ] {
        assert!(
            coordinator.as_array().unwrap().contains(&json!(service)),
            "{service} in {coordinator}"
        );
    }
    let node = &out["reflection"]["node"];
    assert!(
        node.as_array()
            .unwrap()
            .contains(&json!("exchange.v1.Node")),
        "{node}"
    );

    // The SQL queries were decided and logged like any other, with the
    // purpose and user from the call headers.
    let state = &cluster.coordinator.state;
    state.audit.checkpoint().await.unwrap();
    let mut decisions = Vec::new();
    exchange_audit::read::scan_roots(&state.audit.roots(), |_, r: Record| {
        if let Event::QueryDecision(d) = r.event {
            decisions.push(d);
        }
        true
    })
    .unwrap();
    let sql_decision = decisions
        .iter()
        .find(|d| d.dataset == "public-security/household-registration" && d.allowed)
        .expect("the SELECT's decision record");
    assert_eq!(sql_decision.purpose, "低保家庭财产核查");
    assert_eq!(sql_decision.user, "ADBC 测试员");
    assert!(decisions
        .iter()
        .any(|d| d.dataset == "real-estate/properties" && !d.allowed));
    cluster.shutdown().await;
}
