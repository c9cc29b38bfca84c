//! Checks of one file that a schema cannot express: CIDR arithmetic, AWS limits, port
//! collisions, secret sources that must exist.

use std::collections::BTreeMap;
use std::path::Path;

use ipnet::Ipv4Net;

use super::diag::Sink;
use super::model::{
    BackendSpec, CLUSTER_PORTS, Cidr, DataVolume, EbsType, GatewaySpec, HealthProtocol,
    RoutingMode, SecretRef, Volume,
};
use super::regions;

pub fn check_gateway(spec: &GatewaySpec, file: &Path, base: &Path, sink: &mut Sink<'_>) {
    check_region(&spec.region, sink);
    if let Some(stem) = file.file_stem().and_then(|s| s.to_str())
        && stem != spec.region
    {
        sink.at(
            "/region",
            format!("`{}` does not match the file name `{stem}.yaml`; a gateway file is named after its region", spec.region),
        );
    }

    let vpc = spec.network.vpc_cidr.0;
    check_host_bits(&spec.network.vpc_cidr, "/network/vpc_cidr", sink);
    if !(16..=28).contains(&vpc.prefix_len()) {
        sink.at(
            "/network/vpc_cidr",
            format!(
                "a VPC CIDR needs a prefix between /16 and /28, not /{}",
                vpc.prefix_len()
            ),
        );
    }
    let mut zones: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, subnet) in spec.network.subnets.iter().enumerate() {
        let at = format!("/network/subnets/{i}");
        check_host_bits(&subnet.cidr, &format!("{at}/cidr"), sink);
        if !vpc.contains(&subnet.cidr.0) {
            sink.at(
                &format!("{at}/cidr"),
                format!("{} lies outside the VPC {vpc}", subnet.cidr),
            );
        }
        if subnet.cidr.0.prefix_len() > 28 {
            sink.at(
                &format!("{at}/cidr"),
                "a subnet needs a prefix of /28 or larger",
            );
        }
        for (j, other) in spec.network.subnets.iter().enumerate().take(i) {
            if overlaps(subnet.cidr.0, other.cidr.0) {
                sink.at(
                    &format!("{at}/cidr"),
                    format!(
                        "{} overlaps network.subnets[{j}] ({})",
                        subnet.cidr, other.cidr
                    ),
                );
            }
        }
        let zone_region = subnet
            .zone
            .trim_end_matches(|c: char| c.is_ascii_lowercase());
        if zone_region != spec.region {
            sink.at(
                &format!("{at}/zone"),
                format!("`{}` is not a zone of {}", subnet.zone, spec.region),
            );
        }
        if let Some(j) = zones.insert(&subnet.zone, i) {
            sink.at(
                &format!("{at}/zone"),
                format!(
                    "`{}` already has network.subnets[{j}]: one subnet per availability zone",
                    subnet.zone
                ),
            );
        }
    }
    for (i, c) in spec.network.client_cidrs.iter().enumerate() {
        check_host_bits(c, &format!("/network/client_cidrs/{i}"), sink);
    }

    let mut seen: BTreeMap<u16, &str> = CLUSTER_PORTS.iter().map(|(n, p)| (*p, *n)).collect();
    for (name, port) in spec.brokers.ports.named() {
        if let Some(other) = seen.insert(port, name) {
            sink.at(
                &format!("/brokers/ports/{name}"),
                format!("port {port} is already used by {other}"),
            );
        }
    }

    check_volume(&spec.brokers.root_volume, "/brokers/root_volume", sink);
    check_series(&spec.brokers, sink);
    let count = spec.brokers.count;
    if count > 1 && count.is_multiple_of(2) {
        sink.at(
            "/brokers/count",
            format!(
                "{count} brokers: an even count survives no more node losses than {} (a majority \
                 of {count} is {}); use {} or {}",
                count - 1,
                count / 2 + 1,
                count - 1,
                count + 1
            ),
        );
    }
    match &spec.brokers.data_volume {
        DataVolume::Ebs(v) => check_volume(v, "/brokers/data_volume/ebs", sink),
        DataVolume::InstanceStore(_) if !has_instance_store(&spec.brokers.instance_type) => sink
            .at(
                "/brokers/data_volume",
                format!(
                    "instance type {} has no instance store; use a `d` type such as c6id.large",
                    spec.brokers.instance_type
                ),
            ),
        _ => {}
    }

    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, g) in spec.support.iter().enumerate() {
        if let Some(j) = names.insert(&g.name, i) {
            sink.at(
                &format!("/support/{i}/name"),
                format!("`{}` is already the name of support[{j}]", g.name),
            );
        }
    }

    let hc = &spec.health_check;
    if hc.interval_s != 10 && hc.interval_s != 30 {
        sink.at(
            "/health_check/interval_s",
            "Route53 checks every 10 or 30 seconds",
        );
    }
    match hc.protocol {
        HealthProtocol::Tcp if hc.path.is_some() => sink.at(
            "/health_check/path",
            "a path only applies to http and https checks",
        ),
        _ => {}
    }
    for (i, r) in hc.regions.iter().enumerate() {
        if !crate::spec::model::CHECKER_REGIONS.contains(&r.as_str()) {
            sink.at(
                &format!("/health_check/regions/{i}"),
                format!(
                    "Route53 has no health checkers in `{r}`: choose from {}",
                    crate::spec::model::CHECKER_REGIONS.join(", ")
                ),
            );
        }
    }
    if !hc.regions.is_empty() && hc.regions.len() < 3 {
        sink.at(
            "/health_check/regions",
            "Route53 needs at least 3 checker regions (or none: all of them)",
        );
    }
    if let Some(port) = hc.port
        && !spec.brokers.ports.named().iter().any(|(_, p)| *p == port)
    {
        sink.at(
            "/health_check/port",
            format!("nothing listens on port {port}: use one of brokers.ports"),
        );
    }

    check_tunnels(&spec.vpn.tunnels, base, sink);
    if let Some(routes) = &spec.vpn.static_routes {
        for (i, r) in routes.iter().enumerate() {
            check_host_bits(r, &format!("/vpn/static_routes/{i}"), sink);
            if overlaps(r.0, vpc) {
                sink.at(
                    &format!("/vpn/static_routes/{i}"),
                    format!("{r} overlaps this region's own VPC {vpc}"),
                );
            }
        }
    }

    for (list, key) in [
        (&spec.federation.from_backend, "from_backend"),
        (&spec.federation.to_backend, "to_backend"),
    ] {
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, x) in list.iter().enumerate() {
            if let Some(j) = seen.insert(&x.exchange, i) {
                sink.at(
                    &format!("/federation/{key}/{i}/exchange"),
                    format!(
                        "`{}` is already federated by federation.{key}[{j}]",
                        x.exchange
                    ),
                );
            }
        }
    }

    check_tags(&spec.tags, sink);
    super::tls::check_not_a_device(
        &spec.credentials.admin.user,
        "/credentials/admin/user",
        sink,
    );
    check_secret(
        &spec.credentials.admin.password,
        "/credentials/admin/password",
        base,
        sink,
    );
    check_secret(
        &spec.credentials.erlang_cookie,
        "/credentials/erlang_cookie",
        base,
        sink,
    );
}

