use crate::cli::{Cli, UnlockArgs};
use crate::cloud::{Aws, Owner};
use crate::error::{Error, Result, Status};
use crate::printer::Printer;
use crate::spec::Selection;

pub fn run(cli: &Cli, args: &UnlockArgs, printer: &Printer) -> Result<Status> {
    let stack =
        crate::spec::load(&cli.regions, &Selection::Regions(Vec::new())).map_err(Error::Invalid)?;
    let b = &stack.backend.spec;
    let info = super::runtime()?.block_on(async {
        let aws = Aws::connect(Owner {
            stack: b.stack.clone(),
            region: b.region.clone(),
        })
        .await;
        crate::lock::break_lock(&aws, &b.dns.zone, &b.dns.record, &args.region, &args.id).await
    });
    let info = info.map_err(|e| Error::Failed(e.to_string()))?;
    printer.success(
        "ok",
        &format!("broke the lock of {} held by {info}", args.region),
    );
    Ok(Status::Success)
}
