//! The region-file model: what an operator writes in `regions/*.yaml`.
//!
//! These types are the single source of truth for the file format: the JSON Schema printed by
//! `gwctl schema` and used by `gwctl validate` is derived from them, and serde reads files into
//! them once the schema check passed. Doc comments become schema descriptions (editor hovers).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use super::patterns;

/// The backend side (`regions/backend.yaml`): the existing RabbitMQ cluster that every gateway
/// federates with, its network, and the DNS name clients use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackendSpec {
    /// Name of the whole stack (backend + gateways). Everything gwctl creates carries it as an
    /// ownership tag, so two stacks in one account never touch each other's resources.
    #[schemars(regex(pattern = r"^[a-z][a-z0-9-]{0,31}$"))]
    pub stack: String,
    /// AWS region of the backend network, e.g. `eu-west-1`.
    pub region: String,
    /// RabbitMQ `cluster_name` of the backend; federation loop detection relies on it being unique.
    #[serde(default = "default_backend_cluster_name")]
    pub cluster_name: String,
    /// The backend network's CIDR; gateways route it through their VPN.
    pub network_cidr: Cidr,
    /// The backend side of the site-to-site VPN.
    pub vpn: BackendVpn,
    /// The backend brokers gateways federate with.
    pub brokers: BackendBrokers,
    /// The DNS name MQTT clients connect to.
    pub dns: Dns,
    /// Credentials (secret sources only, never values).
    pub credentials: BackendCredentials,
    /// The certificate authorities of the stack: TLS on every listener and link.
    pub tls: StackTls,
    /// How devices are identified and what each may do.
    #[serde(default)]
    pub devices: Devices,
    /// How messages from backend applications reach devices.
    #[serde(default)]
    pub routing: Routing,
    /// Free tags added to everything gwctl creates for the stack.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// How messages from backend applications reach devices. Applications publish them to
/// `exchange` with the routing key of a device's commands topic (`devices.commands`, `/` as
/// `.`: `commands.valve-3.close`), the same layout that bounds what a device may subscribe to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Routing {
    /// `broadcast`: every gateway federates `exchange`, so each message reaches every region.
    /// `router`: `gwctl router` sends each message to the exchange of the region where its
    /// device is (`gw.<region>`), or to `gw.all` when it does not know; gateways federate only
    /// those two. Gateways' federation is boot-time configuration: `upgrade` rolls a switch out.
    #[serde(default)]
    pub mode: RoutingMode,
    /// The backend exchange applications publish device-bound messages to.
    #[serde(default = "default_routing_exchange")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9._:-]+$"))]
    pub exchange: String,
    /// Seconds without news of a device after which the router no longer trusts where it was
    /// (it broadcasts instead).
    #[serde(default = "default_location_ttl")]
    #[schemars(range(min = 10, max = 604800))]
    pub location_ttl_s: u32,
    /// Learn locations from what devices send too (the router reads every telemetry message
    /// the backend receives), not only from connection events.
    #[serde(default = "default_true")]
    pub learn_from_telemetry: bool,
    /// Port of the router's Prometheus metrics and location lookups (HTTP, on loopback unless
    /// `gwctl router run --listen` says otherwise).
    #[serde(default = "default_router_port")]
    #[schemars(range(min = 1))]
    pub metrics_port: u16,
}

