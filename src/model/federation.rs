//! The federation topology, as data: which upstreams and policies each side needs.
//!
//! Gateways federate from the backend (backend → devices) and the backend federates from each
//! gateway (devices → backend); never gateway ⇄ gateway. `max-hops` is 1 on every link, so a
//! message that crossed one link is never forwarded over another: loops cannot form.
//! The gateway side ships in the rendered definitions; the backend side is applied through
//! the management API. Both are computed here so they cannot disagree.

use serde::Serialize;
use serde_json::{Value, json};

use super::delivery;
use crate::spec::model::{BufferBound, Federation, GatewaySpec, RabbitSeries, RoutingMode};

/// A federation upstream: where a link connects, and how it behaves.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Upstream {
    pub name: String,
    /// AMQP URIs; the password part is a placeholder (see [`crate::render::placeholder`]) or
    /// a real secret, depending on who builds it.
    pub uris: Vec<String>,
    /// Exchange on the upstream side.
    pub exchange: String,
    pub settings: LinkSettings,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkSettings {
    pub max_hops: u8,
    pub prefetch: u32,
    pub ack_mode: &'static str,
    pub reconnect_delay_s: u32,
    pub expires_ms: u64,
    pub message_ttl_ms: u64,
    /// The type of the link's buffer (see [`buffer_queue_type`]).
    pub queue_type: &'static str,
    /// The series of the side that runs the link (the downstream), which reads these
    /// settings: 3.10 refuses an upstream with settings it does not know.
    pub downstream: RabbitSeries,
}

const DAY_MS: u64 = 86_400_000;

impl LinkSettings {
    /// A link's settings from the region file; `buffer_nodes` is the size of the cluster that
    /// holds the link's buffer (the upstream side).
    pub fn new(f: &Federation, buffer_nodes: usize) -> Self {
        LinkSettings {
            max_hops: f.max_hops,
            prefetch: f.prefetch,
            ack_mode: f.ack_mode.as_str(),
            reconnect_delay_s: f.reconnect_delay_s,
            expires_ms: u64::from(f.buffers.expires_days) * DAY_MS,
            message_ttl_ms: u64::from(f.buffers.message_ttl_days) * DAY_MS,
            queue_type: buffer_queue_type(buffer_nodes),
            downstream: RabbitSeries::V4_0,
        }
    }
}

/// A buffer is a quorum queue where its cluster can lose a node and keep a majority (3 nodes
/// or more), a classic one otherwise (a quorum queue on 1 or 2 nodes stops with either).
/// Changing it (or the expiry or TTL) for an existing buffer needs the buffer deleted first
/// (RabbitMQ refuses to redeclare a queue with other arguments): the backend's plan holds such
/// a change and says so (`plan::federation`), since draining and re-creating a buffer is not
/// automated yet.
pub fn buffer_queue_type(nodes: usize) -> &'static str {
    if nodes >= 3 { "quorum" } else { "classic" }
}

impl Upstream {
    /// The `value` of a `federation-upstream` runtime parameter. `resource-cleanup-mode:
    /// never`: a link that stops (its upstream or policy replaced, its node replaced) leaves
    /// its buffer and what it holds; the buffer expires only after `expires` without a link.
    pub fn parameter_value(&self) -> Value {
        let uri = match self.uris.as_slice() {
            [one] => Value::String(one.clone()),
            many => json!(many),
        };
        let mut value = json!({
            "uri": uri,
            "exchange": self.exchange,
            "max-hops": self.settings.max_hops,
            "prefetch-count": self.settings.prefetch,
            "ack-mode": self.settings.ack_mode,
            "reconnect-delay": self.settings.reconnect_delay_s,
            "expires": self.settings.expires_ms,
            "message-ttl": self.settings.message_ttl_ms,
            "queue-type": self.settings.queue_type,
            "resource-cleanup-mode": "never",
            "trust-user-id": false,
        });
        if self.settings.downstream == RabbitSeries::V3_10 {
            // RabbitMQ 3.10's federation knows neither (its buffers are classic queues, and a
            // removed link deletes its buffer): it would refuse the whole upstream.
            if let Some(v) = value.as_object_mut() {
                v.remove("queue-type");
                v.remove("resource-cleanup-mode");
            }
        }
        value
    }
}

