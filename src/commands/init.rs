use crate::cli::InitArgs;
use crate::engine::init::{InitOptions, init_region};
use crate::engine::runtime;
use crate::error::{Error, Result, Status};
use crate::printer::Printer;

pub fn run(regions: &std::path::Path, args: &InitArgs, printer: &Printer) -> Result<Status> {
    let opts = InitOptions {
        instance_type: args.instance_type.clone(),
        zones: args.zones.clone(),
        offline: args.offline,
    };
    let done = runtime()?.block_on(init_region(regions, &args.region, &opts))?;
    let r = &done.region;
    if args.json {
        let v = serde_json::json!({
            "path": done.path,
            "region": r.region,
            "vpc_cidr": r.vpc_cidr,
            "subnets": r.subnets.iter().map(|(zone, cidr)| serde_json::json!({"zone": zone, "cidr": cidr})).collect::<Vec<_>>(),
            "instance_type": r.instance_type,
            "image": r.image_now.as_ref().map(|(id, name)| serde_json::json!({"id": id, "name": name})),
            "unset_secrets": done.unset_secrets,
        });
        let text = serde_json::to_string_pretty(&v)
            .map_err(|e| Error::Failed(format!("printing JSON: {e}")))?;
        printer.data(&text);
        return Ok(Status::Success);
    }
    printer.success("wrote", &done.path.display().to_string());
    let zones: Vec<&str> = r.subnets.iter().map(|(z, _)| z.as_str()).collect();
    printer.info(&format!(
        "  network {} in {}; brokers {}",
        r.vpc_cidr,
        zones.join(", "),
        r.instance_type
    ));
    if let Some((id, name)) = &r.image_now {
        printer.info(&format!("  image today: {id} ({name})"));
    }
    if !done.unset_secrets.is_empty() {
        printer.info(&format!(
            "  set before `up` (never in the file): {}",
            done.unset_secrets.join(", ")
        ));
    }
    printer.info(&format!(
        "  next: gwctl plan {0}, then gwctl up {0}",
        r.region
    ));
    Ok(Status::Success)
}
