//! The typed forms of v1's text fields over the wire: dates as
//! `google.type.Date`, time windows as `google.protobuf.Timestamp`, each
//! accepted beside the text or seconds it types, and refused with a reason
//! when the two forms disagree.

use exchange_proto::v1 as pb;
use exchange_proto::v1::typed::{Date, Timestamp};
use exchange_testkit::ClusterBuilder;
use exchange_transport::refusal::reason_of;

fn day(year: i32, month: i32, day: i32) -> Option<Date> {
    Some(Date { year, month, day })
}

fn assert_invalid(status: &tonic::Status, names: &str) {
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert_eq!(reason_of(status).as_deref(), Some("INVALID_REQUEST"));
    assert!(status.message().contains(names), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dates_and_time_windows_travel_typed() {
    let cluster = ClusterBuilder::new()
        .add_node("civil-affairs")
        .add_node("real-estate")
        .start()
        .await
        .unwrap();
    // Next year: within the three years a request may reach.
    let y = time::OffsetDateTime::now_utc().year() + 1;
    let civil = cluster.analyst("civil-affairs").await.unwrap();
    let owner = cluster.analyst("real-estate").await.unwrap();
    let ask = |until: &str, until_date: Option<Date>| pb::AccessRequest {
        dataset: "real-estate/leases".into(),
        purpose: "租赁补贴资格核查".into(),
        until: until.into(),
        until_date,
        ..Default::default()
    };

    // Two forms naming different days, and a Date that is no day at all.
    let mut access = pb::access_client::AccessClient::new(civil.channel());
    let status = access
        .request_access(ask(&format!("{y}-12-30"), day(y, 12, 31)))
        .await
        .unwrap_err();
    assert_invalid(
        &status,
        &format!("until ({y}-12-30) and until_date ({y}-12-31)"),
    );
    let status = access
        .request_access(ask("", day(y, 2, 30)))
        .await
        .unwrap_err();
    assert_invalid(
        &status,
        &format!("until_date is not a calendar day ({y}-02-30)"),
    );

    // The Date alone, and the same day in both forms, are one request.
    let request = civil.request_access(ask("", day(y, 12, 31))).await.unwrap();
    assert_eq!(request.until, format!("{y}-12-31"));
    assert_eq!(request.until_date, day(y, 12, 31));
    let again = civil
        .request_access(ask(&format!("{y}-12-31"), day(y, 12, 31)))
        .await
        .unwrap();
    assert_eq!(again.id, request.id, "the open request, not a second one");

    let decided = owner
        .approve(pb::ApproveRequest {
            request_id: request.id.clone(),
            until_date: day(y, 6, 30),
            embargo_until_date: day(y, 1, 1),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(decided.state(), pb::RequestState::Granted);
    let grants = civil.grants().await.unwrap();
    let grant = grants.iter().find(|g| g.id == decided.grant_id).unwrap();
    assert_eq!(
        (grant.until.clone(), grant.until_date),
        (format!("{y}-06-30"), day(y, 6, 30))
    );
    assert_eq!(
        (grant.embargo_until.clone(), grant.embargo_until_date),
        (format!("{y}-01-01"), day(y, 1, 1))
    );

    // Time windows as Timestamps: the same filter as the seconds.
    civil
        .lookup(
            "person_id",
            &cluster.planted.official_person_id,
            "租赁补贴资格核查",
            std::time::Duration::from_secs(3),
        )
        .await
        .unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let window = |since: i64, since_unix: i64| pb::AuditLogRequest {
        since: Some(Timestamp {
            seconds: since,
            nanos: 0,
        }),
        since_unix,
        ..Default::default()
    };
    let mut audit = pb::audit_client::AuditClient::new(civil.channel());
    let past = audit.log(window(now - 3600, 0)).await.unwrap().into_inner();
    assert!(!past.rows.is_empty());
    let same = audit
        .log(window(now - 3600, now - 3600))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(same.rows.len(), past.rows.len());
    let future = audit.log(window(now + 3600, 0)).await.unwrap().into_inner();
    assert!(future.rows.is_empty(), "{future:?}");
    let status = audit.log(window(now, now - 60)).await.unwrap_err();
    assert_invalid(&status, "since_unix");
    let report = audit
        .report(pb::ReportRequest {
            kind: "daily".into(),
            since: Some(Timestamp {
                seconds: now + 3600,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(report.rows.is_empty(), "{report:?}");
    cluster.shutdown().await;
}
