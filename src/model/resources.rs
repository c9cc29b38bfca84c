//! The vocabulary of AWS resources gwctl manages, shared by the desired state (built from the
//! region files), the actual state (discovered in AWS) and the plan that diffs them.
//!
//! A resource is a [`Key`] (kind + logical name, unique in a region and written into the
//! `gwctl:id` tag) and a [`Spec`]: the attributes gwctl manages, in a form where desired and
//! actual compare with `==`. References between resources are [`Ref`]s: keys in the desired
//! state; in the actual state, AWS ids mapped back to keys through the ownership tags (an id
//! gwctl does not own stays an id, and so never equals a desired key).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Ownership tags, on everything gwctl creates.
pub const TAG_TOOL: &str = "gwctl:tool";
/// The device name a broker's EBS data volume is attached as.
pub const DATA_DEVICE: &str = "/dev/sdf";
pub const TAG_STACK: &str = "gwctl:stack";
pub const TAG_REGION: &str = "gwctl:region";
pub const TAG_ID: &str = "gwctl:id";
/// Hash of what an instance was launched with that AWS does not report back (user-data,
/// block devices).
pub const TAG_LAUNCH: &str = "gwctl:launch-sha256";
/// The tag RabbitMQ's AWS peer discovery looks for (no `:`, rabbitmq.conf keys cannot hold one).
pub const TAG_CLUSTER: &str = "gwctl-cluster";
/// The part of a discovered instance that holds its [`TAG_CLUSTER`].
pub const CLUSTER_PART: &str = "cluster";
/// On a broker of a cluster a region moved off: its devices' sessions and buffers were moved
/// before it was stopped (`upgrade`'s blue-green), so deleting it loses nothing.
pub const TAG_DRAINED: &str = "gwctl:drained";
/// The part of a discovered instance that holds its [`TAG_DRAINED`].
pub const DRAINED_PART: &str = "drained";

/// The tags of a resource gwctl creates in `region`: the region's free tags, a Name, and the
/// ownership tags (`id` is its logical id, e.g. `subnet/us-east-1a`).
pub fn tags_for(
    stack: &str,
    region: &str,
    name: &str,
    id: &str,
    free: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut t = free.clone();
    t.insert("Name".into(), format!("{stack}-{region}-{name}"));
    t.insert(TAG_TOOL.into(), "gwctl".into());
    t.insert(TAG_STACK.into(), stack.into());
    t.insert(TAG_REGION.into(), region.into());
    t.insert(TAG_ID.into(), id.into());
    t
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    IamRole,
    InstanceProfile,
    SsmParameter,
    Certificate,
    Vpc,
    Subnet,
    InternetGateway,
    SecurityGroup,
    CustomerGateway,
    VpnGateway,
    VpnConnection,
    RouteTable,
    Instance,
    ElasticIp,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::IamRole => "iam_role",
            Kind::InstanceProfile => "instance_profile",
            Kind::SsmParameter => "ssm_parameter",
            Kind::Certificate => "certificate",
            Kind::Vpc => "vpc",
            Kind::Subnet => "subnet",
            Kind::InternetGateway => "internet_gateway",
            Kind::SecurityGroup => "security_group",
            Kind::CustomerGateway => "customer_gateway",
            Kind::VpnGateway => "vpn_gateway",
            Kind::VpnConnection => "vpn_connection",
            Kind::RouteTable => "route_table",
            Kind::Instance => "instance",
            Kind::ElasticIp => "elastic_ip",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        ALL_KINDS.into_iter().find(|k| k.as_str() == s)
    }
}

pub const ALL_KINDS: [Kind; 14] = [
    Kind::IamRole,
    Kind::InstanceProfile,
    Kind::SsmParameter,
    Kind::Certificate,
    Kind::Vpc,
    Kind::Subnet,
    Kind::InternetGateway,
    Kind::SecurityGroup,
    Kind::CustomerGateway,
    Kind::VpnGateway,
    Kind::VpnConnection,
    Kind::RouteTable,
    Kind::Instance,
    Kind::ElasticIp,
];

