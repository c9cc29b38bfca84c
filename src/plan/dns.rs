//! The Route53 part of a region's plan: what gwctl wants (checks and records, from the region
//! file and the brokers' addresses), which records are gwctl's, and the diff of the two.
//! The structure itself is described in [`crate::model::dns`].

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::Action;
use crate::model::dns::{
    CheckConfig, CheckProtocol, ObservedCheck, ObservedRecord, Record, RecordChange, names,
    owner_value,
};
use crate::spec::model::{BackendSpec, GatewaySpec, HealthProtocol};

#[derive(Debug, Clone, Serialize)]
pub struct CheckChange {
    pub name: String,
    pub action: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<ObservedCheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<CheckConfig>,
}

/// One region's part of the zone: its health checks and records.
#[derive(Debug, Clone, Serialize)]
pub struct DnsPlan {
    pub region: String,
    pub zone: String,
    pub zone_id: String,
    pub checks: Vec<CheckChange>,
    pub records: Vec<RecordChange>,
    /// Brokers without a public address yet: their checks and records come on a later run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<String>,
}

impl DnsPlan {
    pub fn has_changes(&self) -> bool {
        self.checks.iter().any(|c| c.action != Action::NoOp)
            || self.records.iter().any(|r| r.action != Action::NoOp)
    }

    /// Whether it creates records: the region is not (fully) advertised yet.
    pub fn advertises_anew(&self) -> bool {
        self.records.iter().any(|r| r.action == Action::Create)
    }

    /// What this plan knew, as a hash (checks and records before and after; brokers without
    /// an address yet enter as pending, known after apply).
    pub fn fingerprint(&self) -> String {
        super::fingerprint(self)
    }
}

/// What gwctl wants for a region: its checks by endpoint name and its records. `addresses`
/// maps each broker (`broker-1`) to its public address, `None` while it has none.
pub fn desired(
    backend: &BackendSpec,
    gw: &GatewaySpec,
    addresses: &BTreeMap<String, Option<String>>,
) -> (BTreeMap<String, CheckConfig>, Vec<Record>, Vec<String>) {
    let n = names(&backend.dns.record, &gw.region);
    let hc = &gw.health_check;
    let protocol = match hc.protocol {
        HealthProtocol::Tcp => CheckProtocol::Tcp,
        HealthProtocol::Http => CheckProtocol::Http,
        HealthProtocol::Https => CheckProtocol::Https,
    };
    let port = hc.port.unwrap_or(match hc.protocol {
        HealthProtocol::Tcp => gw.brokers.ports.mqtt,
        _ => gw.brokers.ports.health,
    });
    let mut checks = BTreeMap::new();
    let mut records = Vec::new();
    let mut pending = Vec::new();
    for (name, ip) in addresses {
        let Some(ip) = ip else {
            pending.push(name.clone());
            continue;
        };
        checks.insert(
            name.clone(),
            CheckConfig {
                protocol,
                ip: ip.clone(),
                port,
                path: (protocol != CheckProtocol::Tcp)
                    .then(|| hc.path.clone().unwrap_or_else(|| "/health".into())),
                interval_s: hc.interval_s,
                failure_threshold: hc.failure_threshold,
                regions: {
                    let mut r = hc.regions.clone();
                    r.sort();
                    r
                },
                inverted: false,
            },
        );
        records.push(Record {
            name: n.regional.clone(),
            rtype: "A".into(),
            set_identifier: Some(name.clone()),
            latency_region: None,
            multivalue: true,
            health_check: Some(name.clone()),
            ttl: Some(i64::from(backend.dns.ttl)),
            values: vec![ip.clone()],
            alias: None,
            evaluate_target_health: false,
        });
    }
    if !records.is_empty() {
        records.push(Record {
            name: n.record.clone(),
            rtype: "A".into(),
            set_identifier: Some(gw.region.clone()),
            latency_region: Some(gw.region.clone()),
            multivalue: false,
            health_check: None,
            ttl: None,
            values: Vec::new(),
            alias: Some(n.regional.clone()),
            evaluate_target_health: true,
        });
        records.push(Record {
            name: n.owner.clone(),
            rtype: "TXT".into(),
            set_identifier: None,
            latency_region: None,
            multivalue: false,
            health_check: None,
            ttl: Some(300),
            values: vec![owner_value(&backend.stack, &gw.region)],
            alias: None,
            evaluate_target_health: false,
        });
    }
    (checks, records, pending)
}

