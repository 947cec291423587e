//! Decisions that must happen once: an approval and a refusal of the same
//! request at the same moment, of which exactly one wins and the other is
//! told why, with no grant left behind by the loser.

use exchange_proto::v1 as pb;
use exchange_testkit::ClusterBuilder;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_and_a_refusal_at_once_decide_a_request_once() {
    let cluster = ClusterBuilder::new()
        .add_node("civil-affairs")
        .add_node("real-estate")
        .start()
        .await
        .unwrap();
    let civil = cluster.analyst("civil-affairs").await.unwrap();
    let owner = cluster.analyst("real-estate").await.unwrap();
    let owner2 = cluster.analyst("real-estate").await.unwrap();
    let (mut approved, mut refused) = (0, 0);
    for round in 0..12 {
        let request = civil
            .request_access(pb::AccessRequest {
                dataset: "real-estate/leases".into(),
                purpose: format!("并发决定测试 {round}"),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(request.state(), pb::RequestState::Pending, "round {round}");
        let approve = owner.approve(pb::ApproveRequest {
            request_id: request.id.clone(),
            ..Default::default()
        });
        let refuse = owner2.refuse(&request.id, "同时拒绝");
        let (a, r) = tokio::join!(approve, refuse);
        assert!(
            a.is_ok() != r.is_ok(),
            "round {round}: exactly one decision wins: {a:?} / {r:?}"
        );
        let loser = a.as_ref().err().or(r.as_ref().err()).unwrap().to_string();
        assert!(
            loser.contains("being decided by someone else") || loser.contains("already"),
            "{loser}"
        );
        let grants = civil.grants().await.unwrap();
        let granted: Vec<_> = grants
            .iter()
            .filter(|g| g.request_id == request.id)
            .collect();
        let record = civil
            .access_requests()
            .await
            .unwrap()
            .into_iter()
            .find(|x| x.id == request.id)
            .unwrap();
        match a {
            Ok(decided) => {
                approved += 1;
                assert_eq!(record.state(), pb::RequestState::Granted);
                assert_eq!(granted.len(), 1);
                owner
                    .revoke_grant(&decided.grant_id, "下一轮")
                    .await
                    .unwrap();
            }
            Err(_) => {
                refused += 1;
                assert_eq!(record.state(), pb::RequestState::Refused);
                assert!(granted.is_empty(), "the refused request left a grant");
            }
        }
    }
    assert_eq!(approved + refused, 12);
    cluster.shutdown().await;
}