/// A resource's identity within its region: `subnet/us-east-1a`, `instance/broker-1`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Key {
    pub kind: Kind,
    pub name: String,
}

impl Key {
    pub fn new(kind: Kind, name: impl Into<String>) -> Key {
        Key {
            kind,
            name: name.into(),
        }
    }

    /// A broker instance (`instance/broker-N`): replaced or removed by `upgrade` only.
    pub fn is_broker(&self) -> bool {
        self.kind == Kind::Instance && self.name.starts_with(BROKER_PREFIX)
    }
}

/// Names of broker instances: `broker-1`, `broker-2`, …
pub const BROKER_PREFIX: &str = "broker-";

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind.as_str(), self.name)
    }
}

impl From<Key> for String {
    fn from(k: Key) -> String {
        k.to_string()
    }
}

impl TryFrom<String> for Key {
    type Error = String;
    fn try_from(s: String) -> Result<Key, String> {
        let (kind, name) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}` is not a resource key"))?;
        let kind = Kind::parse(kind).ok_or_else(|| format!("`{kind}` is not a resource kind"))?;
        Ok(Key::new(kind, name))
    }
}

/// A reference to another resource.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Ref {
    /// A resource gwctl manages in this region.
    Key(Key),
    /// Anything else, by its AWS id (seen only in actual state: never equal to a desired key).
    Id(String),
}

impl fmt::Display for Ref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ref::Key(k) => k.fmt(f),
            Ref::Id(id) => f.write_str(id),
        }
    }
}

/// An ingress rule of a security group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Ingress {
    pub port: u16,
    /// A range, a prefix list, or the group itself.
    pub from: IngressSource,
    pub description: String,
    /// A rule of another shape than gwctl writes (found in AWS: all protocols, UDP, ICMP, a
    /// port range), as AWS reports it: it shows as drift and is revoked exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other: Option<RuleShape>,
}

/// A rule's protocol and port range as AWS reports them (`-1`: every protocol, no ports).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RuleShape {
    pub protocol: String,
    pub from_port: Option<i32>,
    pub to_port: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IngressSource {
    /// An IPv4 or IPv6 range.
    Cidr(String),
    /// A managed prefix list by id (e.g. AWS's list of Route53 health checkers).
    PrefixList(String),
    /// The security group the rule belongs to (members talk to each other).
    Itself,
    /// Another security group (gwctl writes none: found in AWS, it is drift).
    Group(String),
}

/// A route of a route table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Route {
    pub destination: String,
    pub target: Ref,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockDevice {
    pub device: String,
    pub volume_type: String,
    pub size_gib: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iops: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throughput_mibps: Option<u32>,
}

/// The managed attributes of each kind of resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Spec {
    IamRole {
        name: String,
        /// The inline policy document (JSON, normalised).
        policy: String,
    },
    InstanceProfile {
        name: String,
        role: Ref,
    },
    SsmParameter {
        name: String,
        /// SHA-256 of the value; the value itself is never part of a plan.
        value_sha256: String,
    },
    /// A broker's server certificate and key, issued by gwctl with the stack CA and kept as
    /// a SecureString parameter the broker reads at boot. Compared by what it certifies, not
    /// by its bytes (every issuance has a new key).
    Certificate {
        name: String,
        /// The DNS names and addresses it covers.
        names: Vec<String>,
        /// Key identifier of the CA that signed it.
        issuer_key_id: String,
        /// Due for renewal: it expires within `pki::WARN_BEFORE` (never in a desired state,
        /// so a certificate due is re-issued).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        renew: bool,
    },
    Vpc {
        cidr: String,
        /// Private DNS names, which RabbitMQ's AWS peer discovery uses as node names.
        dns_hostnames: bool,
    },
    Subnet {
        vpc: Ref,
        zone: String,
        cidr: String,
        /// Instances get a public address at launch (to install packages before their
        /// Elastic IP is associated).
        public_ip_on_launch: bool,
    },
    InternetGateway {
        vpc: Ref,
    },
    SecurityGroup {
        vpc: Ref,
        group_name: String,
        description: String,
        ingress: Vec<Ingress>,
    },
    CustomerGateway {
        ip: String,
        bgp_asn: u32,
    },
    VpnGateway {
        vpc: Ref,
    },
    VpnConnection {
        customer_gateway: Ref,
        vpn_gateway: Ref,
        static_routes_only: bool,
        routes: Vec<String>,
        /// Both tunnels' IPsec options (see [`TunnelSpec::normalized`]).
        tunnels: Vec<TunnelSpec>,
        /// SHA-256 of each tunnel's pre-shared key, in the order of `tunnels` (sorted when no
        /// inside CIDR is declared); empty when AWS picks them.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pre_shared_keys_sha256: Vec<String>,
    },
    RouteTable {
        vpc: Ref,
        routes: Vec<Route>,
        propagating: Vec<Ref>,
        subnets: Vec<Ref>,
    },
    Instance {
        image: String,
        instance_type: String,
        subnet: Ref,
        security_groups: Vec<Ref>,
        profile: Ref,
        /// Hash of what AWS does not report back (user-data, block devices), kept in a tag.
        launch_sha256: String,
        imdsv2_required: bool,
    },
    ElasticIp {
        instance: Ref,
    },
}

impl Spec {
    /// A broker instance in `subnet` on `image`, the rest fixed: for tests of what is kept,
    /// held and replaced.
    #[cfg(test)]
    pub(crate) fn test_broker(subnet: Ref, image: &str) -> Spec {
        Spec::Instance {
            image: image.into(),
            instance_type: "c6i.large".into(),
            subnet,
            security_groups: vec![],
            profile: Ref::Id(String::new()),
            launch_sha256: String::new(),
            imdsv2_required: true,
        }
    }
}

impl Spec {
    pub fn kind(&self) -> Kind {
        match self {
            Spec::IamRole { .. } => Kind::IamRole,
            Spec::InstanceProfile { .. } => Kind::InstanceProfile,
            Spec::SsmParameter { .. } => Kind::SsmParameter,
            Spec::Certificate { .. } => Kind::Certificate,
            Spec::Vpc { .. } => Kind::Vpc,
            Spec::Subnet { .. } => Kind::Subnet,
            Spec::InternetGateway { .. } => Kind::InternetGateway,
            Spec::SecurityGroup { .. } => Kind::SecurityGroup,
            Spec::CustomerGateway { .. } => Kind::CustomerGateway,
            Spec::VpnGateway { .. } => Kind::VpnGateway,
            Spec::VpnConnection { .. } => Kind::VpnConnection,
            Spec::RouteTable { .. } => Kind::RouteTable,
            Spec::Instance { .. } => Kind::Instance,
            Spec::ElasticIp { .. } => Kind::ElasticIp,
        }
    }

    /// Every resource this one refers to, as keys (sorted, without repeats).
    pub fn refs(&self) -> Vec<Key> {
        let mut keys = Vec::new();
        // One traversal of the references serves both mapping and listing them.
        self.clone().map_refs(|r| {
            if let Ref::Key(k) = r {
                keys.push(k.clone());
            }
        });
        keys.sort();
        keys.dedup();
        keys
    }

    /// Applies `f` to every reference (to map AWS ids to keys, or keys to ids).
    pub fn map_refs(&mut self, mut f: impl FnMut(&mut Ref)) {
        match self {
            Spec::InstanceProfile { role, .. } => f(role),
            Spec::Subnet { vpc, .. } | Spec::InternetGateway { vpc } | Spec::VpnGateway { vpc } => {
                f(vpc)
            }
            Spec::SecurityGroup { vpc, .. } => f(vpc),
            Spec::VpnConnection {
                customer_gateway,
                vpn_gateway,
                ..
            } => {
                f(customer_gateway);
                f(vpn_gateway);
            }
            Spec::RouteTable {
                vpc,
                routes,
                propagating,
                subnets,
            } => {
                f(vpc);
                routes.iter_mut().for_each(|r| f(&mut r.target));
                propagating.iter_mut().for_each(&mut f);
                subnets.iter_mut().for_each(&mut f);
                // Order is not meaningful in AWS answers; keep comparisons order-free.
                routes.sort();
                propagating.sort();
                subnets.sort();
            }
            Spec::Instance {
                subnet,
                security_groups,
                profile,
                ..
            } => {
                f(subnet);
                security_groups.iter_mut().for_each(&mut f);
                security_groups.sort();
                f(profile);
            }
            Spec::ElasticIp { instance } => f(instance),
            Spec::IamRole { .. }
            | Spec::SsmParameter { .. }
            | Spec::Certificate { .. }
            | Spec::Vpc { .. }
            | Spec::CustomerGateway { .. } => {}
        }
    }

    /// Whether replacing the resource `dep` refers to forces this one to be replaced too (it
    /// would otherwise point at a deleted id). An Elastic IP or an instance profile just
    /// re-associates.
    pub fn replaced_dep_forces_replace(&self) -> bool {
        !matches!(self, Spec::ElasticIp { .. } | Spec::InstanceProfile { .. })
    }

    /// Fields whose change forces a replacement (delete + create); others update in place.
    pub fn replace_paths(&self, actual: &Spec) -> Vec<&'static str> {
        let mut paths = Vec::new();
        let mut check = |changed: bool, path: &'static str| {
            if changed {
                paths.push(path);
            }
        };
        match (self, actual) {
            (Spec::IamRole { name: a, .. }, Spec::IamRole { name: b, .. })
            | (Spec::InstanceProfile { name: a, .. }, Spec::InstanceProfile { name: b, .. })
            | (Spec::SsmParameter { name: a, .. }, Spec::SsmParameter { name: b, .. })
            | (Spec::Certificate { name: a, .. }, Spec::Certificate { name: b, .. }) => {
                check(a != b, "name")
            }
            (Spec::Vpc { cidr: a, .. }, Spec::Vpc { cidr: b, .. }) => check(a != b, "cidr"),
            (
                Spec::Subnet {
                    vpc, zone, cidr, ..
                },
                Spec::Subnet {
                    vpc: v2,
                    zone: z2,
                    cidr: c2,
                    ..
                },
            ) => {
                check(vpc != v2, "vpc");
                check(zone != z2, "zone");
                check(cidr != c2, "cidr");
            }
            (Spec::InternetGateway { vpc: a }, Spec::InternetGateway { vpc: b })
            | (Spec::VpnGateway { vpc: a }, Spec::VpnGateway { vpc: b }) => check(a != b, "vpc"),
            (
                Spec::SecurityGroup {
                    vpc,
                    group_name,
                    description,
                    ..
                },
                Spec::SecurityGroup {
                    vpc: v2,
                    group_name: n2,
                    description: d2,
                    ..
                },
            ) => {
                check(vpc != v2, "vpc");
                check(group_name != n2, "group_name");
                check(description != d2, "description");
            }
            (
                Spec::CustomerGateway { ip, bgp_asn },
                Spec::CustomerGateway {
                    ip: i2,
                    bgp_asn: a2,
                },
            ) => {
                check(ip != i2, "ip");
                check(bgp_asn != a2, "bgp_asn");
            }
            (
                Spec::VpnConnection {
                    customer_gateway,
                    vpn_gateway,
                    static_routes_only,
                    ..
                },
                Spec::VpnConnection {
                    customer_gateway: c2,
                    vpn_gateway: g2,
                    static_routes_only: s2,
                    ..
                },
            ) => {
                check(customer_gateway != c2, "customer_gateway");
                check(vpn_gateway != g2, "vpn_gateway");
                check(static_routes_only != s2, "static_routes_only");
            }
            (Spec::RouteTable { vpc, .. }, Spec::RouteTable { vpc: v2, .. }) => {
                check(vpc != v2, "vpc")
            }
            (
                Spec::Instance {
                    image,
                    instance_type,
                    subnet,
                    security_groups,
                    profile,
                    launch_sha256,
                    ..
                },
                Spec::Instance {
                    image: i2,
                    instance_type: t2,
                    subnet: s2,
                    security_groups: g2,
                    profile: p2,
                    launch_sha256: l2,
                    ..
                },
            ) => {
                check(image != i2, "image");
                check(instance_type != t2, "instance_type");
                check(subnet != s2, "subnet");
                check(security_groups != g2, "security_groups");
                check(profile != p2, "profile");
                check(launch_sha256 != l2, "launch_sha256");
            }
            (Spec::ElasticIp { .. }, Spec::ElasticIp { .. }) => {}
            _ => paths.push("type"),
        }
        paths
    }

    /// Attributes that hold secrets (masked in every output).
    pub fn sensitive_paths(&self) -> &'static [&'static str] {
        match self {
            Spec::SsmParameter { .. } => &["value_sha256"],
            // A hash of a short key can be searched for: not shown either.
            Spec::VpnConnection { .. } => &["pre_shared_keys_sha256"],
            _ => &[],
        }
    }
}

/// One VPN tunnel's IPsec options, as gwctl asks for them and AWS reports them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TunnelSpec {
    /// `None`: AWS picks (compared only when declared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inside_cidr: Option<String>,
    pub ike_versions: Vec<String>,
    pub phase1_encryption: Vec<String>,
    pub phase2_encryption: Vec<String>,
    pub phase1_integrity: Vec<String>,
    pub phase2_integrity: Vec<String>,
    pub phase1_dh_groups: Vec<i32>,
    pub phase2_dh_groups: Vec<i32>,
}

const TUNNEL_PART_PREFIX: &str = "tunnel ";

/// A tunnel as AWS's telemetry reports it (`VgwTelemetry`): `UP` or `DOWN`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TunnelState {
    pub outside_ip: String,
    pub status: String,
}

impl TunnelState {
    /// The `Observed::parts` key under which discovery records a tunnel's inside CIDR, by its
    /// outside address (which tunnel is which, for ModifyVpnTunnelOptions).
    pub fn part_key(outside_ip: &str) -> String {
        format!("{TUNNEL_PART_PREFIX}{outside_ip}")
    }

    /// The outside address of a [`TunnelState::part_key`], if `key` is one.
    pub fn from_part_key(key: &str) -> Option<&str> {
        key.strip_prefix(TUNNEL_PART_PREFIX)
    }

    /// How discovery records tunnels in a VPN connection's `Observed::state` (shown, never
    /// compared): `available; tunnels: 198.51.100.1 UP, 198.51.100.2 DOWN`.
    pub fn describe(connection_state: &str, tunnels: &[TunnelState]) -> String {
        let list: Vec<String> = tunnels
            .iter()
            .map(|t| format!("{} {}", t.outside_ip, t.status))
            .collect();
        format!("{connection_state}; tunnels: {}", list.join(", "))
    }

    /// The tunnels of a state written by [`TunnelState::describe`].
    pub fn parse(state: &str) -> Vec<TunnelState> {
        let Some((_, list)) = state.split_once("; tunnels: ") else {
            return Vec::new();
        };
        list.split(", ")
            .filter_map(|t| {
                let (ip, status) = t.split_once(' ')?;
                Some(TunnelState {
                    outside_ip: ip.to_string(),
                    status: status.to_string(),
                })
            })
            .collect()
    }
}

impl TunnelSpec {
    /// Tunnels with what belongs to each (its pre-shared key), normalized and sorted together,
    /// so the n-th key stays the n-th tunnel's.
    pub fn normalized_with<T>(tunnels: Vec<(TunnelSpec, T)>) -> Vec<(TunnelSpec, T)> {
        let mut pairs: Vec<(TunnelSpec, T)> = tunnels
            .into_iter()
            .map(|(t, x)| (Self::normalized(vec![t]).remove(0), x))
            .collect();
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        pairs
    }

    /// Lists sorted, tunnels sorted: AWS reports the same options in its own order.
    pub fn normalized(mut tunnels: Vec<TunnelSpec>) -> Vec<TunnelSpec> {
        for t in &mut tunnels {
            for list in [
                &mut t.ike_versions,
                &mut t.phase1_encryption,
                &mut t.phase2_encryption,
                &mut t.phase1_integrity,
                &mut t.phase2_integrity,
            ] {
                list.sort();
                list.dedup();
            }
            t.phase1_dh_groups.sort_unstable();
            t.phase1_dh_groups.dedup();
            t.phase2_dh_groups.sort_unstable();
            t.phase2_dh_groups.dedup();
        }
        tunnels.sort();
        tunnels
    }
}

impl Spec {
    /// What was discovered, seen as `desired` declares it: values AWS picks where the region
    /// file does not (a tunnel's inside CIDR, its pre-shared key) are not compared.
    pub fn as_declared(&self, desired: &Spec) -> Spec {
        match (self, desired) {
            (
                Spec::VpnConnection {
                    customer_gateway,
                    vpn_gateway,
                    static_routes_only,
                    routes,
                    tunnels,
                    pre_shared_keys_sha256,
                },
                Spec::VpnConnection {
                    tunnels: want,
                    pre_shared_keys_sha256: want_keys,
                    ..
                },
            ) => {
                let declared_cidrs = want.iter().any(|t| t.inside_cidr.is_some());
                // Keys pair with tunnels through their inside CIDRs; without declared CIDRs
                // which tunnel got which key is AWS's choice: compared as a set.
                let mut keys = pre_shared_keys_sha256.clone();
                if !declared_cidrs {
                    keys.sort();
                }
                let tunnels = tunnels
                    .iter()
                    .cloned()
                    .map(|mut t| {
                        if !declared_cidrs {
                            t.inside_cidr = None;
                        }
                        t
                    })
                    .collect();
                Spec::VpnConnection {
                    customer_gateway: customer_gateway.clone(),
                    vpn_gateway: vpn_gateway.clone(),
                    static_routes_only: *static_routes_only,
                    routes: routes.clone(),
                    tunnels: TunnelSpec::normalized(tunnels),
                    pre_shared_keys_sha256: if want_keys.is_empty() {
                        Vec::new()
                    } else {
                        keys
                    },
                }
            }
            _ => self.clone(),
        }
    }
}

/// A resource as discovered in AWS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    pub key: Key,
    /// The AWS id (or name, for IAM and SSM).
    pub id: String,
    pub spec: Spec,
    /// Ids of parts that are not resources of their own (attachments, associations), needed
    /// to update or delete this one.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parts: BTreeMap<String, String>,
    /// e.g. the instance state, for status output; not compared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// Everything gwctl owns in one region.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actual {
    pub resources: Vec<Observed>,
}

impl Actual {
    pub fn get(&self, key: &Key) -> Vec<&Observed> {
        self.resources.iter().filter(|o| &o.key == key).collect()
    }
}

/// What the desired state holds beyond the compared spec: values needed to create or update
/// the resource but never shown.
#[derive(Debug, Clone)]
pub enum Payload {
    None,
    /// An SSM parameter's value.
    Secret(crate::spec::secret::Secret),
    /// A VPN connection's pre-shared keys, tunnel 1 and 2 (empty: AWS picks them).
    TunnelKeys(Vec<crate::spec::secret::Secret>),
    /// What issuing a certificate needs: the CA's certificate and key (PEM).
    Issue {
        ca_cert: String,
        ca_key: crate::spec::secret::Secret,
    },
    /// An instance's user-data and volumes.
    Launch {
        user_data: String,
        root_device: String,
        block_devices: Vec<BlockDevice>,
        /// RunInstances idempotency token: the same for every attempt of one plan, different
        /// once the discovered state changed (so a broker terminated outside gwctl is not
        /// "found again" by the token of its first launch).
        client_token: String,
    },
}

/// One resource gwctl wants to exist.
#[derive(Debug, Clone)]
pub struct Desired {
    pub key: Key,
    pub spec: Spec,
    pub tags: BTreeMap<String, String>,
    pub payload: Payload,
    /// Resources that must exist first without being referred to (an instance's secrets and
    /// routes, needed at boot).
    pub after: Vec<Key>,
}

impl Desired {
    /// Everything that must exist before this resource is created or updated.
    pub fn needs(&self) -> Vec<Key> {
        let mut all = self.spec.refs();
        all.extend(self.after.iter().cloned());
        all.sort();
        all.dedup();
        all
    }
}
