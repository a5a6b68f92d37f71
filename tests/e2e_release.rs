//! SCENARIO.md end to end, as a user meets it: `apisix-canary sim` (with its real
//! Prometheus) as the cluster, `apisix-canary serve` as its own process registered with
//! `manifests --url` and `kubectl apply`, the real kubectl for the user's steps, and
//! traffic through the sim's gateway. Intervals are compressed to 2 s.

#[path = "support/e2e.rs"]
mod e2e;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use e2e::*;

#[test]
fn act1_promotes_and_act2_rolls_back_at_the_threshold() {
    let w = World::start();
    // Annotation mode: the controller makes the Canary and records the stable revision.
    w.install(30);
    let traffic = w.traffic();

    // Act 1: a new image is analysed step by step and promoted.
    w.ok(&["-n", "test", "set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.1"]);
    assert_eq!(w.jsonpath("deployment/podinfo", "{.spec.paused}"), "true", "the webhook paused the release");
    assert_eq!(w.wait_phase(&["Succeeded", "Failed"], Duration::from_secs(90)), "Succeeded", "{:#?}", w.events());
    w.assert_each_step_once(30);
    // The invariant observer watched the steps go by (and fails the test on Drop if one
    // of them broke a promise).
    assert_eq!(w.observer.as_ref().map(e2e::observer::Observer::top_weight), Some(30));
    let events = w.events();
    assert!(events.contains(&"New revision detected! Scaling up podinfo.test".to_owned()), "{events:#?}");
    assert!(events.contains(&"Promotion completed! Scaling down podinfo.test".to_owned()), "{events:#?}");
    w.ok(&["-n", "test", "rollout", "status", "deployment/podinfo", "--timeout=60s"]);
    assert_eq!(
        w.jsonpath("deployment/podinfo", "{.spec.template.spec.containers[0].image}"),
        "stefanprodan/podinfo:6.0.1"
    );
    assert_ne!(w.jsonpath("deployment/podinfo", "{.spec.paused}"), "true");
    assert_eq!(w.jsonpath("deployment/podinfo", "{.metadata.annotations.apisix-canary\\.dev/stable-revision}"), "");
    assert!(!w.exists("deployment/podinfo-canary") && !w.exists("service/podinfo-canary"), "canary objects gone");
    assert!(!w.exists("apisixroute/podinfo-podinfo-canary"), "generated route gone");
    let condition = w.jsonpath("canary/podinfo", "{.status.conditions[?(@.type==\"Promoted\")].message}");
    assert_eq!(condition, "Canary analysis completed successfully, promotion finished.");
    // Ready once the caches synced; the release in the controller's metrics, Flagger's way.
    let ready = w.admin("serve-0", "/ready");
    assert!(ready.0.contains("200"), "{ready:?}\n{}", w.logs.lock().unwrap().join("\n"));
    let metrics = w.admin("serve-0", "/metrics").1;
    for series in [
        r#"apisix_canary_status{name="podinfo",namespace="test"} 1"#,
        r#"apisix_canary_successes_total{name="podinfo",namespace="test",deployment_strategy="canary",analysis_status="completed"} 1"#,
        r#"apisix_canary_weight{workload="podinfo",namespace="test"} 100"#,
    ] {
        assert!(metrics.contains(series), "{series} not in:\n{metrics}");
    }
    assert!(
        metrics.contains(
            r#"apisix_canary_metric_analysis{name="podinfo",namespace="test",metric="request-success-rate"}"#
        )
    );
    // Every step fell due and was written: its lag measured from the moment it fell due,
    // so it is shorter than the 2 s interval (counted from the step before, it could not be).
    // A bound on the measure, not on the machine's speed: lag figures live in BENCHMARKS.md.
    let sample = |name: &str| {
        let line = metrics.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in:\n{metrics}"));
        line.rsplit(' ').next().unwrap().parse::<f64>().unwrap()
    };
    let (ticks, lag) = (sample("apisix_canary_tick_lag_seconds_count"), sample("apisix_canary_tick_lag_seconds_sum"));
    assert!(ticks >= 3.0, "{ticks} ticks measured:\n{metrics}");
    assert!(lag / ticks < 2.0, "mean tick lag {} s", lag / ticks);
    // The watch echo of a step's own writes (its route, its status) is recognized: no
    // reconcile reads the release again only to wait for the next step.
    let skipped = sample("apisix_canary_reconciles_skipped_total");
    assert!(skipped * 2.0 >= ticks, "{skipped} echoes skipped over {ticks} steps:\n{metrics}");
    let table = w.ok(&["get", "canaries", "-A"]);
    assert!(table.lines().nth(1).is_some_and(|l| l.contains("podinfo") && l.contains("Succeeded")), "{table}");

    // Act 2: a canary that fails half its requests is rolled back; the stable pods stay.
    let stable = w.pods();
    w.ok(&["-n", "test", "set", "env", "deployment/podinfo", "SIM_ERROR_RATE=60"]);
    // Act 1's Succeeded holds until the controller picks the new revision up.
    assert_eq!(w.wait_phase(&["Progressing"], Duration::from_secs(30)), "Progressing", "{:#?}", w.events());
    assert_eq!(w.wait_phase(&["Failed", "Succeeded"], Duration::from_secs(90)), "Failed", "{:#?}", w.events());
    let events = w.events();
    assert!(events.iter().any(|e| e.starts_with("Halt podinfo.test advancement success rate ")), "{events:#?}");
    assert!(events.contains(&"Rolling back podinfo.test failed checks threshold reached 4".to_owned()), "{events:#?}");
    assert!(events.contains(&"Canary failed! Scaling down podinfo.test".to_owned()), "{events:#?}");
    // The count that explains the rollback is kept, as Flagger keeps it, and every
    // Halt said is a check the status recorded, with the value it measured.
    assert_eq!(w.jsonpath("canary/podinfo", "{.status.failedChecks}"), "4");
    let checks: serde_json::Value = serde_json::from_str(&w.jsonpath("canary/podinfo", "{.status.checks}")).unwrap();
    let recorded: Vec<&str> = checks
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["result"] == "Failed")
        .filter_map(|c| c["message"].as_str())
        .collect();
    for halt in events.iter().filter(|e| e.starts_with("Halt podinfo.test advancement success rate ")) {
        assert!(recorded.contains(&halt.as_str()), "{halt} not in {checks}");
        let said: f64 =
            halt["Halt podinfo.test advancement success rate ".len()..].split('%').next().unwrap().parse().unwrap();
        let value =
            checks.as_array().unwrap().iter().find(|c| c["message"] == halt.as_str()).unwrap()["value"].as_f64();
        assert!(value.is_some_and(|v| (v - said).abs() < 0.005), "{halt}: recorded {value:?}");
    }
    assert_eq!(w.jsonpath("deployment/podinfo", "{.spec.paused}"), "true", "paused on the failed template");
    let failed = w.jsonpath("deployment/podinfo", "{.metadata.annotations.apisix-canary\\.dev/failed-revision}");
    assert_eq!(failed.len(), 10, "the failed revision is remembered");
    assert!(!w.exists("deployment/podinfo-canary") && !w.exists("apisixroute/podinfo-podinfo-canary"));
    // The generated objects may still be terminating; the stable pods are the same pods.
    let deadline = Instant::now() + Duration::from_secs(20);
    while w.pods() != stable && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(w.pods(), stable, "the stable pods are untouched by the release and its rollback");

    // Writing the failed template again starts no release.
    let before = w.events().len();
    w.ok(&["-n", "test", "label", "deployment/podinfo", "touched=again"]);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(w.jsonpath("canary/podinfo", "{.status.phase}"), "Failed");
    assert!(!w.events()[before..].iter().any(|e| e.starts_with("New revision detected")), "{:#?}", w.events());
    traffic.store(false, Ordering::Relaxed);

    // SIGTERM: the controller stops, the Lease is freed for the next replica, it exits.
    assert!(w.terminate(0, Duration::from_secs(15)), "serve did not exit after SIGTERM");
    let logs = w.logs.lock().unwrap().join("\n");
    assert!(logs.contains("lease released"), "{logs}");
    w.assert_rbac_covers_serve(None);
}

