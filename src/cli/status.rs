//! `apisix-canary status`: the releases at a glance (phase, weight as a bar, failed
//! checks, the age of the last transition, the last Event), `--watch` to follow them,
//! `-o json` for machines, and `--wait-for PHASE` for CI: exit 0 when the phase is
//! reached, 1 when the release fails instead, 2 at `--timeout`.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use serde::Serialize;

use super::cluster::{ClusterArgs, connect};
use super::parse_positive_duration;
use crate::analysis::prometheus::{Prometheus, QUERY_TIMEOUT};
use crate::api::canary::v1beta1::Canary;
use crate::route;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// One Canary; every Canary of the namespace when left out.
    pub name: Option<String>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Every namespace.
    #[arg(short = 'A', long = "all-namespaces")]
    pub all_namespaces: bool,
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Print again whenever something changes, until Ctrl-C.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Wait until NAME reaches this phase (e.g. Succeeded): exit 0, or 1 if it fails
    /// instead, or 2 at --timeout.
    #[arg(long, requires = "name")]
    pub wait_for: Option<String>,
    #[arg(long, default_value = "10m", value_parser = parse_positive_duration)]
    pub timeout: Duration,
    /// The Prometheus that scrapes APISIX: adds the canary's own success rate and P99
    /// over the last 30 s to each running release.
    #[arg(long, env = "APISIX_CANARY_PROMETHEUS_URL")]
    pub prometheus_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// One release as the table shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub namespace: String,
    pub name: String,
    pub phase: String,
    pub weight: u32,
    pub max_weight: Option<u32>,
    pub failed_checks: u32,
    /// The canary's own success rate (%) over the last 30 s, with --prometheus-url.
    pub success_rate: Option<f64>,
    /// The canary's own P99 (ms) over the last 30 s, with --prometheus-url.
    pub p99_ms: Option<f64>,
    pub last_transition: Option<String>,
    pub message: Option<String>,
    pub last_event: Option<String>,
}

const POLL: Duration = Duration::from_millis(500);
/// The range of the success rate and P99 shown.
const WINDOW: Duration = Duration::from_secs(30);

