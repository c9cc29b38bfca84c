//! The rendered configuration boots real RabbitMQ nodes (Debian's rabbitmq-server on loopback
//! ports), federation links come up, and messages cross them each way exactly once.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use gwctl::sandbox::clients::{AmqpConsumer, MqttSubscriber, Received, amqp_publish, mqtt_publish};
use gwctl::sandbox::{BACKEND, Sandbox};
use gwctl::spec::{self, Selection};

use crate::support::{Regions, contains, rabbitmq, read_tree};

const WAIT: Duration = Duration::from_secs(10);
/// How long we listen for a copy that must not come (a loop or a gateway → gateway hop).
const QUIET: Duration = Duration::from_secs(3);

/// One HTTPS GET on loopback, verifying the server with `ca_pem`: status and body.
async fn https_get(port: u16, path: &str, ca_pem: &str) -> (u16, String) {
    let tls = gwctl::pki::client_config(ca_pem, None).expect("tls");
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .expect("client");
    let resp = client
        .get(format!("https://127.0.0.1:{port}{path}"))
        .send()
        .await
        .expect("HTTPS answer");
    (
        resp.status().as_u16(),
        resp.text().await.unwrap_or_default(),
    )
}

async fn drain_mqtt(sub: &mut MqttSubscriber) -> Vec<Received> {
    let mut got = Vec::new();
    while let Some(m) = sub.next(QUIET).await {
        got.push(m);
    }
    got
}

