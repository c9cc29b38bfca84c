//! Executing a plan as a dependency graph: independent operations run concurrently (bounded),
//! each starts as soon as the resources it needs exist. A failure stops only what depends on
//! it; everything else still runs, so a re-run has less to do.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::RegionPlan;
use crate::cloud::{Aws, CloudError, Ids};
use crate::model::Action;
use crate::model::resources::{Key, Observed};

/// One step of the graph.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    Delete { key: Key, id: String },
    Create(Key),
    Update(Key),
}

impl Op {
    pub fn key(&self) -> &Key {
        match self {
            Op::Delete { key, .. } | Op::Create(key) | Op::Update(key) => key,
        }
    }

    pub fn verb(&self) -> &'static str {
        match self {
            Op::Delete { .. } => "deleted",
            Op::Create(_) => "created",
            Op::Update(_) => "updated",
        }
    }
}

/// What the executor reports as it goes.
#[derive(Debug, Clone)]
pub enum Event {
    Started(Op),
    Done { op: Op, id: String, took: Duration },
    Failed { op: Op, error: String },
    Skipped { op: Op, because: Key },
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub done: usize,
    pub failed: Vec<(Op, String)>,
    pub skipped: Vec<Op>,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.failed.is_empty() && self.skipped.is_empty()
    }
}

struct Node {
    op: Op,
    deps: BTreeSet<usize>,
}

/// The graph as (operation, what it waits for), for display and tests.
pub fn graph(plan: &RegionPlan) -> Vec<(Op, Vec<Op>)> {
    let all = nodes(plan);
    all.iter()
        .map(|n| {
            (
                n.op.clone(),
                n.deps.iter().map(|i| all[*i].op.clone()).collect(),
            )
        })
        .collect()
}

/// The operations that can never run because they wait for each other, if any.
fn cycle(nodes: &[Node]) -> Vec<Op> {
    let mut done = vec![false; nodes.len()];
    loop {
        let ready: Vec<usize> = (0..nodes.len())
            .filter(|i| !done[*i] && nodes[*i].deps.iter().all(|d| done[*d]))
            .collect();
        if ready.is_empty() {
            return (0..nodes.len())
                .filter(|i| !done[*i])
                .map(|i| nodes[i].op.clone())
                .collect();
        }
        for i in ready {
            done[i] = true;
        }
    }
}

/// Builds the graph: creates and updates after what they refer to; deletes after whatever
/// refers to the deleted resource is deleted or updated away; a replacement's create after
/// its delete.
fn nodes(plan: &RegionPlan) -> Vec<Node> {
    let mut ops: Vec<Op> = Vec::new();
    for c in plan.pending() {
        match c.action {
            Action::Create => ops.push(Op::Create(c.key.clone())),
            Action::Update => ops.push(Op::Update(c.key.clone())),
            Action::Replace | Action::Delete => {
                if let Some(b) = &c.before {
                    ops.push(Op::Delete {
                        key: c.key.clone(),
                        id: b.id.clone(),
                    });
                }
                if c.action == Action::Replace {
                    ops.push(Op::Create(c.key.clone()));
                }
            }
            Action::NoOp => {}
        }
    }
    let index_of = |pred: &dyn Fn(&Op) -> bool| -> Vec<usize> {
        ops.iter()
            .enumerate()
            .filter(|(_, o)| pred(o))
            .map(|(i, _)| i)
            .collect()
    };
    let mut out = Vec::new();
    for op in &ops {
        let mut deps = BTreeSet::new();
        match op {
            Op::Create(key) | Op::Update(key) => {
                let change = plan
                    .changes
                    .iter()
                    .find(|c| &c.key == key && c.after.is_some());
                if let Some(after) = change.and_then(|c| c.after.as_ref()) {
                    for r in after.needs() {
                        deps.extend(index_of(
                            &|o| matches!(o, Op::Create(k) | Op::Update(k) if *k == r),
                        ));
                    }
                }
                if matches!(op, Op::Create(_)) {
                    deps.extend(index_of(
                        &|o| matches!(o, Op::Delete { key: k, .. } if k == key),
                    ));
                }
            }
            Op::Delete { key, id } => {
                // Everything whose current state refers to this one goes (or lets go) first.
                for c in &plan.changes {
                    let Some(before) = &c.before else { continue };
                    if !before.spec.refs().contains(key) || (&c.key == key && &before.id == id) {
                        continue;
                    }
                    deps.extend(index_of(&|o| match o {
                        Op::Delete { key: k, id: i } => k == &c.key && i == &before.id,
                        Op::Update(k) => k == &c.key,
                        Op::Create(_) => false,
                    }));
                }
            }
        }
        out.push(Node {
            op: op.clone(),
            deps,
        });
    }
    out
}

