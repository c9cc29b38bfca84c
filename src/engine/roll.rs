//! Replacing a gateway region's brokers without taking it down: a batch of brokers at a time
//! (`--max-unavailable`, one by default), each replacement launched beside the broker it
//! replaces and joined to the cluster before the old one is drained, its address moved, its
//! data volume snapshotted and the instance deleted. Gates pass before and after each batch.
//!
//! Every sub-step first looks at what AWS reports (a replacement already running, an old
//! broker already stopped, an address already moved), so a run killed anywhere resumes when
//! `upgrade` runs again.

use std::time::Duration;

use super::Engine;
use super::events::{Event, Events};
use super::upgrade::Step;
use crate::cloud::Ids;
use crate::error::{Error, Result};
use crate::model::resources::{Key, Kind, Observed};
use crate::plan::RegionPlan;
use crate::spec::GatewaySpec;

/// How long gates may take to pass around a batch once the new brokers run (a forgotten
/// node's queue replicas move on RabbitMQ's own schedule; EC2's node cleanup runs every 30 s).
const SETTLE: Duration = Duration::from_secs(300);

impl Engine {
    /// Carries out a batch of broker steps of one region (see the module's comment).
    pub(super) async fn roll_brokers(
        &self,
        gw: &GatewaySpec,
        batch: &[&Step],
        broker_wait: Duration,
        events: &dyn Events,
    ) -> Result<()> {
        let region = gw.region.as_str();
        let slots: Vec<(&Key, &str, &str)> = batch
            .iter()
            .filter_map(|s| match s {
                Step::Broker {
                    key, id, action, ..
                } => Some((key, id.as_str(), *action)),
                Step::Tunnel { .. } => None,
            })
            .collect();
        let failed = |e: crate::cloud::CloudError| Error::Failed(format!("{region}: {e}"));
        self.wait_gates(gw, "before", SETTLE, events).await?;

        // 1. Replacements, launched beside the brokers they replace.
        let work = self.plan_region(Some(gw), region).await?;
        let mut launched = 0;
        for (key, old, action) in &slots {
            if *action != "replace" || replacement(&work.plan, key, old).is_some() {
                continue;
            }
            let desired = work
                .plan
                .changes
                .iter()
                .find(|c| &c.key == *key)
                .and_then(|c| c.after.as_ref())
                .ok_or_else(|| Error::Failed(format!("{region}: {key} is no longer declared")))?;
            events.emit(Event::Progress(format!(
                "{region}: launching the replacement of {key} ({old})"
            )));
            let new = work
                .aws
                .create(desired, &ids(&work.plan))
                .await
                .map_err(failed)?;
            events.emit(Event::Done(format!(
                "{region}: {} launched beside {old}",
                new.id
            )));
            launched += 1;
        }
        if slots.iter().any(|(_, _, a)| *a == "replace") {
            // The replacements run RabbitMQ and are members of the cluster.
            let wait = if launched > 0 { broker_wait } else { SETTLE };
            self.wait_gates(gw, "with the replacements", wait, events)
                .await?;
        }

        // 2. The old brokers: never one a quorum queue needs for its majority; then drained.
        let work = self.plan_region(Some(gw), region).await?;
        for (key, old, _) in &slots {
            let Some(before) = observed(&work.plan, old) else {
                continue;
            };
            if before.state.as_deref() == Some("running") {
                if let Some(address) = self.instance_address(
                    gw,
                    old,
                    before.parts.get("private_ip").map(String::as_str),
                ) && let Ok(Some(reason)) =
                    self.gateway_client(gw, &address)?.quorum_critical().await
                {
                    return Err(Error::Failed(format!(
                        "{region}: {key} ({old}) is critical to quorum queues ({reason}); \
                         nothing was stopped. Run `gwctl upgrade {region}` again once they have \
                         their replicas"
                    )));
                }
                events.emit(Event::Progress(format!(
                    "{region}: stopping {key} ({old}): its broker drains (clients reconnect \
                     to the others, quorum leaders move) and stops"
                )));
                work.aws.stop_instance(old).await.map_err(failed)?;
            }
        }

        // 3. Addresses to the replacements; snapshots and deletion of the old brokers (a
        // stopped instance's volume is consistent), with a removed slot's address and
        // certificate.
        let work = self.plan_region(Some(gw), region).await?;
        let mut ids = ids(&work.plan);
        for (key, old, action) in &slots {
            if let Some(new) = replacement(&work.plan, key, old) {
                ids.insert((*key).clone(), new.id.clone());
                self.move_address(&work, key, old, &ids, events).await?;
            }
            if let Some(before) = observed(&work.plan, old) {
                events.emit(Event::Progress(format!(
                    "{region}: snapshotting the data volume of {key} ({old}) and deleting it"
                )));
                work.aws.delete(before).await.map_err(failed)?;
                events.emit(Event::Done(format!("{region}: {key} ({old}) deleted")));
            }
            if *action == "delete" {
                for c in work.plan.changes.iter().filter(|c| {
                    c.key.name == key.name && c.after.is_none() && c.key.kind != Kind::Instance
                }) {
                    if let Some(b) = &c.before {
                        work.aws.delete(b).await.map_err(failed)?;
                        events.emit(Event::Done(format!("{region}: {} deleted", c.key)));
                    }
                }
            }
        }

        // 4. The region whole again, and the backend's links to it follow the new addresses.
        self.wait_gates(gw, "after", SETTLE, events).await?;
        let work = self.plan_region(Some(gw), region).await?;
        if work.federation.is_some() {
            self.apply_federation(&work, false, events)
                .await
                .map_err(Error::Failed)?;
        }
        Ok(())
    }

