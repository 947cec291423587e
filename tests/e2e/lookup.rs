//! One person across every department: parallel, grouped, with a status
//! per department, and bounded by the deadline when a node is dead.

use std::time::{Duration, Instant};

use exchange_client::lookup::SourceStatus;
use exchange_proto::v1 as pb;
use exchange_testkit::ClusterBuilder;
use exchange_transport::refusal::reason_of;

/// `id` with a wrong check character.
fn mistyped(id: &str) -> String {
    let mut bad = id.to_string();
    let last = bad.pop().unwrap();
    bad.push(if last == '1' { '2' } else { '1' });
    bad
}

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
    let bad = mistyped(&official);
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

fn start_message(start: pb::BatchLookupStart) -> pb::BatchLookupRequest {
    pb::BatchLookupRequest {
        message: Some(pb::batch_lookup_request::Message::Start(start)),
    }
}

fn keys_message(keys: Vec<String>) -> pb::BatchLookupRequest {
    pb::BatchLookupRequest {
        message: Some(pb::batch_lookup_request::Message::Keys(pb::KeyList {
            keys,
        })),
    }
}

/// The first error or events of a batch lookup sent as `messages`.
async fn batch_events(
    lookups: &mut pb::lookups_client::LookupsClient<exchange_transport::AnyChannel>,
    messages: Vec<pb::BatchLookupRequest>,
) -> Result<Vec<pb::batch_lookup_event::Event>, tonic::Status> {
    let mut stream = lookups
        .batch_lookup(futures::stream::iter(messages))
        .await?
        .into_inner();
    let mut events = Vec::new();
    while let Some(event) = stream.message().await? {
        events.extend(event.event);
    }
    Ok(events)
}

/// The coordinator's Lookups service checks what any gRPC client sends,
/// not only what the Rust client would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lookups_service_refuses_malformed_calls() {
    let cluster = ClusterBuilder::new()
        .add_node("civil-affairs")
        .add_node("real-estate")
        .start()
        .await
        .unwrap();
    cluster
        .grant(
            "civil-affairs",
            "real-estate/properties",
            &[],
            pb::ApproveRequest::default(),
        )
        .await
        .unwrap();
    let civil = cluster.analyst("civil-affairs").await.unwrap();
    let mut lookups = pb::lookups_client::LookupsClient::new(civil.channel());
    let official = cluster.planted.official_person_id.clone();
    let lookup = |key: &str, deadline_ms: u32, key_type: &str| pb::LookupRequest {
        key_type: key_type.into(),
        key: key.into(),
        purpose: "核查".into(),
        deadline_ms,
        ..Default::default()
    };

    // Lookup: a bad check character, a deadline too long, an unknown key type.
    let bad = mistyped(&official);
    for (request, expected) in [
        (lookup(&bad, 0, "person_id"), "check character"),
        (lookup(&official, 100_000, "person_id"), "deadline_ms"),
        (
            lookup(&official, 0, "passport"),
            "\"person_id\" or \"org_code\"",
        ),
    ] {
        let status = lookups.lookup(request).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains(expected), "{status:?}");
    }
    // The exchange's own refusals carry a reason code in google.rpc.ErrorInfo.
    let status = lookups
        .lookup(pb::LookupRequest {
            purpose: " ".into(),
            ..lookup(&official, 0, "person_id")
        })
        .await
        .unwrap_err();
    assert_eq!(reason_of(&status).as_deref(), Some("PURPOSE_REQUIRED"));
    let masked_range = exchange_query::QueryCommand {
        dataset: "real-estate/properties".into(),
        fields: vec![],
        filter: "owner_id > '1'".into(),
        purpose: "核查".into(),
        user: String::new(),
        limit: None,
    };
    match civil.query(masked_range).await {
        Err(exchange_client::ClientError::Status(status)) => {
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
            assert_eq!(
                reason_of(&status).as_deref(),
                Some("FIELD_MASKED"),
                "{status:?}"
            );
        }
        other => panic!(
            "a range on a masked field must be refused: {:?}",
            other.err()
        ),
    }

    // A good one: the rows as an Arrow IPC stream.
    let answer = lookups
        .lookup(lookup(&official.to_lowercase(), 0, "person_id"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.key, official);
    let properties = &answer.answers[0];
    assert_eq!(properties.status(), pb::LookupStatus::Ok, "{properties:?}");
    let reader = arrow_ipc::reader::StreamReader::try_new(
        std::io::Cursor::new(properties.arrow_ipc.clone()),
        None,
    )
    .unwrap();
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows as u64, properties.rows);
    assert_eq!(rows, cluster.planted.official_properties.len());

    // BatchLookup: keys before `start`, too many keys at once, a dataset
    // without a grant; a malformed key is reported back, not dropped.
    let start = pb::BatchLookupStart {
        key_type: "person_id".into(),
        purpose: "核查".into(),
        ..Default::default()
    };
    let status = batch_events(&mut lookups, vec![keys_message(vec![official.clone()])])
        .await
        .unwrap_err();
    assert!(status.message().contains("must be `start`"), "{status:?}");
    let too_many = vec![official.clone(); 10_001];
    let status = batch_events(
        &mut lookups,
        vec![start_message(start.clone()), keys_message(too_many)],
    )
    .await
    .unwrap_err();
    assert!(status.message().contains("at most 10000"), "{status:?}");
    let status = batch_events(
        &mut lookups,
        vec![start_message(pb::BatchLookupStart {
            datasets: vec!["real-estate/leases".into()],
            ..start.clone()
        })],
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert_eq!(reason_of(&status).as_deref(), Some("GRANT_MISSING"));
    let events = batch_events(
        &mut lookups,
        vec![
            start_message(start.clone()),
            keys_message(vec![official.clone(), "1234".into()]),
        ],
    )
    .await
    .unwrap();
    use pb::batch_lookup_event::Event;
    assert!(matches!(&events[0], Event::Targets(t) if t.targets.len() == 1));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Rejected(r) if r.key == "1234" && r.reason.contains("resident identity number"))),
        "{events:?}"
    );
    let rows: u64 = events
        .iter()
        .filter_map(|e| match e {
            Event::Rows(r) => Some(r.rows),
            _ => None,
        })
        .sum();
    assert_eq!(rows as usize, cluster.planted.official_properties.len());
    assert!(events.iter().any(
        |e| matches!(e, Event::ChunkDone(d) if d.keys == 1 && d.status() == pb::LookupStatus::Ok)
    ));
    cluster.shutdown().await;
}

