//! The sandbox: the whole stack on one machine. Local RabbitMQ nodes stand in for the backend
//! and for every gateway region's brokers.
//!
//! The sandbox is a configuration, not a code path: it renders each region with the same
//! renderer as production, only with an [`Addressing`] of its own (loopback, free ports, no EC2
//! discovery), recorded in `sandbox.json` in its directory.

pub mod authorizer;
pub mod clients;
pub mod drill;
pub mod follow;
pub mod node;
pub mod roundtrip;
pub mod router;
pub mod tls;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::broker::{self, BrokerError};
use crate::endpoints::{BrokerAddress, EndpointMap};
use crate::files::write_file;
use crate::model::federation;
use crate::render::placeholder::{self, SecretName, SecretValues};
use crate::render::{self, Addressing, Discovery, Host};
use crate::spec::model::Ports;
use crate::spec::secret::{Secret, SecretError};
use crate::spec::{GatewaySpec, Stack};
use clients::Login;
pub use node::Install;
use node::{LocalNode, NodeConfig, NodeError};

pub const BACKEND: &str = "backend";
/// Written by [`Sandbox::start`]: the `--broker-endpoints` file of the sandbox.
pub const ENDPOINTS_FILE: &str = "endpoints.json";
const PIDS_FILE: &str = "nodes.json";

/// Stops nodes left running by [`Sandbox::detach`] (SIGTERM, then SIGKILL after `grace`).
pub async fn stop_detached(dir: &Path, grace: Duration) -> Result<usize, SandboxError> {
    let path = dir.join(PIDS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(SandboxError::Io(format!("reading {}", path.display()), e)),
    };
    let pids: Vec<u32> = serde_json::from_str(&text)
        .map_err(|e| SandboxError::Failed(format!("{}: {e}", path.display())))?;
    let stops = pids.iter().map(|pid| node::stop_group(*pid, grace));
    futures_util::future::join_all(stops).await;
    if let Ok(layout) = std::fs::read_to_string(dir.join("sandbox.json"))
        && let Ok(layout) = serde_json::from_str::<Layout>(&layout)
    {
        node::stop_epmd(layout.epmd_port).await;
    }
    let _ = std::fs::remove_file(&path);
    Ok(pids.len())
}
const LOOPBACK: std::net::Ipv4Addr = std::net::Ipv4Addr::LOCALHOST;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Render(#[from] render::RenderError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0}")]
    Failed(String),
}

/// The local ports of one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodePorts {
    pub ports: Ports,
    pub dist: u16,
    /// The device authorizer (gateways).
    pub authorizer: u16,
}

impl NodePorts {
    /// A node's ports from `next` (free ports), the authorizer's left 0.
    pub(crate) fn take(next: &mut impl FnMut() -> u16) -> NodePorts {
        NodePorts {
            ports: Ports {
                amqp: next(),
                mqtt: next(),
                web_mqtt: next(),
                management: next(),
                health: next(),
                metrics: next(),
            },
            dist: next(),
            authorizer: 0,
        }
    }
}

/// How the sandbox maps each region ("backend" or a gateway region) to local addresses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Layout {
    pub host: String,
    /// The sandbox's own epmd, so stopping the sandbox can stop it too without touching
    /// anybody else's Erlang nodes.
    pub epmd_port: u16,
    pub nodes: BTreeMap<String, NodePorts>,
}

impl Layout {
    /// Free loopback ports for the backend and every gateway of `stack`.
    pub fn allocate(stack: &Stack) -> std::io::Result<Layout> {
        let names: Vec<String> = std::iter::once(BACKEND.to_string())
            .chain(stack.gateways.iter().map(|g| g.spec.region.clone()))
            .collect();
        let mut ports = node::free_ports(names.len() * 8 + 1)?.into_iter();
        let mut next = || ports.next().unwrap_or_default();
        let nodes = names
            .into_iter()
            .map(|n| {
                let p = NodePorts::take(&mut next);
                let authorizer = next();
                (n, NodePorts { authorizer, ..p })
            })
            .collect();
        let epmd_port = next();
        Ok(Layout {
            host: LOOPBACK.to_string(),
            epmd_port,
            nodes,
        })
    }

