//! The backend's side of federation, planned like AWS resources: for one gateway region, its
//! own exchange per federated exchange (bound into the backend exchange), an upstream
//! pointing at that gateway, the policy federating the region exchange from it, and the bounds
//! of the region's buffers on the backend. Every object carries the region in its name; no
//! object is shared between regions, so a region's plan never changes another region's links.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::broker::{self, BrokerError, Client};
use crate::model::Action;
use crate::model::federation::{
    self, LEGACY_POLICY_PREFIX, LEGACY_SET_PREFIX, Policy, Upstream, region_exchange, region_prefix,
};
use crate::spec::GatewaySpec;

const VHOST: &str = "/";
const UPSTREAM: &str = "federation-upstream";
const SET: &str = "federation-upstream-set";
const BROADCAST_EXCHANGE: &str = crate::model::delivery::BROADCAST_EXCHANGE;

#[derive(Debug, Clone)]
pub enum FedOp {
    PutExchange(String),
    /// Binds a region exchange into a backend exchange (declared first when it is gwctl's
    /// own, e.g. the router's events exchange, shared by every region).
    Bind {
        source: String,
        destination: String,
        routing_key: String,
    },
    /// A binding of the region's exchange that is no longer declared (its `peer_exchange`
    /// changed): left, it would keep sending the region's messages to the old exchange.
    Unbind {
        source: String,
        destination: String,
        routing_key: String,
    },
    PutUpstream(Upstream),
    PutPolicy(Policy),
    DeletePolicy(String),
    DeleteUpstream(String),
    DeleteExchange(String),
    /// Earlier versions' shared upstream sets, shrunk to the other regions' members.
    PutSet {
        name: String,
        members: Vec<String>,
    },
    DeleteSet(String),
}

#[derive(Debug, Clone)]
pub struct FedChange {
    pub action: Action,
    /// e.g. `federation-upstream/gw.us-east-1.amq.topic`
    pub object: String,
    /// What changes, passwords masked.
    pub detail: String,
    pub op: Option<FedOp>,
}

#[derive(Debug, Clone, Default)]
pub struct FederationPlan {
    pub region: String,
    pub changes: Vec<FedChange>,
    /// The gateway's brokers do not exist yet: their upstream URIs are known after apply.
    pub endpoints_pending: bool,
    /// Removing the region (`down`): its buffers on the backend (name, messages held), deleted
    /// once its brokers are gone (a running gateway's link would declare them again).
    pub buffers: Vec<(String, u64)>,
    /// Removing the region: the policy bounding its buffers is still there (it goes last).
    pub bounds_left: bool,
    /// Changes left alone because applying them would stop a link (shown, not applied).
    pub held: Vec<String>,
}

impl FederationPlan {
    pub fn has_changes(&self) -> bool {
        self.endpoints_pending
            || self.bounds_left
            || !self.buffers.is_empty()
            || self.changes.iter().any(|c| c.action != Action::NoOp)
    }

    /// What this plan knew, as a hash: every entry with its action and its masked detail.
    /// Upstream URIs enter masked, so no secret (not even its hash) goes into it; entries
    /// known only after apply enter as such, so they never make a saved plan stale. Legacy
    /// shared sets enter by name only (other regions shrink them under their own locks);
    /// buffers by name (what they hold changes by the second).
    pub fn fingerprint(&self) -> String {
        let view: Vec<(&str, Action, &str)> = self
            .changes
            .iter()
            .map(|c| {
                if c.object.starts_with(SET) {
                    (c.object.as_str(), Action::NoOp, "")
                } else {
                    (c.object.as_str(), c.action, c.detail.as_str())
                }
            })
            .collect();
        let buffers: Vec<&str> = self.buffers.iter().map(|(n, _)| n.as_str()).collect();
        super::fingerprint(&(self.endpoints_pending, view, buffers))
    }
}

fn members(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["upstream"].as_str().map(str::to_string))
        .collect()
}

fn change(action: Action, object: String, detail: impl Into<String>, op: FedOp) -> FedChange {
    FedChange {
        action,
        object,
        detail: detail.into(),
        op: (action != Action::NoOp).then_some(op),
    }
}

