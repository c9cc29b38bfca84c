use serde_json::Value;

use super::aws::{Context, RegionWork};
use crate::cli::{Cli, PlanArgs};
use crate::error::{Error, Result, Status};
use crate::plan::output;
use crate::printer::Printer;

/// Plans every selected region concurrently; a region that fails to plan is reported and the
/// others still are.
pub async fn plan_all(ctx: &Context, printer: &Printer) -> (Vec<RegionWork>, usize) {
    let futures = ctx
        .stack
        .gateways
        .iter()
        .map(|g| super::aws::plan_region(ctx, Some(&g.spec), &g.spec.region));
    let mut works = Vec::new();
    let mut errors = 0;
    for r in futures_util::future::join_all(futures).await {
        match r {
            Ok(w) => works.push(w),
            Err(e) => {
                printer.error(&e.to_string());
                errors += 1;
            }
        }
    }
    (works, errors)
}

/// The plan of every region as JSON (what `--json` prints and `--out` saves).
pub fn to_json(works: &[RegionWork]) -> Value {
    let plans: Vec<_> = works.iter().map(|w| w.plan.clone()).collect();
    let mut v = output::json(&plans);
    if let Some(regions) = v["regions"].as_array_mut() {
        for (r, w) in regions.iter_mut().zip(works) {
            if let (Some(obj), Some(f)) = (r.as_object_mut(), &w.federation) {
                obj.insert("federation".into(), output::json_federation(f));
            }
            if let (Some(obj), Some(d)) = (r.as_object_mut(), &w.dns) {
                obj.insert("route53".into(), output::json_dns(d));
            }
        }
    }
    v
}

/// Prints one region's plan for people.
pub fn print_human(ctx: &Context, w: &RegionWork, printer: &Printer) {
    if ctx.scope.aws() {
        printer.data(&output::human(&w.plan, printer));
    }
    if let Some(d) = &w.dns {
        printer.data(&output::human_dns(d, printer));
    }
    if let Some(f) = &w.federation {
        let backend = ctx
            .backend_client()
            .map(|c| c.endpoint().to_string())
            .unwrap_or_default();
        printer.data(&output::human_federation(f, &backend, printer));
    }
}

pub fn run(cli: &Cli, args: &PlanArgs, printer: &Printer) -> Result<Status> {
    let ctx = Context::load(
        &cli.regions,
        Context::selection(&args.select),
        cli.broker_endpoints.as_deref(),
        args.scope,
    )?;
    let (works, errors) = super::runtime()?.block_on(plan_all(&ctx, printer));
    let json = to_json(&works);
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
        let plans: Vec<_> = works.iter().map(|w| w.plan.clone()).collect();
        let mut text = output::markdown(&plans);
        for d in works.iter().filter_map(|w| w.dns.as_ref()) {
            text.push_str(&output::markdown_dns(d));
        }
        printer.data(&text);
    } else {
        for w in &works {
            print_human(&ctx, w, printer);
        }
    }
    if errors > 0 {
        return Err(Error::Failed(format!(
            "{errors} region(s) could not be planned"
        )));
    }
    let changes = works.iter().any(|w| w.has_changes(ctx.scope));
    Ok(if changes && args.detailed_exitcode {
        Status::ChangesPending
    } else {
        Status::Success
    })
}
