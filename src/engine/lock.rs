//! A lock held in AWS itself, needing no extra infrastructure: a TXT record
//! `_gwctl-lock.<region>.<record>` in the stack's hosted zone, created with a Route53 CREATE,
//! which Route53 rejects while the record exists. Release deletes it only if its value is still
//! ours (Route53 rejects a DELETE with other values).
//!
//! The zone is public, so the value publishes nothing personal: a lock id (to break it with
//! `gwctl unlock REGION --id ID`), an opaque holder, the operation, since when, and until when
//! the lease runs. The holder renews the lease once a third of [`lease`] has passed, for as long as the run
//! takes (an upgrade may take an hour), by a compare-and-swap (DELETE of its exact value and
//! CREATE of the new one in one batch). A lock whose lease has run out — its holder crashed,
//! on whatever machine — is taken over by the same compare-and-swap, so of several waiting runs
//! exactly one gets it. The opaque holder is `<12 hex of SHA-256 of machine id, boot id and PID
//! namespace>-<pid>`: other machines learn nothing from it, while this machine recognises its
//! own runs that are gone (or zombies nobody reaped) and breaks their locks at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::Engine;
use super::events::{Event, Events};
use crate::cloud::{Aws, CloudError};
use crate::error::{Error, Result};
use crate::model::sha256_hex;

/// How long a lock stays valid without renewal: 300 s (Route53 may take a minute to report a
/// change INSYNC, and a laptop may stall), or `GWCTL_LOCK_LEASE_SECONDS` (at least 1; tests
/// shorten it to watch renewals).
pub fn lease() -> Duration {
    let secs = std::env::var("GWCTL_LOCK_LEASE_SECONDS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(300)
        .max(1);
    Duration::from_secs(secs)
}

/// This machine's processes, opaquely: 12 hex digits of the SHA-256 of the machine id, the
/// boot id and the PID namespace (containers from one image share a machine id, not a PID
/// namespace). `None` without a machine id: then no lock is ever judged "ours and dead".
fn machine() -> Option<String> {
    let id = std::fs::read_to_string("/etc/machine-id")
        .or_else(|_| std::fs::read_to_string("/var/lib/dbus/machine-id"))
        .ok()
        .filter(|id| !id.trim().is_empty())?;
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let pidns = std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    Some(sha256_hex(&format!("{}/{}/{pidns}", id.trim(), boot.trim()))[..12].to_string())
}

/// The opaque holder name of process `pid` of this machine (`anonymous-PID` without a
/// machine id).
pub fn local_holder(pid: u32) -> String {
    format!("{}-{pid}", machine().unwrap_or_else(|| "anonymous".into()))
}

/// Whether `pid` of this machine still runs: a zombie (exited, not reaped, e.g. in a container
/// whose init does not reap) does not.
fn runs(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'))
    })
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockInfo {
    pub id: String,
    pub holder: String,
    pub operation: String,
    pub since: String,
    /// When the lease runs out unless renewed; `None` for a value without one (never expires).
    pub expires: Option<String>,
}

impl LockInfo {
    fn new(id: &str, operation: &str, since: &str) -> LockInfo {
        LockInfo {
            id: id.to_string(),
            holder: local_holder(std::process::id()),
            operation: operation.replace(' ', "_"),
            since: since.to_string(),
            expires: Some(rfc3339(SystemTime::now() + lease())),
        }
    }

    /// The same lock with its lease renewed from now.
    fn renewed(&self) -> LockInfo {
        LockInfo {
            expires: Some(rfc3339(SystemTime::now() + lease())),
            ..self.clone()
        }
    }

    /// Held by a process of this machine that is gone.
    fn is_dead_local(&self) -> bool {
        match (self.holder.rsplit_once('-'), machine()) {
            (Some((m, pid)), Some(me)) if m == me => pid.parse::<u32>().is_ok_and(|pid| !runs(pid)),
            _ => false,
        }
    }

    /// The lease has run out (by this machine's clock; leases are long against clock skew).
    fn is_expired(&self) -> bool {
        self.expires
            .as_deref()
            .and_then(|e| humantime::parse_rfc3339(e).ok())
            .is_some_and(|e| e < SystemTime::now())
    }

    fn encode(&self) -> String {
        let mut v = format!(
            "gwctl-lock id={} holder={} op={} since={}",
            self.id, self.holder, self.operation, self.since
        );
        if let Some(e) = &self.expires {
            v.push_str(&format!(" expires={e}"));
        }
        v
    }

