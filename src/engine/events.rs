//! What the engine reports while it works. The engine prints nothing: a command hands an
//! [`Events`] sink to it (the printer's progress reporter, or anything else), and the sink
//! decides how each event looks — a bar on a terminal, a timestamped line in CI, nothing with
//! `--quiet`.

use crate::plan::exec;

#[derive(Debug, Clone)]
pub enum Event {
    /// A region's AWS operations start: `total` steps of its graph.
    OpsStarted { region: String, total: u64 },
    /// One step of a region's graph started, finished, failed or was skipped.
    Op { region: String, event: exec::Event },
    /// A region's AWS operations are over (done or not).
    OpsFinished { region: String },
    /// A step outside the graph: federation entries applied, a Route53 batch in sync.
    Progress(String),
    /// A count towards a total (`loadtest`'s devices settled).
    Tally { what: String, done: u64, total: u64 },
    /// News for the person running gwctl: a lock being waited for, a stale lock broken.
    Notice(String),
    /// A part of the run that finished well, e.g. `us-east-1: 21 AWS operations`.
    Done(String),
    /// Something that does not stop the run but needs attention (a lock not released).
    Warning(String),
    /// One region failed; the others go on.
    RegionFailed(String),
}

/// Where events go. Implementations must be cheap and must not block: they are called from
/// the middle of concurrent work.
pub trait Events: Sync {
    fn emit(&self, event: Event);
}
