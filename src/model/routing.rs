//! Which region Route53 answers, per client location, from the records and health states.
//!
//! Route53 measures latency between client networks and AWS regions; gwctl cannot see those
//! measurements, so a client "near" a region is placed at that region and latency is taken as
//! the great-circle distance between region locations. That is enough to show who moves where
//! when a region goes down; it is not a latency map.
//!
//! The rules applied are Route53's: a latency alias with EvaluateTargetHealth is healthy when at
//! least one multivalue record it points at is healthy; the nearest healthy region answers; when
//! none is healthy, Route53 fails open and answers as if all were (the nearest region), and a
//! multivalue set with no healthy record answers with all of its addresses.

use std::collections::BTreeMap;

use serde::Serialize;

/// Approximate locations (latitude, longitude) of AWS regions.
const LOCATIONS: &[(&str, f64, f64)] = &[
    ("us-east-1", 38.9, -77.4),
    ("us-east-2", 40.0, -83.0),
    ("us-west-1", 37.4, -121.9),
    ("us-west-2", 45.8, -119.7),
    ("ca-central-1", 45.5, -73.6),
    ("sa-east-1", -23.5, -46.6),
    ("eu-west-1", 53.3, -6.3),
    ("eu-west-2", 51.5, -0.1),
    ("eu-west-3", 48.9, 2.4),
    ("eu-central-1", 50.1, 8.7),
    ("eu-north-1", 59.3, 18.1),
    ("eu-south-1", 45.5, 9.2),
    ("me-south-1", 26.1, 50.6),
    ("af-south-1", -33.9, 18.4),
    ("ap-south-1", 19.1, 72.9),
    ("ap-southeast-1", 1.3, 103.8),
    ("ap-southeast-2", -33.9, 151.2),
    ("ap-northeast-1", 35.7, 139.7),
    ("ap-northeast-2", 37.6, 127.0),
    ("ap-northeast-3", 34.7, 135.5),
    ("ap-east-1", 22.3, 114.2),
    ("ap-east-2", 25.0, 121.5),
    ("ap-south-2", 17.4, 78.5),
    ("ap-southeast-3", -6.2, 106.8),
    ("ap-southeast-4", -37.8, 145.0),
    ("ap-southeast-5", 3.1, 101.7),
    ("ap-southeast-6", -36.8, 174.8),
    ("ap-southeast-7", 13.8, 100.5),
    ("ca-west-1", 51.0, -114.1),
    ("eu-central-2", 47.4, 8.5),
    ("eu-south-2", 41.6, -0.9),
    ("il-central-1", 32.1, 34.8),
    ("me-central-1", 25.2, 55.3),
    ("mx-central-1", 20.6, -100.4),
    ("us-gov-east-1", 40.0, -83.0),
    ("us-gov-west-1", 45.8, -119.7),
];

/// Client locations a drill always shows, besides the stack's own regions.
pub const CLIENT_LOCATIONS: [&str; 6] = [
    "us-west-2",
    "sa-east-1",
    "eu-central-1",
    "ap-south-1",
    "ap-southeast-1",
    "ap-southeast-2",
];

fn location(region: &str) -> Option<(f64, f64)> {
    LOCATIONS
        .iter()
        .find(|(r, _, _)| *r == region)
        .map(|(_, lat, lon)| (*lat, *lon))
}

/// Great-circle distance in km; unknown regions are as far as can be.
pub fn distance_km(a: &str, b: &str) -> f64 {
    let (Some((lat1, lon1)), Some((lat2, lon2))) = (location(a), location(b)) else {
        return f64::MAX;
    };
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let (dp, dl) = ((lat2 - lat1).to_radians(), (lon2 - lon1).to_radians());
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().asin()
}

/// One endpoint of a region: its address and whether its health check passes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    pub name: String,
    pub address: String,
    pub healthy: bool,
}

/// A region as Route53 sees it: a latency record and the endpoints behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegionState {
    pub region: String,
    pub endpoints: Vec<Endpoint>,
}

