//! The node's gRPC handlers.

use std::sync::Arc;

use exchange_proto::v1 as pb;
use exchange_transport::caller;
use tonic::{Request, Response, Status};

use crate::NodeState;

#[derive(Debug, Clone)]
pub struct NodeService(pub Arc<NodeState>);

#[tonic::async_trait]
impl pb::node_server::Node for NodeService {
    async fn describe(
        &self,
        request: Request<pb::DescribeRequest>,
    ) -> Result<Response<pb::DescribeResponse>, Status> {
        caller(&request)?;
        let current = self.0.current();
        Ok(Response::new(pb::DescribeResponse {
            member_id: self.0.member_id.clone(),
            crl_number: self.0.revocations.number(),
            catalog_digest: current.manifest.digest.clone(),
            datasets: current.manifest.to_published(),
        }))
    }
}
