//! Many devices at once against one sandbox gateway: each with a certificate of its own, over
//! MQTT over TLS, through the device authorizer. Reports how fast they connected and what the
//! node's memory grew by while they stay connected, idle (the figures of the README).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet};
use tokio::sync::Semaphore;

use super::SandboxError;
use crate::endpoints::EndpointMap;
use crate::spec::Stack;

/// What a storm measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StormReport {
    pub devices: usize,
    pub connected: usize,
    pub failed: usize,
    /// From the first CONNECT to the last CONNACK.
    pub seconds: f64,
    /// Resident memory of the gateway node's Erlang VM before and with the devices connected.
    pub rss_before: u64,
    pub rss_connected: u64,
}

impl StormReport {
    pub fn per_connection_kib(&self) -> f64 {
        if self.connected == 0 {
            return 0.0;
        }
        self.rss_connected.saturating_sub(self.rss_before) as f64 / 1024.0 / self.connected as f64
    }
}

/// Connects `count` devices (`storm-0`…) to `region`, at most `parallel` handshakes at a time,
/// holds them `hold`, then disconnects them.
pub async fn run(
    stack: &Stack,
    map: &EndpointMap,
    sandbox_dir: &std::path::Path,
    region: &str,
    count: usize,
    parallel: usize,
    hold: Duration,
) -> Result<StormReport, SandboxError> {
    let address = map
        .get(region)
        .and_then(|a| a.first())
        .ok_or_else(|| SandboxError::Failed(format!("no broker for `{region}`")))?;
    let port = address
        .mqtt_port
        .ok_or_else(|| SandboxError::Failed(format!("no MQTT port for `{region}`")))?;
    let host = address.host.clone();
    let dir = &stack.dir;
    let tls = &stack.backend.spec.tls;
    let stack_ca = tls.stack_ca.cert.read_public(dir)?;
    let device_ca = crate::spec::tls::device_authority(stack)
        .map_err(|e| SandboxError::Failed(e.to_string()))?;
    // Certificates first, so the storm measures the brokers, not the issuing.
    let mut configs = Vec::with_capacity(count);
    for i in 0..count {
        let id = format!("storm-{i}");
        let issued = device_ca
            .issue_device(&id, SystemTime::now())
            .map_err(|e| SandboxError::Failed(e.to_string()))?;
        let tls = crate::pki::client_config(&stack_ca, Some((&issued.cert_pem, &issued.key_pem)))
            .map_err(|e| SandboxError::Failed(e.to_string()))?;
        configs.push((id, Arc::new(tls)));
    }
    if stack.gateway(region).is_none() {
        return Err(SandboxError::Failed(format!(
            "no gateway region `{region}`"
        )));
    }
    let node = node_pid(&sandbox_dir.join(region).join("node").join("mnesia"));
    let rss_before = node.map_or(0, rss);

    let gate = Arc::new(Semaphore::new(parallel.max(1)));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(count);
    for (id, tls) in configs {
        let gate = gate.clone();
        let host = host.clone();
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await.ok()?;
            let mut opts = MqttOptions::new(&id, host, port);
            opts.set_keep_alive(Duration::from_secs(120));
            opts.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(tls),
            ));
            let (client, mut events) = AsyncClient::new(opts, 4);
            // rumqttc gives a connection 5 s by default; a storm's handshakes queue longer.
            let mut network = rumqttc::NetworkOptions::new();
            network.set_connection_timeout(60);
            events.set_network_options(network);
            let connected = tokio::time::timeout(Duration::from_secs(60), async {
                loop {
                    match events.poll().await {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => return true,
                        Ok(_) => {}
                        Err(_) => return false,
                    }
                }
            })
            .await
            .unwrap_or(false);
            drop(permit);
            if !connected {
                return None;
            }
            let at = Instant::now();
            // Keep the connection alive (pings) until the storm ends.
            let pump = tokio::spawn(async move { while events.poll().await.is_ok() {} });
            Some((client, pump, at))
        }));
    }
    let mut held = Vec::new();
    let mut failed = 0;
    let mut last = started;
    for t in tasks {
        match t.await.ok().flatten() {
            Some((client, pump, at)) => {
                last = last.max(at);
                held.push((client, pump));
            }
            None => failed += 1,
        }
    }
    let seconds = last.duration_since(started).as_secs_f64();
    tokio::time::sleep(hold).await;
    let rss_connected = node.map_or(0, rss);
    let connected = held.len();
    for (client, pump) in held {
        let _ = client.disconnect().await;
        pump.abort();
    }
    Ok(StormReport {
        devices: count,
        connected,
        failed,
        seconds,
        rss_before,
        rss_connected,
    })
}

/// The pid of the Erlang VM of the sandbox node whose data lives in `mnesia_base`.
fn node_pid(mnesia_base: &std::path::Path) -> Option<u32> {
    let wanted = format!("RABBITMQ_MNESIA_BASE={}", mnesia_base.display());
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        if !String::from_utf8_lossy(&cmd).contains("beam.smp") {
            return None;
        }
        let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        String::from_utf8_lossy(&env)
            .split('\0')
            .any(|v| v == wanted)
            .then_some(pid)
    })
}

/// Resident memory of a process, in bytes.
fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}
