use crate::cli::{Cli, UnlockArgs};
use crate::engine::{Scope, runtime};
use crate::error::{Result, Status};
use crate::printer::Printer;
use crate::spec::Selection;

pub fn run(cli: &Cli, args: &UnlockArgs, printer: &Printer) -> Result<Status> {
    let engine = super::engine(cli, Selection::Regions(Vec::new()), Scope::Aws)?;
    let info = runtime()?.block_on(engine.unlock(&args.region, &args.id))?;
    printer.success(
        "ok",
        &format!("broke the lock of {} held by {info}", args.region),
    );
    Ok(Status::Success)
}