pub fn check_backend(spec: &BackendSpec, base: &Path, sink: &mut Sink<'_>) {
    check_region(&spec.region, sink);
    check_host_bits(&spec.network_cidr, "/network_cidr", sink);
    let zone = spec.dns.zone.trim_end_matches('.');
    let record = spec.dns.record.trim_end_matches('.');
    if !(record.ends_with(&format!(".{zone}"))) {
        sink.at(
            "/dns/record",
            format!("`{record}` is not inside the zone `{zone}`"),
        );
    }
    for (i, e) in spec.brokers.endpoints.iter().enumerate() {
        if e.amqp_port == e.management_port {
            sink.at(
                &format!("/brokers/endpoints/{i}/management_port"),
                format!("port {} is already the AMQP port", e.amqp_port),
            );
        }
    }
    if spec.credentials.admin.user == spec.credentials.federation.user {
        sink.at(
            "/credentials/federation/user",
            "the federation user must differ from the admin user",
        );
    }
    check_routing(spec, base, sink);
    check_tags(&spec.tags, sink);
    super::tls::check(spec, base, sink);
    check_secret(
        &spec.credentials.admin.password,
        "/credentials/admin/password",
        base,
        sink,
    );
    check_secret(
        &spec.credentials.federation.password,
        "/credentials/federation/password",
        base,
        sink,
    );
    check_secret(
        &spec.credentials.erlang_cookie,
        "/credentials/erlang_cookie",
        base,
        sink,
    );
}