/// What the backend holds for a region now.
struct Observed {
    upstreams: BTreeMap<String, Value>,
    sets: BTreeMap<String, Value>,
    policies: BTreeMap<String, Value>,
    /// The region's exchanges and their exchange bindings (destination, routing key).
    exchanges: BTreeMap<String, Vec<(String, String)>>,
    /// The router's exchanges (`gw.…`) that exist.
    router_exchanges: BTreeSet<String>,
    /// The broadcast exchange's bindings (destination, routing key).
    broadcast_bindings: Vec<(String, String)>,
}

async fn observe(backend: &Client, region: &str) -> Result<Observed, BrokerError> {
    let exchange_prefix = region_exchange(region, "");
    let (upstreams, sets, policies, names, routed, broadcast_bindings) = tokio::try_join!(
        backend.parameters(UPSTREAM, VHOST),
        backend.parameters(SET, VHOST),
        backend.policies(VHOST),
        backend.exchanges(VHOST, &exchange_prefix),
        backend.exchanges(VHOST, "gw."),
        backend.bindings_from(VHOST, BROADCAST_EXCHANGE),
    )?;
    let mut exchanges = BTreeMap::new();
    for name in names {
        let bindings = backend.bindings_from(VHOST, &name).await?;
        exchanges.insert(name, bindings);
    }
    Ok(Observed {
        upstreams,
        sets,
        policies,
        exchanges,
        router_exchanges: routed.into_iter().collect(),
        broadcast_bindings,
    })
}

