//! Route53 against moto (through the project's launcher): health checks per endpoint, latency
//! records in one change batch, ownership, status and drills.

use std::collections::BTreeMap;

use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, ResourceRecordSetRegion,
    RrType,
};
use serde_json::Value;

use crate::support::Regions;
use crate::support::moto::{Moto, gwctl};

fn run_ok(r: &Regions, m: &Moto, args: &[&str]) -> String {
    let out = gwctl(r, m).args(args).output().expect("run");
    assert!(
        out.status.success(),
        "gwctl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every record set of the zone as `name type [set id]` -> a comparable description.
pub(crate) async fn records(c: &aws_sdk_route53::Client, zone: &str) -> BTreeMap<String, String> {
    let r = c
        .list_resource_record_sets()
        .hosted_zone_id(zone)
        .send()
        .await
        .expect("records");
    r.resource_record_sets()
        .iter()
        .filter(|s| !matches!(s.r#type(), RrType::Ns | RrType::Soa))
        .map(|s| {
            let key = format!(
                "{} {} [{}]",
                s.name().trim_end_matches('.'),
                s.r#type().as_str(),
                s.set_identifier().unwrap_or("")
            );
            let values: Vec<&str> = s.resource_records().iter().map(|v| v.value()).collect();
            let value = format!(
                "region={:?} multivalue={:?} hc={:?} alias={:?} values={values:?}",
                s.region().map(|r| r.as_str()),
                s.multi_value_answer(),
                s.health_check_id(),
                s.alias_target().map(|a| (
                    a.dns_name().trim_end_matches('.'),
                    a.evaluate_target_health()
                )),
            );
            (key, value)
        })
        .collect()
}

/// Health checks by CallerReference prefix `gwctl/<stack>/<region>/<name>/`: (id, ip, inverted).
pub(crate) async fn checks(
    c: &aws_sdk_route53::Client,
) -> BTreeMap<String, (String, String, bool)> {
    let r = c.list_health_checks().send().await.expect("checks");
    r.health_checks()
        .iter()
        .map(|h| {
            let reference = h.caller_reference();
            let name = reference
                .rsplit_once('/')
                .map_or(reference, |(head, _)| head)
                .to_string();
            let cfg = h.health_check_config().expect("config");
            (
                name,
                (
                    h.id().to_string(),
                    cfg.ip_address().unwrap_or_default().to_string(),
                    cfg.inverted().unwrap_or(false),
                ),
            )
        })
        .collect()
}

async fn put(
    c: &aws_sdk_route53::Client,
    zone: &str,
    name: &str,
    set: Option<(&str, &str)>,
    value: &str,
) {
    let mut b = ResourceRecordSet::builder()
        .name(name)
        .r#type(RrType::A)
        .ttl(300)
        .resource_records(ResourceRecord::builder().value(value).build().expect("rr"));
    if let Some((id, region)) = set {
        b = b
            .set_identifier(id)
            .region(ResourceRecordSetRegion::from(region));
    }
    let change = Change::builder()
        .action(ChangeAction::Create)
        .resource_record_set(b.build().expect("set"))
        .build()
        .expect("change");
    c.change_resource_record_sets()
        .hosted_zone_id(zone)
        .change_batch(
            ChangeBatch::builder()
                .changes(change)
                .build()
                .expect("batch"),
        )
        .send()
        .await
        .expect("foreign record");
}

async fn invert(c: &aws_sdk_route53::Client, id: &str, on: bool) {
    c.update_health_check()
        .health_check_id(id)
        .inverted(on)
        .send()
        .await
        .expect("invert");
}

/// `gwctl/<stack hash>/<region>/<broker>`: a health check's CallerReference without its nonce.
fn check_ref(region: &str, broker: &str) -> String {
    format!(
        "{}{broker}",
        gwctl::model::dns::caller_prefix("mqtt-example", region)
    )
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_all_creates_checks_and_records_in_one_batch_and_down_removes_only_its_own() {
    let (r, m) = (Regions::examples(), Moto::start());
    let dns = m.route53().await;
    let zone = m.zone_id().await;
    // Someone else's records: another name, and a latency record of their own at our name.
    put(&dns, &zone, "www.example.com", None, "192.0.2.10").await;
    put(
        &dns,
        &zone,
        "mqtt.example.com",
        Some(("legacy-eu", "eu-west-1")),
        "192.0.2.20",
    )
    .await;
    let foreign = records(&dns, &zone).await;

    m.record();
    run_ok(&r, &m, &["up", "--all", "--yes", "--scope", "aws"]);
    let calls = m.recorded();
    let batches: Vec<&String> = calls
        .iter()
        .filter(|(a, b)| a == "ChangeResourceRecordSets" && b.contains("MultiValueAnswer"))
        .map(|(_, b)| b)
        .collect();
    assert_eq!(batches.len(), 1, "one change batch for the zone");
    for region in ["us-east-1", "ap-northeast-1"] {
        assert!(
            batches[0].contains(&format!("{region}.mqtt.example.com")),
            "{region} in the batch"
        );
    }
    assert!(
        calls.iter().any(|(a, _)| a == "GetChange"),
        "waited for INSYNC"
    );
    assert_eq!(
        calls
            .iter()
            .filter(|(a, _)| a == "CreateHealthCheck")
            .count(),
        6
    );

    // One check per broker, on its Elastic IP's public address, tagged.
    let hc = checks(&dns).await;
    let mut addresses = BTreeMap::new();
    for region in ["us-east-1", "ap-northeast-1"] {
        let eips = m
            .ec2(region)
            .await
            .describe_addresses()
            .send()
            .await
            .expect("eips");
        for a in eips.addresses() {
            let name = a
                .tags()
                .iter()
                .find(|t| t.key() == Some("gwctl:id"))
                .and_then(|t| t.value())
                .expect("id tag")
                .trim_start_matches("elastic_ip/")
                .to_string();
            addresses.insert(
                check_ref(region, &name),
                a.public_ip().expect("ip").to_string(),
            );
        }
    }
    assert_eq!(hc.len(), 6, "{hc:?}");
    for (reference, ip) in &addresses {
        assert_eq!(
            &hc[reference].1, ip,
            "{reference} checks its broker's address"
        );
        let tags = dns
            .list_tags_for_resource()
            .resource_type(aws_sdk_route53::types::TagResourceType::Healthcheck)
            .resource_id(&hc[reference].0)
            .send()
            .await
            .expect("tags");
        let tags = tags.resource_tag_set().expect("tags").tags();
        let has = |k: &str, v: &str| {
            tags.iter()
                .any(|t| t.key() == Some(k) && t.value() == Some(v))
        };
        assert!(has("gwctl:stack", "mqtt-example"), "{tags:?}");
        let broker = reference.rsplit('/').next().expect("broker");
        assert!(
            has("gwctl:id", &format!("health_check/{broker}")),
            "{tags:?}"
        );
        assert!(
            has("team", "messaging"),
            "the region's free tags too: {tags:?}"
        );
    }

    // Records: per region a latency alias, one multivalue record per broker, the owner mark.
    let all = records(&dns, &zone).await;
    let us_alias = &all["mqtt.example.com A [us-east-1]"];
    assert!(
        us_alias.contains("region=Some(\"us-east-1\")")
            && us_alias.contains("alias=Some((\"us-east-1.mqtt.example.com\", true))"),
        "{us_alias}"
    );
    let b1 = &all["us-east-1.mqtt.example.com A [broker-1]"];
    assert!(b1.contains("multivalue=Some(true)"), "{b1}");
    assert!(b1.contains(&addresses[&check_ref("us-east-1", "broker-1")]));
    assert!(b1.contains(&hc[&check_ref("us-east-1", "broker-1")].0));
    assert!(
        all["_gwctl.ap-northeast-1.mqtt.example.com TXT []"]
            .contains("heritage=gwctl,stack=mqtt-example,region=ap-northeast-1")
    );
    assert_eq!(all.len(), foreign.len() + 10, "{all:#?}");

    // Nothing left to do.
    gwctl(&r, &m)
        .args(["plan", "--all", "--detailed-exitcode", "--scope", "aws"])
        .assert()
        .code(0);

    // down removes exactly the region's own records and checks: records first (a check
    // deleted while a record uses it would leave the record unchecked), its brokers last.
    m.record();
    run_ok(
        &r,
        &m,
        &["down", "ap-northeast-1", "--yes", "--scope", "aws"],
    );
    let order: Vec<String> = m
        .recorded_actions()
        .into_iter()
        .filter(|a| {
            [
                "ChangeResourceRecordSets",
                "DeleteHealthCheck",
                "TerminateInstances",
            ]
            .contains(&a.as_str())
        })
        .collect();
    // The lock's CREATE, the region's batch, its three checks, its three brokers, the lock's
    // DELETE.
    assert_eq!(
        order,
        [
            "ChangeResourceRecordSets",
            "ChangeResourceRecordSets",
            "DeleteHealthCheck",
            "DeleteHealthCheck",
            "DeleteHealthCheck",
            "TerminateInstances",
            "TerminateInstances",
            "TerminateInstances",
            "ChangeResourceRecordSets"
        ],
        "{order:?}"
    );
    let after = records(&dns, &zone).await;
    let expected: BTreeMap<String, String> = all
        .iter()
        .filter(|(k, _)| !k.contains("ap-northeast-1"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(after, expected);
    for (k, v) in &foreign {
        assert_eq!(after.get(k), Some(v), "foreign record {k} untouched");
    }
    let left: Vec<String> = checks(&dns).await.into_keys().collect();
    assert_eq!(
        left,
        [
            check_ref("us-east-1", "broker-1"),
            check_ref("us-east-1", "broker-2"),
            check_ref("us-east-1", "broker-3")
        ]
    );
    gwctl(&r, &m)
        .args(["plan", "us-east-1", "--detailed-exitcode", "--scope", "aws"])
        .assert()
        .code(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_gwctl_does_not_own_stops_the_run_before_any_change() {
    let (r, m) = (Regions::examples(), Moto::start());
    let dns = m.route53().await;
    let zone = m.zone_id().await;
    put(
        &dns,
        &zone,
        "mqtt.example.com",
        Some(("us-east-1", "us-east-1")),
        "192.0.2.30",
    )
    .await;
    let before = records(&dns, &zone).await;
    // The brokers exist; only Route53 is left to do.
    run_ok(&r, &m, &["up", "ap-northeast-1", "--yes", "--scope", "aws"]);
    let out = gwctl(&r, &m)
        .args(["plan", "us-east-1", "--scope", "aws"])
        .output()
        .expect("plan");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("mqtt.example.com A [us-east-1]")
            && stderr.contains("gwctl does not own it"),
        "{stderr}"
    );
    m.record();
    let out = gwctl(&r, &m)
        .args(["up", "us-east-1", "--yes", "--scope", "aws"])
        .output()
        .expect("up");
    assert_eq!(out.status.code(), Some(1));
    let mutating: Vec<String> = m
        .recorded_actions()
        .into_iter()
        .filter(|a| !crate::support::moto::is_read_only(a))
        .collect();
    assert!(mutating.is_empty(), "{mutating:?}");
    let after = records(&dns, &zone).await;
    assert_eq!(
        after["mqtt.example.com A [us-east-1]"],
        before["mqtt.example.com A [us-east-1]"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_drill_follow_health_checks_down_to_fail_open() {
    let (r, m) = (Regions::examples(), Moto::start());
    let dns = m.route53().await;
    run_ok(&r, &m, &["up", "--all", "--yes", "--scope", "aws"]);

    let status = json(&run_ok(
        &r,
        &m,
        &["status", "--all", "--json", "--scope", "aws"],
    ));
    for s in status.as_array().expect("regions") {
        assert_eq!(s["healthy"], true, "{s:#}");
        assert_eq!(s["route53_answering"], true);
        let checks = s["health_checks"].as_array().expect("checks");
        assert_eq!(checks.len(), 3);
        assert!(
            checks
                .iter()
                .all(|c| c["healthy"] == true && c["checkers"] == "8/8")
        );
        assert_eq!(s["records"].as_array().expect("records").len(), 5);
    }

    let drill = json(&run_ok(&r, &m, &["drill", "us-east-1", "--json"]));
    assert_eq!(drill["mode"], "dry");
    let answers = |d: &Value, client: &str| -> (Value, Value, bool) {
        let row = d["answers"]
            .as_array()
            .expect("answers")
            .iter()
            .find(|r| r["client"] == client)
            .unwrap_or_else(|| panic!("no row for {client}: {d:#}"))
            .clone();
        (
            row["now"]["region"].clone(),
            row["down"]["region"].clone(),
            row["down"]["fail_open"] == true,
        )
    };
    assert_eq!(
        answers(&drill, "us-east-1"),
        ("us-east-1".into(), "ap-northeast-1".into(), false)
    );
    assert_eq!(
        answers(&drill, "ap-southeast-2"),
        ("ap-northeast-1".into(), "ap-northeast-1".into(), false)
    );
    assert_eq!(
        answers(&drill, "us-west-2"),
        ("us-east-1".into(), "ap-northeast-1".into(), false)
    );

    // ap-northeast-1's endpoints fail: status says so and exits 1; its clients move to the US;
    // with the US down too, Route53 fails open and answers the nearest region anyway.
    let hc = checks(&dns).await;
    for (reference, (id, _, _)) in &hc {
        if reference.contains("/ap-northeast-1/") {
            invert(&dns, id, true).await;
        }
    }
    let out = gwctl(&r, &m)
        .args(["status", "--all", "--json", "--scope", "aws"])
        .output()
        .expect("status");
    assert_eq!(out.status.code(), Some(1));
    let status = json(&String::from_utf8_lossy(&out.stdout));
    let jp = status
        .as_array()
        .expect("regions")
        .iter()
        .find(|s| s["region"] == "ap-northeast-1")
        .expect("jp");
    assert_eq!(jp["healthy"], false);
    assert_eq!(jp["route53_answering"], false);
    assert!(
        jp["problems"]
            .as_array()
            .expect("problems")
            .iter()
            .any(|p| p
                .as_str()
                .is_some_and(|p| p.contains("Route53 withdraws the region"))),
        "{jp:#}"
    );

    let drill = json(&run_ok(&r, &m, &["drill", "us-east-1", "--json"]));
    assert_eq!(
        answers(&drill, "ap-northeast-1"),
        ("us-east-1".into(), "ap-northeast-1".into(), true),
        "now: the US answers; with the US down too, every region is unhealthy: fail-open to the nearest"
    );
    assert_eq!(
        answers(&drill, "us-east-1"),
        ("us-east-1".into(), "us-east-1".into(), true)
    );
    let human = run_ok(&r, &m, &["drill", "us-east-1"]);
    assert!(
        human.contains("fail-open: every region unhealthy"),
        "{human}"
    );

    // The plan shows what a drill left behind, for people, reviewers and machines.
    let human = run_ok(&r, &m, &["plan", "--all", "--scope", "aws"]);
    assert!(
        human.contains("health_check/broker-1") && human.contains("inverted"),
        "{human}"
    );
    let md = run_ok(&r, &m, &["plan", "--all", "--markdown", "--scope", "aws"]);
    assert!(
        md.contains("#### ap-northeast-1 route53 (zone `example.com`)")
            && md.contains("| `~` | `health_check/broker-1` |"),
        "{md}"
    );
    let plan = json(&run_ok(
        &r,
        &m,
        &["plan", "--all", "--json", "--scope", "aws"],
    ));
    let jp_plan = plan["regions"]
        .as_array()
        .expect("regions")
        .iter()
        .find(|p| p["region"] == "ap-northeast-1")
        .expect("jp plan");
    let updates: Vec<&Value> = jp_plan["route53"]["health_checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["actions"] == serde_json::json!(["update"]))
        .collect();
    assert_eq!(updates.len(), 3, "{jp_plan:#}");
    assert_eq!(updates[0]["before"]["config"]["inverted"], true);
    assert_eq!(updates[0]["after"]["inverted"], false);

    // up puts the checks back (nothing but Route53 changes).
    run_ok(&r, &m, &["up", "--all", "--yes", "--scope", "aws"]);
    assert!(
        checks(&dns)
            .await
            .values()
            .all(|(_, _, inverted)| !inverted)
    );
    gwctl(&r, &m)
        .args(["status", "--all", "--scope", "aws"])
        .assert()
        .success();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_drill_fails_the_region_then_restores_it() {
    let (r, m) = (Regions::examples(), Moto::start());
    let dns = m.route53().await;
    run_ok(&r, &m, &["up", "--all", "--yes", "--scope", "aws"]);

    // Without --yes and without a terminal nothing is inverted.
    gwctl(&r, &m)
        .args(["drill", "us-east-1", "--live"])
        .assert()
        .code(2);
    assert!(
        checks(&dns)
            .await
            .values()
            .all(|(_, _, inverted)| !inverted)
    );

    m.record();
    let drill = json(&run_ok(
        &r,
        &m,
        &["drill", "us-east-1", "--live", "--yes", "--json"],
    ));
    let calls = m.recorded_actions();
    assert_eq!(
        calls.iter().filter(|a| *a == "UpdateHealthCheck").count(),
        6,
        "three checks inverted, then restored: {calls:?}"
    );
    assert_eq!(drill["mode"], "live");
    let during = drill["regions_during_drill"]
        .as_array()
        .expect("during")
        .iter()
        .find(|s| s["region"] == "us-east-1")
        .expect("us")
        .clone();
    assert!(
        during["endpoints"]
            .as_array()
            .expect("endpoints")
            .iter()
            .all(|e| e["healthy"] == false),
        "Route53 saw the region down: {during:#}"
    );
    let row = drill["answers"]
        .as_array()
        .expect("answers")
        .iter()
        .find(|r| r["client"] == "us-east-1")
        .expect("row")
        .clone();
    assert_eq!(row["now"]["region"], "us-east-1");
    assert_eq!(row["down"]["region"], "ap-northeast-1");

    // Restored: nothing inverted, nothing to plan, the lock released.
    assert!(
        checks(&dns)
            .await
            .values()
            .all(|(_, _, inverted)| !inverted)
    );
    gwctl(&r, &m)
        .args(["plan", "--all", "--detailed-exitcode", "--scope", "aws"])
        .assert()
        .code(0);
    let zone = m.zone_id().await;
    assert!(
        !records(&dns, &zone)
            .await
            .keys()
            .any(|k| k.starts_with("_gwctl-lock")),
        "lock released"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_and_busy_route53_answers_are_retried() {
    use crate::support::fault_proxy::FaultProxy;
    let (r, m) = (Regions::examples(), Moto::start());
    let proxy = FaultProxy::start(&m.endpoint);
    let change = "POST hostedzone/*/rrset";
    proxy.configure(serde_json::json!({"rules": [
        {"action": change, "times": 2, "status": 400, "code": "Throttling"},
        {"action": change, "times": 1, "status": 400, "code": "PriorRequestNotComplete"},
        {"action": "POST healthcheck", "times": 2, "status": 400, "code": "Throttling"},
    ]}));
    let mut up = gwctl(&r, &m);
    up.env("AWS_ENDPOINT_URL", &proxy.endpoint).args([
        "up",
        "us-east-1",
        "--yes",
        "--scope",
        "aws",
    ]);
    let out = up.output().expect("up");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = proxy.account();
    assert_eq!(seen.injected(), 5, "every injected error was met: {seen:?}");
    assert_eq!(
        seen.calls_of("POST healthcheck"),
        2 + 3,
        "and retried until each of the 3 went through: {seen:?}"
    );
    let dns = m.route53().await;
    let zone = m.zone_id().await;
    let all = records(&dns, &zone).await;
    assert!(
        all.contains_key("mqtt.example.com A [us-east-1]"),
        "{all:#?}"
    );
    assert_eq!(
        checks(&dns).await.len(),
        3,
        "no duplicate from a retried create"
    );
    gwctl(&r, &m)
        .args(["plan", "us-east-1", "--detailed-exitcode", "--scope", "aws"])
        .assert()
        .code(0);
}
