//! The RabbitMQ management HTTP API. Every HTTP call gwctl makes to a broker is in this module;
//! [`probe`] is the one MQTT connection it makes (a health gate of `upgrade`).
//!
//! Credentials travel in the Authorization header only; errors never carry URIs with
//! passwords (the API returns upstream URIs in clear, so those are masked on the way in).

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::endpoints::BrokerAddress;
use crate::model::federation::{Policy, Upstream};
use crate::spec::secret::Secret;

pub mod amqp;
pub mod probe;
pub mod router_api;
pub mod sessions;
pub mod storm;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(
        "{endpoint}: 401 unauthorized: wrong credentials for `{user}`, or the user lacks the administrator/policymaker tag"
    )]
    Unauthorized { endpoint: String, user: String },
    #[error("{endpoint}: 404 not found: {what} (unknown vhost?)")]
    NotFound { endpoint: String, what: String },
    #[error("{endpoint}: 400 rejected {what}: {reason}")]
    BadRequest {
        endpoint: String,
        what: String,
        reason: String,
    },
    #[error("{endpoint}: HTTP {status} for {what}: {reason}")]
    Http {
        endpoint: String,
        status: u16,
        what: String,
        reason: String,
    },
    #[error("{endpoint}: cannot reach the management API: {reason}")]
    Unreachable { endpoint: String, reason: String },
    /// The broker's certificate does not verify (another CA, another name, expired).
    #[error("{endpoint}: refusing the broker's TLS certificate: {reason}")]
    Certificate { endpoint: String, reason: String },
}

/// A client of one broker's management API.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    user: String,
    password: Secret,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("user", &self.user)
            .finish()
    }
}

fn describe_certificate_error(e: &rustls::CertificateError) -> String {
    use rustls::CertificateError as C;
    match e {
        C::UnknownIssuer | C::BadSignature => {
            "not signed by the CA gwctl trusts for it (another stack's broker?)".into()
        }
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            format!("it does not cover the name gwctl connects to ({e:?})")
        }
        C::Expired | C::ExpiredContext { .. } => format!("it has expired ({e:?})"),
        other => format!("{other:?}"),
    }
}

/// `%2f` for the default vhost.
/// The management API's path of the bindings from exchange `source` to exchange
/// `destination`.
fn binding_path(vhost: &str, source: &str, destination: &str) -> String {
    format!(
        "bindings/{}/e/{}/e/{}",
        vhost_segment(vhost),
        vhost_segment(source),
        vhost_segment(destination)
    )
}

fn vhost_segment(vhost: &str) -> String {
    crate::model::federation::encode_component(vhost)
}

/// One federation link as the management API reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct FederationLink {
    pub upstream: String,
    /// The URI the link connected to (RabbitMQ shows it without the password).
    #[serde(default)]
    pub uri: Option<String>,
    #[serde(default)]
    pub exchange: Option<String>,
    pub status: String,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub node: Option<String>,
}

/// A quorum queue's replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumQueue {
    pub name: String,
    pub members: Vec<String>,
    pub online: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Overview {
    pub cluster_name: String,
    pub rabbitmq_version: String,
    #[serde(default)]
    pub object_totals: ObjectTotals,
}

/// Counts across the cluster, as `/api/overview` reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct ObjectTotals {
    #[serde(default)]
    pub connections: u64,
    #[serde(default)]
    pub queues: u64,
}

/// One node's load as [`Client::node_load`] reads it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeLoad {
    pub node: String,
    /// Resident memory, now.
    pub memory_bytes: u64,
    /// As of the node's last statistics round.
    pub fd_used: Option<u64>,
    pub fd_total: Option<u64>,
    pub sockets_used: Option<u64>,
    pub processors: Option<u64>,
}

/// A node's resource alarms as `/api/nodes` reports them. Under an alarm the node accepts
/// connections but blocks every publisher, so it looks alive while nothing flows.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct NodeAlarms {
    pub name: String,
    #[serde(default)]
    pub mem_alarm: bool,
    #[serde(default)]
    pub disk_free_alarm: bool,
    #[serde(default)]
    pub disk_free: Option<u64>,
    #[serde(default)]
    pub disk_free_limit: Option<u64>,
    #[serde(default)]
    pub mem_used: Option<u64>,
    #[serde(default)]
    pub mem_limit: Option<u64>,
}