/// Plans the backend side for `region`: `gateway` is `None` to remove the region
/// (`down`); `gateway_uris` is `None` while its brokers do not exist yet.
pub async fn plan(
    backend: &Client,
    region: &str,
    gateway: Option<&GatewaySpec>,
    gateway_uris: Option<&[String]>,
    serving: Option<&str>,
    draining: Option<&federation::Draining>,
) -> Result<FederationPlan, BrokerError> {
    let seen = observe(backend, region).await?;
    let prefix = region_prefix(region);
    let mut out = FederationPlan {
        region: region.to_string(),
        ..Default::default()
    };
    let wanted = match (gateway, gateway_uris) {
        (Some(gw), Some(uris)) => Some(federation::backend_side(gw, uris, serving, draining)),
        (Some(gw), None) => {
            out.endpoints_pending = true;
            Some(federation::backend_side(gw, &[], serving, draining))
        }
        (None, _) => None,
    };

    // The region's exchanges, bound into the backend exchanges.
    let wanted_exchanges: Vec<federation::RegionExchange> = wanted
        .as_ref()
        .map(|w| w.exchanges.clone())
        .unwrap_or_default();
    for x in &wanted_exchanges {
        let (local, into) = (&x.name, &x.into);
        let seen_bindings = seen.exchanges.get(local);
        out.changes.push(change(
            if seen_bindings.is_none() {
                Action::Create
            } else {
                Action::NoOp
            },
            format!("exchange/{local}"),
            "topic, durable",
            FedOp::PutExchange(local.clone()),
        ));
        for key in &x.keys {
            let bound = seen_bindings.is_some_and(|b| b.iter().any(|(d, k)| d == into && k == key));
            out.changes.push(change(
                if bound { Action::NoOp } else { Action::Create },
                format!("binding/{local} -> {into}"),
                format!("routing key {key}"),
                FedOp::Bind {
                    source: local.clone(),
                    destination: into.clone(),
                    routing_key: key.clone(),
                },
            ));
        }
        for (old, key) in seen_bindings.into_iter().flatten() {
            if old == into && x.keys.contains(key) {
                continue;
            }
            out.changes.push(change(
                Action::Delete,
                format!("binding/{local} -> {old}"),
                format!("routing key {key}, no longer declared"),
                FedOp::Unbind {
                    source: local.clone(),
                    destination: old.clone(),
                    routing_key: key.clone(),
                },
            ));
        }
    }

    // The router's exchange of the region, which its gateways federate, with the broadcast
    // exchange bound into it; it goes with the region (`gw.all` is every region's).
    let own = crate::model::delivery::region_exchange(region);
    if let Some(name) = wanted.as_ref().and_then(|w| w.router_exchange.as_ref()) {
        for x in [BROADCAST_EXCHANGE, name.as_str()] {
            if !seen.router_exchanges.contains(x) {
                out.changes.push(change(
                    Action::Create,
                    format!("exchange/{x}"),
                    "topic, durable (the router's)",
                    FedOp::PutExchange(x.to_string()),
                ));
            }
        }
        let bound = seen
            .broadcast_bindings
            .iter()
            .any(|(d, k)| d == name && k == "#");
        out.changes.push(change(
            if bound { Action::NoOp } else { Action::Create },
            format!("binding/{BROADCAST_EXCHANGE} -> {name}"),
            "routing key #",
            FedOp::Bind {
                source: BROADCAST_EXCHANGE.to_string(),
                destination: name.clone(),
                routing_key: "#".into(),
            },
        ));
    } else if seen.router_exchanges.contains(&own) {
        out.changes.push(change(
            Action::Delete,
            format!("exchange/{own}"),
            "the router's exchange of the region (with its bindings)",
            FedOp::DeleteExchange(own.clone()),
        ));
    }

    // Its upstreams.
    let wanted_upstreams = wanted
        .as_ref()
        .map(|w| w.upstreams.clone())
        .unwrap_or_default();
    for u in &wanted_upstreams {
        let value = u.parameter_value();
        let detail = if out.endpoints_pending {
            "uri (known after apply)".to_string()
        } else {
            broker::mask_uris(&value["uri"].to_string())
        };
        let object = format!("{UPSTREAM}/{}", u.name);
        match seen.upstreams.get(&u.name) {
            _ if out.endpoints_pending => out.changes.push(FedChange {
                action: Action::Create,
                object,
                detail,
                op: None,
            }),
            None => out.changes.push(change(
                Action::Create,
                object,
                detail,
                FedOp::PutUpstream(u.clone()),
            )),
            Some(v) if v != &value && !same_buffer(v, &value) => {
                out.held.push(format!(
                    "{object}: its buffer would change (expires, message-ttl or queue-type): \
                     RabbitMQ refuses to declare an existing queue with other arguments, so the \
                     link would stop; gwctl leaves this link as it is (draining and re-creating \
                     its buffer is not automated yet)"
                ));
                out.changes.push(FedChange {
                    action: Action::NoOp,
                    object,
                    detail,
                    op: None,
                });
            }
            Some(v) => out.changes.push(change(
                if v == &value {
                    Action::NoOp
                } else {
                    Action::Update
                },
                object,
                detail,
                FedOp::PutUpstream(u.clone()),
            )),
        }
    }

    // Its upstream sets (both clusters' links while it moves blue-green).
    let wanted_sets = wanted.as_ref().map(|w| w.sets.clone()).unwrap_or_default();
    for (name, members_wanted) in &wanted_sets {
        let action = match seen.sets.get(name) {
            None => Action::Create,
            Some(v) if &members(v) == members_wanted => Action::NoOp,
            Some(_) => Action::Update,
        };
        out.changes.push(change(
            action,
            format!("{SET}/{name}"),
            format!("members {members_wanted:?}"),
            FedOp::PutSet {
                name: name.clone(),
                members: members_wanted.clone(),
            },
        ));
    }
    for name in seen.sets.keys().filter(|n| n.starts_with(&prefix)) {
        if !wanted_sets.iter().any(|(w, _)| w == name) {
            out.changes.push(change(
                Action::Delete,
                format!("{SET}/{name}"),
                "owned by this region, no longer declared",
                FedOp::DeleteSet(name.clone()),
            ));
        }
    }

    // Its policies: federation of each region exchange, bounds of its buffers.
    let wanted_policies = wanted
        .as_ref()
        .map(|w| w.policies.clone())
        .unwrap_or_default();
    for p in &wanted_policies {
        let action = match seen.policies.get(&p.name) {
            None => Action::Create,
            Some(listed) if p.matches(listed) => Action::NoOp,
            Some(_) => Action::Update,
        };
        out.changes.push(change(
            action,
            format!("policy/{}", p.name),
            p.definition.to_string(),
            FedOp::PutPolicy(p.clone()),
        ));
    }

    // What the region owns and no longer declares.
    let names = |v: &[String]| v.iter().cloned().collect::<BTreeSet<String>>();
    let keep_policies = names(
        &wanted_policies
            .iter()
            .map(|p| p.name.clone())
            .collect::<Vec<_>>(),
    );
    // Removing the region, its buffers' bounds stay until the buffers go (`delete_buffers`):
    // a `down` interrupted before then finds them again through it.
    let bounds = format!("{prefix}buffers");
    for name in seen.policies.keys().filter(|n| n.starts_with(&prefix)) {
        if gateway.is_none() && *name == bounds {
            continue;
        }
        if !keep_policies.contains(name) {
            out.changes.push(change(
                Action::Delete,
                format!("policy/{name}"),
                "owned by this region, no longer declared",
                FedOp::DeletePolicy(name.clone()),
            ));
        }
    }
    let keep_upstreams = names(
        &wanted_upstreams
            .iter()
            .map(|u| u.name.clone())
            .collect::<Vec<_>>(),
    );
    for name in seen.upstreams.keys().filter(|n| n.starts_with(&prefix)) {
        if !keep_upstreams.contains(name) {
            out.changes.push(change(
                Action::Delete,
                format!("{UPSTREAM}/{name}"),
                "owned by this region, no longer declared",
                FedOp::DeleteUpstream(name.clone()),
            ));
        }
    }
    let keep_exchanges = names(
        &wanted_exchanges
            .iter()
            .map(|x| x.name.clone())
            .collect::<Vec<_>>(),
    );
    for name in seen.exchanges.keys() {
        if !keep_exchanges.contains(name) {
            out.changes.push(change(
                Action::Delete,
                format!("exchange/{name}"),
                "owned by this region, no longer declared (with its bindings)",
                FedOp::DeleteExchange(name.clone()),
            ));
        }
    }
    legacy_sets(&seen, &prefix, &mut out);

    // Removing the region: its buffers on the backend go after its brokers (found through
    // their bounds' policy, which goes with them).
    out.bounds_left = gateway.is_none() && seen.policies.contains_key(&bounds);
    if gateway.is_none()
        && let Some(policy) = seen.policies.get(&bounds)
        && let Some(pattern) = policy["pattern"].as_str()
        && let Some(cluster) = buffer_cluster(pattern)
    {
        out.buffers = backend
            .queues(VHOST, "federation: ")
            .await?
            .into_iter()
            .filter(|(name, _)| {
                name.rsplit_once(" -> ").is_some_and(|(_, down)| {
                    down == cluster || down.starts_with(&format!("{cluster}:"))
                })
            })
            .collect();
    }
    Ok(out)
}

