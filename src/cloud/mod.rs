//! The AWS layer: every call gwctl makes to AWS is in this module (EC2, IAM, SSM).
//!
//! Production code only sees the standard AWS configuration: the credential chain, profiles,
//! the region, and `AWS_ENDPOINT_URL` (how tests point it at the moto emulator).

mod ec2;
mod iam;
mod retries;
mod route53;
mod snapshots;
mod ssm;
pub use iam::{PATH as IAM_PATH, POLICY_NAME, ROLE_DESCRIPTION, TRUST as IAM_TRUST};
pub use retries::Retries;
pub use snapshots::Snapshot;
pub use ssm::{CERTIFICATES, PARAMETER_DESCRIPTION};

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_ec2::error::DisplayErrorContext;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

use crate::model::dns::{CheckConfig, ObservedCheck, ObservedRecord, Record, RecordChange};
use crate::model::resources::{Actual, Desired, Key, Kind, Observed, Ref, Spec};
use crate::spec::model::Ami;

pub use ec2::Image;

/// A failed AWS call. Messages carry AWS's words, never request bodies (which may hold secrets).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{op}: {message}")]
pub struct CloudError {
    pub op: String,
    pub code: Option<String>,
    pub message: String,
    /// Set when the call may have been carried out although it failed: no answer came back
    /// (the connection dropped, the attempt timed out) or AWS answered with a 5xx.
    pub may_be_done: Option<retries::Fault>,
}

impl CloudError {
    pub fn new(op: impl Into<String>, message: impl Into<String>) -> CloudError {
        CloudError {
            op: op.into(),
            code: None,
            message: message.into(),
            may_be_done: None,
        }
    }

    fn from_sdk<E>(op: &str, e: E) -> CloudError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        // AWS's code and message when the service answered; the whole chain otherwise
        // (timeouts, connection errors).
        let message = match (e.code(), e.message()) {
            (Some(code), Some(msg)) => format!("{code}: {msg}"),
            _ => DisplayErrorContext(&e).to_string(),
        };
        CloudError {
            op: op.to_string(),
            code: e.code().map(str::to_string),
            message,
            may_be_done: None,
        }
    }

    fn code_is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    /// AWS's eventual consistency: an id that was just created is not visible everywhere yet,
    /// an instance profile is not usable yet, an instance is still pending.
    fn is_eventual(&self) -> bool {
        let code = self.code.as_deref().unwrap_or_default();
        code.ends_with(".NotFound")
            || code == "IncorrectInstanceState"
            // AssociateAddress on a launching instance: "The pending instance 'i-…' is not
            // in a valid state for this operation."
            || (code == "InvalidInstanceID" && self.message.contains("pending"))
            || (code == "InvalidParameterValue"
                && self.message.to_lowercase().contains("instance profile"))
    }

    /// AWS's answers to a create or attach that was carried out already.
    fn is_done_already(&self) -> bool {
        matches!(
            self.code.as_deref(),
            Some(
                "EntityAlreadyExists"
                    | "ParameterAlreadyExists"
                    | "Resource.AlreadyAssociated"
                    | "InvalidPermission.Duplicate"
                    | "RouteAlreadyExists"
                    | "InvalidSubnet.Conflict"
                    | "InvalidGroup.Duplicate"
                    // AddRoleToInstanceProfile when the profile holds its role already.
                    | "LimitExceeded"
            )
        )
    }

    fn is_dependency(&self) -> bool {
        matches!(
            self.code.as_deref(),
            Some("DependencyViolation" | "DeleteConflict" | "InvalidIPAddress.InUse")
        ) || self.code_is("AuthFailure") && self.message.contains("in use")
    }
}

/// An EC2 Describe filter with one value.
fn filter(name: &str, value: &str) -> aws_sdk_ec2::types::Filter {
    aws_sdk_ec2::types::Filter::builder()
        .name(name)
        .values(value)
        .build()
}

/// `?`-friendly conversion for SDK results.
trait Call<T> {
    fn op(self, op: &str) -> Result<T, CloudError>;
}

