//! Where each device is: the router's table, as pure data (time is passed in).
//!
//! News comes from connection events (`created`, `closed`) and from what devices send. A
//! device roaming from one gateway to another connects to the new one before the old one
//! notices it left (or the events arrive in that order), so a `closed` clears an entry only if
//! it is still the connection the entry names. While both connections live, the device is in
//! doubt: `created` comes when the device connects, before it subscribes, so a message sent
//! only to the new gateway in that moment would find no subscription there, while the old
//! connection still has one. The router broadcasts until the old connection closes. An entry
//! without news for `ttl` is stale: the router broadcasts rather than trust it.

use std::collections::BTreeMap;
use std::time::Duration;

/// A moment, in milliseconds (the events' `timestamp_in_ms`, or the router's clock).
pub type Millis = u64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub region: String,
    /// The connection the device holds there (its event name), when known from an event.
    pub connection: Option<String>,
    /// Last news, in the router's clock.
    pub seen_ms: Millis,
    /// Whether it is connected as far as we know (false: it left).
    pub connected: bool,
    /// The connection it held in another region and has not closed yet (region, connection).
    pub roaming_from: Option<(String, String)>,
    /// When it connected in this region while still connected in the other.
    pub moved_ms: Millis,
}

/// Where to send a device's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Region(String),
    /// Unknown, stale, or not connected: every gateway.
    Broadcast(Doubt),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Doubt {
    Unknown,
    Stale,
    Disconnected,
    /// Connected in two regions at once (moving between them).
    Roaming,
}

#[derive(Debug, Clone)]
pub struct Table {
    ttl_ms: Millis,
    devices: BTreeMap<String, Location>,
    /// (region, connection) → device, for `closed` events that name only the connection.
    connections: BTreeMap<(String, String), String>,
}

impl Table {
    pub fn new(ttl: Duration) -> Table {
        Table {
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            devices: BTreeMap::new(),
            connections: BTreeMap::new(),
        }
    }

    /// A device connected to `region` (connection `connection`).
    pub fn connected(&mut self, device: &str, region: &str, connection: &str, now: Millis) {
        let mut roaming_from = None;
        let mut moved_ms = now;
        if let Some(old) = self.devices.remove(device) {
            let open = old.connection.filter(|_| old.connected);
            match open {
                Some(c) if old.region != region => {
                    // Still connected there: in doubt until that connection closes.
                    roaming_from = Some((old.region, c));
                    if let Some(key) = old.roaming_from {
                        self.connections.remove(&key);
                    }
                }
                Some(c) => {
                    // A new connection in the same region replaces the old one.
                    self.connections.remove(&(old.region, c));
                    roaming_from = old.roaming_from;
                    moved_ms = old.moved_ms;
                }
                None => {
                    if let Some(key) = old.roaming_from {
                        self.connections.remove(&key);
                    }
                }
            }
        }
        self.connections.insert(
            (region.to_string(), connection.to_string()),
            device.to_string(),
        );
        self.devices.insert(
            device.to_string(),
            Location {
                region: region.to_string(),
                connection: Some(connection.to_string()),
                seen_ms: now,
                connected: true,
                roaming_from,
                moved_ms,
            },
        );
    }

    /// A device whose place nothing told yet, as the management API lists it at start (news
    /// that came meanwhile, from events, is newer and stays).
    pub fn listed(&mut self, device: &str, region: &str, connection: &str, now: Millis) -> bool {
        if self.devices.contains_key(device) {
            return false;
        }
        self.connected(device, region, connection, now);
        true
    }

    /// A connection closed in `region`; `device` when the event names it. Returns the device
    /// whose entry it cleared, if it was still that device's current connection.
    pub fn closed(
        &mut self,
        region: &str,
        connection: &str,
        device: Option<&str>,
        now: Millis,
    ) -> Option<String> {
        let key = (region.to_string(), connection.to_string());
        let known = self.connections.remove(&key);
        let device = known.or_else(|| device.map(str::to_string))?;
        let entry = self.devices.get_mut(&device)?;
        if entry
            .roaming_from
            .as_ref()
            .is_some_and(|(r, c)| r == region && c == connection)
        {
            // The region it left: it is where it went.
            entry.roaming_from = None;
            entry.seen_ms = now;
            return None;
        }
        if entry.region != region || entry.connection.as_deref() != Some(connection) {
            // It has connected elsewhere (or again) since: that news stands.
            return None;
        }
        entry.connected = false;
        entry.connection = None;
        entry.seen_ms = now;
        if let Some((r, c)) = entry.roaming_from.take() {
            // Its other connection is the one left: it is back where it came from.
            entry.region = r;
            entry.connection = Some(c);
            entry.connected = true;
        }
        Some(device)
    }

