use super::*;

fn now() -> SystemTime {
    SystemTime::now()
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn issued_server_certificate_verifies_for_its_names_only() {
    let (ca, _) = Authority::generate("test stack CA", now()).expect("ca");
    let leaf = ca
        .issue_server(&names(&["us-east-1.mqtt.example.com", "10.10.1.10"]), now())
        .expect("issue");
    verify_server(
        ca.cert_pem(),
        &leaf.cert_pem,
        "us-east-1.mqtt.example.com",
        now(),
    )
    .expect("covered name");
    verify_server(ca.cert_pem(), &leaf.cert_pem, "10.10.1.10", now()).expect("covered address");
    let err = verify_server(
        ca.cert_pem(),
        &leaf.cert_pem,
        "ap-northeast-1.mqtt.example.com",
        now(),
    )
    .expect_err("other name");
    assert!(matches!(err, PkiError::NameNotCovered(..)), "{err}");
    let info = inspect(&leaf.cert_pem).expect("inspect");
    assert_eq!(
        info.names,
        names(&["us-east-1.mqtt.example.com", "10.10.1.10"])
    );
    assert!(!info.is_ca);
}

#[test]
fn another_ca_or_a_later_date_is_refused() {
    let (ca, _) = Authority::generate("one", now()).expect("ca");
    let (other, _) = Authority::generate("two", now()).expect("ca");
    let leaf = ca
        .issue_server(&names(&["a.example.com"]), now())
        .expect("issue");
    assert_eq!(
        verify_server(other.cert_pem(), &leaf.cert_pem, "a.example.com", now()),
        Err(PkiError::UnknownIssuer)
    );
    let later = now() + Duration::from_secs(u64::from(LEAF_DAYS + 1) * 86_400);
    assert!(matches!(
        verify_server(ca.cert_pem(), &leaf.cert_pem, "a.example.com", later),
        Err(PkiError::Expired(_))
    ));
    let info = inspect(&leaf.cert_pem).expect("inspect");
    assert!(!info.expires_within(now(), WARN_BEFORE));
    assert!(info.expires_within(now() + Duration::from_secs(380 * 86_400), WARN_BEFORE));
}

#[test]
fn a_ca_loads_only_with_its_own_key() {
    let (ca, key) = Authority::generate("one", now()).expect("ca");
    let (_, other_key) = Authority::generate("two", now()).expect("ca");
    Authority::load(ca.cert_pem(), &key, now()).expect("own key");
    assert!(matches!(
        Authority::load(ca.cert_pem(), &other_key, now()),
        Err(PkiError::KeyMismatch)
    ));
    assert!(matches!(
        Authority::load(ca.cert_pem(), &Secret::new("not a key"), now()),
        Err(PkiError::NotAKey)
    ));
    // A loaded CA issues certificates the original's certificate verifies.
    let loaded = Authority::load(ca.cert_pem(), &key, now()).expect("load");
    let leaf = loaded
        .issue_server(&names(&["b.example.com"]), now())
        .expect("issue");
    verify_server(ca.cert_pem(), &leaf.cert_pem, "b.example.com", now()).expect("verifies");
    // A leaf certificate is not a CA.
    let leaf_key = leaf.key_pem.clone();
    assert_eq!(
        Authority::load(&leaf.cert_pem, &leaf_key, now()).err(),
        Some(PkiError::NotACa)
    );
    assert_eq!(inspect("garbage").err(), Some(PkiError::NotACertificate));
}

#[test]
fn client_certificates_carry_the_device_id_as_common_name() {
    let (ca, _) = Authority::generate("devices", now()).expect("ca");
    let dev = ca.issue_client("dev-0001", now()).expect("issue");
    let info = inspect(&dev.cert_pem).expect("inspect");
    assert_eq!(info.common_name.as_deref(), Some("dev-0001"));
    assert!(format!("{:?}", dev.key_pem).contains("sensitive"));
    client_config(ca.cert_pem(), Some((&dev.cert_pem, &dev.key_pem))).expect("client config");
}
