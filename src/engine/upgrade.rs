//! `upgrade`: the changes `up` holds back because doing them at once would take a region down.
//! Regions go one after another (the first is the canary), and within a region one step at a
//! time, each behind gates checked before it starts and after it ends:
//!
//! - new VPN tunnel options, one tunnel at a time: AWS takes a tunnel down while it applies
//!   them, so the other must be up first, and the changed one up again before the next;
//! - broker replacements and removals, a batch at a time (`--max-unavailable`, see
//!   `engine/roll.rs`): the replacement joins the cluster before the broker it replaces is
//!   drained, its address moved, its volume snapshotted and the instance deleted.
//!
//! Every step is found again from what AWS reports (held changes of a fresh plan), so a run
//! interrupted anywhere — even killed — is resumed by running `upgrade` again.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::events::{Event, Events};
use super::planning::RegionWork;
use super::{ApplyOptions, Engine};
use crate::error::{Error, Result};
use crate::model::Action;
use crate::model::resources::{Key, Payload, Spec, TunnelSpec, TunnelState};
use crate::spec::GatewaySpec;
use crate::spec::model::RabbitSeries;

/// How long a changed tunnel may take to come back up before the roll stops.
const TUNNEL_BACK: Duration = Duration::from_secs(600);

/// How a roll goes: the pause between regions, brokers out at once.
#[derive(Debug, Clone, Copy)]
pub struct RollOptions {
    pub pause: Duration,
    pub max_unavailable: usize,
}

/// The most brokers a region may have out at once: a quorum queue keeps
/// [`crate::render::QUORUM_GROUP_SIZE`] replicas on any of its nodes, so more than a minority
/// of that out at once could take a queue's majority with it.
pub fn max_unavailable_allowed(brokers: u8) -> usize {
    let group = usize::from(brokers.min(crate::render::QUORUM_GROUP_SIZE));
    group.saturating_sub(1).div_euclid(2).max(1)
}

/// One step of an upgrade.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// New options for one tunnel of the region's VPN connection.
    Tunnel {
        vpn: String,
        outside_ip: String,
        /// Position of the tunnel (by inside CIDR), to match the desired options.
        index: usize,
    },
    /// A broker to replace (`replace`) or remove (`delete`).
    Broker {
        key: Key,
        id: String,
        action: &'static str,
        because: Vec<String>,
    },
}

impl Step {
    pub fn is_broker(&self) -> bool {
        matches!(self, Step::Broker { .. })
    }

    pub fn describe(&self) -> String {
        match self {
            Step::Tunnel {
                vpn, outside_ip, ..
            } => format!("new options for tunnel {outside_ip} of {vpn}"),
            Step::Broker {
                key,
                id,
                action,
                because,
            } => format!(
                "{} {key} ({id}) because of {}",
                if *action == "delete" {
                    "remove"
                } else {
                    "replace"
                },
                because.join(", ")
            ),
        }
    }

    /// What must hold before the step starts and after it ends.
    pub fn gates(&self) -> Vec<&'static str> {
        match self {
            Step::Tunnel { .. } => vec![
                "before: every tunnel of the connection UP (the other one carries the traffic)",
                "after: the connection available and this tunnel UP again",
            ],
            Step::Broker { .. } => vec![
                "before, with the replacement, after: every running broker answers, the \
                 cluster's running nodes are exactly those brokers, no resource alarm, quorum \
                 queues with all their replicas online, federation links running both ways, \
                 Route53 health checks healthy, an MQTT-over-TLS round trip through every \
                 address Route53 serves for the region",
                "the old broker is stopped only if no quorum queue needs it for its majority; \
                 stopping it drains it (maintenance mode) before its address moves and its \
                 volume is snapshotted",
            ],
        }
    }
}

