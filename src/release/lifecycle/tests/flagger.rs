//! Flagger's fields in the lifecycle: `canaryReadyThreshold` decides when the canary is
//! ready (and what the not-ready message says), `muteAlert` silences a gate's waiting
//! alert and nothing else.

use super::*;
use crate::release::plan::Webhook;

fn ready_at(threshold: u32, stable_replicas: i32) -> World {
    let mut p = plan(&[]);
    p.canary_ready_threshold = threshold;
    let mut w = World::new(p);
    w.o.target.replicas = stable_replicas;
    w.run(5);
    w.set_image("6.0.1");
    w
}

/// One reconcile with `ready` of the canary's pods available, whatever it asked for.
fn step_with_ready(w: &mut World, ready: i32) {
    w.step();
    if let Some(c) = &mut w.o.canary {
        c.ready = ready.min(c.replicas);
    }
}

#[test]
fn the_analysis_starts_once_the_thresholds_share_of_the_canary_is_available() {
    // 20 stable replicas: the canary of the first step (10%) has 2 pods, 1 available.
    let mut w = ready_at(50, 20);
    step_with_ready(&mut w, 1);
    assert_eq!(w.o.canary.map(|c| c.replicas), Some(2));
    w.now += Duration::from_secs(1);
    step_with_ready(&mut w, 1);
    assert!(w.events.iter().any(|e| e.starts_with("Starting canary analysis")), "{:?}", w.events);
    assert!(!w.events.iter().any(|e| e.contains("not ready")), "{:?}", w.events);

    // Flagger's default, 100%: the same canary waits for its second pod.
    let mut w = ready_at(100, 20);
    step_with_ready(&mut w, 1);
    w.now += Duration::from_secs(1);
    step_with_ready(&mut w, 1);
    assert!(!w.events.iter().any(|e| e.starts_with("Starting canary analysis")), "{:?}", w.events);
    let want = "canary deployment podinfo-canary.test not ready: waiting for rollout to finish: 1 of 2 \
                (readyThreshold 100%) updated replicas are available";
    assert!(w.events.iter().any(|e| e == want), "{:?}", w.events);
}

#[test]
fn the_not_ready_message_counts_the_pods_the_threshold_needs_as_flagger_does() {
    // 40 stable replicas: 4 canary pods; 75% of them is 3 (rounded down, as Flagger).
    let mut w = ready_at(75, 40);
    step_with_ready(&mut w, 2);
    w.now += Duration::from_secs(1);
    step_with_ready(&mut w, 2);
    let want = "canary deployment podinfo-canary.test not ready: waiting for rollout to finish: 2 of 3 \
                (readyThreshold 75%) updated replicas are available";
    assert!(w.events.iter().any(|e| e == want), "{:?}", w.events);
    // With 0% a canary with pods is ready before any of them is.
    let mut w = ready_at(0, 20);
    step_with_ready(&mut w, 0);
    w.now += Duration::from_secs(1);
    step_with_ready(&mut w, 0);
    assert!(w.events.iter().any(|e| e.starts_with("Starting canary analysis")), "{:?}", w.events);
}

fn gated(kind: HookKind, muted: bool) -> Plan {
    let mut p = plan(&[]);
    p.webhooks = vec![Webhook {
        name: "gate".to_owned(),
        kind,
        url: "http://flagger-loadtester.test/gate/check".parse().unwrap(),
        timeout: Duration::from_secs(10),
        metadata: BTreeMap::new(),
        retries: 0,
        mute_alert: muted,
        disable_tls: false,
    }];
    p
}

fn waiting_alerts(w: &World) -> Vec<&str> {
    w.alerts.iter().filter(|(_, m)| m.contains("waiting for approval")).map(|(_, m)| m.as_str()).collect()
}

#[test]
fn mute_alert_silences_a_gates_waiting_alert_and_keeps_its_event() {
    for (kind, alert, event) in [
        (HookKind::ConfirmRollout, "Canary is waiting for approval.", "waiting for approval gate"),
        (
            HookKind::ConfirmTrafficIncrease,
            "Canary traffic increase is waiting for approval.",
            "waiting for traffic increase approval gate",
        ),
        (
            HookKind::ConfirmPromotion,
            "Canary promotion is waiting for approval.",
            "waiting for promotion approval gate",
        ),
    ] {
        for muted in [false, true] {
            let mut w = World::released(gated(kind, muted), "6.0.1");
            w.answers.insert(kind, Err("Forbidden".to_owned()));
            w.tick(12, Duration::from_secs(10));
            let said = w.events.iter().filter(|e| e.ends_with(event)).count();
            assert_eq!(said, 1, "{kind} muted={muted}: the Event is said either way: {:?}", w.events);
            let want: Vec<&str> = if muted { vec![] } else { vec![alert] };
            assert_eq!(waiting_alerts(&w), want, "{kind} muted={muted}");
        }
    }
}

#[test]
fn mute_alert_leaves_the_end_of_the_release_alerted() {
    let mut w = World::released(gated(HookKind::ConfirmPromotion, true), "6.0.1");
    w.run(100);
    assert_eq!(w.o.status.phase, Some(Phase::Succeeded));
    assert!(
        w.alerts.iter().any(|(_, m)| m == "Canary analysis completed successfully, promotion finished."),
        "{:?}",
        w.alerts
    );
}
