//! `gwctl router` on real RabbitMQ 4.0 nodes (a backend and two gateways, `routing.mode:
//! router`): each message for a device reaches only the gateway where the device is, a device
//! nobody has seen gets it by broadcast, roaming loses nothing, and a router killed mid-stream
//! hands over to another without loss.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use gwctl::sandbox::clients::{AmqpConsumer, Login, MqttSubscriber, amqp_publish_many};
use gwctl::sandbox::router::RouterProcess;
use gwctl::sandbox::{BACKEND, Sandbox};
use gwctl::spec::{self, Selection};

use crate::support::{Regions, rabbitmq};

const US: &str = "us-east-1";
const JP: &str = "ap-northeast-1";
const WAIT: Duration = Duration::from_secs(15);

/// A `gwctl router run` process (the sandbox's), with what the test asks it.
struct Router {
    process: RouterProcess,
    port: u16,
}

impl Router {
    async fn start(r: &Regions, sandbox_dir: &Path, id: &str, resync: bool) -> Router {
        let port = gwctl::sandbox::node::free_ports(1).expect("port")[0];
        let exe = assert_cmd::cargo::cargo_bin("gwctl");
        let listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let process = RouterProcess::start(&exe, r.dir(), sandbox_dir, id, listen, resync)
            .await
            .expect("the router starts routing");
        Router { process, port }
    }

    fn log(&self) -> String {
        self.process.log_text()
    }

    fn get(&self, path: &str) -> String {
        crate::support::http_get(("127.0.0.1", self.port), path)
            .unwrap_or_else(|e| panic!("GET {path}: {e}; router log:\n{}", self.log()))
    }

    /// The exchange the router would send `device`'s next message to.
    fn exchange_for(&self, device: &str) -> String {
        let v: serde_json::Value =
            serde_json::from_str(&self.get(&format!("/locations/{device}"))).expect("json");
        v["exchange"].as_str().unwrap_or_default().to_string()
    }

