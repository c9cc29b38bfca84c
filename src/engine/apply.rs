//! `up`: applies the plan that was shown. Takes the regions' locks, plans again under them
//! (what runs is what was shown, or nothing), applies each region concurrently — its AWS
//! resources as a dependency graph, then the backend's federation entries — and finally
//! Route53 for every applied region at once. A region that fails does not stop the others.

use super::events::{Event, Events};
use super::planning::{RegionWork, StackPlan};
use super::{ApplyOptions, Engine};
use crate::error::{Error, Result};
use crate::plan::exec::{self, Outcome};

impl Engine {
    /// Applies `shown` (as planned without a lock and shown to the operator).
    pub async fn apply(
        &self,
        shown: &StackPlan,
        opts: ApplyOptions,
        events: &dyn Events,
    ) -> Result<()> {
        if let Some((region, why)) = shown
            .regions
            .iter()
            .find_map(|w| Some((w.region(), w.plan.refused.as_ref()?)))
        {
            return Err(Error::Failed(format!(
                "{region}: {why}; nothing was changed"
            )));
        }
        let todo = shown.todo(self.scope);
        if todo.is_empty() {
            return match shown.failed.len() {
                0 => Ok(()),
                n => Err(Error::Failed(format!("{n} region(s) could not be planned"))),
            };
        }
        let regions: Vec<String> = todo.iter().map(|w| w.region().to_string()).collect();
        let locks = self
            .lock_regions(&regions, "up", opts.lock_timeout, events)
            .await?;
        let result = self
            .apply_locked(&todo, shown.failed.len(), opts, events)
            .await;
        self.release_locks(locks, events).await;
        result
    }

    async fn apply_locked(
        &self,
        shown: &[&RegionWork],
        mut failed: usize,
        opts: ApplyOptions,
        events: &dyn Events,
    ) -> Result<()> {
        // Each region again under its lock: one that cannot be planned or changed since it
        // was shown is left out (and counted), the others go on.
        let mut works = Vec::new();
        let view = self.route53_view(shown.first().map(|w| w.region())).await?;
        // Concurrently: each region's discovery is a round of reads of its own.
        let again = futures_util::future::join_all(shown.iter().map(|w| async {
            self.plan_region_in(self.gateway(w.region()), w.region(), view.as_ref())
                .await
                .and_then(|again| self.same_as_shown(w, &again, "plan again").map(|()| again))
        }))
        .await;
        for again in again {
            match again {
                Ok(again) => works.push(again),
                Err(e) => {
                    events.emit(Event::RegionFailed(e.to_string()));
                    failed += 1;
                }
            }
        }
        let runs = works.iter().map(|w| self.apply_region(w, opts, events));
        let mut applied = Vec::new();
        for (w, result) in works.iter().zip(futures_util::future::join_all(runs).await) {
            match result {
                Ok(()) => applied.push(w),
                Err(e) => {
                    events.emit(Event::RegionFailed(e));
                    failed += 1;
                }
            }
        }
        if self.scope.aws() && !applied.is_empty() {
            failed += self.apply_dns(&applied, events).await;
        }
        match failed {
            0 => Ok(()),
            n => Err(Error::Failed(format!("{n} region(s) failed"))),
        }
    }

    /// Refuses to go on when a region changed between the plan that was shown and the plan
    /// made under its lock.
    pub(super) fn same_as_shown(
        &self,
        shown: &RegionWork,
        again: &RegionWork,
        advice: &str,
    ) -> Result<()> {
        match super::saved::stale(&shown.fingerprints(), &again.fingerprints()) {
            None => Ok(()),
            Some(what) => Err(Error::Failed(format!(
                "{}: {what} changed while this run waited for the lock; {advice}",
                shown.region()
            ))),
        }
    }

