//! Health gates between the steps of `upgrade`: what must hold in a gateway region before a
//! broker is touched and after each step. They ask the brokers themselves (over the backend
//! network, or where the endpoint file says), the backend, and Route53.

use std::time::{Duration, Instant};

use super::Engine;
use super::events::{Event, Events};
use crate::error::{Error, Result};
use crate::spec::GatewaySpec;

/// What a broker gate needs and an emulated cloud without a sandbox cannot give.
const NO_BROKER: &str = "gwctl reaches brokers' management API over the backend network; on an \
     emulator, run `gwctl sandbox follow` and pass its endpoint file (--broker-endpoints)";

/// Which gates to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gates {
    /// Every gate.
    All,
    /// Only that every broker instance runs, answers and is a running member of the cluster
    /// (a roll resumed after its old broker was stopped: that broker is still a member that
    /// is down, and its address's health check may fail, until it is deleted).
    Answering,
}

/// A region's running brokers and the management clients of those that answer.
pub(super) struct Answering {
    pub running: usize,
    pub clients: Vec<crate::broker::Client>,
    pub failures: Vec<String>,
}

/// The result of checking a region's gates once.
pub struct GateCheck {
    /// Whether any broker answered at all.
    pub reached: bool,
    pub failures: Vec<String>,
    /// Addresses served by Route53 that an MQTT round trip went through.
    pub probed: usize,
}

impl Engine {
    /// Checks every gate of a gateway region once: each running broker instance answers; the
    /// cluster's running nodes are exactly those brokers; no resource alarm; every quorum
    /// queue has all its replicas online, as many as the cluster allows up to three;
    /// federation links running both ways; Route53's health checks healthy; an MQTT-over-TLS
    /// round trip through every address Route53 serves for the region.
    pub async fn check_gates(
        &self,
        gw: &GatewaySpec,
        which: Gates,
        cluster: Option<&str>,
    ) -> Result<GateCheck> {
        let Answering {
            running,
            clients,
            mut failures,
        } = self.answering(gw, cluster).await?;
        if running < usize::from(gw.brokers.count) {
            failures.push(format!(
                "{running} of {} brokers running{}",
                gw.brokers.count,
                cluster.map_or(String::new(), |c| format!(" in cluster {c}"))
            ));
        }
        let Some(any) = clients.first() else {
            return Ok(GateCheck {
                reached: false,
                failures,
                probed: 0,
            });
        };
        let failed = |what: &str, e: crate::broker::BrokerError| format!("{what}: {e}");
        match any.nodes().await {
            Ok(nodes) => {
                let up = nodes.iter().filter(|(_, r)| *r).count();
                // A stopped broker still to be deleted is a member that is down.
                let down: Vec<&str> = nodes
                    .iter()
                    .filter(|(_, r)| !r && which == Gates::All)
                    .map(|(n, _)| n.as_str())
                    .collect();
                if up != running || !down.is_empty() {
                    failures.push(format!(
                        "cluster membership: {up} nodes running for {} running broker \
                         instances{}",
                        running,
                        if down.is_empty() {
                            String::new()
                        } else {
                            format!("; members down: {}", down.join(", "))
                        }
                    ));
                }
            }
            Err(e) => failures.push(failed("cluster membership", e)),
        }
        if which == Gates::Answering {
            return Ok(GateCheck {
                reached: true,
                failures,
                probed: 0,
            });
        }
        match any.alarms_in_effect().await {
            Ok(Some(reason)) => failures.push(format!("resource alarm: {reason}")),
            Ok(None) => {}
            Err(e) => failures.push(failed("alarms", e)),
        }
        // As many as the rendered reconciliation keeps (a replacement beside a broker does
        // not raise it).
        let wanted =
            usize::from(gw.brokers.count.min(crate::render::QUORUM_GROUP_SIZE)).min(running);
        match any.quorum_queues().await {
            Ok(queues) => {
                let short: Vec<String> = queues
                    .iter()
                    .filter(|q| q.online.len() < q.members.len() || q.members.len() < wanted)
                    .map(|q| {
                        format!(
                            "{} ({}/{} online, {wanted} wanted)",
                            q.name,
                            q.online.len(),
                            q.members.len()
                        )
                    })
                    .collect();
                if !short.is_empty() {
                    failures.push(format!(
                        "quorum queues short of replicas: {}",
                        summarize(&short)
                    ));
                }
            }
            Err(e) => failures.push(failed("quorum queues", e)),
        }
        let gated = cluster.map_or_else(|| gw.cluster_name(), str::to_string);
        failures.extend(self.link_failures(gw, any, &gated, true).await);
        let (probed, served) = self.route53_failures(gw).await?;
        failures.extend(served);
        Ok(GateCheck {
            reached: true,
            failures,
            probed,
        })
    }

