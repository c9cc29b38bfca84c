//! AMQP 0-9-1 to the backend (lapin), for `gwctl router`: declare its queues and exchanges,
//! consume, and republish with publisher confirms. Nothing outside `broker/` sees lapin.

use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{
    Acker, BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
    PublisherConfirm,
};

use crate::spec::secret::Secret;

#[derive(Debug, thiserror::Error)]
#[error("AMQP {endpoint}: {what}: {message}")]
pub struct AmqpError {
    endpoint: String,
    what: String,
    message: String,
}

/// Where and as whom to connect (AMQPS, the server verified with `ca_pem`).
#[derive(Debug, Clone)]
pub struct AmqpLogin {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Secret,
    pub ca_pem: String,
    /// A client certificate and its key (PEM), presented when the broker asks for one.
    pub identity: Option<(String, Secret)>,
}

/// Opens an AMQPS connection as `login`; `name` shows in the broker's connection list. The
/// one place a connection is set up: the router's [`Amqp`] and the sandbox's clients use it.
pub async fn connect(login: &AmqpLogin, name: &str) -> Result<Connection, AmqpError> {
    let err = |what: &str, e: String| AmqpError {
        endpoint: format!("{}:{}", login.host, login.port),
        what: what.to_string(),
        message: e,
    };
    let enc = crate::model::federation::encode_component;
    let uri = format!(
        "amqps://{}:{}@{}:{}/%2f?heartbeat=30",
        enc(&login.user),
        enc(login.password.expose()),
        login.host,
        login.port
    );
    let tls = lapin::tcp::OwnedTLSConfig {
        identity: login
            .identity
            .as_ref()
            .map(|(cert, key)| lapin::tcp::OwnedIdentity::PKCS8 {
                pem: cert.as_bytes().to_vec(),
                key: key.expose().as_bytes().to_vec(),
            }),
        cert_chain: Some(login.ca_pem.clone()),
    };
    let runtime = lapin::runtime::default_runtime().map_err(|e| err("runtime", e.to_string()))?;
    let connect = Connection::connect_with_config(
        &uri,
        ConnectionProperties::default().with_connection_name(name.into()),
        tls,
        runtime,
    );
    tokio::time::timeout(TIMEOUT, connect)
        .await
        .map_err(|_| err("connecting", "no answer".into()))?
        .map_err(|e| err("connecting", e.to_string()))
}

/// A queue the router declares.
#[derive(Debug, Clone)]
pub struct QueueSpec {
    pub name: String,
    /// Survives the router (quorum, single active consumer, never dropped for redeliveries);
    /// otherwise exclusive to this connection.
    pub durable: bool,
    /// (exchange, binding key) pairs.
    pub bindings: Vec<(String, String)>,
}

/// How a republished message ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Confirmed. `returned` is a message the broker returned as unroutable (`mandatory`),
    /// as (exchange, routing key): lapin hands a return to whichever confirm completes next,
    /// and RabbitMQ may confirm several publishes at once, so it need not be this publish's
    /// own — callers match returns to publishes by exchange and routing key (what decides
    /// routability).
    Confirmed { returned: Option<(String, String)> },
    /// The broker refused it (nack), or the channel failed.
    Refused,
}

/// A consumed message. Its properties travel on unchanged when it is republished.
pub struct Message {
    pub exchange: String,
    pub routing_key: String,
    pub redelivered: bool,
    pub body: Vec<u8>,
    properties: BasicProperties,
    acker: Acker,
}

impl Message {
    /// A header as text (strings as they are, numbers and booleans printed; arrays as the
    /// text of each element).
    pub fn header(&self, name: &str) -> Option<Vec<String>> {
        let headers = self.properties.headers().as_ref()?;
        headers
            .inner()
            .iter()
            .find(|(k, _)| k.as_str() == name)
            .map(|(_, v)| header_texts(v))
    }

    /// The exchange the message entered through its last federation hop (the downstream
    /// exchange of `x-received-from[0]`), which names the region the backend received it from.
    pub fn received_through(&self) -> Option<String> {
        let headers = self.properties.headers().as_ref()?;
        let (_, hops) = headers
            .inner()
            .iter()
            .find(|(k, _)| k.as_str() == "x-received-from")?;
        let AMQPValue::FieldArray(hops) = hops else {
            return None;
        };
        let AMQPValue::FieldTable(first) = hops.as_slice().first()? else {
            return None;
        };
        first
            .inner()
            .iter()
            .find(|(k, _)| k.as_str() == "exchange")
            .and_then(|(_, v)| header_texts(v).into_iter().next())
    }

