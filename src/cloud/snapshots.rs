//! Snapshots of brokers' data volumes: taken before gwctl deletes a broker, kept per broker
//! slot up to a retention count. They are not stack resources (no `gwctl:id`): discovery never
//! sees them, so `down` keeps them; only [`prune`] deletes them, and only completed ones.

use std::collections::BTreeMap;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{ResourceType, SnapshotState, Tag, TagSpecification};

use super::{Call, CloudError, Owner, filter};
use crate::model::resources::{Observed, TAG_REGION, TAG_STACK, TAG_TOOL};

/// The broker slot (`instance/broker-1`) a snapshot was taken of.
pub const TAG_SNAPSHOT_OF: &str = "gwctl:snapshot-of";
/// The instance whose volume it was.
const TAG_INSTANCE: &str = "gwctl:instance";

/// Where discovery records an instance's data volume (`Observed::parts`).
pub const DATA_VOLUME_PART: &str = "data_volume";

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Snapshot {
    pub id: String,
    /// The broker slot, e.g. `instance/broker-1`.
    pub of: String,
    pub instance: String,
    pub volume: String,
    pub state: String,
    /// When AWS started it, seconds since the epoch.
    pub started: i64,
}

/// Snapshots the data volume of `instance` (if it has one) and returns the snapshot's id.
/// The snapshot holds what the volume held at this call: AWS copies the blocks
/// asynchronously (pending for minutes to hours), and the volume may be deleted meanwhile.
pub async fn take(
    c: &Client,
    o: &Owner,
    instance: &Observed,
) -> Result<Option<String>, CloudError> {
    let Some(volume) = instance.parts.get(DATA_VOLUME_PART) else {
        return Ok(None);
    };
    // A run interrupted between this snapshot and the instance's termination takes none again.
    if let Some(done) = list(c, o)
        .await?
        .into_iter()
        .find(|s| s.instance == instance.id)
    {
        return Ok(Some(done.id));
    }
    let of = instance.key.to_string();
    let tags = [
        (TAG_TOOL, "gwctl"),
        (TAG_STACK, o.stack.as_str()),
        (TAG_REGION, o.region.as_str()),
        (TAG_SNAPSHOT_OF, of.as_str()),
        (TAG_INSTANCE, instance.id.as_str()),
        (
            "Name",
            &format!("gwctl-{}-{}-{}", o.stack, o.region, instance.key.name),
        ),
    ];
    let mut spec = TagSpecification::builder().resource_type(ResourceType::Snapshot);
    for (k, v) in tags {
        spec = spec.tags(Tag::builder().key(k).value(v).build());
    }
    let spec = spec.build();
    // CreateSnapshot takes no client token: a lost answer is looked for, not repeated.
    let id = super::retries::once_or_found(
        || async {
            let r = c
                .create_snapshot()
                .volume_id(volume)
                .description(format!(
                    "gwctl: data of {} ({}) before its deletion",
                    instance.key, instance.id
                ))
                .tag_specifications(spec.clone())
                .customize()
                .config_override(super::retries::no_blind_repeat())
                .send()
                .await
                .op("CreateSnapshot")?;
            r.snapshot_id()
                .map(str::to_string)
                .ok_or_else(|| CloudError::new("CreateSnapshot", "the answer has no SnapshotId"))
        },
        || async {
            Ok(list(c, o)
                .await?
                .into_iter()
                .find(|s| s.instance == instance.id)
                .map(|s| s.id))
        },
    )
    .await?;
    Ok(Some(id))
}

/// Every snapshot gwctl took in this stack and region.
pub async fn list(c: &Client, o: &Owner) -> Result<Vec<Snapshot>, CloudError> {
    let filters = [
        filter(&format!("tag:{TAG_STACK}"), &o.stack),
        filter(&format!("tag:{TAG_REGION}"), &o.region),
        filter("tag-key", TAG_SNAPSHOT_OF),
    ];
    let pages: Vec<_> = c
        .describe_snapshots()
        .owner_ids("self")
        .set_filters(Some(filters.to_vec()))
        .into_paginator()
        .send()
        .collect::<Vec<_>>()
        .await;
    let mut out = Vec::new();
    for page in pages {
        for s in page.op("DescribeSnapshots")?.snapshots() {
            let tags: BTreeMap<&str, &str> = s
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?, t.value().unwrap_or_default())))
                .collect();
            let (Some(id), Some(of)) = (s.snapshot_id(), tags.get(TAG_SNAPSHOT_OF)) else {
                continue;
            };
            out.push(Snapshot {
                id: id.to_string(),
                of: of.to_string(),
                instance: tags
                    .get(TAG_INSTANCE)
                    .copied()
                    .unwrap_or_default()
                    .to_string(),
                volume: s.volume_id().unwrap_or_default().to_string(),
                state: s
                    .state()
                    .map(|st| st.as_str().to_string())
                    .unwrap_or_default(),
                started: s.start_time().map(|t| t.secs()).unwrap_or_default(),
            });
        }
    }
    out.sort_by(|a, b| (&a.of, b.started).cmp(&(&b.of, a.started)));
    Ok(out)
}

/// The snapshots beyond the newest `retain` of each broker slot, among completed ones (a
/// pending snapshot is never the one deleted: it may be the only copy being made).
pub fn beyond_retention(snapshots: &[Snapshot], retain: usize) -> Vec<&Snapshot> {
    let mut by_slot: BTreeMap<&str, Vec<&Snapshot>> = BTreeMap::new();
    for s in snapshots {
        by_slot.entry(&s.of).or_default().push(s);
    }
    let mut out = Vec::new();
    for mut list in by_slot.into_values() {
        list.sort_by_key(|s| std::cmp::Reverse(s.started));
        out.extend(
            list.into_iter()
                .skip(retain)
                .filter(|s| s.state == SnapshotState::Completed.as_str()),
        );
    }
    out
}

/// Deletes the snapshots beyond the retention; returns their ids.
pub async fn prune(c: &Client, o: &Owner, retain: usize) -> Result<Vec<String>, CloudError> {
    let all = list(c, o).await?;
    let mut deleted = Vec::new();
    for s in beyond_retention(&all, retain) {
        match c
            .delete_snapshot()
            .snapshot_id(&s.id)
            .send()
            .await
            .op("DeleteSnapshot")
        {
            Ok(_) => deleted.push(s.id.clone()),
            Err(e) if e.code.as_deref() == Some("InvalidSnapshot.NotFound") => {}
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(id: &str, of: &str, started: i64, state: &str) -> Snapshot {
        Snapshot {
            id: id.into(),
            of: of.into(),
            instance: String::new(),
            volume: String::new(),
            state: state.into(),
            started,
        }
    }

    #[test]
    fn keeps_the_newest_per_slot_and_never_a_pending_one() {
        let all = vec![
            snap("a1", "instance/broker-1", 100, "completed"),
            snap("a2", "instance/broker-1", 200, "completed"),
            snap("a3", "instance/broker-1", 300, "completed"),
            snap("b1", "instance/broker-2", 100, "pending"),
            snap("b2", "instance/broker-2", 200, "completed"),
            snap("b3", "instance/broker-2", 300, "completed"),
        ];
        let gone: Vec<&str> = beyond_retention(&all, 2)
            .iter()
            .map(|s| s.id.as_str())
            .collect();
        assert_eq!(gone, ["a1"]);
        let gone: Vec<&str> = beyond_retention(&all, 1)
            .iter()
            .map(|s| s.id.as_str())
            .collect();
        assert_eq!(gone, ["a2", "a1", "b2"]);
    }
}