    /// Moves a slot's Elastic IP from the old broker to its replacement, unless it is there.
    async fn move_address(
        &self,
        work: &super::planning::RegionWork,
        key: &Key,
        old: &str,
        ids: &Ids,
        events: &dyn Events,
    ) -> Result<()> {
        let region = work.region();
        let Some(change) = work
            .plan
            .changes
            .iter()
            .find(|c| c.key.kind == Kind::ElasticIp && c.key.name == key.name)
        else {
            return Ok(());
        };
        let (Some(before), Some(after)) = (&change.before, &change.after) else {
            return Ok(());
        };
        let on = before.parts.get("instance_id").map(String::as_str);
        if on.is_some() && on != Some(old) {
            return Ok(());
        }
        work.aws
            .update(after, before, ids)
            .await
            .map_err(|e| Error::Failed(format!("{region}: {e}")))?;
        events.emit(Event::Done(format!(
            "{region}: {} now points to the replacement of {key}",
            before.state.as_deref().unwrap_or(&before.id)
        )));
        Ok(())
    }
}

/// The instance that replaces `old` in its slot, if one runs beside it.
fn replacement<'a>(plan: &'a RegionPlan, key: &Key, old: &str) -> Option<&'a Observed> {
    plan.changes
        .iter()
        .filter(|c| &c.key == key && c.after.is_some())
        .filter_map(|c| c.before.as_ref())
        .find(|b| b.id != old)
}

/// What AWS reports for instance `id`, if it still exists.
fn observed<'a>(plan: &'a RegionPlan, id: &str) -> Option<&'a Observed> {
    plan.changes
        .iter()
        .filter_map(|c| c.before.as_ref())
        .find(|b| b.id == id)
}

/// The ids references resolve to: each key's kept resource.
fn ids(plan: &RegionPlan) -> Ids {
    let mut ids = Ids::new();
    for c in plan.changes.iter().filter(|c| c.after.is_some()) {
        if let Some(b) = &c.before {
            ids.entry(c.key.clone()).or_insert_with(|| b.id.clone());
        }
    }
    ids
}
