//! Moving a gateway region to a new RabbitMQ cluster (blue-green), where its nodes cannot
//! join the running cluster: a series jump such as 3.10 → 4.0, which RabbitMQ does not
//! support in place. The region files name the new cluster (`cluster_name`); its brokers find
//! each other by that tag, never the old ones. Following RabbitMQ's blue-green guide
//! (rabbitmq.com/docs/blue-green-upgrade), adapted to devices with sessions:
//!
//! 1. the new cluster's brokers are launched beside the old ones and gated alone;
//! 2. the backend federates from both clusters into the region's exchange (one upstream set),
//!    so what devices publish reaches the backend wherever they are connected;
//! 3. devices' sessions (queue and bindings) are copied to the new cluster, so a device that
//!    reconnects there finds its subscriptions (RabbitMQ 4.0 reuses an existing session queue
//!    and recovers subscriptions from its bindings);
//! 4. each slot's Elastic IP moves to the new broker: Route53 answers the same addresses,
//!    now served by the new cluster; the old cluster's MQTT connections are closed and
//!    devices reconnect;
//! 5. the old cluster stops receiving from the backend (its link's policy goes), and what its
//!    session queues still hold is moved to the new cluster; what it buffered for the backend
//!    drains through the backend's link to it;
//! 6. the old brokers stop; their buffer on the backend (whose every message the new
//!    cluster's link received too) is deleted; the backend's links converge on the new
//!    cluster; the old instances are snapshotted and deleted.
//!
//! Every step looks at what is there first, so `upgrade` resumes a killed run. Commands sent
//! while both clusters receive from the backend (from step 3 to step 5, seconds to minutes)
//! reach a device twice: at-least-once, as QoS 1 promises; none is lost.

use std::time::{Duration, Instant};

use super::Engine;
use super::events::{Event, Events};
use super::gates::Gates;
use super::upgrade::Step;
use crate::broker::Client;
use crate::broker::sessions::SESSION_PREFIX;
use crate::error::{Error, Result};
use crate::model::federation::{buffer_name, from_backend_exchange, gateway_link_policies};
use crate::model::resources::{CLUSTER_PART, DRAINED_PART, Key, Observed};
use crate::render::definitions::VHOST;
use crate::spec::GatewaySpec;

/// How long the new cluster may take to pass its gates, and old buffers to drain.
const SETTLE: Duration = Duration::from_secs(300);

/// How long closed device connections may take to be gone from the old cluster.
const CLOSE: Duration = Duration::from_secs(60);

/// How long the new cluster's brokers may take to serve a probe device.
const PROBE_WAIT: Duration = Duration::from_secs(60);

/// Statistics behind a queue's message count are refreshed every 5 s: a queue is empty only
/// when it reads 0 twice, this far apart.
const STATS_INTERVAL: Duration = Duration::from_secs(6);