/// A policy: federation on one exchange, or the bounds of buffers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    pub name: String,
    /// A regular expression over object names.
    pub pattern: String,
    pub apply_to: &'static str,
    pub priority: u8,
    pub definition: Value,
}

impl Policy {
    /// Federates `exchange` from one upstream.
    pub fn federate(name: String, exchange: &str, upstream: &str) -> Policy {
        Policy {
            name,
            pattern: format!("^{}$", regex_escape(exchange)),
            apply_to: "exchanges",
            priority: 10,
            definition: json!({"federation-upstream": upstream}),
        }
    }

    /// Federates `exchange` from every upstream of a set (one link each).
    pub fn federate_from_set(name: String, exchange: &str, set: &str) -> Policy {
        Policy {
            definition: json!({"federation-upstream-set": set}),
            ..Policy::federate(name, exchange, set)
        }
    }

    /// Bounds the buffers whose names match `pattern`.
    pub fn bound_buffers(name: String, pattern: String, bound: &BufferBound) -> Policy {
        Policy {
            name,
            pattern,
            apply_to: "queues",
            priority: 20,
            definition: json!({
                "max-length": bound.max_messages,
                "max-length-bytes": bound.max_mib * 1024 * 1024,
                "overflow": bound.overflow.as_str(),
            }),
        }
    }

    /// The body of `PUT /api/policies/{vhost}/{name}` (without the vhost).
    pub fn body(&self) -> Value {
        json!({
            "pattern": self.pattern,
            "apply-to": self.apply_to,
            "priority": self.priority,
            "definition": self.definition,
        })
    }

    /// Whether a policy as the management API lists it is this one.
    pub fn matches(&self, listed: &Value) -> bool {
        let body = self.body();
        ["pattern", "apply-to", "priority", "definition"]
            .iter()
            .all(|k| listed[k] == body[k])
    }
}

/// The name of a link's buffer: RabbitMQ names it after the upstream exchange, the
/// downstream cluster and the downstream exchange (`rabbit_federation_exchange_link:
/// upstream_queue_name/3`, 4.0.5), so it outlives nodes and links of the same cluster.
pub fn buffer_name(
    upstream_exchange: &str,
    downstream_cluster: &str,
    downstream_exchange: &str,
) -> String {
    let down = if upstream_exchange == downstream_exchange {
        String::new()
    } else {
        format!(":{downstream_exchange}")
    };
    format!("federation: {upstream_exchange} -> {downstream_cluster}{down}")
}

/// A pattern matching every buffer whose downstream is `cluster`.
pub fn buffers_of(cluster: &str) -> String {
    format!("^federation: .* -> {}(:.*)?$", regex_escape(cluster))
}

/// Escapes regex metacharacters of an exchange name (`amq.topic` → `amq\.topic`).
pub fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Percent-encodes a URI component: everything but RFC 3986's unreserved characters, as
/// Python's `urllib.parse.quote(s, safe="")` does in the boot script, so both produce the same
/// URI for the same secret.
pub fn encode_component(s: &str) -> String {
    const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, UNRESERVED).to_string()
}

/// How a federation link speaks TLS: paths are on the node that runs the link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkTls {
    /// The CA the peer's certificate must chain to.
    pub ca_file: String,
    /// The certificate and key the link presents (a peer may require one).
    pub client_cert: Option<(String, String)>,
    /// The name the peer's certificate must cover, when it differs from the host connected
    /// to (a gateway broker reached at its private address presents the region's name).
    pub server_name: Option<String>,
}

/// A credentialed AMQPS URI with peer verification. `password` is inserted as given: callers
/// pass either a placeholder or an already percent-encoded secret.
pub fn amqps_uri(
    user: &str,
    password: &str,
    host: &str,
    port: u16,
    heartbeat_s: u32,
    tls: &LinkTls,
) -> String {
    let user = encode_component(user);
    let mut uri = format!(
        "amqps://{user}:{password}@{host}:{port}?heartbeat={heartbeat_s}&connection_timeout=10000\
         &verify=verify_peer&cacertfile={}",
        encode_component(&tls.ca_file)
    );
    if let Some((cert, key)) = &tls.client_cert {
        uri.push_str(&format!(
            "&certfile={}&keyfile={}",
            encode_component(cert),
            encode_component(key)
        ));
    }
    if let Some(name) = &tls.server_name {
        uri.push_str(&format!("&server_name_indication={name}"));
    }
    uri
}

