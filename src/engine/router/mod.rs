//! `gwctl router run`: sends each message backend applications publish for a device to the
//! region where the device is connected, or to every region when in doubt.
//!
//! At least once, never dropped for want of a location: a message is acknowledged only after
//! its republish is confirmed *and* routed (`mandatory`); a region exchange nobody federates
//! (its gateways' link down) falls back to the broadcast exchange; when not even that is bound,
//! the router holds the message and tries again. The router's queue is a quorum queue with a
//! single active consumer, so several routers may run (each with its own table, one
//! consuming at a time) without reordering a device's messages, and one killed mid-batch
//! hands its unacknowledged messages to the next (counted as `redelivered`: possible
//! duplicates). A router learns where devices are from the gateways' connection events
//! (federated to the backend), from what devices send, and from the gateways' management API
//! when it starts; until it has learned, it broadcasts.

mod http;
mod learn;
pub mod stats;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::Engine;
use super::events::{Event, Events};
use crate::broker::amqp::{Amqp, AmqpLogin, Message, Outcome, QueueSpec};
use crate::error::{Error, Result};
use crate::model::delivery::{self, Addressing};
use crate::model::locations::{Destination, Table};
use stats::{Shared, now_ms};

#[derive(Debug, Clone)]
pub struct RouterOptions {
    /// This router's name (its queues and connection carry it).
    pub id: String,
    /// Where its metrics and lookups are served (default: loopback, `routing.metrics_port`).
    pub listen: Option<SocketAddr>,
    /// Messages republished before their confirms are awaited (and the prefetch).
    pub window: u16,
    /// Ask the gateways' management API who is connected at start.
    pub resync: bool,
}

/// Messages routed until the router stopped.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RouterSummary {
    pub stats: stats::Stats,
}

/// How often the queue's depth (the router's lag) and stale entries are looked at.
const HOUSEKEEPING: Duration = Duration::from_secs(5);

