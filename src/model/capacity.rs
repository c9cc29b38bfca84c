//! How many devices a region's brokers absorb when they all reconnect at once (a region
//! coming back, a network blip), from what `gwctl loadtest` measured on one node: a TLS
//! handshake costs the node CPU, so the connect rate a node absorbs grows with its vCPUs; an
//! idle connection costs it memory, which RabbitMQ caps at its high watermark. Pure
//! arithmetic: the figures come in, advice goes out.

use crate::spec::GatewaySpec;

/// What one node absorbed, measured, with where it was measured.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct NodeFigures {
    /// MQTT-over-TLS connects (handshake, authorization, CONNACK) per second per vCPU of
    /// the node, with no client timing out.
    pub connects_per_s_per_vcpu: f64,
    /// Node memory per idle connected device.
    pub kib_per_connection: f64,
    /// Node memory before any device.
    pub base_mib: f64,
    pub source: &'static str,
}

/// Measured on RabbitMQ 4.0.5 (Debian 13's) with gwctl's gateway configuration, on a 2-core
/// machine whose cores the load client shared (5–7 % of them): 3 000 devices at once connected
/// with no attempt timing out at 342/s (4 000 at once did not: attempts passed 10 s); 12 000
/// spread over 60 s held 53 KiB each, 5 s after the last connected. `scripts/bench-storm`;
/// BENCHMARKS.md, "Reconnection storms".
pub const MEASURED: NodeFigures = NodeFigures {
    connects_per_s_per_vcpu: 170.0,
    kib_per_connection: 55.0,
    base_mib: 140.0,
    source: "gwctl loadtest on RabbitMQ 4.0.5, 2 cores shared with the client: 342 TLS connects/s, \
             55 KiB per connection (BENCHMARKS.md, Reconnection storms)",
};

/// The share of a node's memory RabbitMQ lets itself use before it blocks publishers
/// (`vm_memory_high_watermark.relative` as gwctl renders it).
pub const MEMORY_WATERMARK: f64 = 0.6;

/// vCPUs and memory (GiB) of an instance type, for the families gateways run on.
pub fn shape(instance_type: &str) -> Option<(u32, f64)> {
    let (family, size) = instance_type.split_once('.')?;
    let per_vcpu_gib = match family.trim_end_matches(['a', 'd', 'n', 'g']) {
        f if f.starts_with('c') => 2.0,
        f if f.starts_with('m') => 4.0,
        f if f.starts_with('r') => 8.0,
        f if f.starts_with('t') => {
            return match size {
                "micro" => Some((2, 1.0)),
                "small" => Some((2, 2.0)),
                "medium" => Some((2, 4.0)),
                "large" => Some((2, 8.0)),
                "xlarge" => Some((4, 16.0)),
                "2xlarge" => Some((8, 32.0)),
                _ => None,
            };
        }
        _ => return None,
    };
    let vcpus = match size {
        "large" => 2,
        "xlarge" => 4,
        s => s.strip_suffix("xlarge")?.parse::<u32>().ok()? * 4,
    };
    Some((vcpus, f64::from(vcpus) * per_vcpu_gib))
}

/// What a region needs for `devices` reconnecting within `within_s` seconds.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Advice {
    pub devices: u64,
    pub within_s: f64,
    /// Connects per second one node of the type absorbs, and connections its memory holds.
    pub connects_per_s_per_node: f64,
    pub connections_per_node: u64,
    /// Nodes the connect rate needs, nodes the memory needs, and the larger.
    pub nodes_for_rate: u64,
    pub nodes_for_memory: u64,
    pub nodes: u64,
    /// With `have` nodes: the window devices must spread their reconnects over (their
    /// jitter), seconds; and whether memory holds them at all.
    pub have: u64,
    pub jitter_window_s: f64,
    pub memory_holds: bool,
}

