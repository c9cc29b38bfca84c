//! Minimal MQTT and AMQP clients (rumqttc, lapin) standing in for devices and backend
//! services: enough to prove that messages cross federation links.

use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

use crate::spec::secret::Secret;

/// Where and as whom a client connects, always over TLS.
#[derive(Debug, Clone)]
pub struct Login {
    pub host: String,
    pub port: u16,
    /// The user name; for a device, its id (also its MQTT client id).
    pub user: String,
    /// Password logins (services, admins); devices have none and log in with `identity`.
    pub password: Option<Secret>,
    /// The CA the broker's certificate must chain to.
    pub ca_pem: String,
    /// A client certificate and key (PEM).
    pub identity: Option<(String, Secret)>,
}

impl Login {
    /// The same login, connecting to `host:port`.
    pub(crate) fn at(self, host: &str, port: u16) -> Login {
        Login {
            host: host.to_string(),
            port,
            ..self
        }
    }

    pub(crate) fn tls(&self) -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
        let identity = self.identity.as_ref().map(|(c, k)| (c.as_str(), k));
        crate::pki::client_config(&self.ca_pem, identity)
            .map(std::sync::Arc::new)
            .map_err(|e| e.to_string())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("MQTT {0}:{1}: {2}")]
    Mqtt(String, u16, String),
    #[error("AMQP {0}:{1}: {2}")]
    Amqp(String, u16, String),
    #[error("{0}")]
    Timeout(String),
}

/// A message as a client received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// MQTT topic or AMQP routing key.
    pub key: String,
    pub payload: Vec<u8>,
}

/// An MQTT client subscribed to one topic filter (QoS 1), speaking MQTT 3.1.1 or 5.
pub struct MqttSubscriber {
    client: Client,
    rx: mpsc::UnboundedReceiver<Received>,
    task: tokio::task::JoinHandle<()>,
}

enum Client {
    V3(AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

/// What a subscriber's event loop saw, whatever the protocol version.
enum Incoming {
    SubAck,
    Publish(Received),
    Other,
    Failed(String),
}

fn mqtt_options(login: &Login, client_id: &str) -> Result<MqttOptions, String> {
    let mut opts = MqttOptions::new(client_id, login.host.clone(), login.port);
    if let Some(pw) = &login.password {
        opts.set_credentials(login.user.clone(), pw.expose().to_string());
    }
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_transport(rumqttc::Transport::tls_with_config(
        rumqttc::TlsConfiguration::Rustls(login.tls()?),
    ));
    Ok(opts)
}

/// The subscriber's side of its event loop: messages out, the SUBACK (or why none came).
struct Forward {
    tx: mpsc::UnboundedSender<Received>,
    ready: mpsc::Sender<Result<(), String>>,
}

impl Forward {
    /// Passes one event on; `false` once the event loop has failed.
    fn event(&self, event: Incoming) -> bool {
        match event {
            Incoming::SubAck => {
                let _ = self.ready.try_send(Ok(()));
            }
            Incoming::Publish(m) => {
                let _ = self.tx.send(m);
            }
            Incoming::Other => {}
            Incoming::Failed(e) => {
                let _ = self.ready.try_send(Err(e));
                return false;
            }
        }
        true
    }
}

impl MqttSubscriber {
    /// Connects with MQTT 3.1.1 and subscribes; returns once the broker acknowledged the
    /// subscription.
    pub async fn connect(
        login: &Login,
        client_id: &str,
        filter: &str,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let err = |m: String| ClientError::Mqtt(login.host.clone(), login.port, m);
        let (client, mut events) =
            AsyncClient::new(mqtt_options(login, client_id).map_err(err)?, 64);
        client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .map_err(|e| err(e.to_string()))?;
        let (forward, rx, ready) = Self::channels();
        let task = tokio::spawn(async move {
            loop {
                let event = match events.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(ack))) => {
                        if ack
                            .return_codes
                            .iter()
                            .all(|c| matches!(c, rumqttc::SubscribeReasonCode::Success(_)))
                        {
                            Incoming::SubAck
                        } else {
                            Incoming::Failed("subscription refused by the broker".into())
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => Incoming::Publish(Received {
                        key: p.topic.clone(),
                        payload: p.payload.to_vec(),
                    }),
                    Ok(_) => Incoming::Other,
                    Err(e) => Incoming::Failed(e.to_string()),
                };
                if !forward.event(event) {
                    return;
                }
            }
        });
        Self::await_suback(Client::V3(client), rx, ready, task, timeout)
            .await
            .map_err(err)
    }

    /// As [`MqttSubscriber::connect`], with MQTT 5: its subscriptions carry binding arguments
    /// that 3.1.1 ones do not (what breaks a federation link carrying them on RabbitMQ 4.0).
    pub async fn connect_v5(
        login: &Login,
        client_id: &str,
        filter: &str,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        use rumqttc::v5::mqttbytes::v5::Packet as P5;
        let err = |m: String| ClientError::Mqtt(login.host.clone(), login.port, m);
        let mut opts = rumqttc::v5::MqttOptions::new(client_id, login.host.clone(), login.port);
        if let Some(pw) = &login.password {
            opts.set_credentials(login.user.clone(), pw.expose().to_string());
        }
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(login.tls().map_err(err)?),
        ));
        let (client, mut events) = rumqttc::v5::AsyncClient::new(opts, 64);
        client
            .subscribe(filter, rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
            .await
            .map_err(|e| err(e.to_string()))?;
        let (forward, rx, ready) = Self::channels();
        let task = tokio::spawn(async move {
            loop {
                let event = match events.poll().await {
                    Ok(rumqttc::v5::Event::Incoming(P5::SubAck(ack))) => {
                        use rumqttc::v5::mqttbytes::v5::SubscribeReasonCode as Code;
                        if ack
                            .return_codes
                            .iter()
                            .all(|c| matches!(c, Code::Success(_)))
                        {
                            Incoming::SubAck
                        } else {
                            Incoming::Failed(format!(
                                "subscription refused by the broker: {:?}",
                                ack.return_codes
                            ))
                        }
                    }
                    Ok(rumqttc::v5::Event::Incoming(P5::Publish(p))) => {
                        Incoming::Publish(Received {
                            key: String::from_utf8_lossy(&p.topic).to_string(),
                            payload: p.payload.to_vec(),
                        })
                    }
                    Ok(_) => Incoming::Other,
                    Err(e) => Incoming::Failed(e.to_string()),
                };
                if !forward.event(event) {
                    return;
                }
            }
        });
        Self::await_suback(Client::V5(client), rx, ready, task, timeout)
            .await
            .map_err(err)
    }

