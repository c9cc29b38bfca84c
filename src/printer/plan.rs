//! Plans for people (terminal, Markdown for a pull request) and machines (JSON in the shape
//! of Terraform's plan representation). Secrets are masked everywhere.

use serde_json::{Map, Value, json};

use super::{AnsiColor, Printer};
use crate::engine::Scope;
use crate::engine::planning::{RegionWork, StackPlan};
use crate::model::Action;
use crate::model::resources::Spec;
use crate::plan::{Change, RegionPlan};

const MASK: &str = "(sensitive)";

/// A spec as JSON, sensitive fields masked.
fn masked(spec: &Spec) -> Value {
    let mut v = serde_json::to_value(spec).unwrap_or(Value::Null);
    if let Some(obj) = v.as_object_mut() {
        for path in spec.sensitive_paths() {
            if obj.contains_key(*path) {
                obj.insert((*path).to_string(), Value::String(MASK.into()));
            }
        }
    }
    v
}

fn sensitive_shape(spec: &Spec) -> Value {
    let mut m = Map::new();
    for path in spec.sensitive_paths() {
        m.insert((*path).to_string(), Value::Bool(true));
    }
    Value::Object(m)
}

/// Fields that differ between before and after (top-level attributes).
fn changed_fields(c: &Change) -> Vec<(String, Value, Value)> {
    let (Some(b), Some(a)) = (&c.before, &c.after) else {
        return vec![];
    };
    let (bv, av) = (masked(&b.spec), masked(&a.spec));
    let (Some(bo), Some(ao)) = (bv.as_object(), av.as_object()) else {
        return vec![];
    };
    let mut out = Vec::new();
    for (k, v) in ao {
        let old = bo.get(k).cloned().unwrap_or(Value::Null);
        if &old != v
            || (v == MASK
                && b.spec != a.spec
                && c.after
                    .as_ref()
                    .is_some_and(|a| a.spec.sensitive_paths().contains(&k.as_str())))
        {
            out.push((k.clone(), old, v.clone()));
        }
    }
    out
}

fn symbol(a: Action) -> (&'static str, AnsiColor) {
    match a {
        Action::Create => ("+", AnsiColor::Green),
        Action::Update => ("~", AnsiColor::Yellow),
        Action::Replace => ("-/+", AnsiColor::Magenta),
        Action::Delete => ("-", AnsiColor::Red),
        Action::NoOp => (" ", AnsiColor::White),
    }
}

fn reason_text(c: &Change) -> String {
    match c.reason {
        Some("replace_because_cannot_update") => {
            format!("{} forces replacement", c.replace_paths.join(", "))
        }
        Some("replace_because_dependency_replaced") => "a resource it uses is replaced".into(),
        Some("delete_because_owned_not_declared") => "owned by gwctl, no longer declared".into(),
        Some("delete_because_duplicate") => "duplicate of the same resource".into(),
        Some("delete_because_replaced") => "replaced: its replacement runs".into(),
        Some("moves_to_kept_instance") => "re-associate: its instance was replaced".into(),
        Some("delete_because_destroy") => "down".into(),
        Some("held_for_upgrade") => "left to `gwctl upgrade`".into(),
        Some(other) => other.into(),
        None => String::new(),
    }
}

fn short(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "(none)".into(),
        other => other.to_string(),
    }
}

/// What `up` leaves to `gwctl upgrade`, and why a plan cannot be applied, one line each.
pub fn held_lines(plan: &RegionPlan) -> Vec<String> {
    let mut out: Vec<String> = plan
        .held
        .iter()
        .map(|h| match h.action {
            "modify" => format!(
                "{} ({}) needs new {}: AWS takes a tunnel down while it changes; \
                 `gwctl upgrade {}` changes one tunnel at a time",
                h.key,
                h.id,
                h.because.join(", "),
                plan.region
            ),
            action => format!(
                "{} ({}) needs a {} ({}): `up` never {} a running broker; \
                 `gwctl upgrade {}` does it one broker at a time",
                h.key,
                h.id,
                if action == "delete" {
                    "removal"
                } else {
                    "replacement"
                },
                h.because.join(", "),
                if action == "delete" {
                    "removes"
                } else {
                    "replaces"
                },
                plan.region
            ),
        })
        .collect();
    out.extend(plan.refused.iter().map(|r| format!("cannot apply: {r}")));
    out
}

