//! `gwctl drill REGION`: what Route53 answers each client location now and with REGION down;
//! `--live` really fails REGION's health checks (inverted), waits for Route53 to see it, and
//! restores them.

use std::time::Duration;

use crate::cli::{Cli, DrillArgs};
use crate::engine::{self, ApplyOptions, Scope, runtime};
use crate::error::{Error, Result, Status};
use crate::printer::Printer;
use crate::printer::progress::Reporter;
use crate::spec::Selection;

pub fn run(cli: &Cli, args: &DrillArgs, printer: &Printer) -> Result<Status> {
    let engine = super::engine(cli, Selection::All, Scope::Aws)?;
    if engine.stack.gateway(&args.region).is_none() {
        return Err(Error::Usage(format!(
            "`{}` is not a gateway region of this stack ({})",
            args.region,
            engine
                .stack
                .gateways
                .iter()
                .map(|g| g.spec.region.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let rt = runtime()?;
    let before = rt.block_on(engine.survey())?;
    let report = if args.live {
        let checks = engine::drill::checks_to_fail(&before, &args.region)?;
        let question = format!(
            "Fail the {} health checks of {} in Route53? Its clients will be sent to other regions until the drill ends.",
            checks.len(),
            args.region
        );
        if !super::confirm(printer, &question, args.yes)? {
            return Err(Error::Failed("cancelled: nothing was changed".into()));
        }
        let opts = ApplyOptions {
            lock_timeout: Duration::from_secs(args.lock_timeout),
            parallelism: 1,
            broker_wait: Duration::ZERO,
        };
        let reporter = Reporter::new(printer);
        rt.block_on(engine.live_drill(
            &args.region,
            &before,
            Duration::from_secs(args.timeout),
            opts,
            &reporter,
        ))?
    } else {
        engine.dry_drill(&args.region, &before)
    };
    if args.json {
        printer.data(
            &serde_json::to_string_pretty(&report).map_err(|e| Error::Failed(e.to_string()))?,
        );
    } else {
        printer.data(&crate::printer::drill::human(&report, printer));
    }
    Ok(Status::Success)
}