impl Engine {
    /// Moves a region from cluster `from` to the one its files name (see the module's
    /// comment); `steps` are its held broker steps.
    pub(super) async fn blue_green(
        &self,
        gw: &GatewaySpec,
        steps: &[&Step],
        from: &str,
        broker_wait: Duration,
        events: &dyn Events,
    ) -> Result<()> {
        let region = gw.region.as_str();
        let to = gw.cluster_name();
        let failed = |e: crate::cloud::CloudError| Error::Failed(format!("{region}: {e}"));
        let work = self.plan_region(Some(gw), region).await?;
        let old: Vec<&Observed> = old_brokers(&work.plan, from);
        let old_running = old
            .iter()
            .any(|o| matches!(o.state.as_deref(), Some("running" | "pending")));
        // Old brokers stopped by someone else still hold their devices' sessions: only those
        // this move drained may go.
        if !old_running && let Some(o) = old.iter().find(|o| !o.parts.contains_key(DRAINED_PART)) {
            return Err(Error::Failed(format!(
                "{region}: {} ({}) of {from} is {} but was not drained by `upgrade`: its \
                 devices' queued commands would go with it. Start the old brokers again, then \
                 run `gwctl upgrade {region}`; nothing was changed",
                o.key,
                o.id,
                o.state.as_deref().unwrap_or("stopped")
            )));
        }
        let new_exist = self
            .broker_instances(region)
            .await?
            .iter()
            .any(|i| i.cluster == to);
        if !new_exist {
            self.wait_gates(gw, "before", Gates::All, Some(from), SETTLE, events)
                .await?;
        }

        // 1. The new cluster, every slot at once: its nodes find only each other.
        for step in steps {
            let Step::Broker { key, action, .. } = step else {
                continue;
            };
            if *action != "replace" || new_broker(&work.plan, key, &to).is_some() {
                continue;
            }
            let desired = work
                .plan
                .changes
                .iter()
                .filter(|c| &c.key == key)
                .find_map(|c| c.after.as_ref())
                .ok_or_else(|| Error::Failed(format!("{region}: {key} is no longer declared")))?;
            let new = work
                .aws
                .create(desired, &super::roll::kept_ids(&work.plan))
                .await
                .map_err(failed)?;
            events.emit(Event::Done(format!(
                "{region}: {key} of cluster {to}: {} launched",
                new.id
            )));
        }
        self.wait_gates(
            gw,
            &format!("of the new cluster {to}"),
            Gates::Answering,
            Some(&to),
            broker_wait,
            events,
        )
        .await?;

        // 2. The backend federates from both clusters.
        self.converge_federation(gw, events).await?;
        self.wait_gates(
            gw,
            &format!("of the new cluster {to}"),
            Gates::All,
            Some(&to),
            SETTLE,
            events,
        )
        .await?;
        // Devices will see what a probe sees: each new broker at its own address.
        self.wait_cluster_probe(gw, &to, broker_wait.max(PROBE_WAIT), events)
            .await?;
        let green = self.first_answering(gw, &to).await?;

        if old_running {
            let blue = self.first_answering(gw, from).await.map_err(|e| {
                Error::Failed(format!(
                    "{e}: the old cluster's brokers run but none answers; its devices' \
                     sessions cannot be carried over. Nothing of the old cluster was changed"
                ))
            })?;
            // Everything the backend sent before the new cluster's links ran has reached
            // the old cluster once the old cluster's buffer there has been empty since: from
            // then on the old links can stop at any moment without losing a command.
            self.wait_old_buffers_on_backend(gw, from).await?;
            // 3. Sessions. The new cluster's links from the backend pause meanwhile (their
            // buffers there keep what arrives): commands reach a device's new session only
            // after what waited in its old one.
            self.pause_links_from_backend(gw, &green, &to).await?;
            let copied = copy_sessions(&blue, &green)
                .await
                .map_err(|e| Error::Failed(format!("{region}: copying sessions: {e}")))?;
            events.emit(Event::Done(format!(
                "{region}: {copied} device session(s) copied to {to}"
            )));

            // 4. Addresses, then the old cluster's device connections.
            let work = self.plan_region(Some(gw), region).await?;
            let mut ids = super::roll::kept_ids(&work.plan);
            for o in old_brokers(&work.plan, from) {
                if let Some(new) = new_broker(&work.plan, &o.key, &to) {
                    ids.insert(o.key.clone(), new.id.clone());
                    self.move_address(&work, &o.key, &o.id, &ids, events)
                        .await?;
                }
            }
            let closed = close_device_connections(&blue)
                .await
                .map_err(|e| Error::Failed(format!("{region}: cluster {from}: {e}")))?;
            events.emit(Event::Done(format!(
                "{region}: {closed} device connection(s) of {from} closed: devices reconnect \
                 to the addresses Route53 serves, now {to}'s"
            )));

            // 5. The old cluster receives nothing more; what it holds moves on. Sessions are
            // copied again first: a device may have subscribed until its connection closed.
            // Every command sent from now on reaches the new cluster only.
            self.pause_links_from_backend(gw, &blue, from).await?;
            copy_sessions(&blue, &green)
                .await
                .map_err(|e| Error::Failed(format!("{region}: copying sessions: {e}")))?;
            let moved = move_session_messages(&blue, &green)
                .await
                .map_err(|e| Error::Failed(format!("{region}: moving sessions' messages: {e}")))?;
            events.emit(Event::Done(format!(
                "{region}: {moved} queued command(s) moved from {from}'s sessions to {to}"
            )));
            wait_empty(&blue, "federation: ", STATS_INTERVAL, SETTLE)
                .await
                .map_err(|e| {
                    Error::Failed(format!(
                        "{region}: what {from} buffered for the backend: {e}; its brokers were \
                     not stopped. Run `gwctl upgrade {region}` again"
                    ))
                })?;
            events.emit(Event::Done(format!(
                "{region}: {from}'s buffers for the backend are empty"
            )));
        }
        self.resume_links_from_backend(gw, &green, &to).await?;
        if old_running {
            // 6. The old brokers stop (their units drain them).
            let work = self.plan_region(Some(gw), region).await?;
            for o in old_brokers(&work.plan, from) {
                if o.state.as_deref() == Some("running") {
                    work.aws.mark_drained(&o.id).await.map_err(failed)?;
                    work.aws.stop_instance(&o.id).await.map_err(failed)?;
                    events.emit(Event::Progress(format!(
                        "{region}: stopping {} ({}) of {from}",
                        o.key, o.id
                    )));
                }
            }
        }
        self.delete_old_buffers(gw, from, events).await?;
        self.converge_federation(gw, events).await?;
        let work = self.plan_region(Some(gw), region).await?;
        for o in old_brokers(&work.plan, from) {
            events.emit(Event::Progress(format!(
                "{region}: snapshotting the data volume of {} ({}) of {from} and deleting it",
                o.key, o.id
            )));
            work.aws.delete(o).await.map_err(failed)?;
            events.emit(Event::Done(format!(
                "{region}: {} ({}) deleted",
                o.key, o.id
            )));
        }
        self.wait_gates(gw, "after", Gates::All, Some(&to), SETTLE, events)
            .await
    }

