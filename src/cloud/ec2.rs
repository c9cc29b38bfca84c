//! EC2: VPC, subnets, gateways, routes, security groups, VPN, instances, Elastic IPs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{
    AttributeBooleanValue, BlockDeviceMapping, DomainType, EbsBlockDevice, Filter, GatewayType,
    HttpTokensState, IamInstanceProfileSpecification, InstanceMetadataEndpointState,
    InstanceMetadataOptionsRequest, InstanceType, IpPermission, IpRange, Ipv6Range, PrefixListId,
    ResourceType, Tag, TagSpecification, UserIdGroupPair, VolumeType,
    VpnConnectionOptionsSpecification,
};

use crate::model::sha256_hex;

use super::{Call, CloudError, Ids, Owner, filter, resolve, retry};
use crate::model::resources::{
    CLUSTER_PART, DATA_DEVICE, DRAINED_PART, Desired, Ingress, IngressSource, Key, Kind, Observed,
    Payload, Ref, Route, RuleShape, Spec, TAG_CLUSTER, TAG_DRAINED, TAG_ID, TAG_LAUNCH, TAG_REGION,
    TAG_STACK, TunnelSpec, TunnelState,
};
use crate::spec::model::Ami;

/// Time AWS may take to bring an instance to `running` or `terminated`.
const INSTANCE_WAIT: Duration = Duration::from_secs(600);
/// Time a VPN gateway may take to attach or detach.
const ATTACH_WAIT: Duration = Duration::from_secs(300);

fn owner_filters(o: &Owner) -> [Filter; 2] {
    [
        filter(&format!("tag:{TAG_STACK}"), &o.stack),
        filter(&format!("tag:{TAG_REGION}"), &o.region),
    ]
}

fn tag_map(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_string(),
                t.value().unwrap_or_default().to_string(),
            ))
        })
        .collect()
}

/// The key an owned resource carries, if it is ours (stack, region and a valid `gwctl:id`).
fn owned_key(o: &Owner, tags: &[Tag], kind: Kind) -> Option<Key> {
    let t = tag_map(tags);
    if t.get(TAG_STACK) != Some(&o.stack) || t.get(TAG_REGION) != Some(&o.region) {
        return None;
    }
    let key = Key::try_from(t.get(TAG_ID)?.clone()).ok()?;
    (key.kind == kind).then_some(key)
}

fn tag_spec(kind: ResourceType, tags: &BTreeMap<String, String>) -> TagSpecification {
    let mut b = TagSpecification::builder().resource_type(kind);
    for (k, v) in tags {
        b = b.tags(Tag::builder().key(k).value(v).build());
    }
    b.build()
}

fn observed(key: Key, id: &str, spec: Spec) -> Observed {
    Observed {
        key,
        id: id.to_string(),
        spec,
        parts: BTreeMap::new(),
        state: None,
    }
}

fn id_ref(id: Option<&str>) -> Ref {
    Ref::Id(id.unwrap_or_default().to_string())
}

pub async fn discover(c: &Client, o: &Owner) -> Result<Vec<Observed>, CloudError> {
    let (vpcs, subnets, igws, sgs, cgws, vgws, vpns, rtbs, instances, eips) = tokio::join!(
        vpcs(c, o),
        subnets(c, o),
        internet_gateways(c, o),
        security_groups(c, o),
        customer_gateways(c, o),
        vpn_gateways(c, o),
        vpn_connections(c, o),
        route_tables(c, o),
        instances(c, o),
        elastic_ips(c, o),
    );
    let mut out = Vec::new();
    for part in [
        vpcs, subnets, igws, sgs, cgws, vgws, vpns, rtbs, instances, eips,
    ] {
        out.extend(part?);
    }
    Ok(out)
}

async fn vpcs(c: &Client, o: &Owner) -> Result<Vec<Observed>, CloudError> {
    let resp = c
        .describe_vpcs()
        .set_filters(Some(owner_filters(o).to_vec()))
        .send()
        .await
        .op("DescribeVpcs")?;
    let mut out = Vec::new();
    for v in resp.vpcs() {
        let (Some(key), Some(id), Some(cidr)) = (
            owned_key(o, v.tags(), Kind::Vpc),
            v.vpc_id(),
            v.cidr_block(),
        ) else {
            continue;
        };
        // One VPC per region: one more call, so a run interrupted before the attribute was
        // set is repaired.
        let attr = c
            .describe_vpc_attribute()
            .vpc_id(id)
            .attribute(aws_sdk_ec2::types::VpcAttributeName::EnableDnsHostnames)
            .send()
            .await
            .op("DescribeVpcAttribute")?;
        let dns_hostnames = attr
            .enable_dns_hostnames()
            .and_then(|a| a.value())
            .unwrap_or(false);
        out.push(observed(
            key,
            id,
            Spec::Vpc {
                cidr: cidr.to_string(),
                dns_hostnames,
            },
        ));
    }
    Ok(out)
}

async fn subnets(c: &Client, o: &Owner) -> Result<Vec<Observed>, CloudError> {
    let resp = c
        .describe_subnets()
        .set_filters(Some(owner_filters(o).to_vec()))
        .send()
        .await
        .op("DescribeSubnets")?;
    Ok(resp
        .subnets()
        .iter()
        .filter_map(|s| {
            let key = owned_key(o, s.tags(), Kind::Subnet)?;
            let spec = Spec::Subnet {
                vpc: id_ref(s.vpc_id()),
                zone: s.availability_zone()?.to_string(),
                cidr: s.cidr_block()?.to_string(),
                public_ip_on_launch: s.map_public_ip_on_launch().unwrap_or(false),
            };
            Some(observed(key, s.subnet_id()?, spec))
        })
        .collect())
}

async fn internet_gateways(c: &Client, o: &Owner) -> Result<Vec<Observed>, CloudError> {
    let resp = c
        .describe_internet_gateways()
        .set_filters(Some(owner_filters(o).to_vec()))
        .send()
        .await
        .op("DescribeInternetGateways")?;
    Ok(resp
        .internet_gateways()
        .iter()
        .filter_map(|g| {
            let key = owned_key(o, g.tags(), Kind::InternetGateway)?;
            let vpc = g.attachments().first().and_then(|a| a.vpc_id());
            Some(observed(
                key,
                g.internet_gateway_id()?,
                Spec::InternetGateway { vpc: id_ref(vpc) },
            ))
        })
        .collect())
}

async fn security_groups(c: &Client, o: &Owner) -> Result<Vec<Observed>, CloudError> {
    let resp = c
        .describe_security_groups()
        .set_filters(Some(owner_filters(o).to_vec()))
        .send()
        .await
        .op("DescribeSecurityGroups")?;
    Ok(resp
        .security_groups()
        .iter()
        .filter_map(|g| {
            let key = owned_key(o, g.tags(), Kind::SecurityGroup)?;
            let id = g.group_id()?;
            let mut ingress = Vec::new();
            for p in g.ip_permissions() {
                // The shape gwctl writes (TCP, one port) compares as such; any other shape
                // (every protocol, UDP, ICMP, a range) is kept exactly, as drift.
                let protocol = p.ip_protocol().unwrap_or("-1");
                let (from_port, to_port) = (p.from_port(), p.to_port());
                let (port, other) = match (protocol, from_port, to_port) {
                    ("tcp", Some(f), Some(t)) if f == t && u16::try_from(f).is_ok() => {
                        (u16::try_from(f).unwrap_or_default(), None)
                    }
                    _ => (
                        0,
                        Some(RuleShape {
                            protocol: protocol.to_string(),
                            from_port,
                            to_port,
                        }),
                    ),
                };
                let mut push = |from: IngressSource, description: Option<&str>| {
                    ingress.push(Ingress {
                        port,
                        from,
                        description: description.unwrap_or_default().to_string(),
                        other: other.clone(),
                    })
                };
                for r in p.ip_ranges() {
                    push(
                        IngressSource::Cidr(r.cidr_ip().unwrap_or_default().to_string()),
                        r.description(),
                    );
                }
                // gwctl writes no IPv6 rule: one found is drift, revoked by the next `up`.
                for r in p.ipv6_ranges() {
                    push(
                        IngressSource::Cidr(r.cidr_ipv6().unwrap_or_default().to_string()),
                        r.description(),
                    );
                }
                for l in p.prefix_list_ids() {
                    push(
                        IngressSource::PrefixList(
                            l.prefix_list_id().unwrap_or_default().to_string(),
                        ),
                        l.description(),
                    );
                }
                for pair in p.user_id_group_pairs() {
                    let from = match pair.group_id() {
                        Some(g) if g == id => IngressSource::Itself,
                        other => IngressSource::Group(other.unwrap_or_default().to_string()),
                    };
                    push(from, pair.description());
                }
            }
            ingress.sort();
            let spec = Spec::SecurityGroup {
                vpc: id_ref(g.vpc_id()),
                group_name: g.group_name().unwrap_or_default().to_string(),
                description: g.description().unwrap_or_default().to_string(),
                ingress,
            };
            Some(observed(key, id, spec))
        })
        .collect())
}