impl<T, E> Call<T> for Result<T, aws_sdk_ec2::error::SdkError<E, HttpResponse>>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    fn op(self, op: &str) -> Result<T, CloudError> {
        use aws_sdk_ec2::error::SdkError;
        self.map_err(|e| {
            let may_be_done = match &e {
                SdkError::DispatchFailure(_)
                | SdkError::TimeoutError(_)
                | SdkError::ResponseError(_) => Some(retries::Fault::NoAnswer),
                SdkError::ServiceError(s) => {
                    retries::fault_of(s.raw()).filter(|f| *f == retries::Fault::Server)
                }
                _ => None,
            };
            CloudError {
                may_be_done,
                ..CloudError::from_sdk(op, e)
            }
        })
    }
}

/// Retries `f` while it fails with `retry_if`, with jittered exponential backoff, for up to
/// `budget`. Throttling and 5xx are retried by the SDK itself; this covers what it does not.
async fn retry<T, F, Fut>(
    budget: Duration,
    retry_if: fn(&CloudError) -> bool,
    mut f: F,
) -> Result<T, CloudError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, CloudError>>,
{
    // tokio's clock, as the sleeps below (a test with paused time sees the budget spent).
    let start = tokio::time::Instant::now();
    let mut delay = Duration::from_millis(200);
    loop {
        match f().await {
            Err(e) if retry_if(&e) && start.elapsed() + delay < budget => {
                retries::count_not_ready();
                let jitter = rand::random::<f64>() * 0.5 + 0.75;
                tokio::time::sleep(delay.mul_f64(jitter)).await;
                // At most ~3 s between tries: what is waited on here (an instance leaving
                // `pending`, a new id becoming visible) is usually seconds away, and a long
                // backoff step would be paid in full on the run's critical path (a 10 s step
                // overshot an instance pending 10 s by up to 10 s). A try every 3 s is far
                // inside EC2's request buckets.
                delay = (delay * 2).min(Duration::from_secs(3));
            }
            other => return other,
        }
    }
}

/// How long one attempt of an AWS call may take before it is abandoned and retried: AWS
/// answers in well under a second (RunInstances in a few); 30 s is a stall, not a slow call.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// How many times an update may go on from where a refused step left it (see `Aws::update`).
const MAX_UPDATE_ROUNDS: usize = 8;

/// Who owns what: the stack and the region, written as tags on everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub stack: String,
    pub region: String,
}

/// AWS clients of one region.
#[derive(Debug, Clone)]
pub struct Aws {
    pub owner: Owner,
    ec2: aws_sdk_ec2::Client,
    iam: aws_sdk_iam::Client,
    ssm: aws_sdk_ssm::Client,
    route53: aws_sdk_route53::Client,
}

/// Maps a desired resource's references to the AWS ids they have now.
pub type Ids = BTreeMap<Key, String>;

fn resolve(ids: &Ids, r: &Ref) -> Result<String, CloudError> {
    match r {
        Ref::Id(id) => Ok(id.clone()),
        Ref::Key(k) => ids
            .get(k)
            .cloned()
            .ok_or_else(|| CloudError::new("resolve", format!("{k} has no id yet"))),
    }
}

