//! Flagger's YAML ported by its apiVersion alone, as a Flagger user tries it: Flagger's
//! podinfo (Deployment and HorizontalPodAutoscaler, `kubectl apply -k`, nothing of ours
//! on it and no Service), the article's ApisixRoute, Canary and MetricTemplate as
//! written (the MetricTemplate's `code` fixed), the load tester as its chart installs
//! it; `serve` as its own process, the real kubectl, the errors of Act 2 and 3 made with
//! `kubectl exec deploy/flagger-loadtester -- hey ...`. Only the analysis interval is
//! compressed (10 s to 2 s).

#[path = "support/e2e.rs"]
mod e2e;

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use e2e::*;

/// The article's MetricTemplate names Flagger's Prometheus by its cluster address.
const ARTICLE_PROMETHEUS: &str = "flagger-prometheus.apisix";
const ARTICLE_PROMETHEUS_PORT: u16 = 9090;

/// Forwards every connection to `listen` to `to`, from threads of its own, for as long
/// as the test runs: the article's Prometheus address (`:9090`) served on a loopback
/// address of the test's own, in front of the sim's Prometheus.
fn forward(to: SocketAddr) -> SocketAddr {
    let listener = (1..200u16)
        .find_map(|i| {
            let seed = std::process::id() as u16 ^ i.wrapping_mul(7919);
            let ip = std::net::Ipv4Addr::new(127, 1 + (seed % 250) as u8, (seed >> 8) as u8, 1 + (i % 250) as u8);
            TcpListener::bind((ip, ARTICLE_PROMETHEUS_PORT)).ok()
        })
        .expect("no loopback address free on port 9090");
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming().map_while(Result::ok) {
            let Ok(server) = TcpStream::connect(to) else { continue };
            let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (mut client, mut server) = (client, server);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut client, &mut server);
                let _ = server.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s2, &mut c2);
                let _ = c2.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    addr
}

/// The cluster with serve resolving the article's cluster names (the load tester's and
/// Flagger's Prometheus) the way it would reach them from outside the cluster.
fn world() -> World {
    let w = World::cluster();
    let prometheus: SocketAddr =
        w.prometheus_url.trim_start_matches("http://").trim_end_matches('/').parse().expect("prometheus address");
    let article = forward(prometheus);
    let path = w.dir.path().join("resolve");
    let loadtester = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{},{ARTICLE_PROMETHEUS}={article}", loadtester.trim())).unwrap();
    w.started()
}

/// The article's Canary, its interval compressed.
fn canary(extra_metrics: Option<&str>) -> String {
    let text = std::fs::read_to_string(fixture("canaries/scenario.yaml")).unwrap();
    let text = text.replace("interval: 10s", "interval: 2s");
    let Some(extra) = extra_metrics else { return text };
    // The article's addition, under the metrics it already has.
    let metric: String =
        extra.lines().skip_while(|l| !l.trim_start().starts_with("- name:")).map(|l| format!("  {l}\n")).collect();
    text.replace("    webhooks:\n", &format!("{metric}    webhooks:\n"))
}

