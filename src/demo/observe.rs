//! What the demo reads while a release runs, as a user's tools would: the Canary's
//! status (with the values its checks measured), its Events and the Deployment's rollout.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Event;
use kube::Api;
use kube::api::ListParams;

use super::scenario::{NAME, NAMESPACE};
use super::show::{SeenEvent, Snapshot};
use super::{DemoError, POLL, World};
use crate::api::canary::v1beta1::Canary;
use crate::api::canary::{CanaryStatus, REQUEST_DURATION, REQUEST_SUCCESS_RATE};

/// The Canary's status (empty before the controller wrote one).
pub async fn status(world: &World) -> Result<CanaryStatus, DemoError> {
    let api: Api<Canary> = Api::namespaced(world.client.clone(), NAMESPACE);
    let canary = api.get_opt(NAME).await.map_err(DemoError::kube("reading canary/podinfo"))?;
    Ok(canary.and_then(|c| c.status).unwrap_or_default())
}

/// The phase as Flagger names it, `-` before there is one.
pub fn phase(status: &CanaryStatus) -> String {
    status.phase.map_or_else(|| "-".to_owned(), |p| format!("{p:?}"))
}

/// The Events of the Canary, as `kubectl describe` lists them.
pub async fn events(world: &World) -> Result<Vec<SeenEvent>, DemoError> {
    let api: Api<Event> = Api::namespaced(world.client.clone(), NAMESPACE);
    let params = ListParams::default().fields(&format!("involvedObject.kind=Canary,involvedObject.name={NAME}"));
    let list = api.list(&params).await.map_err(DemoError::kube("listing the Canary's Events"))?;
    Ok(list
        .items
        .into_iter()
        .map(|e| {
            // The newest occurrence: a repeat's `series` has it to the microsecond.
            let last = e.last_timestamp.map(|t| t.0.as_microsecond());
            let repeated = e.series.and_then(|s| s.last_observed_time).map(|t| t.0.as_microsecond());
            let at = e.event_time.map(|t| t.0.as_microsecond()).max(last).max(repeated).unwrap_or_default();
            SeenEvent {
                name: e.metadata.name.unwrap_or_default(),
                count: e.count.and_then(|c| u32::try_from(c).ok()).unwrap_or(1),
                message: e.message.unwrap_or_default(),
                at,
            }
        })
        .collect())
}

/// A snapshot for the live line: the values are the last checks' (`status.checks`),
/// the numbers the Events say, never a second reading.
pub fn snapshot(status: &CanaryStatus) -> Snapshot {
    let count = |v: Option<i32>| v.and_then(|v| u32::try_from(v).ok()).unwrap_or(0);
    Snapshot {
        phase: phase(status),
        weight: count(status.canary_weight),
        failed_checks: count(status.failed_checks),
        success_rate: status.last_value(REQUEST_SUCCESS_RATE),
        p99_ms: status.last_value(REQUEST_DURATION),
    }
}

/// Whether the Deployment has nothing left to roll: paused (a release holds it), or
/// every replica on its current template and available.
async fn rolled_out(world: &World) -> Result<bool, DemoError> {
    let api: Api<Deployment> = Api::namespaced(world.client.clone(), NAMESPACE);
    let d = api.get(NAME).await.map_err(DemoError::kube("reading deployment/podinfo"))?;
    let spec = d.spec.unwrap_or_default();
    if spec.paused == Some(true) {
        return Ok(true);
    }
    let status = d.status.unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1);
    Ok(status.observed_generation >= d.metadata.generation
        && status.updated_replicas == Some(replicas)
        && status.available_replicas == Some(replicas)
        && status.replicas == Some(replicas))
}

/// Waits until the Deployment has rolled out (`kubectl rollout status`).
pub async fn wait_rolled_out(world: &World, within: Duration) -> Result<(), DemoError> {
    let deadline = Instant::now() + within;
    while !rolled_out(world).await? {
        if Instant::now() > deadline {
            return Err(DemoError::Timeout(format!("deployment/podinfo had not rolled out after {within:?}")));
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

/// Waits for the rollout and the Canary's phase Initialized.
pub async fn wait_initialized(world: &World, within: Duration) -> Result<(), DemoError> {
    let deadline = Instant::now() + within;
    wait_rolled_out(world, within).await?;
    loop {
        let status = status(world).await?;
        if status.phase == Some(crate::api::canary::Phase::Initialized) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(DemoError::Timeout(format!(
                "canary/podinfo was {} after {within:?}, not Initialized",
                phase(&status)
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}
