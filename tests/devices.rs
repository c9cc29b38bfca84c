//! One identity per device, least privilege, on real RabbitMQ 4.0 nodes: devices log in with a
//! certificate of the device CA and may publish only their own telemetry and read only their
//! own commands; everything else is refused by the broker.

use std::time::{Duration, SystemTime};

use gwctl::broker::probe::{MqttTarget, ProbeIdentity, mqtt_round_trip};
use gwctl::pki::Authority;
use gwctl::sandbox::clients::{AmqpConsumer, Login, MqttSubscriber, amqp_publish, mqtt_publish};
use gwctl::sandbox::{BACKEND, Sandbox};
use gwctl::spec::{self, Selection};

use crate::support::{Regions, rabbitmq};

const WAIT: Duration = Duration::from_secs(10);
const GW: &str = "us-east-1";

/// Whether a device can connect and subscribe to `filter`.
async fn subscribes(
    login: &Login,
    client_id: &str,
    filter: &str,
) -> Result<MqttSubscriber, String> {
    MqttSubscriber::connect(login, client_id, filter, WAIT)
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_reach_their_own_topics_only() {
    let r = Regions::examples();
    r.edit(
        "backend.yaml",
        "devices:\n",
        "devices:\n  revoked: [dev-lost]\n",
    );
    let stack = spec::load(r.dir(), &Selection::All).expect("examples validate");
    let work = tempfile::tempdir().expect("tempdir");
    let mut sandbox = Sandbox::start(&stack, work.path(), &rabbitmq())
        .await
        .expect("nodes boot");
    let a = sandbox.device_login(GW, "dev-a").expect("device a");
    let b = sandbox.device_login(GW, "dev-b").expect("device b");
    let admin = sandbox.admin_login(GW).expect("admin");

    // A publishes its telemetry and receives its commands.
    let mut telemetry = AmqpConsumer::bind(&admin, "amq.topic", "devices.#")
        .await
        .expect("observer");
    mqtt_publish(&a, "dev-a", "devices/dev-a/temperature", b"20", WAIT)
        .await
        .expect("A publishes its own telemetry");
    let got = telemetry.next(WAIT).await.expect("A's telemetry arrives");
    assert_eq!(got.key, "devices.dev-a.temperature");
    let mut commands = subscribes(&a, "dev-a", "commands/dev-a/#")
        .await
        .expect("A subscribes to its commands");
    amqp_publish(&admin, "amq.topic", "commands.dev-a.reboot", b"now")
        .await
        .expect("command");
    assert_eq!(
        commands.next(WAIT).await.expect("A's command").key,
        "commands/dev-a/reboot"
    );
    commands.disconnect().await;

    // A cannot read B's commands, nor every command, nor telemetry.
    for filter in ["commands/dev-b/#", "commands/#", "devices/dev-b/#", "#"] {
        let refused = subscribes(&a, "dev-a", filter).await;
        assert!(refused.is_err(), "A subscribed to {filter}");
    }
    // A cannot publish as B (the broker closes the connection: no PUBACK) nor send commands.
    for topic in ["devices/dev-b/temperature", "commands/dev-b/reboot"] {
        let refused = mqtt_publish(&a, "dev-a", topic, b"spoof", Duration::from_secs(5)).await;
        assert!(refused.is_err(), "A published on {topic}");
    }
    // A cannot act under B's id: its client id is tied to its certificate, and a password
    // login as B (with the cert-login marker as password) is refused.
    assert!(subscribes(&a, "dev-b", "commands/dev-b/#").await.is_err());
    let as_b = Login {
        user: "dev-b".into(),
        password: Some(gwctl::spec::secret::Secret::new("none")),
        ..a.clone()
    };
    for client_id in ["dev-a", "dev-b"] {
        assert!(
            subscribes(&as_b, client_id, "commands/dev-b/#")
                .await
                .is_err()
        );
        let spoof = mqtt_publish(&as_b, client_id, "devices/dev-b/t", b"spoof", WAIT).await;
        assert!(spoof.is_err(), "A published as B (client id {client_id})");
    }
    assert!(
        telemetry.next(Duration::from_secs(2)).await.is_none(),
        "nothing A spoofed reached the gateway's exchange"
    );
    telemetry.close().await;

    // Nor can the holder of another kind of certificate the gateway accepts (the stack CA's
    // client certificates: operators, the backend's links): its client id is bound to its
    // name, which holds a dot and is never a device id.
    let operator = Login {
        user: "dev-b".into(),
        password: Some(gwctl::spec::secret::Secret::new("none")),
        ..admin.clone()
    };
    for client_id in ["dev-b", "gwctl.operator"] {
        let port = a.port;
        let as_device = Login {
            port,
            ..operator.clone()
        };
        assert!(
            mqtt_publish(&as_device, client_id, "devices/dev-b/t", b"spoof", WAIT)
                .await
                .is_err(),
            "a stack-CA certificate acted as dev-b (client id {client_id})"
        );
    }

    // B itself is fine.
    subscribes(&b, "dev-b", "commands/dev-b/#")
        .await
        .expect("B subscribes to its commands")
        .disconnect()
        .await;

    // A certificate of another CA, no certificate, and plaintext MQTT are refused.
    let (rogue_ca, _) = Authority::generate("rogue", SystemTime::now()).expect("ca");
    let rogue = rogue_ca
        .issue_device("dev-a", SystemTime::now())
        .expect("rogue cert");
    let forged = Login {
        identity: Some((rogue.cert_pem, rogue.key_pem)),
        ..a.clone()
    };
    assert!(
        subscribes(&forged, "dev-a", "commands/dev-a/#")
            .await
            .is_err()
    );
    let anonymous = Login {
        identity: None,
        ..a.clone()
    };
    assert!(
        subscribes(&anonymous, "dev-a", "commands/dev-a/#")
            .await
            .is_err()
    );
    assert!(
        plaintext_connack(&a.host, a.port).is_none(),
        "a plaintext MQTT CONNECT gets no CONNACK"
    );

    // A revoked device is refused although its certificate is valid.
    let lost = sandbox.device_login(GW, "dev-lost").expect("device");
    assert!(
        subscribes(&lost, "dev-lost", "commands/dev-lost/#")
            .await
            .is_err()
    );

    // The brokers' cache rides out a restart of the authorizer: a device seen before
    // reconnects while it is down (one never seen cannot), and all is well once it is back.
    sandbox.stop_authorizer(GW).await;
    subscribes(&a, "dev-a", "commands/dev-a/#")
        .await
        .expect("A reconnects on cached answers")
        .disconnect()
        .await;
    let c = sandbox.device_login(GW, "dev-c").expect("device c");
    assert!(subscribes(&c, "dev-c", "commands/dev-c/#").await.is_err());
    sandbox.start_authorizer(GW).await.expect("authorizer back");
    subscribes(&c, "dev-c", "commands/dev-c/#")
        .await
        .expect("C once the authorizer is back")
        .disconnect()
        .await;

    // A reconnection storm logs in as many devices at once as reconnect: the devices' listener
    // and the authorizer (one broker connection per concurrent login) both keep deep accept
    // queues, since a SYN dropped from a full one is retried only after a second.
    let node = sandbox.layout.node(GW).expect("gateway node");
    for (what, port) in [
        ("MQTT listener", node.ports.mqtt),
        ("device authorizer", node.authorizer),
    ] {
        let backlog = listen_backlog(port).unwrap_or_else(|| panic!("{what} listens on {port}"));
        assert!(backlog >= 4096, "{what}'s listen backlog is {backlog}");
    }

    // The probe of upgrade's gates does what a device does, verified against the region's
    // name wherever it connects: a round trip as a device of the fleet works; the wrong name,
    // another CA's certificate, a revoked id or a message that never comes fail, and say so.
    let regional = "us-east-1.mqtt.example.com";
    let target = |tls_name: &str| MqttTarget {
        host: a.host.clone(),
        port: a.port,
        tls_name: tls_name.into(),
    };
    let probe = |login: &Login, device: &str, tls_name: &str, send: bool| {
        let (cert, key) = login.identity.clone().expect("a device identity");
        let (login, device, target, admin) = (
            login.clone(),
            device.to_string(),
            target(tls_name),
            admin.clone(),
        );
        async move {
            let topic = format!("commands/{device}/gate");
            let key_for = topic.replace('/', ".");
            let identity = ProbeIdentity {
                device: &device,
                cert_pem: &cert,
                key_pem: &key,
            };
            let admin = &admin;
            mqtt_round_trip(
                &target,
                &login.ca_pem,
                &identity,
                &topic,
                b"nonce-1",
                async move {
                    if send {
                        amqp_publish(admin, "amq.topic", &key_for, b"nonce-1")
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    Ok(())
                },
                Duration::from_secs(5),
            )
            .await
        }
    };
    let probe_login = sandbox
        .device_login(GW, "gwctl-probe-us-east-1")
        .expect("probe");
    probe(&probe_login, "gwctl-probe-us-east-1", regional, true)
        .await
        .expect("the probe's round trip");
    let wrong_name = probe(
        &probe_login,
        "gwctl-probe-us-east-1",
        "eu-west-9.example.com",
        true,
    )
    .await
    .expect_err("a certificate for another name");
    assert!(
        wrong_name.contains("certificate") || wrong_name.contains("Certificate"),
        "{wrong_name}"
    );
    assert!(
        probe(&forged, "dev-a", regional, true).await.is_err(),
        "another CA's certificate"
    );
    assert!(
        probe(&lost, "dev-lost", regional, true).await.is_err(),
        "a revoked id"
    );
    let silent = probe(&probe_login, "gwctl-probe-us-east-1", regional, false)
        .await
        .expect_err("no message sent");
    assert!(silent.contains("no round trip"), "{silent}");

    // The federation links were never touched by any of this.
    sandbox.federate_backend().await.expect("federation");
    let links = sandbox
        .wait_links_running(Duration::from_secs(30))
        .await
        .expect("links");
    assert_eq!(links[BACKEND].len(), 2);
    sandbox.stop(Duration::from_secs(5)).await;
}

/// The accept queue length of the socket listening on `port` (`ss` shows it as Send-Q).
fn listen_backlog(port: u16) -> Option<u32> {
    let out = std::process::Command::new("ss")
        .args(["-ltnH", &format!("sport = :{port}")])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().nth(2)?.parse().ok()
}

/// Sends a plaintext MQTT 3.1.1 CONNECT to `port`; the CONNACK's bytes, if any came.
fn plaintext_connack(host: &str, port: u16) -> Option<Vec<u8>> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect((host, port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    // CONNECT, protocol "MQTT" level 4, clean session, keep-alive 30, client id "x".
    let connect = [
        0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 30, 0, 1, b'x',
    ];
    s.write_all(&connect).ok()?;
    let mut buf = [0u8; 4];
    match s.read(&mut buf) {
        Ok(n) if n >= 2 && buf[0] == 0x20 => Some(buf[..n].to_vec()),
        _ => None,
    }
}
