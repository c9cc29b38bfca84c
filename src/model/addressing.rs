//! Address plans for new regions: a VPC network free of every other network of the stack,
//! and one subnet per availability zone inside it.

use ipnet::Ipv4Net;
use serde::Serialize;

/// What `gwctl init` decided for a new gateway region: everything its region file says.
#[derive(Debug, Clone, Serialize)]
pub struct NewRegion {
    pub region: String,
    pub vpc_cidr: Ipv4Net,
    /// (zone, subnet), one per zone.
    pub subnets: Vec<(String, Ipv4Net)>,
    pub instance_type: String,
    /// The backend exchange gateways federate devices' commands from.
    pub commands_exchange: String,
    pub ami_owner: String,
    pub ami_name: String,
    /// The image the lookup selects today (id, name), when AWS was asked.
    pub image_now: Option<(String, String)>,
    /// Prefix of the environment variables its secrets come from (`GWCTL_EU_CENTRAL_1`).
    pub env_prefix: String,
}

/// `GWCTL_<REGION>`, the prefix of a region's secret variables (`eu-central-1` →
/// `GWCTL_EU_CENTRAL_1`), as the examples name them.
pub fn env_prefix(region: &str) -> String {
    format!("GWCTL_{}", region.to_uppercase().replace('-', "_"))
}

/// The first `10.N.0.0/16` that overlaps none of `taken`. The tens come first (10.10, 10.20,
/// … as the example regions number them, leaving room to grow each), then every other N.
pub fn free_vpc_cidr(taken: &[Ipv4Net]) -> Option<Ipv4Net> {
    let tens = (10..=250).step_by(10);
    let rest = (1..=255).filter(|n| n % 10 != 0);
    tens.chain(rest)
        .filter_map(|n: u8| Ipv4Net::new(std::net::Ipv4Addr::new(10, n, 0, 0), 16).ok())
        .find(|candidate| {
            !taken
                .iter()
                .any(|t| t.contains(&candidate.network()) || candidate.contains(&t.network()))
        })
}

/// The `/24` subnets of `vpc` for `zones`, in order: the second /24 for the first zone, the
/// third for the second, … (the examples' layout; the first /24 stays free for later use).
pub fn zone_subnets(vpc: Ipv4Net, zones: &[String]) -> Vec<(String, Ipv4Net)> {
    vpc.subnets(24)
        .into_iter()
        .flatten()
        .skip(1)
        .zip(zones)
        .map(|(net, zone)| (zone.clone(), net))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("cidr")
    }

    #[test]
    fn skips_every_network_in_use_and_prefers_the_tens() {
        let taken = [net("10.0.0.0/16"), net("10.10.0.0/16"), net("10.20.0.0/16")];
        assert_eq!(free_vpc_cidr(&taken), Some(net("10.30.0.0/16")));
        // A wider network in use covers many candidates.
        assert_eq!(
            free_vpc_cidr(&[net("10.0.0.0/11")]),
            Some(net("10.40.0.0/16"))
        );
        // A narrower one inside a candidate takes it too.
        assert_eq!(
            free_vpc_cidr(&[net("10.10.5.0/24")]),
            Some(net("10.20.0.0/16"))
        );
        let tens: Vec<Ipv4Net> = (10..=250)
            .step_by(10)
            .map(|n| net(&format!("10.{n}.0.0/16")))
            .collect();
        assert_eq!(free_vpc_cidr(&tens), Some(net("10.1.0.0/16")));
        assert_eq!(free_vpc_cidr(&[net("10.0.0.0/8")]), None);
    }

    #[test]
    fn one_subnet_per_zone_inside_the_network() {
        let zones = vec!["eu-central-1a".to_string(), "eu-central-1b".to_string()];
        assert_eq!(
            zone_subnets(net("10.30.0.0/16"), &zones),
            vec![
                ("eu-central-1a".to_string(), net("10.30.1.0/24")),
                ("eu-central-1b".to_string(), net("10.30.2.0/24")),
            ]
        );
    }
}