impl Default for Routing {
    fn default() -> Self {
        Routing {
            mode: RoutingMode::default(),
            exchange: default_routing_exchange(),
            location_ttl_s: default_location_ttl(),
            learn_from_telemetry: true,
            metrics_port: default_router_port(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RoutingMode {
    #[default]
    Broadcast,
    Router,
}

fn default_routing_exchange() -> String {
    "amq.topic".to_string()
}
fn default_location_ttl() -> u32 {
    3600
}
fn default_true() -> bool {
    true
}
fn default_router_port() -> u16 {
    9469
}

fn default_backend_cluster_name() -> String {
    "backend".to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackendVpn {
    /// Public IP of the backend's VPN endpoint (the customer gateway seen from AWS).
    pub public_ip: Ipv4Addr,
    /// BGP ASN of the backend's VPN endpoint, 2 or 4 bytes (AWS takes ASNs above 2^31-1 as
    /// `BgpAsnExtended`).
    #[serde(default = "default_bgp_asn")]
    #[schemars(range(min = 1, max = 4294967294u32))]
    pub bgp_asn: u32,
}

fn default_bgp_asn() -> u32 {
    65000
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackendBrokers {
    /// Reachable endpoints of the backend brokers (private addresses, over the VPN).
    #[schemars(length(min = 1))]
    pub endpoints: Vec<BrokerEndpoint>,
    /// Tuning profile of the rendered backend configuration.
    #[serde(default = "Tuning::backend_default")]
    pub tuning: Tuning,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BrokerEndpoint {
    /// Host name or IP address.
    #[schemars(length(min = 1))]
    pub host: String,
    /// AMQPS port.
    #[serde(default = "default_amqp_port")]
    #[schemars(range(min = 1))]
    pub amqp_port: u16,
    /// Management API (HTTPS) port.
    #[serde(default = "default_management_port")]
    #[schemars(range(min = 1))]
    pub management_port: u16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dns {
    /// Hosted zone, e.g. `example.com`.
    #[schemars(regex(pattern = r"^([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}\.?$"))]
    pub zone: String,
    /// Record clients resolve, e.g. `mqtt.example.com`; must lie inside `zone`.
    #[schemars(regex(pattern = r"^([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}\.?$"))]
    pub record: String,
    /// TTL of the latency records, in seconds.
    #[serde(default = "default_dns_ttl")]
    #[schemars(range(min = 0, max = 86400))]
    pub ttl: u32,
}

fn default_dns_ttl() -> u32 {
    60
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackendCredentials {
    /// The management user gwctl uses on the backend (needs `administrator` or `policymaker`).
    pub admin: UserCredential,
    /// The user federation links log in with, on the backend and on every gateway.
    pub federation: UserCredential,
    /// The user `gwctl router` logs in with on the backend (needed with `routing.mode:
    /// router`); it may consume what applications send devices and publish to the gateways'
    /// exchanges, nothing else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<UserCredential>,
    /// Erlang cookie of the backend nodes (used when gwctl renders the backend's configuration).
    pub erlang_cookie: SecretRef,
}

/// The stack's certificate authorities. Certificates are public; keys are secret sources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StackTls {
    /// The CA that signed the backend brokers' certificates (PEM): gateways' federation links
    /// and gwctl verify the backend with it.
    pub backend_ca: SecretRef,
    /// The stack CA: gwctl issues every gateway broker's server certificate with it
    /// (`gwctl ca create` makes one). The backend's links and gwctl verify gateways with it.
    pub stack_ca: CaSource,
    /// The device CA: brokers accept the client certificates it signed, and nothing else.
    /// Its key is needed only by `gwctl device issue`; a large fleet's external CA omits it.
    pub device_ca: DeviceCaSource,
    /// Where the backend's nodes keep a copy of the stack CA certificate; their federation
    /// links to gateways verify with it (gwctl does not manage the backend's files).
    #[serde(default = "default_stack_ca_on_backend")]
    #[schemars(regex(pattern = r"^/[^\s?&#]+$"))]
    pub stack_ca_on_backend: String,
    /// The certificate the backend's federation links present to gateways (every client of a
    /// gateway presents one), a path on the backend's nodes; `gwctl ca issue-link` makes it
    /// with the stack CA.
    #[serde(default = "default_link_cert_on_backend")]
    #[schemars(regex(pattern = r"^/[^\s?&#]+$"))]
    pub link_cert_on_backend: String,
    /// Its key, a path on the backend's nodes.
    #[serde(default = "default_link_key_on_backend")]
    #[schemars(regex(pattern = r"^/[^\s?&#]+$"))]
    pub link_key_on_backend: String,
}

fn default_stack_ca_on_backend() -> String {
    "/etc/rabbitmq/gwctl-stack-ca.pem".to_string()
}
fn default_link_cert_on_backend() -> String {
    "/etc/rabbitmq/gwctl-link.pem".to_string()
}
fn default_link_key_on_backend() -> String {
    "/etc/rabbitmq/gwctl-link.key".to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaSource {
    /// The CA certificate (PEM).
    pub cert: SecretRef,
    /// The CA's private key (PEM).
    pub key: SecretRef,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceCaSource {
    /// The device CA certificate (PEM).
    pub cert: SecretRef,
    /// The device CA's private key (PEM), for `gwctl device issue`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<SecretRef>,
}

/// Devices authenticate with a client certificate whose common name is their id, and may
/// publish only their own telemetry and subscribe only to their own commands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Devices {
    /// Where a device publishes (an MQTT topic filter; `{device}` is its id).
    #[serde(default = "default_telemetry_topic")]
    pub telemetry: String,
    /// What a device may subscribe to (an MQTT topic filter; `{device}` is its id).
    #[serde(default = "default_commands_topic")]
    pub commands: String,
    /// Device ids whose certificates are revoked: the brokers refuse them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoked: Vec<String>,
}

impl Default for Devices {
    fn default() -> Self {
        Devices {
            telemetry: default_telemetry_topic(),
            commands: default_commands_topic(),
            revoked: Vec::new(),
        }
    }
}

impl Devices {
    /// A topic of a device topic filter: `{device}` replaced by its id, a final `#` by `leaf`.
    pub fn topic(filter: &str, device: &str, leaf: &str) -> String {
        let t = filter.replace("{device}", device);
        match t.strip_suffix('#') {
            Some(prefix) => format!("{prefix}{leaf}"),
            None => t,
        }
    }

    /// The routing key RabbitMQ's MQTT plugin gives an MQTT topic on its topic exchange.
    pub fn routing_key(topic: &str) -> String {
        topic.replace('/', ".")
    }
}

fn default_telemetry_topic() -> String {
    "devices/{device}/#".to_string()
}
fn default_commands_topic() -> String {
    "commands/{device}/#".to_string()
}

/// A gateway region (`regions/<region>.yaml`): a VPC, its RabbitMQ brokers, the VPN to the
/// backend, federation settings, health checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewaySpec {
    /// AWS region name; must match the file name (`us-east-1` in `us-east-1.yaml`).
    pub region: String,
    /// RabbitMQ `cluster_name`, unique across all region files. Default: `gw-<region>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"))]
    pub cluster_name: Option<String>,
    /// The region's VPC.
    pub network: Network,
    /// The RabbitMQ broker cluster of this gateway.
    pub brokers: Brokers,
    /// Proxy / support instances beside the brokers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub support: Vec<SupportGroup>,
    /// Site-to-site VPN to the backend.
    #[serde(default)]
    pub vpn: Vpn,
    /// Federation between this gateway and the backend (never gateway to gateway).
    #[serde(default)]
    pub federation: Federation,
    /// Route53 health check of this gateway's public endpoints.
    #[serde(default)]
    pub health_check: HealthCheck,
    /// Credentials (secret sources only, never values).
    pub credentials: GatewayCredentials,
    /// The devices this region serves, for `plan`'s capacity check: it warns when the brokers
    /// do not absorb them all reconnecting at once (figures measured by `gwctl loadtest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<Load>,
    /// Free tags added to every resource of this region.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// The stack's routing (`backend.yaml`), copied here by [`GatewaySpec::apply_defaults`]:
    /// it decides what this gateway federates from the backend.
    #[serde(skip)]
    #[schemars(skip)]
    pub routing: Routing,
}

/// The devices a region serves and how fast they come back after an outage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Load {
    /// Devices connected to this region at its busiest.
    #[schemars(range(min = 1, max = 100_000_000))]
    pub devices: u64,
    /// After an outage they all reconnect within this many seconds (their firmware's
    /// backoff and jitter window).
    #[serde(default = "default_reconnect_within")]
    #[schemars(range(min = 1, max = 86_400))]
    pub reconnect_within_s: u32,
}

fn default_reconnect_within() -> u32 {
    60
}

impl GatewaySpec {
    /// The RabbitMQ cluster name, defaulted.
    pub fn cluster_name(&self) -> String {
        self.cluster_name
            .clone()
            .unwrap_or_else(|| format!("gw-{}", self.region))
    }

    /// Fills every default that depends on another value or file, so `--show-effective` shows
    /// what gwctl will actually use.
    pub fn apply_defaults(&mut self, backend: &BackendSpec) {
        self.cluster_name = Some(self.cluster_name());
        self.routing = backend.routing.clone();
        if self.vpn.static_routes.is_none() {
            self.vpn.static_routes = Some(vec![backend.network_cidr]);
        }
        if self.health_check.port.is_none() {
            self.health_check.port = Some(match self.health_check.protocol {
                HealthProtocol::Tcp => self.brokers.ports.mqtt,
                HealthProtocol::Http | HealthProtocol::Https => self.brokers.ports.health,
            });
        }
        if self.health_check.path.is_none() && self.health_check.protocol != HealthProtocol::Tcp {
            self.health_check.path = Some("/health".to_string());
        }
        for group in &mut self.support {
            if group.ami.is_none() {
                group.ami = Some(self.brokers.ami.clone());
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// CIDR of the region's VPC; must not overlap other gateways nor the backend.
    pub vpc_cidr: Cidr,
    /// One public subnet per availability zone (at least two zones).
    #[schemars(length(min = 2))]
    pub subnets: Vec<Subnet>,
    /// Networks MQTT clients may connect from.
    #[serde(default = "default_client_cidrs")]
    #[schemars(length(min = 1))]
    pub client_cidrs: Vec<Cidr>,
}

fn default_client_cidrs() -> Vec<Cidr> {
    vec![Cidr(Ipv4Net::default())]
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Subnet {
    /// Availability zone, e.g. `us-east-1a`.
    #[schemars(regex(pattern = r"^[a-z]{2}(-[a-z]+)+-[0-9]+[a-z]$"))]
    pub zone: String,
    /// Subnet CIDR inside the VPC.
    pub cidr: Cidr,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Brokers {
    /// Number of broker nodes in this region's cluster: odd, so that a majority survives the
    /// loss of any one (quorum queues and RabbitMQ's Raft-based state stop without a majority).
    /// 3 survives one node down, including the one an upgrade replaces; 5 survives two.
    #[serde(default = "default_broker_count")]
    #[schemars(range(min = 1, max = 9))]
    pub count: u8,
    /// EC2 instance type; compute-optimised (`c` family) by default.
    #[serde(default = "default_broker_instance_type")]
    #[schemars(regex(pattern = r"^[a-z][a-z0-9-]*\.[a-z0-9]+$"))]
    pub instance_type: String,
    /// Machine image: an explicit id, or the newest image of an owner matching a name filter.
    pub ami: Ami,
    /// The version of Debian's `rabbitmq-server` every broker installs, pinned so that a broker
    /// booted later runs what the others run. Default: Debian 13's security-supported 4.0.
    /// When Debian supersedes it, set the new version (brokers pick it up when replaced).
    #[serde(default = "default_rabbitmq_package")]
    #[schemars(regex(pattern = r"^[0-9][A-Za-z0-9.+~:-]*$"))]
    pub rabbitmq_package: String,
    /// Root volume.
    #[serde(default)]
    pub root_volume: Volume,
    /// Data volume for the RabbitMQ data directory: EBS (`gp3`/`io2`, default gp3 100 GiB) or
    /// the instance store. Required at boot: a broker whose volume is missing does not start
    /// RabbitMQ on its root disk.
    #[serde(default = "default_data_volume")]
    pub data_volume: DataVolume,
    /// How many snapshots of each broker's EBS data volume to keep. gwctl snapshots the volume
    /// before it deletes a broker (`upgrade`, `down`, a smaller `count`); older ones go.
    #[serde(default = "default_snapshots_retained")]
    #[schemars(range(min = 1, max = 100))]
    pub snapshots_retained: u8,
    /// Tuning profile of the rendered configuration.
    #[serde(default = "Tuning::gateway_default")]
    pub tuning: Tuning,
    /// Listener ports (every one TLS).
    #[serde(default)]
    pub ports: Ports,
    /// Also listen in plaintext for devices: MQTT on 1883 and Web MQTT on 15675, open to
    /// `client_cidrs`. Anyone on the path reads and alters the traffic; `plan` warns.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_plaintext: bool,
}

/// Plaintext device listeners, with `insecure_plaintext` only.
pub const PLAINTEXT_MQTT_PORT: u16 = 1883;
pub const PLAINTEXT_WEB_MQTT_PORT: u16 = 15675;

/// Debian 13 "trixie"'s rabbitmq-server (RabbitMQ 4.0.5 on Erlang 27); deb13u2 carries the fix
/// for CVE-2025-50200.
pub const RABBITMQ_PACKAGE: &str = "4.0.5-6+deb13u2";

/// The RabbitMQ release series a broker runs, from the package version the region file pins.
/// What gwctl renders differs between them (3.10 lacks settings 4.0 has), and brokers of two
/// series never form one cluster (RabbitMQ upgrades in place only to the next series).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum RabbitSeries {
    /// Debian 12 "bookworm"'s rabbitmq-server: out of RabbitMQ's support, rendered only so a
    /// region running it can be moved to 4.0 (`upgrade`, blue-green).
    #[serde(rename = "3.10")]
    V3_10,
    /// Debian 13 "trixie"'s rabbitmq-server.
    #[serde(rename = "4.0")]
    V4_0,
}

impl RabbitSeries {
    /// The series of a Debian package version (`4.0.5-6+deb13u2` → 4.0), if gwctl renders it.
    pub fn of_package(version: &str) -> Option<RabbitSeries> {
        // An epoch (`1:`) may precede the upstream version.
        let upstream = version.rsplit_once(':').map_or(version, |(_, v)| v);
        let mut parts = upstream.split(['.', '-', '+', '~']);
        match (parts.next()?, parts.next()?) {
            ("3", "10") => Some(RabbitSeries::V3_10),
            ("4", "0") => Some(RabbitSeries::V4_0),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RabbitSeries::V3_10 => "3.10",
            RabbitSeries::V4_0 => "4.0",
        }
    }

    /// The Debian release whose archive carries this series (its images' names start with
    /// `debian-<release>-`).
    pub fn debian_release(self) -> u8 {
        match self {
            RabbitSeries::V3_10 => 12,
            RabbitSeries::V4_0 => 13,
        }
    }
}

impl Brokers {
    /// The series the pinned package belongs to (validation refuses any other).
    pub fn series(&self) -> RabbitSeries {
        RabbitSeries::of_package(&self.rabbitmq_package).unwrap_or(RabbitSeries::V4_0)
    }
}

fn default_broker_count() -> u8 {
    3
}

fn default_data_volume() -> DataVolume {
    DataVolume::Ebs(Volume {
        size_gib: 100,
        ..Volume::default()
    })
}

/// Snapshots kept per broker slot unless a region file says otherwise.
pub const SNAPSHOTS_RETAINED: u8 = 3;

fn default_snapshots_retained() -> u8 {
    SNAPSHOTS_RETAINED
}

fn default_rabbitmq_package() -> String {
    RABBITMQ_PACKAGE.to_string()
}

fn default_broker_instance_type() -> String {
    "c6i.large".to_string()
}

/// Machine image selection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Ami {
    /// An explicit AMI id.
    Id(AmiId),
    /// The newest image owned by `owner` whose name matches `name` (wildcards allowed).
    Lookup(AmiLookup),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AmiId {
    /// e.g. `ami-0123456789abcdef0`.
    #[schemars(regex(pattern = r"^ami-[0-9a-f]{8,17}$"))]
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AmiLookup {
    /// Owner account id or alias, e.g. `136693071363` (Debian).
    #[schemars(length(min = 1))]
    pub owner: String,
    /// Image name filter, e.g. `debian-13-amd64-*` (`debian-13-arm64-*` for Graviton types).
    #[schemars(length(min = 1))]
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    /// EBS volume type.
    #[serde(rename = "type", default = "default_volume_type")]
    pub kind: EbsType,
    /// Size in GiB.
    #[serde(default = "default_root_size")]
    #[schemars(range(min = 8, max = 16384))]
    pub size_gib: u32,
    /// Provisioned IOPS (gp3: 3000-16000, io2: required, up to 500 per GiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iops: Option<u32>,
    /// Throughput in MiB/s (gp3 only, 125-1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput_mibps: Option<u32>,
}

impl Default for Volume {
    fn default() -> Self {
        Volume {
            kind: default_volume_type(),
            size_gib: default_root_size(),
            iops: None,
            throughput_mibps: None,
        }
    }
}

fn default_volume_type() -> EbsType {
    EbsType::Gp3
}

fn default_root_size() -> u32 {
    20
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum EbsType {
    Gp3,
    Io2,
}

/// Where RabbitMQ keeps its data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DataVolume {
    /// A dedicated EBS volume.
    Ebs(Volume),
    /// The instance's local NVMe store (needs a `d` instance type such as `c6id.large`); data
    /// does not survive a stop.
    InstanceStore(InstanceStore),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceStore {
    /// Device name of the instance store volume.
    #[serde(default = "default_instance_store_device")]
    pub device: String,
}

fn default_instance_store_device() -> String {
    "/dev/nvme1n1".to_string()
}

/// How the rendered RabbitMQ configuration is tuned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Tuning {
    /// Many mostly idle connections (gateways): small TCP buffers, large backlog.
    Connections,
    /// Few connections carrying much traffic (backend): large buffers.
    Throughput,
}

impl Tuning {
    fn gateway_default() -> Tuning {
        Tuning::Connections
    }
    fn backend_default() -> Tuning {
        Tuning::Throughput
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ports {
    /// AMQPS (federation links from the backend).
    #[serde(default = "default_amqp_port")]
    #[schemars(range(min = 1))]
    pub amqp: u16,
    /// MQTT over TLS (devices).
    #[serde(default = "default_mqtt_port")]
    #[schemars(range(min = 1))]
    pub mqtt: u16,
    /// MQTT over secure WebSocket (web_mqtt plugin), `wss://host:port/ws`.
    #[serde(default = "default_web_mqtt_port")]
    #[schemars(range(min = 1))]
    pub web_mqtt: u16,
    /// Management API over HTTPS.
    #[serde(default = "default_management_port")]
    #[schemars(range(min = 1))]
    pub management: u16,
    /// Unauthenticated health endpoint for HTTP(S) health checks.
    #[serde(default = "default_health_port")]
    #[schemars(range(min = 1))]
    pub health: u16,
    /// Prometheus metrics over HTTPS (rabbitmq_prometheus); reachable from the backend
    /// network only.
    #[serde(default = "default_metrics_port")]
    #[schemars(range(min = 1))]
    pub metrics: u16,
}

impl Default for Ports {
    fn default() -> Self {
        Ports {
            amqp: default_amqp_port(),
            mqtt: default_mqtt_port(),
            web_mqtt: default_web_mqtt_port(),
            management: default_management_port(),
            health: default_health_port(),
            metrics: default_metrics_port(),
        }
    }
}

impl Ports {
    /// Every listener with its field name, for collision checks and security groups.
    pub fn named(&self) -> [(&'static str, u16); 6] {
        [
            ("amqp", self.amqp),
            ("mqtt", self.mqtt),
            ("web_mqtt", self.web_mqtt),
            ("management", self.management),
            ("health", self.health),
            ("metrics", self.metrics),
        ]
    }
}

/// Ports RabbitMQ clustering uses on every node (epmd, inter-node distribution).
pub const CLUSTER_PORTS: [(&str, u16); 2] = [("epmd", 4369), ("distribution", 25672)];

fn default_amqp_port() -> u16 {
    5671
}
fn default_mqtt_port() -> u16 {
    8883
}
fn default_web_mqtt_port() -> u16 {
    15676
}
fn default_management_port() -> u16 {
    15671
}
fn default_metrics_port() -> u16 {
    15691
}

fn default_health_port() -> u16 {
    8080
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SupportGroup {
    /// Name of the group, e.g. `proxy`; unique in the file.
    #[schemars(regex(pattern = r"^[a-z][a-z0-9-]{0,30}$"))]
    pub name: String,
    /// Number of instances.
    #[serde(default = "default_support_count")]
    #[schemars(range(min = 1, max = 10))]
    pub count: u8,
    /// EC2 instance type.
    #[serde(default = "default_support_instance_type")]
    #[schemars(regex(pattern = r"^[a-z][a-z0-9-]*\.[a-z0-9]+$"))]
    pub instance_type: String,
    /// Machine image; defaults to the brokers' image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ami: Option<Ami>,
}

fn default_support_count() -> u8 {
    1
}
fn default_support_instance_type() -> String {
    "t3.small".to_string()
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Vpn {
    /// Static routes of the VPN connection; default: the backend's `network_cidr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub static_routes: Option<Vec<Cidr>>,
    /// IPsec options of both tunnels. AWS's own defaults still accept IKEv1, SHA-1 and DH
    /// group 2; gwctl's accept IKEv2 only, AES-256, SHA-256 or better, DH groups 14 and up.
    /// Changing them on a running VPN takes its tunnels down: `upgrade` does it one tunnel at
    /// a time.
    #[serde(default)]
    pub tunnels: Tunnels,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tunnels {
    /// IKE versions (`ikev2`; `ikev1` is refused).
    #[serde(default = "default_ike_versions")]
    #[schemars(length(min = 1))]
    pub ike_versions: Vec<String>,
    /// Encryption, both phases: `AES256`, `AES256-GCM-16` (`AES128`, `AES128-GCM-16` allowed).
    #[serde(default = "default_encryption")]
    #[schemars(length(min = 1))]
    pub encryption: Vec<String>,
    /// Integrity, both phases: `SHA2-256`, `SHA2-384`, `SHA2-512` (`SHA1` is refused).
    #[serde(default = "default_integrity")]
    #[schemars(length(min = 1))]
    pub integrity: Vec<String>,
    /// Diffie-Hellman groups, both phases: 14 to 24 (2 and 5 are refused).
    #[serde(default = "default_dh_groups")]
    #[schemars(length(min = 1))]
    pub dh_groups: Vec<u8>,
    /// Inside CIDRs of tunnel 1 and 2: /30 blocks of 169.254.0.0/16 (AWS picks when absent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(min = 2, max = 2))]
    pub inside_cidrs: Vec<Cidr>,
    /// Pre-shared keys of tunnel 1 and 2 as secret sources (AWS picks when absent; AWS shows
    /// them to anyone who may describe the VPN).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(min = 2, max = 2))]
    pub pre_shared_keys: Vec<SecretRef>,
}

impl Default for Tunnels {
    fn default() -> Self {
        Tunnels {
            ike_versions: default_ike_versions(),
            encryption: default_encryption(),
            integrity: default_integrity(),
            dh_groups: default_dh_groups(),
            inside_cidrs: Vec::new(),
            pre_shared_keys: Vec::new(),
        }
    }
}

fn default_ike_versions() -> Vec<String> {
    vec!["ikev2".into()]
}
fn default_encryption() -> Vec<String> {
    vec!["AES256-GCM-16".into(), "AES256".into()]
}
fn default_integrity() -> Vec<String> {
    vec!["SHA2-256".into(), "SHA2-384".into(), "SHA2-512".into()]
}
fn default_dh_groups() -> Vec<u8> {
    vec![19, 20, 21, 14, 15, 16]
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Federation {
    /// Exchanges this gateway federates from the backend (backend → devices).
    #[serde(default = "default_federated")]
    pub from_backend: Vec<FederatedExchange>,
    /// Exchanges the backend federates from this gateway (devices → backend).
    #[serde(default = "default_federated")]
    pub to_backend: Vec<FederatedExchange>,
    /// Federation max-hops. Only 1 is allowed: a message never travels gateway → backend →
    /// another gateway, so loops are impossible by construction.
    #[serde(default = "default_max_hops")]
    #[schemars(range(min = 1, max = 1))]
    pub max_hops: u8,
    /// Messages in flight per link before confirms.
    #[serde(default = "default_prefetch")]
    #[schemars(range(min = 1, max = 65535))]
    pub prefetch: u32,
    /// When the link acknowledges upstream: `on-confirm` loses nothing.
    #[serde(default = "default_ack_mode")]
    pub ack_mode: AckMode,
    /// Seconds between reconnection attempts of a link.
    #[serde(default = "default_reconnect_delay")]
    #[schemars(range(min = 1, max = 3600))]
    pub reconnect_delay_s: u32,
    /// The buffers of the links: the queue each link keeps on its upstream side, holding what
    /// the other side has not taken yet (a peer down, a WAN cut, an upgrade).
    #[serde(default)]
    pub buffers: Buffers,
}

/// Federation buffers: durable (quorum where the holding cluster has 3 nodes or more), bounded,
/// and kept for days without their link. Links are never told to delete them
/// (`resource-cleanup-mode: never`): replacing a link or a node keeps what they hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Buffers {
    /// Days a buffer survives without its link before RabbitMQ deletes it (a region gone for
    /// good). An outage shorter than this loses nothing.
    #[serde(default = "default_buffer_days")]
    #[schemars(range(min = 1, max = 90))]
    pub expires_days: u32,
    /// Days a buffered message lives.
    #[serde(default = "default_buffer_days")]
    #[schemars(range(min = 1, max = 90))]
    pub message_ttl_days: u32,
    /// Device → backend buffers, on this gateway. Default: refuse new messages when full, so
    /// devices get no acknowledgement and keep them (telemetry is never dropped silently).
    #[serde(default = "BufferBound::to_backend")]
    pub to_backend: BufferBound,
    /// Backend → this gateway buffer, on the backend. Default: drop the oldest when full, so
    /// that a region gone for long never blocks the backend's publishers (other regions).
    #[serde(default = "BufferBound::from_backend")]
    pub from_backend: BufferBound,
}

impl Default for Buffers {
    fn default() -> Self {
        Buffers {
            expires_days: default_buffer_days(),
            message_ttl_days: default_buffer_days(),
            to_backend: BufferBound::to_backend(),
            from_backend: BufferBound::from_backend(),
        }
    }
}

/// How far a buffer may grow, and what happens then.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BufferBound {
    /// Messages at most.
    #[schemars(range(min = 1000))]
    pub max_messages: u64,
    /// MiB of message bodies at most.
    #[schemars(range(min = 16, max = 1048576))]
    pub max_mib: u64,
    pub overflow: Overflow,
}

impl BufferBound {
    fn to_backend() -> BufferBound {
        BufferBound {
            max_messages: 1_000_000,
            max_mib: 4096,
            overflow: Overflow::RejectPublish,
        }
    }

    fn from_backend() -> BufferBound {
        BufferBound {
            max_messages: 1_000_000,
            max_mib: 4096,
            overflow: Overflow::DropHead,
        }
    }
}

/// RabbitMQ's `overflow` for a full queue (both kinds quorum queues support).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Overflow {
    /// Drop the oldest message.
    DropHead,
    /// Refuse the new one (publishers with confirms get a negative acknowledgement).
    RejectPublish,
}

impl Overflow {
    pub fn as_str(self) -> &'static str {
        match self {
            Overflow::DropHead => "drop-head",
            Overflow::RejectPublish => "reject-publish",
        }
    }
}

fn default_buffer_days() -> u32 {
    7
}

impl Default for Federation {
    fn default() -> Self {
        Federation {
            from_backend: default_federated(),
            to_backend: default_federated(),
            max_hops: default_max_hops(),
            prefetch: default_prefetch(),
            ack_mode: default_ack_mode(),
            reconnect_delay_s: default_reconnect_delay(),
            buffers: Buffers::default(),
        }
    }
}

/// One federated exchange. `peer_exchange` lets a gateway federate from a differently named
/// exchange on the other side (e.g. a per-region exchange a message router publishes to).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FederatedExchange {
    /// Local exchange receiving the federated messages.
    #[schemars(regex(pattern = r"^[A-Za-z0-9._:-]+$"))]
    pub exchange: String,
    /// Exchange on the other side; default: the same name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9._:-]+$"))]
    pub peer_exchange: Option<String>,
}

impl FederatedExchange {
    pub fn peer(&self) -> &str {
        self.peer_exchange.as_deref().unwrap_or(&self.exchange)
    }
}

fn default_federated() -> Vec<FederatedExchange> {
    vec![FederatedExchange {
        exchange: "amq.topic".to_string(),
        peer_exchange: None,
    }]
}
fn default_max_hops() -> u8 {
    1
}
fn default_prefetch() -> u32 {
    1000
}
fn default_ack_mode() -> AckMode {
    AckMode::OnConfirm
}
fn default_reconnect_delay() -> u32 {
    5
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AckMode {
    OnConfirm,
    OnPublish,
    NoAck,
}

impl AckMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AckMode::OnConfirm => "on-confirm",
            AckMode::OnPublish => "on-publish",
            AckMode::NoAck => "no-ack",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// `tcp` connects to the MQTT port; `http`/`https` ask the node's health endpoint.
    #[serde(default = "default_health_protocol")]
    pub protocol: HealthProtocol,
    /// Port checked; default: MQTT for `tcp`, `brokers.ports.health` for `http(s)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub port: Option<u16>,
    /// Request path for `http(s)`; default `/health`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^/[^\s]*$"))]
    pub path: Option<String>,
    /// Seconds between checks: 10 (fast) or 30 (standard).
    #[serde(default = "default_health_interval")]
    pub interval_s: u32,
    /// Consecutive failures before an endpoint is unhealthy.
    #[serde(default = "default_failure_threshold")]
    #[schemars(range(min = 1, max = 10))]
    pub failure_threshold: u32,
    /// Route53 regions whose checkers ask (at least 3); empty: all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
}

/// Where Route53's health checkers run.
pub const CHECKER_REGIONS: [&str; 8] = [
    "us-east-1",
    "us-west-1",
    "us-west-2",
    "eu-west-1",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-northeast-1",
    "sa-east-1",
];

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            protocol: default_health_protocol(),
            port: None,
            path: None,
            interval_s: default_health_interval(),
            failure_threshold: default_failure_threshold(),
            regions: Vec::new(),
        }
    }
}

fn default_health_protocol() -> HealthProtocol {
    HealthProtocol::Tcp
}
fn default_health_interval() -> u32 {
    30
}
fn default_failure_threshold() -> u32 {
    3
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum HealthProtocol {
    Tcp,
    Http,
    Https,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewayCredentials {
    /// The management user gwctl and operators use on this gateway (tag `administrator`).
    pub admin: UserCredential,
    /// Erlang cookie shared by this region's nodes.
    pub erlang_cookie: SecretRef,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserCredential {
    /// RabbitMQ user name.
    #[schemars(regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"))]
    pub user: String,
    /// Where the password comes from: `env:VAR` or `file:PATH`.
    pub password: SecretRef,
}

/// An IPv4 network in CIDR notation, e.g. `10.10.0.0/16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr(pub Ipv4Net);

impl TryFrom<String> for Cidr {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ipv4Net::from_str(s)
            .map(Cidr)
            .map_err(|_| format!("`{s}` is not an IPv4 CIDR such as 10.0.0.0/16"))
    }
}

impl From<Cidr> for String {
    fn from(c: Cidr) -> String {
        c.to_string()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl JsonSchema for Cidr {
    fn schema_name() -> Cow<'static, str> {
        "Cidr".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "An IPv4 network in CIDR notation, e.g. 10.10.0.0/16.",
            "pattern": patterns::CIDR,
        })
    }
}

/// Where a secret comes from. The value itself never appears in a region file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum SecretRef {
    /// An environment variable of the gwctl process.
    Env(String),
    /// A file (relative paths are relative to the region file's directory).
    File(String),
}

impl TryFrom<String> for SecretRef {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if let Some(var) = s.strip_prefix("env:")
            && !var.is_empty()
        {
            return Ok(SecretRef::Env(var.to_string()));
        }
        if let Some(path) = s.strip_prefix("file:")
            && !path.is_empty()
        {
            return Ok(SecretRef::File(path.to_string()));
        }
        Err(format!(
            "`{s}` is not a secret source (env:VAR or file:PATH)"
        ))
    }
}

impl From<SecretRef> for String {
    fn from(s: SecretRef) -> String {
        s.to_string()
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(v) => write!(f, "env:{v}"),
            SecretRef::File(p) => write!(f, "file:{p}"),
        }
    }
}

impl JsonSchema for SecretRef {
    fn schema_name() -> Cow<'static, str> {
        "SecretRef".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "Where a secret comes from: env:VAR or file:PATH. Never the secret itself.",
            "pattern": patterns::SECRET_REF,
        })
    }
}
