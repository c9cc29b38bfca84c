//! Secret placeholders in rendered files, and filling them in.
//!
//! Rendered files never hold a secret: where one belongs they hold `@@gwctl:NAME:ENCODING@@`.
//! On a broker, the boot script (`templates/common/materialize.py`) fills them from SSM; for a
//! local run, [`fill_json`] does the same from the secret sources. Either way the filled file
//! exists only on the broker's own disk, mode 0600.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::spec::secret::Secret;

/// The secrets a gateway or the backend needs, by the name used in placeholders and as the
/// last part of their SSM parameter names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SecretName {
    AdminPassword,
    FederationPassword,
    /// The router's password (backend only).
    RouterPassword,
    ErlangCookie,
}

impl SecretName {
    pub fn as_str(self) -> &'static str {
        match self {
            SecretName::AdminPassword => "admin_password",
            SecretName::FederationPassword => "federation_password",
            SecretName::RouterPassword => "router_password",
            SecretName::ErlangCookie => "erlang_cookie",
        }
    }

    fn parse(s: &str) -> Option<SecretName> {
        [
            SecretName::AdminPassword,
            SecretName::FederationPassword,
            SecretName::RouterPassword,
            SecretName::ErlangCookie,
        ]
        .into_iter()
        .find(|n| n.as_str() == s)
    }
}

/// How a secret is written where its placeholder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Raw,
    /// Percent-encoded, for the userinfo of an AMQP URI.
    Uri,
    /// RabbitMQ's `rabbit_password_hashing_sha256`: base64(salt ++ sha256(salt ++ password)).
    RabbitHash,
}

impl Encoding {
    fn as_str(self) -> &'static str {
        match self {
            Encoding::Raw => "raw",
            Encoding::Uri => "uri",
            Encoding::RabbitHash => "rabbit-hash",
        }
    }

    fn parse(s: &str) -> Option<Encoding> {
        [Encoding::Raw, Encoding::Uri, Encoding::RabbitHash]
            .into_iter()
            .find(|e| e.as_str() == s)
    }
}

pub fn placeholder(name: SecretName, encoding: Encoding) -> String {
    format!("@@gwctl:{}:{}@@", name.as_str(), encoding.as_str())
}

/// The secret values of one node, by name.
pub type SecretValues = BTreeMap<SecretName, Secret>;

const OPEN: &str = "@@gwctl:";
const CLOSE: &str = "@@";

/// Every placeholder in `text`, as (name, encoding, byte range). Unknown names are errors.
fn scan(text: &str) -> Result<Vec<(SecretName, Encoding, std::ops::Range<usize>)>, String> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(start) = text[from..].find(OPEN).map(|i| i + from) {
        let body_start = start + OPEN.len();
        let end = text[body_start..]
            .find(CLOSE)
            .map(|i| i + body_start)
            .ok_or_else(|| "unterminated secret placeholder".to_string())?;
        let body = &text[body_start..end];
        let (name, enc) = body
            .split_once(':')
            .ok_or_else(|| format!("malformed secret placeholder `{body}`"))?;
        let name = SecretName::parse(name).ok_or_else(|| format!("unknown secret `{name}`"))?;
        let enc = Encoding::parse(enc).ok_or_else(|| format!("unknown secret encoding `{enc}`"))?;
        found.push((name, enc, start..end + CLOSE.len()));
        from = end + CLOSE.len();
    }
    Ok(found)
}

/// The secrets a text refers to.
pub fn referenced(text: &str) -> Result<Vec<SecretName>, String> {
    let mut names: Vec<SecretName> = scan(text)?.into_iter().map(|(n, _, _)| n).collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// Fills the placeholders of one string.
pub fn fill_str(text: &str, secrets: &SecretValues) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (name, enc, range) in scan(text)? {
        let secret = secrets
            .get(&name)
            .ok_or_else(|| format!("no value for secret `{}`", name.as_str()))?;
        out.push_str(&text[last..range.start]);
        out.push_str(&encode(secret, enc));
        last = range.end;
    }
    out.push_str(&text[last..]);
    Ok(out)
}

/// Fills every placeholder inside the strings of a JSON document (so secrets containing
/// quotes or backslashes cannot break the JSON).
pub fn fill_json(value: &mut Value, secrets: &SecretValues) -> Result<(), String> {
    match value {
        Value::String(s) if s.contains(OPEN) => *s = fill_str(s, secrets)?,
        Value::Array(items) => {
            for item in items {
                fill_json(item, secrets)?;
            }
        }
        Value::Object(map) => {
            for v in map.values_mut() {
                fill_json(v, secrets)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn encode(secret: &Secret, enc: Encoding) -> String {
    match enc {
        Encoding::Raw => secret.expose().to_string(),
        Encoding::Uri => crate::model::federation::encode_component(secret.expose()),
        Encoding::RabbitHash => rabbit_hash(secret.expose(), rand::random()),
    }
}

/// RabbitMQ's `rabbit_password_hashing_sha256` with the given 4-byte salt.
pub fn rabbit_hash(password: &str, salt: [u8; 4]) -> String {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(password.as_bytes());
    let mut bytes = salt.to_vec();
    bytes.extend_from_slice(&h.finalize());
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rabbit_hash_matches_rabbitmq() {
        // Computed independently with Python's hashlib; the integration test proves that a
        // real broker accepts logins against these hashes.
        assert_eq!(
            rabbit_hash("test12", [0xCA, 0xD5, 0x08, 0x9B]),
            "ytUIm2F9eV3qWWARNnCjyAl43Ykoi8RM6UsDGYNU4KCxHspv"
        );
    }

    #[test]
    fn fills_json_strings_with_encodings() {
        let mut secrets = SecretValues::new();
        secrets.insert(SecretName::FederationPassword, Secret::new("p@ss\"w/rd"));
        let mut v = serde_json::json!({
            "uri": format!("amqp://f:{}@h", placeholder(SecretName::FederationPassword, Encoding::Uri)),
            "raw": placeholder(SecretName::FederationPassword, Encoding::Raw),
        });
        fill_json(&mut v, &secrets).expect("filled");
        assert_eq!(v["uri"], "amqp://f:p%40ss%22w%2Frd@h");
        assert_eq!(v["raw"], "p@ss\"w/rd");
    }

    #[test]
    fn unknown_or_missing_secrets_are_errors() {
        assert!(fill_str("@@gwctl:nope:raw@@", &SecretValues::new()).is_err());
        assert!(fill_str("@@gwctl:admin_password:raw@@", &SecretValues::new()).is_err());
        assert!(fill_str("@@gwctl:admin_password:raw", &SecretValues::new()).is_err());
    }
}