impl Aws {
    /// Loads the standard AWS configuration for `owner.region` (once per region).
    ///
    /// Every attempt has a deadline: the SDK sets none by default, so one stalled answer
    /// would hang a run forever; a late attempt is retried like a dropped connection.
    pub async fn connect(owner: Owner) -> Aws {
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_millis(3100))
            .operation_attempt_timeout(ATTEMPT_TIMEOUT)
            .build();
        let config = aws_config::defaults(BehaviorVersion::latest())
            .region(aws_config::Region::new(owner.region.clone()))
            .retry_config(RetryConfig::standard().with_max_attempts(8))
            .timeout_config(timeouts)
            .load()
            .await;
        Aws {
            owner,
            ec2: aws_sdk_ec2::Client::from_conf(
                aws_sdk_ec2::config::Builder::from(&config)
                    .interceptor(retries::CountRetries)
                    .build(),
            ),
            iam: aws_sdk_iam::Client::from_conf(
                aws_sdk_iam::config::Builder::from(&config)
                    .interceptor(retries::CountRetries)
                    .build(),
            ),
            ssm: aws_sdk_ssm::Client::from_conf(
                aws_sdk_ssm::config::Builder::from(&config)
                    .interceptor(retries::CountRetries)
                    .build(),
            ),
            route53: aws_sdk_route53::Client::from_conf(
                aws_sdk_route53::config::Builder::from(&config)
                    .interceptor(retries::CountRetries)
                    .build(),
            ),
        }
    }

    /// What this process's AWS calls met so far: calls, and the attempts repeated and why.
    pub fn retries() -> Retries {
        retries::so_far()
    }

    /// Everything gwctl owns in this region: one describe per kind, all at once; references
    /// are mapped from AWS ids to keys.
    pub async fn discover(&self, iam_name: &str, ssm_prefix: &str) -> Result<Actual, CloudError> {
        let (ec2, iam, ssm) = tokio::join!(
            ec2::discover(&self.ec2, &self.owner),
            iam::discover(&self.iam, &self.owner, iam_name),
            ssm::discover(&self.ssm, &self.owner, ssm_prefix),
        );
        let mut resources = ec2?;
        resources.extend(iam?);
        resources.extend(ssm?);
        let index: BTreeMap<String, Key> = resources
            .iter()
            .map(|o| (o.id.clone(), o.key.clone()))
            .collect();
        let mut referenced = std::collections::BTreeSet::new();
        for o in &mut resources {
            o.spec.map_refs(|r| {
                if let Ref::Id(id) = r
                    && let Some(k) = index.get(id.as_str())
                {
                    referenced.insert(id.clone());
                    *r = Ref::Key(k.clone());
                }
            });
        }
        // Of two resources with one key (a create repeated after its answer was lost, a run
        // killed between a create and its use), the one something refers to comes first: it
        // is the one in use, which a plan keeps. AWS ids say nothing about age.
        resources.sort_by(|a, b| {
            (&a.key, !referenced.contains(&a.id), &a.id).cmp(&(
                &b.key,
                !referenced.contains(&b.id),
                &b.id,
            ))
        });
        Ok(Actual { resources })
    }

    /// The id of the hosted zone `zone` (Route53 is global; any region's client reaches it).
    pub async fn find_zone(&self, zone: &str) -> Result<String, CloudError> {
        route53::find_zone(&self.route53, zone).await
    }

    /// Creates a TXT record unless it exists (`Ok(false)`); waits until it is in sync.
    pub async fn create_txt(
        &self,
        zone_id: &str,
        name: &str,
        value: &str,
    ) -> Result<bool, CloudError> {
        route53::create_txt(&self.route53, zone_id, name, value).await
    }

    /// Deletes a TXT record if its value is still `value` (`Ok(false)` otherwise).
    pub async fn delete_txt(
        &self,
        zone_id: &str,
        name: &str,
        value: &str,
    ) -> Result<bool, CloudError> {
        route53::delete_txt(&self.route53, zone_id, name, value).await
    }

    /// Replaces a TXT record's value if it is still `old` (`Ok(false)` otherwise): atomic.
    pub async fn replace_txt(
        &self,
        zone_id: &str,
        name: &str,
        old: &str,
        new: &str,
    ) -> Result<bool, CloudError> {
        route53::replace_txt(&self.route53, zone_id, name, old, new).await
    }

    pub async fn read_txt(&self, zone_id: &str, name: &str) -> Result<Option<String>, CloudError> {
        route53::read_txt(&self.route53, zone_id, name).await
    }

    /// Public addresses of the region's Elastic IPs, by name (`broker-1`).
    pub async fn public_addresses(&self) -> Result<BTreeMap<String, String>, CloudError> {
        let eips = ec2::elastic_ips(&self.ec2, &self.owner).await?;
        Ok(eips
            .into_iter()
            .filter_map(|o| Some((o.key.name, o.state?)))
            .collect())
    }

    /// Route53 health checks whose CallerReference starts with `prefix`.
    pub async fn health_checks(&self, prefix: &str) -> Result<Vec<ObservedCheck>, CloudError> {
        route53::list_checks(&self.route53, prefix).await
    }

    pub async fn create_health_check(
        &self,
        caller_reference: &str,
        cfg: &CheckConfig,
        tags: &[(String, String)],
    ) -> Result<String, CloudError> {
        route53::create_check(&self.route53, caller_reference, cfg, tags).await
    }

    pub async fn update_health_check(&self, id: &str, cfg: &CheckConfig) -> Result<(), CloudError> {
        route53::update_check(&self.route53, id, cfg).await
    }

    pub async fn invert_health_check(&self, id: &str, inverted: bool) -> Result<(), CloudError> {
        route53::set_inverted(&self.route53, id, inverted).await
    }

    pub async fn delete_health_check(&self, id: &str) -> Result<(), CloudError> {
        route53::delete_check(&self.route53, id).await
    }

    /// (healthy observations, all observations) of a health check.
    pub async fn health_check_status(&self, id: &str) -> Result<(usize, usize), CloudError> {
        route53::check_status(&self.route53, id).await
    }

    /// Every record set named `name` in the zone.
    /// Every record set at `name` and below it, in one walk.
    pub async fn records_under(
        &self,
        zone_id: &str,
        name: &str,
    ) -> Result<Vec<ObservedRecord>, CloudError> {
        route53::list_under(&self.route53, zone_id, name).await
    }

    pub async fn records_named(
        &self,
        zone_id: &str,
        name: &str,
    ) -> Result<Vec<ObservedRecord>, CloudError> {
        route53::list_named(&self.route53, zone_id, name).await
    }

    /// Applies record changes as one batch and waits until it is in sync.
    pub async fn change_records(
        &self,
        zone_id: &str,
        changes: &[RecordChange],
        ids: &dyn Fn(&Record) -> Option<String>,
        on_wait: &dyn Fn(Duration),
    ) -> Result<usize, CloudError> {
        route53::apply_batch(&self.route53, zone_id, changes, ids, on_wait).await
    }

    /// The id of AWS's prefix list of Route53 health checkers in this region.
    pub async fn route53_health_checkers(&self, region: &str) -> Result<String, CloudError> {
        ec2::managed_prefix_list(
            &self.ec2,
            &format!("com.amazonaws.{region}.route53-healthchecks"),
        )
        .await
    }

    /// The available zones of this region that offer `instance_type`, by name.
    pub async fn zones_offering(&self, instance_type: &str) -> Result<Vec<String>, CloudError> {
        ec2::zones_offering(&self.ec2, instance_type).await
    }

    /// Every image `ami` selects, newest first; an error when none does.
    pub async fn matching_images(&self, ami: &Ami) -> Result<Vec<Image>, CloudError> {
        ec2::matching_images(&self.ec2, ami).await
    }

    /// Creates `d`; returns it as AWS now reports it.
    pub async fn create(&self, d: &Desired, ids: &Ids) -> Result<Observed, CloudError> {
        let created = match d.key.kind {
            Kind::IamRole | Kind::InstanceProfile => iam::create(&self.iam, d, ids).await,
            Kind::SsmParameter => ssm::put(&self.ssm, d, false).await,
            Kind::Certificate => ssm::put_certificate(&self.ssm, d, false).await,
            _ => ec2::create(&self.ec2, d, ids).await,
        };
        match created {
            // Boxed: discovery's future is large, and this path is rare.
            Err(e) if e.is_done_already() => Box::pin(self.adopt(d, ids, e)).await,
            other => other,
        }
    }

    /// A call whose answer was lost on the way back is sent again by the SDK, and AWS answers
    /// the repeat that it is done already (the role exists, the route is there, the rule is a
    /// duplicate — made by the first attempt). What discovery then finds under the key is what
    /// this create made, perhaps without the steps after the refused one: it is brought to the
    /// desired spec in place, as a plan would. Anything else keeps the error.
    async fn adopt(
        &self,
        d: &Desired,
        ids: &Ids,
        error: CloudError,
    ) -> Result<Observed, CloudError> {
        let Some(found) = Box::pin(self.made(d, ids)).await? else {
            return Err(error);
        };
        if found.spec.as_declared(&d.spec) == d.spec {
            Ok(found)
        } else {
            self.update(d, &found, ids).await
        }
    }

    /// Brings `before` to `d` in place. A change whose answer was lost is repeated by the SDK
    /// and refused as done already, like a create's (see `adopt`): the run goes on when
    /// discovery then finds `d` exactly as desired. An update is several calls (a route table's
    /// routes, then its propagation, then its subnets), so the refusal may come part way:
    /// when discovery finds the resource changed since `before` — the refused step and those
    /// before it carried out — the update goes on from there.
    pub async fn update(
        &self,
        d: &Desired,
        before: &Observed,
        ids: &Ids,
    ) -> Result<Observed, CloudError> {
        let mut before = before.clone();
        // Each round needs a step carried out since the last one; the bound is a backstop
        // against a resource someone else keeps changing.
        for _ in 0..MAX_UPDATE_ROUNDS {
            let updated = match d.key.kind {
                Kind::IamRole | Kind::InstanceProfile => {
                    iam::update(&self.iam, d, &before, ids).await
                }
                Kind::SsmParameter => ssm::put(&self.ssm, d, true).await,
                Kind::Certificate => ssm::put_certificate(&self.ssm, d, true).await,
                _ => ec2::update(&self.ec2, d, &before, ids).await,
            };
            let refused = match updated {
                Err(e) if e.is_done_already() => e,
                other => return other,
            };
            let Some(found) = Box::pin(self.made(d, ids)).await? else {
                return Err(refused);
            };
            let seen = found.spec.as_declared(&d.spec);
            if seen == d.spec {
                return Ok(found);
            }
            if seen == before.spec.as_declared(&d.spec) {
                return Err(refused);
            }
            before = found;
        }
        Err(CloudError::new(
            "Update",
            format!(
                "{} kept changing while it was brought to spec ({MAX_UPDATE_ROUNDS} rounds)",
                d.key
            ),
        ))
    }

    /// What discovery finds under `d`'s key, owned by the stack (and, for what has a value,
    /// with the desired value), its references to resources of this run given as their keys.
    async fn made(&self, d: &Desired, ids: &Ids) -> Result<Option<Observed>, CloudError> {
        let found = match (&d.key.kind, &d.spec) {
            (Kind::IamRole, Spec::IamRole { name, .. })
            | (Kind::InstanceProfile, Spec::InstanceProfile { name, .. }) => {
                iam::discover(&self.iam, &self.owner, name).await
            }
            (Kind::SsmParameter | Kind::Certificate, Spec::SsmParameter { name, .. })
            | (Kind::SsmParameter | Kind::Certificate, Spec::Certificate { name, .. }) => {
                let short = match d.key.kind {
                    Kind::Certificate => format!("/{}{}", ssm::CERTIFICATES, d.key.name),
                    _ => format!("/{}", d.key.name),
                };
                match name.strip_suffix(&short) {
                    Some(prefix) => ssm::discover(&self.ssm, &self.owner, prefix).await,
                    None => return Ok(None),
                }
            }
            (Kind::IamRole | Kind::InstanceProfile | Kind::SsmParameter | Kind::Certificate, _) => {
                return Ok(None);
            }
            _ => ec2::discover(&self.ec2, &self.owner).await,
        };
        let has_value = matches!(d.key.kind, Kind::SsmParameter | Kind::Certificate);
        let Some(mut found) = found?
            .into_iter()
            .find(|o| o.key == d.key && (!has_value || o.spec == d.spec))
        else {
            return Ok(None);
        };
        let keys: BTreeMap<&str, &Key> = ids.iter().map(|(k, id)| (id.as_str(), k)).collect();
        found.spec.map_refs(|r| {
            if let Ref::Id(id) = r
                && let Some(k) = keys.get(id.as_str())
            {
                *r = Ref::Key((*k).clone());
            }
        });
        Ok(Some(found))
    }

    /// Deletes an owned resource, retrying while dependents disappear. A broker's data volume
    /// is snapshotted first (what it held when the deletion started).
    pub async fn delete(&self, o: &Observed) -> Result<(), CloudError> {
        if o.key.kind == Kind::Instance {
            snapshots::take(&self.ec2, &self.owner, o).await?;
        }
        retry(
            Duration::from_secs(300),
            CloudError::is_dependency,
            || async {
                match o.key.kind {
                    Kind::IamRole | Kind::InstanceProfile => iam::delete(&self.iam, o).await,
                    Kind::SsmParameter | Kind::Certificate => ssm::delete(&self.ssm, o).await,
                    _ => ec2::delete(&self.ec2, o).await,
                }
            },
        )
        .await
    }
}