/// Deleted VPN objects stay listed for a while (on AWS and moto): skip them.
fn gone(state: Option<&str>) -> bool {
    matches!(state, Some("deleted" | "deleting"))
}

async fn customer_gateways(c: &Client, o: &Owner) -> Result<Vec<Observed>, CloudError> {
    // Tag filters are sent for AWS; moto ignores them here, so ownership is also checked below.
    let resp = c
        .describe_customer_gateways()
        .set_filters(Some(owner_filters(o).to_vec()))
        .send()
        .await
        .op("DescribeCustomerGateways")?;
    Ok(resp
        .customer_gateways()
        .iter()
        .filter(|g| !gone(g.state()))
        .filter_map(|g| {
            let key = owned_key(o, g.tags(), Kind::CustomerGateway)?;
            let spec = Spec::CustomerGateway {
                ip: g.ip_address().unwrap_or_default().to_string(),
                bgp_asn: g
                    .bgp_asn_extended()
                    .or(g.bgp_asn())
                    .and_then(|a| a.parse().ok())
                    .unwrap_or_default(),
            };
            Some(observed(key, g.customer_gateway_id()?, spec))
        })
        .collect())
}

async fn vpn_gateways(c: &Client, o: &Owner) -> Result<Vec<Observed>, CloudError> {
    let resp = c
        .describe_vpn_gateways()
        .set_filters(Some(owner_filters(o).to_vec()))
        .send()
        .await
        .op("DescribeVpnGateways")?;
    Ok(resp
        .vpn_gateways()
        .iter()
        .filter(|g| !gone(g.state().map(|s| s.as_str())))
        .filter_map(|g| {
            let key = owned_key(o, g.tags(), Kind::VpnGateway)?;
            let vpc = g
                .vpc_attachments()
                .iter()
                .find(|a| {
                    matches!(
                        a.state().map(|s| s.as_str()),
                        Some("attached" | "attaching")
                    )
                })
                .and_then(|a| a.vpc_id());
            Some(observed(
                key,
                g.vpn_gateway_id()?,
                Spec::VpnGateway { vpc: id_ref(vpc) },
            ))
        })
        .collect())
}

async fn vpn_connections(c: &Client, o: &Owner) -> Result<Vec<Observed>, CloudError> {
    let resp = c
        .describe_vpn_connections()
        .set_filters(Some(owner_filters(o).to_vec()))
        .send()
        .await
        .op("DescribeVpnConnections")?;
    Ok(resp
        .vpn_connections()
        .iter()
        .filter(|v| !gone(v.state().map(|s| s.as_str())))
        .filter_map(|v| {
            let key = owned_key(o, v.tags(), Kind::VpnConnection)?;
            let mut routes: Vec<String> = v
                .routes()
                .iter()
                .filter(|r| !gone(r.state().map(|s| s.as_str())))
                .filter_map(|r| r.destination_cidr_block().map(str::to_string))
                .collect();
            routes.sort();
            let options = v.options();
            let reported = options.map(|o| o.tunnel_options()).unwrap_or_default();
            // Each tunnel with its key's hash, sorted together (as `plan::desired` does).
            let pairs = TunnelSpec::normalized_with(
                reported
                    .iter()
                    .map(|t| (tunnel_spec(t), t.pre_shared_key().map(sha256_hex)))
                    .collect(),
            );
            let keys: Vec<String> = pairs.iter().filter_map(|(_, k)| k.clone()).collect();
            let tunnels: Vec<TunnelSpec> = pairs.into_iter().map(|(t, _)| t).collect();
            let spec = Spec::VpnConnection {
                customer_gateway: id_ref(v.customer_gateway_id()),
                vpn_gateway: id_ref(v.vpn_gateway_id()),
                static_routes_only: options
                    .and_then(|o| o.static_routes_only())
                    .unwrap_or(false),
                routes,
                tunnels,
                pre_shared_keys_sha256: keys,
            };
            let mut ob = observed(key, v.vpn_connection_id()?, spec);
            // Which tunnel is which, for ModifyVpnTunnelOptions.
            for t in reported {
                if let (Some(outside), Some(inside)) =
                    (t.outside_ip_address(), t.tunnel_inside_cidr())
                {
                    ob.parts
                        .insert(TunnelState::part_key(outside), inside.to_string());
                }
            }
            // Telemetry changes by the minute: shown, never compared.
            ob.state = Some(TunnelState::describe(
                v.state().map(|s| s.as_str()).unwrap_or("unknown"),
                &telemetry(v),
            ));
            Some(ob)
        })
        .collect())
}

/// A tunnel's options as DescribeVpnConnections reports them.
fn tunnel_spec(t: &aws_sdk_ec2::types::TunnelOption) -> TunnelSpec {
    let strings = |v: Vec<Option<&str>>| v.into_iter().flatten().map(str::to_string).collect();
    TunnelSpec {
        inside_cidr: t.tunnel_inside_cidr().map(str::to_string),
        ike_versions: strings(t.ike_versions().iter().map(|x| x.value()).collect()),
        phase1_encryption: strings(
            t.phase1_encryption_algorithms()
                .iter()
                .map(|x| x.value())
                .collect(),
        ),
        phase2_encryption: strings(
            t.phase2_encryption_algorithms()
                .iter()
                .map(|x| x.value())
                .collect(),
        ),
        phase1_integrity: strings(
            t.phase1_integrity_algorithms()
                .iter()
                .map(|x| x.value())
                .collect(),
        ),
        phase2_integrity: strings(
            t.phase2_integrity_algorithms()
                .iter()
                .map(|x| x.value())
                .collect(),
        ),
        phase1_dh_groups: t
            .phase1_dh_group_numbers()
            .iter()
            .filter_map(|x| x.value())
            .collect(),
        phase2_dh_groups: t
            .phase2_dh_group_numbers()
            .iter()
            .filter_map(|x| x.value())
            .collect(),
    }
}

/// Adds a tunnel's algorithm lists to a tunnel options builder (creation and modification take
/// the same lists through two builder types).
macro_rules! with_algorithms {
    ($builder:expr, $t:expr) => {{
        use aws_sdk_ec2::types::*;
        let t: &TunnelSpec = $t;
        let mut b = $builder;
        for v in &t.ike_versions {
            b = b.ike_versions(IkeVersionsRequestListValue::builder().value(v).build());
        }
        for v in &t.phase1_encryption {
            b = b.phase1_encryption_algorithms(
                Phase1EncryptionAlgorithmsRequestListValue::builder()
                    .value(v)
                    .build(),
            );
        }
        for v in &t.phase2_encryption {
            b = b.phase2_encryption_algorithms(
                Phase2EncryptionAlgorithmsRequestListValue::builder()
                    .value(v)
                    .build(),
            );
        }
        for v in &t.phase1_integrity {
            b = b.phase1_integrity_algorithms(
                Phase1IntegrityAlgorithmsRequestListValue::builder()
                    .value(v)
                    .build(),
            );
        }
        for v in &t.phase2_integrity {
            b = b.phase2_integrity_algorithms(
                Phase2IntegrityAlgorithmsRequestListValue::builder()
                    .value(v)
                    .build(),
            );
        }
        for v in &t.phase1_dh_groups {
            b = b.phase1_dh_group_numbers(
                Phase1DhGroupNumbersRequestListValue::builder()
                    .value(*v)
                    .build(),
            );
        }
        for v in &t.phase2_dh_groups {
            b = b.phase2_dh_group_numbers(
                Phase2DhGroupNumbersRequestListValue::builder()
                    .value(*v)
                    .build(),
            );
        }
        b
    }};
}

