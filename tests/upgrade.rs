//! Changing a running gateway: `up` leaves brokers to `gwctl upgrade`.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::Regions;
use crate::support::fault_proxy::FaultProxy;
use crate::support::follower::Follower;
use crate::support::moto::{Moto, gwctl};

/// The region's running brokers: gwctl id → instance id.
async fn brokers(m: &Moto, region: &str) -> BTreeMap<String, String> {
    instances(m, region)
        .await
        .into_iter()
        .filter(|(_, _, state, _)| state == "running")
        .map(|(slot, id, _, _)| (format!("instance/{slot}"), id))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_never_replaces_or_removes_a_running_broker() {
    let (r, m) = (Regions::examples(), Moto::start());
    gwctl(&r, &m)
        .args(["up", "us-east-1", "--yes", "--scope", "aws"])
        .assert()
        .success();
    let before = brokers(&m, "us-east-1").await;
    assert_eq!(before.len(), 3);

    // A new instance type replaces every broker; a smaller count removes two.
    r.edit("us-east-1.yaml", "c6i.large", "c6i.xlarge");
    r.edit("us-east-1.yaml", "  count: 3", "  count: 1");
    let out = gwctl(&r, &m)
        .args(["plan", "us-east-1", "--detailed-exitcode", "--scope", "aws"])
        .output()
        .expect("plan");
    assert_eq!(
        out.status.code(),
        Some(2),
        "upgrades pending are changes pending"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "instance/broker-1 ({}) needs a replacement (instance_type, launch_sha256): `up` never replaces \
             a running broker; `gwctl upgrade us-east-1` does it one broker at a time",
            before["instance/broker-1"]
        )),
        "{text}"
    );
    assert!(
        text.contains("instance/broker-3") && text.contains("needs a removal (count)"),
        "{text}"
    );
    assert!(
        text.contains("WARNING: one broker: no queue has a replica"),
        "plan explains what one broker means: {text}"
    );
    let json: serde_json::Value = serde_json::from_slice(
        &gwctl(&r, &m)
            .args(["plan", "us-east-1", "--json", "--scope", "aws"])
            .output()
            .expect("plan")
            .stdout,
    )
    .expect("json");
    let held = json["regions"][0]["held_for_upgrade"]
        .as_array()
        .expect("held");
    let held: Vec<(&str, &str)> = held
        .iter()
        .map(|h| {
            (
                h["key"].as_str().unwrap_or_default(),
                h["action"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        held,
        [
            ("instance/broker-1", "replace"),
            ("instance/broker-2", "delete"),
            ("instance/broker-3", "delete")
        ]
    );

    // upgrade starts only from a region as up leaves it (here: the removed brokers' records
    // and health checks are still to go), and says so without changing anything.
    m.record();
    let early = gwctl(&r, &m)
        .args(["upgrade", "us-east-1", "--yes", "--scope", "aws"])
        .output()
        .expect("upgrade");
    let stderr = String::from_utf8_lossy(&early.stderr);
    assert_eq!(early.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("to make first") && stderr.contains("run `gwctl up us-east-1`, then"),
        "{stderr}"
    );
    assert_nothing_written(&m);

    // up applies what it may and touches no broker, nor a removed broker's address.
    m.record();
    gwctl(&r, &m)
        .args(["up", "us-east-1", "--yes", "--scope", "aws"])
        .assert()
        .success();
    let touched: Vec<String> = m
        .recorded_actions()
        .into_iter()
        .filter(|a| {
            [
                "RunInstances",
                "TerminateInstances",
                "StopInstances",
                "ModifyInstanceAttribute",
                "DisassociateAddress",
                "ReleaseAddress",
                "DeleteParameter",
            ]
            .contains(&a.as_str())
        })
        .collect();
    assert_eq!(touched, Vec::<String>::new());
    assert_eq!(brokers(&m, "us-east-1").await, before);

    // upgrade lists the broker steps with their gates; with no broker reachable (plain moto,
    // no sandbox following it) it refuses before changing anything.
    let dry = gwctl(&r, &m)
        .args(["upgrade", "us-east-1", "--dry-run", "--scope", "aws"])
        .output()
        .expect("dry run");
    let text = String::from_utf8_lossy(&dry.stdout);
    assert!(
        text.contains("us-east-1 (canary): 3 steps")
            && text.contains("replace instance/broker-1")
            && text.contains("remove instance/broker-3")
            && text.contains("quorum queues with all their replicas online")
            && text.contains("an MQTT-over-TLS round trip through every address Route53 serves"),
        "{text}{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    m.record();
    let out = gwctl(&r, &m)
        .args(["upgrade", "us-east-1", "--yes", "--scope", "aws"])
        .output()
        .expect("upgrade");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("gates before: no broker answers")
            && stderr.contains("gwctl sandbox follow"),
        "{stderr}"
    );
    assert_nothing_written(&m);
    assert_eq!(brokers(&m, "us-east-1").await, before);
}

/// A region on Debian 12's RabbitMQ 3.10 runs for real (a 3-node 3.10 cluster, one local
/// node per moto instance, booted from each instance's user-data). Brokers roll only within
/// a RabbitMQ series: a change within 3.10 is refused (quorum queues would not regain a
/// replaced node's replicas), so is the move to 4.0 under the running cluster's name (a 4.0
/// node never joins a 3.10 cluster), with nothing changed. Under a new name the region moves
/// blue-green, resumed after a stop, and a device's session comes along with the command
/// that waited in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_3_10_region_moves_to_4_0_blue_green_with_its_sessions() {
    let (r, m) = (Regions::examples(), Moto::start());
    on_rabbitmq_3_10(&r);
    let f = Follower::start(&r, &m);
    f.gwctl(&r, &m)
        .args(["up", "us-east-1", "--yes"])
        .assert()
        .success();
    let (status, versions) = status_and_versions(&r, &m, &f);
    assert!(
        versions.len() == 3 && versions.iter().all(|v| v.starts_with("3.10.")),
        "{status}"
    );
    // Federated both ways with the 4.0 backend, healthy.
    assert_eq!(status[0]["healthy"], true, "{status}");
    let links = status[0]["links"].as_array().cloned().unwrap_or_default();
    assert!(
        links.len() == 4 && links.iter().all(|l| l["status"] == "running"),
        "{status}"
    );
    let before = brokers(&m, "us-east-1").await;
    let refused = |expected: &str| {
        // What up may do, it does (it holds the brokers back).
        f.gwctl(&r, &m)
            .args(["up", "us-east-1", "--yes"])
            .assert()
            .success();
        m.record();
        let out = f
            .gwctl(&r, &m)
            .args(["upgrade", "us-east-1", "--yes"])
            .output()
            .expect("upgrade");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(expected) && stderr.contains("nothing was changed"),
            "{stderr}"
        );
        assert_nothing_written(&m);
    };

    // A change within 3.10 (another instance type).
    r.edit("us-east-1.yaml", "c6i.large", "c6i.xlarge");
    refused("its brokers run RabbitMQ 3.10, which gwctl does not roll");
    // The move to 4.0.
    r.edit("us-east-1.yaml", "c6i.xlarge", "c6i.large");
    r.edit(
        "us-east-1.yaml",
        "  rabbitmq_package: 3.10.8-1.1+deb12u1\n",
        "",
    );
    r.edit("us-east-1.yaml", "debian-12-amd64-*", "debian-13-amd64-*");
    refused("runs RabbitMQ 3.10 and the files want 4.0: a node of one series never joins");
    assert_eq!(brokers(&m, "us-east-1").await, before);

    // Blue-green: a new cluster beside the old one. A device with a persistent session has
    // a command waiting on the old cluster; it must find it on the new one, without
    // subscribing again.
    let device = SessionDevice::new(&r, "valve-3");
    device.connect_and_subscribe(&f).await;
    device.command_from_backend(&r, &f, "close").await;
    r.edit(
        "us-east-1.yaml",
        "region: us-east-1\n",
        "region: us-east-1\ncluster_name: gw-us-east-1-blue\n",
    );
    // The new name changes what `up` applies first (the backend's bound on the region's
    // buffers names its cluster); the brokers it leaves to `upgrade`.
    f.gwctl(&r, &m)
        .args(["up", "us-east-1", "--yes"])
        .assert()
        .success();
    // The dry run says how the region moves, and changes nothing.
    m.record();
    let shown = f
        .gwctl(&r, &m)
        .args(["upgrade", "us-east-1", "--dry-run"])
        .output()
        .expect("dry run");
    let stdout = String::from_utf8_lossy(&shown.stdout).into_owned();
    assert!(
        shown.status.success()
            && stdout.contains(
                "blue-green: from cluster gw-us-east-1 to a new cluster gw-us-east-1-blue"
            )
            && stdout.contains("queued commands moved"),
        "{stdout}"
    );
    assert_nothing_written(&m);
    // Stopped while the new cluster boots (the new brokers may take 1 s), then resumed.
    let out = f
        .gwctl(&r, &m)
        .args(["upgrade", "us-east-1", "--yes", "--broker-wait", "1"])
        .output()
        .expect("upgrade");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("gates of the new cluster gw-us-east-1-blue still fail")
            && stderr.contains("Run `gwctl upgrade us-east-1` again to resume"),
        "{stderr}"
    );
    let launched = instances(&m, "us-east-1").await.len();
    assert_eq!(launched, 6, "both clusters' brokers");
    let out = f
        .gwctl(&r, &m)
        .args(["upgrade", "us-east-1", "--yes"])
        .output()
        .expect("upgrade");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}\n{}", f.log());
    assert!(
        !stderr.contains("launched"),
        "resumed, not relaunched: {stderr}"
    );
    for said in [
        "blue-green",
        "1 device session(s) copied",
        "1 queued command(s) moved",
        "gates after: passed",
    ] {
        assert!(stderr.contains(said), "{said}: {stderr}");
    }
    // Three new brokers on 4.0, the old ones gone with their volumes' snapshots, the
    // addresses on the new ones; healthy, links both ways, nothing left to do.
    let after = brokers(&m, "us-east-1").await;
    assert_eq!(after.len(), 3, "{after:?}");
    assert!(after.values().all(|id| !before.values().any(|b| b == id)));
    let eips = addresses(&m, "us-east-1").await;
    assert!(
        eips.len() == 3 && eips.values().all(|i| after.values().any(|a| a == i)),
        "{eips:?}"
    );
    let snaps = snapshotted(&m, "us-east-1").await;
    assert!(before.values().all(|b| snaps.contains(b)), "{snaps:?}");
    let (status, versions) = status_and_versions(&r, &m, &f);
    assert_eq!(status[0]["healthy"], true, "{status}");
    assert!(
        versions.len() == 3 && versions.iter().all(|v| v.starts_with("4.0.")),
        "{status}"
    );
    f.gwctl(&r, &m)
        .args(["plan", "us-east-1", "--detailed-exitcode"])
        .assert()
        .code(0);
    // The command waited through the move: the device finds it behind the region's address.
    let served = eips
        .values()
        .find(|i| !i.is_empty())
        .expect("a served broker");
    let got = device.reconnect_and_receive(&f, served).await;
    assert_eq!(
        got,
        vec![("commands/valve-3/close".to_string(), b"close".to_vec())]
    );
}

