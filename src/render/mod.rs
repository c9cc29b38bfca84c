//! Rendering: region specs → the files a broker boots from.
//!
//! Text configuration goes through the tera templates in `templates/` (compiled into the
//! binary); `definitions.json` is built as data and checked before anyone can load it, because
//! RabbitMQ drops a broken definitions file silently. Rendered files carry secret
//! placeholders, never secrets ([`placeholder`]).

pub mod definitions;
pub mod placeholder;
pub mod terraform;

use std::net::Ipv4Addr;
use std::path::Path;

use serde::Serialize;
use tera::Tera;

use crate::model::federation;
use crate::spec::BackendSpec;
use crate::spec::model::{DataVolume, GatewaySpec, HealthProtocol, Ports, Tuning};
use placeholder::{Encoding, SecretName};

/// Why rendering failed. Rendering valid specs fails only on a gwctl bug, so these carry
/// enough context to report one.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("template {0}: {1}")]
    Template(String, String),
    #[error("rendered {file} is invalid: {problems}")]
    Invalid { file: String, problems: String },
}

/// One rendered file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RenderedFile {
    pub name: String,
    pub contents: String,
    /// Unix mode the file is written with.
    pub mode: u32,
}

/// The rendered files of one region, in a stable order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Rendered {
    pub files: Vec<RenderedFile>,
}

impl Rendered {
    pub fn get(&self, name: &str) -> Option<&RenderedFile> {
        self.files.iter().find(|f| f.name == name)
    }

    fn push(&mut self, name: impl Into<String>, contents: String, mode: u32) {
        self.files.push(RenderedFile {
            name: name.into(),
            contents,
            mode,
        });
    }

    /// Writes every file under `dir`, creating it; each file is written whole (temp + rename).
    pub fn write_to(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        for f in &self.files {
            let path = dir.join(&f.name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            crate::files::write_file(&path, f.contents.as_bytes(), f.mode)?;
        }
        Ok(())
    }
}

/// Where a broker listens, how it finds its peers and where its federation links connect.
/// Production values come from the region files; the sandbox supplies its own (loopback
/// addresses, free ports, no EC2 discovery). Rendering itself never knows which it got.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Addressing {
    /// Listen on this address only; `None` listens on every interface.
    pub bind: Option<Ipv4Addr>,
    pub ports: Ports,
    /// AMQP endpoints of the other side (for a gateway: the backend brokers).
    pub peer_amqp: Vec<(String, u16)>,
    pub discovery: Discovery,
    /// With [`Discovery::Classic`]: the Erlang node names to cluster with.
    pub cluster_nodes: Vec<String>,
    /// Where the filled-in definitions file lives on the broker.
    pub definitions_path: String,
    pub host: Host,
    /// Where the node's TLS files live: `server.pem`/`server.key` (its certificate),
    /// `clients-ca.pem` (CAs whose client certificates it accepts), `backend-ca.pem` (a
    /// gateway's links verify the backend with it).
    pub tls_dir: String,
    /// Loopback port of the node's device authorizer (gateways).
    pub authorizer_port: u16,
}

/// Replicas of each quorum queue (RabbitMQ's default initial group size): a majority survives
/// one broker lost or replaced.
pub const QUORUM_GROUP_SIZE: u8 = 3;

pub const TLS_DIR: &str = "/etc/rabbitmq/tls";
/// The device authorizer's port on every gateway broker (loopback only).
pub const AUTHORIZER_PORT: u16 = 8089;
/// How long a broker trusts a cached answer of the device authorizer: long enough to ride
/// out its restart, short enough that a revocation takes effect soon.
pub const AUTHORIZER_CACHE_TTL_MS: u32 = 60_000;

/// The public certificates of the stack, read from backend.yaml's sources: what gateways'
/// user-data carries (public, unlike keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cas {
    pub backend: String,
    pub stack: String,
    pub device: String,
}

impl Cas {
    pub fn read(stack: &crate::spec::Stack) -> Result<Cas, crate::spec::secret::SecretError> {
        let tls = &stack.backend.spec.tls;
        Ok(Cas {
            backend: tls.backend_ca.read_public(&stack.dir)?,
            stack: tls.stack_ca.cert.read_public(&stack.dir)?,
            device: tls.device_ca.cert.read_public(&stack.dir)?,
        })
    }

