use std::path::Path;

use crate::cli::PlanArgs;
use crate::error::{Error, Result, Status};
use crate::plan::{RegionPlan, output};
use crate::printer::Printer;
use crate::spec::Stack;

/// Plans every selected region concurrently; a region that fails to plan is reported and the
/// others still are.
pub async fn plan_all(
    stack: &Stack,
    printer: &Printer,
) -> (Vec<(crate::cloud::Aws, RegionPlan)>, Vec<String>) {
    let futures = stack
        .gateways
        .iter()
        .map(|g| super::aws::plan_region(stack, Some(&g.spec), &g.spec.region, false));
    let mut plans = Vec::new();
    let mut errors = Vec::new();
    for r in futures_util::future::join_all(futures).await {
        match r {
            Ok(p) => plans.push(p),
            Err(e) => {
                printer.error(&e.to_string());
                errors.push(e.to_string());
            }
        }
    }
    (plans, errors)
}

pub fn run(regions: &Path, args: &PlanArgs, printer: &Printer) -> Result<Status> {
    let stack = super::aws::load(regions, &args.select)?;
    let (plans, errors) = super::runtime()?.block_on(plan_all(&stack, printer));
    let plans: Vec<RegionPlan> = plans.into_iter().map(|(_, p)| p).collect();
    let json = output::json(&plans);
    if let Some(path) = &args.out {
        let text = serde_json::to_string_pretty(&json).map_err(|e| Error::Failed(e.to_string()))?;
        crate::render::write_file(path, text.as_bytes(), 0o644)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        printer.info(&format!("saved the plan to {}", path.display()));
    }
    if args.json {
        printer
            .data(&serde_json::to_string_pretty(&json).map_err(|e| Error::Failed(e.to_string()))?);
    } else if args.markdown {
        printer.data(&output::markdown(&plans));
    } else {
        for p in &plans {
            printer.data(&output::human(p, printer));
        }
    }
    if !errors.is_empty() {
        return Err(Error::Failed(format!(
            "{} region(s) could not be planned",
            errors.len()
        )));
    }
    let changes = plans.iter().any(RegionPlan::has_changes);
    Ok(if changes && args.detailed_exitcode {
        Status::ChangesPending
    } else {
        Status::Success
    })
}
