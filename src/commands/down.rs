use super::aws::{Context, log_line};
use crate::cli::{Cli, DownArgs};
use crate::error::{Error, Result, Status};
use crate::plan::{Action, federation};
use crate::printer::Printer;
use crate::spec::{Selection, regions};

pub fn run(cli: &Cli, args: &DownArgs, printer: &Printer) -> Result<Status> {
    // A region whose file is gone can still be taken down: only the stack name is needed.
    let has_file = cli.regions.join(format!("{}.yaml", args.region)).exists();
    let selection = if has_file {
        Selection::Regions(vec![args.region.clone()])
    } else {
        Selection::Regions(Vec::new())
    };
    let ctx = Context::load(
        &cli.regions,
        selection,
        cli.broker_endpoints.as_deref(),
        args.scope,
    )?;
    if !has_file && !regions::is_known(&args.region) {
        return Err(Error::Usage(format!(
            "`{}` is not an AWS region",
            args.region
        )));
    }
    super::runtime()?.block_on(locked(&ctx, args, printer))
}

/// Plans without a lock, asks, then deletes under the region's lock after planning again.
async fn locked(ctx: &Context, args: &DownArgs, printer: &Printer) -> Result<Status> {
    let work = super::aws::plan_region(ctx, None, &args.region).await?;
    super::plan::print_human(ctx, &work, printer);
    if !work.has_changes(ctx.scope) {
        return Ok(Status::Success);
    }
    let n = work.plan.count(Action::Delete);
    let dns = work.dns.as_ref().map_or(0, |d| {
        d.checks.len()
            + d.records
                .iter()
                .filter(|r| r.action == Action::Delete)
                .count()
    });
    let question = format!(
        "Delete these {n} AWS resources, {dns} Route53 health checks and records, and the backend's federation entries of {}?",
        args.region
    );
    if !super::aws::confirm(printer, &question, args.apply.yes)? {
        return Err(Error::Failed("cancelled: nothing was deleted".into()));
    }
    let timeout = std::time::Duration::from_secs(args.apply.lock_timeout);
    let locks = super::aws::lock_regions(
        ctx,
        std::slice::from_ref(&args.region),
        "down",
        timeout,
        printer,
    )
    .await?;
    let result = delete_locked(ctx, args, &work, printer).await;
    super::aws::release_locks(locks, printer).await;
    result
}

async fn delete_locked(
    ctx: &Context,
    args: &DownArgs,
    shown: &super::aws::RegionWork,
    printer: &Printer,
) -> Result<Status> {
    let work = super::aws::plan_region(ctx, None, &args.region).await?;
    if work.plan.actual_sha256 != shown.plan.actual_sha256 {
        return Err(Error::Failed(format!(
            "{}: the resources changed while this run waited for the lock; run down again",
            args.region
        )));
    }
    // The backend stops federating from the region first, so it does not retry dead links.
    if let Some(fed) = work.federation.as_ref().filter(|f| f.has_changes()) {
        let client = ctx.backend_client()?;
        let applied = federation::apply(&client, fed)
            .await
            .map_err(|e| Error::Failed(format!("backend federation: {e}")))?;
        if !printer.is_quiet() {
            log_line(&format!(
                "{} backend federation: {applied} entries removed",
                args.region
            ));
        }
    }
    // Clients stop being sent to the region before its brokers go.
    if let Some(dns) = work.dns.as_ref().filter(|d| d.has_changes()) {
        super::dns::apply(&work.aws, &ctx.stack, &[dns], printer).await?;
    }
    if !ctx.scope.aws() || !work.plan.has_changes() {
        return Ok(Status::Success);
    }
    let bars = indicatif::MultiProgress::new();
    let outcome = super::aws::execute(
        &work.aws,
        &work.plan,
        usize::from(args.apply.parallelism),
        printer,
        &bars,
    )
    .await;
    if outcome.ok() {
        printer.success(
            "done",
            &format!("{}: deleted {} resources", args.region, outcome.done),
        );
        Ok(Status::Success)
    } else {
        Err(Error::Failed(format!(
            "{}: {} deleted, {} failed, {} skipped; run down again",
            args.region,
            outcome.done,
            outcome.failed.len(),
            outcome.skipped.len()
        )))
    }
}
