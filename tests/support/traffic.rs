//! Continuous traffic both ways through a gateway region whose brokers come and go (the
//! sandbox following moto): telemetry from a device, published with QoS 1, each message
//! counted once the broker confirmed it; commands from the backend, published with confirms,
//! to a device with a persistent session (clean session off). Devices connect where the
//! region's DNS sends them: the brokers its Elastic IPs are on (Route53 answers those
//! addresses); one whose broker goes away reconnects to another.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gwctl::endpoints::EndpointMap;
use gwctl::sandbox::clients::{self, Login};
use gwctl::spec::secret::Secret;

/// What the test needs to speak to the region and the backend.
#[derive(Clone)]
pub struct Parties {
    pub endpoints: PathBuf,
    pub stack_ca: String,
    /// A backend service (AMQP, password login).
    pub backend: Login,
    /// Device certificates: (id, cert, key).
    pub telemetry_device: (String, String, Secret),
    pub command_device: (String, String, Secret),
    /// The region's EC2 (moto): which instances its Elastic IPs are on.
    pub ec2: aws_sdk_ec2::Client,
}

impl Parties {
    /// The MQTT ports of the brokers devices reach now: the instances the region's Elastic
    /// IPs are on (what Route53 serves), through the endpoint file.
    async fn mqtt_ports(&self) -> Vec<(String, u16)> {
        let Ok(addresses) = self.ec2.describe_addresses().send().await else {
            return Vec::new();
        };
        let served: Vec<String> = addresses
            .addresses()
            .iter()
            .filter_map(|a| a.instance_id().map(str::to_string))
            .collect();
        EndpointMap::load(&self.endpoints)
            .map(|m| {
                m.instances
                    .iter()
                    .filter(|(id, _)| served.contains(id))
                    .filter_map(|(_, a)| Some((a.host.clone(), a.mqtt_port?)))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn device_login(&self, device: &(String, String, Secret), host: &str, port: u16) -> Login {
        Login {
            host: host.to_string(),
            port,
            user: device.0.clone(),
            password: None,
            ca_pem: self.stack_ca.clone(),
            identity: Some((device.1.clone(), device.2.clone())),
        }
    }
}

#[derive(Default)]
pub struct Counts {
    /// Telemetry sequence numbers the gateway confirmed (PUBACK).
    pub telemetry_confirmed: Mutex<BTreeSet<u64>>,
    /// Command sequence numbers the backend confirmed.
    pub commands_sent: Mutex<BTreeSet<u64>>,
    /// Command sequence numbers the device received.
    pub commands_received: Mutex<BTreeSet<u64>>,
    pub telemetry_retries: AtomicUsize,
    /// Where each confirmed telemetry message went: (sequence, port, when).
    pub telemetry_log: Mutex<Vec<(u64, u16, std::time::SystemTime)>>,
    /// Set once the command device's subscription exists: commands sent before would find
    /// no queue to wait in.
    pub subscribed: AtomicBool,
    pub command_device_reconnects: AtomicUsize,
    /// Commands the device received again (QoS 1 is at least once).
    pub commands_duplicated: AtomicUsize,
}

pub struct Traffic {
    stop: Arc<AtomicBool>,
    pub counts: Arc<Counts>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

const PAUSE: Duration = Duration::from_millis(100);

impl Traffic {
    /// Starts the three flows; telemetry lands in the backend's durable queue `queue`.
    pub fn start(p: &Parties) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let tasks = vec![
            tokio::spawn(telemetry(p.clone(), stop.clone(), counts.clone())),
            tokio::spawn(commands(p.clone(), stop.clone(), counts.clone())),
            tokio::spawn(command_device(p.clone(), stop.clone(), counts.clone())),
        ];
        Traffic {
            stop,
            counts,
            tasks,
        }
    }

    /// Stops publishing; the command device keeps receiving until `finish`.
    pub fn stop_publishing(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    pub async fn finish(self) -> Arc<Counts> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
        self.counts
    }
}

/// One message at a time, each on its own connection to the next broker of the region, until
/// a broker confirms it; a failure means the same message again.
async fn telemetry(p: Parties, stop: Arc<AtomicBool>, counts: Arc<Counts>) {
    let device = p.telemetry_device.clone();
    let topic = format!("devices/{}/t", device.0);
    let mut seq = 0u64;
    let mut turn = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let ports = p.mqtt_ports().await;
        if ports.is_empty() {
            tokio::time::sleep(PAUSE).await;
            continue;
        }
        let (host, port) = &ports[turn % ports.len()];
        let login = p.device_login(&device, host, *port);
        let sent = clients::mqtt_publish(
            &login,
            &device.0,
            &topic,
            seq.to_string().as_bytes(),
            Duration::from_secs(10),
        )
        .await;
        match sent {
            Ok(()) => {
                if let Ok(mut c) = counts.telemetry_confirmed.lock() {
                    c.insert(seq);
                }
                if let Ok(mut l) = counts.telemetry_log.lock() {
                    l.push((seq, *port, std::time::SystemTime::now()));
                }
                seq += 1;
            }
            Err(_) => {
                counts.telemetry_retries.fetch_add(1, Ordering::Relaxed);
            }
        }
        // Each message to the next broker: every broker of the region carries some.
        turn += 1;
        tokio::time::sleep(PAUSE).await;
    }
}

/// The backend sends a numbered command at a time, with publisher confirms.
async fn commands(p: Parties, stop: Arc<AtomicBool>, counts: Arc<Counts>) {
    let key = format!("commands.{}.c", p.command_device.0);
    let mut seq = 0u64;
    while !counts.subscribed.load(Ordering::Relaxed) {
        tokio::time::sleep(PAUSE).await;
    }
    while !stop.load(Ordering::Relaxed) {
        if clients::amqp_publish(&p.backend, "amq.topic", &key, seq.to_string().as_bytes())
            .await
            .is_ok()
        {
            if let Ok(mut c) = counts.commands_sent.lock() {
                c.insert(seq);
            }
            seq += 1;
        }
        tokio::time::sleep(PAUSE).await;
    }
}

/// A device with a persistent session: connects with clean session off to a broker of the
/// region, and to the next one whenever its connection ends.
async fn command_device(p: Parties, _stop: Arc<AtomicBool>, counts: Arc<Counts>) {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
    let device = p.command_device.clone();
    let filter = format!("commands/{}/#", device.0);
    let mut turn = 0usize;
    loop {
        let ports = p.mqtt_ports().await;
        if ports.is_empty() {
            tokio::time::sleep(PAUSE).await;
            continue;
        }
        let (host, port) = ports[turn % ports.len()].clone();
        turn += 1;
        let Ok(tls) = gwctl::pki::client_config(&p.stack_ca, Some((device.1.as_str(), &device.2)))
        else {
            return;
        };
        let mut opts = MqttOptions::new(device.0.clone(), host, port);
        opts.set_clean_session(false);
        opts.set_keep_alive(Duration::from_secs(10));
        opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(tls),
        )));
        let (client, mut events) = AsyncClient::new(opts, 64);
        let _ = client.subscribe(filter.clone(), QoS::AtLeastOnce).await;
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    counts.subscribed.store(true, Ordering::Relaxed);
                }
                Ok(Event::Incoming(Packet::Publish(m))) => {
                    if let Some(seq) = std::str::from_utf8(&m.payload)
                        .ok()
                        .and_then(|s| s.parse::<u64>().ok())
                        && let Ok(mut c) = counts.commands_received.lock()
                        && !c.insert(seq)
                    {
                        counts.commands_duplicated.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(_) => {}
                Err(_) => {
                    counts
                        .command_device_reconnects
                        .fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(PAUSE).await;
                    break;
                }
            }
        }
    }
}