/// What CreateVpnConnection takes for one tunnel.
fn tunnel_request(
    t: &TunnelSpec,
    key: Option<&crate::spec::secret::Secret>,
) -> aws_sdk_ec2::types::VpnTunnelOptionsSpecification {
    let b = aws_sdk_ec2::types::VpnTunnelOptionsSpecification::builder()
        .set_tunnel_inside_cidr(t.inside_cidr.clone())
        .set_pre_shared_key(key.map(|k| k.expose().to_string()));
    with_algorithms!(b, t).build()
}

async fn route_tables(c: &Client, o: &Owner) -> Result<Vec<Observed>, CloudError> {
    let resp = c
        .describe_route_tables()
        .set_filters(Some(owner_filters(o).to_vec()))
        .send()
        .await
        .op("DescribeRouteTables")?;
    Ok(resp
        .route_tables()
        .iter()
        .filter_map(|t| {
            let key = owned_key(o, t.tags(), Kind::RouteTable)?;
            let mut parts = BTreeMap::new();
            let routes = t
                .routes()
                .iter()
                .filter(|r| r.origin().map(|x| x.as_str()) == Some("CreateRoute"))
                .filter_map(|r| {
                    Some(Route {
                        destination: r.destination_cidr_block()?.to_string(),
                        target: id_ref(r.gateway_id()),
                    })
                })
                .collect();
            let propagating = t
                .propagating_vgws()
                .iter()
                .map(|p| id_ref(p.gateway_id()))
                .collect();
            let mut subnets = Vec::new();
            for a in t.associations() {
                if a.main() == Some(true) {
                    continue;
                }
                if let (Some(s), Some(id)) = (a.subnet_id(), a.route_table_association_id()) {
                    subnets.push(Ref::Id(s.to_string()));
                    parts.insert(format!("association:{s}"), id.to_string());
                }
            }
            let spec = Spec::RouteTable {
                vpc: id_ref(t.vpc_id()),
                routes,
                propagating,
                subnets,
            };
            let mut ob = observed(key, t.route_table_id()?, spec);
            ob.parts = parts;
            Some(ob)
        })
        .collect())
}

pub(super) async fn instances(c: &Client, o: &Owner) -> Result<Vec<Observed>, CloudError> {
    let pages: Vec<_> = c
        .describe_instances()
        .set_filters(Some(owner_filters(o).to_vec()))
        .into_paginator()
        .send()
        .collect::<Vec<_>>()
        .await;
    let mut out = Vec::new();
    for page in pages {
        let page = page.op("DescribeInstances")?;
        for r in page.reservations() {
            for i in r.instances() {
                let state = i
                    .state()
                    .and_then(|s| s.name())
                    .map(|n| n.as_str().to_string());
                if matches!(state.as_deref(), Some("terminated" | "shutting-down")) {
                    continue;
                }
                let Some(key) = owned_key(o, i.tags(), Kind::Instance) else {
                    continue;
                };
                let Some(id) = i.instance_id() else { continue };
                let tags = tag_map(i.tags());
                let profile = i.iam_instance_profile().and_then(|p| p.arn());
                let spec = Spec::Instance {
                    image: i.image_id().unwrap_or_default().to_string(),
                    instance_type: i
                        .instance_type()
                        .map(|t| t.as_str().to_string())
                        .unwrap_or_default(),
                    subnet: id_ref(i.subnet_id()),
                    security_groups: i
                        .security_groups()
                        .iter()
                        .map(|g| id_ref(g.group_id()))
                        .collect(),
                    profile: id_ref(profile),
                    launch_sha256: tags.get(TAG_LAUNCH).cloned().unwrap_or_default(),
                    imdsv2_required: i.metadata_options().and_then(|m| m.http_tokens())
                        == Some(&HttpTokensState::Required),
                };
                let mut ob = observed(key, id, spec);
                ob.state = state;
                if let Some(ip) = i.private_ip_address() {
                    ob.parts.insert("private_ip".into(), ip.to_string());
                }
                // Which RabbitMQ cluster a broker belongs to (its peers find it by this tag):
                // two clusters share a region while `upgrade` moves it blue-green.
                if let Some(cluster) = tags.get(TAG_CLUSTER) {
                    ob.parts.insert(CLUSTER_PART.into(), cluster.clone());
                }
                if let Some(drained) = tags.get(TAG_DRAINED) {
                    ob.parts.insert(DRAINED_PART.into(), drained.clone());
                }
                if let Some(volume) = i
                    .block_device_mappings()
                    .iter()
                    .find(|m| m.device_name() == Some(DATA_DEVICE))
                    .and_then(|m| m.ebs()?.volume_id())
                {
                    ob.parts.insert(
                        super::snapshots::DATA_VOLUME_PART.into(),
                        volume.to_string(),
                    );
                }
                out.push(ob);
            }
        }
    }
    Ok(out)
}

pub async fn elastic_ips(c: &Client, o: &Owner) -> Result<Vec<Observed>, CloudError> {
    let resp = c
        .describe_addresses()
        .set_filters(Some(owner_filters(o).to_vec()))
        .send()
        .await
        .op("DescribeAddresses")?;
    Ok(resp
        .addresses()
        .iter()
        .filter_map(|a| {
            let key = owned_key(o, a.tags(), Kind::ElasticIp)?;
            let mut ob = observed(
                key,
                a.allocation_id()?,
                Spec::ElasticIp {
                    instance: id_ref(a.instance_id()),
                },
            );
            if let Some(assoc) = a.association_id() {
                ob.parts.insert("association".into(), assoc.to_string());
            }
            // Which instance exactly: a broker and its replacement share a key.
            if let Some(instance) = a.instance_id() {
                ob.parts.insert("instance_id".into(), instance.to_string());
            }
            ob.state = a.public_ip().map(str::to_string);
            Some(ob)
        })
        .collect())
}

/// A machine image, as far as launching needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub id: String,
    pub name: String,
    pub root_device: String,
}

/// The id of the AWS-managed prefix list `name` in this region (e.g.
/// `com.amazonaws.us-east-1.route53-healthchecks`).
pub async fn managed_prefix_list(c: &Client, name: &str) -> Result<String, CloudError> {
    let resp = c
        .describe_managed_prefix_lists()
        .filters(filter("prefix-list-name", name))
        .send()
        .await
        .op("DescribeManagedPrefixLists")?;
    resp.prefix_lists()
        .iter()
        .find(|l| l.prefix_list_name() == Some(name) && l.owner_id() == Some("AWS"))
        .and_then(|l| l.prefix_list_id())
        .map(str::to_string)
        .ok_or_else(|| {
            CloudError::new(
                "DescribeManagedPrefixLists",
                format!("no AWS-managed prefix list `{name}` in this region"),
            )
        })
}

/// The region's availability zones (not Local or Wavelength Zones) that are available and
/// offer `instance_type`, by name. A zone may lack an instance type (c6i is missing from
/// some older zones), and RunInstances fails there only when a broker lands in it.
pub async fn zones_offering(c: &Client, instance_type: &str) -> Result<Vec<String>, CloudError> {
    let zones = c
        .describe_availability_zones()
        .filters(filter("zone-type", "availability-zone"))
        .filters(filter("state", "available"))
        .send()
        .await
        .op("DescribeAvailabilityZones")?;
    let offered = c
        .describe_instance_type_offerings()
        .location_type(aws_sdk_ec2::types::LocationType::AvailabilityZone)
        .filters(filter("instance-type", instance_type))
        .send()
        .await
        .op("DescribeInstanceTypeOfferings")?;
    let offered: BTreeSet<&str> = offered
        .instance_type_offerings()
        .iter()
        .filter_map(|o| o.location())
        .collect();
    let mut names: Vec<String> = zones
        .availability_zones()
        .iter()
        .filter_map(|z| z.zone_name())
        .filter(|z| offered.contains(z))
        .map(str::to_string)
        .collect();
    names.sort();
    Ok(names)
}