/// Whether two upstream definitions give their link's buffer the same arguments.
fn same_buffer(a: &Value, b: &Value) -> bool {
    ["expires", "message-ttl", "queue-type"]
        .iter()
        .all(|k| a[k] == b[k])
}

/// The cluster a buffer policy's pattern ([`federation::buffers_of`]) names.
fn buffer_cluster(pattern: &str) -> Option<String> {
    let escaped = pattern
        .strip_prefix("^federation: .* -> ")?
        .strip_suffix("(:.*)?$")?;
    let mut out = String::new();
    let mut chars = escaped.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' { chars.next()? } else { c });
    }
    Some(out)
}

/// Earlier versions federated each backend exchange from an upstream set shared by all
/// regions: this region leaves it (the set and its policy go with the last member).
fn legacy_sets(seen: &Observed, prefix: &str, out: &mut FederationPlan) {
    for (set, value) in seen
        .sets
        .iter()
        .filter(|(n, _)| n.starts_with(LEGACY_SET_PREFIX))
    {
        let current = members(value);
        if !current.iter().any(|m| m.starts_with(prefix)) {
            continue;
        }
        let rest: Vec<String> = current
            .iter()
            .filter(|m| !m.starts_with(prefix))
            .cloned()
            .collect();
        let object = format!("{SET}/{set}");
        if rest.is_empty() {
            let exchange = set.strip_prefix(LEGACY_SET_PREFIX).unwrap_or(set);
            let policy = format!("{LEGACY_POLICY_PREFIX}{exchange}");
            out.changes.push(change(
                Action::Delete,
                format!("policy/{policy}"),
                "shared set of an earlier gwctl, now empty",
                FedOp::DeletePolicy(policy),
            ));
            out.changes.push(change(
                Action::Delete,
                object,
                format!("members {current:?}"),
                FedOp::DeleteSet(set.clone()),
            ));
        } else {
            out.changes.push(change(
                Action::Update,
                object,
                format!("members {rest:?}"),
                FedOp::PutSet {
                    name: set.clone(),
                    members: rest,
                },
            ));
        }
    }
}

