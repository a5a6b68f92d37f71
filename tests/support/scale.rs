//! Scale: `serve` (webhooks and controller, its own process) over N opted-in
//! Deployments of the simulated cluster, with no release running: how long until every
//! Canary is `Initialized`, then serve's resident memory and idle CPU, and the sim's.
//! Run by `benches/scale.rs` and, small, by `tests/scale.rs`.

use std::time::{Duration, Instant};

use apisix_canary::api::canary::Phase;
use apisix_canary::api::canary::v1beta1::Canary;
use kube::{Api, Client};

use crate::{e2e, reaction};

/// (resident MiB, CPU seconds so far) of process `pid`.
pub fn usage(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (rss, (ticks(11) + ticks(12)) / 100.0)
}

/// One world with `n` opted-in Deployments: its row of BENCHMARKS.md's table, or `None`
/// when the Canaries were not all Initialized within `within`.
pub fn run(n: usize, within: Duration, idle: Duration) -> (String, bool) {
    let w = e2e::World::start();
    let mut objects = format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {}}}\n", reaction::NAMESPACE);
    for i in 0..n {
        objects.push_str("---\n");
        objects.push_str(&reaction::app(i));
    }
    let file = w.file("scale-apps.yaml", &objects);
    let started = Instant::now();
    w.ok(&["apply", "-f", &file]);
    let applied = started.elapsed();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let initialized = runtime.block_on(async {
        let kubeconfig = kube::config::Kubeconfig::read_from(&w.kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap();
        let canaries: Api<Canary> = Api::namespaced(Client::try_from(config).unwrap(), reaction::NAMESPACE);
        loop {
            let list = canaries.list(&Default::default()).await.unwrap();
            let done = list
                .items
                .iter()
                .filter(|c| c.status.as_ref().and_then(|s| s.phase) == Some(Phase::Initialized))
                .count();
            if done == n {
                return Some(started.elapsed());
            }
            if started.elapsed() > within {
                eprintln!("n={n}: {done} Canaries Initialized after {within:?}");
                return None;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let serve = w.serves.lock().unwrap()[0].0.id();
    let sim = w._sim.0.id();
    let (_, serve_cpu0) = usage(serve);
    let (_, sim_cpu0) = usage(sim);
    std::thread::sleep(idle);
    let (serve_rss, serve_cpu) = usage(serve);
    let (sim_rss, sim_cpu) = usage(sim);
    let row = format!(
        "| {n} | {:.1} s | {} | {serve_rss:.0} MiB | {:.1} % | {sim_rss:.0} MiB | {:.1} % |",
        applied.as_secs_f64(),
        initialized.map_or("-".to_owned(), |d| format!("{:.1} s", d.as_secs_f64())),
        (serve_cpu - serve_cpu0) * 100.0 / idle.as_secs_f64(),
        (sim_cpu - sim_cpu0) * 100.0 / idle.as_secs_f64(),
    );
    (row, initialized.is_some())
}
