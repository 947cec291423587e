//! The query path end to end: a consumer's grant, the coordinator's check
//! and signed ticket, the owning node's own check, masking at the source,
//! and Arrow Flight back through the coordinator; and every way it must
//! refuse.

use std::time::{Duration, Instant};

use arrow_array::{Array, RecordBatch, StringArray};
use exchange_client::Client;
use exchange_policy::ticket::{Ticket, TicketField};
use exchange_proto::v1 as pb;
use exchange_query::QueryCommand;
use exchange_testkit::ClusterBuilder;
use futures::StreamExt;

async fn rows(client: &Client, cmd: QueryCommand) -> Result<Vec<RecordBatch>, String> {
    let mut stream = client.query(cmd).await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while let Some(b) = stream.next().await {
        out.push(b.map_err(|e| e.to_string())?);
    }
    Ok(out)
}

fn column(batches: &[RecordBatch], name: &str) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for b in batches {
        let c = b
            .column_by_name(name)
            .unwrap_or_else(|| panic!("no column {name}"));
        let s = c
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("text column");
        out.extend((0..s.len()).map(|i| (!s.is_null(i)).then(|| s.value(i).to_string())));
    }
    out
}

fn cmd(dataset: &str, fields: &[&str], filter: &str) -> QueryCommand {
    QueryCommand {
        dataset: dataset.into(),
        fields: fields.iter().map(|f| f.to_string()).collect(),
        filter: filter.into(),
        purpose: "低保家庭财产核查".into(),
        user: String::new(),
        limit: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_masks_and_denials_on_the_query_path() {
    let mut cluster = ClusterBuilder::new()
        .add_node("vehicle-admin")
        .add_node("civil-affairs")
        .add_node("tax")
        .add_node("real-estate")
        .start()
        .await
        .unwrap();
    let civil = cluster
        .analyst("civil-affairs")
        .await
        .unwrap()
        .with_user("王小明");
    let tax = cluster.analyst("tax").await.unwrap();
    let official = cluster.planted.official_person_id.clone();

    // Without a grant: denied, naming the rule.
    let e = rows(&civil, cmd("vehicle-admin/vehicles", &[], ""))
        .await
        .unwrap_err();
    assert!(e.contains("grant required"), "{e}");

    cluster
        .grant(
            "civil-affairs",
            "vehicle-admin/vehicles",
            &["plate_no", "owner_id", "owner_name"],
            Default::default(),
        )
        .await
        .unwrap();

    // One person's vehicles: masked at the source with the owner's default masks.
    let found = rows(
        &civil,
        cmd(
            "vehicle-admin/vehicles",
            &[],
            &format!("owner_id = '{official}'"),
        ),
    )
    .await
    .unwrap();
    let mut plates: Vec<String> = column(&found, "plate_no").into_iter().flatten().collect();
    plates.sort();
    let mut planted = cluster.planted.official_vehicles.clone();
    planted.sort();
    assert_eq!(plates, planted);
    let ids = column(&found, "owner_id");
    assert!(
        ids.iter().all(|id| id.as_deref()
            == Some(&format!("{}********{}", &official[..6], &official[14..])[..])),
        "{ids:?}"
    );
    let names = column(&found, "owner_name");
    assert!(
        names
            .iter()
            .all(|n| n.as_ref().is_some_and(|n| n.ends_with('*'))),
        "{names:?}"
    );
    assert_eq!(found[0].schema().fields().len(), 3);

    // IN lists, projections, limits.
    let some = rows(
        &civil,
        QueryCommand {
            limit: Some(5),
            ..cmd("vehicle-admin/vehicles", &["plate_no"], "")
        },
    )
    .await
    .unwrap();
    assert_eq!(some.iter().map(|b| b.num_rows()).sum::<usize>(), 5);
    assert_eq!(some[0].num_columns(), 1);
    let in_list = format!(
        "plate_no IN ({})",
        planted
            .iter()
            .map(|p| format!("'{p}'"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    assert_eq!(
        rows(
            &civil,
            cmd("vehicle-admin/vehicles", &["plate_no"], &in_list)
        )
        .await
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum::<usize>(),
        planted.len()
    );

    // Out-of-bounds requests.
    let e = rows(&civil, cmd("vehicle-admin/vehicles", &["vin"], ""))
        .await
        .unwrap_err();
    assert!(
        e.contains("fields within grant") && e.contains("vin"),
        "{e}"
    );
    let e = rows(
        &civil,
        cmd(
            "vehicle-admin/vehicles",
            &["plate_no; DROP TABLE vehicles"],
            "",
        ),
    )
    .await
    .unwrap_err();
    assert!(e.contains("no field"), "{e}");
    let e = rows(&civil, cmd("vehicle-admin/nothing", &[], ""))
        .await
        .unwrap_err();
    assert!(e.contains("no dataset"), "{e}");
    let e = rows(
        &civil,
        QueryCommand {
            purpose: "  ".into(),
            ..cmd("vehicle-admin/vehicles", &[], "")
        },
    )
    .await
    .unwrap_err();
    assert!(e.contains("purpose"), "{e}");
    let e = rows(
        &civil,
        cmd(
            "vehicle-admin/vehicles",
            &["plate_no", "owner_id"],
            "owner_id LIKE '4406%'",
        ),
    )
    .await
    .unwrap_err();
    assert!(e.contains("masked"), "{e}");
    let e = rows(
        &civil,
        cmd("vehicle-admin/vehicles", &["plate_no"], "owner_id = 'x'"),
    )
    .await
    .unwrap_err();
    assert!(e.contains("fields you select"), "{e}");
    let big = (0..10_001)
        .map(|i| format!("'{i}'"))
        .collect::<Vec<_>>()
        .join(",");
    let e = rows(
        &civil,
        cmd(
            "vehicle-admin/vehicles",
            &["plate_no"],
            &format!("plate_no IN ({big})"),
        ),
    )
    .await
    .unwrap_err();
    assert!(e.contains("at most 10000"), "{e}");
    // Injection and odd Unicode are only values.
    assert!(rows(
        &civil,
        cmd(
            "vehicle-admin/vehicles",
            &["plate_no"],
            "plate_no = 'x''; DROP TABLE vehicles; --'"
        )
    )
    .await
    .unwrap()
    .iter()
    .all(|b| b.num_rows() == 0));
    assert!(rows(
        &civil,
        cmd(
            "vehicle-admin/vehicles",
            &["plate_no"],
            "plate_no = '\u{202e}粤E𠀀\u{0301}'"
        )
    )
    .await
    .unwrap()
    .iter()
    .all(|b| b.num_rows() == 0));
    assert_eq!(
        rows(
            &civil,
            cmd(
                "vehicle-admin/vehicles",
                &["plate_no"],
                &format!("owner_id = '{official}'")
            )
        )
        .await
        .err()
        .map(|e| e.contains("fields you select")),
        Some(true)
    );
    assert_eq!(
        column(
            &rows(
                &civil,
                cmd(
                    "vehicle-admin/vehicles",
                    &["plate_no", "owner_id"],
                    &format!("owner_id = '{official}'")
                )
            )
            .await
            .unwrap(),
            "plate_no"
        )
        .len(),
        planted.len(),
        "the table survived"
    );

    // An unmasked grant with a row filter: raw ids, only matching rows.
    cluster
        .grant(
            "tax",
            "vehicle-admin/vehicles",
            &["plate_no", "owner_id"],
            pb::ApproveRequest {
                unmask: vec!["owner_id".into()],
                row_filter: "plate_no LIKE '粤E%'".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let raw = rows(&tax, cmd("vehicle-admin/vehicles", &[], ""))
        .await
        .unwrap();
    let raw_plates: Vec<String> = column(&raw, "plate_no").into_iter().flatten().collect();
    assert!(!raw_plates.is_empty() && raw_plates.iter().all(|p| p.starts_with("粤E")));
    assert!(column(&raw, "owner_id")
        .iter()
        .flatten()
        .all(|id| id.len() == 18 && !id.contains('*')));

    // Tickets: tampered, replayed, stolen.
    let mut flight = arrow_flight::flight_service_client::FlightServiceClient::new(civil.channel());
    let body = serde_json::to_vec(&cmd("vehicle-admin/vehicles", &["plate_no"], "")).unwrap();
    let info = flight
        .get_flight_info(arrow_flight::FlightDescriptor::new_cmd(body.clone()))
        .await
        .unwrap()
        .into_inner();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let mut tampered = ticket.ticket.to_vec();
    tampered[10] ^= 1;
    let e = flight
        .do_get(arrow_flight::Ticket::new(tampered))
        .await
        .unwrap_err();
    assert!(
        e.message().contains("malformed") || e.message().contains("signature"),
        "{}",
        e.message()
    );
    let mut tax_flight =
        arrow_flight::flight_service_client::FlightServiceClient::new(tax.channel());
    let e = tax_flight.do_get(ticket.clone()).await.unwrap_err();
    assert!(
        e.message().contains("issued to civil-affairs"),
        "{}",
        e.message()
    );
    let mut first = flight.do_get(ticket.clone()).await.unwrap().into_inner();
    while first.next().await.is_some() {}
    let replay = flight.do_get(ticket.clone()).await;
    let replay_error = match replay {
        Err(e) => e.message().to_string(),
        Ok(stream) => stream
            .into_inner()
            .next()
            .await
            .and_then(|r| r.err())
            .map(|e| e.message().to_string())
            .unwrap_or_default(),
    };
    assert!(replay_error.contains("already used"), "{replay_error}");
    // The replay left the original query's record alone: one completion,
    // ok, with its rows (a second one once marked it failed with 0 rows).
    let envelope = std::str::from_utf8(&ticket.ticket).unwrap();
    let payload = cluster
        .coordinator
        .state
        .ticket_signer
        .verifier()
        .open(envelope)
        .unwrap();
    let query_id = serde_json::from_slice::<Ticket>(&payload).unwrap().query_id;
    let completions = || {
        let mut found = Vec::new();
        exchange_audit::read::scan(cluster.coordinator.state.audit.dir(), |_, r| {
            if let exchange_audit::Event::QueryCompletion(c) = r.event {
                if c.query_id == query_id {
                    found.push(c);
                }
            }
            true
        })
        .unwrap();
        found
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let found = completions();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].status, "ok");
    assert!(found[0].rows > 0);

    // The node's own checks, whatever the coordinator signed: secret fields,
    // tickets for other nodes, expired tickets.
    let signer = &cluster.coordinator.state.ticket_signer;
    let node = exchange_node::flight::NodeFlight::new(cluster.nodes["real-estate"].state.clone());
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let secret = Ticket {
        version: 1,
        id: "forged-1".into(),
        query_id: "Q-test".into(),
        dataset: "real-estate/leases".into(),
        owner: "real-estate".into(),
        consumer: "civil-affairs".into(),
        user: String::new(),
        purpose: "x".into(),
        grant_id: "G-none".into(),
        fields: vec![TicketField {
            name: "landlord_id".into(),
            mask: "none".into(),
        }],
        filter: String::new(),
        row_filter: String::new(),
        limit: None,
        issued_unix: now,
        expires_unix: now + 60,
        embargo_until: String::new(),
    };
    let e = node.plan(&secret.seal(signer), now).unwrap_err();
    assert!(e.message().contains("secret"), "{}", e.message());
    let other = Ticket {
        id: "forged-2".into(),
        dataset: "tax/taxpayers".into(),
        owner: "tax".into(),
        ..secret.clone()
    };
    assert!(node
        .plan(&other.seal(signer), now)
        .unwrap_err()
        .message()
        .contains("not this node's"));
    let ok = Ticket {
        id: "t-3".into(),
        fields: vec![TicketField {
            name: "address".into(),
            mask: "keep_first:9".into(),
        }],
        dataset: "real-estate/properties".into(),
        ..secret.clone()
    };
    assert!(node
        .plan(&ok.seal(signer), now + 3_600)
        .unwrap_err()
        .message()
        .contains("expired"));
    assert!(node.plan(&ok.seal(signer), now).is_ok());

    // An offline owner: a clear error within the deadline, no hang.
    cluster
        .nodes
        .remove("vehicle-admin")
        .unwrap()
        .shutdown()
        .await;
    let started = Instant::now();
    let e = rows(&civil, cmd("vehicle-admin/vehicles", &["plate_no"], ""))
        .await
        .unwrap_err();
    assert!(
        e.contains("offline") || e.contains("cannot be reached"),
        "{e}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_quota_is_counted_and_enforced() {
    let cluster = ClusterBuilder::new()
        .add_node("vehicle-admin")
        .add_node("civil-affairs")
        .start()
        .await
        .unwrap();
    let civil = cluster.analyst("civil-affairs").await.unwrap();
    let owner = cluster.analyst("vehicle-admin").await.unwrap();
    let r = civil
        .request_access(pb::AccessRequest {
            dataset: "vehicle-admin/vehicles".into(),
            fields: vec!["plate_no".into()],
            purpose: "核查".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    owner
        .approve(pb::ApproveRequest {
            request_id: r.id,
            quota_rows_per_day: 30,
            ..Default::default()
        })
        .await
        .unwrap();
    let count = |batches: Vec<RecordBatch>| batches.iter().map(|b| b.num_rows()).sum::<usize>();
    assert_eq!(
        count(
            rows(
                &civil,
                QueryCommand {
                    limit: Some(20),
                    ..cmd("vehicle-admin/vehicles", &[], "")
                }
            )
            .await
            .unwrap()
        ),
        20
    );
    assert_eq!(
        count(
            rows(&civil, cmd("vehicle-admin/vehicles", &[], ""))
                .await
                .unwrap()
        ),
        10,
        "only what is left of today's quota"
    );
    let e = rows(&civil, cmd("vehicle-admin/vehicles", &[], ""))
        .await
        .unwrap_err();
    assert!(e.contains("daily quota"), "{e}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_node_has_the_last_word() {
    let cluster = ClusterBuilder::new()
        .add_node("vehicle-admin")
        .add_node("tax")
        .add_node("civil-affairs")
        .veto("vehicle-admin", &["tax"], &[])
        .start()
        .await
        .unwrap();
    let owner = cluster.analyst("vehicle-admin").await.unwrap();
    for consumer in ["tax", "civil-affairs"] {
        let client = cluster.analyst(consumer).await.unwrap();
        let r = client
            .request_access(pb::AccessRequest {
                dataset: "vehicle-admin/vehicles".into(),
                fields: vec!["plate_no".into()],
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
    }
    // The coordinator granted tax, but the owner's node refuses it.
    let tax = cluster.analyst("tax").await.unwrap();
    let e = rows(
        &tax,
        QueryCommand {
            limit: Some(1),
            ..cmd("vehicle-admin/vehicles", &[], "")
        },
    )
    .await
    .unwrap_err();
    assert!(e.contains("local veto"), "{e}");
    let civil = cluster.analyst("civil-affairs").await.unwrap();
    assert_eq!(
        rows(
            &civil,
            QueryCommand {
                limit: Some(1),
                ..cmd("vehicle-admin/vehicles", &[], "")
            }
        )
        .await
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum::<usize>(),
        1
    );
    // A query command cannot claim another department: identity is the certificate's.
    let mut flight = arrow_flight::flight_service_client::FlightServiceClient::new(tax.channel());
    let forged =
        br#"{"dataset": "vehicle-admin/vehicles", "purpose": "x", "consumer": "civil-affairs"}"#
            .to_vec();
    let e = flight
        .get_flight_info(arrow_flight::FlightDescriptor::new_cmd(forged))
        .await
        .unwrap_err();
    assert!(
        e.message().contains("unknown field `consumer`"),
        "{}",
        e.message()
    );
    cluster.shutdown().await;
}

/// A filter means the same at the coordinator and at the node, and the
/// owner's row filter holds whatever fields the consumer selects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_mean_the_same_at_both_ends() {
    let cluster = ClusterBuilder::new()
        .add_node("vehicle-admin")
        .add_node("market-regulation")
        .add_node("civil-affairs")
        .add_node("tax")
        .start()
        .await
        .unwrap();
    let civil = cluster.analyst("civil-affairs").await.unwrap();
    let companies = "market-regulation/companies";
    cluster
        .grant(
            "civil-affairs",
            companies,
            &[],
            pb::ApproveRequest::default(),
        )
        .await
        .unwrap();
    // Once re-printed as 1e16 and 1e-5, which the node could not read.
    for filter in [
        "registered_capital < 10000000000000000",
        "registered_capital < 0.00001",
    ] {
        rows(
            &civil,
            cmd(companies, &["org_code", "registered_capital"], filter),
        )
        .await
        .unwrap_or_else(|e| panic!("{filter}: {e}"));
    }
    // Too many values in all: refused by the coordinator, naming the limit,
    // instead of an internal database error from the node.
    let list: Vec<String> = (0..10_000).map(|i| i.to_string()).collect();
    let many = vec![format!("registered_capital IN ({})", list.join(",")); 3].join(" OR ");
    let e = rows(&civil, cmd(companies, &["registered_capital"], &many))
        .await
        .unwrap_err();
    assert!(e.contains("at most 20000"), "{e}");
    assert!(!e.contains("SQL"), "{e}");

    // The README's example: a row filter on plate_no; the consumer reads
    // only owner_id, and the row filter still holds.
    let vehicles = "vehicle-admin/vehicles";
    let row_filter = |f: &str| pb::ApproveRequest {
        row_filter: f.into(),
        ..Default::default()
    };
    cluster
        .grant(
            "civil-affairs",
            vehicles,
            &["plate_no", "owner_id"],
            row_filter("plate_no LIKE '粤EA%'"),
        )
        .await
        .unwrap();
    let ids = rows(&civil, cmd(vehicles, &["owner_id"], ""))
        .await
        .unwrap();
    let plates = rows(&civil, cmd(vehicles, &["plate_no"], ""))
        .await
        .unwrap();
    let plates = column(&plates, "plate_no");
    assert!(!plates.is_empty());
    assert!(plates.iter().flatten().all(|p| p.starts_with("粤EA")));
    assert_eq!(column(&ids, "owner_id").len(), plates.len());

    // The owner's row filter may use a field the consumer sees masked, or
    // one outside the grant: it is the owner's rule, not a probe.
    let tax = cluster.analyst("tax").await.unwrap();
    cluster
        .grant(
            "tax",
            vehicles,
            &["owner_id"],
            row_filter("owner_id LIKE '4406%' AND plate_no LIKE '粤E%'"),
        )
        .await
        .unwrap();
    let masked = rows(&tax, cmd(vehicles, &["owner_id"], "")).await.unwrap();
    let masked = column(&masked, "owner_id");
    assert!(!masked.is_empty());
    assert!(masked.iter().flatten().all(|id| id.contains('*')));
    cluster.shutdown().await;
}

/// Every resident ID that shows as `masked` under the `id_number` mask:
/// the visible region and sequence, every birth date from 1920 to 2010, and
/// the visible check character.
fn id_candidates(masked: &str) -> Vec<String> {
    let chars: Vec<char> = masked.chars().collect();
    let region: String = chars[..6].iter().collect();
    let tail: String = chars[14..17].iter().collect();
    let check = chars[17];
    let mut out = Vec::new();
    let mut day = time::macros::date!(1920 - 01 - 01);
    while day < time::macros::date!(2011 - 01 - 01) {
        let birth = format!(
            "{:04}{:02}{:02}",
            day.year(),
            u8::from(day.month()),
            day.day()
        );
        let first17 = format!("{region}{birth}{tail}");
        if exchange_policy::ids::resident_id_check(&first17) == Some(check) {
            out.push(format!("{first17}{check}"));
        }
        day = day.next_day().unwrap();
    }
    out
}

fn quoted(ids: &[String]) -> String {
    ids.iter()
        .map(|i| format!("'{i}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The attack that once recovered a masked resident ID in 13 queries: pin
/// one vehicle by its plate and bisect the candidate birth dates with IN
/// lists on the masked owner_id. Each value tested against a masked field
/// now counts against the grant's daily budget (1,000 unless the owner
/// sets another), and the owner sees every count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_masked_id_cannot_be_bisected() {
    let cluster = ClusterBuilder::new()
        .add_node("vehicle-admin")
        .add_node("civil-affairs")
        .add_node("tax")
        .add_consumer("procuratorate", "检察院")
        .start()
        .await
        .unwrap();
    let vehicles = "vehicle-admin/vehicles";
    let both = ["plate_no", "owner_id"];
    let approve = pb::ApproveRequest::default;
    cluster
        .grant("civil-affairs", vehicles, &both, approve())
        .await
        .unwrap();
    let civil = cluster.analyst("civil-affairs").await.unwrap();
    let first = rows(
        &civil,
        QueryCommand {
            limit: Some(1),
            ..cmd(vehicles, &both, "")
        },
    )
    .await
    .unwrap();
    let plate = column(&first, "plate_no")[0].clone().unwrap();
    let masked = column(&first, "owner_id")[0].clone().unwrap();
    assert!(masked.contains("********"), "{masked}");
    // The truth, as a department with the field unmasked sees it.
    let unmask = pb::ApproveRequest {
        unmask: vec!["owner_id".into()],
        ..approve()
    };
    cluster.grant("tax", vehicles, &both, unmask).await.unwrap();
    let tax = cluster.analyst("tax").await.unwrap();
    let pin = format!("plate_no = '{plate}'");
    let truth = column(
        &rows(&tax, cmd(vehicles, &both, &pin)).await.unwrap(),
        "owner_id",
    )[0]
    .clone()
    .unwrap();
    let candidates = id_candidates(&masked);
    assert!(candidates.len() > 1_000 && candidates.contains(&truth));

    // The whole candidate list at once, or its first half: over the
    // budget, so the bisection cannot start.
    let probe = |ids: &[String]| {
        let filter = format!("{pin} AND owner_id IN ({})", quoted(ids));
        cmd(vehicles, &both, &filter)
    };
    let e = rows(&civil, probe(&candidates)).await.unwrap_err();
    assert!(
        e.contains("masked value budget") && e.contains("allows 500"),
        "{e}"
    );
    let half = &candidates[..candidates.len() / 2];
    let e = rows(&civil, probe(half)).await.unwrap_err();
    assert!(e.contains("masked value budget"), "{e}");
    // Within the budget, one list cannot be tested over and over: the
    // fourth test of the same values is refused.
    let near: Vec<String> = candidates
        .iter()
        .filter(|c| *c != &truth)
        .take(100)
        .cloned()
        .collect();
    for _ in 0..3 {
        rows(&civil, probe(&near)).await.unwrap();
    }
    let e = rows(&civil, probe(&near[..50])).await.unwrap_err();
    assert!(e.contains("masked value repeats"), "{e}");

    // The owner sees how hard each query probed.
    let owner = cluster.analyst("vehicle-admin").await.unwrap();
    let log = owner
        .audit_log(pb::AuditLogRequest::default())
        .await
        .unwrap();
    let probes: Vec<u64> = log
        .rows
        .iter()
        .filter(|r| r.consumer == "civil-affairs" && r.allowed)
        .map(|r| r.masked_values)
        .collect();
    assert_eq!(
        probes.iter().filter(|n| **n == 100).count(),
        3,
        "{probes:?}"
    );
    assert!(log
        .rows
        .iter()
        .any(|r| r.rule == "masked value budget" && r.consumer == "civil-affairs"));

    // Legitimate work goes on: one exact lookup fits in what is left, and an
    // owner who raises the budget allows a batch of 2,000 keys.
    let exact = format!("owner_id = '{truth}'");
    assert_eq!(
        rows(&civil, cmd(vehicles, &both, &exact))
            .await
            .unwrap()
            .len(),
        1
    );
    let raised = pb::ApproveRequest {
        masked_value_budget_per_day: 5_000,
        ..approve()
    };
    cluster
        .grant("procuratorate", vehicles, &both, raised)
        .await
        .unwrap();
    let procuratorate = cluster.analyst("procuratorate").await.unwrap();
    let batch = format!("owner_id IN ({})", quoted(&candidates[..2_000]));
    rows(&procuratorate, cmd(vehicles, &both, &batch))
        .await
        .unwrap();
    cluster.shutdown().await;
}

/// The `hash` mask is keyed per consumer: a department's hashed keys join
/// across the departments it queries, and nothing its own node holds
/// recomputes them (once, every node held the one federation-wide key and
/// civil affairs could re-identify the legal representatives tax sent it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashed_keys_join_for_their_consumer_and_its_own_node_cannot_recompute_them() {
    let cluster = ClusterBuilder::new()
        .add_node("tax")
        .add_node("market-regulation")
        .add_node("civil-affairs")
        .add_node("vehicle-admin")
        .start()
        .await
        .unwrap();
    let fields = ["org_code", "legal_rep_id"];
    let (taxpayers, companies) = ("tax/taxpayers", "market-regulation/companies");
    for consumer in ["civil-affairs", "vehicle-admin"] {
        for dataset in [taxpayers, companies] {
            let approve = pb::ApproveRequest::default();
            cluster
                .grant(consumer, dataset, &fields, approve)
                .await
                .unwrap();
        }
    }
    // One company's legal representative, as the owner's database holds it.
    use sqlx::Connection;
    let db = cluster.dir.join("data/tax.db");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=ro", db.display()))
        .await
        .unwrap();
    let (org, raw): (String, String) = sqlx::query_as(
        "SELECT org_code, legal_rep_id FROM taxpayers WHERE legal_rep_id <> '' LIMIT 1",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let received = |consumer: &'static str, dataset: &'static str| {
        let filter = format!("org_code = '{org}'");
        let cluster = &cluster;
        async move {
            let client = cluster.analyst(consumer).await.unwrap();
            let batches = rows(&client, cmd(dataset, &fields, &filter)).await.unwrap();
            column(&batches, "legal_rep_id")[0].clone().unwrap()
        }
    };
    let civil_tax = received("civil-affairs", taxpayers).await;
    let civil_market = received("civil-affairs", companies).await;
    let vehicle_tax = received("vehicle-admin", taxpayers).await;
    assert_ne!(civil_tax, raw);
    // Joins where joining is the point: one consumer, two owners.
    assert_eq!(
        civil_tax, civil_market,
        "the same person hashes alike for one consumer"
    );
    // Another consumer receives another hash of the same value.
    assert_ne!(civil_tax, vehicle_tax);

    // Everything civil affairs' own node holds: its keys file, and no key
    // of its own department's answers among them.
    let civil_node = &cluster.nodes["civil-affairs"].state;
    // (Its keys as of now: it asks for those of members added since its
    // last heartbeat.)
    civil_node.mask_key_for("vehicle-admin").await.unwrap();
    let own = civil_node.mask_key_for("civil-affairs").await.unwrap_err();
    assert!(
        own.message().contains("no mask key for civil-affairs"),
        "{own:?}"
    );
    assert!(!civil_node
        .mask_keys
        .consumers()
        .contains(&"civil-affairs".to_string()));
    assert!(civil_node
        .mask_keys
        .consumers()
        .contains(&"vehicle-admin".to_string()));
    for member in civil_node.mask_keys.consumers() {
        let key = civil_node.mask_keys.get(&member).unwrap();
        assert_ne!(
            key.digest(&raw),
            civil_tax,
            "{member}'s key recomputes civil's hash"
        );
    }
    let data_dir = &civil_node.config.data_dir;
    let file = data_dir.join(exchange_node::mask_keys::FILE);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // The owner's node holds civil's key: that is how it hashes for civil.
    let tax_key = cluster.nodes["tax"]
        .state
        .mask_keys
        .get("civil-affairs")
        .unwrap();
    assert_eq!(tax_key.digest(&raw), civil_tax);

    // Heartbeats carry the keys only when the node does not hold them yet:
    // the answer names the set, and a node naming it gets none.
    let channel = exchange_transport::client::connect(
        &cluster.coordinator.addr.to_string(),
        &exchange_transport::TlsIdentity::load(&cluster.member_dir("civil-affairs"), "node")
            .unwrap(),
        exchange_transport::client::ExpectedServer::Role(exchange_pki::Role::Coordinator),
        Default::default(),
    )
    .await
    .unwrap();
    let catalog = pb::catalog_client::CatalogClient::new(channel);
    let beat = |mask_keys_digest: &str| {
        let request = pb::HeartbeatRequest {
            mask_keys_digest: mask_keys_digest.to_string(),
            ..Default::default()
        };
        let mut catalog = catalog.clone();
        async move { catalog.heartbeat(request).await.unwrap().into_inner() }
    };
    let first = beat("").await;
    assert!(first.consumer_mask_keys.contains_key("vehicle-admin"));
    assert_eq!(first.mask_keys_digest.len(), 32, "{first:?}");
    let again = beat(&first.mask_keys_digest).await;
    assert!(again.consumer_mask_keys.is_empty(), "{again:?}");
    assert_eq!(again.mask_keys_digest, first.mask_keys_digest);
    let stale = beat("0123456789abcdef0123456789abcdef").await;
    assert_eq!(stale.consumer_mask_keys, first.consumer_mask_keys);
    cluster.shutdown().await;
}