    fn channels() -> (
        Forward,
        mpsc::UnboundedReceiver<Received>,
        mpsc::Receiver<Result<(), String>>,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = mpsc::channel(1);
        (
            Forward {
                tx,
                ready: ready_tx,
            },
            rx,
            ready_rx,
        )
    }

    async fn await_suback(
        client: Client,
        rx: mpsc::UnboundedReceiver<Received>,
        mut ready: mpsc::Receiver<Result<(), String>>,
        task: tokio::task::JoinHandle<()>,
        timeout: Duration,
    ) -> Result<Self, String> {
        match tokio::time::timeout(timeout, ready.recv()).await {
            Ok(Some(Ok(()))) => Ok(MqttSubscriber { client, rx, task }),
            Ok(Some(Err(e))) => {
                task.abort();
                Err(e)
            }
            _ => {
                task.abort();
                Err("no SUBACK in time".into())
            }
        }
    }

    /// The next message, or `None` if none arrives within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<Received> {
        tokio::time::timeout(timeout, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    pub async fn disconnect(self) {
        let _ = match &self.client {
            Client::V3(c) => c.disconnect().await.map_err(|e| e.to_string()),
            Client::V5(c) => c.disconnect().await.map_err(|e| e.to_string()),
        };
        self.task.abort();
    }
}

/// A dropped subscriber leaves: without this its event loop would keep the connection open and
/// acknowledge messages nobody reads (a benchmark lost 63 devices' messages that way).
impl Drop for MqttSubscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Publishes one QoS 1 message and waits for the broker's PUBACK.
pub async fn mqtt_publish(
    login: &Login,
    client_id: &str,
    topic: &str,
    payload: &[u8],
    timeout: Duration,
) -> Result<(), ClientError> {
    let err = |m: String| ClientError::Mqtt(login.host.clone(), login.port, m);
    let (client, mut events) = AsyncClient::new(mqtt_options(login, client_id).map_err(err)?, 16);
    client
        .publish(topic, QoS::AtLeastOnce, false, payload.to_vec())
        .await
        .map_err(|e| err(e.to_string()))?;
    let acked = tokio::time::timeout(timeout, async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(err(e.to_string())),
            }
        }
    })
    .await
    .map_err(|_| err("no PUBACK in time".into()))?;
    let _ = client.disconnect().await;
    acked
}