/// Which of the records found at a region's names are gwctl's: all of them if the owner record
/// says so, none otherwise. Records at the latency name belong to the region only with its
/// set identifier.
pub fn owned(
    stack: &str,
    record: &str,
    region: &str,
    found: Vec<ObservedRecord>,
) -> (Vec<ObservedRecord>, Vec<ObservedRecord>) {
    let n = names(record, region);
    // Exactly the shapes gwctl creates; anything else at these names stays someone else's.
    let ours = |r: &Record| {
        let set = r.set_identifier.as_deref();
        r.name == n.owner && r.rtype == "TXT" && set.is_none()
            || r.name == n.regional
                && r.rtype == "A"
                && r.multivalue
                && set.is_some_and(|s| s.starts_with("broker-"))
            || r.name == n.record
                && r.rtype == "A"
                && set == Some(region)
                && r.latency_region.as_deref() == Some(region)
    };
    let (mine, other): (Vec<_>, Vec<_>) = found.into_iter().partition(|o| ours(&o.record));
    let claimed = mine
        .iter()
        .any(|o| o.record.name == n.owner && o.record.values == [owner_value(stack, region)]);
    if claimed {
        (mine, other)
    } else {
        let mut foreign = other;
        foreign.extend(mine);
        (Vec::new(), foreign)
    }
}

/// The error for a foreign record where gwctl's own records of a region go (its latency record
/// or its owner mark), if there is one: checked before anything else, even while the
/// brokers have no address yet.
pub fn conflict(record: &str, region: &str, foreign: &[ObservedRecord]) -> Option<String> {
    let n = names(record, region);
    foreign
        .iter()
        .find(|f| {
            let r = &f.record;
            let address = r.rtype == "A" || r.rtype == "CNAME";
            // gwctl's own names, taken; a record of another routing policy (or a CNAME)
            // where gwctl puts latency or multivalue records, which Route53 refuses to mix.
            r.name == n.owner
                || r.name == n.regional && address
                || r.name == n.record
                    && (r.rtype == "CNAME"
                        || r.rtype == "A"
                            && (r.latency_region.is_none()
                                || r.set_identifier.as_deref() == Some(region)))
        })
        .map(|f| {
            format!(
                "{region}: `{}` is in the way and gwctl does not own it (no {} record); it is left alone: remove it or choose another dns.record",
                f.record.describe(),
                n.owner
            )
        })
}

