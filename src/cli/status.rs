//! `apisix-canary status`: the releases at a glance (phase, weight as a bar, the values
//! the last checks measured, failed checks, the age of the last transition, the last
//! Event), `--watch` to follow them, `-o json` for machines, and `--wait-for PHASE` for
//! CI: exit 0 when the phase is reached, 1 when the release fails instead, 2 at
//! `--timeout`, saying each step on the way.
//!
//! Every number is the Canary status' own (`status.checks`): what the checks judged
//! and the Events said, never a second reading of Prometheus with another window.

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
use crate::api::canary::v1beta1::Canary;
use crate::api::canary::{CanaryStatus, CheckRecord, REQUEST_DURATION, REQUEST_SUCCESS_RATE};
use crate::release::lifecycle::holds_release;

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
    /// The status' phase, as Flagger names it.
    pub phase: String,
    /// `spec.suspend`: the controller does not act on the release (`pause`).
    pub paused: bool,
    /// How the release shares the traffic: `weighted`, `A/B (...)`, `sticky (...)`.
    pub mode: String,
    pub weight: u32,
    pub max_weight: Option<u32>,
    pub failed_checks: u32,
    /// The canary's success rate (%) as the newest check of request-success-rate measured it.
    pub success_rate: Option<f64>,
    /// The canary's P99 (ms) as the newest check of request-duration measured it.
    pub p99_ms: Option<f64>,
    /// Every metric of the newest interval judged: value, result, message.
    pub last_checks: Vec<CheckRecord>,
    pub last_transition: Option<String>,
    pub message: Option<String>,
    pub last_event: Option<String>,
}

const POLL: Duration = Duration::from_millis(500);

