//! Drills for people: the regions' health, then the region answered per client location now
//! and with the drilled region down.

use super::Printer;
use crate::engine::drill::DrillReport;
use crate::model::routing::Answer;

pub fn human(report: &DrillReport, printer: &Printer) -> String {
    let describe = |a: &Answer| match &a.region {
        Some(r) if a.fail_open => format!("{r} (fail-open: every region unhealthy)"),
        Some(r) => r.clone(),
        None => "(no record)".into(),
    };
    let mut out = format!(
        "drill {} ({}; latency by distance between region locations)\n",
        report.region,
        if report.mode == "dry" {
            "dry run from the current health-check states"
        } else {
            "live: answers while its health checks were failing"
        }
    );
    for s in &report.regions {
        let healthy = s.endpoints.iter().filter(|e| e.healthy).count();
        let verdict = printer.verdict(s.healthy());
        out.push_str(&format!(
            "  region {:<16} {verdict} ({healthy}/{} endpoints healthy)\n",
            s.region,
            s.endpoints.len()
        ));
    }
    out.push_str(&format!(
        "  {:<18} {:<32} with {} down\n",
        "clients near", "now", report.region
    ));
    for r in &report.answers {
        out.push_str(&format!(
            "  {:<18} {:<32} {}\n",
            r.client,
            describe(&r.now),
            describe(&r.down)
        ));
    }
    out
}