    /// A device sent something through `region`. Telemetry may be old (held in a gateway's
    /// buffer during a WAN cut), so it only refreshes what events said — the region the device
    /// is in, or the one it is leaving — and places a device only where events said nothing.
    pub fn heard_from(&mut self, device: &str, region: &str, now: Millis) {
        match self.devices.get_mut(device) {
            Some(l) if l.connected && l.region == region => l.seen_ms = now,
            Some(l) if l.roaming_from.as_ref().is_some_and(|(r, _)| r == region) => l.seen_ms = now,
            // Placed by events (or gone, as they said): late telemetry does not move it.
            Some(l) if l.connection.is_some() || !l.connected => {}
            _ => {
                self.devices.insert(
                    device.to_string(),
                    Location {
                        region: region.to_string(),
                        connection: None,
                        seen_ms: now,
                        connected: true,
                        roaming_from: None,
                        moved_ms: now,
                    },
                );
            }
        }
    }

    /// Where a message for `device` goes now.
    pub fn destination(&self, device: &str, now: Millis) -> Destination {
        match self.devices.get(device) {
            None => Destination::Broadcast(Doubt::Unknown),
            Some(l) if now.saturating_sub(l.seen_ms) > self.ttl_ms => {
                Destination::Broadcast(Doubt::Stale)
            }
            Some(l) if !l.connected => Destination::Broadcast(Doubt::Disconnected),
            // In doubt while both connections live, but not forever: a node that crashed never
            // says its connection closed.
            Some(l)
                if l.roaming_from.is_some() && now.saturating_sub(l.moved_ms) <= self.ttl_ms =>
            {
                Destination::Broadcast(Doubt::Roaming)
            }
            Some(l) => Destination::Region(l.region.clone()),
        }
    }

    pub fn get(&self, device: &str) -> Option<&Location> {
        self.devices.get(device)
    }

    /// Forgets entries without news for twice the TTL (they broadcast anyway).
    pub fn expire(&mut self, now: Millis) -> usize {
        let horizon = self.ttl_ms.saturating_mul(2);
        let gone: Vec<String> = self
            .devices
            .iter()
            .filter(|(_, l)| now.saturating_sub(l.seen_ms) > horizon)
            .map(|(d, _)| d.clone())
            .collect();
        for d in &gone {
            if let Some(l) = self.devices.remove(d) {
                for key in l
                    .connection
                    .map(|c| (l.region, c))
                    .into_iter()
                    .chain(l.roaming_from)
                {
                    self.connections.remove(&key);
                }
            }
        }
        gone.len()
    }

    pub fn len(&self) -> usize {
        self.devices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        Table::new(Duration::from_secs(60))
    }

    #[test]
    fn unknown_devices_are_broadcast_and_known_ones_routed() {
        let mut t = table();
        assert_eq!(
            t.destination("d1", 0),
            Destination::Broadcast(Doubt::Unknown)
        );
        t.connected("d1", "us-east-1", "c1", 0);
        assert_eq!(
            t.destination("d1", 1),
            Destination::Region("us-east-1".into())
        );
    }

    #[test]
    fn roaming_broadcasts_until_the_old_connection_closes_then_keeps_the_new_gateway() {
        let mut t = table();
        t.connected("d1", "ap-northeast-1", "jp-conn", 0);
        t.connected("d1", "us-east-1", "us-conn", 10);
        // Connected in both: the new gateway may not have its subscription yet.
        assert_eq!(
            t.destination("d1", 15),
            Destination::Broadcast(Doubt::Roaming)
        );
        assert_eq!(t.closed("ap-northeast-1", "jp-conn", None, 20), None);
        assert_eq!(
            t.destination("d1", 30),
            Destination::Region("us-east-1".into())
        );
        // The close of the current connection does clear it.
        assert_eq!(
            t.closed("us-east-1", "us-conn", None, 40),
            Some("d1".into())
        );
        assert_eq!(
            t.destination("d1", 50),
            Destination::Broadcast(Doubt::Disconnected)
        );
    }

