//! What plan, up and down share: per-region discovery and planning, progress, confirmation.

use std::io::{BufRead, IsTerminal, Write};
use std::time::SystemTime;

use crate::cloud::{Aws, Owner};
use crate::error::{Error, Result};
use crate::plan::desired::{self, Inputs};
use crate::plan::exec::{self, Event, Outcome};
use crate::plan::{self, RegionPlan};
use crate::printer::Printer;
use crate::render;
use crate::spec::{GatewaySpec, Selection, Stack};

/// Loads the stack for the selected regions: invalid input stops here, before any AWS call.
pub fn load(regions: &std::path::Path, select: &crate::cli::RegionSelection) -> Result<Stack> {
    let selection = if select.all {
        Selection::All
    } else {
        Selection::Regions(select.names.clone())
    };
    crate::spec::load(regions, &selection).map_err(Error::Invalid)
}

/// Connects to one region, discovers what gwctl owns there and diffs it against the region
/// file (`destroy`: against nothing).
pub async fn plan_region(
    stack: &Stack,
    gw: Option<&GatewaySpec>,
    region: &str,
    destroy: bool,
) -> Result<(Aws, RegionPlan)> {
    let backend = &stack.backend.spec;
    let owner = Owner {
        stack: backend.stack.clone(),
        region: region.to_string(),
    };
    let aws = Aws::connect(owner).await;
    let iam = desired::iam_name(&backend.stack, region);
    let prefix = render::ssm_prefix(&backend.stack, region);
    let failed = |e: crate::cloud::CloudError| Error::Failed(format!("{region}: {e}"));
    let (desired, actual) = match (gw, destroy) {
        (Some(gw), false) => {
            let (actual, broker_image) =
                tokio::join!(aws.discover(&iam, &prefix), aws.find_image(&gw.brokers.ami));
            let mut support_images = std::collections::BTreeMap::new();
            for g in &gw.support {
                if let Some(ami) = &g.ami
                    && ami != &gw.brokers.ami
                {
                    support_images
                        .insert(g.name.clone(), aws.find_image(ami).await.map_err(failed)?);
                }
            }
            let secrets =
                render::node_secrets(stack, Some(gw)).map_err(|e| Error::Failed(e.to_string()))?;
            let inputs = Inputs {
                backend,
                gateway: gw,
                broker_image: broker_image.map_err(failed)?,
                support_images,
                secrets,
            };
            (desired::gateway(&inputs)?, actual.map_err(failed)?)
        }
        _ => (
            Vec::new(),
            aws.discover(&iam, &prefix).await.map_err(failed)?,
        ),
    };
    Ok((
        aws.clone(),
        plan::diff(&backend.stack, region, desired, &actual, destroy),
    ))
}

/// Asks once before changing anything; refuses when nobody can answer.
pub fn confirm(printer: &Printer, question: &str, yes: bool) -> Result<bool> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err(Error::Usage(
            "refusing to change AWS without --yes: standard input is not a terminal".into(),
        ));
    }
    printer.info(&format!("{question} Only 'yes' is accepted: "));
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Error::io("reading the answer", e))?;
    Ok(answer.trim() == "yes")
}

/// Executes one region's plan, reporting progress: a bar on a terminal, timestamped lines
/// otherwise.
pub async fn execute(
    aws: &Aws,
    plan: &RegionPlan,
    parallelism: usize,
    printer: &Printer,
    bars: &indicatif::MultiProgress,
) -> Outcome {
    let total = exec::graph(plan).len() as u64;
    let region = plan.region.clone();
    let bar = if printer.is_tty() {
        let bar = bars.add(indicatif::ProgressBar::new(total));
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {prefix:16} [{bar:30}] {pos}/{len} {wide_msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_prefix(region.clone());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        Some(bar)
    } else {
        None
    };
    let quiet = printer.is_quiet();
    let bar_for_events = bar.clone();
    let on_event = move |e: Event| {
        let line = match &e {
            Event::Started(op) => {
                if let Some(b) = &bar_for_events {
                    b.set_message(format!("{} {}", op.verb().trim_end_matches('d'), op.key()));
                }
                return;
            }
            Event::Done { op, id, took } => format!(
                "{region} {} {} {id} ({:.1}s)",
                op.verb(),
                op.key(),
                took.as_secs_f32()
            ),
            Event::Failed { op, error } => format!(
                "{region} FAILED {} {}: {error}",
                op.verb().trim_end_matches('d'),
                op.key()
            ),
            Event::Skipped { op, because } => format!(
                "{region} skipped {} (needs {because}, which failed)",
                op.key()
            ),
        };
        match &bar_for_events {
            Some(b) => {
                b.inc(1);
                b.println(line);
            }
            None if !quiet => eprintln!(
                "{} {line}",
                humantime::format_rfc3339_seconds(SystemTime::now())
            ),
            None => {}
        }
    };
    let outcome = exec::run(aws, plan, parallelism, on_event).await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    outcome
}
