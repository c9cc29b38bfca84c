//! The sandbox's certificates. Gateway nodes get server certificates from the stack CA of the
//! region files, as production brokers do (plus `localhost`/`127.0.0.1`, where the sandbox's
//! clients connect); the backend node, which stands in for a cluster gwctl does not deploy,
//! gets one from a sandbox CA of its own, and its links to gateways present a link
//! certificate of the stack CA, as `gwctl ca issue-link` makes for the real backend.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::SandboxError;
use crate::files::write_file;
use crate::pki::{Authority, Issued};
use crate::render::{self, Cas};
use crate::spec::Stack;

/// The sandbox's CAs and where each node's TLS files are.
pub struct SandboxTls {
    /// The region files' CAs, with the backend CA replaced by the sandbox's.
    pub cas: Cas,
    pub backend_ca_file: PathBuf,
    /// A client certificate of the stack CA for operators' AMQP connections to gateways
    /// (every client of a gateway presents a certificate).
    pub operator: Issued,
}

/// The common name of the sandbox operator's client certificate (a dot: never a device id).
pub const OPERATOR_NAME: &str = "gwctl.operator";

/// Where the files of a node's TLS directory are (see [`render::Addressing::tls_dir`]).
pub fn node_tls_dir(node_dir: &Path) -> PathBuf {
    node_dir.join("tls")
}

pub fn prepare(stack: &Stack, dir: &Path) -> Result<SandboxTls, SandboxError> {
    let now = SystemTime::now();
    let failed = |what: &str, e: crate::pki::PkiError| SandboxError::Failed(format!("{what}: {e}"));
    let spec_cas = Cas::read(stack)?;
    let stack_ca = crate::spec::tls::stack_authority(stack)
        .map_err(|e| SandboxError::Failed(e.to_string()))?;
    let (backend_ca, _) = Authority::generate("gwctl sandbox backend CA", now)
        .map_err(|e| failed("sandbox CA", e))?;
    let pki = dir.join("pki");
    let backend_ca_file = pki.join("backend-ca.pem");
    write(&backend_ca_file, backend_ca.cert_pem(), 0o644)?;
    let cas = Cas {
        backend: backend_ca.cert_pem().to_string(),
        ..spec_cas
    };
    let local = ["localhost".to_string(), "127.0.0.1".to_string()];

    let backend_tls = node_tls_dir(&dir.join(super::BACKEND));
    let server = backend_ca
        .issue_server(&local, now)
        .map_err(|e| failed("backend certificate", e))?;
    write_pair(&backend_tls, "server", &server)?;
    write(&backend_tls.join("clients-ca.pem"), &cas.stack, 0o644)?;
    write(&backend_tls.join("stack-ca.pem"), &cas.stack, 0o644)?;
    let link = stack_ca
        .issue_client(crate::pki::LINK_COMMON_NAME, now)
        .map_err(|e| failed("link certificate", e))?;
    write_pair(&backend_tls, "link", &link)?;

    for gw in &stack.gateways {
        let tls = node_tls_dir(&dir.join(&gw.spec.region));
        let mut names = render::broker_names(&gw.spec, &stack.backend.spec, 1);
        names.extend(local.iter().cloned());
        let server = stack_ca
            .issue_server(&names, now)
            .map_err(|e| failed("gateway certificate", e))?;
        write_pair(&tls, "server", &server)?;
        write(&tls.join("clients-ca.pem"), &cas.gateway_clients(), 0o644)?;
        write(&tls.join("backend-ca.pem"), &cas.backend, 0o644)?;
    }
    let operator = stack_ca
        .issue_client(OPERATOR_NAME, now)
        .map_err(|e| failed("operator certificate", e))?;
    Ok(SandboxTls {
        cas,
        backend_ca_file,
        operator,
    })
}

fn write_pair(dir: &Path, stem: &str, issued: &Issued) -> Result<(), SandboxError> {
    write(&dir.join(format!("{stem}.pem")), &issued.cert_pem, 0o644)?;
    write(
        &dir.join(format!("{stem}.key")),
        issued.key_pem.expose(),
        0o600,
    )
}

fn write(path: &Path, text: &str, mode: u32) -> Result<(), SandboxError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| SandboxError::Io(format!("creating {}", parent.display()), e))?;
    }
    write_file(path, text.as_bytes(), mode)
        .map_err(|e| SandboxError::Io(format!("writing {}", path.display()), e))
}
