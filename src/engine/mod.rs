//! The engine: the one place that turns a loaded stack into region plans (AWS resources,
//! Route53, the backend's federation) and applies them — locking, ordering, failure isolation
//! per region, progress as [`events::Event`]s. Commands parse arguments, call the engine and
//! hand its events and results to the printer; the engine prints nothing and asks nothing.
//!
//! Order of one region's apply: EC2/IAM/SSM resources (a dependency graph) → the backend's
//! federation entries (once the brokers have addresses) → Route53, for every region of the run
//! in one change batch per zone. `down` runs it backwards.

pub mod apply;
pub mod destroy;
pub mod dns;
pub mod drill;
pub mod events;
pub mod federation;
pub mod lock;
pub mod planning;
pub mod saved;
pub mod status;

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
}

/// A loaded stack and where its brokers are reached: everything the engine needs besides
/// what a command asks of it.
pub struct Engine {
    pub stack: Stack,
    pub endpoints: EndpointMap,
    pub scope: Scope,
    /// The backend's upstream sets are shared by all regions: regions applied concurrently
    /// take turns at read-modify-write.
    federation_turn: tokio::sync::Mutex<()>,
}

impl Engine {
    /// Loads the stack for the selected regions: invalid input stops here, before any call.
    pub fn load(
        regions: &Path,
        selection: Selection,
        endpoints: Option<&Path>,
        scope: Scope,
    ) -> Result<Engine> {
        let stack = crate::spec::load(regions, &selection).map_err(Error::Invalid)?;
        let endpoints = match endpoints {
            Some(p) => EndpointMap::load(p).map_err(Error::Usage)?,
            None => EndpointMap::default(),
        };
        Ok(Engine {
            stack,
            endpoints,
            scope,
            federation_turn: tokio::sync::Mutex::new(()),
        })
    }

    /// The backend's management API, as gwctl's admin user.
    pub fn backend_client(&self) -> Result<broker::Client> {
        let b = &self.stack.backend.spec;
        let url = match self.endpoints.get("backend") {
            Some(list) => list[0].management_url(),
            None => {
                let e = b
                    .brokers
                    .endpoints
                    .first()
                    .ok_or_else(|| Error::Failed("backend.yaml lists no broker".into()))?;
                format!("http://{}:{}", e.host, e.management_port)
            }
        };
        let password = b
            .credentials
            .admin
            .password
            .resolve(&self.stack.dir)
            .map_err(|e| Error::Failed(e.to_string()))?;
        Ok(broker::Client::new(
            url,
            b.credentials.admin.user.clone(),
            password,
        ))
    }

    /// Where the backend's management API is, for people (no credentials).
    pub fn backend_endpoint(&self) -> String {
        self.backend_client()
            .map(|c| c.endpoint().to_string())
            .unwrap_or_default()
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
            let ip = c.before.as_ref()?.parts.get("private_ip")?;
            out.push(BrokerAddress {
                host: ip.clone(),
                amqp_port: gw.brokers.ports.amqp,
                management_port: gw.brokers.ports.management,
                mqtt_port: Some(gw.brokers.ports.mqtt),
            });
        }
        Some(out)
    }

    /// The backend's federation upstream URIs for a gateway (credentials included).
    fn gateway_uris(&self, addresses: &[BrokerAddress]) -> Result<Vec<String>> {
        let fed = &self.stack.backend.spec.credentials.federation;
        let pw = fed
            .password
            .resolve(&self.stack.dir)
            .map_err(|e| Error::Failed(e.to_string()))?;
        let pw = topology::encode_component(pw.expose());
        Ok(addresses
            .iter()
            .map(|a| topology::amqp_uri(&fed.user, &pw, &a.host, a.amqp_port, 30))
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
