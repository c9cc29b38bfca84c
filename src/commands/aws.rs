//! What plan, up, down and status share: per-region discovery and planning (AWS resources and
//! the backend's federation entries), progress, confirmation.

use std::io::{BufRead, IsTerminal, Write};
use std::time::SystemTime;

use crate::broker;
use crate::cli::Scope;
use crate::cloud::{Aws, Owner};
use crate::dns::DnsPlan;
use crate::endpoints::{BrokerAddress, EndpointMap};
use crate::error::{Error, Result};
use crate::federation as topology;
use crate::lock::{self, RegionLock};
use crate::plan::desired::{self, Inputs};
use crate::plan::exec::{self, Event, Outcome};
use crate::plan::federation::{self, FederationPlan};
use crate::plan::{self, Action, RegionPlan};
use crate::printer::Printer;
use crate::render;
use crate::resources::Kind;
use crate::spec::{GatewaySpec, Selection, Stack};

/// Everything a command needs besides its arguments.
pub struct Context {
    pub stack: Stack,
    pub endpoints: EndpointMap,
    pub scope: Scope,
    /// The backend's upstream sets are shared by all regions: regions applied concurrently
    /// take turns at read-modify-write.
    pub federation_lock: tokio::sync::Mutex<()>,
}

impl Context {
    /// Loads the stack for the selected regions: invalid input stops here, before any call.
    pub fn load(
        regions: &std::path::Path,
        selection: Selection,
        endpoints: Option<&std::path::Path>,
        scope: Scope,
    ) -> Result<Context> {
        let stack = crate::spec::load(regions, &selection).map_err(Error::Invalid)?;
        let endpoints = match endpoints {
            Some(p) => EndpointMap::load(p).map_err(Error::Usage)?,
            None => EndpointMap::default(),
        };
        Ok(Context {
            stack,
            endpoints,
            scope,
            federation_lock: tokio::sync::Mutex::new(()),
        })
    }

    pub fn selection(select: &crate::cli::RegionSelection) -> Selection {
        if select.all {
            Selection::All
        } else {
            Selection::Regions(select.names.clone())
        }
    }

    /// The backend's management API, as gwctl's admin user.
    pub fn backend_client(&self) -> Result<broker::Client> {
        let b = &self.stack.backend.spec;
        let url = match self.endpoints.get("backend") {
            Some(list) => list[0].management_url(),
            None => {
                let e = b
                    .brokers
                    .endpoints
                    .first()
                    .ok_or_else(|| Error::Failed("backend.yaml lists no broker".into()))?;
                format!("http://{}:{}", e.host, e.management_port)
            }
        };
        let password = b
            .credentials
            .admin
            .password
            .resolve(&self.stack.dir)
            .map_err(|e| Error::Failed(e.to_string()))?;
        Ok(broker::Client::new(
            url,
            b.credentials.admin.user.clone(),
            password,
        ))
    }

    /// Where a gateway's brokers are reached: the endpoint file, else the brokers' private
    /// addresses as discovered. `None` while some broker does not exist yet.
    pub fn gateway_addresses(
        &self,
        gw: &GatewaySpec,
        plan: &RegionPlan,
    ) -> Option<Vec<BrokerAddress>> {
        if let Some(list) = self.endpoints.get(&gw.region) {
            return Some(list.to_vec());
        }
        let brokers: Vec<_> = plan
            .changes
            .iter()
            .filter(|c| {
                c.key.kind == Kind::Instance
                    && c.key.name.starts_with("broker-")
                    && c.after.is_some()
            })
            .collect();
        let mut out = Vec::new();
        for c in brokers {
            if !matches!(c.action, Action::NoOp | Action::Update) {
                return None;
            }
            let ip = c.before.as_ref()?.parts.get("private_ip")?;
            out.push(BrokerAddress {
                host: ip.clone(),
                amqp_port: gw.brokers.ports.amqp,
                management_port: gw.brokers.ports.management,
                mqtt_port: Some(gw.brokers.ports.mqtt),
            });
        }
        Some(out)
    }