impl Aws {
    /// Changes one VPN tunnel's options (see `ec2::modify_tunnel`).
    pub async fn modify_tunnel(
        &self,
        vpn: &str,
        outside_ip: &str,
        want: &crate::model::resources::TunnelSpec,
        key: Option<&crate::spec::secret::Secret>,
    ) -> Result<(), CloudError> {
        ec2::modify_tunnel(&self.ec2, vpn, outside_ip, want, key).await
    }

    /// A VPN connection's state and its tunnels as AWS's telemetry reports them.
    pub async fn vpn_tunnels(
        &self,
        vpn: &str,
    ) -> Result<(String, Vec<crate::model::resources::TunnelState>), CloudError> {
        ec2::vpn_tunnels(&self.ec2, vpn).await
    }

    /// The instances gwctl owns in this region, whatever their state short of terminated.
    pub async fn instances(&self) -> Result<Vec<Observed>, CloudError> {
        ec2::instances(&self.ec2, &self.owner).await
    }

    /// The user-data instance `id` was launched with, as RunInstances received it.
    pub async fn user_data(&self, id: &str) -> Result<Vec<u8>, CloudError> {
        ec2::user_data(&self.ec2, id).await
    }

    /// Marks broker `id` as drained (see [`crate::model::resources::TAG_DRAINED`]).
    pub async fn mark_drained(&self, id: &str) -> Result<(), CloudError> {
        ec2::tag_instance(&self.ec2, id, crate::model::resources::TAG_DRAINED, "true").await
    }

