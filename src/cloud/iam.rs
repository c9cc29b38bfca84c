//! IAM: the brokers' role (read their SSM parameters, describe instances for peer discovery)
//! and its instance profile. IAM is global; names carry the stack and region.

use aws_sdk_iam::Client;
use aws_sdk_iam::types::Tag;

use super::{Call, CloudError, Ids, Owner, resolve};
use crate::model::resources::{Desired, Key, Kind, Observed, Ref, Spec, TAG_REGION, TAG_STACK};

pub const POLICY_NAME: &str = "gwctl-brokers";
/// The path of gwctl's IAM role and instance profile.
pub const PATH: &str = "/gwctl/";
/// The role's description.
pub const ROLE_DESCRIPTION: &str = "gwctl brokers: read their SSM parameters, find their peers";
/// The role's trust policy: EC2 instances assume it.
pub const TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

fn tags(d: &Desired) -> Vec<Tag> {
    d.tags
        .iter()
        .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
        .collect()
}

fn owned(o: &Owner, tags: &[Tag]) -> bool {
    let get = |k: &str| tags.iter().find(|t| t.key() == k).map(|t| t.value());
    get(TAG_STACK) == Some(o.stack.as_str()) && get(TAG_REGION) == Some(o.region.as_str())
}

fn not_found(e: &CloudError) -> bool {
    e.code.as_deref() == Some("NoSuchEntity")
}

/// Normalises a policy document for comparison (IAM returns it URL-encoded, reformatted).
pub fn normalise_policy(doc: &str) -> String {
    let decoded = percent_encoding::percent_decode_str(doc).decode_utf8_lossy();
    serde_json::from_str::<serde_json::Value>(&decoded)
        .map(|v| v.to_string())
        .unwrap_or_else(|_| decoded.into_owned())
}

/// The region's role and instance profile. The profile is read first: when it is ours (by
/// its tags) and holds the role of that name, the role is ours too and needs no GetRole — two
/// calls a region instead of three on every plan.
pub async fn discover(c: &Client, o: &Owner, name: &str) -> Result<Vec<Observed>, CloudError> {
    let mut out = Vec::new();
    let mut role_arn = None;
    match c
        .get_instance_profile()
        .instance_profile_name(name)
        .send()
        .await
        .op("GetInstanceProfile")
    {
        Ok(r) => {
            if let Some(p) = r.instance_profile()
                && owned(o, p.tags())
            {
                let role = p.roles().first();
                role_arn = role
                    .filter(|r| r.role_name() == name)
                    .map(|r| r.arn().to_string());
                out.push(Observed {
                    key: Key::new(Kind::InstanceProfile, "brokers"),
                    id: p.arn().to_string(),
                    spec: Spec::InstanceProfile {
                        name: name.to_string(),
                        role: Ref::Id(role.map(|r| r.arn().to_string()).unwrap_or_default()),
                    },
                    parts: Default::default(),
                    state: None,
                });
            }
        }
        Err(e) if not_found(&e) => {}
        Err(e) => return Err(e),
    }
    if role_arn.is_none() {
        role_arn = match c.get_role().role_name(name).send().await.op("GetRole") {
            Ok(r) => r
                .role()
                .filter(|role| owned(o, role.tags()))
                .map(|role| role.arn().to_string()),
            Err(e) if not_found(&e) => None,
            Err(e) => return Err(e),
        };
    }
    if let Some(arn) = role_arn {
        let policy = match c
            .get_role_policy()
            .role_name(name)
            .policy_name(POLICY_NAME)
            .send()
            .await
            .op("GetRolePolicy")
        {
            Ok(p) => normalise_policy(p.policy_document()),
            Err(e) if not_found(&e) => String::new(),
            Err(e) => return Err(e),
        };
        out.insert(
            0,
            Observed {
                key: Key::new(Kind::IamRole, "brokers"),
                id: arn,
                spec: Spec::IamRole {
                    name: name.to_string(),
                    policy,
                },
                parts: Default::default(),
                state: None,
            },
        );
    }
    Ok(out)
}

