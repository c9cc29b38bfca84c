//! The engine: the one place that turns a loaded stack into region plans (AWS resources,
//! Route53, the backend's federation) and applies them — locking, ordering, failure isolation
//! per region, progress as [`events::Event`]s. Commands parse arguments, call the engine and
//! hand its events and results to the printer; the engine prints nothing and asks nothing.
//!
//! Order of one region's apply: EC2/IAM/SSM resources (a dependency graph) → the backend's
//! federation entries (once the brokers have addresses) → Route53, for every region of the run
//! in one change batch per zone. `down` runs it backwards.

pub mod apply;
mod bluegreen;
pub mod destroy;
pub mod dns;
pub mod drill;
pub mod events;
pub mod export;
pub mod federation;
pub mod gates;
mod host;
pub mod init;
pub mod instances;
pub mod loadtest;
pub mod lock;
pub mod planning;
mod probe;
mod roll;
pub mod router;
pub mod saved;
pub mod status;
pub mod upgrade;

use std::path::Path;
use std::time::Duration;

use crate::broker;
use crate::endpoints::{BrokerAddress, EndpointMap};
use crate::error::{Error, Result};
use crate::model::Action;
use crate::model::federation as topology;
use crate::model::resources::Kind;
use crate::plan::RegionPlan;
use crate::spec::{GatewaySpec, Selection, Stack};

/// What a command manages: AWS resources, the backend's federation entries, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Scope {
    #[default]
    All,
    Aws,
    Federation,
}

impl Scope {
    pub fn aws(self) -> bool {
        self != Scope::Federation
    }
    pub fn federation(self) -> bool {
        self != Scope::Aws
    }
}

/// How `up`, `down` and live drills change things.
#[derive(Debug, Clone, Copy)]
pub struct ApplyOptions {
    /// How long to wait for another run's lock on a region.
    pub lock_timeout: Duration,
    /// AWS operations at once per region.
    pub parallelism: usize,
    /// How long new brokers may take to answer their management API.
    pub broker_wait: Duration,
}

/// A loaded stack and where its brokers are reached: everything the engine needs besides
/// what a command asks of it.
pub struct Engine {
    pub stack: Stack,
    pub endpoints: EndpointMap,
    /// The endpoint file, read again where brokers come and go during a run.
    endpoints_file: Option<std::path::PathBuf>,
    pub scope: Scope,
    /// Plan brokers on the newest image the region files select (`upgrade`), instead of
    /// keeping the one they run while it is still selected (`plan`, `up`).
    pub newest_images: bool,
    /// The backend's upstream sets are shared by all regions: regions applied concurrently
    /// take turns at read-modify-write.
    federation_turn: tokio::sync::Mutex<()>,
}

impl Engine {
    /// The run's last line about AWS: how many calls it made and how many attempts failed and
    /// were recovered from (repeated, or for a create that may have been carried out, read
    /// back), and why (throttling, 5xx, no answer) — against real AWS a run that needed many
    /// is one to look at before the next.
    pub fn report_aws_calls(&self, events: &dyn events::Events) {
        let r = crate::cloud::Aws::retries();
        if r.calls == 0 {
            return;
        }
        let repeated = match r.retried() {
            0 => "none failed".to_string(),
            n => format!(
                "{n} failed attempt(s) recovered ({} throttled, {} server errors, {} without answer)",
                r.throttled, r.server_errors, r.no_answer
            ),
        };
        let waits = match r.not_ready {
            0 => String::new(),
            n => format!("; {n} wait(s) for AWS to catch up"),
        };
        events.emit(events::Event::Done(format!(
            "AWS: {} calls, {repeated}{waits}",
            r.calls
        )));
    }

    /// Loads the stack for the selected regions: invalid input stops here, before any call.
    pub fn load(
        regions: &Path,
        selection: Selection,
        endpoints: Option<&Path>,
        scope: Scope,
    ) -> Result<Engine> {
        let stack = crate::spec::load(regions, &selection).map_err(Error::Invalid)?;
        let map = match endpoints {
            Some(p) => EndpointMap::load(p).map_err(Error::Usage)?,
            None => EndpointMap::default(),
        };
        Ok(Engine {
            stack,
            endpoints: map,
            endpoints_file: endpoints.map(Path::to_path_buf),
            scope,
            newest_images: false,
            federation_turn: tokio::sync::Mutex::new(()),
        })
    }