    /// Waits until a probe device's round trip passes through every running broker of
    /// `cluster` at its own address (at most `timeout`).
    async fn wait_cluster_probe(
        &self,
        gw: &GatewaySpec,
        cluster: &str,
        timeout: Duration,
        events: &dyn Events,
    ) -> Result<()> {
        let region = gw.region.as_str();
        let start = Instant::now();
        loop {
            let (probed, failures) = self.cluster_mqtt_failures(gw, cluster).await?;
            if failures.is_empty() {
                events.emit(Event::Done(format!(
                    "{region}: MQTT round trip through the {probed} broker(s) of {cluster}"
                )));
                return Ok(());
            }
            if start.elapsed() > timeout {
                return Err(Error::Failed(format!(
                    "{region}: the new cluster {cluster} does not serve devices after {} s: \
                     {}; devices still use the old cluster, nothing of it was changed",
                    timeout.as_secs(),
                    failures.join("; ")
                )));
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// Stops the links of cluster `cluster` from the backend: their policies go. The new
    /// cluster's buffers on the backend stay (`resource-cleanup-mode: never`) and fill until
    /// [`Engine::resume_links_from_backend`]; the old cluster's are deleted with it.
    async fn pause_links_from_backend(
        &self,
        gw: &GatewaySpec,
        client: &Client,
        cluster: &str,
    ) -> Result<()> {
        for p in gateway_link_policies(gw) {
            client
                .delete_policy(VHOST, &p.name)
                .await
                .map_err(|e| Error::Failed(format!("{}: cluster {cluster}: {e}", gw.region)))?;
        }
        Ok(())
    }

    /// Puts back the policies [`Engine::pause_links_from_backend`] took away (as the
    /// cluster's definitions declare them); its links resume from their buffers.
    async fn resume_links_from_backend(
        &self,
        gw: &GatewaySpec,
        client: &Client,
        cluster: &str,
    ) -> Result<()> {
        for p in gateway_link_policies(gw) {
            client
                .put_policy(VHOST, &p)
                .await
                .map_err(|e| Error::Failed(format!("{}: cluster {cluster}: {e}", gw.region)))?;
        }
        Ok(())
    }

    /// A management client of a broker of `cluster` that answers.
    async fn first_answering(&self, gw: &GatewaySpec, cluster: &str) -> Result<Client> {
        let mut answering = self.answering(gw, Some(cluster)).await?;
        if answering.clients.is_empty() {
            return Err(Error::Failed(format!(
                "{}: no broker of cluster {cluster} answers ({})",
                gw.region,
                answering.failures.join("; ")
            )));
        }
        Ok(answering.clients.swap_remove(0))
    }

    /// Waits until the old cluster's buffers on the backend are empty (read twice, a
    /// statistics interval apart); the new cluster's links run meanwhile.
    async fn wait_old_buffers_on_backend(&self, gw: &GatewaySpec, from: &str) -> Result<()> {
        if !self.scope.federation() {
            return Ok(());
        }
        let region = gw.region.as_str();
        let backend = self.backend_client()?;
        // A count read now is at least a statistics interval younger than the new cluster's
        // links (running since its gates passed): a 0 is a moment since they run.
        tokio::time::sleep(STATS_INTERVAL).await;
        for x in &gw.federation.from_backend {
            let buffer = buffer_name(x.peer(), from, &from_backend_exchange(&x.exchange));
            wait_empty(&backend, &buffer, Duration::ZERO, SETTLE)
                .await
                .map_err(|e| {
                    Error::Failed(format!(
                        "{region}: {from}'s buffer on the backend: {e}; devices still use the old \
                     cluster. Run `gwctl upgrade {region}` again"
                    ))
                })?;
        }
        Ok(())
    }

    /// Deletes the old cluster's buffers on the backend: its links are gone, and everything
    /// they held was also sent to the new cluster's.
    async fn delete_old_buffers(
        &self,
        gw: &GatewaySpec,
        from: &str,
        events: &dyn Events,
    ) -> Result<()> {
        if !self.scope.federation() {
            return Ok(());
        }
        let backend = self.backend_client()?;
        for x in &gw.federation.from_backend {
            let buffer = buffer_name(x.peer(), from, &from_backend_exchange(&x.exchange));
            let held = backend
                .queues(VHOST, &buffer)
                .await
                .map_err(|e| Error::Failed(format!("{}: the backend: {e}", gw.region)))?;
            if let Some((_, messages)) = held.iter().find(|(n, _)| *n == buffer) {
                backend
                    .delete_queue(VHOST, &buffer)
                    .await
                    .map_err(|e| Error::Failed(format!("{}: the backend: {e}", gw.region)))?;
                events.emit(Event::Done(format!(
                    "{}: the backend's buffer `{buffer}` of {from} deleted ({messages} \
                     message(s), each also sent to the new cluster)",
                    gw.region
                )));
            }
        }
        Ok(())
    }
}

/// The brokers of cluster `cluster` the plan found (any state).
fn old_brokers<'a>(plan: &'a crate::plan::RegionPlan, cluster: &str) -> Vec<&'a Observed> {
    plan.changes
        .iter()
        .filter(|c| c.key.is_broker())
        .filter_map(|c| c.before.as_ref())
        .filter(|b| b.parts.get(CLUSTER_PART).map(String::as_str) == Some(cluster))
        .collect()
}

/// The broker of cluster `cluster` in slot `key`, if one runs or boots.
fn new_broker<'a>(
    plan: &'a crate::plan::RegionPlan,
    key: &Key,
    cluster: &str,
) -> Option<&'a Observed> {
    plan.changes
        .iter()
        .filter(|c| &c.key == key)
        .filter_map(|c| c.before.as_ref())
        .find(|b| {
            b.parts.get(CLUSTER_PART).map(String::as_str) == Some(cluster)
                && matches!(b.state.as_deref(), Some("running" | "pending"))
        })
}