/// The router's exchanges (`gw.all`, `gw.<region>`) and gwctl's own (`gwctl.…`) are reserved;
/// the router needs its own user.
fn check_routing(spec: &BackendSpec, base: &Path, sink: &mut Sink<'_>) {
    let exchange = &spec.routing.exchange;
    if exchange.starts_with("gw.") || exchange.starts_with("gwctl.") {
        sink.at(
            "/routing/exchange",
            format!(
                "`{exchange}`: names starting with `gw.` or `gwctl.` are the router's and \
                 gwctl's own exchanges"
            ),
        );
    }
    let creds = &spec.credentials;
    match (&spec.routing.mode, &creds.router) {
        (RoutingMode::Router, None) => sink.at(
            "/routing/mode",
            "`router` needs `credentials.router` (the user `gwctl router` logs in with)",
        ),
        (_, Some(router)) => {
            if [&creds.admin.user, &creds.federation.user].contains(&&router.user) {
                sink.at(
                    "/credentials/router/user",
                    "the router's user must differ from the admin and federation users",
                );
            }
            super::tls::check_not_a_device(&router.user, "/credentials/router/user", sink);
            check_secret(&router.password, "/credentials/router/password", base, sink);
        }
        (RoutingMode::Broadcast, None) => {}
    }
}

fn check_region(region: &str, sink: &mut Sink<'_>) {
    if !regions::is_known(region) {
        let hint = regions::suggest(region)
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        sink.at("/region", format!("`{region}` is not an AWS region{hint}"));
    }
}

/// What AWS accepts for tunnels, minus what is broken (IKEv1, SHA-1, DH groups 2 and 5).
fn check_tunnels(t: &crate::spec::model::Tunnels, base: &Path, sink: &mut Sink<'_>) {
    let allowed = |at: &str, values: &[String], ok: &[&str], weak: &[&str], sink: &mut Sink<'_>| {
        for (i, v) in values.iter().enumerate() {
            if weak.contains(&v.as_str()) {
                sink.at(
                    &format!("/vpn/tunnels/{at}/{i}"),
                    format!("`{v}` is broken; use {}", ok.join(", ")),
                );
            } else if !ok.contains(&v.as_str()) {
                sink.at(
                    &format!("/vpn/tunnels/{at}/{i}"),
                    format!("`{v}` is not one of {}", ok.join(", ")),
                );
            }
        }
    };
    allowed(
        "ike_versions",
        &t.ike_versions,
        &["ikev2"],
        &["ikev1"],
        sink,
    );
    allowed(
        "encryption",
        &t.encryption,
        &["AES256-GCM-16", "AES256", "AES128-GCM-16", "AES128"],
        &[],
        sink,
    );
    allowed(
        "integrity",
        &t.integrity,
        &["SHA2-256", "SHA2-384", "SHA2-512"],
        &["SHA1"],
        sink,
    );
    for (i, g) in t.dh_groups.iter().enumerate() {
        if !(14..=24).contains(g) {
            sink.at(
                &format!("/vpn/tunnels/dh_groups/{i}"),
                format!("DH group {g} is too weak or unknown; use groups 14 to 24"),
            );
        }
    }
    // AWS reserves these /30s of 169.254.0.0/16 (and the tunnels need distinct ones).
    const RESERVED: [&str; 7] = [
        "169.254.0.0/30",
        "169.254.1.0/30",
        "169.254.2.0/30",
        "169.254.3.0/30",
        "169.254.4.0/30",
        "169.254.5.0/30",
        "169.254.169.252/30",
    ];
    for (i, c) in t.inside_cidrs.iter().enumerate() {
        let at = format!("/vpn/tunnels/inside_cidrs/{i}");
        let link_local: ipnet::Ipv4Net = "169.254.0.0/16".parse().expect("constant");
        if c.0.prefix_len() != 30 || !link_local.contains(&c.0) {
            sink.at(&at, "a tunnel's inside CIDR is a /30 of 169.254.0.0/16");
        } else if RESERVED.contains(&c.0.to_string().as_str()) {
            sink.at(&at, format!("{} is reserved by AWS", c.0));
        } else if t.inside_cidrs[..i].contains(c) {
            sink.at(&at, "both tunnels use this CIDR");
        } else {
            check_host_bits(c, &at, sink);
        }
    }
    // AWS's rules for pre-shared keys (the value itself is never shown).
    for (i, source) in t.pre_shared_keys.iter().enumerate() {
        let at = format!("/vpn/tunnels/pre_shared_keys/{i}");
        match source.resolve(base) {
            Err(e) => sink.at(&at, e.to_string()),
            Ok(key) => {
                let k = key.expose();
                let chars_ok = k
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_');
                if !(8..=64).contains(&k.len()) || !chars_ok || k.starts_with('0') {
                    sink.at(
                        &at,
                        "a pre-shared key has 8 to 64 letters, digits, `.` or `_`, and does not \
                         start with 0",
                    );
                }
            }
        }
    }
}

