use crate::cli::SchemaArgs;
use crate::error::{Error, Result, Status};
use crate::printer::Printer;
use crate::spec::schema_check;

pub fn run(args: &SchemaArgs, printer: &Printer) -> Result<Status> {
    let text = serde_json::to_string_pretty(schema_check::schema(args.kind))
        .map_err(|e| Error::Failed(format!("printing the schema: {e}")))?;
    printer.data(&text);
    Ok(Status::Success)
}
