use crate::cli::{ApplyOptions, Cli, UpArgs};
use crate::engine::saved::SavedPlan;
use crate::engine::{self, runtime};
use crate::error::{Error, Result, Status};
use crate::printer::Printer;
use crate::printer::progress::Reporter;

/// `--lock-timeout` and `--parallelism` as the engine takes them.
pub fn apply_options(opts: &ApplyOptions) -> engine::ApplyOptions {
    engine::ApplyOptions {
        lock_timeout: std::time::Duration::from_secs(opts.lock_timeout),
        parallelism: usize::from(opts.parallelism),
        broker_wait: std::time::Duration::from_secs(opts.broker_wait),
    }
}

/// Plans without a lock (a run with nothing to do changes nothing, not even a lock), shows
/// the plan, asks, then lets the engine apply it under the regions' locks.
pub fn run(cli: &Cli, args: &UpArgs, printer: &Printer) -> Result<Status> {
    let engine = super::engine(cli, super::selection(&args.select), args.scope)?;
    let saved = match &args.plan {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
            Some(SavedPlan::parse(&text, &path.display().to_string())?)
        }
        None => None,
    };
    let rt = runtime()?;
    let plan = rt.block_on(engine.plan());
    super::report_failed(&plan, printer);
    if let Some(saved) = &saved {
        saved.check(&plan)?;
    }
    if args.json {
        let text = serde_json::to_string_pretty(&crate::printer::plan::stack_json(&plan))
            .map_err(|e| Error::Failed(format!("printing JSON: {e}")))?;
        printer.data(&text);
    } else {
        super::print_plan(&engine, &plan, printer);
    }
    if plan.has_changes(engine.scope)
        && saved.is_none()
        && !super::confirm(printer, "Apply these changes?", args.apply.yes)?
    {
        return Err(Error::Failed("cancelled: nothing was changed".into()));
    }
    let reporter = Reporter::new(printer);
    let applied = rt.block_on(engine.apply(&plan, apply_options(&args.apply), &reporter));
    engine.report_aws_calls(&reporter);
    applied?;
    Ok(Status::Success)
}
