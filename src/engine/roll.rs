//! Replacing a gateway region's brokers without taking it down: a batch of brokers at a time
//! (`--max-unavailable`, one by default), each replacement launched beside the broker it
//! replaces and joined to the cluster before the old one is drained, its address moved, its
//! data volume snapshotted and the instance deleted. Gates pass before and after each batch.
//!
//! Every sub-step first looks at what AWS reports (a replacement already running, an old
//! broker already stopped, an address already moved), so a run killed anywhere resumes when
//! `upgrade` runs again.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Engine;
use super::events::{Event, Events};
use super::gates::Gates;
use super::upgrade::Step;
use crate::cloud::Ids;
use crate::error::{Error, Result};
use crate::model::Action;
use crate::model::resources::{Key, Kind, Observed};
use crate::plan::RegionPlan;
use crate::spec::GatewaySpec;

/// How long gates may take to pass around a batch once the new brokers run (a forgotten
/// node's queue replicas move on RabbitMQ's own schedule; EC2's node cleanup runs every 30 s).
const SETTLE: Duration = Duration::from_secs(300);

/// How long a gateway's link from the backend may be missing after a broker left before its
/// policy is re-created (a link moving to another node takes seconds).
const LINK_TAKEOVER: Duration = Duration::from_secs(60);

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
        // The backend's links follow the brokers there are (heals a run killed after a
        // deletion).
        self.converge_federation(gw, events).await?;
        let work = self.plan_region(Some(gw), region).await?;
        // A run killed after stopping an old broker resumes mid-way: that broker is a member
        // that is down (and its address's check may fail) until it is deleted, so only the
        // gates it cannot fail are waited for until then.
        let mid_roll = slots.iter().any(|(_, old, _)| {
            !matches!(
                observed(&work.plan, old).and_then(|o| o.state.as_deref()),
                Some("running" | "pending")
            )
        });
        let gates = if mid_roll {
            Gates::Answering
        } else {
            Gates::All
        };
        if !mid_roll {
            // A replacement launched by a killed run may still be booting.
            let relaunched = slots
                .iter()
                .any(|(key, old, _)| replacement(&work.plan, key, old).is_some());
            let wait = if relaunched { broker_wait } else { SETTLE };
            self.wait_gates(gw, "before", Gates::All, None, wait, events)
                .await?;
        }

        // 1. Replacements, launched beside the brokers they replace. What this run launched
        // is remembered: a newer image published meanwhile would make a re-read plan see it
        // as not declared any more.
        let mut launched: BTreeMap<Key, String> = BTreeMap::new();
        for (key, old, action) in &slots {
            if *action != "replace" || replacement(&work.plan, key, old).is_some() {
                continue;
            }
            let desired = work
                .plan
                .changes
                .iter()
                .filter(|c| &c.key == *key)
                .find_map(|c| c.after.as_ref())
                .ok_or_else(|| Error::Failed(format!("{region}: {key} is no longer declared")))?;
            events.emit(Event::Progress(format!(
                "{region}: launching the replacement of {key} ({old})"
            )));
            let new = work
                .aws
                .create(desired, &kept_ids(&work.plan))
                .await
                .map_err(failed)?;
            events.emit(Event::Done(format!(
                "{region}: {} launched beside {old}",
                new.id
            )));
            launched.insert((*key).clone(), new.id);
        }
        if slots.iter().any(|(_, _, a)| *a == "replace") {
            // The replacements boot, run RabbitMQ and join the cluster.
            self.wait_gates(
                gw,
                "with the replacements",
                gates,
                None,
                broker_wait,
                events,
            )
            .await?;
        }

        // 2. The old brokers: never one a quorum queue needs for its majority; stopping one
        // drains it (its unit's ExecStop).
        let work = self.plan_region(Some(gw), region).await?;
        let mut stopped = Vec::new();
        for (key, old, action) in &slots {
            let Some(before) = observed(&work.plan, old) else {
                continue;
            };
            // Never a broker stopped whose replacement is not there: its slot would be empty.
            if *action == "replace"
                && replacement(&work.plan, key, old).is_none()
                && !launched.contains_key(*key)
                && matches!(before.state.as_deref(), Some("running"))
            {
                return Err(Error::Failed(format!(
                    "{region}: {key} ({old}): no replacement runs beside it; it was not \
                     stopped. Run `gwctl upgrade {region}` again"
                )));
            }
            match before.state.as_deref() {
                Some("running") => {
                    let refuse = |why: String| {
                        Error::Failed(format!(
                            "{region}: {key} ({old}): {why}; it was not stopped{}. Run `gwctl \
                             upgrade {region}` again once its quorum queues have their \
                             replicas elsewhere",
                            if stopped.is_empty() {
                                String::new()
                            } else {
                                format!(" ({} of this batch were)", stopped.join(", "))
                            }
                        ))
                    };
                    let ip = before.parts.get("private_ip").map(String::as_str);
                    let address = self
                        .instance_address(gw, old, ip)
                        .ok_or_else(|| refuse("it has no address to ask".into()))?;
                    match self.gateway_client(gw, &address)?.quorum_critical().await {
                        Ok(None) => {}
                        Ok(Some(reason)) => {
                            return Err(refuse(format!(
                                "quorum queues would lose their majority without it ({reason})"
                            )));
                        }
                        Err(e) => {
                            return Err(refuse(format!("its quorum-queue check failed: {e}")));
                        }
                    }
                }
                Some("stopping") => {}
                Some("pending") => {
                    return Err(Error::Failed(format!(
                        "{region}: {key} ({old}) is starting again (someone started it?); \
                         nothing was stopped in this step: run `gwctl upgrade {region}` again \
                         once it runs"
                    )));
                }
                _ => continue,
            }
            events.emit(Event::Progress(format!(
                "{region}: stopping {key} ({old}): its broker drains (clients reconnect to \
                 the others, quorum leaders move) and stops"
            )));
            work.aws.stop_instance(old).await.map_err(failed)?;
            stopped.push(old.to_string());
        }

        // 3. Addresses to the replacements; snapshots and deletion of the old brokers (a
        // stopped instance's volume is consistent), with a removed slot's address and
        // certificate.
        let work = self.plan_region(Some(gw), region).await?;
        let mut ids = kept_ids(&work.plan);
        for (key, old, action) in &slots {
            let new = replacement(&work.plan, key, old)
                .map(|n| n.id.clone())
                .or_else(|| launched.get(*key).cloned());
            if let Some(new) = new {
                ids.insert((*key).clone(), new);
                self.move_address(&work, key, old, &ids, events).await?;
            } else if *action == "replace" {
                return Err(Error::Failed(format!(
                    "{region}: {key} ({old}): its replacement is gone; it was not deleted. Run \
                     `gwctl upgrade {region}` again"
                )));
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

        // 4. The backend's links to the region follow the new addresses; the region whole.
        self.converge_federation(gw, events).await?;
        self.restart_lost_gateway_links(gw, events).await;
        self.wait_gates(gw, "after", Gates::All, None, SETTLE, events)
            .await?;
        Ok(())
    }

    /// The gateway's links from the backend run on one node of the cluster and should move
    /// when that node leaves; RabbitMQ does not always restart them (rabbitmq-server#3148:
    /// the link is gone until its policy is re-created; seen here once in several rolls on
    /// 4.0.5). When no node reports a link of an exchange for [`LINK_TAKEOVER`], its policy
    /// is re-created on the gateway — a restarted link resumes from its buffer on the backend,
    /// which a stopped link keeps. Best effort: the after-gates say whether links run.
    async fn restart_lost_gateway_links(&self, gw: &GatewaySpec, events: &dyn Events) {
        let region = gw.region.as_str();
        let federating = crate::model::federation::gateway_link_policies(gw);
        let started = std::time::Instant::now();
        loop {
            let Some(client) = self.any_gateway_client(gw).await else {
                return;
            };
            let Ok(links) = client.federation_links().await else {
                return;
            };
            let missing: Vec<_> = federating
                .iter()
                .filter(|p| {
                    let upstream = p.definition["federation-upstream"].as_str();
                    !links.iter().any(|l| Some(l.upstream.as_str()) == upstream)
                })
                .collect();
            if missing.is_empty() {
                return;
            }
            if started.elapsed() < LINK_TAKEOVER {
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
            for policy in missing {
                let vhost = crate::render::definitions::VHOST;
                let redone = match client.delete_policy(vhost, &policy.name).await {
                    Ok(()) => client.put_policy(vhost, policy).await,
                    Err(e) => Err(e),
                };
                events.emit(Event::Progress(format!(
                    "{region}: no node runs the link of policy {} {} s after a broker left \
                     (rabbitmq-server#3148): {}",
                    policy.name,
                    started.elapsed().as_secs(),
                    match redone {
                        Ok(()) => "re-created the policy".to_string(),
                        Err(e) => format!("re-creating the policy failed: {e}"),
                    }
                )));
            }
            return;
        }
    }

    /// A management client of any gateway broker that answers.
    async fn any_gateway_client(&self, gw: &GatewaySpec) -> Option<crate::broker::Client> {
        self.answering(gw, None)
            .await
            .ok()?
            .clients
            .into_iter()
            .next()
    }

    /// Brings the backend's federation entries for the region to what its brokers are now.
    pub(super) async fn converge_federation(
        &self,
        gw: &GatewaySpec,
        events: &dyn Events,
    ) -> Result<()> {
        if !self.scope.federation() {
            return Ok(());
        }
        let work = self.plan_region(Some(gw), &gw.region).await?;
        if work.federation.is_none() {
            return Ok(());
        }
        // The roll's gates wait for the links.
        self.apply_federation(&work, false, events)
            .await
            .map(drop)
            .map_err(Error::Failed)
    }

    /// Moves a slot's Elastic IP from the old broker to its replacement, unless it is there.
    pub(super) async fn move_address(
        &self,
        work: &super::planning::RegionWork,
        key: &Key,
        old: &str,
        ids: &Ids,
        events: &dyn Events,
    ) -> Result<()> {
        let region = work.region();
        let Some(change) =
            work.plan.changes.iter().find(|c| {
                c.key.kind == Kind::ElasticIp && c.key.name == key.name && c.after.is_some()
            })
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

/// The instance that replaces `old` in its slot, if one runs (or boots) beside it: the one
/// the plan keeps for the slot because it is what the files declare (or only differs in what
/// can be updated in place). Another instance of the slot that is not — launched by a killed
/// run before the files changed again — is not a replacement but a step of its own: counting
/// it would roll the slot twice. A stopped one is none: it would leave the slot without a
/// broker.
fn replacement<'a>(plan: &'a RegionPlan, key: &Key, old: &str) -> Option<&'a Observed> {
    plan.changes
        .iter()
        .filter(|c| &c.key == key && c.after.is_some())
        .filter(|c| matches!(c.action, Action::NoOp | Action::Update))
        .filter(|c| c.reason != Some("held_for_upgrade"))
        .filter_map(|c| c.before.as_ref())
        .find(|b| b.id != old && matches!(b.state.as_deref(), Some("running" | "pending")))
}

/// What AWS reports for instance `id`, if it still exists.
fn observed<'a>(plan: &'a RegionPlan, id: &str) -> Option<&'a Observed> {
    plan.changes
        .iter()
        .filter_map(|c| c.before.as_ref())
        .find(|b| b.id == id)
}