/// How a region's brokers change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Mode {
    /// Replaced within their cluster, `--max-unavailable` at a time (`engine/roll.rs`).
    Roll,
    /// Moved to a new cluster beside the old one (`engine/bluegreen.rs`).
    BlueGreen { from: String, to: String },
    /// Neither can be done; why, and what to change.
    Refused { reason: String },
}

impl Mode {
    /// What a blue-green move does and checks, in order (for the dry run).
    pub fn blue_green_gates() -> Vec<&'static str> {
        vec![
            "before: every gate on the old cluster",
            "the new cluster's brokers launched beside the old ones: they answer, form a \
             cluster of their own, no alarm, quorum queues with their replicas, links both ways \
             (the backend federates from both clusters), Route53 healthy",
            "an MQTT-over-TLS round trip through each new broker at its own address, before any \
             address moves",
            "the old cluster's buffer on the backend empty once; the new cluster's links from the \
             backend paused; devices' sessions copied",
            "each slot's Elastic IP moved to the new broker; the old cluster's MQTT connections \
             closed (devices reconnect through DNS)",
            "the old cluster's links from the backend stopped; sessions copied again; their \
             queued commands moved; the new cluster's links resumed",
            "the old cluster's buffers for the backend empty; its brokers marked drained, \
             stopped, snapshotted and deleted; its buffer on the backend deleted",
            "after: every gate on the new cluster",
        ]
    }
}

/// One region's upgrade.
pub struct RegionUpgrade {
    pub region: String,
    pub steps: Vec<Step>,
    pub mode: Mode,
    pub work: RegionWork,
}

/// What `upgrade` would do, region by region in order (the first is the canary).
pub struct UpgradePlan {
    pub regions: Vec<RegionUpgrade>,
    pub failed: Vec<Error>,
}

impl UpgradePlan {
    pub fn is_empty(&self) -> bool {
        self.regions.iter().all(|r| r.steps.is_empty())
    }
}

/// The steps of a region's plan: its held changes, tunnels first (the backend link is what
/// every broker step relies on).
fn steps(work: &RegionWork) -> Vec<Step> {
    let mut tunnels = Vec::new();
    let mut brokers = Vec::new();
    for held in &work.plan.held {
        match held.action {
            "modify" => {
                let Some(change) = work.plan.changes.iter().find(|c| c.key == held.key) else {
                    continue;
                };
                let (Some(before), Some(after)) = (&change.before, &change.after) else {
                    continue;
                };
                let (
                    Spec::VpnConnection {
                        tunnels: have,
                        pre_shared_keys_sha256: have_keys,
                        ..
                    },
                    Spec::VpnConnection {
                        tunnels: want,
                        pre_shared_keys_sha256: want_keys,
                        ..
                    },
                ) = (&before.spec, &after.spec)
                else {
                    continue;
                };
                // Only tunnels whose options differ (a resumed roll does not flap a tunnel it
                // already changed); new keys cannot be told apart by tunnel: both change.
                // Discovered tunnels sort by their (distinct) inside CIDRs, as the parts do, and
                // their keys with them; without declared CIDRs keys compare as a set (which
                // tunnel got which is AWS's choice), so a new key changes both.
                let ordered = want.iter().any(|t| t.inside_cidr.is_some());
                let sorted = |k: &[String]| {
                    let mut k = k.to_vec();
                    k.sort();
                    k
                };
                let key_differs = |i: usize| {
                    !want_keys.is_empty()
                        && if ordered {
                            have_keys.get(i) != want_keys.get(i)
                        } else {
                            sorted(have_keys) != sorted(want_keys)
                        }
                };
                for (index, (_, outside_ip)) in tunnels_by_inside_cidr(&before.parts)
                    .into_iter()
                    .enumerate()
                {
                    if key_differs(index) || differs(have.get(index), want.get(index)) {
                        tunnels.push(Step::Tunnel {
                            vpn: before.id.clone(),
                            outside_ip,
                            index,
                        });
                    }
                }
            }
            action => brokers.push(Step::Broker {
                key: held.key.clone(),
                id: held.id.clone(),
                action,
                because: held.because.clone(),
            }),
        }
    }
    tunnels.extend(brokers);
    tunnels
}

