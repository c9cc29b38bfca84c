//! `loadtest`'s devices: each its own MQTT-over-TLS client with its own certificate, arriving
//! all at once or at a rate, each waiting a random part of its jitter window before its first
//! attempt and backing off (exponentially, with full jitter) after a failed one, as devices
//! are told to. What each attempt cost and why one failed is counted; nothing here knows which
//! broker answers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use rumqttc::{AsyncClient, ConnectReturnCode, ConnectionError, Event, MqttOptions, Packet, QoS};

/// One device: its client id (= its certificate's common name) and TLS configuration.
pub struct Device {
    pub id: String,
    pub tls: Arc<rustls::ClientConfig>,
    /// The topic it publishes telemetry to and the filter it subscribes to, when asked.
    pub telemetry: String,
    pub commands: String,
}

/// Where the devices connect: host and MQTT-over-TLS port.
pub type Endpoint = (String, u16);

/// How devices arrive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arrival {
    /// Every device starts at once (a region coming back: all its devices were waiting).
    AllAtOnce,
    /// Devices start at this many per second.
    Rate(f64),
}

/// How the storm behaves: what the devices' firmware would do.
#[derive(Debug, Clone)]
pub struct StormPlan {
    pub arrival: Arrival,
    /// Each device's first attempt comes at a uniformly random moment of this window after
    /// its arrival.
    pub jitter: Duration,
    /// Backoff after a failed attempt: up to `backoff_first` × 2^(failures − 1), at most
    /// `backoff_max`, drawn uniformly below that (full jitter).
    pub backoff_first: Duration,
    pub backoff_max: Duration,
    /// One attempt (TCP, TLS, CONNECT → CONNACK) gives up after this long.
    pub attempt_timeout: Duration,
    /// A device not connected this long after its first attempt has timed out (counted, not
    /// retried).
    pub give_up_after: Duration,
    /// Connected devices subscribe to their commands topic.
    pub subscribe: bool,
    /// Connected devices publish a telemetry message (QoS 1) this often while held.
    pub publish_every: Option<Duration>,
    /// How long the devices stay connected once the last one settled.
    pub hold: Duration,
}

/// Why an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// No CONNACK within the attempt's time (a full listen queue drops SYNs silently).
    Timeout,
    /// TCP connection refused (nothing listens, or the node shed it).
    Refused,
    /// The connection was reset or closed before CONNACK.
    Reset,
    /// The TLS handshake failed.
    Tls,
    /// The broker answered CONNACK with a refusal (authentication, authorization).
    NotAuthorized,
    /// The broker answered CONNACK with "server unavailable" or another code.
    Unavailable,
    Other,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        f.write_str(&s)
    }
}

fn reason(e: &ConnectionError) -> Reason {
    use std::io::ErrorKind;
    let io = |k: ErrorKind| match k {
        ErrorKind::ConnectionRefused => Reason::Refused,
        ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::BrokenPipe
        | ErrorKind::UnexpectedEof => Reason::Reset,
        ErrorKind::TimedOut => Reason::Timeout,
        _ => Reason::Other,
    };
    match e {
        ConnectionError::NetworkTimeout | ConnectionError::FlushTimeout => Reason::Timeout,
        ConnectionError::Io(e) => io(e.kind()),
        ConnectionError::Tls(rumqttc::TlsError::Io(e)) => match io(e.kind()) {
            Reason::Other => Reason::Tls,
            r => r,
        },
        ConnectionError::Tls(_) => Reason::Tls,
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized,
        ) => Reason::NotAuthorized,
        ConnectionError::ConnectionRefused(_) => Reason::Unavailable,
        ConnectionError::MqttState(_) => Reason::Reset,
        _ => Reason::Other,
    }
}

/// What the storm measured, from the clients' side.
#[derive(Debug, Clone, Default)]
pub struct StormOutcome {
    pub devices: usize,
    pub connected: usize,
    /// Devices that never connected within `give_up_after`.
    pub timed_out: usize,
    /// First attempt → CONNACK of every connected device, failed attempts and backoff
    /// included (the jitter before the first attempt is the device's choice, not a delay).
    pub latencies: Vec<Duration>,
    pub attempts: u64,
    pub failures: BTreeMap<Reason, u64>,
    /// From the storm's start to the last device settled.
    pub connect_phase: Duration,
    /// Telemetry messages the broker acknowledged while the devices were held, and over how long.
    pub published: u64,
    pub held: Duration,
}

struct Connected {
    client: AsyncClient,
    pump: tokio::task::JoinHandle<()>,
}

struct DeviceResult {
    latency: Option<Duration>,
    attempts: u64,
    failures: Vec<Reason>,
    connected: Option<Connected>,
}

/// Runs the storm: every device connects (or times out), all are held `hold` (publishing if
/// asked), then disconnect, all at `endpoint`. `settled` counts the devices done with their connect phase
/// (connected or timed out), for the caller's progress while the storm runs.
pub async fn storm(
    endpoint: &Endpoint,
    plan: &StormPlan,
    devices: Vec<Device>,
    settled: Arc<AtomicU64>,
) -> StormOutcome {
    let count = devices.len();
    let started = Instant::now();
    let acked = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(count);
    for (i, device) in devices.into_iter().enumerate() {
        let arrival = match plan.arrival {
            Arrival::AllAtOnce => started,
            Arrival::Rate(per_s) => started + Duration::from_secs_f64(i as f64 / per_s.max(0.001)),
        };
        let (plan, settled, acked) = (plan.clone(), settled.clone(), acked.clone());
        let endpoint = endpoint.clone();
        tasks.push(tokio::spawn(async move {
            let r = one_device(&endpoint, &plan, device, arrival, &acked).await;
            settled.fetch_add(1, Ordering::Relaxed);
            r
        }));
    }
    let mut out = StormOutcome {
        devices: count,
        ..StormOutcome::default()
    };
    let mut held = Vec::new();
    for t in tasks {
        let Ok(r) = t.await else {
            out.timed_out += 1;
            continue;
        };
        out.attempts += r.attempts;
        for f in r.failures {
            *out.failures.entry(f).or_default() += 1;
        }
        match (r.latency, r.connected) {
            (Some(l), Some(c)) => {
                out.latencies.push(l);
                held.push(c);
            }
            _ => out.timed_out += 1,
        }
    }
    out.connect_phase = started.elapsed();
    out.connected = held.len();
    let before = acked.load(Ordering::Relaxed);
    let hold_start = Instant::now();
    tokio::time::sleep(plan.hold).await;
    out.held = hold_start.elapsed();
    out.published = acked.load(Ordering::Relaxed) - before;
    for c in held {
        let _ = c.client.try_disconnect();
        c.pump.abort();
    }
    out.latencies.sort();
    out
}

