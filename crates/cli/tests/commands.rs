//! The commands as a user types them, against a federation started in
//! this process: analyst search and show (tables and JSON), the bureau's
//! member add / token / revoke / list, analyst enrolment with `exchange
//! enroll`, and `exchange-node check` on a broken manifest.

use std::path::Path;
use std::process::{Command, Output};

use exchange_testkit::ClusterBuilder;

fn run(bin: &str, args: &[&str]) -> Output {
    let path = match bin {
        "exchange" => env!("CARGO_BIN_EXE_exchange"),
        "coordinator" => env!("CARGO_BIN_EXE_coordinator"),
        _ => env!("CARGO_BIN_EXE_exchange-node"),
    };
    Command::new(path)
        .args(args)
        .env_remove("EXCHANGE_CONFIG")
        .output()
        .expect("binary runs")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn fails(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "unexpectedly succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr.clone()).unwrap()
}

fn line_after(text: &str, marker: &str) -> String {
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        if l.starts_with(marker) {
            return lines.next().unwrap().trim().to_string();
        }
    }
    panic!("no {marker:?} in {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyst_and_bureau_commands() {
    let cluster = ClusterBuilder::new()
        .add_node("vehicle-admin")
        .add_node("real-estate")
        .start()
        .await
        .unwrap();
    let config = cluster.member_dir("vehicle-admin").join("exchange.toml");
    let config = config.to_str().unwrap();

    let table = ok(&run(
        "exchange",
        &["--config", config, "catalog", "search", "机动车"],
    ));
    assert!(
        table.contains("vehicle-admin/vehicles") && table.contains("机动车登记信息"),
        "{table}"
    );
    assert!(table.contains("1 of 1"), "{table}");

    let json: serde_json::Value = serde_json::from_str(&ok(&run(
        "exchange",
        &["--config", config, "--json", "catalog", "search", "登记"],
    )))
    .unwrap();
    let found: Vec<&str> = json["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["dataset"]["id"].as_str().unwrap())
        .collect();
    assert!(
        found.contains(&"vehicle-admin/vehicles") && found.contains(&"real-estate/properties"),
        "{found:?}"
    );

    let filtered = ok(&run(
        "exchange",
        &[
            "--config",
            config,
            "--json",
            "catalog",
            "search",
            "--department",
            "real-estate",
            "--key-type",
            "person_id",
        ],
    ));
    let v: serde_json::Value = serde_json::from_str(&filtered).unwrap();
    assert_eq!(v["total"], 2);

    let show = ok(&run(
        "exchange",
        &["--config", config, "catalog", "show", "real-estate/leases"],
    ));
    assert!(
        show.contains("landlord_id") && show.contains("secret"),
        "{show}"
    );
    let missing = fails(&run(
        "exchange",
        &["--config", config, "catalog", "show", "real-estate/nothing"],
    ));
    assert!(missing.contains("not found"), "{missing}");

    let members: serde_json::Value = serde_json::from_str(&ok(&run(
        "exchange",
        &["--config", config, "--json", "members", "list"],
    )))
    .unwrap();
    assert_eq!(members.as_array().unwrap().len(), 2);
    assert_eq!(members[0]["node"]["online"], true);

    // The bureau adds a department, issues an analyst token, the analyst enrols.
    let pki = cluster.coordinator_config.pki_dir();
    let pki = pki.to_str().unwrap();
    let addr = cluster.coordinator.addr.to_string();
    let added = ok(&run(
        "coordinator",
        &[
            "--pki-dir",
            pki,
            "member",
            "add",
            "science",
            "--name",
            "科学技术局",
            "--coordinator",
            &addr,
        ],
    ));
    let fingerprint = line_after(&added, "CA fingerprint");
    assert_eq!(fingerprint, cluster.ca_fingerprint);
    let again = fails(&run(
        "coordinator",
        &[
            "--pki-dir",
            pki,
            "member",
            "add",
            "science",
            "--name",
            "x",
            "--coordinator",
            &addr,
        ],
    ));
    assert!(again.contains("already exists"), "{again}");
    let token_out = ok(&run(
        "coordinator",
        &[
            "--pki-dir",
            pki,
            "member",
            "token",
            "science",
            "--role",
            "client",
            "--coordinator",
            &addr,
        ],
    ));
    let token = token_out
        .lines()
        .find(|l| l.trim().starts_with("xt_"))
        .unwrap()
        .trim()
        .to_string();
    let dir = cluster.dir.join("science-analyst");
    let enrol_addr = cluster.coordinator.enroll_addr.to_string();
    let dir_s = dir.to_str().unwrap();
    // The command the bureau is shown names the real enrolment address, and
    // works as printed (with the analyst's own directory and name added).
    let printed = line_after(&token_out, "enrol with:");
    assert_eq!(
        printed,
        format!("exchange enroll --coordinator {enrol_addr} --token {token} --ca-fingerprint {fingerprint}")
    );
    let mut args: Vec<&str> = printed.split_whitespace().skip(1).collect();
    args.extend_from_slice(&["--dir", dir_s, "--user", "李研究员"]);
    ok(&run("exchange", &args));
    let reused = fails(&run(
        "exchange",
        &[
            "enroll",
            "--coordinator",
            &enrol_addr,
            "--token",
            &token,
            "--ca-fingerprint",
            &fingerprint,
            "--dir",
            &format!("{dir_s}2"),
        ],
    ));
    assert!(reused.contains("already used"), "{reused}");
    let science_config = dir.join("exchange.toml");
    let science_config = science_config.to_str().unwrap();
    let whoami = ok(&run("exchange", &["--config", science_config, "whoami"]));
    assert!(whoami.starts_with("exchange://science/client"), "{whoami}");
    assert!(std::fs::read_to_string(dir.join("exchange.toml"))
        .unwrap()
        .contains("李研究员"));

    // Revoke: the analyst is refused from the command line with a clear reason.
    let revoked = ok(&run(
        "coordinator",
        &[
            "--pki-dir",
            pki,
            "member",
            "revoke",
            "science",
            "--reason",
            "test",
            "--coordinator",
            &addr,
        ],
    ));
    assert!(revoked.contains("1 certificate(s)"), "{revoked}");
    let refused = fails(&run(
        "exchange",
        &["--config", science_config, "catalog", "search", "登记"],
    ));
    assert!(refused.contains("revoked"), "{refused}");
    let list = ok(&run(
        "coordinator",
        &["--pki-dir", pki, "member", "list", "--coordinator", &addr],
    ));
    assert!(
        list.contains("science") && list.contains("revoked"),
        "{list}"
    );

    // An analyst cannot use the bureau's commands (no admin key), and a node cannot pretend to be one.
    let not_admin = fails(&run(
        "coordinator",
        &[
            "--pki-dir",
            cluster.member_dir("vehicle-admin").to_str().unwrap(),
            "member",
            "list",
            "--coordinator",
            &addr,
        ],
    ));
    assert!(not_admin.contains("admin"), "{not_admin}");

    cluster.shutdown().await;
}

#[test]
fn node_check_reports_every_problem_with_file_key_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(exchange_demo_data::generate(
        dir.path(),
        &exchange_demo_data::Options {
            persons: 1_000,
            seed: 3,
        },
    ))
    .unwrap();
    let manifest = dir.path().join("vehicle-admin.toml");
    let good = ok(&run(
        "exchange-node",
        &["check", "--manifest", manifest.to_str().unwrap()],
    ));
    assert!(good.contains("valid"), "{good}");
    // The demo databases index every column that carries a key.
    for department in [
        "civil-affairs",
        "education",
        "electricity",
        "hrss",
        "market-regulation",
        "public-security",
        "real-estate",
        "tax",
        "vehicle-admin",
    ] {
        let path = dir.path().join(format!("{department}.toml"));
        let out = ok(&run(
            "exchange-node",
            &["check", "--manifest", path.to_str().unwrap()],
        ));
        assert!(!out.contains("warning"), "{department}: {out}");
    }
    // A key column without an index serves, with a warning that names the
    // field and the fix; an index that does not start with it is no help.
    rt.block_on(async {
        use sqlx::Connection;
        let url = format!("sqlite://{}", dir.path().join("vehicle-admin.db").display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        for sql in [
            "DROP INDEX idx_vehicles_owner",
            "CREATE INDEX idx_vehicles_brand_owner ON vehicles (brand, owner_id)",
        ] {
            sqlx::query(sql).execute(&mut conn).await.unwrap();
        }
    });
    let warned = ok(&run(
        "exchange-node",
        &["check", "--manifest", manifest.to_str().unwrap()],
    ));
    assert!(warned.contains("valid"), "{warned}");
    let warnings: Vec<&str> = warned
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{warned}");
    assert!(
        warnings[0].contains("field owner_id carries person_id keys")
            && warnings[0].contains("CREATE INDEX ON vehicles (owner_id)"),
        "{warned}"
    );
    let text = std::fs::read_to_string(&manifest).unwrap();
    let broken = text
        .replace("name = \"brand\"", "name = \"brand_name\"")
        .replace(
            "name = \"registered_on\"\ntype = \"date\"",
            "name = \"registered_on\"\ntype = \"integer\"",
        );
    let bad = Path::new(dir.path()).join("broken.toml");
    std::fs::write(&bad, broken).unwrap();
    let err = fails(&run(
        "exchange-node",
        &["check", "--manifest", bad.to_str().unwrap()],
    ));
    assert!(err.contains("broken.toml"), "{err}");
    assert!(
        err.contains("\"brand_name\" does not exist") && err.contains("use one of"),
        "{err}"
    );
    assert!(err.contains("set type = \"date\""), "{err}");
    assert!(err.contains("2 problem(s)"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_pki_writes_a_usable_recorded_pki() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("certs-dev");
    let state = dir.path().join("state");
    let printed = ok(&run(
        "coordinator",
        &[
            "--data-dir",
            state.to_str().unwrap(),
            "dev-pki",
            "--out",
            out.to_str().unwrap(),
            "--member",
            "tax=税务局",
            "--member",
            "education=教育局",
        ],
    ));
    assert!(printed.contains("CA fingerprint"), "{printed}");
    for key in [
        "bureau/ca.key",
        "bureau/admin.key",
        "bureau/coordinator.key",
        "tax/node.key",
        "tax/client.key",
        "education/node.key",
    ] {
        let mode = std::fs::metadata(out.join(key))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }
    let node = exchange_transport::TlsIdentity::load(&out.join("tax"), "node").unwrap();
    assert_eq!(node.identity().uri(), "exchange://tax/node");
    // A second run refuses to overwrite the CA.
    let again = fails(&run(
        "coordinator",
        &[
            "--data-dir",
            state.to_str().unwrap(),
            "dev-pki",
            "--out",
            out.to_str().unwrap(),
        ],
    ));
    assert!(again.contains("refusing to overwrite"), "{again}");
    // The coordinator started on that state knows both members and their certificates.
    let config = exchange_coordinator::CoordinatorConfig {
        data_dir: state.clone(),
        pki_dir: Some(out.join("bureau")),
        listen: "127.0.0.1:0".into(),
        enroll_listen: "127.0.0.1:0".into(),
        ..Default::default()
    };
    let coordinator = exchange_coordinator::start(&config).await.unwrap();
    let addr = coordinator.addr.to_string();
    let list = ok(&run(
        "coordinator",
        &[
            "--pki-dir",
            out.join("bureau").to_str().unwrap(),
            "member",
            "list",
            "--json",
            "--coordinator",
            &addr,
        ],
    ));
    let members: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(members.as_array().unwrap().len(), 2);
    assert!(
        members
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["status"] == "active" && m["certificates"] == 2),
        "{members}"
    );
    // Revoking a dev member refuses its dev certificate.
    ok(&run(
        "coordinator",
        &[
            "--pki-dir",
            out.join("bureau").to_str().unwrap(),
            "member",
            "revoke",
            "tax",
            "--coordinator",
            &addr,
        ],
    ));
    let tax = exchange_client::Client::connect(
        &addr,
        &exchange_transport::TlsIdentity::load(&out.join("tax"), "client").unwrap(),
    )
    .await
    .unwrap();
    assert!(tax
        .who_am_i()
        .await
        .unwrap_err()
        .to_string()
        .contains("revoked"));
    coordinator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_requests_and_the_owners_decisions() {
    let cluster = ClusterBuilder::new()
        .add_node("vehicle-admin")
        .add_node("tax")
        .add_node("education")
        .add_node("civil-affairs")
        .start()
        .await
        .unwrap();
    let cfg = |m: &str| {
        cluster
            .member_dir(m)
            .join("exchange.toml")
            .to_str()
            .unwrap()
            .to_string()
    };
    let (civil, vehicles, tax) = (cfg("civil-affairs"), cfg("vehicle-admin"), cfg("tax"));
    let json = |out: &str| -> serde_json::Value { serde_json::from_str(out).unwrap() };

    // Unconditional: granted at once, every non-secret field with its default mask.
    let r = json(&ok(&run(
        "exchange",
        &[
            "--config",
            &civil,
            "--json",
            "access",
            "request",
            "tax/taxpayers",
            "--purpose",
            "企业信息核验",
        ],
    )));
    assert_eq!(r[0]["status"], "granted", "{r}");
    // None: refused with the owner's basis.
    let r = ok(&run(
        "exchange",
        &[
            "--config",
            &civil,
            "access",
            "request",
            "education/enrolment-applications",
            "--purpose",
            "核查",
        ],
    ));
    assert!(r.contains("refused") && r.contains("个人信息保护法"), "{r}");
    // Secret fields are never requestable; a purpose is mandatory.
    let e = fails(&run(
        "exchange",
        &[
            "--config",
            &civil,
            "access",
            "request",
            "real-estate/leases",
            "--purpose",
            "x",
        ],
    ));
    assert!(e.contains("not found"), "{e}");
    let e = fails(&run(
        "exchange",
        &[
            "--config",
            &civil,
            "access",
            "request",
            "vehicle-admin/vehicles",
            "--purpose",
            " ",
        ],
    ));
    assert!(e.contains("purpose is required"), "{e}");
    let e = fails(&run(
        "exchange",
        &[
            "--config",
            &civil,
            "access",
            "request",
            "vehicle-admin/vehicles",
            "--fields",
            "plate_no,engine",
            "--purpose",
            "x",
        ],
    ));
    assert!(e.contains("no field \"engine\""), "{e}");

    // Conditional: waits for the owner.
    let r = json(&ok(&run(
        "exchange",
        &[
            "--config",
            &civil,
            "--json",
            "access",
            "request",
            "vehicle-admin/vehicles",
            "--fields",
            "plate_no,owner_id,owner_name",
            "--purpose",
            "低保家庭财产核查",
            "--basis",
            "《社会救助暂行办法》第十一条",
            "--until",
            "2028-12-31",
        ],
    )));
    assert_eq!(r[0]["status"], "pending");
    let id = r[0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        r[0]["user"], "civil-affairs analyst",
        "the asserted user from exchange.toml"
    );
    let pending = ok(&run(
        "exchange",
        &["--config", &vehicles, "access", "pending"],
    ));
    assert!(
        pending.contains(&id) && pending.contains("低保家庭财产核查"),
        "{pending}"
    );
    assert!(
        ok(&run("exchange", &["--config", &tax, "access", "pending"]))
            .contains("no access requests")
    );

    // Only the owner decides; an approval can narrow but never widen.
    let e = fails(&run(
        "exchange",
        &["--config", &tax, "access", "approve", &id],
    ));
    assert!(e.contains("only its owner decides"), "{e}");
    let e = fails(&run(
        "exchange",
        &[
            "--config",
            &vehicles,
            "access",
            "approve",
            &id,
            "--fields",
            "plate_no,vin",
        ],
    ));
    assert!(e.contains("never widen"), "{e}");
    let e = fails(&run(
        "exchange",
        &[
            "--config", &vehicles, "access", "refuse", &id, "--reason", "",
        ],
    ));
    assert!(e.contains("reason"), "{e}");
    let done = ok(&run(
        "exchange",
        &[
            "--config",
            &vehicles,
            "access",
            "approve",
            &id,
            "--fields",
            "plate_no,owner_id",
            "--unmask",
            "owner_id",
            "--row-filter",
            "plate_no LIKE '粤E%'",
            "--quota-rows-per-day",
            "5000",
        ],
    ));
    assert!(done.contains("granted as G-"), "{done}");
    let e = fails(&run(
        "exchange",
        &[
            "--config", &vehicles, "access", "refuse", &id, "--reason", "late",
        ],
    ));
    assert!(e.contains("already granted"), "{e}");

    // Both sides see the grant and the decision.
    let grants = json(&ok(&run(
        "exchange",
        &["--config", &civil, "--json", "access", "grants"],
    )));
    let g = grants
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["dataset"] == "vehicle-admin/vehicles")
        .unwrap()
        .clone();
    assert_eq!(
        g["fields"],
        serde_json::json!([{"name": "plate_no", "mask": "none"}, {"name": "owner_id", "mask": "none"}])
    );
    assert_eq!(g["row_filter"], "plate_no LIKE '粤E%'");
    assert_eq!(g["until"], "2028-12-31");
    assert_eq!(g["quota_rows_per_day"], 5000);
    let listed = ok(&run("exchange", &["--config", &vehicles, "access", "list"]));
    assert!(
        listed.contains("exchange://vehicle-admin/client"),
        "{listed}"
    );

    // A refusal with its reason.
    let r = json(&ok(&run(
        "exchange",
        &[
            "--config",
            &civil,
            "--json",
            "access",
            "request",
            "vehicle-admin/vehicles",
            "--purpose",
            "again",
        ],
    )));
    let second = r[0]["id"].as_str().unwrap().to_string();
    let refused = ok(&run(
        "exchange",
        &[
            "--config",
            &vehicles,
            "access",
            "refuse",
            &second,
            "--reason",
            "用途与数据不相关",
        ],
    ));
    assert!(refused.contains("refused: 用途与数据不相关"), "{refused}");

    // Revocation: the owner only.
    let grant_id = g["id"].as_str().unwrap();
    let e = fails(&run(
        "exchange",
        &["--config", &civil, "access", "revoke", grant_id],
    ));
    assert!(e.contains("only its owner"), "{e}");
    assert!(ok(&run(
        "exchange",
        &[
            "--config",
            &vehicles,
            "access",
            "revoke",
            grant_id,
            "--reason",
            "purpose fulfilled"
        ]
    ))
    .contains("revoked"));
    let grants = json(&ok(&run(
        "exchange",
        &["--config", &civil, "--json", "access", "grants"],
    )));
    assert!(grants
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["id"] == grant_id
            && g["status"] == "revoked"
            && g["revocation_reason"] == "purpose fulfilled"
            && g["revoked_by"].as_str().unwrap().contains("vehicle-admin")));
    // The consumer's table says why too.
    let table = ok(&run("exchange", &["--config", &civil, "access", "grants"]));
    assert!(table.contains("purpose fulfilled"), "{table}");

    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_from_the_command_line_in_every_format() {
    let cluster = ClusterBuilder::new()
        .add_node("tax")
        .add_node("market-regulation")
        .start()
        .await
        .unwrap();
    let cfg = cluster
        .member_dir("market-regulation")
        .join("exchange.toml");
    let cfg = cfg.to_str().unwrap();
    // tax/taxpayers is unconditional: the request is granted at once.
    ok(&run(
        "exchange",
        &[
            "--config",
            cfg,
            "access",
            "request",
            "tax/taxpayers",
            "--purpose",
            "登记信息比对",
        ],
    ));
    let code = &cluster.planted.address_conflicts[0];
    let filter = format!("org_code = '{code}'");

    let table = ok(&run(
        "exchange",
        &[
            "--config",
            cfg,
            "query",
            "tax/taxpayers",
            "--fields",
            "org_code,name,legal_rep_id",
            "--where",
            &filter,
            "--purpose",
            "登记信息比对",
        ],
    ));
    assert!(
        table.contains(code.as_str()) && table.contains("1 row(s)"),
        "{table}"
    );
    // The global --json means JSON lines for a query too; with another
    // --format it is refused, naming both.
    let query = |extra: &[&str]| {
        let mut args = vec![
            "--config",
            cfg,
            "query",
            "tax/taxpayers",
            "--fields",
            "org_code,name",
        ];
        args.extend_from_slice(&["--where", &filter, "--purpose", "登记信息比对"]);
        args.extend_from_slice(extra);
        run("exchange", &args)
    };
    let lines = ok(&query(&["--json"]));
    let row: serde_json::Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert_eq!(row["org_code"], code.as_str(), "{lines}");
    let e = fails(&query(&["--json", "--format", "csv"]));
    assert!(
        e.contains("--json asks for JSON lines") && e.contains("--format csv"),
        "{e}"
    );
    // The same company looked up across every granted dataset carrying org_code.
    let found = ok(&run(
        "exchange",
        &[
            "--config",
            cfg,
            "lookup",
            "--org-code",
            code,
            "--purpose",
            "登记信息比对",
        ],
    ));
    assert!(
        found.contains("== tax/taxpayers (tax), matched on org_code: ok, 1 row(s)"),
        "{found}"
    );
    assert!(found.contains("1 of 1 datasets answered"), "{found}");
    let json: serde_json::Value = serde_json::from_str(&ok(&run(
        "exchange",
        &[
            "--config",
            cfg,
            "--json",
            "lookup",
            "--org-code",
            code,
            "--purpose",
            "x",
        ],
    )))
    .unwrap();
    assert_eq!(json["answers"][0]["rows"][0]["org_code"], code.as_str());
    let mut bad = code.clone();
    bad.pop();
    bad.push('#');
    let e = fails(&run(
        "exchange",
        &[
            "--config",
            cfg,
            "lookup",
            "--org-code",
            &bad,
            "--purpose",
            "x",
        ],
    ));
    assert!(e.contains("unified social credit code"), "{e}");

    // A batch of codes from a file: a header, the planted conflicts, one
    // duplicate, one malformed code and a blank line.
    let codes = &cluster.planted.address_conflicts;
    let mut file_text = String::from("org_code,note\n");
    for c in codes {
        file_text.push_str(&format!("{c},x\n"));
    }
    file_text.push_str(&format!("{}\n", codes[0]));
    file_text.push_str(&format!("{bad}\n\n"));
    let keys_file = cluster.dir.join("codes.csv");
    std::fs::write(&keys_file, &file_text).unwrap();
    let rejects = cluster.dir.join("rejected.csv");
    let parquet_out = cluster.dir.join("batch.parquet");
    let batch = run(
        "exchange",
        &[
            "--config",
            cfg,
            "lookup",
            "--org-codes-file",
            keys_file.to_str().unwrap(),
            "--datasets",
            "tax/taxpayers",
            "--purpose",
            "登记信息比对",
            "--output",
            parquet_out.to_str().unwrap(),
            "--rejects",
            rejects.to_str().unwrap(),
        ],
    );
    let summary = String::from_utf8_lossy(&batch.stderr).to_string();
    assert!(batch.status.success(), "{summary}");
    let dup_line = codes.len() + 2;
    assert!(
        summary.contains(&format!(
            "{} key(s) looked up, 2 rejected, 1 blank, header \"org_code\" skipped",
            codes.len()
        )),
        "{summary}"
    );
    assert!(
        summary.contains(&format!(
            "line {dup_line}: {:?}: duplicate of line 2",
            codes[0]
        )),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("line {}: ", dup_line + 1))
            && summary.contains("unified social credit code"),
        "{summary}"
    );
    assert_eq!(
        std::fs::read_to_string(&rejects).unwrap().lines().count(),
        3
    );
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&parquet_out).unwrap(),
    )
    .unwrap()
    .build()
    .unwrap();
    let mut found = Vec::new();
    for b in reader {
        let b = b.unwrap();
        for r in 0..b.num_rows() {
            let cell = |c: usize| exchange_client::values::cell(b.column(c).as_ref(), r).unwrap();
            assert_eq!(
                (cell(1).as_str(), cell(2).as_str()),
                ("tax", "tax/taxpayers")
            );
            let record: serde_json::Value = serde_json::from_str(&cell(3)).unwrap();
            assert_eq!(record["org_code"], cell(0).as_str());
            found.push(cell(0));
        }
    }
    found.sort();
    assert_eq!(&found, codes);
    // JSON lines carry the record as an object.
    let json_out = ok(&run(
        "exchange",
        &[
            "--config",
            cfg,
            "lookup",
            "--org-codes-file",
            keys_file.to_str().unwrap(),
            "--purpose",
            "登记信息比对",
            "--format",
            "json",
        ],
    ));
    let first: serde_json::Value = serde_json::from_str(json_out.lines().next().unwrap()).unwrap();
    assert_eq!(first["record"]["org_code"], first["key"]);
    assert_eq!(json_out.lines().count(), codes.len());
    // A dataset without a grant is refused before anything is read.
    let e = fails(&run(
        "exchange",
        &[
            "--config",
            cfg,
            "lookup",
            "--org-codes-file",
            keys_file.to_str().unwrap(),
            "--datasets",
            "tax/declarations",
            "--purpose",
            "x",
        ],
    ));
    assert!(
        e.contains("no active grant on \"tax/declarations\"; nothing was read"),
        "{e}"
    );
    let csv = ok(&run(
        "exchange",
        &[
            "--config",
            cfg,
            "query",
            "tax/taxpayers",
            "--fields",
            "org_code,registered_address",
            "--where",
            &filter,
            "--purpose",
            "x",
            "--format",
            "csv",
        ],
    ));
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("org_code,registered_address"));
    assert!(lines.next().unwrap().starts_with(code.as_str()));
    // A value a spreadsheet would run as a formula: exact by default,
    // neutralised with --csv-safe.
    {
        use sqlx::Connection;
        let db = cluster.dir.join("data/tax.db");
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        sqlx::query("UPDATE taxpayers SET registered_address = ? WHERE org_code = ?")
            .bind("=HYPERLINK(\"http://evil.example\",\"点我\")")
            .bind(code.as_str())
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let export = |extra: &[&str]| {
        let mut args = vec![
            "--config",
            cfg,
            "query",
            "tax/taxpayers",
            "--fields",
            "org_code,registered_address",
            "--where",
            &filter,
            "--purpose",
            "x",
            "--format",
            "csv",
        ];
        args.extend_from_slice(extra);
        run("exchange", &args)
    };
    let exact = ok(&export(&[]));
    assert!(
        exact.contains(",\"=HYPERLINK(\"\"http://evil.example\"\""),
        "{exact}"
    );
    let safe = ok(&export(&["--csv-safe"]));
    assert!(
        safe.contains(",\"'=HYPERLINK(\"\"http://evil.example\"\""),
        "{safe}"
    );
    let e = fails(&query(&["--csv-safe"]));
    assert!(e.contains("--csv-safe applies to CSV only"), "{e}");
    let out = cluster.dir.join("export.jsonl");
    let status = run(
        "exchange",
        &[
            "--config",
            cfg,
            "query",
            "tax/taxpayers",
            "--purpose",
            "x",
            "--format",
            "json",
            "--limit",
            "7",
            "--output",
            out.to_str().unwrap(),
        ],
    );
    assert!(String::from_utf8_lossy(&status.stderr).contains("7 row(s) written"));
    let text = std::fs::read_to_string(&out).unwrap();
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 7);
    // legal_rep_id carries the hash mask: 32 hex digits, never the resident id.
    assert!(
        rows.iter().all(|r| r["legal_rep_id"]
            .as_str()
            .is_some_and(|h| h.len() == 32 && h.chars().all(|c| c.is_ascii_hexdigit()))),
        "{}",
        rows[0]
    );
    let parquet = fails(&run(
        "exchange",
        &[
            "--config",
            cfg,
            "query",
            "tax/taxpayers",
            "--purpose",
            "x",
            "--format",
            "parquet",
        ],
    ));
    assert!(parquet.contains("--output"), "{parquet}");
    let file = cluster.dir.join("taxpayers.parquet");
    ok(&run(
        "exchange",
        &[
            "--config",
            cfg,
            "query",
            "tax/taxpayers",
            "--purpose",
            "x",
            "--format",
            "parquet",
            "--output",
            file.to_str().unwrap(),
        ],
    ));
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&file).unwrap(),
    )
    .unwrap();
    assert_eq!(
        reader.metadata().file_metadata().num_rows() as usize,
        cluster.planted.companies
    );
    let names: Vec<String> = reader
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert!(
        names.contains(&"org_code".to_string()) && names.contains(&"legal_rep_id".to_string()),
        "{names:?}"
    );
    let denied = fails(&run(
        "exchange",
        &[
            "--config",
            cfg,
            "query",
            "tax/declarations",
            "--purpose",
            "x",
        ],
    ));
    assert!(denied.contains("grant required"), "{denied}");

    // The audit log pages, oldest first; each page prints the command for
    // the next, with a relative --since pinned to the first page's instant.
    let mut args: Vec<String> = [
        "--config",
        cfg,
        "audit",
        "log",
        "--since",
        "1d",
        "--page-size",
        "2",
    ]
    .map(String::from)
    .to_vec();
    let mut seen = 0;
    for page in 0.. {
        let words: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = ok(&run("exchange", &words));
        seen += out.lines().filter(|l| l.contains("tax/")).count();
        let Some(next) = out
            .lines()
            .find_map(|l| l.strip_prefix("next page: exchange "))
        else {
            break;
        };
        assert!(page < 20, "the pages never end: {out}");
        assert!(next.contains("--since 20"), "{next}");
        args = ["--config", cfg].map(String::from).to_vec();
        args.extend(next.split(' ').map(String::from));
    }
    assert!(seen > 2, "more queries than one page: {seen}");
    let forged = fails(&run(
        "exchange",
        &[
            "--config",
            cfg,
            "audit",
            "log",
            "--page-size",
            "2",
            "--page-token",
            "abc.def",
        ],
    ));
    assert!(
        forged.contains("not one this coordinator issued"),
        "{forged}"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_and_conflict_reports_from_the_command_line() {
    let cluster = ClusterBuilder::new()
        .add_node("vehicle-admin")
        .add_node("tax")
        .add_node("market-regulation")
        .add_consumer("data-bureau", "数据资源管理局")
        .authoritative("registered_address", "market-regulation/companies")
        .start()
        .await
        .unwrap();
    let cfg = cluster.member_dir("data-bureau").join("exchange.toml");
    let cfg = cfg.to_str().unwrap();
    for dataset in ["tax/taxpayers", "market-regulation/companies"] {
        ok(&run(
            "exchange",
            &[
                "--config",
                cfg,
                "access",
                "request",
                dataset,
                "--purpose",
                "登记信息比对",
            ],
        ));
    }
    let report: serde_json::Value = serde_json::from_str(&ok(&run(
        "exchange",
        &[
            "--config",
            cfg,
            "--json",
            "conflicts",
            "--key",
            "org-code",
            "--attribute",
            "registered_address",
            "--datasets",
            "market-regulation/companies,tax/taxpayers",
        ],
    )))
    .unwrap();
    let keys: Vec<&str> = report["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, cluster.planted.address_conflicts);
    assert_eq!(report["sources"][0]["authoritative"], true);
    assert_eq!(report["sources"][1]["authoritative"], false);
    assert_eq!(
        report["cosmetic"].as_array().unwrap().len(),
        cluster.planted.cosmetic_address_differences.len()
    );
    let e = fails(&run(
        "exchange",
        &[
            "--config",
            cfg,
            "conflicts",
            "--key",
            "org-code",
            "--attribute",
            "legal_rep_name",
            "--datasets",
            "market-regulation/companies,tax/taxpayers",
        ],
    ));
    assert!(
        e.contains("tax/taxpayers has no field \"legal_rep_name\""),
        "{e}"
    );

    // A dispute with the tax bureau over one of the conflicting addresses.
    let code = &cluster.planted.address_conflicts[0];
    let conflict = &report["conflicts"][0]["values"];
    let filed: serde_json::Value = serde_json::from_str(&ok(&run(
        "exchange",
        &[
            "--config",
            cfg,
            "--json",
            "dispute",
            "file",
            "tax/taxpayers",
            "--key",
            code,
            "--field",
            "registered_address",
            "--value-seen",
            conflict[1]["value"].as_str().unwrap(),
            "--proposed",
            conflict[0]["value"].as_str().unwrap(),
            "--note",
            "与市场监管登记地址不一致",
        ],
    )))
    .unwrap();
    let id = filed[0]["id"].as_str().unwrap().to_string();
    assert_eq!(filed[0]["status"], "open");
    let tax_cfg = cluster.member_dir("tax").join("exchange.toml");
    let tax_cfg = tax_cfg.to_str().unwrap();
    let market_cfg = cluster
        .member_dir("market-regulation")
        .join("exchange.toml");
    let listed = ok(&run(
        "exchange",
        &["--config", tax_cfg, "dispute", "list", "--status", "open"],
    ));
    assert!(
        listed.contains(&id) && listed.contains("1 dispute(s)"),
        "{listed}"
    );
    let other = ok(&run(
        "exchange",
        &["--config", market_cfg.to_str().unwrap(), "dispute", "list"],
    ));
    assert!(other.contains("0 dispute(s)"), "{other}");
    // Only the owner decides, and with a note.
    let e = fails(&run(
        "exchange",
        &[
            "--config",
            cfg,
            "dispute",
            "resolve",
            &id,
            "--outcome",
            "rejected",
            "--note",
            "x",
        ],
    ));
    assert!(e.contains("only its owner decides"), "{e}");
    let e = fails(&run(
        "exchange",
        &[
            "--config",
            tax_cfg,
            "dispute",
            "resolve",
            &id,
            "--outcome",
            "resolved",
            "--note",
            " ",
        ],
    ));
    assert!(e.contains("note is required"), "{e}");
    ok(&run(
        "exchange",
        &[
            "--config",
            tax_cfg,
            "dispute",
            "resolve",
            &id,
            "--outcome",
            "resolved",
            "--note",
            "已按营业执照更正",
        ],
    ));
    let e = fails(&run(
        "exchange",
        &[
            "--config",
            tax_cfg,
            "dispute",
            "resolve",
            &id,
            "--outcome",
            "rejected",
            "--note",
            "x",
        ],
    ));
    assert!(e.contains("already resolved"), "{e}");
    let mine: serde_json::Value = serde_json::from_str(&ok(&run(
        "exchange",
        &["--config", cfg, "--json", "dispute", "list"],
    )))
    .unwrap();
    assert_eq!(mine[0]["status"], "resolved");
    assert_eq!(mine[0]["resolution_note"], "已按营业执照更正");
    // Both steps are in the coordinator's audit log.
    let mut steps = Vec::new();
    exchange_audit::read::scan(&cluster.dir.join("coordinator/audit"), |_, r| {
        if let exchange_audit::Event::Access(a) = r.event {
            if a.request_id == id {
                steps.push((a.action, a.status));
            }
        }
        true
    })
    .unwrap();
    assert_eq!(
        steps,
        vec![
            ("dispute-file".to_string(), "open".to_string()),
            ("dispute-resolve".to_string(), "resolved".to_string())
        ]
    );

    // A join of a local list with vehicles, granted with the owner key unmasked.
    cluster
        .grant(
            "data-bureau",
            "vehicle-admin/vehicles",
            &["owner_id", "plate_no"],
            exchange_proto::v1::ApproveRequest {
                unmask: vec!["owner_id".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let official = &cluster.planted.official_person_id;
    let dir = &cluster.dir;
    std::fs::write(
        dir.join("people.csv"),
        // Quoted values, as the exchange's own CSV output writes them.
        format!(
            "person_id,note\n{official},\"Zhang, San\"\n110101199003070000,\"say \"\"hi\"\"\"\n"
        ),
    )
    .unwrap();
    let spec = |datasets: &str| {
        format!(
            "purpose = \"车辆核查\"\nanswer = \"SELECT p.person_id, COUNT(v.plate_no) AS vehicles FROM people p LEFT JOIN vehicles v ON v.owner_id = p.person_id GROUP BY p.person_id ORDER BY vehicles DESC\"\n\n[[tables]]\nname = \"people\"\nfile = \"people.csv\"\n\n[[tables]]\nname = \"vehicles\"\ndataset = \"{datasets}\"\nfields = [\"owner_id\", \"plate_no\"]\nmatch = {{ field = \"owner_id\", keys = \"people.person_id\" }}\n"
        )
    };
    std::fs::write(dir.join("join.toml"), spec("vehicle-admin/vehicles")).unwrap();
    let out = run(
        "exchange",
        &[
            "--config",
            cfg,
            "join",
            "--spec",
            dir.join("join.toml").to_str().unwrap(),
            "--format",
            "csv",
        ],
    );
    let csv = ok(&out);
    assert_eq!(
        csv.trim(),
        format!(
            "person_id,vehicles\n{official},{}\n110101199003070000,0",
            cluster.planted.official_vehicles.len()
        )
    );
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("2 row(s) from vehicle-admin/vehicles in 1 query"));
    // Quoted CSV round-trips: the list is read with its commas and quotes,
    // and the answer is written back the same way.
    let notes = spec("vehicle-admin/vehicles").replace(
        "SELECT p.person_id, COUNT(v.plate_no) AS vehicles FROM people p LEFT JOIN vehicles v ON v.owner_id = p.person_id GROUP BY p.person_id ORDER BY vehicles DESC",
        "SELECT person_id, note FROM people ORDER BY person_id",
    );
    std::fs::write(dir.join("notes.toml"), notes).unwrap();
    let spec_path = dir.join("notes.toml");
    let args = [
        "--config",
        cfg,
        "join",
        "--spec",
        spec_path.to_str().unwrap(),
        "--format",
        "csv",
    ];
    let answer = ok(&run("exchange", &args));
    let mut expected: Vec<&str> = std::fs::read_to_string(dir.join("people.csv"))
        .unwrap()
        .leak()
        .lines()
        .collect();
    expected[1..].sort();
    assert_eq!(answer.trim().lines().collect::<Vec<_>>(), expected);
    std::fs::write(dir.join("nogrant.toml"), spec("tax/declarations")).unwrap();
    let e = fails(&run(
        "exchange",
        &[
            "--config",
            cfg,
            "join",
            "--spec",
            dir.join("nogrant.toml").to_str().unwrap(),
        ],
    ));
    assert!(
        e.contains("join refused before any data was read")
            && e.contains("no active grant on tax/declarations"),
        "{e}"
    );
    cluster.shutdown().await;
}

/// A second `exchange demo` in the directory of a running one stops before
/// it changes anything: the running federation keeps its data and its
/// department certificates.
#[test]
fn a_second_demo_stops_before_it_wipes_the_running_one() {
    /// A port free now, with the next one and the console's (+43) free too
    /// (`port + 2` could be taken by a test running beside this one).
    fn free_demo_port() -> u16 {
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        (0..100)
            .filter_map(|_| {
                let listener = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
                let p = listener.local_addr().ok()?.port();
                drop(listener);
                (p <= 65_000 && free(p) && free(p + 1) && free(p + 43)).then_some(p)
            })
            .next()
            .expect("a free port with free neighbours")
    }
    use std::io::{BufRead, BufReader};
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("demo-data");
    let certs = work.path().join("certs-dev");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .min(65_000);
    let (d, c, p) = (
        dir.to_str().unwrap(),
        certs.to_str().unwrap(),
        port.to_string(),
    );
    let mut first = Command::new(env!("CARGO_BIN_EXE_exchange"))
        .args([
            "demo",
            "--persons",
            "1000",
            "--dir",
            d,
            "--certs",
            c,
            "--port",
            &p,
        ])
        .env_remove("EXCHANGE_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut banner = BufReader::new(first.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("Press Ctrl-C") {
        line.clear();
        assert!(
            banner.read_line(&mut line).unwrap() > 0,
            "the demo ended early"
        );
    }
    let analyst = certs.join("civil-affairs/client.crt");
    let before = std::fs::read(&analyst).unwrap();

    let second_demo = |port: &str| {
        let args = [
            "demo",
            "--persons",
            "1000",
            "--dir",
            d,
            "--certs",
            c,
            "--port",
            port,
        ];
        fails(&run("exchange", &args))
    };
    // Same ports: they are taken.
    let e = second_demo(&p);
    assert!(
        e.contains("not free") && e.contains("nothing was changed"),
        "{e}"
    );
    // Other ports, same directory: the running demo holds it.
    let e = second_demo(&free_demo_port().to_string());
    assert!(
        e.contains("is running from") && e.contains("nothing was changed"),
        "{e}"
    );
    assert_eq!(std::fs::read(&analyst).unwrap(), before);
    assert!(dir.join("data").exists());

    // The running demo still answers its analysts.
    let config = certs.join("civil-affairs/exchange.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_exchange"))
        .args(["catalog", "search", "机动车"])
        .env("EXCHANGE_CONFIG", &config)
        .output()
        .unwrap();
    assert!(ok(&out).contains("vehicle-admin/vehicles"));
    let _ = first.kill();
    let _ = first.wait();
}

#[path = "support/printed_commands.rs"]
mod printed_commands;

#[path = "support/state_commands.rs"]
mod state_commands;
