//! The router's counters and its location table, shared by its tasks, and their Prometheus
//! text.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::model::locations::{Destination, Doubt, Millis, Table};

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Stats {
    /// Messages sent to one region's exchange, by region.
    pub routed: BTreeMap<String, u64>,
    /// Messages sent to every region, by reason.
    pub broadcast: BTreeMap<String, u64>,
    /// Messages received again after a router stopped before acknowledging them: each may
    /// have been delivered twice.
    pub redelivered: u64,
    /// Publishes tried again (refused, or no gateway bound at all).
    pub retries: u64,
    /// Location news, by source (`event`, `telemetry`, `resync`).
    pub learned: BTreeMap<String, u64>,
    /// Messages waiting in the router's queue when last looked (its lag).
    pub queue_messages: u64,
    /// Devices in the table.
    pub locations: usize,
}

/// What the router's tasks share.
#[derive(Clone)]
pub struct Shared(Arc<Mutex<(Table, Stats)>>);

impl Shared {
    pub fn new(table: Table) -> Shared {
        Shared(Arc::new(Mutex::new((table, Stats::default()))))
    }

    /// The table and counters (a poisoned lock still holds usable data: counters only).
    pub fn lock(&self) -> MutexGuard<'_, (Table, Stats)> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn snapshot(&self) -> Stats {
        let guard = self.lock();
        let (table, stats) = &*guard;
        Stats {
            locations: table.len(),
            ..stats.clone()
        }
    }

    pub fn learned(&self, source: &str) {
        *self.lock().1.learned.entry(source.to_string()).or_default() += 1;
    }
}

pub fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub fn doubt_name(d: Doubt) -> &'static str {
    match d {
        Doubt::Unknown => "unknown",
        Doubt::Stale => "stale",
        Doubt::Disconnected => "disconnected",
        Doubt::Roaming => "roaming",
    }
}

/// A device's entry as `router lookup` shows it.
#[derive(Debug, Serialize)]
pub struct Lookup {
    pub device: String,
    /// The exchange its next message goes to.
    pub exchange: String,
    /// Why it is broadcast, if it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub doubt: Option<&'static str>,
    /// Where it was last seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub connected: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seen_ms_ago: Option<u64>,
}

pub fn lookup(table: &Table, device: &str, now: Millis) -> Lookup {
    let entry = table.get(device);
    let (exchange, doubt) = match table.destination(device, now) {
        Destination::Region(r) => (crate::model::delivery::region_exchange(&r), None),
        Destination::Broadcast(d) => (
            crate::model::delivery::BROADCAST_EXCHANGE.to_string(),
            Some(doubt_name(d)),
        ),
    };
    Lookup {
        device: device.to_string(),
        exchange,
        doubt,
        region: entry.map(|l| l.region.clone()),
        connected: entry.is_some_and(|l| l.connected),
        seen_ms_ago: entry.map(|l| now.saturating_sub(l.seen_ms)),
    }
}

/// The counters in Prometheus' text format.
pub fn prometheus(s: &Stats) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, u64)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    let labelled = |key: &str, m: &BTreeMap<String, u64>| {
        m.iter()
            .map(|(k, v)| (format!("{{{key}=\"{k}\"}}"), *v))
            .collect::<Vec<_>>()
    };
    family(
        "gwctl_router_routed_total",
        "counter",
        "Messages sent to the region where their device is.",
        labelled("region", &s.routed),
    );
    family(
        "gwctl_router_broadcast_total",
        "counter",
        "Messages sent to every region, by why.",
        labelled("reason", &s.broadcast),
    );
    family(
        "gwctl_router_redelivered_total",
        "counter",
        "Messages received again after a router stopped before acknowledging them.",
        vec![(String::new(), s.redelivered)],
    );
    family(
        "gwctl_router_retries_total",
        "counter",
        "Publishes tried again.",
        vec![(String::new(), s.retries)],
    );
    family(
        "gwctl_router_learned_total",
        "counter",
        "Location news, by source.",
        labelled("source", &s.learned),
    );
    family(
        "gwctl_router_locations",
        "gauge",
        "Devices whose location the router holds.",
        vec![(String::new(), s.locations as u64)],
    );
    family(
        "gwctl_router_queue_messages",
        "gauge",
        "Messages waiting in the router's queue (lag).",
        vec![(String::new(), s.queue_messages)],
    );
    out
}
