//! `gwctl init`: a new region's file from what exists and what AWS offers, then `up` on it.

use crate::support::Regions;
use crate::support::moto::{Moto, gwctl, is_read_only};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_writes_a_region_that_validates_and_comes_up() {
    let (r, m) = (Regions::examples(), Moto::start());
    m.record();
    let out = gwctl(&r, &m)
        .args(["init", "eu-central-1", "--json"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    let made: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    // Asking is all init does in AWS.
    let actions = m.recorded_actions();
    assert!(
        !actions.is_empty() && actions.iter().all(|a| is_read_only(a)),
        "{actions:?}"
    );

    // The first /16 no region file claims (backend 10.0, us-east-1 10.10, Japan 10.20).
    assert_eq!(made["vpc_cidr"], "10.30.0.0/16");
    // The zones are the region's own, as AWS lists them (moto: a, b, c), one subnet each.
    let ec2 = m.ec2("eu-central-1").await;
    let listed = ec2
        .describe_availability_zones()
        .send()
        .await
        .expect("zones");
    let mut real: Vec<String> = listed
        .availability_zones()
        .iter()
        .filter_map(|z| z.zone_name().map(str::to_string))
        .collect();
    real.sort();
    // Only zones offering the brokers' instance type qualify (moto offers c6i.large in all).
    let offered = ec2
        .describe_instance_type_offerings()
        .location_type(aws_sdk_ec2::types::LocationType::AvailabilityZone)
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("instance-type")
                .values("c6i.large")
                .build(),
        )
        .send()
        .await
        .expect("offerings");
    let offered: Vec<&str> = offered
        .instance_type_offerings()
        .iter()
        .filter_map(|o| o.location())
        .collect();
    real.retain(|z| offered.contains(&z.as_str()));
    let zones: Vec<String> = made["subnets"]
        .as_array()
        .expect("subnets")
        .iter()
        .map(|s| s["zone"].as_str().expect("zone").to_string())
        .collect();
    assert_eq!(zones, real[..3.min(real.len())].to_vec());
    assert_eq!(made["subnets"][0]["cidr"], "10.30.1.0/24");
    // The newest Debian 13 image the emulator holds for the region.
    assert_eq!(made["image"]["name"], "debian-13-amd64-20261110-0312");
    assert_eq!(
        made["unset_secrets"],
        serde_json::json!([
            "GWCTL_EU_CENTRAL_1_ADMIN_PASSWORD",
            "GWCTL_EU_CENTRAL_1_ERLANG_COOKIE"
        ])
    );
    let path = r.file("eu-central-1.yaml");
    let written = std::fs::read_to_string(&path).expect("region file");
    assert!(written.contains("env:GWCTL_EU_CENTRAL_1_ADMIN_PASSWORD"));
    assert!(
        written.contains("# default"),
        "defaults are marked for the operator"
    );

    // It never overwrites, and says so with a usage error.
    let again = gwctl(&r, &m)
        .args(["init", "eu-central-1"])
        .output()
        .expect("run");
    assert_eq!(again.status.code(), Some(2), "{again:?}");
    assert!(String::from_utf8_lossy(&again.stderr).contains("never overwrites"));
    assert_eq!(std::fs::read_to_string(&path).expect("file"), written);
    // A region AWS does not have is refused before any call.
    m.record();
    let typo = gwctl(&r, &m)
        .args(["init", "eu-centrl-1"])
        .output()
        .expect("run");
    assert_eq!(typo.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&typo.stderr).contains("eu-central-1"));
    assert_eq!(m.recorded_actions(), Vec::<String>::new());

    // With its secrets set, the new region validates beside the others and comes up.
    let with_secrets = |c: &mut assert_cmd::Command| {
        c.env(
            "GWCTL_EU_CENTRAL_1_ADMIN_PASSWORD",
            "a-fresh-admin-password",
        )
        .env("GWCTL_EU_CENTRAL_1_ERLANG_COOKIE", "AFRESHERLANGCOOKIE");
    };
    let mut validate = gwctl(&r, &m);
    with_secrets(&mut validate);
    validate.args(["validate", "--all"]).assert().success();
    let mut up = gwctl(&r, &m);
    with_secrets(&mut up);
    up.args(["up", "eu-central-1", "--yes", "--scope", "aws"])
        .assert()
        .success();
    let mut plan = gwctl(&r, &m);
    with_secrets(&mut plan);
    plan.args([
        "plan",
        "eu-central-1",
        "--scope",
        "aws",
        "--detailed-exitcode",
    ])
    .assert()
    .code(0);
    let vpcs = ec2.describe_vpcs().send().await.expect("vpcs");
    assert!(
        vpcs.vpcs()
            .iter()
            .any(|v| v.cidr_block() == Some("10.30.0.0/16")),
        "the VPC exists in eu-central-1"
    );
}

#[test]
fn init_offline_needs_zones_and_checks_them() {
    let r = Regions::examples();
    // Without AWS and without zones there is nothing to go on: a usage error from clap.
    r.gwctl()
        .args(["init", "eu-west-3", "--offline"])
        .assert()
        .code(2);
    // Zones of another region fail validation, and nothing is left behind.
    let wrong = r
        .gwctl()
        .args([
            "init",
            "eu-west-3",
            "--offline",
            "--zones",
            "us-east-1a,us-east-1b",
        ])
        .output()
        .expect("run");
    assert_eq!(wrong.status.code(), Some(2), "{wrong:?}");
    assert!(!r.file("eu-west-3.yaml").exists());
    r.gwctl()
        .args([
            "init",
            "eu-west-3",
            "--offline",
            "--zones",
            "eu-west-3a,eu-west-3b",
        ])
        .assert()
        .success();
    assert!(r.file("eu-west-3.yaml").exists());
}