/// A device with a persistent session (clean session off, QoS 1), on the sandbox's nodes.
struct SessionDevice {
    id: String,
    cert: String,
    key: gwctl::spec::secret::Secret,
    ca: String,
}

impl SessionDevice {
    fn new(r: &Regions, id: &str) -> SessionDevice {
        let stack = gwctl::spec::load(r.dir(), &gwctl::spec::Selection::All).expect("stack");
        let issued = gwctl::spec::tls::device_authority(&stack)
            .expect("device CA")
            .issue_device(id, std::time::SystemTime::now())
            .expect("device certificate");
        SessionDevice {
            id: id.into(),
            cert: issued.cert_pem,
            key: issued.key_pem,
            ca: r.secrets["GWCTL_STACK_CA_CERT"].clone(),
        }
    }

    /// The MQTT port of the node of instance `id`, or of any node of the region.
    fn port(f: &Follower, id: Option<&str>) -> (String, u16) {
        let map = gwctl::endpoints::EndpointMap::load(&f.endpoints()).expect("endpoints");
        map.instances
            .iter()
            .filter(|(i, _)| id.is_none_or(|id| id == i.as_str()))
            .find_map(|(_, a)| Some((a.host.clone(), a.mqtt_port?)))
            .expect("a gateway node")
    }

