//! One local RabbitMQ node, started from rendered files on loopback ports.
//!
//! Facts this relies on (see shared notes on local RabbitMQ): call the server script directly
//! (the /usr/sbin wrapper switches user), give each node its own name, ports, data and log
//! directories, keep /etc/rabbitmq out of the way, run in the foreground in its own process
//! group (`-detached` hides a failed boot), and treat "listener accepts TCP while the process
//! lives" as ready.
//!
//! The node runs the RabbitMQ production runs: Debian 13's 4.0 from a trixie root (built by
//! `scripts/setup`), chrooted in a private mount namespace, on these Debian 12 machines whose
//! own package is 3.10 (see [`Install`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::files::write_file;

/// Where a RabbitMQ installation lives: the host's own (`bin` holds `rabbitmq-server`), or a
/// root file system with Debian's package in it (Debian 13's RabbitMQ 4.0 on a Debian 12
/// machine). A rooted node runs chrooted in a mount namespace of its own: `/dev` and `/proc`
/// are bound in, and so is the node's directory, at the same path, so that every path in its
/// configuration means the same inside and outside. The network is the host's: listeners on
/// 127.0.0.1 are reached as usual. Nothing outlives the node: the mounts go with its namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Install {
    /// The root file system; `None`: the host's installation.
    pub root: Option<PathBuf>,
    /// The directory of `rabbitmq-server` and `rabbitmqctl` (inside `root` when rooted).
    pub bin: PathBuf,
}

/// Where Debian's package puts the server scripts.
pub const DEBIAN_BIN: &str = "/usr/lib/rabbitmq/bin";

/// The default root `scripts/setup` builds (outside any clone, shared by all of them).
pub const DEFAULT_ROOT: &str = "/var/cache/gwctl/trixie-root";

/// Binds `/dev`, `/proc` and the shared directory into the root, then runs the command in it.
const CHROOT_SCRIPT: &str = r#"set -e
root=$1 share=$2; shift 2
mount --bind /dev "$root/dev"
mount -t proc proc "$root/proc"
mkdir -p "$root$share"
mount --bind "$share" "$root$share"
exec chroot "$root" "$@""#;

impl Install {
    /// Debian's package installed on this machine.
    pub fn host(bin: impl Into<PathBuf>) -> Install {
        Install {
            root: None,
            bin: bin.into(),
        }
    }

    /// Debian's package inside `root` (as `scripts/setup` builds it).
    pub fn rooted(root: impl Into<PathBuf>) -> Install {
        Install {
            root: Some(root.into()),
            bin: PathBuf::from(DEBIAN_BIN),
        }
    }

    /// The installation that runs `series`: this one for 4.0 (the trixie root, or whatever
    /// `--rabbitmq-root`/`--rabbitmq-bin` named), this machine's own Debian 12 package for 3.10
    /// (a region pinned to it, to be moved off it).
    pub fn for_series(&self, series: crate::spec::model::RabbitSeries) -> Install {
        match series {
            crate::spec::model::RabbitSeries::V3_10 => Install::host(DEBIAN_BIN),
            crate::spec::model::RabbitSeries::V4_0 => self.clone(),
        }
    }

    /// Whether the installation is there.
    pub fn exists(&self) -> bool {
        let server = self.bin.join("rabbitmq-server");
        match &self.root {
            Some(root) => root
                .join(server.strip_prefix("/").unwrap_or(&server))
                .exists(),
            None => server.exists(),
        }
    }

    /// A command running `program` of this installation; `share` (absolute) is visible at the
    /// same path to a rooted program. Environment variables reach the program unchanged.
    pub fn command(&self, program: &str, share: &Path) -> Command {
        let exe = self.bin.join(program);
        match &self.root {
            None => Command::new(exe),
            Some(root) => {
                let mut cmd = Command::new("unshare");
                cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
                    .arg(CHROOT_SCRIPT)
                    .arg("sh")
                    .arg(root)
                    .arg(share)
                    .arg(exe);
                cmd
            }
        }
    }

    fn describe(&self) -> String {
        match &self.root {
            Some(root) => format!("{} in {}", self.bin.display(), root.display()),
            None => self.bin.display().to_string(),
        }
    }
}

