//! `gwctl validate`: the examples pass; broken files fail with exit 2, `file:line:column`, the
//! field path, and nothing written.

use crate::support::Regions;

/// Runs `gwctl validate` and returns (exit code, stderr).
fn validate(r: &Regions, args: &[&str]) -> (i32, String) {
    let out = r
        .gwctl()
        .arg("validate")
        .args(args)
        .output()
        .expect("run gwctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts exit 2 and that stderr holds `<file>:<line>:<col>: <field>: <message start>`.
#[track_caller]
fn assert_invalid(r: &Regions, file: &str, at: &str, field: &str, message: &str) {
    let (code, stderr) = validate(r, &["--all"]);
    assert_eq!(code, 2, "stderr:\n{stderr}");
    let location = format!("{}:{at}", r.file(file).display());
    let expected = if field.is_empty() {
        format!("{location}: {message}")
    } else {
        format!("{location}: {field}: {message}")
    };
    assert!(
        stderr.contains(&expected),
        "expected `{expected}` in:\n{stderr}"
    );
    // And rendering the broken file's region writes nothing.
    let out_dir = tempfile::tempdir().expect("tempdir");
    let target = out_dir.path().join("out");
    let region = file.trim_end_matches(".yaml");
    r.gwctl()
        .args(["render", region, "--out"])
        .arg(&target)
        .assert()
        .code(2);
    assert!(!target.exists(), "render wrote files for invalid input");
}

#[test]
fn examples_are_valid() {
    let r = Regions::examples();
    let (code, stderr) = validate(&r, &["--all"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("3 region files valid"), "{stderr}");
}

#[test]
fn unknown_key_suggests_the_nearest() {
    let r = Regions::examples();
    r.edit("us-east-1.yaml", "  count: 3", "  cout: 3");
    assert_invalid(
        &r,
        "us-east-1.yaml",
        "11:3",
        "brokers.cout",
        "unknown key `cout` (did you mean `count`?)",
    );
    r.edit("us-east-1.yaml", "  ami:", "  amy:");
    let (_, stderr) = validate(&r, &["us-east-1"]);
    assert!(
        stderr.contains("10:1: brokers: missing required key `ami`"),
        "{stderr}"
    );
}

#[test]
fn an_even_broker_count_is_refused_with_the_reason() {
    let r = Regions::examples();
    r.edit("us-east-1.yaml", "  count: 3", "  count: 4");
    assert_invalid(
        &r,
        "us-east-1.yaml",
        "11:10",
        "brokers.count",
        "4 brokers: an even count survives no more node losses than 3 (a majority of 4 is 3); \
         use 3 or 5",
    );
    // One broker is allowed (a test region), and the default is three.
    r.edit("us-east-1.yaml", "  count: 4\n", "");
    let (code, stderr) = validate(&r, &["us-east-1"]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn the_broker_package_is_a_series_gwctl_renders_on_its_own_debian() {
    let r = Regions::examples();
    let pin =
        |version: &str| format!("  instance_type: c6i.large\n  rabbitmq_package: {version}\n");
    r.edit(
        "us-east-1.yaml",
        "  instance_type: c6i.large\n",
        &pin("3.13.7-1"),
    );
    assert_invalid(
        &r,
        "us-east-1.yaml",
        "13:21",
        "brokers.rabbitmq_package",
        "3.13.7-1: gwctl renders RabbitMQ 4.0 (Debian 13",
    );
    // Debian 12's 3.10 is accepted on Debian 12's images only (to move a region off it).
    r.edit("us-east-1.yaml", "3.13.7-1", "3.10.8-1.1+deb12u1");
    assert_invalid(
        &r,
        "us-east-1.yaml",
        "16:11",
        "brokers.ami.name",
        "debian-13-amd64-*: RabbitMQ 3.10 (3.10.8-1.1+deb12u1) is a package of Debian 12",
    );
    r.edit("us-east-1.yaml", "debian-13-amd64-*", "debian-12-amd64-*");
    let (code, stderr) = validate(&r, &["us-east-1"]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn wrong_type() {
    let r = Regions::examples();
    r.edit("us-east-1.yaml", "  count: 3", "  count: two");
    assert_invalid(
        &r,
        "us-east-1.yaml",
        "11:10",
        "brokers.count",
        "must be an integer, not the string \"two\"",
    );
}

#[test]
fn range_violation() {
    let r = Regions::examples();
    r.edit("us-east-1.yaml", "  count: 3", "  count: 0");
    assert_invalid(
        &r,
        "us-east-1.yaml",
        "11:10",
        "brokers.count",
        "must be at least 1",
    );
}

#[test]
fn bad_cidr() {
    let r = Regions::examples();
    r.edit(
        "us-east-1.yaml",
        "cidr: 10.10.2.0/24",
        "cidr: 10.10.256.0/24",
    );
    assert_invalid(
        &r,
        "us-east-1.yaml",
        "9:13",
        "network.subnets[1].cidr",
        "the string \"10.10.256.0/24\" is not an IPv4 CIDR",
    );
}

#[test]
fn subnet_outside_its_vpc_and_host_bits() {
    let r = Regions::examples();
    r.edit("us-east-1.yaml", "cidr: 10.10.2.0/24", "cidr: 10.11.2.0/24");
    assert_invalid(
        &r,
        "us-east-1.yaml",
        "9:13",
        "network.subnets[1].cidr",
        "10.11.2.0/24 lies outside the VPC 10.10.0.0/16",
    );
    r.edit("us-east-1.yaml", "cidr: 10.11.2.0/24", "cidr: 10.10.2.7/24");
    assert_invalid(
        &r,
        "us-east-1.yaml",
        "9:13",
        "network.subnets[1].cidr",
        "10.10.2.7/24 has host bits set; did you mean 10.10.2.0/24?",
    );
}

#[test]
fn overlapping_vpcs_between_gateways_and_with_the_backend() {
    let r = Regions::examples();
    r.edit(
        "us-east-1.yaml",
        "vpc_cidr: 10.10.0.0/16",
        "vpc_cidr: 10.20.128.0/17",
    );
    r.edit(
        "us-east-1.yaml",
        "cidr: 10.10.1.0/24",
        "cidr: 10.20.129.0/24",
    );
    r.edit(
        "us-east-1.yaml",
        "cidr: 10.10.2.0/24",
        "cidr: 10.20.130.0/24",
    );
    assert_invalid(
        &r,
        "us-east-1.yaml",
        "4:13",
        "network.vpc_cidr",
        "10.20.128.0/17 overlaps the VPC 10.20.0.0/16 of ap-northeast-1",
    );
    let r = Regions::examples();
    r.edit(
        "ap-northeast-1.yaml",
        "vpc_cidr: 10.20.0.0/16",
        "vpc_cidr: 10.0.0.0/16",
    );
    r.edit(
        "ap-northeast-1.yaml",
        "cidr: 10.20.1.0/24",
        "cidr: 10.0.1.0/24",
    );
    r.edit(
        "ap-northeast-1.yaml",
        "cidr: 10.20.2.0/24",
        "cidr: 10.0.2.0/24",
    );
    assert_invalid(
        &r,
        "ap-northeast-1.yaml",
        "4:13",
        "network.vpc_cidr",
        "10.0.0.0/16 overlaps the backend network 10.0.0.0/16",
    );
}

#[test]
fn duplicate_cluster_names_and_unknown_regions() {
    let r = Regions::examples();
    r.edit(
        "us-east-1.yaml",
        "region: us-east-1\n",
        "region: us-east-1\ncluster_name: backend\n",
    );
    assert_invalid(
        &r,
        "us-east-1.yaml",
        "3:15",
        "cluster_name",
        "`backend` is already the backend's cluster_name",
    );
    let r = Regions::examples();
    r.edit("backend.yaml", "region: eu-west-1", "region: eu-wset-1");
    assert_invalid(
        &r,
        "backend.yaml",
        "4:9",
        "region",
        "`eu-wset-1` is not an AWS region (did you mean `eu-west-1`?)",
    );
}

#[test]
fn port_collision() {
    let r = Regions::examples();
    r.edit(
        "us-east-1.yaml",
        "  instance_type: c6i.large\n",
        "  instance_type: c6i.large\n  ports:\n    web_mqtt: 8883\n",
    );
    assert_invalid(
        &r,
        "us-east-1.yaml",
        "14:15",
        "brokers.ports.web_mqtt",
        "port 8883 is already used by mqtt",
    );
}

#[test]
fn missing_region_file() {
    let r = Regions::examples();
    let (code, stderr) = validate(&r, &["sa-east-1"]);
    assert_eq!(code, 2);
    let expected = format!(
        "{}: no region file for `sa-east-1`",
        r.file("sa-east-1.yaml").display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    std::fs::remove_file(r.file("backend.yaml")).expect("rm");
    let (code, stderr) = validate(&r, &["--all"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("backend.yaml: missing"), "{stderr}");
}

#[test]
fn yaml_syntax_error() {
    let r = Regions::examples();
    r.edit("us-east-1.yaml", "  count: 3", "  count: [2");
    assert_invalid(
        &r,
        "us-east-1.yaml",
        "12:16",
        "",
        "YAML syntax error: illegal placement of ':' indicator",
    );
}

#[test]
fn empty_file() {
    let r = Regions::examples();
    r.write("us-east-1.yaml", "# nothing yet\n");
    let (code, stderr) = validate(&r, &["us-east-1"]);
    assert_eq!(code, 2);
    let expected = format!("{}:", r.file("us-east-1.yaml").display());
    assert!(
        stderr.contains(&expected) && stderr.contains("the file is empty"),
        "{stderr}"
    );
}

#[test]
fn duplicate_key() {
    let r = Regions::examples();
    r.edit("us-east-1.yaml", "  count: 3\n", "  count: 3\n  count: 5\n");
    assert_invalid(
        &r,
        "us-east-1.yaml",
        "12:3",
        "brokers.count",
        "duplicate key `count` (first set at line 11)",
    );
}

#[test]
fn every_error_of_a_file_is_reported_at_once() {
    let r = Regions::examples();
    r.edit("us-east-1.yaml", "  count: 3", "  count: 0");
    r.edit("us-east-1.yaml", "type: gp3", "type: gp4");
    r.edit(
        "us-east-1.yaml",
        "interval_s: 10",
        "interval_s: 10\n  colour: red",
    );
    let (code, stderr) = validate(&r, &["us-east-1"]);
    assert_eq!(code, 2);
    for needle in [
        "brokers.count: must be at least 1",
        "brokers.root_volume.type: must be one of: gp3, io2 (did you mean `gp3`?)",
        "health_check.colour: unknown key `colour`",
    ] {
        assert!(stderr.contains(needle), "{needle} not in:\n{stderr}");
    }
    assert!(
        stderr.contains("3 problems in region files; nothing was changed"),
        "{stderr}"
    );
}

#[test]
fn secret_sources_must_exist_and_values_are_never_echoed() {
    let r = Regions::examples();
    r.edit(
        "us-east-1.yaml",
        "file:secrets/GWCTL_US_EAST_1_ADMIN_PASSWORD",
        "env:GWCTL_TEST_UNSET_VARIABLE",
    );
    assert_invalid(
        &r,
        "us-east-1.yaml",
        "40:15",
        "credentials.admin.password",
        "secret source `env:GWCTL_TEST_UNSET_VARIABLE`: the environment variable is not set",
    );
    // A secret written into the file by mistake is refused without being repeated.
    let r = Regions::examples();
    r.edit(
        "us-east-1.yaml",
        "file:secrets/GWCTL_US_EAST_1_ADMIN_PASSWORD",
        "correct-horse-battery",
    );
    let (code, stderr) = validate(&r, &["us-east-1"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("credentials.admin.password: the value given (not shown"),
        "{stderr}"
    );
    assert!(!stderr.contains("correct-horse-battery"), "{stderr}");
}

#[test]
fn env_sources_are_read_from_the_environment() {
    let r = Regions::examples();
    r.edit(
        "us-east-1.yaml",
        "file:secrets/GWCTL_US_EAST_1_ADMIN_PASSWORD",
        "env:GWCTL_TEST_ADMIN_PASSWORD",
    );
    r.gwctl()
        .env("GWCTL_TEST_ADMIN_PASSWORD", "from-env")
        .args(["validate", "us-east-1"])
        .assert()
        .success();
}

#[test]
fn show_effective_prints_defaults() {
    let r = Regions::examples();
    let out = r
        .gwctl()
        .args(["validate", "--show-effective", "ap-northeast-1"])
        .output()
        .expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "cluster_name: gw-ap-northeast-1",
        "instance_type: c6i.large",
        "tuning: connections",
        "ack_mode: on-confirm",
        "static_routes:\n  - 10.0.0.0/16",
        "port: 8883",
    ] {
        assert!(text.contains(needle), "{needle} not in:\n{text}");
    }
}

#[test]
fn regions_dir_comes_from_the_environment_too() {
    let r = Regions::examples();
    let mut cmd = assert_cmd::Command::cargo_bin("gwctl").expect("binary");
    cmd.env("GWCTL_REGIONS", r.dir())
        .args(["validate", "--all"])
        .assert()
        .success();
    let mut cmd = assert_cmd::Command::cargo_bin("gwctl").expect("binary");
    cmd.env("GWCTL_REGIONS", "/nonexistent/regions")
        .args(["validate"])
        .assert()
        .code(2);
}

#[test]
fn health_check_regions_must_be_route53_checker_regions() {
    let r = Regions::examples();
    r.edit(
        "us-east-1.yaml",
        "interval_s: 10",
        "interval_s: 10\n  regions: [us-east-1, eu-west-1, mars-1]",
    );
    let (code, stderr) = validate(&r, &["us-east-1"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("us-east-1.yaml:36:")
            && stderr
                .contains("health_check.regions[2]: Route53 has no health checkers in `mars-1`"),
        "{stderr}"
    );
    r.edit(
        "us-east-1.yaml",
        "[us-east-1, eu-west-1, mars-1]",
        "[us-east-1, eu-west-1]",
    );
    let (code, stderr) = validate(&r, &["us-east-1"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("health_check.regions: Route53 needs at least 3 checker regions"),
        "{stderr}"
    );
    r.edit(
        "us-east-1.yaml",
        "[us-east-1, eu-west-1]",
        "[us-east-1, eu-west-1, sa-east-1]",
    );
    assert_eq!(validate(&r, &["us-east-1"]).0, 0);
}

/// Certificates are checked before anything uses them: each problem is reported at its field
/// (exit 2), and `up` makes no call.
#[test]
fn certificate_problems_are_bad_input() {
    use std::time::{Duration, SystemTime};
    let secret = |r: &Regions, var: &str, value: &str| {
        std::fs::write(r.dir().join("secrets").join(var), value).expect("write secret");
    };
    let line_of = |r: &Regions, needle: &str| {
        let text = std::fs::read_to_string(r.file("backend.yaml")).expect("read");
        text.lines()
            .position(|l| l.contains(needle))
            .map(|i| i + 1)
            .expect("line")
    };
    let now = SystemTime::now();
    let cases: Vec<(&str, String, &str, &str)> = {
        let (other, other_key) = gwctl::pki::Authority::generate("other", now).expect("ca");
        let (old, _) =
            gwctl::pki::Authority::generate("old", now - Duration::from_secs(3651 * 86_400))
                .expect("ca");
        let leaf = other
            .issue_server(&["x.example.com".into()], now)
            .expect("leaf");
        vec![
            (
                "GWCTL_STACK_CA_KEY",
                other_key.expose().to_string(),
                "tls.stack_ca.key",
                "the private key does not belong to the certificate",
            ),
            (
                "GWCTL_BACKEND_CA_CERT",
                old.cert_pem().to_string(),
                "tls.backend_ca",
                "expired on",
            ),
            (
                "GWCTL_DEVICE_CA_CERT",
                leaf.cert_pem,
                "tls.device_ca.cert",
                "not a CA certificate",
            ),
            (
                "GWCTL_STACK_CA_CERT",
                "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n".into(),
                "tls.stack_ca.cert",
                "not a PEM certificate",
            ),
        ]
    };
    for (var, value, field, message) in cases {
        let r = Regions::examples();
        secret(&r, var, &value);
        let (code, stderr) = validate(&r, &["--all"]);
        assert_eq!(code, 2, "{var}: {stderr}");
        let needle = format!("file:secrets/{var}");
        let line = line_of(&r, &needle);
        let expected = format!("{}:{line}:", r.file("backend.yaml").display());
        assert!(
            stderr.contains(&expected)
                && stderr.contains(&format!("{field}: "))
                && stderr.contains(message),
            "{var}: expected {expected} {field}: …{message}… in:\n{stderr}"
        );
        assert!(!stderr.contains("PRIVATE KEY"), "{stderr}");
    }
    // A broker user that could be a device id (a device certificate would log in as it).
    let r = Regions::examples();
    r.edit("us-east-1.yaml", "user: gwctl.admin", "user: admin");
    let (code, stderr) = validate(&r, &["--all"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("credentials.admin.user: `admin` could be a device id"),
        "{stderr}"
    );
    let r = Regions::examples();
    r.edit("backend.yaml", "user: gwctl.federation", "user: federation");
    let (code, stderr) = validate(&r, &["--all"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("credentials.federation.user: `federation` could be a device id"),
        "{stderr}"
    );
    // A missing source, and a device topic layout that cannot bind a device.
    let r = Regions::examples();
    r.edit(
        "backend.yaml",
        "file:secrets/GWCTL_STACK_CA_CERT",
        "env:GWCTL_TEST_UNSET_CA",
    );
    let (code, stderr) = validate(&r, &["--all"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("tls.stack_ca.cert: secret source `env:GWCTL_TEST_UNSET_CA`"),
        "{stderr}"
    );
    let r = Regions::examples();
    r.edit(
        "backend.yaml",
        "telemetry: devices/{device}/#",
        "telemetry: devices/#",
    );
    let (code, stderr) = validate(&r, &["--all"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains(
            "devices.telemetry: `devices/#` must contain the level `{device}` exactly once"
        ),
        "{stderr}"
    );
}

#[test]
fn weak_or_malformed_tunnel_options_are_refused_with_their_place() {
    let r = Regions::examples();
    let key = r.dir().join("secrets/BAD_PSK");
    std::fs::write(&key, "0short\n").expect("key");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    r.edit(
        "us-east-1.yaml",
        "federation:",
        "vpn:\n  tunnels:\n    ike_versions: [ikev1]\n    integrity: [SHA1]\n    \
         dh_groups: [2, 14]\n    inside_cidrs: [169.254.1.0/30, 10.0.0.0/30]\n    \
         pre_shared_keys: [file:secrets/BAD_PSK, env:GWCTL_UNSET_PSK]\nfederation:",
    );
    let (code, stderr) = validate(&r, &["us-east-1"]);
    assert_eq!(code, 2, "{stderr}");
    for expected in [
        "vpn.tunnels.ike_versions[0]: `ikev1` is broken; use ikev2",
        "vpn.tunnels.integrity[0]: `SHA1` is broken; use SHA2-256, SHA2-384, SHA2-512",
        "vpn.tunnels.dh_groups[0]: DH group 2 is too weak or unknown; use groups 14 to 24",
        "vpn.tunnels.inside_cidrs[0]: 169.254.1.0/30 is reserved by AWS",
        "vpn.tunnels.inside_cidrs[1]: a tunnel's inside CIDR is a /30 of 169.254.0.0/16",
        "vpn.tunnels.pre_shared_keys[0]: a pre-shared key has 8 to 64 letters",
        "vpn.tunnels.pre_shared_keys[1]: secret source `env:GWCTL_UNSET_PSK`",
    ] {
        assert!(
            stderr.contains(expected),
            "expected `{expected}` in:\n{stderr}"
        );
    }
    assert!(!stderr.contains("0short"), "the key itself is never shown");
    assert!(!stderr.contains("dh_groups[1]"), "group 14 is fine");
}

/// `line:column` of the value after `key` on the first line that holds `key`.
fn position_of(r: &Regions, file: &str, key: &str) -> String {
    let text = std::fs::read_to_string(r.file(file)).expect("read");
    let (i, line) = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains(key))
        .unwrap_or_else(|| panic!("{file} has no `{key}`"));
    let col = line.find(key).expect("key") + key.len() + 2;
    format!("{}:{col}", i + 1)
}

#[test]
fn the_router_needs_its_user_reserved_names_and_every_gateway_federating_its_exchange() {
    let r = Regions::examples();
    r.edit("backend.yaml", "mode: broadcast", "mode: router");
    assert_eq!(
        validate(&r, &["--all"]).0,
        0,
        "router mode with its user is valid"
    );
    r.edit("backend.yaml", "  router:\n", "  router_gone:\n");
    r.edit("backend.yaml", "  router_gone:\n    user: gwctl.router\n    password: file:secrets/GWCTL_ROUTER_PASSWORD\n", "");
    let at = position_of(&r, "backend.yaml", "  mode:");
    assert_invalid(
        &r,
        "backend.yaml",
        &at,
        "routing.mode",
        "`router` needs `credentials.router`",
    );

    let r = Regions::examples();
    r.edit("backend.yaml", "exchange: amq.topic", "exchange: gw.all");
    let at = position_of(&r, "backend.yaml", "  exchange:");
    assert_invalid(
        &r,
        "backend.yaml",
        &at,
        "routing.exchange",
        "`gw.all`: names starting with `gw.` or `gwctl.` are the router's",
    );

    let r = Regions::examples();
    r.edit(
        "backend.yaml",
        "exchange: amq.topic",
        "exchange: devices.commands",
    );
    // The list's first entry (ap-northeast-1's default list has no position: its top).
    let at = position_of(&r, "us-east-1.yaml", "from_backend:");
    let line: usize = at
        .split(':')
        .next()
        .and_then(|l| l.parse().ok())
        .expect("line");
    assert_invalid(
        &r,
        "us-east-1.yaml",
        &format!("{}:5", line + 1),
        "federation.from_backend",
        "no entry federates `devices.commands`",
    );
}
