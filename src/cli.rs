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
    /// JSON file overriding where brokers are reached, per region (the sandbox writes one).
    #[arg(
        long,
        global = true,
        env = "GWCTL_BROKER_ENDPOINTS",
        value_name = "FILE"
    )]
    pub broker_endpoints: Option<PathBuf>,
    /// Print only data and errors.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write the region file of a new gateway region: a VPC network free of every other
    /// region's and the backend's, one subnet in each of up to three zones that offer the
    /// broker instance type (asked from AWS, or --zones), the image gwctl's RabbitMQ needs.
    /// Never overwrites a file.
    ///
    /// Example: gwctl init eu-central-1 && gwctl plan eu-central-1
    Init(InitArgs),
    /// Check region files: schema, networks, ports, names, secret sources.
    ///
    /// Example: gwctl validate --all
    Validate(ValidateArgs),
    /// Print the JSON Schema of region files (for editor completion).
    ///
    /// Example: gwctl schema gateway > gateway.schema.json
    Schema(SchemaArgs),
    /// Render a region's broker configuration, definitions and cloud-init user-data.
    ///
    /// Example: gwctl render us-east-1 --out rendered/
    Render(RenderArgs),
    /// Show the state of gateway regions: resources, instances, federation links.
    ///
    /// Example: gwctl status --all --json
    Status(StatusArgs),
    /// Show what `up` would change in AWS, without changing anything.
    ///
    /// Example: gwctl plan us-east-1 --out us-east-1.plan.json --detailed-exitcode
    Plan(PlanArgs),
    /// Create or update the gateway regions' AWS resources to match the region files.
    ///
    /// Example: gwctl up us-east-1
    Up(UpArgs),
    /// Delete every AWS resource gwctl owns in a gateway region.
    ///
    /// Example: gwctl down ap-northeast-1
    Down(DownArgs),
    /// Roll out what `up` holds back, one step at a time behind health gates: new VPN tunnel
    /// options (one tunnel at a time), broker replacements. Regions in order, the first as
    /// canary; run it again to resume after an interruption.
    ///
    /// Example: gwctl upgrade --all
    Upgrade(UpgradeArgs),
    /// Break a stale lock (left by an interrupted run) on a gateway region.
    ///
    /// Example: gwctl unlock us-east-1
    Unlock(UnlockArgs),
    /// Rehearse losing a gateway region: which region Route53 answers each client location,
    /// now and with REGION down (dry by default; `--live` really fails its health checks).
    ///
    /// Example: gwctl drill us-east-1
    Drill(DrillArgs),
    /// Storm a gateway with devices — each with its own certificate, over MQTT and TLS, with
    /// the devices' backoff and jitter — and report connect latency, failures by reason, the
    /// broker's memory and descriptors, this client's CPU share, and capacity advice.
    ///
    /// Example: gwctl --broker-endpoints .sandbox/run/endpoints.json loadtest us-east-1 --devices 2000
    Loadtest(LoadtestArgs),
    /// Run the stack on this machine: local RabbitMQ nodes stand in for every region's brokers.
    ///
    /// Example: gwctl sandbox start && gwctl sandbox roundtrip
    #[command(subcommand)]
    Sandbox(SandboxCommand),
    /// Certificate authorities: create one, issue the backend's link certificate.
    ///
    /// Example: gwctl ca create stack-ca --out secrets/
    #[command(subcommand)]
    Ca(CaCommand),
    /// Devices: issue a device certificate.
    ///
    /// Example: gwctl device issue valve-3 --out devices/
    #[command(subcommand)]
    Device(DeviceCommand),
    /// The message router (`routing.mode: router`): each message backend applications send a
    /// device goes only to the region where the device is, to every region when in doubt.
    ///
    /// Example: gwctl router lookup valve-3
    #[command(subcommand)]
    Router(RouterCommand),
    /// Leave gwctl without rebuilding anything: write what it manages for a region in another
    /// tool's terms.
    ///
    /// Example: gwctl export terraform us-east-1 --out terraform/us-east-1
    #[command(subcommand)]
    Export(ExportCommand),
    /// Print a shell completion script for bash, zsh or fish.
    ///
    /// Example: source <(gwctl completions bash)
    Completions(CompletionsArgs),
    /// Print gwctl's man page (roff), or write one page per command into a directory.
    ///
    /// Example: gwctl man --out /usr/local/share/man/man1
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The AWS region, e.g. `eu-central-1`.
    #[arg(value_name = "REGION")]
    pub region: String,
    /// The brokers' instance type (only zones offering it are used).
    #[arg(long, default_value = "c6i.large", value_name = "TYPE")]
    pub instance_type: String,
    /// Use these zones instead of asking AWS (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "ZONE,...")]
    pub zones: Option<Vec<String>>,
    /// Ask AWS nothing (needs --zones; the image is not looked up).
    #[arg(long, requires = "zones")]
    pub offline: bool,
    /// Print what was written as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// A Terraform configuration (hashicorp/aws) of the region's AWS resources, with an
    /// `import` block for each existing id: `terraform plan` then imports everything and
    /// changes nothing. Secrets become sensitive variables; the README says what is not
    /// exported and why. The region must be in sync with its file (run `up` first).
    ///
    /// Example: gwctl export terraform us-east-1 --out terraform/us-east-1
    Terraform(ExportTerraformArgs),
}