    fn client(&self, f: &Follower, id: Option<&str>) -> (rumqttc::AsyncClient, rumqttc::EventLoop) {
        use rumqttc::{MqttOptions, TlsConfiguration, Transport};
        let (host, port) = Self::port(f, id);
        let tls = gwctl::pki::client_config(&self.ca, Some((self.cert.as_str(), &self.key)))
            .expect("tls");
        let mut opts = MqttOptions::new(self.id.clone(), host, port);
        opts.set_clean_session(false);
        opts.set_keep_alive(std::time::Duration::from_secs(10));
        opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            std::sync::Arc::new(tls),
        )));
        rumqttc::AsyncClient::new(opts, 16)
    }

    /// Connects, subscribes to its commands (QoS 1), and disconnects.
    async fn connect_and_subscribe(&self, f: &Follower) {
        use rumqttc::{Event, Packet, QoS};
        let (client, mut events) = self.client(f, None);
        client
            .subscribe(format!("commands/{}/#", self.id), QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            assert!(std::time::Instant::now() < deadline, "no SUBACK");
            match events.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => break,
                Ok(_) => {}
                Err(e) => panic!("{}: {e}", self.id),
            }
        }
        let _ = client.disconnect().await;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), events.poll()).await;
    }

    /// The backend sends the device a command (publisher confirms).
    async fn command_from_backend(&self, r: &Regions, f: &Follower, name: &str) {
        let stack = gwctl::spec::load(r.dir(), &gwctl::spec::Selection::All).expect("stack");
        let map = gwctl::endpoints::EndpointMap::load(&f.endpoints()).expect("endpoints");
        let backend = map.get("backend").and_then(|a| a.first()).expect("backend");
        let login = gwctl::sandbox::clients::Login {
            host: backend.host.clone(),
            port: backend.amqp_port,
            user: stack.backend.spec.credentials.admin.user.clone(),
            password: Some(gwctl::spec::secret::Secret::new(
                r.secrets["GWCTL_BACKEND_ADMIN_PASSWORD"].clone(),
            )),
            ca_pem: std::fs::read_to_string(backend.ca_file.as_deref().expect("backend CA"))
                .expect("backend CA"),
            identity: None,
        };
        gwctl::sandbox::clients::amqp_publish(
            &login,
            "amq.topic",
            &format!("commands.{}.{name}", self.id),
            name.as_bytes(),
        )
        .await
        .expect("command confirmed");
        // Federated into the gateway's session queue.
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    }

    /// Connects again to the broker of instance `id` (without subscribing) and returns what
    /// arrives within a few seconds.
    async fn reconnect_and_receive(&self, f: &Follower, id: &str) -> Vec<(String, Vec<u8>)> {
        use rumqttc::{Event, Packet};
        let (client, mut events) = self.client(f, Some(id));
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while let Ok(event) = tokio::time::timeout_at(deadline, events.poll()).await {
            match event {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    got.push((p.topic.clone(), p.payload.to_vec()));
                }
                Ok(_) => {}
                Err(e) => panic!("{}: {e}", self.id),
            }
        }
        let _ = client.disconnect().await;
        got
    }
}