/// Whether a discovered tunnel lacks what the desired one declares (an inside CIDR AWS picked
/// is not a difference when none is declared).
fn differs(have: Option<&TunnelSpec>, want: Option<&TunnelSpec>) -> bool {
    match (have, want) {
        (Some(have), Some(want)) => {
            let mut have = have.clone();
            if want.inside_cidr.is_none() {
                have.inside_cidr = None;
            }
            &have != want
        }
        _ => true,
    }
}

/// (inside CIDR, outside address) of a discovered VPN connection's tunnels, in the order
/// [`TunnelSpec::normalized`] sorts declared tunnels.
fn tunnels_by_inside_cidr(
    parts: &std::collections::BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = parts
        .iter()
        .filter_map(|(k, inside)| {
            Some((inside.clone(), TunnelState::from_part_key(k)?.to_string()))
        })
        .collect();
    out.sort();
    out
}

impl Engine {
    /// Plans every selected region and lists what `upgrade` would do in each, in `order`
    /// (regions named there first, in that order; the others after, by name).
    pub async fn plan_upgrade(&self, order: &[String]) -> UpgradePlan {
        let mut stack = self.plan().await;
        stack.regions.sort_by_key(|w| {
            (
                order
                    .iter()
                    .position(|r| r == w.region())
                    .unwrap_or(usize::MAX),
                w.region().to_string(),
            )
        });
        let mut regions = Vec::new();
        for work in stack.regions {
            let mut region = RegionUpgrade {
                region: work.region().to_string(),
                steps: steps(&work),
                mode: Mode::Roll,
                work,
            };
            region.mode = match self.check_series(&region).await {
                Ok(None) => Mode::Roll,
                Ok(Some(from)) => Mode::BlueGreen {
                    from,
                    to: self
                        .gateway(&region.region)
                        .map(GatewaySpec::cluster_name)
                        .unwrap_or_default(),
                },
                Err(e) => Mode::Refused {
                    reason: e.to_string(),
                },
            };
            regions.push(region);
        }
        UpgradePlan {
            regions,
            failed: stack.failed,
        }
    }

