//! The Deployment controller: one ReplicaSet per pod template (`<name>-<hash>`), scaled
//! by the rolling-update or recreate algorithm of kube-controller-manager, paused
//! Deployments only resized, and the Deployment's revision and status kept.

mod revisions;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

pub use self::revisions::{equal_ignore_hash, pod_template_hash};

use self::revisions::annotate;
use super::progress;
use super::queue::{Kind, Name};
use super::replicasets::Counts;
use super::rollout::{DESIRED_REPLICAS, MAX_REPLICAS, RolloutError, Sized, Spec, proportional};
use super::{Controllers, REVISION, i32_at, is_deleting, str_at};

/// A ReplicaSet of the Deployment being synced, and what the sync does to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rs {
    pub object: Value,
    /// Its pods, counted now (not its possibly stale status).
    pub counts: Counts,
    pub create: bool,
    pub delete: bool,
}

impl Rs {
    pub fn new(object: Value, counts: Counts) -> Self {
        Self { object, counts, create: false, delete: false }
    }

    pub fn name(&self) -> &str {
        str_at(&self.object, "/metadata/name")
    }

    pub fn spec(&self) -> i32 {
        i32_at(&self.object, "/spec/replicas")
    }

    fn age(&self) -> (String, String) {
        (str_at(&self.object, "/metadata/creationTimestamp").to_owned(), self.name().to_owned())
    }

    fn annotation(&self, key: &str) -> Option<&str> {
        self.object.pointer("/metadata/annotations")?.get(key)?.as_str()
    }

    fn revision(&self) -> i64 {
        self.annotation(REVISION).and_then(|r| r.parse().ok()).unwrap_or(0)
    }
}

/// What a sync decided: the Deployment (revision annotation, status) and its ReplicaSets.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub deployment: Value,
    pub replica_sets: Vec<Rs>,
}

/// One sync of a Deployment (`syncDeployment`), over the ReplicaSets it controls.
pub fn sync(d: &Value, replica_sets: Vec<Rs>, now: Timestamp) -> Result<Outcome, RolloutError> {
    let spec = Spec::of(d)?;
    let template = d.pointer("/spec/template").cloned().unwrap_or(Value::Null);
    let hash = pod_template_hash(&template);
    let mut s = Syncing { d: d.clone(), spec, template, hash, rss: replica_sets, now };
    if s.d.get("status").is_none() {
        s.d["status"] = json!({});
    }
    if is_deleting(d) {
        let new = s.new_replica_set(false);
        s.sync_status(new);
    } else {
        let mut status = s.d["status"].take();
        progress::check_paused(&s.spec, &mut status, now);
        s.d["status"] = status;
        if s.spec.paused || s.is_scaling_event() {
            s.sync_scale();
        } else if s.spec.recreate {
            s.rollout_recreate();
        } else {
            s.rollout_rolling();
        }
    }
    Ok(Outcome { deployment: s.d, replica_sets: s.rss })
}

struct Syncing {
    d: Value,
    spec: Spec,
    /// The Deployment's pod template: the new ReplicaSet is the one whose template
    /// equals it, ignoring the hash label.
    template: Value,
    /// The `pod-template-hash` label of a new ReplicaSet, computed like kube-controller-manager's.
    hash: String,
    rss: Vec<Rs>,
    now: Timestamp,
}

