use std::path::Path;
use std::time::{Duration, Instant};

use crate::cli::{Cli, FollowArgs, RoundtripArgs, SandboxArgs, SandboxDirArgs, SandboxDrillArgs};
use crate::endpoints::EndpointMap;
use crate::engine::{Engine, Scope};
use crate::error::{Error, Result, Status};
use crate::printer::Printer;
use crate::printer::progress::Reporter;
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

/// `sandbox drill`: the engine on the sandbox's endpoint file (or the one given), the
/// region lost and recovered; fails when a command was lost.
pub fn drill(cli: &Cli, args: &SandboxDrillArgs, printer: &Printer) -> Result<Status> {
    let file = cli
        .broker_endpoints
        .clone()
        .unwrap_or_else(|| args.sandbox.dir.join(ENDPOINTS_FILE));
    let engine = Engine::load(&cli.regions, Selection::All, Some(&file), Scope::All)?;
    let map = engine.endpoints.clone();
    let plan = sandbox::drill::DrillPlan {
        region: args.region.clone(),
        devices_per_location: args.devices_per_location,
        outage: Duration::from_secs(args.outage),
        command_every: Duration::from_millis(args.command_every_ms.max(1)),
        keepalive: Duration::from_secs(args.keepalive.max(1)),
        timeout: Duration::from_secs(args.timeout.max(1)),
    };
    let reporter = Reporter::new(printer);
    let outcome = crate::engine::runtime()?
        .block_on(sandbox::drill::run(
            &engine,
            &map,
            &args.sandbox.dir,
            &plan,
            &reporter,
        ))
        .map_err(failed)?;
    if args.json {
        printer.data(&serde_json::to_string_pretty(&outcome).unwrap_or_default());
    } else {
        let moved: Vec<String> = outcome
            .moved_to
            .iter()
            .map(|(r, n)| format!("{n} to {r}"))
            .collect();
        for line in [
            format!(
                "{}: {} of {} devices failed over ({}) in {:.1} s median, {:.1} s max; on AWS expect about {:.0} s (health check interval x threshold + TTL + keepalive)",
                outcome.region,
                outcome.devices_moved,
                outcome.devices,
                moved.join(", "),
                outcome.failover_s.0,
                outcome.failover_s.1,
                outcome.expected_on_aws_s
            ),
            format!(
                "restored: every device home again {:.1} s later",
                outcome.return_s
            ),
            format!(
                "commands ({}): {} sent, {} received, {} lost, {} duplicates; {} delayed over 1 s (latest {:.1} s)",
                match outcome.routing {
                    spec::model::RoutingMode::Broadcast => "broadcast to every gateway",
                    spec::model::RoutingMode::Router => "sent by the router where each device was",
                },
                outcome.commands_sent,
                outcome.commands_received,
                outcome.commands_lost,
                outcome.duplicates,
                outcome.delayed,
                outcome.max_delay_s
            ),
        ] {
            printer.success("ok", &line);
        }
        for lost in &outcome.lost {
            printer.warn(&format!("lost: {lost}"));
        }
    }
    match outcome.commands_lost {
        0 => Ok(Status::Success),
        n => Err(Error::Failed(format!("{n} commands were lost"))),
    }
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