/// The gateway's own exchange that receives `exchange` (e.g. `amq.topic`) from the backend.
///
/// Devices never bind to it: it is bound into `exchange` with `#`, so that binding is the only
/// one its federation link propagates to the backend. Device subscriptions stay on the gateway:
/// a reconnection storm does not become binding churn on the backend, and an MQTT 5
/// subscription (whose binding arguments crash a link that carries them on RabbitMQ 4.0.x,
/// rabbitmq-server 13032/13040, fixed in 4.1.0) cannot take the link down.
pub fn from_backend_exchange(exchange: &str) -> String {
    format!("gwctl.from-backend.{exchange}")
}

/// What a gateway's definitions declare for federation.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewaySide {
    pub upstreams: Vec<Upstream>,
    pub policies: Vec<Policy>,
}

/// The gateway side: for each exchange federated from the backend, its upstream (its buffer
/// on the backend, a cluster of `backend_nodes`) and its policy on the gateway's
/// [`from_backend_exchange`], and the bounds of the buffers the backend's links keep here.
///
/// With `routing.mode: router`, the exchange that carries messages for devices
/// (`routing.exchange`) is not federated itself: the gateway federates the router's exchange
/// for its region ([`delivery::region_exchange`]), into which the backend binds the broadcast
/// exchange. One link, one buffer: a device's messages keep their order whether the router
/// knew where it was or broadcast them. No gateway receives another region's targeted
/// messages, and the backend sees no device subscription either way.
pub fn gateway_side(
    gw: &GatewaySpec,
    backend_uris: &[String],
    backend_nodes: usize,
) -> GatewaySide {
    let settings = LinkSettings {
        downstream: gw.brokers.series(),
        ..LinkSettings::new(&gw.federation, backend_nodes)
    };
    let mut side = GatewaySide {
        upstreams: Vec::new(),
        policies: Vec::new(),
    };
    for x in &gw.federation.from_backend {
        let name = gateway_upstream_name(&x.exchange);
        let routed = gw.routing.mode == RoutingMode::Router && x.peer() == gw.routing.exchange;
        let exchange = if routed {
            delivery::region_exchange(&gw.region)
        } else {
            x.peer().to_string()
        };
        side.upstreams.push(Upstream {
            name: name.clone(),
            uris: backend_uris.to_vec(),
            exchange,
            settings: settings.clone(),
        });
        side.policies.push(Policy::federate(
            format!("federate-from-backend.{}", x.exchange),
            &from_backend_exchange(&x.exchange),
            &name,
        ));
    }
    side.policies.push(Policy::bound_buffers(
        "gwctl.buffers.to-backend".into(),
        "^federation: ".into(),
        &gw.federation.buffers.to_backend,
    ));
    side
}

/// The gateway's upstream for one exchange federated from the backend.
pub fn gateway_upstream_name(exchange: &str) -> String {
    format!("backend.{exchange}")
}

/// The gateway's policies federating from the backend, as its definitions declare them
/// (what `upgrade` pauses, resumes, or re-creates when a link is lost).
pub fn gateway_link_policies(gw: &GatewaySpec) -> Vec<Policy> {
    gateway_side(gw, &[], 1)
        .policies
        .into_iter()
        .filter(|p| p.definition.get("federation-upstream").is_some())
        .collect()
}

/// The backend's exchange receiving what one region's gateways send to `exchange`: each
/// region has its own, federated from that region only and bound into the backend exchange
/// with `#`. No backend object is shared between regions, so regions never edit one another's
/// entries (no shared upstream set whose change restarts every link), and two machines
/// applying two regions cannot race.
pub fn region_exchange(region: &str, exchange: &str) -> String {
    format!("gwctl.from-gateway.{region}.{exchange}")
}