    /// The backend's management API, as gwctl's admin user, verified with the backend CA.
    pub fn backend_client(&self) -> Result<broker::Client> {
        let b = &self.stack.backend.spec;
        let address = self.backend_address()?;
        self.client(&address, &b.tls.backend_ca, &b.credentials.admin)
    }

    /// A management client of `address`, verified with its CA (`ca`, unless the endpoint
    /// file names one), logged in as `admin`.
    fn client(
        &self,
        address: &BrokerAddress,
        ca: &crate::spec::model::SecretRef,
        admin: &crate::spec::model::UserCredential,
    ) -> Result<broker::Client> {
        let ca = self.ca_for(address, ca)?;
        let password = admin
            .password
            .resolve(&self.stack.dir)
            .map_err(|e| Error::Failed(e.to_string()))?;
        Ok(broker::Client::new(
            address,
            &ca,
            admin.user.clone(),
            password,
        )?)
    }

    /// The backend broker gwctl talks to: the endpoint file's, else backend.yaml's first.
    fn backend_address(&self) -> Result<BrokerAddress> {
        if let Some(list) = self.endpoints.get("backend") {
            return Ok(list[0].clone());
        }
        let e = self
            .stack
            .backend
            .spec
            .brokers
            .endpoints
            .first()
            .ok_or_else(|| Error::Failed("backend.yaml lists no broker".into()))?;
        Ok(BrokerAddress::new(&e.host, e.amqp_port, e.management_port))
    }

