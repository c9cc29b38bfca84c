//! Plans: desired state (from region files) diffed against actual state (discovered by
//! ownership tags) into create / update / replace / delete actions. A plan is data: it is
//! printed, saved, checked for staleness and executed as a dependency graph.

pub mod advice;
pub mod desired;
pub mod dns;
pub mod exec;
pub mod federation;
pub mod terraform;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::model::Action;
use crate::model::resources::{Actual, Desired, Key, Kind, Observed, Payload, Spec};
use crate::model::sha256_hex;

/// One resource's change.
#[derive(Debug, Clone)]
pub struct Change {
    pub key: Key,
    pub action: Action,
    /// What exists now (for deletes of duplicates: the duplicate).
    pub before: Option<Observed>,
    pub after: Option<Desired>,
    pub reason: Option<&'static str>,
    pub replace_paths: Vec<&'static str>,
}

/// What a plan is for: `up` (and `upgrade`, which carries out what `up` holds) never replaces
/// or removes a running broker, `down` removes everything. `Upgrade` plans broker changes as
/// plain changes (tests compare it with `Up`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    Up,
    Upgrade,
    Destroy,
}

/// A broker `up` leaves alone: replacing or removing it needs `gwctl upgrade`.
#[derive(Debug, Clone, Serialize)]
pub struct Held {
    pub key: Key,
    pub id: String,
    /// `replace`, `delete` or `modify`.
    pub action: &'static str,
    /// Why: the fields that cannot be updated in place, or what it depends on.
    pub because: Vec<String>,
}

/// The plan of one region.
#[derive(Debug, Clone)]
pub struct RegionPlan {
    pub stack: String,
    pub region: String,
    pub changes: Vec<Change>,
    /// Hash of the desired state and of the discovered state: a saved plan is applied only
    /// while both are unchanged.
    pub desired_sha256: String,
    pub actual_sha256: String,
    /// What an operator should know that is not a change (e.g. a newer image is available).
    pub advisories: Vec<String>,
    /// Brokers this plan would replace or remove, left to `gwctl upgrade` (intent `Up`).
    pub held: Vec<Held>,
    /// Why this plan cannot be applied at all, if it cannot (e.g. it would replace the
    /// network every broker runs in).
    pub refused: Option<String>,
}

impl RegionPlan {
    pub fn pending(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(|c| c.action != Action::NoOp)
    }

    pub fn has_changes(&self) -> bool {
        self.pending().next().is_some()
    }

    /// Brokers waiting for `gwctl upgrade`.
    pub fn has_held(&self) -> bool {
        !self.held.is_empty()
    }

    pub fn count(&self, action: Action) -> usize {
        self.changes.iter().filter(|c| c.action == action).count()
    }
}

/// SHA-256 of a value's JSON: how plans recognise the state they were made from.
pub fn fingerprint<T: Serialize>(value: &T) -> String {
    sha256_hex(&serde_json::to_string(value).unwrap_or_default())
}

/// Desired state, as hashed for staleness: specs and tags (secret values enter as hashes).
pub fn desired_fingerprint(desired: &[Desired]) -> String {
    let view: Vec<(&Key, &Spec, &BTreeMap<String, String>)> =
        desired.iter().map(|d| (&d.key, &d.spec, &d.tags)).collect();
    fingerprint(&view)
}

/// Discovered state, as hashed for staleness: what each resource is, without its transient
/// state (an instance going from pending to running changes nothing a plan decided).
fn actual_fingerprint(actual: &Actual) -> String {
    let view: Vec<(&Key, &str, &Spec, &BTreeMap<String, String>)> = actual
        .resources
        .iter()
        .map(|o| (&o.key, o.id.as_str(), &o.spec, &o.parts))
        .collect();
    fingerprint(&view)
}