/// List RPCs page with tokens bound to the caller and the request: walked
/// to the end, and refused when altered, shared or reused elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_rpcs_page_with_tokens_bound_to_the_caller() {
    let cluster = ClusterBuilder::new()
        .add_node("civil-affairs")
        .add_node("real-estate")
        .start()
        .await
        .unwrap();
    for dataset in ["real-estate/properties", "real-estate/leases"] {
        cluster
            .grant("civil-affairs", dataset, &[], pb::ApproveRequest::default())
            .await
            .unwrap();
    }
    let civil = cluster.analyst("civil-affairs").await.unwrap();
    let owner = cluster.analyst("real-estate").await.unwrap();
    let mut access = pb::access_client::AccessClient::new(civil.channel());
    let page = |page_token: &str| pb::ListGrantsRequest {
        page_size: 1,
        page_token: page_token.into(),
    };
    let first = access.list_grants(page("")).await.unwrap().into_inner();
    assert_eq!(first.grants.len(), 1);
    assert!(!first.next_page_token.is_empty());
    // The typed forms beside v1's text and seconds.
    let grant = &first.grants[0];
    assert_eq!(
        (grant.status.as_str(), grant.state()),
        ("active", pb::GrantState::Active)
    );
    assert_eq!(
        grant.created_at.as_ref().map(|t| t.seconds),
        Some(grant.created_unix)
    );
    assert!(grant.revoked_at.is_none());
    let second = access
        .list_grants(page(&first.next_page_token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.grants.len(), 1);
    assert_ne!(first.grants[0].id, second.grants[0].id);
    assert!(second.next_page_token.is_empty(), "two grants, two pages");
    // The client walks every page.
    assert_eq!(civil.grants().await.unwrap().len(), 2);

    // Another department presenting the token; an altered token; the token
    // with another request; an oversized page.
    let status = pb::access_client::AccessClient::new(owner.channel())
        .list_grants(page(&first.next_page_token))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("issued to civil-affairs"),
        "{status:?}"
    );
    let mut altered = first.next_page_token.clone();
    altered.insert(5, 'A');
    let status = access.list_grants(page(&altered)).await.unwrap_err();
    assert!(
        status.message().contains("not one this coordinator issued"),
        "{status:?}"
    );
    let status = access
        .pending(pb::PendingRequest {
            page_size: 1,
            page_token: first.next_page_token.clone(),
        })
        .await
        .unwrap_err();
    assert!(status.message().contains("different request"), "{status:?}");
    let status = access
        .list_grants(pb::ListGrantsRequest {
            page_size: 5_000,
            page_token: String::new(),
        })
        .await
        .unwrap_err();
    assert!(status.message().contains("page_size"), "{status:?}");

    // The audit log pages oldest first.
    let official = cluster.planted.official_person_id.clone();
    for _ in 0..3 {
        civil
            .lookup("person_id", &official, "分页测试", Duration::from_secs(3))
            .await
            .unwrap();
    }
    let mut audit = pb::audit_client::AuditClient::new(civil.channel());
    let ask = |page_token: String| pb::AuditLogRequest {
        purpose: "分页测试".into(),
        page_size: 4,
        page_token,
        ..Default::default()
    };
    let first = audit.log(ask(String::new())).await.unwrap().into_inner();
    assert_eq!(first.rows.len(), 4, "two datasets read three times");
    let rest = audit
        .log(ask(first.next_page_token.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.rows.len(), 2);
    assert!(rest.next_page_token.is_empty());
    assert!(first.rows[3].time_ms <= rest.rows[0].time_ms);
    let time = first.rows[0].time.unwrap();
    assert_eq!(
        time.seconds * 1000 + i64::from(time.nanos) / 1_000_000,
        first.rows[0].time_ms
    );
    let members = civil.members().await.unwrap();
    assert!(members.iter().all(|m| m.state() == pb::MemberState::Active
        && m.created_at.as_ref().map(|t| t.seconds) == Some(m.created_unix)
        && m.node.as_ref().is_some_and(|n| n.last_seen_at.is_some())));
    let requests = civil.access_requests().await.unwrap();
    assert!(requests
        .iter()
        .all(|r| r.state() == pb::RequestState::Granted && r.decided_at.is_some()));
    cluster.shutdown().await;
}
