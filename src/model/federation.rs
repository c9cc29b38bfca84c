//! The federation topology, as data: which upstreams and policies each side needs.
//!
//! Gateways federate from the backend (backend → devices) and the backend federates from each
//! gateway (devices → backend); never gateway ⇄ gateway. `max-hops` is 1 on every link, so a
//! message that crossed one link is never forwarded over another: loops cannot form.
//! The gateway side ships in the rendered definitions; the backend side is applied through
//! the management API. Both are computed here so they cannot disagree.

use serde::Serialize;
use serde_json::{Value, json};

use crate::spec::model::{Federation, GatewaySpec};

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
}

impl From<&Federation> for LinkSettings {
    fn from(f: &Federation) -> Self {
        LinkSettings {
            max_hops: f.max_hops,
            prefetch: f.prefetch,
            ack_mode: f.ack_mode.as_str(),
            reconnect_delay_s: f.reconnect_delay_s,
            expires_ms: f.queue_expires_ms,
            message_ttl_ms: f.message_ttl_ms,
        }
    }
}

impl Upstream {
    /// The `value` of a `federation-upstream` runtime parameter.
    pub fn parameter_value(&self) -> Value {
        let uri = match self.uris.as_slice() {
            [one] => Value::String(one.clone()),
            many => json!(many),
        };
        json!({
            "uri": uri,
            "exchange": self.exchange,
            "max-hops": self.settings.max_hops,
            "prefetch-count": self.settings.prefetch,
            "ack-mode": self.settings.ack_mode,
            "reconnect-delay": self.settings.reconnect_delay_s,
            "expires": self.settings.expires_ms,
            "message-ttl": self.settings.message_ttl_ms,
            "trust-user-id": false,
        })
    }
}

/// A policy applying federation to one exchange.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    pub name: String,
    pub exchange: String,
    pub target: PolicyTarget,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum PolicyTarget {
    Upstream(String),
    UpstreamSet(String),
}

impl Policy {
    pub fn pattern(&self) -> String {
        format!("^{}$", regex_escape(&self.exchange))
    }

    /// The body of `PUT /api/policies/{vhost}/{name}` (without the vhost).
    pub fn body(&self) -> Value {
        let definition = match &self.target {
            PolicyTarget::Upstream(u) => json!({"federation-upstream": u}),
            PolicyTarget::UpstreamSet(s) => json!({"federation-upstream-set": s}),
        };
        json!({
            "pattern": self.pattern(),
            "apply-to": "exchanges",
            "priority": 10,
            "definition": definition,
        })
    }
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

/// The gateway side: one upstream per exchange federated from the backend, and its policy on
/// the gateway's [`from_backend_exchange`].
pub fn gateway_side(gw: &GatewaySpec, backend_uris: &[String]) -> (Vec<Upstream>, Vec<Policy>) {
    let settings = LinkSettings::from(&gw.federation);
    let mut upstreams = Vec::new();
    let mut policies = Vec::new();
    for x in &gw.federation.from_backend {
        let name = format!("backend.{}", x.exchange);
        upstreams.push(Upstream {
            name: name.clone(),
            uris: backend_uris.to_vec(),
            exchange: x.peer().to_string(),
            settings: settings.clone(),
        });
        policies.push(Policy {
            name: format!("federate-from-backend.{}", x.exchange),
            exchange: from_backend_exchange(&x.exchange),
            target: PolicyTarget::Upstream(name),
        });
    }
    (upstreams, policies)
}

/// The backend side for one gateway: an upstream per exchange the backend federates from it.
/// Each backend exchange federates from the set of every gateway that sends to it
/// ([`backend_policies`]).
pub fn backend_upstreams(gw: &GatewaySpec, gateway_uris: &[String]) -> Vec<Upstream> {
    let settings = LinkSettings::from(&gw.federation);
    gw.federation
        .to_backend
        .iter()
        .map(|x| Upstream {
            name: backend_upstream_name(&gw.region, &x.exchange),
            uris: gateway_uris.to_vec(),
            exchange: x.exchange.clone(),
            settings: settings.clone(),
        })
        .collect()
}

pub fn backend_upstream_name(region: &str, backend_exchange: &str) -> String {
    format!("gw.{region}.{backend_exchange}")
}

/// The name of the upstream set federating one backend exchange from the gateways.
pub fn backend_set_name(backend_exchange: &str) -> String {
    format!("gateways.{backend_exchange}")
}

/// Backend exchanges fed by gateways, with the upstreams of each (from `to_backend`, where the
/// backend exchange is `peer_exchange` or the same name).
pub fn backend_sets<'a>(
    gateways: impl IntoIterator<Item = &'a GatewaySpec>,
) -> Vec<(String, Vec<String>)> {
    let mut sets: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for gw in gateways {
        for x in &gw.federation.to_backend {
            sets.entry(x.peer().to_string())
                .or_default()
                .push(backend_upstream_name(&gw.region, &x.exchange));
        }
    }
    sets.into_iter().collect()
}

pub fn backend_policy(backend_exchange: &str) -> Policy {
    Policy {
        name: format!("federate-from-gateways.{backend_exchange}"),
        exchange: backend_exchange.to_string(),
        target: PolicyTarget::UpstreamSet(backend_set_name(backend_exchange)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_exchange_names_in_patterns() {
        assert_eq!(regex_escape("amq.topic"), "amq\\.topic");
        let p = backend_policy("amq.topic");
        assert_eq!(p.pattern(), "^amq\\.topic$");
        assert_eq!(
            p.body()["definition"]["federation-upstream-set"],
            "gateways.amq.topic"
        );
    }
}