/// IAM resources are known by ARN (instances refer to their profile by ARN); calls take names.
fn name_from_arn(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

pub async fn create(c: &Client, d: &Desired, ids: &Ids) -> Result<Observed, CloudError> {
    let arn = match &d.spec {
        Spec::IamRole { name, policy } => {
            let r = c
                .create_role()
                .role_name(name)
                .path(PATH)
                .assume_role_policy_document(TRUST)
                .description(ROLE_DESCRIPTION)
                .set_tags(Some(tags(d)))
                .send()
                .await
                .op("CreateRole")?;
            put_policy(c, name, policy).await?;
            r.role().map(|r| r.arn().to_string())
        }
        Spec::InstanceProfile { name, role } => {
            let r = c
                .create_instance_profile()
                .instance_profile_name(name)
                .path(PATH)
                .set_tags(Some(tags(d)))
                .send()
                .await
                .op("CreateInstanceProfile")?;
            add_role(c, name, name_from_arn(&resolve(ids, role)?)).await?;
            r.instance_profile().map(|p| p.arn().to_string())
        }
        _ => {
            return Err(CloudError::new(
                "apply",
                format!("{} is not an IAM resource", d.key),
            ));
        }
    };
    let id =
        arn.ok_or_else(|| CloudError::new("apply", format!("{}: the answer has no ARN", d.key)))?;
    Ok(Observed {
        key: d.key.clone(),
        id,
        spec: d.spec.clone(),
        parts: Default::default(),
        state: None,
    })
}

async fn put_policy(c: &Client, role: &str, policy: &str) -> Result<(), CloudError> {
    c.put_role_policy()
        .role_name(role)
        .policy_name(POLICY_NAME)
        .policy_document(policy)
        .send()
        .await
        .op("PutRolePolicy")
        .map(drop)
}

/// Puts `role` into the instance profile `profile`. A repeat of a call whose answer was
/// lost is refused with LimitExceeded (a profile holds one role); the caller reads the
/// profile back (`Aws::adopt`, `Aws::update`).
async fn add_role(c: &Client, profile: &str, role: &str) -> Result<(), CloudError> {
    c.add_role_to_instance_profile()
        .instance_profile_name(profile)
        .role_name(role)
        .send()
        .await
        .op("AddRoleToInstanceProfile")
        .map(drop)
}

pub async fn update(
    c: &Client,
    d: &Desired,
    before: &Observed,
    ids: &Ids,
) -> Result<Observed, CloudError> {
    match (&d.spec, &before.spec) {
        (Spec::IamRole { name, policy }, _) => put_policy(c, name, policy).await?,
        (Spec::InstanceProfile { name, role }, Spec::InstanceProfile { role: old, .. }) => {
            if let Ok(old) = resolve(ids, old)
                && !old.is_empty()
            {
                c.remove_role_from_instance_profile()
                    .instance_profile_name(name)
                    .role_name(name_from_arn(&old))
                    .send()
                    .await
                    .op("RemoveRoleFromInstanceProfile")?;
            }
            add_role(c, name, name_from_arn(&resolve(ids, role)?)).await?;
        }
        _ => {
            return Err(CloudError::new(
                "update",
                format!("{} cannot be updated in place", d.key),
            ));
        }
    }
    Ok(Observed {
        key: d.key.clone(),
        id: before.id.clone(),
        spec: d.spec.clone(),
        parts: Default::default(),
        state: None,
    })
}

pub async fn delete(c: &Client, o: &Observed) -> Result<(), CloudError> {
    let ignore = |r: Result<(), CloudError>| match r {
        Err(e) if not_found(&e) => Ok(()),
        other => other,
    };
    match &o.spec {
        Spec::IamRole { name, .. } => {
            ignore(
                c.delete_role_policy()
                    .role_name(name)
                    .policy_name(POLICY_NAME)
                    .send()
                    .await
                    .op("DeleteRolePolicy")
                    .map(drop),
            )?;
            ignore(
                c.delete_role()
                    .role_name(name)
                    .send()
                    .await
                    .op("DeleteRole")
                    .map(drop),
            )
        }
        Spec::InstanceProfile { name, .. } => {
            if let Ok(p) = c
                .get_instance_profile()
                .instance_profile_name(name)
                .send()
                .await
                .op("GetInstanceProfile")
            {
                for role in p.instance_profile().map(|p| p.roles()).unwrap_or_default() {
                    ignore(
                        c.remove_role_from_instance_profile()
                            .instance_profile_name(name)
                            .role_name(role.role_name())
                            .send()
                            .await
                            .op("RemoveRoleFromInstanceProfile")
                            .map(drop),
                    )?;
                }
            }
            ignore(
                c.delete_instance_profile()
                    .instance_profile_name(name)
                    .send()
                    .await
                    .op("DeleteInstanceProfile")
                    .map(drop),
            )
        }
        _ => Err(CloudError::new(
            "delete",
            format!("{} is not an IAM resource", o.key),
        )),
    }
}
