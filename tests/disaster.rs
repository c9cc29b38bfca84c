//! The disaster-recovery drill end to end (`gwctl sandbox drill`): a region's node frozen and
//! its health checks failed, devices failing over to where Route53 then answers, commands
//! sent all along, the region restored and devices back — on real RabbitMQ nodes, the stack
//! brought up by gwctl in the emulator.

use gwctl::sandbox::Sandbox;
use gwctl::spec::{self, Selection};
use serde_json::Value;

use crate::support::moto::{Moto, gwctl_on_sandbox as gwctl};
use crate::support::{Regions, rabbitmq};

/// With every gateway federating the backend's exchange (`routing.mode: broadcast`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_a_region_moves_its_devices_and_loses_no_command() {
    let (report, _) = drill_us_east_1("broadcast").await;
    assert_eq!(report["routing"], "broadcast", "{report:#}");
    assert!(
        report["delayed"].as_u64() > Some(0),
        "some waited for their device: {report:#}"
    );
}

/// With `gwctl router run` sending each command only to the region where its device was
/// last seen: a command routed to us-east-1 while the region is frozen waits on the backend
/// for the region's link (the upstream queue is kept) and reaches the device's persistent
/// session there; those routed after the router heard of the device's connection in Japan
/// go there. Nothing is lost either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_a_region_loses_no_command_the_router_sent_there() {
    let (report, metrics) = drill_us_east_1("router").await;
    assert_eq!(report["routing"], "router", "{report:#}");
    let routed = |region: &str| {
        let sample = format!("gwctl_router_routed_total{{region=\"{region}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&sample)?.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Devices of both regions got commands through the router, and the moved devices' ones
    // were routed to Japan once the router learned where they went.
    assert!(
        routed("us-east-1") > 0 && routed("ap-northeast-1") > 0,
        "{metrics}\n{report:#}"
    );
}

/// The examples brought up on moto and a sandbox (with a router in `routing_mode: router`),
/// then `sandbox drill us-east-1 --outage 3`: its report, checked for what every drill must
/// show, and the router's metrics after it (empty without a router).
async fn drill_us_east_1(routing_mode: &str) -> (Value, String) {
    let (r, m) = (Regions::examples(), Moto::start());
    r.edit(
        "backend.yaml",
        "mode: broadcast",
        &format!("mode: {routing_mode}"),
    );
    let stack = spec::load(r.dir(), &Selection::All).expect("examples validate");
    let work = tempfile::tempdir().expect("tempdir");
    let mut sandbox = Sandbox::start(&stack, work.path(), &rabbitmq())
        .await
        .expect("nodes boot");
    gwctl(&r, &m, work.path())
        .args(["up", "--all", "--yes"])
        .assert()
        .success();
    let router = if routing_mode == "router" {
        let exe = assert_cmd::cargo::cargo_bin("gwctl");
        let port = gwctl::sandbox::node::free_ports(1).expect("port")[0];
        let listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let router = sandbox.start_router(&exe, "drill", Some(listen), true);
        Some(router.await.expect("the router routes").listen)
    } else {
        None
    };
    let out = gwctl(&r, &m, work.path())
        .args(["sandbox", "drill", "us-east-1", "--dir"])
        .arg(work.path())
        .args(["--outage", "3", "--json"])
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stderr}"));
    assert!(out.status.success(), "{report:#}\n{stderr}");
    // Clients near the US were answered us-east-1 and moved to the other region.
    let moved = report["devices_moved"].as_u64().expect("moved");
    assert!(moved >= 2, "{report:#}");
    assert_eq!(report["moved_to"]["ap-northeast-1"].as_u64(), Some(moved));
    let failover = report["failover_s"][1].as_f64().expect("failover");
    assert!(failover > 0.0 && failover < 60.0, "{report:#}");
    assert!(report["return_s"].as_f64() > Some(0.0));
    // Every command arrived, those sent while the devices were away late.
    let sent = report["commands_sent"].as_u64().expect("sent");
    assert!(sent > 20, "{report:#}");
    assert_eq!(report["commands_lost"], 0, "{report:#}");
    assert_eq!(report["commands_received"].as_u64(), Some(sent));
    // On AWS: 10 s × 3 failures + TTL 60 + keepalive 2 × 1.5.
    assert_eq!(report["expected_on_aws_s"].as_f64(), Some(93.0));
    // The drill restored the health checks: Route53 answers us-east-1 again.
    let dry = gwctl(&r, &m, work.path())
        .args(["drill", "us-east-1", "--json"])
        .output()
        .expect("runs");
    let dry: Value = serde_json::from_slice(&dry.stdout).expect("json");
    let us = dry["regions"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["region"] == "us-east-1"))
        .expect("us-east-1");
    assert!(
        us["endpoints"]
            .as_array()
            .is_some_and(|e| e.iter().all(|e| e["healthy"] == true)),
        "{dry:#}"
    );
    let metrics = router
        .map(|addr| crate::support::http_get(addr, "/metrics").expect("the router's metrics"))
        .unwrap_or_default();
    drop(sandbox);
    (report, metrics)
}
