//! `down`: removes everything gwctl owns in a region, and nothing else, in the reverse order of
//! `up`: the backend stops federating from it, Route53 stops sending clients to it, then its
//! AWS resources go.

use super::events::{Event, Events};
use super::planning::RegionWork;
use super::{ApplyOptions, Engine};
use crate::error::{Error, Result};

impl Engine {
    /// Deletes what `shown` (from [`Engine::plan_removal`]) listed, under the region's lock,
    /// after planning again: what goes is what was shown, or nothing.
    pub async fn destroy(
        &self,
        shown: &RegionWork,
        opts: ApplyOptions,
        events: &dyn Events,
    ) -> Result<()> {
        let region = shown.region().to_string();
        let locks = self
            .lock_regions(
                std::slice::from_ref(&region),
                "down",
                opts.lock_timeout,
                events,
            )
            .await?;
        let result = self.destroy_locked(shown, opts, events).await;
        self.release_locks(locks, events).await;
        result
    }

    /// Deleted brokers left snapshots of their data volumes; the oldest beyond the region's
    /// retention go (the region file's, or the default when the file is gone).
    pub(super) async fn prune_snapshots(
        &self,
        work: &RegionWork,
        events: &dyn Events,
    ) -> Result<()> {
        let retain = self
            .gateway(work.region())
            .map_or(crate::spec::model::SNAPSHOTS_RETAINED, |g| {
                g.brokers.snapshots_retained
            });
        let deleted = work
            .aws
            .prune_snapshots(usize::from(retain))
            .await
            .map_err(|e| Error::Failed(format!("{}: {e}", work.region())))?;
        if !deleted.is_empty() {
            events.emit(Event::Progress(format!(
                "{}: {} snapshots beyond the newest {retain} per broker deleted",
                work.region(),
                deleted.len()
            )));
        }
        Ok(())
    }

    async fn destroy_locked(
        &self,
        shown: &RegionWork,
        opts: ApplyOptions,
        events: &dyn Events,
    ) -> Result<()> {
        let region = shown.region();
        let work = self.plan_removal(region).await?;
        self.same_as_shown(shown, &work, "run down again")?;
        // The backend stops federating from the region first, so it does not retry dead links.
        if let Some(fed) = work.federation.as_ref().filter(|f| f.has_changes()) {
            self.remove_federation(fed, events).await?;
        }
        // Clients stop being sent to the region before its brokers go.
        if let Some(dns) = work.dns.as_ref().filter(|d| d.has_changes()) {
            super::dns::apply(&work.aws, &self.stack, &[dns], events).await?;
        }
        if !self.scope.aws() || !work.plan.has_changes() {
            // Nothing of the region runs any more (or its AWS side is someone else's turn).
            if self.scope.aws()
                && let Some(fed) = work.federation.as_ref()
            {
                self.remove_buffers(fed, events).await?;
            }
            return Ok(());
        }
        let outcome = super::apply::execute(&work, opts.parallelism, events).await;
        if outcome.ok()
            && let Some(fed) = work.federation.as_ref()
        {
            self.remove_buffers(fed, events).await?;
        }
        // Old snapshots are housekeeping: a failure to prune them is said, not fatal.
        if let Err(e) = self.prune_snapshots(&work, events).await {
            events.emit(Event::Warning(e.to_string()));
        }
        if outcome.ok() {
            events.emit(Event::Done(format!(
                "{region}: deleted {} resources",
                outcome.done
            )));
            Ok(())
        } else {
            Err(Error::Failed(format!(
                "{region}: {} deleted, {} failed, {} skipped; run down again",
                outcome.done,
                outcome.failed.len(),
                outcome.skipped.len()
            )))
        }
    }
}
