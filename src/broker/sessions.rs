//! Devices' MQTT sessions and connections, through the management API: what `upgrade` needs to
//! move a region from one cluster to another (blue-green) without losing a queued command.
//!
//! A session of a device that connects with clean session off is a queue
//! (`mqtt-subscription-<client id>qos1`) and its bindings from the MQTT exchange; the plugin
//! recovers the subscriptions from those bindings when the device comes back. Copying the
//! queue and its bindings to the new cluster, then the messages, carries the session over.

use reqwest::Method;
use serde_json::{Value, json};

use super::{BrokerError, Client, vhost_segment};

/// The prefix of the MQTT plugin's session queues.
pub const SESSION_PREFIX: &str = "mqtt-subscription-";

/// A queue as the management API lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueInfo {
    pub name: String,
    pub messages: u64,
    pub consumers: u64,
    /// Deleted with its last consumer (a clean session's queue).
    pub auto_delete: bool,
    pub arguments: Value,
}

/// A binding into a queue.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueBinding {
    pub source: String,
    pub routing_key: String,
    pub arguments: Value,
}

/// A client connection (AMQP, MQTT, …) of the cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConnection {
    pub name: String,
    pub protocol: String,
    pub user: String,
}

impl ClientConnection {
    /// Whether a device speaks MQTT (or Web MQTT) over it.
    pub fn is_mqtt(&self) -> bool {
        self.protocol.to_ascii_lowercase().contains("mqtt")
    }
}

/// How many messages one round of [`Client::move_messages`] copies.
const BATCH: u64 = 200;

/// The largest message it copies (bytes): the management API would cut a larger payload.
const TRUNCATE: u64 = 16 * 1024 * 1024;