    /// The ports of node `name`.
    pub fn node(&self, name: &str) -> Result<&NodePorts, SandboxError> {
        self.nodes.get(name).ok_or_else(|| {
            SandboxError::Failed(format!("the sandbox layout has no node for `{name}`"))
        })
    }
}

/// A running sandbox.
pub struct Sandbox {
    pub dir: PathBuf,
    pub layout: Layout,
    stack: Stack,
    nodes: BTreeMap<String, LocalNode>,
    authorizers: BTreeMap<String, authorizer::Authorizer>,
    /// The CAs: the region files' stack and device CAs, the sandbox's backend CA.
    pub cas: render::Cas,
    backend_ca_file: PathBuf,
    /// A stack-CA client certificate for the admin's AMQP connections to gateways.
    operator: (String, Secret),
    /// Following the cloud: a node per broker instance AWS reports, by instance id, instead
    /// of one node per region.
    following: bool,
    instances: BTreeMap<String, follow::InstanceNode>,
    /// Instances whose user-data the region files do not render, with the digest of what
    /// they render (reported once per version of the files, no node).
    refused: BTreeMap<String, String>,
    /// Nodes stopped with their instance, still cluster members: instance → (region,
    /// cluster, node).
    stopped: BTreeMap<String, (String, String, String)>,
    /// Message routers (`routing.mode: router`), by id.
    routers: BTreeMap<String, router::RouterProcess>,
}

impl Sandbox {
    /// Renders every region into `dir`, fills in secrets (0600 files), starts all nodes in
    /// parallel and waits until each accepts connections. A port taken by someone else
    /// between allocation and boot (`eaddrinuse`) means a fresh attempt with new ports.
    pub async fn start(
        stack: &Stack,
        dir: &Path,
        install: &Install,
    ) -> Result<Sandbox, SandboxError> {
        Sandbox::start_mode(stack, dir, install, false).await
    }

    async fn start_mode(
        stack: &Stack,
        dir: &Path,
        install: &Install,
        following: bool,
    ) -> Result<Sandbox, SandboxError> {
        if !install.exists() {
            return Err(SandboxError::Failed(format!(
                "no RabbitMQ at {install:?}: run scripts/setup (it builds the trixie root)"
            )));
        }
        // Absolute: a rooted node sees the directory at the same path, and nothing else.
        let dir = &std::path::absolute(dir)
            .map_err(|e| SandboxError::Io(format!("resolving {}", dir.display()), e))?;
        let mut attempt = 1;
        loop {
            let result = Sandbox::start_once(stack, dir, install, following).await;
            if result.is_err() {
                // The nodes died with the half-started sandbox; its epmd did not.
                if let Ok(text) = std::fs::read_to_string(dir.join("sandbox.json"))
                    && let Ok(layout) = serde_json::from_str::<Layout>(&text)
                {
                    node::stop_epmd(layout.epmd_port).await;
                }
            }
            match result {
                Err(SandboxError::Node(e))
                    if attempt < 3 && e.to_string().contains("eaddrinuse") =>
                {
                    attempt += 1;
                    let _ = std::fs::remove_dir_all(dir);
                }
                other => return other,
            }
        }
    }

