//! The backend's side of federation, planned like AWS resources: for one gateway region, an
//! upstream per federated exchange pointing at that gateway, its membership in the backend's
//! upstream set for the exchange, and the policy applying the set. Other regions' entries are
//! never touched; a set shared with other regions only loses this region's members.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::broker::{self, BrokerError, Client};
use crate::model::Action;
use crate::model::federation::{self, Policy, Upstream};
use crate::spec::GatewaySpec;

const VHOST: &str = "/";
const UPSTREAM: &str = "federation-upstream";
const SET: &str = "federation-upstream-set";

#[derive(Debug, Clone)]
pub enum FedOp {
    PutUpstream(Upstream),
    DeleteUpstream(String),
    PutSet { name: String, members: Vec<String> },
    DeleteSet(String),
    PutPolicy(Policy),
    DeletePolicy(String),
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
}

impl FederationPlan {
    pub fn has_changes(&self) -> bool {
        self.endpoints_pending || self.changes.iter().any(|c| c.action != Action::NoOp)
    }

    /// What this plan knew, as a hash: every entry with its action and its masked detail.
    /// Upstream URIs enter masked, so no secret (not even its hash) goes into it; entries
    /// known only after apply enter as such, so they never make a saved plan stale. Shared
    /// upstream sets enter by name only: other regions change their own members under their
    /// own locks, and this region's members follow from its upstreams (re-planned when applied).
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
        super::fingerprint(&(self.endpoints_pending, view))
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

fn region_prefix(region: &str) -> String {
    format!("gw.{region}.")
}

/// Plans the backend side for `region`: `gateway` is `None` to remove the region
/// (`down`); `gateway_uris` is `None` while its brokers do not exist yet.
pub async fn plan(
    backend: &Client,
    region: &str,
    gateway: Option<&GatewaySpec>,
    gateway_uris: Option<&[String]>,
) -> Result<FederationPlan, BrokerError> {
    let (upstreams, sets, policies) = tokio::try_join!(
        backend.parameters(UPSTREAM, VHOST),
        backend.parameters(SET, VHOST),
        backend.policies(VHOST),
    )?;
    let prefix = region_prefix(region);
    let mut out = FederationPlan {
        region: region.to_string(),
        ..Default::default()
    };

    // This region's upstreams.
    let wanted: Vec<Upstream> = match (gateway, gateway_uris) {
        (Some(gw), Some(uris)) => federation::backend_upstreams(gw, uris),
        (Some(gw), None) => {
            out.endpoints_pending = true;
            federation::backend_upstreams(gw, &[])
        }
        (None, _) => Vec::new(),
    };
    let wanted_names: BTreeSet<&str> = wanted.iter().map(|u| u.name.as_str()).collect();
    for u in &wanted {
        let object = format!("{UPSTREAM}/{}", u.name);
        let value = u.parameter_value();
        let detail = if out.endpoints_pending {
            "uri (known after apply)".to_string()
        } else {
            broker::mask_uris(&value["uri"].to_string())
        };
        let (action, op) = match upstreams.get(&u.name) {
            _ if out.endpoints_pending => (Action::Create, None),
            None => (Action::Create, Some(FedOp::PutUpstream(u.clone()))),
            Some(v) if v == &value => (Action::NoOp, None),
            Some(_) => (Action::Update, Some(FedOp::PutUpstream(u.clone()))),
        };
        out.changes.push(FedChange {
            action,
            object,
            detail,
            op,
        });
    }
    for name in upstreams
        .keys()
        .filter(|n| n.starts_with(&prefix) && !wanted_names.contains(n.as_str()))
    {
        out.changes.push(FedChange {
            action: Action::Delete,
            object: format!("{UPSTREAM}/{name}"),
            detail: "owned by this region, no longer declared".into(),
            op: Some(FedOp::DeleteUpstream(name.clone())),
        });
    }

    // Sets and policies: keep other regions' members, put this region's.
    let wanted_sets: BTreeMap<String, Vec<String>> = match gateway {
        Some(gw) => federation::backend_sets([gw])
            .into_iter()
            .map(|(x, m)| (federation::backend_set_name(&x), m))
            .collect(),
        None => BTreeMap::new(),
    };
    let mut set_names: BTreeSet<String> = wanted_sets.keys().cloned().collect();
    set_names.extend(
        sets.iter()
            .filter(|(_, v)| members(v).iter().any(|m| m.starts_with(&prefix)))
            .map(|(n, _)| n.clone()),
    );
    for set in set_names {
        let current = sets.get(&set).map(members).unwrap_or_default();
        let mut next: Vec<String> = current
            .iter()
            .filter(|m| !m.starts_with(&prefix))
            .cloned()
            .collect();
        next.extend(wanted_sets.get(&set).cloned().unwrap_or_default());
        next.sort();
        next.dedup();
        let mut sorted_current = current.clone();
        sorted_current.sort();
        let exchange = set.strip_prefix("gateways.").unwrap_or(&set).to_string();
        let policy = federation::backend_policy(&exchange);
        let object = format!("{SET}/{set}");
        if next.is_empty() {
            out.changes.push(FedChange {
                action: Action::Delete,
                object: format!("policy/{}", policy.name),
                detail: "no gateway federates this exchange any more".into(),
                op: Some(FedOp::DeletePolicy(policy.name.clone())),
            });
            out.changes.push(FedChange {
                action: Action::Delete,
                object,
                detail: format!("members {current:?}"),
                op: Some(FedOp::DeleteSet(set)),
            });
            continue;
        }
        let action = match sets.get(&set) {
            None => Action::Create,
            Some(_) if sorted_current == next => Action::NoOp,
            Some(_) => Action::Update,
        };
        let op = (action != Action::NoOp).then(|| FedOp::PutSet {
            name: set.clone(),
            members: next.clone(),
        });
        out.changes.push(FedChange {
            action,
            object,
            detail: format!("members {next:?}"),
            op,
        });
        let body = policy.body();
        let current_policy = policies.get(&policy.name);
        let same = current_policy.is_some_and(|p| {
            p["pattern"] == body["pattern"]
                && p["definition"] == body["definition"]
                && p["apply-to"] == body["apply-to"]
        });
        let action = match current_policy {
            None => Action::Create,
            Some(_) if same => Action::NoOp,
            Some(_) => Action::Update,
        };
        let op = (action != Action::NoOp).then(|| FedOp::PutPolicy(policy.clone()));
        out.changes.push(FedChange {
            action,
            object: format!("policy/{}", policy.name),
            detail: json!(body["definition"]).to_string(),
            op,
        });
    }
    Ok(out)
}

/// Applies the plan: upstreams before the sets naming them, sets before their policies;
/// removals in the reverse order.
pub async fn apply(backend: &Client, plan: &FederationPlan) -> Result<usize, BrokerError> {
    let rank = |op: &FedOp| match op {
        FedOp::PutUpstream(_) => 0,
        FedOp::PutSet { .. } => 1,
        FedOp::PutPolicy(_) => 2,
        FedOp::DeletePolicy(_) => 3,
        FedOp::DeleteSet(_) => 4,
        FedOp::DeleteUpstream(_) => 5,
    };
    let mut ops: Vec<&FedOp> = plan.changes.iter().filter_map(|c| c.op.as_ref()).collect();
    ops.sort_by_key(|op| rank(op));
    for op in &ops {
        match op {
            FedOp::PutUpstream(u) => backend.put_upstream(VHOST, u).await?,
            FedOp::PutSet { name, members } => {
                backend.put_upstream_set(VHOST, name, members).await?
            }
            FedOp::PutPolicy(p) => backend.put_policy(VHOST, p).await?,
            FedOp::DeletePolicy(name) => backend.delete_policy(VHOST, name).await?,
            FedOp::DeleteSet(name) => backend.delete_parameter(SET, VHOST, name).await?,
            FedOp::DeleteUpstream(name) => backend.delete_parameter(UPSTREAM, VHOST, name).await?,
        }
    }
    Ok(ops.len())
}
