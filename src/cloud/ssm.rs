//! SSM Parameter Store: the region's secrets as SecureString parameters, which brokers read at
//! boot. Values are compared by hash in memory and never printed.

use aws_sdk_ssm::Client;
use aws_sdk_ssm::types::{ParameterStringFilter, ParameterType, Tag};

/// The description of every SSM parameter gwctl writes.
pub const PARAMETER_DESCRIPTION: &str = "gwctl: read by the region's brokers at boot";

use super::{Call, CloudError, Owner};
use crate::model::resources::{Desired, Key, Kind, Observed, Payload, Spec, TAG_REGION, TAG_STACK};
use crate::model::sha256_hex;

pub async fn discover(c: &Client, o: &Owner, prefix: &str) -> Result<Vec<Observed>, CloudError> {
    let tag = |k: &str, v: &str| {
        ParameterStringFilter::builder()
            .key(format!("tag:{k}"))
            .values(v)
            .build()
    };
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let r = c
            .describe_parameters()
            .parameter_filters(
                tag(TAG_STACK, &o.stack)
                    .map_err(|e| CloudError::new("DescribeParameters", e.to_string()))?,
            )
            .parameter_filters(
                tag(TAG_REGION, &o.region)
                    .map_err(|e| CloudError::new("DescribeParameters", e.to_string()))?,
            )
            .set_next_token(token.clone())
            .send()
            .await
            .op("DescribeParameters")?;
        names.extend(
            r.parameters()
                .iter()
                .filter_map(|p| p.name().map(str::to_string)),
        );
        match r.next_token() {
            Some(t) if Some(t) != token.as_deref() => token = Some(t.to_string()),
            _ => break,
        }
    }
    names.retain(|n| n.starts_with(&format!("{prefix}/")));
    let mut out = Vec::new();
    for chunk in names.chunks(10) {
        let r = c
            .get_parameters()
            .set_names(Some(chunk.to_vec()))
            .with_decryption(true)
            .send()
            .await
            .op("GetParameters")?;
        for p in r.parameters() {
            let (Some(name), Some(value)) = (p.name(), p.value()) else {
                continue;
            };
            let short = name.trim_start_matches(&format!("{prefix}/"));
            if let Some(cert) = short.strip_prefix(CERTIFICATES) {
                out.push(observed_certificate(cert, name, value));
                continue;
            }
            out.push(Observed {
                key: Key::new(Kind::SsmParameter, short),
                id: name.to_string(),
                spec: Spec::SsmParameter {
                    name: name.to_string(),
                    value_sha256: sha256_hex(value),
                },
                parts: Default::default(),
                state: None,
            });
        }
    }
    Ok(out)
}

pub async fn put(c: &Client, d: &Desired, overwrite: bool) -> Result<Observed, CloudError> {
    let (Spec::SsmParameter { name, .. }, Payload::Secret(value)) = (&d.spec, &d.payload) else {
        return Err(CloudError::new(
            "apply",
            format!("{} is not an SSM parameter with a value", d.key),
        ));
    };
    let mut req = c
        .put_parameter()
        .name(name)
        .value(value.expose())
        .r#type(ParameterType::SecureString)
        .description(PARAMETER_DESCRIPTION);
    if overwrite {
        // AWS refuses tags together with Overwrite; the tags were written at creation.
        req = req.overwrite(true);
    } else {
        for (k, v) in &d.tags {
            let tag = Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| CloudError::new("PutParameter", e.to_string()))?;
            req = req.tags(tag);
        }
    }
    req.send().await.op("PutParameter")?;
    Ok(Observed {
        key: d.key.clone(),
        id: name.clone(),
        spec: d.spec.clone(),
        parts: Default::default(),
        state: None,
    })
}

/// Where broker certificates live under a region's prefix: `tls/broker-1`.
pub const CERTIFICATES: &str = "tls/";

/// A certificate parameter as discovered: what the certificate covers and who signed it,
/// read from its public part. A value that does not parse is reported with no names, so
/// the plan re-issues it.
fn observed_certificate(short: &str, name: &str, value: &str) -> Observed {
    let info = crate::pki::inspect(value).ok();
    let now = std::time::SystemTime::now();
    let mut parts = std::collections::BTreeMap::new();
    if let Some(i) = &info {
        parts.insert("not_after".to_string(), crate::pki::date(i.not_after));
        parts.insert("certificate".to_string(), crate::pki::public_part(value));
    }
    let renew = info
        .as_ref()
        .is_some_and(|i| i.expires_within(now, crate::pki::WARN_BEFORE));
    Observed {
        key: Key::new(Kind::Certificate, short),
        id: name.to_string(),
        spec: Spec::Certificate {
            name: name.to_string(),
            names: info.as_ref().map(|i| i.names.clone()).unwrap_or_default(),
            issuer_key_id: info.and_then(|i| i.authority_key_id).unwrap_or_default(),
            renew,
        },
        parts,
        state: None,
    }
}

/// Issues a certificate with the CA of the payload and stores it with its key.
pub async fn put_certificate(
    c: &Client,
    d: &Desired,
    overwrite: bool,
) -> Result<Observed, CloudError> {
    let (Spec::Certificate { name, names, .. }, Payload::Issue { ca_cert, ca_key }) =
        (&d.spec, &d.payload)
    else {
        return Err(CloudError::new(
            "apply",
            format!("{} is not a certificate with its CA", d.key),
        ));
    };
    let now = std::time::SystemTime::now();
    let issued = crate::pki::Authority::load(ca_cert, ca_key, now)
        .and_then(|ca| ca.issue_server(names, now))
        .map_err(|e| CloudError::new("issue certificate", e.to_string()))?;
    let value =
        crate::spec::secret::Secret::new(format!("{}{}", issued.cert_pem, issued.key_pem.expose()));
    let stored = Desired {
        key: d.key.clone(),
        spec: Spec::SsmParameter {
            name: name.clone(),
            value_sha256: String::new(),
        },
        tags: d.tags.clone(),
        payload: Payload::Secret(value.clone()),
        after: Vec::new(),
    };
    put(c, &stored, overwrite).await?;
    Ok(observed_certificate(
        d.key.name.as_str(),
        name,
        value.expose(),
    ))
}

pub async fn delete(c: &Client, o: &Observed) -> Result<(), CloudError> {
    match c
        .delete_parameter()
        .name(&o.id)
        .send()
        .await
        .op("DeleteParameter")
    {
        Err(e) if e.code.as_deref() == Some("ParameterNotFound") => Ok(()),
        other => other.map(drop),
    }
}
