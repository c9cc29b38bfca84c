//! How often AWS made gwctl try again, for the run's report: against real AWS throttling,
//! 5xx answers and lost connections are routine, and an operator should see how many a run
//! met (a run that needed hundreds is a run near the SDK's retry quota).
//!
//! The SDK retries on its own (docs/aws-fault-facts.md §2); an interceptor on every client
//! notes each attempt's outcome and counts an attempt that follows one as a retry, by the
//! reason of the attempt before it. gwctl's own waits for AWS's eventual consistency (an id
//! not visible yet, an instance still pending) are counted beside them.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_ec2::config::interceptors::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_sdk_ec2::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::retries::classifiers::{ClassifyRetry, RetryAction};
use aws_smithy_types::config_bag::{Storable, StoreReplace};
use serde::Serialize;

use super::CloudError;

static CALLS: AtomicU64 = AtomicU64::new(0);
static THROTTLED: AtomicU64 = AtomicU64::new(0);
static SERVER: AtomicU64 = AtomicU64::new(0);
static NO_ANSWER: AtomicU64 = AtomicU64::new(0);
static NOT_READY: AtomicU64 = AtomicU64::new(0);

/// What this process's AWS calls met so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Retries {
    /// HTTP requests sent to AWS (every attempt).
    pub calls: u64,
    /// Attempts repeated after a throttling answer (EC2 RequestLimitExceeded, Throttling,
    /// PriorRequestNotComplete).
    pub throttled: u64,
    /// Attempts repeated after another 5xx answer.
    pub server_errors: u64,
    /// Attempts repeated after no answer (a dropped connection, a timeout).
    pub no_answer: u64,
    /// Calls gwctl repeated itself because AWS was not consistent yet.
    pub not_ready: u64,
}

impl Retries {
    /// Attempts the SDK repeated.
    pub fn retried(&self) -> u64 {
        self.throttled + self.server_errors + self.no_answer
    }
}

/// The counts since the process started.
pub fn so_far() -> Retries {
    Retries {
        calls: CALLS.load(Ordering::Relaxed),
        throttled: THROTTLED.load(Ordering::Relaxed),
        server_errors: SERVER.load(Ordering::Relaxed),
        no_answer: NO_ANSWER.load(Ordering::Relaxed),
        not_ready: NOT_READY.load(Ordering::Relaxed),
    }
}

pub(super) fn count_not_ready() {
    NOT_READY.fetch_add(1, Ordering::Relaxed);
}

/// Why an attempt did not succeed, kept in the operation's config bag until the next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Throttled,
    Server,
    NoAnswer,
}

impl Storable for Fault {
    type Storer = StoreReplace<Self>;
}

impl Fault {
    fn counter(self) -> &'static AtomicU64 {
        match self {
            Fault::Throttled => &THROTTLED,
            Fault::Server => &SERVER,
            Fault::NoAnswer => &NO_ANSWER,
        }
    }
}

/// Counts a failed attempt that gwctl recovered from itself (the SDK was told not to repeat
/// it): by reading back what it made, or by sending it again.
pub(super) fn count_recovered(fault: Fault) {
    fault.counter().fetch_add(1, Ordering::Relaxed);
}

/// What an answer says of the attempt: throttled, a server error, or nothing wrong.
pub(super) fn fault_of(response: &HttpResponse) -> Option<Fault> {
    let status = response.status().as_u16();
    let body = response.body().bytes().unwrap_or_default();
    let text = String::from_utf8_lossy(&body[..body.len().min(2048)]);
    if status >= 400 && THROTTLING.iter().any(|code| text.contains(code)) {
        Some(Fault::Throttled)
    } else if status >= 500 {
        Some(Fault::Server)
    } else {
        None
    }
}

/// For calls AWS does not make idempotent (a create without a client token): an attempt that
/// got no answer or a 5xx may have been carried out, and repeating it blindly would create a
/// second resource. The SDK is told not to; gwctl looks for what the attempt made first
/// (`once_or_found`). Throttled attempts were refused, and are repeated as usual.
#[derive(Debug)]
struct NoBlindRepeat;

impl ClassifyRetry for NoBlindRepeat {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        if !matches!(ctx.output_or_error(), Some(Err(_))) {
            return RetryAction::NoActionIndicated;
        }
        match ctx.response().map(fault_of) {
            None | Some(Some(Fault::Server)) => RetryAction::RetryForbidden,
            _ => RetryAction::NoActionIndicated,
        }
    }

    fn name(&self) -> &'static str {
        "gwctl::NoBlindRepeat"
    }
}

/// Codes AWS throttles with, as the SDK classifies them (aws-runtime's THROTTLING_ERRORS, the
/// ones gwctl's services send).
const THROTTLING: [&str; 5] = [
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "PriorRequestNotComplete",
    "TooManyRequestsException",
];

#[derive(Debug)]
pub(super) struct CountRetries;

impl Intercept for CountRetries {
    fn name(&self) -> &'static str {
        "gwctl::CountRetries"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        CALLS.fetch_add(1, Ordering::Relaxed);
        if let Some(fault) = cfg.load::<Fault>() {
            fault.counter().fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let failed = match context.response() {
            None => Some(Fault::NoAnswer),
            Some(response) => fault_of(response),
        };
        // Only a failed attempt is followed by another; a success ends the operation.
        if let Some(failed) = failed {
            cfg.interceptor_state().store_put(failed);
        }
        Ok(())
    }
}

/// Per-call configuration of an EC2 create AWS does not make idempotent: see
/// [`once_or_found`].
pub(super) fn no_blind_repeat() -> aws_sdk_ec2::config::Builder {
    aws_sdk_ec2::config::Builder::default().retry_classifier(NoBlindRepeat)
}

/// Sends a create AWS does not make idempotent (sent with `no_blind_repeat`, so the SDK
/// does not repeat an attempt that got no answer or a 5xx): after such an attempt, `find`
/// looks for what it may have made, and the create is sent again only when nothing is there.
/// (Describe is eventually consistent on AWS: what was made a moment ago can be missed; the
/// copy a resend then makes is the unused duplicate the next plan deletes.)
pub(super) async fn once_or_found<F, Fut, G, Gut>(send: F, find: G) -> Result<String, CloudError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<String, CloudError>>,
    G: Fn() -> Gut,
    Gut: Future<Output = Result<Option<String>, CloudError>>,
{
    let start = Instant::now();
    let mut delay = Duration::from_millis(200);
    loop {
        match send().await {
            Err(e) if e.may_be_done.is_some() && start.elapsed() + delay < ONCE_BUDGET => {
                if let Some(fault) = e.may_be_done {
                    count_recovered(fault);
                }
                let jitter = rand::random::<f64>() * 0.5 + 0.75;
                tokio::time::sleep(delay.mul_f64(jitter)).await;
                delay = (delay * 2).min(Duration::from_secs(10));
                if let Some(id) = find().await? {
                    return Ok(id);
                }
            }
            other => return other,
        }
    }
}

/// How long a create may keep meeting lost answers and server errors.
const ONCE_BUDGET: Duration = Duration::from_secs(120);