/// The human plan of one region.
pub fn human(plan: &RegionPlan, printer: &Printer) -> String {
    let mut out = format!("{} (stack {})\n", plan.region, plan.stack);
    for c in plan.pending() {
        let (sym, color) = symbol(c.action);
        let id = c
            .before
            .as_ref()
            .map(|b| format!(" ({})", b.id))
            .unwrap_or_default();
        out.push_str(&format!(
            "  {} {}{id}",
            printer.paint(&format!("{sym:>3}"), color),
            c.key
        ));
        let reason = reason_text(c);
        if !reason.is_empty() {
            out.push_str(&format!("  # {reason}"));
        }
        out.push('\n');
        if c.action == Action::Update {
            for (field, old, new) in changed_fields(c) {
                out.push_str(&format!(
                    "        {field}: {} -> {}\n",
                    short(&old),
                    short(&new)
                ));
            }
        }
    }
    out.push_str(&summary(plan));
    out.push('\n');
    for line in held_lines(plan) {
        out.push_str(&format!(
            "{} {}: {line}\n",
            printer.paint("upgrade:", AnsiColor::Magenta),
            plan.region
        ));
    }
    for a in &plan.advisories {
        out.push_str(&format!(
            "{} {}: {a}\n",
            printer.paint("note:", AnsiColor::Cyan),
            plan.region
        ));
    }
    out
}

pub fn summary(plan: &RegionPlan) -> String {
    if !plan.has_changes() {
        return format!(
            "{}: no changes ({} resources up to date)",
            plan.region,
            plan.count(Action::NoOp)
        );
    }
    format!(
        "{}: {} to add, {} to change, {} to replace, {} to destroy",
        plan.region,
        plan.count(Action::Create),
        plan.count(Action::Update),
        plan.count(Action::Replace),
        plan.count(Action::Delete)
    )
}

pub fn markdown(plans: &[RegionPlan]) -> String {
    let mut out = String::from("## gwctl plan\n\n");
    for plan in plans {
        out.push_str(&format!("### {} (stack `{}`)\n\n", plan.region, plan.stack));
        for a in &plan.advisories {
            out.push_str(&format!("> **Note:** {a}\n\n"));
        }
        for line in held_lines(plan) {
            out.push_str(&format!("> **Upgrade:** {line}\n\n"));
        }
        if !plan.has_changes() {
            out.push_str("No changes.\n\n");
            continue;
        }
        out.push_str("| | resource | action | why |\n|---|---|---|---|\n");
        for c in plan.pending() {
            let (sym, _) = symbol(c.action);
            let action = format!("{:?}", c.action).to_lowercase();
            let mut why = reason_text(c);
            if c.action == Action::Update {
                why = changed_fields(c)
                    .into_iter()
                    .map(|(f, _, _)| f)
                    .collect::<Vec<_>>()
                    .join(", ");
            }
            out.push_str(&format!("| `{sym}` | `{}` | {action} | {why} |\n", c.key));
        }
        out.push_str(&format!("\n**{}**\n\n", summary(plan)));
    }
    out
}

