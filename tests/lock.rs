//! The cloud-side lock: a run on a region held by someone else waits or fails naming the
//! holder, changes nothing, and the lock can be broken by id; of two concurrent runs exactly
//! one mutates.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
};

use crate::support::Regions;
use crate::support::moto::{Moto, gwctl, is_read_only};

const LOCK: &str = "_gwctl-lock.us-east-1.mqtt.example.com";
const HELD: &str =
    "gwctl-lock id=cafebabe holder=alice@laptop/pid42 op=up since=2026-11-25T10:00:00Z";

async fn change_lock(m: &Moto, action: ChangeAction) {
    change_lock_to(m, HELD, action).await
}

async fn change_lock_to(m: &Moto, value: &str, action: ChangeAction) {
    let r53 = m.route53().await;
    let record = ResourceRecord::builder()
        .value(format!("\"{value}\""))
        .build()
        .expect("record");
    let set = ResourceRecordSet::builder()
        .name(LOCK)
        .r#type(RrType::Txt)
        .ttl(60)
        .resource_records(record)
        .build()
        .expect("set");
    let batch = ChangeBatch::builder()
        .changes(
            Change::builder()
                .action(action)
                .resource_record_set(set)
                .build()
                .expect("change"),
        )
        .build()
        .expect("batch");
    r53.change_resource_record_sets()
        .hosted_zone_id(m.zone_id().await)
        .change_batch(batch)
        .send()
        .await
        .expect("change");
}

/// Every lock record of the zone: (name without the final dot, value).
async fn lock_records(m: &Moto) -> Vec<(String, String)> {
    let r53 = m.route53().await;
    let sets = r53
        .list_resource_record_sets()
        .hosted_zone_id(m.zone_id().await)
        .send()
        .await
        .expect("records");
    sets.resource_record_sets()
        .iter()
        .filter(|s| s.name().starts_with("_gwctl-lock."))
        .map(|s| {
            let value = s.resource_records().first().map(|r| r.value());
            (
                s.name().trim_end_matches('.').to_string(),
                value.unwrap_or_default().trim_matches('"').to_string(),
            )
        })
        .collect()
}

/// The value of us-east-1's lock, if it is held.
async fn lock_value(m: &Moto) -> Option<String> {
    lock_records(m)
        .await
        .into_iter()
        .find_map(|(name, value)| (name == LOCK).then_some(value))
}

fn rfc3339_in(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now() + Duration::from_secs(secs))
        .to_string()
}

async fn lock_exists(m: &Moto) -> bool {
    !lock_records(m).await.is_empty()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lock_stops_the_run_names_the_holder_and_can_be_broken_by_id() {
    let (r, m) = (Regions::examples(), Moto::start());
    change_lock(&m, ChangeAction::Create).await;

    m.record();
    let out = gwctl(&r, &m)
        .args(["up", "us-east-1", "--yes", "--scope", "aws"])
        .output()
        .expect("up");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("us-east-1 is locked by alice@laptop/pid42 since 2026-11-25T10:00:00Z (up, lock id cafebabe)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("gwctl unlock us-east-1 --id cafebabe"),
        "{stderr}"
    );
    let changed: Vec<String> = m
        .recorded_actions()
        .into_iter()
        .filter(|a| !is_read_only(a))
        .collect();
    assert_eq!(
        changed,
        ["ChangeResourceRecordSets"],
        "nothing but the refused lock attempt"
    );
    // Nothing to delete: down needs no lock, succeeds, and leaves the holder's lock alone.
    gwctl(&r, &m)
        .args(["down", "us-east-1", "--yes", "--scope", "aws"])
        .assert()
        .code(0);
    assert!(lock_exists(&m).await);

    let wrong = gwctl(&r, &m)
        .args(["unlock", "us-east-1", "--id", "deadbeef"])
        .output()
        .expect("unlock");
    assert_eq!(wrong.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("not with id deadbeef"));
    gwctl(&r, &m)
        .args(["unlock", "us-east-1", "--id", "cafebabe"])
        .assert()
        .success();

    gwctl(&r, &m)
        .args(["up", "us-east-1", "--yes", "--scope", "aws"])
        .assert()
        .success();
    assert!(!lock_exists(&m).await, "a finished run releases its lock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_timeout_waits_for_the_holder_to_finish() {
    let (r, m) = (Regions::examples(), Moto::start());
    change_lock(&m, ChangeAction::Create).await;
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("gwctl"));
    c.arg("--regions").arg(r.dir()).args([
        "up",
        "us-east-1",
        "--yes",
        "--scope",
        "aws",
        "--lock-timeout",
        "60",
    ]);
    m.std_env(&mut c);
    c.env("GWCTL_BROKER_ENDPOINTS", &r.endpoints)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn");
    // Release the lock only once the run says it waits for it.
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("waiting up to 60 s") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let waited = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(60)))
        .await
        .expect("join");
    assert!(waited.is_ok(), "the run never said it waits for the lock");
    change_lock(&m, ChangeAction::Delete).await; // the holder finishes
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    let stderr = reader.join().expect("reader");
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("us-east-1 is locked by alice@laptop/pid42"),
        "{stderr}"
    );
    assert!(stderr.contains("created vpc/main"), "{stderr}");
}