/// Every image `ami` selects, newest first (an explicit id: that one image).
pub async fn matching_images(c: &Client, ami: &Ami) -> Result<Vec<Image>, CloudError> {
    let req = match ami {
        Ami::Id(a) => c.describe_images().image_ids(&a.id),
        // Deprecated images too: the one running brokers use may be deprecated by now, and
        // must still count as selected (or every broker would be planned for replacement).
        Ami::Lookup(l) => c
            .describe_images()
            .owners(&l.owner)
            .filters(filter("name", &l.name))
            .include_deprecated(true),
    };
    let resp = req.send().await.op("DescribeImages")?;
    let mut found: Vec<_> = resp
        .images()
        .iter()
        .filter(|i| i.image_id().is_some())
        .collect();
    found.sort_by(|a, b| {
        b.creation_date()
            .unwrap_or_default()
            .cmp(a.creation_date().unwrap_or_default())
    });
    let images: Vec<Image> = found
        .into_iter()
        .map(|i| Image {
            id: i.image_id().unwrap_or_default().to_string(),
            name: i.name().unwrap_or_default().to_string(),
            root_device: i.root_device_name().unwrap_or("/dev/xvda").to_string(),
        })
        .collect();
    if images.is_empty() {
        return Err(CloudError::new(
            "DescribeImages",
            match ami {
                Ami::Id(a) => format!("image {} does not exist in this region", a.id),
                Ami::Lookup(l) => format!(
                    "no image owned by {} matches `{}` in this region",
                    l.owner, l.name
                ),
            },
        ));
    }
    Ok(images)
}

fn spec_mismatch(d: &Desired) -> CloudError {
    CloudError::new("apply", format!("{}: spec does not match its kind", d.key))
}

/// Sends a create of `d` that AWS does not make idempotent (it takes no client token) so that
/// a lost answer does not leave a second resource: what the attempt may have made is looked
/// for by the ownership tags the create carried.
async fn create_once<F, Fut>(c: &Client, d: &Desired, send: F) -> Result<String, CloudError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<String, CloudError>>,
{
    super::retries::once_or_found(send, || already_created(c, d)).await
}

/// The id of the resource the stack owns under `d`'s key, if AWS lists one.
async fn already_created(c: &Client, d: &Desired) -> Result<Option<String>, CloudError> {
    let tag = |t: &str| d.tags.get(t).cloned().unwrap_or_default();
    let o = Owner {
        stack: tag(TAG_STACK),
        region: tag(TAG_REGION),
    };
    let found = match d.key.kind {
        Kind::Vpc => vpcs(c, &o).await?,
        Kind::Subnet => subnets(c, &o).await?,
        Kind::InternetGateway => internet_gateways(c, &o).await?,
        Kind::SecurityGroup => security_groups(c, &o).await?,
        Kind::CustomerGateway => customer_gateways(c, &o).await?,
        Kind::VpnGateway => vpn_gateways(c, &o).await?,
        Kind::ElasticIp => elastic_ips(c, &o).await?,
        Kind::RouteTable => route_tables(c, &o).await?,
        _ => discover(c, &o).await?,
    };
    Ok(found.into_iter().find(|f| f.key == d.key).map(|f| f.id))
}

