//! The vocabulary of gwctl as pure data: AWS resources, Route53 records and health checks,
//! the federation topology, and how Route53 chooses a region. Nothing here calls AWS,
//! RabbitMQ or tera, and nothing here imports a layer above it (plan, engine, commands):
//! every other layer speaks these types.

pub mod addressing;
pub mod capacity;
pub mod delivery;
pub mod dns;
pub mod federation;
pub mod hash;
pub mod locations;
pub mod resources;
pub mod routing;
pub mod terraform;
pub mod user_data;

use serde::{Deserialize, Serialize};

pub use hash::{sha256_hex, sha256_hex_bytes};

/// What a plan does to one thing it manages (an AWS resource, a Route53 check or record, a
/// federation entry on the backend).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Create,
    Update,
    Replace,
    Delete,
    NoOp,
}

impl Action {
    /// Terraform's `actions` list for this action.
    pub fn terraform_actions(self) -> &'static [&'static str] {
        match self {
            Action::Create => &["create"],
            Action::Update => &["update"],
            Action::Replace => &["delete", "create"],
            Action::Delete => &["delete"],
            Action::NoOp => &["no-op"],
        }
    }
}