async fn drain_amqp(c: &mut AmqpConsumer) -> Vec<Received> {
    let mut got = Vec::new();
    while let Some(m) = c.next(QUIET).await {
        got.push(m);
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_nodes_federate_both_ways_without_loops() {
    let r = Regions::examples();
    let stack = spec::load(r.dir(), &Selection::All).expect("examples validate");
    let work = tempfile::tempdir().expect("tempdir");
    let sandbox = Sandbox::start(&stack, work.path(), &rabbitmq())
        .await
        .expect("nodes boot");

    // The gateways' links to the backend come from the rendered definitions alone; the
    // backend's links to the gateways are applied through the management API.
    sandbox
        .federate_backend()
        .await
        .expect("backend federation applied");
    let links = sandbox
        .wait_links_running(Duration::from_secs(30))
        .await
        .expect("links running");
    assert_eq!(links["us-east-1"].len(), 1);
    assert_eq!(links["us-east-1"][0].upstream, "backend.amq.topic");
    assert_eq!(links["ap-northeast-1"].len(), 1);
    let mut backend_upstreams: Vec<&str> =
        links[BACKEND].iter().map(|l| l.upstream.as_str()).collect();
    backend_upstreams.sort();
    assert_eq!(
        backend_upstreams,
        ["gw.ap-northeast-1.amq.topic", "gw.us-east-1.amq.topic"]
    );
    let overview = sandbox
        .admin("us-east-1")
        .expect("client")
        .overview()
        .await
        .expect("overview");
    assert_eq!(overview.cluster_name, "gw-us-east-1");
    // Local nodes share one disk: their alarm limits are absolute, not 1.5-2x the machine's
    // RAM (which blocked every publisher on a CI machine with less free disk than that).
    let admin = sandbox.admin(BACKEND).expect("client");
    assert_eq!(admin.alarms_in_effect().await.expect("alarm check"), None);
    // The figures arrive with the node's first statistics round.
    let mut limit = None;
    for _ in 0..60 {
        limit = admin.node_alarms().await.expect("nodes")[0].disk_free_limit;
        if limit.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(limit, Some(1_000_000_000));

    let backend = sandbox.admin_login(BACKEND).expect("backend login");
    let us = sandbox
        .device_login("us-east-1", "dev-us-1")
        .expect("us device");
    let us2 = sandbox
        .device_login("us-east-1", "dev-us-2")
        .expect("us device");
    let jp = sandbox
        .device_login("ap-northeast-1", "dev-jp-1")
        .expect("jp device");
    // Observers on the gateways: the admin over AMQPS (with a stack-CA client certificate),
    // since a device sees nothing but its own topics.
    let us_admin = sandbox.admin_login("us-east-1").expect("us admin");
    let jp_admin = sandbox.admin_login("ap-northeast-1").expect("jp admin");

    // Device → backend: exactly one copy at the backend, none at the other gateway, no echo.
    let mut backend_telemetry = AmqpConsumer::bind(&backend, "amq.topic", "devices.#")
        .await
        .expect("consumer");
    let mut us_telemetry = AmqpConsumer::bind(&us_admin, "amq.topic", "devices.#")
        .await
        .expect("us observer");
    let mut jp_telemetry = AmqpConsumer::bind(&jp_admin, "amq.topic", "devices.#")
        .await
        .expect("jp observer");
    mqtt_publish(
        &us,
        "dev-us-1",
        "devices/dev-us-1/temperature",
        b"21.5",
        WAIT,
    )
    .await
    .expect("publish");
    let at_backend = drain_amqp(&mut backend_telemetry).await;
    assert_eq!(
        at_backend,
        vec![Received {
            key: "devices.dev-us-1.temperature".into(),
            payload: b"21.5".to_vec()
        }]
    );
    assert_eq!(
        drain_amqp(&mut us_telemetry).await.len(),
        1,
        "the local observer sees it once: no echo from the backend"
    );
    assert_eq!(
        drain_amqp(&mut jp_telemetry).await,
        vec![],
        "never gateway to gateway"
    );

    // Backend → devices: every gateway gets exactly one copy; nothing comes back.
    let mut us_commands = AmqpConsumer::bind(&us_admin, "amq.topic", "commands.#")
        .await
        .expect("us observer");
    let mut us_device = MqttSubscriber::connect(&us2, "dev-us-2", "commands/dev-us-2/#", WAIT)
        .await
        .expect("us sub");
    let mut jp_commands = MqttSubscriber::connect(&jp, "dev-jp-1", "commands/dev-jp-1/#", WAIT)
        .await
        .expect("jp sub");
    let mut backend_commands = AmqpConsumer::bind(&backend, "amq.topic", "commands.#")
        .await
        .expect("consumer");
    amqp_publish(&backend, "amq.topic", "commands.dev-jp-1", b"reboot")
        .await
        .expect("publish");
    let expected = vec![Received {
        key: "commands/dev-jp-1".into(),
        payload: b"reboot".to_vec(),
    }];
    assert_eq!(drain_mqtt(&mut jp_commands).await, expected);
    assert_eq!(
        drain_amqp(&mut us_commands).await.len(),
        1,
        "broadcast while the router does not exist"
    );
    assert_eq!(
        drain_mqtt(&mut us_device).await,
        vec![],
        "a device receives only its own commands"
    );
    assert_eq!(
        drain_amqp(&mut backend_commands).await.len(),
        1,
        "no copy returns to the backend"
    );

    for sub in [us_device, jp_commands] {
        sub.disconnect().await;
    }
    for c in [
        backend_telemetry,
        backend_commands,
        us_telemetry,
        jp_telemetry,
        us_commands,
    ] {
        c.close().await;
    }

    // Filled-in definitions exist only as 0600 files; everything else has no secret in clear.
    for region in ["us-east-1", "ap-northeast-1", BACKEND] {
        let filled = work.path().join(region).join("definitions.json");
        let mode = std::fs::metadata(&filled)
            .expect("filled definitions")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}", filled.display());
        for (path, bytes) in read_tree(&work.path().join(region).join("rendered")) {
            for (var, value) in &r.secrets {
                assert!(
                    !contains(&bytes, value),
                    "{var} in clear in {}",
                    path.display()
                );
            }
        }
    }
    sandbox.stop(Duration::from_secs(10)).await;
}

/// Every node runs the RabbitMQ production runs (4.0, from the trixie root). On 4.0.x a
/// federation link carrying an MQTT 5 subscription's binding crashes (rabbitmq-server
/// 13032/13040, fixed in 4.1.0); gateways federate from the backend into a dedicated exchange,
/// so a device's subscription never reaches a link, and commands still reach it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt5_subscriber_leaves_every_federation_link_running() {
    let r = Regions::examples();
    let stack = spec::load(r.dir(), &Selection::All).expect("examples validate");
    let work = tempfile::tempdir().expect("tempdir");
    let sandbox = Sandbox::start(&stack, work.path(), &rabbitmq())
        .await
        .expect("nodes boot");
    for name in sandbox.node_names() {
        let version = sandbox
            .admin(&name)
            .expect("client")
            .overview()
            .await
            .expect("overview")
            .rabbitmq_version;
        assert!(version.starts_with("4.0."), "{name} runs {version}");
        // rabbitmq_prometheus answers over HTTPS on the node's metrics port.
        let port = sandbox.layout.nodes[&name].ports.metrics;
        let ca = if name == BACKEND {
            &sandbox.cas.backend
        } else {
            &sandbox.cas.stack
        };
        let (status, metrics) = https_get(port, "/metrics", ca).await;
        assert!(
            status == 200 && metrics.contains("rabbitmq_"),
            "{name}: {status} {}",
            &metrics[..metrics.len().min(300)]
        );
    }
    sandbox.federate_backend().await.expect("federation");
    let links = sandbox
        .wait_links_running(Duration::from_secs(30))
        .await
        .expect("links running");
    assert_eq!(
        links["us-east-1"][0].exchange.as_deref(),
        Some("gwctl.from-backend.amq.topic"),
        "the gateway federates into its dedicated exchange"
    );

    let us = sandbox
        .device_login("us-east-1", "dev-5")
        .expect("us device");
    let mut device = MqttSubscriber::connect_v5(&us, "dev-5", "commands/dev-5/#", WAIT)
        .await
        .expect("MQTT 5 subscription");
    // Long enough for a link carrying the binding to have crashed (it does at once).
    tokio::time::sleep(QUIET).await;
    let links = sandbox
        .wait_links_running(Duration::from_secs(5))
        .await
        .expect("every link still runs with an MQTT 5 subscriber on a gateway");
    assert_eq!(links.values().map(Vec::len).sum::<usize>(), 4);

    let backend = sandbox.admin_login(BACKEND).expect("backend login");
    amqp_publish(&backend, "amq.topic", "commands.dev-5.reboot", b"now")
        .await
        .expect("publish");
    let got = device.next(WAIT).await.expect("the command arrives");
    assert_eq!(got.key, "commands/dev-5/reboot");
    device.disconnect().await;
    sandbox.stop(Duration::from_secs(5)).await;
}

/// A region pinned to Debian 12's RabbitMQ 3.10 (a region to move off it) renders what 3.10
/// accepts: its node boots from the files on this machine's own 3.10 package, beside 4.0
/// nodes, federates both ways with the 4.0 backend, and its devices log in with their
/// certificates (never with a password under a device's id) and reach their topics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_on_debian_12s_rabbitmq_3_10_boots_federates_and_serves_devices() {
    let r = Regions::examples();
    r.edit("us-east-1.yaml", "debian-13-amd64-*", "debian-12-amd64-*");
    r.edit(
        "us-east-1.yaml",
        "  instance_type: c6i.large\n",
        "  instance_type: c6i.large\n  rabbitmq_package: 3.10.8-1.1+deb12u1\n",
    );
    let stack = spec::load(r.dir(), &Selection::All).expect("a 3.10 region validates");
    let work = tempfile::tempdir().expect("tempdir");
    // In production the flag goes to the authorizer only (the revocation refresher rejects
    // unknown options: a misplaced flag stopped every refresh on 3.10 brokers).
    r.gwctl()
        .args(["render", "us-east-1", "--out"])
        .arg(work.path().join("rendered"))
        .assert()
        .success();
    let user_data = std::fs::read_to_string(
        work.path()
            .join("rendered/us-east-1/broker-1.user-data.yaml"),
    )
    .expect("user-data");
    let flagged: Vec<&str> = user_data
        .lines()
        .filter(|l| l.contains("ExecStart=") && l.contains("--legacy-cert-login"))
        .collect();
    assert!(
        flagged.len() == 1
            && flagged[0].contains("ExecStart=/usr/local/sbin/gwctl-device-authorizer"),
        "{flagged:?}"
    );
    let sandbox = Sandbox::start(&stack, work.path(), &rabbitmq())
        .await
        .expect("nodes boot");
    let versions = [
        ("us-east-1", "3.10."),
        ("ap-northeast-1", "4.0."),
        (BACKEND, "4.0."),
    ];
    for (node, series) in versions {
        let overview = sandbox
            .admin(node)
            .expect("client")
            .overview()
            .await
            .expect("overview");
        assert!(
            overview.rabbitmq_version.starts_with(series),
            "{node}: {}",
            overview.rabbitmq_version
        );
    }

    sandbox.federate_backend().await.expect("federation");
    let links = sandbox
        .wait_links_running(Duration::from_secs(60))
        .await
        .expect("links running");
    assert_eq!(links["us-east-1"].len(), 1, "{links:?}");
    assert_eq!(links[BACKEND].len(), 2, "{links:?}");

    let lines =
        gwctl::sandbox::roundtrip::run(&stack, &sandbox.endpoint_map(), "us-east-1", "us-east-1")
            .await
            .expect("telemetry and a command cross the 3.10 gateway");
    assert!(!lines.is_empty());

    // A device cannot log in under another device's id with a password (the authorizer
    // allows a login without a password only: what 3.10 sends for a certificate login).
    let device = sandbox.device_login("us-east-1", "dev-a").expect("device");
    let as_b = gwctl::sandbox::clients::Login {
        user: "dev-b".into(),
        password: Some(gwctl::spec::secret::Secret::new("none")),
        ..device.clone()
    };
    for client_id in ["dev-a", "dev-b"] {
        assert!(
            mqtt_publish(&as_b, client_id, "devices/dev-b/t", b"x", WAIT)
                .await
                .is_err(),
            "published as dev-b (client id {client_id})"
        );
    }
    mqtt_publish(&device, "dev-a", "devices/dev-a/t", b"x", WAIT)
        .await
        .expect("the certificate login");
    sandbox.stop(Duration::from_secs(5)).await;
}