    /// The backend's federation upstream URIs for a gateway (credentials included).
    fn gateway_uris(&self, addresses: &[BrokerAddress]) -> Result<Vec<String>> {
        let fed = &self.stack.backend.spec.credentials.federation;
        let pw = fed
            .password
            .resolve(&self.stack.dir)
            .map_err(|e| Error::Failed(e.to_string()))?;
        let pw = topology::encode_component(pw.expose());
        Ok(addresses
            .iter()
            .map(|a| topology::amqp_uri(&fed.user, &pw, &a.host, a.amqp_port, 30))
            .collect())
    }
}

/// One region's work: its AWS plan and (in scope) the backend's federation plan.
pub struct RegionWork {
    pub aws: Aws,
    pub plan: RegionPlan,
    /// Route53 health checks and records (in the AWS scope).
    pub dns: Option<DnsPlan>,
    pub federation: Option<FederationPlan>,
}

impl RegionWork {
    pub fn has_changes(&self, scope: Scope) -> bool {
        (scope.aws() && self.plan.has_changes())
            || self.dns.as_ref().is_some_and(DnsPlan::has_changes)
            || self
                .federation
                .as_ref()
                .is_some_and(FederationPlan::has_changes)
    }
}

/// Discovers what gwctl owns in one region and diffs it against the region file (`gw` =
/// `None`: against nothing, for `down`).
pub async fn plan_region(
    ctx: &Context,
    gw: Option<&GatewaySpec>,
    region: &str,
) -> Result<RegionWork> {
    let stack = &ctx.stack;
    let backend = &stack.backend.spec;
    let owner = Owner {
        stack: backend.stack.clone(),
        region: region.to_string(),
    };
    let aws = Aws::connect(owner).await;
    let iam = desired::iam_name(&backend.stack, region);
    let prefix = render::ssm_prefix(&backend.stack, region);
    let failed = |e: crate::cloud::CloudError| Error::Failed(format!("{region}: {e}"));
    let (desired, actual) = match gw {
        Some(gw) => {
            let (actual, broker_image) =
                tokio::join!(aws.discover(&iam, &prefix), aws.find_image(&gw.brokers.ami));
            let mut support_images = std::collections::BTreeMap::new();
            for g in &gw.support {
                if let Some(ami) = &g.ami
                    && ami != &gw.brokers.ami
                {
                    support_images
                        .insert(g.name.clone(), aws.find_image(ami).await.map_err(failed)?);
                }
            }
            let secrets =
                render::node_secrets(stack, Some(gw)).map_err(|e| Error::Failed(e.to_string()))?;
            let inputs = Inputs {
                backend,
                gateway: gw,
                broker_image: broker_image.map_err(failed)?,
                support_images,
                secrets,
            };
            (desired::gateway(&inputs)?, actual.map_err(failed)?)
        }
        None => (
            Vec::new(),
            aws.discover(&iam, &prefix).await.map_err(failed)?,
        ),
    };
    let plan = plan::diff(&backend.stack, region, desired, &actual, gw.is_none());
    let dns = if ctx.scope.aws() {
        let addresses = super::dns::addresses_from_plan(&plan);
        Some(super::dns::plan(&aws, stack, gw, region, &addresses).await?)
    } else {
        None
    };
    let federation = if ctx.scope.federation() {
        Some(plan_federation(ctx, gw, region, &plan).await?)
    } else {
        None
    };
    Ok(RegionWork {
        aws,
        plan,
        dns,
        federation,
    })
}

/// The backend's federation plan for a region, given its (current) AWS plan.
pub async fn plan_federation(
    ctx: &Context,
    gw: Option<&GatewaySpec>,
    region: &str,
    plan: &RegionPlan,
) -> Result<FederationPlan> {
    let client = ctx.backend_client()?;
    let uris = match gw.and_then(|g| ctx.gateway_addresses(g, plan)) {
        Some(addresses) => Some(ctx.gateway_uris(&addresses)?),
        None => None,
    };
    federation::plan(&client, region, gw, uris.as_deref())
        .await
        .map_err(|e| Error::Failed(format!("{region}: backend federation: {e}")))
}

