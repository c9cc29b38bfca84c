//! Desired state: what one gateway region file asks for, as resources.

use std::collections::BTreeMap;

use serde_json::json;

use crate::cloud::Image;
use crate::model::resources::{
    Actual, BlockDevice, Desired, Ingress, IngressSource, Key, Kind, Payload, Ref, Route, Spec,
    TAG_CLUSTER, TAG_LAUNCH, TunnelSpec, tags_for,
};
use crate::model::sha256_hex;
use crate::render::placeholder::SecretValues;
use crate::render::{self, Addressing, RenderError};
use crate::spec::BackendSpec;
use crate::spec::model::{
    CLUSTER_PORTS, DataVolume, GatewaySpec, PLAINTEXT_MQTT_PORT, PLAINTEXT_WEB_MQTT_PORT, Volume,
};
use crate::spec::secret::Secret;

/// Names shared by the desired state and discovery.
pub fn iam_name(stack: &str, region: &str) -> String {
    format!("gwctl-{stack}-{region}")
}

/// What desired-state building needs besides the specs: looked up (images) or read (secrets).
pub struct Inputs<'a> {
    pub backend: &'a BackendSpec,
    pub gateway: &'a GatewaySpec,
    pub broker_image: Image,
    /// Image of each support group, by group name.
    pub support_images: BTreeMap<String, Image>,
    /// AWS's prefix list of Route53 health checkers, for HTTP(S) checks of the health responder
    /// (`None` for TCP checks: nothing to open).
    pub health_checkers: Option<String>,
    pub secrets: SecretValues,
    /// The stack's public CA certificates (user-data carries them).
    pub cas: render::Cas,
    /// The stack CA's key, which issues the brokers' certificates at apply.
    pub stack_ca_key: Secret,
    /// The VPN tunnels' pre-shared keys, if the region file names them.
    pub tunnel_keys: Vec<Secret>,
}

fn k(kind: Kind, name: &str) -> Key {
    Key::new(kind, name)
}

fn r(kind: Kind, name: &str) -> Ref {
    Ref::Key(k(kind, name))
}

/// The image a group of instances runs: the one its running instances use while the region
/// file still selects it (so a new instance runs what the others run), else the newest
/// selected. The second value is a newer selected image: an upgrade to offer, not to apply.
/// `selected` is newest first; `None` when it is empty.
pub fn choose_image<'a>(
    selected: &'a [Image],
    running: &[String],
) -> Option<(&'a Image, Option<&'a Image>)> {
    let newest = selected.first()?;
    Some(match selected.iter().find(|i| running.contains(&i.id)) {
        Some(current) if current.id != newest.id => (current, Some(newest)),
        Some(current) => (current, None),
        None => (newest, None),
    })
}