pub async fn run(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let (client, ns) = connect(&args.cluster).await?;
    let scope = if args.all_namespaces { None } else { Some(ns.as_str()) };
    if let Some(want) = &args.wait_for {
        return wait_for(&client, scope.unwrap_or(&ns), args.name.as_deref().unwrap_or_default(), want, args.timeout)
            .await;
    }
    let mut shown = None;
    loop {
        let rows = rows(&client, scope, args.name.as_deref()).await?;
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

/// `--wait-for`: polls NAME's status, saying each change on the way (phase, weight,
/// failed checks, the last checks' values) on stderr.
async fn wait_for(client: &Client, ns: &str, name: &str, want: &str, timeout: Duration) -> anyhow::Result<ExitCode> {
    let deadline = Instant::now() + timeout;
    let api: Api<Canary> = Api::namespaced(client.clone(), ns);
    let mut last = String::new();
    loop {
        let canary = api.get_opt(name).await?.with_context(|| format!("Canary {ns}/{name} not found"))?;
        let status = canary.status.clone().unwrap_or_default();
        let phase = status.phase.map(|p| format!("{p:?}")).unwrap_or_default();
        let progress = progress(&status, canary.spec.suspend == Some(true));
        if progress != last {
            eprintln!("{name}.{ns}: {progress}");
            last = progress;
        }
        if phase.eq_ignore_ascii_case(want) {
            return Ok(ExitCode::SUCCESS);
        }
        if phase == "Failed" {
            let message = status.conditions.as_ref().and_then(|c| c.first()?.message.clone());
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

/// One line of `--wait-for`'s progress: `Progressing, weight 20%, failed checks 1,
/// request-success-rate 99.50 (Passed), request-duration 12 (Passed)`.
pub fn progress(status: &CanaryStatus, paused: bool) -> String {
    let Some(phase) = status.phase else { return "no status yet".to_owned() };
    let mut line = shown_phase(&format!("{phase:?}"), paused);
    if holds_release(Some(phase)) || status.canary_weight.unwrap_or(0) > 0 {
        line.push_str(&format!(", weight {}%", status.canary_weight.unwrap_or(0)));
    }
    line.push_str(&format!(", failed checks {}", status.failed_checks.unwrap_or(0)));
    for c in status.last_checks() {
        let value = c.value.map_or_else(|| "no value".to_owned(), |v| format!("{v:.2}"));
        line.push_str(&format!(", {} {value} ({:?})", c.metric, c.result));
    }
    line
}

/// The phase as the table shows it: `Paused` for a release the controller was asked
/// not to act on.
fn shown_phase(phase: &str, paused: bool) -> String {
    let parsed = serde_json::from_value::<crate::api::canary::Phase>(serde_json::Value::from(phase)).ok();
    let running = parsed.is_some_and(|p| holds_release(Some(p)));
    if paused && running { "Paused".to_owned() } else { phase.to_owned() }
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
                paused: c.spec.suspend == Some(true),
                mode: crate::release::plan::Plan::from_canary(&c.spec)
                    .map_or_else(|_| "weighted".to_owned(), |(p, _)| p.mode()),
                weight: status.canary_weight.and_then(|w| u32::try_from(w).ok()).unwrap_or(0),
                max_weight: c.spec.analysis.max_weight.and_then(|w| u32::try_from(w).ok()),
                failed_checks: status.failed_checks.and_then(|w| u32::try_from(w).ok()).unwrap_or(0),
                success_rate: status.last_value(REQUEST_SUCCESS_RATE),
                p99_ms: status.last_value(REQUEST_DURATION),
                last_checks: status.last_checks().to_vec(),
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
        ["NAMESPACE", "NAME", "PHASE", "MODE", "WEIGHT", "SUCCESS", "P99", "FAILED", "AGE", "LAST EVENT"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
    ];
    for r in rows {
        lines.push(vec![
            r.namespace.clone(),
            r.name.clone(),
            if r.phase.is_empty() { "-".to_owned() } else { shown_phase(&r.phase, r.paused) },
            r.mode.clone(),
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
    use crate::api::canary::{CheckResult, Phase};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

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
            paused: false,
            mode: "weighted".into(),
            weight: 20,
            max_weight: Some(50),
            failed_checks: 1,
            success_rate: Some(99.5),
            p99_ms: None,
            last_checks: Vec::new(),
            last_transition: Some("2026-11-30T09:59:50Z".into()),
            message: None,
            last_event: Some("Advance podinfo.test canary weight 20".into()),
        };
        let now: Timestamp = "2026-11-30T10:00:00Z".parse().unwrap();
        let out = table(std::slice::from_ref(&row), now, true);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "NAMESPACE   NAME      PHASE         MODE       WEIGHT              SUCCESS   P99   FAILED   AGE   LAST EVENT"
        );
        assert_eq!(
            lines[1],
            "test        podinfo   Progressing   weighted   [██░░░░░░░░]  20%   99.50%    -     1        10s   Advance \
             podinfo.test canary weight 20"
        );
        assert!(!table(&[], now, false).contains("NAMESPACE"));
        let paused = Row { paused: true, ..row.clone() };
        assert!(table(std::slice::from_ref(&paused), now, false).contains("Paused "), "a suspended release");
        let ended = Row { phase: "Succeeded".into(), ..paused };
        assert!(table(&[ended], now, false).contains("Succeeded"), "paused means nothing once it ended");
    }

    fn check(at: &str, metric: &str, value: Option<f64>, result: CheckResult) -> CheckRecord {
        CheckRecord {
            time: Time(at.parse().unwrap()),
            metric: metric.into(),
            value,
            result,
            message: None,
            evidence: None,
            boundary: None,
        }
    }

    #[test]
    fn the_values_shown_are_the_newest_checks() {
        let status = CanaryStatus {
            phase: Some(Phase::Progressing),
            canary_weight: Some(10),
            failed_checks: Some(2),
            checks: Some(vec![
                check("2026-11-30T10:00:00Z", REQUEST_SUCCESS_RATE, Some(100.0), CheckResult::Passed),
                check("2026-11-30T10:00:00Z", REQUEST_DURATION, Some(3.0), CheckResult::Passed),
                check("2026-11-30T10:00:02Z", REQUEST_SUCCESS_RATE, Some(41.7649), CheckResult::Failed),
                check("2026-11-30T10:00:02Z", REQUEST_DURATION, None, CheckResult::Failed),
            ]),
            ..CanaryStatus::default()
        };
        assert_eq!(status.last_value(REQUEST_SUCCESS_RATE), Some(41.7649));
        assert_eq!(status.last_value(REQUEST_DURATION), None, "the newest had no value: not an older one");
        assert_eq!(status.last_checks().len(), 2);
        assert_eq!(
            progress(&status, false),
            "Progressing, weight 10%, failed checks 2, request-success-rate 41.76 (Failed), request-duration no \
             value (Failed)"
        );
        assert!(progress(&status, true).starts_with("Paused, weight 10%"));
        assert_eq!(progress(&CanaryStatus::default(), false), "no status yet");
    }
}
