//! End to end: a coordinator and two department nodes on 127.0.0.1:0 with a
//! fresh PKI. Nodes enrol with one-time tokens and publish; analysts search
//! (in Chinese and English); a revoked member is refused by the coordinator
//! and by the other node; and certificates that should not work do not.

use std::time::Duration;

use exchange_client::{enroll, Client, EnrollOptions};
use exchange_pki::{files, CertificateAuthority, Identity, Role};
use exchange_proto::v1 as pb;
use exchange_testkit::{Cluster, ClusterBuilder};
use exchange_transport::client::{connect, connect_pinned, ClientOptions, ExpectedServer};
use exchange_transport::TlsIdentity;

fn search(text: &str) -> pb::SearchRequest {
    pb::SearchRequest {
        text: text.into(),
        ..Default::default()
    }
}

fn ids(r: &pb::SearchResponse) -> Vec<String> {
    r.hits
        .iter()
        .map(|h| h.dataset.as_ref().unwrap().id.clone())
        .collect()
}

async fn two_departments() -> Cluster {
    ClusterBuilder::new()
        .add_node("vehicle-admin")
        .add_node("tax")
        .start()
        .await
        .expect("cluster starts")
}

async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn node_describe(
    addr: std::net::SocketAddr,
    member: &str,
    tls: TlsIdentity,
) -> impl std::future::Future<Output = Result<pb::DescribeResponse, String>> {
    let expected = ExpectedServer::Identity(Identity::new(member, Role::Node).unwrap());
    async move {
        let channel = connect(&addr.to_string(), &tls, expected, ClientOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        pb::node_client::NodeClient::new(channel)
            .describe(pb::DescribeRequest {})
            .await
            .map(|r| r.into_inner())
            .map_err(|s| s.message().to_string())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrol_publish_search_and_revoke() {
    let cluster = two_departments().await;
    let analyst = cluster.analyst("vehicle-admin").await.unwrap();

    // Identity comes from the certificate.
    let me = analyst.who_am_i().await.unwrap();
    assert_eq!(me.identity, "exchange://vehicle-admin/client");

    // Chinese search without spaces, ranked.
    let r = analyst.search(search("机动车")).await.unwrap();
    assert_eq!(ids(&r), vec!["vehicle-admin/vehicles"]);
    let r = analyst.search(search("登记")).await.unwrap();
    let found = ids(&r);
    assert!(
        found.contains(&"vehicle-admin/vehicles".to_string()),
        "{found:?}"
    );
    assert!(found.contains(&"tax/taxpayers".to_string()), "{found:?}");
    let r = analyst.search(search("机动车登记信息")).await.unwrap();
    assert_eq!(ids(&r)[0], "vehicle-admin/vehicles");
    // English and field names.
    let r = analyst.search(search("taxpayers")).await.unwrap();
    assert_eq!(ids(&r), vec!["tax/taxpayers"]);
    let r = analyst.search(search("owner_id")).await.unwrap();
    assert!(r.hits[0].matched_fields.contains(&"owner_id".to_string()));
    // Filters.
    let r = analyst
        .search(pb::SearchRequest {
            key_type: "org_code".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        ids(&r).iter().all(|id| id.starts_with("tax/")),
        "{:?}",
        ids(&r)
    );
    let r = analyst
        .search(pb::SearchRequest {
            sharing: "unconditional".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&r), vec!["tax/taxpayers"]);
    let r = analyst
        .search(pb::SearchRequest {
            text: "信息".into(),
            department: "tax".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!r.hits.is_empty() && ids(&r).iter().all(|id| id.starts_with("tax/")));

    // One dataset with its fields, stamped with the owner from its certificate.
    let ds = analyst.dataset("vehicle-admin/vehicles").await.unwrap();
    assert_eq!(ds.department, "vehicle-admin");
    assert_eq!(ds.title, "机动车登记信息");
    assert_eq!(ds.catalog_version, 1);
    let owner = ds.fields.iter().find(|f| f.name == "owner_id").unwrap();
    assert_eq!(
        (
            owner.sensitivity.as_str(),
            owner.mask.as_str(),
            owner.key_type.as_str()
        ),
        ("sensitive", "id_number", "person_id")
    );
    let err = analyst
        .dataset("vehicle-admin/nope")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not found"), "{err}");

    // Every node learned the coordinator's ticket-signing key over mutual TLS.
    let ticket_key = cluster.coordinator.state.ticket_signer.public_key();
    for (member, node) in &cluster.nodes {
        let held = node.state.ticket_key.read().unwrap().clone();
        assert_eq!(
            held.map(|v| v.public_key().to_vec()),
            Some(ticket_key.clone()),
            "{member}"
        );
    }
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(cluster.coordinator_config.pki_dir().join("ticket.key"))
            .unwrap()
            .permissions(),
    ) & 0o777;
    assert_eq!(key_mode, 0o600);

    // Members with status.
    let members = analyst.members().await.unwrap();
    let tax = members.iter().find(|m| m.id == "tax").unwrap();
    assert_eq!(tax.status, "active");
    let node = tax.node.as_ref().unwrap();
    assert!(node.online);
    assert_eq!(node.catalog_version, 1);
    assert_eq!(node.datasets, 3);

    // The standard health service answers on the mutual-TLS listener, for
    // every service the coordinator serves there.
    let mut health = tonic_health::pb::health_client::HealthClient::new(analyst.channel());
    for service in [
        "exchange.v1.Admin",
        "exchange.v1.Registry",
        "exchange.v1.Catalog",
        "exchange.v1.Access",
        "exchange.v1.Disputes",
        "exchange.v1.Audit",
        "arrow.flight.protocol.FlightService",
    ] {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("{service}: {e}"))
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service}"
        );
    }

    // Before revocation the tax analyst may use the vehicle-admin node.
    let vehicle_node = cluster.nodes["vehicle-admin"].addr;
    let tax_tls = TlsIdentity::load(&cluster.member_dir("tax"), "client").unwrap();
    let described = node_describe(vehicle_node, "vehicle-admin", tax_tls.clone())
        .await
        .unwrap();
    assert_eq!(described.member_id, "vehicle-admin");

    // Revoke tax. Only the bureau can.
    let err = analyst
        .revoke_member("tax", "x")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("permission denied"), "{err}");
    let revoked = cluster
        .admin
        .revoke_member("tax", "test of revocation")
        .await
        .unwrap();
    assert_eq!(
        revoked.revoked_certificates, 2,
        "the node and the analyst certificate"
    );

    // The coordinator refuses at once, even on an open connection.
    let tax_analyst = Client::connect(&cluster.coordinator.addr.to_string(), &tax_tls)
        .await
        .unwrap();
    let err = tax_analyst
        .search(search("登记"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("revoked"), "{err}");
    // Its datasets leave the catalog.
    let r = analyst.search(search("纳税人")).await.unwrap();
    assert!(r.hits.is_empty(), "{:?}", ids(&r));
    // The other node refuses it within the documented bound (one heartbeat; 1 s here).
    let started = tokio::time::Instant::now();
    eventually("the vehicle-admin node refuses the revoked certificate", Duration::from_secs(10), || {
        let tls = tax_tls.clone();
        async move { matches!(node_describe(vehicle_node, "vehicle-admin", tls).await, Err(e) if e.contains("revoked")) }
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    // Members list shows it.
    let members = analyst.members().await.unwrap();
    let tax = members.iter().find(|m| m.id == "tax").unwrap();
    assert_eq!(tax.status, "revoked");
    assert_eq!(tax.state(), pb::MemberState::Revoked);
    assert_eq!(tax.revoked_at.map(|t| t.seconds), Some(tax.revoked_unix));
    // And a revoked member cannot be given new tokens.
    let err = cluster
        .admin
        .issue_token("tax", Role::Client, 0)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("revoked"), "{err}");

    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_certificates_that_must_not_work() {
    let cluster = ClusterBuilder::new()
        .add_node("vehicle-admin")
        .analysts(false)
        .start()
        .await
        .unwrap();
    let enroll_addr = cluster.coordinator.enroll_addr.to_string();
    let main_addr = cluster.coordinator.addr.to_string();
    let out = cluster.dir.join("tries");
    let added = cluster
        .admin
        .add_member("education", "教育局", 0)
        .await
        .unwrap();
    let token = added.token.unwrap().token;
    let opts = |token: &str, fingerprint: &str, dir: &str| EnrollOptions {
        enroll_addr: enroll_addr.clone(),
        token: token.into(),
        ca_fingerprint: fingerprint.into(),
        role: Role::Node,
        server_names: vec!["127.0.0.1".into()],
        out_dir: out.join(dir),
        force: false,
    };

    // A wrong CA fingerprint: the client refuses the coordinator, and the token is not spent.
    let other_ca = CertificateAuthority::generate("impostor").unwrap();
    let err = enroll(&opts(&token, &other_ca.fingerprint(), "a"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("pinned fingerprint"), "{err}");
    assert!(!out.join("a/node.key").exists());
    // A wrong token.
    let err = enroll(&opts("xt_not-a-real-token", &added.ca_fingerprint, "b"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("token not recognised"), "{err}");
    // The right token works once...
    let enrolled = enroll(&opts(&token, &added.ca_fingerprint, "c"))
        .await
        .unwrap();
    assert_eq!(enrolled.identity.uri(), "exchange://education/node");
    // ...and only once.
    let err = enroll(&opts(&token, &added.ca_fingerprint, "d"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("already used"), "{err}");
    // A token for a node cannot enrol a client.
    let issued = cluster
        .admin
        .issue_token("education", Role::Node, 0)
        .await
        .unwrap()
        .token
        .unwrap();
    assert_eq!(
        issued.expires_at.map(|t| t.seconds),
        Some(issued.expires_unix)
    );
    let client_token = issued.token;
    let err = enroll(&EnrollOptions {
        role: Role::Client,
        server_names: vec![],
        ..opts(&client_token, &added.ca_fingerprint, "e")
    })
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("not a client"), "{err}");
    // A token that is too short-lived is refused at issue; expiry itself is unit-tested in the registry.
    let err = cluster
        .admin
        .issue_token("education", Role::Client, 5)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("lifetime"), "{err}");

    // No client certificate at all: the main listener refuses the handshake.
    let anonymous = connect_pinned(
        &main_addr,
        &cluster.ca_fingerprint,
        ClientOptions::default(),
    )
    .await;
    match anonymous {
        Err(_) => {}
        Ok(channel) => {
            let r = pb::registry_client::RegistryClient::new(channel)
                .who_am_i(pb::WhoAmIRequest {})
                .await;
            assert!(r.is_err(), "an anonymous caller was answered");
        }
    }

    // A certificate from another CA is refused.
    let (foreign_cert, foreign_key) = other_ca
        .issue_with_new_key(
            &Identity::new("vehicle-admin", Role::Client).unwrap(),
            &[],
            time::Duration::days(1),
        )
        .unwrap();
    let foreign = TlsIdentity::new(
        other_ca.cert_der().to_vec(),
        foreign_cert.der.clone(),
        foreign_key.private_key_der(),
    );
    assert!(foreign.is_ok(), "a self-consistent foreign identity");
    // Present our CA as trust root but a foreign-issued certificate.
    let ca_der =
        files::read_pem_der(&cluster.pki_out.join("bureau/ca.crt"), "CERTIFICATE").unwrap();
    assert!(TlsIdentity::new(
        ca_der.clone(),
        foreign_cert.der.clone(),
        foreign_key.private_key_der()
    )
    .is_err());
    let foreign = foreign.unwrap();
    let r = connect(
        &main_addr,
        &foreign,
        ExpectedServer::Role(Role::Coordinator),
        ClientOptions::default(),
    )
    .await;
    assert!(
        r.is_err(),
        "the client itself does not trust the real coordinator under a foreign CA"
    );
    // A hostile client that trusts our CA but presents the foreign certificate: the server refuses.
    let hostile = TlsIdentity::new_unverified(
        ca_der.clone(),
        foreign_cert.der.clone(),
        foreign_key.private_key_der(),
    )
    .unwrap();
    let refused = match Client::connect(&main_addr, &hostile).await {
        Err(_) => true,
        Ok(c) => c.who_am_i().await.is_err(),
    };
    assert!(
        refused,
        "a certificate from another CA was accepted by the coordinator"
    );
    let refused = match connect(
        &cluster.nodes["vehicle-admin"].addr.to_string(),
        &hostile,
        ExpectedServer::Role(Role::Node),
        ClientOptions::default(),
    )
    .await
    {
        Err(_) => true,
        Ok(c) => pb::node_client::NodeClient::new(c)
            .describe(pb::DescribeRequest {})
            .await
            .is_err(),
    };
    assert!(
        refused,
        "a certificate from another CA was accepted by a node"
    );

    // An expired certificate from the real CA is refused by the server.
    let pki = cluster.coordinator_config.pki_dir();
    let ca = CertificateAuthority::from_pem(
        &files::read_text(&pki.join("ca.crt")).unwrap(),
        &files::read_text(&pki.join("ca.key")).unwrap(),
    )
    .unwrap();
    let (expired, key) = ca
        .issue_with_new_key(
            &Identity::new("vehicle-admin", Role::Client).unwrap(),
            &[],
            time::Duration::seconds(-60),
        )
        .unwrap();
    let expired = TlsIdentity::new(ca_der.clone(), expired.der, key.private_key_der()).unwrap();
    let refused = match Client::connect(&main_addr, &expired).await {
        Err(_) => true,
        Ok(c) => c.who_am_i().await.is_err(),
    };
    assert!(refused, "an expired certificate was accepted");

    // A node cannot claim another department: whatever it publishes is stamped with its own id.
    let node_tls = TlsIdentity::load(&cluster.member_dir("vehicle-admin"), "node").unwrap();
    let channel = connect(
        &main_addr,
        &node_tls,
        ExpectedServer::Role(Role::Coordinator),
        ClientOptions::default(),
    )
    .await
    .unwrap();
    let forged = pb::Dataset {
        id: "tax/forged".into(),
        department: "tax".into(),
        department_name: "税务局".into(),
        title: "伪造数据集".into(),
        sharing: "unconditional".into(),
        fields: vec![pb::Field {
            name: "x".into(),
            r#type: "string".into(),
            sensitivity: "public".into(),
            mask: "none".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    pb::catalog_client::CatalogClient::new(channel.clone())
        .publish(pb::PublishRequest {
            datasets: vec![forged],
            digest: "forged".into(),
            node_address: String::new(),
        })
        .await
        .unwrap();
    let viewer = Client::connect(&main_addr, &node_tls).await.unwrap();
    let hit = viewer.search(search("伪造")).await.unwrap();
    assert_eq!(ids(&hit), vec!["vehicle-admin/forged"]);
    assert_eq!(
        hit.hits[0].dataset.as_ref().unwrap().department,
        "vehicle-admin"
    );
    // An analyst certificate cannot publish at all.
    let err = pb::catalog_client::CatalogClient::new(
        Client::connect(
            &main_addr,
            &TlsIdentity::load(&cluster.pki_out.join("bureau"), "admin").unwrap(),
        )
        .await
        .unwrap()
        .channel(),
    )
    .publish(pb::PublishRequest::default())
    .await
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    // The node notices on its next heartbeat that the coordinator holds a different
    // catalog, and republishes its real one.
    eventually(
        "the real catalog is republished",
        Duration::from_secs(10),
        || {
            let viewer = viewer.clone();
            async move {
                viewer
                    .search(search("伪造"))
                    .await
                    .map(|r| r.hits.is_empty())
                    .unwrap_or(false)
            }
        },
    )
    .await;

    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_changes_are_republished_and_bad_changes_refused() {
    let mut cluster = ClusterBuilder::new()
        .add_node("electricity")
        .start()
        .await
        .unwrap();
    let analyst = cluster.analyst("electricity").await.unwrap();
    let manifest = cluster.dir.join("data/electricity.toml");
    let original = std::fs::read_to_string(&manifest).unwrap();

    // A valid change: a new title becomes version 2.
    std::fs::write(
        &manifest,
        original.replace("企业年度用电量", "企业年度用电量统计"),
    )
    .unwrap();
    eventually("version 2 is published", Duration::from_secs(15), || {
        let a = analyst.clone();
        async move {
            a.dataset("electricity/usage")
                .await
                .map(|d| d.catalog_version == 2 && d.title == "企业年度用电量统计")
                .unwrap_or(false)
        }
    })
    .await;

    // An invalid change (a column that does not exist) is refused; version 2 stays.
    std::fs::write(
        &manifest,
        original.replace("name = \"kwh\"", "name = \"kwh_total\""),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let d = analyst.dataset("electricity/usage").await.unwrap();
    assert_eq!(d.catalog_version, 2);
    assert!(d.fields.iter().any(|f| f.name == "kwh"));

    // A stopped node shows offline after offline_after_secs (3 s here), with its last catalog kept.
    cluster
        .nodes
        .remove("electricity")
        .unwrap()
        .shutdown()
        .await;
    eventually(
        "the stopped node is shown offline",
        Duration::from_secs(10),
        || {
            let a = analyst.clone();
            async move {
                let members = a.members().await.unwrap();
                let node = members[0].node.clone().unwrap();
                !node.online && node.last_seen_unix > 0 && node.catalog_version == 2
            }
        },
    )
    .await;

    cluster.shutdown().await;
}

/// A channel holds one connection: when its server goes away, calls fail
/// at once with an error naming the address, and once the server is back
/// on the same address the same channel reaches it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_names_a_dead_server_and_redials_when_it_is_back() {
    let mut cluster = two_departments().await;
    let node = cluster.nodes.remove("vehicle-admin").unwrap();
    let addr = node.addr.to_string();
    let mut config = node.state.config.clone();
    let tls = TlsIdentity::load(&cluster.member_dir("vehicle-admin"), "client").unwrap();
    let options = ClientOptions {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
    };
    let expected = ExpectedServer::Identity(Identity::new("vehicle-admin", Role::Node).unwrap());
    let channel = connect(&addr, &tls, expected.clone(), options)
        .await
        .unwrap();
    let describe = |channel: exchange_transport::Channel| async move {
        pb::node_client::NodeClient::new(channel)
            .describe(pb::DescribeRequest {})
            .await
            .map(|r| r.into_inner().datasets.len())
    };
    assert!(describe(channel.clone()).await.unwrap() > 0);

    node.shutdown().await;
    let started = tokio::time::Instant::now();
    let status = describe(channel.clone()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains(&addr), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(3));

    config.listen = addr.clone();
    let restarted = exchange_node::start(config).await.unwrap();
    assert_eq!(restarted.addr.to_string(), addr);
    cluster.nodes.insert("vehicle-admin".into(), restarted);
    assert!(describe(channel.clone()).await.unwrap() > 0);

    // A listener that accepts but never completes the handshake: the call
    // fails within the connect deadline instead of hanging.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let lazy = exchange_transport::client::connect_lazy(
        &silent_addr,
        &tls,
        expected,
        ClientOptions {
            connect_timeout: Duration::from_millis(500),
            request_timeout: Duration::from_secs(5),
        },
    )
    .unwrap();
    let started = tokio::time::Instant::now();
    let status = describe(lazy).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains(&silent_addr) && status.message().contains("no answer"),
        "{status:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    holder.abort();
    cluster.shutdown().await;
}

/// Hundreds of connections that finish the TLS handshake and then say
/// nothing once exhausted the coordinator's file descriptors. Now each
/// listener holds at most its budget (16 per address on the enrolment
/// port), closes silent connections after its idle time, and the
/// coordinator keeps serving real clients throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cannot_starve_the_coordinator() {
    let cluster = ClusterBuilder::new()
        .add_node("vehicle-admin")
        .start()
        .await
        .unwrap();
    let enroll_addr = cluster.coordinator.enroll_addr.to_string();
    let main_addr = cluster.coordinator.addr.to_string();
    let fingerprint = cluster.ca_fingerprint.clone();
    let quick = ClientOptions {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
    };

    // Up to 300 attempts on the enrolment port, no certificate needed: each
    // completes TLS and the HTTP/2 preface, then stays silent. (A refused
    // dial is tried twice more by the client, so the attempts stop before
    // the first silent connections reach the idle timeout and free their
    // places.)
    let mut held = Vec::new();
    let mut turned_away = 0;
    let idle = exchange_transport::limits::ListenerLimits::ENROLMENT.idle_timeout;
    let started = std::time::Instant::now();
    let mut attempts = 0;
    while attempts < 300 && started.elapsed() + Duration::from_secs(3) < idle {
        attempts += 1;
        match connect_pinned(&enroll_addr, &fingerprint, quick).await {
            Ok(channel) => held.push(channel),
            Err(_) => turned_away += 1,
        }
    }
    let limit = exchange_transport::limits::ListenerLimits::ENROLMENT.max_per_address;
    assert!(
        held.len() <= limit,
        "{} silent connections held from one address (limit {limit})",
        held.len()
    );
    assert!(attempts > limit + 5, "only {attempts} attempts");
    assert!(
        turned_away >= attempts - limit,
        "{turned_away} of {attempts}"
    );

    // 300 silent mutual-TLS connections of a member on the main port.
    let tls = TlsIdentity::load(&cluster.member_dir("vehicle-admin"), "client").unwrap();
    let coordinator = ExpectedServer::Identity(Identity::coordinator());
    for _ in 0..300 {
        held.push(
            connect(&main_addr, &tls, coordinator.clone(), quick)
                .await
                .unwrap(),
        );
    }
    // A real client is served meanwhile.
    let members = cluster.admin.members().await.unwrap();
    assert!(members.iter().any(|m| m.id == "vehicle-admin"));

    // Once the enrolment listener's idle time has passed, the silent
    // connections are closed and a real enrolment gets through.
    tokio::time::sleep(idle + Duration::from_secs(1)).await;
    let added = cluster
        .admin
        .add_member("education", "教育局", 0)
        .await
        .unwrap();
    enroll(&EnrollOptions {
        enroll_addr: enroll_addr.clone(),
        token: added.token.unwrap().token,
        ca_fingerprint: fingerprint,
        role: Role::Node,
        server_names: vec!["127.0.0.1".into()],
        out_dir: cluster.dir.join("education"),
        force: false,
    })
    .await
    .expect("enrolment works once the silent connections were closed");
    drop(held);
    cluster.shutdown().await;
}

/// Hostile text is refused where it enters, with the field, the character
/// and its position named; oversized requests are refused before any
/// handler reads them; enrolment errors name no internal placeholder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_text_and_oversized_requests_are_refused_clearly() {
    let cluster = ClusterBuilder::new()
        .add_node("vehicle-admin")
        .add_node("civil-affairs")
        .start()
        .await
        .unwrap();
    let civil = cluster.analyst("civil-affairs").await.unwrap();
    let query = |purpose: &str| exchange_query::QueryCommand {
        dataset: "vehicle-admin/vehicles".into(),
        fields: vec![],
        filter: String::new(),
        purpose: purpose.into(),
        user: String::new(),
        limit: Some(1),
    };
    for (purpose, named) in [
        (
            "核查\u{1b}]0;pwned\u{7}",
            "escape character U+001B at position 3",
        ),
        ("核查\r覆盖", "control character U+000D"),
        ("\u{200b}", "invisible character U+200B"),
        ("\u{202e}查核", "text-direction character U+202E"),
        ("   ", "purpose is required"),
    ] {
        let e = match civil.query(query(purpose)).await {
            Ok(_) => panic!("{purpose:?} was accepted"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains(named), "{purpose:?}: {e}");
    }
    let e = civil
        .request_access(pb::AccessRequest {
            dataset: "vehicle-admin/vehicles".into(),
            purpose: "低保\u{2066}核查".into(),
            ..Default::default()
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("purpose contains the text-direction character"),
        "{e}"
    );
    let e = cluster
        .admin
        .add_member("education", "教育局\u{1b}[2J", 0)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("display name contains the escape character"),
        "{e}"
    );

    // A 2 MiB search is refused before the handler decodes it, and the
    // coordinator answers the next one.
    let huge = pb::SearchRequest {
        text: "机".repeat(700_000),
        ..Default::default()
    };
    assert!(civil.search(huge).await.is_err());
    let hits = civil.search(search("机动车")).await.unwrap();
    assert!(!hits.hits.is_empty());

    // Enrolment for a bureau role: refused for what it is, not with an
    // internal placeholder identity.
    let token = cluster
        .admin
        .add_member("science", "科学技术局", 0)
        .await
        .unwrap();
    let e = enroll(&EnrollOptions {
        enroll_addr: cluster.coordinator.enroll_addr.to_string(),
        token: token.token.unwrap().token,
        ca_fingerprint: cluster.ca_fingerprint.clone(),
        role: Role::Admin,
        server_names: vec![],
        out_dir: cluster.dir.join("science"),
        force: false,
    })
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("node and client certificates only"), "{e}");
    assert!(!e.contains("probe"), "{e}");
    cluster.shutdown().await;
}