fn check_host_bits(c: &Cidr, at: &str, sink: &mut Sink<'_>) {
    if c.0.trunc() != c.0 {
        sink.at(
            at,
            format!("{c} has host bits set; did you mean {}?", c.0.trunc()),
        );
    }
}

pub fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn check_volume(v: &Volume, at: &str, sink: &mut Sink<'_>) {
    let max_by_size = v.size_gib.saturating_mul(500);
    match v.kind {
        EbsType::Gp3 => {
            if let Some(iops) = v.iops {
                if !(3000..=16000).contains(&iops) {
                    sink.at(
                        &format!("{at}/iops"),
                        "gp3 IOPS must be between 3000 and 16000",
                    );
                } else if iops > max_by_size.max(3000) {
                    sink.at(
                        &format!("{at}/iops"),
                        format!(
                            "gp3 allows at most 500 IOPS per GiB ({max_by_size} for {} GiB)",
                            v.size_gib
                        ),
                    );
                }
            }
            if let Some(t) = v.throughput_mibps
                && !(125..=1000).contains(&t)
            {
                sink.at(
                    &format!("{at}/throughput_mibps"),
                    "gp3 throughput must be between 125 and 1000 MiB/s",
                );
            }
        }
        EbsType::Io2 => {
            match v.iops {
                None => sink.at(at, "io2 needs `iops`"),
                Some(iops) if !(100..=64000).contains(&iops) => sink.at(
                    &format!("{at}/iops"),
                    "io2 IOPS must be between 100 and 64000",
                ),
                Some(iops) if iops > max_by_size => sink.at(
                    &format!("{at}/iops"),
                    format!(
                        "io2 allows at most 500 IOPS per GiB ({max_by_size} for {} GiB)",
                        v.size_gib
                    ),
                ),
                Some(_) => {}
            }
            if v.throughput_mibps.is_some() {
                sink.at(
                    &format!("{at}/throughput_mibps"),
                    "throughput only applies to gp3",
                );
            }
        }
    }
}

/// Instance families with local NVMe storage carry a `d` after the generation (`c6id`, `c5d`).
fn has_instance_store(instance_type: &str) -> bool {
    let family = instance_type.split('.').next().unwrap_or_default();
    family
        .trim_start_matches(|c: char| c.is_ascii_lowercase())
        .trim_start_matches(|c: char| c.is_ascii_digit())
        .contains('d')
}

fn check_tags(tags: &BTreeMap<String, String>, sink: &mut Sink<'_>) {
    for (k, v) in tags {
        let at = format!("/tags/{}", super::yaml::pointer_segment(k));
        if k.starts_with("aws:") || k.starts_with("gwctl:") {
            sink.at_key(
                &at,
                format!("tag key `{k}` is reserved (aws: and gwctl: prefixes)"),
            );
        } else if k.is_empty() || k.chars().count() > 128 {
            sink.at_key(&at, "tag keys are 1 to 128 characters");
        }
        if v.chars().count() > 256 {
            sink.at(&at, "tag values are at most 256 characters");
        }
    }
}

fn check_secret(source: &SecretRef, at: &str, base: &Path, sink: &mut Sink<'_>) {
    if let Err(e) = source.resolve(base) {
        sink.at(at, e.to_string());
    }
}

/// The pinned package is a series gwctl renders, from the Debian release the image is of.
fn check_series(brokers: &super::model::Brokers, sink: &mut Sink<'_>) {
    use super::model::{Ami, RabbitSeries};
    let Some(series) = RabbitSeries::of_package(&brokers.rabbitmq_package) else {
        sink.at(
            "/brokers/rabbitmq_package",
            format!(
                "{}: gwctl renders RabbitMQ 4.0 (Debian 13, e.g. {}) and 3.10 (Debian 12's \
                 3.10.8-1.1+deb12u1, only to move a region off it)",
                brokers.rabbitmq_package,
                super::model::RABBITMQ_PACKAGE
            ),
        );
        return;
    };
    let release = series.debian_release();
    if let Ami::Lookup(lookup) = &brokers.ami
        && let Some(rest) = lookup.name.strip_prefix("debian-")
        && !rest.starts_with(&format!("{release}-"))
    {
        sink.at(
            "/brokers/ami/name",
            format!(
                "{}: RabbitMQ {} ({}) is a package of Debian {release}; select \
                 debian-{release}-* images",
                lookup.name,
                series.as_str(),
                brokers.rabbitmq_package
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_store_families() {
        assert!(has_instance_store("c6id.large"));
        assert!(has_instance_store("c5d.xlarge"));
        assert!(!has_instance_store("c6i.large"));
        assert!(!has_instance_store("c7gn.large"));
    }
}
