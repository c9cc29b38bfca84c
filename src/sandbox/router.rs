//! `gwctl router run` as a sandbox process: in its own process group (stopped with the nodes,
//! or killed alone), its log in the sandbox directory, reaching the sandbox's brokers through
//! the sandbox's endpoint file.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{ENDPOINTS_FILE, SandboxError};

pub struct RouterProcess {
    child: Child,
    pub listen: SocketAddr,
    pub log: PathBuf,
}

/// The line the router logs once it routes.
const READY: &str = "routing `";

impl RouterProcess {
    /// Starts `exe router run` for the region files in `regions` and waits until it routes.
    pub async fn start(
        exe: &Path,
        regions: &Path,
        sandbox_dir: &Path,
        id: &str,
        listen: SocketAddr,
        resync: bool,
    ) -> Result<RouterProcess, SandboxError> {
        let log = sandbox_dir.join(format!("router-{id}.log"));
        let file = std::fs::File::create(&log)
            .map_err(|e| SandboxError::Io(format!("creating {}", log.display()), e))?;
        let mut cmd = Command::new(exe);
        cmd.env("NO_COLOR", "1")
            .env("GWCTL_BROKER_ENDPOINTS", sandbox_dir.join(ENDPOINTS_FILE))
            .arg("--regions")
            .arg(regions)
            .args(["router", "run", "--id", id, "--listen", &listen.to_string()]);
        if !resync {
            cmd.arg("--no-resync");
        }
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .map_err(|e| SandboxError::Io(format!("starting {}", exe.display()), e))?;
        let mut router = RouterProcess { child, listen, log };
        let start = Instant::now();
        while !router.log_text().contains(READY) {
            if let Ok(Some(status)) = router.child.try_wait() {
                return Err(SandboxError::Failed(format!(
                    "the router exited ({status}):\n{}",
                    router.log_text()
                )));
            }
            if start.elapsed() > Duration::from_secs(30) {
                router.kill();
                return Err(SandboxError::Failed(format!(
                    "the router did not start routing within 30 s:\n{}",
                    router.log_text()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(router)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: what it had not acknowledged goes to the next router.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub async fn stop(&mut self, grace: Duration) {
        super::node::stop_group(self.pid(), grace).await;
        let _ = self.child.wait();
    }
}
