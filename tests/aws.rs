//! plan / up / down against moto (the project's launcher): everything created and tagged,
//! convergence after SIGKILL, drift repair, stale plans, ownership on delete, no AWS call on
//! invalid input.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use aws_sdk_ec2::types::{Filter, Tag};

use crate::support::Regions;
use crate::support::moto::{Moto, gwctl, is_read_only};

fn tags(t: &[Tag]) -> BTreeMap<String, String> {
    t.iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
        .collect()
}

/// What exists in a region, by kind, excluding what every region has by default; each entry
/// is (id, tags).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Inventory {
    kinds: BTreeMap<&'static str, Vec<(String, Tags)>>,
}

type Tags = BTreeMap<String, String>;

impl Inventory {
    fn count(&self, kind: &str) -> usize {
        self.kinds.get(kind).map_or(0, Vec::len)
    }

    /// Everything that is not gwctl's, for ownership checks.
    pub(crate) fn untagged(&self) -> Vec<String> {
        self.kinds
            .values()
            .flatten()
            .filter(|(_, t)| t.get("gwctl:stack").map(String::as_str) != Some("mqtt-example"))
            .map(|(id, _)| id.clone())
            .collect()
    }

    pub(crate) fn shape(&self) -> BTreeMap<&'static str, usize> {
        self.kinds.iter().map(|(k, v)| (*k, v.len())).collect()
    }
}

pub(crate) async fn inventory(ec2: &aws_sdk_ec2::Client) -> Inventory {
    let mut inv = Inventory::default();
    let mut add = |kind: &'static str, id: Option<&str>, t: &[Tag]| {
        inv.kinds
            .entry(kind)
            .or_default()
            .push((id.unwrap_or_default().to_string(), tags(t)));
    };
    for v in ec2.describe_vpcs().send().await.expect("vpcs").vpcs() {
        if v.is_default() != Some(true) {
            add("vpc", v.vpc_id(), v.tags());
        }
    }
    for s in ec2
        .describe_subnets()
        .send()
        .await
        .expect("subnets")
        .subnets()
    {
        if s.default_for_az() != Some(true) {
            add("subnet", s.subnet_id(), s.tags());
        }
    }
    for g in ec2
        .describe_internet_gateways()
        .send()
        .await
        .expect("igws")
        .internet_gateways()
    {
        if !g.tags().is_empty() || g.attachments().iter().all(|a| a.vpc_id().is_none()) {
            add("internet_gateway", g.internet_gateway_id(), g.tags());
        }
    }
    for t in ec2
        .describe_route_tables()
        .send()
        .await
        .expect("rtbs")
        .route_tables()
    {
        if !t.associations().iter().any(|a| a.main() == Some(true)) {
            add("route_table", t.route_table_id(), t.tags());
        }
    }
    for g in ec2
        .describe_security_groups()
        .send()
        .await
        .expect("sgs")
        .security_groups()
    {
        if g.group_name() != Some("default") {
            add("security_group", g.group_id(), g.tags());
        }
    }
    for g in ec2
        .describe_customer_gateways()
        .send()
        .await
        .expect("cgws")
        .customer_gateways()
    {
        if g.state() != Some("deleted") {
            add("customer_gateway", g.customer_gateway_id(), g.tags());
        }
    }
    for g in ec2
        .describe_vpn_gateways()
        .send()
        .await
        .expect("vgws")
        .vpn_gateways()
    {
        if g.state().map(|s| s.as_str()) != Some("deleted") {
            add("vpn_gateway", g.vpn_gateway_id(), g.tags());
        }
    }
    for v in ec2
        .describe_vpn_connections()
        .send()
        .await
        .expect("vpns")
        .vpn_connections()
    {
        if v.state().map(|s| s.as_str()) != Some("deleted") {
            add("vpn_connection", v.vpn_connection_id(), v.tags());
        }
    }
    for r in ec2
        .describe_instances()
        .send()
        .await
        .expect("instances")
        .reservations()
    {
        for i in r.instances() {
            if !matches!(
                i.state().and_then(|s| s.name()).map(|n| n.as_str()),
                Some("terminated" | "shutting-down")
            ) {
                add("instance", i.instance_id(), i.tags());
            }
        }
    }
    for a in ec2
        .describe_addresses()
        .send()
        .await
        .expect("eips")
        .addresses()
    {
        add("elastic_ip", a.allocation_id(), a.tags());
    }
    inv
}

