//! `status` for people: one block per region.

use super::Printer;
use crate::engine::status::RegionStatus;
use crate::engine::status::RouterView;

/// One region's status for people.
pub fn human(s: &RegionStatus, printer: &Printer) -> String {
    let verdict = printer.verdict(s.healthy);
    let mut out = format!("{}  {verdict}\n", s.region);
    out.push_str(&format!(
        "  resources   {} owned, {} AWS changes pending\n",
        s.resources, s.aws_changes_pending
    ));
    for i in &s.instances {
        out.push_str(&format!(
            "  instance    {:<10} {:<20} {:<8} {}\n",
            i.name,
            i.id,
            i.state,
            i.private_ip.as_deref().unwrap_or("-")
        ));
    }
    if s.upgrades_pending > 0 {
        out.push_str(&format!(
            "  upgrade     {} changes wait for `gwctl upgrade {}`\n",
            s.upgrades_pending, s.region
        ));
    }
    for snap in &s.snapshots {
        out.push_str(&format!(
            "  snapshot    {:<20} {} ({}, of {})\n",
            snap.of, snap.id, snap.state, snap.instance
        ));
    }
    for t in &s.tunnels {
        let verdict = printer.verdict(t.status == "UP");
        out.push_str(&format!(
            "  vpn tunnel  {:<36} {verdict} ({})\n",
            t.outside_ip, t.status
        ));
    }
    for c in &s.health_checks {
        let verdict = printer.verdict(c.healthy);
        out.push_str(&format!(
            "  check       {:<10} {:<36} {verdict} ({} checkers){}\n",
            c.name,
            c.target,
            c.checkers,
            if c.inverted { " inverted" } else { "" }
        ));
    }
    for r in &s.records {
        out.push_str(&format!("  record      {}\n", r.describe()));
    }
    for c in &s.certificates {
        out.push_str(&format!(
            "  certificate {:<10} expires {}{}  {}\n",
            c.name,
            c.expires,
            if c.due {
                " (due: renewed by the next `up`)"
            } else {
                ""
            },
            c.names.join(", ")
        ));
    }
    for b in &s.brokers {
        out.push_str(&format!(
            "  broker      {:<30} {}\n",
            b.at,
            match (&b.version, b.connections) {
                (Some(v), Some(1)) => format!("RabbitMQ {v}, 1 connection"),
                (Some(v), Some(n)) => format!("RabbitMQ {v}, {n} connections"),
                _ => "unreachable".into(),
            }
        ));
    }
    for l in &s.links {
        let err = l
            .error
            .as_ref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        out.push_str(&format!(
            "  link        {:<17} {:<30} {}{err}  {} [{}]\n",
            l.direction,
            l.upstream,
            l.status,
            l.uri.as_deref().unwrap_or("-"),
            l.at
        ));
    }
    match &s.router {
        Some(RouterView::Counters(c)) => {
            let broadcast: u64 = c.broadcast.values().sum();
            out.push_str(&format!(
                "  router      {} routed here, {broadcast} broadcast (all regions), {} devices \
                 located, {} waiting, {} redelivered\n",
                c.routed.get(&s.region).copied().unwrap_or(0),
                c.locations,
                c.queue_messages,
                c.redelivered
            ));
        }
        Some(RouterView::Unreachable(why)) => {
            out.push_str(&format!("  router      not reachable: {why}\n"));
        }
        None => {}
    }
    for p in &s.problems {
        out.push_str(&format!("  problem     {p}\n"));
    }
    out
}
