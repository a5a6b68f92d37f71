//! The autoscaler controller's I/O: reads an autoscaler's target through its scale
//! subresource and the pods its selector selects, runs [`reconcile`], writes the
//! target's `/scale` (skipping admission, as every write of the sim's controllers does)
//! and the autoscaler's status, records its Events, and syncs it again after
//! [`SYNC_PERIOD`], as kube-controller-manager's resync does.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::super::events::{AUTOSCALER, Record, reference};
use super::super::queue::{Kind, Name};
use super::super::{Controllers, is_deleting, str_at};
use super::metrics::parse_milli;
use super::{Event, Observed, Pod, PodState, SYNC_PERIOD, Scale, reconcile, stand_in_utilization};
use crate::cluster::scale_of;
use crate::resources::Resource;
use crate::selector::LabelSelector;

/// The target of an autoscaler: its resource and object, or kube's error finding them.
type Target = Result<(Arc<Resource>, Arc<Value>), String>;

impl Controllers {
    /// Syncs the autoscalers `names`.
    pub(in super::super) async fn autoscalers(&mut self, names: BTreeSet<Name>) {
        let kind = self.kinds.autoscaler.clone();
        for (ns, name) in names {
            self.drain_events();
            let Some(hpa) = self.cluster.get_raw(&kind.group, &kind.plural, &ns, &name) else {
                self.autoscaler_history.remove(&(ns, name));
                continue;
            };
            let target = self.scale_target(&ns, &hpa);
            let scale = target.as_ref().map(|(r, object)| scale_of(r, object)).map_err(Clone::clone);
            let selector = scale.as_ref().map(|s| str_at(s, "/status/selector").to_owned()).unwrap_or_default();
            let observed = Observed {
                target: scale
                    .as_ref()
                    .map(|s| Scale { replicas: super::super::i32_at(s, "/spec/replicas"), selector: selector.clone() })
                    .map_err(Clone::clone),
                pods: if selector.is_empty() { Vec::new() } else { self.pods_selected(&ns, &selector) },
                utilization: stand_in_utilization(&hpa),
            };
            let history = self.autoscaler_history.entry((ns.clone(), name.clone())).or_default();
            let decision = reconcile(&hpa, &observed, history, Timestamp::now());
            for event in &decision.events {
                self.record_autoscaler(&hpa, event);
            }
            let mut status = decision.status.clone();
            if let (Some(rescale), Ok((r, _)), Ok(mut scale)) = (&decision.rescale, &target, scale) {
                scale["spec"]["replicas"] = json!(rescale.to);
                match self.replace(r, Some("scale"), scale).await {
                    Ok(_) => {
                        if let Some(event) = decision.rescaled() {
                            self.record_autoscaler(&hpa, &event);
                        }
                    }
                    Err(e) => {
                        e.log();
                        // kube tries again at the next period; a conflict is worth sooner.
                        self.retry(Kind::Autoscaler, (&ns, &name));
                        let (failed, event) = decision.failed(&e.source.to_string());
                        status = failed;
                        self.record_autoscaler(&hpa, &event);
                    }
                }
            }
            if hpa.get("status") != Some(&status) {
                let mut updated = (*hpa).clone();
                updated["status"] = status;
                if let Err(e) = self.replace(&kind, Some("status"), updated).await {
                    e.log();
                    self.retry(Kind::Autoscaler, (&ns, &name));
                }
            }
            self.timers.after(Kind::Autoscaler, (ns, name), Instant::now() + SYNC_PERIOD);
        }
    }

    fn record_autoscaler(&self, hpa: &Value, event: &Event) {
        let involved = reference(hpa, None);
        let record = if event.warning {
            Record::warning(AUTOSCALER, involved, event.reason, event.message.clone())
        } else {
            Record::normal(AUTOSCALER, involved, event.reason, event.message.clone())
        };
        self.recorder.record(record);
    }

    /// The object `scaleTargetRef` names, if its kind has a scale subresource; the
    /// error otherwise, in kube's words.
    fn scale_target(&self, namespace: &str, hpa: &Value) -> Target {
        let reference = hpa.pointer("/spec/scaleTargetRef").cloned().unwrap_or_default();
        let (api_version, kind, name) =
            (str_at(&reference, "/apiVersion"), str_at(&reference, "/kind"), str_at(&reference, "/name"));
        let group = match api_version.split('/').collect::<Vec<_>>().as_slice() {
            [_] => "",
            [group, _] => group,
            _ => return Err(format!("unexpected GroupVersion string: {api_version}")),
        };
        let Some(r) = self.cluster.resources.by_kind(group, kind) else {
            return Err(format!("no matches for kind {kind:?} in group {group:?}"));
        };
        if r.scale.is_none() {
            return Err("the server could not find the requested resource".into());
        }
        let resource = if r.group.is_empty() { r.plural.clone() } else { format!("{}.{}", r.plural, r.group) };
        match self.cluster.get_raw(&r.group, &r.plural, namespace, name) {
            Some(object) => Ok((r, object)),
            None => Err(format!("{resource} {name:?} not found")),
        }
    }

    /// The pods of `namespace` that `selector` (the scale's, as a string) selects.
    fn pods_selected(&self, namespace: &str, selector: &str) -> Vec<Pod> {
        let Ok(selector) = LabelSelector::parse(selector) else { return Vec::new() };
        let (pods, _) = self.cluster.store.list(&self.kinds.pod.group, &self.kinds.pod.plural, Some(namespace));
        pods.iter().filter(|p| selector.matches_object(p)).map(|p| observe(p)).collect()
    }
}

/// A pod as the metrics pipeline sees it.
fn observe(pod: &Value) -> Pod {
    let state = match str_at(pod, "/status/phase") {
        _ if is_deleting(pod) => PodState::Ignored,
        "Failed" | "Succeeded" => PodState::Ignored,
        "Running" if super::super::pods::is_ready(pod) => PodState::Ready,
        _ => PodState::Unready,
    };
    let containers = pod.pointer("/spec/containers").and_then(Value::as_array).cloned().unwrap_or_default();
    let cpu_request = containers.iter().try_fold(0, |sum, c| {
        let request = c.pointer("/resources/requests/cpu").and_then(Value::as_str).and_then(parse_milli);
        request.map(|r| sum + r).ok_or_else(|| str_at(c, "/name").to_owned())
    });
    Pod { name: str_at(pod, "/metadata/name").to_owned(), state, cpu_request }
}