#[derive(Debug, Args)]
pub struct ExportTerraformArgs {
    /// The gateway region.
    #[arg(value_name = "REGION")]
    pub region: String,
    /// Directory to write into (created; must be empty if it exists).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write gwctl.1 and gwctl-COMMAND.1 for every command into DIR instead of printing
    /// gwctl.1.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum RouterCommand {
    /// Route until SIGINT or SIGTERM (the batch in hand is finished first). Exits 1 when the
    /// backend connection fails: run it under a supervisor (`render backend` writes a systemd
    /// unit); nothing it had not acknowledged is lost.
    ///
    /// Example: gwctl router run --id router-a --listen 127.0.0.1:9469
    Run(RouterRunArgs),
    /// Where a running router would send DEVICE's next message, and why.
    ///
    /// Example: gwctl router lookup valve-3 --json
    Lookup(RouterLookupArgs),
}

#[derive(Debug, Args)]
pub struct RouterRunArgs {
    /// This router's name: its queues and its backend connection carry it (default: host
    /// name and process id).
    #[arg(long, value_name = "NAME")]
    pub id: Option<String>,
    /// Address of its metrics (`/metrics`) and lookups (default: 127.0.0.1 and
    /// backend.yaml's `routing.metrics_port`).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<std::net::SocketAddr>,
    /// Messages republished before their confirms are awaited.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub window: u16,
    /// Do not ask the gateways' management API who is connected at start (learn from events
    /// only; until then, messages are broadcast).
    #[arg(long)]
    pub no_resync: bool,
}

#[derive(Debug, Args)]
pub struct RouterLookupArgs {
    /// The device id.
    #[arg(value_name = "DEVICE")]
    pub device: String,
    /// The router's address (default: 127.0.0.1 and backend.yaml's `routing.metrics_port`).
    #[arg(long, value_name = "ADDR:PORT")]
    pub router: Option<std::net::SocketAddr>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a CA: writes DIR/NAME.pem (certificate) and DIR/NAME.key (private key, 0600).
    ///
    /// Example: gwctl ca create device-ca --out secrets/
    Create(CaCreateArgs),
    /// Issue the certificate the backend's federation links present to gateways (stack CA):
    /// writes DIR/gwctl-link.pem, DIR/gwctl-link.key and DIR/gwctl-stack-ca.pem, to install
    /// on every backend node at the paths of backend.yaml's `tls`.
    ///
    /// Example: gwctl ca issue-link --out secrets/
    IssueLink(OutArgs),
}

#[derive(Debug, Args)]
pub struct CaCreateArgs {
    /// File name stem, e.g. `stack-ca`.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// The CA's common name (default: `gwctl NAME`).
    #[arg(long, value_name = "CN")]
    pub common_name: Option<String>,
    #[command(flatten)]
    pub out: OutArgs,
}