/// How to start a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Erlang node name (without `@localhost`).
    pub name: String,
    /// The node's own directory: data, logs, HOME with its cookie.
    pub dir: PathBuf,
    pub config_file: PathBuf,
    /// advanced.config, when the node has one.
    pub advanced_config_file: Option<PathBuf>,
    pub enabled_plugins_file: PathBuf,
    pub dist_port: u16,
    /// epmd of this sandbox (one per sandbox, stopped with it).
    pub epmd_port: u16,
    /// Ports that must accept connections before the node counts as ready.
    pub ready_ports: Vec<u16>,
    pub install: Install,
    /// The directory holding every file the node reads or writes (absolute): what a rooted
    /// node gets bound in.
    pub share: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("node {name}: cannot start {bin}: {source}")]
    Spawn {
        name: String,
        bin: String,
        #[source]
        source: std::io::Error,
    },
    #[error("node {name}: {what}: {source}")]
    Io {
        name: String,
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("node {name} exited during boot ({status}); last console lines:\n{tail}")]
    BootFailed {
        name: String,
        status: String,
        tail: String,
    },
    #[error("node {name} not ready after {secs} s (ports {ports:?}); last console lines:\n{tail}")]
    NotReady {
        name: String,
        secs: u64,
        ports: Vec<u16>,
        tail: String,
    },
}

/// A running node. Dropping it kills the node's whole process group.
#[derive(Debug)]
pub struct LocalNode {
    pub config: NodeConfig,
    child: Option<Child>,
}

