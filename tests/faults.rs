//! gwctl against an AWS that behaves like AWS under load: `scripts/aws_proxy.py` in front of
//! moto throttles, fails with 5xx and drops connections at a seeded rate, in each service's own
//! error shape. Runs converge to the state a clean run leaves, and report the attempts AWS made
//! them repeat — exactly the faults the proxy injected.

use std::collections::BTreeMap;
use std::process::Output;

use crate::aws::inventory;
use crate::dns::{checks, records};
use crate::support::Regions;
use crate::support::fault_proxy::{Cut, FaultProxy};
use crate::support::moto::{Moto, gwctl};

const REGIONS: [&str; 2] = ["ap-northeast-1", "us-east-1"];

/// What a run leaves, without the ids and addresses that differ from one emulator to the
/// next: per region the resources by kind and anything not owned by the stack, and the
/// zone's record sets and health checks by name.
pub(crate) async fn end_state(m: &Moto) -> BTreeMap<String, String> {
    let mut state = BTreeMap::new();
    for region in REGIONS {
        let inv = inventory(&m.ec2(region).await).await;
        state.insert(format!("{region} resources"), format!("{:?}", inv.shape()));
        state.insert(
            format!("{region} not owned"),
            format!("{:?}", inv.untagged()),
        );
    }
    let dns = m.route53().await;
    let zone = m.zone_id().await;
    let names: Vec<String> = records(&dns, &zone).await.into_keys().collect();
    state.insert("record sets".into(), names.join("\n"));
    let checks: Vec<String> = checks(&dns).await.into_keys().collect();
    state.insert("health checks".into(), checks.join("\n"));
    let all = dns.list_health_checks().send().await.expect("checks");
    state.insert(
        "health check count".into(),
        all.health_checks().len().to_string(),
    );
    state
}

/// The numbers of the run's "AWS: N calls, M failed attempt(s) recovered (a throttled, b
/// server errors, c without answer)" line: (M, a, b, c).
fn repeated(stderr: &str) -> (u64, u64, u64, u64) {
    let line = stderr
        .lines()
        .find(|l| l.contains("AWS: ") && l.contains(" calls"))
        .unwrap_or_else(|| panic!("no AWS calls line in:\n{stderr}"));
    if line.contains("none failed") {
        return (0, 0, 0, 0);
    }
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    // [calls, repeated, throttled, server errors, without answer, (waits)]
    assert!(numbers.len() >= 5, "{line}");
    (numbers[1], numbers[2], numbers[3], numbers[4])
}

/// gwctl against moto, through `proxy` if given.
fn gwctl_via(r: &Regions, m: &Moto, proxy: Option<&FaultProxy>, args: &[&str]) -> Output {
    let mut cmd = gwctl(r, m);
    if let Some(p) = proxy {
        cmd.env("AWS_ENDPOINT_URL", &p.endpoint);
    }
    cmd.args(args).output().expect("run gwctl")
}

/// gwctl's stderr, asserting it succeeded. A failure shows the faults the proxy injected
/// and what the run reported as failed, not its whole event log: a CI log keeps the end.
pub(crate) fn run(r: &Regions, m: &Moto, proxy: Option<&FaultProxy>, args: &[&str]) -> String {
    let out = gwctl_via(r, m, proxy, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        let faults = proxy.map(|p| p.account().faults()).unwrap_or_default();
        let failed: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("FAILED") || l.contains("error") || l.contains("warning"))
            .collect();
        panic!(
            "{args:?} failed ({} lines of output); faults met: {faults:?}\n{}",
            stderr.lines().count(),
            failed.join("\n")
        );
    }
    stderr
}

/// With 10 % of calls throttled, failed with a 5xx or cut before they reach AWS, `up --all`
/// and `down` end where clean runs end, a plan through the same faults finds nothing to do,
/// and each run's report of repeated attempts matches, kind by kind, what the proxy injected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_all_and_down_converge_through_throttling_5xx_and_dropped_connections() {
    converge_through(&["throttle", "server", "drop"], seed(16)).await;
}

/// A lost answer — the call carried out, the connection cut before its answer — is the fault
/// a plain retry cannot see through: the SDK sends the call again and AWS refuses the repeat
/// (the record exists, the rule is a duplicate, the role exists) or, without an idempotency
/// token, carries it out twice. gwctl sends RunInstances and CreateHealthCheck with tokens
/// and takes such a refusal for what it is — the first attempt was carried out — once it has
/// read back exactly what it asked for: the runs meeting 10 % lost answers succeed and leave
/// no duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_all_and_down_converge_through_lost_answers_without_duplicates() {
    converge_through(&["lost"], seed(7)).await;
}

