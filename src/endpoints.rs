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
}

impl BrokerAddress {
    pub fn management_url(&self) -> String {
        format!("http://{}:{}", self.host, self.management_port)
    }
}

/// Overrides, by region name (`backend` for the backend).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointMap {
    #[serde(default)]
    pub regions: BTreeMap<String, Vec<BrokerAddress>>,
}

impl EndpointMap {
    pub fn load(path: &Path) -> Result<EndpointMap, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn get(&self, region: &str) -> Option<&[BrokerAddress]> {
        self.regions
            .get(region)
            .map(Vec::as_slice)
            .filter(|v| !v.is_empty())
    }
}
