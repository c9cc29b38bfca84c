//! A region's AWS resources as a Terraform configuration (`gwctl export terraform`): each
//! resource gwctl manages as the hashicorp/aws resource that builds the same thing, with an
//! import block for the id it has now. Built from a plan in which nothing changes, so what
//! the region files say and what AWS holds are the same; secrets become sensitive variables.

use std::collections::BTreeMap;

use crate::cloud::{IAM_PATH, IAM_TRUST, PARAMETER_DESCRIPTION, POLICY_NAME, ROLE_DESCRIPTION};

use crate::model::resources::{
    BlockDevice, Desired, Ingress, IngressSource, Key, Kind, Payload, Ref, Spec,
};
use crate::model::terraform::{Block, Body, Export, Value, identifier};
use crate::plan::RegionPlan;
use crate::plan::dns::{CheckChange, DnsPlan};

/// What gwctl manages that no imported hashicorp/aws resource can hold.
fn not_exported() -> Vec<(String, String)> {
    [
        (
            "the VPN connection's static routes",
            "aws_vpn_connection_route has no import: they stay in AWS as they are; declare them \
             as aws_vpn_connection_route resources only when Terraform should recreate them",
        ),
        (
            "the backend's federation (upstreams, policies, exchanges, users)",
            "RabbitMQ configuration on the backend, not an AWS resource: no hashicorp/aws \
             resource exists for it (the rabbitmq/rabbitmq provider could hold it)",
        ),
        (
            "the Route53 hosted zone",
            "shared with the rest of the stack and not owned by gwctl; referred to by id",
        ),
        (
            "data-volume snapshots of removed brokers",
            "backups gwctl keeps and prunes (`brokers.snapshots_retained`); import them as \
             aws_ebs_snapshot if Terraform should own them",
        ),
    ]
    .into_iter()
    .map(|(what, why)| (what.to_string(), why.to_string()))
    .collect()
}

/// The Terraform resource type and name of a gwctl key.
fn address(key: &Key) -> (String, String) {
    let kind = match key.kind {
        Kind::IamRole => "aws_iam_role",
        Kind::InstanceProfile => "aws_iam_instance_profile",
        Kind::SsmParameter | Kind::Certificate => "aws_ssm_parameter",
        Kind::Vpc => "aws_vpc",
        Kind::Subnet => "aws_subnet",
        Kind::InternetGateway => "aws_internet_gateway",
        Kind::SecurityGroup => "aws_security_group",
        Kind::CustomerGateway => "aws_customer_gateway",
        Kind::VpnGateway => "aws_vpn_gateway",
        Kind::VpnConnection => "aws_vpn_connection",
        Kind::RouteTable => "aws_route_table",
        Kind::Instance => "aws_instance",
        Kind::ElasticIp => "aws_eip",
    };
    let name = match key.kind {
        Kind::Certificate => identifier(&format!("tls_{}", key.name)),
        _ => identifier(&key.name),
    };
    (kind.to_string(), name)
}

fn reference(key: &Key, attr: &str) -> Value {
    let (kind, name) = address(key);
    Value::expr(format!("{kind}.{name}.{attr}"))
}

/// A reference to what `r` names: another exported resource's attribute, or an id as is.
fn refer(r: &Ref, attr: &str) -> Value {
    match r {
        Ref::Key(k) => reference(k, attr),
        Ref::Id(id) => Value::str(id),
    }
}

fn tags(d: &Desired) -> Value {
    Value::map(d.tags.iter())
}

/// Why an export was refused: the region is not in sync with its file.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotInSync(pub String);

/// The export of `plan` (and its Route53 part). `free_tags` are the tags gwctl puts on the
/// region's health checks besides its own.
pub fn export(
    plan: &RegionPlan,
    dns: Option<&DnsPlan>,
    free_tags: &BTreeMap<String, String>,
) -> Result<Export, NotInSync> {
    let pending: Vec<String> = plan
        .changes
        .iter()
        .filter(|c| c.action != crate::model::Action::NoOp)
        .map(|c| format!("{} ({:?})", c.key, c.action))
        .collect();
    if !pending.is_empty() || !plan.held.is_empty() || dns.is_some_and(DnsPlan::has_changes) {
        return Err(NotInSync(format!(
            "{} is not in sync with its region file ({}): run `gwctl up` (and `gwctl upgrade`) \
             first, so the export describes what exists",
            plan.region,
            if pending.is_empty() {
                "Route53 or held changes pending".to_string()
            } else {
                pending.join(", ")
            }
        )));
    }
    let mut e = Export {
        region: plan.region.clone(),
        not_exported: not_exported(),
        ..Export::default()
    };
    // AWS ids by key, for import ids that combine two (route table associations).
    let ids: BTreeMap<&Key, &str> = plan
        .changes
        .iter()
        .filter_map(|c| Some((&c.key, c.before.as_ref()?.id.as_str())))
        .collect();
    for c in &plan.changes {
        let (Some(before), Some(after)) = (&c.before, &c.after) else {
            continue;
        };
        resource(after, &before.id, &ids, &mut e);
    }
    if let Some(dns) = dns {
        route53(dns, free_tags, &plan.stack, &mut e);
    }
    Ok(e)
}

