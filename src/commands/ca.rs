//! `gwctl ca create`, `gwctl ca issue-link`, `gwctl device issue`: certificates made here, on
//! the operator's machine, written as files (keys 0600); nothing leaves the machine.

use std::path::Path;
use std::time::SystemTime;

use crate::cli::{CaCreateArgs, DeviceIssueArgs, OutArgs};
use crate::error::{Error, Result, Status};
use crate::pki::{Authority, PkiError};
use crate::printer::Printer;
use crate::spec::{self, Selection};

pub fn create(args: &CaCreateArgs, printer: &Printer) -> Result<Status> {
    if args.name.is_empty()
        || !args
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(Error::Usage(format!(
            "`{}` is not a file name stem (letters, digits, `-`, `_`)",
            args.name
        )));
    }
    let cn = args
        .common_name
        .clone()
        .unwrap_or_else(|| format!("gwctl {}", args.name));
    let (ca, key) = Authority::generate(&cn, SystemTime::now()).map_err(pki_failed)?;
    let files = [
        (
            format!("{}.pem", args.name),
            ca.cert_pem().to_string(),
            0o644,
        ),
        (
            format!("{}.key", args.name),
            key.expose().to_string(),
            0o600,
        ),
    ];
    write_all(&args.out.out, &files, printer)?;
    printer.success("ok", &format!("created the CA `{cn}`"));
    Ok(Status::Success)
}

pub fn issue_link(regions: &Path, args: &OutArgs, printer: &Printer) -> Result<Status> {
    let stack = spec::load(regions, &Selection::Regions(Vec::new())).map_err(Error::Invalid)?;
    let tls = &stack.backend.spec.tls;
    let cert = tls.stack_ca.cert.read_public(&stack.dir).map_err(failed)?;
    let now = SystemTime::now();
    let ca = spec::tls::stack_authority(&stack).map_err(failed)?;
    let link = ca
        .issue_client(crate::pki::LINK_COMMON_NAME, now)
        .map_err(pki_failed)?;
    let files = [
        ("gwctl-link.pem".to_string(), link.cert_pem, 0o644),
        (
            "gwctl-link.key".to_string(),
            link.key_pem.expose().to_string(),
            0o600,
        ),
        (
            "gwctl-stack-ca.pem".to_string(),
            format!("{}\n", cert.trim()),
            0o644,
        ),
    ];
    write_all(&args.out, &files, printer)?;
    printer.success(
        "ok",
        &format!(
            "install them on every backend node as {}, {} and {}",
            tls.link_cert_on_backend, tls.link_key_on_backend, tls.stack_ca_on_backend
        ),
    );
    Ok(Status::Success)
}

pub fn issue_device(regions: &Path, args: &DeviceIssueArgs, printer: &Printer) -> Result<Status> {
    let stack = spec::load(regions, &Selection::All).map_err(Error::Invalid)?;
    let id = &args.id;
    if !spec::tls::valid_device_id(id) {
        return Err(Error::Usage(format!(
            "`{id}` is not a device id: 1 to 64 letters, digits, `_` and `-`, starting with a \
             letter or digit"
        )));
    }
    // Users of the brokers' own definitions never carry a device id's shape (validation
    // refuses that), so no device certificate can log in as one of them.
    let tls = &stack.backend.spec.tls;
    let ca = match spec::tls::device_authority(&stack) {
        Err(e @ spec::tls::AuthorityError::NoDeviceKey) => return Err(Error::Usage(e.to_string())),
        other => other.map_err(failed)?,
    };
    let now = SystemTime::now();
    let issued = ca.issue_device(id, now).map_err(pki_failed)?;
    let expires = crate::pki::inspect(&issued.cert_pem)
        .map(|i| i.expires())
        .unwrap_or_default();
    let broker_ca = tls.stack_ca.cert.read_public(&stack.dir).map_err(failed)?;
    let files = [
        (format!("{id}.pem"), issued.cert_pem, 0o644),
        (
            format!("{id}.key"),
            issued.key_pem.expose().to_string(),
            0o600,
        ),
        (
            "ca.pem".to_string(),
            format!("{}\n", broker_ca.trim()),
            0o644,
        ),
    ];
    write_all(&args.out.out, &files, printer)?;
    printer.success(
        "ok",
        &format!("issued a certificate for device `{id}`, valid until {expires}; its MQTT client id must be `{id}`"),
    );
    Ok(Status::Success)
}

fn write_all(dir: &Path, files: &[(String, String, u32)], printer: &Printer) -> Result<()> {
    for (name, _, _) in files {
        let path = dir.join(name);
        if path.exists() && name != "ca.pem" {
            return Err(Error::Usage(format!(
                "{} exists; remove it first (gwctl never overwrites a key or certificate)",
                path.display()
            )));
        }
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    for (name, text, mode) in files {
        let path = dir.join(name);
        crate::files::write_file(&path, text.as_bytes(), *mode)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        printer.info(&format!("wrote {}", path.display()));
    }
    Ok(())
}

fn failed(e: impl std::fmt::Display) -> Error {
    Error::Failed(e.to_string())
}

fn pki_failed(e: PkiError) -> Error {
    Error::Failed(e.to_string())
}