    /// What a gateway accepts client certificates from: devices, and the backend's links
    /// (certificates of the stack CA).
    pub fn gateway_clients(&self) -> String {
        format!("{}\n{}", self.device.trim(), self.stack.trim()) + "\n"
    }
}

/// A gateway broker's server certificate covers these names: the name devices connect to,
/// the region's own name (what the backend's links and gwctl verify), and the node's.
pub fn broker_names(gw: &GatewaySpec, backend: &BackendSpec, node: u8) -> Vec<String> {
    let names = crate::model::dns::names(&backend.dns.record, &gw.region);
    vec![
        names.regional.clone(),
        names.record,
        format!("broker-{node}.{}", names.regional),
    ]
}

/// What the broker shares its machine with; decides how resource alarms are set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Host {
    /// A broker instance of its own: alarms relative to its RAM, as RabbitMQ recommends for
    /// production (free disk at least 1.5× RAM, so a memory flush always fits).
    Dedicated,
    /// Several local nodes on one workstation or CI machine: limits relative to that
    /// machine's RAM would be multiplied by the node count (memory) or exceed the free disk
    /// of a shared filesystem (a disk alarm blocks every publisher, silently), so they are
    /// small absolute values instead.
    Shared,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Discovery {
    /// Nodes of a region find each other through EC2 tags (rabbitmq_peer_discovery_aws).
    Aws,
    /// The nodes listed in [`Addressing::cluster_nodes`] (the sandbox's local nodes).
    Classic,
    /// A single node that forms no cluster.
    None,
}

pub const DEFINITIONS_PATH: &str = "/etc/rabbitmq/definitions.json";

impl Addressing {
    /// A gateway broker on EC2.
    pub fn gateway(gw: &GatewaySpec, backend: &BackendSpec) -> Addressing {
        Addressing {
            bind: None,
            ports: gw.brokers.ports.clone(),
            peer_amqp: backend
                .brokers
                .endpoints
                .iter()
                .map(|e| (e.host.clone(), e.amqp_port))
                .collect(),
            discovery: Discovery::Aws,
            cluster_nodes: Vec::new(),
            definitions_path: DEFINITIONS_PATH.to_string(),
            host: Host::Dedicated,
            tls_dir: TLS_DIR.to_string(),
            authorizer_port: AUTHORIZER_PORT,
        }
    }

    /// A backend broker, as declared in backend.yaml (its first endpoint's ports).
    pub fn backend(backend: &BackendSpec) -> Addressing {
        let mut ports = Ports::default();
        if let Some(e) = backend.brokers.endpoints.first() {
            ports.amqp = e.amqp_port;
            ports.management = e.management_port;
        }
        Addressing {
            bind: None,
            ports,
            peer_amqp: Vec::new(),
            discovery: Discovery::None,
            cluster_nodes: Vec::new(),
            definitions_path: DEFINITIONS_PATH.to_string(),
            host: Host::Dedicated,
            tls_dir: TLS_DIR.to_string(),
            authorizer_port: AUTHORIZER_PORT,
        }
    }

    fn listener(&self, port: u16) -> String {
        match self.bind {
            Some(ip) => format!("{ip}:{port}"),
            None => port.to_string(),
        }
    }
}

/// Tuning values behind a profile. Gateways hold many mostly idle device connections: small
/// socket buffers (memory per connection), deep accept queues (reconnection storms), coarse
/// statistics. The backend holds few busy links: large buffers, finer statistics.
#[derive(Debug, Clone, Serialize)]
struct TuningValues {
    // Floats are strings: RabbitMQ's config parser rejects `2` where it wants a float.
    backlog: u32,
    buffer: u32,
    acceptors: u32,
    heartbeat_s: u32,
    channel_max: u32,
    stats_interval_ms: u32,
    rates_mode: &'static str,
    memory_watermark: &'static str,
    disk_free_relative: &'static str,
}