pub async fn create(c: &Client, d: &Desired, ids: &Ids) -> Result<Observed, CloudError> {
    let eventual = Duration::from_secs(60);
    let id = match &d.spec {
        Spec::Vpc {
            cidr,
            dns_hostnames,
        } => {
            let id = create_once(c, d, || async {
                let r = c
                    .create_vpc()
                    .cidr_block(cidr)
                    .tag_specifications(tag_spec(ResourceType::Vpc, &d.tags))
                    .customize()
                    .config_override(super::retries::no_blind_repeat())
                    .send()
                    .await
                    .op("CreateVpc")?;
                r.vpc()
                    .and_then(|v| v.vpc_id())
                    .map(str::to_string)
                    .ok_or_else(|| missing("CreateVpc", "VpcId"))
            })
            .await?;
            set_dns_hostnames(c, &id, *dns_hostnames).await?;
            id
        }
        Spec::Subnet {
            vpc,
            zone,
            cidr,
            public_ip_on_launch,
        } => {
            let vpc = resolve(ids, vpc)?;
            let id = create_once(c, d, || async {
                let r = retry(eventual, CloudError::is_eventual, || async {
                    c.create_subnet()
                        .vpc_id(&vpc)
                        .availability_zone(zone)
                        .cidr_block(cidr)
                        .tag_specifications(tag_spec(ResourceType::Subnet, &d.tags))
                        .customize()
                        .config_override(super::retries::no_blind_repeat())
                        .send()
                        .await
                        .op("CreateSubnet")
                })
                .await?;
                r.subnet()
                    .and_then(|s| s.subnet_id())
                    .map(str::to_string)
                    .ok_or_else(|| missing("CreateSubnet", "SubnetId"))
            })
            .await?;
            set_public_ip_on_launch(c, &id, *public_ip_on_launch).await?;
            id
        }
        Spec::InternetGateway { vpc } => {
            let vpc = resolve(ids, vpc)?;
            let id = create_once(c, d, || async {
                let r = c
                    .create_internet_gateway()
                    .tag_specifications(tag_spec(ResourceType::InternetGateway, &d.tags))
                    .customize()
                    .config_override(super::retries::no_blind_repeat())
                    .send()
                    .await
                    .op("CreateInternetGateway")?;
                r.internet_gateway()
                    .and_then(|g| g.internet_gateway_id())
                    .map(str::to_string)
                    .ok_or_else(|| missing("CreateInternetGateway", "InternetGatewayId"))
            })
            .await?;
            attach_igw(c, &id, &vpc).await?;
            id
        }
        Spec::SecurityGroup {
            vpc,
            group_name,
            description,
            ingress,
        } => {
            let vpc = resolve(ids, vpc)?;
            let id = create_once(c, d, || async {
                let r = retry(eventual, CloudError::is_eventual, || async {
                    c.create_security_group()
                        .vpc_id(&vpc)
                        .group_name(group_name)
                        .description(description)
                        .tag_specifications(tag_spec(ResourceType::SecurityGroup, &d.tags))
                        .customize()
                        .config_override(super::retries::no_blind_repeat())
                        .send()
                        .await
                        .op("CreateSecurityGroup")
                })
                .await?;
                r.group_id()
                    .map(str::to_string)
                    .ok_or_else(|| missing("CreateSecurityGroup", "GroupId"))
            })
            .await?;
            authorize(c, &id, ingress).await?;
            id
        }
        Spec::CustomerGateway { ip, bgp_asn } => {
            create_once(c, d, || async {
                // AWS takes 4-byte ASNs above 2^31-1 as BgpAsnExtended only.
                let request = c
                    .create_customer_gateway()
                    .r#type(GatewayType::Ipsec1)
                    .ip_address(ip);
                let request = match i32::try_from(*bgp_asn) {
                    Ok(asn) => request.bgp_asn(asn),
                    Err(_) => request.bgp_asn_extended(i64::from(*bgp_asn)),
                };
                let r = request
                    .tag_specifications(tag_spec(ResourceType::CustomerGateway, &d.tags))
                    .customize()
                    .config_override(super::retries::no_blind_repeat())
                    .send()
                    .await
                    .op("CreateCustomerGateway")?;
                r.customer_gateway()
                    .and_then(|g| g.customer_gateway_id())
                    .map(str::to_string)
                    .ok_or_else(|| missing("CreateCustomerGateway", "CustomerGatewayId"))
            })
            .await?
        }
        Spec::VpnGateway { vpc } => {
            let vpc = resolve(ids, vpc)?;
            let id = create_once(c, d, || async {
                let r = c
                    .create_vpn_gateway()
                    .r#type(GatewayType::Ipsec1)
                    .tag_specifications(tag_spec(ResourceType::VpnGateway, &d.tags))
                    .customize()
                    .config_override(super::retries::no_blind_repeat())
                    .send()
                    .await
                    .op("CreateVpnGateway")?;
                r.vpn_gateway()
                    .and_then(|g| g.vpn_gateway_id())
                    .map(str::to_string)
                    .ok_or_else(|| missing("CreateVpnGateway", "VpnGatewayId"))
            })
            .await?;
            attach_vgw(c, &id, &vpc).await?;
            id
        }
        Spec::VpnConnection {
            customer_gateway,
            vpn_gateway,
            static_routes_only,
            routes,
            tunnels,
            ..
        } => {
            let (cgw, vgw) = (resolve(ids, customer_gateway)?, resolve(ids, vpn_gateway)?);
            let keys = match &d.payload {
                Payload::TunnelKeys(keys) => keys.as_slice(),
                _ => &[],
            };
            let mut options = VpnConnectionOptionsSpecification::builder()
                .static_routes_only(*static_routes_only);
            for (i, t) in tunnels.iter().enumerate() {
                options = options.tunnel_options(tunnel_request(t, keys.get(i)));
            }
            let options = options.build();
            let r = retry(eventual, CloudError::is_eventual, || async {
                c.create_vpn_connection()
                    .r#type("ipsec.1")
                    .customer_gateway_id(&cgw)
                    .vpn_gateway_id(&vgw)
                    .options(options.clone())
                    .tag_specifications(tag_spec(ResourceType::VpnConnection, &d.tags))
                    .send()
                    .await
                    .op("CreateVpnConnection")
            })
            .await?;
            let id = r
                .vpn_connection()
                .and_then(|v| v.vpn_connection_id())
                .ok_or_else(|| missing("CreateVpnConnection", "VpnConnectionId"))?
                .to_string();
            for cidr in routes {
                vpn_route(c, &id, cidr, true).await?;
            }
            id
        }
        Spec::RouteTable {
            vpc,
            routes,
            propagating,
            subnets,
        } => {
            let vpc = resolve(ids, vpc)?;
            // CreateRouteTable takes a client token on AWS (since 2024); moto ignores it, so
            // it goes like the creates that take none.
            let id = create_once(c, d, || async {
                let r = retry(eventual, CloudError::is_eventual, || async {
                    c.create_route_table()
                        .vpc_id(&vpc)
                        .tag_specifications(tag_spec(ResourceType::RouteTable, &d.tags))
                        .customize()
                        .config_override(super::retries::no_blind_repeat())
                        .send()
                        .await
                        .op("CreateRouteTable")
                })
                .await?;
                r.route_table()
                    .and_then(|t| t.route_table_id())
                    .map(str::to_string)
                    .ok_or_else(|| missing("CreateRouteTable", "RouteTableId"))
            })
            .await?;
            for route in routes {
                put_route(
                    c,
                    &id,
                    &route.destination,
                    &resolve(ids, &route.target)?,
                    false,
                )
                .await?;
            }
            for vgw in propagating {
                propagation(c, &id, &resolve(ids, vgw)?, true).await?;
            }
            for subnet in subnets {
                associate(c, &id, &resolve(ids, subnet)?).await?;
            }
            id
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
            let Payload::Launch {
                user_data,
                root_device,
                block_devices,
                client_token,
            } = &d.payload
            else {
                return Err(spec_mismatch(d));
            };
            let subnet = resolve(ids, subnet)?;
            let groups: Vec<String> = security_groups
                .iter()
                .map(|g| resolve(ids, g))
                .collect::<Result<_, _>>()?;
            let profile = resolve(ids, profile)?;
            let mappings: Vec<BlockDeviceMapping> = block_devices
                .iter()
                .map(|b| {
                    let device = if b.device == "root" {
                        root_device.clone()
                    } else {
                        b.device.clone()
                    };
                    BlockDeviceMapping::builder()
                        .device_name(device)
                        .ebs(
                            EbsBlockDevice::builder()
                                .volume_type(VolumeType::from(b.volume_type.as_str()))
                                .volume_size(i32::try_from(b.size_gib).unwrap_or(i32::MAX))
                                .set_iops(b.iops.and_then(|i| i32::try_from(i).ok()))
                                .set_throughput(
                                    b.throughput_mibps.and_then(|t| i32::try_from(t).ok()),
                                )
                                .encrypted(true)
                                .delete_on_termination(true)
                                .build(),
                        )
                        .build()
                })
                .collect();
            let user_data = crate::model::user_data::encode_base64(user_data);
            // A retried RunInstances returns the same instance on AWS. Convergence still rests
            // on discovery by tag first (moto ignores client tokens).
            let token = client_token;
            let r = retry(Duration::from_secs(90), CloudError::is_eventual, || async {
                c.run_instances()
                    .image_id(image)
                    .instance_type(InstanceType::from(instance_type.as_str()))
                    .min_count(1)
                    .max_count(1)
                    .subnet_id(&subnet)
                    .set_security_group_ids(Some(groups.clone()))
                    .iam_instance_profile(
                        IamInstanceProfileSpecification::builder()
                            .arn(&profile)
                            .build(),
                    )
                    .user_data(&user_data)
                    .metadata_options(
                        InstanceMetadataOptionsRequest::builder()
                            .http_tokens(if *imdsv2_required {
                                HttpTokensState::Required
                            } else {
                                HttpTokensState::Optional
                            })
                            .http_endpoint(InstanceMetadataEndpointState::Enabled)
                            .http_put_response_hop_limit(1)
                            .build(),
                    )
                    .set_block_device_mappings(Some(mappings.clone()))
                    .tag_specifications(tag_spec(ResourceType::Instance, &d.tags))
                    .tag_specifications(tag_spec(ResourceType::Volume, &d.tags))
                    .client_token(token)
                    .send()
                    .await
                    .op("RunInstances")
            })
            .await?;
            let id = r
                .instances()
                .first()
                .and_then(|i| i.instance_id())
                .ok_or_else(|| missing("RunInstances", "InstanceId"))?
                .to_string();
            wait_instance(c, &id, "running").await?;
            id
        }
        Spec::ElasticIp { instance } => {
            let instance = resolve(ids, instance)?;
            let id = create_once(c, d, || async {
                let r = c
                    .allocate_address()
                    .domain(DomainType::Vpc)
                    .tag_specifications(tag_spec(ResourceType::ElasticIp, &d.tags))
                    .customize()
                    .config_override(super::retries::no_blind_repeat())
                    .send()
                    .await
                    .op("AllocateAddress")?;
                r.allocation_id()
                    .map(str::to_string)
                    .ok_or_else(|| missing("AllocateAddress", "AllocationId"))
            })
            .await?;
            associate_address(c, &id, &instance).await?;
            id
        }
        Spec::IamRole { .. }
        | Spec::InstanceProfile { .. }
        | Spec::SsmParameter { .. }
        | Spec::Certificate { .. } => {
            return Err(spec_mismatch(d));
        }
    };
    Ok(Observed {
        key: d.key.clone(),
        id,
        spec: d.spec.clone(),
        parts: BTreeMap::new(),
        state: None,
    })
}