/// Diffs desired against actual. `Destroy` plans the deletion of everything owned instead;
/// `Up` holds every broker replacement or removal for `upgrade`.
pub fn diff(
    stack: &str,
    region: &str,
    mut desired: Vec<Desired>,
    actual: &Actual,
    intent: Intent,
) -> RegionPlan {
    let destroy = intent == Intent::Destroy;
    let desired_sha256 = desired_fingerprint(&desired);
    let actual_sha256 = actual_fingerprint(actual);
    if destroy {
        desired.clear();
    }
    // Every RunInstances of this plan gets a client token of its own: the SDK repeats a launch
    // whose answer was lost with the same token, and AWS answers with what the first attempt
    // launched. Unique to the plan, not derived from the state alone: AWS keeps a token's
    // answer for hours, terminated instances included, and the state before a first `up` is
    // the state after a `down`.
    let nonce: u64 = rand::random();
    for d in &mut desired {
        if let Payload::Launch { client_token, .. } = &mut d.payload {
            *client_token = format!(
                "gwctl-{}",
                &sha256_hex(&format!("{actual_sha256}/{nonce}/{region}/{}", d.key))[..40]
            );
        }
    }
    let mut changes = Vec::new();
    let wanted: BTreeSet<&Key> = desired.iter().map(|d| &d.key).collect();
    for d in &desired {
        let mut found = actual.get(&d.key);
        // The one to keep: for a broker, one that is already what is desired (a replacement
        // running beside the broker it replaces); else the first as discovered (discovery
        // puts the one other resources refer to, the one in use, first).
        let broker = d.key.is_broker();
        found.sort_by_key(|a| broker && a.spec.as_declared(&d.spec) != d.spec);
        let (action, before, paths, reason) = match found.first() {
            None => (Action::Create, None, vec![], None),
            Some(a) if a.spec.as_declared(&d.spec) == d.spec => {
                (Action::NoOp, Some((*a).clone()), vec![], None)
            }
            Some(a) => {
                let paths = d.spec.replace_paths(&a.spec);
                if paths.is_empty() {
                    (Action::Update, Some((*a).clone()), paths, None)
                } else {
                    (
                        Action::Replace,
                        Some((*a).clone()),
                        paths,
                        Some("replace_because_cannot_update"),
                    )
                }
            }
        };
        changes.push(Change {
            key: d.key.clone(),
            action,
            before,
            after: Some(d.clone()),
            reason,
            replace_paths: paths,
        });
        // Two resources with one key: a broker and its replacement (`upgrade` launches the
        // new one beside the old), an earlier run interrupted between a create and its
        // bookkeeping, or someone copied our tags. Keep one, delete the rest.
        let kept_matches = action == Action::NoOp;
        for extra in found.iter().skip(1) {
            changes.push(Change {
                key: d.key.clone(),
                action: Action::Delete,
                before: Some((*extra).clone()),
                after: None,
                reason: Some(if kept_matches && d.key.is_broker() {
                    "delete_because_replaced"
                } else {
                    "delete_because_duplicate"
                }),
                replace_paths: vec![],
            });
        }
    }
    for o in &actual.resources {
        if !wanted.contains(&o.key) {
            changes.push(Change {
                key: o.key.clone(),
                action: Action::Delete,
                before: Some(o.clone()),
                after: None,
                reason: Some(if destroy {
                    "delete_because_destroy"
                } else {
                    "delete_because_owned_not_declared"
                }),
                replace_paths: vec![],
            });
        }
    }
    readdress_moved_instances(&mut changes);
    let mut held = Vec::new();
    if intent == Intent::Up {
        held = hold_brokers(&mut changes);
    }
    propagate_replacements(&mut changes);
    let refused = (intent == Intent::Up)
        .then(|| refuse_broker_rebuild(&changes))
        .flatten();
    changes.sort_by(|a, b| (&a.key, a.action).cmp(&(&b.key, b.action)));
    RegionPlan {
        stack: stack.to_string(),
        region: region.to_string(),
        changes,
        desired_sha256,
        actual_sha256,
        advisories: Vec::new(),
        held,
        refused,
    }
}