/// Terraform-shaped JSON: `resource_changes[]` with `actions`, `before`/`after`,
/// `after_unknown`, `*_sensitive`, `replace_paths`, `action_reason`.
pub fn json(plans: &[RegionPlan]) -> Value {
    let regions: Vec<Value> = plans
        .iter()
        .map(|p| {
            let changes: Vec<Value> = p
                .changes
                .iter()
                .map(|c| {
                    let before = c.before.as_ref().map(|b| masked(&b.spec)).unwrap_or(Value::Null);
                    let after = c.after.as_ref().map(|a| masked(&a.spec)).unwrap_or(Value::Null);
                    let unknown = if matches!(c.action, Action::Create | Action::Replace) { json!({"id": true}) } else { json!({}) };
                    let mut v = json!({
                        "address": format!("{}/{}", p.region, c.key),
                        "type": c.key.kind.as_str(),
                        "name": c.key.name,
                        "id": c.before.as_ref().map(|b| b.id.clone()),
                        "change": {
                            "actions": c.action.terraform_actions(),
                            "before": before,
                            "after": after,
                            "after_unknown": unknown,
                            "before_sensitive": c.before.as_ref().map(|b| sensitive_shape(&b.spec)).unwrap_or(json!(false)),
                            "after_sensitive": c.after.as_ref().map(|a| sensitive_shape(&a.spec)).unwrap_or(json!(false)),
                            "replace_paths": c.replace_paths.iter().map(|p| vec![p]).collect::<Vec<_>>(),
                        },
                    });
                    if let (Some(reason), Some(obj)) = (c.reason, v.as_object_mut()) {
                        obj.insert("action_reason".into(), json!(reason));
                    }
                    v
                })
                .collect();
            json!({
                "region": p.region,
                "stack": p.stack,
                "desired_sha256": p.desired_sha256,
                "actual_sha256": p.actual_sha256,
                "summary": {
                    "add": p.count(Action::Create), "change": p.count(Action::Update),
                    "replace": p.count(Action::Replace), "destroy": p.count(Action::Delete),
                },
                "resource_changes": changes,
                "advisories": p.advisories,
                "held_for_upgrade": p.held,
                "refused": p.refused,
            })
        })
        .collect();
    json!({
        "format_version": "1.2",
        "gwctl_version": env!("CARGO_PKG_VERSION"),
        "applyable": plans.iter().any(RegionPlan::has_changes),
        "complete": true,
        "errored": false,
        "regions": regions,
    })
}

/// The backend's federation changes of one region, for people.
pub fn human_federation(
    plan: &crate::plan::federation::FederationPlan,
    backend: &str,
    printer: &Printer,
) -> String {
    let mut out = format!("{} backend federation ({backend})\n", plan.region);
    let pending: Vec<_> = plan
        .changes
        .iter()
        .filter(|c| c.action != Action::NoOp)
        .collect();
    for c in &pending {
        let (sym, color) = symbol(c.action);
        out.push_str(&format!(
            "  {} {}  # {}\n",
            printer.paint(&format!("{sym:>3}"), color),
            c.object,
            c.detail
        ));
    }
    for line in &plan.held {
        out.push_str(&format!(
            "{} {}: {line}\n",
            printer.paint("held:", AnsiColor::Magenta),
            plan.region
        ));
    }
    for (name, messages) in &plan.buffers {
        let (sym, color) = symbol(Action::Delete);
        out.push_str(&format!(
            "  {} queue/{name}  # the region's buffer, {messages} messages now; deleted once \
             its brokers are gone\n",
            printer.paint(&format!("{sym:>3}"), color),
        ));
    }
    if pending.is_empty() && plan.buffers.is_empty() {
        out.push_str(&format!(
            "{}: backend federation up to date ({} entries)\n",
            plan.region,
            plan.changes.len()
        ));
    } else {
        let n = |a: Action| pending.iter().filter(|c| c.action == a).count();
        out.push_str(&format!(
            "{}: backend federation: {} to add, {} to change, {} to remove\n",
            plan.region,
            n(Action::Create),
            n(Action::Update),
            n(Action::Delete) + plan.buffers.len()
        ));
    }
    out
}

