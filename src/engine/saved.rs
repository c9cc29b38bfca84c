//! Saved plans (`plan --out`, applied by `up --plan`): a plan is applied only to the state it
//! was made from. Each region of the file carries the [`Fingerprints`] of what the plan knew —
//! the region files, the AWS resources, the backend's federation entries and the Route53 part;
//! what is known only after apply (a new region's broker addresses) enters as "known after
//! apply", so it never makes a plan stale by itself.

use serde::Deserialize;

use super::planning::{Fingerprints, StackPlan};
use crate::error::{Error, Result};

/// The part of a saved plan file the engine reads back (the rest is for people and tools).
#[derive(Debug, Deserialize)]
pub struct SavedPlan {
    regions: Vec<Fingerprints>,
}

impl SavedPlan {
    /// Reads a plan saved by `plan --out`; anything else is a usage error.
    pub fn parse(text: &str, origin: &str) -> Result<SavedPlan> {
        serde_json::from_str(text)
            .map_err(|e| Error::Usage(format!("{origin}: not a gwctl plan: {e}")))
    }

    /// Refuses the saved plan when anything it knew about a planned region has changed.
    pub fn check(&self, now: &StackPlan) -> Result<()> {
        for work in &now.regions {
            let region = work.region();
            let saved = self
                .regions
                .iter()
                .find(|r| r.region == region)
                .ok_or_else(|| Error::Failed(format!("the saved plan has no region {region}")))?;
            if let Some(what) = stale(saved, &work.fingerprints()) {
                return Err(Error::Failed(format!(
                    "stale plan: {what} of {region} changed since the plan was made; plan again"
                )));
            }
        }
        Ok(())
    }
}

/// What changed between two fingerprints of one region, in words; `None` when nothing did.
pub fn stale(then: &Fingerprints, now: &Fingerprints) -> Option<&'static str> {
    if then.desired_sha256 != now.desired_sha256 {
        Some("the region files")
    } else if then.actual_sha256 != now.actual_sha256 {
        Some("the AWS resources")
    } else if then.federation_sha256.is_some() != now.federation_sha256.is_some()
        || then.route53_sha256.is_some() != now.route53_sha256.is_some()
    {
        Some("the scope (plan and apply used different --scope)")
    } else if then.federation_sha256 != now.federation_sha256 {
        Some("the backend's federation entries")
    } else if then.route53_sha256 != now.route53_sha256 {
        Some("the Route53 health checks and records")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prints() -> Fingerprints {
        Fingerprints {
            region: "us-east-1".into(),
            desired_sha256: "d".into(),
            actual_sha256: "a".into(),
            federation_sha256: Some("f".into()),
            route53_sha256: Some("r".into()),
        }
    }

    #[test]
    fn each_part_of_a_region_makes_a_plan_stale() {
        let then = prints();
        assert_eq!(stale(&then, &then), None);
        let mut now = prints();
        now.federation_sha256 = Some("other".into());
        assert_eq!(stale(&then, &now), Some("the backend's federation entries"));
        let mut now = prints();
        now.route53_sha256 = Some("other".into());
        assert_eq!(
            stale(&then, &now),
            Some("the Route53 health checks and records")
        );
        let mut now = prints();
        now.federation_sha256 = None;
        assert!(stale(&then, &now).is_some_and(|s| s.contains("--scope")));
    }
}