    /// Acknowledges this message and every earlier one of its consumer.
    pub async fn ack_through(&self) -> Result<(), String> {
        match self.acker.ack(BasicAckOptions { multiple: true }).await {
            Ok(true) => Ok(()),
            Ok(false) => Err("the channel is closed: the messages will be delivered again".into()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// A header value as text: strings as they are, numbers and booleans printed, an array as
/// its elements' texts, a table as one `key=value,…` text.
pub fn header_texts(v: &AMQPValue) -> Vec<String> {
    match v {
        AMQPValue::LongString(s) => vec![s.to_string()],
        AMQPValue::ShortString(s) => vec![s.to_string()],
        AMQPValue::FieldArray(a) => a.as_slice().iter().flat_map(header_texts).collect(),
        AMQPValue::FieldTable(t) => vec![
            t.inner()
                .iter()
                .map(|(k, v)| format!("{k}={}", header_texts(v).join("; ")))
                .collect::<Vec<_>>()
                .join(","),
        ],
        AMQPValue::Boolean(b) => vec![b.to_string()],
        AMQPValue::LongInt(n) => vec![n.to_string()],
        AMQPValue::LongLongInt(n) => vec![n.to_string()],
        AMQPValue::LongUInt(n) => vec![n.to_string()],
        AMQPValue::ShortInt(n) => vec![n.to_string()],
        AMQPValue::Timestamp(n) => vec![n.to_string()],
        _ => Vec::new(),
    }
}

/// A consumer of one queue.
pub struct Inbox {
    consumer: lapin::Consumer,
}

impl Inbox {
    /// The next message; `None` when the consumer or the connection ended.
    pub async fn next(&mut self) -> Option<Result<Message, String>> {
        let delivery = self.consumer.next().await?;
        Some(delivery.map(message).map_err(|e| e.to_string()))
    }

    /// A message already received, without waiting.
    pub fn ready(&mut self) -> Option<Result<Message, String>> {
        self.consumer
            .next()
            .now_or_never()
            .flatten()
            .map(|d| d.map(message).map_err(|e| e.to_string()))
    }
}

fn message(d: lapin::message::Delivery) -> Message {
    Message {
        exchange: d.exchange.to_string(),
        routing_key: d.routing_key.to_string(),
        redelivered: d.redelivered,
        body: d.data,
        properties: d.properties,
        acker: d.acker,
    }
}

/// A publish waiting for its confirm.
pub struct Pending(PublisherConfirm);

impl Pending {
    pub async fn outcome(self) -> Outcome {
        match self.0.await {
            Ok(Confirmation::Ack(returned)) => Outcome::Confirmed {
                returned: returned.map(|r| {
                    (
                        r.delivery.exchange.to_string(),
                        r.delivery.routing_key.to_string(),
                    )
                }),
            },
            Ok(Confirmation::Nack(_)) | Ok(Confirmation::NotRequested) | Err(_) => Outcome::Refused,
        }
    }
}

/// The properties to publish again: all but `user_id`. RabbitMQ refuses a publish whose
/// `user_id` is not the publishing connection's user (and closes the channel): the same
/// message, first in the queue again after a restart, would stop all routing.
fn without_user_id(p: &BasicProperties) -> BasicProperties {
    let mut out = BasicProperties::default();
    macro_rules! copy {
        ($($get:ident => $set:ident),*) => {
            $(if let Some(v) = p.$get().clone() {
                out = out.$set(v);
            })*
        };
    }
    copy!(
        content_type => with_content_type,
        content_encoding => with_content_encoding,
        headers => with_headers,
        delivery_mode => with_delivery_mode,
        priority => with_priority,
        correlation_id => with_correlation_id,
        reply_to => with_reply_to,
        expiration => with_expiration,
        message_id => with_message_id,
        timestamp => with_timestamp,
        kind => with_type,
        app_id => with_app_id,
        cluster_id => with_cluster_id
    );
    out
}

/// One connection to the backend with a channel to consume and one to publish (confirms on).
pub struct Amqp {
    endpoint: String,
    conn: Connection,
    consume: Channel,
    publish: Channel,
}

/// How long connecting and each declaration may take.
const TIMEOUT: Duration = Duration::from_secs(30);

impl Amqp {
    /// Connects as `login`; `name` shows in the broker's connection list.
    pub async fn open(login: &AmqpLogin, name: &str) -> Result<Amqp, AmqpError> {
        let endpoint = format!("{}:{}", login.host, login.port);
        let err = |what: &str, e: String| AmqpError {
            endpoint: endpoint.clone(),
            what: what.to_string(),
            message: e,
        };
        let conn = connect(login, name).await?;
        let consume = conn
            .create_channel()
            .await
            .map_err(|e| err("opening a channel", e.to_string()))?;
        let publish = conn
            .create_channel()
            .await
            .map_err(|e| err("opening a channel", e.to_string()))?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| err("enabling publisher confirms", e.to_string()))?;
        Ok(Amqp {
            endpoint,
            conn,
            consume,
            publish,
        })
    }

    fn err(&self, what: impl Into<String>, e: impl ToString) -> AmqpError {
        AmqpError {
            endpoint: self.endpoint.clone(),
            what: what.into(),
            message: e.to_string(),
        }
    }

    /// Declares durable topic exchanges (idempotent).
    pub async fn declare_exchanges(&self, names: &[String]) -> Result<(), AmqpError> {
        for name in names {
            let opts = ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            };
            self.publish
                .exchange_declare(
                    name.as_str().into(),
                    ExchangeKind::Topic,
                    opts,
                    FieldTable::default(),
                )
                .await
                .map_err(|e| self.err(format!("declaring exchange `{name}`"), e))?;
        }
        Ok(())
    }

    /// Declares a queue and its bindings (idempotent).
    pub async fn declare_queue(&self, q: &QueueSpec) -> Result<(), AmqpError> {
        let mut args = FieldTable::default();
        let opts = if q.durable {
            args.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("quorum".into()),
            );
            // One consumer at a time: one device's messages stay in order however many
            // routers run.
            args.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
            // RabbitMQ 4.0 drops a quorum queue's message after 20 deliveries by default
            // (rabbit_quorum_queue DEFAULT_DELIVERY_LIMIT); a negative limit has none: a
            // router that restarts many times must not lose a message.
            args.insert("x-delivery-limit".into(), AMQPValue::LongInt(-1));
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            }
        } else {
            // Learning only: bounded, oldest news dropped first if the router falls behind.
            args.insert("x-max-length".into(), AMQPValue::LongInt(100_000));
            args.insert(
                "x-overflow".into(),
                AMQPValue::LongString("drop-head".into()),
            );
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            }
        };
        let declare = self
            .consume
            .queue_declare(q.name.as_str().into(), opts, args);
        tokio::time::timeout(TIMEOUT, declare)
            .await
            .map_err(|_| self.err(format!("declaring queue `{}`", q.name), "no answer"))?
            .map_err(|e| self.err(format!("declaring queue `{}`", q.name), e))?;
        for (exchange, key) in &q.bindings {
            self.consume
                .queue_bind(
                    q.name.as_str().into(),
                    exchange.as_str().into(),
                    key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| self.err(format!("binding `{}` to `{exchange}`", q.name), e))?;
        }
        Ok(())
    }

    /// Messages waiting in a queue (ready, not delivered).
    pub async fn depth(&self, queue: &str) -> Result<u32, AmqpError> {
        let opts = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        self.publish
            .queue_declare(queue.into(), opts, FieldTable::default())
            .await
            .map(|q| q.message_count())
            .map_err(|e| self.err(format!("reading queue `{queue}`"), e))
    }

    /// Consumes `queue`: with `ack`, at most `prefetch` unacknowledged messages; without,
    /// messages count as delivered when sent.
    pub async fn consume(&self, queue: &str, ack: bool, prefetch: u16) -> Result<Inbox, AmqpError> {
        if ack {
            self.consume
                .basic_qos(prefetch, BasicQosOptions::default())
                .await
                .map_err(|e| self.err("setting the prefetch", e))?;
        }
        let consumer = self
            .consume
            .basic_consume(
                queue.into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: !ack,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| self.err(format!("consuming `{queue}`"), e))?;
        Ok(Inbox { consumer })
    }

    /// Publishes `m` again (same properties and body) to `exchange` with its routing key,
    /// `mandatory`: the outcome says whether a binding took it.
    pub async fn republish(&self, m: &Message, exchange: &str) -> Result<Pending, AmqpError> {
        self.publish
            .basic_publish(
                exchange.into(),
                m.routing_key.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &m.body,
                without_user_id(&m.properties),
            )
            .await
            .map(Pending)
            .map_err(|e| self.err(format!("publishing to `{exchange}`"), e))
    }

    /// Whether the connection still works.
    pub fn is_open(&self) -> bool {
        self.conn.status().connected()
    }

    pub async fn close(self) {
        let _ = self.conn.close(200, "router stopping".into()).await;
    }
}
