use std::path::Path;

use crate::cli::DownArgs;
use crate::error::{Error, Result, Status};
use crate::plan::output;
use crate::printer::Printer;
use crate::spec::{Selection, regions};

pub fn run(dir: &Path, args: &DownArgs, printer: &Printer) -> Result<Status> {
    // A region whose file is gone can still be taken down: only the stack name is needed.
    let has_file = dir.join(format!("{}.yaml", args.region)).exists();
    let selection = if has_file {
        Selection::Regions(vec![args.region.clone()])
    } else {
        Selection::Regions(Vec::new())
    };
    let stack = crate::spec::load(dir, &selection).map_err(Error::Invalid)?;
    if !has_file && !regions::is_known(&args.region) {
        return Err(Error::Usage(format!(
            "`{}` is not an AWS region",
            args.region
        )));
    }
    super::runtime()?.block_on(async {
        let (aws, plan) = super::aws::plan_region(&stack, None, &args.region, true).await?;
        printer.data(&output::human(&plan, printer));
        if !plan.has_changes() {
            return Ok(Status::Success);
        }
        if !super::aws::confirm(
            printer,
            &format!(
                "Delete these {} resources of {}?",
                plan.count(crate::plan::Action::Delete),
                args.region
            ),
            args.yes,
        )? {
            return Err(Error::Failed("cancelled: nothing was deleted".into()));
        }
        let bars = indicatif::MultiProgress::new();
        let outcome =
            super::aws::execute(&aws, &plan, usize::from(args.parallelism), printer, &bars).await;
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
