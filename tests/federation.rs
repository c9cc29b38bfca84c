//! The backend's federation managed by gwctl (plan / up / down / status) against real local
//! RabbitMQ nodes and moto, and delivery counted across the links.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use gwctl::sandbox::clients::{AmqpConsumer, Login, amqp_publish_many, declare_durable_queue};
use gwctl::sandbox::{BACKEND, ENDPOINTS_FILE, Sandbox};
use gwctl::spec::{self, Selection};

use crate::support::moto::{Moto, gwctl_on_sandbox as gwctl, is_read_only};
use crate::support::{Regions, rabbitmq};

/// A saved plan covers the backend's federation: applied after the backend's entries of a
/// region changed, it is refused before anything changes, in AWS or on the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_plan_is_refused_when_the_backends_federation_changed() {
    let (r, m) = (Regions::examples(), Moto::start());
    let stack = spec::load(r.dir(), &Selection::All).expect("examples validate");
    let work = tempfile::tempdir().expect("tempdir");
    let sandbox = Sandbox::start(&stack, work.path(), &rabbitmq())
        .await
        .expect("nodes boot");
    let backend = sandbox.admin(BACKEND).expect("client");
    gwctl(&r, &m, work.path())
        .args(["up", "--all", "--yes"])
        .assert()
        .success();
    let saved = work.path().join("plan.json");
    gwctl(&r, &m, work.path())
        .args(["plan", "--all", "--out"])
        .arg(&saved)
        .assert()
        .success();
    let text = std::fs::read_to_string(&saved).expect("saved plan");
    assert!(text.contains("\"federation_sha256\""), "{text}");

    // Unchanged: the saved plan applies (nothing to do).
    gwctl(&r, &m, work.path())
        .args(["up", "--all", "--plan"])
        .arg(&saved)
        .assert()
        .success();

    // Someone changes the backend's upstream of us-east-1 after the plan was saved.
    let wrong_uri = "amqp://federation:not-the-password@127.0.0.1:1";
    let mut wrong = gwctl::model::federation::backend_upstreams(
        &stack.gateway("us-east-1").expect("us").spec,
        &[wrong_uri.into()],
    );
    backend
        .put_upstream("/", &wrong.remove(0))
        .await
        .expect("change upstream");
    m.record();
    let out = gwctl(&r, &m, work.path())
        .args(["up", "--all", "--plan"])
        .arg(&saved)
        .output()
        .expect("up");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("stale plan: the backend's federation entries of us-east-1 changed"),
        "{stderr}"
    );
    assert!(m.recorded_actions().iter().all(|a| is_read_only(a)));
    let upstreams = backend
        .parameters("federation-upstream", "/")
        .await
        .expect("upstreams");
    assert_eq!(
        upstreams["gw.us-east-1.amq.topic"]["uri"],
        serde_json::json!(wrong_uri),
        "the refused plan changed the backend"
    );
    sandbox.stop(Duration::from_secs(5)).await;
}

/// `up`'s output says the region's links from the backend run before Route53's change.
fn assert_links_seen_before_route53(stderr: &str, region: &str) {
    let links = stderr.find(&format!("{region}: federation links from the backend run"));
    let route53 = stderr.find("route53 zone");
    assert!(
        matches!((links, route53), (Some(l), Some(d)) if l < d),
        "{region}: links, then Route53:\n{stderr}"
    );
}

/// Deletes `region`'s record sets (its own name and its latency entry) from the zone.
async fn unadvertise(m: &Moto, region: &str) {
    use aws_sdk_route53::types::{Change, ChangeAction, ChangeBatch};
    let (dns, zone) = (m.route53().await, m.zone_id().await);
    let sets = dns
        .list_resource_record_sets()
        .hosted_zone_id(&zone)
        .send()
        .await
        .expect("records");
    let changes: Vec<Change> = sets
        .resource_record_sets()
        .iter()
        .filter(|s| s.name().starts_with(region) || s.set_identifier() == Some(region))
        .map(|s| {
            Change::builder()
                .action(ChangeAction::Delete)
                .resource_record_set(s.clone())
                .build()
                .expect("change")
        })
        .collect();
    assert!(changes.len() >= 2, "{sets:?}");
    dns.change_resource_record_sets()
        .hosted_zone_id(&zone)
        .change_batch(
            ChangeBatch::builder()
                .set_changes(Some(changes))
                .build()
                .expect("batch"),
        )
        .send()
        .await
        .expect("delete the region's records");
}