impl NodeAlarms {
    /// One line per raised alarm, with the figures that raised it.
    pub fn raised(&self) -> Vec<String> {
        let mib = |b: Option<u64>| b.map_or("?".to_string(), |b| format!("{} MiB", b >> 20));
        let mut out = Vec::new();
        if self.disk_free_alarm {
            out.push(format!(
                "{}: disk alarm: {} free, limit {}",
                self.name,
                mib(self.disk_free),
                mib(self.disk_free_limit)
            ));
        }
        if self.mem_alarm {
            out.push(format!(
                "{}: memory alarm: {} used, limit {}",
                self.name,
                mib(self.mem_used),
                mib(self.mem_limit)
            ));
        }
        out
    }
}

impl Client {
    /// A client of the management API (HTTPS) at `address`, trusting only `ca_pem`: the
    /// broker's certificate must chain to it and cover `address.tls_name` (else its host).
    pub fn new(
        address: &BrokerAddress,
        ca_pem: &str,
        user: impl Into<String>,
        password: Secret,
    ) -> Result<Client, BrokerError> {
        let name = address.tls_name.as_deref().unwrap_or(&address.host);
        let port = address.management_port;
        let base = format!("https://{name}:{port}");
        let certificate = |reason: String| BrokerError::Certificate {
            endpoint: base.clone(),
            reason,
        };
        let tls =
            crate::pki::client_config(ca_pem, None).map_err(|e| certificate(e.to_string()))?;
        let mut builder = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(3));
        if name != address.host {
            // Connect to the host, verify the name (a broker reached at its private address
            // presents its region's name).
            use std::net::ToSocketAddrs;
            let addrs: Vec<std::net::SocketAddr> = (address.host.as_str(), port)
                .to_socket_addrs()
                .map_err(|e| BrokerError::Unreachable {
                    endpoint: base.clone(),
                    reason: format!("resolving {}: {e}", address.host),
                })?
                .collect();
            builder = builder.resolve_to_addrs(name, &addrs);
        }
        let http = builder.build().map_err(|e| BrokerError::Unreachable {
            endpoint: base.clone(),
            reason: e.to_string(),
        })?;
        Ok(Client {
            http,
            base,
            user: user.into(),
            password,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.base
    }

    /// A failed request as an error: a certificate that does not verify says so, with what
    /// rustls found wrong.
    fn send_error(&self, e: reqwest::Error) -> BrokerError {
        let mut cause: Option<&dyn std::error::Error> = Some(&e);
        while let Some(c) = cause {
            if let Some(rustls::Error::InvalidCertificate(why)) = c.downcast_ref::<rustls::Error>()
            {
                return BrokerError::Certificate {
                    endpoint: self.base.clone(),
                    reason: describe_certificate_error(why),
                };
            }
            cause = c.source();
        }
        let mut reason = e.to_string();
        if let Some(url) = e.url() {
            reason = reason.replace(url.as_str(), "");
        }
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            let text = c.to_string();
            if !reason.contains(&text) {
                reason.push_str(&format!(": {text}"));
            }
            cause = c.source();
        }
        if let Some((_, why)) = reason.split_once("invalid peer certificate: ") {
            // hyper hands rustls's error over as text inside an io::Error.
            let why = why.trim();
            let reason = if why.starts_with("UnknownIssuer") || why.starts_with("BadSignature") {
                describe_certificate_error(&rustls::CertificateError::UnknownIssuer)
            } else if why.starts_with("NotValidForName") {
                format!("it does not cover the name gwctl connects to ({why})")
            } else if why.starts_with("Expired") {
                format!("it has expired ({why})")
            } else {
                why.to_string()
            };
            return BrokerError::Certificate {
                endpoint: self.base.clone(),
                reason,
            };
        }
        BrokerError::Unreachable {
            endpoint: self.base.clone(),
            reason,
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        what: &str,
        body: Option<Value>,
    ) -> Result<Value, BrokerError> {
        // Reads are retried on a server error: the management API answers 500 now and then
        // while links start or stop. Writes are not (the caller's plan decides).
        let attempts: u64 = if method == Method::GET { 4 } else { 1 };
        let mut last = None;
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(300 * attempt)).await;
            }
            match self
                .call_once(method.clone(), path, what, body.clone())
                .await
            {
                Err(
                    e @ BrokerError::Http {
                        status: 500..=599, ..
                    },
                ) => last = Some(e),
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| BrokerError::Unreachable {
            endpoint: self.base.clone(),
            reason: "no attempt".into(),
        }))
    }

    async fn call_once(
        &self,
        method: Method,
        path: &str,
        what: &str,
        body: Option<Value>,
    ) -> Result<Value, BrokerError> {
        let mut req = self
            .http
            .request(method, format!("{}/api/{path}", self.base))
            .basic_auth(&self.user, Some(self.password.expose()));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.map_err(|e| self.send_error(e))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if status.is_success() {
            return Ok(if text.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap_or(Value::Null)
            });
        }
        let reason = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["reason"].as_str().map(str::to_string))
            .unwrap_or_else(|| text.chars().take(200).collect());
        let endpoint = self.base.clone();
        let what = what.to_string();
        Err(match status {
            StatusCode::UNAUTHORIZED => BrokerError::Unauthorized {
                endpoint,
                user: self.user.clone(),
            },
            StatusCode::NOT_FOUND => BrokerError::NotFound { endpoint, what },
            StatusCode::BAD_REQUEST => BrokerError::BadRequest {
                endpoint,
                what,
                reason: mask_uris(&reason),
            },
            other => BrokerError::Http {
                endpoint,
                status: other.as_u16(),
                what,
                reason: mask_uris(&reason),
            },
        })
    }

    pub async fn overview(&self) -> Result<Overview, BrokerError> {
        let v = self.call(Method::GET, "overview", "overview", None).await?;
        serde_json::from_value(v).map_err(|e| BrokerError::Http {
            endpoint: self.base.clone(),
            status: 200,
            what: "overview".into(),
            reason: format!("unexpected answer: {e}"),
        })
    }

    /// The name of the node that answers this client.
    pub async fn node_name(&self) -> Result<String, BrokerError> {
        let overview = self
            .call(Method::GET, "overview?columns=node", "overview", None)
            .await?;
        overview["node"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| self.unexpected("overview"))
    }

    /// `node`'s load: its memory now (`/api/nodes/NODE/memory` is computed on the call) and
    /// its descriptors, sockets and cores as of its last statistics round (gateways send one
    /// every 30 s).
    pub async fn node_load(&self, node: &str) -> Result<NodeLoad, BrokerError> {
        let segment = vhost_segment(node);
        let memory = self
            .call(
                Method::GET,
                &format!("nodes/{segment}/memory"),
                "node memory",
                None,
            )
            .await?;
        let total = &memory["memory"]["total"];
        let memory_bytes = total["rss"]
            .as_u64()
            .or_else(|| total["erlang"].as_u64())
            .ok_or_else(|| self.unexpected("node memory"))?;
        let stats = self
            .call(Method::GET, &format!("nodes/{segment}"), "node", None)
            .await?;
        Ok(NodeLoad {
            node: node.to_string(),
            memory_bytes,
            fd_used: stats["fd_used"].as_u64(),
            fd_total: stats["fd_total"].as_u64(),
            sockets_used: stats["sockets_used"].as_u64(),
            processors: stats["processors"].as_u64(),
        })
    }

    fn unexpected(&self, what: &str) -> BrokerError {
        BrokerError::Http {
            endpoint: self.base.clone(),
            status: 200,
            what: what.into(),
            reason: "unexpected answer".into(),
        }
    }

    /// Publishes one message through exchange `exchange` of `vhost` (the management API's
    /// publish, for probes only: it is not meant for traffic). Fails unless it was routed.
    pub async fn publish(
        &self,
        vhost: &str,
        exchange: &str,
        routing_key: &str,
        payload: &str,
    ) -> Result<(), BrokerError> {
        let path = format!(
            "exchanges/{}/{}/publish",
            vhost_segment(vhost),
            vhost_segment(exchange)
        );
        let what = format!("a message to `{exchange}` with key `{routing_key}`");
        let answer = self
            .call(
                Method::POST,
                &path,
                &what,
                Some(json!({
                    "properties": {"delivery_mode": 1},
                    "routing_key": routing_key,
                    "payload": payload,
                    "payload_encoding": "string",
                })),
            )
            .await?;
        if answer["routed"].as_bool() == Some(true) {
            return Ok(());
        }
        Err(BrokerError::BadRequest {
            endpoint: self.base.clone(),
            what,
            reason: "no queue is bound for it (not routed)".into(),
        })
    }

    pub async fn put_upstream(&self, vhost: &str, upstream: &Upstream) -> Result<(), BrokerError> {
        let path = format!(
            "parameters/federation-upstream/{}/{}",
            vhost_segment(vhost),
            vhost_segment(&upstream.name)
        );
        self.call(
            Method::PUT,
            &path,
            &format!("upstream `{}`", upstream.name),
            Some(json!({"value": upstream.parameter_value()})),
        )
        .await
        .map(drop)
    }

    pub async fn put_upstream_set(
        &self,
        vhost: &str,
        name: &str,
        members: &[String],
    ) -> Result<(), BrokerError> {
        let path = format!(
            "parameters/federation-upstream-set/{}/{}",
            vhost_segment(vhost),
            vhost_segment(name)
        );
        let value: Vec<Value> = members.iter().map(|m| json!({"upstream": m})).collect();
        self.call(
            Method::PUT,
            &path,
            &format!("upstream set `{name}`"),
            Some(json!({"value": value})),
        )
        .await
        .map(drop)
    }

    pub async fn put_policy(&self, vhost: &str, policy: &Policy) -> Result<(), BrokerError> {
        let path = format!(
            "policies/{}/{}",
            vhost_segment(vhost),
            vhost_segment(&policy.name)
        );
        self.call(
            Method::PUT,
            &path,
            &format!("policy `{}`", policy.name),
            Some(policy.body()),
        )
        .await
        .map(drop)
    }

    /// Runtime parameters of one component (`federation-upstream`, `federation-upstream-set`)
    /// in `vhost`, by name. Upstream values hold URIs with passwords in clear: callers compare
    /// them in memory and print them only through [`mask_uris`].
    pub async fn parameters(
        &self,
        component: &str,
        vhost: &str,
    ) -> Result<BTreeMap<String, Value>, BrokerError> {
        let path = format!("parameters/{component}/{}", vhost_segment(vhost));
        let v = self.call(Method::GET, &path, component, None).await?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| Some((p["name"].as_str()?.to_string(), p["value"].clone())))
            .collect())
    }

    pub async fn policies(&self, vhost: &str) -> Result<BTreeMap<String, Value>, BrokerError> {
        let v = self
            .call(
                Method::GET,
                &format!("policies/{}", vhost_segment(vhost)),
                "policies",
                None,
            )
            .await?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| Some((p["name"].as_str()?.to_string(), p.clone())))
            .collect())
    }

    pub async fn delete_parameter(
        &self,
        component: &str,
        vhost: &str,
        name: &str,
    ) -> Result<(), BrokerError> {
        let path = format!(
            "parameters/{component}/{}/{}",
            vhost_segment(vhost),
            vhost_segment(name)
        );
        match self
            .call(
                Method::DELETE,
                &path,
                &format!("{component} `{name}`"),
                None,
            )
            .await
        {
            Err(BrokerError::NotFound { .. }) => Ok(()),
            other => other.map(drop),
        }
    }

    /// Exchange names in `vhost` that start with `prefix`.
    pub async fn exchanges(&self, vhost: &str, prefix: &str) -> Result<Vec<String>, BrokerError> {
        let path = format!("exchanges/{}?columns=name", vhost_segment(vhost));
        let v = self.call(Method::GET, &path, "exchanges", None).await?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x["name"].as_str())
            .filter(|n| n.starts_with(prefix))
            .map(str::to_string)
            .collect())
    }

    /// A durable topic exchange (idempotent: an existing one of that type is kept).
    pub async fn put_topic_exchange(&self, vhost: &str, name: &str) -> Result<(), BrokerError> {
        let path = format!("exchanges/{}/{}", vhost_segment(vhost), vhost_segment(name));
        let body = json!({"type": "topic", "durable": true, "auto_delete": false,
                          "internal": false, "arguments": {}});
        self.call(
            Method::PUT,
            &path,
            &format!("exchange `{name}`"),
            Some(body),
        )
        .await
        .map(drop)
    }

    pub async fn delete_exchange(&self, vhost: &str, name: &str) -> Result<(), BrokerError> {
        let path = format!("exchanges/{}/{}", vhost_segment(vhost), vhost_segment(name));
        match self
            .call(Method::DELETE, &path, &format!("exchange `{name}`"), None)
            .await
        {
            Err(BrokerError::NotFound { .. }) => Ok(()),
            other => other.map(drop),
        }
    }

    /// (destination exchange, routing key) of every exchange-to-exchange binding from `source`.
    pub async fn bindings_from(
        &self,
        vhost: &str,
        source: &str,
    ) -> Result<Vec<(String, String)>, BrokerError> {
        let path = format!(
            "exchanges/{}/{}/bindings/source",
            vhost_segment(vhost),
            vhost_segment(source)
        );
        let v = match self
            .call(Method::GET, &path, &format!("bindings of `{source}`"), None)
            .await
        {
            Err(BrokerError::NotFound { .. }) => return Ok(Vec::new()),
            other => other?,
        };
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .filter(|b| b["destination_type"] == "exchange")
            .filter_map(|b| {
                Some((
                    b["destination"].as_str()?.to_string(),
                    b["routing_key"].as_str()?.to_string(),
                ))
            })
            .collect())
    }

    /// Binds exchange `source` into exchange `destination` (idempotent).
    pub async fn bind_exchange(
        &self,
        vhost: &str,
        source: &str,
        destination: &str,
        routing_key: &str,
    ) -> Result<(), BrokerError> {
        let path = binding_path(vhost, source, destination);
        self.call(
            Method::POST,
            &path,
            &format!("binding `{source}` → `{destination}`"),
            Some(json!({"routing_key": routing_key, "arguments": {}})),
        )
        .await
        .map(drop)
    }

    /// Removes the bindings from exchange `source` to exchange `destination` with
    /// `routing_key` (whatever their arguments; each is addressed by its properties key).
    pub async fn unbind_exchange(
        &self,
        vhost: &str,
        source: &str,
        destination: &str,
        routing_key: &str,
    ) -> Result<(), BrokerError> {
        let path = binding_path(vhost, source, destination);
        let what = format!("binding `{source}` → `{destination}`");
        let found = match self.call(Method::GET, &path, &what, None).await {
            Err(BrokerError::NotFound { .. }) => return Ok(()),
            other => other?,
        };
        let keys: Vec<String> = found
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| b["routing_key"] == routing_key)
            .filter_map(|b| b["properties_key"].as_str().map(str::to_string))
            .collect();
        for key in keys {
            match self
                .call(
                    Method::DELETE,
                    &format!("{path}/{}", vhost_segment(&key)),
                    &what,
                    None,
                )
                .await
            {
                Ok(_) | Err(BrokerError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// (name, messages) of the queues in `vhost` whose names start with `prefix`.
    pub async fn queues(
        &self,
        vhost: &str,
        prefix: &str,
    ) -> Result<Vec<(String, u64)>, BrokerError> {
        let path = format!("queues/{}?columns=name,messages", vhost_segment(vhost));
        let v = self.call(Method::GET, &path, "queues", None).await?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|q| {
                let name = q["name"].as_str()?;
                name.starts_with(prefix)
                    .then(|| (name.to_string(), q["messages"].as_u64().unwrap_or(0)))
            })
            .collect())
    }

    pub async fn delete_queue(&self, vhost: &str, name: &str) -> Result<(), BrokerError> {
        let path = format!("queues/{}/{}", vhost_segment(vhost), vhost_segment(name));
        match self
            .call(Method::DELETE, &path, &format!("queue `{name}`"), None)
            .await
        {
            Err(BrokerError::NotFound { .. }) => Ok(()),
            other => other.map(drop),
        }
    }

    pub async fn delete_policy(&self, vhost: &str, name: &str) -> Result<(), BrokerError> {
        let path = format!("policies/{}/{}", vhost_segment(vhost), vhost_segment(name));
        match self
            .call(Method::DELETE, &path, &format!("policy `{name}`"), None)
            .await
        {
            Err(BrokerError::NotFound { .. }) => Ok(()),
            other => other.map(drop),
        }
    }

    /// Alarms in effect anywhere in the cluster (`/api/health/checks/alarms`, which reads them
    /// live, unlike `/api/nodes`, whose figures arrive with the first statistics round).
    pub async fn alarms_in_effect(&self) -> Result<Option<String>, BrokerError> {
        self.health_check("alarms", "alarm check").await
    }

    /// One of RabbitMQ's health checks (`/api/health/checks/NAME`): `None` when it passes,
    /// else why not (it answers 503 with the reason).
    async fn health_check(&self, name: &str, what: &str) -> Result<Option<String>, BrokerError> {
        let path = format!("health/checks/{name}");
        match self.call_once(Method::GET, &path, what, None).await {
            Ok(_) => Ok(None),
            Err(BrokerError::Http {
                status: 503,
                reason,
                ..
            }) => Ok(Some(reason)),
            Err(e) => Err(e),
        }
    }

    pub async fn node_alarms(&self) -> Result<Vec<NodeAlarms>, BrokerError> {
        let v = self.call(Method::GET, "nodes", "nodes", None).await?;
        serde_json::from_value(v).map_err(|e| BrokerError::Http {
            endpoint: self.base.clone(),
            status: 200,
            what: "nodes".into(),
            reason: format!("unexpected answer: {e}"),
        })
    }

    /// The cluster's nodes: (name, running).
    pub async fn nodes(&self) -> Result<Vec<(String, bool)>, BrokerError> {
        let v = self
            .call(Method::GET, "nodes?columns=name,running", "nodes", None)
            .await?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| {
                Some((
                    n["name"].as_str()?.to_string(),
                    n["running"].as_bool().unwrap_or(false),
                ))
            })
            .collect())
    }

    /// Every quorum queue: (vhost/name, its members, the members online).
    pub async fn quorum_queues(&self) -> Result<Vec<QuorumQueue>, BrokerError> {
        let v = self
            .call(
                Method::GET,
                "queues?columns=vhost,name,type,members,online",
                "queues",
                None,
            )
            .await?;
        let names = |q: &Value, field: &str| -> Vec<String> {
            q[field]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m.as_str().map(str::to_string))
                .collect()
        };
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .filter(|q| q["type"].as_str() == Some("quorum"))
            .map(|q| QuorumQueue {
                name: format!(
                    "{}/{}",
                    q["vhost"].as_str().unwrap_or_default(),
                    q["name"].as_str().unwrap_or_default()
                ),
                members: names(q, "members"),
                online: names(q, "online"),
            })
            .collect())
    }

    /// Why stopping this node would leave a quorum queue without a majority, if it would
    /// (`/api/health/checks/node-is-quorum-critical`, asked of the node itself).
    pub async fn quorum_critical(&self) -> Result<Option<String>, BrokerError> {
        self.health_check("node-is-quorum-critical", "quorum-critical check")
            .await
    }

    pub async fn federation_links(&self) -> Result<Vec<FederationLink>, BrokerError> {
        let v = self
            .call(Method::GET, "federation-links", "federation links", None)
            .await?;
        serde_json::from_value(v).map_err(|e| BrokerError::Http {
            endpoint: self.base.clone(),
            status: 200,
            what: "federation links".into(),
            reason: format!("unexpected answer: {e}"),
        })
    }
}

/// A link URI for people: credentials masked, query (TLS file paths, timeouts) left out.
pub fn display_uri(uri: &str) -> String {
    let masked = mask_uris(uri);
    masked.split('?').next().unwrap_or_default().to_string()
}

/// Replaces the userinfo of every `amqp(s)://user:pass@` in `text` with `***`.
pub fn mask_uris(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '"' || c == '/')
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(at) => {
                out.push_str("***");
                rest = &tail[at..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_credentials_in_uris() {
        assert_eq!(
            mask_uris("bad uri amqp://fed:s3cret@10.0.0.1:5672 and amqps://a:b@h/x"),
            "bad uri amqp://***@10.0.0.1:5672 and amqps://***@h/x"
        );
        assert_eq!(mask_uris("amqp://host:5672"), "amqp://host:5672");
    }
}