#[test]
fn a_controller_killed_mid_release_resumes_at_the_weight_it_reached() {
    let w = World::start();
    w.install(50);
    let traffic = w.traffic();
    let webhook = w.serves.lock().unwrap().len() - 1;
    w.ok(&["-n", "test", "set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.1"]);
    let reached = w.wait_weight(20, Duration::from_secs(60));
    w.kill(webhook);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(w.jsonpath("canary/podinfo", "{.status.canaryWeight}"), reached.to_string(), "nothing moves meanwhile");
    // The container restarts: same pod name, same webhook port.
    w.serve("serve-0", &w.webhook_addr());
    assert_eq!(w.wait_phase(&["Succeeded", "Failed"], Duration::from_secs(90)), "Succeeded", "{:#?}", w.events());
    w.assert_each_step_once(50);
    traffic.store(false, Ordering::Relaxed);
    w.assert_rbac_covers_serve(None);
}

#[test]
fn the_other_replica_finishes_the_release_when_the_leader_dies() {
    let w = World::start();
    w.serve("serve-1", "127.0.0.1:0");
    w.install(50);
    let traffic = w.traffic();
    w.ok(&["-n", "test", "set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.1"]);
    w.wait_weight(20, Duration::from_secs(60));
    w.kill(0);
    // serve-1 takes the Lease once the dead leader's expires, and goes on from there.
    assert_eq!(w.wait_phase(&["Succeeded", "Failed"], Duration::from_secs(120)), "Succeeded", "{:#?}", w.events());
    w.assert_each_step_once(50);
    let logs = w.logs.lock().unwrap().clone();
    assert!(
        logs.iter().any(|l| l.starts_with("serve-1: ") && l.contains("Promotion completed!")),
        "serve-1 finished it"
    );
    traffic.store(false, Ordering::Relaxed);
    w.assert_rbac_covers_serve(None);
}

