//! Shell habits: completion scripts and man pages, generated from the clap definitions so
//! they never drift from the parser.

use std::path::Path;

use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs, ManArgs};
use crate::error::{Error, Result, Status};
use crate::printer::Printer;

pub fn completions(args: &CompletionsArgs, printer: &Printer) -> Result<Status> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "gwctl", &mut script);
    printer.data(&String::from_utf8_lossy(&script));
    Ok(Status::Success)
}

pub fn man(args: &ManArgs, printer: &Printer) -> Result<Status> {
    let cli = Cli::command();
    match &args.out {
        None => {
            printer.data(&String::from_utf8_lossy(&page(&cli)?));
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
            let written = write_pages(&cli, "gwctl", "gwctl", dir)?;
            printer.info(&format!("wrote {written} man pages to {}", dir.display()));
        }
    }
    Ok(Status::Success)
}

/// The roff text of one command's page.
fn page(cmd: &clap::Command) -> Result<Vec<u8>> {
    let mut roff = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut roff)
        .map_err(|e| Error::Failed(format!("rendering the man page: {e}")))?;
    Ok(roff)
}

/// Writes `name`.1 for `cmd` and, recursively, `name-SUB`.1 for its subcommands (as git's
/// pages are named); how many pages were written. `invoked` is how it is typed
/// (`gwctl sandbox start`), for the synopsis.
fn write_pages(cmd: &clap::Command, name: &str, invoked: &str, dir: &Path) -> Result<usize> {
    // A subcommand's page is titled with its full name (`gwctl-sandbox-start`).
    let cmd = cmd
        .clone()
        .name(name.to_string())
        .bin_name(invoked.to_string());
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, page(&cmd)?)
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    let mut written = 1;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let sub_name = sub.get_name();
        written += write_pages(
            sub,
            &format!("{name}-{sub_name}"),
            &format!("{invoked} {sub_name}"),
            dir,
        )?;
    }
    Ok(written)
}