/// Counts distinct payloads until `expected` arrived or nothing came for `idle`.
async fn count(c: &mut AmqpConsumer, expected: usize, idle: Duration) -> (usize, usize) {
    let mut seen = BTreeSet::new();
    let mut total = 0;
    while seen.len() < expected {
        match c.next(idle).await {
            Some(m) => {
                total += 1;
                seen.insert(m.payload);
            }
            None => break,
        }
    }
    // Anything more is a duplicate.
    while c.next(Duration::from_secs(1)).await.is_some() {
        total += 1;
    }
    (seen.len(), total - seen.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_federates_each_gateway_and_down_removes_only_its_own_entries() {
    let (r, m) = (Regions::examples(), Moto::start());
    let stack = spec::load(r.dir(), &Selection::All).expect("examples validate");
    let work = tempfile::tempdir().expect("tempdir");
    let sandbox = Sandbox::start(&stack, work.path(), &rabbitmq())
        .await
        .expect("nodes boot");
    let backend = sandbox.admin(BACKEND).expect("client");
    // Someone else's upstream and policy on the backend.
    let foreign = gwctl::model::federation::Upstream {
        name: "elsewhere".into(),
        uris: vec!["amqp://127.0.0.1:1".into()],
        exchange: "other".into(),
        settings: gwctl::model::federation::LinkSettings {
            max_hops: 1,
            prefetch: 10,
            ack_mode: "on-confirm",
            reconnect_delay_s: 60,
            expires_ms: 60000,
            message_ttl_ms: 60000,
            queue_type: "classic",
            downstream: gwctl::spec::model::RabbitSeries::V4_0,
        },
    };
    backend
        .put_upstream("/", &foreign)
        .await
        .expect("foreign upstream");

    let up = gwctl(&r, &m, work.path())
        .args(["up", "--all", "--yes"])
        .output()
        .expect("up");
    let stderr = String::from_utf8_lossy(&up.stderr);
    assert!(up.status.success(), "{stderr}");
    for region in ["us-east-1", "ap-northeast-1"] {
        assert_links_seen_before_route53(&stderr, region);
    }
    let links = sandbox
        .wait_links_running(Duration::from_secs(30))
        .await
        .expect("links run");
    let mut names: Vec<&str> = links[BACKEND].iter().map(|l| l.upstream.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        ["gw.ap-northeast-1.amq.topic", "gw.us-east-1.amq.topic"]
    );
    // Each region has its own exchange, bound into amq.topic, federated from its own upstream:
    // no object shared between regions (no upstream set).
    let sets = backend
        .parameters("federation-upstream-set", "/")
        .await
        .expect("sets");
    assert!(sets.is_empty(), "{sets:?}");
    let policies = backend.policies("/").await.expect("policies");
    for region in ["us-east-1", "ap-northeast-1"] {
        let local = format!("gwctl.from-gateway.{region}.amq.topic");
        let federate = &policies[&format!("gw.{region}.federate.amq.topic")];
        assert_eq!(
            federate["definition"]["federation-upstream"],
            format!("gw.{region}.amq.topic")
        );
        assert_eq!(
            backend.bindings_from("/", &local).await.expect("bindings"),
            [("amq.topic".to_string(), "#".to_string())]
        );
        let bounds = &policies[&format!("gw.{region}.buffers")];
        assert_eq!(bounds["apply-to"], "queues");
        assert_eq!(bounds["definition"]["overflow"], "drop-head");
        assert_eq!(bounds["definition"]["max-length"], 1_000_000);
    }
    let upstreams = backend
        .parameters("federation-upstream", "/")
        .await
        .expect("upstreams");
    let us_link = &upstreams["gw.us-east-1.amq.topic"];
    assert_eq!(us_link["resource-cleanup-mode"], "never");
    assert_eq!(us_link["expires"], 7 * 86_400_000u64);
    assert_eq!(
        us_link["queue-type"], "quorum",
        "three gateway brokers hold it"
    );
    gwctl(&r, &m, work.path())
        .args(["plan", "--all", "--detailed-exitcode"])
        .assert()
        .code(0);

    // A region Route53 does not advertise (an earlier `up` gave up waiting for its links) is
    // advertised by the next `up` only after its links are seen running, though its
    // federation has nothing to change.
    unadvertise(&m, "us-east-1").await;
    let again = gwctl(&r, &m, work.path())
        .args(["up", "us-east-1", "--yes"])
        .output()
        .expect("up");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert_links_seen_before_route53(&stderr, "us-east-1");
    gwctl(&r, &m, work.path())
        .args(["plan", "--all", "--detailed-exitcode"])
        .assert()
        .code(0);

    // Drift on the backend (a changed upstream) shows, masked, and up repairs it.
    let fed_password = &r.secrets["GWCTL_FEDERATION_PASSWORD"];
    let mut wrong = gwctl::model::federation::backend_upstreams(
        &stack.gateway("us-east-1").expect("us").spec,
        &["amqp://federation:not-the-password@127.0.0.1:1".into()],
    );
    backend
        .put_upstream("/", &wrong.remove(0))
        .await
        .expect("break upstream");
    let plan = gwctl(&r, &m, work.path())
        .args(["plan", "us-east-1", "--detailed-exitcode"])
        .output()
        .expect("plan");
    assert_eq!(plan.status.code(), Some(2));
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(
        text.contains("~ federation-upstream/gw.us-east-1.amq.topic"),
        "{text}"
    );
    assert!(
        text.contains("amqps://***@127.0.0.1"),
        "URIs are masked: {text}"
    );
    assert!(
        !text.contains(fed_password.as_str())
            && !text.contains(&gwctl::model::federation::encode_component(fed_password))
    );
    gwctl(&r, &m, work.path())
        .args(["up", "us-east-1", "--yes"])
        .assert()
        .success();
    gwctl(&r, &m, work.path())
        .args(["plan", "--all", "--detailed-exitcode"])
        .assert()
        .code(0);

    // The region's links now deliver into another backend exchange: the new binding is made
    // and the old one removed (left, it would send the region's messages to both).
    backend
        .put_topic_exchange("/", "gwctl.telemetry")
        .await
        .expect("exchange");
    let to_backend = "  to_backend:\n    - exchange: amq.topic\n";
    let elsewhere =
        "  to_backend:\n    - exchange: amq.topic\n      peer_exchange: gwctl.telemetry\n";
    let local = "gwctl.from-gateway.us-east-1.amq.topic";
    for (from, to, into) in [
        (to_backend, elsewhere, "gwctl.telemetry"),
        (elsewhere, to_backend, "amq.topic"),
    ] {
        r.edit("us-east-1.yaml", from, to);
        let plan = gwctl(&r, &m, work.path())
            .args(["plan", "us-east-1"])
            .output()
            .expect("plan");
        let text = String::from_utf8_lossy(&plan.stdout);
        assert!(
            text.contains(&format!("binding/{local} -> {into}"))
                && text.contains("no longer declared"),
            "{text}"
        );
        gwctl(&r, &m, work.path())
            .args(["up", "us-east-1", "--yes"])
            .assert()
            .success();
        assert_eq!(
            backend.bindings_from("/", local).await.expect("bindings"),
            [(into.to_string(), "#".to_string())]
        );
    }
    gwctl(&r, &m, work.path())
        .args(["plan", "--all", "--detailed-exitcode"])
        .assert()
        .code(0);

    // The US gateway stops taking from the backend: its buffer there fills.
    let us_buffer = "federation: amq.topic -> gw-us-east-1:gwctl.from-backend.amq.topic";
    let jp_buffer = "federation: amq.topic -> gw-ap-northeast-1:gwctl.from-backend.amq.topic";
    sandbox
        .ctl("us-east-1", &["stop_app"])
        .expect("stop the US app");
    let sent = amqp_publish_many(
        &login(&sandbox, BACKEND),
        "amq.topic",
        (0..500).map(|i| (format!("commands/dev-{i}/x"), b"cmd".to_vec())),
    )
    .await
    .expect("publish");
    assert_eq!(sent, 500);
    let buffered = |name: &'static str| {
        let backend = &backend;
        async move {
            backend
                .queues("/", name)
                .await
                .expect("queues")
                .into_iter()
                .find(|(n, _)| n == name)
                .map(|(_, m)| m)
        }
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while buffered(us_buffer).await != Some(500) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(buffered(us_buffer).await, Some(500));
    assert!(buffered(jp_buffer).await.is_some());

    // down: this region's upstream, exchange, policies and buffer go; the other region, its
    // buffer and what it holds, and the foreign entries stay. The sandbox's node does not
    // follow moto's instances yet: stop it as `down` terminates the region's brokers (else its
    // link declares the buffer again).
    sandbox
        .ctl("ap-northeast-1", &["stop_app"])
        .expect("stop the Japanese app");
    let down = gwctl(&r, &m, work.path())
        .args(["down", "ap-northeast-1", "--yes"])
        .output()
        .expect("down");
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    let shown = String::from_utf8_lossy(&down.stdout);
    assert!(
        shown.contains(&format!("- queue/{jp_buffer}")),
        "down shows the buffer it deletes: {shown}"
    );
    assert_eq!(
        buffered(us_buffer).await,
        Some(500),
        "the US buffer is untouched"
    );
    assert_eq!(
        buffered(jp_buffer).await,
        None,
        "the removed region's buffer went"
    );
    sandbox
        .ctl("us-east-1", &["start_app"])
        .expect("start the US app");
    let upstreams = backend
        .parameters("federation-upstream", "/")
        .await
        .expect("upstreams");
    let mut left: Vec<&str> = upstreams.keys().map(String::as_str).collect();
    left.sort();
    assert_eq!(left, ["elsewhere", "gw.us-east-1.amq.topic"]);
    let policies = backend.policies("/").await.expect("policies");
    let mut ours: Vec<&str> = policies
        .keys()
        .map(String::as_str)
        .filter(|p| p.starts_with("gw."))
        .collect();
    ours.sort();
    assert_eq!(
        ours,
        ["gw.us-east-1.buffers", "gw.us-east-1.federate.amq.topic"]
    );
    assert_eq!(
        backend
            .exchanges("/", "gwctl.from-gateway.")
            .await
            .expect("exchanges"),
        ["gwctl.from-gateway.us-east-1.amq.topic"]
    );
    gwctl(&r, &m, work.path())
        .args(["plan", "us-east-1", "--detailed-exitcode"])
        .assert()
        .code(0);
    sandbox.stop(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_links_and_fails_with_the_reason_of_a_broken_one() {
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

    let ok = gwctl(&r, &m, work.path())
        .args(["status", "--all", "--json", "--wait", "30"])
        .output()
        .expect("status");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&ok.stdout).expect("json");
    for region in v.as_array().expect("regions") {
        assert_eq!(region["healthy"], true, "{region}");
        let directions: BTreeSet<&str> = region["links"]
            .as_array()
            .expect("links")
            .iter()
            .filter_map(|l| l["direction"].as_str())
            .collect();
        assert_eq!(
            directions,
            BTreeSet::from(["backend->gateway", "gateway->backend"])
        );
        // Every link runs over AMQPS; its URI is shown without credentials.
        for l in region["links"].as_array().expect("links") {
            let uri = l["uri"].as_str().unwrap_or_default();
            assert!(uri.starts_with("amqps://"), "{l}");
            assert!(!uri.contains("federation:"), "{l}");
        }
        // Each broker's version and its connection count.
        let brokers = region["brokers"].as_array().expect("brokers");
        assert_eq!(brokers.len(), 1, "{region}");
        assert!(
            brokers[0]["version"]
                .as_str()
                .is_some_and(|v| v.starts_with("4.0.")),
            "{region}"
        );
        // The count is as of the node's last statistics round (every 30 s on gateways), so
        // possibly still 0 this soon after the links came up.
        assert!(brokers[0]["connections"].as_u64().is_some(), "{region}");
    }

    // A wrong password on the backend's link to the US gateway.
    let backend = sandbox.admin(BACKEND).expect("client");
    let us_amqp = sandbox.layout.nodes["us-east-1"].ports.amqp;
    let files = sandbox.endpoint_map().regions["backend"][0]
        .link_files
        .clone()
        .expect("the backend's link files");
    let tls = gwctl::model::federation::LinkTls {
        ca_file: files.ca_file,
        client_cert: Some((files.cert_file, files.key_file)),
        server_name: Some("us-east-1.mqtt.example.com".into()),
    };
    let uri = gwctl::model::federation::amqps_uri(
        "gwctl.federation",
        "wrong",
        "127.0.0.1",
        us_amqp,
        30,
        &tls,
    );
    let mut bad = gwctl::model::federation::backend_upstreams(
        &stack.gateway("us-east-1").expect("us").spec,
        &[uri],
    );
    backend
        .put_upstream("/", &bad.remove(0))
        .await
        .expect("break");
    let start = Instant::now();
    loop {
        let links = backend.federation_links().await.expect("links");
        if links
            .iter()
            .any(|l| l.upstream == "gw.us-east-1.amq.topic" && l.status == "error")
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the link never failed: {links:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let out = gwctl(&r, &m, work.path())
        .args(["status", "--all", "--json"])
        .output()
        .expect("status");
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let us = v
        .as_array()
        .expect("regions")
        .iter()
        .find(|s| s["region"] == "us-east-1")
        .expect("us");
    assert_eq!(us["healthy"], false);
    let link = us["links"]
        .as_array()
        .expect("links")
        .iter()
        .find(|l| l["upstream"] == "gw.us-east-1.amq.topic")
        .expect("link");
    assert_eq!(link["status"], "error");
    let reason = link["error"].as_str().unwrap_or_default();
    assert!(
        reason.contains("auth") || reason.contains("ACCESS_REFUSED"),
        "the reason is shown: {reason}"
    );
    assert!(
        !reason.contains("wrong"),
        "no password in the reason: {reason}"
    );
    let ap = v
        .as_array()
        .expect("regions")
        .iter()
        .find(|s| s["region"] == "ap-northeast-1")
        .expect("ap");
    assert_eq!(ap["healthy"], true, "the other region is unaffected");

    // A disk alarm on the Japanese gateway: it accepts connections but blocks every publisher.
    // status names it (this is what hung a CI run before the sandbox's limits were fixed).
    sandbox
        .ctl("ap-northeast-1", &["set_disk_free_limit", "100000GB"])
        .expect("raise the limit");
    let out = gwctl(&r, &m, work.path())
        .args(["status", "ap-northeast-1", "--json"])
        .output()
        .expect("status");
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let ap = &v[0];
    let alarms = ap["alarms"].as_array().expect("alarms");
    assert!(
        alarms.len() == 1
            && alarms[0]
                .as_str()
                .is_some_and(|a| a.contains("alarms in effect")),
        "{ap:#}"
    );
    assert!(
        ap["problems"]
            .as_array()
            .expect("problems")
            .iter()
            .any(|p| p
                .as_str()
                .is_some_and(|p| p.contains("publishers are blocked"))),
        "{ap:#}"
    );

    // A broker whose certificate is not the one expected: gwctl refuses to talk to it. The
    // backend verified with another CA: `plan` (which reads the backend's federation) fails.
    let mut map = sandbox.endpoint_map();
    let stack_ca = work.path().join("stack-ca.pem");
    std::fs::write(&stack_ca, &sandbox.cas.stack).expect("write");
    if let Some(b) = map.regions.get_mut(BACKEND) {
        b[0].ca_file = Some(stack_ca.display().to_string());
    }
    // A gateway broker verified against another region's name: `status` says why.
    if let Some(us) = map.regions.get_mut("us-east-1") {
        us[0].tls_name = Some("ap-northeast-1.mqtt.example.com".into());
    }
    let wrong = work.path().join("wrong-certificates.json");
    std::fs::write(&wrong, serde_json::to_string(&map).expect("json")).expect("write");
    let out = gwctl(&r, &m, work.path())
        .env("GWCTL_BROKER_ENDPOINTS", &wrong)
        .args(["plan", "us-east-1"])
        .output()
        .expect("plan");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("refusing the broker's TLS certificate")
            && stderr.contains("not signed by the CA gwctl trusts"),
        "{stderr}"
    );
    if let Some(b) = map.regions.get_mut(BACKEND) {
        b[0].ca_file = sandbox.endpoint_map().regions[BACKEND][0].ca_file.clone();
    }
    std::fs::write(&wrong, serde_json::to_string(&map).expect("json")).expect("write");
    let out = gwctl(&r, &m, work.path())
        .env("GWCTL_BROKER_ENDPOINTS", &wrong)
        .args(["status", "us-east-1"])
        .output()
        .expect("status");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("refusing the broker's TLS certificate")
            && stdout.contains("not valid for name \"ap-northeast-1.mqtt.example.com\""),
        "{stdout}"
    );
    sandbox.stop(Duration::from_secs(5)).await;
}

fn login(sandbox: &Sandbox, name: &str) -> Login {
    sandbox.admin_login(name).expect("login")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_messages_each_way_arrive_exactly_once_and_survive_a_gateway_restart() {
    const N: usize = 10_000;
    let r = Regions::examples();
    let stack = spec::load(r.dir(), &Selection::All).expect("examples validate");
    let work = tempfile::tempdir().expect("tempdir");
    let mut sandbox = Sandbox::start(&stack, work.path(), &rabbitmq())
        .await
        .expect("nodes boot");
    sandbox.federate_backend().await.expect("federation");
    sandbox
        .wait_links_running(Duration::from_secs(30))
        .await
        .expect("links");
    let (backend, us) = (login(&sandbox, BACKEND), login(&sandbox, "us-east-1"));

    // Devices -> backend: published with confirms on the gateway, counted on the backend.
    let mut at_backend = AmqpConsumer::bind(&backend, "amq.topic", "load.up.#")
        .await
        .expect("consumer");
    let sent = amqp_publish_many(
        &us,
        "amq.topic",
        (0..N).map(|i| {
            (
                format!("load.up.{}", i % 100),
                format!("up-{i}").into_bytes(),
            )
        }),
    )
    .await
    .expect("publish");
    assert_eq!(sent, N);
    assert_eq!(
        count(&mut at_backend, N, Duration::from_secs(20)).await,
        (N, 0),
        "gateway -> backend: (distinct, duplicates)"
    );
    at_backend.close().await;

    // Backend -> devices.
    let mut at_gateway = AmqpConsumer::bind(&us, "amq.topic", "load.down.#")
        .await
        .expect("consumer");
    let sent = amqp_publish_many(
        &backend,
        "amq.topic",
        (0..N).map(|i| {
            (
                format!("load.down.{}", i % 100),
                format!("down-{i}").into_bytes(),
            )
        }),
    )
    .await
    .expect("publish");
    assert_eq!(sent, N);
    assert_eq!(
        count(&mut at_gateway, N, Duration::from_secs(20)).await,
        (N, 0),
        "backend -> gateway: (distinct, duplicates)"
    );
    at_gateway.close().await;

    // The US gateway restarts in the middle of a stream of persistent messages: the link
    // recovers by itself and nothing is lost (the backend's link queue holds them meanwhile).
    declare_durable_queue(&us, "restart-test", "amq.topic", "stream.#")
        .await
        .expect("queue");
    let batch = |from: usize, to: usize| {
        (from..to)
            .map(|i| (format!("stream.{i}"), format!("s-{i}").into_bytes()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        amqp_publish_many(&backend, "amq.topic", batch(0, 1000))
            .await
            .expect("first part"),
        1000
    );
    let restart = sandbox.restart("us-east-1", Duration::from_secs(15));
    let during = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        amqp_publish_many(&backend, "amq.topic", batch(1000, 2000)).await
    };
    let (restarted, published) = tokio::join!(restart, during);
    restarted.expect("the gateway restarts");
    assert_eq!(
        published.expect("published while the gateway restarts"),
        1000
    );
    assert_eq!(
        amqp_publish_many(&backend, "amq.topic", batch(2000, 3000))
            .await
            .expect("last part"),
        1000
    );
    sandbox
        .wait_links_running(Duration::from_secs(60))
        .await
        .expect("the link recovers by itself");
    let mut queue = AmqpConsumer::on_queue(&us, "restart-test")
        .await
        .expect("consumer");
    let (distinct, duplicates) = count(&mut queue, 3000, Duration::from_secs(30)).await;
    assert_eq!(
        distinct,
        3000,
        "lost {} persistent messages across the restart",
        3000 - distinct
    );
    eprintln!("restart: 3000 delivered, {duplicates} redelivered (at-least-once)");
    queue.close().await;
    sandbox.stop(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_regions_applied_at_once_from_two_processes_both_end_federated() {
    let (r, m) = (Regions::examples(), Moto::start());
    let stack = spec::load(r.dir(), &Selection::All).expect("examples validate");
    let work = tempfile::tempdir().expect("tempdir");
    let sandbox = Sandbox::start(&stack, work.path(), &rabbitmq())
        .await
        .expect("nodes boot");
    let backend = sandbox.admin(BACKEND).expect("client");

    // New brokers that never answer: up creates them, waits its bound, and says so.
    let endpoints = work.path().join(ENDPOINTS_FILE);
    let mut silent: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&endpoints).expect("endpoints"))
            .expect("json");
    silent["regions"]["us-east-1"] =
        serde_json::json!([{"host": "127.0.0.1", "amqp_port": 9, "management_port": 9}]);
    let silent_file = work.path().join("silent-endpoints.json");
    std::fs::write(&silent_file, silent.to_string()).expect("write");
    let out = gwctl(&r, &m, work.path())
        .env("GWCTL_BROKER_ENDPOINTS", &silent_file)
        .args(["up", "us-east-1", "--yes", "--broker-wait", "2"])
        .output()
        .expect("up");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("us-east-1: 0 of 1 brokers answer their management API after 2 s"),
        "{stderr}"
    );

    let out = gwctl(&r, &m, work.path())
        .args(["up", "--all", "--yes"])
        .output()
        .expect("up");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ap-northeast-1: 1 brokers answer"),
        "up waits for new brokers: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let regions = ["us-east-1", "ap-northeast-1"];
    for round in 0..20 {
        // Both regions' backend entries gone, then both applied at once by two processes.
        for region in regions {
            backend
                .delete_policy("/", &format!("gw.{region}.federate.amq.topic"))
                .await
                .expect("policy");
            backend
                .delete_parameter(
                    "federation-upstream",
                    "/",
                    &format!("gw.{region}.amq.topic"),
                )
                .await
                .expect("upstream");
            backend
                .delete_exchange("/", &format!("gwctl.from-gateway.{region}.amq.topic"))
                .await
                .expect("exchange");
        }
        let children: Vec<std::process::Child> = regions
            .iter()
            .map(|region| {
                let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("gwctl"));
                cmd.arg("--regions")
                    .arg(r.dir())
                    .args(["up", region, "--yes"]);
                m.std_env(&mut cmd);
                cmd.env("GWCTL_BROKER_ENDPOINTS", work.path().join(ENDPOINTS_FILE))
                    .env("NO_COLOR", "1")
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped());
                cmd.spawn().expect("spawn")
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().expect("wait");
            assert!(
                out.status.success(),
                "round {round}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let policies = backend.policies("/").await.expect("policies");
        let upstreams = backend
            .parameters("federation-upstream", "/")
            .await
            .expect("upstreams");
        for region in regions {
            assert!(
                policies.contains_key(&format!("gw.{region}.federate.amq.topic"))
                    && upstreams.contains_key(&format!("gw.{region}.amq.topic")),
                "round {round}: {region} lost its federation"
            );
            assert_eq!(
                backend
                    .bindings_from("/", &format!("gwctl.from-gateway.{region}.amq.topic"))
                    .await
                    .expect("bindings"),
                [("amq.topic".to_string(), "#".to_string())],
                "round {round}"
            );
        }
    }

    // A longer buffer expiry would make the running link redeclare its buffer with other
    // arguments (RabbitMQ refuses, the link stops): plan says so, up leaves the link alone.
    r.edit(
        "us-east-1.yaml",
        "  to_backend:\n    - exchange: amq.topic\n",
        "  to_backend:\n    - exchange: amq.topic\n  buffers:\n    expires_days: 14\n",
    );
    let plan = gwctl(&r, &m, work.path())
        .args(["plan", "us-east-1", "--detailed-exitcode"])
        .output()
        .expect("plan");
    assert_eq!(plan.status.code(), Some(2));
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(
        text.contains(
            "held: us-east-1: federation-upstream/gw.us-east-1.amq.topic: its buffer would change"
        ),
        "{text}"
    );
    gwctl(&r, &m, work.path())
        .args(["up", "us-east-1", "--yes"])
        .assert()
        .success();
    let upstreams = backend
        .parameters("federation-upstream", "/")
        .await
        .expect("upstreams");
    assert_eq!(
        upstreams["gw.us-east-1.amq.topic"]["expires"],
        7 * 86_400_000u64
    );
    sandbox.stop(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_device_buffer_refuses_new_telemetry_and_loses_none_it_took() {
    let r = Regions::examples();
    r.edit(
        "us-east-1.yaml",
        "  to_backend:\n    - exchange: amq.topic\n",
        "  to_backend:\n    - exchange: amq.topic\n  buffers:\n    to_backend:\n      \
         max_messages: 1000\n      max_mib: 16\n      overflow: reject-publish\n",
    );
    let stack = spec::load(r.dir(), &Selection::All).expect("valid");
    let work = tempfile::tempdir().expect("tempdir");
    let sandbox = Sandbox::start(&stack, work.path(), &rabbitmq())
        .await
        .expect("nodes boot");
    sandbox.federate_backend().await.expect("federation");
    sandbox
        .wait_links_running(Duration::from_secs(30))
        .await
        .expect("links");
    let (backend, us) = (login(&sandbox, BACKEND), login(&sandbox, "us-east-1"));
    declare_durable_queue(&backend, "bp-test", "amq.topic", "bp.#")
        .await
        .expect("queue");

    // The backend goes away: the US gateway buffers up to its bound, then refuses.
    sandbox
        .ctl(BACKEND, &["stop_app"])
        .expect("stop the backend");
    let first = amqp_publish_many(
        &us,
        "amq.topic",
        (0..1000).map(|i| (format!("bp.{i}"), format!("bp-{i}").into_bytes())),
    )
    .await;
    assert_eq!(first.expect("the first 1000 are taken"), 1000);
    // A quorum queue refuses once it is *over* its bound (rabbit_fifo checks the length
    // before it takes a message): measured, the 1001st is taken and the 1002nd refused.
    let mut taken = 1000;
    let mut refused = None;
    for i in 0..5 {
        let one = [(format!("bp.more.{i}"), format!("bp-more-{i}").into_bytes())];
        match amqp_publish_many(&us, "amq.topic", one).await {
            Ok(_) => taken += 1,
            Err(e) => {
                refused = Some(e.to_string());
                break;
            }
        }
    }
    assert!(
        refused.as_deref().is_some_and(|e| e.contains("nack")),
        "a full buffer refuses: {refused:?}"
    );
    assert!(taken <= 1001, "at most one over the bound: {taken}");
    // The backend is back: everything the gateway took arrives, once.
    sandbox
        .ctl(BACKEND, &["start_app"])
        .expect("start the backend");
    let mut queue = AmqpConsumer::on_queue(&backend, "bp-test")
        .await
        .expect("consumer");
    assert_eq!(
        count(&mut queue, taken, Duration::from_secs(30)).await,
        (taken, 0),
        "(distinct, duplicates) after the outage"
    );
    queue.close().await;
    sandbox.stop(Duration::from_secs(5)).await;
}
