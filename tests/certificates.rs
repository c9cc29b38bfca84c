//! `gwctl ca create`, `gwctl ca issue-link` and `gwctl device issue`: files, modes, what the
//! certificates say, and what is refused.

use std::os::unix::fs::PermissionsExt;
use std::time::SystemTime;

use crate::support::Regions;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

#[test]
fn ca_create_writes_a_ca_and_a_private_key() {
    let r = Regions::examples();
    let out = tempfile::tempdir().expect("tempdir");
    r.gwctl()
        .args(["ca", "create", "stack-ca", "--out"])
        .arg(out.path())
        .assert()
        .success();
    let cert = std::fs::read_to_string(out.path().join("stack-ca.pem")).expect("cert");
    let key = std::fs::read_to_string(out.path().join("stack-ca.key")).expect("key");
    assert_eq!(mode(&out.path().join("stack-ca.key")), 0o600);
    let ca = gwctl::pki::Authority::load(
        &cert,
        &gwctl::spec::secret::Secret::new(key),
        SystemTime::now(),
    )
    .expect("a CA with its key");
    assert_eq!(
        gwctl::pki::inspect(ca.cert_pem())
            .expect("inspect")
            .common_name
            .as_deref(),
        Some("gwctl stack-ca")
    );
    // Never overwritten.
    r.gwctl()
        .args(["ca", "create", "stack-ca", "--out"])
        .arg(out.path())
        .assert()
        .code(2);
    assert_eq!(
        std::fs::read_to_string(out.path().join("stack-ca.pem")).expect("cert"),
        cert
    );
}

#[test]
fn issue_link_and_device_certificates() {
    let r = Regions::examples();
    let out = tempfile::tempdir().expect("tempdir");
    r.gwctl()
        .args(["ca", "issue-link", "--out"])
        .arg(out.path())
        .assert()
        .success();
    let link = std::fs::read_to_string(out.path().join("gwctl-link.pem")).expect("link");
    assert_eq!(mode(&out.path().join("gwctl-link.key")), 0o600);
    assert_eq!(
        gwctl::pki::inspect(&link)
            .expect("inspect")
            .common_name
            .as_deref(),
        Some(gwctl::pki::LINK_COMMON_NAME)
    );
    assert_eq!(
        std::fs::read_to_string(out.path().join("gwctl-stack-ca.pem"))
            .expect("ca")
            .trim(),
        r.secrets["GWCTL_STACK_CA_CERT"].trim()
    );

    let devices = out.path().join("devices");
    r.gwctl()
        .args(["device", "issue", "dev-0001", "--out"])
        .arg(&devices)
        .assert()
        .success();
    let cert = std::fs::read_to_string(devices.join("dev-0001.pem")).expect("cert");
    let info = gwctl::pki::inspect(&cert).expect("inspect");
    assert_eq!(info.common_name.as_deref(), Some("dev-0001"));
    assert_eq!(info.names, ["dev-0001"], "its client id");
    assert_eq!(mode(&devices.join("dev-0001.key")), 0o600);
    // Signed by the device CA: its key id is the certificate's authority key id.
    let device_ca = gwctl::pki::inspect(&r.secrets["GWCTL_DEVICE_CA_CERT"]).expect("ca");
    assert_eq!(info.authority_key_id, Some(device_ca.key_id));
    assert_eq!(
        std::fs::read_to_string(devices.join("ca.pem"))
            .expect("ca")
            .trim(),
        r.secrets["GWCTL_STACK_CA_CERT"].trim(),
        "what the device verifies brokers with"
    );

    // Refused: a broker user's name (never a device id's shape), malformed ids, an existing
    // device's files.
    for id in ["gwctl.admin", "gwctl.federation", "a/b", "-x"] {
        r.gwctl()
            .args(["device", "issue", id, "--out"])
            .arg(&devices)
            .assert()
            .code(2);
    }
    r.gwctl()
        .args(["device", "issue", "dev-0001", "--out"])
        .arg(&devices)
        .assert()
        .code(2);
}