/// The gateway region a backend exchange receives from (`gwctl.from-gateway.<region>.<exchange>`,
/// see [`region_exchange`]), among `regions`.
pub fn region_received_through<'r>(exchange: &str, regions: &'r [String]) -> Option<&'r str> {
    // `region_exchange("", "")` is the prefix followed by the separating dot.
    let prefix = region_exchange("", "");
    let tail = exchange.strip_prefix(prefix.strip_suffix('.')?)?;
    regions
        .iter()
        .filter(|r| tail.starts_with(&format!("{r}.")))
        .max_by_key(|r| r.len())
        .map(String::as_str)
}

/// Everything the backend holds for one region.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendSide {
    pub upstreams: Vec<Upstream>,
    /// Upstream sets: while the region moves blue-green, each region exchange federates from
    /// both clusters (name, member upstreams).
    pub sets: Vec<(String, Vec<String>)>,
    /// The region's exchanges, each bound into a backend exchange.
    pub exchanges: Vec<RegionExchange>,
    /// Federation of each region exchange, and the bounds of the region's buffers here.
    pub policies: Vec<Policy>,
    /// With the router, the exchange the region's gateways federate from here
    /// (`gw.<region>`), which the broadcast exchange is bound into: it must exist before the
    /// gateways' links can start (a link only passive-declares its upstream exchange).
    pub router_exchange: Option<String>,
}

/// A backend exchange receiving what one region's gateways send (see [`region_exchange`]),
/// bound into `into` with `keys`. Only those keys cross the link: the link propagates the
/// exchange's bindings to the gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionExchange {
    pub name: String,
    pub into: String,
    pub keys: Vec<String>,
}

/// The cluster a region is moving off (blue-green) while it still runs: the backend keeps its
/// link to it, beside the new cluster's, until what its brokers buffered for the backend has
/// arrived.
#[derive(Debug, Clone, PartialEq)]
pub struct Draining {
    pub cluster: String,
    /// Its brokers' AMQPS URIs (credentials included, as for the region's own upstream).
    pub uris: Vec<String>,
}

/// The backend side for one gateway region (and the cluster it moves off, if any).
///
/// A link's buffer on the gateway is named after the backend's cluster and the backend's
/// exchange (see [`buffer_name`]), not after the upstream: the old cluster's link must
/// federate into the very exchange its buffer names, so both clusters' links run on the
/// region exchange, through an upstream set (named as the region's upstream was).
/// `serving` is the cluster `gateway_uris` lead to (the files' cluster, unless the region
/// still runs only its old one).
pub fn backend_side(
    gw: &GatewaySpec,
    gateway_uris: &[String],
    serving: Option<&str>,
    draining: Option<&Draining>,
) -> BackendSide {
    let settings = LinkSettings::new(&gw.federation, usize::from(gw.brokers.count));
    let region = &gw.region;
    let mut side = BackendSide {
        upstreams: Vec::new(),
        sets: Vec::new(),
        exchanges: Vec::new(),
        policies: Vec::new(),
        router_exchange: (gw.routing.mode == RoutingMode::Router)
            .then(|| delivery::region_exchange(region)),
    };
    // What devices send, and with the router, the gateways' connection events (only those
    // its bindings ask for cross: the event exchange publishes much more).
    let mut sources: Vec<(&str, &str, Vec<String>)> = gw
        .federation
        .to_backend
        .iter()
        .map(|x| (x.exchange.as_str(), x.peer(), vec!["#".to_string()]))
        .collect();
    if gw.routing.mode == RoutingMode::Router {
        sources.push((
            delivery::EVENT_SOURCE,
            delivery::EVENTS_EXCHANGE,
            delivery::CONNECTION_EVENTS.map(String::from).to_vec(),
        ));
    }
    for (exchange, into, keys) in sources {
        let cluster = serving.map_or_else(|| gw.cluster_name(), str::to_string);
        let name = cluster_upstream_name(region, exchange, &cluster);
        let local = region_exchange(region, exchange);
        let policy = format!("{}federate.{}", region_prefix(region), exchange);
        match draining {
            None => side.policies.push(Policy::federate(policy, &local, &name)),
            Some(d) => {
                let old = cluster_upstream_name(region, exchange, &d.cluster);
                side.upstreams.push(Upstream {
                    name: old.clone(),
                    uris: d.uris.clone(),
                    exchange: exchange.to_string(),
                    settings: settings.clone(),
                });
                let set = backend_upstream_name(region, exchange);
                side.sets.push((set.clone(), vec![old, name.clone()]));
                side.policies
                    .push(Policy::federate_from_set(policy, &local, &set));
            }
        }
        side.exchanges.push(RegionExchange {
            name: local,
            into: into.to_string(),
            keys,
        });
        side.upstreams.push(Upstream {
            name,
            uris: gateway_uris.to_vec(),
            exchange: exchange.to_string(),
            settings: settings.clone(),
        });
    }
    side.policies.push(Policy::bound_buffers(
        format!("{}buffers", region_prefix(region)),
        buffers_of(&gw.cluster_name()),
        &gw.federation.buffers.from_backend,
    ));
    side
}