/// No mutating AWS call since [`Moto::record`]: the ones made are listed if any was.
#[track_caller]
fn assert_nothing_written(m: &Moto) {
    let writes: Vec<String> = m
        .recorded_actions()
        .into_iter()
        .filter(|a| !crate::support::moto::is_read_only(a))
        .collect();
    assert!(writes.is_empty(), "nothing changed: {writes:?}");
}

/// Every broker instance of the region that exists (any state but terminated), with its
/// slot, state and image.
async fn instances(m: &Moto, region: &str) -> Vec<(String, String, String, String)> {
    let resp = m
        .ec2(region)
        .await
        .describe_instances()
        .send()
        .await
        .expect("instances");
    let mut out: Vec<_> = resp
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter_map(|i| {
            let state = i.state()?.name()?.as_str().to_string();
            if state == "terminated" {
                return None;
            }
            let slot = i
                .tags()
                .iter()
                .find(|t| t.key() == Some("gwctl:id"))?
                .value()?
                .strip_prefix("instance/")?
                .to_string();
            slot.starts_with("broker-").then(|| {
                (
                    slot,
                    i.instance_id().unwrap_or_default().to_string(),
                    state,
                    i.image_id().unwrap_or_default().to_string(),
                )
            })
        })
        .collect();
    out.sort();
    out
}

/// Elastic IP → the instance it is associated with.
async fn addresses(m: &Moto, region: &str) -> BTreeMap<String, String> {
    let resp = m
        .ec2(region)
        .await
        .describe_addresses()
        .send()
        .await
        .expect("addresses");
    resp.addresses()
        .iter()
        .filter_map(|a| {
            Some((
                a.public_ip()?.to_string(),
                a.instance_id().unwrap_or_default().to_string(),
            ))
        })
        .collect()
}

/// Instance ids the region's data-volume snapshots were taken of.
async fn snapshotted(m: &Moto, region: &str) -> Vec<String> {
    let resp = m
        .ec2(region)
        .await
        .describe_snapshots()
        .owner_ids("self")
        .send()
        .await
        .expect("snapshots");
    let mut out: Vec<String> = resp
        .snapshots()
        .iter()
        .filter_map(|s| {
            s.tags()
                .iter()
                .find(|t| t.key() == Some("gwctl:instance"))?
                .value()
                .map(str::to_string)
        })
        .collect();
    out.sort();
    out
}

/// Samples, every 250 ms, how many nodes of the region's cluster run, asking whichever broker
/// the follower's endpoint file names answers.
struct Sampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<tokio::task::JoinHandle<Vec<usize>>>,
}

impl Sampler {
    fn start(r: &Regions, f: &Follower) -> Sampler {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ca = r.secrets["GWCTL_STACK_CA_CERT"].clone();
        let password = r.secrets["GWCTL_US_EAST_1_ADMIN_PASSWORD"].clone();
        let endpoints = f.endpoints();
        let flag = stop.clone();
        let handle = tokio::spawn(async move {
            let mut samples = Vec::new();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let map = gwctl::endpoints::EndpointMap::load(&endpoints).unwrap_or_default();
                for address in map.instances.values() {
                    let Ok(client) = gwctl::broker::Client::new(
                        address,
                        &ca,
                        "gwctl.admin",
                        gwctl::spec::secret::Secret::new(password.clone()),
                    ) else {
                        continue;
                    };
                    if let Ok(nodes) = client.nodes().await {
                        samples.push(nodes.iter().filter(|(_, running)| *running).count());
                        break;
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            samples
        });
        Sampler {
            stop,
            handle: Some(handle),
        }
    }

    async fn finish(mut self) -> Vec<usize> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        match self.handle.take() {
            Some(h) => h.await.expect("sampler"),
            None => Vec::new(),
        }
    }
}

/// Older and newer Debian images in the emulator: the region starts on the older.
const ALL_IMAGES: &str = "name: debian-13-amd64-*";
/// The image ALL_IMAGES selects.
const NEWEST: &str = "ami-0d0ebb1e000000014";
const OLDER_IMAGE: &str = "name: debian-13-amd64-20260810-*";

/// Fails with what `upgrade` printed and what the follower saw, unless it succeeded.
fn assert_rolled(out: &std::process::Output, f: &Follower) {
    assert!(
        out.status.success(),
        "{}\n{}\nfollower:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        f.log()
    );
}

/// us-east-1 up on the older image, with a local node per broker, and its brokers.
async fn up_on_the_older_image() -> (
    Regions,
    Moto,
    Follower,
    Vec<(String, String, String, String)>,
) {
    let (r, m) = (Regions::examples(), Moto::start());
    r.edit("us-east-1.yaml", ALL_IMAGES, OLDER_IMAGE);
    let f = Follower::start(&r, &m);
    f.gwctl(&r, &m)
        .args(["up", "us-east-1", "--yes"])
        .assert()
        .success();
    let before = instances(&m, "us-east-1").await;
    (r, m, f, before)
}

/// A newer image is an available upgrade; `upgrade` rolls it onto the brokers one at a time
/// behind the gates, on moto with a local node per instance: the cluster never has fewer
/// nodes running than the region's brokers, every address ends on a new instance, every old
/// data volume has a snapshot, and nothing is left to change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_rolls_a_newer_image_onto_the_brokers_one_at_a_time() {
    let (r, m, f, before) = up_on_the_older_image().await;
    assert_eq!(before.len(), 3, "{before:?}");

