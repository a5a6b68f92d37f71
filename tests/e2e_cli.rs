//! The operator's verbs against the sim with the real controller (`serve` as its own
//! process), as a CI job or an on-call engineer runs them: `pause` holds the weight,
//! `promote` skips the remaining steps, `abort` rolls back mid-analysis, `retry`
//! releases the failed revision again, and `status --wait-for` answers with its exit
//! codes (0 reached, 1 failed, 2 timed out).

#[path = "support/e2e.rs"]
mod e2e;

use std::process::{Command, Output};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use e2e::*;

impl World {
    /// `apisix-canary ARGS` against the sim.
    fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN).args(args).env("KUBECONFIG", &self.kubeconfig).output().unwrap()
    }

    fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "apisix-canary {args:?}: {:?}\n{stdout}\n{stderr}", out.status);
        stdout.into_owned()
    }

    fn canary_weight(&self) -> u32 {
        self.jsonpath("canary/podinfo", "{.status.canaryWeight}").parse().unwrap_or(0)
    }
}

#[test]
fn pause_promote_abort_retry_and_wait_for() {
    let w = World::start();
    w.install(50);
    let traffic = w.traffic();

    // pause (after a passing check): the weight holds across intervals; resume, then
    // promote skips the rest.
    w.ok(&["-n", "test", "set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.1"]);
    w.wait_weight(20, Duration::from_secs(60));
    let out = w.cli_ok(&["pause", "podinfo", "-n", "test"]);
    assert!(
        out.contains("$ kubectl -n test annotate deployment/podinfo --overwrite apisix-canary.dev/suspend=true"),
        "{out}"
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while !w.jsonpath("canary/podinfo", "{.status.conditions[0].message}").starts_with("Canary is suspended") {
        assert!(Instant::now() < deadline, "not suspended: {:#?}", w.events());
        std::thread::sleep(Duration::from_millis(200));
    }
    let held = w.canary_weight();
    // Meanwhile `status` shows it paused (the annotation-mode Canary mirrors the
    // suspension), with the values the last checks measured: the status' own record,
    // the numbers of its Events, in annotation mode as in Canary mode.
    let deadline = Instant::now() + Duration::from_secs(15);
    let json = loop {
        let json: serde_json::Value =
            serde_json::from_str(&w.cli_ok(&["status", "podinfo", "-n", "test", "-o", "json"])).unwrap();
        if json[0]["paused"] == true {
            break json;
        }
        assert!(Instant::now() < deadline, "not shown paused: {json}");
        std::thread::sleep(Duration::from_millis(300));
    };
    let recorded: serde_json::Value = serde_json::from_str(&w.jsonpath("canary/podinfo", "{.status.checks}")).unwrap();
    let newest = |metric: &str| {
        recorded.as_array().unwrap().iter().rev().find(|c| c["metric"] == metric).and_then(|c| c["value"].as_f64())
    };
    let (rate, p99) = (json[0]["successRate"].as_f64(), json[0]["p99Ms"].as_f64());
    assert!(rate.is_some_and(|r| r > 99.0) && p99.is_some_and(|p| p < 500.0), "{json}");
    assert_eq!(rate, newest("request-success-rate"), "{recorded}");
    assert_eq!(p99, newest("request-duration"), "{recorded}");
    let table = w.cli_ok(&["status", "podinfo", "-n", "test"]);
    assert!(
        table.lines().nth(1).is_some_and(|l| l.contains("Paused") && l.contains(&format!("{:.2}%", rate.unwrap()))),
        "{table}"
    );
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(w.canary_weight(), held, "paused for more than two 2 s intervals");
    assert!(held < 50, "{held}");
    w.cli_ok(&["resume", "podinfo", "-n", "test"]);
    let out = w.cli_ok(&["promote", "podinfo", "-n", "test"]);
    assert!(out.contains("annotate canary/podinfo --overwrite apisix-canary.dev/promote="), "{out}");
    let waited = w.cli(&["status", "podinfo", "-n", "test", "--wait-for", "Succeeded", "--timeout", "60s"]);
    let said = String::from_utf8_lossy(&waited.stderr);
    assert_eq!(waited.status.code(), Some(0), "{said}");
    // It says the way there, with the checks' values, not only where it ends.
    let said: Vec<&str> = said.lines().collect();
    assert!(
        said[0].starts_with("podinfo.test: Progressing, weight ")
            && said[0].contains("request-success-rate 100.00 (Passed)"),
        "{said:?}"
    );
    assert!(said.iter().any(|l| l.starts_with("podinfo.test: Succeeded, failed checks ")), "{said:?}");
    let events = w.events();
    assert!(events.iter().any(|e| e.starts_with("Promoting podinfo.test on request (apisix-canary.dev/promote)")));
    assert!(!events.contains(&"Advance podinfo.test canary weight 50".to_owned()), "steps skipped: {events:#?}");

    // abort: rolled back at once; --wait-for Succeeded says so with exit code 1.
    w.ok(&["-n", "test", "set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.2"]);
    w.wait_weight(10, Duration::from_secs(60));
    w.cli_ok(&["abort", "podinfo", "-n", "test"]);
    let waited = w.cli(&["status", "podinfo", "-n", "test", "--wait-for", "Succeeded", "--timeout", "60s"]);
    assert_eq!(waited.status.code(), Some(1), "{}", String::from_utf8_lossy(&waited.stderr));
    let events = w.events();
    let said = "Rolling back podinfo.test aborted by the operator (apisix-canary.dev/abort)";
    assert!(events.contains(&said.to_owned()), "{events:#?}");
    assert_eq!(w.jsonpath("deployment/podinfo", "{.spec.paused}"), "true");
    let failed = w.jsonpath("deployment/podinfo", "{.metadata.annotations.apisix-canary\\.dev/failed-revision}");
    assert_eq!(failed.len(), 10, "the failed revision is recorded");
    // A second abort has nothing to act on.
    let again = w.cli(&["abort", "podinfo", "-n", "test"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already failed"), "{again:?}");

    // retry: the failed revision is released once more; a short --wait-for times out.
    let out = w.cli_ok(&["retry", "podinfo", "-n", "test"]);
    assert!(out.contains(&format!("apisix-canary.dev/retry={failed}")), "{out}");
    assert_eq!(w.wait_phase(&["Progressing"], Duration::from_secs(30)), "Progressing");
    let waited = w.cli(&["status", "podinfo", "-n", "test", "--wait-for", "Succeeded", "--timeout", "1s"]);
    assert_eq!(waited.status.code(), Some(2), "{}", String::from_utf8_lossy(&waited.stderr));
    let table = w.cli_ok(&["status", "-A"]);
    assert!(table.lines().next().unwrap().starts_with("NAMESPACE   NAME"), "{table}");
    assert!(table.contains("podinfo") && table.contains("Progressing"), "{table}");
    let json: serde_json::Value = serde_json::from_str(&w.cli_ok(&["status", "-n", "test", "-o", "json"])).unwrap();
    assert_eq!(json[0]["name"], "podinfo");
    let waited = w.cli(&["status", "podinfo", "-n", "test", "--wait-for", "Succeeded", "--timeout", "90s"]);
    assert_eq!(waited.status.code(), Some(0), "{}", String::from_utf8_lossy(&waited.stderr));
    assert_ne!(w.jsonpath("deployment/podinfo", "{.spec.paused}"), "true", "promoted: resumed");
    traffic.store(false, Ordering::Relaxed);
}
