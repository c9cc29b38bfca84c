use crate::cli::{Cli, DownArgs};
use crate::engine::runtime;
use crate::error::{Error, Result, Status};
use crate::model::Action;
use crate::printer::Printer;
use crate::printer::plan::region_human;
use crate::printer::progress::Reporter;
use crate::spec::{Selection, regions};

/// Plans the region's removal without a lock, shows it, asks, then lets the engine delete it
/// under the region's lock.
pub fn run(cli: &Cli, args: &DownArgs, printer: &Printer) -> Result<Status> {
    // A region whose file is gone can still be taken down: only the stack name is needed.
    let has_file = cli.regions.join(format!("{}.yaml", args.region)).exists();
    let selection = if has_file {
        Selection::Regions(vec![args.region.clone()])
    } else {
        Selection::Regions(Vec::new())
    };
    let engine = super::engine(cli, selection, args.scope)?;
    if !has_file && !regions::is_known(&args.region) {
        return Err(Error::Usage(format!(
            "`{}` is not an AWS region",
            args.region
        )));
    }
    let rt = runtime()?;
    let work = rt.block_on(engine.plan_removal(&args.region))?;
    if args.json {
        let v = crate::printer::plan::region_json(&work);
        let text = serde_json::to_string_pretty(&v)
            .map_err(|e| Error::Failed(format!("printing JSON: {e}")))?;
        printer.data(&text);
    } else {
        printer.data(&region_human(
            &work,
            engine.scope,
            &engine.backend_endpoint(),
            printer,
        ));
    }
    if !work.has_changes(engine.scope) {
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
    if !super::confirm(printer, &question, args.apply.yes)? {
        return Err(Error::Failed("cancelled: nothing was deleted".into()));
    }
    let reporter = Reporter::new(printer);
    let destroyed =
        rt.block_on(engine.destroy(&work, super::up::apply_options(&args.apply), &reporter));
    engine.report_aws_calls(&reporter);
    destroyed?;
    Ok(Status::Success)
}