    r.edit("us-east-1.yaml", OLDER_IMAGE, ALL_IMAGES);
    f.gwctl(&r, &m)
        .args(["up", "us-east-1", "--yes"])
        .assert()
        .success();
    assert_eq!(
        instances(&m, "us-east-1").await,
        before,
        "up replaces no broker"
    );
    let dry = f
        .gwctl(&r, &m)
        .args(["upgrade", "us-east-1", "--dry-run"])
        .output()
        .expect("dry run");
    let text = String::from_utf8_lossy(&dry.stdout);
    assert!(
        text.contains("3 steps")
            && text.contains("replace instance/broker-2")
            && text.contains("because of image"),
        "{text}"
    );
    let too_many = f
        .gwctl(&r, &m)
        .args(["upgrade", "us-east-1", "--yes", "--max-unavailable", "2"])
        .output()
        .expect("upgrade");
    assert_eq!(
        too_many.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&too_many.stderr)
    );
    assert_eq!(instances(&m, "us-east-1").await, before);

    // A gate that fails stops the roll and says how to resume, and how to roll back (the
    // image the brokers ran before); the replacement it launched is kept for the next run.
    let stopped = f
        .gwctl(&r, &m)
        .args(["upgrade", "us-east-1", "--yes", "--broker-wait", "1"])
        .output()
        .expect("upgrade");
    let stderr = String::from_utf8_lossy(&stopped.stderr);
    assert_eq!(stopped.status.code(), Some(1), "{stderr}");
    let old_image = &before[0].3;
    assert!(
        stderr.contains("gates with the replacements still fail after 1 s")
            && stderr.contains("Run `gwctl upgrade us-east-1` again to resume")
            && stderr.contains(&format!("`ami: {{id: {old_image}}}`")),
        "{stderr}"
    );

    let sampler = Sampler::start(&r, &f);
    let out = f
        .gwctl(&r, &m)
        .args(["upgrade", "us-east-1", "--yes"])
        .output()
        .expect("upgrade");
    let samples = sampler.finish().await;
    assert_rolled(&out, &f);
    // Devices' view is a gate: every batch ends with an MQTT round trip through each address
    // Route53 serves for the region.
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(said.matches("gates after: passed").count(), 3, "{said}");
    assert_eq!(
        said.matches("MQTT round trip through the 3 served address(es)")
            .count(),
        said.matches(": passed (").count(),
        "{said}"
    );
    assert!(samples.len() > 20, "{samples:?}");
    assert!(
        samples.iter().all(|n| *n >= 3),
        "never fewer nodes running than brokers: {samples:?}"
    );

    let after = instances(&m, "us-east-1").await;
    let newest = "ami-0d0ebb1e000000014";
    assert_eq!(after.len(), 3, "{after:?}");
    for (slot, id, state, image) in &after {
        assert!(before.iter().all(|b| &b.1 != id), "{slot} was replaced");
        assert_eq!((state.as_str(), image.as_str()), ("running", newest));
    }
    let new_ids: Vec<&String> = after.iter().map(|a| &a.1).collect();
    let eips = addresses(&m, "us-east-1").await;
    let on_brokers: Vec<&String> = eips.values().filter(|i| new_ids.contains(i)).collect();
    assert_eq!(
        on_brokers.len(),
        3,
        "each address on a new broker: {eips:?}"
    );
    let mut old_ids: Vec<String> = before.iter().map(|b| b.1.clone()).collect();
    old_ids.sort();
    assert_eq!(snapshotted(&m, "us-east-1").await, old_ids);
    f.gwctl(&r, &m)
        .args(["plan", "us-east-1", "--detailed-exitcode"])
        .assert()
        .code(0);
    let log = f.log();
    assert_eq!(log.matches("node drained and stopped").count(), 3, "{log}");
    assert_eq!(
        log.matches("is gone: the cluster forgot").count(),
        3,
        "{log}"
    );
}

