//! Where gwctl reaches brokers' AMQP and management listeners.
//!
//! By default: the backend's endpoints from backend.yaml, and each gateway's brokers at their
//! private addresses (discovered in AWS, reachable over the VPN). An endpoint file
//! (`--broker-endpoints`, env `GWCTL_BROKER_ENDPOINTS`) overrides them per region; the sandbox
//! writes one for its local nodes. The code that uses endpoints never knows which it got.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerAddress {
    pub host: String,
    pub amqp_port: u16,
    pub management_port: u16,
    /// For clients (the sandbox's devices); gwctl itself does not speak MQTT to brokers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt_port: Option<u16>,
    /// The name the broker's certificate covers, when it is not `host` (a gateway broker
    /// reached at its private address presents its region's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_name: Option<String>,
    /// A CA certificate file to verify the broker with, instead of the region files' CA for it
    /// (the sandbox's backend has a CA of its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// For the backend: the files its federation links to gateways use, on its machines
    /// (default: backend.yaml's `tls`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_files: Option<LinkFiles>,
}

/// Paths on a broker's machine that its federation links use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkFiles {
    /// The CA the peers' certificates chain to.
    pub ca_file: String,
    /// The certificate and key the links present.
    pub cert_file: String,
    pub key_file: String,
}

impl BrokerAddress {
    pub fn new(host: impl Into<String>, amqp_port: u16, management_port: u16) -> BrokerAddress {
        BrokerAddress {
            host: host.into(),
            amqp_port,
            management_port,
            mqtt_port: None,
            tls_name: None,
            ca_file: None,
            link_files: None,
        }
    }
}

/// Overrides, by region name (`backend` for the backend), and by EC2 instance id for single
/// gateway brokers (the sandbox that follows the emulated cloud maps each broker instance to
/// the local node booted from its user-data).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointMap {
    #[serde(default)]
    pub regions: BTreeMap<String, Vec<BrokerAddress>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub instances: BTreeMap<String, BrokerAddress>,
}

impl EndpointMap {
    pub fn load(path: &Path) -> Result<EndpointMap, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Where the broker of instance `id` answers, if the file says.
    pub fn instance(&self, id: &str) -> Option<&BrokerAddress> {
        self.instances.get(id)
    }

    pub fn get(&self, region: &str) -> Option<&[BrokerAddress]> {
        self.regions
            .get(region)
            .map(Vec::as_slice)
            .filter(|v| !v.is_empty())
    }
}