#[derive(Debug, Args)]
pub struct OutArgs {
    /// Directory to write into (created; existing files are never overwritten).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Issue a device certificate with the device CA (backend.yaml's `tls.device_ca`): writes
    /// DIR/DEVICE_ID.pem, DIR/DEVICE_ID.key (0600) and DIR/ca.pem (what the device verifies
    /// brokers with). For small fleets and tests; large fleets use their own device CA.
    ///
    /// Example: gwctl device issue valve-3 --out devices/
    Issue(DeviceIssueArgs),
}

#[derive(Debug, Args)]
pub struct DeviceIssueArgs {
    /// The device id: its certificate's common name, its MQTT client id and the `{device}` of
    /// its topics (letters, digits, `_` and `-`).
    #[arg(value_name = "DEVICE_ID")]
    pub id: String,
    #[command(flatten)]
    pub out: OutArgs,
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
    /// Print the result as JSON: `{"valid", "files", "problems": [{file, line, column, field,
    /// message}]}` (problems also exit 2).
    #[arg(long, conflicts_with = "show_effective")]
    pub json: bool,
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
    /// Print the files as JSON: `{"region", "files": [{name, mode, contents}]}`.
    #[arg(long, conflicts_with = "out")]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Render every region and start the backend and one node per gateway as local RabbitMQ
    /// nodes on loopback ports; writes DIR/endpoints.json for `--broker-endpoints`.
    ///
    /// Example: gwctl sandbox start --dir .sandbox/run
    Start(SandboxArgs),
    /// Stop the nodes `sandbox start` left running.
    ///
    /// Example: gwctl sandbox stop
    Stop(SandboxDirArgs),
    /// Follow the cloud (moto at AWS_ENDPOINT_URL): the backend node, and one local node per
    /// gateway broker instance AWS reports, booted for instances whose user-data the region
    /// files render, drained and stopped when the instance stops or goes. Runs until
    /// interrupted; DIR/endpoints.json maps each instance to its node.
    ///
    /// Example: gwctl sandbox follow --interval-ms 500
    Follow(FollowArgs),
    /// Prove a round trip: telemetry from a device in one region to the backend, a command
    /// from the backend to a device in another.
    ///
    /// Example: gwctl sandbox roundtrip --telemetry-from ap-northeast-1 --command-to us-east-1
    Roundtrip(RoundtripArgs),
    /// Rehearse losing a region end to end: devices connected where Route53 answers, the
    /// region's node frozen and its health checks failed, devices failing over, commands sent
    /// all along, the region restored and devices back; reports failover time and delays.
    ///
    /// Example: gwctl sandbox drill us-east-1 --outage 10
    Drill(SandboxDrillArgs),
}

#[derive(Debug, Args)]
pub struct FollowArgs {
    #[command(flatten)]
    pub sandbox: SandboxArgs,
    /// How often to look at the cloud, in milliseconds.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub interval_ms: u64,
}

#[derive(Debug, Args)]
pub struct SandboxDirArgs {
    /// The sandbox's working directory.
    #[arg(long, default_value = ".sandbox/run", value_name = "DIR")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct SandboxDrillArgs {
    #[command(flatten)]
    pub sandbox: SandboxDirArgs,
    /// The gateway region to lose.
    #[arg(value_name = "REGION")]
    pub region: String,
    /// Devices at each client location.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub devices_per_location: usize,
    /// Seconds the region stays down once its devices left.
    #[arg(long, default_value_t = 5, value_name = "S")]
    pub outage: u64,
    /// The backend sends a command every this many milliseconds, to the devices in turn.
    #[arg(long, default_value_t = 100, value_name = "MS")]
    pub command_every_ms: u64,
    /// The devices' MQTT keepalive (they notice a silent broker after about 1.5 times it).
    #[arg(long, default_value_t = 2, value_name = "S")]
    pub keepalive: u64,
    /// How long failing over, returning and delivering may each take.
    #[arg(long, default_value_t = 60, value_name = "S")]
    pub timeout: u64,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RoundtripArgs {
    #[command(flatten)]
    pub sandbox: SandboxDirArgs,
    /// Where the device publishing telemetry is.
    #[arg(long, default_value = "ap-northeast-1", value_name = "REGION")]
    pub telemetry_from: String,
    /// Where the device receiving a command is.
    #[arg(long, default_value = "us-east-1", value_name = "REGION")]
    pub command_to: String,
}

#[derive(Debug, Args)]
pub struct SandboxArgs {
    #[command(flatten)]
    pub sandbox: SandboxDirArgs,
    /// Root file system holding Debian's rabbitmq-server (the RabbitMQ production runs; built
    /// by scripts/setup). Nodes run chrooted in it.
    #[arg(
        long,
        env = "GWCTL_RABBITMQ_ROOT",
        default_value = crate::sandbox::node::DEFAULT_ROOT,
        value_name = "DIR",
    )]
    pub rabbitmq_root: PathBuf,
    /// Use this machine's own RabbitMQ instead: the directory holding rabbitmq-server
    /// (Debian: /usr/lib/rabbitmq/bin).
    #[arg(long, env = "GWCTL_RABBITMQ_BIN", value_name = "DIR")]
    pub rabbitmq_bin: Option<PathBuf>,
}

