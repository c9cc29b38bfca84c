//! Route53: the hosted zone clients resolve, and gwctl's lock (a TXT record created with
//! CREATE, which Route53 rejects while the record exists).

use std::time::Duration;

use aws_sdk_route53::Client;
use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ChangeStatus, ResourceRecord, ResourceRecordSet, RrType,
};

use super::{Call, CloudError};

fn dotted(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.').to_lowercase())
}

fn build<T, E: std::fmt::Display>(r: Result<T, E>) -> Result<T, CloudError> {
    r.map_err(|e| CloudError::new("ChangeResourceRecordSets", e.to_string()))
}

/// The id of the hosted zone named `zone`.
pub async fn find_zone(c: &Client, zone: &str) -> Result<String, CloudError> {
    let r = c
        .list_hosted_zones_by_name()
        .dns_name(zone)
        .max_items(20)
        .send()
        .await
        .op("ListHostedZonesByName")?;
    // A private zone of the same name (split-horizon DNS) cannot hold latency aliases.
    r.hosted_zones()
        .iter()
        .find(|z| dotted(z.name()) == dotted(zone) && !z.config().is_some_and(|c| c.private_zone()))
        .map(|z| z.id().trim_start_matches("/hostedzone/").to_string())
        .ok_or_else(|| {
            CloudError::new(
                "ListHostedZonesByName",
                format!("no public hosted zone named {zone} in this account"),
            )
        })
}

fn txt(name: &str, value: &str, action: ChangeAction) -> Result<ChangeBatch, CloudError> {
    build(
        ChangeBatch::builder()
            .changes(txt_change(name, value, action)?)
            .build(),
    )
}

fn txt_change(name: &str, value: &str, action: ChangeAction) -> Result<Change, CloudError> {
    let record = build(
        ResourceRecord::builder()
            .value(format!("\"{value}\""))
            .build(),
    )?;
    let set = build(
        ResourceRecordSet::builder()
            .name(name)
            .r#type(RrType::Txt)
            .ttl(60)
            .resource_records(record)
            .build(),
    )?;
    build(
        Change::builder()
            .action(action)
            .resource_record_set(set)
            .build(),
    )
}

/// Replaces the TXT record `name` only if its value is still exactly `old`: a DELETE of
/// `old` and a CREATE of `new` in one batch, which Route53 applies all or nothing (a
/// compare-and-swap). `Ok(false)` if the value was not `old` any more.
pub async fn replace_txt(
    c: &Client,
    zone_id: &str,
    name: &str,
    old: &str,
    new: &str,
) -> Result<bool, CloudError> {
    let batch = build(
        ChangeBatch::builder()
            .changes(txt_change(name, old, ChangeAction::Delete)?)
            .changes(txt_change(name, new, ChangeAction::Create)?)
            .build(),
    )?;
    unless_changed(
        c.change_resource_record_sets()
            .hosted_zone_id(zone_id)
            .change_batch(batch)
            .send()
            .await
            .op("ChangeResourceRecordSets"),
    )
}

/// Sends one change of the TXT record `name` = `value`.
async fn change_txt(
    c: &Client,
    zone_id: &str,
    name: &str,
    value: &str,
    action: ChangeAction,
) -> Result<
    aws_sdk_route53::operation::change_resource_record_sets::ChangeResourceRecordSetsOutput,
    CloudError,
> {
    c.change_resource_record_sets()
        .hosted_zone_id(zone_id)
        .change_batch(txt(name, value, action)?)
        .send()
        .await
        .op("ChangeResourceRecordSets")
}

