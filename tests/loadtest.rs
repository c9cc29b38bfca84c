//! `gwctl loadtest` against a real RabbitMQ gateway node (the sandbox's, the version production
//! runs), and `plan`'s capacity check.

use gwctl::sandbox::{ENDPOINTS_FILE, Sandbox};
use gwctl::spec::{self, Selection};
use serde_json::Value;

use crate::support::moto::{Moto, gwctl};
use crate::support::{Regions, rabbitmq};

fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// A storm of 300 devices (each its own certificate, TLS, through the device authorizer),
/// arriving within 2 s, subscribing and publishing: every one connects, the figures are
/// measured from both sides (latency, messages, the node's memory, the client's CPU), and
/// turned into advice that follows from them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_is_measured_from_both_sides_and_turned_into_advice() {
    let r = Regions::examples();
    let stack = spec::load(r.dir(), &Selection::All).expect("examples validate");
    let work = tempfile::tempdir().expect("tempdir");
    let sandbox = Sandbox::start(&stack, work.path(), &rabbitmq())
        .await
        .expect("nodes boot");
    let out = r
        .gwctl()
        .env("GWCTL_BROKER_ENDPOINTS", work.path().join(ENDPOINTS_FILE))
        .args([
            "loadtest",
            "us-east-1",
            "--devices",
            "300",
            "--jitter-ms",
            "2000",
        ])
        .args([
            "--subscribe",
            "--publish-every-ms",
            "500",
            "--hold",
            "3",
            "--json",
        ])
        .args(["--plan-devices", "100000", "--plan-within", "60"])
        .output()
        .expect("runs");
    let report = json(&out);
    assert!(out.status.success(), "{report:#}");
    assert_eq!(report["connected"], 300, "{report:#}");
    assert_eq!(report["timed_out"], 0);
    assert!(report["attempts"].as_u64() >= Some(300));
    let l = &report["latency_ms"];
    assert!(0.0 < f(&l["p50"]) && f(&l["p50"]) <= f(&l["p99"]) && f(&l["p99"]) <= f(&l["max"]));
    // Each device published every 500 ms for ~3 s, acknowledged by the broker.
    assert!(report["published"].as_u64() > Some(300), "{report:#}");
    assert!(f(&report["messages_per_s"]) > 100.0);
    let client = &report["client"];
    assert!(f(&client["cpu_s"]) > 0.0);
    assert!((0.0..=1.0).contains(&f(&client["share_of_machine"])));
    let broker = &report["broker"];
    let (before, with) = (
        broker["before"]["memory_bytes"]
            .as_u64()
            .expect("memory before"),
        broker["connected"]["memory_bytes"]
            .as_u64()
            .expect("memory connected"),
    );
    assert!(
        with > before,
        "300 TLS connections cost memory: {before} -> {with}"
    );
    assert!(broker["peak_memory_bytes"].as_u64() >= Some(with));
    let kib = f(&broker["kib_per_connection"]);
    assert!((5.0..2000.0).contains(&kib), "{kib} KiB per connection");
    assert!(broker["connected"]["processors"].as_u64().is_some());
    // The advice follows from this storm's figures: nodes for the rate and the memory.
    let figures = &report["figures"];
    let rate = f(&figures["connects_per_s_per_vcpu"]) * 2.0; // c6i.large: 2 vCPUs
    let advice = &report["advice"];
    assert_eq!(advice["devices"], 100000);
    assert_eq!(advice["have"], 3);
    assert_eq!(
        advice["nodes_for_rate"].as_u64(),
        Some((100000.0 / (rate * 60.0)).ceil().max(1.0) as u64),
        "{report:#}"
    );
    assert_eq!(
        f(&advice["jitter_window_s"]).round(),
        (100000.0 / (rate * 3.0)).round()
    );
    drop(sandbox);
}

/// Nothing listens at the endpoint: every device retries with backoff until its time runs
/// out, the failures are counted by reason, no advice is given, and the exit code says so.
#[test]
fn devices_that_cannot_connect_time_out_and_say_why() {
    let r = Regions::examples();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let out = r
        .gwctl()
        .args([
            "loadtest",
            "us-east-1",
            "--endpoint",
            &format!("127.0.0.1:{port}"),
        ])
        .args([
            "--devices",
            "5",
            "--give-up",
            "2",
            "--backoff-ms",
            "100",
            "--json",
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let report = json(&out);
    assert_eq!(report["connected"], 0);
    assert_eq!(report["timed_out"], 5);
    let refused = report["failures"]["refused"].as_u64().unwrap_or(0);
    assert_eq!(Some(refused), report["attempts"].as_u64(), "{report:#}");
    assert!(refused > 5, "each device tried again: {report:#}");
    assert!(report["advice"].is_null() && report["figures"].is_null());
}

/// `plan` warns when a region declares more devices than its brokers absorb reconnecting
/// within its window, with the figures; not when they do.
#[test]
fn plan_warns_when_declared_devices_exceed_what_the_brokers_absorb() {
    let (r, m) = (Regions::examples(), Moto::start());
    r.edit(
        "us-east-1.yaml",
        "tags:",
        "load:\n  devices: 2000000\n  reconnect_within_s: 120\ntags:",
    );
    r.edit(
        "ap-northeast-1.yaml",
        "credentials:",
        "load:\n  devices: 1000\ncredentials:",
    );
    let out = gwctl(&r, &m)
        .args(["plan", "--all", "--scope", "aws"])
        .output()
        .expect("runs");
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warning = stderr
        .lines()
        .find(|l| l.contains("us-east-1: 2000000 devices reconnecting within 120 s need"))
        .unwrap_or_else(|| panic!("no capacity warning:\n{stderr}"));
    for figure in [
        "brokers of c6i.large",
        "TLS connects/s",
        "connections per node",
        "the region has 3",
        "jitter window",
        "Figures: gwctl loadtest",
    ] {
        assert!(warning.contains(figure), "`{figure}` in: {warning}");
    }
    assert!(
        !stderr.contains("ap-northeast-1: 1000 devices"),
        "1000 devices fit:\n{stderr}"
    );
    // Invalid declarations are refused like any other field.
    r.edit("ap-northeast-1.yaml", "devices: 1000", "devices: 0");
    let out = gwctl(&r, &m)
        .args(["plan", "--all"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("load.devices"));
}
