//! `loadtest`: "what happens if our number of clients doubles?" A storm of devices against
//! one gateway region — each with its own certificate, over MQTT and TLS, with the backoff
//! and jitter devices use — measured from both sides: the clients' connect latency and
//! failures by reason, the node's memory and descriptors (management API), the kernel's
//! listen-queue overflows, and the client's own CPU share (it may share the node's cores).
//! The figures become capacity advice for the region's instance type and broker count.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::Engine;
use super::events::{Event, Events};
use super::host;
use crate::broker::NodeLoad;
use crate::broker::storm::{self as client, Device};
use crate::error::{Error, Result};
use crate::model::capacity::{self, Advice, NodeFigures};
use crate::spec::model::Devices;

pub use crate::broker::storm::{Arrival, StormPlan};

/// What the operator asked of the storm.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Connect here instead of the region's endpoint (`HOST:PORT`).
    pub endpoint: Option<(String, u16)>,
    pub devices: usize,
    /// Device ids are `{prefix}{n}`.
    pub id_prefix: String,
    pub storm: StormPlan,
    /// Advice for this many devices reconnecting within this many seconds (default: the
    /// region file's `load:`, else the storm itself).
    pub plan_for: Option<(u64, u32)>,
}

/// Everything a storm measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadReport {
    pub region: String,
    pub endpoint: String,
    pub devices: usize,
    pub connected: usize,
    /// Devices that never connected in time: the figure that must be 0.
    pub timed_out: usize,
    pub attempts: u64,
    /// Failed attempts by reason (retried with backoff; a device times out only when its
    /// time runs out).
    pub failures: BTreeMap<String, u64>,
    pub connect_s: f64,
    pub connects_per_s: f64,
    pub latency_ms: Latency,
    pub published: u64,
    pub messages_per_s: f64,
    pub client: ClientShare,
    pub broker: Option<BrokerSide>,
    /// Machine-wide SYNs dropped for a full accept queue during the storm (this machine's
    /// kernel: the broker's only when it listens here).
    pub listen_overflows: Option<u64>,
    pub listen_drops: Option<u64>,
    /// What this storm says one node absorbs (only when no device timed out: otherwise the
    /// node did not absorb it), and the advice it gives.
    pub figures: Option<NodeFigures>,
    pub advice: Option<Advice>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// The load client's own cost: on a shared machine every figure is read beside it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClientShare {
    pub cpu_s: f64,
    /// Of all this machine's cores over the storm's wall time.
    pub share_of_machine: f64,
    pub cores: usize,
}

/// The node the endpoint leads to, before, at its peak and with every device connected.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BrokerSide {
    pub before: NodeLoad,
    pub connected: NodeLoad,
    pub peak_memory_bytes: u64,
    pub kib_per_connection: Option<f64>,
}

impl Engine {
    /// `plan`'s capacity check: a warning, with the figures, for each selected region whose
    /// brokers do not absorb its declared devices reconnecting within its declared window.
    pub fn capacity_warnings(&self) -> Vec<String> {
        self.stack
            .gateways
            .iter()
            .filter_map(|g| capacity::check(&g.spec, &capacity::MEASURED))
            .collect()
    }

