//! Benchmark: how backend messages reach devices — the router, broadcast, and binding
//! propagation (gateways federating the backend's `amq.topic` directly, so each device
//! subscription becomes a binding on the backend) — on real RabbitMQ 4.0 sandbox nodes with
//! MQTT 3.1.1 devices over TLS. Run through `scripts/bench-routing` (it builds in release mode,
//! provides the example secrets and writes the results); figures go to BENCHMARKS.md.
//!
//! usage: bench_routing REGIONS_DIR GATEWAYS DEVICES_PER_GATEWAY MESSAGES STORM_DEVICES
//!
//! For each mode it reports, per gateway, the messages (and payload bytes) that crossed its
//! link from the backend, with `MESSAGES` commands sent to devices spread evenly over the
//! gateways; end-to-end latency p50/p99 (backend publish → device); for the router, its own
//! throughput (a backlog of `MESSAGES` routed from a cold start); and the binding changes the
//! backend sees (its event exchange) while `STORM_DEVICES` devices connect and subscribe to one
//! gateway and leave again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use gwctl::model::federation::Policy;
use gwctl::sandbox::clients::{
    AmqpConsumer, AmqpPublisher, Login, MqttSubscriber, amqp_publish_many,
};
use gwctl::sandbox::router::RouterProcess;
use gwctl::sandbox::{BACKEND, Install, Sandbox};
use gwctl::spec::{self, Selection};

const WAIT: Duration = Duration::from_secs(30);
const PAYLOAD: usize = 128;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Router,
    Broadcast,
    Propagation,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Router => "router",
            Mode::Broadcast => "broadcast",
            Mode::Propagation => "binding propagation",
        }
    }
}

struct Args {
    regions: PathBuf,
    gateways: usize,
    devices: usize,
    messages: usize,
    storm: usize,
}

fn args() -> Args {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let n = |i: usize| -> usize {
        a.get(i)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| usage())
    };
    Args {
        regions: a.first().map(PathBuf::from).unwrap_or_else(|| usage()),
        gateways: n(1),
        devices: n(2),
        messages: n(3),
        storm: n(4),
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: bench_routing REGIONS_DIR GATEWAYS DEVICES_PER_GATEWAY MESSAGES STORM_DEVICES"
    );
    std::process::exit(2)
}

fn now_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros())
}

fn percentile(sorted: &[u128], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// The region files of the run: the examples (copied by the script) with `mode` set.
fn prepare(regions: &Path, mode: Mode) -> PathBuf {
    let dir = tempfile::tempdir().expect("tempdir").keep();
    for entry in std::fs::read_dir(regions).expect("regions") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|x| x == "yaml") {
            let mut text = std::fs::read_to_string(&path).expect("read");
            if path.file_name().is_some_and(|n| n == "backend.yaml") && mode == Mode::Router {
                text = text.replace("mode: broadcast", "mode: router");
            }
            std::fs::write(dir.join(path.file_name().expect("name")), text).expect("write");
        }
    }
    dir
}

struct Run {
    mode: Mode,
    /// Per gateway: (messages, payload bytes) that crossed its link.
    per_gateway: BTreeMap<String, (usize, usize)>,
    delivered: usize,
    latency_ms: (f64, f64),
    router_rate: Option<f64>,
    storm_bindings: Option<usize>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| {
            let release = p.parent()?.parent()?.join("gwctl");
            release.exists().then_some(release)
        })
        .unwrap_or_else(|| {
            eprintln!("build gwctl in the same profile first (scripts/bench-routing does)");
            std::process::exit(1)
        });
    let mut runs = Vec::new();
    // BENCH_MODES (e.g. `propagation,router`) runs a subset, for looking at one mode.
    let only = std::env::var("BENCH_MODES").unwrap_or_default();
    for mode in [Mode::Broadcast, Mode::Router, Mode::Propagation] {
        let key = mode.name().split(' ').next_back().unwrap_or_default();
        if only.is_empty() || only.split(',').any(|m| m.trim() == key) {
            runs.push(run(&a, mode, &exe).await);
        }
    }
    println!(
        "\n## {} gateways, {} devices each, {} messages",
        a.gateways, a.devices, a.messages
    );
    println!(
        "| mode | messages per gateway link (bytes) | delivered | latency p50 / p99 (500 msg/s) | router routes | binding changes on the backend, {}-device storm |",
        a.storm
    );
    println!("|---|---|---|---|---|---|");
    for r in &runs {
        let per: Vec<String> = r
            .per_gateway
            .iter()
            .map(|(g, (n, b))| format!("{g}: {n} ({} KiB)", b / 1024))
            .collect();
        println!(
            "| {} | {} | {} | {:.1} / {:.1} ms | {} | {} |",
            r.mode.name(),
            per.join(", "),
            r.delivered,
            r.latency_ms.0,
            r.latency_ms.1,
            r.router_rate
                .map_or("-".into(), |x| format!("{x:.0} msg/s")),
            r.storm_bindings.map_or("-".into(), |n| n.to_string()),
        );
    }
}