impl Syncing {
    /// Indices of the live ReplicaSets, oldest first.
    fn by_age(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.rss.len()).filter(|&i| !self.rss[i].delete).collect();
        order.sort_by_key(|&i| self.rss[i].age());
        order
    }

    fn olds(&self, new: Option<usize>) -> Vec<usize> {
        self.by_age().into_iter().filter(|&i| Some(i) != new).collect()
    }

    fn sum_spec(&self, which: &[usize]) -> i32 {
        which.iter().map(|&i| self.rss[i].spec()).sum()
    }

    fn active(&self, which: &[usize]) -> Vec<usize> {
        which.iter().copied().filter(|&i| self.rss[i].spec() > 0).collect()
    }

    fn all(&self, new: Option<usize>) -> Vec<usize> {
        let mut all = self.olds(new);
        all.extend(new);
        all
    }

    /// `scaleReplicaSet`: the size and the sizing annotations; whether the size changed.
    fn scale(&mut self, i: usize, size: i32) -> bool {
        let (desired, max) = (self.spec.replicas.to_string(), (self.spec.replicas + self.spec.max_surge).to_string());
        let rs = &mut self.rss[i];
        let resized = rs.spec() != size;
        rs.object["spec"]["replicas"] = json!(size);
        annotate(&mut rs.object, DESIRED_REPLICAS, &desired);
        annotate(&mut rs.object, MAX_REPLICAS, &max);
        resized
    }

    /// `scaleReplicaSetAndRecordEvent`: nothing when already at `size`.
    fn resize(&mut self, i: usize, size: i32) -> bool {
        self.rss[i].spec() != size && self.scale(i, size)
    }

    /// `isScalingEvent`: an active ReplicaSet was sized for other replicas.
    fn is_scaling_event(&mut self) -> bool {
        let new = self.new_replica_set(false);
        let all = self.all(new);
        self.active(&all).iter().any(|&i| {
            let desired = self.rss[i].annotation(DESIRED_REPLICAS).and_then(|d| d.parse::<i32>().ok());
            desired.is_some_and(|d| d != self.spec.replicas)
        })
    }

    /// `sync` + `scale`: a paused Deployment or a resize; never a new ReplicaSet.
    fn sync_scale(&mut self) {
        let new = self.new_replica_set(false);
        let olds = self.olds(new);
        let all = self.all(new);
        let active = self.active(&all);
        let latest = match active.len() {
            0 => new.or_else(|| olds.last().copied()),
            1 => Some(active[0]),
            _ => None,
        };
        if let Some(i) = latest {
            self.resize(i, self.spec.replicas);
        } else if new.is_some_and(|i| self.saturated(i)) {
            for i in self.active(&olds) {
                self.resize(i, 0);
            }
        } else if !self.spec.recreate {
            let sized: Vec<Sized> = active
                .iter()
                .map(|&i| Sized {
                    spec: self.rss[i].spec(),
                    max_annotation: self.rss[i].annotation(MAX_REPLICAS).and_then(|m| m.parse().ok()),
                    age: self.rss[i].age(),
                })
                .collect();
            let status_replicas = i32_at(&self.d, "/status/replicas");
            for (&i, size) in active.iter().zip(proportional(&self.spec, &sized, status_replicas)) {
                self.scale(i, size);
            }
        }
        if self.spec.paused {
            self.clean_up(&olds);
        }
        self.sync_status(new);
    }

    /// `IsSaturated`: the new ReplicaSet is all there and available.
    fn saturated(&self, i: usize) -> bool {
        let rs = &self.rss[i];
        let desired = rs.annotation(DESIRED_REPLICAS).and_then(|d| d.parse::<i32>().ok());
        rs.spec() == self.spec.replicas
            && desired == Some(self.spec.replicas)
            && rs.counts.available == self.spec.replicas
    }

    /// `rolloutRolling`: grow the new ReplicaSet within the surge, else shrink the old
    /// ones while enough pods stay available.
    fn rollout_rolling(&mut self) {
        let Some(new) = self.new_replica_set(true) else { return };
        let olds = self.olds(Some(new));
        if !self.grow_new(new) && !self.shrink_olds(new, &olds) && progress::complete(&self.spec, &self.d["status"]) {
            self.clean_up(&olds);
        }
        self.sync_rollout_status(Some(new));
    }

    /// `reconcileNewReplicaSet`.
    fn grow_new(&mut self, new: usize) -> bool {
        let spec = self.rss[new].spec();
        if spec == self.spec.replicas {
            return false;
        }
        if spec > self.spec.replicas {
            return self.resize(new, self.spec.replicas);
        }
        let all = self.all(Some(new));
        let size = self.spec.new_rs_replicas(self.sum_spec(&all), spec);
        self.resize(new, size)
    }

    /// `reconcileOldReplicaSets`: unhealthy old pods first, then healthy ones down to
    /// `replicas - maxUnavailable` available.
    fn shrink_olds(&mut self, new: usize, olds: &[usize]) -> bool {
        if self.sum_spec(olds) == 0 {
            return false;
        }
        let all = self.all(Some(new));
        let min_available = self.spec.min_available();
        let new_unavailable = self.rss[new].spec() - self.rss[new].counts.available;
        let max_scaled_down = self.sum_spec(&all) - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return false;
        }
        let active = self.active(olds);
        let mut cleaned = 0;
        for &i in &active {
            let (spec, available) = (self.rss[i].spec(), self.rss[i].counts.available);
            if cleaned >= max_scaled_down || spec == available {
                continue;
            }
            let down = (max_scaled_down - cleaned).min(spec - available);
            self.resize(i, spec - down);
            cleaned += down;
        }
        // Go counts the old ReplicaSets that were active before this step, and the new one.
        let available: i32 = active.iter().chain([&new]).map(|&i| self.rss[i].counts.available).sum();
        let mut scaled = 0;
        if available > min_available {
            let budget = available - min_available;
            for &i in &active {
                let spec = self.rss[i].spec();
                if scaled >= budget || spec == 0 {
                    continue;
                }
                let down = spec.min(budget - scaled);
                self.resize(i, spec - down);
                scaled += down;
            }
        }
        cleaned + scaled > 0
    }

    /// `rolloutRecreate`: old ReplicaSets to zero, wait for their pods to go, then the
    /// new one at full size.
    fn rollout_recreate(&mut self) {
        let new = self.new_replica_set(false);
        let olds = self.olds(new);
        let mut scaled_down = false;
        for i in self.active(&olds) {
            scaled_down |= self.resize(i, 0);
        }
        // Terminating pods still run: the new ones wait for them.
        let old_pods_running = olds.iter().any(|&i| self.rss[i].counts.replicas + self.rss[i].counts.terminating > 0);
        if scaled_down || old_pods_running {
            return self.sync_rollout_status(new);
        }
        let new = new.or_else(|| self.new_replica_set(true));
        if let Some(i) = new {
            self.resize(i, self.spec.replicas);
        }
        if progress::complete(&self.spec, &self.d["status"]) {
            self.clean_up(&olds);
        }
        self.sync_rollout_status(new);
    }

    fn status_inputs(&self, new: Option<usize>) -> (Vec<(i32, Counts)>, Option<Counts>) {
        let all = self.all(new);
        (all.iter().map(|&i| (self.rss[i].spec(), self.rss[i].counts)).collect(), new.map(|i| self.rss[i].counts))
    }

    /// `syncDeploymentStatus`: counts and availability only.
    fn sync_status(&mut self, new: Option<usize>) {
        let (all, new_counts) = self.status_inputs(new);
        self.d["status"] = progress::calculate(&self.spec, &self.d["status"], &all, new_counts, self.now);
    }

    /// `syncRolloutStatus`: counts, availability and progress.
    fn sync_rollout_status(&mut self, new: Option<usize>) {
        let (all, new_counts) = self.status_inputs(new);
        let calculated = progress::calculate(&self.spec, &self.d["status"], &all, new_counts, self.now);
        let name = new.map(|i| self.rss[i].name().to_owned());
        self.d["status"] = progress::rollout(&self.spec, &self.d["status"], calculated, name.as_deref(), self.now);
    }
}