impl Engine {
    /// Runs the router until `shutdown` completes (after the batch in hand) or its connection
    /// fails (an error: its supervisor starts it again; nothing unacknowledged is lost).
    pub async fn run_router(
        &self,
        opts: &RouterOptions,
        events: &dyn Events,
        shutdown: impl Future<Output = ()>,
    ) -> Result<RouterSummary> {
        let backend = &self.stack.backend.spec;
        let routing = &backend.routing;
        if routing.mode != crate::spec::model::RoutingMode::Router {
            return Err(Error::Usage(
                "backend.yaml's routing.mode is `broadcast`: gateways federate the routing \
                 exchange themselves, and a router would send every message twice"
                    .into(),
            ));
        }
        let login = self.router_login()?;
        let regions: Vec<String> = self.gateways().map(|g| g.region.clone()).collect();
        let table = Table::new(Duration::from_secs(u64::from(routing.location_ttl_s)));
        let shared = Shared::new(table);
        let listen = opts
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], routing.metrics_port)));
        let server = http::serve(listen, shared.clone())
            .await
            .map_err(|e| Error::io(format!("listening on {listen}"), e))?;
        events.emit(Event::Progress(format!(
            "router {}: metrics and lookups on http://{listen}",
            opts.id
        )));

        let amqp = Amqp::open(&login, &format!("gwctl router {}", opts.id))
            .await
            .map_err(|e| Error::Failed(e.to_string()))?;
        let inboxes = self.declare_router(&amqp, opts).await?;
        let learner = learn::Learner {
            shared: shared.clone(),
            regions: regions.clone(),
            telemetry: Addressing::new(&backend.devices.telemetry),
        };
        // A learner that stops (its queue deleted, its consumer cancelled) would leave the
        // table frozen: the router stops too, and its supervisor starts it again.
        let (stopped_tx, stopped) = tokio::sync::watch::channel(None::<&'static str>);
        let mut learning = Vec::new();
        let watch = |what: &'static str, task: tokio::task::JoinHandle<()>| {
            let tx = stopped_tx.clone();
            tokio::spawn(async move {
                let _ = task.await;
                let _ = tx.send(Some(what));
            })
        };
        learning.push(watch(
            "connection events",
            tokio::spawn(learner.clone().events(inboxes.events)),
        ));
        if let Some(inbox) = inboxes.telemetry {
            learning.push(watch(
                "telemetry",
                tokio::spawn(learner.clone().telemetry(inbox)),
            ));
        }
        if opts.resync {
            let found = self.resync_locations(&learner, events).await;
            events.emit(Event::Progress(format!(
                "router {}: {found} devices connected at start (management API)",
                opts.id
            )));
        }
        // Only now: a router that consumed before it knew anything would hold the queue
        // (single active consumer) and broadcast what it could have routed.
        let commands = amqp
            .consume(delivery::ROUTER_QUEUE, true, opts.window.max(1))
            .await
            .map_err(|e| Error::Failed(e.to_string()))?;
        events.emit(Event::Progress(format!(
            "router {}: routing `{}` ({}) to {} and {}",
            opts.id,
            routing.exchange,
            Addressing::new(&backend.devices.commands).binding_key(),
            regions
                .iter()
                .map(|r| delivery::region_exchange(r))
                .collect::<Vec<_>>()
                .join(", "),
            delivery::BROADCAST_EXCHANGE
        )));

        let result = self
            .route(&amqp, commands, &shared, opts, shutdown, stopped)
            .await;
        for task in learning {
            task.abort();
        }
        server.abort();
        amqp.close().await;
        result.map(|()| RouterSummary {
            stats: shared.snapshot(),
        })
    }

    /// The router's login at the backend (its own user, backend.yaml's `credentials.router`).
    fn router_login(&self) -> Result<AmqpLogin> {
        let backend = &self.stack.backend.spec;
        let creds = backend.credentials.router.as_ref().ok_or_else(|| {
            Error::Usage(
                "backend.yaml has no `credentials.router`: the router logs in with it".into(),
            )
        })?;
        let address = self.backend_address()?;
        let ca_pem = self.ca_for(&address, &backend.tls.backend_ca)?;
        let password = creds
            .password
            .resolve(&self.stack.dir)
            .map_err(|e| Error::Failed(e.to_string()))?;
        Ok(AmqpLogin {
            host: address.host,
            port: address.amqp_port,
            user: creds.user.clone(),
            password,
            ca_pem,
            identity: None,
        })
    }

    async fn declare_router(&self, amqp: &Amqp, opts: &RouterOptions) -> Result<Inboxes> {
        let backend = &self.stack.backend.spec;
        let routing = &backend.routing;
        let failed = |e: crate::broker::amqp::AmqpError| Error::Failed(e.to_string());
        let mut exchanges: Vec<String> = self
            .gateways()
            .map(|g| delivery::region_exchange(&g.region))
            .collect();
        exchanges.push(delivery::BROADCAST_EXCHANGE.to_string());
        exchanges.push(delivery::EVENTS_EXCHANGE.to_string());
        amqp.declare_exchanges(&exchanges).await.map_err(failed)?;
        let commands = QueueSpec {
            name: delivery::ROUTER_QUEUE.to_string(),
            durable: true,
            bindings: vec![(
                routing.exchange.clone(),
                Addressing::new(&backend.devices.commands).binding_key(),
            )],
        };
        let own = |what: &str| format!("{}{what}.{}", delivery::ROUTER_QUEUE_PREFIX, opts.id);
        let events = QueueSpec {
            name: own("events"),
            durable: false,
            bindings: vec![(
                delivery::EVENTS_EXCHANGE.to_string(),
                "connection.*".to_string(),
            )],
        };
        let telemetry = routing.learn_from_telemetry.then(|| QueueSpec {
            name: own("telemetry"),
            durable: false,
            bindings: self.telemetry_sources(),
        });
        for q in [Some(&commands), Some(&events), telemetry.as_ref()]
            .into_iter()
            .flatten()
        {
            amqp.declare_queue(q).await.map_err(failed)?;
        }
        // Learning first: what is routed right after start should find what is known.
        let events = amqp.consume(&events.name, false, 0).await.map_err(failed)?;
        let telemetry = match &telemetry {
            Some(q) => Some(amqp.consume(&q.name, false, 0).await.map_err(failed)?),
            None => None,
        };
        Ok(Inboxes { events, telemetry })
    }

    /// Where devices' telemetry arrives on the backend: the backend exchanges the gateways'
    /// region exchanges are bound into, with the telemetry layout's key.
    fn telemetry_sources(&self) -> Vec<(String, String)> {
        let key = Addressing::new(&self.stack.backend.spec.devices.telemetry).binding_key();
        let mut peers: Vec<String> = self
            .gateways()
            .flat_map(|g| g.federation.to_backend.iter().map(|x| x.peer().to_string()))
            .collect();
        peers.sort();
        peers.dedup();
        peers.into_iter().map(|p| (p, key.clone())).collect()
    }

    fn gateways(&self) -> impl Iterator<Item = &crate::spec::GatewaySpec> {
        self.stack.gateways.iter().map(|g| &g.spec)
    }

    /// The routing loop: batches of what is ready (up to the window, at most one message per
    /// device, so a retried message never falls behind a later one of its device), republished,
    /// then their confirms awaited, then acknowledged together.
    async fn route(
        &self,
        amqp: &Amqp,
        mut inbox: crate::broker::amqp::Inbox,
        shared: &Shared,
        opts: &RouterOptions,
        shutdown: impl Future<Output = ()>,
        mut learner_stopped: tokio::sync::watch::Receiver<Option<&'static str>>,
    ) -> Result<()> {
        let addressing = Addressing::new(&self.stack.backend.spec.devices.commands);
        let mut shutdown = std::pin::pin!(shutdown);
        let mut last_housekeeping = Instant::now();
        let mut held: Option<Message> = None;
        loop {
            let first = match held.take() {
                Some(m) => m,
                None => tokio::select! {
                    m = inbox.next() => received(m)?,
                    () = &mut shutdown => return Ok(()),
                    _ = learner_stopped.changed() => return Err(learner_gone(&learner_stopped)),
                },
            };
            let key = |m: &Message| {
                addressing
                    .device(&m.routing_key)
                    .unwrap_or(&m.routing_key)
                    .to_string()
            };
            let mut devices = std::collections::BTreeSet::from([key(&first)]);
            let mut batch = vec![first];
            while batch.len() < usize::from(opts.window.max(1)) {
                let Some(m) = inbox.ready() else { break };
                let m = received(Some(m))?;
                if !devices.insert(key(&m)) {
                    // Its device has a message in this batch: it goes in the next one.
                    held = Some(m);
                    break;
                }
                batch.push(m);
            }
            let done = tokio::select! {
                done = self.route_batch(amqp, &batch, &addressing, shared) => done?,
                () = &mut shutdown => false,
            };
            if !done {
                // Stopped in the middle: nothing of the batch is acknowledged; it is delivered
                // again (to this router's successor), duplicates rather than losses.
                return Ok(());
            }
            if let Some(last) = batch.last() {
                last.ack_through()
                    .await
                    .map_err(|e| Error::Failed(format!("acknowledging: {e}")))?;
            }
            if last_housekeeping.elapsed() > HOUSEKEEPING {
                last_housekeeping = Instant::now();
                let depth = amqp.depth(delivery::ROUTER_QUEUE).await.unwrap_or(0);
                let mut guard = shared.lock();
                guard.1.queue_messages = u64::from(depth);
                guard.0.expire(now_ms());
            }
        }
    }

    /// Republishes a batch (one message per device) and waits until each is confirmed and
    /// routed: one whose region exchange took nothing goes to `gw.all`, one refused or not
    /// routed at all is tried again, alone, until it is. Returns whether the batch is done.
    async fn route_batch(
        &self,
        amqp: &Amqp,
        batch: &[Message],
        addressing: &Addressing,
        shared: &Shared,
    ) -> Result<bool> {
        let failed = |e: crate::broker::amqp::AmqpError| Error::Failed(e.to_string());
        let mut sent = Vec::with_capacity(batch.len());
        for m in batch {
            let now = now_ms();
            let (exchange, reason) = {
                let guard = shared.lock();
                match addressing.device(&m.routing_key) {
                    Some(device) => match guard.0.destination(device, now) {
                        Destination::Region(r) => (delivery::region_exchange(&r), None),
                        Destination::Broadcast(d) => (
                            delivery::BROADCAST_EXCHANGE.to_string(),
                            Some(stats::doubt_name(d)),
                        ),
                    },
                    None => (
                        delivery::BROADCAST_EXCHANGE.to_string(),
                        Some("unaddressed"),
                    ),
                }
            };
            let pending = amqp.republish(m, &exchange).await.map_err(failed)?;
            sent.push((m, exchange, reason, pending));
        }
        // Every confirm first: a return may come with any of them.
        let mut outcomes = Vec::with_capacity(sent.len());
        let mut returned = std::collections::BTreeSet::new();
        for (m, exchange, reason, pending) in sent {
            let outcome = pending.outcome().await;
            if let Outcome::Confirmed {
                returned: Some(key),
            } = &outcome
            {
                returned.insert(key.clone());
            }
            outcomes.push((m, exchange, reason, outcome));
        }
        for (m, mut exchange, mut reason, outcome) in outcomes {
            let mut routed = matches!(outcome, Outcome::Confirmed { .. })
                && !returned.contains(&(exchange.clone(), m.routing_key.clone()));
            let mut last = outcome;
            let mut delay = Duration::from_millis(200);
            while !routed {
                if !amqp.is_open() {
                    return Err(Error::Failed(
                        "the connection to the backend closed; unacknowledged messages will be \
                         delivered again"
                            .into(),
                    ));
                }
                if exchange != delivery::BROADCAST_EXCHANGE
                    && matches!(last, Outcome::Confirmed { .. })
                {
                    // The region's exchange took nothing (no gateway of it linked): every
                    // gateway.
                    exchange = delivery::BROADCAST_EXCHANGE.to_string();
                    reason = Some("unroutable");
                } else {
                    shared.lock().1.retries += 1;
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                // Alone in flight: its confirm and any return are its own.
                last = amqp
                    .republish(m, &exchange)
                    .await
                    .map_err(failed)?
                    .outcome()
                    .await;
                routed = matches!(last, Outcome::Confirmed { returned: None });
            }
            let mut guard = shared.lock();
            let stats = &mut guard.1;
            if m.redelivered {
                stats.redelivered += 1;
            }
            match (reason, delivery::region_of_exchange(&exchange)) {
                (None, Some(region)) => *stats.routed.entry(region.to_string()).or_default() += 1,
                (why, _) => {
                    *stats
                        .broadcast
                        .entry(why.unwrap_or("unknown").to_string())
                        .or_default() += 1
                }
            }
        }
        Ok(true)
    }
}

