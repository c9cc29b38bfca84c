use crate::cli::{Cli, PlanArgs};
use crate::engine::runtime;
use crate::error::{Error, Result, Status};
use crate::printer::Printer;
use crate::printer::plan::{stack_json, stack_markdown};

pub fn run(cli: &Cli, args: &PlanArgs, printer: &Printer) -> Result<Status> {
    let engine = super::engine(cli, super::selection(&args.select), args.scope)?;
    for warning in engine.capacity_warnings() {
        printer.warn(&warning);
    }
    let plan = runtime()?.block_on(engine.plan());
    super::report_failed(&plan, printer);
    let json = stack_json(&plan);
    let pretty = || serde_json::to_string_pretty(&json).map_err(|e| Error::Failed(e.to_string()));
    if let Some(path) = &args.out {
        crate::files::write_file(path, pretty()?.as_bytes(), 0o644)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        printer.info(&format!("saved the plan to {}", path.display()));
    }
    if args.json {
        printer.data(&pretty()?);
    } else if args.markdown {
        printer.data(&stack_markdown(&plan));
    } else {
        super::print_plan(&engine, &plan, printer);
    }
    if !plan.failed.is_empty() {
        return Err(Error::Failed(format!(
            "{} region(s) could not be planned",
            plan.failed.len()
        )));
    }
    Ok(
        if (plan.has_changes(engine.scope) || plan.has_held()) && args.detailed_exitcode {
            Status::ChangesPending
        } else {
            Status::Success
        },
    )
}