    pub async fn loadtest(
        &self,
        region: &str,
        opts: LoadOptions,
        events: &dyn Events,
    ) -> Result<LoadReport> {
        let gw = &self
            .stack
            .gateway(region)
            .ok_or_else(|| Error::Usage(format!("no gateway region `{region}`")))?
            .spec;
        let address = self.endpoints.get(region).and_then(|a| a.first()).cloned();
        let (target, port) = match (&opts.endpoint, &address) {
            (Some(e), _) => e.clone(),
            (None, Some(a)) => (a.host.clone(), a.mqtt_port.unwrap_or(gw.brokers.ports.mqtt)),
            (None, None) => (self.regional_name(gw), gw.brokers.ports.mqtt),
        };
        // Brokers present their region's name whatever address reaches them.
        let tls_name = address
            .as_ref()
            .and_then(|a| a.tls_name.clone())
            .unwrap_or_else(|| self.regional_name(gw));
        let devices = self.load_devices(&opts, &tls_name)?;
        // The management API of the node the endpoint file names (the sandbox's, or one an
        // operator reaches); in AWS it is private, and the broker's side is then not measured.
        let broker = match &address {
            Some(a) => self.measured_node(gw, a, events).await?,
            None => None,
        };
        let before = broker.as_ref().map(|(_, _, l)| l.clone());
        let kernel_before = host::listen_overflows();
        let cpu_before = host::own_cpu();
        let started = Instant::now();

        let settled = Arc::new(AtomicU64::new(0));
        let (plan, endpoint) = (opts.storm.clone(), (target.clone(), port));
        let total = devices.len() as u64;
        events.emit(Event::Tally {
            what: format!("{region} devices"),
            done: 0,
            total,
        });
        let storm = tokio::spawn({
            let settled = settled.clone();
            async move { client::storm(&endpoint, &plan, devices, settled).await }
        });
        // While it runs: progress, and the node's memory at its peak.
        let mut peak = before.as_ref().map_or(0, |b| b.memory_bytes);
        let mut connected_load = None;
        let mut last_sample = Instant::now();
        while !storm.is_finished() {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let settled = settled.load(Ordering::Relaxed);
            events.emit(Event::Tally {
                what: format!("{region} devices"),
                done: settled,
                total,
            });
            if let Some((b, node, _)) = &broker
                && last_sample.elapsed() >= Duration::from_secs(1)
            {
                last_sample = Instant::now();
                if let Ok(l) = b.node_load(node).await {
                    peak = peak.max(l.memory_bytes);
                    // The last reading with every device settled is the "connected" one.
                    if settled == total {
                        connected_load = Some(l);
                    }
                }
            }
        }
        let outcome = storm
            .await
            .map_err(|e| Error::Failed(format!("the storm stopped: {e}")))?;
        let wall = started.elapsed();
        let cpu = host::own_cpu().saturating_sub(cpu_before);
        let kernel_after = host::listen_overflows();

        let broker_side = match (before, connected_load) {
            (Some(before), Some(connected)) => {
                let kib = (outcome.connected > 0).then(|| {
                    connected.memory_bytes.saturating_sub(before.memory_bytes) as f64
                        / 1024.0
                        / outcome.connected as f64
                });
                Some(BrokerSide {
                    before,
                    connected,
                    peak_memory_bytes: peak,
                    kib_per_connection: kib,
                })
            }
            _ => None,
        };
        let secs = |d: Option<Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1000.0);
        let connect_s = outcome.connect_phase.as_secs_f64();
        let mut report = LoadReport {
            region: region.to_string(),
            endpoint: format!("{target}:{port}"),
            devices: outcome.devices,
            connected: outcome.connected,
            timed_out: outcome.timed_out,
            attempts: outcome.attempts,
            failures: outcome
                .failures
                .iter()
                .map(|(r, n)| (r.to_string(), *n))
                .collect(),
            connect_s,
            connects_per_s: outcome.connected as f64 / connect_s.max(1e-9),
            latency_ms: Latency {
                p50: secs(client::quantile(&outcome.latencies, 0.5)),
                p99: secs(client::quantile(&outcome.latencies, 0.99)),
                max: secs(outcome.latencies.last().copied()),
            },
            published: outcome.published,
            messages_per_s: outcome.published as f64 / outcome.held.as_secs_f64().max(1e-9),
            client: ClientShare {
                cpu_s: cpu.as_secs_f64(),
                share_of_machine: cpu.as_secs_f64()
                    / (wall.as_secs_f64() * host::cores() as f64).max(1e-9),
                cores: host::cores(),
            },
            broker: broker_side,
            listen_overflows: kernel_before.zip(kernel_after).map(|(b, a)| a.0 - b.0),
            listen_drops: kernel_before.zip(kernel_after).map(|(b, a)| a.1 - b.1),
            figures: None,
            advice: None,
        };
        report.figures = figures_of(&report);
        let demand = opts
            .plan_for
            .or_else(|| gw.load.as_ref().map(|l| (l.devices, l.reconnect_within_s)));
        if let (Some(f), Some(shape)) =
            (&report.figures, capacity::shape(&gw.brokers.instance_type))
        {
            let (devices, within) =
                demand.unwrap_or((report.devices as u64, connect_s.ceil().max(1.0) as u32));
            report.advice = Some(capacity::advise(
                f,
                shape,
                devices,
                f64::from(within),
                u64::from(gw.brokers.count),
            ));
        }
        Ok(report)
    }

    /// The management API of the node `address` names, that node's name and its load before
    /// the storm; `None` (said as a warning) when it does not answer: the storm goes on
    /// without the broker's side.
    async fn measured_node(
        &self,
        gw: &crate::spec::GatewaySpec,
        address: &crate::endpoints::BrokerAddress,
        events: &dyn Events,
    ) -> Result<Option<(crate::broker::Client, String, NodeLoad)>> {
        let client = self.gateway_client(gw, address)?;
        let read = async {
            let node = client.node_name().await?;
            let load = client.node_load(&node).await?;
            Ok::<_, crate::broker::BrokerError>((node, load))
        };
        Ok(match read.await {
            Ok((node, load)) => Some((client, node, load)),
            Err(e) => {
                events.emit(Event::Warning(format!(
                    "the broker's side is not measured: {e}"
                )));
                None
            }
        })
    }

    /// A certificate of its own for every device, issued before the storm so that the storm
    /// measures the broker, not the issuing.
    fn load_devices(&self, opts: &LoadOptions, tls_name: &str) -> Result<Vec<Device>> {
        let dir = &self.stack.dir;
        let backend = &self.stack.backend.spec;
        let stack_ca = backend
            .tls
            .stack_ca
            .cert
            .read_public(dir)
            .map_err(|e| Error::Failed(e.to_string()))?;
        let authority = crate::spec::tls::device_authority(&self.stack).map_err(|e| {
            Error::Usage(format!(
                "loadtest issues each device a certificate and needs the device CA's key: {e}"
            ))
        })?;
        let now = SystemTime::now();
        let mut out = Vec::with_capacity(opts.devices);
        for i in 0..opts.devices {
            let id = format!("{}{i}", opts.id_prefix);
            let issued = authority
                .issue_device(&id, now)
                .map_err(|e| Error::Failed(e.to_string()))?;
            let tls = crate::pki::client_config_for_name(
                &stack_ca,
                Some((&issued.cert_pem, &issued.key_pem)),
                tls_name,
            )
            .map_err(|e| Error::Failed(e.to_string()))?;
            out.push(Device {
                telemetry: Devices::topic(&backend.devices.telemetry, &id, "telemetry"),
                commands: Devices::topic(&backend.devices.commands, &id, "#"),
                id,
                tls: Arc::new(tls),
            });
        }
        Ok(out)
    }
}

/// What one node absorbed in this storm, per vCPU: only a storm with no device timed out and
/// the node's side measured says what the node absorbs (a rate that left devices behind was
/// not absorbed). A storm that did not saturate the node gives a lower bound.
fn figures_of(r: &LoadReport) -> Option<NodeFigures> {
    let b = r.broker.as_ref()?;
    if r.timed_out > 0 || r.connected == 0 {
        return None;
    }
    let vcpus = b.connected.processors.or(b.before.processors)? as f64;
    Some(NodeFigures {
        connects_per_s_per_vcpu: r.connects_per_s / vcpus,
        kib_per_connection: b.kib_per_connection?,
        base_mib: b.before.memory_bytes as f64 / 1048576.0,
        source: "this loadtest",
    })
}