/// With 10 % of AWS calls throttled, failed with a 5xx, dropped or their answers lost, a roll
/// ends where a clean one ends: each slot on one new broker running the newest image, each
/// address on one of them, every old data volume snapshotted exactly once, nothing left to
/// change; the run reports the faults it met. About 2½ minutes: in the long mode
/// (scripts/soak), which keeps the default run under 30 minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long mode: scripts/soak"]
async fn an_upgrade_through_faults_ends_where_a_clean_one_ends() {
    let (r, m, f, before) = up_on_the_older_image().await;
    r.edit("us-east-1.yaml", OLDER_IMAGE, ALL_IMAGES);
    let proxy = FaultProxy::start(&m.endpoint);
    let seed = crate::faults::seed(16);
    proxy.faults(0.10, &["throttle", "server", "drop", "lost"], seed);
    let out = f
        .gwctl(&r, &m)
        .env("AWS_ENDPOINT_URL", &proxy.endpoint)
        .args(["upgrade", "us-east-1", "--yes"])
        .output()
        .expect("upgrade");
    assert_rolled(&out, &f);
    let seen = proxy.account();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(seen.injected() >= 5, "the roll met faults: {seen:?}");
    assert!(
        stderr.contains(&format!("{} failed attempt(s) recovered", seen.injected())),
        "{stderr}"
    );

    let after = instances(&m, "us-east-1").await;
    assert_eq!(after.len(), 3, "{after:?}");
    for (slot, id, state, image) in &after {
        assert!(before.iter().all(|b| &b.1 != id), "{slot} was replaced");
        assert_eq!((state.as_str(), image.as_str()), ("running", NEWEST));
    }
    let new_ids: Vec<&String> = after.iter().map(|a| &a.1).collect();
    let eips = addresses(&m, "us-east-1").await;
    assert_eq!(
        eips.values().filter(|i| new_ids.contains(i)).count(),
        3,
        "each address on a new broker: {eips:?}"
    );
    let mut old_ids: Vec<String> = before.iter().map(|b| b.1.clone()).collect();
    old_ids.sort();
    assert_eq!(snapshotted(&m, "us-east-1").await, old_ids);
    f.gwctl(&r, &m)
        .env("AWS_ENDPOINT_URL", &proxy.endpoint)
        .args(["plan", "us-east-1", "--detailed-exitcode"])
        .assert()
        .code(0);
}

/// A roll killed anywhere resumes: killed once just after launching a replacement and once
/// while deleting an old broker, `upgrade` run again finishes, with one broker per slot,
/// each address on one of them, and nothing left over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_upgrade_resumes_with_no_orphan() {
    let (r, m, f, before) = up_on_the_older_image().await;
    r.edit("us-east-1.yaml", OLDER_IMAGE, ALL_IMAGES);

    for kill_at in ["launched beside", "snapshotting the data volume"] {
        let mut run = f.std_gwctl(&r, &m);
        run.args(["upgrade", "us-east-1", "--yes"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = run.spawn().expect("upgrade");
        // Progress goes to stderr.
        let stdout = child.stderr.take().expect("stderr");
        let seen = std::thread::spawn({
            let kill_at = kill_at.to_string();
            move || {
                use std::io::BufRead;
                let mut lines = Vec::new();
                for line in std::io::BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let hit = line.contains(&kill_at);
                    lines.push(line);
                    if hit {
                        return (true, lines);
                    }
                }
                (false, lines)
            }
        })
        .join()
        .expect("reader");
        assert!(seen.0, "never reached `{kill_at}`: {:?}", seen.1);
        child.kill().expect("kill -9");
        let _ = child.wait();
    }
    // Mid-roll: a replacement runs beside a broker or an old one is half gone.
    let middle = instances(&m, "us-east-1").await;
    assert_ne!(middle, before);

    // Then killed at seeded moments (kill.rs's count less the two above). When a roll
    // completes between kills (the long mode's 50 outlast one), the image is turned around
    // so that the next kill falls into a roll again.
    let (n, seed) = crate::kill::moments();
    let older = "ami-0d0ebb1e000000013";
    let mut target = (ALL_IMAGES, NEWEST);
    for at in crate::kill::kill_moments(seed ^ 0x0b, n.saturating_sub(2), Duration::from_secs(20)) {
        let now = instances(&m, "us-east-1").await;
        if now.iter().all(|i| i.3 == target.1) {
            let other = if target.1 == NEWEST {
                (OLDER_IMAGE, older)
            } else {
                (ALL_IMAGES, NEWEST)
            };
            r.edit("us-east-1.yaml", target.0, other.0);
            target = other;
        }
        let mut run = f.std_gwctl(&r, &m);
        run.args(["upgrade", "us-east-1", "--yes"]);
        crate::kill::kill_after(run, at);
    }
    if target.1 != NEWEST {
        r.edit("us-east-1.yaml", target.0, ALL_IMAGES);
    }

    let out = f
        .gwctl(&r, &m)
        .args(["upgrade", "us-east-1", "--yes"])
        .output()
        .expect("upgrade");
    assert_rolled(&out, &f);
    let after = instances(&m, "us-east-1").await;
    let slots: Vec<&str> = after.iter().map(|a| a.0.as_str()).collect();
    assert_eq!(slots, ["broker-1", "broker-2", "broker-3"], "{after:?}");
    assert!(
        after.iter().all(|a| a.2 == "running" && a.3 == NEWEST),
        "{after:?}"
    );
    let eips = addresses(&m, "us-east-1").await;
    assert_eq!(
        eips.values()
            .filter(|i| after.iter().any(|a| &a.1 == *i))
            .count(),
        3,
        "{eips:?}"
    );
    // One snapshot of each broker replaced: the three first ones, and any a turned-around
    // roll replaced.
    let snaps = snapshotted(&m, "us-east-1").await;
    assert!(before.iter().all(|b| snaps.contains(&b.1)), "{snaps:?}");
    let mut once = snaps.clone();
    once.dedup();
    assert_eq!(once, snaps, "a broker snapshotted twice");
    f.gwctl(&r, &m)
        .args(["plan", "us-east-1", "--detailed-exitcode"])
        .assert()
        .code(0);
}

