//! The Route53 part of plan, up, down, status and drills: per region, discover its health
//! checks and records and diff them against the region file; apply every region's changes to
//! a zone as one batch; read what Route53 serves now.

use std::collections::BTreeMap;

use super::events::{Event, Events};
use crate::cloud::{Aws, CloudError};
use crate::error::{Error, Result};
use crate::model::Action;
use crate::model::dns::{self, ObservedCheck, Record};
use crate::model::resources::{Kind, tags_for};
use crate::model::routing::{self, Endpoint, RegionState};
use crate::plan::RegionPlan;
use crate::plan::dns::{self as dns_plan, DnsPlan};
use crate::spec::{GatewaySpec, Stack};

/// The brokers of a region plan and their public addresses where they have one already.
pub fn addresses_from_plan(plan: &RegionPlan) -> BTreeMap<String, Option<String>> {
    plan.changes
        .iter()
        .filter(|c| c.key.kind == Kind::ElasticIp && c.key.name.starts_with("broker-"))
        .filter(|c| c.after.is_some())
        .map(|c| {
            let ip = match c.action {
                Action::NoOp | Action::Update => c.before.as_ref().and_then(|b| b.state.clone()),
                _ => None,
            };
            (c.key.name.clone(), ip)
        })
        .collect()
}

/// The brokers a region file declares and their public addresses as AWS has them now.
pub async fn addresses_now(
    aws: &Aws,
    gw: &GatewaySpec,
) -> Result<BTreeMap<String, Option<String>>> {
    let found = aws
        .public_addresses()
        .await
        .map_err(|e| Error::Failed(format!("{}: {e}", gw.region)))?;
    Ok((1..=gw.brokers.count)
        .map(|n| {
            let name = format!("broker-{n}");
            let ip = found.get(&name).cloned();
            (name, ip)
        })
        .collect())
}

/// What a region has in Route53: its checks and the records at its names (owned, foreign).
pub struct Found {
    pub zone_id: String,
    pub checks: Vec<ObservedCheck>,
    pub owned: Vec<dns::ObservedRecord>,
    pub foreign: Vec<dns::ObservedRecord>,
}

pub async fn discover(aws: &Aws, stack: &Stack, region: &str) -> Result<Found> {
    Ok(Route53View::read(aws, stack).await?.found(stack, region))
}

/// What Route53 holds for the whole stack. Route53 is global: one zone lookup, one listing of
/// health checks and one walk of the names below the stack's record serve every region of a
/// run (a region read alone still costs these three calls).
pub struct Route53View {
    zone_id: String,
    /// The stack's checks, each named `<region>/<endpoint>`.
    checks: Vec<ObservedCheck>,
    /// Every record set at the stack's record name and below it.
    records: Vec<dns::ObservedRecord>,
}

impl Route53View {
    pub async fn read(aws: &Aws, stack: &Stack) -> Result<Route53View> {
        let backend = &stack.backend.spec;
        let failed = |e: CloudError| Error::Failed(format!("route53: {e}"));
        let zone_id = aws.find_zone(&backend.dns.zone).await.map_err(failed)?;
        let prefix = dns::stack_caller_prefix(&backend.stack);
        let (checks, records) = tokio::join!(
            aws.health_checks(&prefix),
            aws.records_under(&zone_id, &backend.dns.record),
        );
        Ok(Route53View {
            zone_id,
            checks: checks.map_err(failed)?,
            records: records.map_err(failed)?,
        })
    }

    /// A region's share: its checks and the records at its names (owned, foreign).
    pub fn found(&self, stack: &Stack, region: &str) -> Found {
        let backend = &stack.backend.spec;
        let n = dns::names(&backend.dns.record, region);
        let names = [&n.owner, &n.regional, &n.record]
            .map(|name| name.trim_end_matches('.').to_lowercase());
        let at_its_names = self
            .records
            .iter()
            .filter(|r| names.contains(&r.record.name))
            .cloned()
            .collect();
        let (owned, foreign) =
            dns_plan::owned(&backend.stack, &backend.dns.record, region, at_its_names);
        let region_prefix = format!("{region}/");
        let checks = self
            .checks
            .iter()
            .filter_map(|c| {
                let name = c.name.strip_prefix(&region_prefix)?;
                Some(ObservedCheck {
                    name: name.to_string(),
                    ..c.clone()
                })
            })
            .collect();
        Found {
            zone_id: self.zone_id.clone(),
            checks,
            owned,
            foreign,
        }
    }
}

