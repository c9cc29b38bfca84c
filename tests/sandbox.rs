//! `gwctl sandbox start` / `stop`: nodes outlive the command that started them, and stopping
//! leaves no process behind (nodes, their helpers, the sandbox's epmd).

use std::time::Duration;

use crate::support::Regions;

/// Processes whose process group is `pgid` (a node and everything it started).
fn group_members(pgid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command name: state, ppid, pgrp, ...
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.first() != Some(&"Z")
            && fields.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid)
        {
            out.push(pid);
        }
    }
    out
}

#[test]
fn start_then_stop_leaves_no_process_behind() {
    let r = Regions::examples();
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path().join("run");
    r.gwctl()
        .args(["sandbox", "start", "--dir"])
        .arg(&dir)
        .assert()
        .success();

    let pids: Vec<u32> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("nodes.json")).expect("nodes.json"))
            .expect("pids");
    assert_eq!(
        pids.len(),
        5,
        "backend and two gateways, and the gateways' device authorizers"
    );
    assert!(
        pids.iter().all(|p| !group_members(*p).is_empty()),
        "the nodes outlive `sandbox start`"
    );
    let layout: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("sandbox.json")).expect("layout"))
            .expect("json");
    let epmd = layout["epmd_port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .expect("epmd port");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", epmd)).is_ok(),
        "the sandbox's own epmd runs"
    );
    let endpoints: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("endpoints.json")).expect("endpoints"),
    )
    .expect("json");
    assert_eq!(endpoints["regions"]["backend"][0]["host"], "127.0.0.1");
    assert!(endpoints["regions"]["us-east-1"][0]["mqtt_port"].is_u64());

    r.gwctl()
        .args(["sandbox", "stop", "--dir"])
        .arg(&dir)
        .assert()
        .success();
    std::thread::sleep(Duration::from_millis(500));
    for pid in &pids {
        assert_eq!(
            group_members(*pid),
            Vec::<u32>::new(),
            "processes left in the group of node {pid}"
        );
    }
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", epmd)).is_err(),
        "epmd stopped"
    );
    // Stopping again is harmless.
    r.gwctl()
        .args(["sandbox", "stop", "--dir"])
        .arg(&dir)
        .assert()
        .success();
}