    async fn wait_exchange(&self, device: &str, exchange: &str) {
        let start = Instant::now();
        while self.exchange_for(device) != exchange {
            assert!(
                start.elapsed() < WAIT,
                "the router never sent {device} to {exchange}: {}",
                self.get(&format!("/locations/{device}"))
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A counter's value from `/metrics` (0 when absent).
    fn metric(&self, sample: &str) -> u64 {
        self.get("/metrics")
            .lines()
            .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
            .unwrap_or(0)
    }

    fn kill(&mut self) {
        self.process.kill();
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        self.process.kill();
    }
}

/// Every payload received within `idle` of the last one.
async fn drain(sub: &mut MqttSubscriber, idle: Duration) -> Vec<String> {
    let mut got = Vec::new();
    while let Some(m) = sub.next(idle).await {
        got.push(String::from_utf8_lossy(&m.payload).into_owned());
    }
    got
}

/// The headers of the next event `key` about `user` (others are skipped).
async fn next_event(events: &mut AmqpConsumer, key: &str, user: &str) -> BTreeMap<String, String> {
    loop {
        let (m, h) = events
            .next_with_headers(WAIT)
            .await
            .unwrap_or_else(|| panic!("no {key} of {user} reached the backend"));
        if m.key == key && h.get("user").is_some_and(|u| u == user) {
            return h;
        }
    }
}

/// Everything received during `period`.
async fn collect_for(sub: &mut MqttSubscriber, period: Duration) -> Vec<String> {
    let end = tokio::time::Instant::now() + period;
    let mut got = Vec::new();
    while let Some(left) = end.checked_duration_since(tokio::time::Instant::now()) {
        match sub.next(left).await {
            Some(m) => got.push(String::from_utf8_lossy(&m.payload).into_owned()),
            None => break,
        }
    }
    got
}

async fn drain_amqp(c: &mut AmqpConsumer, idle: Duration) -> Vec<String> {
    let mut got = Vec::new();
    while let Some(m) = c.next(idle).await {
        got.push(m.key);
    }
    got
}

fn commands(device: &str, range: std::ops::Range<usize>) -> Vec<(String, Vec<u8>)> {
    range
        .map(|i| {
            (
                format!("commands.{device}.set"),
                format!("{device}-{i}").into_bytes(),
            )
        })
        .collect()
}

fn distinct(got: &[String]) -> (usize, usize) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for g in got {
        *seen.entry(g).or_default() += 1;
    }
    (seen.len(), got.len() - seen.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_delivers_where_the_device_is_broadcasts_in_doubt_and_loses_nothing() {
    let r = Regions::examples();
    r.edit("backend.yaml", "mode: broadcast", "mode: router");
    let stack = spec::load(r.dir(), &Selection::All).expect("router mode validates");
    let work = tempfile::tempdir().expect("tempdir");
    let sandbox = Sandbox::start(&stack, work.path(), &rabbitmq())
        .await
        .expect("nodes boot");
    sandbox.federate_backend().await.expect("federation");
    let links = sandbox
        .wait_links_running(Duration::from_secs(60))
        .await
        .expect("links run");
    // One link per gateway (from its region's exchange on the backend: see render.rs).
    let us_links: Vec<&str> = links[US].iter().map(|l| l.upstream.as_str()).collect();
    assert_eq!(us_links, ["backend.amq.topic"]);
    let backend: Login = sandbox.admin_login(BACKEND).expect("backend login");
    let device = |region: &str, id: &str| sandbox.device_login(region, id).expect("device");

    // Spies count every message crossing each gateway's link from the backend.
    let spy = |region: &str| {
        let login = sandbox.admin_login(region).expect("admin");
        async move {
            AmqpConsumer::bind(&login, "gwctl.from-backend.amq.topic", "#")
                .await
                .expect("spy")
        }
    };
    let (mut us_spy, mut jp_spy) = (spy(US).await, spy(JP).await);
    // What RabbitMQ 4.0 says when a device connects and leaves, as the backend receives it.
    let mut events = AmqpConsumer::bind(&backend, "gwctl.events", "connection.*")
        .await
        .expect("event observer");

    // A device connected before the router started, which the router never hears of
    // (`--no-resync`): its message is broadcast and reaches it in Japan.
    let mut stranger = MqttSubscriber::connect(
        &device(JP, "stranger"),
        "stranger",
        "commands/stranger/#",
        WAIT,
    )
    .await
    .expect("stranger subscribes");
    let work_dir = work.path().to_path_buf();
    let mut router_a = Router::start(&r, &work_dir, "a", false).await;
    assert_eq!(router_a.exchange_for("stranger"), "gw.all");
    amqp_publish_many(&backend, "amq.topic", commands("stranger", 0..1))
        .await
        .expect("publish");
    assert_eq!(
        drain(&mut stranger, Duration::from_secs(3)).await,
        ["stranger-0"]
    );
    assert_eq!(
        drain_amqp(&mut us_spy, Duration::from_millis(500))
            .await
            .len(),
        1
    );
    assert_eq!(
        drain_amqp(&mut jp_spy, Duration::from_millis(500))
            .await
            .len(),
        1
    );
    assert_eq!(
        router_a.metric("gwctl_router_broadcast_total{reason=\"unknown\"}"),
        1
    );

    // A device in the US: learned from its connection event; its messages reach it and no
    // message of it crosses the Japan link.
    let mut valve = MqttSubscriber::connect(
        &device(US, "valve-us"),
        "valve-us",
        "commands/valve-us/#",
        WAIT,
    )
    .await
    .expect("valve subscribes");
    router_a.wait_exchange("valve-us", "gw.us-east-1").await;
    let headers = next_event(&mut events, "connection.created", "valve-us").await;
    eprintln!("4.0 connection.created headers: {headers:#?}");
    assert_eq!(headers["user"], "valve-us", "the certificate's common name");
    assert!(headers["protocol"].contains("MQTT"), "{headers:?}");
    assert!(
        headers["client_properties"].contains("<<\"valve-us\">>"),
        "{headers:?}"
    );
    assert!(
        headers["x-received-from"].contains("gwctl.from-gateway.us-east-1.amq.rabbitmq.event"),
        "{headers:?}"
    );
    let sent = amqp_publish_many(&backend, "amq.topic", commands("valve-us", 0..50))
        .await
        .expect("publish");
    assert_eq!(sent, 50);
    let got = drain(&mut valve, Duration::from_secs(3)).await;
    assert_eq!(distinct(&got), (50, 0), "US device: (distinct, duplicates)");
    assert_in_order(&got, "valve-us", 0);
    assert_eq!(
        drain_amqp(&mut us_spy, Duration::from_millis(500))
            .await
            .len(),
        50
    );
    assert_eq!(
        drain_amqp(&mut jp_spy, Duration::from_millis(500)).await,
        Vec::<String>::new(),
        "nothing for a US device crosses the Japan link"
    );
    assert_eq!(
        router_a.metric("gwctl_router_routed_total{region=\"us-east-1\"}"),
        50
    );
    let lookup = |json: bool| {
        let mut cmd = r.gwctl();
        cmd.args(["router", "lookup", "valve-us", "--router"])
            .arg(format!("127.0.0.1:{}", router_a.port));
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().expect("lookup");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(
        lookup(false),
        "valve-us: gw.us-east-1 (connected in us-east-1)"
    );
    let found: serde_json::Value = serde_json::from_str(&lookup(true)).expect("json");
    assert_eq!(found["region"], "us-east-1");
    assert_eq!(found["connected"], true);
    let stats: serde_json::Value = serde_json::from_str(&router_a.get("/stats")).expect("stats");
    assert_eq!(stats["routed"]["us-east-1"], 50);
    // Only the device it heard connect: the stranger connected before it started.
    assert_eq!(stats["locations"], 1, "{stats}");
    assert_eq!(stats["learned"]["event"], 1, "{stats}");

    // Roaming Japan -> US while messages flow: the device connects in the US before it leaves
    // Japan (as a moving device does). While it holds both connections it is in doubt
    // (connected before subscribed): broadcast; once Japan's connection closes, the US only.
    let mut roamer_jp =
        MqttSubscriber::connect(&device(JP, "roamer"), "roamer", "commands/roamer/#", WAIT)
            .await
            .expect("roamer in Japan");
    router_a.wait_exchange("roamer", "gw.ap-northeast-1").await;
    let publisher = {
        let backend = backend.clone();
        tokio::spawn(async move {
            for i in 0..150 {
                amqp_publish_many(&backend, "amq.topic", commands("roamer", i..i + 1))
                    .await
                    .expect("publish");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut roamer_us =
        MqttSubscriber::connect(&device(US, "roamer"), "roamer", "commands/roamer/#", WAIT)
            .await
            .expect("roamer in the US");
    router_a.wait_exchange("roamer", "gw.all").await;
    let mut received = collect_for(&mut roamer_jp, Duration::from_millis(400)).await;
    roamer_jp.disconnect().await;
    let closed = next_event(&mut events, "connection.closed", "roamer").await;
    eprintln!("4.0 connection.closed headers: {closed:#?}");
    // 3.10 sent only the connection's name with `closed`; 4.0 sends who it was.
    assert_eq!(closed["user"], "roamer", "{closed:?}");
    router_a.wait_exchange("roamer", "gw.us-east-1").await;
    publisher.await.expect("publisher");
    let in_us = drain(&mut roamer_us, Duration::from_secs(3)).await;
    assert_in_order(&received, "roamer", 0);
    assert_in_order(&in_us, "roamer", 0);
    let after_move = in_us.iter().filter(|m| !received.contains(m)).count();
    received.extend(in_us.iter().cloned());
    let (n, duplicates) = distinct(&received);
    assert_eq!(n, 150, "roaming lost {} of 150", 150 - n);
    assert!(after_move > 0, "messages after the move reach the US");
    eprintln!("roaming: 150 delivered, {duplicates} twice (broadcast while in both regions)");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(router_a.exchange_for("roamer"), "gw.us-east-1");

    // Two routers; the active one is killed (SIGKILL) mid-stream: the standby takes over the
    // queue, learns the device from the management API, and nothing is lost.
    let router_b = Router::start(&r, &work_dir, "b", true).await;
    let stream = amqp_publish_many(&backend, "amq.topic", commands("valve-us", 100..5100));
    let kill = async {
        let start = Instant::now();
        while router_a.metric("gwctl_router_routed_total{region=\"us-east-1\"}") < 50 + 250 {
            assert!(
                start.elapsed() < WAIT,
                "router a routes nothing:\n{}",
                router_a.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        router_a.kill();
    };
    let (published, ()) = tokio::join!(stream, kill);
    assert_eq!(published.expect("publish"), 5000);
    let got = drain(&mut valve, Duration::from_secs(5)).await;
    let (n, duplicates) = distinct(&got);
    assert_eq!(
        n,
        5000,
        "lost {} messages across the kill:\n{}",
        5000 - n,
        router_b.log()
    );
    eprintln!(
        "kill -9 mid-stream: 5000 delivered, {duplicates} duplicates; router b routed {} \
         ({} redelivered)",
        router_b.metric("gwctl_router_routed_total{region=\"us-east-1\"}"),
        router_b.metric("gwctl_router_redelivered_total")
    );
    assert!(router_b.metric("gwctl_router_learned_total{source=\"resync\"}") >= 2);
    let crossed: Vec<String> = drain_amqp(&mut jp_spy, Duration::from_millis(500))
        .await
        .into_iter()
        .filter(|k| k.contains("valve-us"))
        .collect();
    assert_eq!(
        crossed,
        Vec::<String>::new(),
        "the US device's messages crossed to Japan"
    );
    assert_in_order(&got, "valve-us", 100);

    // A region whose exchange takes nothing (Japan's link stopped and its buffer gone): its
    // device's messages go to every gateway instead, in the same batches as routed ones.
    let valve_jp = MqttSubscriber::connect(
        &device(JP, "valve-jp"),
        "valve-jp",
        "commands/valve-jp/#",
        WAIT,
    )
    .await
    .expect("valve-jp subscribes");
    router_b
        .wait_exchange("valve-jp", "gw.ap-northeast-1")
        .await;
    let jp_admin = sandbox.admin(JP).expect("JP admin");
    let link_policy = "federate-from-backend.amq.topic";
    jp_admin
        .delete_policy("/", link_policy)
        .await
        .expect("stop JP's link");
    sandbox
        .admin(BACKEND)
        .expect("backend admin")
        .delete_queue(
            "/",
            "federation: gw.ap-northeast-1 -> gw-ap-northeast-1:gwctl.from-backend.amq.topic",
        )
        .await
        .expect("delete JP's buffer");
    drain_amqp(&mut us_spy, Duration::from_millis(300)).await;
    let mixed: Vec<(String, Vec<u8>)> = (0..3)
        .flat_map(|i| {
            commands("valve-jp", i..i + 1)
                .into_iter()
                .chain(commands("valve-us", 9000 + i..9001 + i))
        })
        .collect();
    amqp_publish_many(&backend, "amq.topic", mixed)
        .await
        .expect("publish");
    assert_eq!(
        drain(&mut valve, Duration::from_secs(3)).await,
        ["valve-us-9000", "valve-us-9001", "valve-us-9002"]
    );
    let mut at_us = drain_amqp(&mut us_spy, Duration::from_millis(500)).await;
    at_us.sort();
    assert_eq!(
        at_us.iter().filter(|k| k.contains("valve-jp")).count(),
        3,
        "{at_us:?}"
    );
    assert_eq!(
        router_b.metric("gwctl_router_broadcast_total{reason=\"unroutable\"}"),
        3
    );
    let policy =
        gwctl::model::federation::gateway_link_policies(&stack.gateway(JP).expect("JP").spec)
            .into_iter()
            .find(|p| p.name == link_policy)
            .expect("JP's link policy");
    jp_admin
        .put_policy("/", &policy)
        .await
        .expect("restore JP's link");
    sandbox
        .wait_links_running(Duration::from_secs(30))
        .await
        .expect("JP's link runs again");
    valve_jp.disconnect().await;
    valve.disconnect().await;
    roamer_us.disconnect().await;
    stranger.disconnect().await;
    sandbox.stop(Duration::from_secs(5)).await;
}

/// The first copy of each of `device`'s messages came in the order sent (copies delivered
/// again after a router stopped may follow).
fn assert_in_order(got: &[String], device: &str, from: usize) {
    let mut seen = std::collections::BTreeSet::new();
    let mut last = None;
    for g in got {
        let n: usize = g
            .strip_prefix(&format!("{device}-"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not {device}'s: {g}"));
        if seen.insert(n) {
            assert!(
                last.is_none_or(|l| n > l) && n >= from,
                "{device}: {n} came after {last:?}"
            );
            last = Some(n);
        }
    }
}