    /// With `following`, gateway regions get their device authorizer but no node: nodes come
    /// with the broker instances the cloud reports (see [`follow`]).
    async fn start_once(
        stack: &Stack,
        dir: &Path,
        install: &Install,
        following: bool,
    ) -> Result<Sandbox, SandboxError> {
        let io = |what: String| move |e| SandboxError::Io(what, e);
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        let layout = Layout::allocate(stack).map_err(io("allocating ports".into()))?;
        let layout_text = serde_json::to_string_pretty(&layout).unwrap_or_default();
        write_file(&dir.join("sandbox.json"), layout_text.as_bytes(), 0o644)
            .map_err(io("writing sandbox.json".into()))?;

        let certificates = tls::prepare(stack, dir)?;
        let mut sandbox = Sandbox {
            dir: dir.to_path_buf(),
            layout,
            stack: stack.clone(),
            nodes: BTreeMap::new(),
            authorizers: BTreeMap::new(),
            cas: certificates.cas,
            backend_ca_file: certificates.backend_ca_file,
            operator: (
                certificates.operator.cert_pem,
                certificates.operator.key_pem,
            ),
            following,
            instances: BTreeMap::new(),
            refused: BTreeMap::new(),
            stopped: BTreeMap::new(),
            routers: BTreeMap::new(),
        };
        let backend = &stack.backend.spec;
        let backend_ports = sandbox.layout.node(BACKEND)?.clone();
        let node_dir = dir.join(BACKEND);
        let addr = sandbox.addressing(&node_dir, &backend_ports, Vec::new());
        let gateways: Vec<&GatewaySpec> = stack.gateways.iter().map(|g| &g.spec).collect();
        let files = render::backend(backend, &gateways, &addr)?;
        let secrets = render::node_secrets(stack, None)?;
        let node = sandbox.launch(
            BACKEND,
            &node_name(&backend.cluster_name),
            &node_dir,
            &files,
            &secrets,
            &backend_ports,
            false,
            install,
        )?;
        sandbox.nodes.insert(BACKEND.to_string(), node);

        for gw in &stack.gateways {
            let region = gw.spec.region.clone();
            let ports = sandbox.layout.node(&region)?.clone();
            let node_dir = dir.join(&region);
            let peers = vec![(LOOPBACK.to_string(), backend_ports.ports.amqp)];
            let addr = sandbox.addressing(&node_dir, &ports, peers);
            let files = render::gateway(&gw.spec, backend, &addr, &sandbox.cas)?;
            let secrets = render::node_secrets(stack, Some(&gw.spec))?;
            let authorizer = authorizer::Authorizer::start(
                backend,
                gw.spec.brokers.series(),
                &node_dir,
                ports.authorizer,
            )?;
            authorizer
                .wait_ready(ports.authorizer, Duration::from_secs(10))
                .await?;
            sandbox.authorizers.insert(region.clone(), authorizer);
            if following {
                continue;
            }
            let node = sandbox.launch(
                &region,
                &node_name(&gw.spec.cluster_name()),
                &node_dir,
                &files,
                &secrets,
                &ports,
                true,
                &install.for_series(gw.spec.brokers.series()),
            )?;
            sandbox.nodes.insert(region, node);
        }

        let waits = sandbox
            .nodes
            .values_mut()
            .map(|n| n.wait_ready(Duration::from_secs(120)));
        for result in futures_util::future::join_all(waits).await {
            result?;
        }
        sandbox.check_alarms().await?;
        sandbox.write_endpoints()?;
        Ok(sandbox)
    }

    /// Writes `endpoints.json` (atomically: gwctl reads it while the sandbox follows).
    fn write_endpoints(&self) -> Result<(), SandboxError> {
        let map = serde_json::to_string_pretty(&self.endpoint_map()).unwrap_or_default();
        let tmp = self.dir.join(format!("{ENDPOINTS_FILE}.tmp"));
        write_file(&tmp, map.as_bytes(), 0o644)
            .and_then(|()| std::fs::rename(&tmp, self.dir.join(ENDPOINTS_FILE)))
            .map_err(|e| SandboxError::Io("writing the endpoint file".into(), e))
    }

    /// Fails when a node starts under a resource alarm: it would accept every client and
    /// block every publisher, which looks like a hang rather than an error.
    async fn check_alarms(&self) -> Result<(), SandboxError> {
        let mut raised = Vec::new();
        for name in self.nodes.keys() {
            let admin = self.admin(name)?;
            if let Some(reason) = admin.alarms_in_effect().await? {
                let figures: Vec<String> = admin
                    .node_alarms()
                    .await
                    .unwrap_or_default()
                    .iter()
                    .flat_map(|n| n.raised())
                    .collect();
                raised.push(format!("{name}: {reason} {}", figures.join("; ")));
            }
        }
        if raised.is_empty() {
            Ok(())
        } else {
            Err(SandboxError::Failed(format!(
                "nodes started under a resource alarm (publishers would block):\n  {}",
                raised.join("\n  ")
            )))
        }
    }

