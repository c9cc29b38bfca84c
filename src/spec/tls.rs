//! Checks of the stack's certificates and device rules, before anything uses them: a CA that
//! is missing, unreadable, expired, not a CA, or whose key does not belong to it is bad input
//! (exit 2), reported at its field.

use std::path::Path;
use std::time::SystemTime;

use super::diag::Sink;
use super::model::{BackendSpec, Devices};
use crate::pki::{self, Authority};

/// A device id: the common name of its certificate and the `{device}` of its topics. No dots
/// (MQTT topic levels become dot-separated routing keys), slashes, wildcards or regular
/// expression characters: RabbitMQ substitutes it into permission patterns unescaped.
pub const DEVICE_ID: &str = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$";

pub fn valid_device_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Why a CA of the region files cannot issue. Never contains key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorityError {
    #[error(
        "backend.yaml: tls.device_ca.key is not set (an external device CA issues this fleet's certificates)"
    )]
    NoDeviceKey,
    #[error(transparent)]
    Source(#[from] super::secret::SecretError),
    #[error("{0}: {1}")]
    Invalid(&'static str, pki::PkiError),
}

/// The stack CA of the region files, able to issue (certificate and key read and checked).
pub fn stack_authority(stack: &super::Stack) -> Result<Authority, AuthorityError> {
    let ca = &stack.backend.spec.tls.stack_ca;
    load(stack, &ca.cert, &ca.key, "stack CA")
}

/// The device CA of the region files, able to issue; its key is optional in the files.
pub fn device_authority(stack: &super::Stack) -> Result<Authority, AuthorityError> {
    let ca = &stack.backend.spec.tls.device_ca;
    let key = ca.key.as_ref().ok_or(AuthorityError::NoDeviceKey)?;
    load(stack, &ca.cert, key, "device CA")
}

fn load(
    stack: &super::Stack,
    cert: &super::model::SecretRef,
    key: &super::model::SecretRef,
    what: &'static str,
) -> Result<Authority, AuthorityError> {
    let cert = cert.read_public(&stack.dir)?;
    let key = key.resolve(&stack.dir)?;
    Authority::load(&cert, &key, SystemTime::now()).map_err(|e| AuthorityError::Invalid(what, e))
}

pub fn check(spec: &BackendSpec, base: &Path, sink: &mut Sink<'_>) {
    let now = SystemTime::now();
    let tls = &spec.tls;
    match tls.backend_ca.read_public(base) {
        Err(e) => sink.at("/tls/backend_ca", e.to_string()),
        Ok(pem) => {
            if let Err(e) = pki::check_ca(&pem, now) {
                sink.at("/tls/backend_ca", format!("{}: {e}", tls.backend_ca));
            }
        }
    }
    let stack_cert = tls.stack_ca.cert.read_public(base);
    let stack_key = tls.stack_ca.key.resolve(base);
    match (&stack_cert, &stack_key) {
        (Err(e), _) => sink.at("/tls/stack_ca/cert", e.to_string()),
        (_, Err(e)) => sink.at("/tls/stack_ca/key", e.to_string()),
        (Ok(cert), Ok(key)) => match Authority::load(cert, key, now) {
            Ok(_) => {}
            Err(e @ (pki::PkiError::NotAKey | pki::PkiError::KeyMismatch)) => {
                sink.at("/tls/stack_ca/key", format!("{}: {e}", tls.stack_ca.key))
            }
            Err(e) => sink.at("/tls/stack_ca/cert", format!("{}: {e}", tls.stack_ca.cert)),
        },
    }
    match tls.device_ca.cert.read_public(base) {
        Err(e) => sink.at("/tls/device_ca/cert", e.to_string()),
        Ok(cert) => match pki::check_ca(&cert, now) {
            Err(e) => sink.at(
                "/tls/device_ca/cert",
                format!("{}: {e}", tls.device_ca.cert),
            ),
            Ok(_) => {
                if let Some(key_ref) = &tls.device_ca.key {
                    match key_ref.resolve(base) {
                        Err(e) => sink.at("/tls/device_ca/key", e.to_string()),
                        Ok(key) => {
                            if let Err(e) = Authority::load(&cert, &key, now) {
                                sink.at("/tls/device_ca/key", format!("{key_ref}: {e}"));
                            }
                        }
                    }
                }
            }
        },
    }
    if let (Ok(stack), Ok(device)) = (&stack_cert, tls.device_ca.cert.read_public(base))
        && let (Ok(a), Ok(b)) = (pki::inspect(stack), pki::inspect(&device))
        && a.sha256 == b.sha256
    {
        sink.at(
            "/tls/device_ca/cert",
            "is the stack CA: a device CA of its own keeps a device certificate from ever \
             passing for a broker",
        );
    }
    check_devices(&spec.devices, sink);
    // The federation user exists on every gateway.
    check_not_a_device(
        &spec.credentials.federation.user,
        "/credentials/federation/user",
        sink,
    );
}

/// A user of a gateway's own definitions must never share a name with a device: the brokers
/// answer a certificate login for a known user without a password, so a device certificate
/// with that name would log in as that user.
pub fn check_not_a_device(user: &str, at: &str, sink: &mut Sink<'_>) {
    if valid_device_id(user) {
        sink.at(
            at,
            format!(
                "`{user}` could be a device id (a device certificate with that name would log \
                 in as this user without a password): use a name with a `.` or `@`, such as \
                 `gwctl.{user}`"
            ),
        );
    }
}

fn check_devices(d: &Devices, sink: &mut Sink<'_>) {
    for (field, filter) in [("telemetry", &d.telemetry), ("commands", &d.commands)] {
        if let Err(e) = check_filter(filter) {
            sink.at(&format!("/devices/{field}"), e);
        }
    }
    if d.telemetry.split('/').next() == d.commands.split('/').next() {
        sink.at(
            "/devices/commands",
            "must start with another topic level than `telemetry`, or a device could read \
             what it may write",
        );
    }
    for (i, id) in d.revoked.iter().enumerate() {
        if !valid_device_id(id) {
            sink.at(
                &format!("/devices/revoked/{i}"),
                format!("`{id}` is not a device id (letters, digits, `_` and `-`, up to 64)"),
            );
        }
    }
}

/// A device topic filter: literal levels, exactly one level `{device}`, optionally a final `#`.
fn check_filter(filter: &str) -> Result<(), String> {
    let levels: Vec<&str> = filter.split('/').collect();
    if levels
        .first()
        .is_none_or(|l| *l == "{device}" || l.is_empty())
    {
        return Err(format!("`{filter}` must start with a literal topic level"));
    }
    if levels.iter().filter(|l| **l == "{device}").count() != 1 {
        return Err(format!(
            "`{filter}` must contain the level `{{device}}` exactly once"
        ));
    }
    for (i, l) in levels.iter().enumerate() {
        let last = i + 1 == levels.len();
        if *l == "#" && last || *l == "{device}" {
            continue;
        }
        if l.is_empty()
            || !l
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(format!(
                "`{filter}`: level `{l}` may hold letters, digits, `_` and `-` only (`#` only last)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_filters() {
        assert!(check_filter("devices/{device}/#").is_ok());
        assert!(check_filter("fleet/eu/{device}").is_ok());
        assert!(check_filter("{device}/#").is_err());
        assert!(check_filter("devices/#").is_err());
        assert!(check_filter("devices/{device}/+").is_err());
        assert!(check_filter("devices.x/{device}").is_err());
        assert!(check_filter("a/{device}/{device}").is_err());
    }

    #[test]
    fn device_ids() {
        assert!(valid_device_id("dev-0001"));
        assert!(valid_device_id("A_b"));
        assert!(!valid_device_id("a.b"));
        assert!(!valid_device_id("-x"));
        assert!(!valid_device_id(""));
        assert!(!valid_device_id(&"x".repeat(65)));
    }
}
