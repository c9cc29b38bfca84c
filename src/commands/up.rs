use serde_json::Value;

use super::aws::{Context, RegionWork, log_line};
use crate::cli::{Cli, UpArgs};
use crate::error::{Error, Result, Status};
use crate::plan::RegionPlan;
use crate::plan::federation;
use crate::printer::Printer;

/// A saved plan is applied only to the state it was made from.
fn check_saved(saved: &Value, plans: &[&RegionPlan]) -> Result<()> {
    for p in plans {
        let entry = saved["regions"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["region"] == p.region.as_str()))
            .ok_or_else(|| Error::Failed(format!("the saved plan has no region {}", p.region)))?;
        if entry["desired_sha256"] != p.desired_sha256.as_str() {
            return Err(Error::Failed(format!(
                "stale plan: the region files of {} changed since the plan was made; plan again",
                p.region
            )));
        }
        if entry["actual_sha256"] != p.actual_sha256.as_str() {
            return Err(Error::Failed(format!(
                "stale plan: the AWS resources of {} changed since the plan was made; plan again",
                p.region
            )));
        }
    }
    Ok(())
}

/// Applies one region: its AWS resources, then (once its brokers exist) the backend's
/// federation entries for it. Returns an error message per failed step.
async fn apply_region(
    ctx: &Context,
    work: &RegionWork,
    parallelism: usize,
    printer: &Printer,
    bars: &indicatif::MultiProgress,
) -> std::result::Result<(), String> {
    let region = &work.plan.region;
    let aws_changed = ctx.scope.aws() && work.plan.has_changes();
    if aws_changed {
        let outcome = super::aws::execute(&work.aws, &work.plan, parallelism, printer, bars).await;
        if !outcome.ok() {
            return Err(format!(
                "{region}: {} done, {} failed, {} skipped; run `gwctl up {region}` again once the cause is fixed",
                outcome.done,
                outcome.failed.len(),
                outcome.skipped.len()
            ));
        }
        printer.success(
            "done",
            &format!("{region}: {} AWS operations", outcome.done),
        );
    }
    if work.federation.is_none() {
        return Ok(());
    }
    let gw = ctx.stack.gateway(region).map(|g| &g.spec);
    // Plan the backend side again under the lock: new brokers have addresses only now, and
    // another region may just have changed a shared upstream set.
    let _turn = ctx.federation_lock.lock().await;
    let fed = if aws_changed {
        let again = super::aws::plan_region(ctx, gw, region)
            .await
            .map_err(|e| e.to_string())?;
        again.federation.unwrap_or_default()
    } else {
        super::aws::plan_federation(ctx, gw, region, &work.plan)
            .await
            .map_err(|e| e.to_string())?
    };
    if fed.endpoints_pending {
        return Err(format!(
            "{region}: the brokers have no address yet; run `gwctl up {region}` again"
        ));
    }
    if !fed.has_changes() {
        return Ok(());
    }
    let client = ctx.backend_client().map_err(|e| e.to_string())?;
    let n = federation::apply(&client, &fed)
        .await
        .map_err(|e| format!("{region}: backend federation: {e}"))?;
    if !printer.is_quiet() {
        log_line(&format!(
            "{region} backend federation: {n} changes applied at {}",
            client.endpoint()
        ));
    }
    Ok(())
}

/// Route53 last, for every applied region at once: the brokers' addresses exist only now,
/// and the zone gets one change batch for all of them.
async fn apply_dns(ctx: &Context, works: &[&RegionWork], printer: &Printer) -> Result<()> {
    let mut plans = Vec::new();
    for w in works {
        let region = &w.plan.region;
        let gw = ctx.stack.gateway(region).map(|g| &g.spec);
        let addresses = match gw {
            Some(gw) => super::dns::addresses_now(&w.aws, gw).await?,
            None => Default::default(),
        };
        plans.push(super::dns::plan(&w.aws, &ctx.stack, gw, region, &addresses).await?);
    }
    let todo: Vec<&crate::dns::DnsPlan> = plans.iter().filter(|p| p.has_changes()).collect();
    if let (Some(first), false) = (works.first(), todo.is_empty()) {
        super::dns::apply(&first.aws, &ctx.stack, &todo, printer).await?;
    }
    Ok(())
}

