//! `upgrade`'s steps and gates, for people and machines.

use serde_json::json;

use super::{AnsiColor, Printer};
use crate::engine::upgrade::{Mode, UpgradePlan};

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
            "{}{role}: {n} step{}{}\n",
            r.region,
            if n == 1 { "" } else { "s" },
            match &r.mode {
                Mode::Roll => String::new(),
                Mode::BlueGreen { from, to } =>
                    format!(", blue-green: from cluster {from} to a new cluster {to} beside it"),
                Mode::Refused { .. } => ", refused".to_string(),
            }
        ));
        if let Mode::Refused { reason } = &r.mode {
            out.push_str(&format!("  {}\n", printer.paint(reason, AnsiColor::Red)));
        }
        for (i, step) in r.steps.iter().enumerate() {
            out.push_str(&format!(
                "  {} {}\n",
                printer.paint(&format!("{}.", i + 1), AnsiColor::Magenta),
                step.describe()
            ));
            if r.mode == Mode::Roll || !step.is_broker() {
                for gate in step.gates() {
                    out.push_str(&format!("       gate: {gate}\n"));
                }
            }
        }
        if matches!(r.mode, Mode::BlueGreen { .. }) {
            out.push_str("  the move, in order:\n");
            for gate in Mode::blue_green_gates() {
                out.push_str(&format!("       {gate}\n"));
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
                "mode": r.mode,
                "blue_green": matches!(r.mode, Mode::BlueGreen { .. }).then(Mode::blue_green_gates),
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
