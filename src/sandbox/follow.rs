//! The sandbox following the emulated cloud: one local node per broker instance AWS (moto)
//! reports, instead of one per region. A node boots only for an instance whose user-data the
//! region files render byte for byte (so the node runs what the instance was launched with),
//! from the same renderer with the sandbox's addressing: loopback ports, its TLS directory,
//! and the region's other local nodes to cluster with (`classic_config`, where EC2 brokers
//! find each other by tag). An instance that stops is handled as its rendered unit says
//! (drain, then stop), and a node whose instance is gone is forgotten by the others, as
//! peer discovery's node cleanup does on EC2. The endpoint file maps each instance to its
//! node; gwctl reads it and knows nothing else of the sandbox.

use std::path::Path;
use std::time::Duration;

use super::node::{self, LocalNode};
use super::{Install, NodePorts, Sandbox, SandboxError, node_name, tls};
use crate::engine::Engine;
use crate::engine::instances::BrokerInstance;
use crate::render::{self, Addressing, Cas, Discovery, Host};
use crate::spec::GatewaySpec;

/// A local node standing in for one broker instance.
pub struct InstanceNode {
    pub region: String,
    pub slot: String,
    /// Its cluster's node-name prefix: a region has two clusters while it moves blue-green.
    pub cluster: String,
    /// Its Erlang node name (without `@localhost`).
    pub name: String,
    pub ports: NodePorts,
    node: LocalNode,
}

/// What one pass of [`Sandbox::follow_once`] changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Followed {
    Booted {
        region: String,
        slot: String,
        id: String,
        node: String,
    },
    Stopped {
        region: String,
        slot: String,
        id: String,
        /// What AWS reports (`stopped`, or `gone` once terminated).
        state: String,
    },
    Refused {
        region: String,
        id: String,
        because: String,
    },
    Forgotten {
        region: String,
        id: String,
        node: String,
    },
}

impl std::fmt::Display for Followed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Followed::Booted {
                region,
                slot,
                id,
                node,
            } => write!(f, "{region}: {slot} {id}: node {node} ready"),
            Followed::Stopped {
                region,
                slot,
                id,
                state,
            } => write!(
                f,
                "{region}: {slot} {id} is {state}: node drained and stopped"
            ),
            Followed::Forgotten { region, id, node } => {
                write!(f, "{region}: {id} is gone: the cluster forgot {node}")
            }
            Followed::Refused {
                region,
                id,
                because,
            } => write!(f, "{region}: {id}: no node: {because}"),
        }
    }
}

const BOOT: Duration = Duration::from_secs(180);
const STOP_GRACE: Duration = Duration::from_secs(30);

impl Sandbox {
    /// Starts the backend node and each gateway region's device authorizer; gateway nodes
    /// come with the broker instances [`Sandbox::follow_once`] finds.
    pub async fn start_following(
        stack: &crate::spec::Stack,
        dir: &Path,
        install: &Install,
    ) -> Result<Sandbox, SandboxError> {
        Sandbox::start_mode(stack, dir, install, true).await
    }

    /// One pass (`engine` loaded from the region files as they are now): boots a node for every running broker instance without one, drains and
    /// stops the node of every instance no longer running, rewrites the endpoint file.
    pub async fn follow_once(
        &mut self,
        engine: &Engine,
        install: &Install,
    ) -> Result<Vec<Followed>, SandboxError> {
        // The region files as they are now: an instance launched after they changed runs
        // what they render now.
        self.stack = engine.stack.clone();
        let mut out = Vec::new();
        let result = self.follow_regions(engine, install, &mut out).await;
        // Whatever happened, the endpoint file and the process list say what runs.
        if !out.is_empty() {
            self.write_endpoints()?;
            self.record_pids()?;
        }
        result.map(|()| out)
    }