/// The resource of a gwctl key, imported from `import_id`.
fn push(e: &mut Export, key: &Key, body: Body, import_id: &str) {
    let (kind, name) = address(key);
    push_resource(e, &kind, &name, body, import_id.to_string());
}

/// A `resource "KIND" "NAME"` block and its import block.
fn push_resource(e: &mut Export, kind: &str, name: &str, body: Body, import_id: String) {
    e.imports.push((format!("{kind}.{name}"), import_id));
    e.resources
        .push(Block::new("resource", &[kind, name], body));
}

fn resource(d: &Desired, id: &str, ids: &BTreeMap<&Key, &str>, e: &mut Export) {
    let key = &d.key;
    match &d.spec {
        Spec::IamRole { name, policy } => {
            let body = Body::new()
                .attr("name", Value::str(name))
                .attr("path", Value::str(IAM_PATH))
                .attr("description", Value::str(ROLE_DESCRIPTION))
                .attr("assume_role_policy", Value::str(IAM_TRUST))
                .attr("tags", tags(d));
            push(e, key, body, name);
            let role = identifier(&key.name);
            let policy_body = Body::new()
                .attr("name", Value::str(POLICY_NAME))
                .attr("role", reference(key, "name"))
                .attr("policy", Value::str(policy));
            push_resource(
                e,
                "aws_iam_role_policy",
                &role,
                policy_body,
                format!("{name}:{POLICY_NAME}"),
            );
        }
        Spec::InstanceProfile { name, role } => {
            let body = Body::new()
                .attr("name", Value::str(name))
                .attr("path", Value::str(IAM_PATH))
                .attr("role", refer(role, "name"))
                .attr("tags", tags(d));
            push(e, key, body, name);
        }
        Spec::SsmParameter { name, .. } | Spec::Certificate { name, .. } => {
            let (_, var) = address(key);
            let what = match d.spec {
                Spec::Certificate { .. } => format!("{name}: the broker's certificate and key"),
                _ => format!("{name}: a secret the brokers read at boot"),
            };
            e.variables.push((var.clone(), what));
            let body = Body::new()
                .attr("name", Value::str(name))
                .attr("type", Value::str("SecureString"))
                .attr("description", Value::str(PARAMETER_DESCRIPTION))
                .attr("value", Value::expr(format!("var.{var}")))
                .attr("tags", tags(d));
            push(e, key, body, name);
        }
        Spec::Vpc {
            cidr,
            dns_hostnames,
        } => {
            let body = Body::new()
                .attr("cidr_block", Value::str(cidr))
                .attr("enable_dns_support", Value::Bool(true))
                .attr("enable_dns_hostnames", Value::Bool(*dns_hostnames))
                .attr("tags", tags(d));
            push(e, key, body, id);
        }
        Spec::Subnet {
            vpc,
            zone,
            cidr,
            public_ip_on_launch,
        } => {
            let body = Body::new()
                .attr("vpc_id", refer(vpc, "id"))
                .attr("availability_zone", Value::str(zone))
                .attr("cidr_block", Value::str(cidr))
                .attr("map_public_ip_on_launch", Value::Bool(*public_ip_on_launch))
                .attr("tags", tags(d));
            push(e, key, body, id);
        }
        Spec::InternetGateway { vpc } | Spec::VpnGateway { vpc } => {
            let body = Body::new()
                .attr("vpc_id", refer(vpc, "id"))
                .attr("tags", tags(d));
            push(e, key, body, id);
        }
        Spec::SecurityGroup {
            vpc,
            group_name,
            description,
            ingress,
        } => {
            let mut body = Body::new()
                .attr("name", Value::str(group_name))
                .attr("description", Value::str(description))
                .attr("vpc_id", refer(vpc, "id"));
            for rule in ingress_blocks(ingress) {
                body = body.block("ingress", rule);
            }
            // AWS's default rule, which gwctl keeps (Terraform removes it unless declared).
            body = body
                .block(
                    "egress",
                    Body::new()
                        .attr("from_port", Value::Num(0))
                        .attr("to_port", Value::Num(0))
                        .attr("protocol", Value::str("-1"))
                        .attr("cidr_blocks", Value::strs(["0.0.0.0/0"])),
                )
                .attr("tags", tags(d));
            push(e, key, body, id);
        }
        Spec::CustomerGateway { ip, bgp_asn } => {
            // The provider takes 4-byte ASNs above 2^31-1 only as `bgp_asn_extended`.
            let asn = if i64::from(*bgp_asn) > i64::from(i32::MAX) {
                "bgp_asn_extended"
            } else {
                "bgp_asn"
            };
            let body = Body::new()
                .attr(asn, Value::str(bgp_asn.to_string()))
                .attr("ip_address", Value::str(ip))
                .attr("type", Value::str("ipsec.1"))
                .attr("tags", tags(d));
            push(e, key, body, id);
        }
        Spec::VpnConnection {
            customer_gateway,
            vpn_gateway,
            static_routes_only,
            tunnels,
            ..
        } => {
            let mut body = Body::new()
                .attr("customer_gateway_id", refer(customer_gateway, "id"))
                .attr("vpn_gateway_id", refer(vpn_gateway, "id"))
                .attr("type", Value::str("ipsec.1"))
                .attr("static_routes_only", Value::Bool(*static_routes_only));
            let keys = matches!(&d.payload, Payload::TunnelKeys(k) if !k.is_empty());
            for (i, t) in tunnels.iter().enumerate() {
                let n = i + 1;
                let at = |field: &str| format!("tunnel{n}_{field}");
                body = body
                    .attr_opt(&at("inside_cidr"), t.inside_cidr.as_ref().map(Value::str))
                    .attr(&at("ike_versions"), Value::strs(&t.ike_versions))
                    .attr(
                        &at("phase1_encryption_algorithms"),
                        Value::strs(&t.phase1_encryption),
                    )
                    .attr(
                        &at("phase1_integrity_algorithms"),
                        Value::strs(&t.phase1_integrity),
                    )
                    .attr(&at("phase1_dh_group_numbers"), numbers(&t.phase1_dh_groups))
                    .attr(
                        &at("phase2_encryption_algorithms"),
                        Value::strs(&t.phase2_encryption),
                    )
                    .attr(
                        &at("phase2_integrity_algorithms"),
                        Value::strs(&t.phase2_integrity),
                    )
                    .attr(&at("phase2_dh_group_numbers"), numbers(&t.phase2_dh_groups));
                if keys {
                    let var = at("preshared_key");
                    e.variables
                        .push((var.clone(), format!("the pre-shared key of tunnel {n}")));
                    body = body.attr(&var, Value::expr(format!("var.{var}")));
                }
            }
            body = body.attr("tags", tags(d));
            push(e, key, body, id);
        }
        Spec::RouteTable {
            vpc,
            routes,
            propagating,
            subnets,
        } => {
            let mut body = Body::new().attr("vpc_id", refer(vpc, "id"));
            for r in routes {
                body = body.block(
                    "route",
                    Body::new()
                        .attr("cidr_block", Value::str(&r.destination))
                        .attr("gateway_id", refer(&r.target, "id")),
                );
            }
            body = body
                .attr(
                    "propagating_vgws",
                    Value::List(propagating.iter().map(|p| refer(p, "id")).collect()),
                )
                .attr("tags", tags(d));
            push(e, key, body, id);
            for s in subnets {
                let Ref::Key(subnet) = s else { continue };
                let Some(subnet_id) = ids.get(subnet) else {
                    continue;
                };
                let name = identifier(&format!("{}_{}", key.name, subnet.name));
                let body = Body::new()
                    .attr("subnet_id", reference(subnet, "id"))
                    .attr("route_table_id", reference(key, "id"));
                push_resource(
                    e,
                    "aws_route_table_association",
                    &name,
                    body,
                    format!("{subnet_id}/{id}"),
                );
            }
        }
        Spec::Instance {
            image,
            instance_type,
            subnet,
            security_groups,
            profile,
            imdsv2_required,
            ..
        } => {
            let mut body = Body::new()
                .attr("ami", Value::str(image))
                .attr("instance_type", Value::str(instance_type))
                .attr("subnet_id", refer(subnet, "id"))
                .attr(
                    "vpc_security_group_ids",
                    Value::List(security_groups.iter().map(|g| refer(g, "id")).collect()),
                )
                .attr("iam_instance_profile", refer(profile, "name"));
            if let Payload::Launch {
                user_data,
                block_devices,
                ..
            } = &d.payload
            {
                let file = format!("user-data/{}.b64", key.name);
                let encoded = crate::model::user_data::encode_base64(user_data);
                e.files.push((file.clone(), format!("{encoded}\n")));
                body = body.attr(
                    "user_data_base64",
                    Value::expr(format!("trimspace(file(\"${{path.module}}/{file}\"))")),
                );
                for b in block_devices {
                    // gwctl tags the volumes as the instance.
                    body = if b.device == "root" {
                        body.block("root_block_device", volume(b, None).attr("tags", tags(d)))
                    } else {
                        body.block(
                            "ebs_block_device",
                            volume(b, Some(&b.device)).attr("tags", tags(d)),
                        )
                    };
                }
            }
            body = body
                .block(
                    "metadata_options",
                    Body::new()
                        .attr(
                            "http_tokens",
                            Value::str(if *imdsv2_required {
                                "required"
                            } else {
                                "optional"
                            }),
                        )
                        .attr("http_endpoint", Value::str("enabled"))
                        .attr("http_put_response_hop_limit", Value::Num(1)),
                )
                .attr("tags", tags(d))
                .block(
                    "lifecycle",
                    Body::new()
                        .attr(
                            "ignore_changes",
                            Value::List(vec![
                                Value::expr("user_data"),
                                Value::expr("user_data_base64"),
                                Value::expr("user_data_replace_on_change"),
                            ]),
                        )
                        .comment(
                            "User-data runs at first boot only; AWS reports a hash of it, and an\n\
                             import leaves user_data_replace_on_change unset.",
                        ),
                );
            push(e, key, body, id);
        }
        Spec::ElasticIp { instance } => {
            let body = Body::new()
                .attr("domain", Value::str("vpc"))
                .attr("instance", refer(instance, "id"))
                .attr("tags", tags(d));
            push(e, key, body, id);
        }
    }
}