    fn decode(value: &str) -> LockInfo {
        let field = |k: &str| {
            value
                .split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{k}=")))
                .map(str::to_string)
        };
        LockInfo {
            id: field("id").unwrap_or_else(|| "?".into()),
            holder: field("holder").unwrap_or_else(|| "?".into()),
            operation: field("op").unwrap_or_else(|| "?".into()),
            since: field("since").unwrap_or_else(|| "?".into()),
            expires: field("expires"),
        }
    }
}

impl std::fmt::Display for LockInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} since {} ({}, lock id {})",
            self.holder, self.since, self.operation, self.id
        )?;
        match &self.expires {
            Some(e) => write!(f, "; its lease runs until {e}"),
            None => Ok(()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{region} is locked by {info}; wait for it (--lock-timeout), or break a stale lock with `gwctl unlock {region} --id {}`", .info.id)]
    Held { region: String, info: LockInfo },
    #[error("{region} is not locked")]
    NotHeld { region: String },
    #[error("{region} is locked by {info}, not with id {asked}")]
    OtherId {
        region: String,
        info: LockInfo,
        asked: String,
    },
    #[error(transparent)]
    Cloud(#[from] CloudError),
}

pub fn record_name(region: &str, record: &str) -> String {
    format!("_gwctl-lock.{region}.{}", record.trim_end_matches('.'))
}

/// A held lock, renewed in the background until [`RegionLock::release`].
pub struct RegionLock {
    aws: Aws,
    zone_id: String,
    name: String,
    lease: Arc<Lease>,
    renewer: tokio::task::JoinHandle<()>,
    pub region: String,
    pub info: LockInfo,
}

/// Takes the lock of `region`, waiting up to `timeout` while someone else holds it; `notify`
/// is told once who that is. An expired lease, or a lock of a process of this machine that no
/// longer runs (a run killed with SIGKILL), is taken over at once, and said so.
pub async fn acquire(
    aws: &Aws,
    zone: &str,
    record: &str,
    region: &str,
    operation: &str,
    timeout: Duration,
    notify: impl Fn(String),
) -> Result<RegionLock, LockError> {
    let zone_id = aws.find_zone(zone).await?;
    let name = record_name(region, record);
    let id = format!("{:08x}", rand::random::<u32>());
    let start = Instant::now();
    let mut told = false;
    loop {
        // Fresh times on every attempt: a run that waited must not start with a spent lease.
        let written = Instant::now();
        let info = LockInfo::new(&id, operation, &rfc3339(SystemTime::now()));
        let value = info.encode();
        aws.create_txt(&zone_id, &name, &value).await?;
        let Some(current) = aws.read_txt(&zone_id, &name).await? else {
            continue; // released between our CREATE and the read: try again at once
        };
        let holder = LockInfo::decode(&current);
        // Ours, also when a CREATE whose answer was lost was retried into "already exists".
        if holder.id == id {
            return Ok(RegionLock::held(
                aws, zone_id, name, current, written, region, info,
            ));
        }
        let why = if holder.is_dead_local() {
            Some("that process is gone")
        } else if holder.is_expired() {
            Some("its lease ran out")
        } else {
            None
        };
        // Of several runs taking over, the compare-and-swap lets exactly one win.
        if let Some(why) = why
            && aws.replace_txt(&zone_id, &name, &current, &value).await?
        {
            notify(format!("{region}: took over the lock of {holder}: {why}"));
            return Ok(RegionLock::held(
                aws, zone_id, name, value, written, region, info,
            ));
        }
        if start.elapsed() >= timeout {
            return Err(LockError::Held {
                region: region.to_string(),
                info: holder,
            });
        }
        if !told {
            notify(format!(
                "{region} is locked by {holder}; waiting up to {} s",
                timeout.as_secs()
            ));
            told = true;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// What the renewer and the holder share.
struct Lease {
    /// The value the record holds now.
    value: std::sync::Mutex<String>,
    /// Set when the record turned out to be someone else's: the lock was broken.
    lost: AtomicBool,
    /// Tells the renewer to stop between renewals (never in the middle of one).
    stop: tokio::sync::Notify,
}

impl RegionLock {
    fn held(
        aws: &Aws,
        zone_id: String,
        name: String,
        value: String,
        written: Instant,
        region: &str,
        info: LockInfo,
    ) -> RegionLock {
        let lease = Arc::new(Lease {
            value: std::sync::Mutex::new(value),
            lost: AtomicBool::new(false),
            stop: tokio::sync::Notify::new(),
        });
        let renewer = tokio::spawn(renew(
            aws.clone(),
            zone_id.clone(),
            name.clone(),
            info.clone(),
            lease.clone(),
            written,
        ));
        RegionLock {
            aws: aws.clone(),
            zone_id,
            name,
            lease,
            renewer,
            region: region.to_string(),
            info,
        }
    }

    /// Stops renewing (waiting for a renewal in flight) and deletes the lock; `Ok(false)` if it
    /// was broken and taken by someone else meanwhile.
    pub async fn release(self) -> Result<bool, CloudError> {
        self.lease.stop.notify_one();
        let _ = self.renewer.await;
        if self.lease.lost.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let value = self
            .lease
            .value
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default();
        if self
            .aws
            .delete_txt(&self.zone_id, &self.name, &value)
            .await?
        {
            return Ok(true);
        }
        match self.aws.read_txt(&self.zone_id, &self.name).await? {
            // A renewal applied whose answer was lost: the record holds a newer value of ours.
            Some(now) if LockInfo::decode(&now).id == self.info.id => {
                self.aws.delete_txt(&self.zone_id, &self.name, &now).await
            }
            Some(_) => Ok(false),
            // Gone: our DELETE was carried out and its answer lost, so the SDK's repeat was
            // refused. (A breaker who took the lock and released it again since the last
            // renewal looks the same; the renewals catch a lock taken while they run.)
            None => Ok(true),
        }
    }
}

/// Renews the lease once a third of it has passed since the value was written (counted from
/// before the CREATE, so a slow INSYNC wait makes the first renewal come at once), for as long
/// as the lock is held. A failed call is tried again a few seconds later; a record that holds
/// another lock's id means someone broke ours: renewal stops and release reports it.
async fn renew(
    aws: Aws,
    zone_id: String,
    name: String,
    info: LockInfo,
    lease: Arc<Lease>,
    written: Instant,
) {
    let every = self::lease() / 3;
    let mut due = written + every;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(due.into()) => {}
            _ = lease.stop.notified() => return,
        }
        let Ok(current) = lease.value.lock().map(|v| v.clone()) else {
            return;
        };
        let attempt = Instant::now();
        let next = info.renewed().encode();
        let renewed = match aws.replace_txt(&zone_id, &name, &current, &next).await {
            Ok(true) => Some(next),
            // Not the value we knew: ours still if a renewal applied without its answer.
            Ok(false) => match aws.read_txt(&zone_id, &name).await {
                Ok(Some(now)) if LockInfo::decode(&now).id == info.id => Some(now),
                Ok(_) => {
                    lease.lost.store(true, Ordering::SeqCst);
                    return;
                }
                Err(_) => None,
            },
            Err(_) => None,
        };
        due = match renewed {
            Some(v) => {
                if let Ok(mut slot) = lease.value.lock() {
                    *slot = v;
                }
                attempt + every
            }
            // Try again soon: two thirds of the lease are left when the first attempt fails.
            None => Instant::now() + Duration::from_secs(5).min(every),
        };
    }
}

/// Breaks the lock of `region` if its id is `id`.
pub async fn break_lock(
    aws: &Aws,
    zone: &str,
    record: &str,
    region: &str,
    id: &str,
) -> Result<LockInfo, LockError> {
    let zone_id = aws.find_zone(zone).await?;
    let name = record_name(region, record);
    let Some(value) = aws.read_txt(&zone_id, &name).await? else {
        return Err(LockError::NotHeld {
            region: region.to_string(),
        });
    };
    let info = LockInfo::decode(&value);
    if info.id != id {
        return Err(LockError::OtherId {
            region: region.to_string(),
            info,
            asked: id.to_string(),
        });
    }
    if !aws.delete_txt(&zone_id, &name, &value).await? {
        return Err(LockError::NotHeld {
            region: region.to_string(),
        });
    }
    Ok(info)
}

impl Engine {
    /// Takes the cloud-side lock of every region, in name order (two runs over overlapping
    /// regions cannot each hold one the other waits for). On failure, releases what it took.
    pub(super) async fn lock_regions(
        &self,
        regions: &[String],
        operation: &str,
        timeout: Duration,
        events: &dyn Events,
    ) -> Result<Vec<RegionLock>> {
        let backend = &self.stack.backend.spec;
        let aws = self.connect(&backend.region).await;
        let mut sorted = regions.to_vec();
        sorted.sort();
        // Fast path: every lock at once, none waited for (N regions cost one round of calls,
        // not N). Safe from deadlock: a run that finds one held gives back everything it took
        // before it waits, then takes them in order below — no run waits while holding a lock
        // it took out of order.
        if sorted.len() > 1 {
            let notify = |line: String| events.emit(Event::Notice(line));
            let tries = futures_util::future::join_all(sorted.iter().map(|region| {
                acquire(
                    &aws,
                    &backend.dns.zone,
                    &backend.dns.record,
                    region,
                    operation,
                    Duration::ZERO,
                    &notify,
                )
            }))
            .await;
            let (mut taken, mut refused) = (Vec::new(), Vec::new());
            for t in tries {
                match t {
                    Ok(l) => taken.push(l),
                    Err(e) => refused.push(e),
                }
            }
            if refused.is_empty() {
                return Ok(taken);
            }
            self.release_locks(taken, events).await;
            if let Some(e) = refused
                .into_iter()
                .find(|e| !matches!(e, LockError::Held { .. }))
            {
                return Err(Error::Failed(e.to_string()));
            }
        }
        let mut held = Vec::new();
        for region in &sorted {
            let notify = |line: String| events.emit(Event::Notice(line));
            match acquire(
                &aws,
                &backend.dns.zone,
                &backend.dns.record,
                region,
                operation,
                timeout,
                notify,
            )
            .await
            {
                Ok(l) => held.push(l),
                Err(e) => {
                    self.release_locks(held, events).await;
                    return Err(Error::Failed(e.to_string()));
                }
            }
        }
        Ok(held)
    }

    /// Releases every lock at once (the order of releasing cannot deadlock anyone).
    pub(super) async fn release_locks(&self, locks: Vec<RegionLock>, events: &dyn Events) {
        let released = futures_util::future::join_all(locks.into_iter().map(|l| async move {
            let region = l.region.clone();
            (region, l.release().await)
        }))
        .await;
        for (region, result) in released {
            match result {
                Ok(true) => {}
                Ok(false) => events.emit(Event::Warning(format!(
                    "the lock of {region} was broken and taken by someone else while this run held it"
                ))),
                Err(e) => events.emit(Event::Warning(format!(
                    "could not release the lock of {region}: {e}; `gwctl unlock {region}` breaks it"
                ))),
            }
        }
    }

    /// Breaks the lock of `region` if its id is still `id` (`gwctl unlock`).
    pub async fn unlock(&self, region: &str, id: &str) -> Result<LockInfo> {
        let backend = &self.stack.backend.spec;
        let aws = self.connect(&backend.region).await;
        break_lock(&aws, &backend.dns.zone, &backend.dns.record, region, id)
            .await
            .map_err(|e| Error::Failed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_values_round_trip_and_name_nobody() {
        let info = LockInfo::new("cafebabe", "up us-east-1", "2026-12-01T10:00:00Z");
        let back = LockInfo::decode(&info.encode());
        assert_eq!(back, info);
        assert_eq!(back.operation, "up_us-east-1");
        assert!(info.encode().len() < 255, "one TXT string");
        let value = info.encode();
        for personal in [
            std::env::var("USER").ok(),
            std::fs::read_to_string("/etc/hostname").ok(),
        ]
        .into_iter()
        .flatten()
        {
            let personal = personal.trim();
            assert!(
                personal.len() < 3 || !value.contains(personal),
                "{personal} in {value}"
            );
        }
    }

    #[test]
    fn leases_expire_and_dead_local_holders_are_recognised() {
        let mut info = LockInfo::new("cafebabe", "up", "2026-12-01T10:00:00Z");
        assert!(!info.is_expired() && !info.is_dead_local());
        info.expires = Some("2020-01-01T00:00:00Z".into());
        assert!(info.is_expired());
        info.expires = None;
        assert!(
            !info.is_expired(),
            "a value without a lease never expires by itself"
        );
        // A zombie: exited, never reaped.
        let child = std::process::Command::new("true").spawn().expect("spawn");
        std::thread::sleep(Duration::from_millis(200));
        info.holder = local_holder(child.id());
        assert!(info.is_dead_local(), "a zombie does not run");
        info.holder = format!("0123456789ab-{}", child.id());
        assert!(
            !info.is_dead_local(),
            "another machine's process is not ours to judge"
        );
        drop(child);
    }
}
