use std::path::Path;
use std::time::{Duration, Instant};

use crate::cli::{FollowArgs, RoundtripArgs, SandboxArgs, SandboxDirArgs, StormArgs};
use crate::endpoints::EndpointMap;
use crate::error::{Error, Result, Status};
use crate::printer::Printer;
use crate::sandbox::{self, ENDPOINTS_FILE, Sandbox, SandboxError};
use crate::spec::{self, Selection};

fn failed(e: SandboxError) -> Error {
    Error::Failed(e.to_string())
}

pub fn start(regions: &Path, args: &SandboxArgs, printer: &Printer) -> Result<Status> {
    let stack = spec::load(regions, &Selection::All).map_err(Error::Invalid)?;
    let dir = &args.sandbox.dir;
    crate::engine::runtime()?.block_on(async {
        // A previous sandbox in the same directory goes first: its ports and data are stale.
        sandbox::stop_detached(dir, Duration::from_secs(10))
            .await
            .map_err(failed)?;
        let _ = std::fs::remove_dir_all(dir);
        let started = Instant::now();
        printer.info(&format!(
            "starting {} local RabbitMQ nodes in {}",
            stack.gateways.len() + 1,
            dir.display()
        ));
        let mut sandbox = Sandbox::start(&stack, dir, &args.install())
            .await
            .map_err(failed)?;
        let nodes = sandbox.node_names();
        let names = nodes.join(", ");
        if stack.backend.spec.routing.mode == spec::model::RoutingMode::Router {
            let exe = std::env::current_exe().map_err(|e| Error::io("finding gwctl", e))?;
            let router = sandbox
                .start_router(&exe, "sandbox", None, true)
                .await
                .map_err(failed)?;
            printer.info(&format!(
                "router: metrics and lookups on http://{} (log {})",
                router.listen,
                router.log.display()
            ));
        }
        sandbox.detach().map_err(failed)?;
        printer.success(
            "ok",
            &format!(
                "{} nodes ready after {:.1} s: {names}",
                nodes.len(),
                started.elapsed().as_secs_f32()
            ),
        );
        printer.info(&format!(
            "broker endpoints: {}",
            dir.join(ENDPOINTS_FILE).display()
        ));
        Ok(Status::Success)
    })
}

/// Runs the sandbox that follows the cloud until SIGINT or SIGTERM, then stops its nodes.
pub fn follow(
    load: impl Fn() -> Result<crate::engine::Engine>,
    args: &FollowArgs,
    printer: &Printer,
) -> Result<Status> {
    let mut engine = load()?;
    let dir = &args.sandbox.sandbox.dir;
    let install = args.sandbox.install();
    crate::engine::runtime()?.block_on(async {
        sandbox::stop_detached(dir, Duration::from_secs(10))
            .await
            .map_err(failed)?;
        let _ = std::fs::remove_dir_all(dir);
        let mut sandbox = Sandbox::start_following(&engine.stack, dir, &install)
            .await
            .map_err(failed)?;
        printer.success(
            "ok",
            &format!(
                "backend node ready; following the gateways' broker instances (endpoints: {})",
                dir.join(ENDPOINTS_FILE).display()
            ),
        );
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| Error::io("listening for SIGTERM", e))?;
        let interval = Duration::from_millis(args.interval_ms.max(100));
        loop {
            // Region files edited while following are read again (invalid ones are not).
            match load() {
                Ok(e) => engine = e,
                Err(e) => printer.warn(&format!("region files: {e}")),
            }
            match sandbox.follow_once(&engine, &install).await {
                Ok(changes) => changes.iter().for_each(|c| printer.info(&c.to_string())),
                Err(e) => printer.warn(&format!("following the cloud: {e}")),
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
            }
        }
        printer.info("stopping the sandbox's nodes");
        sandbox.stop(Duration::from_secs(10)).await;
        let _ = std::fs::remove_file(dir.join("nodes.json"));
        Ok(Status::Success)
    })
}

pub fn stop(args: &SandboxDirArgs, printer: &Printer) -> Result<Status> {
    let n = crate::engine::runtime()?
        .block_on(sandbox::stop_detached(&args.dir, Duration::from_secs(10)))
        .map_err(failed)?;
    printer.success(
        "ok",
        &format!("stopped {n} sandbox processes (nodes and device authorizers)"),
    );
    Ok(Status::Success)
}

pub fn roundtrip(
    regions: &Path,
    endpoints: Option<&Path>,
    args: &RoundtripArgs,
    printer: &Printer,
) -> Result<Status> {
    let (stack, map) = stack_and_endpoints(regions, endpoints, &args.sandbox.dir)?;
    let lines = crate::engine::runtime()?
        .block_on(sandbox::roundtrip::run(
            &stack,
            &map,
            &args.telemetry_from,
            &args.command_to,
        ))
        .map_err(failed)?;
    for line in lines {
        printer.success("ok", &line);
    }
    Ok(Status::Success)
}

pub fn storm(
    regions: &Path,
    endpoints: Option<&Path>,
    args: &StormArgs,
    printer: &Printer,
) -> Result<Status> {
    let (stack, map) = stack_and_endpoints(regions, endpoints, &args.sandbox.dir)?;
    let report = crate::engine::runtime()?
        .block_on(sandbox::storm::run(
            &stack,
            &map,
            &args.sandbox.dir,
            &args.region,
            args.devices,
            args.parallel,
            Duration::from_secs(args.hold),
        ))
        .map_err(failed)?;
    if args.json {
        printer.data(&serde_json::to_string_pretty(&report).unwrap_or_default());
    } else {
        printer.success(
            "ok",
            &format!(
                "{}/{} devices connected over TLS in {:.1} s ({:.0}/s), {} failed; node RSS {} MiB -> {} MiB ({:.0} KiB per connection)",
                report.connected,
                report.devices,
                report.seconds,
                report.connected as f64 / report.seconds.max(0.001),
                report.failed,
                report.rss_before >> 20,
                report.rss_connected >> 20,
                report.per_connection_kib()
            ),
        );
    }
    if report.failed > 0 {
        return Err(Error::Failed(format!(
            "{} devices could not connect",
            report.failed
        )));
    }
    Ok(Status::Success)
}

/// The region files and where the sandbox's brokers are (the endpoint file given, else the
/// sandbox's own).
fn stack_and_endpoints(
    regions: &Path,
    endpoints: Option<&Path>,
    dir: &Path,
) -> Result<(spec::Stack, EndpointMap)> {
    let stack = spec::load(regions, &Selection::All).map_err(Error::Invalid)?;
    let file = endpoints
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dir.join(ENDPOINTS_FILE));
    let map = EndpointMap::load(&file).map_err(Error::Usage)?;
    Ok((stack, map))
}
