//! A gateway node's device authorizer in the sandbox: the rendered script production brokers
//! run (templates/gateway/device-authorizer.py), as a local process on the node's loopback port.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::SandboxError;
use crate::files::write_file;
use crate::render;
use crate::spec::BackendSpec;

/// A running authorizer; dropping it stops it.
#[derive(Debug)]
pub struct Authorizer {
    child: Option<Child>,
    /// The RabbitMQ series of the nodes it answers (its mode depends on it).
    pub series: crate::spec::model::RabbitSeries,
    pub port: u16,
}

/// Where a node's revoked device ids are (the authorizer re-reads the file when it changes).
pub fn revoked_file(node_dir: &Path) -> std::path::PathBuf {
    node_dir.join("revoked-devices")
}

impl Authorizer {
    pub fn start(
        backend: &BackendSpec,
        series: crate::spec::model::RabbitSeries,
        node_dir: &Path,
        port: u16,
    ) -> Result<Authorizer, SandboxError> {
        let io = |what: String| move |e| SandboxError::Io(what, e);
        let script = node_dir.join("device-authorizer.py");
        write_file(&script, render::DEVICE_AUTHORIZER.as_bytes(), 0o755)
            .map_err(io(format!("writing {}", script.display())))?;
        let revoked = revoked_file(node_dir);
        let list = backend.devices.revoked.join("\n");
        write_file(&revoked, list.as_bytes(), 0o644)
            .map_err(io(format!("writing {}", revoked.display())))?;
        let log = std::fs::File::create(node_dir.join("authorizer.log"))
            .map_err(io("creating authorizer.log".into()))?;
        let log_err = log
            .try_clone()
            .map_err(io("creating authorizer.log".into()))?;
        let mut cmd = Command::new("python3");
        cmd.arg(&script)
            .args(render::authorizer_args(
                backend,
                series,
                port,
                &revoked.display().to_string(),
            ))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let child = cmd
            .spawn()
            .map_err(io("starting the device authorizer (python3)".into()))?;
        Ok(Authorizer {
            child: Some(child),
            series,
            port,
        })
    }

    /// Waits until it accepts connections.
    pub async fn wait_ready(&self, port: u16, timeout: Duration) -> Result<(), SandboxError> {
        let start = std::time::Instant::now();
        while start.elapsed() < timeout {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(SandboxError::Failed(format!(
            "the device authorizer on port {port} did not start within {} s",
            timeout.as_secs()
        )))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Leaves it running after this process ends.
    pub fn detach(&mut self) -> Option<u32> {
        self.child.take().map(|c| c.id())
    }

    pub async fn stop(&mut self, grace: Duration) {
        if let Some(mut child) = self.child.take() {
            super::node::stop_group(child.id(), grace).await;
            let _ = child.wait();
        }
    }
}

impl Drop for Authorizer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