impl Controllers {
    /// Syncs the Deployments `names`; a failed ReplicaSet write leaves its status for a retry.
    pub(super) async fn deployments(&mut self, names: BTreeSet<Name>) {
        let (d_kind, rs_kind, pod_kind) =
            (self.kinds.deployment.clone(), self.kinds.replica_set.clone(), self.kinds.pod.clone());
        let now = Timestamp::now();
        for (ns, name) in names {
            // Events keep coming while a long pass runs: take them before they overflow.
            self.drain_events();
            let Some(d) = self.cluster.get_raw(&d_kind.group, &d_kind.plural, &ns, &name) else { continue };
            self.adopt_orphans(&d, &rs_kind).await;
            let owned: Vec<(Arc<Value>, Vec<Arc<Value>>)> =
                self.owned(&d, &rs_kind).into_iter().map(|rs| (rs.clone(), self.owned(&rs, &pod_kind))).collect();
            let mut wake: Option<Timestamp> = None;
            let rss: Vec<Rs> = owned
                .iter()
                .map(|(rs, pods)| {
                    let pods: Vec<&Value> = pods.iter().map(|p| &**p).collect();
                    wake = earliest(wake, super::replicasets::available_at(rs, &pods));
                    Rs::new((**rs).clone(), Counts::of(rs, &pods, now))
                })
                .collect();
            let outcome = match sync(&d, rss.clone(), now) {
                Ok(outcome) => outcome,
                Err(e) => {
                    tracing::debug!(deployment = name, error = %e, "sim deployments: cannot sync");
                    continue;
                }
            };
            // A rollout in progress waits on time too (minReadySeconds, its deadline).
            if let Ok(spec) = Spec::of(&outcome.deployment) {
                wake = earliest(wake, progress::deadline(&spec, &outcome.deployment["status"]));
            }
            if let Some(at) = wake {
                self.wake_at(Kind::Deployment, (&ns, &name), at);
            }
            if !self.write_outcome(&d, &rss, outcome).await {
                self.retry(Kind::Deployment, (&ns, &name));
            }
        }
    }

