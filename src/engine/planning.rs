//! Planning: per region, discover what gwctl owns (AWS by tags, Route53 by owner marks and
//! CallerReferences, the backend's federation entries by name) and diff it against the region
//! file. Regions are planned concurrently; one that cannot be planned does not stop the others.

use serde::{Deserialize, Serialize};

use super::{Engine, Scope};
use crate::cloud::{Aws, CloudError, Image, Owner};
use crate::error::{Error, Result};
use crate::plan::desired::{self, Inputs};
use crate::plan::dns::DnsPlan;
use crate::plan::federation::{self, FederationPlan};
use crate::plan::{self, RegionPlan};
use crate::render;
use crate::spec::GatewaySpec;
use crate::spec::model::HealthProtocol;

/// One region's work: its AWS plan, its Route53 part and the backend's federation entries
/// for it (each in scope).
pub struct RegionWork {
    pub aws: Aws,
    pub plan: RegionPlan,
    /// Route53 health checks and records (in the AWS scope).
    pub dns: Option<DnsPlan>,
    pub federation: Option<FederationPlan>,
}

/// What a plan knew about one region, as hashes: a saved plan is applied only while each is
/// unchanged, and `up` applies only what it showed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprints {
    pub region: String,
    pub desired_sha256: String,
    pub actual_sha256: String,
    /// The backend's federation entries of the region (absent: not in scope).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federation_sha256: Option<String>,
    /// The region's Route53 checks and records (absent: not in scope).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route53_sha256: Option<String>,
}

impl RegionWork {
    pub fn region(&self) -> &str {
        &self.plan.region
    }

    pub fn has_changes(&self, scope: Scope) -> bool {
        (scope.aws() && self.plan.has_changes())
            || self.dns.as_ref().is_some_and(DnsPlan::has_changes)
            || self
                .federation
                .as_ref()
                .is_some_and(FederationPlan::has_changes)
    }

    pub fn fingerprints(&self) -> Fingerprints {
        Fingerprints {
            region: self.plan.region.clone(),
            desired_sha256: self.plan.desired_sha256.clone(),
            actual_sha256: self.plan.actual_sha256.clone(),
            federation_sha256: self.federation.as_ref().map(FederationPlan::fingerprint),
            route53_sha256: self.dns.as_ref().map(DnsPlan::fingerprint),
        }
    }
}

/// Says that a newer image matches what a region file selects, while instances keep theirs.
fn upgrade_note(what: &str, current: &Image, newer: &Image) -> String {
    format!(
        "a newer image matches the {what}' selection: {} ({}); they keep {} ({}) until an upgrade replaces them one at a time",
        newer.id, newer.name, current.id, current.name
    )
}

/// Every selected region's plan, and the regions that could not be planned.
pub struct StackPlan {
    pub regions: Vec<RegionWork>,
    pub failed: Vec<Error>,
}

impl StackPlan {
    /// Brokers waiting for `gwctl upgrade` in any region.
    pub fn has_held(&self) -> bool {
        self.regions
            .iter()
            .any(|w| w.plan.has_held() || w.federation.as_ref().is_some_and(|f| !f.held.is_empty()))
    }

    pub fn has_changes(&self, scope: Scope) -> bool {
        self.regions.iter().any(|w| w.has_changes(scope))
    }

    /// The regions with something to do.
    pub fn todo(&self, scope: Scope) -> Vec<&RegionWork> {
        self.regions
            .iter()
            .filter(|w| w.has_changes(scope))
            .collect()
    }
}

impl Engine {
    /// Plans every selected gateway region, concurrently.
    pub async fn plan(&self) -> StackPlan {
        let mut out = StackPlan {
            regions: Vec::new(),
            failed: Vec::new(),
        };
        let first = self.stack.gateways.first().map(|g| g.spec.region.as_str());
        let view = match self.route53_view(first).await {
            Ok(view) => view,
            Err(e) => {
                out.failed.push(e);
                return out;
            }
        };
        let futures = self
            .stack
            .gateways
            .iter()
            .map(|g| self.plan_region_in(Some(&g.spec), &g.spec.region, view.as_ref()));
        for r in futures_util::future::join_all(futures).await {
            match r {
                Ok(w) => out.regions.push(w),
                Err(e) => out.failed.push(e),
            }
        }
        out
    }

    /// Plans a region's removal (what `down` deletes), from its ownership marks alone.
    pub async fn plan_removal(&self, region: &str) -> Result<RegionWork> {
        self.plan_region(None, region).await
    }

    /// What Route53 holds for the stack, read once for a run's regions (with the AWS scope;
    /// through `region`'s client — Route53 is global).
    pub(super) async fn route53_view(
        &self,
        region: Option<&str>,
    ) -> Result<Option<super::dns::Route53View>> {
        match region {
            Some(region) if self.scope.aws() => {
                let aws = self.connect(region).await;
                Ok(Some(
                    super::dns::Route53View::read(&aws, &self.stack).await?,
                ))
            }
            _ => Ok(None),
        }
    }

    /// Discovers what gwctl owns in one region and diffs it against the region file (`gw` =
    /// `None`: against nothing, for `down`).
    pub(super) async fn plan_region(
        &self,
        gw: Option<&GatewaySpec>,
        region: &str,
    ) -> Result<RegionWork> {
        self.plan_region_in(gw, region, None).await
    }

