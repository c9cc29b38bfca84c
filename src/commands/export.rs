use crate::cli::{Cli, ExportTerraformArgs};
use crate::engine::{Scope, runtime};
use crate::error::{Result, Status};
use crate::printer::Printer;
use crate::spec::Selection;

pub fn terraform(cli: &Cli, args: &ExportTerraformArgs, printer: &Printer) -> Result<Status> {
    let engine = super::engine(
        cli,
        Selection::Regions(vec![args.region.clone()]),
        Scope::Aws,
    )?;
    let export = runtime()?.block_on(engine.export_terraform(&args.region, &args.out))?;
    printer.success(
        "wrote",
        &format!(
            "{}: {} resources to import, {} sensitive variables",
            args.out.display(),
            export.imports.len(),
            export.variables.len(),
        ),
    );
    for (what, _) in &export.not_exported {
        printer.info(&format!("  not exported: {what} (see README.md)"));
    }
    Ok(Status::Success)
}
