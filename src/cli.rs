//! The command line, as types. Commands receive these already parsed.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::printer::ColorChoice;
use crate::spec::schema_check::FileKind;

#[derive(Debug, Parser)]
#[command(
    name = "gwctl",
    version,
    about = "Provision and operate per-region MQTT gateway stacks (RabbitMQ) on AWS",
    long_about = None,
)]
pub struct Cli {
    /// Directory holding backend.yaml and one <region>.yaml per gateway.
    #[arg(
        long,
        global = true,
        env = "GWCTL_REGIONS",
        default_value = "regions",
        value_name = "DIR"
    )]
    pub regions: PathBuf,
    /// When to colour output (NO_COLOR is honoured in `auto`).
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: ColorChoice,
    /// Print only data and errors.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check region files: schema, networks, ports, names, secret sources.
    Validate(ValidateArgs),
    /// Print the JSON Schema of region files (for editor completion).
    Schema(SchemaArgs),
    /// Render a region's broker configuration, definitions and cloud-init user-data.
    Render(RenderArgs),
    /// Run the stack on this machine: local RabbitMQ nodes stand in for every region's brokers.
    #[command(subcommand)]
    Sandbox(SandboxCommand),
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Gateway regions to check (the backend is always checked). Default: all.
    #[arg(id = "region", value_name = "REGION", conflicts_with = "all")]
    pub names: Vec<String>,
    /// Check every region file.
    #[arg(long)]
    pub all: bool,
    /// Print the selected files with every default applied.
    #[arg(long)]
    pub show_effective: bool,
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Which file's schema: a gateway region or backend.yaml.
    #[arg(value_enum, default_value_t = FileKind::Gateway)]
    pub kind: FileKind,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// A gateway region, or `backend`.
    #[arg(value_name = "REGION")]
    pub region: String,
    /// Write the files to DIR/<region>/ instead of printing them.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Validate and render the regions, boot the backend and every gateway as local RabbitMQ
    /// nodes, federate them, and send a message each way; stop everything afterwards.
    Demo(SandboxArgs),
}

#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Working directory for rendered files, node data and logs (default: a temporary one).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Directory holding rabbitmq-server (Debian: /usr/lib/rabbitmq/bin).
    #[arg(
        long,
        env = "GWCTL_RABBITMQ_BIN",
        default_value = "/usr/lib/rabbitmq/bin",
        value_name = "DIR"
    )]
    pub rabbitmq_bin: PathBuf,
}
