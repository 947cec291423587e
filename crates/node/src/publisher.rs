//! The node's background loop: publish, heartbeat, receive CRLs, and
//! republish when the manifest file changes.

use std::sync::Arc;
use std::time::Duration;

use exchange_pki::Role;
use exchange_proto::v1 as pb;
use exchange_transport::client::{connect_lazy, ClientOptions, ExpectedServer};
use exchange_transport::Channel;
use tokio::sync::watch;

use crate::{load_and_check, NodeState};

async fn publish(
    client: &mut pb::catalog_client::CatalogClient<Channel>,
    state: &NodeState,
) -> Result<(), tonic::Status> {
    let current = state.current();
    let response = client
        .publish(pb::PublishRequest {
            datasets: current.manifest.to_published(),
            digest: current.manifest.digest.clone(),
            node_address: state.advertise_addr.clone(),
        })
        .await?
        .into_inner();
    if response.changed {
        tracing::info!(
            version = response.version,
            datasets = response.datasets,
            "catalog published"
        );
    }
    Ok(())
}

pub async fn run(state: Arc<NodeState>, mut stop: watch::Receiver<bool>) {
    let channel = match connect_lazy(
        &state.config.coordinator,
        &state.tls,
        ExpectedServer::Role(Role::Coordinator),
        ClientOptions {
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(10),
        },
    ) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot reach the coordinator; publishing disabled");
            return;
        }
    };
    let mut catalog =
        pb::catalog_client::CatalogClient::new(channel).max_decoding_message_size(64 * 1024 * 1024);
    let mut interval = Duration::from_secs(state.config.heartbeat_interval_secs as u64);
    let poll = Duration::from_secs(state.config.manifest_poll_secs as u64);
    let mut need_publish = true;
    let mut failures = 0u32;
    let mut last_heartbeat = tokio::time::Instant::now() - interval;
    // Names the mask keys last received: the coordinator sends them again
    // only when its set has changed.
    let mut held_mask_keys = String::new();
    let mut last_mtime = std::fs::metadata(&state.config.manifest)
        .and_then(|m| m.modified())
        .ok();
    // The last refusal logged: an editor's save can touch the file more than
    // once, and the same problems are logged once, not once per touch.
    let mut last_refusal: Option<String> = None;
    loop {
        // Manifest changes: re-validate against the sources; publish if good.
        let mtime = std::fs::metadata(&state.config.manifest)
            .and_then(|m| m.modified())
            .ok();
        if mtime != last_mtime {
            last_mtime = mtime;
            match load_and_check(&state.config.manifest, &state.member_id).await {
                Ok(published) if published.manifest.digest != state.current().manifest.digest => {
                    last_refusal = None;
                    published.log_warnings();
                    *state.catalog.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(published);
                    tracing::info!("manifest changed; publishing the new catalog");
                    need_publish = true;
                }
                Ok(_) => last_refusal = None,
                Err(e) => {
                    let text = format!("{e:#}");
                    if last_refusal.as_deref() != Some(text.as_str()) {
                        tracing::error!(error = %text, "manifest change refused; the previous catalog stays published");
                        last_refusal = Some(text);
                    }
                }
            }
        }
        if need_publish {
            match publish(&mut catalog, &state).await {
                Ok(()) => {
                    need_publish = false;
                    failures = 0;
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(10) {
                        tracing::warn!(error = %e.message(), failures, "publish failed; will retry");
                    }
                }
            }
        }
        if last_heartbeat.elapsed() >= interval {
            last_heartbeat = tokio::time::Instant::now();
            let request = pb::HeartbeatRequest {
                catalog_digest: state.current().manifest.digest.clone(),
                node_address: state.advertise_addr.clone(),
                crl_number: state.revocations.number(),
                mask_keys_digest: held_mask_keys.clone(),
            };
            match catalog.heartbeat(request).await {
                Ok(response) => {
                    let r = response.into_inner();
                    if r.republish {
                        need_publish = true;
                    }
                    if !r.crl_der.is_empty() {
                        if let Err(e) = state.apply_crl(&r.crl_der) {
                            tracing::error!(error = %e, "revocation list from the coordinator refused");
                        }
                    }
                    if !r.ticket_public_key.is_empty() {
                        if let Err(e) = state.set_ticket_key(&r.ticket_public_key) {
                            tracing::error!(error = %e, "could not store the ticket key");
                        }
                    }
                    if !r.consumer_mask_keys.is_empty() {
                        match state.mask_keys.replace(&r.consumer_mask_keys) {
                            Ok(_) => held_mask_keys = r.mask_keys_digest.clone(),
                            Err(e) => {
                                tracing::error!(error = %format!("{e:#}"), "could not store the mask keys")
                            }
                        }
                    }
                    if r.interval_secs > 0 {
                        interval = Duration::from_secs(r.interval_secs as u64);
                    }
                }
                Err(e) => tracing::warn!(error = %e.message(), "heartbeat failed"),
            }
        }
        let wait = if need_publish {
            Duration::from_millis(500).min(poll)
        } else {
            poll.min(interval)
        };
        tokio::select! {
            _ = stop.wait_for(|v| *v) => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