    /// Stops instance `id` (its operating system shuts down: services stop as their units
    /// say) and waits until it is stopped.
    pub async fn stop_instance(&self, id: &str) -> Result<(), CloudError> {
        ec2::stop_instance(&self.ec2, id).await
    }

    /// The data-volume snapshots gwctl took in this region, newest first per broker slot.
    pub async fn snapshots(&self) -> Result<Vec<Snapshot>, CloudError> {
        snapshots::list(&self.ec2, &self.owner).await
    }

    /// Deletes completed snapshots beyond the newest `retain` per broker slot.
    pub async fn prune_snapshots(&self, retain: usize) -> Result<Vec<String>, CloudError> {
        snapshots::prune(&self.ec2, &self.owner, retain).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn err(code: &str, message: &str) -> CloudError {
        CloudError {
            op: "Op".into(),
            code: Some(code.into()),
            message: message.into(),
            may_be_done: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn eventual_consistency_is_retried_until_it_settles() {
        let calls = AtomicUsize::new(0);
        let r = retry(Duration::from_secs(60), CloudError::is_eventual, || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 => Err(err("InvalidVpcID.NotFound", "The vpc ID 'vpc-1' does not exist")),
                1 => Err(err("InvalidParameterValue", "Value (gwctl-x) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name")),
                _ => Ok("i-1"),
            }
        })
        .await;
        assert_eq!(r.expect("settles"), "i-1");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn other_errors_and_exhausted_budgets_are_returned() {
        let calls = AtomicUsize::new(0);
        let r: Result<(), _> = retry(Duration::from_secs(60), CloudError::is_eventual, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(err("UnauthorizedOperation", "no"))
        })
        .await;
        assert_eq!(
            r.expect_err("fails").code.as_deref(),
            Some("UnauthorizedOperation")
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1, "not retried");

        let calls = AtomicUsize::new(0);
        let r: Result<(), _> = retry(
            Duration::from_secs(5),
            CloudError::is_dependency,
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(err("DependencyViolation", "has dependencies"))
            },
        )
        .await;
        assert!(r.is_err());
        let n = calls.load(Ordering::SeqCst);
        assert!(
            (3..10).contains(&n),
            "retried with growing delays within the budget: {n}"
        );
    }
}