impl LocalNode {
    /// Writes the node's cookie and starts it; does not wait for readiness.
    pub fn start(config: NodeConfig, erlang_cookie: &str) -> Result<LocalNode, NodeError> {
        let name = config.name.clone();
        let io = |what: &str| {
            let name = name.clone();
            let what = what.to_string();
            move |source| NodeError::Io { name, what, source }
        };
        let home = config.dir.join("home");
        for d in [&home, &config.dir.join("mnesia"), &config.dir.join("log")] {
            std::fs::create_dir_all(d).map_err(io("creating directories"))?;
        }
        let cookie = home.join(".erlang.cookie");
        if cookie.exists() {
            // The cookie is read-only once written; replace it whole.
            std::fs::remove_file(&cookie).map_err(io("replacing the cookie"))?;
        }
        write_file(&cookie, erlang_cookie.as_bytes(), 0o400).map_err(io("writing the cookie"))?;
        let console = std::fs::File::create(config.dir.join("console.log"))
            .map_err(io("creating console.log"))?;
        let console_err = console.try_clone().map_err(io("creating console.log"))?;
        let missing = config.dir.join("does-not-exist");
        let mut cmd = config.install.command("rabbitmq-server", &config.share);
        cmd.env("HOME", &home)
            .env("RABBITMQ_NODENAME", format!("{}@localhost", config.name))
            // No RABBITMQ_NODE_PORT/NODE_IP_ADDRESS: they would add a plaintext AMQP
            // listener to the rendered configuration's TLS-only ones.
            .env("RABBITMQ_DIST_PORT", config.dist_port.to_string())
            .env("ERL_EPMD_PORT", config.epmd_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", config.dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", config.dir.join("log"))
            .env("RABBITMQ_CONFIG_FILE", &config.config_file)
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                &config.enabled_plugins_file,
            )
            .env("RABBITMQ_PID_FILE", config.dir.join("rabbitmq.pid"))
            .env("RABBITMQ_CONF_ENV_FILE", &missing)
            .env(
                "RABBITMQ_ADVANCED_CONFIG_FILE",
                config
                    .advanced_config_file
                    .clone()
                    .unwrap_or_else(|| missing.with_extension("config")),
            )
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}",
            )
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .stdin(Stdio::null())
            .stdout(console)
            .stderr(console_err);
        {
            use std::os::unix::process::CommandExt;
            // Its own process group, so stopping the node also stops beam and its helpers.
            cmd.process_group(0);
        }
        let child = cmd.spawn().map_err(|source| NodeError::Spawn {
            name: config.name.clone(),
            bin: config.install.describe(),
            source,
        })?;
        Ok(LocalNode {
            config,
            child: Some(child),
        })
    }

    /// Waits until every ready port accepts TCP while the process lives.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<(), NodeError> {
        let start = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(NodeError::BootFailed {
                    name: self.config.name.clone(),
                    status: status.to_string(),
                    tail: self.console_tail(),
                });
            }
            let mut all = true;
            for port in &self.config.ready_ports {
                if tokio::net::TcpStream::connect(("127.0.0.1", *port))
                    .await
                    .is_err()
                {
                    all = false;
                    break;
                }
            }
            if all {
                return Ok(());
            }
            if start.elapsed() > timeout {
                return Err(NodeError::NotReady {
                    name: self.config.name.clone(),
                    secs: timeout.as_secs(),
                    ports: self.config.ready_ports.clone(),
                    tail: self.console_tail(),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Runs `rabbitmqctl ARGS` against this node (as an operator would on a broker).
    pub fn ctl(&self, args: &[&str]) -> std::io::Result<std::process::Output> {
        self.tool("rabbitmqctl", args)
    }

    /// Runs one of RabbitMQ's command-line tools (`rabbitmqctl`, `rabbitmq-upgrade`,
    /// `rabbitmq-queues`) against this node.
    pub fn tool(&self, program: &str, args: &[&str]) -> std::io::Result<std::process::Output> {
        self.config
            .install
            .command(program, &self.config.share)
            .args(["-n", &format!("{}@localhost", self.config.name)])
            .args(args)
            .env("HOME", self.config.dir.join("home"))
            .env("ERL_EPMD_PORT", self.config.epmd_port.to_string())
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .stdin(Stdio::null())
            .output()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the node: SIGTERM to its process group, SIGKILL after `grace`.
    pub async fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        signal_group(child.id(), libc::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < grace {
            if let Ok(Some(_)) = child.try_wait() {
                signal_group(child.id(), libc::SIGKILL);
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        signal_group(child.id(), libc::SIGKILL);
        let _ = child.wait();
    }

    /// Forgets the node without stopping it; returns its process group id.
    pub fn detach(&mut self) -> Option<u32> {
        self.child.take().map(|c| c.id())
    }

    /// Stops the node and starts it again on the same data (a broker restart).
    pub async fn restart(&mut self, grace: Duration, erlang_cookie: &str) -> Result<(), NodeError> {
        self.stop(grace).await;
        let mut again = LocalNode::start(self.config.clone(), erlang_cookie)?;
        self.child = again.child.take();
        self.wait_ready(Duration::from_secs(120)).await
    }

    /// What the node printed that explains a failure: its first error lines (a failed boot
    /// ends in pages of process dumps that hide the cause), or else its last lines.
    pub fn console_tail(&self) -> String {
        let text = std::fs::read_to_string(self.config.dir.join("console.log")).unwrap_or_default();
        let errors: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("[error]"))
            .take(8)
            .collect();
        if !errors.is_empty() {
            return errors.join("\n");
        }
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for LocalNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal_group(child.id(), libc::SIGKILL);
            let _ = child.wait();
        }
    }
}

/// Stops the epmd a sandbox's nodes started on `port` (it daemonizes, outside their groups).
pub async fn stop_epmd(port: u16) {
    let _ = tokio::process::Command::new("epmd")
        .args(["-port", &port.to_string(), "-kill"])
        .env("ERL_EPMD_ADDRESS", "127.0.0.1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await;
}

/// Stops a detached node's process group: SIGTERM, then SIGKILL after `grace`.
pub async fn stop_group(pid: u32, grace: Duration) {
    signal_group(pid, libc::SIGTERM);
    let start = Instant::now();
    while start.elapsed() < grace && alive(pid) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    signal_group(pid, libc::SIGKILL);
}

fn alive(pid: u32) -> bool {
    // /proc/PID disappears once the process is reaped; a zombie leader has no children left.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

fn signal_group(pid: u32, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) with a negative pid signals the process group we created for this
        // node; it has no memory-safety preconditions.
        unsafe {
            libc::kill(-pid, signal);
        }
    }
}

/// Where sandbox listeners live: below the kernel's ephemeral range (32768-60999 on Linux),
/// so that no outgoing connection (federation links, HTTP clients) can take a port between
/// its allocation here and the node binding it.
const PORTS: std::ops::Range<u16> = 20000..32000;

/// Free TCP ports on loopback, all distinct, picked at random in [`PORTS`] (parallel sandboxes
/// rarely collide; a collision makes the boot fail with `eaddrinuse` and the sandbox retries
/// with new ports).
pub fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let mut held: Vec<std::net::TcpListener> = Vec::new();
    let mut ports = Vec::new();
    let mut attempts = 0;
    while ports.len() < n {
        attempts += 1;
        if attempts > n * 50 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "no free loopback ports in 20000-32000",
            ));
        }
        let port = rand::random_range(PORTS);
        if ports.contains(&port) {
            continue;
        }
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            held.push(l);
            ports.push(port);
        }
    }
    Ok(ports)
}

/// The pid of the Erlang VM of the sandbox node living in `node_dir` (found by its
/// `RABBITMQ_MNESIA_BASE`, which works for nodes another gwctl process started).
pub fn node_pid(node_dir: &Path) -> Option<u32> {
    let wanted = format!("RABBITMQ_MNESIA_BASE={}", node_dir.join("mnesia").display());
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        if !String::from_utf8_lossy(&cmd).contains("beam.smp") {
            return None;
        }
        let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        String::from_utf8_lossy(&env)
            .split('\0')
            .any(|v| v == wanted)
            .then_some(pid)
    })
}