#[test]
fn of_two_concurrent_runs_exactly_one_mutates() {
    let (r, m) = (Regions::examples(), Moto::start());
    let spawn = || {
        let mut c = Command::new(assert_cmd::cargo::cargo_bin("gwctl"));
        c.arg("--regions")
            .arg(r.dir())
            .args(["up", "us-east-1", "--yes", "--scope", "aws"]);
        m.std_env(&mut c);
        c.env("GWCTL_BROKER_ENDPOINTS", &r.endpoints)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c.spawn().expect("spawn")
    };
    let (a, b) = (spawn(), spawn());
    let outputs = [
        a.wait_with_output().expect("a"),
        b.wait_with_output().expect("b"),
    ];
    let created: Vec<usize> = outputs
        .iter()
        .map(|o| {
            String::from_utf8_lossy(&o.stderr)
                .matches(" created ")
                .count()
        })
        .collect();
    assert!(
        // 25 AWS resources and 3 Route53 health checks.
        created.contains(&0) && created.iter().sum::<usize>() == 28,
        "created per run: {created:?}"
    );
    for o in &outputs {
        let stderr = String::from_utf8_lossy(&o.stderr);
        // The other run either failed on the lock, naming the holder, or found nothing to do.
        assert!(
            o.status.success() || stderr.contains("is locked by"),
            "{stderr}"
        );
    }
    gwctl(&r, &m)
        .args(["plan", "us-east-1", "--detailed-exitcode", "--scope", "aws"])
        .assert()
        .code(0);
}

/// A CI job on another machine crashed holding the lock: while its lease runs the lock holds;
/// once it ran out, the next run takes the lock over by itself (no `gwctl unlock`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_of_another_machine_is_taken_over() {
    let (r, m) = (Regions::examples(), Moto::start());
    let crashed = |expires: String| {
        format!(
            "gwctl-lock id=0badf00d holder=0123456789ab-77 op=up since=2026-12-01T10:00:00Z expires={expires}"
        )
    };
    let live = crashed(rfc3339_in(3600));
    change_lock_to(&m, &live, ChangeAction::Create).await;
    let held = gwctl(&r, &m)
        .args(["up", "us-east-1", "--scope", "aws", "--yes"])
        .output()
        .expect("up");
    let stderr = String::from_utf8_lossy(&held.stderr);
    assert_eq!(held.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("us-east-1 is locked by 0123456789ab-77"),
        "{stderr}"
    );
    assert_eq!(
        lock_value(&m).await,
        Some(live.clone()),
        "a live lease is not taken over"
    );

    // The holder is gone; its lease runs out in a moment.
    change_lock_to(&m, &live, ChangeAction::Delete).await;
    change_lock_to(&m, &crashed(rfc3339_in(2)), ChangeAction::Create).await;
    let out = gwctl(&r, &m)
        .args([
            "up",
            "us-east-1",
            "--scope",
            "aws",
            "--yes",
            "--lock-timeout",
            "60",
        ])
        .output()
        .expect("up");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("took over the lock of 0123456789ab-77")
            && stderr.contains("its lease ran out"),
        "{stderr}"
    );
    assert_eq!(lock_value(&m).await, None, "released after the run");
}