    /// One region: its AWS resources, then (once its brokers exist) the backend's federation
    /// entries for it. Returns why it failed.
    async fn apply_region(
        &self,
        work: &RegionWork,
        opts: ApplyOptions,
        events: &dyn Events,
    ) -> std::result::Result<(), String> {
        let region = work.region();
        let aws_changed = self.scope.aws() && work.plan.has_changes();
        if aws_changed {
            let outcome = execute(work, opts.parallelism, events).await;
            if !outcome.ok() {
                return Err(format!(
                    "{region}: {} done, {} failed, {} skipped; run `gwctl up {region}` again once the cause is fixed",
                    outcome.done,
                    outcome.failed.len(),
                    outcome.skipped.len()
                ));
            }
            events.emit(Event::Done(format!(
                "{region}: {} AWS operations",
                outcome.done
            )));
            let created_brokers = work
                .plan
                .pending()
                .filter(|c| c.key.is_broker() && c.action == crate::model::Action::Create)
                .count();
            if created_brokers > 0 && self.scope.federation() {
                self.wait_for_brokers(region, created_brokers, opts.broker_wait, events)
                    .await?;
            }
        }
        if work.federation.is_none() {
            return Ok(());
        }
        let applied = self.apply_federation(work, aws_changed, events).await?;
        // Route53 comes after every region of the run: a region whose federation just changed,
        // or that Route53 does not advertise yet, is advertised only once its links from the
        // backend run. A gateway's link from the backend that never ran has no buffer there:
        // what the router sends a device connected to it could go nowhere (measured: `sandbox
        // drill` in router mode lost every command sent in the seconds before the links'
        // reconnect delay ran out). The second case is the run after one that gave up
        // waiting: its federation is in place, its records are not.
        let advertising = work.dns.as_ref().is_some_and(|d| d.advertises_anew());
        match (self.gateway(region), applied) {
            (Some(gw), Some(plan)) => {
                self.wait_for_links(gw, &plan, opts.broker_wait, events)
                    .await
            }
            (Some(gw), None) if advertising => {
                self.wait_for_links(gw, &work.plan, opts.broker_wait, events)
                    .await
            }
            _ => Ok(()),
        }
    }

    /// Waits, at most `wait`, until the gateway's links from the backend run, as its brokers'
    /// management API reports them (reached at an address of `plan`, the plan federation was
    /// applied by): each has its buffer on the backend from then on.
    async fn wait_for_links(
        &self,
        gw: &crate::spec::GatewaySpec,
        plan: &crate::plan::RegionPlan,
        wait: std::time::Duration,
        events: &dyn Events,
    ) -> std::result::Result<(), String> {
        let region = gw.region.as_str();
        let address = self
            .gateway_addresses(gw, plan)
            .and_then(|a| a.into_iter().next())
            .ok_or_else(|| format!("{region}: the brokers have no address yet"))?;
        let client = self
            .gateway_client(gw, &address)
            .map_err(|e| e.to_string())?;
        let start = std::time::Instant::now();
        let mut delay = std::time::Duration::from_millis(500);
        loop {
            let failures = self
                .link_failures(gw, &client, &gw.cluster_name(), false)
                .await;
            if failures.is_empty() {
                events.emit(Event::Done(format!(
                    "{region}: federation links from the backend run ({} s)",
                    start.elapsed().as_secs()
                )));
                return Ok(());
            }
            if start.elapsed() > wait {
                return Err(format!(
                    "{region}: federation links still not running after {} s: {}; Route53 \
                     does not advertise the region until they run: run `gwctl up {region}` \
                     again once they do (`gwctl status {region}`)",
                    wait.as_secs(),
                    failures.join("; ")
                ));
            }
            events.emit(Event::Progress(format!(
                "{region}: waiting for federation links before Route53 ({} s): {}",
                start.elapsed().as_secs(),
                failures.join("; ")
            )));
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(std::time::Duration::from_secs(5));
        }
    }

