//! Test fixtures: a private copy of the example regions whose secrets come from files.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// The pre-shared keys of [`Regions::with_declared_tunnels`], tunnel 1 and 2.
pub const TUNNEL_KEYS: [&str; 2] = ["tunnelkey.one_1", "tunnelkey.two_2"];

/// The repository's example region files, copied into a temporary directory. Every
/// `env:VAR` secret source is rewritten to `file:secrets/VAR` with a fresh random value, so
/// tests need no process-wide environment and exercise file sources.
pub struct Regions {
    _root: TempDir,
    dir: PathBuf,
    /// Broker endpoints of the test (see [`Regions::examples`]).
    pub endpoints: PathBuf,
    pub secrets: BTreeMap<String, String>,
}

impl Regions {
    pub fn examples() -> Regions {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("regions");
        std::fs::create_dir_all(dir.join("secrets")).expect("mkdir");
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("regions");
        let mut secrets = BTreeMap::new();
        // The CAs the examples name get real certificates and keys.
        let now = std::time::SystemTime::now();
        for name in ["BACKEND", "STACK", "DEVICE"] {
            let (ca, key) =
                gwctl::pki::Authority::generate(&format!("test {name} CA"), now).expect("test CA");
            secrets.insert(format!("GWCTL_{name}_CA_CERT"), ca.cert_pem().to_string());
            secrets.insert(format!("GWCTL_{name}_CA_KEY"), key.expose().to_string());
        }
        for entry in std::fs::read_dir(&examples).expect("examples") {
            let path = entry.expect("entry").path();
            if path.extension().is_none_or(|x| x != "yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read example");
            let mut out = String::new();
            for line in text.lines() {
                if let Some(i) = line.find("env:GWCTL_") {
                    let var = line[i + 4..].trim().to_string();
                    let value = secrets
                        .entry(var.clone())
                        .or_insert_with(|| random_secret(&var))
                        .clone();
                    let file = dir.join("secrets").join(&var);
                    std::fs::write(&file, format!("{value}\n")).expect("write secret");
                    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                        .expect("chmod");
                    out.push_str(&format!("{}file:secrets/{var}\n", &line[..i]));
                } else {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            std::fs::write(dir.join(path.file_name().expect("name")), out).expect("write copy");
        }
        // Brokers are reached only on loopback in tests: a command that talks to brokers without
        // a test-specific endpoint file fails fast here instead of reaching for the private
        // addresses in the region files.
        let endpoints = root.path().join("endpoints.json");
        let closed = |port: u16| serde_json::json!([{"host": "127.0.0.1", "amqp_port": port, "management_port": port}]);
        let map = serde_json::json!({"regions": {"backend": closed(9), "us-east-1": closed(9), "ap-northeast-1": closed(9)}});
        std::fs::write(&endpoints, map.to_string()).expect("write endpoints");
        Regions {
            _root: root,
            dir,
            secrets,
            endpoints,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn write(&self, name: &str, contents: &str) {
        std::fs::write(self.file(name), contents).expect("write region file");
    }

    /// Replaces the first occurrence of `from` in a region file.
    pub fn edit(&self, name: &str, from: &str, to: &str) {
        let text = std::fs::read_to_string(self.file(name)).expect("read");
        assert!(text.contains(from), "{name} has no `{from}`");
        self.write(name, &text.replacen(from, to, 1));
    }

    /// Writes a secret file `secrets/NAME` (mode 0600) the region files can name.
    pub fn write_secret(&self, name: &str, value: &str) {
        let path = self.dir.join("secrets").join(name);
        std::fs::write(&path, format!("{value}\n")).expect("secret");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }

    /// The examples with us-east-1's VPN tunnels declared (inside CIDRs, and pre-shared keys
    /// [`TUNNEL_KEYS`] from secret files) and a 4-byte ASN on the backend.
    pub fn with_declared_tunnels() -> Regions {
        let r = Regions::examples();
        r.write_secret("PSK_1", TUNNEL_KEYS[0]);
        r.write_secret("PSK_2", TUNNEL_KEYS[1]);
        r.edit("backend.yaml", "  bgp_asn: 65000", "  bgp_asn: 4200000000");
        r.edit(
            "us-east-1.yaml",
            "federation:",
            "vpn:\n  tunnels:\n    inside_cidrs: [169.254.100.0/30, 169.254.100.4/30]\n    \
             pre_shared_keys: [file:secrets/PSK_1, file:secrets/PSK_2]\nfederation:",
        );
        r
    }

    /// `gwctl --regions <this dir>`, with no GWCTL_* variables inherited.
    pub fn gwctl(&self) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::cargo_bin("gwctl").expect("binary");
        for (k, _) in std::env::vars() {
            if k.starts_with("GWCTL_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("NO_COLOR", "1")
            .env("GWCTL_BROKER_ENDPOINTS", &self.endpoints)
            .arg("--regions")
            .arg(&self.dir);
        cmd
    }
}

/// A random secret with characters that need escaping in JSON and URIs, named for debugging.
fn random_secret(var: &str) -> String {
    let n: u64 = rand_u64();
    if var.ends_with("COOKIE") {
        format!("COOKIE{n:016X}")
    } else {
        format!("pw-{n:016x}@/\"%:")
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// Every file under `dir`, recursively, with its contents.
pub fn read_tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.push((p, bytes));
            }
        }
    }
    out
}

pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// The body of a plain HTTP GET of `path` at `addr` (the router's small server answers one
/// request per connection).
pub fn http_get(addr: impl std::net::ToSocketAddrs, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default())
}

pub mod fault_proxy;
pub mod follower;
pub mod moto;
pub mod traffic;

/// The RabbitMQ production runs (Debian 13's 4.0, in the trixie root scripts/setup builds;
/// `GWCTL_RABBITMQ_ROOT` names another root).
pub fn rabbitmq() -> gwctl::sandbox::Install {
    let root = std::env::var_os("GWCTL_RABBITMQ_ROOT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| gwctl::sandbox::node::DEFAULT_ROOT.into());
    let install = gwctl::sandbox::Install::rooted(root);
    assert!(
        install.exists(),
        "no RabbitMQ in {install:?}: run scripts/setup (the test command does)"
    );
    install
}
