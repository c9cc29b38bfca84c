//! Changing a running gateway: `up` leaves brokers to `gwctl upgrade`.

use std::collections::BTreeMap;

use crate::support::Regions;
use crate::support::moto::{Moto, gwctl};

/// The region's running instances: gwctl id → instance id.
async fn brokers(m: &Moto, region: &str) -> BTreeMap<String, String> {
    let resp = m
        .ec2(region)
        .await
        .describe_instances()
        .send()
        .await
        .expect("instances");
    resp.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter(|i| i.state().and_then(|s| s.name()).map(|n| n.as_str()) == Some("running"))
        .filter_map(|i| {
            let id = i
                .tags()
                .iter()
                .find(|t| t.key() == Some("gwctl:id"))?
                .value()?;
            id.starts_with("instance/broker-").then(|| {
                (
                    id.to_string(),
                    i.instance_id().unwrap_or_default().to_string(),
                )
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_never_replaces_or_removes_a_running_broker() {
    let (r, m) = (Regions::examples(), Moto::start());
    gwctl(&r, &m)
        .args(["up", "us-east-1", "--yes", "--scope", "aws"])
        .assert()
        .success();
    let before = brokers(&m, "us-east-1").await;
    assert_eq!(before.len(), 3);

    // A new instance type replaces every broker; a smaller count removes two.
    r.edit("us-east-1.yaml", "c6i.large", "c6i.xlarge");
    r.edit("us-east-1.yaml", "  count: 3", "  count: 1");
    let out = gwctl(&r, &m)
        .args(["plan", "us-east-1", "--detailed-exitcode", "--scope", "aws"])
        .output()
        .expect("plan");
    assert_eq!(
        out.status.code(),
        Some(2),
        "upgrades pending are changes pending"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "instance/broker-1 ({}) needs a replacement (instance_type, launch_sha256): `up` never replaces \
             a running broker; `gwctl upgrade us-east-1` does it one broker at a time",
            before["instance/broker-1"]
        )),
        "{text}"
    );
    assert!(
        text.contains("instance/broker-3") && text.contains("needs a removal (count)"),
        "{text}"
    );
    assert!(
        text.contains("WARNING: one broker: no queue has a replica"),
        "plan explains what one broker means: {text}"
    );
    let json: serde_json::Value = serde_json::from_slice(
        &gwctl(&r, &m)
            .args(["plan", "us-east-1", "--json", "--scope", "aws"])
            .output()
            .expect("plan")
            .stdout,
    )
    .expect("json");
    let held = json["regions"][0]["held_for_upgrade"]
        .as_array()
        .expect("held");
    let held: Vec<(&str, &str)> = held
        .iter()
        .map(|h| {
            (
                h["key"].as_str().unwrap_or_default(),
                h["action"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        held,
        [
            ("instance/broker-1", "replace"),
            ("instance/broker-2", "delete"),
            ("instance/broker-3", "delete")
        ]
    );

    // up applies what it may and touches no broker, nor a removed broker's address.
    m.record();
    gwctl(&r, &m)
        .args(["up", "us-east-1", "--yes", "--scope", "aws"])
        .assert()
        .success();
    let touched: Vec<String> = m
        .recorded_actions()
        .into_iter()
        .filter(|a| {
            [
                "RunInstances",
                "TerminateInstances",
                "StopInstances",
                "ModifyInstanceAttribute",
                "DisassociateAddress",
                "ReleaseAddress",
                "DeleteParameter",
            ]
            .contains(&a.as_str())
        })
        .collect();
    assert_eq!(touched, Vec::<String>::new());
    assert_eq!(brokers(&m, "us-east-1").await, before);

    // upgrade lists the broker steps with their gates, and does not pretend to carry them out.
    let dry = gwctl(&r, &m)
        .args(["upgrade", "us-east-1", "--dry-run", "--scope", "aws"])
        .output()
        .expect("dry run");
    let text = String::from_utf8_lossy(&dry.stdout);
    assert!(
        text.contains("us-east-1 (canary): 3 steps")
            && text.contains("replace instance/broker-1")
            && text.contains("remove instance/broker-3")
            && text.contains("an MQTT-over-TLS round trip"),
        "{text}{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    m.record();
    let out = gwctl(&r, &m)
        .args(["upgrade", "us-east-1", "--yes", "--scope", "aws"])
        .output()
        .expect("upgrade");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("replacing or removing brokers is not carried out yet"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        m.recorded_actions()
            .iter()
            .all(|a| crate::support::moto::is_read_only(a)),
        "nothing changed"
    );
    assert_eq!(brokers(&m, "us-east-1").await, before);
}