    /// Writes what a sync of `d` decided; false when a write failed.
    async fn write_outcome(&mut self, d: &Value, before: &[Rs], outcome: Outcome) -> bool {
        let (d_kind, rs_kind) = (self.kinds.deployment.clone(), self.kinds.replica_set.clone());
        let mut failed = false;
        for rs in &outcome.replica_sets {
            let old = before.iter().find(|b| b.name() == rs.name() && !rs.create);
            let changed = rs.delete || rs.create || old.is_some_and(|b| b.object != rs.object);
            let written = if rs.delete {
                self.delete(&rs_kind, str_at(&rs.object, "/metadata/namespace"), rs.name()).await
            } else if rs.create {
                self.create(&rs_kind, rs.object.clone()).await.map(|_| ())
            } else if changed {
                self.replace(&rs_kind, None, rs.object.clone()).await.map(|_| ())
            } else {
                Ok(())
            };
            match written {
                Ok(()) if !rs.delete => {
                    let from = if rs.create { 0 } else { old.map_or(0, Rs::spec) };
                    self.record_scaling(d, rs.name(), from, rs.spec());
                }
                Ok(()) => {}
                Err(e) => {
                    e.log();
                    failed = true;
                }
            }
        }
        if failed {
            return false;
        }
        let status = &outcome.deployment["status"];
        if d.get("status").cloned().unwrap_or_else(|| json!({})) != *status {
            let mut updated = d.clone();
            updated["status"] = status.clone();
            if let Err(e) = self.replace(&d_kind, Some("status"), updated).await {
                e.log();
                return false;
            }
        }
        let revision = |d: &Value| d.pointer("/metadata/annotations").and_then(|a| a.get(REVISION)).cloned();
        if let Some(revision) = revision(&outcome.deployment).filter(|r| revision(d).as_ref() != Some(r)) {
            let (ns, name) = (str_at(d, "/metadata/namespace"), str_at(d, "/metadata/name"));
            let patch = json!({"metadata": {"annotations": {REVISION: revision}}});
            if let Err(e) = self.merge_patch(&d_kind, ns, name, patch).await {
                e.log();
                return false;
            }
        }
        true
    }
}

fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