/// Copies the durable session queues (with their arguments) and their bindings from `blue`
/// to `green`; returns how many. A queue already there is kept as it is (RabbitMQ 4.0 may
/// have rewritten its expiry when its device came back); missing bindings are added.
async fn copy_sessions(blue: &Client, green: &Client) -> std::result::Result<usize, String> {
    let sessions = durable_sessions(blue).await?;
    let there: Vec<String> = green
        .queue_infos(VHOST, SESSION_PREFIX)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|q| q.name)
        .collect();
    for q in &sessions {
        if !there.contains(&q.name) {
            green
                .declare_queue(VHOST, &q.name, &q.arguments)
                .await
                .map_err(|e| e.to_string())?;
        }
        for b in blue
            .queue_bindings(VHOST, &q.name)
            .await
            .map_err(|e| e.to_string())?
        {
            green
                .bind_queue(VHOST, &b, &q.name)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(sessions.len())
}

/// Sessions that outlive a connection: the QoS 1 queues of devices connected with clean
/// session off (QoS 0 subscriptions are at most once, and their queues go with the
/// connection).
async fn durable_sessions(
    c: &Client,
) -> std::result::Result<Vec<crate::broker::sessions::QueueInfo>, String> {
    Ok(c.queue_infos(VHOST, SESSION_PREFIX)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|q| q.name.ends_with("qos1") && !q.auto_delete)
        .collect())
}

