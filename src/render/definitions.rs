//! `definitions.json`: vhost, users, permissions, federation upstreams and policies.
//!
//! RabbitMQ imports this file at boot and silently drops what it cannot use (a missing vhost,
//! an invalid URI, malformed JSON), so [`check`] verifies every cross-reference first.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::placeholder::{self, Encoding, SecretName};
use super::{Addressing, RenderError};
use crate::model::{delivery, federation};
use crate::spec::BackendSpec;
use crate::spec::model::{GatewaySpec, RoutingMode};

pub const VHOST: &str = "/";

fn user(name: &str, secret: SecretName, tags: &[&str]) -> Value {
    json!({
        "name": name,
        "password_hash": placeholder::placeholder(secret, Encoding::RabbitHash),
        "hashing_algorithm": "rabbit_password_hashing_sha256",
        "tags": tags,
        "limits": {},
    })
}

fn permission(user: &str, configure: &str, write: &str, read: &str) -> Value {
    json!({"user": user, "vhost": VHOST, "configure": configure, "write": write, "read": read})
}

/// The federation user's rights on the side a link reads from: declare and use its own
/// `federation: …` queue and exchange, bind them to the exchanges it federates and consume.
/// Nothing else: it cannot read a device's subscription queue nor publish anywhere.
pub fn federation_permission<'a>(
    user: &str,
    federated: impl IntoIterator<Item = &'a str>,
) -> Value {
    let mut names: Vec<String> = federated.into_iter().map(regex_escape).collect();
    names.sort();
    names.dedup();
    let read = format!("^(federation: .*|{})$", names.join("|"));
    permission(user, "^federation: ", "^federation: ", &read)
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let special = ".^$*+?()[]{}|\\".contains(c);
            special
                .then_some('\\')
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect()
}

pub fn gateway(gw: &GatewaySpec, backend: &BackendSpec, addr: &Addressing) -> Value {
    let admin = &gw.credentials.admin.user;
    let fed = &backend.credentials.federation.user;
    let users = vec![
        user(admin, SecretName::AdminPassword, &["administrator"]),
        user(fed, SecretName::FederationPassword, &[]),
    ];
    // The backend's links read the exchanges this gateway sends to the backend (and, for the
    // router, its connection events).
    let routed = gw.routing.mode == RoutingMode::Router;
    let permissions = vec![
        permission(admin, ".*", ".*", ".*"),
        federation_permission(
            fed,
            gw.federation
                .to_backend
                .iter()
                .map(|x| x.exchange.as_str())
                .chain(routed.then_some(delivery::EVENT_SOURCE)),
        ),
    ];
    let heartbeat = 30;
    let uris = super::backend_uris(backend, addr, heartbeat);
    let side = federation::gateway_side(gw, &uris, backend.brokers.endpoints.len());
    // Backend messages arrive in a dedicated exchange bound into the one devices use, so
    // device subscriptions never travel over the link (see federation::from_backend_exchange).
    let from_backend =
        |x: &crate::spec::model::FederatedExchange| federation::from_backend_exchange(&x.exchange);
    let exchanges: Vec<Value> = gw
        .federation
        .from_backend
        .iter()
        .chain(&gw.federation.to_backend)
        .filter(|x| !x.exchange.starts_with("amq."))
        .map(|x| x.exchange.clone())
        .chain(gw.federation.from_backend.iter().map(from_backend))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|name| {
            json!({"name": name, "vhost": VHOST, "type": "topic", "durable": true,
                   "auto_delete": false, "internal": false, "arguments": {}})
        })
        .collect();
    let bindings: Vec<Value> = gw
        .federation
        .from_backend
        .iter()
        .map(|x| {
            json!({"source": from_backend(x), "vhost": VHOST, "destination": x.exchange,
                   "destination_type": "exchange", "routing_key": "#", "arguments": {}})
        })
        .collect();
    json!({
        "vhosts": [{"name": VHOST}],
        "users": users,
        "permissions": permissions,
        "parameters": side.upstreams.iter().map(|u| json!({
            "vhost": VHOST, "component": "federation-upstream", "name": u.name,
            "value": u.parameter_value(),
        })).collect::<Vec<_>>(),
        "policies": side.policies.iter().map(|p| {
            let mut body = p.body();
            if let Some(o) = body.as_object_mut() {
                o.insert("vhost".into(), json!(VHOST));
                o.insert("name".into(), json!(p.name));
            }
            body
        }).collect::<Vec<_>>(),
        "exchanges": exchanges,
        "queues": [],
        "bindings": bindings,
    })
}

