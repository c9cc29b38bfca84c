//! Drills: which region Route53 answers each client location now and with one region down.
//! A dry drill computes it from the records and the checks' current status; a live drill
//! really fails the region's health checks (inverted), waits for Route53 to see it, and
//! restores them — also on Ctrl-C; `up` repairs a drill killed outright.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::dns::Served;
use super::events::{Event, Events};
use super::{ApplyOptions, Engine};
use crate::cloud::Aws;
use crate::error::{Error, Result};
use crate::model::routing::{self, RegionState, Row};

/// What a drill found: every region as served before (and during a live drill), and the
/// answer per client location.
#[derive(Debug, Serialize)]
pub struct DrillReport {
    pub region: String,
    /// `dry` or `live`.
    pub mode: &'static str,
    pub regions: Vec<RegionState>,
    pub regions_during_drill: Option<Vec<RegionState>>,
    pub answers: Vec<Row>,
}

impl Engine {
    /// Every gateway region as Route53 serves it now.
    pub async fn survey(&self) -> Result<Vec<Served>> {
        let all = self.stack.gateways.iter().map(|g| async {
            let aws = self.connect(&g.spec.region).await;
            super::dns::served(&aws, &self.stack, &g.spec.region).await
        });
        futures_util::future::join_all(all)
            .await
            .into_iter()
            .collect()
    }

    /// The answers now and with `region` down, from a survey's health states alone.
    pub fn dry_drill(&self, region: &str, survey: &[Served]) -> DrillReport {
        let states: Vec<RegionState> = survey.iter().map(|s| s.state.clone()).collect();
        let names: Vec<String> = states.iter().map(|s| s.region.clone()).collect();
        let answers = routing::table(&routing::clients(&names), &states, region);
        DrillReport {
            region: region.to_string(),
            mode: "dry",
            regions: states,
            regions_during_drill: None,
            answers,
        }
    }

    /// Fails `region`'s health checks for real (under its lock), waits until Route53 counts
    /// them unhealthy, records the answers, and restores them whatever happened.
    pub async fn live_drill(
        &self,
        region: &str,
        before: &[Served],
        timeout: Duration,
        opts: ApplyOptions,
        events: &dyn Events,
    ) -> Result<DrillReport> {
        let mut held = self
            .take_down(region, before, timeout, opts, events)
            .await?;
        let during = std::mem::take(&mut held.during);
        self.bring_back(held, events).await?;
        let states: Vec<RegionState> = before.iter().map(|s| s.state.clone()).collect();
        let states_during: Vec<RegionState> = during.iter().map(|s| s.state.clone()).collect();
        let names: Vec<String> = states.iter().map(|s| s.region.clone()).collect();
        let answers = routing::clients(&names)
            .iter()
            .map(|c| Row {
                client: c.clone(),
                now: routing::answer(c, &states),
                down: routing::answer(c, &states_during),
            })
            .collect();
        Ok(DrillReport {
            region: region.to_string(),
            mode: "live",
            regions: states,
            regions_during_drill: Some(states_during),
            answers,
        })
    }

    /// Takes `region`'s lock, fails its health checks (inverted) and waits until Route53
    /// counts them unhealthy; on any failure (or Ctrl-C) they are restored and the lock
    /// released before the error returns. [`Engine::bring_back`] ends what this started.
    pub async fn take_down(
        &self,
        region: &str,
        before: &[Served],
        timeout: Duration,
        opts: ApplyOptions,
        events: &dyn Events,
    ) -> Result<HeldDown> {
        let ids = checks_to_fail(before, region)?;
        let locks = self
            .lock_regions(&[region.to_string()], "drill", opts.lock_timeout, events)
            .await?;
        let aws = self.connect(region).await;
        let outcome = tokio::select! {
            r = self.fail_and_observe(&aws, region, &ids, timeout, events) => r,
            _ = tokio::signal::ctrl_c() => Err(Error::Failed("interrupted: restoring the health checks".into())),
        };
        match outcome {
            Ok(during) => Ok(HeldDown {
                locks,
                ids,
                aws,
                during,
            }),
            Err(e) => {
                // Restoration is idempotent, and `up` repairs it too.
                let _ = restore(&aws, &ids, events).await;
                self.release_locks(locks, events).await;
                Err(e)
            }
        }
    }

    /// Restores the health checks [`Engine::take_down`] failed and releases the lock.
    pub async fn bring_back(&self, held: HeldDown, events: &dyn Events) -> Result<()> {
        let restored = restore(&held.aws, &held.ids, events).await;
        self.release_locks(held.locks, events).await;
        restored
    }

    /// Inverts the checks, then waits until Route53 reports every one of them unhealthy.
    async fn fail_and_observe(
        &self,
        aws: &Aws,
        region: &str,
        ids: &[String],
        timeout: Duration,
        events: &dyn Events,
    ) -> Result<Vec<Served>> {
        for id in ids {
            aws.invert_health_check(id, true)
                .await
                .map_err(|e| Error::Failed(format!("{region}: {e}")))?;
        }
        events.emit(Event::Notice(format!(
            "{region}: {} health checks inverted; waiting until Route53 counts them unhealthy",
            ids.len()
        )));
        let start = Instant::now();
        loop {
            let now = self.survey().await?;
            let down = now
                .iter()
                .find(|s| s.state.region == region)
                .is_some_and(|s| s.checks.iter().all(|c| !c.healthy));
            if down {
                events.emit(Event::Notice(format!(
                    "{region}: Route53 counts it unhealthy after {}s",
                    start.elapsed().as_secs()
                )));
                return Ok(now);
            }
            if start.elapsed() > timeout {
                return Err(Error::Failed(format!(
                    "{region}: Route53 still reports a check healthy after {}s",
                    timeout.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    }
}

/// A region whose health checks a drill holds failed, under its lock.
pub struct HeldDown {
    locks: Vec<super::lock::RegionLock>,
    ids: Vec<String>,
    aws: Aws,
    /// Every region as Route53 served it once the region counted as down.
    pub during: Vec<Served>,
}

/// The health checks a live drill of `region` would fail; an error when it has none.
pub fn checks_to_fail(survey: &[Served], region: &str) -> Result<Vec<String>> {
    let target = survey
        .iter()
        .find(|s| s.state.region == region)
        .ok_or_else(|| Error::Failed(format!("{region}: not surveyed")))?;
    if target.observed.is_empty() {
        return Err(Error::Failed(format!(
            "{region} has no health checks to fail: run `gwctl up {region}` first"
        )));
    }
    Ok(target.observed.iter().map(|c| c.id.clone()).collect())
}

async fn restore(aws: &Aws, ids: &[String], events: &dyn Events) -> Result<()> {
    let mut failed = Vec::new();
    for id in ids {
        if let Err(e) = aws.invert_health_check(id, false).await {
            failed.push(format!("{id}: {e}"));
        }
    }
    if failed.is_empty() {
        events.emit(Event::Notice(format!(
            "{} health checks restored",
            ids.len()
        )));
        Ok(())
    } else {
        Err(Error::Failed(format!(
            "could not restore every health check ({}); `gwctl up` puts them back",
            failed.join("; ")
        )))
    }
}
