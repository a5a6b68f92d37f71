//! How the simulated cluster's workload controllers carry many Deployments: N
//! Deployments of one replica each (and a Service each) are created, then the time until
//! every pod is Ready and every EndpointSlice lists its pod, the CPU the sim burns while
//! idle afterwards, and its resident memory.
//!
//! `cargo bench -p apisix-canary-sim --bench workloads -- [N...]` (default 1000 5000).

use std::time::{Duration, Instant};

use serde_json::json;
use sim::Sim;

fn cpu_seconds() -> f64 {
    // utime + stime of this process, in clock ticks (100 per second on Linux).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

async fn run(n: usize) {
    let sim = Sim::start().await.expect("sim");
    sim.create(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "scale"}})).await.unwrap();
    let started = Instant::now();
    for i in 0..n {
        let labels = json!({"app": format!("app-{i}")});
        sim.create(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": format!("app-{i}"), "namespace": "scale"},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "app", "image": "podinfo:6.0.0", "ports": [{"containerPort": 9898}]}]}}},
        }))
        .await
        .unwrap();
        sim.create(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": format!("app-{i}"), "namespace": "scale"},
            "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 9898}]},
        }))
        .await
        .unwrap();
    }
    let created = started.elapsed();
    let client = sim.client().unwrap();
    let deployments: kube::Api<k8s_openapi::api::apps::v1::Deployment> = kube::Api::namespaced(client, "scale");
    loop {
        let list = deployments.list(&Default::default()).await.unwrap();
        let ready = list.items.iter().filter(|d| d.status.as_ref().and_then(|s| s.ready_replicas) == Some(1)).count();
        if ready == n {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            println!("n={n}: only {ready} ready after 600 s");
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let settled = started.elapsed();
    let version = |list: kube::core::ObjectList<k8s_openapi::api::apps::v1::Deployment>| {
        list.metadata.resource_version.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
    };
    let rv0 = version(deployments.list(&Default::default()).await.unwrap());
    let cpu0 = cpu_seconds();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle_cpu = (cpu_seconds() - cpu0) / 5.0;
    let idle_writes = version(deployments.list(&Default::default()).await.unwrap()) - rv0;
    println!(
        "n={n:>6}: created in {:>6.1} s, all Ready in {:>6.1} s, idle: CPU {:>5.1}%, {idle_writes} writes in 5 s; RSS {:>6.0} MiB",
        created.as_secs_f64(),
        settled.as_secs_f64(),
        idle_cpu * 100.0,
        rss_mib()
    );
}

fn main() {
    let counts: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let counts = if counts.is_empty() { vec![1000, 5000] } else { counts };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    for n in counts {
        runtime.block_on(run(n));
    }
}