/// Runs the plan against AWS with at most `parallelism` operations at once.
pub async fn run(
    aws: &Aws,
    plan: &RegionPlan,
    parallelism: usize,
    on_event: impl Fn(Event),
) -> Outcome {
    let nodes = nodes(plan);
    let mut outcome = Outcome::default();
    // Checked before any API call: a cycle would otherwise strand half-applied work.
    let stuck = cycle(&nodes);
    if !stuck.is_empty() {
        outcome.failed.extend(
            stuck
                .into_iter()
                .map(|op| (op, "dependency cycle".to_string())),
        );
        return outcome;
    }
    // Ids of everything that exists and stays: the starting point for resolving references.
    let mut ids = Ids::new();
    // (Not a duplicate of a key, which has nothing desired: a broker's replacement and the
    // broker it replaces share one.)
    for c in plan.changes.iter().filter(|c| c.after.is_some()) {
        if let (Some(b), Action::NoOp | Action::Update) = (&c.before, c.action) {
            ids.entry(c.key.clone()).or_insert_with(|| b.id.clone());
        }
    }
    let ids = Arc::new(Mutex::new(ids));
    let befores: Arc<BTreeMap<(Key, String), Observed>> = Arc::new(
        plan.changes
            .iter()
            .filter_map(|c| {
                c.before
                    .as_ref()
                    .map(|b| ((c.key.clone(), b.id.clone()), b.clone()))
            })
            .collect(),
    );
    let afters: Arc<BTreeMap<Key, crate::model::resources::Desired>> = Arc::new(
        plan.changes
            .iter()
            .filter_map(|c| c.after.as_ref().map(|a| (c.key.clone(), a.clone())))
            .collect(),
    );
    let limit = Arc::new(Semaphore::new(parallelism.max(1)));
    let mut state: Vec<Option<bool>> = vec![None; nodes.len()]; // None = pending, Some(ok)
    let mut started = vec![false; nodes.len()];
    let mut tasks: JoinSet<(usize, Result<String, CloudError>, Duration)> = JoinSet::new();
    loop {
        // Start everything whose dependencies succeeded; skip what depends on a failure.
        let mut progressed = true;
        while progressed {
            progressed = false;
            for (i, node) in nodes.iter().enumerate() {
                if started[i] {
                    continue;
                }
                if let Some(bad) = node.deps.iter().find(|d| state[**d] == Some(false)) {
                    started[i] = true;
                    state[i] = Some(false);
                    outcome.skipped.push(node.op.clone());
                    on_event(Event::Skipped {
                        op: node.op.clone(),
                        because: nodes[*bad].op.key().clone(),
                    });
                    progressed = true;
                    continue;
                }
                if node.deps.iter().all(|d| state[*d] == Some(true)) {
                    started[i] = true;
                    let (aws, ids, befores, afters, limit, op) = (
                        aws.clone(),
                        ids.clone(),
                        befores.clone(),
                        afters.clone(),
                        limit.clone(),
                        node.op.clone(),
                    );
                    on_event(Event::Started(op.clone()));
                    tasks.spawn(async move {
                        let _permit = limit.acquire_owned().await;
                        let start = Instant::now();
                        let result = execute(&aws, &op, &ids, &befores, &afters).await;
                        (i, result, start.elapsed())
                    });
                }
            }
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        let (i, result, took) = match joined {
            Ok(r) => r,
            Err(e) => {
                // A panicking task is a bug; report it against nothing in particular.
                outcome.failed.push((
                    Op::Create(Key::new(crate::model::resources::Kind::Vpc, "?")),
                    e.to_string(),
                ));
                continue;
            }
        };
        let op = nodes[i].op.clone();
        match result {
            Ok(id) => {
                state[i] = Some(true);
                outcome.done += 1;
                on_event(Event::Done { op, id, took });
            }
            Err(e) => {
                state[i] = Some(false);
                on_event(Event::Failed {
                    op: op.clone(),
                    error: e.to_string(),
                });
                outcome.failed.push((op, e.to_string()));
            }
        }
    }
    outcome
}

async fn execute(
    aws: &Aws,
    op: &Op,
    ids: &Mutex<Ids>,
    befores: &BTreeMap<(Key, String), Observed>,
    afters: &BTreeMap<Key, crate::model::resources::Desired>,
) -> Result<String, CloudError> {
    let snapshot = || ids.lock().map(|m| m.clone()).unwrap_or_default();
    let missing = |what: &str| CloudError::new("plan", format!("{} has no {what} state", op.key()));
    match op {
        Op::Delete { key, id } => {
            let before = befores
                .get(&(key.clone(), id.clone()))
                .ok_or_else(|| missing("current"))?;
            aws.delete(before).await?;
            Ok(id.clone())
        }
        Op::Create(key) => {
            let after = afters.get(key).ok_or_else(|| missing("desired"))?;
            let created = aws.create(after, &snapshot()).await?;
            if let Ok(mut m) = ids.lock() {
                m.insert(key.clone(), created.id.clone());
            }
            Ok(created.id)
        }
        Op::Update(key) => {
            let after = afters.get(key).ok_or_else(|| missing("desired"))?;
            let before = befores
                .iter()
                .find(|((k, _), _)| k == key)
                .map(|(_, b)| b)
                .ok_or_else(|| missing("current"))?;
            let updated = aws.update(after, before, &snapshot()).await?;
            Ok(updated.id)
        }
    }
}