/// The images of a region's instances of one group: named `<prefix><number>` (`broker-2`).
pub fn running_images(actual: &Actual, prefix: &str) -> Vec<String> {
    let of_group = |name: &str| {
        name.strip_prefix(prefix)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    actual
        .resources
        .iter()
        .filter(|o| o.key.kind == Kind::Instance && of_group(&o.key.name))
        .filter_map(|o| match &o.spec {
            Spec::Instance { image, .. } => Some(image.clone()),
            _ => None,
        })
        .collect()
}

pub fn gateway(inputs: &Inputs<'_>) -> Result<Vec<Desired>, RenderError> {
    let gw = inputs.gateway;
    let backend = inputs.backend;
    let stack = &backend.stack;
    let region = &gw.region;
    let mut common = backend.tags.clone();
    common.extend(gw.tags.clone());
    let tags = |key: &Key| tags_for(stack, region, &key.name, &key.to_string(), &common);
    let mut out = Vec::new();
    let push = |out: &mut Vec<Desired>, key: Key, spec: Spec, payload: Payload| {
        let t = tags(&key);
        out.push(Desired {
            key,
            spec,
            tags: t,
            payload,
            after: Vec::new(),
        });
    };

    // IAM: least privilege for the brokers.
    let iam = iam_name(stack, region);
    let prefix = render::ssm_prefix(stack, region);
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "ReadOwnSecrets", "Effect": "Allow",
             "Action": ["ssm:GetParameter", "ssm:GetParameters"],
             "Resource": format!("arn:aws:ssm:{region}:*:parameter{prefix}/*")},
            {"Sid": "PeerDiscovery", "Effect": "Allow",
             "Action": ["ec2:DescribeInstances"], "Resource": "*"}
        ]
    });
    push(
        &mut out,
        k(Kind::IamRole, "brokers"),
        Spec::IamRole {
            name: iam.clone(),
            policy: policy.to_string(),
        },
        Payload::None,
    );
    push(
        &mut out,
        k(Kind::InstanceProfile, "brokers"),
        Spec::InstanceProfile {
            name: iam,
            role: r(Kind::IamRole, "brokers"),
        },
        Payload::None,
    );

    // Secrets, as SecureString parameters.
    let mut secret_keys = Vec::new();
    for (name, value) in &inputs.secrets {
        let key = k(Kind::SsmParameter, name.as_str());
        secret_keys.push(key.clone());
        push(
            &mut out,
            key,
            Spec::SsmParameter {
                name: format!("{prefix}/{}", name.as_str()),
                value_sha256: sha256_hex(value.expose()),
            },
            Payload::Secret(value.clone()),
        );
    }

    // Revoked device ids, which every broker's device authorizer refuses (one per line).
    let revoked = Secret::new(backend.devices.revoked.join("\n"));
    if !backend.devices.revoked.is_empty() {
        let key = k(Kind::SsmParameter, "devices/revoked");
        push(
            &mut out,
            key.clone(),
            Spec::SsmParameter {
                name: format!("{prefix}/devices/revoked"),
                value_sha256: sha256_hex(revoked.expose()),
            },
            Payload::Secret(revoked),
        );
        secret_keys.push(key);
    }

    // Each broker's server certificate, issued with the stack CA when missing or when it no
    // longer covers the broker's names or was signed by another CA.
    let issuer_key_id = crate::pki::inspect(&inputs.cas.stack)
        .map(|i| i.key_id)
        .unwrap_or_default();
    for n in 1..=gw.brokers.count {
        let key = k(Kind::Certificate, &format!("broker-{n}"));
        push(
            &mut out,
            key.clone(),
            Spec::Certificate {
                name: format!("{prefix}/{}broker-{n}", crate::cloud::CERTIFICATES),
                names: render::broker_names(gw, backend, n),
                issuer_key_id: issuer_key_id.clone(),
                renew: false,
            },
            Payload::Issue {
                ca_cert: inputs.cas.stack.clone(),
                ca_key: inputs.stack_ca_key.clone(),
            },
        );
        secret_keys.push(key);
    }

    // Network.
    let vpc = r(Kind::Vpc, "main");
    push(
        &mut out,
        k(Kind::Vpc, "main"),
        Spec::Vpc {
            cidr: gw.network.vpc_cidr.to_string(),
            dns_hostnames: true,
        },
        Payload::None,
    );
    let mut subnets = Vec::new();
    for s in &gw.network.subnets {
        subnets.push(r(Kind::Subnet, &s.zone));
        push(
            &mut out,
            k(Kind::Subnet, &s.zone),
            Spec::Subnet {
                vpc: vpc.clone(),
                zone: s.zone.clone(),
                cidr: s.cidr.to_string(),
                public_ip_on_launch: true,
            },
            Payload::None,
        );
    }
    push(
        &mut out,
        k(Kind::InternetGateway, "main"),
        Spec::InternetGateway { vpc: vpc.clone() },
        Payload::None,
    );
    push(
        &mut out,
        k(Kind::VpnGateway, "main"),
        Spec::VpnGateway { vpc: vpc.clone() },
        Payload::None,
    );
    push(
        &mut out,
        k(Kind::CustomerGateway, "backend"),
        Spec::CustomerGateway {
            ip: backend.vpn.public_ip.to_string(),
            bgp_asn: backend.vpn.bgp_asn,
        },
        Payload::None,
    );
    let static_routes: Vec<String> = gw
        .vpn
        .static_routes
        .iter()
        .flatten()
        .map(|c| c.to_string())
        .collect();
    let mut vpn_routes = static_routes.clone();
    vpn_routes.sort();
    let (vpn_tunnels, vpn_keys) = tunnels(&gw.vpn.tunnels, &inputs.tunnel_keys);
    let mut key_hashes: Vec<String> = vpn_keys.iter().map(|k| sha256_hex(k.expose())).collect();
    if gw.vpn.tunnels.inside_cidrs.is_empty() {
        key_hashes.sort();
    }
    push(
        &mut out,
        k(Kind::VpnConnection, "backend"),
        Spec::VpnConnection {
            customer_gateway: r(Kind::CustomerGateway, "backend"),
            vpn_gateway: r(Kind::VpnGateway, "main"),
            static_routes_only: true,
            routes: vpn_routes,
            tunnels: vpn_tunnels,
            pre_shared_keys_sha256: key_hashes,
        },
        Payload::TunnelKeys(vpn_keys),
    );
    let mut routes = vec![Route {
        destination: "0.0.0.0/0".into(),
        target: r(Kind::InternetGateway, "main"),
    }];
    routes.extend(static_routes.iter().map(|c| Route {
        destination: c.clone(),
        target: r(Kind::VpnGateway, "main"),
    }));
    let mut rtb = Spec::RouteTable {
        vpc: vpc.clone(),
        routes,
        propagating: vec![r(Kind::VpnGateway, "main")],
        subnets: subnets.clone(),
    };
    rtb.map_refs(|_| {}); // sorts the lists the way discovery does
    push(&mut out, k(Kind::RouteTable, "public"), rtb, Payload::None);

    // Security groups.
    let ports = &gw.brokers.ports;
    let mut ingress = Vec::new();
    let mut device_ports = vec![
        (ports.mqtt, "MQTT over TLS"),
        (ports.web_mqtt, "MQTT over WSS"),
    ];
    if gw.brokers.insecure_plaintext {
        device_ports.push((PLAINTEXT_MQTT_PORT, "plaintext MQTT (insecure_plaintext)"));
        device_ports.push((
            PLAINTEXT_WEB_MQTT_PORT,
            "plaintext MQTT over WebSocket (insecure_plaintext)",
        ));
    }
    for cidr in &gw.network.client_cidrs {
        for &(port, what) in &device_ports {
            ingress.push(Ingress {
                port,
                from: IngressSource::Cidr(cidr.to_string()),
                description: format!("{what} from clients"),
                other: None,
            });
        }
    }
    let backend_cidr = backend.network_cidr.to_string();
    for (port, what) in [
        (ports.amqp, "AMQPS federation"),
        (ports.management, "management API (HTTPS)"),
        (ports.metrics, "Prometheus metrics (HTTPS)"),
    ] {
        ingress.push(Ingress {
            port,
            from: IngressSource::Cidr(backend_cidr.clone()),
            description: format!("{what} from the backend"),
            other: None,
        });
    }
    if let Some(checkers) = &inputs.health_checkers {
        // Only Route53's checkers reach the health responder (AWS's managed prefix list; it
        // counts as 25 rules against the group's quota).
        ingress.push(Ingress {
            port: ports.health,
            from: IngressSource::PrefixList(checkers.clone()),
            description: "Route53 health checks".into(),
            other: None,
        });
    }
    for (name, port) in CLUSTER_PORTS {
        ingress.push(Ingress {
            port,
            from: IngressSource::Itself,
            description: format!("RabbitMQ {name} between brokers"),
            other: None,
        });
    }
    ingress.sort();
    ingress.dedup();
    push(
        &mut out,
        k(Kind::SecurityGroup, "brokers"),
        Spec::SecurityGroup {
            vpc: vpc.clone(),
            group_name: format!("gwctl-{stack}-{region}-brokers"),
            description: format!("gwctl {stack} {region} RabbitMQ brokers"),
            ingress,
        },
        Payload::None,
    );
    if !gw.support.is_empty() {
        let mut ingress: Vec<Ingress> = gw
            .network
            .client_cidrs
            .iter()
            .map(|c| Ingress {
                port: ports.mqtt,
                from: IngressSource::Cidr(c.to_string()),
                description: "MQTT over TLS from clients".into(),
                other: None,
            })
            .collect();
        ingress.sort();
        push(
            &mut out,
            k(Kind::SecurityGroup, "support"),
            Spec::SecurityGroup {
                vpc: vpc.clone(),
                group_name: format!("gwctl-{stack}-{region}-support"),
                description: format!("gwctl {stack} {region} support instances"),
                ingress,
            },
            Payload::None,
        );
    }

    // Instances: brokers spread over the zones, then support groups.
    let mut after = secret_keys.clone();
    after.push(k(Kind::RouteTable, "public"));
    let files = render::gateway(gw, backend, &Addressing::gateway(gw, backend), &inputs.cas)?;
    let root = block_device("root", &gw.brokers.root_volume);
    let mut devices = vec![root];
    if let DataVolume::Ebs(v) = &gw.brokers.data_volume {
        devices.push(block_device(crate::model::resources::DATA_DEVICE, v));
    }
    for n in 1..=gw.brokers.count {
        let name = format!("broker-{n}");
        let user_data = files
            .get(&format!("broker-{n}.user-data.yaml"))
            .map(|f| f.contents.clone())
            .unwrap_or_default();
        let subnet = subnets[(usize::from(n) - 1) % subnets.len()].clone();
        let key = k(Kind::Instance, &name);
        let launch = launch_hash(&user_data, &inputs.broker_image.root_device, &devices);
        let mut desired = Desired {
            key: key.clone(),
            spec: Spec::Instance {
                image: inputs.broker_image.id.clone(),
                instance_type: gw.brokers.instance_type.clone(),
                subnet,
                security_groups: vec![r(Kind::SecurityGroup, "brokers")],
                profile: r(Kind::InstanceProfile, "brokers"),
                launch_sha256: launch.clone(),
                imdsv2_required: true,
            },
            tags: tags(&key),
            payload: Payload::Launch {
                user_data,
                root_device: inputs.broker_image.root_device.clone(),
                block_devices: devices.clone(),
                client_token: String::new(),
            },
            after: after.clone(),
        };
        desired.tags.insert(TAG_CLUSTER.into(), gw.cluster_name());
        desired.tags.insert(TAG_LAUNCH.into(), launch);
        out.push(desired);
        push(
            &mut out,
            k(Kind::ElasticIp, &name),
            Spec::ElasticIp {
                instance: Ref::Key(key),
            },
            Payload::None,
        );
    }
    for group in &gw.support {
        let image = inputs
            .support_images
            .get(&group.name)
            .unwrap_or(&inputs.broker_image);
        for n in 1..=group.count {
            let name = format!("{}-{n}", group.name);
            let user_data = render::support_user_data(gw, &group.name, n)?;
            let key = k(Kind::Instance, &name);
            let devices = vec![BlockDevice {
                device: "root".into(),
                volume_type: "gp3".into(),
                size_gib: 8,
                iops: None,
                throughput_mibps: None,
            }];
            let launch = launch_hash(&user_data, &image.root_device, &devices);
            let mut desired = Desired {
                key: key.clone(),
                spec: Spec::Instance {
                    image: image.id.clone(),
                    instance_type: group.instance_type.clone(),
                    subnet: subnets[(usize::from(n) - 1) % subnets.len()].clone(),
                    security_groups: vec![r(Kind::SecurityGroup, "support")],
                    profile: r(Kind::InstanceProfile, "brokers"),
                    launch_sha256: launch.clone(),
                    imdsv2_required: true,
                },
                tags: tags(&key),
                payload: Payload::Launch {
                    user_data,
                    root_device: image.root_device.clone(),
                    block_devices: devices,
                    client_token: String::new(),
                },
                after: vec![k(Kind::RouteTable, "public")],
            };
            desired.tags.insert(TAG_LAUNCH.into(), launch);
            out.push(desired);
        }
    }
    for d in &mut out {
        if let Spec::Instance {
            security_groups, ..
        } = &mut d.spec
        {
            security_groups.sort();
        }
    }
    Ok(out)
}

