//! gwctl: declarative region files → validated specs → rendered broker configuration → AWS
//! resources and RabbitMQ federation. The binary is a thin shell around [`main`].

pub mod broker;
pub mod cli;
pub mod cloud;
pub mod commands;
pub mod endpoints;
pub mod engine;
pub mod error;
pub mod files;
pub mod model;
pub mod pki;
pub mod plan;
pub mod printer;
pub mod render;
pub mod sandbox;
pub mod spec;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

use cli::Cli;
use error::Error;
use printer::Printer;

/// Parses `args`, runs the command, and maps the outcome to an exit code, in one place.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version to stdout (exit 0) and usage errors to stderr (exit 2).
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let printer = Printer::new(cli.color, cli.quiet);
    match commands::run(cli, &printer) {
        Ok(status) => status.into(),
        Err(e) => {
            report(&printer, &e);
            ExitCode::from(e.exit_code())
        }
    }
}

fn report(printer: &Printer, e: &Error) {
    match e {
        Error::Invalid(diags) => {
            for d in diags {
                printer.error(&d.to_string());
            }
            printer.error(&format!("{e}; nothing was changed"));
        }
        other => {
            let mut text = other.to_string();
            let mut cause = std::error::Error::source(other);
            while let Some(c) = cause {
                let c_text = c.to_string();
                if !text.contains(&c_text) {
                    text.push_str(&format!(": {c_text}"));
                }
                cause = c.source();
            }
            printer.error(&text);
        }
    }
}
