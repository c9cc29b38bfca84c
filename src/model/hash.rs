//! The one digest gwctl uses: secrets are compared by it in memory, plans are fingerprinted
//! with it, health checks carry a piece of it in their CallerReference.

use sha2::{Digest, Sha256};

/// Lower-case hex SHA-256 of `value`.
pub fn sha256_hex(value: &str) -> String {
    sha256_hex_bytes(value.as_bytes())
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex_bytes(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