/// Plans a region's Route53 part (`gw` = `None`: remove it, for `down`).
pub async fn plan(
    aws: &Aws,
    stack: &Stack,
    gw: Option<&GatewaySpec>,
    region: &str,
    addresses: &BTreeMap<String, Option<String>>,
    view: Option<&Route53View>,
) -> Result<DnsPlan> {
    let backend = &stack.backend.spec;
    let found = match view {
        Some(view) => view.found(stack, region),
        None => discover(aws, stack, region).await?,
    };
    let desired = match gw {
        Some(gw) => {
            if let Some(e) = dns_plan::conflict(&backend.dns.record, region, &found.foreign) {
                return Err(Error::Failed(e));
            }
            dns_plan::desired(backend, gw, addresses)
        }
        None => Default::default(),
    };
    dns_plan::diff(
        region,
        &backend.dns.zone,
        &found.zone_id,
        desired,
        &found.checks,
        &found.owned,
        &found.foreign,
    )
    .map_err(Error::Failed)
}

/// Applies the Route53 plans of several regions: health checks first, then one change batch
/// per zone (waiting until it is in sync), then the checks nothing refers to any more.
pub async fn apply(
    aws: &Aws,
    stack: &Stack,
    plans: &[&DnsPlan],
    events: &dyn Events,
) -> Result<usize> {
    let stack_name = stack.backend.spec.stack.as_str();
    let failed = |region: &str| {
        let region = region.to_string();
        move |e: CloudError| Error::Failed(format!("{region}: route53: {e}"))
    };
    let mut done = 0;
    // (record name, endpoint) -> check id, for the records' HealthCheckId.
    let mut ids: BTreeMap<(String, String), String> = BTreeMap::new();
    for p in plans {
        let n_regional = dns::names(&stack.backend.spec.dns.record, &p.region).regional;
        let creates = p.checks.iter().map(|c| async move {
            let id = match (c.action, &c.before, &c.after) {
                (Action::NoOp, Some(b), _) => b.id.clone(),
                (Action::Update, Some(b), Some(a)) => {
                    aws.update_health_check(&b.id, a)
                        .await
                        .map_err(failed(&p.region))?;
                    b.id.clone()
                }
                (Action::Create | Action::Replace, _, Some(a)) => {
                    let reference = format!(
                        "{}{}/{:08x}",
                        dns::caller_prefix(stack_name, &p.region),
                        c.name,
                        rand::random::<u32>()
                    );
                    let mut free = stack.backend.spec.tags.clone();
                    if let Some(gw) = stack.gateway(&p.region) {
                        free.extend(gw.spec.tags.clone());
                    }
                    let id = format!("health_check/{}", c.name);
                    let tags: Vec<(String, String)> =
                        tags_for(stack_name, &p.region, &c.name, &id, &free)
                            .into_iter()
                            .collect();
                    aws.create_health_check(&reference, a, &tags)
                        .await
                        .map_err(failed(&p.region))?
                }
                _ => return Ok::<_, Error>(None),
            };
            Ok(Some((c.name.clone(), c.action, id)))
        });
        for r in futures_util::future::join_all(creates).await {
            if let Some((name, action, id)) = r? {
                if action != Action::NoOp {
                    done += 1;
                    progress(
                        events,
                        &format!("{} health check {name} {} {id}", p.region, verb(action)),
                    );
                }
                ids.insert((n_regional.clone(), name), id);
            }
        }
    }

    let mut zones: BTreeMap<&str, Vec<dns::RecordChange>> = BTreeMap::new();
    for p in plans {
        zones.entry(p.zone_id.as_str()).or_default().extend(
            p.records
                .iter()
                .filter(|r| r.action != Action::NoOp)
                .cloned(),
        );
    }
    for (zone_id, changes) in zones {
        if changes.is_empty() {
            continue;
        }
        let lookup = |r: &Record| {
            r.health_check
                .as_ref()
                .and_then(|h| ids.get(&(r.name.clone(), h.clone())).cloned())
        };
        let on_wait = |waited: std::time::Duration| {
            if waited.as_secs() >= 2 {
                progress(
                    events,
                    &format!(
                        "route53 change batch: waiting for INSYNC ({}s)",
                        waited.as_secs()
                    ),
                );
            }
        };
        let n = aws
            .change_records(zone_id, &changes, &lookup, &on_wait)
            .await
            .map_err(failed("route53"))?;
        done += n;
        progress(
            events,
            &format!("route53 zone {zone_id}: one change batch of {n} changes in sync"),
        );
    }

    for p in plans {
        for c in &p.checks {
            if matches!(c.action, Action::Delete | Action::Replace)
                && let Some(b) = &c.before
            {
                aws.delete_health_check(&b.id)
                    .await
                    .map_err(failed(&p.region))?;
                done += 1;
                progress(
                    events,
                    &format!("{} health check {} deleted {}", p.region, c.name, b.id),
                );
            }
        }
    }
    Ok(done)
}