pub(crate) fn clean_shape() -> BTreeMap<&'static str, usize> {
    BTreeMap::from([
        ("customer_gateway", 1),
        ("elastic_ip", 3),
        ("instance", 4),
        ("internet_gateway", 1),
        ("route_table", 1),
        ("security_group", 2),
        ("subnet", 2),
        ("vpc", 1),
        ("vpn_connection", 1),
        ("vpn_gateway", 1),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_creates_every_resource_tagged_then_plans_no_change_and_calls_nothing_mutating() {
    let (r, m) = (Regions::examples(), Moto::start());
    gwctl(&r, &m)
        .args(["up", "us-east-1", "--yes", "--scope", "aws"])
        .assert()
        .success();

    let ec2 = m.ec2("us-east-1").await;
    let inv = inventory(&ec2).await;
    assert_eq!(inv.shape(), clean_shape());
    assert_eq!(
        inv.untagged(),
        Vec::<String>::new(),
        "every resource carries the ownership tags"
    );
    for (_, t) in inv.kinds.values().flatten() {
        assert_eq!(t.get("gwctl:region").map(String::as_str), Some("us-east-1"));
        assert!(t.contains_key("gwctl:id") && t.contains_key("Name"));
        assert_eq!(
            t.get("team").map(String::as_str),
            Some("messaging"),
            "free tags from the files"
        );
    }

    // The VPN carries the backend route; the route table sends it there and to the internet.
    let vpns = ec2.describe_vpn_connections().send().await.expect("vpn");
    let vpn = &vpns.vpn_connections()[0];
    let routes: Vec<&str> = vpn
        .routes()
        .iter()
        .filter_map(|r| r.destination_cidr_block())
        .collect();
    assert_eq!(routes, ["10.0.0.0/16"]);
    assert_eq!(
        vpn.options().and_then(|o| o.static_routes_only()),
        Some(true)
    );
    let filter = |k: &str, v: &str| Filter::builder().name(k).values(v).build();
    let rtb = ec2
        .describe_route_tables()
        .filters(filter("tag:gwctl:id", "route_table/public"))
        .send()
        .await
        .expect("rtb");
    let rtb = &rtb.route_tables()[0];
    let mut targets: Vec<(String, String)> = rtb
        .routes()
        .iter()
        .filter(|r| r.gateway_id() != Some("local"))
        .map(|r| {
            (
                r.destination_cidr_block().unwrap_or_default().into(),
                r.gateway_id().unwrap_or_default()[..4].into(),
            )
        })
        .collect();
    targets.sort();
    assert_eq!(
        targets,
        [
            ("0.0.0.0/0".to_string(), "igw-".to_string()),
            ("10.0.0.0/16".into(), "vgw-".into())
        ]
    );
    assert_eq!(rtb.propagating_vgws().len(), 1);
    assert_eq!(rtb.associations().len(), 2);

    // Brokers: IMDSv2 only, the peer-discovery tag, their instance profile, an Elastic IP each.
    let brokers = ec2
        .describe_instances()
        .filters(filter("tag:gwctl-cluster", "gw-us-east-1"))
        .send()
        .await
        .expect("brokers");
    let brokers: Vec<_> = brokers
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .collect();
    assert_eq!(brokers.len(), 3);
    for b in &brokers {
        assert_eq!(
            b.metadata_options()
                .and_then(|m| m.http_tokens())
                .map(|t| t.as_str()),
            Some("required")
        );
        assert!(
            b.iam_instance_profile()
                .and_then(|p| p.arn())
                .is_some_and(|a| a.ends_with("/gwctl-mqtt-example-us-east-1"))
        );
        assert_eq!(
            b.image_id(),
            Some("ami-0d0ebb1e000000014"),
            "the newest Debian 13 image matching the name filter"
        );
    }
    let eips = ec2.describe_addresses().send().await.expect("eips");
    assert!(eips.addresses().iter().all(|a| {
        a.instance_id()
            .is_some_and(|i| brokers.iter().any(|b| b.instance_id() == Some(i)))
    }));

    // Secrets are SecureString parameters holding the values of the secret sources.
    let ssm = m.ssm("us-east-1").await;
    let p = ssm
        .get_parameter()
        .name("/gwctl/mqtt-example/us-east-1/federation_password")
        .with_decryption(true)
        .send()
        .await
        .expect("parameter");
    let p = p.parameter().expect("parameter");
    assert_eq!(p.r#type().map(|t| t.as_str()), Some("SecureString"));
    assert_eq!(
        p.value(),
        Some(r.secrets["GWCTL_FEDERATION_PASSWORD"].as_str())
    );

    gwctl(&r, &m)
        .args(["plan", "us-east-1", "--detailed-exitcode", "--scope", "aws"])
        .assert()
        .code(0);
    m.record();
    gwctl(&r, &m)
        .args(["up", "us-east-1", "--yes", "--scope", "aws"])
        .assert()
        .success();
    let actions = m.recorded_actions();
    assert!(actions.len() >= 10, "discovery happened: {actions:?}");
    let mutating: Vec<&String> = actions.iter().filter(|a| !is_read_only(a)).collect();
    assert!(mutating.is_empty(), "a second up called {mutating:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_all_then_down_one_region_touches_nothing_else() {
    let (r, m) = (Regions::examples(), Moto::start());
    // Someone else's VPC and subnet in the region we will take down.
    let jp = m.ec2("ap-northeast-1").await;
    let foreign = jp
        .create_vpc()
        .cidr_block("10.20.0.0/16")
        .send()
        .await
        .expect("vpc");
    let foreign_vpc = foreign
        .vpc()
        .and_then(|v| v.vpc_id())
        .expect("id")
        .to_string();
    jp.create_subnet()
        .vpc_id(&foreign_vpc)
        .cidr_block("10.20.9.0/24")
        .availability_zone("ap-northeast-1a")
        .send()
        .await
        .expect("subnet");

    let out = gwctl(&r, &m)
        .args(["up", "--all", "--yes", "--scope", "aws"])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("done ap-northeast-1") && stderr.contains("done us-east-1"),
        "{stderr}"
    );
    gwctl(&r, &m)
        .args(["plan", "--all", "--detailed-exitcode", "--scope", "aws"])
        .assert()
        .code(0);

    // Without --yes and without a terminal, down refuses and deletes nothing.
    gwctl(&r, &m)
        .args(["down", "ap-northeast-1", "--scope", "aws"])
        .assert()
        .code(2);
    assert_eq!(inventory(&jp).await.count("instance"), 3);

    gwctl(&r, &m)
        .args(["down", "ap-northeast-1", "--yes", "--scope", "aws"])
        .assert()
        .success();
    let left = inventory(&jp).await;
    assert_eq!(
        left.shape(),
        BTreeMap::from([("subnet", 1), ("vpc", 1)]),
        "only the foreign VPC and subnet remain"
    );
    assert_eq!(left.kinds["vpc"][0].0, foreign_vpc);
    let us = inventory(&m.ec2("us-east-1").await).await;
    assert_eq!(us.shape(), clean_shape());
    gwctl(&r, &m)
        .args(["plan", "us-east-1", "--detailed-exitcode", "--scope", "aws"])
        .assert()
        .code(0);
    // Every broker's data volume was snapshotted before the broker went; down keeps them.
    let first = snapshots(&jp).await;
    assert_eq!(
        first.keys().cloned().collect::<Vec<_>>(),
        [
            "instance/broker-1",
            "instance/broker-2",
            "instance/broker-3"
        ],
        "{first:?}"
    );
    assert!(first.values().all(|ids| ids.len() == 1), "{first:?}");
    // status lists the newest snapshot of each broker slot, even with the region down.
    let status = gwctl(&r, &m)
        .args(["status", "ap-northeast-1", "--json", "--scope", "aws"])
        .output()
        .expect("status");
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    let listed: Vec<&str> = status[0]["snapshots"]
        .as_array()
        .expect("snapshots")
        .iter()
        .filter_map(|s| s["of"].as_str())
        .collect();
    assert_eq!(
        listed,
        [
            "instance/broker-1",
            "instance/broker-2",
            "instance/broker-3"
        ]
    );
    // And down again has nothing to do.
    gwctl(&r, &m)
        .args(["down", "ap-northeast-1", "--yes", "--scope", "aws"])
        .assert()
        .success();
    assert_eq!(snapshots(&jp).await, first);

    // The region again, and gone again with a retention of one: the newest per broker stays.
    gwctl(&r, &m)
        .args(["up", "ap-northeast-1", "--yes", "--scope", "aws"])
        .assert()
        .success();
    r.edit(
        "ap-northeast-1.yaml",
        "  data_volume:",
        "  snapshots_retained: 1\n  data_volume:",
    );
    gwctl(&r, &m)
        .args(["down", "ap-northeast-1", "--yes", "--scope", "aws"])
        .assert()
        .success();
    let second = snapshots(&jp).await;
    assert_eq!(second.len(), 3, "{second:?}");
    for (slot, ids) in &second {
        assert_eq!(ids.len(), 1, "{second:?}");
        assert_ne!(ids, &first[slot], "the older snapshot of {slot} went");
    }
}

/// gwctl's snapshots in a region, by the broker slot they were taken of.
pub(crate) async fn snapshots(ec2: &aws_sdk_ec2::Client) -> BTreeMap<String, Vec<String>> {
    let resp = ec2
        .describe_snapshots()
        .owner_ids("self")
        .send()
        .await
        .expect("snapshots");
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in resp.snapshots() {
        let of = s
            .tags()
            .iter()
            .find(|t| t.key() == Some("gwctl:snapshot-of"))
            .and_then(|t| t.value());
        if let (Some(of), Some(id)) = (of, s.snapshot_id()) {
            out.entry(of.to_string()).or_default().push(id.to_string());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_any_point_up_converges_without_duplicates_or_orphans() {
    let (r, m) = (Regions::examples(), Moto::start());
    let bin = assert_cmd::cargo::cargo_bin("gwctl");
    // 25: the first Route53 health check (after the 24 EC2/IAM/SSM creates).
    for kill_after in [1usize, 4, 9, 14, 20, 25] {
        m.reset();
        let mut cmd = Command::new(&bin);
        cmd.arg("--regions").arg(r.dir()).args([
            "up",
            "us-east-1",
            "--yes",
            "--parallelism",
            "1",
            "--scope",
            "aws",
        ]);
        m.std_env(&mut cmd);
        cmd.env("GWCTL_BROKER_ENDPOINTS", &r.endpoints)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn");
        let stderr = child.stderr.take().expect("stderr");
        let mut created = 0;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains(" created ") {
                created += 1;
                if created == kill_after {
                    break;
                }
            }
        }
        // SIGKILL: no cleanup, no flush, whatever call was in flight is cut.
        let _ = child.kill();
        let _ = child.wait();
        // The run really was cut short: work is left. (The last point races the run's last
        // few calls; there, only convergence is checked.)
        if kill_after < 22 {
            gwctl(&r, &m)
                .args(["plan", "us-east-1", "--detailed-exitcode", "--scope", "aws"])
                .assert()
                .code(2);
        }
        gwctl(&r, &m)
            .args(["up", "us-east-1", "--yes", "--scope", "aws"])
            .assert()
            .success();
        gwctl(&r, &m)
            .args(["plan", "us-east-1", "--detailed-exitcode", "--scope", "aws"])
            .assert()
            .code(0);
        let inv = inventory(&m.ec2("us-east-1").await).await;
        assert_eq!(
            inv.shape(),
            clean_shape(),
            "killed after {kill_after} creates"
        );
        assert_eq!(
            inv.untagged(),
            Vec::<String>::new(),
            "killed after {kill_after} creates: orphans"
        );
        let checks = m
            .route53()
            .await
            .list_health_checks()
            .send()
            .await
            .expect("checks");
        assert_eq!(
            checks.health_checks().len(),
            3,
            "killed after {kill_after} creates: one health check per broker"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_shows_in_plan_and_up_repairs_it() {
    let (r, m) = (Regions::examples(), Moto::start());
    gwctl(&r, &m)
        .args(["up", "us-east-1", "--yes", "--scope", "aws"])
        .assert()
        .success();
    let ec2 = m.ec2("us-east-1").await;
    let filter = |k: &str, v: &str| Filter::builder().name(k).values(v).build();
    let one = |kind: &str| filter("tag:gwctl:id", kind);

    // A deleted route, an opened port, a terminated broker.
    let rtb = ec2
        .describe_route_tables()
        .filters(one("route_table/public"))
        .send()
        .await
        .expect("rtb");
    let rtb_id = rtb.route_tables()[0]
        .route_table_id()
        .expect("id")
        .to_string();
    ec2.delete_route()
        .route_table_id(&rtb_id)
        .destination_cidr_block("0.0.0.0/0")
        .send()
        .await
        .expect("delete route");
    let sg = ec2
        .describe_security_groups()
        .filters(one("security_group/brokers"))
        .send()
        .await
        .expect("sg");
    let sg_id = sg.security_groups()[0].group_id().expect("id").to_string();
    ec2.authorize_security_group_ingress()
        .group_id(&sg_id)
        .ip_protocol("tcp")
        .from_port(22)
        .to_port(22)
        .cidr_ip("0.0.0.0/0")
        .send()
        .await
        .expect("open 22");
    // Rules of every other shape: all protocols, IPv6, a UDP range, ICMP, another group.
    let support = ec2
        .describe_security_groups()
        .filters(one("security_group/support"))
        .send()
        .await
        .expect("support sg");
    let support_id = support.security_groups()[0]
        .group_id()
        .expect("id")
        .to_string();
    use aws_sdk_ec2::types::{IpPermission, IpRange, Ipv6Range, UserIdGroupPair};
    ec2.authorize_security_group_ingress()
        .group_id(&sg_id)
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("-1")
                .ip_ranges(IpRange::builder().cidr_ip("198.51.100.0/24").build())
                .build(),
        )
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(8883)
                .to_port(8883)
                .ipv6_ranges(Ipv6Range::builder().cidr_ipv6("::/0").build())
                .build(),
        )
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("udp")
                .from_port(1000)
                .to_port(2000)
                .ip_ranges(IpRange::builder().cidr_ip("10.99.0.0/16").build())
                .build(),
        )
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("icmp")
                .from_port(-1)
                .to_port(-1)
                .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
                .build(),
        )
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(5671)
                .to_port(5671)
                .user_id_group_pairs(UserIdGroupPair::builder().group_id(&support_id).build())
                .build(),
        )
        .send()
        .await
        .expect("open the rest");
    let b = ec2
        .describe_instances()
        .filters(one("instance/broker-1"))
        .send()
        .await
        .expect("broker");
    let broker = b.reservations()[0].instances()[0]
        .instance_id()
        .expect("id")
        .to_string();
    ec2.terminate_instances()
        .instance_ids(&broker)
        .send()
        .await
        .expect("terminate");

    let out = gwctl(&r, &m)
        .args(["plan", "us-east-1", "--detailed-exitcode", "--scope", "aws"])
        .output()
        .expect("plan");
    assert_eq!(out.status.code(), Some(2));
    let plan = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "~ route_table/public",
        "~ security_group/brokers",
        "+ instance/broker-1",
        "~ elastic_ip/broker-1",
        "1 to add, 3 to change",
    ] {
        assert!(plan.contains(needle), "{needle} not in:\n{plan}");
    }
    assert!(
        plan.contains("ingress:"),
        "the changed field is shown:\n{plan}"
    );

    gwctl(&r, &m)
        .args(["up", "us-east-1", "--yes", "--scope", "aws"])
        .assert()
        .success();
    gwctl(&r, &m)
        .args(["plan", "us-east-1", "--detailed-exitcode", "--scope", "aws"])
        .assert()
        .code(0);
    let sg = ec2
        .describe_security_groups()
        .group_ids(&sg_id)
        .send()
        .await
        .expect("sg");
    assert!(
        sg.security_groups()[0]
            .ip_permissions()
            .iter()
            .all(|p| p.from_port() != Some(22)),
        "port 22 closed again"
    );
    let rtb = ec2
        .describe_route_tables()
        .route_table_ids(&rtb_id)
        .send()
        .await
        .expect("rtb");
    assert!(
        rtb.route_tables()[0]
            .routes()
            .iter()
            .any(|r| r.destination_cidr_block() == Some("0.0.0.0/0"))
    );
    assert_eq!(inventory(&ec2).await.shape(), clean_shape());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saved_plans_apply_only_to_the_state_they_were_made_from() {
    let (r, m) = (Regions::examples(), Moto::start());
    let dir = tempfile::tempdir().expect("tempdir");
    let saved = dir.path().join("plan.json");

    // Unchanged: applies.
    gwctl(&r, &m)
        .args(["plan", "us-east-1", "--scope", "aws", "--out"])
        .arg(&saved)
        .assert()
        .success();
    gwctl(&r, &m)
        .args(["up", "us-east-1", "--scope", "aws", "--plan"])
        .arg(&saved)
        .assert()
        .success();

    // The region file changed since: refused, nothing changed.
    gwctl(&r, &m)
        .args(["plan", "us-east-1", "--scope", "aws", "--out"])
        .arg(&saved)
        .assert()
        .success();
    r.edit("us-east-1.yaml", "  team: messaging", "  team: devices");
    m.record();
    let out = gwctl(&r, &m)
        .args(["up", "us-east-1", "--scope", "aws", "--plan"])
        .arg(&saved)
        .output()
        .expect("up");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("stale plan: the region files of us-east-1 changed")
    );
    assert!(m.recorded_actions().iter().all(|a| is_read_only(a)));
    r.edit("us-east-1.yaml", "  team: devices", "  team: messaging");

    // AWS changed since: refused.
    gwctl(&r, &m)
        .args(["plan", "us-east-1", "--scope", "aws", "--out"])
        .arg(&saved)
        .assert()
        .success();
    let ec2 = m.ec2("us-east-1").await;
    let b = ec2
        .describe_instances()
        .filters(
            Filter::builder()
                .name("tag:gwctl:id")
                .values("instance/proxy-1")
                .build(),
        )
        .send()
        .await
        .expect("proxy");
    let proxy = b.reservations()[0].instances()[0]
        .instance_id()
        .expect("id")
        .to_string();
    ec2.terminate_instances()
        .instance_ids(proxy)
        .send()
        .await
        .expect("terminate");
    let out = gwctl(&r, &m)
        .args(["up", "us-east-1", "--scope", "aws", "--plan"])
        .arg(&saved)
        .output()
        .expect("up");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("stale plan: the AWS resources of us-east-1 changed")
    );
}

#[test]
fn invalid_input_makes_no_aws_call() {
    let (r, m) = (Regions::examples(), Moto::start());
    r.edit("us-east-1.yaml", "  count: 3", "  count: 0");
    m.record();
    for args in [
        &["plan", "us-east-1"][..],
        &["up", "us-east-1", "--yes"],
        &["up", "--all", "--yes"],
        &["down", "us-east-1", "--yes"],
    ] {
        let out = gwctl(&r, &m).args(args).output().expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("brokers.count: must be at least 1"));
    }
    assert_eq!(m.recorded_actions(), Vec::<String>::new());
    // A missing region file and an unknown region too.
    gwctl(&r, &m)
        .args(["plan", "sa-east-1", "--scope", "aws"])
        .assert()
        .code(2);
    gwctl(&r, &m)
        .args(["up", "--scope", "aws"])
        .assert()
        .code(2);
}