    #[test]
    fn a_move_abandoned_returns_to_the_old_gateway_and_a_reconnection_in_place_is_no_move() {
        let mut t = table();
        t.connected("d1", "ap-northeast-1", "jp-conn", 0);
        t.connected("d1", "us-east-1", "us-conn", 10);
        assert_eq!(
            t.closed("us-east-1", "us-conn", Some("d1"), 20),
            Some("d1".into())
        );
        assert_eq!(
            t.destination("d1", 30),
            Destination::Region("ap-northeast-1".into())
        );
        t.connected("d1", "ap-northeast-1", "jp-conn-2", 40);
        assert_eq!(
            t.destination("d1", 45),
            Destination::Region("ap-northeast-1".into())
        );
        assert_eq!(t.closed("ap-northeast-1", "jp-conn", None, 50), None);
        assert_eq!(
            t.destination("d1", 60),
            Destination::Region("ap-northeast-1".into())
        );
    }

    #[test]
    fn a_close_seen_before_its_create_does_not_hide_a_later_connection() {
        let mut t = table();
        // Same connection name reused on another gateway: only the exact pair matches.
        t.connected("d1", "us-east-1", "10.0.0.1:5 -> 10.0.0.2:8883", 0);
        assert_eq!(
            t.closed(
                "ap-northeast-1",
                "10.0.0.1:5 -> 10.0.0.2:8883",
                Some("d1"),
                1
            ),
            None
        );
        assert_eq!(
            t.destination("d1", 2),
            Destination::Region("us-east-1".into())
        );
    }

    #[test]
    fn entries_go_stale_without_news_and_telemetry_refreshes_them() {
        let mut t = table();
        t.connected("d1", "us-east-1", "c1", 0);
        assert_eq!(
            t.destination("d1", 61_000),
            Destination::Broadcast(Doubt::Stale)
        );
        t.heard_from("d1", "us-east-1", 61_000);
        assert_eq!(
            t.destination("d1", 62_000),
            Destination::Region("us-east-1".into())
        );
        // Late telemetry (from a buffer) of another region does not move a device events placed.
        t.heard_from("d1", "ap-northeast-1", 63_000);
        assert_eq!(
            t.destination("d1", 63_500),
            Destination::Region("us-east-1".into())
        );
        // Nor does it bring back one that left.
        assert_eq!(t.closed("us-east-1", "c1", None, 64_000), Some("d1".into()));
        t.heard_from("d1", "us-east-1", 64_500);
        assert_eq!(
            t.destination("d1", 65_000),
            Destination::Broadcast(Doubt::Disconnected)
        );
        // Where no event said anything, telemetry places a device.
        t.heard_from("d2", "ap-northeast-1", 65_000);
        assert_eq!(
            t.destination("d2", 65_000),
            Destination::Region("ap-northeast-1".into())
        );
        t.heard_from("d2", "us-east-1", 65_000);
        assert_eq!(
            t.destination("d2", 65_000),
            Destination::Region("us-east-1".into())
        );
        assert_eq!(t.expire(65_000 + 120_001), 2);
        assert!(t.is_empty());
        assert!(t.connections.is_empty(), "{:?}", t.connections);
    }

    #[test]
    fn the_start_listing_never_overrides_events_and_roaming_doubt_ends_with_the_ttl() {
        let mut t = table();
        t.connected("d1", "us-east-1", "c-new", 10);
        assert!(!t.listed("d1", "ap-northeast-1", "c-old", 20));
        assert_eq!(
            t.destination("d1", 30),
            Destination::Region("us-east-1".into())
        );
        assert!(t.listed("d2", "ap-northeast-1", "c2", 20));
        // A move whose old connection never reports closing (its node crashed).
        t.connected("d2", "us-east-1", "c3", 1_000);
        assert_eq!(
            t.destination("d2", 1_500),
            Destination::Broadcast(Doubt::Roaming)
        );
        t.heard_from("d2", "us-east-1", 61_500);
        assert_eq!(
            t.destination("d2", 62_000),
            Destination::Region("us-east-1".into())
        );
        // Moving on again forgets the first connection left behind.
        t.connected("d2", "eu-west-1", "c4", 62_000);
        assert_eq!(t.closed("ap-northeast-1", "c2", None, 62_100), None);
        assert!(
            !t.connections
                .contains_key(&("ap-northeast-1".to_string(), "c2".to_string()))
        );
    }
}
