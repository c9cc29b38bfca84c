//! Route53 for the gateways: per-endpoint health checks and latency records, as data.
//!
//! Structure (per gateway region R, record name N from backend.yaml, e.g. `mqtt.example.com`):
//! - one health check per broker endpoint (its Elastic IP): TCP on the MQTT port, or HTTP(S)
//!   on the node's health responder;
//! - `R.N`: one multivalue-answer A record per broker (set identifier `broker-K`), each with
//!   its endpoint's health check, so a dead broker leaves the answers on its own;
//! - `N`: one latency alias record (set identifier R, Region R) to `R.N` with
//!   EvaluateTargetHealth, so a region whose endpoints are all unhealthy is withdrawn and its
//!   clients get the next-nearest region;
//! - `_gwctl.R.N`: a TXT record saying gwctl owns the two above (Route53 records carry no
//!   tags); records at those names without it are someone else's and are never changed.
//!
//! Why not a CALCULATED check on a latency record carrying all of a region's addresses: that
//! withdraws a region only when all its brokers are down, but keeps answering with the
//! address of a dead broker while one is.
//!
//! Route53 fails open: when every record of a choice is unhealthy it answers as if all were
//! healthy (latency: the nearest region; multivalue: up to eight addresses), so clients still
//! get addresses when the checkers themselves cannot reach anything.

use serde::{Deserialize, Serialize};

use super::Action;
use super::hash::sha256_hex;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CheckProtocol {
    Tcp,
    Http,
    Https,
}

impl CheckProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckProtocol::Tcp => "TCP",
            CheckProtocol::Http => "HTTP",
            CheckProtocol::Https => "HTTPS",
        }
    }
}

/// A health check's settings as gwctl manages them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckConfig {
    pub protocol: CheckProtocol,
    pub ip: String,
    pub port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub interval_s: u32,
    pub failure_threshold: u32,
    /// Checker regions, sorted; empty: Route53's default (all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
    /// Only a drill inverts a check; `up` puts it back.
    pub inverted: bool,
}

impl CheckConfig {
    /// What is checked: `TCP 203.0.113.7:1883`, `HTTP 203.0.113.7:8080/health`.
    pub fn target(&self) -> String {
        format!(
            "{} {}:{}{}",
            self.protocol.as_str(),
            self.ip,
            self.port,
            self.path.as_deref().unwrap_or("")
        )
    }

    /// Route53 cannot change a check's type or interval in place.
    pub fn needs_replace(&self, actual: &CheckConfig) -> bool {
        self.protocol != actual.protocol || self.interval_s != actual.interval_s
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedCheck {
    pub id: String,
    /// The endpoint it checks (`broker-1`), from its CallerReference.
    pub name: String,
    pub config: CheckConfig,
}

/// A record set, comparable between desired and actual.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_identifier: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_region: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub multivalue: bool,
    /// The endpoint whose health check guards the record (`broker-1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// Alias target in the same zone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// The alias follows its target's health (gwctl's always do).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub evaluate_target_health: bool,
}

impl Record {
    /// What identifies a record set in a zone: name, type and set identifier.
    pub fn key(&self) -> (String, String, Option<String>) {
        (
            self.name.clone(),
            self.rtype.clone(),
            self.set_identifier.clone(),
        )
    }

    /// One line for people: `mqtt.example.com A [us-east-1] latency us-east-1 -> alias ...`.
    pub fn describe(&self) -> String {
        let mut s = format!("{} {}", self.name, self.rtype);
        if let Some(id) = &self.set_identifier {
            s.push_str(&format!(" [{id}]"));
        }
        if let Some(r) = &self.latency_region {
            s.push_str(&format!(" latency {r}"));
        }
        if self.multivalue {
            s.push_str(" multivalue");
        }
        match &self.alias {
            Some(a) => s.push_str(&format!(" -> alias {a}")),
            None => s.push_str(&format!(" -> {}", self.values.join(", "))),
        }
        if let Some(h) = &self.health_check {
            s.push_str(&format!(" (health check {h})"));
        }
        s
    }
}

/// A record set as Route53 holds it: what a DELETE must repeat exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedRecord {
    pub record: Record,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias_zone: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RecordChange {
    pub action: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<ObservedRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Record>,
}

impl RecordChange {
    /// The record set this change deletes (an update deletes the old and creates the new).
    pub fn deletes(&self) -> Option<&ObservedRecord> {
        match self.action {
            Action::Delete | Action::Update | Action::Replace => self.before.as_ref(),
            _ => None,
        }
    }

    pub fn creates(&self) -> Option<&Record> {
        match self.action {
            Action::Create | Action::Update | Action::Replace => self.after.as_ref(),
            _ => None,
        }
    }
}

/// The names gwctl manages for one region.
pub struct Names {
    /// `mqtt.example.com`
    pub record: String,
    /// `us-east-1.mqtt.example.com`
    pub regional: String,
    /// `_gwctl.us-east-1.mqtt.example.com`
    pub owner: String,
}

pub fn names(record: &str, region: &str) -> Names {
    let record = record.trim_end_matches('.').to_lowercase();
    Names {
        regional: format!("{region}.{record}"),
        owner: format!("_gwctl.{region}.{record}"),
        record,
    }
}

/// The owner record's value: which stack and region the records belong to.
pub fn owner_value(stack: &str, region: &str) -> String {
    format!("\"heritage=gwctl,stack={stack},region={region}\"")
}

/// CallerReference prefix of a region's checks: `gwctl/<stack hash>/<region>/`. A
/// CallerReference holds at most 64 characters, so the stack (up to 32) goes in as the first
/// 8 hex digits of its SHA-256; the `gwctl:stack` tag carries the name.
pub fn caller_prefix(stack: &str, region: &str) -> String {
    format!("{}{region}/", stack_caller_prefix(stack))
}

/// The start of the CallerReference of every health check of the stack, in any region.
pub fn stack_caller_prefix(stack: &str) -> String {
    let hash = sha256_hex(stack);
    format!("gwctl/{}/", &hash[..8])
}
