//! `upgrade`'s steps and gates, for people and machines.

use serde_json::json;

use super::{AnsiColor, Printer};
use crate::engine::upgrade::UpgradePlan;

pub fn human(plan: &UpgradePlan, printer: &Printer) -> String {
    let mut out = String::new();
    for (n, r) in plan.regions.iter().enumerate() {
        let role = if n == 0 { " (canary)" } else { "" };
        if r.steps.is_empty() {
            out.push_str(&format!("{}{role}: nothing to upgrade\n", r.region));
            continue;
        }
        let n = r.steps.len();
        out.push_str(&format!(
            "{}{role}: {n} step{}\n",
            r.region,
            if n == 1 { "" } else { "s" }
        ));
        for (i, step) in r.steps.iter().enumerate() {
            out.push_str(&format!(
                "  {} {}\n",
                printer.paint(&format!("{}.", i + 1), AnsiColor::Magenta),
                step.describe()
            ));
            for gate in step.gates() {
                out.push_str(&format!("       gate: {gate}\n"));
            }
        }
    }
    out
}

pub fn json(plan: &UpgradePlan) -> String {
    let regions: Vec<serde_json::Value> = plan
        .regions
        .iter()
        .enumerate()
        .map(|(n, r)| {
            json!({
                "region": r.region,
                "canary": n == 0,
                "steps": r.steps.iter().map(|s| json!({
                    "step": s,
                    "describe": s.describe(),
                    "gates": s.gates(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::to_string_pretty(&json!({ "regions": regions })).unwrap_or_default()
}
