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
    super::runtime()?.block_on(async {
        let work = super::aws::plan_region(&ctx, None, &args.region).await?;
        super::plan::print_human(&ctx, &work, printer);
        if !work.has_changes(ctx.scope) {
            return Ok(Status::Success);
        }
        let n = work.plan.count(Action::Delete);
        let question = format!(
            "Delete these {n} AWS resources and the backend's federation entries of {}?",
            args.region
        );
        if !super::aws::confirm(printer, &question, args.yes)? {
            return Err(Error::Failed("cancelled: nothing was deleted".into()));
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
        if !ctx.scope.aws() || !work.plan.has_changes() {
            return Ok(Status::Success);
        }
        let bars = indicatif::MultiProgress::new();
        let outcome = super::aws::execute(
            &work.aws,
            &work.plan,
            usize::from(args.parallelism),
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
    })
}
