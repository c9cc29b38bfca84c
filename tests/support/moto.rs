//! A private moto server per test (the project's launcher, which extends moto where it lacks
//! what AWS has), its request recording, and SDK clients to look at or disturb its state.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};

pub struct Moto {
    child: Child,
    pub endpoint: String,
    port: u16,
    dir: tempfile::TempDir,
}

impl Moto {
    pub fn start() -> Moto {
        Moto::start_with(&[])
    }

    /// A moto with the launcher's settings in `env`, e.g. its asynchronous states
    /// (`EMULATOR_INSTANCE_PENDING_S`, `EMULATOR_VPN_PENDING_S`, `EMULATOR_CHANGE_PENDING_S`).
    pub fn start_with(env: &[(&str, &str)]) -> Moto {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let python = root.join(".venv/bin/python");
        assert!(
            python.exists(),
            "moto is not installed: run scripts/setup (the test command does)"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        // Below the ephemeral range, like the sandbox's ports: no outgoing connection can take
        // it before moto binds it.
        let port = gwctl::sandbox::node::free_ports(1).expect("free port")[0];
        let log = std::fs::File::create(dir.path().join("moto.log")).expect("log");
        let child = Command::new(python)
            .arg(root.join("scripts/moto_server.py"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .current_dir(dir.path())
            .env("MOTO_RECORDER_FILEPATH", dir.path().join("recording"))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start moto");
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
            dir,
        };
        let start = Instant::now();
        while moto.http("GET", "/moto-api/data.json").is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "moto did not start: {}",
                moto.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto.create_zone();
        moto
    }

    /// The company's hosted zone (backend.yaml's `dns.zone`), which exists before gwctl runs.
    fn create_zone(&self) {
        let body = r#"<CreateHostedZoneRequest xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><Name>example.com</Name><CallerReference>tests</CallerReference></CreateHostedZoneRequest>"#;
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("moto");
        write!(
            s,
            "POST /2013-04-01/hostedzone HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/route53/aws4_request, SignedHeaders=host, Signature=0\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("request");
        let mut answer = String::new();
        s.read_to_string(&mut answer).expect("answer");
        assert!(
            answer.contains(" 201 ") || answer.contains(" 200 "),
            "zone not created: {answer}"
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("moto.log")).unwrap_or_default()
    }

    /// A bare HTTP/1.0 request to moto's control API; the body of a 200 answer.
    fn http(&self, method: &str, path: &str) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        write!(
            s,
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
        )
        .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.1 200")
            .then(|| body.to_string())
            .or_else(|| head.starts_with("HTTP/1.0 200").then(|| body.to_string()))
    }

    /// Sets the environment gwctl reads: the standard AWS variables, nothing gwctl-specific.
    pub fn env(&self, cmd: &mut assert_cmd::Command) {
        for (k, v) in self.vars() {
            cmd.env(k, v);
        }
        for k in ["AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION"] {
            cmd.env_remove(k);
        }
    }

    /// The same, for a process the test drives itself.
    pub fn std_env(&self, cmd: &mut Command) {
        for (k, v) in self.vars() {
            cmd.env(k, v);
        }
        for k in ["AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION"] {
            cmd.env_remove(k);
        }
    }

    fn vars(&self) -> [(&'static str, String); 6] {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_CONFIG_FILE", "/dev/null".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
        ]
    }

    /// Forgets every resource (all accounts and regions), but for the hosted zone.
    pub fn reset(&self) {
        self.http("POST", "/moto-api/reset").expect("reset moto");
        self.create_zone();
    }

    pub async fn route53(&self) -> aws_sdk_route53::Client {
        let config = aws_sdk_route53::Config::builder()
            .behavior_version(aws_sdk_route53::config::BehaviorVersion::latest())
            .region(aws_sdk_route53::config::Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(aws_sdk_route53::config::Credentials::new(
                "test", "test", None, None, "tests",
            ))
            .build();
        aws_sdk_route53::Client::from_conf(config)
    }

    /// The id of the `example.com` zone every test's moto starts with (without `/hostedzone/`).
    pub async fn zone_id(&self) -> String {
        let zones = self
            .route53()
            .await
            .list_hosted_zones_by_name()
            .dns_name("example.com")
            .send()
            .await
            .expect("zones");
        zones.hosted_zones()[0]
            .id()
            .trim_start_matches("/hostedzone/")
            .to_string()
    }

    pub fn record(&self) {
        self.http("POST", "/moto-api/recorder/reset-recording")
            .expect("reset recording");
        self.http("POST", "/moto-api/recorder/start-recording")
            .expect("start recording");
    }

    /// The API actions recorded since [`Moto::record`].
    pub fn recorded_actions(&self) -> Vec<String> {
        self.recorded().into_iter().map(|(a, _)| a).collect()
    }

    /// The API actions recorded since [`Moto::record`], with their request bodies.
    pub fn recorded(&self) -> Vec<(String, String)> {
        self.http("POST", "/moto-api/recorder/stop-recording")
            .expect("stop recording");
        let text = std::fs::read_to_string(self.dir.path().join("recording")).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|r| !r["url"].as_str().unwrap_or_default().contains("/moto-api/"))
            .map(|r| {
                let raw = r["body"].as_str().unwrap_or_default();
                let body = if r["body_encoded"] == true {
                    use base64::Engine;
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(raw)
                        .unwrap_or_default();
                    String::from_utf8_lossy(&bytes).into_owned()
                } else {
                    raw.to_string()
                };
                if let Some(target) = r["headers"]["X-Amz-Target"].as_str() {
                    let action = target.rsplit('.').next().unwrap_or(target).to_string();
                    return (action, body);
                }
                let (method, url) = (
                    r["method"].as_str().unwrap_or("?"),
                    r["url"].as_str().unwrap_or("?"),
                );
                let action = body
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("Action="))
                    .map(str::to_string)
                    .or_else(|| route53_action(method, url))
                    .unwrap_or_else(|| format!("{method} {url}"));
                (action, body)
            })
            .collect()
    }

    pub async fn ec2(&self, region: &str) -> aws_sdk_ec2::Client {
        let config = aws_sdk_ec2::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .endpoint_url(&self.endpoint)
            .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
            .build();
        aws_sdk_ec2::Client::from_conf(config)
    }

    pub async fn ssm(&self, region: &str) -> aws_sdk_ssm::Client {
        let config = aws_sdk_ssm::Config::builder()
            .behavior_version(aws_sdk_ssm::config::BehaviorVersion::latest())
            .region(aws_sdk_ssm::config::Region::new(region.to_string()))
            .endpoint_url(&self.endpoint)
            .credentials_provider(aws_sdk_ssm::config::Credentials::new(
                "test", "test", None, None, "tests",
            ))
            .build();
        aws_sdk_ssm::Client::from_conf(config)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// gwctl on the test's region files, talking to the test's moto.
pub fn gwctl(r: &super::Regions, m: &Moto) -> assert_cmd::Command {
    let mut c = r.gwctl();
    m.env(&mut c);
    c
}

/// gwctl against the test's moto and the brokers of a sandbox started in `work`.
pub fn gwctl_on_sandbox(
    r: &super::Regions,
    m: &Moto,
    work: &std::path::Path,
) -> assert_cmd::Command {
    let mut c = gwctl(r, m);
    c.env(
        "GWCTL_BROKER_ENDPOINTS",
        work.join(gwctl::sandbox::ENDPOINTS_FILE),
    );
    c
}

/// The action of a Route53 REST call (`/2013-04-01/...`).
fn route53_action(method: &str, url: &str) -> Option<String> {
    let path = url.split_once("/2013-04-01/")?.1.split('?').next()?;
    let parts: Vec<&str> = path.split('/').collect();
    let action = match (method, parts.as_slice()) {
        ("GET", ["hostedzonesbyname"]) => "ListHostedZonesByName",
        ("GET", ["hostedzone"]) => "ListHostedZones",
        ("POST", ["hostedzone"]) => "CreateHostedZone",
        ("GET", ["hostedzone", _, "rrset"]) => "ListResourceRecordSets",
        ("POST", ["hostedzone", _, "rrset"]) => "ChangeResourceRecordSets",
        ("GET", ["change", _]) => "GetChange",
        ("GET", ["healthcheck"]) => "ListHealthChecks",
        ("POST", ["healthcheck"]) => "CreateHealthCheck",
        ("GET", ["healthcheck", _, "status"]) => "GetHealthCheckStatus",
        ("GET", ["healthcheck", _]) => "GetHealthCheck",
        ("POST", ["healthcheck", _]) => "UpdateHealthCheck",
        ("DELETE", ["healthcheck", _]) => "DeleteHealthCheck",
        ("GET", ["tags", ..]) => "ListTagsForResource",
        ("POST", ["tags", ..]) => "ChangeTagsForResource",
        _ => return None,
    };
    Some(action.to_string())
}

/// Read-only calls: Describe*, Get*, List*.
pub fn is_read_only(action: &str) -> bool {
    ["Describe", "Get", "List"]
        .iter()
        .any(|p| action.starts_with(p))
}