#[test]
fn plan_outputs_for_machines_and_reviewers_mask_secrets() {
    let (r, m) = (Regions::examples(), Moto::start());
    let out = gwctl(&r, &m)
        .args(["plan", "--all", "--json", "--scope", "aws"])
        .output()
        .expect("plan");
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["format_version"], "1.2");
    assert_eq!(v["applyable"], true);
    let regions = v["regions"].as_array().expect("regions");
    assert_eq!(regions.len(), 2);
    let changes = regions[1]["resource_changes"].as_array().expect("changes");
    let ssm = changes
        .iter()
        .find(|c| c["address"] == "us-east-1/ssm_parameter/admin_password")
        .expect("ssm change");
    assert_eq!(ssm["change"]["actions"], serde_json::json!(["create"]));
    assert_eq!(ssm["change"]["after"]["value_sha256"], "(sensitive)");
    assert_eq!(ssm["change"]["after_sensitive"]["value_sha256"], true);
    assert_eq!(regions[1]["summary"]["add"], 25);

    let md = gwctl(&r, &m)
        .args(["plan", "us-east-1", "--markdown", "--scope", "aws"])
        .output()
        .expect("plan");
    let md = String::from_utf8_lossy(&md.stdout);
    assert!(md.contains("| `+` | `vpc/main` | create |"), "{md}");

    // No secret, nor the hash of one, in any output.
    let human = gwctl(&r, &m)
        .args(["up", "--all", "--yes", "--scope", "aws"])
        .output()
        .expect("up");
    let all = [
        out.stdout,
        out.stderr,
        md.as_bytes().to_vec(),
        human.stdout,
        human.stderr,
    ]
    .concat();
    let text = String::from_utf8_lossy(&all);
    for (var, value) in &r.secrets {
        assert!(!text.contains(value.as_str()), "{var} leaked");
        assert!(
            !text.contains(&gwctl::model::sha256_hex(value)),
            "{var}'s hash leaked"
        );
    }
}