/// How long one AMQP operation (connect, a batch of confirms, a declaration) may take. A
/// broker under a resource alarm accepts connections but blocks publishers without a word,
/// so nothing here may wait unbounded.
const AMQP_TIMEOUT: Duration = Duration::from_secs(90);

async fn bounded<T>(
    login: &Login,
    what: &str,
    op: impl Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    tokio::time::timeout(AMQP_TIMEOUT, op).await.map_err(|_| {
        ClientError::Amqp(
            login.host.clone(),
            login.port,
            format!(
                "{what}: no answer within {} s (a memory or disk alarm blocks publishers: check /api/nodes)",
                AMQP_TIMEOUT.as_secs()
            ),
        )
    })?
}

async fn amqp_connect(login: &Login) -> Result<Connection, ClientError> {
    let as_amqp = crate::broker::amqp::AmqpLogin {
        host: login.host.clone(),
        port: login.port,
        user: login.user.clone(),
        password: login.password.clone().unwrap_or_else(|| Secret::new("")),
        ca_pem: login.ca_pem.clone(),
        identity: login.identity.clone(),
    };
    crate::broker::amqp::connect(&as_amqp, "gwctl-sandbox-client")
        .await
        .map_err(|e| ClientError::Amqp(login.host.clone(), login.port, e.to_string()))
}

/// An AMQP consumer on a server-named exclusive queue bound to an exchange.
pub struct AmqpConsumer {
    conn: Connection,
    consumer: lapin::Consumer,
}

impl AmqpConsumer {
    pub async fn bind(
        login: &Login,
        exchange: &str,
        binding_key: &str,
    ) -> Result<Self, ClientError> {
        bounded(login, "binding a consumer", async {
            let err =
                |e: lapin::Error| ClientError::Amqp(login.host.clone(), login.port, e.to_string());
            let conn = amqp_connect(login).await?;
            let ch = conn.create_channel().await.map_err(err)?;
            let opts = QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            };
            let queue = ch
                .queue_declare("".into(), opts, FieldTable::default())
                .await
                .map_err(err)?;
            ch.queue_bind(
                queue.name().clone(),
                exchange.into(),
                binding_key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(err)?;
            AmqpConsumer::consume(login, conn, &ch, queue.name().as_str()).await
        })
        .await
    }

    /// Starts an auto-ack consumer of `queue` on `ch`.
    async fn consume(
        login: &Login,
        conn: Connection,
        ch: &lapin::Channel,
        queue: &str,
    ) -> Result<Self, ClientError> {
        let consumer = ch
            .basic_consume(
                queue.into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| ClientError::Amqp(login.host.clone(), login.port, e.to_string()))?;
        Ok(AmqpConsumer { conn, consumer })
    }

    pub async fn next(&mut self, timeout: Duration) -> Option<Received> {
        match tokio::time::timeout(timeout, self.consumer.next()).await {
            Ok(Some(Ok(d))) => Some(Received {
                key: d.routing_key.to_string(),
                payload: d.data,
            }),
            _ => None,
        }
    }