pub async fn update(
    c: &Client,
    d: &Desired,
    before: &Observed,
    ids: &Ids,
) -> Result<Observed, CloudError> {
    let id = before.id.as_str();
    match (&d.spec, &before.spec) {
        (Spec::Vpc { dns_hostnames, .. }, Spec::Vpc { .. }) => {
            set_dns_hostnames(c, id, *dns_hostnames).await?
        }
        (
            Spec::Subnet {
                public_ip_on_launch,
                ..
            },
            Spec::Subnet { .. },
        ) => set_public_ip_on_launch(c, id, *public_ip_on_launch).await?,
        (Spec::SecurityGroup { ingress, .. }, Spec::SecurityGroup { ingress: old, .. }) => {
            let want: BTreeSet<&Ingress> = ingress.iter().collect();
            let have: BTreeSet<&Ingress> = old.iter().collect();
            let revoke: Vec<Ingress> = have.difference(&want).map(|i| (*i).clone()).collect();
            let add: Vec<Ingress> = want.difference(&have).map(|i| (*i).clone()).collect();
            if !revoke.is_empty() {
                c.revoke_security_group_ingress()
                    .group_id(id)
                    .set_ip_permissions(Some(permissions(id, &revoke, false)))
                    .send()
                    .await
                    .op("RevokeSecurityGroupIngress")?;
            }
            authorize(c, id, &add).await?;
        }
        (Spec::InternetGateway { vpc }, Spec::InternetGateway { vpc: old }) => {
            if let Ref::Id(old) = old
                && !old.is_empty()
            {
                c.detach_internet_gateway()
                    .internet_gateway_id(id)
                    .vpc_id(old)
                    .send()
                    .await
                    .op("DetachInternetGateway")?;
            }
            attach_igw(c, id, &resolve(ids, vpc)?).await?;
        }
        (Spec::VpnGateway { vpc }, Spec::VpnGateway { .. }) => {
            attach_vgw(c, id, &resolve(ids, vpc)?).await?
        }
        (Spec::VpnConnection { routes, .. }, Spec::VpnConnection { routes: old, .. }) => {
            for cidr in old.iter().filter(|r| !routes.contains(r)) {
                vpn_route(c, id, cidr, false).await?;
            }
            for cidr in routes.iter().filter(|r| !old.contains(r)) {
                vpn_route(c, id, cidr, true).await?;
            }
            // Tunnel options are `upgrade`'s (one tunnel at a time, behind checks).
        }
        (
            Spec::RouteTable {
                routes,
                propagating,
                subnets,
                ..
            },
            Spec::RouteTable {
                routes: old_routes,
                propagating: old_prop,
                subnets: old_subnets,
                ..
            },
        ) => {
            let resolve_all = |refs: &[Ref]| {
                refs.iter()
                    .map(|r| resolve(ids, r))
                    .collect::<Result<BTreeSet<_>, _>>()
            };
            let want: BTreeMap<&str, String> = routes
                .iter()
                .map(|r| Ok((r.destination.as_str(), resolve(ids, &r.target)?)))
                .collect::<Result<_, CloudError>>()?;
            let have: BTreeMap<&str, String> = old_routes
                .iter()
                .map(|r| {
                    (
                        r.destination.as_str(),
                        resolve(ids, &r.target).unwrap_or_default(),
                    )
                })
                .collect();
            for dest in have.keys().filter(|d| !want.contains_key(*d)) {
                c.delete_route()
                    .route_table_id(id)
                    .destination_cidr_block(*dest)
                    .send()
                    .await
                    .op("DeleteRoute")?;
            }
            for (dest, target) in &want {
                match have.get(dest) {
                    Some(t) if t == target => {}
                    Some(_) => put_route(c, id, dest, target, true).await?,
                    None => put_route(c, id, dest, target, false).await?,
                }
            }
            let (want_p, have_p) = (
                resolve_all(propagating)?,
                resolve_all(old_prop).unwrap_or_default(),
            );
            for vgw in have_p.difference(&want_p) {
                propagation(c, id, vgw, false).await?;
            }
            for vgw in want_p.difference(&have_p) {
                propagation(c, id, vgw, true).await?;
            }
            let want_s = resolve_all(subnets)?;
            let have_s: BTreeSet<String> = old_subnets
                .iter()
                .filter_map(|r| resolve(ids, r).ok())
                .collect();
            for (part, assoc) in &before.parts {
                if let Some(subnet) = part.strip_prefix("association:")
                    && !want_s.contains(subnet)
                {
                    c.disassociate_route_table()
                        .association_id(assoc)
                        .send()
                        .await
                        .op("DisassociateRouteTable")?;
                }
            }
            for subnet in want_s.difference(&have_s) {
                associate(c, id, subnet).await?;
            }
        }
        (
            Spec::Instance {
                imdsv2_required: true,
                ..
            },
            Spec::Instance {
                imdsv2_required: false,
                ..
            },
        ) => {
            c.modify_instance_metadata_options()
                .instance_id(id)
                .http_tokens(HttpTokensState::Required)
                .send()
                .await
                .op("ModifyInstanceMetadataOptions")?;
        }
        (Spec::ElasticIp { instance }, Spec::ElasticIp { .. }) => {
            associate_address(c, id, &resolve(ids, instance)?).await?
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
        id: id.to_string(),
        spec: d.spec.clone(),
        parts: BTreeMap::new(),
        state: None,
    })
}

pub async fn delete(c: &Client, o: &Observed) -> Result<(), CloudError> {
    let id = o.id.as_str();
    // What is gone already (a repeat of a call whose answer was lost finds its work done).
    let ignore_missing = |r: Result<(), CloudError>| match r {
        Err(e)
            if e.code
                .as_deref()
                .is_some_and(|c| c.ends_with(".NotFound") || c == "Gateway.NotAttached") =>
        {
            Ok(())
        }
        other => other,
    };
    let r = match &o.spec {
        Spec::Vpc { .. } => c
            .delete_vpc()
            .vpc_id(id)
            .send()
            .await
            .op("DeleteVpc")
            .map(drop),
        Spec::Subnet { .. } => c
            .delete_subnet()
            .subnet_id(id)
            .send()
            .await
            .op("DeleteSubnet")
            .map(drop),
        Spec::InternetGateway { vpc } => {
            if let Ref::Id(v) | Ref::Key(Key { name: v, .. }) = vpc
                && !v.is_empty()
            {
                for a in c
                    .describe_internet_gateways()
                    .internet_gateway_ids(id)
                    .send()
                    .await
                    .op("DescribeInternetGateways")?
                    .internet_gateways()
                    .iter()
                    .flat_map(|g| g.attachments())
                {
                    if let Some(vpc) = a.vpc_id() {
                        ignore_missing(
                            c.detach_internet_gateway()
                                .internet_gateway_id(id)
                                .vpc_id(vpc)
                                .send()
                                .await
                                .op("DetachInternetGateway")
                                .map(drop),
                        )?;
                    }
                }
            }
            c.delete_internet_gateway()
                .internet_gateway_id(id)
                .send()
                .await
                .op("DeleteInternetGateway")
                .map(drop)
        }
        Spec::SecurityGroup { .. } => c
            .delete_security_group()
            .group_id(id)
            .send()
            .await
            .op("DeleteSecurityGroup")
            .map(drop),
        Spec::CustomerGateway { .. } => c
            .delete_customer_gateway()
            .customer_gateway_id(id)
            .send()
            .await
            .op("DeleteCustomerGateway")
            .map(drop),
        Spec::VpnGateway { .. } => {
            let gw = c
                .describe_vpn_gateways()
                .vpn_gateway_ids(id)
                .send()
                .await
                .op("DescribeVpnGateways")?;
            for a in gw.vpn_gateways().iter().flat_map(|g| g.vpc_attachments()) {
                if let (Some(vpc), Some("attached" | "attaching")) =
                    (a.vpc_id(), a.state().map(|s| s.as_str()))
                {
                    ignore_missing(
                        c.detach_vpn_gateway()
                            .vpn_gateway_id(id)
                            .vpc_id(vpc)
                            .send()
                            .await
                            .op("DetachVpnGateway")
                            .map(drop),
                    )?;
                }
            }
            // AWS refuses to delete a gateway that is still detaching.
            poll_until(
                "DescribeVpnGateways",
                &format!("{id} not detached"),
                ATTACH_WAIT,
                || async {
                    let gw = c
                        .describe_vpn_gateways()
                        .vpn_gateway_ids(id)
                        .send()
                        .await
                        .op("DescribeVpnGateways")?;
                    Ok(gw
                        .vpn_gateways()
                        .iter()
                        .flat_map(|g| g.vpc_attachments())
                        .filter_map(|a| a.state().map(|s| s.as_str().to_string()))
                        .find(|s| s != "detached"))
                },
            )
            .await?;
            c.delete_vpn_gateway()
                .vpn_gateway_id(id)
                .send()
                .await
                .op("DeleteVpnGateway")
                .map(drop)
        }
        Spec::VpnConnection { .. } => {
            c.delete_vpn_connection()
                .vpn_connection_id(id)
                .send()
                .await
                .op("DeleteVpnConnection")?;
            // `deleting` for minutes on AWS: the gateway it uses cannot go before.
            poll_until(
                "DescribeVpnConnections",
                &format!("{id} not deleted"),
                ATTACH_WAIT,
                || async { Ok(vpn_state(c, id).await?.filter(|s| s != "deleted")) },
            )
            .await
        }
        Spec::RouteTable { .. } => {
            // A subnet's association outlives the subnet on moto and blocks the delete on AWS.
            for assoc in o.parts.values() {
                ignore_missing(
                    c.disassociate_route_table()
                        .association_id(assoc)
                        .send()
                        .await
                        .op("DisassociateRouteTable")
                        .map(drop),
                )?;
            }
            c.delete_route_table()
                .route_table_id(id)
                .send()
                .await
                .op("DeleteRouteTable")
                .map(drop)
        }
        Spec::Instance { .. } => {
            c.terminate_instances()
                .instance_ids(id)
                .send()
                .await
                .op("TerminateInstances")?;
            // Its security groups, subnet and Elastic IP are free only once it is gone.
            wait_instance(c, id, "terminated").await
        }
        Spec::ElasticIp { .. } => {
            if let Some(assoc) = o.parts.get("association") {
                ignore_missing(
                    c.disassociate_address()
                        .association_id(assoc)
                        .send()
                        .await
                        .op("DisassociateAddress")
                        .map(drop),
                )?;
            }
            c.release_address()
                .allocation_id(id)
                .send()
                .await
                .op("ReleaseAddress")
                .map(drop)
        }
        Spec::IamRole { .. }
        | Spec::InstanceProfile { .. }
        | Spec::SsmParameter { .. }
        | Spec::Certificate { .. } => Err(CloudError::new(
            "delete",
            format!("{} is not an EC2 resource", o.key),
        )),
    };
    ignore_missing(r)
}

