//! Kill anywhere: `up` and `down` get SIGKILL at seeded random moments — mid-call, mid-wait,
//! holding the lock — and the next run converges to what a clean run leaves: no duplicate, no
//! orphan, no lock left (a lock of a dead process of this machine is broken at once; one of
//! another machine's runs out with its lease: `src/engine/lock.rs`).
//!
//! The default run kills each command at 3 moments; the long mode kills at 50:
//! `GWCTL_KILL_MOMENTS=50 cargo test --test integration kill::` (`scripts/soak`), with
//! `GWCTL_KILL_SEED` to choose other moments. A failure names its seed and moment.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use crate::aws::snapshots;
use crate::faults::{end_state, run};
use crate::support::Regions;
use crate::support::moto::{Moto, gwctl};

/// How many moments each command is killed at, and from which seed.
pub(crate) fn moments() -> (usize, u64) {
    let number = |var: &str, default: u64| {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    (
        number("GWCTL_KILL_MOMENTS", 3) as usize,
        number("GWCTL_KILL_SEED", 16),
    )
}

/// Starts `args` and kills it with SIGKILL `after` later (or lets it finish first).
fn killed_after(r: &Regions, m: &Moto, args: &[&str], after: Duration) -> bool {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("gwctl"));
    cmd.arg("--regions").arg(r.dir()).args(args);
    m.std_env(&mut cmd);
    for (k, _) in std::env::vars() {
        if k.starts_with("GWCTL_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("GWCTL_BROKER_ENDPOINTS", &r.endpoints)
        .env("NO_COLOR", "1");
    kill_after(cmd, after)
}

/// Runs `cmd` and kills it with SIGKILL `after` later; `false` when it finished first.
pub(crate) fn kill_after(mut cmd: Command, after: Duration) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("spawn gwctl");
    let start = Instant::now();
    while start.elapsed() < after {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    true
}

/// A killed run may leave its lock where the next run had nothing to do in that region (a run
/// with nothing to do takes no lock, so breaks none): such a lock must be one nobody waits
/// for — its holder a dead process of this machine (broken at once by the next run that needs
/// it) with a lease that runs out (taken over by any other machine's run). Checks that, and
/// returns the state without the lock records.
async fn without_dead_locks(
    m: &Moto,
    mut state: std::collections::BTreeMap<String, String>,
) -> std::collections::BTreeMap<String, String> {
    let dns = m.route53().await;
    let sets = dns
        .list_resource_record_sets()
        .hosted_zone_id(m.zone_id().await)
        .send()
        .await
        .expect("records");
    for set in sets.resource_record_sets() {
        if !set.name().starts_with("_gwctl-lock.") {
            continue;
        }
        let value = set.resource_records()[0]
            .value()
            .trim_matches('"')
            .to_string();
        let field = |k: &str| {
            value
                .split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{k}=")))
                .map(str::to_string)
        };
        let pid = field("holder")
            .and_then(|h| h.rsplit_once('-').map(|(_, pid)| pid.to_string()))
            .expect("holder");
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "a lock left by a live process: {value}"
        );
        assert!(
            field("expires").is_some(),
            "a lock that never expires: {value}"
        );
    }
    if let Some(names) = state.get_mut("record sets") {
        *names = names
            .lines()
            .filter(|l| !l.starts_with("_gwctl-lock."))
            .collect::<Vec<_>>()
            .join("\n");
    }
    state
}

/// Runs `args` after a kill until it succeeds. The call the killed run had in flight is still
/// carried out by AWS after its death, so the state the next run planned without the lock
/// may change before it holds the lock: it then refuses that region ("changed while this
/// run waited for the lock") rather than apply a plan nobody saw, and the run after it
/// finishes. Anything else is a failure.
fn run_again(r: &Regions, m: &Moto, args: &[&str], context: &str) {
    let first = gwctl(r, m).args(args).output().expect("run again");
    if first.status.success() {
        return;
    }
    let said = String::from_utf8_lossy(&first.stderr);
    assert!(
        said.contains("changed while this run waited for the lock"),
        "{context}: {args:?} again failed:\n{said}"
    );
    let second = gwctl(r, m).args(args).output().expect("run again");
    assert!(
        second.status.success(),
        "{context}: {args:?} failed twice:\n{}",
        String::from_utf8_lossy(&second.stderr)
    );
}

/// Seeded moments within `span`: where each kill falls.
pub(crate) fn kill_moments(seed: u64, n: usize, span: Duration) -> Vec<Duration> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| span.mul_f64(rng.random_range(0.0..1.0)))
        .collect()
}

/// `up --all` killed at seeded moments of a fresh apply; each time, `up` again ends where a
/// clean `up` ends and a plan finds nothing to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_killed_anywhere_converges_when_run_again() {
    let (r, m) = (Regions::examples(), Moto::start());
    let up = ["up", "--all", "--yes", "--scope", "aws"];
    let started = Instant::now();
    run(&r, &m, None, &up);
    let span = started.elapsed();
    let clean = end_state(&m).await;
    let (n, seed) = moments();
    let mut cut = 0;
    for (i, at) in kill_moments(seed, n, span).into_iter().enumerate() {
        m.reset();
        cut += usize::from(killed_after(&r, &m, &up, at));
        run_again(&r, &m, &up, &format!("seed {seed}, kill {i} at {at:?}"));
        assert_eq!(
            without_dead_locks(&m, end_state(&m).await).await,
            clean,
            "seed {seed}, kill {i} at {at:?} of {span:?}"
        );
        gwctl(&r, &m)
            .args(["plan", "--all", "--detailed-exitcode", "--scope", "aws"])
            .assert()
            .code(0);
    }
    assert!(cut * 2 >= n, "most kills cut a run short: {cut} of {n}");
}

/// `down` killed at seeded moments; each time, `down` again leaves what a clean `down`
/// leaves: the other region untouched, nothing of the region's own, the snapshots kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_killed_anywhere_converges_when_run_again() {
    let (r, m) = (Regions::examples(), Moto::start());
    let up = ["up", "--all", "--yes", "--scope", "aws"];
    let down = ["down", "us-east-1", "--yes", "--scope", "aws"];
    run(&r, &m, None, &up);
    let started = Instant::now();
    run(&r, &m, None, &down);
    let span = started.elapsed();
    let clean = end_state(&m).await;
    let (n, seed) = moments();
    let mut cut = 0;
    for (i, at) in kill_moments(seed ^ 0xd0, n, span).into_iter().enumerate() {
        m.reset();
        run(&r, &m, None, &up);
        cut += usize::from(killed_after(&r, &m, &down, at));
        run_again(&r, &m, &down, &format!("seed {seed}, kill {i} at {at:?}"));
        assert_eq!(
            without_dead_locks(&m, end_state(&m).await).await,
            clean,
            "seed {seed}, kill {i} at {at:?} of {span:?}"
        );
        let kept = snapshots(&m.ec2("us-east-1").await).await;
        assert_eq!(
            kept.keys().collect::<Vec<_>>(),
            [
                "instance/broker-1",
                "instance/broker-2",
                "instance/broker-3"
            ],
            "seed {seed}, kill {i} at {at:?}: a snapshot of every broker's data"
        );
    }
    assert!(cut * 2 >= n, "most kills cut a run short: {cut} of {n}");
}