    /// Runs `rabbitmqctl ARGS` against node `name` ("backend" or a region); fails unless it
    /// exits 0.
    pub fn ctl(&self, name: &str, args: &[&str]) -> Result<String, SandboxError> {
        let node = self
            .nodes
            .get(name)
            .ok_or_else(|| SandboxError::Failed(format!("no sandbox node {name}")))?;
        let out = node
            .ctl(args)
            .map_err(|e| SandboxError::Io(format!("running rabbitmqctl on {name}"), e))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(SandboxError::Failed(format!(
                "rabbitmqctl {args:?} on {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            )))
        }
    }

    /// Where each region's broker is, in the format of `--broker-endpoints`.
    pub fn endpoint_map(&self) -> EndpointMap {
        let regions = self
            .layout
            .nodes
            .iter()
            .filter(|(name, _)| !self.following || name.as_str() == BACKEND)
            .map(|(name, p)| {
                let mut address =
                    BrokerAddress::new(self.layout.host.clone(), p.ports.amqp, p.ports.management);
                if name == BACKEND {
                    let tls_dir = tls::node_tls_dir(&self.dir.join(BACKEND));
                    let path = |f: &str| tls_dir.join(f).display().to_string();
                    address.ca_file = Some(self.backend_ca_file.display().to_string());
                    address.link_files = Some(crate::endpoints::LinkFiles {
                        ca_file: path("stack-ca.pem"),
                        cert_file: path("link.pem"),
                        key_file: path("link.key"),
                    });
                } else {
                    address.mqtt_port = Some(p.ports.mqtt);
                    // Verified as in production: the region's name, not the address.
                    address.tls_name = self
                        .stack
                        .gateway(name)
                        .map(|g| self.regional_name(&g.spec));
                }
                (name.clone(), vec![address])
            })
            .collect();
        let instances = self
            .instances
            .iter()
            .map(|(id, n)| (id.clone(), self.gateway_address(&n.region, &n.ports)))
            .collect();
        EndpointMap { regions, instances }
    }

    /// A gateway node's address as gwctl reaches it, verified against the region's name.
    fn gateway_address(&self, region: &str, p: &NodePorts) -> BrokerAddress {
        let mut address =
            BrokerAddress::new(self.layout.host.clone(), p.ports.amqp, p.ports.management);
        address.mqtt_port = Some(p.ports.mqtt);
        address.tls_name = self
            .stack
            .gateway(region)
            .map(|g| self.regional_name(&g.spec));
        address
    }

    /// Leaves the nodes running after this process ends; `stop_detached` stops them.
    pub fn detach(mut self) -> Result<Vec<u32>, SandboxError> {
        let mut pids: Vec<u32> = self
            .nodes
            .values_mut()
            .filter_map(LocalNode::detach)
            .collect();
        pids.extend(
            self.authorizers
                .values_mut()
                .filter_map(authorizer::Authorizer::detach),
        );
        pids.extend(self.routers.values().map(router::RouterProcess::pid));
        let text = serde_json::to_string(&pids).unwrap_or_default();
        write_file(&self.dir.join(PIDS_FILE), text.as_bytes(), 0o644)
            .map_err(|e| SandboxError::Io("writing the node list".into(), e))?;
        Ok(pids)
    }

    fn addressing(
        &self,
        node_dir: &Path,
        ports: &NodePorts,
        peer_amqp: Vec<(String, u16)>,
    ) -> Addressing {
        Addressing {
            bind: Some(LOOPBACK),
            ports: ports.ports.clone(),
            peer_amqp,
            discovery: Discovery::None,
            cluster_nodes: Vec::new(),
            definitions_path: node_dir.join("definitions.json").display().to_string(),
            host: Host::Shared,
            tls_dir: tls::node_tls_dir(node_dir).display().to_string(),
            authorizer_port: ports.authorizer,
        }
    }

    fn regional_name(&self, gw: &GatewaySpec) -> String {
        crate::model::dns::names(&self.stack.backend.spec.dns.record, &gw.region).regional
    }

    /// Writes a node's rendered files (as rendered) and its filled-in definitions (0600), then
    /// starts it.
    #[allow(clippy::too_many_arguments)]
    fn launch(
        &self,
        name: &str,
        node: &str,
        node_dir: &Path,
        files: &render::Rendered,
        secrets: &SecretValues,
        ports: &NodePorts,
        mqtt: bool,
        install: &Install,
    ) -> Result<LocalNode, SandboxError> {
        let rendered_dir = node_dir.join("rendered");
        files
            .write_to(&rendered_dir)
            .map_err(|e| SandboxError::Io(format!("writing {}", rendered_dir.display()), e))?;
        let defs = files.get("definitions.json").ok_or_else(|| {
            SandboxError::Failed(format!("{name}: nothing rendered as definitions.json"))
        })?;
        let mut value: serde_json::Value = serde_json::from_str(&defs.contents)
            .map_err(|e| SandboxError::Failed(format!("{name}: rendered definitions: {e}")))?;
        placeholder::fill_json(&mut value, secrets)
            .map_err(|e| SandboxError::Failed(format!("{name}: {e}")))?;
        let text = serde_json::to_string_pretty(&value).unwrap_or_default();
        write_file(&node_dir.join("definitions.json"), text.as_bytes(), 0o600)
            .map_err(|e| SandboxError::Io(format!("{name}: writing definitions"), e))?;
        let cookie = secrets
            .get(&SecretName::ErlangCookie)
            .ok_or_else(|| SandboxError::Failed(format!("{name}: no Erlang cookie")))?;
        let mut ready_ports = vec![ports.ports.amqp];
        if mqtt {
            ready_ports.push(ports.ports.mqtt);
        }
        let config = NodeConfig {
            name: node.to_string(),
            dir: node_dir.join("node"),
            config_file: rendered_dir.join("rabbitmq.conf"),
            advanced_config_file: files
                .get("advanced.config")
                .map(|_| rendered_dir.join("advanced.config")),
            enabled_plugins_file: rendered_dir.join("enabled_plugins"),
            dist_port: ports.dist,
            epmd_port: self.layout.epmd_port,
            ready_ports,
            install: install.clone(),
            share: self.dir.clone(),
        };
        Ok(LocalNode::start(config, cookie.expose())?)
    }

    /// Applies the backend's side of federation for every gateway through the engine, as
    /// `gwctl up` does (an upstream per gateway, the shared sets, the policies).
    pub async fn federate_backend(&self) -> Result<(), SandboxError> {
        let fed = &self.stack.backend.spec.credentials.federation;
        let password = fed.password.resolve(&self.stack.dir)?;
        let encoded = federation::encode_component(password.expose());
        let backend = self.admin(BACKEND)?;
        let tls_dir = tls::node_tls_dir(&self.dir.join(BACKEND));
        let path = |f: &str| tls_dir.join(f).display().to_string();
        for gw in &self.stack.gateways {
            let p = self.layout.node(&gw.spec.region)?;
            let link = federation::LinkTls {
                ca_file: path("stack-ca.pem"),
                client_cert: Some((path("link.pem"), path("link.key"))),
                server_name: Some(self.regional_name(&gw.spec)),
            };
            let uris = [federation::amqps_uri(
                &fed.user,
                &encoded,
                &self.layout.host,
                p.ports.amqp,
                30,
                &link,
            )];
            crate::engine::federation::converge(&backend, &gw.spec.region, Some(&gw.spec), &uris)
                .await?;
        }
        Ok(())
    }

    /// Waits until every federation link of every node is `running`; returns the links.
    pub async fn wait_links_running(
        &self,
        timeout: Duration,
    ) -> Result<BTreeMap<String, Vec<broker::FederationLink>>, SandboxError> {
        let start = std::time::Instant::now();
        loop {
            let mut all = BTreeMap::new();
            let mut pending = Vec::new();
            for name in self.nodes.keys() {
                let links = self.admin(name)?.federation_links().await?;
                let expected = self.expected_links(name);
                let running = links.iter().filter(|l| l.status == "running").count();
                if running < expected || links.iter().any(|l| l.status != "running") {
                    pending.push(format!(
                        "{name}: {running}/{expected} running {:?}",
                        links
                            .iter()
                            .map(|l| (&l.upstream, &l.status, &l.error))
                            .collect::<Vec<_>>()
                    ));
                }
                all.insert(name.clone(), links);
            }
            if pending.is_empty() {
                return Ok(all);
            }
            if start.elapsed() > timeout {
                return Err(SandboxError::Failed(format!(
                    "federation links not running after {} s: {}",
                    timeout.as_secs(),
                    pending.join("; ")
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn expected_links(&self, name: &str) -> usize {
        if name == BACKEND {
            self.stack
                .gateways
                .iter()
                .map(|g| federation::backend_upstreams(&g.spec, &[]).len())
                .sum()
        } else {
            self.stack
                .gateway(name)
                .map_or(0, |g| g.spec.federation.from_backend.len())
        }
    }

    /// A management client for a node, logged in as its admin user, verifying the node's
    /// certificate as gwctl does.
    pub fn admin(&self, name: &str) -> Result<broker::Client, SandboxError> {
        let login = self.admin_login(name)?;
        let address = self
            .endpoint_map()
            .get(name)
            .and_then(|a| a.first().cloned())
            .ok_or_else(|| SandboxError::Failed(format!("no sandbox node `{name}`")))?;
        let password = login
            .password
            .ok_or_else(|| SandboxError::Failed(format!("{name}: no admin password")))?;
        Ok(broker::Client::new(
            &address,
            &login.ca_pem,
            login.user,
            password,
        )?)
    }

    /// The CA a node's certificate chains to.
    fn ca_of(&self, name: &str) -> &str {
        if name == BACKEND {
            &self.cas.backend
        } else {
            &self.cas.stack
        }
    }

    /// The admin user of a node, at its AMQPS port.
    pub fn admin_login(&self, name: &str) -> Result<Login, SandboxError> {
        let base = &self.stack.dir;
        let cred = if name == BACKEND {
            &self.stack.backend.spec.credentials.admin
        } else {
            &self.gateway(name)?.credentials.admin
        };
        Ok(Login {
            host: self.layout.host.clone(),
            port: self.layout.node(name)?.ports.amqp,
            user: cred.user.clone(),
            password: Some(cred.password.resolve(base)?),
            ca_pem: self.ca_of(name).to_string(),
            // Gateways accept only clients with a certificate.
            identity: (name != BACKEND).then(|| self.operator.clone()),
        })
    }

    /// A device of a gateway, at its MQTT-over-TLS port, with a fresh certificate of the
    /// device CA (the region files' `device_ca.key` must be set).
    pub fn device_login(&self, region: &str, device: &str) -> Result<Login, SandboxError> {
        let port = self.layout.node(region)?.ports.mqtt;
        let login = device_login(&self.device_ca()?, &self.cas.stack, device);
        login.map(|l| l.at(&self.layout.host, port))
    }

    /// The device CA of the region files, able to issue.
    pub fn device_ca(&self) -> Result<crate::pki::Authority, SandboxError> {
        crate::spec::tls::device_authority(&self.stack)
            .map_err(|e| SandboxError::Failed(e.to_string()))
    }

    fn gateway(&self, region: &str) -> Result<&GatewaySpec, SandboxError> {
        self.stack.gateway(region).map(|g| &g.spec).ok_or_else(|| {
            SandboxError::Failed(format!("no gateway region `{region}` in the sandbox"))
        })
    }

    /// Restarts one node on its data (a broker restart; its queues and persistent messages
    /// survive).
    pub async fn restart(&mut self, name: &str, grace: Duration) -> Result<(), SandboxError> {
        let gateway = self.stack.gateway(name).map(|g| g.spec.clone());
        let secrets = render::node_secrets(&self.stack, gateway.as_ref())?;
        let cookie = secrets
            .get(&SecretName::ErlangCookie)
            .ok_or_else(|| SandboxError::Failed(format!("{name}: no Erlang cookie")))?;
        let node = self
            .nodes
            .get_mut(name)
            .ok_or_else(|| SandboxError::Failed(format!("no sandbox node `{name}`")))?;
        node.restart(grace, cookie.expose()).await?;
        Ok(())
    }

    /// Stops a gateway's device authorizer (a restart's first half).
    pub async fn stop_authorizer(&mut self, region: &str) {
        if let Some(a) = self.authorizers.get_mut(region) {
            a.stop(Duration::from_secs(2)).await;
        }
    }

    /// Starts a gateway's device authorizer again.
    pub async fn start_authorizer(&mut self, region: &str) -> Result<(), SandboxError> {
        let port = self.layout.node(region)?.authorizer;
        let series = self.gateway(region)?.brokers.series();
        let a = authorizer::Authorizer::start(
            &self.stack.backend.spec,
            series,
            &self.dir.join(region),
            port,
        )?;
        a.wait_ready(port, Duration::from_secs(10)).await?;
        self.authorizers.insert(region.to_string(), a);
        Ok(())
    }

    pub fn node_names(&self) -> Vec<String> {
        self.nodes.keys().cloned().collect()
    }

    /// Starts a message router (`exe router run`, this gwctl) on the sandbox's brokers;
    /// `listen` defaults to `routing.metrics_port` on loopback.
    pub async fn start_router(
        &mut self,
        exe: &Path,
        id: &str,
        listen: Option<std::net::SocketAddr>,
        resync: bool,
    ) -> Result<&router::RouterProcess, SandboxError> {
        let port = self.stack.backend.spec.routing.metrics_port;
        let listen = listen.unwrap_or_else(|| std::net::SocketAddr::from((LOOPBACK, port)));
        let process =
            router::RouterProcess::start(exe, &self.stack.dir, &self.dir, id, listen, resync)
                .await?;
        self.routers.insert(id.to_string(), process);
        self.routers
            .get(id)
            .ok_or_else(|| SandboxError::Failed(format!("router {id}")))
    }

    /// A router of the sandbox.
    pub fn router(&self, id: &str) -> Option<&router::RouterProcess> {
        self.routers.get(id)
    }

    /// Kills a router (SIGKILL), as a crash would.
    pub fn kill_router(&mut self, id: &str) {
        if let Some(r) = self.routers.get_mut(id) {
            r.kill();
        }
    }

    /// Stops every node (SIGTERM, then SIGKILL after `grace`).
    pub async fn stop(mut self, grace: Duration) {
        for r in self.routers.values_mut() {
            r.stop(grace).await;
        }
        self.stop_instances(grace).await;
        let stops = self.nodes.values_mut().map(|n| n.stop(grace));
        futures_util::future::join_all(stops).await;
        for a in self.authorizers.values_mut() {
            a.stop(grace).await;
        }
        node::stop_epmd(self.layout.epmd_port).await;
    }
}

/// An Erlang node name from a cluster name (letters, digits, `-`, `_` only).
pub(crate) fn node_name(cluster_name: &str) -> String {
    cluster_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A device as the fleet's are: a fresh certificate of the device CA for `device` (its user
/// name and its client id), trusting the stack CA; where it connects is set by the caller.
pub(crate) fn device_login(
    device_ca: &crate::pki::Authority,
    stack_ca: &str,
    device: &str,
) -> Result<Login, SandboxError> {
    let issued = device_ca
        .issue_device(device, std::time::SystemTime::now())
        .map_err(|e| SandboxError::Failed(format!("issuing a certificate for {device}: {e}")))?;
    Ok(Login {
        host: String::new(),
        port: 0,
        user: device.to_string(),
        password: None,
        ca_pem: stack_ca.to_string(),
        identity: Some((issued.cert_pem, issued.key_pem)),
    })
}