pub fn run(cli: &Cli, args: &UpArgs, printer: &Printer) -> Result<Status> {
    let ctx = Context::load(
        &cli.regions,
        Context::selection(&args.select),
        cli.broker_endpoints.as_deref(),
        args.scope,
    )?;
    let saved: Option<Value> =
        match &args.plan {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
                Some(serde_json::from_str(&text).map_err(|e| {
                    Error::Usage(format!("{}: not a gwctl plan: {e}", path.display()))
                })?)
            }
            None => None,
        };
    super::runtime()?.block_on(apply(&ctx, args, saved.as_ref(), printer))
}

/// Plans without a lock (a run with nothing to do changes nothing, not even a lock), asks,
/// then takes the regions' locks and plans again: what runs is what was shown, or nothing.
async fn apply(
    ctx: &Context,
    args: &UpArgs,
    saved: Option<&Value>,
    printer: &Printer,
) -> Result<Status> {
    let (works, errors) = super::plan::plan_all(ctx, printer).await;
    if let Some(saved) = saved {
        check_saved(saved, &works.iter().map(|w| &w.plan).collect::<Vec<_>>())?;
    }
    for w in &works {
        super::plan::print_human(ctx, w, printer);
    }
    let todo: Vec<&RegionWork> = works.iter().filter(|w| w.has_changes(ctx.scope)).collect();
    if todo.is_empty() {
        return if errors == 0 {
            Ok(Status::Success)
        } else {
            Err(Error::Failed(format!(
                "{errors} region(s) could not be planned"
            )))
        };
    }
    if saved.is_none() && !super::aws::confirm(printer, "Apply these changes?", args.apply.yes)? {
        return Err(Error::Failed("cancelled: nothing was changed".into()));
    }
    let regions: Vec<String> = todo.iter().map(|w| w.plan.region.clone()).collect();
    let timeout = std::time::Duration::from_secs(args.apply.lock_timeout);
    let locks = super::aws::lock_regions(ctx, &regions, "up", timeout, printer).await?;
    let result = apply_locked(ctx, args, &todo, errors, printer).await;
    super::aws::release_locks(locks, printer).await;
    result
}

async fn apply_locked(
    ctx: &Context,
    args: &UpArgs,
    shown: &[&RegionWork],
    errors: usize,
    printer: &Printer,
) -> Result<Status> {
    let mut works = Vec::new();
    for w in shown {
        let gw = ctx.stack.gateway(&w.plan.region).map(|g| &g.spec);
        let again = super::aws::plan_region(ctx, gw, &w.plan.region).await?;
        if again.plan.actual_sha256 != w.plan.actual_sha256
            || again.plan.desired_sha256 != w.plan.desired_sha256
        {
            return Err(Error::Failed(format!(
                "{}: the resources changed while this run waited for the lock; plan again",
                w.plan.region
            )));
        }
        works.push(again);
    }
    let bars = indicatif::MultiProgress::new();
    let runs = works
        .iter()
        .map(|w| apply_region(ctx, w, usize::from(args.apply.parallelism), printer, &bars));
    let mut failed = errors;
    let mut applied = Vec::new();
    for (w, result) in works.iter().zip(futures_util::future::join_all(runs).await) {
        match result {
            Ok(()) => applied.push(w),
            Err(e) => {
                printer.error(&e);
                failed += 1;
            }
        }
    }
    if ctx.scope.aws()
        && !applied.is_empty()
        && let Err(e) = apply_dns(ctx, &applied, printer).await
    {
        printer.error(&e.to_string());
        failed += 1;
    }
    if failed > 0 {
        Err(Error::Failed(format!("{failed} region(s) failed")))
    } else {
        Ok(Status::Success)
    }
}