/// The backend's upstream for a region's cluster and one exchange. It is named after the
/// cluster (but for the region's default cluster name, which earlier versions used alone), so
/// an upstream never moves from one cluster to another: a link of a new upstream name picks
/// the internal exchange it creates on the gateway without knowing the one another name's
/// link uses, and deleting-then-declaring that one would, for a moment, leave what devices
/// publish routed nowhere (`rabbit_federation_exchange_link:ensure_internal_exchange`, 4.0.5).
pub fn cluster_upstream_name(region: &str, backend_exchange: &str, cluster: &str) -> String {
    let name = backend_upstream_name(region, backend_exchange);
    if cluster == format!("gw-{region}") {
        name
    } else {
        format!("{name}@{cluster}")
    }
}

/// The upstreams' (for compatibility with tests and drift checks).
pub fn backend_upstreams(gw: &GatewaySpec, gateway_uris: &[String]) -> Vec<Upstream> {
    backend_side(gw, gateway_uris, None, None).upstreams
}

/// Every backend object of a region starts with this (upstreams, policies).
pub fn region_prefix(region: &str) -> String {
    format!("gw.{region}.")
}

pub fn backend_upstream_name(region: &str, backend_exchange: &str) -> String {
    format!("{}{backend_exchange}", region_prefix(region))
}

/// Upstream sets of earlier gwctl versions (`gateways.<exchange>`, shared by all regions,
/// applied by the policy `federate-from-gateways.<exchange>`): planned away region by region.
pub const LEGACY_SET_PREFIX: &str = "gateways.";
pub const LEGACY_POLICY_PREFIX: &str = "federate-from-gateways.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_read_from_the_exchange_messages_came_through() {
        let regions = vec!["us-east-1".to_string(), "us-east-10".to_string()];
        assert_eq!(
            region_received_through("gwctl.from-gateway.us-east-10.amq.topic", &regions),
            Some("us-east-10")
        );
        assert_eq!(
            region_received_through("gwctl.from-gateway.us-east-1.amq.rabbitmq.event", &regions),
            Some("us-east-1")
        );
        assert_eq!(region_received_through("amq.topic", &regions), None);
    }

    #[test]
    fn escapes_exchange_names_in_patterns() {
        assert_eq!(regex_escape("amq.topic"), "amq\\.topic");
        let p = Policy::federate("p".into(), "amq.topic", "up");
        assert_eq!(p.pattern, "^amq\\.topic$");
        assert_eq!(p.body()["definition"]["federation-upstream"], "up");
    }

    #[test]
    fn buffer_names_follow_rabbitmq_and_match_their_region_only() {
        let name = buffer_name("amq.topic", "gw-us-east-1", "gwctl.from-backend.amq.topic");
        assert_eq!(
            name,
            "federation: amq.topic -> gw-us-east-1:gwctl.from-backend.amq.topic"
        );
        assert_eq!(buffer_name("x", "backend", "x"), "federation: x -> backend");
        let re = regex_lite::Regex::new(&buffers_of("gw-us-east-1")).expect("regex");
        assert!(re.is_match(&name));
        assert!(!re.is_match("federation: amq.topic -> gw-us-east-10:x"));
        assert!(!re.is_match("federation: amq.topic -> gw-ap-northeast-1:x"));
    }
}