/// Asks once before changing anything; refuses when nobody can answer.
pub fn confirm(printer: &Printer, question: &str, yes: bool) -> Result<bool> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err(Error::Usage(
            "refusing to change anything without --yes: standard input is not a terminal".into(),
        ));
    }
    printer.info(&format!("{question} Only 'yes' is accepted: "));
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Error::io("reading the answer", e))?;
    Ok(answer.trim() == "yes")
}

/// Executes one region's plan, reporting progress: a bar on a terminal, timestamped lines
/// otherwise.
pub async fn execute(
    aws: &Aws,
    plan: &RegionPlan,
    parallelism: usize,
    printer: &Printer,
    bars: &indicatif::MultiProgress,
) -> Outcome {
    let total = exec::graph(plan).len() as u64;
    let region = plan.region.clone();
    let bar = if printer.is_tty() {
        let bar = bars.add(indicatif::ProgressBar::new(total));
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {prefix:16} [{bar:30}] {pos}/{len} {wide_msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_prefix(region.clone());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        Some(bar)
    } else {
        None
    };
    let quiet = printer.is_quiet();
    let bar_for_events = bar.clone();
    let on_event = move |e: Event| {
        let line = match &e {
            Event::Started(op) => {
                if let Some(b) = &bar_for_events {
                    b.set_message(format!("{} {}", op.verb().trim_end_matches('d'), op.key()));
                }
                return;
            }
            Event::Done { op, id, took } => format!(
                "{region} {} {} {id} ({:.1}s)",
                op.verb(),
                op.key(),
                took.as_secs_f32()
            ),
            Event::Failed { op, error } => format!(
                "{region} FAILED {} {}: {error}",
                op.verb().trim_end_matches('d'),
                op.key()
            ),
            Event::Skipped { op, because } => format!(
                "{region} skipped {} (needs {because}, which failed)",
                op.key()
            ),
        };
        match &bar_for_events {
            Some(b) => {
                b.inc(1);
                b.println(line);
            }
            None if !quiet => log_line(&line),
            None => {}
        }
    };
    let outcome = exec::run(aws, plan, parallelism, on_event).await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    outcome
}

/// A timestamped progress line on stderr (plain output, e.g. in CI).
pub fn log_line(line: &str) {
    eprintln!(
        "{} {line}",
        humantime::format_rfc3339_seconds(SystemTime::now())
    );
}

/// Takes the cloud-side lock of every region, in name order (two runs over overlapping regions
/// cannot each hold one the other waits for). On failure, releases what it took.
pub async fn lock_regions(
    ctx: &Context,
    regions: &[String],
    operation: &str,
    timeout: std::time::Duration,
    printer: &Printer,
) -> Result<Vec<RegionLock>> {
    let backend = &ctx.stack.backend.spec;
    let aws = Aws::connect(Owner {
        stack: backend.stack.clone(),
        region: backend.region.clone(),
    })
    .await;
    let mut sorted = regions.to_vec();
    sorted.sort();
    let mut held = Vec::new();
    for region in &sorted {
        let notify = |line: String| printer.info(&line);
        match lock::acquire(
            &aws,
            &backend.dns.zone,
            &backend.dns.record,
            region,
            operation,
            timeout,
            notify,
        )
        .await
        {
            Ok(l) => held.push(l),
            Err(e) => {
                release_locks(held, printer).await;
                return Err(Error::Failed(e.to_string()));
            }
        }
    }
    Ok(held)
}

pub async fn release_locks(locks: Vec<RegionLock>, printer: &Printer) {
    for l in locks {
        let region = l.region.clone();
        match l.release().await {
            Ok(true) => {}
            Ok(false) => printer.warn(&format!(
                "the lock of {region} was broken and taken by someone else while this run held it"
            )),
            Err(e) => printer.warn(&format!(
                "could not release the lock of {region}: {e}; `gwctl unlock {region}` breaks it"
            )),
        }
    }
}