/// The issue's proof on the sandbox's 3-node gateway cluster: a tuning change that needs
/// every broker replaced, rolled under continuous traffic both ways, loses no confirmed
/// telemetry and no confirmed command, the device with a persistent session reconnects, and
/// the sampled cluster never has fewer nodes running than the region has brokers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_under_traffic_loses_no_message_either_way() {
    let (r, m) = (Regions::examples(), Moto::start());
    let f = Follower::start(&r, &m);
    f.gwctl(&r, &m)
        .args(["up", "us-east-1", "--yes"])
        .assert()
        .success();
    // A tuning change renders new user-data: every broker is replaced.
    let samples = upgrade_under_traffic(&r, &m, &f, |r| {
        r.edit(
            "us-east-1.yaml",
            "  count: 3\n",
            "  count: 3\n  tuning: throughput\n",
        );
    })
    .await;
    assert!(samples.iter().all(|n| *n >= 3), "{samples:?}");
}

/// The same proof for the blue-green move of a 3.10 region to 4.0: devices follow the
/// addresses to the new cluster, the backend's links follow both clusters, and every
/// confirmed message arrives either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_3_10_region_moves_to_4_0_under_traffic_losing_nothing() {
    let (r, m) = (Regions::examples(), Moto::start());
    on_rabbitmq_3_10(&r);
    let f = Follower::start(&r, &m);
    f.gwctl(&r, &m)
        .args(["up", "us-east-1", "--yes"])
        .assert()
        .success();
    upgrade_under_traffic(&r, &m, &f, to_rabbitmq_4_0).await;
    let (status, versions) = status_and_versions(&r, &m, &f);
    assert!(
        versions.len() == 3 && versions.iter().all(|v| v.starts_with("4.0.")),
        "{status}"
    );
}