/// Both tunnels as the region file asks for them (the same algorithms in both phases), sorted,
/// and their declared keys in the same order (the n-th key declared is the n-th inside CIDR's).
fn tunnels(t: &crate::spec::model::Tunnels, keys: &[Secret]) -> (Vec<TunnelSpec>, Vec<Secret>) {
    let groups: Vec<i32> = t.dh_groups.iter().map(|g| i32::from(*g)).collect();
    let tunnel = |inside_cidr: Option<String>| TunnelSpec {
        inside_cidr,
        ike_versions: t.ike_versions.clone(),
        phase1_encryption: t.encryption.clone(),
        phase2_encryption: t.encryption.clone(),
        phase1_integrity: t.integrity.clone(),
        phase2_integrity: t.integrity.clone(),
        phase1_dh_groups: groups.clone(),
        phase2_dh_groups: groups.clone(),
    };
    let cidrs: Vec<Option<String>> = match t.inside_cidrs.as_slice() {
        [] => vec![None, None],
        some => some.iter().map(|c| Some(c.to_string())).collect(),
    };
    let pairs: Vec<(TunnelSpec, Option<Secret>)> = cidrs
        .into_iter()
        .enumerate()
        .map(|(i, c)| (tunnel(c), keys.get(i).cloned()))
        .collect();
    let sorted = TunnelSpec::normalized_with(pairs);
    let keys = sorted.iter().filter_map(|(_, k)| k.clone()).collect();
    (sorted.into_iter().map(|(t, _)| t).collect(), keys)
}