    /// Carries out `plan`, region after region, each under its lock. The first failed gate
    /// stops the whole roll; what is done stays done, and running `upgrade` again resumes.
    pub async fn upgrade(
        &self,
        plan: &UpgradePlan,
        opts: ApplyOptions,
        roll: RollOptions,
        events: &dyn Events,
    ) -> Result<()> {
        if let Some(e) = plan.failed.first() {
            return Err(Error::Failed(format!(
                "not every region could be planned: {e}"
            )));
        }
        // A roll starts from a region as `up` leaves it: a change `up` still has to make (a
        // record of a removed broker, a health check, a security group) would meet the roll
        // half-way and fail its gates, or be rolled out by nobody.
        for region in plan.regions.iter().filter(|r| !r.steps.is_empty()) {
            let w = &region.work;
            let resources = if self.scope.aws() {
                w.plan.pending().count()
            } else {
                0
            };
            let records = w.dns.as_ref().map_or(0, |d| {
                d.checks.iter().filter(|c| c.action != Action::NoOp).count()
                    + d.records
                        .iter()
                        .filter(|r| r.action != Action::NoOp)
                        .count()
            });
            if resources + records > 0 {
                return Err(Error::Failed(format!(
                    "{0}: `up` has {resources} resource and {records} Route53 change(s) to make \
                     first; `upgrade` rolls only what `up` holds back. Nothing was changed: run \
                     `gwctl up {0}`, then `gwctl upgrade {0}`",
                    region.region
                )));
            }
        }
        let mut blue_green = std::collections::BTreeMap::new();
        for region in &plan.regions {
            match &region.mode {
                Mode::Roll => {}
                Mode::BlueGreen { from, .. } => {
                    blue_green.insert(region.region.clone(), from.clone());
                }
                Mode::Refused { reason } => return Err(Error::Failed(reason.clone())),
            }
        }
        for region in &plan.regions {
            let Some(gw) = self.gateway(&region.region) else {
                continue;
            };
            let allowed = max_unavailable_allowed(gw.brokers.count);
            if roll.max_unavailable > allowed
                && region.steps.iter().any(Step::is_broker)
                && !blue_green.contains_key(&region.region)
            {
                return Err(Error::Usage(format!(
                    "--max-unavailable {}: {} has {} brokers and quorum queues keep {} \
                     replicas; more than {allowed} broker(s) out at once could take a queue's \
                     majority with them",
                    roll.max_unavailable,
                    region.region,
                    gw.brokers.count,
                    gw.brokers.count.min(crate::render::QUORUM_GROUP_SIZE)
                )));
            }
        }
        // Broker steps need the brokers: where none answers, refuse before taking any lock.
        for region in plan
            .regions
            .iter()
            .filter(|r| r.steps.iter().any(Step::is_broker))
        {
            if let Some(gw) = self.gateway(&region.region) {
                self.check_brokers_reachable(gw).await?;
            }
        }
        let todo = |r: &&RegionUpgrade| !r.steps.is_empty();
        for (n, region) in plan.regions.iter().filter(todo).enumerate() {
            if n > 0 && !roll.pause.is_zero() {
                events.emit(Event::Progress(format!(
                    "pausing {} s before {}",
                    roll.pause.as_secs(),
                    region.region
                )));
                tokio::time::sleep(roll.pause).await;
            }
            let name = region.region.clone();
            let locks = self
                .lock_regions(
                    std::slice::from_ref(&name),
                    "upgrade",
                    opts.lock_timeout,
                    events,
                )
                .await?;
            let result = self
                .upgrade_region(
                    region,
                    opts,
                    roll.max_unavailable.max(1),
                    blue_green.get(&region.region).map(String::as_str),
                    events,
                )
                .await;
            self.release_locks(locks, events).await;
            result.map_err(|e| resume_hint(e, region))?;
        }
        Ok(())
    }

    /// How a region's brokers change: rolled within one RabbitMQ series (`None`), or moved
    /// blue-green off the cluster the returned name is (a node of another series never joins
    /// the running cluster: RabbitMQ upgrades in place only to the next series). Refuses what
    /// neither can do: rolling 3.10 (quorum queues would not regain a replaced node's
    /// replicas), or a new series under the running cluster's name.
    async fn check_series(&self, region: &RegionUpgrade) -> Result<Option<String>> {
        let Some(gw) = self.gateway(&region.region) else {
            return Ok(None);
        };
        let want = gw.brokers.series();
        let name = &region.region;
        let refuse = |why: String| Error::Failed(format!("{name}: {why}; nothing was changed"));
        let mut from = None;
        for step in &region.steps {
            let Step::Broker {
                key, id, action, ..
            } = step
            else {
                continue;
            };
            if want == RabbitSeries::V3_10 {
                return Err(refuse(
                    "its brokers run RabbitMQ 3.10, which gwctl does not roll (quorum queues \
                     would not regain a replaced node's replicas); move the region to 4.0"
                        .into(),
                ));
            }
            let cluster = region
                .work
                .plan
                .changes
                .iter()
                .filter_map(|c| c.before.as_ref())
                .find(|b| b.id == *id)
                .and_then(|b| b.parts.get(crate::model::resources::CLUSTER_PART))
                .cloned()
                .unwrap_or_default();
            // A broker of another cluster than the files name: the region moves to that
            // cluster (its brokers find only each other), whatever the series.
            if !cluster.is_empty() && cluster != gw.cluster_name() {
                if *action == "delete" || from.as_ref().is_some_and(|f| *f != cluster) {
                    return Err(refuse(format!(
                        "{key} ({id}) belongs to cluster {cluster}, and the region moves to \
                         {}: a move to a new cluster changes nothing else (a broker count, \
                         another cluster); change that after the move",
                        gw.cluster_name()
                    )));
                }
                from = Some(cluster);
                continue;
            }
            if *action != "replace" {
                continue;
            }
            let text = region
                .work
                .aws
                .user_data(id)
                .await
                .ok()
                .and_then(|b| crate::model::user_data::decode(&b).ok());
            let have = text
                .as_deref()
                .and_then(crate::model::user_data::rabbitmq_package)
                .and_then(RabbitSeries::of_package);
            if let Some(have) = have.filter(|h| *h != want) {
                return Err(refuse(format!(
                    "{key} ({id}) runs RabbitMQ {} and the files want {}: a node of one \
                     series never joins a cluster of the other, so the region moves to a new \
                     cluster beside this one (blue-green). Give it a new name in the region \
                     file (`cluster_name: {}-{}`, unused by any other region)",
                    have.as_str(),
                    want.as_str(),
                    gw.cluster_name(),
                    want.as_str().replace('.', "-")
                )));
            }
        }
        Ok(from)
    }