/// Changes one tunnel's options and waits until the connection is `available` again. AWS
/// takes that tunnel down while it applies them (the other carries the traffic) and refuses a
/// second modification meanwhile: callers change one tunnel at a time, checking both are up.
pub async fn modify_tunnel(
    c: &Client,
    id: &str,
    outside_ip: &str,
    want: &TunnelSpec,
    key: Option<&crate::spec::secret::Secret>,
) -> Result<(), CloudError> {
    let options = aws_sdk_ec2::types::ModifyVpnTunnelOptionsSpecification::builder()
        .set_tunnel_inside_cidr(want.inside_cidr.clone())
        .set_pre_shared_key(key.map(|k| k.expose().to_string()));
    let options = with_algorithms!(options, want);
    c.modify_vpn_tunnel_options()
        .vpn_connection_id(id)
        .vpn_tunnel_outside_ip_address(outside_ip)
        .tunnel_options(options.build())
        .send()
        .await
        .op("ModifyVpnTunnelOptions")?;
    wait_vpn_available(c, id).await
}

/// A VPN connection's tunnels as AWS's telemetry reports them.
fn telemetry(v: &aws_sdk_ec2::types::VpnConnection) -> Vec<TunnelState> {
    v.vgw_telemetry()
        .iter()
        .map(|t| TunnelState {
            outside_ip: t.outside_ip_address().unwrap_or("?").to_string(),
            status: t
                .status()
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|| "UNKNOWN".into()),
        })
        .collect()
}

/// A VPN connection's state and its tunnels' telemetry.
pub async fn vpn_tunnels(c: &Client, id: &str) -> Result<(String, Vec<TunnelState>), CloudError> {
    let r = c
        .describe_vpn_connections()
        .vpn_connection_ids(id)
        .send()
        .await
        .op("DescribeVpnConnections")?;
    let Some(v) = r.vpn_connections().first() else {
        return Ok(("gone".into(), Vec::new()));
    };
    let tunnels = telemetry(v);
    Ok((
        v.state()
            .map(|s| s.as_str())
            .unwrap_or("unknown")
            .to_string(),
        tunnels,
    ))
}