/// Diffs a region's desired checks and records against what exists. Records at gwctl's
/// names that it does not own are returned as conflicts when gwctl would create them.
pub fn diff(
    region: &str,
    zone: &str,
    zone_id: &str,
    desired: (BTreeMap<String, CheckConfig>, Vec<Record>, Vec<String>),
    checks: &[ObservedCheck],
    owned: &[ObservedRecord],
    foreign: &[ObservedRecord],
) -> Result<DnsPlan, String> {
    let (want_checks, want_records, pending) = desired;
    let mut check_changes = Vec::new();
    // Duplicates (a create whose answer was lost): keep the one a record points at.
    let referenced: Vec<&str> = owned
        .iter()
        .filter_map(|o| o.health_check_id.as_deref())
        .collect();
    let mut by_name: BTreeMap<&str, Vec<&ObservedCheck>> = BTreeMap::new();
    for c in checks {
        by_name.entry(c.name.as_str()).or_default().push(c);
    }
    let mut endpoints: Vec<&str> = want_checks.keys().map(String::as_str).collect();
    endpoints.extend(by_name.keys());
    endpoints.sort();
    endpoints.dedup();
    for name in endpoints {
        let mut found = by_name.get(name).cloned().unwrap_or_default();
        found.sort_by_key(|c| !referenced.contains(&c.id.as_str()));
        let keep = match want_checks.get(name) {
            Some(_) if found.is_empty() => None,
            Some(_) => Some(found.remove(0)),
            None => None,
        };
        for extra in found {
            check_changes.push(CheckChange {
                name: name.to_string(),
                action: Action::Delete,
                before: Some(extra.clone()),
                after: None,
            });
        }
        if let Some(want) = want_checks.get(name) {
            let action = match keep {
                None => Action::Create,
                Some(k) if want.needs_replace(&k.config) => Action::Replace,
                Some(k) if &k.config != want => Action::Update,
                Some(_) => Action::NoOp,
            };
            check_changes.push(CheckChange {
                name: name.to_string(),
                action,
                before: keep.cloned(),
                after: Some(want.clone()),
            });
        }
    }

    // Actual records name their health check by endpoint, like desired ones.
    let check_names: BTreeMap<&str, &str> = checks
        .iter()
        .map(|c| (c.id.as_str(), c.name.as_str()))
        .collect();
    let replaced: Vec<&str> = check_changes
        .iter()
        .filter(|c| matches!(c.action, Action::Replace | Action::Create))
        .map(|c| c.name.as_str())
        .collect();
    let mut actual: BTreeMap<_, ObservedRecord> = BTreeMap::new();
    for o in owned {
        let mut o = o.clone();
        o.record.health_check = o
            .health_check_id
            .as_deref()
            .map(|id| check_names.get(id).map_or(id, |n| *n).to_string());
        actual.insert(o.record.key(), o);
    }
    let mut record_changes = Vec::new();
    for want in want_records {
        if let Some(f) = foreign.iter().find(|f| f.record.key() == want.key()) {
            return Err(format!(
                "{}: `{}` exists and gwctl does not own it (no {} record); it is left alone: remove it or choose another dns.record",
                region,
                f.record.describe(),
                names(&want.name, region).owner,
            ));
        }
        let before = actual.remove(&want.key());
        let action = match &before {
            None => Action::Create,
            Some(b)
                if b.record == want
                    && !want
                        .health_check
                        .as_deref()
                        .is_some_and(|h| replaced.contains(&h)) =>
            {
                Action::NoOp
            }
            Some(_) => Action::Update,
        };
        record_changes.push(RecordChange {
            action,
            before,
            after: Some(want),
        });
    }
    for (_, before) in actual {
        record_changes.push(RecordChange {
            action: Action::Delete,
            before: Some(before),
            after: None,
        });
    }
    Ok(DnsPlan {
        region: region.to_string(),
        zone: zone.to_string(),
        zone_id: zone_id.to_string(),
        checks: check_changes,
        records: record_changes,
        pending,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(ip: &str, interval_s: u32) -> CheckConfig {
        CheckConfig {
            protocol: CheckProtocol::Tcp,
            ip: ip.into(),
            port: 1883,
            path: None,
            interval_s,
            failure_threshold: 3,
            regions: Vec::new(),
            inverted: false,
        }
    }

    fn record(ip: &str) -> Record {
        Record {
            name: "us-east-1.mqtt.example.com".into(),
            rtype: "A".into(),
            set_identifier: Some("broker-1".into()),
            latency_region: None,
            multivalue: true,
            health_check: Some("broker-1".into()),
            ttl: Some(60),
            values: vec![ip.into()],
            alias: None,
            evaluate_target_health: false,
        }
    }

    fn observed(r: Record, check: &str) -> ObservedRecord {
        ObservedRecord {
            record: Record {
                health_check: None,
                ..r
            },
            health_check_id: Some(check.into()),
            alias_zone: None,
        }
    }

    fn check(id: &str, c: CheckConfig) -> ObservedCheck {
        ObservedCheck {
            id: id.into(),
            name: "broker-1".into(),
            config: c,
        }
    }

    fn plan(
        want: CheckConfig,
        want_record: Record,
        checks: &[ObservedCheck],
        owned: &[ObservedRecord],
    ) -> DnsPlan {
        let desired = (
            BTreeMap::from([("broker-1".to_string(), want)]),
            vec![want_record],
            Vec::new(),
        );
        diff(
            "us-east-1",
            "example.com",
            "Z1",
            desired,
            checks,
            owned,
            &[],
        )
        .expect("diff")
    }

    #[test]
    fn an_unchanged_region_plans_nothing_and_a_new_address_updates_check_and_record() {
        let checks = [check("hc-1", cfg("1.1.1.1", 10))];
        let owned = [observed(record("1.1.1.1"), "hc-1")];
        let p = plan(cfg("1.1.1.1", 10), record("1.1.1.1"), &checks, &owned);
        assert!(!p.has_changes(), "{p:#?}");

        let p = plan(cfg("2.2.2.2", 10), record("2.2.2.2"), &checks, &owned);
        assert_eq!(p.checks[0].action, Action::Update);
        assert_eq!(p.records[0].action, Action::Update);
        assert_eq!(
            p.records[0].deletes().map(|b| b.record.values.clone()),
            Some(vec!["1.1.1.1".to_string()]),
            "the DELETE repeats the current values exactly"
        );
    }

    #[test]
    fn a_new_interval_replaces_the_check_and_repoints_the_record() {
        let checks = [check("hc-1", cfg("1.1.1.1", 30))];
        let owned = [observed(record("1.1.1.1"), "hc-1")];
        let p = plan(cfg("1.1.1.1", 10), record("1.1.1.1"), &checks, &owned);
        assert_eq!(p.checks[0].action, Action::Replace);
        assert_eq!(p.records[0].action, Action::Update, "new check id");
    }

    #[test]
    fn duplicate_checks_keep_the_one_a_record_uses() {
        let checks = [
            check("hc-1", cfg("1.1.1.1", 10)),
            check("hc-2", cfg("1.1.1.1", 10)),
        ];
        let owned = [observed(record("1.1.1.1"), "hc-2")];
        let p = plan(cfg("1.1.1.1", 10), record("1.1.1.1"), &checks, &owned);
        let deleted: Vec<&str> = p
            .checks
            .iter()
            .filter(|c| c.action == Action::Delete)
            .filter_map(|c| c.before.as_ref().map(|b| b.id.as_str()))
            .collect();
        assert_eq!(deleted, ["hc-1"]);
        assert_eq!(p.records[0].action, Action::NoOp);
    }

    #[test]
    fn records_are_owned_only_with_the_owner_mark() {
        let mine = observed(record("1.1.1.1"), "hc-1");
        let mark = ObservedRecord {
            record: Record {
                name: "_gwctl.us-east-1.mqtt.example.com".into(),
                rtype: "TXT".into(),
                set_identifier: None,
                latency_region: None,
                multivalue: false,
                health_check: None,
                ttl: Some(300),
                values: vec![owner_value("s", "us-east-1")],
                alias: None,
                evaluate_target_health: false,
            },
            health_check_id: None,
            alias_zone: None,
        };
        let (owned_, foreign) = owned("s", "mqtt.example.com", "us-east-1", vec![mine.clone()]);
        assert!(owned_.is_empty());
        assert!(conflict("mqtt.example.com", "us-east-1", &foreign).is_some());
        let (owned_, foreign) = owned(
            "s",
            "mqtt.example.com",
            "us-east-1",
            vec![mine, mark.clone()],
        );
        assert_eq!(owned_.len(), 2);
        assert!(foreign.is_empty());
        let (owned_, _) = owned("other", "mqtt.example.com", "us-east-1", vec![mark.clone()]);
        assert!(owned_.is_empty(), "another stack's mark is not ours");

        // Even under gwctl's mark, only the shapes gwctl creates are claimed.
        let hand_added = ObservedRecord {
            record: Record {
                name: "us-east-1.mqtt.example.com".into(),
                rtype: "TXT".into(),
                values: vec!["\"note\"".into()],
                ..mark.record.clone()
            },
            health_check_id: None,
            alias_zone: None,
        };
        let (owned_, foreign) = owned(
            "s",
            "mqtt.example.com",
            "us-east-1",
            vec![mark, hand_added.clone()],
        );
        assert_eq!(owned_.len(), 1);
        assert_eq!(foreign, std::slice::from_ref(&hand_added));
        assert!(
            conflict("mqtt.example.com", "us-east-1", &foreign).is_none(),
            "a TXT beside gwctl's records is in nobody's way"
        );
    }

    #[test]
    fn records_route53_would_refuse_to_mix_are_conflicts() {
        let at_name = |rtype: &str, set: Option<&str>, region: Option<&str>| ObservedRecord {
            record: Record {
                name: "mqtt.example.com".into(),
                rtype: rtype.into(),
                set_identifier: set.map(str::to_string),
                latency_region: region.map(str::to_string),
                ..record("192.0.2.1")
            },
            health_check_id: None,
            alias_zone: None,
        };
        let c = |o: ObservedRecord| conflict("mqtt.example.com", "us-east-1", &[o]);
        assert!(c(at_name("A", None, None)).is_some(), "a simple A record");
        assert!(c(at_name("CNAME", None, None)).is_some());
        assert!(c(at_name("A", Some("us-east-1"), Some("us-east-1"))).is_some());
        assert!(
            c(at_name("A", Some("legacy"), Some("eu-west-1"))).is_none(),
            "another latency record beside ours"
        );
        assert!(c(at_name("TXT", None, None)).is_none());
    }
}
