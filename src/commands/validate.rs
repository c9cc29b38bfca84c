use std::path::Path;

use crate::cli::ValidateArgs;
use crate::error::{Error, Result, Status};
use crate::printer::Printer;
use crate::spec::{self, Selection};

pub fn run(dir: &Path, args: &ValidateArgs, printer: &Printer) -> Result<Status> {
    let selection = if args.all || args.names.is_empty() {
        Selection::All
    } else {
        Selection::Regions(args.names.clone())
    };
    let stack = spec::load(dir, &selection).map_err(Error::Invalid)?;
    if args.show_effective {
        let mut docs = Vec::new();
        let backend_selected = args.all || args.names.is_empty();
        if backend_selected {
            docs.push((stack.backend.path.clone(), to_yaml(&stack.backend.spec)?));
        }
        for g in &stack.gateways {
            docs.push((g.path.clone(), to_yaml(&g.spec)?));
        }
        let text: Vec<String> = docs
            .into_iter()
            .map(|(path, yaml)| format!("# {} (defaults applied)\n{yaml}", path.display()))
            .collect();
        printer.data(&text.join("---\n"));
    }
    let mut names = vec![stack.backend.path.display().to_string()];
    names.extend(stack.gateways.iter().map(|g| g.path.display().to_string()));
    printer.success(
        "ok",
        &format!(
            "{} valid: {}",
            plural(names.len(), "region file"),
            names.join(", ")
        ),
    );
    Ok(Status::Success)
}

fn to_yaml<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_saphyr::to_string(value).map_err(|e| Error::Failed(format!("printing YAML: {e}")))
}

pub fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}
