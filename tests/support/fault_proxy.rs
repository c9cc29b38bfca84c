//! `scripts/aws_proxy.py` in front of a test's moto: AWS-shaped errors (seeded, at a rate, or
//! exact ones), lost connections and latency, and the account of every call it saw — which is
//! how tests count mutating calls and faults met.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub struct FaultProxy {
    child: Child,
    pub endpoint: String,
    _dir: tempfile::TempDir,
}

/// What the proxy saw since it started or was last reset.
#[derive(Debug, Clone)]
pub struct Account(pub Value);

impl Account {
    pub fn calls(&self) -> u64 {
        self.0["calls"].as_u64().unwrap_or(0)
    }
    pub fn injected(&self) -> u64 {
        self.0["injected_total"].as_u64().unwrap_or(0)
    }
    pub fn injected_of(&self, kind: &str) -> u64 {
        self.0["injected"][kind].as_u64().unwrap_or(0)
    }
    pub fn mutating(&self) -> u64 {
        self.0["mutating"].as_u64().unwrap_or(0)
    }
    pub fn calls_of(&self, action: &str) -> u64 {
        self.0["by_action"][action].as_u64().unwrap_or(0)
    }
    /// The mutating actions, each once, in the order they were first called, with how many
    /// calls of each were made.
    pub fn mutating_actions(&self) -> Vec<(String, u64)> {
        let mut seen: Vec<(String, u64)> = Vec::new();
        for a in self.0["mutating_actions"].as_array().into_iter().flatten() {
            let action = a.as_str().unwrap_or_default();
            let action = action.split_once(':').map_or(action, |(_, a)| a);
            match seen.iter_mut().find(|(s, _)| s == action) {
                Some((_, n)) => *n += 1,
                None => seen.push((action.to_string(), 1)),
            }
        }
        seen
    }

    /// Every fault injected, in order: "service:Action kind".
    pub fn faults(&self) -> Vec<String> {
        self.0["faults"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str().map(str::to_string))
            .collect()
    }
}

/// Which answers to calls of one action the proxy cuts (the calls carried out): after the
/// first `skip` calls, one in every `every`, `times` of them.
#[derive(Debug, Clone)]
pub struct Cut {
    pub action: String,
    pub skip: u64,
    pub every: u64,
    pub times: u64,
}

impl Cut {
    /// The answer to the `n`th call (from 0) of `action` alone.
    pub fn nth(action: &str, n: u64) -> Cut {
        Cut {
            action: action.to_string(),
            skip: n,
            every: 1,
            times: 1,
        }
    }

    /// The answers to every other call of `action`, from the `first` (0 or 1).
    pub fn every_other(action: &str, first: u64) -> Cut {
        Cut {
            action: action.to_string(),
            skip: first,
            every: 2,
            times: u64::MAX,
        }
    }
}

impl FaultProxy {
    /// A proxy to `upstream` that forwards everything as it is, until configured.
    pub fn start(upstream: &str) -> FaultProxy {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = tempfile::tempdir().expect("tempdir");
        let ready = dir.path().join("url");
        let child = Command::new(root.join(".venv/bin/python"))
            .arg(root.join("scripts/aws_proxy.py"))
            .args(["--upstream", upstream, "--ready-file"])
            .arg(&ready)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start scripts/aws_proxy.py");
        let start = Instant::now();
        let endpoint = loop {
            if let Ok(url) = std::fs::read_to_string(&ready) {
                break url;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the AWS proxy did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        FaultProxy {
            child,
            endpoint,
            _dir: dir,
        }
    }

    /// Changes the proxy's behaviour: `fault_rate`, `kinds`, `seed`, `latency_ms`,
    /// `jitter_ms`, `rules` (see the script's help).
    pub fn configure(&self, changes: Value) {
        self.control("POST", "config", &changes.to_string());
    }

    /// The calls `cuts` name are carried out and their answers cut, as a lost answer is.
    pub fn cut_answers(&self, cuts: &[Cut]) {
        let rules: Vec<Value> = cuts
            .iter()
            .map(|c| {
                json!({"action": c.action, "skip": c.skip, "every": c.every,
                       "times": c.times, "kind": "lost"})
            })
            .collect();
        self.configure(json!({ "rules": rules }));
    }

    /// Faults at `rate` of the kinds given, from a generator seeded with `seed`.
    pub fn faults(&self, rate: f64, kinds: &[&str], seed: u64) {
        self.configure(json!({"fault_rate": rate, "kinds": kinds, "seed": seed}));
    }

    pub fn account(&self) -> Account {
        Account(serde_json::from_str(&self.control("GET", "stats", "")).expect("stats"))
    }

    pub fn reset(&self) {
        self.control("POST", "reset", "");
    }

    fn control(&self, method: &str, what: &str, body: &str) -> String {
        use std::io::{Read, Write};
        let addr = self.endpoint.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).expect("proxy");
        write!(
            s,
            "{method} /_proxy/{what} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("control request");
        let mut answer = String::new();
        s.read_to_string(&mut answer).expect("control answer");
        let (head, body) = answer.split_once("\r\n\r\n").expect("http answer");
        assert!(head.contains(" 200 "), "proxy control {what}: {answer}");
        body.to_string()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
