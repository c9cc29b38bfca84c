//! The backend's side of federation for one region, applied: after the region's brokers exist
//! (`up`), before they go (`down`), or directly from known addresses (the sandbox).

use super::Engine;
use super::events::{Event, Events};
use super::planning::RegionWork;
use crate::broker::{BrokerError, Client};
use crate::error::{Error, Result};
use crate::plan::RegionPlan;
use crate::plan::federation::{self, FederationPlan};
use crate::spec::GatewaySpec;

/// Plans and applies the backend's entries of one region whose brokers' upstream URIs are
/// known already (the sandbox knows its nodes without AWS). Returns the changes applied.
pub async fn converge(
    backend: &Client,
    region: &str,
    gateway: Option<&GatewaySpec>,
    uris: &[String],
) -> std::result::Result<usize, BrokerError> {
    let plan = federation::plan(backend, region, gateway, Some(uris), None, None).await?;
    federation::apply(backend, &plan).await
}

impl Engine {
    /// The backend's entries of a region after its AWS resources were applied. Planned again
    /// while this region has its turn at the backend: new brokers have addresses only now, and
    /// another region may just have changed a shared upstream set. When it changed anything,
    /// returns the region's plan it applied by (the brokers' addresses in it).
    pub(super) async fn apply_federation(
        &self,
        work: &RegionWork,
        aws_changed: bool,
        events: &dyn Events,
    ) -> std::result::Result<Option<RegionPlan>, String> {
        let region = work.region();
        let gw = self.gateway(region);
        let _turn = self.federation_turn.lock().await;
        // The region planned again when its AWS resources changed; `None`: `work.plan` holds.
        let (fed, again) = if aws_changed {
            let again = self
                .plan_region(gw, region)
                .await
                .map_err(|e| e.to_string())?;
            (again.federation.unwrap_or_default(), Some(again.plan))
        } else {
            let fed = self
                .plan_federation(gw, region, &work.plan)
                .await
                .map_err(|e| e.to_string())?;
            (fed, None)
        };
        if fed.endpoints_pending {
            return Err(format!(
                "{region}: the brokers have no address yet; run `gwctl up {region}` again"
            ));
        }
        if !fed.has_changes() {
            return Ok(None);
        }
        let client = self.backend_client().map_err(|e| e.to_string())?;
        let n = federation::apply(&client, &fed)
            .await
            .map_err(|e| format!("{region}: backend federation: {e}"))?;
        events.emit(Event::Progress(format!(
            "{region} backend federation: {n} changes applied at {}",
            client.endpoint()
        )));
        Ok(Some(again.unwrap_or_else(|| work.plan.clone())))
    }

    /// Deletes a removed region's buffers on the backend, after its brokers are gone (their
    /// links would declare them again), saying what they still held.
    pub(super) async fn remove_buffers(
        &self,
        fed: &FederationPlan,
        events: &dyn Events,
    ) -> Result<()> {
        if fed.buffers.is_empty() && !fed.bounds_left {
            return Ok(());
        }
        let client = self.backend_client()?;
        let held = federation::delete_buffers(&client, fed)
            .await
            .map_err(|e| Error::Failed(format!("backend federation buffers: {e}")))?;
        events.emit(Event::Progress(format!(
            "{} backend federation: {} buffers deleted ({held} messages no gateway of the region \
             can receive any more)",
            fed.region,
            fed.buffers.len()
        )));
        Ok(())
    }

    /// Removes a region's entries from the backend (`down`), before its brokers go, so the
    /// backend does not retry dead links.
    pub(super) async fn remove_federation(
        &self,
        fed: &FederationPlan,
        events: &dyn Events,
    ) -> Result<()> {
        let client = self.backend_client()?;
        let applied = federation::apply(&client, fed)
            .await
            .map_err(|e| Error::Failed(format!("backend federation: {e}")))?;
        events.emit(Event::Progress(format!(
            "{} backend federation: {applied} entries removed",
            fed.region
        )));
        Ok(())
    }
}