/// The advice for `devices` reconnecting within `within_s` on nodes of `(vcpus, mem_gib)`,
/// `have` of them.
pub fn advise(
    figures: &NodeFigures,
    (vcpus, mem_gib): (u32, f64),
    devices: u64,
    within_s: f64,
    have: u64,
) -> Advice {
    let rate = figures.connects_per_s_per_vcpu * f64::from(vcpus);
    let budget_kib = (mem_gib * MEMORY_WATERMARK * 1024.0 - figures.base_mib) * 1024.0;
    let per_node = (budget_kib / figures.kib_per_connection).max(0.0).floor() as u64;
    let ceil = |x: f64| x.ceil().max(1.0) as u64;
    let nodes_for_rate = ceil(devices as f64 / (rate * within_s.max(1.0)));
    let nodes_for_memory = if per_node == 0 {
        u64::MAX
    } else {
        devices.div_ceil(per_node).max(1)
    };
    Advice {
        devices,
        within_s,
        connects_per_s_per_node: rate,
        connections_per_node: per_node,
        nodes_for_rate,
        nodes_for_memory,
        nodes: nodes_for_rate.max(nodes_for_memory),
        have,
        jitter_window_s: devices as f64 / (rate * have.max(1) as f64),
        memory_holds: per_node.saturating_mul(have) >= devices,
    }
}

/// `plan`'s warning for a region whose declared devices its brokers do not absorb within
/// its declared window (`load:` in the region file), with the figures; `None` when they do,
/// or when the file declares no load.
pub fn check(gw: &GatewaySpec, figures: &NodeFigures) -> Option<String> {
    let load = gw.load.as_ref()?;
    let instance = &gw.brokers.instance_type;
    let Some(shape) = shape(instance) else {
        return Some(format!(
            "{}: load: {} devices declared, but gwctl has no figures for instance type {instance}: \
             measure it with `gwctl loadtest {}`",
            gw.region, load.devices, gw.region
        ));
    };
    let have = u64::from(gw.brokers.count);
    let a = advise(
        figures,
        shape,
        load.devices,
        f64::from(load.reconnect_within_s),
        have,
    );
    if a.nodes <= have {
        return None;
    }
    Some(format!(
        "{region}: {devices} devices reconnecting within {within} s need {nodes} brokers of {instance} \
         ({rate:.0} TLS connects/s and {per_node} connections per node: {why}); the region has {have} \
         — with {have} the devices need a jitter window of {window:.0} s{memory}. Figures: {source}",
        region = gw.region,
        devices = load.devices,
        within = load.reconnect_within_s,
        nodes = a.nodes,
        rate = a.connects_per_s_per_node,
        per_node = a.connections_per_node,
        why = if a.nodes_for_rate >= a.nodes_for_memory {
            format!("the connect rate needs {}", a.nodes_for_rate)
        } else {
            format!("memory needs {}", a.nodes_for_memory)
        },
        window = a.jitter_window_s,
        memory = if a.memory_holds {
            ""
        } else {
            ", and their memory does not hold them all"
        },
        source = figures.source,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIGURES: NodeFigures = NodeFigures {
        connects_per_s_per_vcpu: 100.0,
        kib_per_connection: 50.0,
        base_mib: 100.0,
        source: "test",
    };

    #[test]
    fn shapes_of_the_families_gateways_run_on() {
        assert_eq!(shape("c6i.large"), Some((2, 4.0)));
        assert_eq!(shape("c7i.2xlarge"), Some((8, 16.0)));
        assert_eq!(shape("m6i.xlarge"), Some((4, 16.0)));
        assert_eq!(shape("c6gn.4xlarge"), Some((16, 32.0)));
        assert_eq!(shape("t3.small"), Some((2, 2.0)));
        assert_eq!(shape("x2iedn.large"), None);
        assert_eq!(shape("c6i"), None);
    }

    #[test]
    fn nodes_follow_the_rate_or_the_memory_whichever_needs_more() {
        // 2 vCPUs: 200 connects/s per node; 4 GiB × 0.6 − 100 MiB = 2357.6 MiB → 48 283 conns.
        let a = advise(&FIGURES, (2, 4.0), 60_000, 60.0, 3);
        assert_eq!(a.connects_per_s_per_node, 200.0);
        assert_eq!(a.connections_per_node, 48_283);
        assert_eq!(a.nodes_for_rate, 5); // 60 000 / (200 × 60) = 5
        assert_eq!(a.nodes_for_memory, 2);
        assert_eq!(a.nodes, 5);
        assert_eq!(a.jitter_window_s, 100.0); // 60 000 / (200 × 3)
        assert!(a.memory_holds);
        // A slow reconnect window needs fewer nodes; then memory decides.
        let b = advise(&FIGURES, (2, 4.0), 200_000, 3600.0, 3);
        assert_eq!(b.nodes_for_rate, 1);
        assert_eq!(b.nodes_for_memory, 5);
        assert!(!b.memory_holds);
    }
}
