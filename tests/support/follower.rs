//! `gwctl sandbox follow` for a test: a local RabbitMQ node per broker instance moto reports,
//! and the endpoint file that maps instances to them.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Regions;
use super::moto::Moto;

pub struct Follower {
    child: Child,
    _root: tempfile::TempDir,
    pub dir: PathBuf,
    log: PathBuf,
}

impl Follower {
    /// Starts following `m` with `r`'s region files; returns once the backend node runs and
    /// the endpoint file exists.
    pub fn start(r: &Regions, m: &Moto) -> Follower {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("run");
        let log = root.path().join("follow.log");
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("gwctl"));
        m.std_env(&mut cmd);
        for (k, _) in std::env::vars() {
            if k.starts_with("GWCTL_") {
                cmd.env_remove(k);
            }
        }
        let install = super::rabbitmq();
        let root_fs = install.root.clone().expect("a rooted RabbitMQ");
        cmd.env("NO_COLOR", "1")
            .arg("--regions")
            .arg(r.dir())
            .args(["sandbox", "follow", "--interval-ms", "300", "--dir"])
            .arg(&dir)
            .arg("--rabbitmq-root")
            .arg(root_fs)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("log"))
            .stderr(Stdio::from(
                std::fs::File::options()
                    .append(true)
                    .open(&log)
                    .expect("log"),
            ));
        let child = cmd.spawn().expect("gwctl sandbox follow");
        let mut f = Follower {
            child,
            _root: root,
            dir,
            log,
        };
        let start = Instant::now();
        while !f.endpoints().exists() {
            if let Ok(Some(status)) = f.child.try_wait() {
                panic!("sandbox follow exited ({status}):\n{}", f.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(180),
                "no endpoint file after 180 s:\n{}",
                f.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        f
    }

    pub fn endpoints(&self) -> PathBuf {
        self.dir.join("endpoints.json")
    }

    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// gwctl on `r`'s files and `m`, reaching brokers through this sandbox.
    pub fn gwctl(&self, r: &Regions, m: &Moto) -> assert_cmd::Command {
        let mut c = super::moto::gwctl(r, m);
        c.env("GWCTL_BROKER_ENDPOINTS", self.endpoints());
        c
    }

    /// The same, for a process the test drives itself.
    pub fn std_gwctl(&self, r: &Regions, m: &Moto) -> Command {
        let mut c = Command::new(assert_cmd::cargo::cargo_bin("gwctl"));
        m.std_env(&mut c);
        for (k, _) in std::env::vars() {
            if k.starts_with("GWCTL_") {
                c.env_remove(k);
            }
        }
        c.env("NO_COLOR", "1")
            .env("GWCTL_BROKER_ENDPOINTS", self.endpoints())
            .arg("--regions")
            .arg(r.dir());
        c
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        // SIGTERM: the follower stops its nodes; `sandbox stop` catches what a crash left.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new(assert_cmd::cargo::cargo_bin("gwctl"))
            .args(["sandbox", "stop", "--dir"])
            .arg(&self.dir)
            .output();
    }
}