    async fn follow_regions(
        &mut self,
        engine: &Engine,
        install: &Install,
        out: &mut Vec<Followed>,
    ) -> Result<(), SandboxError> {
        let failed = |e: crate::error::Error| SandboxError::Failed(e.to_string());
        let gateways: Vec<GatewaySpec> =
            self.stack.gateways.iter().map(|g| g.spec.clone()).collect();
        for gw in &gateways {
            let listed = engine.broker_instances(&gw.region).await.map_err(failed)?;
            out.extend(self.stop_gone(gw, &listed).await);
            let new: Vec<&BrokerInstance> = listed
                .iter()
                .filter(|i| i.state == "running" && !self.instances.contains_key(&i.id))
                .collect();
            let mut bootable = Vec::new();
            let files = if new.is_empty() {
                render::Rendered::default()
            } else {
                // Files that do not render refuse every new instance, as a mismatch does.
                self.production_files(gw).unwrap_or_default()
            };
            for i in new {
                // A slot the files no longer render (a smaller count, awaiting `upgrade`)
                // is refused like any other mismatch, not an error of the whole pass.
                let rendered = files
                    .get(&format!("{}.user-data.yaml", i.slot))
                    .map(|f| f.contents.clone())
                    .unwrap_or_default();
                let digest = crate::model::sha256_hex(&rendered);
                // Refused once for these region files; looked at again when they change.
                if self.refused.get(&i.id) == Some(&digest) {
                    continue;
                }
                let have = engine
                    .instance_user_data(&gw.region, &i.id)
                    .await
                    .map_err(failed)?;
                if have == rendered {
                    bootable.push(i);
                } else {
                    self.refused.insert(i.id.clone(), digest);
                    out.push(Followed::Refused {
                        region: gw.region.clone(),
                        id: i.id.clone(),
                        because: format!(
                            "its user-data is not what the region files render for {} now \
                             (launched from other files)",
                            i.slot
                        ),
                    });
                }
            }
            if bootable.is_empty() {
                continue;
            }
            // A cluster without a node starts with one (it forms the cluster), then the others
            // join it: nodes booting at once, each finding none, would form a cluster each.
            let cluster = node_name(&gw.cluster_name());
            if !self
                .instances
                .values()
                .any(|n| n.region == gw.region && n.cluster == cluster)
            {
                let (first, rest) = bootable.split_at(1);
                self.boot(gw, first, install, out).await?;
                bootable = rest.to_vec();
            }
            if !bootable.is_empty() {
                self.boot(gw, &bootable, install, out).await?;
            }
        }
        Ok(())
    }

