//! The site-to-site VPN: 4-byte ASNs, tunnel options from the region file with secure
//! defaults, tunnel changes left to `upgrade`, tunnels in `status`.

use crate::support::Regions;
use crate::support::moto::{Moto, gwctl, is_read_only};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_byte_asn_and_tunnel_options_apply_once_and_changes_wait_for_upgrade() {
    let (r, m) = (Regions::with_declared_tunnels(), Moto::start());
    gwctl(&r, &m)
        .args(["up", "us-east-1", "--yes", "--scope", "aws"])
        .assert()
        .success();
    let ec2 = m.ec2("us-east-1").await;
    let cgw = ec2.describe_customer_gateways().send().await.expect("cgw");
    let cgw = &cgw.customer_gateways()[0];
    assert_eq!(cgw.bgp_asn_extended(), Some("4200000000"));
    let vpn = ec2.describe_vpn_connections().send().await.expect("vpn");
    let tunnels = vpn.vpn_connections()[0]
        .options()
        .expect("options")
        .tunnel_options();
    assert_eq!(tunnels.len(), 2);
    let mut inside: Vec<&str> = tunnels
        .iter()
        .filter_map(|t| t.tunnel_inside_cidr())
        .collect();
    inside.sort();
    assert_eq!(inside, ["169.254.100.0/30", "169.254.100.4/30"]);
    for t in tunnels {
        let values = |v: Vec<Option<&str>>| {
            v.into_iter()
                .flatten()
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            values(t.ike_versions().iter().map(|x| x.value()).collect()),
            ["ikev2"]
        );
        let integrity = values(
            t.phase1_integrity_algorithms()
                .iter()
                .map(|x| x.value())
                .collect(),
        );
        assert!(!integrity.contains(&"SHA1".to_string()), "{integrity:?}");
        assert!(
            t.phase2_dh_group_numbers()
                .iter()
                .all(|g| g.value().is_some_and(|g| g >= 14))
        );
        assert!(
            t.pre_shared_key()
                .is_some_and(|k| k.starts_with("tunnelkey.")),
            "the declared keys"
        );
    }

    // status shows both tunnels; one the backend's device lost makes the region unhealthy.
    let status = |m: &Moto| {
        let out = gwctl(&r, m)
            .args(["status", "us-east-1", "--json", "--scope", "aws"])
            .output()
            .expect("status");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        (out.status.code(), v[0].clone())
    };
    let (code, s) = status(&m);
    let tunnels = s["tunnels"].as_array().expect("tunnels");
    assert_eq!(tunnels.len(), 2, "{s:#}");
    assert!(tunnels.iter().all(|t| t["status"] == "UP"), "{s:#}");
    assert_eq!(code, Some(0), "{s:#}");
    let vpn_id = vpn.vpn_connections()[0]
        .vpn_connection_id()
        .expect("id")
        .to_string();
    ec2.create_tags()
        .resources(&vpn_id)
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key("emulator:tunnels")
                .value("down")
                .build(),
        )
        .send()
        .await
        .expect("tag");
    let (code, s) = status(&m);
    assert_eq!(code, Some(1), "{s:#}");
    assert!(
        s["problems"].as_array().expect("problems").iter().any(|p| p
            .as_str()
            .is_some_and(|p| p.contains("VPN tunnel") && p.ends_with("is DOWN"))),
        "{s:#}"
    );
    ec2.delete_tags()
        .resources(&vpn_id)
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key("emulator:tunnels")
                .build(),
        )
        .send()
        .await
        .expect("untag");

    // A second up changes nothing.
    m.record();
    gwctl(&r, &m)
        .args(["up", "us-east-1", "--yes", "--scope", "aws"])
        .assert()
        .success();
    let mutating: Vec<String> = m
        .recorded_actions()
        .into_iter()
        .filter(|a| !is_read_only(a))
        .collect();
    assert!(mutating.is_empty(), "a second up called {mutating:?}");

    // New options (and a new key) are an upgrade: plan shows it, masked; up leaves the tunnels.
    r.edit(
        "us-east-1.yaml",
        "  tunnels:\n",
        "  tunnels:\n    dh_groups: [20, 21]\n",
    );
    r.write_secret("PSK_2", "tunnelkey.three_3");
    let out = gwctl(&r, &m)
        .args(["plan", "us-east-1", "--detailed-exitcode", "--scope", "aws"])
        .output()
        .expect("plan");
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("vpn_connection/backend")
            && text.contains("needs new tunnels: AWS takes a tunnel down while it changes"),
        "{text}"
    );
    let json = String::from_utf8_lossy(
        &gwctl(&r, &m)
            .args(["plan", "us-east-1", "--json", "--scope", "aws"])
            .output()
            .expect("plan")
            .stdout,
    )
    .to_string();
    assert!(!json.contains("tunnelkey."), "keys never shown");
    assert!(
        !json.contains(&gwctl::model::sha256_hex("tunnelkey.three_3")),
        "nor their hashes"
    );
    m.record();
    gwctl(&r, &m)
        .args(["up", "us-east-1", "--yes", "--scope", "aws"])
        .assert()
        .success();
    let calls = m.recorded_actions();
    assert!(
        !calls
            .iter()
            .any(|a| a == "ModifyVpnTunnelOptions" || a == "DeleteVpnConnection"),
        "{calls:?}"
    );
}