    /// The CA that verifies `address`: its own (endpoint file), else the region files'.
    fn ca_for(
        &self,
        address: &BrokerAddress,
        source: &crate::spec::model::SecretRef,
    ) -> Result<String> {
        match &address.ca_file {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| Error::io(format!("reading the CA file {path}"), e)),
            None => source
                .read_public(&self.stack.dir)
                .map_err(|e| Error::Failed(e.to_string())),
        }
    }

    /// A gateway broker's management API, as the region's admin user, verified with the
    /// stack CA against the region's name.
    pub fn gateway_client(
        &self,
        gw: &GatewaySpec,
        address: &BrokerAddress,
    ) -> Result<broker::Client> {
        let stack_ca = &self.stack.backend.spec.tls.stack_ca.cert;
        self.client(address, stack_ca, &gw.credentials.admin)
    }

    /// Where the backend's management API is, for people (no credentials).
    pub fn backend_endpoint(&self) -> String {
        self.backend_client()
            .map(|c| c.endpoint().to_string())
            .unwrap_or_default()
    }

    /// The endpoint file as it is now (a sandbox following the cloud rewrites it as broker
    /// instances come and go); what was loaded when it cannot be read.
    fn endpoints_now(&self) -> EndpointMap {
        self.endpoints_file
            .as_deref()
            .and_then(|p| EndpointMap::load(p).ok())
            .unwrap_or_else(|| self.endpoints.clone())
    }

    /// Where the broker of one instance is reached: the endpoint file's entry for the
    /// instance, else its private address (over the VPN).
    pub fn instance_address(
        &self,
        gw: &GatewaySpec,
        instance_id: &str,
        private_ip: Option<&str>,
    ) -> Option<BrokerAddress> {
        if let Some(a) = self.endpoints_now().instance(instance_id) {
            return Some(a.clone());
        }
        let mut address = BrokerAddress::new(
            private_ip?,
            gw.brokers.ports.amqp,
            gw.brokers.ports.management,
        );
        address.mqtt_port = Some(gw.brokers.ports.mqtt);
        address.tls_name = Some(self.regional_name(gw));
        Some(address)
    }

    /// Where a gateway's brokers are reached: the endpoint file, else the brokers' private
    /// addresses as discovered. `None` while some broker does not exist yet.
    pub fn gateway_addresses(
        &self,
        gw: &GatewaySpec,
        plan: &RegionPlan,
    ) -> Option<Vec<BrokerAddress>> {
        if let Some(list) = self.endpoints.get(&gw.region) {
            return Some(list.to_vec());
        }
        let brokers: Vec<_> = plan
            .changes
            .iter()
            .filter(|c| {
                c.key.kind == Kind::Instance
                    && c.key.name.starts_with("broker-")
                    && c.after.is_some()
            })
            .collect();
        let mut out = Vec::new();
        for c in brokers {
            if !matches!(c.action, Action::NoOp | Action::Update) {
                return None;
            }
            let before = c.before.as_ref()?;
            let ip = before.parts.get("private_ip").map(String::as_str);
            out.push(self.instance_address(gw, &before.id, ip)?);
        }
        Some(out)
    }

    /// The cluster of the brokers the region's addresses lead to (those
    /// [`Engine::gateway_addresses`] picks: the instances the files describe), if tagged.
    pub(crate) fn serving_cluster(plan: &RegionPlan) -> Option<String> {
        plan.changes
            .iter()
            .filter(|c| c.key.is_broker() && c.after.is_some())
            .filter(|c| matches!(c.action, Action::NoOp | Action::Update))
            .filter_map(|c| c.before.as_ref())
            .find_map(|b| b.parts.get(crate::model::resources::CLUSTER_PART).cloned())
    }

    /// The cluster the region moves off (blue-green), while brokers of it still run beside
    /// brokers of the cluster the files name: the backend keeps a link to them until what
    /// they buffered has arrived. Before the new cluster exists, the region's own upstream
    /// still points at the old brokers: a second link to them would share their buffer.
    pub(crate) fn draining(
        &self,
        gw: &GatewaySpec,
        plan: &RegionPlan,
    ) -> Result<Option<topology::Draining>> {
        let current = gw.cluster_name();
        let mut clusters = std::collections::BTreeSet::new();
        let mut current_runs = false;
        let mut addresses = Vec::new();
        for before in plan
            .changes
            .iter()
            .filter(|c| c.key.is_broker())
            .filter_map(|c| c.before.as_ref())
            .filter(|b| matches!(b.state.as_deref(), Some("running" | "pending")))
        {
            let cluster = before.parts.get(crate::model::resources::CLUSTER_PART);
            if cluster.is_none_or(|c| *c == current) {
                current_runs = true;
                continue;
            }
            clusters.extend(cluster.cloned());
            let ip = before.parts.get("private_ip").map(String::as_str);
            if let Some(a) = self.instance_address(gw, &before.id, ip) {
                addresses.push(a);
            }
        }
        let mut clusters = clusters.into_iter();
        let (Some(cluster), true) = (clusters.next(), current_runs) else {
            return Ok(None);
        };
        if let Some(other) = clusters.next() {
            return Err(Error::Failed(format!(
                "{}: brokers of clusters {cluster} and {other} run beside {current}: gwctl \
                 moves a region off one cluster at a time",
                gw.region
            )));
        }
        Ok(Some(topology::Draining {
            cluster,
            uris: self.gateway_uris(gw, &addresses)?,
        }))
    }

    /// The name a gateway's brokers' certificates cover and gwctl and the backend verify.
    pub fn regional_name(&self, gw: &GatewaySpec) -> String {
        crate::model::dns::names(&self.stack.backend.spec.dns.record, &gw.region).regional
    }

    /// The backend's federation upstream URIs for a gateway (credentials included): AMQPS,
    /// verified with the stack CA against the region's name, presenting the backend's link
    /// certificate.
    fn gateway_uris(&self, gw: &GatewaySpec, addresses: &[BrokerAddress]) -> Result<Vec<String>> {
        let b = &self.stack.backend.spec;
        let fed = &b.credentials.federation;
        let pw = fed
            .password
            .resolve(&self.stack.dir)
            .map_err(|e| Error::Failed(e.to_string()))?;
        let pw = topology::encode_component(pw.expose());
        let files =
            self.backend_address()?
                .link_files
                .unwrap_or_else(|| crate::endpoints::LinkFiles {
                    ca_file: b.tls.stack_ca_on_backend.clone(),
                    cert_file: b.tls.link_cert_on_backend.clone(),
                    key_file: b.tls.link_key_on_backend.clone(),
                });
        let tls = topology::LinkTls {
            ca_file: files.ca_file,
            client_cert: Some((files.cert_file, files.key_file)),
            server_name: Some(self.regional_name(gw)),
        };
        Ok(addresses
            .iter()
            .map(|a| topology::amqps_uri(&fed.user, &pw, &a.host, a.amqp_port, 30, &tls))
            .collect())
    }

    /// The spec of a gateway region of the loaded stack.
    fn gateway(&self, region: &str) -> Option<&GatewaySpec> {
        self.stack.gateway(region).map(|g| &g.spec)
    }
}

/// The async runtime the engine runs on. Two workers match the machines gwctl runs on in CI;
/// the work is I/O-bound.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the async runtime", e))
}
