//! `gwctl sandbox drill REGION`: a region lost and recovered, end to end, on the sandbox's
//! nodes and the emulator's Route53. Devices (each with its own certificate) connect where
//! Route53 answers for their location, with persistent sessions; a backend service sends them
//! commands all along. Then the region's node is frozen (SIGSTOP: its connections go silent,
//! as when a region drops off the network) and its health checks fail in Route53 (the live
//! drill's inversion, under the region's lock); devices notice by their keepalive, read
//! Route53's answer again and reconnect there. The region comes back (SIGCONT, checks
//! restored); devices whose answer is home again return. Every command sent must arrive —
//! late is allowed, lost is not — and the drill reports how long failing over and returning
//! took and how late commands were.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::watch;

use super::SandboxError;
use super::clients::{AmqpPublisher, Login};
use crate::endpoints::EndpointMap;
use crate::engine::events::Events;
use crate::engine::{ApplyOptions, Engine};
use crate::model::routing;
use crate::spec::model::Devices;

/// What the drill is asked to do.
#[derive(Debug, Clone)]
pub struct DrillPlan {
    pub region: String,
    /// Devices per client location (`routing::clients`).
    pub devices_per_location: usize,
    /// How long the region stays down once every device left it.
    pub outage: Duration,
    /// The backend sends one command per this interval, to the devices in turn.
    pub command_every: Duration,
    /// Devices' MQTT keepalive: how soon they notice a silent broker (about 1.5 ×).
    pub keepalive: Duration,
    /// How long failing over, returning and delivering may each take.
    pub timeout: Duration,
}

/// What the drill measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DrillOutcome {
    pub region: String,
    pub devices: usize,
    /// Devices whose answer was the region before it went down.
    pub devices_moved: usize,
    /// From the freeze until each moved device was connected elsewhere: median and max.
    pub failover_s: (f64, f64),
    /// Where the moved devices went.
    pub moved_to: BTreeMap<String, usize>,
    /// From the restore until every moved device was home again.
    pub return_s: f64,
    /// How commands reached the gateways (`routing.mode`): through every gateway's link, or
    /// by `gwctl router run` to the region where the device was last seen.
    pub routing: crate::spec::model::RoutingMode,
    pub commands_sent: u64,
    pub commands_received: u64,
    /// Sent and never received: must be 0.
    pub commands_lost: u64,
    /// Which: "#N to DEVICE, sent T s after the freeze" (or the restore).
    pub lost: Vec<String>,
    /// Received more than once (at-least-once delivery: a copy through each region).
    pub duplicates: u64,
    /// Received more than a second after they were sent, and the latest.
    pub delayed: u64,
    pub max_delay_s: f64,
    /// On AWS, failing over takes Route53's detection (interval × threshold) plus the
    /// record's TTL plus the devices' keepalive; this drill's Route53 reacts at once.
    pub expected_on_aws_s: f64,
}

/// Shared between devices and the collector.
#[derive(Default)]
struct Book {
    /// device → region it is connected to now, and since when.
    at: BTreeMap<String, (String, Instant)>,
    /// (device, seq) → first receipt delay; and how many receipts.
    received: BTreeMap<(String, u64), (f64, u32)>,
    /// seq → when it was sent.
    sent: BTreeMap<u64, Instant>,
    /// When the region was frozen, and thawed.
    down_at: Option<Instant>,
    up_at: Option<Instant>,
}

impl Book {
    /// Each command sent and not received (yet): its number, its device, when it was sent.
    fn unreceived<'a>(
        &'a self,
        ids: &'a [String],
    ) -> impl Iterator<Item = (u64, &'a String, Instant)> + 'a {
        self.sent.iter().filter_map(move |(n, at)| {
            let device = addressee(ids, *n);
            (!self.received.contains_key(&(device.clone(), *n))).then_some((*n, device, *at))
        })
    }

    /// Each command sent and never received, as "#N to DEVICE, sent T s after the freeze".
    fn lost(&self, ids: &[String]) -> Vec<String> {
        let since = |at: Instant, mark: Option<Instant>, what: &str| {
            mark.filter(|m| at >= *m)
                .map(|m| format!("{:.1} s after the {what}", (at - m).as_secs_f64()))
        };
        self.unreceived(ids)
            .map(|(n, device, at)| {
                let when = since(at, self.up_at, "restore")
                    .or_else(|| since(at, self.down_at, "freeze"))
                    .unwrap_or_else(|| "before the freeze".into());
                format!("#{n} to {device}, sent {when}")
            })
            .collect()
    }
}

