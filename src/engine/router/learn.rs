//! How the router learns where devices are: connection events and telemetry (consumed from
//! its own exclusive queues, without acknowledgements: a lost event only means a broadcast),
//! and, at start, the gateways' management API.

use super::stats::{Shared, now_ms};
use crate::broker::amqp::{Inbox, Message};
use crate::engine::Engine;
use crate::engine::events::{Event, Events};
use crate::model::delivery::{self, Addressing, ConnectionEvent};

#[derive(Clone)]
pub struct Learner {
    pub shared: Shared,
    pub regions: Vec<String>,
    pub telemetry: Addressing,
}

impl Learner {
    /// The gateway region a message came from, by the backend exchange it entered through.
    fn region(&self, m: &Message) -> Option<String> {
        let through = m.received_through().unwrap_or_else(|| m.exchange.clone());
        crate::model::federation::region_received_through(&through, &self.regions)
            .map(str::to_string)
    }

    pub async fn events(self, mut inbox: Inbox) {
        while let Some(Ok(m)) = inbox.next().await {
            let Some(region) = self.region(&m) else {
                continue;
            };
            let Some(event) = delivery::connection_event(&m.routing_key, |h| m.header(h)) else {
                continue;
            };
            let now = now_ms();
            {
                let mut guard = self.shared.lock();
                match event {
                    ConnectionEvent::Created { device, connection } => {
                        guard.0.connected(&device, &region, &connection, now);
                    }
                    ConnectionEvent::Closed { device, connection } => {
                        guard.0.closed(&region, &connection, device.as_deref(), now);
                    }
                }
            }
            self.shared.learned("event");
        }
    }

    pub async fn telemetry(self, mut inbox: Inbox) {
        while let Some(Ok(m)) = inbox.next().await {
            let (Some(region), Some(device)) =
                (self.region(&m), self.telemetry.device(&m.routing_key))
            else {
                continue;
            };
            self.shared.lock().0.heard_from(device, &region, now_ms());
            self.shared.learned("telemetry");
        }
    }
}

impl Engine {
    /// Who is connected to each gateway now, from its management API (best effort: a gateway
    /// that does not answer is learned from its events). Returns the devices found.
    pub(super) async fn resync_locations(&self, learner: &Learner, events: &dyn Events) -> usize {
        let mut found = 0;
        for gw in self.gateways() {
            let addresses = self.endpoints_now().get(&gw.region).map(<[_]>::to_vec);
            let clients: Vec<crate::broker::Client> = match addresses {
                Some(list) => list
                    .iter()
                    .filter_map(|a| self.gateway_client(gw, a).ok())
                    .collect(),
                None => match self.answering(gw, None).await {
                    Ok(a) => a.clients,
                    Err(_) => Vec::new(),
                },
            };
            let mut listed = None;
            for client in &clients {
                if let Ok(connections) = client.connections().await {
                    listed = Some(connections);
                    break;
                }
            }
            let Some(connections) = listed else {
                events.emit(Event::Warning(format!(
                    "router: {}: no broker answered for its connections; learning from events",
                    gw.region
                )));
                continue;
            };
            let now = now_ms();
            let mut guard = learner.shared.lock();
            for c in connections.iter().filter(|c| c.protocol.contains("MQTT")) {
                // Events that came since the listing was made are newer: they stay.
                if guard.0.listed(&c.user, &gw.region, &c.name, now) {
                    *guard.1.learned.entry("resync".into()).or_default() += 1;
                    found += 1;
                }
            }
        }
        found
    }
}