    async fn upgrade_region(
        &self,
        shown: &RegionUpgrade,
        opts: ApplyOptions,
        max_unavailable: usize,
        blue_green_from: Option<&str>,
        events: &dyn Events,
    ) -> Result<()> {
        let region = shown.region.as_str();
        let again = self.plan_region(self.gateway(region), region).await?;
        self.same_as_shown(&shown.work, &again, "run upgrade again")?;
        let failed = |e: crate::cloud::CloudError| Error::Failed(format!("{region}: {e}"));
        let total = shown.steps.len();
        for (i, step) in shown.steps.iter().enumerate() {
            let Step::Tunnel {
                vpn,
                outside_ip,
                index,
            } = step
            else {
                continue;
            };
            let (want, keys) = desired_tunnels(&again, vpn).ok_or_else(|| {
                Error::Failed(format!(
                    "{region}: {vpn} is no longer planned; run upgrade again"
                ))
            })?;
            let want = want
                .get(*index)
                .ok_or_else(|| Error::Failed(format!("{region}: {vpn} has no tunnel {index}")))?;
            // Gate: both tunnels up, or changing this one cuts the backend off.
            let (_, tunnels) = again.aws.vpn_tunnels(vpn).await.map_err(failed)?;
            if let Some(down) = tunnels.iter().find(|t| t.status != "UP") {
                return Err(Error::Failed(format!(
                    "{region}: tunnel {} of {vpn} is {}: changing {outside_ip} now would cut \
                     the gateway off the backend; nothing was changed in this step. Bring the \
                     tunnel up (the backend's VPN device), then run `gwctl upgrade {region}` \
                     again",
                    down.outside_ip, down.status
                )));
            }
            events.emit(Event::Progress(format!(
                "{region}: step {}/{}: {}",
                i + 1,
                total,
                step.describe()
            )));
            again
                .aws
                .modify_tunnel(vpn, outside_ip, want, keys.get(*index))
                .await
                .map_err(failed)?;
            wait_tunnel_up(&again, vpn, outside_ip).await.map_err(|e| {
                Error::Failed(format!(
                    "{region}: {e}; the roll stopped after changing it: run `gwctl upgrade \
                     {region}` again once it is up"
                ))
            })?;
            events.emit(Event::Done(format!(
                "{region}: tunnel {outside_ip} has its new options and is up"
            )));
        }
        let brokers: Vec<(usize, &Step)> = shown
            .steps
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_broker())
            .collect();
        let Some(gw) = self.gateway(region) else {
            return Ok(());
        };
        if let Some(from) = blue_green_from {
            let steps: Vec<&Step> = brokers.iter().map(|(_, s)| *s).collect();
            events.emit(Event::Progress(format!(
                "{region}: moving from cluster {from} to {} (blue-green: a new series never \
                 joins the running cluster)",
                gw.cluster_name()
            )));
            return self
                .blue_green(gw, &steps, from, opts.broker_wait, events)
                .await;
        }
        for batch in brokers.chunks(max_unavailable) {
            let steps: Vec<&Step> = batch.iter().map(|(_, s)| *s).collect();
            for (i, step) in batch {
                events.emit(Event::Progress(format!(
                    "{region}: step {}/{total}: {}",
                    i + 1,
                    step.describe()
                )));
            }
            self.roll_brokers(gw, &steps, opts.broker_wait, events)
                .await?;
        }
        Ok(())
    }
}