fn numbers(items: &[i32]) -> Value {
    Value::List(items.iter().map(|n| Value::Num(i64::from(*n))).collect())
}

/// A root or data volume as gwctl launches it (encrypted, deleted with the instance).
fn volume(b: &BlockDevice, device: Option<&str>) -> Body {
    Body::new()
        .attr_opt("device_name", device.map(Value::str))
        .attr("volume_type", Value::str(&b.volume_type))
        .attr("volume_size", Value::Num(i64::from(b.size_gib)))
        .attr_opt("iops", b.iops.map(|n| Value::Num(i64::from(n))))
        .attr_opt(
            "throughput",
            b.throughput_mibps.map(|n| Value::Num(i64::from(n))),
        )
        .attr("encrypted", Value::Bool(true))
        .attr("delete_on_termination", Value::Bool(true))
}

/// Ingress rules as Terraform groups them: one block per port, description and kind of
/// source, with every range of that kind in it.
fn ingress_blocks(rules: &[Ingress]) -> Vec<Body> {
    let mut groups: BTreeMap<(u16, &str, u8), Vec<&IngressSource>> = BTreeMap::new();
    for r in rules.iter().filter(|r| r.other.is_none()) {
        let kind = match &r.from {
            IngressSource::Cidr(c) if c.contains(':') => 1,
            IngressSource::Cidr(_) => 0,
            IngressSource::PrefixList(_) => 2,
            IngressSource::Itself => 3,
            IngressSource::Group(_) => 4,
        };
        groups
            .entry((r.port, r.description.as_str(), kind))
            .or_default()
            .push(&r.from);
    }
    groups
        .into_iter()
        .map(|((port, description, kind), sources)| {
            let texts = || {
                sources.iter().filter_map(|s| match s {
                    IngressSource::Cidr(c)
                    | IngressSource::PrefixList(c)
                    | IngressSource::Group(c) => Some(c.as_str()),
                    IngressSource::Itself => None,
                })
            };
            let body = Body::new()
                .attr("description", Value::str(description))
                .attr("from_port", Value::Num(i64::from(port)))
                .attr("to_port", Value::Num(i64::from(port)))
                .attr("protocol", Value::str("tcp"));
            match kind {
                0 => body.attr("cidr_blocks", Value::strs(texts())),
                1 => body.attr("ipv6_cidr_blocks", Value::strs(texts())),
                2 => body.attr("prefix_list_ids", Value::strs(texts())),
                3 => body.attr("self", Value::Bool(true)),
                _ => body.attr("security_groups", Value::strs(texts())),
            }
        })
        .collect()
}