    /// The next message with its headers as text (arrays as their elements' text, joined
    /// with `; `): what an observer of the event exchange records.
    pub async fn next_with_headers(
        &mut self,
        timeout: Duration,
    ) -> Option<(Received, std::collections::BTreeMap<String, String>)> {
        let d = match tokio::time::timeout(timeout, self.consumer.next()).await {
            Ok(Some(Ok(d))) => d,
            _ => return None,
        };
        let headers = d
            .properties
            .headers()
            .as_ref()
            .map(|t| {
                t.inner()
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.to_string(),
                            crate::broker::amqp::header_texts(v).join("; "),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some((
            Received {
                key: d.routing_key.to_string(),
                payload: d.data,
            },
            headers,
        ))
    }

    pub async fn close(self) {
        let _ = self.conn.close(200, "done".into()).await;
    }
}

/// Publishes one persistent message with publisher confirms; fails on a nack.
pub async fn amqp_publish(
    login: &Login,
    exchange: &str,
    routing_key: &str,
    payload: &[u8],
) -> Result<(), ClientError> {
    let one = [(routing_key.to_string(), payload.to_vec())];
    amqp_publish_many(login, exchange, one).await.map(drop)
}

/// Publishes persistent messages on one channel with publisher confirms, waiting for every
/// confirm; returns how many the broker confirmed (a nack or a lost connection is an error).
pub async fn amqp_publish_many(
    login: &Login,
    exchange: &str,
    messages: impl IntoIterator<Item = (String, Vec<u8>)>,
) -> Result<usize, ClientError> {
    bounded(login, "publishing with confirms", async {
        let err =
            |e: lapin::Error| ClientError::Amqp(login.host.clone(), login.port, e.to_string());
        let conn = amqp_connect(login).await?;
        let ch = conn.create_channel().await.map_err(err)?;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(err)?;
        let mut pending = Vec::new();
        for (key, payload) in messages {
            let confirm = ch
                .basic_publish(
                    exchange.into(),
                    key.as_str().into(),
                    BasicPublishOptions::default(),
                    &payload,
                    BasicProperties::default().with_delivery_mode(2),
                )
                .await
                .map_err(err)?;
            pending.push(confirm);
        }
        let mut acked = 0;
        for confirm in pending {
            if confirm.await.map_err(err)?.is_ack() {
                acked += 1;
            } else {
                return Err(ClientError::Amqp(
                    login.host.clone(),
                    login.port,
                    "the broker refused a message (nack)".into(),
                ));
            }
        }
        let _ = conn.close(200, "done".into()).await;
        Ok(acked)
    })
    .await
}

/// One AMQP connection that publishes persistent messages one at a time, each confirmed
/// before the next (a service sending at its own pace, as a benchmark's latency probe).
pub struct AmqpPublisher {
    login: Login,
    conn: Connection,
    channel: lapin::Channel,
}

impl AmqpPublisher {
    pub async fn connect(login: &Login) -> Result<Self, ClientError> {
        bounded(login, "connecting a publisher", async {
            let err =
                |e: lapin::Error| ClientError::Amqp(login.host.clone(), login.port, e.to_string());
            let conn = amqp_connect(login).await?;
            let channel = conn.create_channel().await.map_err(err)?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(err)?;
            Ok(AmqpPublisher {
                login: login.clone(),
                conn,
                channel,
            })
        })
        .await
    }

    /// Publishes and waits for the broker's confirm (a nack is an error).
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        payload: &[u8],
    ) -> Result<(), ClientError> {
        let login = &self.login;
        bounded(login, "publishing with a confirm", async {
            let err =
                |e: lapin::Error| ClientError::Amqp(login.host.clone(), login.port, e.to_string());
            let confirm = self
                .channel
                .basic_publish(
                    exchange.into(),
                    routing_key.into(),
                    BasicPublishOptions::default(),
                    payload,
                    BasicProperties::default().with_delivery_mode(2),
                )
                .await
                .map_err(err)?;
            if confirm.await.map_err(err)?.is_ack() {
                Ok(())
            } else {
                Err(ClientError::Amqp(
                    login.host.clone(),
                    login.port,
                    "the broker refused a message (nack)".into(),
                ))
            }
        })
        .await
    }

    pub async fn close(self) {
        let _ = self.conn.close(200, "done".into()).await;
    }
}

/// Declares a durable queue bound to `exchange` with `binding_key` (messages wait there
/// while nobody consumes, and survive a broker restart).
pub async fn declare_durable_queue(
    login: &Login,
    queue: &str,
    exchange: &str,
    binding_key: &str,
) -> Result<(), ClientError> {
    bounded(login, "declaring a queue", async {
        let err =
            |e: lapin::Error| ClientError::Amqp(login.host.clone(), login.port, e.to_string());
        let conn = amqp_connect(login).await?;
        let ch = conn.create_channel().await.map_err(err)?;
        let opts = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.queue_declare(queue.into(), opts, FieldTable::default())
            .await
            .map_err(err)?;
        ch.queue_bind(
            queue.into(),
            exchange.into(),
            binding_key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(err)?;
        let _ = conn.close(200, "done".into()).await;
        Ok(())
    })
    .await
}

impl AmqpConsumer {
    /// Consumes an existing queue (auto-ack).
    pub async fn on_queue(login: &Login, queue: &str) -> Result<Self, ClientError> {
        bounded(login, "consuming a queue", async {
            let err =
                |e: lapin::Error| ClientError::Amqp(login.host.clone(), login.port, e.to_string());
            let conn = amqp_connect(login).await?;
            let ch = conn.create_channel().await.map_err(err)?;
            ch.basic_qos(500, lapin::options::BasicQosOptions::default())
                .await
                .map_err(err)?;
            AmqpConsumer::consume(login, conn, &ch, queue).await
        })
        .await
    }
}