async fn run(a: &Args, mode: Mode, exe: &Path) -> Run {
    eprintln!("== {} ({} gateways)", mode.name(), a.gateways);
    let regions = prepare(&a.regions, mode);
    let stack = spec::load(&regions, &Selection::All).expect("region files validate");
    let gateways: Vec<String> = stack
        .gateways
        .iter()
        .map(|g| g.spec.region.clone())
        .take(a.gateways)
        .collect();
    assert_eq!(
        gateways.len(),
        a.gateways,
        "not enough gateway region files"
    );
    let work = tempfile::tempdir().expect("tempdir");
    let install = Install::rooted(gwctl::sandbox::node::DEFAULT_ROOT);
    let sandbox = Sandbox::start(&stack, work.path(), &install)
        .await
        .expect("nodes boot");
    sandbox.federate_backend().await.expect("federation");
    sandbox
        .wait_links_running(Duration::from_secs(60))
        .await
        .expect("links run");
    if mode == Mode::Propagation {
        // Each gateway federates the backend's amq.topic into its own amq.topic: what devices
        // subscribe to becomes a binding on the backend (the link propagates it).
        for g in &gateways {
            let admin = sandbox.admin(g).expect("admin");
            admin
                .delete_policy("/", "federate-from-backend.amq.topic")
                .await
                .expect("policy");
            let p = Policy::federate("bench.propagation".into(), "amq.topic", "backend.amq.topic");
            admin.put_policy("/", &p).await.expect("policy");
        }
        sandbox
            .wait_links_running(Duration::from_secs(60))
            .await
            .expect("links run");
    }
    let backend: Login = sandbox.admin_login(BACKEND).expect("backend");
    let router_listen = std::net::SocketAddr::from((
        [127, 0, 0, 1],
        gwctl::sandbox::node::free_ports(1).expect("port")[0],
    ));
    let mut router = match mode {
        Mode::Router => Some(
            RouterProcess::start(exe, &regions, work.path(), "bench", router_listen, true)
                .await
                .expect("router"),
        ),
        _ => None,
    };

    // Devices, subscribed; each records (sequence, receive time).
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, usize, u128)>();
    let mut ids = Vec::new();
    let mut logins = Vec::new();
    for (k, g) in gateways.iter().enumerate() {
        for i in 0..a.devices {
            let id = format!("g{k}-dev{i}");
            logins.push((
                g.clone(),
                sandbox.device_login(g, &id).expect("device"),
                id.clone(),
            ));
            ids.push(id);
        }
    }
    let subscribed: Vec<(String, MqttSubscriber)> = futures_util::stream::iter(logins)
        .map(|(g, login, id)| async move {
            let sub = MqttSubscriber::connect(&login, &id, &format!("commands/{id}/#"), WAIT)
                .await
                .expect("device subscribes");
            (g, sub)
        })
        .buffer_unordered(20)
        .collect()
        .await;
    let mut tasks = Vec::new();
    for (region, mut sub) in subscribed {
        let tx = tx.clone();
        // Reads until the run aborts it: a reader that gave up would drop its device.
        tasks.push(tokio::spawn(async move {
            while let Some(m) = sub.next(Duration::from_secs(3600)).await {
                let seq = String::from_utf8_lossy(&m.payload)
                    .split(' ')
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(usize::MAX);
                let _ = tx.send((region.clone(), seq, now_us()));
            }
        }));
    }
    if let Some(_r) = &router {
        wait_located(router_listen, ids.len()).await;
    }
    // Spies count what crosses each gateway's link (its exchange from the backend).
    let mut spies = Vec::new();
    if mode != Mode::Propagation {
        for g in &gateways {
            let admin = sandbox.admin_login(g).expect("admin");
            spies.push((
                g.clone(),
                AmqpConsumer::bind(&admin, "gwctl.from-backend.amq.topic", "#")
                    .await
                    .expect("spy"),
            ));
        }
    }

    // The messages: each to the next device in turn, stamped with its send time.
    let mut sent_at = vec![0u128; a.messages];
    for chunk in (0..a.messages).collect::<Vec<_>>().chunks(500) {
        let batch: Vec<(String, Vec<u8>)> = chunk
            .iter()
            .map(|&seq| {
                let id = &ids[seq % ids.len()];
                sent_at[seq] = now_us();
                let mut body = format!("{seq} ").into_bytes();
                body.resize(PAYLOAD, b'.');
                (format!("commands.{id}.set"), body)
            })
            .collect();
        amqp_publish_many(&backend, "amq.topic", batch)
            .await
            .expect("publish");
    }
    let mut burst = Vec::new();
    let mut per_gateway: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let burst_start = Instant::now();
    let deadline = burst_start + Duration::from_secs(120);
    let mut by_region: BTreeMap<String, usize> = BTreeMap::new();
    while burst.len() < a.messages && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some((region, seq, at))) if seq < a.messages => {
                burst.push(at.saturating_sub(sent_at[seq]));
                *by_region.entry(region.clone()).or_default() += 1;
                if mode == Mode::Propagation {
                    let e = per_gateway.entry(region).or_default();
                    e.0 += 1;
                    e.1 += PAYLOAD;
                }
            }
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    eprintln!(
        "burst: {} of {} received in {:.1} s: {by_region:?}",
        burst.len(),
        a.messages,
        burst_start.elapsed().as_secs_f64()
    );
    if burst.len() < a.messages {
        for g in &gateways {
            let qs = sandbox
                .admin(g)
                .expect("admin")
                .queues("/", "mqtt-")
                .await
                .expect("queues");
            let waiting: u64 = qs.iter().map(|q| q.1).sum();
            eprintln!(
                "  {g}: {} device queues, {waiting} messages waiting in them",
                qs.len()
            );
        }
    }
    for (g, mut spy) in spies {
        let mut n = 0;
        let mut bytes = 0;
        while let Some(m) = spy.next(Duration::from_millis(500)).await {
            n += 1;
            bytes += m.payload.len();
        }
        per_gateway.insert(g, (n, bytes));
        spy.close().await;
    }
    let delivered = burst.len();

    // Latency at a steady pace (a burst would measure its own queue): one message every 2 ms,
    // from one connection, each confirmed.
    let probes = a.messages.min(1000);
    let publisher = AmqpPublisher::connect(&backend).await.expect("publisher");
    let mut sent_at = BTreeMap::new();
    let base = a.messages;
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    for i in 0..probes {
        tick.tick().await;
        let seq = base + i;
        let id = &ids[i % ids.len()];
        let mut body = format!("{seq} ").into_bytes();
        body.resize(PAYLOAD, b'.');
        sent_at.insert(seq, now_us());
        publisher
            .publish("amq.topic", &format!("commands.{id}.set"), &body)
            .await
            .expect("publish");
    }
    publisher.close().await;
    let mut latencies = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while latencies.len() < probes && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some((_, seq, at))) => {
                if let Some(sent) = sent_at.get(&seq) {
                    latencies.push(at.saturating_sub(*sent));
                }
            }
            _ => break,
        }
    }
    latencies.sort_unstable();
    let latency_ms = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));

    // The router's own pace: a backlog routed from a cold start.
    let router_rate = match router.as_mut() {
        Some(r) => {
            r.kill();
            let backlog: Vec<(String, Vec<u8>)> = (0..a.messages)
                .map(|seq| {
                    let id = &ids[seq % ids.len()];
                    (format!("commands.{id}.set"), vec![b'.'; PAYLOAD])
                })
                .collect();
            amqp_publish_many(&backend, "amq.topic", backlog)
                .await
                .expect("backlog");
            let listen = std::net::SocketAddr::from((
                [127, 0, 0, 1],
                gwctl::sandbox::node::free_ports(1).expect("port")[0],
            ));
            let fresh = RouterProcess::start(exe, &regions, work.path(), "bench2", listen, true)
                .await
                .expect("router");
            // From its first routing on: the start (connect, declare, listing) is not counted.
            let (t0, n0) = (Instant::now(), routed(listen).await);
            let mut n = n0;
            while n < a.messages as u64 && t0.elapsed() < Duration::from_secs(300) {
                tokio::time::sleep(Duration::from_millis(20)).await;
                n = routed(listen).await;
            }
            let rate = (n - n0) as f64 / t0.elapsed().as_secs_f64();
            router = Some(fresh);
            Some(rate)
        }
        None => None,
    };

    let storm_bindings = if a.storm > 0 {
        Some(storm(&sandbox, &gateways[0], a.storm).await)
    } else {
        None
    };
    for t in tasks {
        t.abort();
    }
    if let Some(mut r) = router {
        r.stop(Duration::from_secs(5)).await;
    }
    sandbox.stop(Duration::from_secs(5)).await;
    Run {
        mode,
        per_gateway,
        delivered,
        latency_ms,
        router_rate,
        storm_bindings,
    }
}