#[test]
fn ami_by_explicit_id() {
    let (r, m) = (Regions::examples(), Moto::start());
    r.edit(
        "ap-northeast-1.yaml",
        "  ami:\n    owner: \"136693071363\"      # Debian\n    name: debian-13-amd64-*",
        "  ami:\n    id: ami-12c6146b",
    );
    let out = gwctl(&r, &m)
        .args(["plan", "ap-northeast-1", "--json", "--scope", "aws"])
        .output()
        .expect("plan");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let changes = v["regions"][0]["resource_changes"]
        .as_array()
        .expect("changes");
    let broker = changes
        .iter()
        .find(|c| c["name"] == "broker-1" && c["type"] == "instance")
        .expect("broker");
    assert_eq!(broker["change"]["after"]["image"], "ami-12c6146b");
    r.edit(
        "ap-northeast-1.yaml",
        "id: ami-12c6146b",
        "id: ami-00000000deadbeef",
    );
    let out = gwctl(&r, &m)
        .args(["plan", "ap-northeast-1", "--scope", "aws"])
        .output()
        .expect("plan");
    assert_eq!(out.status.code(), Some(1));
}

/// Debian publishes new images every few weeks: a newer image matching the filter is shown as
/// an available upgrade, and neither `plan` nor `up` replaces a running broker for it.
#[test]
fn a_newer_image_is_offered_never_applied() {
    let (r, m) = (Regions::examples(), Moto::start());
    let (all, older) = (
        "name: debian-13-amd64-*",
        "name: debian-13-amd64-20260810-*",
    );
    r.edit("us-east-1.yaml", all, older);
    gwctl(&r, &m)
        .args(["up", "us-east-1", "--scope", "aws", "--yes"])
        .assert()
        .success();
    // Debian's newer image now matches the region's filter.
    r.edit("us-east-1.yaml", older, all);
    m.record();
    let out = gwctl(&r, &m)
        .args(["plan", "us-east-1", "--scope", "aws", "--detailed-exitcode"])
        .output()
        .expect("plan");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "no change planned: {text}");
    assert!(
        text.contains(
            "note: us-east-1: a newer image matches the brokers' selection: ami-0d0ebb1e000000014"
        ),
        "{text}"
    );
    let json = gwctl(&r, &m)
        .args(["plan", "us-east-1", "--scope", "aws", "--json"])
        .output()
        .expect("plan");
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert!(
        v["regions"][0]["advisories"][0].as_str().is_some_and(|a| a
            .contains("ami-0d0ebb1e000000014")
            && a.contains("ami-0d0ebb1e000000013")),
        "{v}"
    );
    gwctl(&r, &m)
        .args(["up", "us-east-1", "--scope", "aws", "--yes"])
        .assert()
        .success();
    let actions = m.recorded_actions();
    assert!(
        actions.iter().all(|a| is_read_only(a)),
        "nothing was replaced: {actions:?}"
    );
}

