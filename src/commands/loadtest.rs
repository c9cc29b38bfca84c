use std::time::Duration;

use crate::cli::{Cli, LoadtestArgs};
use crate::engine::loadtest::{Arrival, StormPlan};
use crate::engine::loadtest::{LoadOptions, LoadReport};
use crate::engine::{Scope, runtime};
use crate::error::{Error, Result, Status};
use crate::printer::Printer;
use crate::printer::progress::Reporter;
use crate::spec::Selection;

pub fn run(cli: &Cli, args: &LoadtestArgs, printer: &Printer) -> Result<Status> {
    let endpoint = args.endpoint.as_deref().map(host_port).transpose()?;
    if args.devices == 0 {
        return Err(Error::Usage("--devices: at least 1".into()));
    }
    if args.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        return Err(Error::Usage(
            "--rate: a positive number of devices per second".into(),
        ));
    }
    let engine = super::engine(
        cli,
        Selection::Regions(vec![args.region.clone()]),
        Scope::All,
    )?;
    let ms = Duration::from_millis;
    let opts = LoadOptions {
        endpoint,
        devices: args.devices,
        id_prefix: args.id_prefix.clone(),
        storm: StormPlan {
            arrival: args.rate.map_or(Arrival::AllAtOnce, Arrival::Rate),
            jitter: ms(args.jitter_ms),
            backoff_first: ms(args.backoff_ms),
            backoff_max: ms(args.backoff_max_ms.max(args.backoff_ms)),
            attempt_timeout: Duration::from_secs(args.attempt_timeout.max(1)),
            give_up_after: Duration::from_secs(args.give_up.max(1)),
            subscribe: args.subscribe,
            publish_every: args.publish_every_ms.filter(|m| *m > 0).map(ms),
            hold: Duration::from_secs(args.hold),
        },
        plan_for: args
            .plan_devices
            .map(|n| (n, args.plan_within.unwrap_or(60))),
    };
    let reporter = Reporter::new(printer);
    let report = runtime()?.block_on(engine.loadtest(&args.region, opts, &reporter))?;
    if args.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| Error::Failed(format!("printing JSON: {e}")))?;
        printer.data(&text);
    } else {
        for line in lines(&report) {
            printer.data(&line);
        }
    }
    match report.timed_out {
        0 => Ok(Status::Success),
        n => Err(Error::Failed(format!(
            "{n} of {} devices did not connect within --give-up",
            report.devices
        ))),
    }
}

fn host_port(s: &str) -> Result<(String, u16)> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| Error::Usage(format!("--endpoint {s}: expected HOST:PORT")))?;
    let port = port
        .parse::<u16>()
        .map_err(|_| Error::Usage(format!("--endpoint {s}: `{port}` is not a port")))?;
    Ok((host.to_string(), port))
}

/// The report as people read it: every figure beside the client's own CPU share.
fn lines(r: &LoadReport) -> Vec<String> {
    let mut out = vec![format!(
        "{}: {}/{} devices connected to {} in {:.1} s ({:.0}/s), {} timed out; {} attempts",
        r.region,
        r.connected,
        r.devices,
        r.endpoint,
        r.connect_s,
        r.connects_per_s,
        r.timed_out,
        r.attempts
    )];
    out.push(format!(
        "connect latency (first attempt to CONNACK, retries included): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        r.latency_ms.p50, r.latency_ms.p99, r.latency_ms.max
    ));
    if !r.failures.is_empty() {
        let by: Vec<String> = r.failures.iter().map(|(k, n)| format!("{k} {n}")).collect();
        out.push(format!("failed attempts (retried): {}", by.join(", ")));
    }
    if r.published > 0 {
        out.push(format!(
            "messages: {} acknowledged ({:.0}/s)",
            r.published, r.messages_per_s
        ));
    }
    out.push(format!(
        "client: {:.1} s CPU, {:.0} % of this machine's {} cores",
        r.client.cpu_s,
        r.client.share_of_machine * 100.0,
        r.client.cores
    ));
    match &r.broker {
        Some(b) => out.push(format!(
            "broker {}: memory {} MiB -> {} MiB (peak {} MiB){}; file descriptors {} of {}, as of its last statistics round",
            b.connected.node,
            b.before.memory_bytes >> 20,
            b.connected.memory_bytes >> 20,
            b.peak_memory_bytes >> 20,
            b.kib_per_connection
                .map_or(String::new(), |k| format!(", {k:.0} KiB per connection")),
            b.connected.fd_used.map_or("?".into(), |n| n.to_string()),
            b.connected.fd_total.map_or("?".into(), |n| n.to_string()),
        )),
        None => out.push(
            "broker: not measured (no management endpoint for the region in the endpoint file)"
                .into(),
        ),
    }
    if let (Some(o), Some(d)) = (r.listen_overflows, r.listen_drops) {
        out.push(format!(
            "kernel (this machine): {o} listen-queue overflows, {d} SYNs dropped"
        ));
    }
    if let Some(a) = &r.advice {
        out.push(format!(
            "advice: {} devices reconnecting within {:.0} s need {} broker(s) ({:.0} connects/s and {} connections per node); with {} the devices need a jitter window of {:.0} s{}",
            a.devices,
            a.within_s,
            a.nodes,
            a.connects_per_s_per_node,
            a.connections_per_node,
            a.have,
            a.jitter_window_s,
            if a.memory_holds { "" } else { ", and memory does not hold them" }
        ));
    } else if r.timed_out > 0 {
        out.push("advice: none — devices timed out, so this storm was more than the node absorbs; try fewer devices, a rate or a jitter window".into());
    }
    out
}