fn route53(dns: &DnsPlan, free: &BTreeMap<String, String>, stack: &str, e: &mut Export) {
    for c in &dns.checks {
        health_check(c, free, stack, &dns.region, e);
    }
    for r in &dns.records {
        let Some(before) = &r.before else { continue };
        let rec = &before.record;
        let name = rec.name.trim_end_matches('.');
        let tf_name = match (&rec.latency_region, &rec.set_identifier) {
            (Some(region), _) => identifier(&format!("latency_{region}")),
            (None, Some(set)) => identifier(&format!("record_{set}")),
            (None, None) => identifier(&format!("{}_{name}", rec.rtype.to_lowercase())),
        };
        let import_id = match &rec.set_identifier {
            Some(set) => format!("{}_{name}_{}_{set}", dns.zone_id, rec.rtype),
            None => format!("{}_{name}_{}", dns.zone_id, rec.rtype),
        };
        let mut body = Body::new()
            .attr("zone_id", Value::str(&dns.zone_id))
            .attr("name", Value::str(name))
            .attr("type", Value::str(&rec.rtype))
            .attr_opt(
                "set_identifier",
                rec.set_identifier.as_ref().map(Value::str),
            );
        if rec.multivalue {
            body = body.attr("multivalue_answer_routing_policy", Value::Bool(true));
        }
        if let Some(region) = &rec.latency_region {
            body = body.block(
                "latency_routing_policy",
                Body::new().attr("region", Value::str(region)),
            );
        }
        body = body.attr_opt("ttl", rec.ttl.map(Value::Num)).attr_opt(
            "health_check_id",
            rec.health_check
                .as_ref()
                .map(|h| Value::expr(format!("aws_route53_health_check.{}.id", identifier(h)))),
        );
        match &rec.alias {
            Some(target) => {
                body = body.block(
                    "alias",
                    Body::new()
                        .attr("name", Value::str(target.trim_end_matches('.')))
                        .attr(
                            "zone_id",
                            Value::str(before.alias_zone.as_deref().unwrap_or(&dns.zone_id)),
                        )
                        .attr(
                            "evaluate_target_health",
                            Value::Bool(rec.evaluate_target_health),
                        ),
                );
            }
            // Route53 holds TXT values quoted; Terraform writes the quotes itself.
            None => {
                let values = rec.values.iter().map(|v| match rec.rtype.as_str() {
                    "TXT" => v.trim_matches('"'),
                    _ => v.as_str(),
                });
                body = body.attr("records", Value::strs(values));
            }
        }
        push_resource(e, "aws_route53_record", &tf_name, body, import_id);
    }
}

fn health_check(
    c: &CheckChange,
    free: &BTreeMap<String, String>,
    stack: &str,
    region: &str,
    e: &mut Export,
) {
    let Some(before) = &c.before else { return };
    let cfg = &before.config;
    let tags = crate::model::resources::tags_for(
        stack,
        region,
        &c.name,
        &format!("health_check/{}", c.name),
        free,
    );
    let mut body = Body::new()
        .attr("type", Value::str(cfg.protocol.as_str()))
        .attr("ip_address", Value::str(&cfg.ip))
        .attr("port", Value::Num(i64::from(cfg.port)))
        .attr_opt("resource_path", cfg.path.as_ref().map(Value::str))
        .attr("request_interval", Value::Num(i64::from(cfg.interval_s)))
        .attr(
            "failure_threshold",
            Value::Num(i64::from(cfg.failure_threshold)),
        );
    if !cfg.regions.is_empty() {
        body = body.attr("regions", Value::strs(&cfg.regions));
    }
    body = body.attr("tags", Value::map(tags.iter()));
    let name = identifier(&c.name);
    push_resource(
        e,
        "aws_route53_health_check",
        &name,
        body,
        before.id.clone(),
    );
}