pub async fn run(
    engine: &Engine,
    map: &EndpointMap,
    sandbox_dir: &std::path::Path,
    plan: &DrillPlan,
    events: &dyn Events,
) -> Result<DrillOutcome, SandboxError> {
    let failed = |e: crate::error::Error| SandboxError::Failed(e.to_string());
    let stack = &engine.stack;
    let gw = stack
        .gateway(&plan.region)
        .ok_or_else(|| SandboxError::Failed(format!("no gateway region `{}`", plan.region)))?;
    // The node's environment names its directory absolutely.
    let sandbox_dir = std::fs::canonicalize(sandbox_dir)
        .map_err(|e| SandboxError::Io(format!("reading {}", sandbox_dir.display()), e))?;
    let node =
        super::node::node_pid(&sandbox_dir.join(&plan.region).join("node")).ok_or_else(|| {
            SandboxError::Failed(format!(
                "no running sandbox node for {} under {}",
                plan.region,
                sandbox_dir.display()
            ))
        })?;

    // Route53's answers, read again twice a second (devices resolve the name when they
    // reconnect; the answers change only when the records or the checks do).
    let survey = engine.survey().await.map_err(failed)?;
    let names: Vec<String> = survey.iter().map(|s| s.state.region.clone()).collect();
    let locations = routing::clients(&names);
    let answers = |survey: &[crate::engine::dns::Served]| -> BTreeMap<String, String> {
        let states: Vec<_> = survey.iter().map(|s| s.state.clone()).collect();
        locations
            .iter()
            .filter_map(|l| Some((l.clone(), routing::answer(l, &states).region?)))
            .collect()
    };
    let (tx, rx) = watch::channel(answers(&survey));
    let resolver = {
        let tx = tx.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if let Ok(s) = engine.survey().await {
                    let _ = tx.send(answers(&s));
                }
            }
        }
    };

    let book = Arc::new(Mutex::new(Book::default()));
    let logins = device_logins(engine, &locations, plan)?;
    let home: BTreeMap<String, String> = logins
        .iter()
        .filter_map(|(id, location, _)| Some((id.clone(), rx.borrow().get(location)?.clone())))
        .collect();
    let moving: BTreeSet<String> = home
        .iter()
        .filter(|(_, r)| **r == plan.region)
        .map(|(d, _)| d.clone())
        .collect();
    if moving.is_empty() {
        return Err(SandboxError::Failed(format!(
            "Route53 answers {} for no client location: nothing to fail over",
            plan.region
        )));
    }
    let filter = &stack.backend.spec.devices.commands;
    let devices: Vec<_> = logins
        .into_iter()
        .map(|(id, location, login)| {
            let (book, rx, keepalive) = (book.clone(), rx.clone(), plan.keepalive);
            let (map, filter) = (map.clone(), Devices::topic(filter, &id, "#"));
            let me = Me {
                id,
                location,
                filter,
                keepalive,
            };
            tokio::spawn(async move { device(me, login, map, rx, book).await })
        })
        .collect();
    let count = devices.len();

    let service = super::roundtrip::service_login(stack, map)?;
    let publisher = AmqpPublisher::connect(&service)
        .await
        .map_err(|e| SandboxError::Failed(e.to_string()))?;
    let ids: Vec<String> = home.keys().cloned().collect();
    let commands = &stack.backend.spec.devices.commands;

    let drill = async {
        let everyone_at = |want: &dyn Fn(&str, &str) -> bool| {
            let b = book.lock().map(|b| b.at.clone()).unwrap_or_default();
            ids.iter()
                .all(|d| b.get(d).is_some_and(|(r, _)| want(d, r)))
        };
        wait_until(
            plan.timeout,
            "every device connected where Route53 answers",
            || everyone_at(&|d, r| home.get(d).is_some_and(|h| h == r)),
        )
        .await?;
        let (ids_ref, publisher_ref, book_ref) = (&ids, &publisher, &book);
        let send = move || async move {
            let (ids, publisher) = (ids_ref, publisher_ref);
            // Numbered from 1, in the order sent.
            let n = {
                let mut b = book_ref.lock().map_err(|_| poisoned())?;
                let n = b.sent.len() as u64 + 1;
                b.sent.insert(n, Instant::now());
                n
            };
            let device = addressee(ids, n);
            let key = Devices::routing_key(&Devices::topic(commands, device, "drill"));
            let payload = format!("{n} {}", unix_ms());
            publisher
                .publish("amq.topic", &key, payload.as_bytes())
                .await
                .map_err(|e| SandboxError::Failed(e.to_string()))
        };
        // Commands flow all along: before, during and after the outage.
        let sender = async {
            loop {
                send().await?;
                tokio::time::sleep(plan.command_every).await;
            }
            #[allow(unreachable_code)]
            Ok::<(), SandboxError>(())
        };
        let script = async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            freeze(node, true)?;
            let down_at = Instant::now();
            if let Ok(mut b) = book.lock() {
                b.down_at = Some(down_at);
            }
            let opts = ApplyOptions {
                lock_timeout: Duration::from_secs(30),
                parallelism: 1,
                broker_wait: Duration::ZERO,
            };
            let before = engine.survey().await.map_err(failed)?;
            let held = match engine
                .take_down(&plan.region, &before, plan.timeout, opts, events)
                .await
            {
                Ok(h) => h,
                Err(e) => {
                    let _ = freeze(node, false);
                    return Err(failed(e));
                }
            };
            let moved = wait_until(
                plan.timeout,
                "the region's devices connected elsewhere",
                || everyone_at(&|d, r| !moving.contains(d) || r != plan.region),
            )
            .await;
            let failover: Vec<f64> = {
                let b = book.lock().map(|b| b.at.clone()).unwrap_or_default();
                moving
                    .iter()
                    .filter_map(|d| {
                        b.get(d)
                            .map(|(_, since)| since.duration_since(down_at).as_secs_f64())
                    })
                    .collect()
            };
            let moved_to = {
                let b = book.lock().map(|b| b.at.clone()).unwrap_or_default();
                let mut m = BTreeMap::new();
                for d in &moving {
                    if let Some((r, _)) = b.get(d) {
                        *m.entry(r.clone()).or_insert(0) += 1;
                    }
                }
                m
            };
            tokio::time::sleep(plan.outage).await;
            let thawed = freeze(node, false);
            let up_at = Instant::now();
            if let Ok(mut b) = book.lock() {
                b.up_at = Some(up_at);
            }
            engine.bring_back(held, events).await.map_err(failed)?;
            moved?;
            thawed?;
            wait_until(plan.timeout, "every device home again", || {
                everyone_at(&|d, r| home.get(d).is_some_and(|h| h == r))
            })
            .await?;
            let returned = up_at.elapsed().as_secs_f64();
            Ok::<_, SandboxError>((failover, moved_to, returned))
        };
        let (failover, moved_to, returned) = tokio::select! {
            r = script => r?,
            r = sender => return Err(r.err().unwrap_or_else(|| SandboxError::Failed("the command sender stopped".into()))),
        };
        let total = book.lock().map_err(|_| poisoned())?.sent.len() as u64;
        // Everything sent must arrive; what the region buffered comes when it is back.
        let all_in = || {
            book.lock()
                .map(|b| b.unreceived(&ids).next().is_none())
                .unwrap_or(false)
        };
        let _ = wait_until(plan.timeout, "every command delivered", all_in).await;
        Ok::<_, SandboxError>((failover, moved_to, returned, total))
    };
    let result = tokio::select! {
        r = drill => r,
        _ = resolver => Err(SandboxError::Failed("the resolver stopped".into())),
    };
    // Whatever happened, the node runs again.
    let _ = freeze(node, false);
    for d in devices {
        d.abort();
    }
    publisher.close().await;
    let (mut failover, moved_to, returned, total) = result?;
    failover.sort_by(f64::total_cmp);
    let b = book.lock().map_err(|_| poisoned())?;
    let received = b.received.len() as u64;
    let delays: Vec<f64> = b.received.values().map(|(d, _)| *d).collect();
    let hc = &gw.spec.health_check;
    Ok(DrillOutcome {
        region: plan.region.clone(),
        devices: count,
        devices_moved: moving.len(),
        failover_s: (
            failover.get(failover.len() / 2).copied().unwrap_or(0.0),
            failover.last().copied().unwrap_or(0.0),
        ),
        moved_to,
        return_s: returned,
        routing: stack.backend.spec.routing.mode,
        commands_sent: total,
        commands_received: received,
        commands_lost: total.saturating_sub(received),
        lost: b.lost(&ids),
        duplicates: b.received.values().map(|(_, n)| u64::from(n - 1)).sum(),
        delayed: delays.iter().filter(|d| **d > 1.0).count() as u64,
        max_delay_s: delays.iter().copied().fold(0.0, f64::max),
        expected_on_aws_s: f64::from(hc.interval_s * hc.failure_threshold)
            + stack.backend.spec.dns.ttl as f64
            + plan.keepalive.as_secs_f64() * 1.5,
    })
}