/// Takes the replacements and removals of running brokers out of an `up` plan: done all at
/// once they would take the region down and lose what its queues hold. Their Elastic IPs stay
/// where they are (they follow when `upgrade` replaces a broker). New VPN tunnel options too.
fn hold_brokers(changes: &mut [Change]) -> Vec<Held> {
    let mut held = Vec::new();
    // A replacement already running beside its broker (an interrupted `upgrade`): the old
    // broker is still to be drained, and its address to be moved, by `upgrade`.
    let replacing: BTreeMap<Key, String> = changes
        .iter()
        .filter(|c| c.reason == Some("delete_because_replaced"))
        .filter_map(|c| {
            let kept = changes
                .iter()
                .find(|k| k.key == c.key && k.after.is_some())?;
            Some((c.key.clone(), kept.before.as_ref()?.id.clone()))
        })
        .collect();
    for c in changes.iter_mut() {
        let Some(before) = &c.before else { continue };
        let removal =
            c.action == Action::Delete && c.reason == Some("delete_because_owned_not_declared");
        // Any second instance of a broker slot, replacement or not: deleting it undrained
        // would drop its clients and its queues' replicas.
        let replaced = c.action == Action::Delete
            && matches!(
                c.reason,
                Some("delete_because_replaced" | "delete_because_duplicate")
            );
        if !c.key.is_broker() || !(c.action == Action::Replace || removal || replaced) {
            continue;
        }
        held.push(Held {
            key: c.key.clone(),
            id: before.id.clone(),
            action: if removal { "delete" } else { "replace" },
            because: if removal {
                vec!["count".to_string()]
            } else if let Some(new) = replacing.get(&c.key) {
                vec![format!("its replacement {new} runs beside it")]
            } else if replaced {
                vec!["a second instance of its slot".to_string()]
            } else {
                c.replace_paths.iter().map(|p| p.to_string()).collect()
            },
        });
        c.action = Action::NoOp;
        c.reason = Some("held_for_upgrade");
    }
    // Its address stays on the old broker until `upgrade` has drained it.
    for c in changes.iter_mut() {
        if c.key.kind == Kind::ElasticIp
            && c.reason == Some("moves_to_kept_instance")
            && held.iter().any(|h| h.key.name == c.key.name)
        {
            c.action = Action::NoOp;
            c.reason = Some("held_for_upgrade");
        }
    }
    // New tunnel options take the VPN's tunnels down while AWS applies them: `upgrade` changes
    // one tunnel at a time (the other carries the traffic).
    for c in changes.iter_mut() {
        let (Some(before), Some(after)) = (&c.before, &c.after) else {
            continue;
        };
        if let (
            Spec::VpnConnection {
                tunnels,
                pre_shared_keys_sha256: keys,
                routes,
                ..
            },
            Spec::VpnConnection {
                tunnels: want,
                pre_shared_keys_sha256: want_keys,
                routes: want_routes,
                ..
            },
        ) = (&before.spec.as_declared(&after.spec), &after.spec)
            && c.action == Action::Update
            && (tunnels != want || keys != want_keys)
        {
            held.push(Held {
                key: c.key.clone(),
                id: before.id.clone(),
                action: "modify",
                because: vec!["tunnels".to_string()],
            });
            // Routes still change now (an update never touches tunnels).
            if routes == want_routes {
                c.action = Action::NoOp;
                c.reason = Some("held_for_upgrade");
            }
        }
    }
    // A removed broker keeps its address and certificate until `upgrade` removes it.
    let removed: BTreeSet<String> = held
        .iter()
        .filter(|h| h.action == "delete")
        .map(|h| h.key.name.clone())
        .collect();
    for c in changes.iter_mut() {
        if c.action == Action::Delete && removed.contains(&c.key.name) {
            c.action = Action::NoOp;
            c.reason = Some("held_for_upgrade");
        }
    }
    held
}

/// An Elastic IP associated with another instance than the one its slot keeps (a broker and
/// its replacement share a key, so the address's reference alone cannot tell them apart):
/// re-associating it is an update.
fn readdress_moved_instances(changes: &mut [Change]) {
    let kept: BTreeMap<Key, String> = changes
        .iter()
        .filter(|c| c.key.kind == Kind::Instance && c.after.is_some())
        .filter_map(|c| Some((c.key.clone(), c.before.as_ref()?.id.clone())))
        .collect();
    for c in changes.iter_mut() {
        let (Some(before), Some(after)) = (&c.before, &c.after) else {
            continue;
        };
        let Spec::ElasticIp {
            instance: crate::model::resources::Ref::Key(k),
        } = &after.spec
        else {
            continue;
        };
        let on = before.parts.get("instance_id");
        if c.action == Action::NoOp
            && let (Some(on), Some(want)) = (on, kept.get(k))
            && on != want
        {
            c.action = Action::Update;
            c.reason = Some("moves_to_kept_instance");
        }
    }
}

