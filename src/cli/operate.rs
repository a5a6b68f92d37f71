//! The operator's verbs: `promote`, `abort`, `retry`, `pause`, `resume`. Each is one
//! documented write a kubectl user can make by hand (printed as it is made), and the
//! controller acts on it at its next tick:
//!
//! | verb | write |
//! |---|---|
//! | `promote NAME` | Canary annotation `apisix-canary.dev/promote=<revision>` |
//! | `promote NAME --force` | Canary annotation `apisix-canary.dev/promote-now=<revision>` |
//! | `abort NAME` | Canary annotation `apisix-canary.dev/abort=<revision>` |
//! | `retry NAME` | Deployment annotation `apisix-canary.dev/retry=<failed revision>` |
//! | `pause NAME` / `resume NAME` | Canary `spec.suspend`, or in annotation mode the Deployment annotation `apisix-canary.dev/suspend` |

use anyhow::{Context as _, bail};
use clap::Args;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

use super::cluster::{ClusterArgs, connect};
use crate::api::annotations::{ABORT, PROMOTE, PROMOTE_NOW, RETRY, SUSPEND};
use crate::api::canary::v1beta1::Canary;
use crate::controller::MANAGER;
use crate::release::lock::Lock;

#[derive(Debug, Args)]
pub struct VerbArgs {
    /// The Canary (in annotation mode, named after its Deployment).
    pub name: String,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
    #[command(flatten)]
    pub verb: VerbArgs,
    /// Promote now, without waiting for a passing check.
    #[arg(long)]
    pub force: bool,
}

/// What to do to a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Promote { force: bool },
    Abort,
    Retry,
    Pause,
    Resume,
}

pub async fn run(verb: Verb, args: &VerbArgs) -> anyhow::Result<()> {
    let (client, ns) = connect(&args.cluster).await?;
    let canaries: Api<Canary> = Api::namespaced(client.clone(), &ns);
    let canary = canaries.get_opt(&args.name).await?.with_context(|| format!("Canary {ns}/{} not found", args.name))?;
    let target = &canary.spec.target_ref.name;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let deployment =
        deployments.get_opt(target).await?.with_context(|| format!("Deployment {ns}/{target} not found"))?;
    let lock = Lock::from_annotations(deployment.annotations());
    let id = format!("{}.{ns}", args.name);
    match verb {
        Verb::Promote { force } => {
            let revision = running(&lock, &id)?;
            let key = if force { PROMOTE_NOW } else { PROMOTE };
            annotate_canary(&client, &ns, &args.name, key, Some(&revision)).await?;
            if force {
                println!("{id}: revision {revision} is promoted at the controller's next tick, without analysis");
            } else {
                println!("{id}: revision {revision} is promoted after its next passing check");
            }
        }
        Verb::Abort => {
            let revision = running(&lock, &id)?;
            annotate_canary(&client, &ns, &args.name, ABORT, Some(&revision)).await?;
            println!("{id}: revision {revision} is rolled back at the controller's next tick");
        }
        Verb::Retry => {
            let Some(failed) = lock.failed.clone().filter(|_| lock.is_failed()) else {
                bail!("{id}: no failed release to retry (the Deployment's lock names none)");
            };
            let value = failed.to_string();
            annotate(&deployments, &ns, "deployment", target, RETRY, Some(&value)).await?;
            println!("{id}: failed revision {failed} is released once more");
        }
        Verb::Pause | Verb::Resume => {
            let pause = verb == Verb::Pause;
            if crate::controller::annotation_mode(&canary) {
                let value = pause.then_some("true");
                annotate(&deployments, &ns, "deployment", target, SUSPEND, value).await?;
            } else {
                let spec = json!({"spec": {"suspend": if pause { json!(true) } else { Value::Null }}});
                let shown = if pause { "true" } else { "null" };
                println!(
                    "$ kubectl -n {ns} patch canary/{} --type merge -p '{{\"spec\":{{\"suspend\":{shown}}}}}'",
                    args.name
                );
                canaries.patch(&args.name, &params(), &Patch::Merge(&spec)).await?;
            }
            println!("{id}: {}", if pause { "paused: nothing is acted on until resumed" } else { "resumed" });
        }
    }
    Ok(())
}

/// The revision of the release running now, or why there is none.
fn running(lock: &Lock, id: &str) -> anyhow::Result<String> {
    match &lock.canary {
        Some(c) if lock.held() && !lock.is_failed() => Ok(c.to_string()),
        Some(c) if lock.is_failed() => {
            bail!("{id}: revision {c} already failed; `apisix-canary retry` releases it again")
        }
        _ => bail!("{id}: no release is running"),
    }
}

fn params() -> PatchParams {
    PatchParams { field_manager: Some(MANAGER.to_owned()), ..PatchParams::default() }
}

async fn annotate_canary(client: &Client, ns: &str, name: &str, key: &str, value: Option<&str>) -> anyhow::Result<()> {
    let api: Api<Canary> = Api::namespaced(client.clone(), ns);
    annotate(&api, ns, "canary", name, key, value).await
}

/// One merge patch of an annotation (`None` removes it), shown as kubectl would make it.
async fn annotate<K>(
    api: &Api<K>,
    ns: &str,
    kind: &str,
    name: &str,
    key: &str,
    value: Option<&str>,
) -> anyhow::Result<()>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match value {
        Some(v) => println!("$ kubectl -n {ns} annotate {kind}/{name} --overwrite {key}={v}"),
        None => println!("$ kubectl -n {ns} annotate {kind}/{name} {key}-"),
    }
    let patch = json!({"metadata": {"annotations": {key: value}}});
    api.patch(name, &params(), &Patch::Merge(&patch)).await.with_context(|| format!("annotating {kind}/{name}"))?;
    Ok(())
}
