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
        .max_items(1)
        .send()
        .await
        .op("ListHostedZonesByName")?;
    r.hosted_zones()
        .iter()
        .find(|z| dotted(z.name()) == dotted(zone))
        .map(|z| z.id().trim_start_matches("/hostedzone/").to_string())
        .ok_or_else(|| {
            CloudError::new(
                "ListHostedZonesByName",
                format!("no hosted zone named {zone} in this account"),
            )
        })
}

fn txt(name: &str, value: &str, action: ChangeAction) -> Result<ChangeBatch, CloudError> {
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
    let change = build(
        Change::builder()
            .action(action)
            .resource_record_set(set)
            .build(),
    )?;
    build(ChangeBatch::builder().changes(change).build())
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
        Ok(out) => {
            if let Some(info) = out.change_info() {
                wait_insync(c, info.id()).await?;
            }
            Ok(true)
        }
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
    let r = change_txt(c, zone_id, name, value, ChangeAction::Delete).await;
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

/// Polls GetChange until the change reached every Route53 server.
async fn wait_insync(c: &Client, change_id: &str) -> Result<(), CloudError> {
    let start = std::time::Instant::now();
    let mut delay = Duration::from_millis(500);
    loop {
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
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