    /// New brokers boot, install and configure RabbitMQ (cloud-init): `up` is done only once
    /// every broker of the region answers its management API (over the backend network, or
    /// where the endpoints file says), within `wait` (`--broker-wait`).
    async fn wait_for_brokers(
        &self,
        region: &str,
        created: usize,
        wait: std::time::Duration,
        events: &dyn Events,
    ) -> std::result::Result<(), String> {
        let Some(gw) = self.gateway(region) else {
            return Ok(());
        };
        let again = self
            .plan_region(Some(gw), region)
            .await
            .map_err(|e| e.to_string())?;
        let start = std::time::Instant::now();
        let mut delay = std::time::Duration::from_secs(1);
        events.emit(Event::Progress(format!(
            "{region}: waiting for {created} new brokers to answer their management API (at most {} s)",
            wait.as_secs()
        )));
        loop {
            // Again each round: where a broker answers may become known only now (a sandbox
            // following the cloud maps an instance once its node is up).
            let addresses = self
                .gateway_addresses(gw, &again.plan)
                .ok_or_else(|| format!("{region}: the new brokers have no address yet"))?;
            let mut answering = 0;
            let mut last = String::new();
            for address in &addresses {
                match self.gateway_client(gw, address) {
                    Ok(client) => match client.overview().await {
                        Ok(_) => answering += 1,
                        Err(e) => last = e.to_string(),
                    },
                    Err(e) => last = e.to_string(),
                }
            }
            if answering == addresses.len() {
                events.emit(Event::Done(format!(
                    "{region}: {answering} brokers answer ({} s)",
                    start.elapsed().as_secs()
                )));
                return Ok(());
            }
            if start.elapsed() > wait {
                return Err(format!(
                    "{region}: {answering} of {} brokers answer their management API after {} s \
                     ({last}); see the instances' console output, then run `gwctl up {region}` again",
                    addresses.len(),
                    wait.as_secs()
                ));
            }
            events.emit(Event::Progress(format!(
                "{region}: {answering} of {} brokers answer ({} s)",
                addresses.len(),
                start.elapsed().as_secs()
            )));
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(std::time::Duration::from_secs(15));
        }
    }

    /// Route53 last, for every applied region at once: the brokers' addresses exist only now,
    /// and the zone gets one change batch for all of them. A region whose Route53 part cannot
    /// be planned is left out of the batch; returns how many regions failed.
    async fn apply_dns(&self, works: &[&RegionWork], events: &dyn Events) -> usize {
        let mut failed = 0;
        let mut plans = Vec::new();
        // Route53 read once for every region of the batch (it is global).
        let view = match works.first() {
            Some(w) => match super::dns::Route53View::read(&w.aws, &self.stack).await {
                Ok(view) => Some(view),
                Err(e) => {
                    events.emit(Event::RegionFailed(e.to_string()));
                    return works.len();
                }
            },
            None => None,
        };
        for w in works {
            let region = w.region();
            let gw = self.gateway(region);
            let planned = async {
                let addresses = match gw {
                    Some(gw) => super::dns::addresses_now(&w.aws, gw).await?,
                    None => Default::default(),
                };
                super::dns::plan(&w.aws, &self.stack, gw, region, &addresses, view.as_ref()).await
            };
            match planned.await {
                Ok(p) => plans.push(p),
                Err(e) => {
                    events.emit(Event::RegionFailed(e.to_string()));
                    failed += 1;
                }
            }
        }
        let todo: Vec<_> = plans.iter().filter(|p| p.has_changes()).collect();
        if let (Some(first), false) = (works.first(), todo.is_empty())
            && let Err(e) = super::dns::apply(&first.aws, &self.stack, &todo, events).await
        {
            events.emit(Event::RegionFailed(e.to_string()));
            failed += todo.len();
        }
        failed
    }
}

/// Executes one region's AWS plan as a graph, reporting each step.
pub(super) async fn execute(work: &RegionWork, parallelism: usize, events: &dyn Events) -> Outcome {
    let region = work.region().to_string();
    events.emit(Event::OpsStarted {
        region: region.clone(),
        total: exec::graph(&work.plan).len() as u64,
    });
    let on_event = |event: exec::Event| {
        events.emit(Event::Op {
            region: region.clone(),
            event,
        })
    };
    let outcome = exec::run(&work.aws, &work.plan, parallelism, on_event).await;
    events.emit(Event::OpsFinished { region });
    outcome
}