async fn one_device(
    endpoint: &Endpoint,
    plan: &StormPlan,
    device: Device,
    arrival: Instant,
    acked: &Arc<AtomicU64>,
) -> DeviceResult {
    let first = arrival + random_below(plan.jitter);
    tokio::time::sleep_until(first.into()).await;
    let mut r = DeviceResult {
        latency: None,
        attempts: 0,
        failures: Vec::new(),
        connected: None,
    };
    let deadline = first + plan.give_up_after;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return r;
        }
        r.attempts += 1;
        match attempt(endpoint, &device, plan.attempt_timeout.min(left)).await {
            Ok((client, events)) => {
                r.latency = Some(first.elapsed());
                r.connected = Some(hold(plan, &device, client, events, acked.clone()).await);
                return r;
            }
            Err(why) => r.failures.push(why),
        }
        let ceiling = plan
            .backoff_first
            .saturating_mul(1u32 << r.failures.len().saturating_sub(1).min(16))
            .min(plan.backoff_max);
        let wait = random_below(ceiling).min(deadline.saturating_duration_since(Instant::now()));
        tokio::time::sleep(wait).await;
    }
}

fn random_below(d: Duration) -> Duration {
    if d.is_zero() {
        return d;
    }
    Duration::from_secs_f64(rand::rng().random_range(0.0..d.as_secs_f64()))
}

/// One attempt: a fresh TCP connection, TLS handshake, CONNECT, until CONNACK.
async fn attempt(
    endpoint: &Endpoint,
    device: &Device,
    timeout: Duration,
) -> Result<(AsyncClient, rumqttc::EventLoop), Reason> {
    let mut opts = MqttOptions::new(&device.id, &endpoint.0, endpoint.1);
    opts.set_keep_alive(Duration::from_secs(60));
    opts.set_transport(rumqttc::Transport::tls_with_config(
        rumqttc::TlsConfiguration::Rustls(device.tls.clone()),
    ));
    let (client, mut events) = AsyncClient::new(opts, 16);
    let mut network = rumqttc::NetworkOptions::new();
    network.set_connection_timeout(timeout.as_secs().max(1));
    events.set_network_options(network);
    let connack = tokio::time::timeout(timeout, async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(reason(&e)),
            }
        }
    })
    .await;
    match connack {
        Ok(Ok(())) => Ok((client, events)),
        Ok(Err(why)) => Err(why),
        Err(_) => Err(Reason::Timeout),
    }
}

/// Keeps a connected device alive (its event loop answers pings), subscribed and publishing
/// as the plan asks, until the storm ends.
async fn hold(
    plan: &StormPlan,
    device: &Device,
    client: AsyncClient,
    mut events: rumqttc::EventLoop,
    acked: Arc<AtomicU64>,
) -> Connected {
    if plan.subscribe {
        let filter = device.commands.clone();
        let _ = client.try_subscribe(filter, QoS::AtLeastOnce);
    }
    let publisher = plan.publish_every.map(|every| {
        let (client, topic) = (client.clone(), device.telemetry.clone());
        tokio::spawn(async move {
            // Devices do not publish in step: each starts at a random point of its period.
            tokio::time::sleep(random_below(every)).await;
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if client
                    .publish(&topic, QoS::AtLeastOnce, false, vec![b'x'; 64])
                    .await
                    .is_err()
                {
                    return;
                }
            }
        })
    });
    let pump = tokio::spawn(async move {
        while let Ok(event) = events.poll().await {
            if let Event::Incoming(Packet::PubAck(_)) = event {
                acked.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(p) = publisher {
            p.abort();
        }
    });
    Connected { client, pump }
}

/// The `q` quantile (0..=1) of sorted durations.
pub fn quantile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted.get(i.min(sorted.len() - 1)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_sorted_durations() {
        let d: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&d, 0.5), Some(Duration::from_millis(51)));
        assert_eq!(quantile(&d, 0.99), Some(Duration::from_millis(99)));
        assert_eq!(quantile(&d, 1.0), Some(Duration::from_millis(100)));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn io_errors_are_named_for_what_the_operator_can_do() {
        let e = |k| ConnectionError::Io(std::io::Error::from(k));
        assert_eq!(
            reason(&e(std::io::ErrorKind::ConnectionRefused)),
            Reason::Refused
        );
        assert_eq!(
            reason(&e(std::io::ErrorKind::ConnectionReset)),
            Reason::Reset
        );
        assert_eq!(reason(&ConnectionError::NetworkTimeout), Reason::Timeout);
        assert_eq!(
            reason(&ConnectionError::ConnectionRefused(
                ConnectReturnCode::NotAuthorized
            )),
            Reason::NotAuthorized
        );
        assert_eq!(Reason::NotAuthorized.to_string(), "not-authorized");
    }
}