/// Closes every MQTT connection of the cluster and waits until none is left; returns how
/// many were closed.
async fn close_device_connections(c: &Client) -> std::result::Result<usize, String> {
    let start = Instant::now();
    let mut closed = 0;
    loop {
        let open: Vec<_> = c
            .connections()
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|c| c.is_mqtt())
            .collect();
        if open.is_empty() {
            return Ok(closed);
        }
        if start.elapsed() > CLOSE {
            return Err(format!(
                "{} MQTT connection(s) still open {} s after being closed",
                open.len(),
                CLOSE.as_secs()
            ));
        }
        for conn in &open {
            c.close_connection(&conn.name)
                .await
                .map_err(|e| e.to_string())?;
        }
        if closed == 0 {
            closed = open.len();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Moves what the old cluster's session queues hold into the new cluster's; returns how
/// many messages moved.
async fn move_session_messages(blue: &Client, green: &Client) -> std::result::Result<u64, String> {
    let mut moved = 0;
    // Consumer counts are statistics too: a closed connection's consumer is listed for a
    // few seconds more.
    let start = Instant::now();
    let sessions = loop {
        let sessions = durable_sessions(blue).await?;
        let Some(busy) = sessions.iter().find(|q| q.consumers > 0) else {
            break sessions;
        };
        if start.elapsed() > CLOSE {
            return Err(format!(
                "{} has {} consumer(s) on the old cluster {} s after its devices' \
                 connections were closed: a device is still connected there",
                busy.name,
                busy.consumers,
                CLOSE.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    // Every queue, whatever its (periodically refreshed) count says: an empty one costs one
    // read.
    for q in sessions {
        moved += blue
            .move_messages(VHOST, &q.name, green)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(moved)
}

/// Waits until the queues named with `prefix` hold no message, read as 0 for `stable`
/// (a statistics interval, where a count older than the event waited for could read 0), at
/// most `timeout`.
async fn wait_empty(
    c: &Client,
    prefix: &str,
    stable: Duration,
    timeout: Duration,
) -> std::result::Result<(), String> {
    let start = Instant::now();
    let mut empty_since: Option<Instant> = None;
    loop {
        let held: u64 = c
            .queues(VHOST, prefix)
            .await
            .map_err(|e| e.to_string())?
            .iter()
            .map(|(_, m)| m)
            .sum();
        if held > 0 {
            empty_since = None;
        } else {
            let since = *empty_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= stable {
                return Ok(());
            }
        }
        if start.elapsed() > timeout {
            return Err(format!(
                "{held} message(s) still held after {} s",
                timeout.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