pub fn json_federation(plan: &crate::plan::federation::FederationPlan) -> Value {
    json!({
        "endpoints_pending": plan.endpoints_pending,
        "changes": plan.changes.iter().map(|c| json!({
            "object": c.object,
            "actions": c.action.terraform_actions(),
            "detail": c.detail,
        })).collect::<Vec<_>>(),
        "held": plan.held,
        "buffers_removed": plan.buffers.iter().map(|(name, messages)| json!({
            "queue": name,
            "messages": messages,
        })).collect::<Vec<_>>(),
    })
}

/// A region's Route53 changes, for people.
pub fn human_dns(plan: &crate::plan::dns::DnsPlan, printer: &Printer) -> String {
    let mut out = format!("{} route53 (zone {})\n", plan.region, plan.zone);
    let line = |out: &mut String, a: Action, what: String| {
        let (sym, color) = symbol(a);
        out.push_str(&format!(
            "  {} {what}\n",
            printer.paint(&format!("{sym:>3}"), color)
        ));
    };
    for c in plan.checks.iter().filter(|c| c.action != Action::NoOp) {
        let cfg = c.after.as_ref().or(c.before.as_ref().map(|b| &b.config));
        let what = cfg.map_or_else(String::new, |cfg| {
            format!(
                "{} every {}s, unhealthy after {} failures{}",
                cfg.target(),
                cfg.interval_s,
                cfg.failure_threshold,
                if cfg.inverted { ", inverted" } else { "" }
            )
        });
        let id = c
            .before
            .as_ref()
            .map(|b| format!(" ({})", b.id))
            .unwrap_or_default();
        line(
            &mut out,
            c.action,
            format!("health_check/{}{id}  {what}", c.name),
        );
        if let (Action::Update | Action::Replace, Some(b), Some(a)) =
            (c.action, &c.before, &c.after)
        {
            let (bv, av) = (json!(b.config), json!(a));
            if let (Some(bo), Some(ao)) = (bv.as_object(), av.as_object()) {
                for (k, v) in ao {
                    let old = bo.get(k).cloned().unwrap_or(Value::Null);
                    if &old != v {
                        out.push_str(&format!("        {k}: {} -> {}\n", short(&old), short(v)));
                    }
                }
            }
        }
    }
    for r in plan.records.iter().filter(|r| r.action != Action::NoOp) {
        if let (Action::Update, Some(b)) = (r.action, &r.before) {
            line(
                &mut out,
                r.action,
                format!("record {}", b.record.describe()),
            );
            if let Some(a) = &r.after {
                out.push_str(&format!("        -> {}\n", a.describe()));
            }
        } else if let Some(rec) = r.after.as_ref().or(r.before.as_ref().map(|b| &b.record)) {
            line(&mut out, r.action, format!("record {}", rec.describe()));
        }
    }
    if !plan.pending.is_empty() {
        out.push_str(&format!(
            "  (records of {} follow once they have public addresses)\n",
            plan.pending.join(", ")
        ));
    }
    let n = |a: Action| {
        plan.checks.iter().filter(|c| c.action == a).count()
            + plan.records.iter().filter(|c| c.action == a).count()
    };
    if plan.has_changes() {
        out.push_str(&format!(
            "{}: route53: {} to add, {} to change, {} to replace, {} to destroy\n",
            plan.region,
            n(Action::Create),
            n(Action::Update),
            n(Action::Replace),
            n(Action::Delete)
        ));
    } else {
        out.push_str(&format!(
            "{}: route53 up to date ({} health checks, {} records)\n",
            plan.region,
            plan.checks.len(),
            plan.records.len()
        ));
    }
    out
}

pub fn json_dns(plan: &crate::plan::dns::DnsPlan) -> Value {
    json!({
        "zone": plan.zone,
        "zone_id": plan.zone_id,
        "pending": plan.pending,
        "health_checks": plan.checks.iter().map(|c| json!({
            "name": c.name,
            "actions": c.action.terraform_actions(),
            "before": c.before,
            "after": c.after,
        })).collect::<Vec<_>>(),
        "records": plan.records.iter().map(|r| json!({
            "actions": r.action.terraform_actions(),
            "before": r.before.as_ref().map(|b| &b.record),
            "after": r.after,
        })).collect::<Vec<_>>(),
    })
}

