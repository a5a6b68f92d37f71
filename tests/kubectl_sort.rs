//! `kubectl get --sort-by` against `apisix-canary sim --with-webhook` (issue 28 item 7):
//! kubectl asks for its Table with `?includeObject=Object` and sorts the rows by the
//! objects they carry, so each row must carry the whole object, as kube-apiserver's do
//! (rows of metadata only print "No resources found").

#[path = "support/binaries.rs"]
mod binaries;
#[path = "support/kubectl.rs"]
mod kubectl;

use std::time::{Duration, Instant};

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kubectl::{Cluster, dir_file, start};

const NAMESPACE: &str = "sorted";

/// Three Events whose names sort (a, b, c) against their lastTimestamps (c, b, a: 4 h,
/// 3 h and 1 h ago) and their firstTimestamps (b, c, a).
fn events() -> String {
    let ago = |hours: i64| (Timestamp::now() - SignedDuration::from_hours(hours)).strftime("%Y-%m-%dT%H:%M:%SZ");
    [("a-last", "Third", 1, 1, 1), ("b-second", "Second", 6, 3, 2), ("c-first", "First", 5, 4, 1)]
        .iter()
        .map(|(name, reason, first, last, count)| {
            format!(
                "apiVersion: v1\nkind: Event\nmetadata: {{name: {name}, namespace: {NAMESPACE}}}\n\
                 involvedObject: {{apiVersion: v1, kind: Pod, name: web, namespace: {NAMESPACE}}}\n\
                 reason: {reason}\nmessage: seen {}\ntype: Normal\nsource: {{component: sort-test}}\n\
                 count: {count}\nfirstTimestamp: \"{}\"\nlastTimestamp: \"{}\"\n",
                reason.to_lowercase(),
                ago(*first),
                ago(*last),
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// A column of a Table, row by row (the header's two-word LAST SEEN is one cell).
fn column(table: &str, name: &str) -> Vec<String> {
    let header: Vec<String> =
        kubectl::header(table).join(" ").replace("LAST SEEN", "LAST-SEEN").split(' ').map(str::to_owned).collect();
    let at = header.iter().position(|h| h == name).unwrap_or_else(|| panic!("no {name} column:\n{table}"));
    table.lines().skip(1).map(|l| l.split_whitespace().nth(at).unwrap_or_default().to_owned()).collect()
}

fn reasons(table: &str) -> Vec<String> {
    column(table, "REASON")
}

/// The NAME column of a Table, row by row.
fn names(table: &str) -> Vec<String> {
    table.lines().skip(1).map(|l| l.split_whitespace().next().unwrap_or_default().to_owned()).collect()
}

/// A bare pod `name` in [`NAMESPACE`], once the kubelet has given it a start time.
fn started_pod(c: &Cluster, name: &str) -> String {
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {NAMESPACE}}}\n\
         spec: {{containers: [{{name: web, image: nginx:1.27}}]}}\n"
    );
    let file = dir_file("pod.yaml", &manifest);
    c.ok(&["create", "-f", file.path()]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (start, _) = c.ok(&["-n", NAMESPACE, "get", "pod", name, "-o", "jsonpath={.status.startTime}"]);
        if !start.is_empty() {
            return start;
        }
        assert!(Instant::now() < deadline, "pod {name} never started");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn get_sort_by_orders_the_rows_by_a_field_of_the_objects() {
    let c = start();
    c.ok(&["create", "namespace", NAMESPACE]);
    let events = dir_file("events.yaml", &events());
    c.ok(&["create", "-f", events.path()]);

    // Unsorted, the server's order: by name.
    let (table, _) = c.ok(&["-n", NAMESPACE, "get", "events"]);
    assert_eq!(reasons(&table), ["Third", "Second", "First"], "{table}");
    let (table, err) = c.ok(&["-n", NAMESPACE, "get", "events", "--sort-by=.lastTimestamp"]);
    assert!(!err.contains("No resources found"), "{err}");
    assert_eq!(kubectl::header(&table), ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]);
    assert_eq!(reasons(&table), ["First", "Second", "Third"], "by lastTimestamp:\n{table}");
    assert_eq!(column(&table, "LAST-SEEN"), ["4h", "3h", "60m"], "{table}");
    assert!(table.lines().nth(1).unwrap().contains("pod/web") && table.contains("seen first"), "{table}");
    // By a number (count) and by the time the first was seen: other fields, other orders.
    let (table, _) = c.ok(&["-n", NAMESPACE, "get", "events", "--sort-by=.firstTimestamp"]);
    assert_eq!(reasons(&table), ["Second", "First", "Third"], "by firstTimestamp:\n{table}");
    let (table, _) = c.ok(&["-n", NAMESPACE, "get", "events", "--sort-by=.count"]);
    assert_eq!(reasons(&table).last().map(String::as_str), Some("Second"), "by count:\n{table}");
    // The same through events.k8s.io (its field names), and across namespaces.
    let (table, _) = c.ok(&["-n", NAMESPACE, "get", "events.v1.events.k8s.io", "--sort-by=.deprecatedLastTimestamp"]);
    assert_eq!(reasons(&table), ["First", "Second", "Third"], "events.k8s.io:\n{table}");
    // LAST SEEN from lastTimestamp in either API, as kube prints it.
    assert_eq!(column(&table, "LAST-SEEN"), ["4h", "3h", "60m"], "{table}");
    let (table, _) = c.ok(&["get", "events", "-A", "--sort-by=.lastTimestamp"]);
    let ours: Vec<&str> = table.lines().filter(|l| l.starts_with("sorted ")).collect();
    assert_eq!(ours.len(), 3, "{table}");
    assert!(ours[0].contains("seen first") && ours[2].contains("seen third"), "{table}");

    // Pods by the time the kubelet started them: created c, b, a, a second apart (the
    // start time counts seconds), against their names' order.
    let mut starts = Vec::new();
    for (i, name) in ["web-c", "web-b", "web-a"].into_iter().enumerate() {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(1100));
        }
        starts.push(started_pod(&c, name));
    }
    assert!(starts.windows(2).all(|w| w[0] < w[1]), "start times a second apart: {starts:?}");
    let (table, _) = c.ok(&["-n", NAMESPACE, "get", "pods"]);
    assert_eq!(names(&table), ["web-a", "web-b", "web-c"], "{table}");
    let (table, err) = c.ok(&["-n", NAMESPACE, "get", "pods", "--sort-by=.status.startTime"]);
    assert!(!err.contains("No resources found"), "{err}");
    assert_eq!(kubectl::header(&table), ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    assert_eq!(names(&table), ["web-c", "web-b", "web-a"], "by startTime:\n{table}");
    let (table, _) = c.ok(&["-n", NAMESPACE, "get", "pods", "--sort-by=.metadata.name", "-o", "wide"]);
    assert_eq!(names(&table), ["web-a", "web-b", "web-c"], "{table}");
}
