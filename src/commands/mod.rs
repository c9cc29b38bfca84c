//! Commands: each orchestrates the layers below (spec, render, broker, sandbox) and owns no
//! API calls of its own.

mod aws;
mod dns;
mod down;
mod drill;
mod plan;
mod render;
mod sandbox;
mod schema;
mod status;
mod unlock;
mod up;
mod validate;

use crate::cli::{Cli, Command, SandboxCommand};
use crate::error::{Result, Status};
use crate::printer::Printer;

pub fn run(cli: Cli, printer: &Printer) -> Result<Status> {
    match cli.command {
        Command::Validate(args) => validate::run(&cli.regions, &args, printer),
        Command::Schema(args) => schema::run(&args, printer),
        Command::Render(args) => render::run(&cli.regions, &args, printer),
        Command::Status(ref args) => status::run(&cli, args, printer),
        Command::Unlock(ref args) => unlock::run(&cli, args, printer),
        Command::Drill(ref args) => drill::run(&cli, args, printer),
        Command::Plan(ref args) => plan::run(&cli, args, printer),
        Command::Up(ref args) => up::run(&cli, args, printer),
        Command::Down(ref args) => down::run(&cli, args, printer),
        Command::Sandbox(SandboxCommand::Start(ref args)) => {
            sandbox::start(&cli.regions, args, printer)
        }
        Command::Sandbox(SandboxCommand::Stop(ref args)) => sandbox::stop(args, printer),
        Command::Sandbox(SandboxCommand::Roundtrip(ref args)) => {
            sandbox::roundtrip(&cli.regions, cli.broker_endpoints.as_deref(), args, printer)
        }
    }
}

/// A tokio runtime for commands that talk to networks. Two workers match the machines gwctl
/// runs on in CI; the work is I/O-bound.
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| crate::error::Error::io("starting the async runtime", e))
}