/// The backend's definitions; `gateways` decide what its federation user may read (the
/// exchanges gateways federate from it).
pub fn backend(backend: &BackendSpec, gateways: &[&GatewaySpec]) -> Value {
    let admin = &backend.credentials.admin.user;
    let fed = &backend.credentials.federation.user;
    // What gateways federate from here: their upstreams' exchanges.
    let read: Vec<String> = gateways
        .iter()
        .flat_map(|g| federation::gateway_side(g, &[], 1).upstreams)
        .map(|u| u.exchange)
        .collect();
    let mut users = vec![
        user(admin, SecretName::AdminPassword, &["administrator"]),
        user(fed, SecretName::FederationPassword, &[]),
    ];
    let mut permissions = vec![
        permission(admin, ".*", ".*", ".*"),
        federation_permission(fed, read.iter().map(String::as_str)),
    ];
    if let Some(router) = &backend.credentials.router {
        users.push(user(&router.user, SecretName::RouterPassword, &[]));
        permissions.push(router_permission(backend, gateways));
    }
    json!({
        "vhosts": [{"name": VHOST}],
        "users": users,
        "permissions": permissions,
        "parameters": [],
        "policies": [],
        "exchanges": [],
        "queues": [],
        "bindings": [],
    })
}

/// The router's rights on the backend: its own queues; the exchanges it declares and
/// publishes to (`gw.all`, each region's); reading what applications send devices, the
/// gateways' connection events and (to learn from telemetry) where devices' messages arrive.
/// Nothing else.
fn router_permission(backend: &BackendSpec, gateways: &[&GatewaySpec]) -> Value {
    let own = format!("{}.*", regex_escape(delivery::ROUTER_QUEUE_PREFIX));
    let mut outputs: Vec<String> = gateways
        .iter()
        .map(|g| regex_escape(&delivery::region_exchange(&g.region)))
        .collect();
    outputs.push(regex_escape(delivery::BROADCAST_EXCHANGE));
    let outputs = outputs.join("|");
    let events = regex_escape(delivery::EVENTS_EXCHANGE);
    // Telemetry arrives in the backend exchanges the gateways' region exchanges feed.
    let telemetry = gateways.iter().flat_map(|g| {
        g.federation
            .to_backend
            .iter()
            .map(|x| regex_escape(x.peer()))
    });
    let inputs: BTreeSet<String> = [regex_escape(&backend.routing.exchange), events.clone()]
        .into_iter()
        .chain(telemetry)
        .collect();
    let inputs = inputs.into_iter().collect::<Vec<_>>().join("|");
    permission(
        &backend
            .credentials
            .router
            .as_ref()
            .map_or_else(String::new, |r| r.user.clone()),
        &format!("^({own}|{outputs}|{events})$"),
        &format!("^({own}|{outputs})$"),
        &format!("^({own}|{inputs})$"),
    )
}

/// Serialises `defs` after [`check`]ing it.
pub fn to_checked_text(file: &str, defs: &Value) -> Result<String, RenderError> {
    check(defs).map_err(|problems| RenderError::Invalid {
        file: file.to_string(),
        problems: problems.join("; "),
    })?;
    let mut text = serde_json::to_string_pretty(defs).map_err(|e| RenderError::Invalid {
        file: file.to_string(),
        problems: e.to_string(),
    })?;
    text.push('\n');
    Ok(text)
}