    /// As [`Engine::plan_region`], with Route53 as `view` read it (`None`: read for this
    /// region alone).
    pub(super) async fn plan_region_in(
        &self,
        gw: Option<&GatewaySpec>,
        region: &str,
        view: Option<&super::dns::Route53View>,
    ) -> Result<RegionWork> {
        let stack = &self.stack;
        let backend = &stack.backend.spec;
        let aws = self.connect(region).await;
        let iam = desired::iam_name(&backend.stack, region);
        let prefix = render::ssm_prefix(&backend.stack, region);
        let failed = |e: CloudError| Error::Failed(format!("{region}: {e}"));
        let mut advisories = Vec::new();
        let (desired, actual) = match gw {
            Some(gw) => {
                let (actual, broker_images) = tokio::join!(
                    aws.discover(&iam, &prefix),
                    aws.matching_images(&gw.brokers.ami)
                );
                let (actual, broker_images) =
                    (actual.map_err(failed)?, broker_images.map_err(failed)?);
                // Instances keep the image they run while the region file still selects it: a
                // newer image is an available upgrade, never a silent replacement.
                // `upgrade` rolls them onto the newest.
                let running = if self.newest_images {
                    Vec::new()
                } else {
                    desired::running_images(&actual, "broker-")
                };
                let (broker_image, newer) = desired::choose_image(&broker_images, &running)
                    .ok_or_else(|| Error::Failed(format!("{region}: no broker image")))?;
                advisories.extend(newer.map(|n| upgrade_note("brokers", broker_image, n)));
                let broker_image = broker_image.clone();
                let mut support_images = std::collections::BTreeMap::new();
                for g in &gw.support {
                    let selected = match &g.ami {
                        Some(ami) if ami != &gw.brokers.ami => {
                            aws.matching_images(ami).await.map_err(failed)?
                        }
                        _ => broker_images.clone(),
                    };
                    let running = desired::running_images(&actual, &format!("{}-", g.name));
                    if let Some((image, newer)) = desired::choose_image(&selected, &running) {
                        let what = format!("support group {}", g.name);
                        advisories.extend(newer.map(|n| upgrade_note(&what, image, n)));
                        support_images.insert(g.name.clone(), image.clone());
                    }
                }
                let health_checkers = if gw.health_check.protocol == HealthProtocol::Tcp {
                    None
                } else {
                    Some(aws.route53_health_checkers(region).await.map_err(failed)?)
                };
                let secrets = render::node_secrets(stack, Some(gw))
                    .map_err(|e| Error::Failed(e.to_string()))?;
                let cas = render::Cas::read(stack).map_err(|e| Error::Failed(e.to_string()))?;
                let stack_ca_key = backend
                    .tls
                    .stack_ca
                    .key
                    .resolve(&stack.dir)
                    .map_err(|e| Error::Failed(e.to_string()))?;
                advisories.extend(crate::plan::advice::availability(gw));
                advisories.extend(crate::plan::advice::security(
                    gw,
                    &cas,
                    &actual,
                    std::time::SystemTime::now(),
                ));
                let tunnel_keys = gw
                    .vpn
                    .tunnels
                    .pre_shared_keys
                    .iter()
                    .map(|k| k.resolve(&stack.dir))
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| Error::Failed(e.to_string()))?;
                let inputs = Inputs {
                    backend,
                    gateway: gw,
                    broker_image,
                    support_images,
                    health_checkers,
                    secrets,
                    cas,
                    stack_ca_key,
                    tunnel_keys,
                };
                (desired::gateway(&inputs)?, actual)
            }
            None => (
                Vec::new(),
                aws.discover(&iam, &prefix).await.map_err(failed)?,
            ),
        };
        let intent = if gw.is_none() {
            plan::Intent::Destroy
        } else {
            plan::Intent::Up
        };
        let mut plan = plan::diff(&backend.stack, region, desired, &actual, intent);
        plan.advisories = advisories;
        let dns = if self.scope.aws() {
            let addresses = super::dns::addresses_from_plan(&plan);
            Some(super::dns::plan(&aws, stack, gw, region, &addresses, view).await?)
        } else {
            None
        };
        let federation = if self.scope.federation() {
            Some(self.plan_federation(gw, region, &plan).await?)
        } else {
            None
        };
        Ok(RegionWork {
            aws,
            plan,
            dns,
            federation,
        })
    }

    /// The backend's federation plan for a region, given its (current) AWS plan.
    pub(super) async fn plan_federation(
        &self,
        gw: Option<&GatewaySpec>,
        region: &str,
        plan: &RegionPlan,
    ) -> Result<FederationPlan> {
        let client = self.backend_client()?;
        let uris = match gw.and_then(|g| Some((g, self.gateway_addresses(g, plan)?))) {
            Some((g, addresses)) => Some(self.gateway_uris(g, &addresses)?),
            None => None,
        };
        let (serving, draining) = match gw {
            Some(g) => (Self::serving_cluster(plan), self.draining(g, plan)?),
            None => (None, None),
        };
        federation::plan(
            &client,
            region,
            gw,
            uris.as_deref(),
            serving.as_deref(),
            draining.as_ref(),
        )
        .await
        .map_err(|e| Error::Failed(format!("{region}: backend federation: {e}")))
    }

    /// An AWS client for one of the stack's regions, owning what the stack owns there.
    pub(super) async fn connect(&self, region: &str) -> Aws {
        Aws::connect(Owner {
            stack: self.stack.backend.spec.stack.clone(),
            region: region.to_string(),
        })
        .await
    }
}