/// A failed roll says where it stopped, how to go on, and how to go back.
fn resume_hint(e: Error, region: &RegionUpgrade) -> Error {
    let name = &region.region;
    match e {
        Error::Failed(m) => Error::Failed(format!(
            "{m}\nthe roll stopped here: what is done stays done. Run `gwctl upgrade {name}` \
             again to resume once the cause is fixed (a replacement already running is kept); \
             `gwctl plan {name}` shows what is left.{}",
            rollback_hint(region)
        )),
        other => other,
    }
}

/// How to roll back: the brokers not yet replaced show what the region ran before; pinning
/// that in the region file makes `upgrade` roll the replaced ones back the same way.
fn rollback_hint(region: &RegionUpgrade) -> String {
    let mut images: Vec<&str> = region
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::Broker { id, .. } => Some(id.as_str()),
            Step::Tunnel { .. } => None,
        })
        .filter_map(|id| {
            region
                .work
                .plan
                .changes
                .iter()
                .filter_map(|c| c.before.as_ref())
                .find(|b| b.id == id)
        })
        .filter_map(|b| match &b.spec {
            Spec::Instance { image, .. } => Some(image.as_str()),
            _ => None,
        })
        .collect();
    images.sort();
    images.dedup();
    match images.as_slice() {
        [image] => format!(
            " To roll back instead, pin the image the brokers ran before (`ami: {{id: \
             {image}}}`) and restore the rest of the region file as it was, then run `gwctl \
             upgrade {}`: the brokers already replaced are replaced back the same way, behind \
             the same gates",
            region.region
        ),
        _ => String::new(),
    }
}

/// The tunnels a plan wants for the VPN connection `vpn`, and their declared keys.
fn desired_tunnels<'a>(
    work: &'a RegionWork,
    vpn: &str,
) -> Option<(&'a [TunnelSpec], &'a [crate::spec::secret::Secret])> {
    let change = work
        .plan
        .changes
        .iter()
        .find(|c| c.before.as_ref().is_some_and(|b| b.id == vpn))?;
    let after = change.after.as_ref()?;
    let Spec::VpnConnection { tunnels, .. } = &after.spec else {
        return None;
    };
    let keys = match &after.payload {
        Payload::TunnelKeys(keys) => keys.as_slice(),
        _ => &[],
    };
    Some((tunnels.as_slice(), keys))
}

/// Polls the tunnel's telemetry until AWS reports it UP (bounded).
async fn wait_tunnel_up(
    work: &RegionWork,
    vpn: &str,
    outside_ip: &str,
) -> std::result::Result<(), String> {
    let start = Instant::now();
    let mut delay = Duration::from_millis(500);
    loop {
        let (_, tunnels) = work.aws.vpn_tunnels(vpn).await.map_err(|e| e.to_string())?;
        let now: Option<&TunnelState> = tunnels.iter().find(|t| t.outside_ip == outside_ip);
        if now.is_some_and(|t| t.status == "UP") {
            return Ok(());
        }
        if start.elapsed() > TUNNEL_BACK {
            return Err(format!(
                "tunnel {outside_ip} is not up {} s after its change (now {})",
                TUNNEL_BACK.as_secs(),
                now.map_or("unreported", |t| t.status.as_str())
            ));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(15));
    }
}