impl From<Tuning> for TuningValues {
    fn from(t: Tuning) -> Self {
        match t {
            Tuning::Connections => TuningValues {
                backlog: 4096,
                buffer: 16384,
                acceptors: 20,
                heartbeat_s: 60,
                channel_max: 16,
                stats_interval_ms: 30000,
                rates_mode: "none",
                memory_watermark: "0.6",
                disk_free_relative: "1.5",
            },
            Tuning::Throughput => TuningValues {
                backlog: 1024,
                buffer: 196608,
                acceptors: 10,
                heartbeat_s: 30,
                channel_max: 2047,
                stats_interval_ms: 10000,
                rates_mode: "basic",
                memory_watermark: "0.6",
                disk_free_relative: "2.0",
            },
        }
    }
}

fn templates() -> Result<Tera, RenderError> {
    let mut tera = Tera::default();
    let sources = [
        (
            "common/tuning.conf",
            include_str!("../../templates/common/tuning.conf"),
        ),
        (
            "common/tls.conf",
            include_str!("../../templates/common/tls.conf"),
        ),
        (
            "gateway/rabbitmq.conf",
            include_str!("../../templates/gateway/rabbitmq.conf.tera"),
        ),
        (
            "gateway/advanced.config",
            include_str!("../../templates/gateway/advanced.config.tera"),
        ),
        (
            "gateway/enabled_plugins",
            include_str!("../../templates/gateway/enabled_plugins.tera"),
        ),
        (
            "gateway/user-data.yaml",
            include_str!("../../templates/gateway/user-data.yaml.tera"),
        ),
        (
            "backend/rabbitmq.conf",
            include_str!("../../templates/backend/rabbitmq.conf.tera"),
        ),
        (
            "backend/enabled_plugins",
            include_str!("../../templates/backend/enabled_plugins.tera"),
        ),
        (
            "backend/gwctl-router.service",
            include_str!("../../templates/backend/gwctl-router.service.tera"),
        ),
        (
            "support/user-data.yaml",
            include_str!("../../templates/support/user-data.yaml.tera"),
        ),
        (
            "region.yaml",
            include_str!("../../templates/region.yaml.tera"),
        ),
    ];
    tera.add_raw_templates(sources)
        .map_err(|e| RenderError::Template("(compile)".into(), error_chain(&e)))?;
    tera.register_filter("indent_block", indent_block);
    Ok(tera)
}

/// `{{ text | indent_block(n=6) }}`: indents every line, for YAML block scalars.
fn indent_block(
    value: &tera::Value,
    args: &std::collections::HashMap<String, tera::Value>,
) -> tera::Result<tera::Value> {
    let text = value.as_str().ok_or("indent_block expects a string")?;
    let n = args.get("n").and_then(tera::Value::as_u64).unwrap_or(2) as usize;
    let pad = " ".repeat(n);
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{pad}{l}")
            }
        })
        .collect();
    Ok(tera::Value::String(out.join("\n")))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(&format!(": {c}"));
        cur = c.source();
    }
    s
}

fn render(tera: &Tera, name: &str, ctx: &tera::Context) -> Result<String, RenderError> {
    tera.render(name, ctx)
        .map_err(|e| RenderError::Template(name.to_string(), error_chain(&e)))
}

