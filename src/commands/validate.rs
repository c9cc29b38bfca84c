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
    let loaded = spec::load(dir, &selection);
    if args.json {
        return print_json(&loaded, printer);
    }
    let stack = loaded.map_err(Error::Invalid)?;
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

/// `{"valid", "files", "problems"}`; the problems are also the command's error (exit 2).
fn print_json(
    loaded: &std::result::Result<spec::Stack, Vec<spec::Diagnostic>>,
    printer: &Printer,
) -> Result<Status> {
    let (files, problems): (Vec<String>, &[spec::Diagnostic]) = match loaded {
        Ok(stack) => {
            let mut files = vec![stack.backend.path.display().to_string()];
            files.extend(stack.gateways.iter().map(|g| g.path.display().to_string()));
            (files, &[])
        }
        Err(diags) => (Vec::new(), diags),
    };
    let problems: Vec<serde_json::Value> = problems
        .iter()
        .map(|d| {
            serde_json::json!({
                "file": d.file.display().to_string(),
                "line": d.pos.as_ref().map(|p| p.line),
                "column": d.pos.as_ref().map(|p| p.col),
                "field": d.field,
                "message": d.message,
            })
        })
        .collect();
    let v = serde_json::json!({"valid": problems.is_empty(), "files": files, "problems": problems});
    let text = serde_json::to_string_pretty(&v)
        .map_err(|e| Error::Failed(format!("printing JSON: {e}")))?;
    printer.data(&text);
    match loaded {
        Ok(_) => Ok(Status::Success),
        Err(diags) => Err(Error::Invalid(diags.clone())),
    }
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