impl SandboxArgs {
    /// The RabbitMQ installation the sandbox's nodes run.
    pub fn install(&self) -> crate::sandbox::Install {
        match &self.rabbitmq_bin {
            Some(bin) => crate::sandbox::Install::host(bin),
            None => crate::sandbox::Install::rooted(&self.rabbitmq_root),
        }
    }
}

/// Which gateway regions: named ones, or all.
#[derive(Debug, Args)]
pub struct RegionSelection {
    /// Gateway regions to work on.
    #[arg(
        id = "region",
        value_name = "REGION",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub names: Vec<String>,
    /// Every gateway region file.
    #[arg(long)]
    pub all: bool,
}

pub use crate::engine::Scope;

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub select: RegionSelection,
    /// Check AWS resources and Route53, the federation links, or both.
    #[arg(long, value_enum, default_value_t = Scope::All)]
    pub scope: Scope,
    /// Print the status as JSON.
    #[arg(long)]
    pub json: bool,
    /// Keep checking for up to SECONDS until every region is healthy (links take a moment
    /// to start after `up`).
    #[arg(long, default_value_t = 0, value_name = "SECONDS")]
    pub wait: u64,
    /// Where the message router serves its counters (default: 127.0.0.1 and backend.yaml's
    /// `routing.metrics_port`); shown with `routing.mode: router`.
    #[arg(long, value_name = "ADDR:PORT")]
    pub router: Option<std::net::SocketAddr>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub select: RegionSelection,
    /// Plan AWS resources, the backend's federation entries, or both.
    #[arg(long, value_enum, default_value_t = Scope::All)]
    pub scope: Scope,
    /// Print the plan as JSON (Terraform's plan shape) instead of text.
    #[arg(long, conflicts_with = "markdown")]
    pub json: bool,
    /// Print the plan as Markdown, for a pull-request comment.
    #[arg(long)]
    pub markdown: bool,
    /// Also save the plan (JSON) to FILE, for `up --plan FILE`.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Exit 0 when there is nothing to change, 2 when there is, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub select: RegionSelection,
    /// Apply AWS resources, the backend's federation entries, or both.
    #[arg(long, value_enum, default_value_t = Scope::All)]
    pub scope: Scope,
    /// Apply a plan saved by `plan --out`; refused if the files or AWS changed since.
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
    /// Print the plan being applied as JSON (the shape of `plan --json`) instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub apply: ApplyOptions,
}

#[derive(Debug, Args)]
pub struct UpgradeArgs {
    #[command(flatten)]
    pub select: RegionSelection,
    /// What the plan behind the steps covers (`aws` where the backend is not reachable).
    #[arg(long, value_enum, default_value_t = Scope::All)]
    pub scope: Scope,
    /// Show the steps and their gates, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The steps as JSON (with --dry-run).
    #[arg(long, requires = "dry_run")]
    pub json: bool,
    /// Wait this long between regions (watch the canary before the others follow).
    #[arg(long, default_value_t = 0, value_name = "SECONDS")]
    pub pause: u64,
    /// Brokers of a region replaced at once. More than a quorum queue's minority is refused.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub max_unavailable: u16,
    #[command(flatten)]
    pub apply: ApplyOptions,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// The gateway region to delete.
    #[arg(value_name = "REGION")]
    pub region: String,
    /// Remove AWS resources, the backend's federation entries for the region, or both.
    #[arg(long, value_enum, default_value_t = Scope::All)]
    pub scope: Scope,
    /// Print what would be deleted as JSON (the shape of `plan --json`) instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub apply: ApplyOptions,
}

