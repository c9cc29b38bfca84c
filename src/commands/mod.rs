//! Commands: each parses its arguments, calls the engine (or the spec, render and sandbox
//! layers for the offline commands), and hands the results and progress to the printer.
//! No command calls AWS or RabbitMQ itself.

mod ca;
mod down;
mod drill;
mod export;
mod init;
mod loadtest;
mod plan;
mod render;
mod router;
mod sandbox;
mod schema;
mod shell;
mod status;
mod unlock;
mod up;
mod upgrade;
mod validate;

use crate::cli::{
    CaCommand, Cli, Command, DeviceCommand, ExportCommand, RegionSelection, RouterCommand,
    SandboxCommand,
};
use crate::engine::{Engine, Scope};
use crate::error::{Error, Result, Status};
use crate::printer::{Confirmation, Printer};
use crate::spec::Selection;

pub fn run(cli: Cli, printer: &Printer) -> Result<Status> {
    match cli.command {
        Command::Init(ref args) => init::run(&cli.regions, args, printer),
        Command::Validate(args) => validate::run(&cli.regions, &args, printer),
        Command::Schema(args) => schema::run(&args, printer),
        Command::Render(args) => render::run(&cli.regions, &args, printer),
        Command::Status(ref args) => status::run(&cli, args, printer),
        Command::Unlock(ref args) => unlock::run(&cli, args, printer),
        Command::Drill(ref args) => drill::run(&cli, args, printer),
        Command::Loadtest(ref args) => loadtest::run(&cli, args, printer),
        Command::Plan(ref args) => plan::run(&cli, args, printer),
        Command::Up(ref args) => up::run(&cli, args, printer),
        Command::Down(ref args) => down::run(&cli, args, printer),
        Command::Upgrade(ref args) => upgrade::run(&cli, args, printer),
        Command::Sandbox(SandboxCommand::Start(ref args)) => {
            sandbox::start(&cli.regions, args, printer)
        }
        Command::Sandbox(SandboxCommand::Stop(ref args)) => sandbox::stop(args, printer),
        Command::Sandbox(SandboxCommand::Follow(ref args)) => {
            // The follower writes the endpoint file; it reads none.
            let load = || Engine::load(&cli.regions, Selection::All, None, Scope::All);
            sandbox::follow(load, args, printer)
        }
        Command::Router(RouterCommand::Run(ref args)) => router::run(&cli, args, printer),
        Command::Router(RouterCommand::Lookup(ref args)) => router::lookup(&cli, args, printer),
        Command::Ca(CaCommand::Create(ref args)) => ca::create(args, printer),
        Command::Ca(CaCommand::IssueLink(ref args)) => ca::issue_link(&cli.regions, args, printer),
        Command::Device(DeviceCommand::Issue(ref args)) => {
            ca::issue_device(&cli.regions, args, printer)
        }
        Command::Export(ExportCommand::Terraform(ref args)) => {
            export::terraform(&cli, args, printer)
        }
        Command::Completions(ref args) => shell::completions(args, printer),
        Command::Man(ref args) => shell::man(args, printer),
        Command::Sandbox(SandboxCommand::Drill(ref args)) => sandbox::drill(&cli, args, printer),
        Command::Sandbox(SandboxCommand::Roundtrip(ref args)) => {
            sandbox::roundtrip(&cli.regions, cli.broker_endpoints.as_deref(), args, printer)
        }
    }
}

/// The engine for the regions a command selected: invalid input stops here, before any call.
fn engine(cli: &Cli, selection: Selection, scope: Scope) -> Result<Engine> {
    Engine::load(
        &cli.regions,
        selection,
        cli.broker_endpoints.as_deref(),
        scope,
    )
}

fn selection(select: &RegionSelection) -> Selection {
    if select.all {
        Selection::All
    } else {
        Selection::Regions(select.names.clone())
    }
}

/// Asks before a change; `false` when the answer is no. Without a terminal and without
/// `--yes`, refuses (usage error) instead of guessing.
fn confirm(printer: &Printer, question: &str, yes: bool) -> Result<bool> {
    match printer
        .confirm(question, yes)
        .map_err(|e| Error::io("reading the answer", e))?
    {
        Confirmation::Yes => Ok(true),
        Confirmation::No => Ok(false),
        Confirmation::NoTerminal => Err(Error::Usage(
            "refusing to change anything without --yes: standard input is not a terminal".into(),
        )),
    }
}

/// Prints each region's plan for people.
fn print_plan(engine: &Engine, plan: &crate::engine::planning::StackPlan, printer: &Printer) {
    let backend = engine.backend_endpoint();
    for w in &plan.regions {
        printer.data(&crate::printer::plan::region_human(
            w,
            engine.scope,
            &backend,
            printer,
        ));
    }
}

/// Reports the regions that could not be planned (each has its own error).
fn report_failed(plan: &crate::engine::planning::StackPlan, printer: &Printer) {
    for e in &plan.failed {
        printer.error(&e.to_string());
    }
}