    /// The port of the device authorizer for the region's nodes of the series its files
    /// name. Each EC2 broker runs its own, in the mode of its RabbitMQ series; the sandbox runs
    /// one per region and series (two while a region moves blue-green from 3.10 to 4.0).
    async fn authorizer_for(&mut self, gw: &GatewaySpec) -> Result<u16, SandboxError> {
        let series = gw.brokers.series();
        if let Some(a) = self
            .authorizers
            .get(&gw.region)
            .filter(|a| a.series == series)
        {
            return Ok(a.port);
        }
        let key = format!("{}@{}", gw.region, series.as_str());
        if let Some(a) = self.authorizers.get(&key) {
            return Ok(a.port);
        }
        let port = node::free_ports(1)
            .map_err(|e| SandboxError::Io("allocating a port".into(), e))?
            .first()
            .copied()
            .unwrap_or_default();
        let dir = self
            .dir
            .join(&gw.region)
            .join(format!("authorizer-{}", series.as_str()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| SandboxError::Io(format!("creating {}", dir.display()), e))?;
        let a = super::authorizer::Authorizer::start(&self.stack.backend.spec, series, &dir, port)?;
        a.wait_ready(port, Duration::from_secs(10)).await?;
        self.authorizers.insert(key, a);
        Ok(port)
    }

    /// What the region files render for the region's EC2 brokers (each slot's user-data is
    /// what its instance must have been launched with for a local node to stand in for it).
    fn production_files(&self, gw: &GatewaySpec) -> Result<render::Rendered, SandboxError> {
        let backend = &self.stack.backend.spec;
        let cas = Cas::read(&self.stack)?;
        Ok(render::gateway(
            gw,
            backend,
            &Addressing::gateway(gw, backend),
            &cas,
        )?)
    }

    /// Boots one node per instance, clustered with the running nodes of its cluster (those
    /// the region files name; as EC2 brokers find the peers tagged with it).
    async fn boot(
        &mut self,
        gw: &GatewaySpec,
        instances: &[&BrokerInstance],
        install: &Install,
        out: &mut Vec<Followed>,
    ) -> Result<(), SandboxError> {
        let region = gw.region.clone();
        let backend = self.stack.backend.spec.clone();
        let cluster = node_name(&gw.cluster_name());
        let region_dir = self.dir.join(&region);
        let authorizer = self.authorizer_for(gw).await?;
        let backend_amqp = self.layout.node(super::BACKEND)?.ports.amqp;
        let names: Vec<String> = instances
            .iter()
            .map(|i| format!("{cluster}-{}", i.id))
            .collect();
        let mut members: Vec<String> = self
            .instances
            .values()
            .filter(|n| n.region == region && n.cluster == cluster)
            .map(|n| n.name.clone())
            .collect();
        members.extend(names.iter().cloned());
        let secrets = render::node_secrets(&self.stack, Some(gw))?;
        let mut started = Vec::new();
        for (i, name) in instances.iter().zip(&names) {
            let mut free = node::free_ports(7)
                .map_err(|e| SandboxError::Io("allocating ports".into(), e))?
                .into_iter();
            let mut next = || free.next().unwrap_or_default();
            // The region's device authorizer serves all its nodes.
            let ports = NodePorts {
                authorizer,
                ..NodePorts::take(&mut next)
            };
            let node_dir = region_dir.join(&i.id);
            let addr = Addressing {
                bind: Some(super::LOOPBACK),
                ports: ports.ports.clone(),
                peer_amqp: vec![(super::LOOPBACK.to_string(), backend_amqp)],
                discovery: Discovery::Classic,
                cluster_nodes: members.iter().map(|m| format!("{m}@localhost")).collect(),
                definitions_path: node_dir.join("definitions.json").display().to_string(),
                host: Host::Shared,
                tls_dir: tls::node_tls_dir(&region_dir).display().to_string(),
                authorizer_port: authorizer,
            };
            let files = render::gateway(gw, &backend, &addr, &self.cas)?;
            let install = install.for_series(gw.brokers.series());
            let node = self.launch(
                &region, name, &node_dir, &files, &secrets, &ports, true, &install,
            )?;
            started.push((i.id.clone(), i.slot.clone(), name.clone(), ports, node));
        }
        let waits = started.iter_mut().map(|s| s.4.wait_ready(BOOT));
        let results = futures_util::future::join_all(waits).await;
        let mut first_error = None;
        for ((id, slot, name, ports, mut node), result) in started.into_iter().zip(results) {
            if let Err(e) = result {
                // Not kept: the next pass boots it again.
                node.stop(STOP_GRACE).await;
                first_error.get_or_insert(e);
                continue;
            }
            self.stopped.remove(&id);
            out.push(Followed::Booted {
                region: region.clone(),
                slot: slot.clone(),
                id: id.clone(),
                node: name.clone(),
            });
            self.instances.insert(
                id,
                InstanceNode {
                    region: region.clone(),
                    slot,
                    cluster: cluster.clone(),
                    name,
                    ports,
                    node,
                },
            );
        }
        match first_error {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Drains and stops the nodes of the region's instances AWS no longer reports running,
    /// then has a remaining node forget them.
    async fn stop_gone(&mut self, gw: &GatewaySpec, listed: &[BrokerInstance]) -> Vec<Followed> {
        let mut out = self.forget_gone(gw, listed);
        let gone: Vec<(String, String)> = self
            .instances
            .iter()
            .filter(|(_, n)| n.region == gw.region)
            .filter_map(|(id, _)| {
                let state = listed
                    .iter()
                    .find(|i| &i.id == id)
                    .map(|i| i.state.as_str());
                match state {
                    Some("running" | "pending") => None,
                    Some(s) => Some((id.clone(), s.to_string())),
                    None => Some((id.clone(), "gone".to_string())),
                }
            })
            .collect();
        for (id, state) in gone {
            let Some(mut n) = self.instances.remove(&id) else {
                continue;
            };
            // The rendered unit's ExecStop: drain (clients move, quorum leaders move), stop.
            let _ = n.node.tool("rabbitmq-upgrade", &["-t", "300", "drain"]);
            n.node.stop(STOP_GRACE).await;
            // EC2 still lists a stopped instance: its node stays a member that is down until
            // the instance goes, when peer discovery's cleanup forgets it.
            self.stopped.insert(
                id.clone(),
                (n.region.clone(), n.cluster.clone(), n.name.clone()),
            );
            out.push(Followed::Stopped {
                region: n.region,
                slot: n.slot,
                id,
                state,
            });
        }
        out
    }

    /// Has a running node of the region forget the stopped nodes whose instances are gone
    /// (as `cluster_formation.node_cleanup` does on EC2). Kept for the next pass when no node
    /// could (none runs, or it failed).
    fn forget_gone(&mut self, gw: &GatewaySpec, listed: &[BrokerInstance]) -> Vec<Followed> {
        let gone: Vec<(String, String, String)> = self
            .stopped
            .iter()
            .filter(|(id, (region, _, _))| {
                region == &gw.region && !listed.iter().any(|i| &i.id == *id)
            })
            .map(|(id, (_, cluster, name))| (id.clone(), cluster.clone(), name.clone()))
            .collect();
        let mut out = Vec::new();
        for (id, cluster, name) in gone {
            let node = format!("{name}@localhost");
            // A cluster whose every node is gone has nobody left to forget them.
            let last = !self
                .instances
                .values()
                .any(|o| o.region == gw.region && o.cluster == cluster);
            let forgot = last
                || self
                    .instances
                    .values()
                    .find(|o| o.region == gw.region && o.cluster == cluster)
                    .and_then(|other| other.node.ctl(&["forget_cluster_node", &node]).ok())
                    .is_some_and(|o| {
                        // Already outside the cluster counts as forgotten.
                        let err = String::from_utf8_lossy(&o.stderr);
                        o.status.success()
                            || err.contains("not_a_cluster_node")
                            || err.contains("not in the cluster")
                    });
            if forgot {
                self.stopped.remove(&id);
                out.push(Followed::Forgotten {
                    region: gw.region.clone(),
                    id,
                    node,
                });
            }
        }
        out
    }

    /// The nodes' and authorizers' process ids, for `sandbox stop` after the follower ends.
    fn record_pids(&self) -> Result<(), SandboxError> {
        let pids: Vec<u32> = self
            .nodes
            .values()
            .filter_map(LocalNode::pid)
            .chain(self.instances.values().filter_map(|n| n.node.pid()))
            .chain(self.authorizers.values().filter_map(|a| a.pid()))
            .collect();
        let text = serde_json::to_string(&pids).unwrap_or_default();
        crate::files::write_file(&self.dir.join(super::PIDS_FILE), text.as_bytes(), 0o644)
            .map_err(|e| SandboxError::Io("writing the node list".into(), e))
    }

    /// The instances the sandbox runs a node for: (region, slot, instance id, node name).
    pub fn instance_nodes(&self) -> Vec<(String, String, String, String)> {
        self.instances
            .iter()
            .map(|(id, n)| (n.region.clone(), n.slot.clone(), id.clone(), n.name.clone()))
            .collect()
    }

    /// Stops the nodes of instances (with the rest of the sandbox, in [`Sandbox::stop`]).
    pub(super) async fn stop_instances(&mut self, grace: Duration) {
        let stops = self.instances.values_mut().map(|n| n.node.stop(grace));
        futures_util::future::join_all(stops).await;
        self.instances.clear();
    }
}
