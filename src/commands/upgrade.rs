use crate::cli::{Cli, UpgradeArgs};
use crate::engine::runtime;
use crate::error::{Error, Result, Status};
use crate::printer::Printer;
use crate::printer::progress::Reporter;

/// Plans without a lock, shows the steps and their gates, asks, then lets the engine roll
/// them out region by region under each region's lock.
pub fn run(cli: &Cli, args: &UpgradeArgs, printer: &Printer) -> Result<Status> {
    let mut engine = super::engine(cli, super::selection(&args.select), args.scope)?;
    engine.newest_images = true;
    let rt = runtime()?;
    let plan = rt.block_on(engine.plan_upgrade(&args.select.names));
    for e in &plan.failed {
        printer.error(&e.to_string());
    }
    if args.json {
        printer.data(&crate::printer::upgrade::json(&plan));
    } else {
        printer.data(&crate::printer::upgrade::human(&plan, printer));
    }
    if args.dry_run {
        return Ok(Status::Success);
    }
    if plan.is_empty() {
        return match plan.failed.len() {
            0 => Ok(Status::Success),
            n => Err(Error::Failed(format!("{n} region(s) could not be planned"))),
        };
    }
    if !super::confirm(printer, "Roll out these steps?", args.apply.yes)? {
        return Err(Error::Failed("cancelled: nothing was changed".into()));
    }
    let reporter = Reporter::new(printer);
    let rolled = rt.block_on(engine.upgrade(
        &plan,
        super::up::apply_options(&args.apply),
        crate::engine::upgrade::RollOptions {
            pause: std::time::Duration::from_secs(args.pause),
            max_unavailable: usize::from(args.max_unavailable),
        },
        &reporter,
    ));
    engine.report_aws_calls(&reporter);
    rolled?;
    Ok(Status::Success)
}
