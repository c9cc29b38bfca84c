//! The broker instances AWS reports, one by one: what the sandbox that follows the emulated
//! cloud boots a local node for, and what `upgrade` rolls.

use super::Engine;
use crate::error::{Error, Result};
use crate::model::resources::{BROKER_PREFIX, CLUSTER_PART, Kind};

/// One broker instance as AWS reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInstance {
    /// Its slot in the region (`broker-1`); two instances share one during a replacement.
    pub slot: String,
    pub id: String,
    /// `pending`, `running`, `stopping`, `stopped` (terminated ones are not listed).
    pub state: String,
    pub private_ip: Option<String>,
    /// The launch hash tag: which rendering of the region files it was launched from.
    pub launch_sha256: String,
    /// The RabbitMQ cluster it belongs to (its `gwctl-cluster` tag).
    pub cluster: String,
}

impl Engine {
    /// The broker instances of a gateway region, by slot then id.
    pub async fn broker_instances(&self, region: &str) -> Result<Vec<BrokerInstance>> {
        let aws = self.connect(region).await;
        let failed = |e: crate::cloud::CloudError| Error::Failed(format!("{region}: {e}"));
        let mut out: Vec<BrokerInstance> = aws
            .instances()
            .await
            .map_err(failed)?
            .into_iter()
            .filter(|o| o.key.kind == Kind::Instance && o.key.name.starts_with(BROKER_PREFIX))
            .map(|o| BrokerInstance {
                slot: o.key.name.clone(),
                launch_sha256: match &o.spec {
                    crate::model::resources::Spec::Instance { launch_sha256, .. } => {
                        launch_sha256.clone()
                    }
                    _ => String::new(),
                },
                private_ip: o.parts.get("private_ip").cloned(),
                cluster: o.parts.get(CLUSTER_PART).cloned().unwrap_or_default(),
                state: o.state.clone().unwrap_or_default(),
                id: o.id,
            })
            .collect();
        out.sort_by(|a, b| (&a.slot, &a.id).cmp(&(&b.slot, &b.id)));
        Ok(out)
    }

    /// The user-data instance `id` of `region` was launched with, as text (inflated).
    pub async fn instance_user_data(&self, region: &str, id: &str) -> Result<String> {
        let aws = self.connect(region).await;
        let bytes = aws
            .user_data(id)
            .await
            .map_err(|e| Error::Failed(format!("{region}: {e}")))?;
        crate::model::user_data::decode(&bytes)
            .map_err(|e| Error::Failed(format!("{region}: {id}: user-data: {e}")))
    }
}
