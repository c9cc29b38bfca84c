//! `gwctl render`: pinned output (insta snapshots), no secret in clear, files written whole.

use std::os::unix::fs::PermissionsExt;

use crate::support::{Regions, contains, read_tree};

fn render_to(r: &Regions, region: &str) -> tempfile::TempDir {
    let out = tempfile::tempdir().expect("tempdir");
    r.gwctl()
        .args(["render", region, "--out"])
        .arg(out.path())
        .assert()
        .success();
    out
}

#[test]
fn gateway_files_are_pinned() {
    let r = Regions::examples();
    let out = render_to(&r, "us-east-1");
    let dir = out.path().join("us-east-1");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("rendered dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "advanced.config",
            "broker-1.user-data.yaml",
            "broker-2.user-data.yaml",
            "broker-3.user-data.yaml",
            "definitions.json",
            "enabled_plugins",
            "rabbitmq.conf"
        ]
    );
    for name in [
        "rabbitmq.conf",
        "advanced.config",
        "enabled_plugins",
        "definitions.json",
        "broker-1.user-data.yaml",
    ] {
        let text = without_certificates(&std::fs::read_to_string(dir.join(name)).expect("read"));
        insta::assert_snapshot!(format!("us-east-1__{name}"), text);
    }
}

/// The text with every PEM certificate replaced by a marker: the test CAs are new each run.
fn without_certificates(text: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("-----BEGIN CERTIFICATE-----") {
            inside = true;
            out.push_str(&line.replace("-----BEGIN CERTIFICATE-----", "(a certificate)"));
            out.push('\n');
        } else if t.starts_with("-----END CERTIFICATE-----") {
            inside = false;
        } else if !inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[test]
fn backend_files_are_pinned() {
    let r = Regions::examples();
    let out = render_to(&r, "backend");
    for name in ["rabbitmq.conf", "enabled_plugins", "definitions.json"] {
        let text = std::fs::read_to_string(out.path().join("backend").join(name)).expect("read");
        insta::assert_snapshot!(format!("backend__{name}"), text);
    }
}

#[test]
fn tuning_profiles_differ_where_they_should() {
    let r = Regions::examples();
    let out = render_to(&r, "ap-northeast-1");
    let gw =
        std::fs::read_to_string(out.path().join("ap-northeast-1/rabbitmq.conf")).expect("read");
    let out = render_to(&r, "backend");
    let be = std::fs::read_to_string(out.path().join("backend/rabbitmq.conf")).expect("read");
    assert!(
        gw.contains("tcp_listen_options.sndbuf = 16384")
            && gw.contains("tcp_listen_options.backlog = 4096")
    );
    assert!(be.contains("tcp_listen_options.sndbuf = 196608"));
    assert!(
        gw.contains("cluster_name = gw-ap-northeast-1") && be.contains("cluster_name = backend")
    );
    assert!(gw.contains("cluster_formation.peer_discovery_backend = aws"));
    assert!(gw.contains("cluster_formation.aws.instance_tags.gwctl-cluster = gw-ap-northeast-1"));
}

#[test]
fn no_secret_is_rendered_in_clear() {
    let r = Regions::examples();
    assert!(r.secrets.len() >= 8, "the fixture injects every secret");
    for region in ["us-east-1", "ap-northeast-1", "backend"] {
        let out = render_to(&r, region);
        let stdout = r.gwctl().args(["render", region]).output().expect("run");
        let mut texts = read_tree(out.path());
        texts.push(("stdout".into(), stdout.stdout));
        texts.push(("stderr".into(), stdout.stderr));
        assert!(texts.len() > 3);
        for (path, bytes) in &texts {
            for (var, value) in &r.secrets {
                assert!(
                    !contains(bytes, value),
                    "{var} appears in clear in {}",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn user_data_fetches_secrets_at_boot_and_requires_no_clear_values() {
    let r = Regions::examples();
    let out = render_to(&r, "us-east-1");
    let ud = std::fs::read_to_string(out.path().join("us-east-1/broker-2.user-data.yaml"))
        .expect("read");
    assert!(ud.starts_with("#cloud-config\n"));
    assert!(ud.contains("Broker 2 of 3 in gw-us-east-1"));
    // The data volume is required: no `nofail`, and RabbitMQ needs it mounted.
    assert!(
        ud.contains(
            "[ \"/dev/sdf\", /var/lib/rabbitmq, ext4, \"defaults,noatime\", \"0\", \"2\" ]"
        )
    );
    assert!(!ud.contains(",nofail"));
    assert!(ud.contains("RequiresMountsFor=/var/lib/rabbitmq"));
    assert!(ud.contains("--prefix, \"/gwctl/mqtt-example/us-east-1\""));
    assert!(
        ud.contains("aws\", \"ssm\", \"get-parameter\""),
        "the boot script reads SSM"
    );
    assert!(
        ud.contains("@@gwctl:federation_password:uri@@"),
        "definitions carry placeholders"
    );
    let mode = std::fs::metadata(out.path().join("us-east-1/definitions.json"))
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o644,
        "rendered files hold no secret and are world-readable"
    );
}

/// The boot script in the user-data fills placeholders as gwctl does for local runs: same
/// document, URIs percent-encoded, password hashes RabbitMQ can verify. `aws` is replaced by a
/// script answering `ssm get-parameter` from the fixture's secrets (there is no SSM here).
#[test]
fn boot_script_fills_placeholders_like_gwctl() {
    use base64::Engine;
    use sha2::{Digest, Sha256};

    let r = Regions::examples();
    let out = render_to(&r, "us-east-1");
    let dir = out.path().join("us-east-1");
    let script = dir.join("gwctl-materialize");
    std::fs::write(&script, include_str!("../templates/common/materialize.py"))
        .expect("write script");
    let bin = out.path().join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    let answers: Vec<String> = [
        ("admin_password", "GWCTL_US_EAST_1_ADMIN_PASSWORD"),
        ("federation_password", "GWCTL_FEDERATION_PASSWORD"),
        ("erlang_cookie", "GWCTL_US_EAST_1_ERLANG_COOKIE"),
    ]
    .iter()
    .map(|(name, var)| {
        format!(
            "  */{name}) printf '%s\\n' '{}' ;;",
            r.secrets[*var].replace('\'', "'\\''")
        )
    })
    .collect();
    // The node's certificate and key, as gwctl stores them (one SecureString).
    let (ca, _) =
        gwctl::pki::Authority::generate("test", std::time::SystemTime::now()).expect("ca");
    let issued = ca
        .issue_server(
            &["us-east-1.mqtt.example.com".into()],
            std::time::SystemTime::now(),
        )
        .expect("issue");
    let stored = format!("{}{}", issued.cert_pem, issued.key_pem.expose());
    let mut answers = answers;
    answers.push(format!("  */tls/broker-1) printf '%s\\n' '{stored}' ;;"));
    answers.push(
        "  */devices/revoked) echo 'An error occurred (ParameterNotFound)' >&2; exit 254 ;;".into(),
    );
    let fake_aws = format!(
        "#!/bin/sh\n# answers `aws ssm get-parameter ... --name NAME ...`\nwhile [ $# -gt 0 ]; do [ \"$1\" = --name ] && name=$2; shift; done\ncase $name in\n{}\n  *) exit 254 ;;\nesac\n",
        answers.join("\n")
    );
    let tls = out.path().join("tls");
    let revoked = out.path().join("revoked-devices");
    std::fs::write(bin.join("aws"), fake_aws).expect("write aws");
    std::fs::set_permissions(bin.join("aws"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    let me = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let filled = out.path().join("filled.json");
    let cookie = out.path().join("cookie");
    // Debian's python3, as on a broker (a pyenv shim would put its own `aws` first on PATH).
    let status = std::process::Command::new("/usr/bin/python3")
        .arg(&script)
        .args([
            "--region",
            "us-east-1",
            "--prefix",
            "/gwctl/mqtt-example/us-east-1",
            "--owner",
            &me,
        ])
        .arg("--template")
        .arg(dir.join("definitions.json"))
        .arg("--definitions")
        .arg(&filled)
        .arg("--cookie")
        .arg(&cookie)
        .args(["--certificate", "tls/broker-1", "--tls-dir"])
        .arg(&tls)
        .arg("--revoked")
        .arg(&revoked)
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .status()
        .expect("python3 runs");
    assert!(status.success());
    assert_eq!(
        std::fs::metadata(&filled)
            .expect("stat")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(&cookie)
            .expect("stat")
            .permissions()
            .mode()
            & 0o777,
        0o400
    );
    assert_eq!(
        std::fs::read_to_string(&cookie).expect("cookie"),
        r.secrets["GWCTL_US_EAST_1_ERLANG_COOKIE"]
    );
    // The certificate (0644) and its key (0600) apart; no device revoked yet: an empty list.
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(
        std::fs::read_to_string(tls.join("server.pem")).expect("cert"),
        issued.cert_pem
    );
    assert_eq!(mode(&tls.join("server.pem")), 0o644);
    assert_eq!(
        std::fs::read_to_string(tls.join("server.key"))
            .expect("key")
            .trim_end(),
        issued.key_pem.expose().trim_end()
    );
    assert_eq!(mode(&tls.join("server.key")), 0o600);
    assert_eq!(std::fs::read_to_string(&revoked).expect("revoked"), "");

    let defs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&filled).expect("read")).expect("json");
    let fed = &r.secrets["GWCTL_FEDERATION_PASSWORD"];
    let encoded = gwctl::model::federation::encode_component(fed);
    assert_eq!(
        defs["parameters"][0]["value"]["uri"][0],
        format!(
            "amqps://gwctl.federation:{encoded}@10.0.1.10:5671?heartbeat=30&connection_timeout=10000\
             &verify=verify_peer&cacertfile=%2Fetc%2Frabbitmq%2Ftls%2Fbackend-ca.pem"
        )
    );
    let verify = |hash: &str, password: &str| {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(hash)
            .expect("base64");
        let (salt, digest) = bytes.split_at(4);
        let mut h = Sha256::new();
        h.update(salt);
        h.update(password.as_bytes());
        h.finalize().as_slice() == digest
    };
    let users = defs["users"].as_array().expect("users");
    let by_name = |n: &str| {
        users
            .iter()
            .find(|u| u["name"] == n)
            .and_then(|u| u["password_hash"].as_str())
            .expect("user")
    };
    assert!(verify(
        by_name("gwctl.admin"),
        &r.secrets["GWCTL_US_EAST_1_ADMIN_PASSWORD"]
    ));
    assert!(verify(by_name("gwctl.federation"), fed));
    assert!(!verify(by_name("gwctl.federation"), "wrong"));
    assert_eq!(
        users.len(),
        2,
        "no device users: devices log in with certificates"
    );
}

/// Asks the responder once; `None` until it listens.
fn ask(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn http_health_checks_get_a_responder_that_reports_the_node() {
    // The region file asks for HTTP checks: each broker's user-data installs the responder.
    let r = Regions::examples();
    r.edit("us-east-1.yaml", "  protocol: tcp", "  protocol: http");
    let out = render_to(&r, "us-east-1");
    let user_data = std::fs::read_to_string(out.path().join("us-east-1/broker-1.user-data.yaml"))
        .expect("user-data");
    assert!(user_data.contains("/etc/systemd/system/gwctl-health.service"));
    assert!(
        user_data.contains("--listen 8080 --path /health --check-port 8883 --check-port 5671"),
        "{user_data}"
    );
    assert!(user_data.contains("systemctl, enable, --now, gwctl-health"));
    // TCP checks (the examples) need none.
    let tcp = render_to(&Regions::examples(), "us-east-1");
    let plain = std::fs::read_to_string(tcp.path().join("us-east-1/broker-1.user-data.yaml"))
        .expect("user-data");
    assert!(!plain.contains("gwctl-health"));

    // The responder itself: 200 while the node's ports accept connections, 503 once one does not.
    let mqtt = std::net::TcpListener::bind("127.0.0.1:0").expect("mqtt stand-in");
    let amqp = std::net::TcpListener::bind("127.0.0.1:0").expect("amqp stand-in");
    let port = |l: &std::net::TcpListener| l.local_addr().expect("addr").port().to_string();
    let (mqtt_port, amqp_port) = (port(&mqtt), port(&amqp));
    let listen = gwctl::sandbox::node::free_ports(1).expect("port")[0];
    let script = out.path().join("health-responder");
    std::fs::write(
        &script,
        include_str!("../templates/gateway/health-responder.py"),
    )
    .expect("write");
    let mut child = std::process::Command::new("/usr/bin/python3")
        .arg(&script)
        .args(["--listen", &listen.to_string(), "--path", "/health"])
        .args(["--check-port", &mqtt_port, "--check-port", &amqp_port])
        .spawn()
        .expect("responder");
    let start = std::time::Instant::now();
    let first = loop {
        if let Some(answer) = ask(listen, "/health") {
            break answer;
        }
        assert!(
            start.elapsed().as_secs() < 20,
            "the responder did not listen"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(first.starts_with("HTTP/1.0 200"), "{first}");
    assert!(ask(listen, "/other").expect("answer").contains(" 404 "));
    drop(mqtt);
    std::thread::sleep(std::time::Duration::from_millis(1100)); // past the cached probe
    let down = ask(listen, "/health").expect("answer");
    assert!(down.starts_with("HTTP/1.0 503"), "{down}");
    assert!(down.contains(&format!("port {mqtt_port}")), "{down}");
    let _ = child.kill();
    let _ = child.wait();
}

/// The responder stays bounded whoever reaches it: connections beyond the limit are closed at
/// once, an idle connection is dropped after the timeout, and it still answers afterwards.
#[test]
fn the_health_responder_drops_idle_and_excess_connections() {
    use std::io::Read;
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("health-responder");
    std::fs::write(
        &script,
        include_str!("../templates/gateway/health-responder.py"),
    )
    .expect("write");
    let node = std::net::TcpListener::bind("127.0.0.1:0").expect("node stand-in");
    let node_port = node.local_addr().expect("addr").port().to_string();
    let start = |timeout: &str, max: &str| {
        let listen = gwctl::sandbox::node::free_ports(1).expect("port")[0];
        let child = std::process::Command::new("/usr/bin/python3")
            .arg(&script)
            .args(["--listen", &listen.to_string(), "--check-port", &node_port])
            .args(["--timeout", timeout, "--max-connections", max])
            .spawn()
            .expect("responder");
        let since = std::time::Instant::now();
        while ask(listen, "/health").is_none() {
            assert!(
                since.elapsed().as_secs() < 20,
                "the responder did not listen"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        // The probe's slot is given back by its thread just after the answer's EOF; on a
        // loaded machine that can come after the next connections, which would then find
        // the probe still counted against the limit.
        std::thread::sleep(std::time::Duration::from_secs(1));
        (listen, child)
    };
    let connect = |port: u16| {
        let s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .expect("timeout");
        s
    };
    // Idle connections time out after 30 s here: an EOF before the 10 s read timeout can only
    // be the limit at work (a read timeout would be an error, not an EOF).
    let (limited, mut one) = start("30", "2");
    let (_a, _b) = (connect(limited), connect(limited));
    std::thread::sleep(std::time::Duration::from_secs(2)); // both taken into their slots
    let mut buf = Vec::new();
    let third = connect(limited).read_to_end(&mut buf);
    assert!(
        matches!(third, Ok(0)),
        "a connection over the limit is closed at once: {third:?}"
    );
    let _ = one.kill();
    let _ = one.wait();

    // Without the limit in the way, an idle connection is dropped after the 1 s timeout (EOF
    // before the 10 s read timeout), and a request is answered afterwards.
    let (idle, mut two) = start("1", "64");
    let dropped = connect(idle).read_to_end(&mut buf);
    assert!(
        matches!(dropped, Ok(0)),
        "an idle connection is dropped: {dropped:?}"
    );
    let ok = ask(idle, "/health").expect("answer");
    assert!(ok.starts_with("HTTP/1.0 200"), "{ok}");
    let _ = two.kill();
    let _ = two.wait();
}

/// With the router, a gateway federates only its region's exchange from the backend (the
/// broadcast exchange is bound into it there), runs the event exchange, and lets the backend's links read
/// its events; the backend's router user may use its own exchanges and queues only.
#[test]
fn router_mode_federates_the_region_and_broadcast_exchanges_only() {
    let r = Regions::examples();
    r.edit("backend.yaml", "mode: broadcast", "mode: router");
    let out = render_to(&r, "us-east-1");
    let read = |f: &str| std::fs::read_to_string(out.path().join(f)).expect(f);
    let defs: serde_json::Value =
        serde_json::from_str(&read("us-east-1/definitions.json")).expect("json");
    let upstreams: Vec<(&str, &str)> = defs["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter(|p| p["component"] == "federation-upstream")
        .map(|p| {
            (
                p["name"].as_str().expect("name"),
                p["value"]["exchange"].as_str().expect("exchange"),
            )
        })
        .collect();
    // One link, from the region's exchange (the backend binds `gw.all` into it).
    assert_eq!(upstreams, [("backend.amq.topic", "gw.us-east-1")]);
    let policy = defs["policies"]
        .as_array()
        .expect("policies")
        .iter()
        .find(|p| p["name"] == "federate-from-backend.amq.topic")
        .expect("policy");
    assert_eq!(
        policy["definition"],
        serde_json::json!({"federation-upstream": "backend.amq.topic"})
    );
    assert!(read("us-east-1/enabled_plugins").contains(",rabbitmq_event_exchange]"));
    let fed_read = defs["permissions"]
        .as_array()
        .expect("permissions")
        .iter()
        .find(|p| p["user"] == "gwctl.federation")
        .expect("federation permission")["read"]
        .clone();
    assert_eq!(
        fed_read,
        "^(federation: .*|amq\\.rabbitmq\\.event|amq\\.topic)$"
    );

    // The backend's files run the router under systemd, its environment named, not filled.
    let backend = render_to(&r, "backend");
    let read_backend =
        |f: &str| std::fs::read_to_string(backend.path().join("backend").join(f)).expect(f);
    let unit = read_backend("gwctl-router.service");
    assert!(unit.contains("ExecStart=/usr/local/bin/gwctl --regions /etc/gwctl/regions router run --id %H --listen 127.0.0.1:9469"), "{unit}");
    assert!(
        unit.contains("Restart=always") && unit.contains("EnvironmentFile=/etc/gwctl/router.env")
    );
    let env = read_backend("gwctl-router.env");
    assert!(
        env.contains("\nGWCTL_ROUTER_PASSWORD=\n")
            || env.contains("file:")
            || env.contains("GWCTL_ROUTER_PASSWORD"),
        "{env}"
    );
    for secret in r.secrets.values() {
        assert!(!env.contains(secret.as_str()) && !unit.contains(secret.as_str()));
    }

    // Broadcast (the examples): the event exchange stays off, amq.topic is federated directly.
    let plain = render_to(&Regions::examples(), "us-east-1");
    let plugins =
        std::fs::read_to_string(plain.path().join("us-east-1/enabled_plugins")).expect("plugins");
    assert!(!plugins.contains("event_exchange"));
}
