//! The MQTT-over-TLS probe of `upgrade`'s gates: what a device does, done once. It connects
//! where a device would (an address Route53 serves for the region), with a device
//! certificate, subscribes to its own command topic, and waits for a message published to that
//! topic through the broker (the caller's `send`): TLS, certificate login, the authorizer's
//! answer and routing all take part.

use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, SubscribeReasonCode};

use crate::spec::secret::Secret;

/// Where a device reaches a broker: the address it connects to and the name the broker's
/// certificate must cover there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttTarget {
    pub host: String,
    pub port: u16,
    pub tls_name: String,
}

impl std::fmt::Display for MqttTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "mqtts://{}:{} ({})", self.host, self.port, self.tls_name)
    }
}

/// The identity the probe connects as: a device certificate and its key (PEM).
pub struct ProbeIdentity<'a> {
    pub device: &'a str,
    pub cert_pem: &'a str,
    pub key_pem: &'a Secret,
}

/// Connects to `target` as `identity`, subscribes to `topic` (QoS 1), runs `send` once the
/// broker acknowledged the subscription, and waits for a message on `topic` carrying
/// `payload`. Returns how long the round trip took; every failure says at which point.
pub async fn mqtt_round_trip<F>(
    target: &MqttTarget,
    ca_pem: &str,
    identity: &ProbeIdentity<'_>,
    topic: &str,
    payload: &[u8],
    send: F,
    timeout: Duration,
) -> Result<Duration, String>
where
    F: Future<Output = Result<(), String>>,
{
    let tls = crate::pki::client_config_for_name(
        ca_pem,
        Some((identity.cert_pem, identity.key_pem)),
        &target.tls_name,
    )
    .map_err(|e| format!("TLS: {e}"))?;
    let mut opts = MqttOptions::new(identity.device, target.host.clone(), target.port);
    opts.set_keep_alive(Duration::from_secs(30));
    // No session left behind on the broker.
    opts.set_clean_session(true);
    opts.set_transport(rumqttc::Transport::tls_with_config(
        rumqttc::TlsConfiguration::Rustls(std::sync::Arc::new(tls)),
    ));
    let (client, mut events) = AsyncClient::new(opts, 8);
    let start = Instant::now();
    let result = tokio::time::timeout(timeout, async {
        client
            .subscribe(topic, QoS::AtLeastOnce)
            .await
            .map_err(|e| e.to_string())?;
        let mut send = Some(send);
        loop {
            match events.poll().await.map_err(|e| e.to_string())? {
                Event::Incoming(Packet::SubAck(ack)) => {
                    if !ack
                        .return_codes
                        .iter()
                        .all(|c| matches!(c, SubscribeReasonCode::Success(_)))
                    {
                        return Err(format!("subscription to {topic} refused"));
                    }
                    if let Some(send) = send.take() {
                        send.await
                            .map_err(|e| format!("sending the probe message: {e}"))?;
                    }
                }
                Event::Incoming(Packet::Publish(p))
                    if p.topic == topic && p.payload.as_ref() == payload =>
                {
                    return Ok(start.elapsed());
                }
                _ => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| Err(format!("no round trip within {} s", timeout.as_secs())));
    let _ = client.disconnect().await;
    result
}
