use crate::cli::{Cli, RouterLookupArgs, RouterRunArgs};
use crate::engine::router::RouterOptions;
use crate::engine::{Scope, runtime};
use crate::error::{Error, Result, Status};
use crate::printer::Printer;
use crate::printer::progress::Reporter;
use crate::spec::Selection;

/// Runs the router until SIGINT/SIGTERM, then prints its counters.
pub fn run(cli: &Cli, args: &RouterRunArgs, printer: &Printer) -> Result<Status> {
    let engine = super::engine(cli, Selection::All, Scope::Federation)?;
    let id = args.id.clone().unwrap_or_else(default_id);
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(Error::Usage(format!(
            "--id `{id}`: letters, digits, `-`, `_` and `.` only (it names queues)"
        )));
    }
    let opts = RouterOptions {
        id,
        listen: args.listen,
        window: args.window,
        resync: !args.no_resync,
    };
    let reporter = Reporter::new(printer);
    let rt = runtime()?;
    let summary = rt.block_on(engine.run_router(&opts, &reporter, stop_signal()))?;
    printer.data(&serde_json::to_string(&summary.stats).map_err(|e| Error::Failed(e.to_string()))?);
    Ok(Status::Success)
}

/// Where a running router sends a device's next message.
pub fn lookup(cli: &Cli, args: &RouterLookupArgs, printer: &Printer) -> Result<Status> {
    let engine = super::engine(cli, Selection::Regions(Vec::new()), Scope::Federation)?;
    let found = runtime()?.block_on(engine.router_lookup(args.router, &args.device))?;
    if args.json {
        printer.data(&found.to_string());
    } else {
        let exchange = found["exchange"].as_str().unwrap_or("?");
        let why = match (found["doubt"].as_str(), found["region"].as_str()) {
            (Some(doubt), Some(region)) => format!("broadcast: {doubt} (last seen in {region})"),
            (Some(doubt), None) => format!("broadcast: {doubt}"),
            (None, Some(region)) => format!("connected in {region}"),
            (None, None) => String::new(),
        };
        printer.data(&format!("{}: {exchange} ({why})", args.device));
    }
    Ok(Status::Success)
}

fn default_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    format!(
        "{}-{}",
        if host.is_empty() { "router" } else { &host },
        std::process::id()
    )
}

/// Completes on SIGINT or SIGTERM.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
