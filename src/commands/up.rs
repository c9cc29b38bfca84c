use std::path::Path;

use serde_json::Value;

use crate::cli::UpArgs;
use crate::error::{Error, Result, Status};
use crate::plan::{RegionPlan, output};
use crate::printer::Printer;

/// A saved plan is applied only to the state it was made from.
fn check_saved(saved: &Value, plans: &[RegionPlan]) -> Result<()> {
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

pub fn run(regions: &Path, args: &UpArgs, printer: &Printer) -> Result<Status> {
    let stack = super::aws::load(regions, &args.select)?;
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
    super::runtime()?.block_on(async {
        let (plans, errors) = super::plan::plan_all(&stack, printer).await;
        let region_plans: Vec<RegionPlan> = plans.iter().map(|(_, p)| p.clone()).collect();
        if let Some(saved) = &saved {
            check_saved(saved, &region_plans)?;
        }
        for p in &region_plans {
            printer.data(&output::human(p, printer));
        }
        let todo: Vec<_> = plans.into_iter().filter(|(_, p)| p.has_changes()).collect();
        if todo.is_empty() {
            return if errors.is_empty() { Ok(Status::Success) } else { Err(Error::Failed(format!("{} region(s) could not be planned", errors.len()))) };
        }
        if saved.is_none() && !super::aws::confirm(printer, "Apply these changes?", args.yes)? {
            return Err(Error::Failed("cancelled: nothing was changed".into()));
        }
        let bars = indicatif::MultiProgress::new();
        let runs = todo.iter().map(|(aws, plan)| super::aws::execute(aws, plan, usize::from(args.parallelism), printer, &bars));
        let outcomes = futures_util::future::join_all(runs).await;
        let mut failed = errors.len();
        for ((_, plan), outcome) in todo.iter().zip(&outcomes) {
            if outcome.ok() {
                printer.success("done", &format!("{}: {} operations", plan.region, outcome.done));
            } else {
                failed += 1;
                printer.error(&format!(
                    "{}: {} done, {} failed, {} skipped; run `gwctl up {}` again once the cause is fixed",
                    plan.region,
                    outcome.done,
                    outcome.failed.len(),
                    outcome.skipped.len(),
                    plan.region
                ));
            }
        }
        if failed > 0 { Err(Error::Failed(format!("{failed} region(s) failed"))) } else { Ok(Status::Success) }
    })
}
