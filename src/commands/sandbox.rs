use std::path::Path;
use std::time::{Duration, Instant};

use crate::cli::{RoundtripArgs, SandboxArgs, SandboxDirArgs};
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
        let sandbox = Sandbox::start(&stack, dir, &args.install())
            .await
            .map_err(failed)?;
        let names = sandbox.node_names().join(", ");
        let pids = sandbox.detach().map_err(failed)?;
        printer.success(
            "ok",
            &format!(
                "{} nodes ready after {:.1} s: {names}",
                pids.len(),
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

pub fn stop(args: &SandboxDirArgs, printer: &Printer) -> Result<Status> {
    let n = crate::engine::runtime()?
        .block_on(sandbox::stop_detached(&args.dir, Duration::from_secs(10)))
        .map_err(failed)?;
    printer.success("ok", &format!("stopped {n} sandbox nodes"));
    Ok(Status::Success)
}

pub fn roundtrip(
    regions: &Path,
    endpoints: Option<&Path>,
    args: &RoundtripArgs,
    printer: &Printer,
) -> Result<Status> {
    let stack = spec::load(regions, &Selection::All).map_err(Error::Invalid)?;
    let file = endpoints
        .map(Path::to_path_buf)
        .unwrap_or_else(|| args.sandbox.dir.join(ENDPOINTS_FILE));
    let map = EndpointMap::load(&file).map_err(Error::Usage)?;
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