/// A broker replaced because what it runs in is replaced (its subnet, security group or
/// instance profile) cannot be rolled: every broker would go at once.
fn refuse_broker_rebuild(changes: &[Change]) -> Option<String> {
    let brokers: Vec<String> = changes
        .iter()
        .filter(|c| c.key.is_broker() && c.action == Action::Replace)
        .map(|c| c.key.to_string())
        .collect();
    if brokers.is_empty() {
        return None;
    }
    let causes: Vec<String> = changes
        .iter()
        .filter(|c| !c.key.is_broker() && c.action == Action::Replace)
        .map(|c| c.key.to_string())
        .collect();
    Some(format!(
        "replacing {} would replace every broker at once ({}); gwctl does not roll a network \
         change: build the region beside this one, or take it down and up again",
        causes.join(", "),
        brokers.join(", ")
    ))
}

/// A resource that refers to a replaced one would keep pointing at a deleted id: it is
/// replaced too (or, for Elastic IPs and instance profiles, re-associated).
fn propagate_replacements(changes: &mut [Change]) {
    loop {
        let replaced: BTreeSet<Key> = changes
            .iter()
            .filter(|c| {
                matches!(c.action, Action::Replace)
                    || (c.action == Action::Delete
                        && c.after.is_none()
                        && c.reason == Some("delete_because_owned_not_declared"))
            })
            .map(|c| c.key.clone())
            .collect();
        let mut changed = false;
        for c in changes.iter_mut() {
            let Some(after) = &c.after else { continue };
            if !matches!(c.action, Action::NoOp | Action::Update) || c.before.is_none() {
                continue;
            }
            if after.spec.refs().iter().any(|k| replaced.contains(k)) {
                if after.spec.replaced_dep_forces_replace() {
                    c.action = Action::Replace;
                    c.reason = Some("replace_because_dependency_replaced");
                    changed = true;
                } else if c.action != Action::Update {
                    c.action = Action::Update;
                    changed = true;
                }
            }
        }
        if !changed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::resources::{Kind, Ref};

    fn desired(kind: Kind, name: &str, spec: Spec) -> Desired {
        Desired {
            key: Key::new(kind, name),
            spec,
            tags: BTreeMap::new(),
            payload: Payload::None,
            after: vec![],
        }
    }

    fn observed(kind: Kind, name: &str, id: &str, spec: Spec) -> Observed {
        Observed {
            key: Key::new(kind, name),
            id: id.into(),
            spec,
            parts: BTreeMap::new(),
            state: None,
        }
    }

    fn vpc(cidr: &str) -> Spec {
        Spec::Vpc {
            cidr: cidr.into(),
            dns_hostnames: true,
        }
    }

    fn subnet(cidr: &str) -> Spec {
        Spec::Subnet {
            vpc: Ref::Key(Key::new(Kind::Vpc, "main")),
            zone: "us-east-1a".into(),
            cidr: cidr.into(),
            public_ip_on_launch: true,
        }
    }

    fn action(plan: &RegionPlan, kind: Kind, name: &str) -> Vec<(Action, Option<&'static str>)> {
        plan.changes
            .iter()
            .filter(|c| c.key == Key::new(kind, name))
            .map(|c| (c.action, c.reason))
            .collect()
    }

    #[test]
    fn creates_keeps_updates_replaces_and_deletes() {
        let want = vec![
            desired(Kind::Vpc, "main", vpc("10.1.0.0/16")),
            desired(Kind::Subnet, "a", subnet("10.1.1.0/24")),
        ];
        let mut have = Actual::default();
        assert!(
            diff("s", "r", want.clone(), &have, Intent::Upgrade)
                .changes
                .iter()
                .all(|c| c.action == Action::Create)
        );

        have.resources = vec![
            observed(
                Kind::Vpc,
                "main",
                "vpc-1",
                Spec::Vpc {
                    cidr: "10.1.0.0/16".into(),
                    dns_hostnames: false,
                },
            ),
            observed(Kind::Subnet, "a", "subnet-1", subnet("10.1.1.0/24")),
            observed(Kind::Subnet, "old", "subnet-2", subnet("10.1.2.0/24")),
        ];
        let plan = diff("s", "r", want.clone(), &have, Intent::Upgrade);
        assert_eq!(action(&plan, Kind::Vpc, "main"), [(Action::Update, None)]);
        assert_eq!(action(&plan, Kind::Subnet, "a"), [(Action::NoOp, None)]);
        assert_eq!(
            action(&plan, Kind::Subnet, "old"),
            [(Action::Delete, Some("delete_because_owned_not_declared"))]
        );

        // A CIDR change replaces the VPC, and with it everything inside.
        have.resources[0] = observed(Kind::Vpc, "main", "vpc-1", vpc("10.9.0.0/16"));
        let plan = diff("s", "r", want, &have, Intent::Upgrade);
        let vpc_change = plan
            .changes
            .iter()
            .find(|c| c.key.kind == Kind::Vpc)
            .expect("vpc");
        assert_eq!(
            (vpc_change.action, vpc_change.replace_paths.clone()),
            (Action::Replace, vec!["cidr"])
        );
        assert_eq!(
            action(&plan, Kind::Subnet, "a"),
            [(Action::Replace, Some("replace_because_dependency_replaced"))]
        );
    }

    #[test]
    fn up_holds_broker_replacements_and_refuses_a_network_rebuild_under_them() {
        let broker = Spec::test_broker;
        let want = vec![
            desired(Kind::Vpc, "main", vpc("10.1.0.0/16")),
            desired(
                Kind::Instance,
                "broker-1",
                broker(Ref::Key(Key::new(Kind::Vpc, "main")), "ami-new"),
            ),
        ];
        let mut have = Actual {
            resources: vec![
                observed(Kind::Vpc, "main", "vpc-1", vpc("10.1.0.0/16")),
                observed(
                    Kind::Instance,
                    "broker-1",
                    "i-1",
                    broker(Ref::Key(Key::new(Kind::Vpc, "main")), "ami-old"),
                ),
            ],
        };
        let up = diff("s", "r", want.clone(), &have, Intent::Up);
        assert_eq!(
            action(&up, Kind::Instance, "broker-1"),
            [(Action::NoOp, Some("held_for_upgrade"))]
        );
        assert_eq!(up.held.len(), 1);
        assert_eq!(up.held[0].because, ["image"]);
        assert!(up.refused.is_none());
        let upgrade = diff("s", "r", want.clone(), &have, Intent::Upgrade);
        assert_eq!(
            action(&upgrade, Kind::Instance, "broker-1"),
            [(Action::Replace, Some("replace_because_cannot_update"))]
        );

        // A new VPC would take the broker with it: up refuses the whole region.
        have.resources[0] = observed(Kind::Vpc, "main", "vpc-1", vpc("10.9.0.0/16"));
        let up = diff("s", "r", want, &have, Intent::Up);
        assert!(
            up.refused
                .as_deref()
                .is_some_and(|r| r.contains("replacing vpc/main would replace every broker")),
            "{:?}",
            up.refused
        );
    }

    #[test]
    fn a_replacement_beside_its_broker_is_kept_and_up_holds_the_rest() {
        let broker = |image: &str| Spec::test_broker(Ref::Id("subnet-1".into()), image);
        let slot = Key::new(Kind::Instance, "broker-1");
        let address = Spec::ElasticIp {
            instance: Ref::Key(slot.clone()),
        };
        let want = vec![
            desired(Kind::Instance, "broker-1", broker("ami-new")),
            desired(Kind::ElasticIp, "broker-1", address.clone()),
        ];
        // The replacement (i-2) runs beside the old broker (i-1), which still has the address.
        let mut eip = observed(Kind::ElasticIp, "broker-1", "eipalloc-1", address);
        eip.parts.insert("instance_id".into(), "i-1".into());
        let have = Actual {
            resources: vec![
                observed(Kind::Instance, "broker-1", "i-1", broker("ami-old")),
                observed(Kind::Instance, "broker-1", "i-2", broker("ami-new")),
                eip,
            ],
        };
        let upgrade = diff("s", "r", want.clone(), &have, Intent::Upgrade);
        let kept: Vec<_> = upgrade
            .changes
            .iter()
            .filter(|c| c.key == slot && c.after.is_some())
            .filter_map(|c| c.before.as_ref().map(|b| b.id.as_str()))
            .collect();
        assert_eq!(kept, ["i-2"], "the one already as desired is kept");
        assert_eq!(
            action(&upgrade, Kind::Instance, "broker-1"),
            [
                (Action::Delete, Some("delete_because_replaced")),
                (Action::NoOp, None)
            ]
        );
        assert_eq!(
            action(&upgrade, Kind::ElasticIp, "broker-1"),
            [(Action::Update, Some("moves_to_kept_instance"))],
            "the address is seen on the other instance of its slot"
        );

        // up neither deletes the old broker nor moves its address: upgrade drains it first.
        let up = diff("s", "r", want, &have, Intent::Up);
        assert_eq!(up.pending().count(), 0, "{:?}", up.changes);
        assert_eq!(
            up.held
                .iter()
                .map(|h| (h.id.as_str(), h.action))
                .collect::<Vec<_>>(),
            [("i-1", "replace")]
        );
        assert!(up.held[0].because[0].contains("i-2 runs beside it"));
    }

    #[test]
    fn a_newer_duplicate_of_another_kind_does_not_displace_the_original() {
        let want = vec![desired(Kind::Vpc, "main", vpc("10.1.0.0/16"))];
        let have = Actual {
            resources: vec![
                observed(Kind::Vpc, "main", "vpc-1", vpc("10.9.0.0/16")),
                observed(Kind::Vpc, "main", "vpc-2", vpc("10.1.0.0/16")),
            ],
        };
        let plan = diff("s", "r", want, &have, Intent::Up);
        let kept: Vec<_> = plan
            .changes
            .iter()
            .filter(|c| c.after.is_some())
            .filter_map(|c| c.before.as_ref().map(|b| b.id.as_str()))
            .collect();
        assert_eq!(kept, ["vpc-1"]);
    }

    #[test]
    fn duplicates_are_deleted_and_the_first_discovered_kept() {
        // Discovery lists the one in use (referred to) first, whatever its id.
        let want = vec![desired(Kind::Vpc, "main", vpc("10.1.0.0/16"))];
        let have = Actual {
            resources: vec![
                observed(Kind::Vpc, "main", "vpc-2", vpc("10.1.0.0/16")),
                observed(Kind::Vpc, "main", "vpc-1", vpc("10.1.0.0/16")),
            ],
        };
        let plan = diff("s", "r", want, &have, Intent::Upgrade);
        let kept: Vec<_> = plan
            .changes
            .iter()
            .filter(|c| c.action == Action::NoOp)
            .map(|c| c.before.as_ref().map(|b| b.id.clone()))
            .collect();
        assert_eq!(kept, [Some("vpc-2".to_string())]);
        assert_eq!(action(&plan, Kind::Vpc, "main").len(), 2);
    }

    #[test]
    fn deletes_run_after_what_refers_to_them() {
        let have = Actual {
            resources: vec![
                observed(Kind::Vpc, "main", "vpc-1", vpc("10.1.0.0/16")),
                observed(Kind::Subnet, "a", "subnet-1", subnet("10.1.1.0/24")),
            ],
        };
        let plan = diff("s", "r", vec![], &have, Intent::Destroy);
        let graph = exec::graph(&plan);
        let (vpc_op, vpc_deps) = graph
            .iter()
            .find(|(op, _)| op.key().kind == Kind::Vpc)
            .expect("vpc delete");
        assert!(matches!(vpc_op, exec::Op::Delete { .. }));
        assert_eq!(vpc_deps.len(), 1);
        assert_eq!(vpc_deps[0].key().kind, Kind::Subnet);
    }

    #[test]
    fn creates_wait_for_what_they_refer_to() {
        let want = vec![
            desired(Kind::Vpc, "main", vpc("10.1.0.0/16")),
            desired(Kind::Subnet, "a", subnet("10.1.1.0/24")),
        ];
        let plan = diff("s", "r", want, &Actual::default(), Intent::Upgrade);
        let graph = exec::graph(&plan);
        let (_, deps) = graph
            .iter()
            .find(|(op, _)| op.key().kind == Kind::Subnet)
            .expect("subnet create");
        assert_eq!(
            deps.iter().map(|d| d.key().to_string()).collect::<Vec<_>>(),
            ["vpc/main"]
        );
    }
}