/// Applies the plan: exchanges and bindings before the upstreams, upstreams before the
/// policies naming them; removals in the reverse order.
pub async fn apply(backend: &Client, plan: &FederationPlan) -> Result<usize, BrokerError> {
    let rank = |op: &FedOp| match op {
        FedOp::PutExchange(_) => 0,
        FedOp::Bind { .. } => 1,
        // The new binding first: the region's messages always have a way in.
        FedOp::Unbind { .. } => 2,
        FedOp::PutUpstream(_) => 3,
        // A region's own set before the policy naming it; an earlier version's shared set
        // shrinks once the region's own policy runs its link.
        FedOp::PutSet { name, .. } if !name.starts_with(LEGACY_SET_PREFIX) => 4,
        FedOp::PutPolicy(_) => 4,
        FedOp::PutSet { .. } => 5,
        FedOp::DeletePolicy(_) => 6,
        FedOp::DeleteSet(_) => 7,
        FedOp::DeleteUpstream(_) => 8,
        FedOp::DeleteExchange(_) => 9,
    };
    let mut ops: Vec<&FedOp> = plan.changes.iter().filter_map(|c| c.op.as_ref()).collect();
    ops.sort_by_key(|op| rank(op));
    for op in &ops {
        match op {
            FedOp::PutExchange(name) => backend.put_topic_exchange(VHOST, name).await?,
            FedOp::Bind {
                source,
                destination,
                routing_key,
            } => {
                if destination.starts_with("gwctl.") {
                    backend.put_topic_exchange(VHOST, destination).await?;
                }
                backend
                    .bind_exchange(VHOST, source, destination, routing_key)
                    .await?
            }
            FedOp::Unbind {
                source,
                destination,
                routing_key,
            } => {
                backend
                    .unbind_exchange(VHOST, source, destination, routing_key)
                    .await?
            }
            FedOp::PutUpstream(u) => backend.put_upstream(VHOST, u).await?,
            FedOp::PutPolicy(p) => backend.put_policy(VHOST, p).await?,
            FedOp::PutSet { name, members } => {
                backend.put_upstream_set(VHOST, name, members).await?
            }
            FedOp::DeletePolicy(name) => backend.delete_policy(VHOST, name).await?,
            FedOp::DeleteSet(name) => backend.delete_parameter(SET, VHOST, name).await?,
            FedOp::DeleteUpstream(name) => backend.delete_parameter(UPSTREAM, VHOST, name).await?,
            FedOp::DeleteExchange(name) => backend.delete_exchange(VHOST, name).await?,
        }
    }
    Ok(ops.len())
}

/// Deletes a removed region's buffers on the backend; returns the messages they still held.
pub async fn delete_buffers(backend: &Client, plan: &FederationPlan) -> Result<u64, BrokerError> {
    let mut held = 0;
    for (name, _) in &plan.buffers {
        let now = backend
            .queues(VHOST, name)
            .await?
            .into_iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, m)| m);
        backend.delete_queue(VHOST, name).await?;
        held += now;
    }
    backend
        .delete_policy(VHOST, &format!("{}buffers", region_prefix(&plan.region)))
        .await?;
    Ok(held)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffer_policy_names_its_cluster() {
        let pattern = federation::buffers_of("gw-us-east-1");
        assert_eq!(buffer_cluster(&pattern).as_deref(), Some("gw-us-east-1"));
        assert_eq!(buffer_cluster("^something else$"), None);
    }
}