/// Polls `check` (never a blind sleep), with backoff, until it answers the awaited state
/// (`Ok(None)`) or `budget` passes (the error names `what` and the last state seen).
async fn poll_until<F, Fut>(
    op: &str,
    what: &str,
    budget: Duration,
    mut check: F,
) -> Result<(), CloudError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<String>, CloudError>>,
{
    let start = std::time::Instant::now();
    let mut delay = Duration::from_millis(250);
    loop {
        let Some(now) = check().await? else {
            return Ok(());
        };
        if start.elapsed() > budget {
            return Err(CloudError::new(
                op,
                format!("{what} after {} s (now {now})", budget.as_secs()),
            ));
        }
        tokio::time::sleep(delay).await;
        // Every 2 s at most: an instance is `pending` for 5–20 s on AWS and the wait is on the
        // run's critical path, where a 10 s step overshot by up to 10 s. One Describe per
        // waiting resource every 2 s is far inside EC2's bucket (refilled at 20/s).
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// The state of a VPN connection (`None` once AWS no longer knows it).
async fn vpn_state(c: &Client, id: &str) -> Result<Option<String>, CloudError> {
    match c
        .describe_vpn_connections()
        .vpn_connection_ids(id)
        .send()
        .await
        .op("DescribeVpnConnections")
    {
        Ok(r) => Ok(r
            .vpn_connections()
            .first()
            .and_then(|v| v.state().map(|s| s.as_str().to_string()))),
        Err(e) if e.code.as_deref().is_some_and(|c| c.ends_with(".NotFound")) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Waits until the connection is `available` again (after a modification).
async fn wait_vpn_available(c: &Client, id: &str) -> Result<(), CloudError> {
    poll_until(
        "DescribeVpnConnections",
        &format!("{id} not available"),
        ATTACH_WAIT,
        || async {
            Ok(match vpn_state(c, id).await? {
                Some(s) if s == "available" => None,
                Some(s) => Some(s),
                None => Some("gone".into()),
            })
        },
    )
    .await
}

async fn set_dns_hostnames(c: &Client, vpc: &str, on: bool) -> Result<(), CloudError> {
    retry(Duration::from_secs(60), CloudError::is_eventual, || async {
        c.modify_vpc_attribute()
            .vpc_id(vpc)
            .enable_dns_hostnames(AttributeBooleanValue::builder().value(on).build())
            .send()
            .await
            .op("ModifyVpcAttribute")
            .map(drop)
    })
    .await
}

async fn set_public_ip_on_launch(c: &Client, subnet: &str, on: bool) -> Result<(), CloudError> {
    retry(Duration::from_secs(60), CloudError::is_eventual, || async {
        c.modify_subnet_attribute()
            .subnet_id(subnet)
            .map_public_ip_on_launch(AttributeBooleanValue::builder().value(on).build())
            .send()
            .await
            .op("ModifySubnetAttribute")
            .map(drop)
    })
    .await
}

fn missing(op: &str, field: &str) -> CloudError {
    CloudError::new(op, format!("the answer has no {field}"))
}

async fn attach_igw(c: &Client, igw: &str, vpc: &str) -> Result<(), CloudError> {
    retry(Duration::from_secs(60), CloudError::is_eventual, || async {
        c.attach_internet_gateway()
            .internet_gateway_id(igw)
            .vpc_id(vpc)
            .send()
            .await
            .op("AttachInternetGateway")
            .map(drop)
    })
    .await
}

/// Attaches a VPN gateway and waits until AWS reports it attached (routes to it need that).
async fn attach_vgw(c: &Client, vgw: &str, vpc: &str) -> Result<(), CloudError> {
    retry(Duration::from_secs(60), CloudError::is_eventual, || async {
        c.attach_vpn_gateway()
            .vpn_gateway_id(vgw)
            .vpc_id(vpc)
            .send()
            .await
            .op("AttachVpnGateway")
            .map(drop)
    })
    .await?;
    let start = std::time::Instant::now();
    loop {
        let r = c
            .describe_vpn_gateways()
            .vpn_gateway_ids(vgw)
            .send()
            .await
            .op("DescribeVpnGateways")?;
        let attached = r
            .vpn_gateways()
            .iter()
            .flat_map(|g| g.vpc_attachments())
            .any(|a| a.vpc_id() == Some(vpc) && a.state().map(|s| s.as_str()) == Some("attached"));
        if attached {
            return Ok(());
        }
        if start.elapsed() > ATTACH_WAIT {
            return Err(CloudError::new(
                "AttachVpnGateway",
                format!(
                    "{vgw} not attached to {vpc} after {} s",
                    ATTACH_WAIT.as_secs()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn vpn_route(c: &Client, vpn: &str, cidr: &str, create: bool) -> Result<(), CloudError> {
    retry(
        Duration::from_secs(120),
        CloudError::is_eventual,
        || async {
            if create {
                c.create_vpn_connection_route()
                    .vpn_connection_id(vpn)
                    .destination_cidr_block(cidr)
                    .send()
                    .await
                    .op("CreateVpnConnectionRoute")
                    .map(drop)
            } else {
                c.delete_vpn_connection_route()
                    .vpn_connection_id(vpn)
                    .destination_cidr_block(cidr)
                    .send()
                    .await
                    .op("DeleteVpnConnectionRoute")
                    .map(drop)
            }
        },
    )
    .await
}

async fn put_route(
    c: &Client,
    table: &str,
    dest: &str,
    target: &str,
    replace: bool,
) -> Result<(), CloudError> {
    retry(Duration::from_secs(60), CloudError::is_eventual, || async {
        if replace {
            c.replace_route()
                .route_table_id(table)
                .destination_cidr_block(dest)
                .gateway_id(target)
                .send()
                .await
                .op("ReplaceRoute")
                .map(drop)
        } else {
            c.create_route()
                .route_table_id(table)
                .destination_cidr_block(dest)
                .gateway_id(target)
                .send()
                .await
                .op("CreateRoute")
                .map(drop)
        }
    })
    .await
}

async fn propagation(c: &Client, table: &str, vgw: &str, enable: bool) -> Result<(), CloudError> {
    retry(Duration::from_secs(60), CloudError::is_eventual, || async {
        if enable {
            c.enable_vgw_route_propagation()
                .route_table_id(table)
                .gateway_id(vgw)
                .send()
                .await
                .op("EnableVgwRoutePropagation")
                .map(drop)
        } else {
            c.disable_vgw_route_propagation()
                .route_table_id(table)
                .gateway_id(vgw)
                .send()
                .await
                .op("DisableVgwRoutePropagation")
                .map(drop)
        }
    })
    .await
}

async fn associate(c: &Client, table: &str, subnet: &str) -> Result<(), CloudError> {
    retry(Duration::from_secs(60), CloudError::is_eventual, || async {
        c.associate_route_table()
            .route_table_id(table)
            .subnet_id(subnet)
            .send()
            .await
            .op("AssociateRouteTable")
            .map(drop)
    })
    .await
}

async fn associate_address(c: &Client, allocation: &str, instance: &str) -> Result<(), CloudError> {
    retry(
        Duration::from_secs(120),
        CloudError::is_eventual,
        || async {
            c.associate_address()
                .allocation_id(allocation)
                .instance_id(instance)
                .allow_reassociation(true)
                .send()
                .await
                .op("AssociateAddress")
                .map(drop)
        },
    )
    .await
}

/// The rules as AWS takes them. A revoke names a rule by its shape and source only (AWS
/// ignores descriptions there; moto fails to match a group pair sent with one).
fn permissions(group: &str, rules: &[Ingress], descriptions: bool) -> Vec<IpPermission> {
    rules
        .iter()
        .map(|r| {
            let b = match &r.other {
                None => IpPermission::builder()
                    .ip_protocol("tcp")
                    .from_port(i32::from(r.port))
                    .to_port(i32::from(r.port)),
                Some(shape) => IpPermission::builder()
                    .ip_protocol(&shape.protocol)
                    .set_from_port(shape.from_port)
                    .set_to_port(shape.to_port),
            };
            let d = descriptions.then(|| r.description.clone());
            match &r.from {
                IngressSource::Cidr(cidr) if cidr.contains(':') => b.ipv6_ranges(
                    Ipv6Range::builder()
                        .cidr_ipv6(cidr)
                        .set_description(d.clone())
                        .build(),
                ),
                IngressSource::PrefixList(id) => b.prefix_list_ids(
                    PrefixListId::builder()
                        .prefix_list_id(id)
                        .set_description(d.clone())
                        .build(),
                ),
                IngressSource::Cidr(cidr) => b.ip_ranges(
                    IpRange::builder()
                        .cidr_ip(cidr)
                        .set_description(d.clone())
                        .build(),
                ),
                IngressSource::Itself => b.user_id_group_pairs(
                    UserIdGroupPair::builder()
                        .group_id(group)
                        .set_description(d.clone())
                        .build(),
                ),
                IngressSource::Group(other) => b.user_id_group_pairs(
                    UserIdGroupPair::builder()
                        .group_id(other)
                        .set_description(d.clone())
                        .build(),
                ),
            }
            .build()
        })
        .collect()
}

async fn authorize(c: &Client, group: &str, rules: &[Ingress]) -> Result<(), CloudError> {
    if rules.is_empty() {
        return Ok(());
    }
    retry(Duration::from_secs(60), CloudError::is_eventual, || async {
        c.authorize_security_group_ingress()
            .group_id(group)
            .set_ip_permissions(Some(permissions(group, rules, true)))
            .send()
            .await
            .op("AuthorizeSecurityGroupIngress")
            .map(drop)
    })
    .await
}

/// Polls DescribeInstances (never a blind sleep) until the instance reaches `state`.
pub(super) async fn user_data(c: &Client, id: &str) -> Result<Vec<u8>, CloudError> {
    use base64::Engine as _;
    let r = c
        .describe_instance_attribute()
        .instance_id(id)
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
        .send()
        .await
        .op("DescribeInstanceAttribute")?;
    let encoded = r.user_data().and_then(|v| v.value()).unwrap_or_default();
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| CloudError::new("DescribeInstanceAttribute", format!("{id}: user-data: {e}")))
}

/// Tags instance `id` with `key` = `value`.
pub(super) async fn tag_instance(
    c: &Client,
    id: &str,
    key: &str,
    value: &str,
) -> Result<(), CloudError> {
    c.create_tags()
        .resources(id)
        .tags(Tag::builder().key(key).value(value).build())
        .send()
        .await
        .op("CreateTags")
        .map(drop)
}

pub(super) async fn stop_instance(c: &Client, id: &str) -> Result<(), CloudError> {
    c.stop_instances()
        .instance_ids(id)
        .send()
        .await
        .op("StopInstances")?;
    wait_instance(c, id, "stopped").await
}

async fn wait_instance(c: &Client, id: &str, state: &str) -> Result<(), CloudError> {
    let start = std::time::Instant::now();
    let what = format!("{id} not {state}");
    poll_until("DescribeInstances", &what, INSTANCE_WAIT, || async {
        let now = match c
            .describe_instances()
            .instance_ids(id)
            .send()
            .await
            .op("DescribeInstances")
        {
            Ok(r) => r
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .find_map(|i| {
                    i.state()
                        .and_then(|s| s.name())
                        .map(|n| n.as_str().to_string())
                }),
            Err(e) if e.is_eventual() => None,
            Err(e) => return Err(e),
        };
        // A terminated instance may also vanish from DescribeInstances.
        let done = now.as_deref() == Some(state)
            || (state == "terminated" && now.is_none() && start.elapsed() > Duration::from_secs(5));
        Ok((!done).then(|| now.unwrap_or_else(|| "unknown".into())))
    })
    .await
}