/// `status --json` of us-east-1, and the RabbitMQ version of each broker it lists.
fn status_and_versions(r: &Regions, m: &Moto, f: &Follower) -> (serde_json::Value, Vec<String>) {
    let status: serde_json::Value = serde_json::from_slice(
        &f.gwctl(r, m)
            .args(["status", "us-east-1", "--json"])
            .output()
            .expect("status")
            .stdout,
    )
    .expect("status json");
    let versions = status[0]["brokers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["version"].as_str().map(str::to_string))
        .collect();
    (status, versions)
}

/// The region file of us-east-1 describing brokers on Debian 12's RabbitMQ 3.10.
fn on_rabbitmq_3_10(r: &Regions) {
    r.edit("us-east-1.yaml", "debian-13-amd64-*", "debian-12-amd64-*");
    r.edit(
        "us-east-1.yaml",
        "  instance_type: c6i.large\n",
        "  instance_type: c6i.large\n  rabbitmq_package: 3.10.8-1.1+deb12u1\n",
    );
}

/// Back to Debian 13's RabbitMQ 4.0, on a new cluster (blue-green).
fn to_rabbitmq_4_0(r: &Regions) {
    r.edit(
        "us-east-1.yaml",
        "  rabbitmq_package: 3.10.8-1.1+deb12u1\n",
        "",
    );
    r.edit("us-east-1.yaml", "debian-12-amd64-*", "debian-13-amd64-*");
    r.edit(
        "us-east-1.yaml",
        "region: us-east-1\n",
        "region: us-east-1\ncluster_name: gw-us-east-1-blue\n",
    );
}

/// Changes us-east-1's files with `change` and runs `up` then `upgrade` under continuous
/// traffic both ways; asserts that every confirmed message arrived, either way, that the
/// device with a persistent session was moved, and that nothing is left to do. Returns the
/// sampled counts of running cluster nodes.
async fn upgrade_under_traffic(
    r: &Regions,
    m: &Moto,
    f: &Follower,
    change: impl FnOnce(&Regions),
) -> Vec<usize> {
    use crate::support::traffic::{Parties, Traffic};
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    let stack = gwctl::spec::load(r.dir(), &gwctl::spec::Selection::All).expect("stack");
    let device_ca = gwctl::spec::tls::device_authority(&stack).expect("device CA");
    let issue = |id: &str| {
        let issued = device_ca
            .issue_device(id, std::time::SystemTime::now())
            .expect("device certificate");
        (id.to_string(), issued.cert_pem, issued.key_pem)
    };
    let map = gwctl::endpoints::EndpointMap::load(&f.endpoints()).expect("endpoints");
    let backend = map
        .get("backend")
        .and_then(|a| a.first())
        .expect("backend")
        .clone();
    let backend_login = gwctl::sandbox::clients::Login {
        host: backend.host.clone(),
        port: backend.amqp_port,
        user: stack.backend.spec.credentials.admin.user.clone(),
        password: Some(gwctl::spec::secret::Secret::new(
            r.secrets["GWCTL_BACKEND_ADMIN_PASSWORD"].clone(),
        )),
        ca_pem: std::fs::read_to_string(backend.ca_file.as_deref().expect("backend CA"))
            .expect("backend CA"),
        identity: None,
    };
    let parties = Parties {
        endpoints: f.endpoints(),
        stack_ca: r.secrets["GWCTL_STACK_CA_CERT"].clone(),
        backend: backend_login.clone(),
        telemetry_device: issue("meter-7"),
        command_device: issue("valve-9"),
        ec2: m.ec2("us-east-1").await,
    };
    // Telemetry waits for the test in a durable queue on the backend.
    gwctl::sandbox::clients::declare_durable_queue(
        &backend_login,
        "test.telemetry",
        "amq.topic",
        "devices.meter-7.#",
    )
    .await
    .expect("telemetry queue");

    let traffic = Traffic::start(&parties);
    // Both ways flow before the roll starts.
    let start = Instant::now();
    while traffic
        .counts
        .commands_received
        .lock()
        .map_or(0, |c| c.len())
        < 10
        || traffic
            .counts
            .telemetry_confirmed
            .lock()
            .map_or(0, |c| c.len())
            < 10
    {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no traffic before the roll"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    change(r);
    f.gwctl(r, m)
        .args(["up", "us-east-1", "--yes"])
        .assert()
        .success();
    let sampler = Sampler::start(r, f);
    let upgrade = {
        let mut cmd = f.gwctl(r, m);
        tokio::task::spawn_blocking(move || {
            cmd.args(["upgrade", "us-east-1", "--yes"])
                .output()
                .expect("upgrade")
        })
    };
    let out = upgrade.await.expect("upgrade task");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    let samples = sampler.finish().await;
    assert_rolled(&out, f);
    tokio::time::sleep(Duration::from_secs(3)).await;
    traffic.stop_publishing();

    // Everything confirmed arrives, at least once.
    let confirmed = traffic
        .counts
        .telemetry_confirmed
        .lock()
        .expect("counts")
        .clone();
    let mut consumer =
        gwctl::sandbox::clients::AmqpConsumer::on_queue(&backend_login, "test.telemetry")
            .await
            .expect("consumer");
    let mut arrived = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !confirmed.is_subset(&arrived) && Instant::now() < deadline {
        if let Some(m) = consumer.next(Duration::from_secs(5)).await
            && let Some(seq) = std::str::from_utf8(&m.payload)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
        {
            arrived.insert(seq);
        }
    }
    consumer.close().await;
    let sent = traffic.counts.commands_sent.lock().expect("counts").clone();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !sent.is_subset(&traffic.counts.commands_received.lock().expect("counts"))
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let counts = traffic.finish().await;
    let received = counts.commands_received.lock().expect("counts").clone();
    let lost_telemetry: Vec<&u64> = confirmed.difference(&arrived).collect();
    let lost_commands: Vec<&u64> = sent.difference(&received).collect();
    println!(
        "telemetry: {} confirmed, {} arrived, {} retries; commands: {} sent, {} received ({} \
         twice), {} reconnects; cluster nodes running (sampled {}): min {:?}",
        confirmed.len(),
        arrived.len(),
        counts.telemetry_retries.load(Ordering::Relaxed),
        sent.len(),
        received.len(),
        counts.commands_duplicated.load(Ordering::Relaxed),
        counts.command_device_reconnects.load(Ordering::Relaxed),
        samples.len(),
        samples.iter().min()
    );
    if !lost_telemetry.is_empty() {
        let log = counts.telemetry_log.lock().expect("log").clone();
        for (seq, port, when) in log {
            eprintln!(
                "telemetry {seq} to :{port} at {} {}",
                humantime::format_rfc3339_seconds(when),
                if arrived.contains(&seq) {
                    "arrived"
                } else {
                    "LOST"
                }
            );
        }
        eprintln!("follower:\n{}", f.log());
    }
    assert!(
        lost_telemetry.is_empty(),
        "telemetry lost: {lost_telemetry:?}"
    );
    assert!(lost_commands.is_empty(), "commands lost: {lost_commands:?}");
    assert!(
        confirmed.len() > 100 && sent.len() > 100,
        "traffic flowed throughout"
    );
    assert!(
        counts.command_device_reconnects.load(Ordering::Relaxed) >= 1,
        "the device's broker was replaced under it"
    );
    f.gwctl(r, m)
        .args(["plan", "us-east-1", "--detailed-exitcode"])
        .assert()
        .code(0);
    samples
}