impl Client {
    /// The queues of `vhost` whose names start with `prefix`.
    pub async fn queue_infos(
        &self,
        vhost: &str,
        prefix: &str,
    ) -> Result<Vec<QueueInfo>, BrokerError> {
        let path = format!(
            "queues/{}?columns=name,messages,consumers,auto_delete,arguments",
            vhost_segment(vhost)
        );
        let v = self.call(Method::GET, &path, "queues", None).await?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|q| {
                let name = q["name"].as_str()?;
                name.starts_with(prefix).then(|| QueueInfo {
                    name: name.to_string(),
                    messages: q["messages"].as_u64().unwrap_or(0),
                    consumers: q["consumers"].as_u64().unwrap_or(0),
                    auto_delete: q["auto_delete"].as_bool().unwrap_or(false),
                    arguments: q["arguments"].clone(),
                })
            })
            .collect())
    }

    /// The bindings into queue `queue` from exchanges (not the default exchange's).
    pub async fn queue_bindings(
        &self,
        vhost: &str,
        queue: &str,
    ) -> Result<Vec<QueueBinding>, BrokerError> {
        let path = format!(
            "queues/{}/{}/bindings",
            vhost_segment(vhost),
            vhost_segment(queue)
        );
        let v = self
            .call(Method::GET, &path, &format!("bindings of `{queue}`"), None)
            .await?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .filter(|b| b["source"].as_str().is_some_and(|s| !s.is_empty()))
            .filter_map(|b| {
                Some(QueueBinding {
                    source: b["source"].as_str()?.to_string(),
                    routing_key: b["routing_key"].as_str()?.to_string(),
                    arguments: b["arguments"].clone(),
                })
            })
            .collect())
    }

    /// Declares a durable queue (idempotent with the same arguments; RabbitMQ refuses other
    /// arguments for an existing queue).
    pub async fn declare_queue(
        &self,
        vhost: &str,
        name: &str,
        arguments: &Value,
    ) -> Result<(), BrokerError> {
        let path = format!("queues/{}/{}", vhost_segment(vhost), vhost_segment(name));
        self.call(
            Method::PUT,
            &path,
            &format!("queue `{name}`"),
            Some(json!({"durable": true, "auto_delete": false, "arguments": arguments})),
        )
        .await
        .map(drop)
    }

    /// Binds `queue` to exchange `source` (idempotent).
    pub async fn bind_queue(
        &self,
        vhost: &str,
        binding: &QueueBinding,
        queue: &str,
    ) -> Result<(), BrokerError> {
        let path = format!(
            "bindings/{}/e/{}/q/{}",
            vhost_segment(vhost),
            vhost_segment(&binding.source),
            vhost_segment(queue)
        );
        let arguments = if binding.arguments.is_object() {
            binding.arguments.clone()
        } else {
            json!({})
        };
        self.call(
            Method::POST,
            &path,
            &format!("binding `{}` → `{queue}`", binding.source),
            Some(json!({"routing_key": binding.routing_key, "arguments": arguments})),
        )
        .await
        .map(drop)
    }

    /// The cluster's client connections.
    pub async fn connections(&self) -> Result<Vec<ClientConnection>, BrokerError> {
        let v = self
            .call(
                Method::GET,
                "connections?columns=name,protocol,user",
                "connections",
                None,
            )
            .await?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| {
                Some(ClientConnection {
                    name: c["name"].as_str()?.to_string(),
                    protocol: c["protocol"].as_str().unwrap_or_default().to_string(),
                    user: c["user"].as_str().unwrap_or_default().to_string(),
                })
            })
            .collect())
    }

    /// Closes a client connection (gone already counts as closed).
    pub async fn close_connection(&self, name: &str) -> Result<(), BrokerError> {
        let path = format!("connections/{}", vhost_segment(name));
        match self
            .call(Method::DELETE, &path, &format!("connection `{name}`"), None)
            .await
        {
            Ok(_) | Err(BrokerError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Moves the messages of queue `queue` here into the queue of the same name on `to`, in
    /// order, through the management API: a batch is read and put back (`ack_requeue_true`),
    /// published to `to` (each must be routed to the queue), and only then taken off here
    /// (`ack_requeue_false`). The queue must have no consumer and receive nothing new (the
    /// caller closed its clients and stopped what feeds it): then the batch taken off is the
    /// one copied. A run stopped half-way copies a batch twice at most — a duplicate, never a
    /// loss. Returns how many messages moved.
    pub async fn move_messages(
        &self,
        vhost: &str,
        queue: &str,
        to: &Client,
    ) -> Result<u64, BrokerError> {
        let path = format!(
            "queues/{}/{}/get",
            vhost_segment(vhost),
            vhost_segment(queue)
        );
        let what = format!("messages of `{queue}`");
        let mut moved = 0;
        loop {
            let get = |ackmode: &str| json!({"count": BATCH, "ackmode": ackmode, "encoding": "base64", "truncate": TRUNCATE});
            let batch = self
                .call(Method::POST, &path, &what, Some(get("ack_requeue_true")))
                .await?;
            let unexpected = |why: &str| BrokerError::BadRequest {
                endpoint: self.endpoint().to_string(),
                what: what.clone(),
                reason: why.to_string(),
            };
            let Some(messages) = batch.as_array().cloned() else {
                return Err(unexpected("the answer is not a list of messages"));
            };
            if messages.is_empty() {
                return Ok(moved);
            }
            if messages
                .iter()
                .any(|m| m["payload_bytes"].as_u64().is_none_or(|b| b > TRUNCATE))
            {
                return Err(unexpected(
                    "a message is larger than gwctl copies through the management API",
                ));
            }
            for m in &messages {
                to.publish_copy(vhost, queue, m).await?;
            }
            let taken = self
                .call(Method::POST, &path, &what, Some(get("ack_requeue_false")))
                .await?;
            let n = taken.as_array().map_or(0, Vec::len);
            if n != messages.len() {
                return Err(BrokerError::BadRequest {
                    endpoint: self.endpoint().to_string(),
                    what,
                    reason: format!(
                        "{} messages copied but {n} taken off: the queue changed while it \
                         moved (a consumer, or a publisher)",
                        messages.len()
                    ),
                });
            }
            moved += n as u64;
        }
    }

    /// Publishes a message as the management API returned it (`get`, base64) to queue `queue`
    /// only, with its properties and its original routing key: through the default exchange,
    /// addressed to the queue by a `CC` header (sender-selected distribution). The MQTT plugin
    /// takes a message's topic from its first routing key, so the key the message was
    /// published with must stay first (a copy sent with the queue's name as its key would
    /// reach the device under that name); and publishing it to the topic exchange again would
    /// copy it to every other subscriber of the topic. Fails unless routed.
    async fn publish_copy(
        &self,
        vhost: &str,
        queue: &str,
        message: &Value,
    ) -> Result<(), BrokerError> {
        let path = format!("exchanges/{}/amq.default/publish", vhost_segment(vhost));
        let what = format!("a message to queue `{queue}`");
        let mut properties = message["properties"].clone();
        if !properties.is_object() {
            properties = json!({});
        }
        properties["headers"] = match properties["headers"].take() {
            Value::Object(mut h) => {
                h.insert("CC".into(), json!([queue]));
                Value::Object(h)
            }
            _ => json!({"CC": [queue]}),
        };
        let answer = self
            .call(
                Method::POST,
                &path,
                &what,
                Some(json!({
                    "properties": properties,
                    "routing_key": message["routing_key"],
                    "payload": message["payload"],
                    "payload_encoding": message["payload_encoding"],
                })),
            )
            .await?;
        if answer["routed"].as_bool() == Some(true) {
            return Ok(());
        }
        Err(BrokerError::BadRequest {
            endpoint: self.endpoint().to_string(),
            what,
            reason: "not routed (the queue does not exist there)".into(),
        })
    }
}