#[test]
fn a_refused_release_says_why_and_starts_when_fixed_and_a_deleted_canary_stops_safely() {
    let w = World::start();
    // Five steps: the release is still running when the Canary is deleted, even on a
    // machine slow enough that each kubectl call takes a second.
    w.install(50);
    let traffic = w.traffic();
    // The route now serves another Service: there is no rule to copy.
    let route = std::fs::read_to_string(fixture("scenario/route.yaml")).unwrap();
    let elsewhere = w.file("route-elsewhere.yaml", &route.replace("serviceName: podinfo", "serviceName: frontend"));
    w.ok(&["apply", "-f", &elsewhere]);
    w.ok(&["-n", "test", "set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.1"]);
    assert_eq!(w.wait_phase(&["Failed"], Duration::from_secs(30)), "Failed");
    let condition = w.jsonpath("canary/podinfo", "{.status.conditions[0].message}");
    assert!(condition.starts_with("Release refused: ") && condition.contains("podinfo"), "{condition}");
    assert!(w.events().iter().any(|e| e.starts_with("Halt podinfo.test release refused: ")), "{:#?}", w.events());
    assert_eq!(w.jsonpath("deployment/podinfo", "{.spec.paused}"), "true", "the stable pods keep serving");
    assert!(!w.exists("deployment/podinfo-canary") && !w.exists("apisixroute/podinfo-podinfo-canary"));

    // Fixed: the release starts by itself.
    w.ok(&["apply", "-f", fixture("scenario/route.yaml").to_str().unwrap()]);
    w.wait_weight(10, Duration::from_secs(60));
    assert!(w.exists("apisixroute/podinfo-podinfo-canary"));

    // Deleting the Canary mid-release: traffic back to stable before anything is deleted,
    // a word on the Deployment, and (annotation mode) the release starts over and ends.
    w.ok(&["-n", "test", "delete", "canary", "podinfo", "--wait=false"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let stopped = loop {
        let out: String = w.events_of("Deployment").into_iter().map(|(m, _)| m).collect::<Vec<_>>().join("\n");
        if out.contains("Release of podinfo.test stopped: its Canary was deleted") || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(stopped.contains("its Canary was deleted"), "{stopped}");
    assert_eq!(w.wait_phase(&["Succeeded"], Duration::from_secs(90)), "Succeeded", "{:#?}", w.events());
    assert_eq!(
        w.jsonpath("deployment/podinfo", "{.spec.template.spec.containers[0].image}"),
        "stefanprodan/podinfo:6.0.1"
    );
    traffic.store(false, Ordering::Relaxed);
    w.assert_rbac_covers_serve(None);
}

#[test]
fn act3_a_canary_with_a_metric_template_rolls_back_on_404s() {
    let w = World::start();
    let scenario = |f: &str| fixture(&format!("scenario/{f}")).to_string_lossy().into_owned();
    w.ok(&["apply", "-f", &scenario("namespace.yaml")]);
    // Canary mode: the Deployment names a Canary that holds the analysis.
    let deployment = canary_mode_podinfo();
    let canary = format!(
        r#"apiVersion: apisix-canary.dev/v1beta1
kind: MetricTemplate
metadata:
  name: not-found-percentage
  namespace: test
spec:
  provider:
    type: prometheus
    address: {prometheus}
  query: |
    sum(rate(apisix_http_status{{route=~"{{{{ namespace }}}}_{{{{ route }}}}-{{{{ target }}}}-canary_.+",node=~"{{{{ canary_nodes }}}}",code=~"4.."}}[{{{{ interval }}}}]))
    / sum(rate(apisix_http_status{{route=~"{{{{ namespace }}}}_{{{{ generated_route }}}}_.+",node=~"{{{{ canary_nodes }}}}"}}[{{{{ interval }}}}])) * 100
---
apiVersion: apisix-canary.dev/v1beta1
kind: Canary
metadata:
  name: podinfo
  namespace: test
spec:
  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: podinfo}}
  routeRef: {{apiVersion: apisix.apache.org/v2, kind: ApisixRoute, name: podinfo}}
  progressDeadlineSeconds: 60
  analysis:
    interval: 2s
    threshold: 10
    maxWeight: 30
    stepWeight: 10
    metrics:
      - name: 404s percentage
        templateRef: {{name: not-found-percentage}}
        thresholdRange: {{max: 5}}
        interval: 1m
        # Judged once the canary has served enough: a loaded machine may take a while to
        # give Prometheus the canary's series ("no values found" would count).
        minRequests: 20
"#,
        prometheus = w.prometheus_url
    );
    let files = [w.file("podinfo.yaml", &deployment), w.file("canary.yaml", &canary)];
    w.ok(&["apply", "-f", &files[0], "-f", &files[1], "-f", &scenario("service.yaml"), "-f", &scenario("route.yaml")]);
    w.ok(&["-n", "test", "rollout", "status", "deployment/podinfo", "--timeout=60s"]);
    assert_eq!(w.wait_phase(&["Initialized"], Duration::from_secs(30)), "Initialized");
    // Two requests in three are not found: the canary's 404 share is far above 5%. The
    // cycle is 3 long, not 2: the gateway's weighted round robin gives the canary every
    // tenth request, which with a 2-cycle would always be the same path.
    let traffic = w.traffic_to(&["/api/info", "/status/404", "/status/404"]);
    w.ok(&["-n", "test", "set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.1"]);
    assert_eq!(w.wait_phase(&["Failed", "Succeeded"], Duration::from_secs(90)), "Failed", "{:#?}", w.events());
    let events = w.events();
    assert!(events.iter().any(|e| e.starts_with("Halt podinfo.test advancement 404s percentage ")), "{events:#?}");
    assert!(events.contains(&"Rolling back podinfo.test failed checks threshold reached 10".to_owned()), "{events:#?}");
    assert_eq!(w.jsonpath("deployment/podinfo", "{.spec.paused}"), "true");
    traffic.store(false, Ordering::Relaxed);
    w.assert_rbac_covers_serve(None);
}

#[test]
fn a_route_with_two_rules_for_the_service_moves_both_by_the_same_weight() {
    let w = World::start();
    let scenario = |f: &str| fixture(&format!("scenario/{f}")).to_string_lossy().into_owned();
    w.ok(&["apply", "-f", &scenario("namespace.yaml")]);
    // The scenario's rule, and a second one for the API with its own match and priority.
    let route = std::fs::read_to_string(fixture("scenario/route.yaml")).unwrap()
        + r#"    - name: api
      priority: 5
      match:
        hosts:
          - api.example.com
        paths:
          - /api/*
      backends:
        - serviceName: podinfo
          servicePort: 80
      plugins:
        - name: prometheus
          enable: true
          config:
            prefer_name: true
"#;
    let files = [w.file("podinfo.yaml", &podinfo(30)), w.file("route.yaml", &route)];
    w.ok(&["apply", "-f", &files[0], "-f", &scenario("service.yaml"), "-f", &files[1]]);
    w.ok(&["-n", "test", "rollout", "status", "deployment/podinfo", "--timeout=60s"]);
    assert_eq!(w.wait_phase(&["Initialized"], Duration::from_secs(30)), "Initialized");
    let traffic = w.traffic();
    w.ok(&["-n", "test", "set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.1"]);
    // Each rule's weights, at every weight the release visits.
    let weights = |w: &World| {
        let path = "{range .spec.http[*]}{.name}={.priority}:{.backends[1].weight};{end}";
        w.jsonpath("apisixroute/podinfo-podinfo-canary", path)
    };
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while !matches!(w.jsonpath("canary/podinfo", "{.status.phase}").as_str(), "Succeeded" | "Failed") {
        let now = weights(&w);
        if !now.is_empty() && seen.last() != Some(&now) {
            seen.push(now);
        }
        assert!(Instant::now() < deadline, "{seen:?} {:#?}", w.events());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(w.jsonpath("canary/podinfo", "{.status.phase}"), "Succeeded", "{:#?}", w.events());
    for step in [10, 20, 30] {
        let both = format!("method=1:{step};api=6:{step};");
        assert!(seen.contains(&both), "both rules at {step}: {seen:?}");
    }
    assert!(
        seen.iter().all(|s| s
            .split(';')
            .filter(|r| !r.is_empty())
            .map(|r| r.rsplit(':').next())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            == 1),
        "never apart: {seen:?}"
    );
    traffic.store(false, Ordering::Relaxed);
}
