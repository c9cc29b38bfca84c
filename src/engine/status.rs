//! `status`: per gateway region, what gwctl owns and how it runs — resources in sync, instance
//! states, Route53's verdict on each health check and the records it serves, every federation
//! link in both directions with its error, resource alarms on the brokers. Data only: the
//! printer formats it.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::Engine;
use super::dns::CheckStatus;
use super::planning::RegionWork;
use crate::broker;
use crate::error::{Error, Result};
use crate::model::Action;
use crate::model::dns::Record;
use crate::model::resources::Kind;
use crate::spec::GatewaySpec;

#[derive(Debug, Serialize)]
pub struct Instance {
    pub name: String,
    pub id: String,
    pub state: String,
    pub private_ip: Option<String>,
}

/// A broker's node, as its management API answers (`None`: unreachable).
#[derive(Debug, Serialize)]
pub struct Broker {
    pub at: String,
    pub version: Option<String>,
    /// Connections of its cluster, as of the node's last statistics round
    /// (`collect_statistics_interval`: 30 s on gateways).
    pub connections: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct Link {
    /// `gateway->backend` (the backend's link) or `backend->gateway` (the gateway's link).
    pub direction: &'static str,
    pub at: String,
    pub upstream: String,
    pub status: String,
    pub error: Option<String>,
    /// Where the link connects, credentials masked (`amqps://***@host:5671`).
    pub uri: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Certificate {
    pub name: String,
    /// `YYYY-MM-DD`.
    pub expires: String,
    pub names: Vec<String>,
    /// Expires within 30 days.
    pub due: bool,
}

#[derive(Debug, Serialize)]
pub struct RegionStatus {
    pub region: String,
    pub healthy: bool,
    pub problems: Vec<String>,
    pub resources: usize,
    pub aws_changes_pending: usize,
    pub federation_changes_pending: usize,
    pub instances: Vec<Instance>,
    /// The newest data-volume snapshot of each broker slot (taken before gwctl deleted a
    /// broker), and how many are kept.
    pub snapshots: Vec<crate::cloud::Snapshot>,
    /// The VPN's tunnels to the backend, as AWS reports them.
    pub tunnels: Vec<crate::model::resources::TunnelState>,
    /// Changes `up` leaves to `gwctl upgrade` (brokers to replace, tunnel options).
    pub upgrades_pending: usize,
    /// Route53 health checks of the region's endpoints, with the checkers' verdict.
    pub health_checks: Vec<CheckStatus>,
    /// The records gwctl serves for the region.
    pub records: Vec<Record>,
    /// Whether Route53 answers clients with this region (some endpoint healthy).
    pub route53_answering: bool,
    /// The region's brokers as their management API reports them.
    pub brokers: Vec<Broker>,
    /// The brokers' server certificates (as stored for them in SSM).
    pub certificates: Vec<Certificate>,
    pub links: Vec<Link>,
    /// Resource alarms in effect on the region's brokers or the backend (publishers blocked).
    pub alarms: Vec<String>,
    /// The message router's counters (stack-wide), with the stack in router mode: or why
    /// they could not be read (informational: a router may run where this machine cannot
    /// reach it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub router: Option<RouterView>,
}

/// What `status` shows of the router.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RouterView {
    Counters(super::router::stats::Stats),
    Unreachable(String),
}

async fn links_at(
    client: &broker::Client,
    direction: &'static str,
    filter: impl Fn(&broker::FederationLink) -> bool,
) -> Vec<Link> {
    match client.federation_links().await {
        Ok(links) => links
            .into_iter()
            .filter(|l| filter(l))
            .map(|l| Link {
                direction,
                at: client.endpoint().to_string(),
                upstream: l.upstream,
                status: l.status,
                error: l.error.map(|e| broker::mask_uris(&e)),
                uri: l.uri.as_deref().map(broker::display_uri),
            })
            .collect(),
        Err(e) => vec![Link {
            direction,
            at: client.endpoint().to_string(),
            upstream: "(all)".into(),
            status: "unreachable".into(),
            error: Some(e.to_string()),
            uri: None,
        }],
    }
}

async fn region_status(engine: &Engine, gw: &GatewaySpec) -> Result<RegionStatus> {
    let work: RegionWork = engine.plan_region(Some(gw), &gw.region).await?;
    let existing: Vec<_> = work
        .plan
        .changes
        .iter()
        .filter_map(|c| c.before.as_ref())
        .collect();
    let instances: Vec<Instance> = existing
        .iter()
        .filter(|o| o.key.kind == Kind::Instance)
        .map(|o| Instance {
            name: o.key.name.clone(),
            id: o.id.clone(),
            state: o.state.clone().unwrap_or_default(),
            private_ip: o.parts.get("private_ip").cloned(),
        })
        .collect();
    let mut snapshots = Vec::new();
    if engine.scope.aws() {
        let all = work
            .aws
            .snapshots()
            .await
            .map_err(|e| Error::Failed(format!("{}: {e}", gw.region)))?;
        // Newest first per slot (as listed): keep the first of each.
        for s in all {
            if !snapshots
                .iter()
                .any(|k: &crate::cloud::Snapshot| k.of == s.of)
            {
                snapshots.push(s);
            }
        }
    }
    let tunnels: Vec<crate::model::resources::TunnelState> = existing
        .iter()
        .filter(|o| o.key.kind == Kind::VpnConnection)
        .flat_map(|o| crate::model::resources::TunnelState::parse(o.state.as_deref().unwrap_or("")))
        .collect();
    let certificates: Vec<Certificate> = existing
        .iter()
        .filter_map(|o| match &o.spec {
            crate::model::resources::Spec::Certificate { names, renew, .. } => Some(Certificate {
                name: o.key.name.clone(),
                expires: o.parts.get("not_after").cloned().unwrap_or_default(),
                names: names.clone(),
                due: *renew,
            }),
            _ => None,
        })
        .collect();
    let mut problems = Vec::new();
    // The plan (AWS scope) discovered the region's Route53 part already.
    let (health_checks, records, route53_answering) = if let Some(plan) = &work.dns {
        let served = super::dns::served_by_plan(&work.aws, &engine.stack, plan).await?;
        for c in served.checks.iter().filter(|c| !c.healthy) {
            problems.push(format!(
                "health check {} ({}) is unhealthy: {} checkers report healthy{}",
                c.name,
                c.target,
                c.checkers,
                if c.inverted {
                    " (inverted: a drill?)"
                } else {
                    ""
                }
            ));
        }
        if served.state.endpoints.is_empty() {
            problems.push("Route53 has no latency record for the region".into());
        } else if !served.state.healthy() {
            problems.push("Route53 withdraws the region: no endpoint is healthy".into());
        }
        let records = served.owned.iter().map(|o| o.record.clone()).collect();
        let answering = served.state.healthy();
        (served.checks, records, answering)
    } else {
        (Vec::new(), Vec::new(), false)
    };
    let mut links = Vec::new();
    let prefix = format!("gw.{}.", gw.region);
    let mut alarms = Vec::new();
    if engine.scope.federation()
        && let Ok(backend) = engine.backend_client()
    {
        if let Ok(Some(reason)) = backend.alarms_in_effect().await {
            alarms.push(format!("backend {}: {reason}", backend.endpoint()));
        }
        links.extend(
            links_at(&backend, "gateway->backend", |l| {
                l.upstream.starts_with(&prefix)
            })
            .await,
        );
    }
    let addresses = if engine.scope.federation() {
        engine.gateway_addresses(gw, &work.plan).unwrap_or_default()
    } else {
        Vec::new()
    };
    let mut brokers = Vec::new();
    for address in addresses {
        let client = engine.gateway_client(gw, &address)?;
        if let Ok(Some(reason)) = client.alarms_in_effect().await {
            alarms.push(format!("broker {}: {reason}", client.endpoint()));
        }
        brokers.push(match client.overview().await {
            Ok(o) => Broker {
                at: client.endpoint().to_string(),
                version: Some(o.rabbitmq_version),
                connections: Some(o.object_totals.connections),
            },
            Err(_) => Broker {
                at: client.endpoint().to_string(),
                version: None,
                connections: None,
            },
        });
        links.extend(
            links_at(&client, "backend->gateway", |l| {
                l.upstream.starts_with("backend.")
            })
            .await,
        );
    }
    let aws_pending = work.plan.pending().count()
        + work.dns.as_ref().map_or(0, |d| {
            d.checks.iter().filter(|c| c.action != Action::NoOp).count()
                + d.records
                    .iter()
                    .filter(|c| c.action != Action::NoOp)
                    .count()
        });
    let fed_pending = work.federation.as_ref().map_or(0, |f| {
        f.changes
            .iter()
            .filter(|c| c.action != Action::NoOp)
            .count()
    });
    if aws_pending > 0 {
        problems.push(format!(
            "{aws_pending} AWS changes pending (run gwctl plan {})",
            gw.region
        ));
    }
    if fed_pending > 0 {
        problems.push(format!("{fed_pending} backend federation changes pending"));
    }
    for a in &alarms {
        problems.push(format!("{a} (publishers are blocked)"));
    }
    for t in tunnels.iter().filter(|t| t.status != "UP") {
        problems.push(format!(
            "VPN tunnel {} to the backend is {}",
            t.outside_ip, t.status
        ));
    }
    for i in instances.iter().filter(|i| i.state != "running") {
        problems.push(format!("instance {} is {}", i.name, i.state));
    }
    for l in links.iter().filter(|l| l.status != "running") {
        problems.push(format!(
            "link {} at {} is {}{}",
            l.upstream,
            l.at,
            l.status,
            l.error
                .as_ref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ));
    }
    let expected_links = crate::model::federation::backend_upstreams(gw, &[]).len()
        + gw.federation.from_backend.len();
    if engine.scope.federation() && links.len() < expected_links {
        problems.push(format!(
            "{} of {expected_links} federation links exist",
            links.len()
        ));
    }
    Ok(RegionStatus {
        region: gw.region.clone(),
        healthy: problems.is_empty(),
        problems,
        resources: existing.len(),
        aws_changes_pending: aws_pending,
        federation_changes_pending: fed_pending,
        instances,
        snapshots,
        tunnels,
        upgrades_pending: work.plan.held.len(),
        health_checks,
        records,
        route53_answering,
        brokers,
        certificates,
        links,
        alarms,
        router: None,
    })
}

impl Engine {
    /// The status of every selected region; with `wait`, asks again every second until every
    /// region is healthy or `wait` has passed.
    pub async fn status(
        &self,
        wait: Duration,
        router: Option<std::net::SocketAddr>,
    ) -> Vec<Result<RegionStatus>> {
        let deadline = Instant::now() + wait;
        loop {
            let all = self
                .stack
                .gateways
                .iter()
                .map(|g| region_status(self, &g.spec));
            let (mut statuses, counters) = tokio::join!(
                futures_util::future::join_all(all),
                self.router_stats(router)
            );
            let healthy = statuses.iter().all(|s| s.as_ref().is_ok_and(|s| s.healthy));
            if healthy || Instant::now() >= deadline {
                for s in statuses.iter_mut().flatten() {
                    s.router = counters.clone().map(|c| match c {
                        Ok(stats) => RouterView::Counters(stats),
                        Err(e) => RouterView::Unreachable(e),
                    });
                }
                return statuses;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}