/// `kubectl exec deploy/flagger-loadtester -- <cmd>`, running until it ends.
fn exec_in_loadtester(w: &World, cmd: &str) -> Child {
    Command::new(&w.kubectl)
        .args(["-n", "test", "exec", "deploy/flagger-loadtester", "--"])
        .args(cmd.split(' '))
        .env("KUBECONFIG", &w.kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// What `hey` printed, once it has run its course.
fn finished(mut child: Child) -> String {
    let status = child.wait().unwrap();
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(status.success(), "kubectl exec failed: {out}\n{err}");
    out
}

fn annotation(w: &World, object: &str, key: &str) -> String {
    w.jsonpath(object, &format!("{{.metadata.annotations.{}}}", key.replace('.', "\\.")))
}

#[test]
fn the_articles_canary_and_template_port_by_apiversion_alone() {
    let w = world();
    // The article's commands, in its order.
    w.ok(&["create", "ns", "test"]);
    w.ok(&["apply", "-k", fixture("flagger/podinfo").to_str().unwrap()]);
    w.ok(&["apply", "-f", fixture("scenario/loadtester.yaml").to_str().unwrap()]);
    w.ok(&["apply", "-f", fixture("flagger/article/podinfo-apisixroute.yaml").to_str().unwrap()]);
    w.ok(&["apply", "-f", &w.file("podinfo-canary.yaml", &canary(None))]);

    // The Canary alone took its Deployment over and made the route's Service.
    assert_eq!(w.wait_phase(&["Initialized"], Duration::from_secs(60)), "Initialized", "{:#?}", w.events());
    assert_eq!(annotation(&w, "deployment/podinfo", "apisix-canary.dev/canary"), "podinfo");
    assert_eq!(w.jsonpath("service/podinfo", "{.spec.selector}"), r#"{"app":"podinfo"}"#, "the stable pods");
    assert_eq!(w.jsonpath("service/podinfo", "{.spec.ports[0].port}/{.spec.ports[0].targetPort}"), "80/9898");
    assert_eq!(w.jsonpath("service/podinfo", "{.metadata.ownerReferences[0].kind}"), "Canary");
    let events = w.events();
    assert!(events.iter().any(|e| e.starts_with("Protecting podinfo.test")), "{events:#?}");
    assert!(events.contains(&"Initialization done! podinfo.test".to_owned()), "{events:#?}");
    // The HPA keeps the Deployment within its bounds (Flagger's podinfo asks for none).
    let deadline = Instant::now() + Duration::from_secs(30);
    while w.jsonpath("deployment/podinfo", "{.spec.replicas}") != "2" {
        assert!(Instant::now() < deadline, "{}", w.ok(&["-n", "test", "get", "hpa"]));
        std::thread::sleep(Duration::from_millis(250));
    }
    w.ok(&["-n", "test", "rollout", "status", "deployment/podinfo", "--timeout=60s"]);

    // Act 1: promotion through 10..50, the article's load test giving the traffic.
    w.ok(&["-n", "test", "set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.1"]);
    assert_eq!(w.jsonpath("deployment/podinfo", "{.spec.paused}"), "true", "intercepted");
    assert_eq!(w.wait_phase(&["Succeeded", "Failed"], Duration::from_secs(120)), "Succeeded", "{:#?}", w.events());
    w.assert_each_step_once(50);
    w.ok(&["-n", "test", "rollout", "status", "deployment/podinfo", "--timeout=60s"]);
    assert_eq!(
        w.jsonpath("deployment/podinfo", "{.spec.template.spec.containers[0].image}"),
        "stefanprodan/podinfo:6.0.1"
    );
    // The HPA is still in charge: the promotion wrote no replicas.
    assert_eq!(w.jsonpath("hpa/podinfo", "{.spec.scaleTargetRef.name}/{.status.desiredReplicas}"), "podinfo/2");
    assert_eq!(w.jsonpath("deployment/podinfo", "{.spec.replicas}"), "2");

    // Act 2: 500s from the load tester's shell; rolled back at the article's threshold.
    w.ok(&["-n", "test", "set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.2"]);
    let hey =
        exec_in_loadtester(&w, "hey -z 30s -c 5 -q 5 -host app.example.com http://apisix-gateway.apisix/status/500");
    assert_eq!(w.wait_phase(&["Progressing"], Duration::from_secs(30)), "Progressing", "{:#?}", w.events());
    assert_eq!(w.wait_phase(&["Failed", "Succeeded"], Duration::from_secs(120)), "Failed", "{:#?}", w.events());
    let events = w.events();
    assert!(events.iter().any(|e| e.starts_with("Halt podinfo.test advancement success rate ")), "{events:#?}");
    assert!(events.contains(&"Rolling back podinfo.test failed checks threshold reached 10".to_owned()), "{events:#?}");
    assert!(events.contains(&"Canary failed! Scaling down podinfo.test".to_owned()), "{events:#?}");
    let report = finished(hey);
    assert!(report.contains("[500]"), "hey's report: {report}");

    // Act 3: the article's MetricTemplate, as written but for its `code`, judges the 404s.
    w.ok(&["apply", "-f", fixture("flagger/article/not-found-percentage.yaml").to_str().unwrap()]);
    let addition = std::fs::read_to_string(fixture("flagger/article/404s-percentage.yaml")).unwrap();
    w.ok(&["apply", "-f", &w.file("podinfo-canary.yaml", &canary(Some(&addition)))]);
    w.ok(&["-n", "test", "set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.3"]);
    let hey =
        exec_in_loadtester(&w, "hey -z 30s -c 5 -q 5 -host app.example.com http://apisix-gateway.apisix/status/404");
    assert_eq!(w.wait_phase(&["Progressing"], Duration::from_secs(30)), "Progressing", "{:#?}", w.events());
    assert_eq!(w.wait_phase(&["Failed", "Succeeded"], Duration::from_secs(120)), "Failed", "{:#?}", w.events());
    // Events of one message are one Event, counted: act 2's rollback is counted again.
    let events = w.events_of("Canary");
    let count = |message: &str| events.iter().find(|(m, _)| m == message).map_or(0, |(_, n)| n.parse().unwrap_or(1));
    assert_eq!(count("Rolling back podinfo.test failed checks threshold reached 10"), 2, "{events:#?}");
    let halts: Vec<&String> = events
        .iter()
        .map(|(m, _)| m)
        .filter(|m| m.starts_with("Halt podinfo.test advancement 404s percentage "))
        .collect();
    assert!(!halts.is_empty(), "{events:#?}");
    for halt in &halts {
        let value = halt.trim_start_matches("Halt podinfo.test advancement 404s percentage ").trim_end_matches(" > 5");
        assert!(value.parse::<f64>().is_ok_and(|v| v > 5.0), "a value above 5: {halt}");
    }
    assert!(!events.iter().any(|(m, _)| m.contains("no values found for custom metric")), "{events:#?}");
    finished(hey);
    w.assert_rbac_covers_serve(None);
}

/// Flagger's variables mean what they mean in Flagger when the Canary is not named after
/// its Deployment, and that Deployment's name has a dot: the template's route regex
/// names the generated route, and the rule it selects is named after the Canary.
#[test]
fn a_canary_named_apart_from_a_dotted_deployment_renders_flaggers_variables() {
    let w = World::start();
    w.ok(&["create", "ns", "test"]);
    let deployment = std::fs::read_to_string(fixture("scenario/podinfo.yaml")).unwrap();
    let deployment: String = deployment
        .lines()
        .filter(|l| !l.trim_start().starts_with("apisix-canary.dev/") && l.trim() != "annotations:")
        .map(|l| match l {
            "  name: podinfo" => "  name: web.v2\n".to_owned(),
            l => format!("{}\n", l.replace("app: podinfo", "app: web")),
        })
        .collect();
    let route = std::fs::read_to_string(fixture("scenario/route.yaml")).unwrap();
    let route = route.replace("name: podinfo", "name: shop").replace("serviceName: podinfo", "serviceName: web");
    let route = route.replace("name: method", "name: checkout");
    let objects = format!(
        r#"apiVersion: apisix-canary.dev/v1beta1
kind: MetricTemplate
metadata: {{name: not-found-percentage, namespace: test}}
spec:
  provider: {{type: prometheus, address: {prometheus}}}
  query: |
    (sum(rate(apisix_http_status{{route="{{{{ namespace }}}}_{{{{ route }}}}-{{{{ target }}}}-canary_{{{{ name }}}}",code=~"4.."}}[{{{{ interval }}}}])) or on() vector(0))
    / sum(rate(apisix_http_status{{route="{{{{ namespace }}}}_{{{{ route }}}}-{{{{ target }}}}-canary_{{{{ name }}}}"}}[{{{{ interval }}}}])) * 100
---
apiVersion: apisix-canary.dev/v1beta1
kind: Canary
metadata: {{name: checkout, namespace: test}}
spec:
  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: web.v2}}
  routeRef: {{apiVersion: apisix.apache.org/v2, kind: ApisixRoute, name: shop}}
  service: {{name: web, port: 80, targetPort: 9898}}
  progressDeadlineSeconds: 60
  analysis:
    interval: 2s
    threshold: 2
    maxWeight: 30
    stepWeight: 10
    metrics:
      - name: 404s percentage
        templateRef: {{name: not-found-percentage}}
        thresholdRange: {{max: 5}}
        interval: 30s
        minRequests: 5
"#,
        prometheus = w.prometheus_url
    );
    let files = [w.file("web.yaml", &deployment), w.file("shop.yaml", &route), w.file("checkout.yaml", &objects)];
    w.ok(&["apply", "-f", &files[0], "-f", &files[1], "-f", &files[2]]);
    let phase = || w.jsonpath("canary/checkout", "{.status.phase}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while phase() != "Initialized" {
        assert!(Instant::now() < deadline, "{} {:#?}", phase(), w.events_of("Canary"));
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(annotation(&w, "deployment/web.v2", "apisix-canary.dev/canary"), "checkout");
    let traffic = w.traffic();
    w.ok(&["-n", "test", "set", "image", "deployment/web.v2", "podinfod=stefanprodan/podinfo:6.0.1"]);
    let deadline = Instant::now() + Duration::from_secs(90);
    while !matches!(phase().as_str(), "Succeeded" | "Failed") {
        assert!(Instant::now() < deadline, "{} {:#?}", phase(), w.ok(&["-n", "test", "get", "events"]));
        std::thread::sleep(Duration::from_millis(250));
    }
    let selector = "involvedObject.kind=Canary,involvedObject.name=checkout";
    let events =
        w.ok(&["-n", "test", "get", "events", "--field-selector", selector, "-o", "jsonpath={.items[*].message}"]);
    assert_eq!(phase(), "Succeeded", "{events}");
    // Flagger's messages name the Canary; the 404 share was found every time.
    assert!(events.contains("Advance checkout.test canary weight 30"), "{events}");
    assert!(!events.contains("no values found"), "{events}");
    assert!(!w.exists("apisixroute/shop-web.v2-canary"), "generated route gone");
    // Dashboards find the release's Deployment and route from its Canary.
    let metrics = w.admin("serve-0", "/metrics").1;
    let info = r#"apisix_canary_info{name="checkout",namespace="test",target="web.v2",route="shop"} 1"#;
    assert!(metrics.contains(info), "{info} not in:\n{metrics}");
    assert!(metrics.contains(r#"apisix_canary_weight{workload="web.v2",namespace="test"} 100"#), "{metrics}");
    traffic.store(false, Ordering::Relaxed);
}

/// What no Canary can protect is said, never reported Initialized; a second Canary of a
/// Deployment waits for the first, takes it over once it is deleted (the first one's
/// Service stays, the route still sends to it), and a `kubectl replace` of a manifest
/// without the opt-in is still intercepted.
#[test]
fn a_target_that_cannot_be_protected_is_said_and_nothing_slips_past() {
    let w = World::start();
    w.ok(&["create", "ns", "test"]);
    w.ok(&["apply", "-k", fixture("flagger/podinfo").to_str().unwrap()]);
    w.ok(&["apply", "-f", fixture("flagger/article/podinfo-apisixroute.yaml").to_str().unwrap()]);
    let canary_of = |name: &str, target: &str| {
        format!(
            "apiVersion: apisix-canary.dev/v1beta1\nkind: Canary\nmetadata: {{name: {name}, namespace: test}}\nspec:\n  \
             targetRef: {{apiVersion: apps/v1, kind: Deployment, name: {target}}}\n  routeRef: {{apiVersion: \
             apisix.apache.org/v2, kind: ApisixRoute, name: podinfo}}\n  service: {{name: podinfo, port: 80, \
             targetPort: 9898}}\n  analysis: {{interval: 2s, threshold: 5, maxWeight: 20, stepWeight: 10}}\n"
        )
    };
    let phase = |name: &str| w.jsonpath(&format!("canary/{name}"), "{.status.phase}");
    let condition = |name: &str| w.jsonpath(&format!("canary/{name}"), "{.status.conditions[0].message}");
    let wait = |name: &str, want: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while phase(name) != want {
            assert!(Instant::now() < deadline, "{name}: {} {}", phase(name), condition(name));
            std::thread::sleep(Duration::from_millis(250));
        }
    };
    w.ok(&["apply", "-f", &w.file("podinfo.yaml", &canary_of("podinfo", "podinfo"))]);
    wait("podinfo", "Initialized");

    // A Canary of a Deployment that does not exist.
    w.ok(&["apply", "-f", &w.file("orphan.yaml", &canary_of("orphan", "nothing"))]);
    wait("orphan", "Initializing");
    assert_eq!(condition("orphan"), "Not initialized: Deployment test/nothing not found");
    let warned = w.ok(&["-n", "test", "get", "events", "--field-selector", "involvedObject.name=orphan,type=Warning"]);
    assert!(warned.contains("Halt orphan.test initialization: Deployment test/nothing not found"), "{warned}");

    // A second Canary of podinfo: not initialized, and the release is the first one's.
    w.ok(&["apply", "-f", &w.file("second.yaml", &canary_of("second", "podinfo"))]);
    wait("second", "Initializing");
    assert!(condition("second").contains("is the target of Canary test/podinfo"), "{}", condition("second"));
    w.ok(&["-n", "test", "rollout", "status", "deployment/podinfo", "--timeout=60s"]);
    let traffic = w.traffic();
    w.ok(&["-n", "test", "set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.1"]);
    assert_eq!(w.jsonpath("deployment/podinfo", "{.spec.paused}"), "true");
    assert_eq!(w.wait_phase(&["Succeeded", "Failed"], Duration::from_secs(90)), "Succeeded", "{:#?}", w.events());
    assert_eq!(phase("second"), "Initializing");

    // The first Canary goes: its opt-in goes with it, its Service stays, the second takes over.
    w.ok(&["-n", "test", "delete", "canary/podinfo"]);
    wait("second", "Initialized");
    assert_eq!(annotation(&w, "deployment/podinfo", "apisix-canary.dev/canary"), "second");
    assert_eq!(w.jsonpath("service/podinfo", "{.metadata.ownerReferences}"), "", "kept, owned by nobody");

    // `kubectl replace` of Flagger's manifest (no opt-in) with a new image: intercepted.
    let manifest = std::fs::read_to_string(fixture("flagger/podinfo/deployment.yaml")).unwrap();
    let manifest = manifest
        .replace("ghcr.io/stefanprodan/podinfo:6.0.0", "stefanprodan/podinfo:6.0.2")
        .replace("  name: podinfo\n", "  name: podinfo\n  namespace: test\n");
    let out = w.kubectl(&["replace", "-f", &w.file("replace.yaml", &manifest)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("the annotation is kept"), "the user is told: {stderr}");
    assert_eq!(w.jsonpath("deployment/podinfo", "{.spec.paused}"), "true", "intercepted");
    assert_eq!(annotation(&w, "deployment/podinfo", "apisix-canary.dev/canary"), "second");
    let deadline = Instant::now() + Duration::from_secs(90);
    while !matches!(phase("second").as_str(), "Succeeded" | "Failed") {
        assert!(Instant::now() < deadline, "{} {}", phase("second"), condition("second"));
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(phase("second"), "Succeeded", "{}", condition("second"));
    traffic.store(false, Ordering::Relaxed);
}

/// With an HPA on the Deployment, the canary copy is sized from the Deployment's
/// current replicas (the HPA scales it mid-release, paused as it is) and the promotion
/// leaves the HPA in charge: it writes no replicas.
#[test]
fn the_canary_follows_the_replicas_an_hpa_gives_the_deployment() {
    let w = World::start();
    w.ok(&["create", "ns", "test"]);
    w.ok(&["apply", "-k", fixture("flagger/podinfo").to_str().unwrap()]);
    w.ok(&["apply", "-f", fixture("flagger/article/podinfo-apisixroute.yaml").to_str().unwrap()]);
    let canary = "apiVersion: apisix-canary.dev/v1beta1\nkind: Canary\nmetadata: {name: podinfo, namespace: test}\n\
                  spec:\n  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}\n  routeRef: \
                  {apiVersion: apisix.apache.org/v2, kind: ApisixRoute, name: podinfo}\n  service: {port: 80, \
                  targetPort: 9898}\n  analysis: {interval: 2s, threshold: 5, maxWeight: 50, stepWeight: 10}\n";
    w.ok(&["apply", "-f", &w.file("canary.yaml", canary)]);
    assert_eq!(w.wait_phase(&["Initialized"], Duration::from_secs(60)), "Initialized", "{:#?}", w.events());
    w.ok(&["-n", "test", "rollout", "status", "deployment/podinfo", "--timeout=60s"]);
    w.ok(&["-n", "test", "set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.1"]);
    w.wait_weight(10, Duration::from_secs(60));
    // Load rises: the HPA takes the paused Deployment to its maximum, 4.
    w.ok(&["-n", "test", "annotate", "hpa/podinfo", "sim.k8s.io/cpu-utilization=200"]);
    let mut canary_sizes = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while w.jsonpath("canary/podinfo", "{.status.phase}") != "Succeeded" {
        assert!(Instant::now() < deadline, "{:#?}", w.events());
        canary_sizes.insert(w.jsonpath("deployment/podinfo-canary", "{.spec.replicas}"));
        std::thread::sleep(Duration::from_millis(200));
    }
    // ceil(4 x 30 / 100) = 2 from weight 30 on; 1 while the Deployment had 2.
    assert!(canary_sizes.contains("2"), "the canary never followed the Deployment's 4 replicas: {canary_sizes:?}");
    assert_eq!(w.jsonpath("deployment/podinfo", "{.spec.replicas}"), "4", "the HPA's, untouched by the promotion");
    assert_eq!(w.jsonpath("hpa/podinfo", "{.status.desiredReplicas}"), "4");
    w.ok(&["-n", "test", "rollout", "status", "deployment/podinfo", "--timeout=60s"]);
}