/// Everything RabbitMQ would silently drop: references to missing vhosts, users and
/// upstreams, unparsable upstream URIs, clear-text passwords.
pub fn check(defs: &Value) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    let names = |key: &str, field: &str| -> BTreeSet<String> {
        defs[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x[field].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let vhosts = names("vhosts", "name");
    let users = names("users", "name");
    if vhosts.is_empty() {
        problems
            .push("no vhost: RabbitMQ creates no default vhost when loading definitions".into());
    }
    for u in defs["users"].as_array().into_iter().flatten() {
        let name = u["name"].as_str().unwrap_or("?");
        if u.get("password").is_some() {
            problems.push(format!("user `{name}` has a clear-text password"));
        }
        if u["password_hash"].as_str().is_none_or(str::is_empty) {
            problems.push(format!("user `{name}` has no password_hash"));
        }
    }
    for p in defs["permissions"].as_array().into_iter().flatten() {
        let (u, v) = (
            p["user"].as_str().unwrap_or("?"),
            p["vhost"].as_str().unwrap_or("?"),
        );
        if !users.contains(u) {
            problems.push(format!("permission for unknown user `{u}`"));
        }
        if !vhosts.contains(v) {
            problems.push(format!("permission in unknown vhost `{v}`"));
        }
    }
    let mut upstreams = BTreeSet::new();
    let mut sets = BTreeSet::new();
    for p in defs["parameters"].as_array().into_iter().flatten() {
        let name = p["name"].as_str().unwrap_or("?");
        let v = p["vhost"].as_str().unwrap_or("?");
        if !vhosts.contains(v) {
            problems.push(format!("parameter `{name}` in unknown vhost `{v}`"));
        }
        match p["component"].as_str() {
            Some("federation-upstream") => {
                upstreams.insert(name.to_string());
                let uris: Vec<&str> = match &p["value"]["uri"] {
                    Value::String(s) => vec![s.as_str()],
                    Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                    _ => vec![],
                };
                if uris.is_empty() {
                    problems.push(format!("upstream `{name}` has no URI"));
                }
                for uri in uris {
                    if let Err(e) = check_amqp_uri(uri) {
                        problems.push(format!("upstream `{name}`: {e}"));
                    }
                }
            }
            Some("federation-upstream-set") => {
                sets.insert(name.to_string());
            }
            other => problems.push(format!(
                "parameter `{name}` has unexpected component {other:?}"
            )),
        }
    }
    let exchanges = names("exchanges", "name");
    for b in defs["bindings"].as_array().into_iter().flatten() {
        for end in ["source", "destination"] {
            let x = b[end].as_str().unwrap_or("?");
            if !x.starts_with("amq.") && !exchanges.contains(x) {
                problems.push(format!("binding with the undeclared {end} exchange `{x}`"));
            }
        }
    }
    for p in defs["policies"].as_array().into_iter().flatten() {
        let name = p["name"].as_str().unwrap_or("?");
        let v = p["vhost"].as_str().unwrap_or("?");
        if !vhosts.contains(v) {
            problems.push(format!("policy `{name}` in unknown vhost `{v}`"));
        }
        let def = &p["definition"];
        if let Some(u) = def["federation-upstream"].as_str()
            && !upstreams.contains(u)
        {
            problems.push(format!("policy `{name}` names the missing upstream `{u}`"));
        }
        if let Some(s) = def["federation-upstream-set"].as_str()
            && s != "all"
            && !sets.contains(s)
        {
            problems.push(format!(
                "policy `{name}` names the missing upstream set `{s}`"
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// An upstream URI must be `amqp(s)://user:password@host:port` to be accepted by RabbitMQ;
/// placeholders count as valid userinfo.
fn check_amqp_uri(uri: &str) -> Result<(), String> {
    let rest = uri
        .strip_prefix("amqps://")
        .ok_or_else(|| "URI must start with amqps:// (links are TLS only)".to_string())?;
    if !rest.contains("cacertfile=") || !rest.contains("verify=verify_peer") {
        return Err("URI must verify its peer (verify=verify_peer&cacertfile=…)".into());
    }
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let hostport = authority
        .rsplit_once('@')
        .map(|(_, h)| h)
        .unwrap_or(authority);
    let (host, port) = hostport
        .rsplit_once(':')
        .ok_or_else(|| "URI needs host:port".to_string())?;
    if host.is_empty() {
        return Err("URI has an empty host".into());
    }
    port.parse::<u16>()
        .map_err(|_| format!("URI port `{port}` is not a number"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_finds_dangling_references() {
        let defs = json!({
            "vhosts": [{"name": "/"}],
            "users": [{"name": "a", "password": "clear"}],
            "permissions": [{"user": "b", "vhost": "/x"}],
            "parameters": [{"vhost": "/", "component": "federation-upstream", "name": "up",
                            "value": {"uri": "amqps://h?verify=verify_peer&cacertfile=x"}}],
            "policies": [{"vhost": "/", "name": "p", "definition": {"federation-upstream": "nope"}}],
            "exchanges": [{"name": "declared"}],
            "bindings": [{"source": "declared", "destination": "amq.topic"},
                         {"source": "ghost", "destination": "declared"}],
        });
        let problems = check(&defs).expect_err("invalid");
        let all = problems.join("\n");
        for needle in [
            "clear-text password",
            "no password_hash",
            "unknown user `b`",
            "unknown vhost `/x`",
            "host:port",
            "missing upstream `nope`",
            "undeclared source exchange `ghost`",
        ] {
            assert!(all.contains(needle), "{needle} not in {all}");
        }
        assert!(!all.contains("`declared`") && !all.contains("`amq.topic`"));
    }
}