fn verb(a: Action) -> &'static str {
    match a {
        Action::Create | Action::Replace => "created",
        Action::Update => "updated",
        Action::Delete => "deleted",
        Action::NoOp => "kept",
    }
}

fn progress(events: &dyn Events, line: &str) {
    events.emit(Event::Progress(line.to_string()));
}

/// One health check with what Route53's checkers last reported.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckStatus {
    pub name: String,
    pub id: String,
    pub target: String,
    pub inverted: bool,
    pub healthy: bool,
    /// Checkers reporting healthy / all that reported.
    pub checkers: String,
}

/// A region as Route53 serves it: its checks with their status, its records, and the
/// endpoints its latency record leads to.
pub struct Served {
    /// The region's health checks as discovered.
    pub observed: Vec<ObservedCheck>,
    /// The region's records (gwctl's own).
    pub owned: Vec<dns::ObservedRecord>,
    pub checks: Vec<CheckStatus>,
    pub state: RegionState,
}

pub async fn served(aws: &Aws, stack: &Stack, region: &str) -> Result<Served> {
    let found = discover(aws, stack, region).await?;
    served_from(aws, stack, region, found.checks, found.owned).await
}

/// As [`served`], from what a region's plan discovered already (every check and owned record
/// is the `before` of one of its changes).
pub async fn served_by_plan(aws: &Aws, stack: &Stack, plan: &DnsPlan) -> Result<Served> {
    let observed = plan
        .checks
        .iter()
        .filter_map(|c| c.before.clone())
        .collect();
    let owned = plan
        .records
        .iter()
        .filter_map(|r| r.before.clone())
        .collect();
    served_from(aws, stack, &plan.region, observed, owned).await
}

async fn served_from(
    aws: &Aws,
    stack: &Stack,
    region: &str,
    observed: Vec<ObservedCheck>,
    owned: Vec<dns::ObservedRecord>,
) -> Result<Served> {
    let statuses = observed.iter().map(|c| async move {
        let (healthy, all) = aws
            .health_check_status(&c.id)
            .await
            .map_err(|e| Error::Failed(format!("{region}: route53: {e}")))?;
        Ok::<_, Error>(CheckStatus {
            name: c.name.clone(),
            id: c.id.clone(),
            target: c.config.target(),
            inverted: c.config.inverted,
            // Checkers report the endpoint; an inverted check counts the other way.
            healthy: routing::healthy_by_checkers(healthy, all) != c.config.inverted,
            checkers: format!("{healthy}/{all}"),
        })
    });
    let mut checks = Vec::new();
    for s in futures_util::future::join_all(statuses).await {
        checks.push(s?);
    }
    let n = dns::names(&stack.backend.spec.dns.record, region);
    let has_latency = owned
        .iter()
        .any(|o| o.record.name == n.record && o.record.alias.is_some());
    let endpoints = owned
        .iter()
        .filter(|o| has_latency && o.record.name == n.regional && o.record.multivalue)
        .map(|o| Endpoint {
            name: o.record.set_identifier.clone().unwrap_or_default(),
            address: o.record.values.first().cloned().unwrap_or_default(),
            // A record without a check is always healthy to Route53.
            healthy: o
                .health_check_id
                .as_ref()
                .is_none_or(|id| checks.iter().any(|c| &c.id == id && c.healthy)),
        })
        .collect();
    Ok(Served {
        observed,
        owned,
        checks,
        state: RegionState {
            region: region.to_string(),
            endpoints,
        },
    })
}
