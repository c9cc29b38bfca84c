use std::path::Path;

use crate::cli::RenderArgs;
use crate::error::{Error, Result, Status};
use crate::printer::Printer;
use crate::render::{self, Addressing};
use crate::spec::{self, Selection};

pub fn run(dir: &Path, args: &RenderArgs, printer: &Printer) -> Result<Status> {
    let is_backend = args.region == "backend";
    // The backend's definitions depend on every gateway (what its federation user may read).
    let selection = if is_backend {
        Selection::All
    } else {
        Selection::Regions(vec![args.region.clone()])
    };
    let stack = spec::load(dir, &selection).map_err(Error::Invalid)?;
    let backend = &stack.backend.spec;
    let rendered = if is_backend {
        let gateways: Vec<_> = stack.gateways.iter().map(|g| &g.spec).collect();
        render::backend(backend, &gateways, &Addressing::backend(backend))?
    } else {
        let gw = stack
            .gateway(&args.region)
            .ok_or_else(|| Error::Usage(format!("no gateway region `{}`", args.region)))?;
        let cas = render::Cas::read(&stack).map_err(|e| Error::Failed(e.to_string()))?;
        render::gateway(
            &gw.spec,
            backend,
            &Addressing::gateway(&gw.spec, backend),
            &cas,
        )?
    };
    if args.json {
        let files: Vec<serde_json::Value> = rendered
            .files
            .iter()
            .map(|f| serde_json::json!({"name": f.name, "mode": format!("{:o}", f.mode), "contents": f.contents}))
            .collect();
        let v = serde_json::json!({"region": args.region, "files": files});
        let text = serde_json::to_string_pretty(&v)
            .map_err(|e| Error::Failed(format!("printing JSON: {e}")))?;
        printer.data(&text);
        return Ok(Status::Success);
    }
    match &args.out {
        Some(out) => {
            let target = out.join(&args.region);
            rendered
                .write_to(&target)
                .map_err(|e| Error::io(format!("writing {}", target.display()), e))?;
            for f in &rendered.files {
                printer.info(&format!("wrote {}", target.join(&f.name).display()));
            }
            printer.success(
                "ok",
                &format!(
                    "rendered {} files for {}",
                    rendered.files.len(),
                    args.region
                ),
            );
        }
        None => {
            let text: Vec<String> = rendered
                .files
                .iter()
                .map(|f| format!("# ==> {} <==\n{}", f.name, f.contents))
                .collect();
            printer.data(&text.join("\n"));
        }
    }
    Ok(Status::Success)
}