    /// The region's broker instances (those of `cluster`, if given): how many run, a
    /// management client of each running one that answers, and what fails.
    pub(super) async fn answering(
        &self,
        gw: &GatewaySpec,
        cluster: Option<&str>,
    ) -> Result<Answering> {
        let mut failures = Vec::new();
        let instances: Vec<_> = self
            .broker_instances(&gw.region)
            .await?
            .into_iter()
            .filter(|i| cluster.is_none_or(|c| i.cluster == c))
            .collect();
        for i in instances.iter().filter(|i| i.state == "pending") {
            failures.push(format!("{} ({}) is pending", i.slot, i.id));
        }
        let running: Vec<_> = instances.iter().filter(|i| i.state == "running").collect();
        let mut clients = Vec::new();
        for i in &running {
            let Some(address) = self.instance_address(gw, &i.id, i.private_ip.as_deref()) else {
                failures.push(format!("{} ({}) has no address yet", i.slot, i.id));
                continue;
            };
            let client = self.gateway_client(gw, &address)?;
            match client.overview().await {
                Ok(_) => clients.push(client),
                Err(e) => failures.push(format!("{} ({}) does not answer: {e}", i.slot, i.id)),
            }
        }
        Ok(Answering {
            running: running.len(),
            clients,
            failures,
        })
    }