impl RegionState {
    pub fn healthy(&self) -> bool {
        self.endpoints.iter().any(|e| e.healthy)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Answer {
    /// `None` when the zone has no latency record at all.
    pub region: Option<String>,
    pub addresses: Vec<String>,
    /// Every region was unhealthy: Route53 answered as if all were healthy.
    pub fail_open: bool,
}

/// What Route53 answers a client near `client`.
pub fn answer(client: &str, regions: &[RegionState]) -> Answer {
    let candidates: Vec<&RegionState> =
        regions.iter().filter(|r| !r.endpoints.is_empty()).collect();
    let healthy: Vec<&RegionState> = candidates.iter().copied().filter(|r| r.healthy()).collect();
    let fail_open = healthy.is_empty() && !candidates.is_empty();
    let pool = if fail_open { candidates } else { healthy };
    let Some(best) = pool.into_iter().min_by(|a, b| {
        distance_km(client, &a.region)
            .total_cmp(&distance_km(client, &b.region))
            .then_with(|| a.region.cmp(&b.region))
    }) else {
        return Answer {
            region: None,
            addresses: Vec::new(),
            fail_open: false,
        };
    };
    let mut addresses: Vec<String> = best
        .endpoints
        .iter()
        .filter(|e| e.healthy || !best.healthy())
        .map(|e| e.address.clone())
        .collect();
    addresses.sort();
    Answer {
        region: Some(best.region.clone()),
        addresses,
        fail_open,
    }
}

/// The same states with every endpoint of `region` unhealthy.
pub fn with_down(regions: &[RegionState], region: &str) -> Vec<RegionState> {
    regions
        .iter()
        .cloned()
        .map(|mut r| {
            if r.region == region {
                r.endpoints.iter_mut().for_each(|e| e.healthy = false);
            }
            r
        })
        .collect()
}

/// Client locations to show: near each of the stack's regions, then the usual others.
pub fn clients(stack_regions: &[String]) -> Vec<String> {
    let mut out: Vec<String> = stack_regions.to_vec();
    for c in CLIENT_LOCATIONS {
        if !out.iter().any(|r| r == c) {
            out.push(c.to_string());
        }
    }
    out
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub client: String,
    pub now: Answer,
    pub down: Answer,
}

/// For each client location: the answer now and with `region` down.
pub fn table(clients: &[String], regions: &[RegionState], region: &str) -> Vec<Row> {
    let down = with_down(regions, region);
    clients
        .iter()
        .map(|c| Row {
            client: c.clone(),
            now: answer(c, regions),
            down: answer(c, &down),
        })
        .collect()
}

/// Route53 counts a check healthy when more than 18% of its checkers say so.
pub fn healthy_by_checkers(healthy: usize, all: usize) -> bool {
    all > 0 && healthy * 100 > all * 18
}

/// Rows grouped as `{client: row}` for JSON readers.
pub fn by_client(rows: &[Row]) -> BTreeMap<String, Row> {
    rows.iter().map(|r| (r.client.clone(), r.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(name: &str, healthy: &[bool]) -> RegionState {
        RegionState {
            region: name.into(),
            endpoints: healthy
                .iter()
                .enumerate()
                .map(|(i, h)| Endpoint {
                    name: format!("broker-{}", i + 1),
                    address: format!("{name}-{}", i + 1),
                    healthy: *h,
                })
                .collect(),
        }
    }

    #[test]
    fn nearest_healthy_region_answers_with_its_healthy_endpoints() {
        let regions = [
            region("us-east-1", &[true, false]),
            region("ap-northeast-1", &[true, true]),
        ];
        let a = answer("us-west-2", &regions);
        assert_eq!(a.region.as_deref(), Some("us-east-1"));
        assert_eq!(
            a.addresses,
            ["us-east-1-1"],
            "the unhealthy broker is left out"
        );
        assert!(!a.fail_open);
        assert_eq!(
            answer("ap-southeast-2", &regions).region.as_deref(),
            Some("ap-northeast-1")
        );
        let down = with_down(&regions, "us-east-1");
        assert_eq!(
            answer("us-west-2", &down).region.as_deref(),
            Some("ap-northeast-1")
        );
    }

    #[test]
    fn all_unhealthy_fails_open_to_the_nearest_region_with_all_addresses() {
        let regions = [
            region("us-east-1", &[false, false]),
            region("ap-northeast-1", &[false]),
        ];
        let a = answer("eu-central-1", &regions);
        assert_eq!(a.region.as_deref(), Some("us-east-1"));
        assert_eq!(a.addresses, ["us-east-1-1", "us-east-1-2"]);
        assert!(a.fail_open);
        assert_eq!(answer("eu-central-1", &[]).region, None);
    }

    #[test]
    fn every_known_region_has_a_location() {
        for r in crate::spec::regions::AWS_REGIONS {
            assert!(location(r).is_some(), "{r} has no location");
        }
    }

    #[test]
    fn checkers_decide_by_more_than_eighteen_percent() {
        assert!(healthy_by_checkers(2, 8));
        assert!(!healthy_by_checkers(1, 8));
        assert!(!healthy_by_checkers(0, 0));
    }
}
