//! A lock held in AWS itself, needing no extra infrastructure: a TXT record
//! `_gwctl-lock.<region>.<record>` in the stack's hosted zone, created with a Route53 CREATE,
//! which Route53 rejects while the record exists. The value says who holds it, since when, for
//! what, and an id to break it with (`gwctl unlock REGION --id ID`). Release deletes it only if
//! its value is still ours (Route53 rejects a DELETE with other values).

use std::time::{Duration, Instant};

use super::Engine;
use super::events::{Event, Events};
use crate::cloud::{Aws, CloudError};
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockInfo {
    pub id: String,
    pub holder: String,
    pub operation: String,
    pub since: String,
}

impl LockInfo {
    fn new(operation: &str) -> LockInfo {
        let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        LockInfo {
            id: format!("{:08x}", rand::random::<u32>()),
            holder: format!("{user}@{host}/pid{}", std::process::id()),
            operation: operation.replace(' ', "_"),
            since: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        }
    }

    /// Held by a process of this machine that is gone.
    fn is_dead_local(&self) -> bool {
        let mine = LockInfo::new("");
        let host = |h: &str| {
            h.split_once('@')
                .and_then(|(_, r)| r.rsplit_once("/pid"))
                .map(|(host, pid)| (host.to_string(), pid.to_string()))
        };
        match (host(&self.holder), host(&mine.holder)) {
            (Some((their_host, pid)), Some((my_host, _))) if their_host == my_host => pid
                .parse::<u32>()
                .is_ok_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists()),
            _ => false,
        }
    }

    fn encode(&self) -> String {
        format!(
            "gwctl-lock id={} holder={} op={} since={}",
            self.id, self.holder, self.operation, self.since
        )
    }

    fn decode(value: &str) -> LockInfo {
        let field = |k: &str| {
            value
                .split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{k}=")))
                .unwrap_or("?")
                .to_string()
        };
        LockInfo {
            id: field("id"),
            holder: field("holder"),
            operation: field("op"),
            since: field("since"),
        }
    }
}

impl std::fmt::Display for LockInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} since {} ({}, lock id {})",
            self.holder, self.since, self.operation, self.id
        )
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

/// A held lock; release it with [`RegionLock::release`].
pub struct RegionLock {
    aws: Aws,
    zone_id: String,
    name: String,
    value: String,
    pub region: String,
    pub info: LockInfo,
}

/// Takes the lock of `region`, waiting up to `timeout` while someone else holds it; `notify`
/// is told once who that is. A lock left by a process of this machine that no longer runs (a
/// run killed with SIGKILL) is broken at once, and said so.
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
    let info = LockInfo::new(operation);
    let value = info.encode();
    let start = Instant::now();
    let mut told = false;
    loop {
        if aws.create_txt(&zone_id, &name, &value).await? {
            // Read back: ours, not a twin written at the same moment.
            if aws.read_txt(&zone_id, &name).await?.as_deref() == Some(value.as_str()) {
                return Ok(RegionLock {
                    aws: aws.clone(),
                    zone_id,
                    name,
                    value,
                    region: region.to_string(),
                    info,
                });
            }
        }
        if let Some(current) = aws.read_txt(&zone_id, &name).await? {
            let holder = LockInfo::decode(&current);
            if holder.is_dead_local() {
                if aws.delete_txt(&zone_id, &name, &current).await? {
                    notify(format!(
                        "{region}: broke the stale lock of {holder}: that process is gone"
                    ));
                }
                continue;
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
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

impl RegionLock {
    /// Releases the lock; `Ok(false)` if it was broken and taken by someone else meanwhile.
    pub async fn release(self) -> Result<bool, CloudError> {
        self.aws
            .delete_txt(&self.zone_id, &self.name, &self.value)
            .await
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

    pub(super) async fn release_locks(&self, locks: Vec<RegionLock>, events: &dyn Events) {
        for l in locks {
            let region = l.region.clone();
            match l.release().await {
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
    fn lock_values_round_trip() {
        let info = LockInfo::new("up us-east-1");
        let back = LockInfo::decode(&info.encode());
        assert_eq!(back, info);
        assert_eq!(back.operation, "up_us-east-1");
        assert!(info.encode().len() < 255, "one TXT string");
    }
}