/// Seeded faults land where the seed puts them; this sweep leaves no action out. Each mutating
/// action `up` and `down` make, in its turn, is carried out by AWS with the answer to its
/// first call cut (with `GWCTL_LOST_EVERY_CALL=1`, as scripts/soak sets: each call of each
/// action in its turn). Then every other answer of every action is cut in one run — the
/// first, third, … and, in another, the second, fourth, … — so that a lost answer meets
/// the repeat's refusal and the next step's call loses its answer too: the route a route
/// table's update adds after the table was adopted, the role put into a profile adopted
/// after CreateInstanceProfile's repeat was refused, the lock's release. Each run must
/// succeed, end where a clean run ends (no duplicate, no orphan), report every attempt that
/// went without an answer and warn of nothing a lost answer does not mean (a broken lock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_mutating_call_of_up_and_down_survives_its_answer_being_lost() {
    let (r, m) = (Regions::examples(), Moto::start());
    let proxy = FaultProxy::start(&m.endpoint);
    let up = ["up", "us-east-1", "--yes", "--scope", "aws"];
    let down = ["down", "us-east-1", "--yes", "--scope", "aws"];
    run(&r, &m, Some(&proxy), &up);
    let (clean_up, up_actions) = (end_state(&m).await, proxy.account().mutating_actions());
    proxy.reset();
    run(&r, &m, Some(&proxy), &down);
    let (clean_down, down_actions) = (end_state(&m).await, proxy.account().mutating_actions());
    assert!(up_actions.len() >= 20, "{up_actions:?}");
    assert!(down_actions.len() >= 10, "{down_actions:?}");
    let every_call = std::env::var("GWCTL_LOST_EVERY_CALL").is_ok_and(|v| v == "1");

    // One run of `args` from a clean start with the answers `cuts` name cut: what went wrong.
    let through = async |args: &[&str; 5], cuts: &[Cut], clean| {
        m.reset();
        if args == &down {
            run(&r, &m, None, &up);
        }
        proxy.reset();
        proxy.cut_answers(cuts);
        let out = gwctl_via(&r, &m, Some(&proxy), args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let seen = proxy.account();
        let met = seen.injected_of("lost");
        let what = format!("{} losing {:?}", args[0], seen.faults());
        if !out.status.success() {
            Some(format!("{what}: failed\n{stderr}"))
        } else if &end_state(&m).await != clean {
            Some(format!("{what}: not a clean run's end state"))
        } else if met == 0 || repeated(&stderr).3 != met {
            Some(format!("{what}: {met} lost, reported:\n{stderr}"))
        } else if stderr.contains("warning: the lock") {
            Some(format!("{what}: a warning of the lock\n{stderr}"))
        } else {
            None
        }
    };
    let mut failed = Vec::new();
    for (args, actions, clean) in [
        (&up, &up_actions, &clean_up),
        (&down, &down_actions, &clean_down),
    ] {
        for (action, calls) in actions {
            let calls = if every_call { *calls } else { 1 };
            for n in 0..calls {
                failed.extend(through(args, &[Cut::nth(action, n)], clean).await);
            }
        }
        for first in [0, 1] {
            let cuts: Vec<Cut> = actions
                .iter()
                .map(|(a, _)| Cut::every_other(a, first))
                .collect();
            failed.extend(through(args, &cuts, clean).await);
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

/// The seed of the faults: `GWCTL_FAULT_SEED` when set (scripts/soak tries several).
pub(crate) fn seed(default: u64) -> u64 {
    std::env::var("GWCTL_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

async fn converge_through(kinds: &[&str], seed: u64) {
    let (r, m) = (Regions::examples(), Moto::start());
    let up = ["up", "--all", "--yes", "--scope", "aws"];
    let down = ["down", "us-east-1", "--yes", "--scope", "aws"];
    run(&r, &m, None, &up);
    let clean_up = end_state(&m).await;
    run(&r, &m, None, &down);
    let clean_down = end_state(&m).await;
    assert_ne!(clean_up, clean_down);
    m.reset();

    let proxy = FaultProxy::start(&m.endpoint);
    proxy.faults(0.10, kinds, seed);
    let (mut met, mut calls) = (0, 0);
    for (args, clean) in [(&up, &clean_up), (&down, &clean_down)] {
        proxy.reset();
        let stderr = run(&r, &m, Some(&proxy), args);
        let seen = proxy.account();
        assert!(seen.injected() > 0, "{args:?} met faults: {seen:?}");
        assert_eq!(
            repeated(&stderr),
            (
                seen.injected(),
                seen.injected_of("throttle"),
                seen.injected_of("server"),
                seen.injected_of("drop") + seen.injected_of("lost")
            ),
            "{args:?}: the run reports each fault it met, by kind\n{stderr}"
        );
        met += seen.injected();
        calls += seen.calls();
        assert_eq!(&end_state(&m).await, clean, "{args:?} through {kinds:?}");
        if args == &up {
            let plan = gwctl_via(
                &r,
                &m,
                Some(&proxy),
                &["plan", "--all", "--detailed-exitcode", "--scope", "aws"],
            );
            assert_eq!(
                plan.status.code(),
                Some(0),
                "{}",
                String::from_utf8_lossy(&plan.stderr)
            );
        }
    }
    assert!(
        met >= 10 && met * 20 >= calls,
        "about 10 % of the runs' {calls} calls failed: {met}"
    );
}

/// The corpus of broken input: each file is refused by every command that could change
/// something — `up --all`, `down`, `upgrade --all`, and `plan` — with exit 2 and a
/// `file:line:column: field` message, and the proxy in front of AWS counts no call at all.
#[test]
fn broken_region_files_change_nothing_and_say_where() {
    let (r, m) = (Regions::examples(), Moto::start());
    let proxy = FaultProxy::start(&m.endpoint);
    let long = "x".repeat(300);
    let not_a_ca = gwctl::pki::Authority::generate("leaf's CA", std::time::SystemTime::now())
        .expect("ca")
        .0
        .issue_server(&["x.example.com".into()], std::time::SystemTime::now())
        .expect("leaf")
        .cert_pem;
    // (what is broken, file, text replaced, its replacement, the field the message names)
    let us = "us-east-1.yaml";
    let corpus: Vec<(&str, &str, &str, String, &str)> = vec![
        ("yaml syntax", us, "  count: 3", "  count: [3".into(), ""),
        ("wrong type", us, "  count: 3", "  count: three".into(), "brokers.count"),
        ("unknown key", us, "  count: 3", "  cout: 3".into(), "brokers.cout"),
        ("duplicate key", us, "  count: 3", "  count: 3\n  count: 5".into(), "brokers.count"),
        ("impossible count", us, "  count: 3", "  count: 0".into(), "brokers.count"),
        ("even count", us, "  count: 3", "  count: 4".into(), "brokers.count"),
        ("bad CIDR", us, "cidr: 10.10.2.0/24", "cidr: 10.10.256.0/24".into(), "network.subnets[1].cidr"),
        ("overlapping CIDRs", us, "cidr: 10.10.2.0/24", "cidr: 10.10.1.0/24".into(), "network.subnets[1].cidr"),
        (
            "VPC overlapping another region's",
            us,
            "10.10.0.0/16\n  subnets:\n    - zone: us-east-1a\n      cidr: 10.10.1.0/24\n    - zone: us-east-1b\n      cidr: 10.10.2.0/24",
            "10.20.0.0/16\n  subnets:\n    - zone: us-east-1a\n      cidr: 10.20.101.0/24\n    - zone: us-east-1b\n      cidr: 10.20.102.0/24".into(),
            "network.vpc_cidr",
        ),
        ("unknown region", us, "region: us-east-1", "region: us-east-9".into(), "region"),
        ("zone of another region", us, "zone: us-east-1b", "zone: us-west-2b".into(), "network.subnets[1].zone"),
        ("oversized value", us, "team: messaging", format!("team: {long}"), "tags.team"),
        ("inline secret", us, "password: file:secrets/GWCTL_US_EAST_1_ADMIN_PASSWORD", "password: hunter2-in-clear".into(), "credentials.admin.password"),
        ("certificate not a CA", "backend.yaml", "cert: file:secrets/GWCTL_DEVICE_CA_CERT", "cert: file:secrets/NOT_A_CA".into(), "tls.device_ca.cert"),
        ("secret file missing", "backend.yaml", "erlang_cookie: file:secrets/GWCTL_BACKEND_ERLANG_COOKIE", "erlang_cookie: file:secrets/NOWHERE".into(), "credentials.erlang_cookie"),
    ];
    r.write_secret("NOT_A_CA", &not_a_ca);
    let commands: [&[&str]; 4] = [
        &["up", "--all", "--yes"],
        &["down", "us-east-1", "--yes"],
        &["upgrade", "--all", "--yes"],
        &["plan", "--all"],
    ];
    for (what, file, from, to, field) in &corpus {
        let original = std::fs::read_to_string(r.file(file)).expect("read");
        r.edit(file, from, to);
        let place = format!("{}:", r.file(file).display());
        for args in commands {
            proxy.reset();
            let out = gwctl_via(&r, &m, Some(&proxy), args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{what}: {args:?}\n{stderr}");
            let located = stderr.lines().any(|l| {
                l.trim_start_matches("error: ")
                    .strip_prefix(&place)
                    .and_then(|rest| {
                        let mut parts = rest.splitn(3, ':');
                        let line = parts.next()?.parse::<u32>().ok()?;
                        let col = parts.next()?.parse::<u32>().ok()?;
                        Some(line > 0 && col > 0 && parts.next()?.trim_start().starts_with(field))
                    })
                    .unwrap_or(false)
            });
            assert!(
                located,
                "{what}: {args:?}: no `{place}LINE:COL: {field}` in\n{stderr}"
            );
            assert!(
                !stderr.contains("hunter2"),
                "{what}: a secret echoed:\n{stderr}"
            );
            let seen = proxy.account();
            assert_eq!(seen.calls(), 0, "{what}: {args:?} called AWS: {seen:?}");
        }
        r.write(file, &original);
    }
}

/// AWS's asynchronous states, time-scaled: instances launch `pending` for ~3 s (AWS refuses
/// to give a pending instance an address; gwctl waits for each to run), the VPN connection is `pending` for 10 minutes,
/// each Route53 change is PENDING for 2 s. `up --all` waits for what it needs — running
/// instances for the addresses, its records' change in sync (not its lock's: the API lists
/// the lock at once) — and not for the VPN (Terraform waits up to 40 minutes there); it ends where a clean run ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_waits_for_pending_instances_and_changes_but_not_for_the_vpn() {
    let (r, m) = (Regions::examples(), Moto::start());
    let up = ["up", "--all", "--yes", "--scope", "aws"];
    run(&r, &m, None, &up);
    let clean = end_state(&m).await;
    drop(m);

    let m = Moto::start_with(&[
        ("EMULATOR_INSTANCE_PENDING_S", "3"),
        ("EMULATOR_VPN_PENDING_S", "600"),
        ("EMULATOR_CHANGE_PENDING_S", "2"),
    ]);
    let stderr = run(&r, &m, None, &up);
    assert!(
        stderr.contains("route53 change batch: waiting for INSYNC"),
        "the records' change was waited for:\n{stderr}"
    );
    assert_eq!(end_state(&m).await, clean);
    for region in REGIONS {
        let ec2 = m.ec2(region).await;
        let vpns = ec2.describe_vpn_connections().send().await.expect("vpns");
        let states: Vec<&str> = vpns
            .vpn_connections()
            .iter()
            .filter_map(|v| v.state().map(|s| s.as_str()))
            .collect();
        assert_eq!(states, ["pending"], "{region}: up did not wait for the VPN");
        let reservations = ec2.describe_instances().send().await.expect("instances");
        let running = reservations
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .all(|i| i.state().and_then(|s| s.name()).map(|n| n.as_str()) == Some("running"));
        assert!(running, "{region}: up returns with its instances running");
        let addresses = ec2.describe_addresses().send().await.expect("eips");
        assert!(
            addresses
                .addresses()
                .iter()
                .all(|a| a.instance_id().is_some()),
            "{region}: every address on its broker"
        );
    }
    gwctl(&r, &m)
        .args(["plan", "--all", "--detailed-exitcode", "--scope", "aws"])
        .assert()
        .code(0);

    // An endpoint Route53's checkers cannot reach (the emulator fails every checker of a
    // check tagged `emulator:health=down`) is what `status` reports unhealthy.
    let dns = m.route53().await;
    let broker_1 = checks(&dns)
        .await
        .into_iter()
        .find(|(name, _)| name.contains("/us-east-1/") && name.ends_with("broker-1"))
        .map(|(_, (id, _, _))| id)
        .expect("broker-1's check");
    dns.change_tags_for_resource()
        .resource_type(aws_sdk_route53::types::TagResourceType::Healthcheck)
        .resource_id(&broker_1)
        .add_tags(
            aws_sdk_route53::types::Tag::builder()
                .key("emulator:health")
                .value("down")
                .build(),
        )
        .send()
        .await
        .expect("tag");
    let out = gwctl(&r, &m)
        .args(["status", "us-east-1", "--json", "--scope", "aws"])
        .output()
        .expect("status");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let verdicts: BTreeMap<String, (bool, String)> = status[0]["health_checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default().to_string(),
                (
                    c["healthy"].as_bool().unwrap_or(true),
                    c["checkers"].as_str().unwrap_or_default().to_string(),
                ),
            )
        })
        .collect();
    assert!(!verdicts["broker-1"].0, "{verdicts:?}");
    assert!(verdicts["broker-1"].1.starts_with("0/"), "{verdicts:?}");
    assert!(
        verdicts["broker-2"].0 && verdicts["broker-3"].0,
        "{verdicts:?}"
    );
}
