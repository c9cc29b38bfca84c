use serde::Serialize;

use super::aws::{Context, RegionWork};
use crate::broker;
use crate::cli::{Cli, StatusArgs};
use crate::error::{Error, Result, Status};
use crate::plan::Action;
use crate::printer::Printer;
use crate::resources::Kind;
use crate::spec::GatewaySpec;

#[derive(Debug, Serialize)]
struct Instance {
    name: String,
    id: String,
    state: String,
    private_ip: Option<String>,
}

#[derive(Debug, Serialize)]
struct Link {
    /// `gateway->backend` (the backend's link) or `backend->gateway` (the gateway's link).
    direction: &'static str,
    at: String,
    upstream: String,
    status: String,
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct RegionStatus {
    region: String,
    healthy: bool,
    problems: Vec<String>,
    resources: usize,
    aws_changes_pending: usize,
    federation_changes_pending: usize,
    instances: Vec<Instance>,
    /// Route53 health checks of the region's endpoints, with the checkers' verdict.
    health_checks: Vec<super::dns::CheckStatus>,
    /// The records gwctl serves for the region.
    records: Vec<crate::dns::Record>,
    /// Whether Route53 answers clients with this region (some endpoint healthy).
    route53_answering: bool,
    links: Vec<Link>,
    /// Resource alarms in effect on the region's brokers or the backend (publishers blocked).
    alarms: Vec<String>,
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
            })
            .collect(),
        Err(e) => vec![Link {
            direction,
            at: client.endpoint().to_string(),
            upstream: "(all)".into(),
            status: "unreachable".into(),
            error: Some(e.to_string()),
        }],
    }
}

async fn region_status(ctx: &Context, gw: &GatewaySpec) -> Result<RegionStatus> {
    let work: RegionWork = super::aws::plan_region(ctx, Some(gw), &gw.region).await?;
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
    let mut problems = Vec::new();
    // The plan (AWS scope) discovered the region's Route53 part already.
    let (health_checks, records, route53_answering) = if let Some(plan) = &work.dns {
        let served = super::dns::served_by_plan(&work.aws, &ctx.stack, plan).await?;
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
    if ctx.scope.federation()
        && let Ok(backend) = ctx.backend_client()
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
    let password = gw
        .credentials
        .admin
        .password
        .resolve(&ctx.stack.dir)
        .map_err(|e| Error::Failed(e.to_string()))?;
    let addresses = if ctx.scope.federation() {
        ctx.gateway_addresses(gw, &work.plan).unwrap_or_default()
    } else {
        Vec::new()
    };
    for address in addresses {
        let client = broker::Client::new(
            address.management_url(),
            gw.credentials.admin.user.clone(),
            password.clone(),
        );
        if let Ok(Some(reason)) = client.alarms_in_effect().await {
            alarms.push(format!("broker {}: {reason}", client.endpoint()));
        }
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
    let expected_links = gw.federation.to_backend.len() + gw.federation.from_backend.len();
    if ctx.scope.federation() && links.len() < expected_links {
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
        health_checks,
        records,
        route53_answering,
        links,
        alarms,
    })
}

fn human(s: &RegionStatus, printer: &Printer) -> String {
    let verdict = printer.verdict(s.healthy);
    let mut out = format!("{}  {verdict}\n", s.region);
    out.push_str(&format!(
        "  resources   {} owned, {} AWS changes pending\n",
        s.resources, s.aws_changes_pending
    ));
    for i in &s.instances {
        out.push_str(&format!(
            "  instance    {:<10} {:<20} {:<8} {}\n",
            i.name,
            i.id,
            i.state,
            i.private_ip.as_deref().unwrap_or("-")
        ));
    }
    for c in &s.health_checks {
        let verdict = printer.verdict(c.healthy);
        out.push_str(&format!(
            "  check       {:<10} {:<36} {verdict} ({} checkers){}\n",
            c.name,
            c.target,
            c.checkers,
            if c.inverted { " inverted" } else { "" }
        ));
    }
    for r in &s.records {
        out.push_str(&format!("  record      {}\n", r.describe()));
    }
    for l in &s.links {
        let err = l
            .error
            .as_ref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        out.push_str(&format!(
            "  link        {:<17} {:<30} {}{err}  [{}]\n",
            l.direction, l.upstream, l.status, l.at
        ));
    }
    for p in &s.problems {
        out.push_str(&format!("  problem     {p}\n"));
    }
    out
}

pub fn run(cli: &Cli, args: &StatusArgs, printer: &Printer) -> Result<Status> {
    let ctx = Context::load(
        &cli.regions,
        Context::selection(&args.select),
        cli.broker_endpoints.as_deref(),
        args.scope,
    )?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(args.wait);
    let statuses = super::runtime()?.block_on(async {
        loop {
            let all = ctx
                .stack
                .gateways
                .iter()
                .map(|g| region_status(&ctx, &g.spec));
            let statuses = futures_util::future::join_all(all).await;
            let healthy = statuses.iter().all(|s| s.as_ref().is_ok_and(|s| s.healthy));
            if healthy || std::time::Instant::now() >= deadline {
                break statuses;
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    });
    let mut ok = Vec::new();
    let mut failures = 0;
    for s in statuses {
        match s {
            Ok(s) => ok.push(s),
            Err(e) => {
                printer.error(&e.to_string());
                failures += 1;
            }
        }
    }
    if args.json {
        printer.data(&serde_json::to_string_pretty(&ok).map_err(|e| Error::Failed(e.to_string()))?);
    } else {
        for s in &ok {
            printer.data(&human(s, printer));
        }
    }
    let unhealthy = ok.iter().filter(|s| !s.healthy).count() + failures;
    if unhealthy > 0 {
        Err(Error::Failed(format!("{unhealthy} region(s) unhealthy")))
    } else {
        Ok(Status::Success)
    }
}