/// The ids references resolve to: each key's kept resource.
pub(super) fn kept_ids(plan: &RegionPlan) -> Ids {
    let mut ids = Ids::new();
    for c in plan.changes.iter().filter(|c| c.after.is_some()) {
        if let Some(b) = &c.before {
            ids.entry(c.key.clone()).or_insert_with(|| b.id.clone());
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::resources::{Actual, Desired, Payload, Ref, Spec};
    use crate::plan::{Intent, diff};

    fn broker(image: &str) -> Spec {
        Spec::test_broker(Ref::Id("subnet-1".into()), image)
    }

    fn instance(id: &str, image: &str) -> Observed {
        Observed {
            key: Key::new(Kind::Instance, "broker-0"),
            id: id.into(),
            spec: broker(image),
            parts: BTreeMap::new(),
            state: Some("running".into()),
        }
    }

    fn plan(have: Vec<Observed>) -> RegionPlan {
        let want = vec![Desired {
            key: Key::new(Kind::Instance, "broker-0"),
            spec: broker("ami-3"),
            tags: BTreeMap::new(),
            payload: Payload::None,
            after: vec![],
        }];
        diff("s", "r", want, &Actual { resources: have }, Intent::Up)
    }

    #[test]
    fn only_an_instance_as_declared_replaces_a_broker() {
        let slot = Key::new(Kind::Instance, "broker-0");
        // A killed run launched i-2 on an image that is no longer the newest: both are held,
        // and neither replaces the other (that would roll the slot twice).
        let stale = plan(vec![instance("i-1", "ami-1"), instance("i-2", "ami-2")]);
        assert_eq!(stale.held.len(), 2, "{:?}", stale.held);
        assert!(replacement(&stale, &slot, "i-1").is_none());
        assert!(replacement(&stale, &slot, "i-2").is_none());

        // Once an instance as declared runs, it replaces each of them.
        let resumed = plan(vec![
            instance("i-1", "ami-1"),
            instance("i-2", "ami-2"),
            instance("i-3", "ami-3"),
        ]);
        for old in ["i-1", "i-2"] {
            assert_eq!(
                replacement(&resumed, &slot, old).map(|o| o.id.as_str()),
                Some("i-3")
            );
        }

        // A stopped one replaces nothing.
        let mut stopped = instance("i-3", "ami-3");
        stopped.state = Some("stopped".into());
        let idle = plan(vec![instance("i-1", "ami-1"), stopped]);
        assert!(replacement(&idle, &slot, "i-1").is_none());
    }
}
