//! Alerts through the simulated cluster: `notify` reads the AlertProvider and its Secret
//! from the API server, posts only to the alerts whose severity wants the notice, and
//! follows a Secret changed between two notices.

#[path = "support/recorder.rs"]
mod recorder;

use apisix_canary::analysis::alerts::{Notice, notify};
use apisix_canary::analysis::http::Resolver;
use apisix_canary::api::alert_provider::AlertProvider;
use apisix_canary::api::canary::Phase;
use apisix_canary::release::plan::{Alert, Severity};
use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use kube::CustomResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use sim::Sim;

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn alert(name: &str, severity: Severity, provider: &str) -> Alert {
    Alert { name: name.into(), severity, provider: provider.into(), provider_namespace: None }
}

#[tokio::test]
async fn notify_posts_to_the_due_alerts_at_the_secrets_current_address() {
    let sim = Sim::start().await.unwrap();
    sim.create(serde_json::to_value(AlertProvider::crd()).unwrap()).await.unwrap();
    sim.create(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "test"}})).await.unwrap();
    let mut first = recorder::start("200 OK", "ok").await;
    let mut second = recorder::start("200 OK", "ok").await;
    let address = |r: &recorder::Recorder| format!("http://{}/services/T/B/X", r.addr);
    sim.create(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "slack-url", "namespace": "test"},
        "data": {"address": b64(&address(&first))}
    }))
    .await
    .unwrap();
    sim.create(json!({
        "apiVersion": "apisix-canary.dev/v1beta1", "kind": "AlertProvider",
        "metadata": {"name": "slack", "namespace": "test"},
        "spec": {"type": "slack", "channel": "#releases", "secretRef": {"name": "slack-url"}}
    }))
    .await
    .unwrap();

    let client = sim.client().unwrap();
    let alerts = [alert("on-call", Severity::Error, "slack"), alert("team", Severity::Info, "slack")];
    let notice = Notice {
        canary: "podinfo".into(),
        namespace: "test".into(),
        target: "podinfo".into(),
        phase: Phase::Waiting,
        severity: Severity::Warn,
        message: "Canary is waiting for approval.".into(),
        fields: vec![("Target".into(), "Deployment/podinfo.test".into())],
    };
    let resolver = Resolver::default();

    let results = notify(&client, "test", &alerts, &notice, &resolver).await;
    assert_eq!(results, vec![("team".to_owned(), Ok(()))]);
    let request = first.next().await;
    let (line, body) = recorder::split(&request);
    assert_eq!(line, "POST /services/T/B/X HTTP/1.1");
    assert_eq!(
        body,
        json!({
            "channel": "#releases",
            "username": "apisix-canary",
            "attachments": [{
                "color": "warning",
                "author_name": "podinfo.test",
                "text": "Canary is waiting for approval.",
                "mrkdwn_in": ["text"],
                "fields": [{"title": "Target", "value": "Deployment/podinfo.test", "short": false}],
            }],
        })
    );
    assert!(first.requests.try_recv().is_err(), "one post: the error alert does not want a warning");

    // The webhook URL is rotated in the Secret: the next notice goes to the new one.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "test");
    let rotate = Patch::Merge(json!({"data": {"address": b64(&address(&second))}}));
    secrets.patch("slack-url", &PatchParams::default(), &rotate).await.unwrap();
    let results = notify(&client, "test", &alerts, &notice, &resolver).await;
    assert_eq!(results, vec![("team".to_owned(), Ok(()))]);
    let (_, body) = recorder::split(&second.next().await);
    assert_eq!(body["attachments"][0]["text"], "Canary is waiting for approval.");
    assert!(first.requests.try_recv().is_err(), "the old address gets nothing more");

    // Problems come back per alert, named; the other alerts are still served.
    let error = Notice { severity: Severity::Error, message: "Failed checks threshold reached 5".into(), ..notice };
    let alerts = [alert("on-call", Severity::Error, "pagerduty"), alert("team", Severity::Info, "slack")];
    let results = notify(&client, "test", &alerts, &error, &resolver).await;
    assert_eq!(
        results,
        vec![
            ("on-call".to_owned(), Err("AlertProvider pagerduty.test not found".to_owned())),
            ("team".to_owned(), Ok(())),
        ]
    );
    let (_, body) = recorder::split(&second.next().await);
    assert_eq!(body["attachments"][0]["color"], "danger");

    secrets.delete("slack-url", &Default::default()).await.unwrap();
    let results = notify(&client, "test", &alerts[1..], &error, &resolver).await;
    assert_eq!(
        results,
        vec![("team".to_owned(), Err("AlertProvider slack.test: Secret slack-url not found".to_owned()))]
    );
}