/// The region file of a new gateway region (`gwctl init`).
pub fn region_file(new: &crate::model::addressing::NewRegion) -> Result<String, RenderError> {
    let mut ctx = tera::Context::new();
    ctx.insert("r", new);
    let mut text = render(&templates()?, "region.yaml", &ctx)?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

/// Where a region's secrets live in SSM Parameter Store.
pub fn ssm_prefix(stack: &str, region: &str) -> String {
    format!("/gwctl/{stack}/{region}")
}

/// The files of one gateway region: broker configuration, definitions, and one cloud-init
/// user-data document per broker.
pub fn gateway(
    gw: &GatewaySpec,
    backend: &BackendSpec,
    addr: &Addressing,
    cas: &Cas,
) -> Result<Rendered, RenderError> {
    let tera = templates()?;
    let cluster_name = gw.cluster_name();
    let mut ctx = base_context(&cluster_name, &gw.region, gw.brokers.tuning, addr);
    ctx.insert("series", gw.brokers.series().as_str());
    // Devices authenticate by certificate only: see templates/gateway/device-authorizer.py
    // for why every client must present one.
    ctx.insert(
        "tls",
        &serde_json::json!({ "dir": addr.tls_dir, "require_client_cert": true }),
    );
    let plaintext = gw.brokers.insecure_plaintext.then(|| {
        serde_json::json!({
            "mqtt": addr.listener(crate::spec::model::PLAINTEXT_MQTT_PORT),
            "web_mqtt": crate::spec::model::PLAINTEXT_WEB_MQTT_PORT,
        })
    });
    ctx.insert("plaintext", &plaintext);
    let devices = &backend.devices;
    ctx.insert(
        "authorizer",
        &serde_json::json!({
            "port": addr.authorizer_port,
            "cache_ttl_ms": AUTHORIZER_CACHE_TTL_MS,
            "telemetry": devices.telemetry,
            "commands": devices.commands,
        }),
    );
    ctx.insert(
        "partition_handling",
        if gw.brokers.count >= 3 {
            "pause_minority"
        } else {
            "autoheal"
        },
    );
    ctx.insert("count", &gw.brokers.count);
    ctx.insert("quorum_size", &gw.brokers.count.min(QUORUM_GROUP_SIZE));
    let conf = render(&tera, "gateway/rabbitmq.conf", &ctx)?;
    let advanced = render(&tera, "gateway/advanced.config", &ctx)?;
    // The router learns where devices are from each gateway's connection events.
    ctx.insert(
        "event_exchange",
        &(gw.routing.mode == crate::spec::model::RoutingMode::Router),
    );
    let plugins = render(&tera, "gateway/enabled_plugins", &ctx)?;
    let defs = definitions::gateway(gw, backend, addr);
    let defs_text = definitions::to_checked_text("definitions.json", &defs)?;

    let mut out = Rendered::default();
    out.push("rabbitmq.conf", conf.clone(), 0o644);
    out.push("advanced.config", advanced.clone(), 0o644);
    out.push("enabled_plugins", plugins.clone(), 0o644);
    out.push("definitions.json", defs_text.clone(), 0o644);

    ctx.insert("rabbitmq_conf", &conf);
    ctx.insert("advanced_config", &advanced);
    ctx.insert("enabled_plugins", &plugins);
    ctx.insert("definitions", &defs_text);
    ctx.insert(
        "materialize",
        include_str!("../../templates/common/materialize.py"),
    );
    ctx.insert("authorizer_script", DEVICE_AUTHORIZER);
    ctx.insert("clients_ca", &cas.gateway_clients());
    ctx.insert("backend_ca", cas.backend.trim());
    ctx.insert("ssm_prefix", &ssm_prefix(&backend.stack, &gw.region));
    ctx.insert("rabbitmq_package", &gw.brokers.rabbitmq_package);
    // Route53's HTTP(S) checkers cannot log in to a broker: a responder on the health port
    // answers for the node (templates/gateway/health-responder.py).
    let hc = &gw.health_check;
    let health = (hc.protocol != HealthProtocol::Tcp).then(|| {
        serde_json::json!({
            "port": hc.port.unwrap_or(gw.brokers.ports.health),
            "path": hc.path.clone().unwrap_or_else(|| "/health".into()),
            "tls": hc.protocol == HealthProtocol::Https,
        })
    });
    ctx.insert("health", &health);
    ctx.insert(
        "health_responder",
        include_str!("../../templates/gateway/health-responder.py"),
    );
    let data_device = match &gw.brokers.data_volume {
        DataVolume::Ebs(_) => crate::model::resources::DATA_DEVICE.to_string(),
        DataVolume::InstanceStore(s) => s.device.clone(),
    };
    ctx.insert("data_volume", &data_device);
    for node in 1..=gw.brokers.count {
        ctx.insert("node", &node);
        let name = format!("broker-{node}.user-data.yaml");
        let user_data = render(&tera, "gateway/user-data.yaml", &ctx)?;
        check_user_data(&name, &user_data)?;
        out.push(name, user_data, 0o644);
    }
    Ok(out)
}

/// The device authorizer every gateway broker runs (templates/gateway/device-authorizer.py).
pub const DEVICE_AUTHORIZER: &str = include_str!("../../templates/gateway/device-authorizer.py");

/// The device authorizer's command line for a node (the sandbox runs the same).
pub fn authorizer_args(
    backend: &BackendSpec,
    series: crate::spec::model::RabbitSeries,
    port: u16,
    revoked_file: &str,
) -> Vec<String> {
    let mut args = vec![
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--vhost".into(),
        definitions::VHOST.into(),
        "--exchange".into(),
        "amq.topic".into(),
        "--telemetry".into(),
        backend.devices.telemetry.clone(),
        "--commands".into(),
        backend.devices.commands.clone(),
        "--revoked".into(),
        revoked_file.into(),
    ];
    if series == crate::spec::model::RabbitSeries::V3_10 {
        args.push("--legacy-cert-login".into());
    }
    args
}

/// User-data of support instance `node` of `group`.
pub fn support_user_data(gw: &GatewaySpec, group: &str, node: u8) -> Result<String, RenderError> {
    let tera = templates()?;
    let mut ctx = tera::Context::new();
    ctx.insert("name", group);
    ctx.insert("node", &node);
    ctx.insert("cluster_name", &gw.cluster_name());
    ctx.insert("region", &gw.region);
    let text = render(&tera, "support/user-data.yaml", &ctx)?;
    check_user_data(&format!("{group}-{node}.user-data.yaml"), &text)?;
    Ok(text)
}

/// The secrets one node needs, read from the region files' sources: the backend's
/// (`gateway` = `None`) or a gateway's.
pub fn node_secrets(
    stack: &crate::spec::Stack,
    gateway: Option<&GatewaySpec>,
) -> Result<placeholder::SecretValues, crate::spec::secret::SecretError> {
    let base = &stack.dir;
    let b = &stack.backend.spec.credentials;
    let mut s = placeholder::SecretValues::new();
    s.insert(
        SecretName::FederationPassword,
        b.federation.password.resolve(base)?,
    );
    match gateway {
        None => {
            s.insert(SecretName::AdminPassword, b.admin.password.resolve(base)?);
            s.insert(SecretName::ErlangCookie, b.erlang_cookie.resolve(base)?);
            if let Some(router) = &b.router {
                s.insert(SecretName::RouterPassword, router.password.resolve(base)?);
            }
        }
        Some(gw) => {
            let c = &gw.credentials;
            s.insert(SecretName::AdminPassword, c.admin.password.resolve(base)?);
            s.insert(SecretName::ErlangCookie, c.erlang_cookie.resolve(base)?);
        }
    }
    Ok(s)
}

/// The backend's files: a throughput-tuned configuration and its base definitions.
pub fn backend(
    backend: &BackendSpec,
    gateways: &[&GatewaySpec],
    addr: &Addressing,
) -> Result<Rendered, RenderError> {
    let tera = templates()?;
    let ctx = base_context(
        &backend.cluster_name,
        &backend.region,
        backend.brokers.tuning,
        addr,
    );
    let mut out = Rendered::default();
    out.push(
        "rabbitmq.conf",
        render(&tera, "backend/rabbitmq.conf", &ctx)?,
        0o644,
    );
    out.push(
        "enabled_plugins",
        render(&tera, "backend/enabled_plugins", &ctx)?,
        0o644,
    );
    let defs = definitions::backend(backend, gateways);
    out.push(
        "definitions.json",
        definitions::to_checked_text("definitions.json", &defs)?,
        0o644,
    );
    if backend.routing.mode == crate::spec::model::RoutingMode::Router {
        let mut ctx = tera::Context::new();
        ctx.insert("stack", &backend.stack);
        ctx.insert("exchange", &backend.routing.exchange);
        ctx.insert(
            "listen",
            &format!("127.0.0.1:{}", backend.routing.metrics_port),
        );
        out.push(
            "gwctl-router.service",
            render(&tera, "backend/gwctl-router.service", &ctx)?,
            0o644,
        );
        out.push(
            "gwctl-router.env",
            router_environment(backend, gateways),
            0o644,
        );
    }
    Ok(out)
}

/// The names (never the values) of the environment variables `gwctl router run` reads: its
/// password, the CAs, and the gateways' admin passwords (it asks their management API who is
/// connected when it starts).
fn router_environment(backend: &BackendSpec, gateways: &[&GatewaySpec]) -> String {
    use crate::spec::model::SecretRef;
    let tls = &backend.tls;
    let mut sources: Vec<&SecretRef> = vec![&tls.backend_ca, &tls.stack_ca.cert];
    sources.extend(backend.credentials.router.as_ref().map(|r| &r.password));
    sources.extend(gateways.iter().map(|g| &g.credentials.admin.password));
    let mut names: Vec<String> = sources
        .into_iter()
        .map(|s| match s {
            SecretRef::Env(var) => format!("{var}="),
            SecretRef::File(path) => format!("# read from the file {path}"),
        })
        .collect();
    names.dedup();
    format!(
        "# The environment of gwctl-router.service: fill in each value and save it as\n\
         # /etc/gwctl/router.env (mode 0600, owner root).\n{}\n",
        names.join("\n")
    )
}

fn base_context(
    cluster_name: &str,
    region: &str,
    tuning: Tuning,
    addr: &Addressing,
) -> tera::Context {
    let mut ctx = tera::Context::new();
    ctx.insert("cluster_name", cluster_name);
    ctx.insert("region", region);
    ctx.insert("tuning", &tuning);
    // The backend runs 4.0; a gateway says which series its brokers run.
    ctx.insert("series", crate::spec::model::RabbitSeries::V4_0.as_str());
    ctx.insert("t", &TuningValues::from(tuning));
    ctx.insert("bind", &addr.bind.map(|b| b.to_string()));
    ctx.insert("ports", &addr.ports);
    ctx.insert(
        "listeners",
        &serde_json::json!({
            "amqp": addr.listener(addr.ports.amqp),
            "mqtt": addr.listener(addr.ports.mqtt),
        }),
    );
    ctx.insert("discovery", &addr.discovery);
    ctx.insert("cluster_nodes", &addr.cluster_nodes);
    ctx.insert("definitions_path", &addr.definitions_path);
    ctx.insert("host", &addr.host);
    ctx.insert(
        "tls",
        &serde_json::json!({ "dir": addr.tls_dir, "require_client_cert": false }),
    );
    ctx
}

/// User-data must be a cloud-config YAML document, and must not carry secrets in clear (it
/// only has placeholders, which the boot script fills).
fn check_user_data(name: &str, text: &str) -> Result<(), RenderError> {
    let invalid = |problems: String| RenderError::Invalid {
        file: name.to_string(),
        problems,
    };
    if !text.starts_with("#cloud-config\n") {
        return Err(invalid("does not start with #cloud-config".into()));
    }
    let size = crate::model::user_data::encode(text).len();
    if size > crate::model::user_data::MAX_BYTES {
        return Err(invalid(format!(
            "{size} bytes compressed, over EC2's limit of {} bytes",
            crate::model::user_data::MAX_BYTES
        )));
    }
    crate::spec::yaml::parse(text).map_err(|errs| {
        invalid(
            errs.iter()
                .map(|e| format!("{}:{}: {}", e.pos.line, e.pos.col, e.message))
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    Ok(())
}

/// The federation upstream URIs of a gateway: its backend endpoints over AMQPS, verified
/// with the backend CA; the password as a placeholder.
pub fn backend_uris(backend: &BackendSpec, addr: &Addressing, heartbeat_s: u32) -> Vec<String> {
    let pw = placeholder::placeholder(SecretName::FederationPassword, Encoding::Uri);
    let tls = federation::LinkTls {
        ca_file: format!("{}/backend-ca.pem", addr.tls_dir),
        client_cert: None,
        server_name: None,
    };
    addr.peer_amqp
        .iter()
        .map(|(host, port)| {
            federation::amqps_uri(
                &backend.credentials.federation.user,
                &pw,
                host,
                *port,
                heartbeat_s,
                &tls,
            )
        })
        .collect()
}