/// With an HTTP(S) health check the brokers' health responder is reachable from Route53's
/// health checkers only (AWS's managed prefix list), never from the world; the rule reads back
/// as written, so the next plan is clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_port_opens_to_route53_checkers_only() {
    let (r, m) = (Regions::examples(), Moto::start());
    r.edit("us-east-1.yaml", "  protocol: tcp", "  protocol: http");
    gwctl(&r, &m)
        .args(["up", "us-east-1", "--scope", "aws", "--yes"])
        .assert()
        .success();
    let ec2 = m.ec2("us-east-1").await;
    let lists = ec2
        .describe_managed_prefix_lists()
        .send()
        .await
        .expect("prefix lists");
    let checkers = lists
        .prefix_lists()
        .iter()
        .find(|l| l.prefix_list_name() == Some("com.amazonaws.us-east-1.route53-healthchecks"))
        .and_then(|l| l.prefix_list_id())
        .expect("AWS's list of Route53 health checkers");
    let groups = ec2
        .describe_security_groups()
        .filters(
            Filter::builder()
                .name("tag:gwctl:id")
                .values("security_group/brokers")
                .build(),
        )
        .send()
        .await
        .expect("sgs");
    let brokers = &groups.security_groups()[0];
    let health: Vec<_> = brokers
        .ip_permissions()
        .iter()
        .filter(|p| p.from_port() == Some(8080))
        .collect();
    assert_eq!(health.len(), 1, "{health:?}");
    assert!(
        health[0].ip_ranges().is_empty(),
        "no range reaches the health port: {health:?}"
    );
    assert_eq!(
        health[0]
            .prefix_list_ids()
            .iter()
            .filter_map(|l| l.prefix_list_id())
            .collect::<Vec<_>>(),
        [checkers]
    );
    // Metrics only from the backend network.
    let metrics: Vec<_> = brokers
        .ip_permissions()
        .iter()
        .filter(|p| p.from_port() == Some(15691))
        .flat_map(|p| p.ip_ranges().iter().filter_map(|r| r.cidr_ip()))
        .collect();
    assert_eq!(metrics, ["10.0.0.0/16"]);
    // Nothing of the brokers' group is open to the world but the device ports.
    for p in brokers.ip_permissions() {
        if p.ip_ranges()
            .iter()
            .any(|r| r.cidr_ip() == Some("0.0.0.0/0"))
        {
            assert!(
                matches!(p.from_port(), Some(8883 | 15676)),
                "port {:?} is open to the world: only MQTT over TLS and WSS may be",
                p.from_port()
            );
        }
    }
    gwctl(&r, &m)
        .args(["plan", "us-east-1", "--scope", "aws", "--detailed-exitcode"])
        .assert()
        .code(0);
}

