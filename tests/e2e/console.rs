//! The web console, over HTTPS with client certificates, as each kind of
//! user and as an attacker: a caseworker's lookup, a request decided by
//! the owner (and refused to another department), a streamed download,
//! the bureau's members page and performance report, and the refusals
//! (no certificate, a foreign CA, a revoked certificate, CSRF, GET
//! changes, script in every text that reaches a page). Requests are made
//! with curl, which presents the certificate as a browser would.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use exchange_proto::v1 as pb;
use exchange_testkit::ClusterBuilder;

/// One browser profile: a certificate, a cookie jar.
struct Browser {
    base: String,
    ca: PathBuf,
    cert: Option<(PathBuf, PathBuf)>,
    jar: tempfile::NamedTempFile,
}

struct Answer {
    status: u16,
    headers: String,
    body: String,
}

impl Browser {
    fn new(base: &str, dir: &Path, name: Option<&str>) -> Browser {
        Browser {
            base: base.to_string(),
            ca: dir.join("ca.crt"),
            cert: name.map(|n| (dir.join(format!("{n}.crt")), dir.join(format!("{n}.key")))),
            jar: tempfile::NamedTempFile::new().unwrap(),
        }
    }

    fn curl(&self, path: &str, extra: &[String]) -> Result<Answer, String> {
        let headers = tempfile::NamedTempFile::new().unwrap();
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "20", "--cacert"])
            .arg(&self.ca)
            .arg("-b")
            .arg(self.jar.path())
            .arg("-c")
            .arg(self.jar.path())
            .arg("-D")
            .arg(headers.path())
            .args(["-w", "\n%{http_code}"]);
        if let Some((cert, key)) = &self.cert {
            cmd.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        cmd.args(extra).arg(format!("{}{path}", self.base));
        let out = cmd.output().map_err(|e| format!("curl: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap();
        Ok(Answer {
            status: code.trim().parse().unwrap(),
            headers: std::fs::read_to_string(headers.path()).unwrap(),
            body: body.to_string(),
        })
    }

    fn get(&self, path: &str) -> Answer {
        self.curl(path, &[]).unwrap()
    }

    /// Posts a form, with this session's CSRF token unless `csrf` is false.
    fn post(&self, path: &str, fields: &[(&str, &str)], csrf: bool) -> Answer {
        self.post_with(path, fields, csrf, &[])
    }

    /// [`Browser::post`] with extra request headers (`Name: value`).
    fn post_with(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        csrf: bool,
        headers: &[&str],
    ) -> Answer {
        let mut args = Vec::new();
        if csrf {
            let token = self.csrf();
            args.push("--data-urlencode".to_string());
            args.push(format!("csrf={token}"));
        }
        for (k, v) in fields {
            args.push("--data-urlencode".into());
            args.push(format!("{k}={v}"));
        }
        if fields.is_empty() && !csrf {
            args.push("-X".into());
            args.push("POST".into());
        }
        for h in headers {
            args.push("-H".into());
            args.push(h.to_string());
        }
        self.curl(path, &args).unwrap()
    }

    /// The signed-in session's CSRF token, from the language form every
    /// page's header carries.
    fn csrf(&self) -> String {
        let page = self.get("/");
        let at = page
            .body
            .find("name=\"csrf\" value=\"")
            .expect("a CSRF field")
            + 19;
        page.body[at..at + 64].to_string()
    }

    fn sign_in(&self, name: &str) {
        let answer = self.post("/signin", &[("user", name)], false);
        assert_eq!(answer.status, 303, "{}", answer.body);
    }
}

fn curl_present() {
    if Command::new("curl").arg("--version").output().is_err() {
        panic!("the console tests need curl (apt-get install curl)");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_acts_as_the_signed_in_certificate_and_nothing_more() {
    curl_present();
    let mut cluster = ClusterBuilder::new()
        .add_node("civil-affairs")
        .add_node("vehicle-admin")
        .add_node("real-estate")
        .add_node("tax")
        .add_node("education")
        .start()
        .await
        .unwrap();
    for dataset in ["vehicle-admin/vehicles", "real-estate/properties"] {
        cluster
            .grant("civil-affairs", dataset, &[], pb::ApproveRequest::default())
            .await
            .unwrap();
    }
    let base = format!(
        "https://127.0.0.1:{}",
        cluster.coordinator.console_addr.unwrap().port()
    );
    let civil_dir = cluster.member_dir("civil-affairs");
    let civil = tokio::task::spawn_blocking({
        let (base, dir) = (base.clone(), civil_dir.clone());
        move || Browser::new(&base, &dir, Some("client"))
    })
    .await
    .unwrap();
    let official = cluster.planted.official_person_id.clone();
    let owner = Browser::new(&base, &cluster.member_dir("tax"), Some("client"));
    let stranger = Browser::new(&base, &cluster.member_dir("vehicle-admin"), Some("client"));
    let bureau = Browser::new(&base, &cluster.pki_out.join("bureau"), Some("admin"));
    let anonymous = Browser::new(&base, &civil_dir, None);
    let civil_dir_for_second = civil_dir.clone();

    tokio::task::spawn_blocking(move || {
        // No certificate: a page that says how to get one, and no data.
        let page = anonymous.get("/");
        assert_eq!(page.status, 401);
        assert!(
            page.body.contains("exchange cert export --p12"),
            "{}",
            page.body
        );
        assert!(page
            .headers
            .to_ascii_lowercase()
            .contains("content-security-policy: default-src 'none'"));

        // Sign in: the name is asked for; script in it is shown as text.
        let first = civil.get("/");
        assert_eq!(first.status, 303, "a first visit is sent to give a name");
        let signin = civil.get("/signin");
        assert!(
            signin
                .body
                .match_indices("name=\"csrf\" value=\"")
                .all(|(at, m)| signin.body[at + m.len()..].starts_with('"')),
            "no session, so no token to take: {}",
            signin.body
        );
        let unsigned = civil.post("/lookup", &[("key", &official), ("purpose", "x")], false);
        assert_eq!(
            unsigned.status, 403,
            "a change before sign-in: {}",
            unsigned.body
        );
        civil.sign_in("<script>alert(1)</script>王五");
        let home = civil.get("/");
        assert_eq!(home.status, 200);
        assert!(
            home.body.contains("civil-affairs") && home.body.contains("部门用户"),
            "{}",
            home.body
        );
        assert!(home
            .body
            .contains("&lt;script&gt;alert(1)&lt;/script&gt;王五"));
        assert!(!home.body.contains("<script>alert(1)"));

        // The caseworker: a bad check character, an empty purpose, a lookup.
        let mut bad = official.clone();
        let last = bad.pop().unwrap();
        bad.push(if last == '0' { '1' } else { '0' });
        let refused = civil.post("/lookup", &[("key", &bad), ("purpose", "低保核查")], true);
        assert_eq!(refused.status, 400);
        assert!(refused.body.contains("校验位"), "{}", refused.body);
        let empty = civil.post("/lookup", &[("key", &official), ("purpose", " ")], true);
        assert_eq!(empty.status, 400);
        let found = civil.post(
            "/lookup",
            &[("key", &official), ("purpose", "低保申请人财产核查")],
            true,
        );
        assert_eq!(found.status, 200, "{}", found.body);
        assert!(
            found.body.contains("vehicle-admin/vehicles")
                && found.body.contains("real-estate/properties")
        );
        assert!(found.body.contains("data-status=\"ok\""), "{}", found.body);
        // The purpose is offered next time.
        assert!(civil
            .get("/lookup")
            .body
            .contains("<option value=\"低保申请人财产核查\">"));

        // CSRF: a missing token and a GET that tries to change state.
        let forged = civil.post("/lookup", &[("key", &official), ("purpose", "x")], false);
        assert_eq!(forged.status, 403, "{}", forged.body);
        // A valid token, sent from another site's page: refused on its
        // origin, whether the browser says so with Origin or Sec-Fetch-Site.
        let lookup = [
            ("key", official.as_str()),
            ("purpose", "低保申请人财产核查"),
        ];
        let cross = civil.post_with("/lookup", &lookup, true, &["Origin: https://evil.example"]);
        assert_eq!(cross.status, 403, "{}", cross.body);
        let cross = civil.post_with("/lookup", &lookup, true, &["Sec-Fetch-Site: cross-site"]);
        assert_eq!(cross.status, 403, "{}", cross.body);
        let own_origin = format!("Origin: {}", civil.base);
        let same = civil.post_with(
            "/lookup",
            &lookup,
            true,
            &[&own_origin, "Sec-Fetch-Site: same-origin"],
        );
        assert_eq!(same.status, 200, "{}", same.body);
        // A token is its session's alone: another sign-in on the same
        // certificate has its own, and neither works in the other.
        let second = Browser::new(&civil.base, &civil_dir_for_second, Some("client"));
        second.sign_in("王五");
        let theirs = second.csrf();
        assert_ne!(theirs, civil.csrf());
        let stolen = civil.post(
            "/lookup",
            &[("csrf", &theirs), ("key", &official), ("purpose", "x")],
            false,
        );
        assert_eq!(stolen.status, 403, "{}", stolen.body);
        let get_change = civil.get("/pending/r1/approve");
        assert_eq!(get_change.status, 405);

        // The analyst asks tax for a conditional dataset, with script in the purpose.
        let asked = civil.post(
            "/datasets/tax/declarations/request",
            &[
                ("purpose", "<img src=x onerror=alert(2)>核查"),
                ("basis", "社会救助暂行办法"),
            ],
            true,
        );
        assert_eq!(asked.status, 303, "{}", asked.body);
        let mine = civil.get("/requests");
        assert!(mine.body.contains("tax/declarations") && mine.body.contains("待审批"));
        assert!(mine.body.contains("&lt;img src=x onerror=alert(2)&gt;"));

        // The owner sees it, oldest first; another department cannot decide it.
        owner.sign_in("赵六");
        stranger.sign_in("钱七");
        let pending = owner.get("/pending");
        let id_at = pending
            .body
            .find("href=\"/pending/")
            .expect("a pending request")
            + 15;
        let id: String = pending.body[id_at..]
            .chars()
            .take_while(|c| *c != '"')
            .collect();
        assert!(!pending.body.contains("<img src=x"));
        assert_eq!(stranger.get(&format!("/pending/{id}")).status, 404);
        let crafted = stranger.post(&format!("/pending/{id}/approve"), &[], true);
        assert_eq!(crafted.status, 403, "{}", crafted.body);
        let no_reason = owner.post(&format!("/pending/{id}/refuse"), &[("reason", "")], true);
        assert_eq!(no_reason.status, 400);
        let approved = owner.post(&format!("/pending/{id}/approve"), &[], true);
        assert_eq!(approved.status, 303, "{}", approved.body);
        assert!(civil.get("/requests").body.contains("已批准"));

        // A query preview, then the whole answer streamed as CSV and Parquet.
        let preview = civil.post(
            "/query/vehicle-admin/vehicles",
            &[("purpose", "车辆核查"), ("limit", "5")],
            true,
        );
        assert_eq!(preview.status, 200, "{}", preview.body);
        assert!(preview.body.contains("plate_no"));
        let csv = civil.post(
            "/query/vehicle-admin/vehicles/download?format=csv",
            &[("purpose", "车辆核查")],
            true,
        );
        assert_eq!(csv.status, 200);
        assert!(csv.headers.contains("text/csv"));
        assert!(
            csv.body.starts_with("plate_no,")
                || csv.body.lines().next().unwrap().contains("plate_no")
        );
        assert!(
            csv.body.lines().count() > 10,
            "{} lines",
            csv.body.lines().count()
        );
        let parquet = civil.post(
            "/query/vehicle-admin/vehicles/download?format=parquet",
            &[("purpose", "车辆核查")],
            true,
        );
        assert_eq!(parquet.status, 200);
        assert!(parquet.body.starts_with("PAR1"));
        // An answer without rows is still a file with its columns.
        let nothing = [
            ("purpose", "车辆核查"),
            ("fields", "plate_no"),
            ("fields", "registered_on"),
            ("where", "plate_no = '无此车牌'"),
        ];
        let empty_csv = civil.post(
            "/query/vehicle-admin/vehicles/download?format=csv",
            &nothing,
            true,
        );
        assert_eq!(empty_csv.status, 200, "{}", empty_csv.body);
        assert_eq!(empty_csv.body, "plate_no,registered_on\n");
        let empty_parquet = civil.post(
            "/query/vehicle-admin/vehicles/download?format=parquet",
            &nothing,
            true,
        );
        assert_eq!(empty_parquet.status, 200, "{}", empty_parquet.body);
        assert!(
            empty_parquet.body.starts_with("PAR1") && empty_parquet.body.ends_with("PAR1"),
            "a whole Parquet file, {} bytes",
            empty_parquet.body.len()
        );
        let ungranted = civil.post(
            "/query/tax/taxpayers/download?format=csv",
            &[("purpose", "x")],
            true,
        );
        assert_eq!(ungranted.status, 403);

        // A purpose that a spreadsheet would run as a formula.
        let formula = civil.post(
            "/query/vehicle-admin/vehicles",
            &[
                ("purpose", "=HYPERLINK(\"http://evil.example\",\"点我\")"),
                ("limit", "1"),
            ],
            true,
        );
        assert_eq!(formula.status, 200, "{}", formula.body);

        // The owner's audit view shows the use of its data, and exports it
        // with formula cells neutralised.
        let exported = stranger.get("/usage.csv");
        assert!(exported.body.contains("'=HYPERLINK("), "{}", exported.body);
        assert!(
            !exported.body.contains(",=HYPERLINK(") && !exported.body.contains("\"=HYPERLINK(")
        );
        let usage = stranger.get("/usage");
        assert!(usage.body.contains("车辆核查") && usage.body.contains("civil-affairs"));
        let export = stranger.get("/usage.csv");
        assert!(export.body.contains("车辆核查"));
        assert!(
            !owner.get("/usage").body.contains("车辆核查"),
            "tax sees no use of vehicle data"
        );

        // The bureau signs in with a name too, before any change.
        let unsigned = bureau.post(
            "/members",
            &[("id", "housing"), ("display_name", "住建局")],
            false,
        );
        assert_eq!(unsigned.status, 403, "{}", unsigned.body);
        assert_eq!(bureau.get("/members").status, 303, "sent to sign in");
        bureau.sign_in("孙八");
        // The bureau: members, a new member's one-time token, the report.
        let members = bureau.get("/members");
        assert_eq!(members.status, 200);
        assert!(members.body.contains("数据局运维") && members.body.contains("在线"));
        let added = bureau.post(
            "/members",
            &[("id", "housing"), ("display_name", "<b>住建局</b>")],
            true,
        );
        assert_eq!(added.status, 200, "{}", added.body);
        assert!(added.body.contains("xt_") && added.body.contains("&lt;b&gt;住建局"));
        let report = bureau.get("/report");
        assert_eq!(report.status, 200);
        assert!(report.body.contains("<svg") && report.body.contains("vehicle-admin"));
        assert!(report.body.contains("逾期未决申请"), "overdue chart");
        assert!(bureau
            .get("/report.csv?kind=departments")
            .body
            .starts_with("department,"));
        // The operator certificate holds no grants, so its conflict page
        // says how to compare instead of failing inside a query.
        let conflicts = bureau.get("/conflicts");
        assert_eq!(conflicts.status, 200);
        assert!(
            conflicts.body.contains("不持有任何授权"),
            "{}",
            conflicts.body
        );
        // A department may not use the bureau's pages.
        assert_eq!(civil.get("/reconcile?node=tax").status, 403);

        // Revoking a member cannot be one click: the id must be typed.
        let unconfirmed = bureau.post(
            "/members/vehicle-admin/revoke",
            &[("reason", "测试撤销")],
            true,
        );
        assert_eq!(unconfirmed.status, 400, "{}", unconfirmed.body);
        assert_eq!(stranger.get("/").status, 200, "still a member");
        // Revoking a member refuses its certificate on the very next request.
        let revoked = bureau.post(
            "/members/vehicle-admin/revoke",
            &[("reason", "测试撤销"), ("confirm", "vehicle-admin")],
            true,
        );
        assert_eq!(revoked.status, 200, "{}", revoked.body);
        let after = stranger.get("/");
        assert_eq!(after.status, 401);
        assert!(after.body.contains("revoked"), "{}", after.body);
    })
    .await
    .unwrap();

    // A node offline during a lookup: the page answers within the deadline
    // with the department marked.
    let node = cluster.nodes.remove("real-estate").unwrap();
    node.shutdown().await;
    let started = Instant::now();
    let official = cluster.planted.official_person_id.clone();
    let page = tokio::task::spawn_blocking(move || {
        let civil = Browser::new(&base, &civil_dir, Some("client"));
        civil.sign_in("王五");
        civil.post(
            "/lookup",
            &[("key", &official), ("purpose", "低保申请人财产核查")],
            true,
        )
    })
    .await
    .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("data-status=\"offline\""),
        "{}",
        page.body
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_fails_the_handshake() {
    curl_present();
    let cluster = ClusterBuilder::new().add_node("tax").start().await.unwrap();
    let other = tempfile::tempdir().unwrap();
    exchange_coordinator::init(other.path(), &["127.0.0.1".into()]).unwrap();
    let base = format!(
        "https://127.0.0.1:{}",
        cluster.coordinator.console_addr.unwrap().port()
    );
    let ca = cluster.pki_out.join("bureau").join("ca.crt");
    let dir = other.path().to_path_buf();
    let outcome = tokio::task::spawn_blocking(move || {
        let mut browser = Browser::new(&base, &dir, Some("admin"));
        browser.ca = ca;
        browser.curl("/", &[])
    })
    .await
    .unwrap();
    assert!(outcome.is_err(), "a foreign certificate got an answer");
    cluster.shutdown().await;
}

/// Slowloris with a valid certificate: connections that trickle a
/// request's headers a byte a second are cut off at the header deadline;
/// the certificate holds no more than its share of the listener; another
/// department's user is served throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_client_is_cut_off_and_others_are_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    curl_present();
    let cluster = ClusterBuilder::new()
        .add_node("tax")
        .add_node("civil-affairs")
        .start()
        .await
        .unwrap();
    let console = cluster.coordinator.console_addr.unwrap();
    let tls = exchange_transport::TlsIdentity::load(&cluster.member_dir("civil-affairs"), "client")
        .unwrap();
    let config = exchange_transport::client::https_client_config(
        &tls,
        exchange_transport::client::ExpectedServer::Role(exchange_pki::Role::Coordinator),
    )
    .unwrap();
    let connector = tokio_rustls::TlsConnector::from(config);
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let started = Instant::now();
    let mut trickles = Vec::new();
    for _ in 0..60 {
        let connector = connector.clone();
        let name = name.clone();
        trickles.push(tokio::spawn(async move {
            let cut = || Some(started.elapsed());
            let Ok(tcp) = tokio::net::TcpStream::connect(console).await else {
                return cut();
            };
            let Ok(mut conn) = connector.connect(name, tcp).await else {
                return cut();
            };
            if conn
                .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
                .await
                .is_err()
            {
                return cut();
            }
            // A byte a second for up to 20 s, never ending the headers.
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if conn.write_all(b"X").await.is_err() {
                    return Some(started.elapsed());
                }
                let mut buf = [0u8; 512];
                if let Ok(Ok(0) | Err(_)) =
                    tokio::time::timeout(Duration::from_millis(10), conn.read(&mut buf)).await
                {
                    return Some(started.elapsed());
                }
            }
            None
        }));
    }
    let base = format!("https://127.0.0.1:{}", console.port());
    let tax_dir = cluster.member_dir("tax");
    let served = tokio::task::spawn_blocking(move || {
        let owner = Browser::new(&base, &tax_dir, Some("client"));
        owner.sign_in("赵六");
        let mut failures = 0;
        for _ in 0..20 {
            if owner.get("/catalog").status != 200 {
                failures += 1;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        failures
    })
    .await
    .unwrap();
    assert_eq!(served, 0, "the other department's user was refused");
    let mut cut = 0;
    for trickle in trickles {
        match trickle.await.unwrap() {
            // Over the certificate's share: closed after the handshake.
            // Within it: closed at the header deadline (10 s), not later.
            Some(at) => {
                assert!(at < Duration::from_secs(14), "cut only after {at:?}");
                cut += 1;
            }
            None => panic!("a trickling connection was held for 20 s"),
        }
    }
    assert_eq!(cut, 60);
    cluster.shutdown().await;
}
