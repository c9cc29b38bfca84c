use std::time::Duration;

use crate::cli::{Cli, StatusArgs};
use crate::engine::runtime;
use crate::error::{Error, Result, Status};
use crate::printer::Printer;
use crate::printer::status::human;

pub fn run(cli: &Cli, args: &StatusArgs, printer: &Printer) -> Result<Status> {
    let engine = super::engine(cli, super::selection(&args.select), args.scope)?;
    let statuses = runtime()?.block_on(engine.status(Duration::from_secs(args.wait), args.router));
    let mut ok = Vec::new();
    let mut failures = 0;
    for s in statuses {
        match s {
            Ok(s) => ok.push(s),
            Err(e) => {
                printer.error(&e.to_string());
                failures += 1;
            }
        }
    }
    if args.json {
        printer.data(&serde_json::to_string_pretty(&ok).map_err(|e| Error::Failed(e.to_string()))?);
    } else {
        for s in &ok {
            printer.data(&human(s, printer));
        }
    }
    let unhealthy = ok.iter().filter(|s| !s.healthy).count() + failures;
    if unhealthy > 0 {
        Err(Error::Failed(format!("{unhealthy} region(s) unhealthy")))
    } else {
        Ok(Status::Success)
    }
}