/// Creates the TXT record `name` = `value`; `Ok(false)` if it exists already (held).
pub async fn create_txt(
    c: &Client,
    zone_id: &str,
    name: &str,
    value: &str,
) -> Result<bool, CloudError> {
    let r = change_txt(c, zone_id, name, value, ChangeAction::Create).await;
    match r {
        // Not waited on until INSYNC: a lock is read through the API, which lists an accepted
        // change at once; INSYNC (up to 60 s on AWS) only says every name server answers it.
        Ok(_) => Ok(true),
        Err(e)
            if e.code.as_deref() == Some("InvalidChangeBatch")
                && e.message.contains("already exists") =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Deletes the TXT record `name` only if its value is exactly `value` (Route53 rejects a
/// DELETE with other values): `Ok(false)` if it was not ours any more.
pub async fn delete_txt(
    c: &Client,
    zone_id: &str,
    name: &str,
    value: &str,
) -> Result<bool, CloudError> {
    unless_changed(change_txt(c, zone_id, name, value, ChangeAction::Delete).await)
}

/// `Ok(false)` when Route53 refused a change because the record is not what the change
/// repeated (someone else's value now, or gone).
fn unless_changed<T>(r: Result<T, CloudError>) -> Result<bool, CloudError> {
    match r {
        Ok(_) => Ok(true),
        // moto answered InvalidInput here before the launcher's fix; accept both.
        Err(e)
            if matches!(
                e.code.as_deref(),
                Some("InvalidChangeBatch" | "InvalidInput")
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// The values of the TXT record `name`, unquoted, if it exists.
pub async fn read_txt(c: &Client, zone_id: &str, name: &str) -> Result<Option<String>, CloudError> {
    let r = c
        .list_resource_record_sets()
        .hosted_zone_id(zone_id)
        .start_record_name(name)
        .start_record_type(RrType::Txt)
        .max_items(1)
        .send()
        .await
        .op("ListResourceRecordSets")?;
    Ok(r.resource_record_sets()
        .iter()
        .find(|s| dotted(s.name()) == dotted(name) && s.r#type() == &RrType::Txt)
        .and_then(|s| s.resource_records().first())
        .map(|v| v.value().trim_matches('"').to_string()))
}

/// Polls GetChange until the change reached every Route53 server, calling `tick` before each
/// poll (progress).
async fn wait_insync_with(c: &Client, change_id: &str, tick: &dyn Fn()) -> Result<(), CloudError> {
    let start = std::time::Instant::now();
    let mut delay = Duration::from_millis(500);
    loop {
        tick();
        let r = c.get_change().id(change_id).send().await.op("GetChange")?;
        if r.change_info().map(|i| i.status()) == Some(&ChangeStatus::Insync) {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(300) {
            return Err(CloudError::new(
                "GetChange",
                format!("change {change_id} not in sync after 300 s"),
            ));
        }
        tokio::time::sleep(delay).await;
        // Every 2 s at most: the wait is on the run's critical path, and one GetChange per 2 s
        // is far below Route53's request rate.
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

// ---- Health checks and the latency records -------------------------------------------------

use crate::model::dns::{
    CheckConfig, CheckProtocol, ObservedCheck, ObservedRecord, Record, RecordChange,
};
use aws_sdk_route53::types::{
    AliasTarget, HealthCheckConfig, HealthCheckRegion, HealthCheckType, ResettableElementName,
    ResourceRecordSetRegion, Tag, TagResourceType,
};

fn check_type(p: CheckProtocol) -> HealthCheckType {
    match p {
        CheckProtocol::Tcp => HealthCheckType::Tcp,
        CheckProtocol::Http => HealthCheckType::Http,
        CheckProtocol::Https => HealthCheckType::Https,
    }
}

/// Every health check whose CallerReference starts with `prefix` (gwctl's ownership mark,
/// which nobody can change after creation).
pub async fn list_checks(c: &Client, prefix: &str) -> Result<Vec<ObservedCheck>, CloudError> {
    let mut out = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let r = c
            .list_health_checks()
            .set_marker(marker.clone())
            .send()
            .await
            .op("ListHealthChecks")?;
        for h in r.health_checks() {
            let Some(name) = h.caller_reference().strip_prefix(prefix) else {
                continue;
            };
            // `<prefix><endpoint>/<nonce>`: the endpoint (with a stack-wide prefix,
            // `<region>/<endpoint>`).
            let name = name
                .rsplit_once('/')
                .map_or(name, |(head, _)| head)
                .to_string();
            let Some(cfg) = h.health_check_config() else {
                continue;
            };
            let protocol = match cfg.r#type() {
                HealthCheckType::Tcp => CheckProtocol::Tcp,
                HealthCheckType::Http => CheckProtocol::Http,
                HealthCheckType::Https => CheckProtocol::Https,
                _ => continue,
            };
            out.push(ObservedCheck {
                id: h.id().to_string(),
                name,
                config: CheckConfig {
                    protocol,
                    ip: cfg.ip_address().unwrap_or_default().to_string(),
                    port: cfg.port().and_then(|p| u16::try_from(p).ok()).unwrap_or(0),
                    path: cfg.resource_path().map(str::to_string),
                    interval_s: cfg.request_interval().map_or(30, |v| v as u32),
                    failure_threshold: cfg.failure_threshold().map_or(3, |v| v as u32),
                    regions: {
                        let mut r: Vec<String> = cfg
                            .regions()
                            .iter()
                            .map(|r| r.as_str().to_string())
                            .collect();
                        r.sort();
                        // AWS reports every checker region for a check created without any.
                        let mut all = crate::spec::model::CHECKER_REGIONS.map(String::from);
                        all.sort();
                        if r == all { Vec::new() } else { r }
                    },
                    inverted: cfg.inverted().unwrap_or(false),
                },
            });
        }
        // Guard against a marker that does not advance (an emulator ignoring MaxItems).
        let next = r.next_marker().map(str::to_string);
        if !r.is_truncated() || next.is_none() || next == marker {
            break;
        }
        marker = next;
    }
    out.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    Ok(out)
}

/// Creates a health check and tags it; `caller_reference` makes a retried request return the
/// same check instead of a second one.
pub async fn create_check(
    c: &Client,
    caller_reference: &str,
    cfg: &CheckConfig,
    tags: &[(String, String)],
) -> Result<String, CloudError> {
    let config = HealthCheckConfig::builder()
        .r#type(check_type(cfg.protocol))
        .ip_address(&cfg.ip)
        .port(i32::from(cfg.port))
        .set_resource_path(cfg.path.clone())
        .request_interval(cfg.interval_s as i32)
        .failure_threshold(cfg.failure_threshold as i32)
        .set_regions(checker_regions(cfg))
        .inverted(cfg.inverted)
        .build()
        .map_err(|e| CloudError::new("CreateHealthCheck", e.to_string()))?;
    let r = c
        .create_health_check()
        .caller_reference(caller_reference)
        .health_check_config(config)
        .send()
        .await
        .op("CreateHealthCheck")?;
    let id = r
        .health_check()
        .map(|h| h.id().to_string())
        .ok_or_else(|| CloudError::new("CreateHealthCheck", "no health check in the answer"))?;
    let tags: Vec<Tag> = tags
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    c.change_tags_for_resource()
        .resource_type(TagResourceType::Healthcheck)
        .resource_id(&id)
        .set_add_tags(Some(tags))
        .send()
        .await
        .op("ChangeTagsForResource")?;
    Ok(id)
}

/// Brings a health check to `cfg` (everything but its type and interval can change in place).
pub async fn update_check(c: &Client, id: &str, cfg: &CheckConfig) -> Result<(), CloudError> {
    c.update_health_check()
        .health_check_id(id)
        .ip_address(&cfg.ip)
        .port(i32::from(cfg.port))
        .set_resource_path(cfg.path.clone())
        .failure_threshold(cfg.failure_threshold as i32)
        .set_regions(checker_regions(cfg))
        .set_reset_elements(
            cfg.regions
                .is_empty()
                .then(|| vec![ResettableElementName::Regions]),
        )
        .inverted(cfg.inverted)
        .send()
        .await
        .op("UpdateHealthCheck")?;
    Ok(())
}

fn checker_regions(cfg: &CheckConfig) -> Option<Vec<HealthCheckRegion>> {
    (!cfg.regions.is_empty()).then(|| {
        cfg.regions
            .iter()
            .map(|r| HealthCheckRegion::from(r.as_str()))
            .collect()
    })
}

/// Sets only the Inverted flag (drills).
pub async fn set_inverted(c: &Client, id: &str, inverted: bool) -> Result<(), CloudError> {
    c.update_health_check()
        .health_check_id(id)
        .inverted(inverted)
        .send()
        .await
        .op("UpdateHealthCheck")?;
    Ok(())
}

pub async fn delete_check(c: &Client, id: &str) -> Result<(), CloudError> {
    match c
        .delete_health_check()
        .health_check_id(id)
        .send()
        .await
        .op("DeleteHealthCheck")
    {
        Err(e) if e.code.as_deref() == Some("NoSuchHealthCheck") => Ok(()),
        other => other.map(drop),
    }
}

/// What Route53's checkers last reported: (healthy observations, all observations).
pub async fn check_status(c: &Client, id: &str) -> Result<(usize, usize), CloudError> {
    let r = c
        .get_health_check_status()
        .health_check_id(id)
        .send()
        .await
        .op("GetHealthCheckStatus")?;
    let all = r.health_check_observations();
    let healthy = all
        .iter()
        .filter(|o| {
            o.status_report()
                .and_then(|s| s.status())
                .is_some_and(|s| s.starts_with("Success"))
        })
        .count();
    Ok((healthy, all.len()))
}

/// Every record set named exactly `name` (any type, any set identifier).
pub async fn list_named(
    c: &Client,
    zone_id: &str,
    name: &str,
) -> Result<Vec<ObservedRecord>, CloudError> {
    let want = dotted(name);
    walk(c, zone_id, &want, |n| dotted(n) == want).await
}

/// Every record set at `name` and below it (`*.name`): Route53 lists a zone in the order of
/// reversed labels, so they are one contiguous walk from `name` on, which ends at the first
/// name outside.
pub async fn list_under(
    c: &Client,
    zone_id: &str,
    name: &str,
) -> Result<Vec<ObservedRecord>, CloudError> {
    let top = dotted(name);
    let below = format!(".{top}");
    walk(c, zone_id, &top, |n| {
        let n = dotted(n);
        n == top || n.ends_with(&below)
    })
    .await
}

/// The record sets from `from` on, in Route53's order, while their names are `inside`.
async fn walk(
    c: &Client,
    zone_id: &str,
    from: &str,
    inside: impl Fn(&str) -> bool,
) -> Result<Vec<ObservedRecord>, CloudError> {
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut start: Option<(String, Option<RrType>, Option<String>)> =
        Some((from.to_string(), None, None));
    while let Some((start_name, start_type, start_id)) = start.take() {
        let r = c
            .list_resource_record_sets()
            .hosted_zone_id(zone_id)
            .start_record_name(&start_name)
            .set_start_record_type(start_type)
            .set_start_record_identifier(start_id)
            .send()
            .await
            .op("ListResourceRecordSets")?;
        let mut past = false;
        let before = out.len();
        for s in r.resource_record_sets() {
            if !inside(s.name()) {
                past = true;
                break;
            }
            let key = (
                dotted(s.name()),
                s.r#type().as_str().to_string(),
                s.set_identifier().map(str::to_string),
            );
            if seen.insert(key) {
                out.push(observed_record(s));
            }
        }
        // Past the names, or no further page, ends the walk; so does a page with nothing new
        // (an emulator without NextRecordIdentifier would loop).
        if past || !r.is_truncated() || out.len() == before {
            break;
        }
        match r.next_record_name() {
            Some(n) if inside(n) => {
                start = Some((
                    n.to_string(),
                    r.next_record_type().cloned(),
                    r.next_record_identifier().map(str::to_string),
                ));
            }
            _ => break,
        }
    }
    Ok(out)
}

fn observed_record(s: &ResourceRecordSet) -> ObservedRecord {
    let alias = s.alias_target();
    ObservedRecord {
        record: Record {
            name: s.name().trim_end_matches('.').to_lowercase(),
            rtype: s.r#type().as_str().to_string(),
            set_identifier: s.set_identifier().map(str::to_string),
            latency_region: s.region().map(|r| r.as_str().to_string()),
            multivalue: s.multi_value_answer().unwrap_or(false),
            health_check: None,
            // Alias records have no TTL (an emulator reports 0).
            ttl: if alias.is_some() { None } else { s.ttl() },
            values: s
                .resource_records()
                .iter()
                .map(|v| v.value().to_string())
                .collect(),
            alias: alias.map(|a| a.dns_name().trim_end_matches('.').to_lowercase()),
            evaluate_target_health: alias.is_some_and(|a| a.evaluate_target_health()),
        },
        health_check_id: s.health_check_id().map(str::to_string),
        alias_zone: alias.map(|a| a.hosted_zone_id().to_string()),
    }
}

fn record_set(
    r: &Record,
    health_check_id: Option<&str>,
    zone_id: &str,
) -> Result<ResourceRecordSet, CloudError> {
    let mut b = ResourceRecordSet::builder()
        .name(&r.name)
        .r#type(RrType::from(r.rtype.as_str()))
        .set_set_identifier(r.set_identifier.clone())
        .set_health_check_id(health_check_id.map(str::to_string));
    if let Some(region) = &r.latency_region {
        b = b.region(ResourceRecordSetRegion::from(region.as_str()));
    }
    if r.multivalue {
        b = b.multi_value_answer(true);
    }
    match &r.alias {
        Some(target) => {
            b = b.alias_target(build(
                AliasTarget::builder()
                    .hosted_zone_id(zone_id)
                    .dns_name(target)
                    .evaluate_target_health(r.evaluate_target_health)
                    .build(),
            )?);
        }
        None => {
            b = b.set_ttl(r.ttl);
            for v in &r.values {
                b = b.resource_records(build(ResourceRecord::builder().value(v).build())?);
            }
        }
    }
    build(b.build())
}

/// Sends the zone's changes as one batch (Route53 applies it all or nothing) and waits until
/// it is in sync. Each change carries the exact current values of what it deletes, so a
/// record changed behind gwctl's back fails the whole batch instead of being overwritten.
/// `ids` maps a record's health-check name to the check's id.
pub async fn apply_batch(
    c: &Client,
    zone_id: &str,
    changes: &[RecordChange],
    ids: &dyn Fn(&Record) -> Option<String>,
    on_wait: &dyn Fn(Duration),
) -> Result<usize, CloudError> {
    let mut deletes = Vec::new();
    let mut creates = Vec::new();
    for ch in changes {
        if let Some(before) = ch.deletes() {
            let set = record_set(
                &before.record,
                before.health_check_id.as_deref(),
                before.alias_zone.as_deref().unwrap_or(zone_id),
            )?;
            deletes.push((before.record.alias.is_some(), set));
        }
        if let Some(after) = ch.creates() {
            let set = record_set(after, ids(after).as_deref(), zone_id)?;
            creates.push((after.alias.is_some(), set));
        }
    }
    // Aliases go before their targets are deleted and after their targets are created.
    deletes.sort_by_key(|(alias, _)| !*alias);
    creates.sort_by_key(|(alias, _)| *alias);
    let mut batch = ChangeBatch::builder().comment("gwctl");
    let n = deletes.len() + creates.len();
    let deleted: Vec<_> = deletes.iter().map(|(_, s)| observed_record(s)).collect();
    let created: Vec<_> = creates.iter().map(|(_, s)| observed_record(s)).collect();
    for (action, (_, set)) in deletes
        .into_iter()
        .map(|d| (ChangeAction::Delete, d))
        .chain(creates.into_iter().map(|c| (ChangeAction::Create, c)))
    {
        batch = batch.changes(build(
            Change::builder()
                .action(action)
                .resource_record_set(set)
                .build(),
        )?);
    }
    if n == 0 {
        return Ok(0);
    }
    let batch = build(batch.build())?;
    // PriorRequestNotComplete: the zone's previous change is still being applied.
    let out = super::retry(
        Duration::from_secs(120),
        |e| e.code.as_deref() == Some("PriorRequestNotComplete"),
        || async {
            c.change_resource_record_sets()
                .hosted_zone_id(zone_id)
                .change_batch(batch.clone())
                .send()
                .await
                .op("ChangeResourceRecordSets")
        },
    )
    .await;
    let out = match out {
        Err(e) if e.code.as_deref() == Some("InvalidChangeBatch") => {
            // The SDK sends a batch again when its answer was lost; if the first one was
            // applied, the repeat is refused (a create finds its record, a delete misses its
            // own). The zone being exactly what the batch makes means that is what happened.
            // (Its change id went with the answer: nothing to wait on, and AWS lists an
            // accepted change's records at once; INSYNC only says every name server has it.)
            return match zone_is_after(c, zone_id, &deleted, &created).await {
                Ok(true) => Ok(n),
                _ => Err(e),
            };
        }
        other => other?,
    };
    if let Some(info) = out.change_info() {
        let start = std::time::Instant::now();
        wait_insync_with(c, info.id(), &|| on_wait(start.elapsed())).await?;
    }
    Ok(n)
}

/// Whether the zone holds every record set in `created`, exactly, and none of `deleted`
/// that is not also created (an update deletes and creates the same set).
async fn zone_is_after(
    c: &Client,
    zone_id: &str,
    deleted: &[ObservedRecord],
    created: &[ObservedRecord],
) -> Result<bool, CloudError> {
    let key = |r: &ObservedRecord| {
        (
            r.record.name.clone(),
            r.record.rtype.clone(),
            r.record.set_identifier.clone(),
        )
    };
    let names: std::collections::BTreeSet<_> = deleted
        .iter()
        .chain(created)
        .map(|r| r.record.name.clone())
        .collect();
    let mut zone = Vec::new();
    for name in names {
        zone.extend(list_named(c, zone_id, &name).await?);
    }
    let present = |r: &ObservedRecord| zone.iter().any(|z| key(z) == key(r));
    Ok(created.iter().all(|r| zone.contains(r))
        && deleted
            .iter()
            .filter(|d| !created.iter().any(|r| key(r) == key(d)))
            .all(|d| !present(d)))
}