/// A region's Route53 changes as a Markdown table (appended to [`markdown`]).
pub fn markdown_dns(plan: &crate::plan::dns::DnsPlan) -> String {
    let mut rows = Vec::new();
    for c in plan.checks.iter().filter(|c| c.action != Action::NoOp) {
        let cfg = c.after.as_ref().or(c.before.as_ref().map(|b| &b.config));
        let target = cfg.map_or_else(String::new, |cfg| {
            format!("{} {}:{}", cfg.protocol.as_str(), cfg.ip, cfg.port)
        });
        rows.push((c.action, format!("health_check/{}", c.name), target));
    }
    for r in plan.records.iter().filter(|r| r.action != Action::NoOp) {
        if let Some(rec) = r.after.as_ref().or(r.before.as_ref().map(|b| &b.record)) {
            rows.push((r.action, "record".to_string(), rec.describe()));
        }
    }
    let mut out = format!("#### {} route53 (zone `{}`)\n\n", plan.region, plan.zone);
    if rows.is_empty() {
        out.push_str("No changes.\n\n");
        return out;
    }
    out.push_str("| | what | detail |\n|---|---|---|\n");
    for (action, what, detail) in rows {
        let (sym, _) = symbol(action);
        out.push_str(&format!("| `{sym}` | `{what}` | {detail} |\n"));
    }
    out.push('\n');
    out
}

/// Every region's plan as JSON (what `--json` prints and `--out` saves): the AWS plan in
/// Terraform's shape, with each region's Route53 and federation parts and the fingerprints a
/// saved plan is checked against.
pub fn stack_json(plan: &StackPlan) -> Value {
    works_json(&plan.regions.iter().collect::<Vec<_>>())
}

/// One region's plan as JSON, in the shape of [`stack_json`] (what `down --json` prints).
pub fn region_json(work: &RegionWork) -> Value {
    works_json(&[work])
}

fn works_json(works: &[&RegionWork]) -> Value {
    let plans: Vec<_> = works.iter().map(|w| w.plan.clone()).collect();
    let mut v = json(&plans);
    if let Some(regions) = v["regions"].as_array_mut() {
        for (r, w) in regions.iter_mut().zip(works) {
            let Some(obj) = r.as_object_mut() else {
                continue;
            };
            let prints = w.fingerprints();
            if let Some(f) = &w.federation {
                obj.insert("federation".into(), json_federation(f));
            }
            if let Some(d) = &w.dns {
                obj.insert("route53".into(), json_dns(d));
            }
            if let Some(h) = prints.federation_sha256 {
                obj.insert("federation_sha256".into(), json!(h));
            }
            if let Some(h) = prints.route53_sha256 {
                obj.insert("route53_sha256".into(), json!(h));
            }
        }
    }
    v
}

/// Every region's plan in Markdown, for a pull request.
pub fn stack_markdown(plan: &StackPlan) -> String {
    let plans: Vec<_> = plan.regions.iter().map(|w| w.plan.clone()).collect();
    let mut text = markdown(&plans);
    for d in plan.regions.iter().filter_map(|w| w.dns.as_ref()) {
        text.push_str(&markdown_dns(d));
    }
    text
}

/// One region's plan for people: AWS resources (in scope), Route53, the backend's federation
/// (`backend`: where its management API is).
pub fn region_human(w: &RegionWork, scope: Scope, backend: &str, printer: &Printer) -> String {
    let mut out = String::new();
    if scope.aws() {
        out.push_str(&ended(human(&w.plan, printer)));
    }
    if let Some(d) = &w.dns {
        out.push_str(&ended(human_dns(d, printer)));
    }
    if let Some(f) = &w.federation {
        out.push_str(&ended(human_federation(f, backend, printer)));
    }
    out
}

fn ended(mut s: String) -> String {
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}