/// How `up` and `down` change things: confirmation, locking, concurrency.
#[derive(Debug, Args)]
pub struct ApplyOptions {
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// Wait this long for another run's lock on a region before giving up.
    #[arg(long, default_value_t = 0, value_name = "SECONDS")]
    pub lock_timeout: u64,
    /// Operations run at once per region.
    #[arg(long, default_value_t = 10, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallelism: u16,
    /// How long new brokers may take to boot and answer their management API.
    #[arg(long, default_value_t = 900, value_name = "SECONDS")]
    pub broker_wait: u64,
}

#[derive(Debug, Args)]
pub struct DrillArgs {
    /// The gateway region to take down (in Route53 only).
    #[arg(value_name = "REGION")]
    pub region: String,
    /// Invert REGION's health checks, wait until Route53 reports them unhealthy, show the
    /// answers, then restore them (also on Ctrl-C; `gwctl up` repairs an interrupted drill).
    #[arg(long)]
    pub live: bool,
    /// Do not ask before a live drill.
    #[arg(long)]
    pub yes: bool,
    /// How long a live drill waits for Route53 to see the region down.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub timeout: u64,
    /// Wait this long for another run's lock on the region before giving up (live drills).
    #[arg(long, default_value_t = 0, value_name = "SECONDS")]
    pub lock_timeout: u64,
    /// Print the drill as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LoadtestArgs {
    /// The gateway region: its endpoint (the endpoint file's, else its regional name), its
    /// instance type and broker count for the advice.
    #[arg(value_name = "REGION")]
    pub region: String,
    /// Connect here instead (an Elastic IP, one broker), HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub endpoint: Option<String>,
    /// How many devices.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub devices: usize,
    /// Devices arriving per second; default: all at once (a region coming back).
    #[arg(long, value_name = "PER_S")]
    pub rate: Option<f64>,
    /// Each device's first attempt at a random moment of this window (its firmware's jitter).
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub jitter_ms: u64,
    /// Backoff after the first failed attempt, doubling per failure (full jitter) up to
    /// --backoff-max-ms.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub backoff_ms: u64,
    #[arg(long, default_value_t = 30_000, value_name = "MS")]
    pub backoff_max_ms: u64,
    /// One attempt (TCP, TLS, CONNECT) gives up after this long.
    #[arg(long, default_value_t = 10, value_name = "S")]
    pub attempt_timeout: u64,
    /// A device not connected this long after its first attempt has timed out.
    #[arg(long, default_value_t = 120, value_name = "S")]
    pub give_up: u64,
    /// Connected devices subscribe to their commands topic.
    #[arg(long)]
    pub subscribe: bool,
    /// Connected devices publish a telemetry message (QoS 1) this often.
    #[arg(long, value_name = "MS")]
    pub publish_every_ms: Option<u64>,
    /// How long the devices stay connected after the last one settled.
    #[arg(long, default_value_t = 5, value_name = "S")]
    pub hold: u64,
    /// Device ids are PREFIX0, PREFIX1, ...
    #[arg(long, default_value = "loadtest-", value_name = "PREFIX")]
    pub id_prefix: String,
    /// Advice for this many devices (default: the region file's `load.devices`).
    #[arg(long, value_name = "N")]
    pub plan_devices: Option<u64>,
    /// ... reconnecting within this many seconds (default: `load.reconnect_within_s`).
    #[arg(long, value_name = "S", requires = "plan_devices")]
    pub plan_within: Option<u32>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// The gateway region whose lock to break.
    #[arg(value_name = "REGION")]
    pub region: String,
    /// The lock's id, as the error naming the holder shows it (guards against breaking a
    /// lock that changed hands meanwhile).
    #[arg(long, value_name = "ID")]
    pub id: String,
}