    /// Federation links of the region: the gateway's from the backend, and with `both_ways`
    /// the backend's from the gateway.
    pub(super) async fn link_failures(
        &self,
        gw: &GatewaySpec,
        gateway: &crate::broker::Client,
        cluster: &str,
        both_ways: bool,
    ) -> Vec<String> {
        let mut failures = Vec::new();
        /// Every named upstream has a running link; no link of the side is in error (the
        /// old cluster's draining link, while a region moves blue-green, counts for nothing
        /// but must not fail either).
        fn check(
            side: &str,
            links: Vec<crate::broker::FederationLink>,
            names: &[String],
        ) -> Option<String> {
            let running = names
                .iter()
                .filter(|n| {
                    links
                        .iter()
                        .any(|l| &l.upstream == *n && l.status == "running")
                })
                .count();
            let bad: Vec<String> = links
                .iter()
                .filter(|l| l.status != "running")
                .map(|l| format!("{} {}", l.upstream, l.status))
                .collect();
            (running < names.len() || !bad.is_empty()).then(|| {
                format!(
                    "federation {side}: {running} of {} links running{}",
                    names.len(),
                    if bad.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", summarize(&bad))
                    }
                )
            })
        }
        let from_backend: Vec<String> = gw
            .federation
            .from_backend
            .iter()
            .map(|x| crate::model::federation::gateway_upstream_name(&x.exchange))
            .collect();
        match gateway.federation_links().await {
            Ok(links) => failures.extend(check(
                "backend->gateway",
                links
                    .into_iter()
                    .filter(|l| l.upstream.starts_with("backend."))
                    .collect(),
                &from_backend,
            )),
            Err(e) => failures.push(format!("federation links on the gateway: {e}")),
        }
        if both_ways && self.scope.federation() {
            let prefix = format!("gw.{}.", gw.region);
            match self.backend_client() {
                Ok(backend) => match backend.federation_links().await {
                    Ok(links) => failures.extend(check(
                        "gateway->backend",
                        links
                            .into_iter()
                            .filter(|l| l.upstream.starts_with(&prefix))
                            .collect(),
                        &gw.federation
                            .to_backend
                            .iter()
                            .map(|x| {
                                crate::model::federation::cluster_upstream_name(
                                    &gw.region,
                                    &x.exchange,
                                    cluster,
                                )
                            })
                            .collect::<Vec<_>>(),
                    )),
                    Err(e) => failures.push(format!("federation links on the backend: {e}")),
                },
                Err(e) => failures.push(format!("the backend: {e}")),
            }
        }
        failures
    }

    /// Route53's health checks of the region's brokers, as Route53 reports them now, and an
    /// MQTT round trip to every address it serves for the region (`engine/probe.rs`): how
    /// many addresses the round trip went through, and what fails.
    async fn route53_failures(&self, gw: &GatewaySpec) -> Result<(usize, Vec<String>)> {
        let work = self.plan_region(Some(gw), &gw.region).await?;
        let Some(plan) = &work.dns else {
            return Ok((0, Vec::new()));
        };
        let served = super::dns::served_by_plan(&work.aws, &self.stack, plan).await?;
        let mut failures: Vec<String> = served
            .checks
            .iter()
            .filter(|c| !c.healthy)
            .map(|c| {
                format!(
                    "Route53 health check {} ({}): {} checkers report healthy",
                    c.name, c.target, c.checkers
                )
            })
            .collect();
        let (probed, mqtt) = self.mqtt_failures(gw, &work, &served).await;
        failures.extend(mqtt);
        Ok((probed, failures))
    }

    /// Fails, saying why, when no broker of the region answers at all.
    pub async fn check_brokers_reachable(&self, gw: &GatewaySpec) -> Result<()> {
        let check = self.check_gates(gw, Gates::Answering, None).await?;
        if check.reached {
            return Ok(());
        }
        Err(Error::Failed(format!(
            "{}: gates before: no broker answers ({}); {NO_BROKER}",
            gw.region,
            summarize(&check.failures)
        )))
    }

    /// Waits until every gate of the region passes, at most `timeout`, reporting what still
    /// fails. A region where no broker answers at all is refused at once: nothing to wait for.
    pub async fn wait_gates(
        &self,
        gw: &GatewaySpec,
        when: &str,
        which: Gates,
        cluster: Option<&str>,
        timeout: Duration,
        events: &dyn Events,
    ) -> Result<()> {
        let region = gw.region.as_str();
        let start = Instant::now();
        let mut delay = Duration::from_secs(1);
        let mut reached_once = false;
        loop {
            // A failed call (AWS throttling, the backend restarting) is a gate not yet
            // passed, asked again, not the end of the roll.
            let (check, completed) = match self.check_gates(gw, which, cluster).await {
                Ok(c) => (c, true),
                Err(e) => (
                    GateCheck {
                        reached: false,
                        failures: vec![e.to_string()],
                        probed: 0,
                    },
                    false,
                ),
            };
            reached_once |= check.reached;
            if check.reached && check.failures.is_empty() {
                let probed = match check.probed {
                    0 => String::new(),
                    n => format!("; MQTT round trip through the {n} served address(es)"),
                };
                events.emit(Event::Done(format!(
                    "{region}: gates {when}: passed ({} s{probed})",
                    start.elapsed().as_secs()
                )));
                return Ok(());
            }
            // Refused at once only when a complete check found no broker of the region
            // answering (a new cluster's brokers are waited for: they boot).
            if completed && !reached_once && cluster.is_none() {
                return Err(Error::Failed(format!(
                    "{region}: gates {when}: no broker answers ({}); {NO_BROKER}",
                    summarize(&check.failures)
                )));
            }
            if start.elapsed() > timeout {
                return Err(Error::Failed(format!(
                    "{region}: gates {when} still fail after {} s: {}",
                    timeout.as_secs(),
                    check.failures.join("; ")
                )));
            }
            events.emit(Event::Progress(format!(
                "{region}: gates {when}: waiting ({} s): {}",
                start.elapsed().as_secs(),
                summarize(&check.failures)
            )));
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(10));
        }
    }
}

/// The first few of a list, and how many more.
fn summarize(items: &[String]) -> String {
    const SHOWN: usize = 3;
    let mut s = items
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > SHOWN {
        s.push_str(&format!(" and {} more", items.len() - SHOWN));
    }
    s
}