pub async fn run(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let (client, ns) = connect(&args.cluster).await?;
    let scope = if args.all_namespaces { None } else { Some(ns.as_str()) };
    if let Some(want) = &args.wait_for {
        return wait_for(&client, scope.unwrap_or(&ns), args.name.as_deref().unwrap_or_default(), want, args.timeout)
            .await;
    }
    let prometheus = match &args.prometheus_url {
        Some(url) => Some(Prometheus::new(url, QUERY_TIMEOUT)?),
        None => None,
    };
    let mut shown = None;
    loop {
        let mut rows = rows(&client, scope, args.name.as_deref()).await?;
        if let Some(p) = &prometheus {
            for row in rows.iter_mut().filter(|r| matches!(r.phase.as_str(), "Progressing" | "WaitingPromotion")) {
                measure(&client, p, row).await;
            }
        }
        if shown.as_ref() != Some(&rows) {
            match args.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
                Output::Table => print!("{}", table(&rows, Timestamp::now(), args.all_namespaces)),
            }
            shown = Some(rows);
        }
        if !args.watch {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `--wait-for`: polls NAME's phase.
async fn wait_for(client: &Client, ns: &str, name: &str, want: &str, timeout: Duration) -> anyhow::Result<ExitCode> {
    let deadline = Instant::now() + timeout;
    let api: Api<Canary> = Api::namespaced(client.clone(), ns);
    let mut last = String::new();
    loop {
        let canary = api.get_opt(name).await?.with_context(|| format!("Canary {ns}/{name} not found"))?;
        let phase = canary.status.as_ref().and_then(|s| s.phase).map(|p| format!("{p:?}")).unwrap_or_default();
        if phase != last {
            eprintln!("{name}.{ns}: {}", if phase.is_empty() { "no status yet" } else { &phase });
            last.clone_from(&phase);
        }
        if phase.eq_ignore_ascii_case(want) {
            return Ok(ExitCode::SUCCESS);
        }
        if phase == "Failed" {
            let message =
                canary.status.as_ref().and_then(|s| s.conditions.as_ref()).and_then(|c| c.first()?.message.clone());
            eprintln!("{name}.{ns} failed: {}", message.unwrap_or_default());
            return Ok(ExitCode::from(1));
        }
        if Instant::now() >= deadline {
            eprintln!("{name}.{ns}: still {phase} after {}", crate::api::duration::Display(timeout));
            return Ok(ExitCode::from(2));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The canary's own traffic, as the analysis counts it: its ready pods on the
/// generated route. A query that fails leaves the cells empty.
async fn measure(client: &Client, prometheus: &Prometheus, row: &mut Row) {
    let canaries: Api<Canary> = Api::namespaced(client.clone(), &row.namespace);
    let Ok(Some(canary)) = canaries.get_opt(&row.name).await else { return };
    let target = &canary.spec.target_ref.name;
    let service = canary.spec.service.as_ref().and_then(|s| s.name.clone()).unwrap_or_else(|| target.clone());
    let route = canary.spec.route_ref.as_ref().map(|r| r.name.clone()).unwrap_or_default();
    let generated = route::generated_name(&route, target);
    (row.success_rate, row.p99_ms) =
        crate::analysis::canary_now(client, prometheus, &row.namespace, &service, &generated, WINDOW).await;
}

async fn rows(client: &Client, ns: Option<&str>, name: Option<&str>) -> anyhow::Result<Vec<Row>> {
    let (canaries, events): (Api<Canary>, Api<Event>) = match ns {
        Some(ns) => (Api::namespaced(client.clone(), ns), Api::namespaced(client.clone(), ns)),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let mut list: Vec<Canary> = canaries.list(&ListParams::default()).await.context("listing Canaries")?.items;
    list.retain(|c| name.is_none_or(|n| c.name_any() == n));
    if let Some(n) = name
        && list.is_empty()
    {
        anyhow::bail!("Canary {}/{n} not found", ns.unwrap_or("*"));
    }
    let params = ListParams::default().fields("involvedObject.kind=Canary");
    let mut last: BTreeMap<(String, String), (Timestamp, String)> = BTreeMap::new();
    for e in events.list(&params).await.context("listing Events")?.items {
        let key = (
            e.involved_object.namespace.clone().unwrap_or_default(),
            e.involved_object.name.clone().unwrap_or_default(),
        );
        let at = e.last_timestamp.as_ref().map(|t| t.0).or(e.event_time.as_ref().map(|t| t.0)).unwrap_or_default();
        if last.get(&key).is_none_or(|(t, _)| *t <= at) {
            last.insert(key, (at, e.message.clone().unwrap_or_default()));
        }
    }
    Ok(list
        .iter()
        .map(|c| {
            let (namespace, name) = (c.namespace().unwrap_or_default(), c.name_any());
            let status = c.status.clone().unwrap_or_default();
            let last_event = last.get(&(namespace.clone(), name.clone())).map(|(_, m)| m.clone());
            Row {
                phase: status.phase.map(|p| format!("{p:?}")).unwrap_or_default(),
                weight: status.canary_weight.and_then(|w| u32::try_from(w).ok()).unwrap_or(0),
                max_weight: c.spec.analysis.max_weight.and_then(|w| u32::try_from(w).ok()),
                failed_checks: status.failed_checks.and_then(|w| u32::try_from(w).ok()).unwrap_or(0),
                success_rate: None,
                p99_ms: None,
                last_transition: status.last_transition_time.map(|t| t.0.to_string()),
                message: status.conditions.and_then(|c| c.first()?.message.clone()),
                last_event,
                namespace,
                name,
            }
        })
        .collect())
}

/// `[███░░░░░░░]  30%`: the canary's share of the traffic, ten cells.
pub fn bar(weight: u32) -> String {
    let full = (weight.min(100) as usize + 5) / 10;
    format!("[{}{}] {weight:>3}%", "█".repeat(full), "░".repeat(10 - full))
}

/// How long ago, as kubectl shows ages: `45s`, `3m`, `2h`, `4d`.
pub fn age(since: Option<&str>, now: Timestamp) -> String {
    let Some(t) = since.and_then(|s| s.parse::<Timestamp>().ok()) else { return "-".to_owned() };
    let secs = now.duration_since(t).as_secs().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// The table, one line per release, columns padded to their widest cell.
pub fn table(rows: &[Row], now: Timestamp, namespaces: bool) -> String {
    let mut lines: Vec<Vec<String>> = vec![
        ["NAMESPACE", "NAME", "PHASE", "WEIGHT", "SUCCESS", "P99", "FAILED", "AGE", "LAST EVENT"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
    ];
    for r in rows {
        lines.push(vec![
            r.namespace.clone(),
            r.name.clone(),
            if r.phase.is_empty() { "-".to_owned() } else { r.phase.clone() },
            bar(r.weight),
            r.success_rate.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}%")),
            r.p99_ms.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}ms")),
            r.failed_checks.to_string(),
            age(r.last_transition.as_deref(), now),
            r.last_event.clone().unwrap_or_default(),
        ]);
    }
    if !namespaces {
        lines.iter_mut().for_each(|l| {
            l.remove(0);
        });
    }
    let columns = lines[0].len();
    let widths: Vec<usize> =
        (0..columns).map(|i| lines.iter().map(|l| l[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for l in &lines {
        let cells: Vec<String> = l
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = if i + 1 == columns { 0 } else { widths[i] }))
            .collect();
        out.push_str(cells.join("   ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_have_ten_cells() {
        assert_eq!(bar(0), "[░░░░░░░░░░]   0%");
        assert_eq!(bar(30), "[███░░░░░░░]  30%");
        assert_eq!(bar(100), "[██████████] 100%");
        assert_eq!(bar(140), "[██████████] 140%", "clamped cells, the value as written");
    }

    #[test]
    fn ages_read_like_kubectls() {
        let now: Timestamp = "2026-11-30T10:00:00Z".parse().unwrap();
        assert_eq!(age(Some("2026-11-30T09:59:15Z"), now), "45s");
        assert_eq!(age(Some("2026-11-30T09:50:00Z"), now), "10m");
        assert_eq!(age(Some("2026-11-29T10:00:00Z"), now), "24h");
        assert_eq!(age(Some("2026-11-20T10:00:00Z"), now), "10d");
        assert_eq!(age(None, now), "-");
    }

    #[test]
    fn the_table_lines_up() {
        let row = Row {
            namespace: "test".into(),
            name: "podinfo".into(),
            phase: "Progressing".into(),
            weight: 20,
            max_weight: Some(50),
            failed_checks: 1,
            success_rate: Some(99.5),
            p99_ms: None,
            last_transition: Some("2026-11-30T09:59:50Z".into()),
            message: None,
            last_event: Some("Advance podinfo.test canary weight 20".into()),
        };
        let now: Timestamp = "2026-11-30T10:00:00Z".parse().unwrap();
        let out = table(&[row], now, true);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "NAMESPACE   NAME      PHASE         WEIGHT              SUCCESS   P99   FAILED   AGE   LAST EVENT"
        );
        assert_eq!(
            lines[1],
            "test        podinfo   Progressing   [██░░░░░░░░]  20%   99.50%    -     1        10s   Advance podinfo.test \
             canary weight 20"
        );
        assert!(!table(&[], now, false).contains("NAMESPACE"));
    }
}
