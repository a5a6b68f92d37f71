//! The kubelet's Events about containers, as kube's kubelet words them: the image
//! pulled or already on the node, the container created, started, stopped.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;

use super::events::{KUBELET, Record, reference};
use super::pods::{containers, hex_digest};
use super::str_at;

/// The Events of starting `pod`'s containers (init containers first): the image
/// pulled or found on the node, the container created and started.
pub fn start_events(pod: &Value, images: &mut HashSet<String>, took: Duration) -> Vec<Record> {
    let mut out = Vec::new();
    for (list, c) in
        ["initContainers", "containers"].iter().flat_map(|l| containers(pod, l).into_iter().map(move |c| (l, c)))
    {
        let name = str_at(&c, "/name");
        let at = reference(pod, Some(format!("spec.{list}{{{name}}}")));
        let image = str_at(&c, "/image");
        let present = images.contains(image);
        for (reason, message) in pull_events(image, str_at(&c, "/imagePullPolicy"), present, took) {
            out.push(Record::normal(KUBELET, at.clone(), reason, message));
        }
        images.insert(image.to_owned());
        out.push(Record::normal(KUBELET, at.clone(), "Created", format!("Created container: {name}")));
        out.push(Record::normal(KUBELET, at, "Started", format!("Started container {name}")));
    }
    out
}

/// The kubelet's image Events for one container: an image on the node is used as is
/// unless the policy is `Always`; otherwise it is pulled (in `took`; its size made up
/// from its name, as nothing is downloaded).
pub fn pull_events(image: &str, policy: &str, present: bool, took: Duration) -> Vec<(&'static str, String)> {
    if policy == "Never" || (present && policy != "Always") {
        return vec![("Pulled", format!("Container image \"{image}\" already present on machine"))];
    }
    let took = go_duration(took);
    let size = 10_000_000 + u64::from_str_radix(&hex_digest(image)[..6], 16).unwrap_or(0) * 8;
    vec![
        ("Pulling", format!("Pulling image \"{image}\"")),
        (
            "Pulled",
            format!(
                "Successfully pulled image \"{image}\" in {took} ({took} including waiting). Image size: {size} bytes."
            ),
        ),
    ]
}

/// A duration as Go's `time.Duration` prints it: `512ms`, `1.2s`.
fn go_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        return format!("{}ms", d.as_millis());
    }
    let secs = format!("{:.3}", d.as_secs_f64());
    format!("{}s", secs.trim_end_matches('0').trim_end_matches('.'))
}

/// The containers of `pod` that run, in the order of its spec.
pub fn running_containers(pod: &Value) -> Vec<String> {
    let statuses = pod.pointer("/status/containerStatuses").and_then(Value::as_array);
    let running =
        |name: &str| statuses.into_iter().flatten().any(|s| s["name"] == name && s.pointer("/state/running").is_some());
    let spec = pod.pointer("/spec/containers").and_then(Value::as_array);
    spec.into_iter().flatten().map(|c| str_at(c, "/name")).filter(|n| running(n)).map(str::to_owned).collect()
}

/// The Events of stopping `pod`'s running containers (SIGTERM).
pub fn stop_events(pod: &Value) -> Vec<Record> {
    let stopping = |name: String| {
        let at = reference(pod, Some(format!("spec.containers{{{name}}}")));
        Record::normal(KUBELET, at, "Killing", format!("Stopping container {name}"))
    };
    running_containers(pod).into_iter().map(stopping).collect()
}

#[cfg(test)]
mod tests {
    use super::super::pods::tests::pod;
    use super::*;
    use serde_json::json;

    #[test]
    fn images_are_pulled_unless_present() {
        let present = pull_events("nginx:1.27", "IfNotPresent", true, Duration::from_millis(200));
        assert_eq!(present, [("Pulled", "Container image \"nginx:1.27\" already present on machine".to_owned())]);
        let pulled = pull_events("nginx:1.27", "IfNotPresent", false, Duration::from_millis(1500));
        assert_eq!(pulled[0], ("Pulling", "Pulling image \"nginx:1.27\"".to_owned()));
        assert!(
            pulled[1]
                .1
                .starts_with("Successfully pulled image \"nginx:1.27\" in 1.5s (1.5s including waiting). Image size: ")
        );
        assert_eq!(pull_events("nginx", "Always", true, Duration::from_millis(200))[0].0, "Pulling");
        assert_eq!(go_duration(Duration::from_millis(200)), "200ms");
        assert_eq!(go_duration(Duration::from_secs(2)), "2s");
    }

    #[test]
    fn start_events_per_container() {
        let mut images = HashSet::new();
        let mut p = pod();
        p["metadata"]["namespace"] = json!("test");
        let summary = |records: Vec<Record>| -> Vec<(String, String)> {
            records
                .iter()
                .map(|r| (r.reason.to_owned(), format!("{}: {}", str_at(&r.involved, "/fieldPath"), r.message)))
                .collect()
        };
        let first = summary(start_events(&p, &mut images, Duration::ZERO));
        assert_eq!(first.len(), 8, "{first:?}");
        assert_eq!(first[2], ("Created".to_owned(), "spec.containers{app}: Created container: app".to_owned()));
        assert_eq!(first[3], ("Started".to_owned(), "spec.containers{app}: Started container app".to_owned()));
        // The images are on the node now (no pull policy: as IfNotPresent).
        let again = summary(start_events(&p, &mut images, Duration::ZERO));
        assert_eq!(
            again[0].1,
            "spec.containers{app}: Container image \"stefanprodan/podinfo:6.0.0\" already present on machine"
        );
        assert_eq!(again.len(), 6);
    }

    #[test]
    fn only_running_containers_are_stopped() {
        let pod = json!({"spec": {"containers": [{"name": "app"}, {"name": "side"}, {"name": "new"}]},
            "status": {"containerStatuses": [
                {"name": "side", "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}},
                {"name": "app", "state": {"running": {}}},
                {"name": "new", "state": {"waiting": {"reason": "ContainerCreating"}}}]}});
        assert_eq!(running_containers(&pod), ["app", "side"]);
        let stopping: Vec<String> = stop_events(&pod).into_iter().map(|r| r.message).collect();
        assert_eq!(stopping, ["Stopping container app", "Stopping container side"]);
        assert!(running_containers(&json!({"spec": {"containers": [{"name": "app"}]}})).is_empty());
    }
}