fn learner_gone(stopped: &tokio::sync::watch::Receiver<Option<&'static str>>) -> Error {
    Error::Failed(format!(
        "the router stopped learning from {} (its queue or consumer ended); unacknowledged \
         messages will be delivered again",
        stopped.borrow().unwrap_or("a source")
    ))
}

struct Inboxes {
    events: crate::broker::amqp::Inbox,
    telemetry: Option<crate::broker::amqp::Inbox>,
}

fn received(m: Option<std::result::Result<Message, String>>) -> Result<Message> {
    match m {
        Some(Ok(m)) => Ok(m),
        Some(Err(e)) => Err(Error::Failed(format!("consuming: {e}"))),
        None => Err(Error::Failed(
            "the backend ended the router's consumer (queue deleted or connection lost)".into(),
        )),
    }
}

impl Engine {
    /// Asks a running router (at `addr`, default loopback and `routing.metrics_port`) where
    /// `device`'s next message goes.
    pub async fn router_lookup(
        &self,
        addr: Option<SocketAddr>,
        device: &str,
    ) -> Result<serde_json::Value> {
        if !crate::spec::tls::valid_device_id(device) {
            return Err(Error::Usage(format!(
                "`{device}` is not a device id (letters, digits, `_` and `-`, up to 64)"
            )));
        }
        let port = self.stack.backend.spec.routing.metrics_port;
        let addr = addr.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], port)));
        let body = crate::broker::router_api::get(addr, &format!("locations/{device}"))
            .await
            .map_err(Error::Failed)?;
        serde_json::from_str(&body).map_err(|e| Error::Failed(format!("{addr}: {e}")))
    }
}

impl Engine {
    /// The counters of the router at `addr` (default loopback), for `gwctl status`: `None`
    /// with the stack in broadcast mode, the reason when it does not answer.
    pub async fn router_stats(
        &self,
        addr: Option<SocketAddr>,
    ) -> Option<std::result::Result<stats::Stats, String>> {
        let routing = &self.stack.backend.spec.routing;
        if routing.mode != crate::spec::model::RoutingMode::Router {
            return None;
        }
        let addr = addr.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], routing.metrics_port)));
        Some(
            crate::broker::router_api::get(addr, "stats")
                .await
                .and_then(|body| serde_json::from_str(&body).map_err(|e| format!("{addr}: {e}"))),
        )
    }
}