/// The device command `n` is sent to: the devices in turn.
fn addressee(ids: &[String], n: u64) -> &String {
    &ids[(n as usize) % ids.len()]
}

fn poisoned() -> SandboxError {
    SandboxError::Failed("poisoned".into())
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// Freezes (SIGSTOP) or thaws (SIGCONT) a node's VM.
fn freeze(pid: u32, stop: bool) -> Result<(), SandboxError> {
    let signal = if stop { libc::SIGSTOP } else { libc::SIGCONT };
    // SAFETY: kill(2) with a pid found under the sandbox's own directory.
    if unsafe { libc::kill(pid as libc::pid_t, signal) } != 0 {
        return Err(SandboxError::Failed(format!(
            "signalling node {pid}: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

async fn wait_until(
    timeout: Duration,
    what: &str,
    done: impl Fn() -> bool,
) -> Result<(), SandboxError> {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > timeout {
            return Err(SandboxError::Failed(format!(
                "not reached within {} s: {what}",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// A login per device: `devices_per_location` at each client location, ids
/// `drill-<location>-<n>`.
fn device_logins(
    engine: &Engine,
    locations: &[String],
    plan: &DrillPlan,
) -> Result<Vec<(String, String, Login)>, SandboxError> {
    let stack = &engine.stack;
    let stack_ca = stack
        .backend
        .spec
        .tls
        .stack_ca
        .cert
        .read_public(&stack.dir)?;
    let authority = crate::spec::tls::device_authority(stack)
        .map_err(|e| SandboxError::Failed(e.to_string()))?;
    let mut out = Vec::new();
    for location in locations {
        for n in 0..plan.devices_per_location.max(1) {
            let id = format!("drill-{location}-{n}");
            let login = super::device_login(&authority, &stack_ca, &id)?;
            out.push((id, location.clone(), login));
        }
    }
    Ok(out)
}

/// One device for the whole drill: connect where Route53 answers for its location (a
/// persistent session: what is queued for it waits), take commands, and when the broker
/// goes silent or the answer moves home again, resolve and connect again.
/// Who a device is: its id, where it is, what it subscribes to, its keepalive.
struct Me {
    id: String,
    location: String,
    filter: String,
    keepalive: Duration,
}

async fn device(
    me: Me,
    mut login: Login,
    map: EndpointMap,
    answers: watch::Receiver<BTreeMap<String, String>>,
    book: Arc<Mutex<Book>>,
) {
    let Me {
        id,
        location,
        filter,
        keepalive,
    } = me;
    loop {
        let Some(region) = answers.borrow().get(&location).cloned() else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let Some(address) = map.get(&region).and_then(|a| a.first()) else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        login.host = address.host.clone();
        login.port = address.mqtt_port.unwrap_or(0);
        let Ok(tls) = login.tls() else { return };
        let mut opts = MqttOptions::new(&id, &login.host, login.port);
        opts.set_keep_alive(keepalive);
        opts.set_clean_session(false);
        opts.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(tls),
        ));
        let (client, mut events) = AsyncClient::new(opts, 64);
        let _ = client.try_subscribe(filter.clone(), QoS::AtLeastOnce);
        let mut check = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                e = events.poll() => match e {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Ok(mut b) = book.lock() {
                            b.at.insert(id.clone(), (region.clone(), Instant::now()));
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => receipt(&book, &id, &p.payload),
                    Ok(_) => {}
                    Err(_) => break,
                },
                _ = check.tick() => {
                    // Home is answered again: go back (devices re-resolve periodically).
                    let now = answers.borrow().get(&location).cloned();
                    if now.is_some_and(|r| r != region) {
                        let _ = client.try_disconnect();
                        let _ = tokio::time::timeout(Duration::from_secs(2), async {
                            while events.poll().await.is_ok() {}
                        }).await;
                        break;
                    }
                }
            }
        }
        if let Ok(mut b) = book.lock()
            && b.at.get(&id).is_some_and(|(r, _)| *r == region)
        {
            b.at.remove(&id);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Records a command's arrival: `"<seq> <sent unix ms>"`.
fn receipt(book: &Mutex<Book>, id: &str, payload: &[u8]) {
    let text = String::from_utf8_lossy(payload);
    let mut parts = text.split_whitespace();
    let (Some(Ok(seq)), Some(Ok(sent))) = (
        parts.next().map(str::parse::<u64>),
        parts.next().map(str::parse::<u128>),
    ) else {
        return;
    };
    let delay = unix_ms().saturating_sub(sent) as f64 / 1000.0;
    if let Ok(mut b) = book.lock() {
        let e = b
            .received
            .entry((id.to_string(), seq))
            .or_insert((delay, 0));
        e.1 += 1;
    }
}
