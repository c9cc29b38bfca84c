//! The disaster-recovery drill end to end (`gwctl sandbox drill`): a region's node frozen and
//! its health checks failed, devices failing over to where Route53 then answers, commands
//! sent all along, the region restored and devices back — on real RabbitMQ nodes, the stack
//! brought up by gwctl in the emulator.

use gwctl::sandbox::Sandbox;
use gwctl::spec::{self, Selection};
use serde_json::Value;

use crate::support::moto::{Moto, gwctl_on_sandbox as gwctl};
use crate::support::{Regions, rabbitmq};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_a_region_moves_its_devices_and_loses_no_command() {
    let (r, m) = (Regions::examples(), Moto::start());
    let stack = spec::load(r.dir(), &Selection::All).expect("examples validate");
    let work = tempfile::tempdir().expect("tempdir");
    let sandbox = Sandbox::start(&stack, work.path(), &rabbitmq())
        .await
        .expect("nodes boot");
    gwctl(&r, &m, work.path())
        .args(["up", "--all", "--yes"])
        .assert()
        .success();
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
    assert!(
        report["delayed"].as_u64() > Some(0),
        "some waited for their device: {report:#}"
    );
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
    drop(sandbox);
}