/// The router's `/stats` at `addr` (null while it does not answer).
async fn stats(addr: std::net::SocketAddr) -> serde_json::Value {
    match gwctl::broker::router_api::get(addr, "stats").await {
        Ok(body) => serde_json::from_str(&body).unwrap_or_default(),
        Err(_) => serde_json::Value::Null,
    }
}

/// Messages the router at `addr` routed or broadcast so far.
async fn routed(addr: std::net::SocketAddr) -> u64 {
    let v = stats(addr).await;
    let sum = |k: &str| -> u64 {
        v[k].as_object()
            .map(|m| m.values().filter_map(|x| x.as_u64()).sum())
            .unwrap_or(0)
    };
    sum("routed") + sum("broadcast")
}

async fn wait_located(addr: std::net::SocketAddr, devices: usize) {
    let start = Instant::now();
    while stats(addr).await["locations"].as_u64().unwrap_or(0) < devices as u64 {
        assert!(
            start.elapsed() < WAIT,
            "the router did not locate every device"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `count` devices connect to `region`, subscribe, and leave; returns the binding changes the
/// backend's event exchange reported meanwhile.
async fn storm(sandbox: &Sandbox, region: &str, count: usize) -> usize {
    enable_event_exchange(sandbox);
    let backend = sandbox.admin_login(BACKEND).expect("backend");
    let mut events = AmqpConsumer::bind(&backend, "amq.rabbitmq.event", "binding.*")
        .await
        .expect("binding events");
    let started = Instant::now();
    // A steady stream of `PARALLEL` connects in flight (not waves: a wave waits for its slowest).
    const PARALLEL: usize = 100;
    let connects = (0..count).map(|i| {
        let id = format!("storm-{i}");
        let login = sandbox.device_login(region, &id).expect("device");
        async move {
            let t = Instant::now();
            let ok = match MqttSubscriber::connect(&login, &id, &format!("commands/{id}/#"), WAIT)
                .await
            {
                Ok(s) => {
                    s.disconnect().await;
                    true
                }
                Err(_) => false,
            };
            (ok, t.elapsed().as_micros())
        }
    });
    let results: Vec<(bool, u128)> = futures_util::stream::iter(connects)
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    let failed = results.iter().filter(|(ok, _)| !ok).count();
    let mut took: Vec<u128> = results.iter().map(|(_, t)| *t).collect();
    took.sort_unstable();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "storm: {count} devices connected, subscribed and left in {secs:.1} s ({:.0}/s, {failed} failed); \
         connect+subscribe p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        count as f64 / secs,
        percentile(&took, 0.5),
        percentile(&took, 0.99),
        percentile(&took, 1.0),
    );
    let mut changes = 0;
    while events.next(Duration::from_secs(3)).await.is_some() {
        changes += 1;
    }
    events.close().await;
    changes
}

/// Enables the event exchange on the sandbox's backend node while it runs (as
/// `rabbitmq-plugins enable --online` does: the enabled-plugins file, then
/// `rabbit_plugins:ensure/1`).
fn enable_event_exchange(sandbox: &Sandbox) {
    let file = sandbox
        .ctl(BACKEND, &["eval", "rabbit_plugins:enabled_plugins_file()."])
        .expect("enabled plugins file");
    let file = file.trim().trim_matches('"').to_string();
    let text = std::fs::read_to_string(&file).expect("read enabled plugins");
    if !text.contains("rabbitmq_event_exchange") {
        let text = text.replacen("].", ",rabbitmq_event_exchange].", 1);
        std::fs::write(&file, text).expect("write enabled plugins");
    }
    sandbox
        .ctl(
            BACKEND,
            &["eval", &format!("rabbit_plugins:ensure(\"{file}\").")],
        )
        .expect("event exchange on the backend");
}
