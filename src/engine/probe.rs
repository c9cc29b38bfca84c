//! The last gate of `upgrade`: what devices see. For every address Route53 serves for the
//! region's name (read from its records, so no resolver is needed), an MQTT-over-TLS connect
//! with a device certificate and a round trip through the broker behind it.

use std::time::{Duration, SystemTime};

use super::Engine;
use super::dns::Served;
use super::planning::RegionWork;
use crate::broker::probe::{MqttTarget, ProbeIdentity, mqtt_round_trip};
use crate::model::resources::Kind;
use crate::spec::GatewaySpec;
use crate::spec::model::Devices;

/// How long one probe may take (connect, subscribe, a message back).
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

/// One broker to probe: where a device would dial it, and the instance that answers there.
struct ProbeTarget {
    /// What names it for people (a record's name, a slot).
    label: String,
    dial: String,
    instance: String,
    private_ip: Option<String>,
}

/// The probe's device id in a region: a device like any other to the brokers (the authorizer
/// gives it its own topics only, and revoking it works as for any device).
pub fn probe_device(region: &str) -> String {
    format!("gwctl-probe-{region}")
}

impl Engine {
    /// The MQTT round trip to each address Route53 serves for the region: through how many
    /// it went, and what failed.
    pub(super) async fn mqtt_failures(
        &self,
        gw: &GatewaySpec,
        work: &RegionWork,
        served: &Served,
    ) -> (usize, Vec<String>) {
        let endpoints: Vec<_> = served
            .state
            .endpoints
            .iter()
            .filter(|e| e.healthy && !e.address.is_empty())
            .collect();
        if endpoints.is_empty() {
            // Route53 serves nothing healthy: its checks' gate says so already.
            return (0, Vec::new());
        }
        let mut failures = Vec::new();
        let mut targets = Vec::new();
        for endpoint in endpoints {
            match instance_behind(work, &endpoint.address) {
                Some((instance, private_ip)) => targets.push(ProbeTarget {
                    label: endpoint.name.clone(),
                    dial: endpoint.address.clone(),
                    instance,
                    private_ip,
                }),
                None => failures.push(format!(
                    "MQTT round trip to {} ({}): no broker instance has this address",
                    endpoint.address, endpoint.name
                )),
            }
        }
        let (probed, more) = self.probe_all(gw, &targets).await;
        failures.extend(more);
        (probed, failures)
    }

    /// The MQTT round trip through each running broker of `cluster` at its own address
    /// (before Route53 serves it): through how many it went, and what failed.
    pub(super) async fn cluster_mqtt_failures(
        &self,
        gw: &GatewaySpec,
        cluster: &str,
    ) -> crate::error::Result<(usize, Vec<String>)> {
        let targets: Vec<ProbeTarget> = self
            .broker_instances(&gw.region)
            .await?
            .into_iter()
            .filter(|i| i.cluster == cluster && i.state == "running")
            .filter_map(|i| {
                Some(ProbeTarget {
                    label: i.slot.clone(),
                    dial: i.private_ip.clone()?,
                    instance: i.id,
                    private_ip: i.private_ip,
                })
            })
            .collect();
        if targets.is_empty() {
            return Ok((0, vec![format!("no running broker of {cluster} to probe")]));
        }
        Ok(self.probe_all(gw, &targets).await)
    }

    /// A probe device's round trip through each target.
    async fn probe_all(&self, gw: &GatewaySpec, targets: &[ProbeTarget]) -> (usize, Vec<String>) {
        let device = probe_device(&gw.region);
        let issued = match crate::spec::tls::device_authority(&self.stack)
            .map_err(|e| e.to_string())
            .and_then(|ca| {
                ca.issue_device(&device, SystemTime::now())
                    .map_err(|e| e.to_string())
            }) {
            Ok(i) => i,
            Err(e) => return (0, vec![format!("MQTT round trip: no probe identity: {e}")]),
        };
        let ca_pem = match self
            .stack
            .backend
            .spec
            .tls
            .stack_ca
            .cert
            .read_public(&self.stack.dir)
        {
            Ok(pem) => pem,
            Err(e) => return (0, vec![format!("MQTT round trip: the stack CA: {e}")]),
        };
        let identity = ProbeIdentity {
            device: &device,
            cert_pem: &issued.cert_pem,
            key_pem: &issued.key_pem,
        };
        let topic = Devices::topic(&self.stack.backend.spec.devices.commands, &device, "gate");
        let key = Devices::routing_key(&topic);
        let mut failures = Vec::new();
        let mut probed = 0;
        for t in targets {
            let instance = &t.instance;
            let target = self.mqtt_target(gw, &t.dial, instance);
            let Some(address) = self.instance_address(gw, instance, t.private_ip.as_deref()) else {
                failures.push(format!(
                    "MQTT round trip to {target}: {instance} has no address"
                ));
                continue;
            };
            let client = match self.gateway_client(gw, &address) {
                Ok(c) => c,
                Err(e) => {
                    failures.push(format!("MQTT round trip to {target}: {e}"));
                    continue;
                }
            };
            let nonce = format!("gwctl gate {}", rand::random::<u64>());
            let send = async {
                client
                    .publish("/", "amq.topic", &key, &nonce)
                    .await
                    .map_err(|e| e.to_string())
            };
            match mqtt_round_trip(
                &target,
                &ca_pem,
                &identity,
                &topic,
                nonce.as_bytes(),
                send,
                PROBE_TIMEOUT,
            )
            .await
            {
                Ok(_) => probed += 1,
                Err(e) => failures.push(format!(
                    "MQTT round trip to {target} ({}, {instance}): {e}",
                    t.label
                )),
            }
        }
        (probed, failures)
    }

    fn mqtt_target(&self, gw: &GatewaySpec, served: &str, instance: &str) -> MqttTarget {
        let name = self.regional_name(gw);
        match self.endpoints_now().instance(instance) {
            Some(a) if a.mqtt_port.is_some() => MqttTarget {
                host: a.host.clone(),
                port: a.mqtt_port.unwrap_or(gw.brokers.ports.mqtt),
                tls_name: a.tls_name.clone().unwrap_or(name),
            },
            _ => MqttTarget {
                host: served.to_string(),
                port: gw.brokers.ports.mqtt,
                tls_name: name,
            },
        }
    }
}

/// The broker instance an Elastic IP is on now, and that instance's private address.
fn instance_behind(work: &RegionWork, public_ip: &str) -> Option<(String, Option<String>)> {
    let observed = || work.plan.changes.iter().filter_map(|c| c.before.as_ref());
    let instance = observed()
        .filter(|o| o.key.kind == Kind::ElasticIp && o.state.as_deref() == Some(public_ip))
        .find_map(|o| o.parts.get("instance_id"))?
        .clone();
    let private_ip = observed()
        .find(|o| o.key.kind == Kind::Instance && o.id == instance)
        .and_then(|o| o.parts.get("private_ip").cloned());
    Some((instance, private_ip))
}