fn block_device(device: &str, v: &Volume) -> BlockDevice {
    BlockDevice {
        device: device.to_string(),
        volume_type: match v.kind {
            crate::spec::model::EbsType::Gp3 => "gp3".into(),
            crate::spec::model::EbsType::Io2 => "io2".into(),
        },
        size_gib: v.size_gib,
        iops: v.iops,
        throughput_mibps: v.throughput_mibps,
    }
}

fn launch_hash(user_data: &str, root_device: &str, devices: &[BlockDevice]) -> String {
    let devices = serde_json::to_string(devices).unwrap_or_default();
    sha256_hex(&format!("{user_data}\n{root_device}\n{devices}"))
}

#[cfg(test)]
mod tunnel_tests {
    use super::*;

    #[test]
    fn each_key_stays_with_its_inside_cidr_when_tunnels_are_sorted() {
        // As strings, .10 sorts before .9: the keys must follow their tunnels.
        let t = crate::spec::model::Tunnels {
            inside_cidrs: vec![
                "169.254.9.0/30".parse().expect("cidr"),
                "169.254.10.0/30".parse().expect("cidr"),
            ],
            ..Default::default()
        };
        let keys = [Secret::new("key.for.nine"), Secret::new("key.for.ten")];
        let (tunnels, sorted) = tunnels(&t, &keys);
        assert_eq!(tunnels[0].inside_cidr.as_deref(), Some("169.254.10.0/30"));
        assert_eq!(sorted[0].expose(), "key.for.ten");
        assert_eq!(tunnels[1].inside_cidr.as_deref(), Some("169.254.9.0/30"));
        assert_eq!(sorted[1].expose(), "key.for.nine");
    }
}