/// Each broker's server certificate is issued by gwctl at apply with the stack CA, stored with
/// its key as a SecureString, and covers the region's names; one about to expire is re-issued.
/// User-data reaches EC2 gzipped, within its 16 KiB limit (which the harness enforces too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_certificates_are_issued_at_apply_and_renewed_before_expiry() {
    use base64::Engine;
    use std::io::Read;
    use std::time::{Duration, SystemTime};

    let (r, m) = (Regions::examples(), Moto::start());
    gwctl(&r, &m)
        .args(["up", "us-east-1", "--scope", "aws", "--yes"])
        .assert()
        .success();
    let ssm = m.ssm("us-east-1").await;
    let name = "/gwctl/mqtt-example/us-east-1/tls/broker-1";
    let read = |ssm: aws_sdk_ssm::Client| async move {
        ssm.get_parameter()
            .name(name)
            .with_decryption(true)
            .send()
            .await
            .expect("parameter")
            .parameter()
            .and_then(|p| p.value().map(str::to_string))
            .expect("value")
    };
    let stored = read(ssm.clone()).await;
    assert!(stored.contains("PRIVATE KEY"), "the key travels with it");
    let stack_ca = &r.secrets["GWCTL_STACK_CA_CERT"];
    for name in [
        "us-east-1.mqtt.example.com",
        "mqtt.example.com",
        "broker-1.us-east-1.mqtt.example.com",
    ] {
        gwctl::pki::verify_server(stack_ca, &stored, name, SystemTime::now())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let status = gwctl(&r, &m)
        .args(["status", "us-east-1", "--scope", "aws"])
        .output()
        .expect("status");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("certificate broker-1   expires"), "{text}");

    // A certificate 390 days old (7 left): plan warns, up re-issues it, the next plan is clean.
    let key = r.secrets["GWCTL_STACK_CA_KEY"].clone();
    let old = SystemTime::now() - Duration::from_secs(390 * 86_400);
    let ca = gwctl::pki::Authority::load(
        stack_ca,
        &gwctl::spec::secret::Secret::new(key),
        SystemTime::now(),
    )
    .expect("stack CA");
    let aging = ca
        .issue_server(
            &[
                "us-east-1.mqtt.example.com".into(),
                "mqtt.example.com".into(),
                "broker-1.us-east-1.mqtt.example.com".into(),
            ],
            old,
        )
        .expect("issue");
    ssm.put_parameter()
        .name(name)
        .value(format!("{}{}", aging.cert_pem, aging.key_pem.expose()))
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .overwrite(true)
        .send()
        .await
        .expect("age it");
    let plan = gwctl(&r, &m)
        .args(["plan", "us-east-1", "--scope", "aws"])
        .output()
        .expect("plan");
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(
        text.contains("the certificate of broker-1 expires on")
            && text.contains("~ certificate/broker-1"),
        "{text}"
    );
    gwctl(&r, &m)
        .args(["up", "us-east-1", "--scope", "aws", "--yes"])
        .assert()
        .success();
    let renewed = read(ssm.clone()).await;
    let info = gwctl::pki::inspect(&renewed).expect("certificate");
    assert!(!info.expires_within(SystemTime::now(), gwctl::pki::WARN_BEFORE));
    gwctl(&r, &m)
        .args(["plan", "us-east-1", "--scope", "aws", "--detailed-exitcode"])
        .assert()
        .code(0);

    // What EC2 received: gzip of the rendered cloud-config, within the limit.
    let ec2 = m.ec2("us-east-1").await;
    let instances = ec2.describe_instances().send().await.expect("instances");
    let id = instances
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .find(|i| {
            i.tags()
                .iter()
                .any(|t| t.key() == Some("gwctl:id") && t.value() == Some("instance/broker-1"))
        })
        .and_then(|i| i.instance_id())
        .expect("broker-1")
        .to_string();
    let attr = ec2
        .describe_instance_attribute()
        .instance_id(&id)
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
        .send()
        .await
        .expect("user data");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(attr.user_data().and_then(|v| v.value()).expect("value"))
        .expect("base64");
    assert!(raw.len() <= 16_384, "{} bytes", raw.len());
    let mut text = String::new();
    flate2::read::GzDecoder::new(raw.as_slice())
        .read_to_string(&mut text)
        .expect("gzip");
    assert!(text.starts_with("#cloud-config\n") && text.len() > 16_384);
    // The harness refuses what AWS refuses.
    let too_big = ec2
        .run_instances()
        .image_id("ami-0d0ebb1e000000013")
        .instance_type(aws_sdk_ec2::types::InstanceType::T3Small)
        .min_count(1)
        .max_count(1)
        .user_data(base64::engine::general_purpose::STANDARD.encode(text.as_bytes()))
        .send()
        .await;
    let err = format!("{:?}", too_big.expect_err("over 16 KiB"));
    assert!(err.contains("User data is limited to 16384 bytes"), "{err}");
}

/// `insecure_plaintext` opens the plaintext device ports and `plan` says what that means.
#[test]
fn insecure_plaintext_is_flagged() {
    let (r, m) = (Regions::examples(), Moto::start());
    r.edit(
        "us-east-1.yaml",
        "  instance_type: c6i.large\n",
        "  instance_type: c6i.large\n  insecure_plaintext: true\n",
    );
    let out = gwctl(&r, &m)
        .args(["plan", "us-east-1", "--scope", "aws", "--json"])
        .output()
        .expect("plan");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("WARNING: insecure_plaintext is on")
            && text.contains("plaintext MQTT (insecure_plaintext)"),
        "{text}"
    );
    let human = gwctl(&r, &m)
        .args(["plan", "us-east-1", "--scope", "aws"])
        .output()
        .expect("plan");
    assert!(String::from_utf8_lossy(&human.stdout).contains("WARNING: insecure_plaintext is on"));
}