/// A run killed on this machine and never reaped (a zombie in a container whose init does not
/// reap) holds no lock: the next run breaks it at once, however long its lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_of_a_dead_or_zombie_local_run_is_broken_at_once() {
    let (r, m) = (Regions::examples(), Moto::start());
    let zombie = Command::new("true").spawn().expect("spawn");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let held = format!(
        "gwctl-lock id=0badf00d holder={} op=up since=2026-12-01T10:00:00Z expires={}",
        gwctl::engine::lock::local_holder(zombie.id()),
        rfc3339_in(3600)
    );
    change_lock_to(&m, &held, ChangeAction::Create).await;
    let out = gwctl(&r, &m)
        .args(["up", "us-east-1", "--scope", "aws", "--yes"])
        .output()
        .expect("up");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("that process is gone"), "{stderr}");
    drop(zombie);
}

/// While a run holds the lock it renews the lease (the value changes, the id stays), and the
/// value names no user and no host: the hosted zone is public.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_is_renewed_while_running_and_names_nobody() {
    let (r, m) = (Regions::examples(), Moto::start());
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("gwctl"));
    c.arg("--regions")
        .arg(r.dir())
        .args(["up", "--all", "--yes", "--scope", "aws"]);
    m.std_env(&mut c);
    c.env("GWCTL_BROKER_ENDPOINTS", &r.endpoints)
        .env("GWCTL_LOCK_LEASE_SECONDS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = c.spawn().expect("spawn");
    let mut seen: Vec<String> = Vec::new();
    while child.try_wait().expect("wait").is_none() {
        if let Some(v) = lock_value(&m).await
            && seen.last() != Some(&v)
        {
            seen.push(v);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(child.wait().expect("wait").success());
    assert!(seen.len() >= 2, "the lease was never renewed: {seen:?}");
    let ids: std::collections::BTreeSet<_> = seen
        .iter()
        .filter_map(|v| v.split_whitespace().find(|w| w.starts_with("id=")))
        .collect();
    assert_eq!(ids.len(), 1, "one lock, renewed: {seen:?}");
    let user = std::env::var("USER").unwrap_or_default();
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    for v in &seen {
        assert!(v.contains(" expires="), "{v}");
        for personal in [user.trim(), host.trim()] {
            assert!(
                personal.len() < 3 || !v.contains(personal),
                "{personal} in {v}"
            );
        }
    }
    assert_eq!(lock_value(&m).await, None, "released after the run");
}

/// A lock broken (`gwctl unlock --id`) and taken by someone else while a run holds it: the
/// run's renewal finds another id, the run warns when it ends, and its release leaves the
/// new holder's lock alone. (A release whose DELETE lost its answer finds the record gone
/// and warns of nothing: `faults::each_mutating_call_…` cuts that answer.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_broken_and_taken_while_held_is_reported_and_left_to_its_new_holder() {
    let (r, m) = (Regions::examples(), Moto::start());
    // Slow calls keep the run going for seconds: time to break its lock.
    let proxy = crate::support::fault_proxy::FaultProxy::start(&m.endpoint);
    proxy.configure(serde_json::json!({"latency_ms": 150}));
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("gwctl"));
    c.arg("--regions")
        .arg(r.dir())
        .args(["up", "us-east-1", "--yes", "--scope", "aws"]);
    m.std_env(&mut c);
    c.env("AWS_ENDPOINT_URL", &proxy.endpoint)
        .env("GWCTL_BROKER_ENDPOINTS", &r.endpoints)
        .env("GWCTL_LOCK_LEASE_SECONDS", "3")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let child = c.spawn().expect("spawn");
    // Held once the run changes something beside its lock.
    while proxy.account().mutating() < 3 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ours = lock_value(&m).await.expect("the run's lock");
    let id = ours
        .split_whitespace()
        .find_map(|w| w.strip_prefix("id="))
        .expect("lock id")
        .to_string();
    gwctl(&r, &m)
        .args(["unlock", "us-east-1", "--id", &id])
        .assert()
        .success();
    change_lock(&m, ChangeAction::Create).await;
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: the lock of us-east-1 was broken and taken by someone else"),
        "{stderr}"
    );
    assert_eq!(
        lock_value(&m).await.as_deref(),
        Some(HELD),
        "the new holder's"
    );
}
