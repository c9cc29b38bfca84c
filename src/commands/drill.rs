//! `gwctl drill REGION`: what Route53 answers each client location now and with REGION down;
//! `--live` really fails REGION's health checks (inverted), waits for Route53 to see it, and
//! restores them.

use std::time::{Duration, Instant};

use serde_json::json;

use super::aws::Context;
use super::dns::Served;
use crate::cli::{Cli, DrillArgs, Scope};
use crate::cloud::{Aws, Owner};
use crate::drill::{self, RegionState, Row};
use crate::error::{Error, Result, Status};
use crate::printer::Printer;
use crate::spec::Selection;

pub fn run(cli: &Cli, args: &DrillArgs, printer: &Printer) -> Result<Status> {
    let ctx = Context::load(
        &cli.regions,
        Selection::All,
        cli.broker_endpoints.as_deref(),
        Scope::Aws,
    )?;
    if ctx.stack.gateway(&args.region).is_none() {
        return Err(Error::Usage(format!(
            "`{}` is not a gateway region of this stack ({})",
            args.region,
            ctx.stack
                .gateways
                .iter()
                .map(|g| g.spec.region.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    super::runtime()?.block_on(drill_async(&ctx, args, printer))
}

async fn connect(ctx: &Context, region: &str) -> Aws {
    Aws::connect(Owner {
        stack: ctx.stack.backend.spec.stack.clone(),
        region: region.to_string(),
    })
    .await
}

/// Every gateway region as Route53 serves it now.
async fn survey(ctx: &Context) -> Result<Vec<Served>> {
    let all = ctx.stack.gateways.iter().map(|g| async {
        let aws = connect(ctx, &g.spec.region).await;
        super::dns::served(&aws, &ctx.stack, &g.spec.region).await
    });
    futures_util::future::join_all(all)
        .await
        .into_iter()
        .collect()
}

async fn drill_async(ctx: &Context, args: &DrillArgs, printer: &Printer) -> Result<Status> {
    let before = survey(ctx).await?;
    let states: Vec<RegionState> = before.iter().map(|s| s.state.clone()).collect();
    let regions: Vec<String> = states.iter().map(|s| s.region.clone()).collect();
    let clients = drill::clients(&regions);
    if !args.live {
        let rows = drill::table(&clients, &states, &args.region);
        print(printer, args, "dry", &states, None, &rows);
        return Ok(Status::Success);
    }

    let target = before
        .iter()
        .find(|s| s.state.region == args.region)
        .ok_or_else(|| Error::Failed(format!("{}: not surveyed", args.region)))?;
    if target.observed.is_empty() {
        return Err(Error::Failed(format!(
            "{} has no health checks to fail: run `gwctl up {}` first",
            args.region, args.region
        )));
    }
    let question = format!(
        "Fail the {} health checks of {} in Route53? Its clients will be sent to other regions until the drill ends.",
        target.observed.len(),
        args.region
    );
    if !super::aws::confirm(printer, &question, args.yes)? {
        return Err(Error::Failed("cancelled: nothing was changed".into()));
    }
    let locks = super::aws::lock_regions(
        ctx,
        std::slice::from_ref(&args.region),
        "drill",
        Duration::from_secs(args.lock_timeout),
        printer,
    )
    .await?;
    let aws = connect(ctx, &args.region).await;
    let ids: Vec<String> = target.observed.iter().map(|c| c.id.clone()).collect();
    let outcome = tokio::select! {
        r = fail_and_observe(ctx, &aws, &args.region, &ids, args.timeout, printer) => r,
        _ = tokio::signal::ctrl_c() => Err(Error::Failed("interrupted: restoring the health checks".into())),
    };
    // Restoration runs whatever happened above; it is idempotent, and `up` repairs it too.
    let restored = restore(&aws, &ids, printer).await;
    super::aws::release_locks(locks, printer).await;
    let during = outcome?;
    restored?;
    let states_during: Vec<RegionState> = during.iter().map(|s| s.state.clone()).collect();
    let rows: Vec<Row> = clients
        .iter()
        .map(|c| Row {
            client: c.clone(),
            now: drill::answer(c, &states),
            down: drill::answer(c, &states_during),
        })
        .collect();
    print(printer, args, "live", &states, Some(&states_during), &rows);
    Ok(Status::Success)
}

/// Inverts the checks, then waits until Route53 reports every one of them unhealthy.
async fn fail_and_observe(
    ctx: &Context,
    aws: &Aws,
    region: &str,
    ids: &[String],
    timeout: u64,
    printer: &Printer,
) -> Result<Vec<Served>> {
    for id in ids {
        aws.invert_health_check(id, true)
            .await
            .map_err(|e| Error::Failed(format!("{region}: {e}")))?;
    }
    printer.info(&format!(
        "{region}: {} health checks inverted; waiting until Route53 counts them unhealthy",
        ids.len()
    ));
    let start = Instant::now();
    loop {
        let now = survey(ctx).await?;
        let down = now
            .iter()
            .find(|s| s.state.region == region)
            .is_some_and(|s| s.checks.iter().all(|c| !c.healthy));
        if down {
            printer.info(&format!(
                "{region}: Route53 counts it unhealthy after {}s",
                start.elapsed().as_secs()
            ));
            return Ok(now);
        }
        if start.elapsed() > Duration::from_secs(timeout) {
            return Err(Error::Failed(format!(
                "{region}: Route53 still reports a check healthy after {timeout}s"
            )));
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

async fn restore(aws: &Aws, ids: &[String], printer: &Printer) -> Result<()> {
    let mut failed = Vec::new();
    for id in ids {
        if let Err(e) = aws.invert_health_check(id, false).await {
            failed.push(format!("{id}: {e}"));
        }
    }
    if failed.is_empty() {
        printer.info(&format!("{} health checks restored", ids.len()));
        Ok(())
    } else {
        Err(Error::Failed(format!(
            "could not restore every health check ({}); `gwctl up` puts them back",
            failed.join("; ")
        )))
    }
}

fn print(
    printer: &Printer,
    args: &DrillArgs,
    mode: &str,
    now: &[RegionState],
    during: Option<&[RegionState]>,
    rows: &[Row],
) {
    if args.json {
        let v = json!({
            "region": args.region,
            "mode": mode,
            "regions": now,
            "regions_during_drill": during,
            "answers": rows,
        });
        printer.data(&serde_json::to_string_pretty(&v).unwrap_or_default());
        return;
    }
    let describe = |a: &drill::Answer| match &a.region {
        Some(r) if a.fail_open => format!("{r} (fail-open: every region unhealthy)"),
        Some(r) => r.clone(),
        None => "(no record)".into(),
    };
    let mut out = format!(
        "drill {} ({}; latency by distance between region locations)\n",
        args.region,
        if mode == "dry" {
            "dry run from the current health-check states"
        } else {
            "live: answers while its health checks were failing"
        }
    );
    for s in now {
        let healthy = s.endpoints.iter().filter(|e| e.healthy).count();
        let verdict = printer.verdict(s.healthy());
        out.push_str(&format!(
            "  region {:<16} {verdict} ({healthy}/{} endpoints healthy)\n",
            s.region,
            s.endpoints.len()
        ));
    }
    out.push_str(&format!(
        "  {:<18} {:<32} with {} down\n",
        "clients near", "now", args.region
    ));
    for r in rows {
        out.push_str(&format!(
            "  {:<18} {:<32} {}\n",
            r.client,
            describe(&r.now),
            describe(&r.down)
        ));
    }
    printer.data(&out);
}
