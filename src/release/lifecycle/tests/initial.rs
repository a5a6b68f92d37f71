//! Before any release: a Canary alone takes its target over, generates its apex
//! Service, and is never `Initialized` while a release could slip past it.

use super::*;

fn unprotected(why: &str) -> Protection {
    Protection::Unprotected(why.to_owned())
}

#[test]
fn a_canary_alone_claims_its_deployment_before_it_is_initialized() {
    let mut w = World::new(plan(&[]));
    w.o.protection = Protection::Claim;
    w.o.apex = Apex::Stale;
    w.step();
    assert_eq!(w.log, [Action::Claim, w.log[1].clone()], "the claim comes first, alone: {:?}", w.log);
    assert_eq!(w.o.status.phase, None, "not initialized by the claim's own look");
    assert_eq!(
        w.events,
        [
            "Protecting podinfo.test: apisix-canary.dev/canary=podinfo written, its releases are intercepted for this Canary"
        ]
    );
    w.step();
    assert!(matches!(w.log[2], Action::ApplyApex), "then the apex Service: {:?}", w.log);
    assert_eq!(w.events[1], "Service podinfo.test applied from spec.service");
    w.run(5);
    assert_eq!(w.o.status.phase, Some(Phase::Initialized));
    assert_eq!(w.events[2], "Initialization done! podinfo.test");
    // Then releases run as ever.
    w.set_image("6.0.1");
    w.run(100);
    assert_eq!(w.o.status.phase, Some(Phase::Succeeded));
}

#[test]
fn a_target_that_cannot_be_protected_stays_initializing_and_says_why_once() {
    let mut w = World::new(plan(&[]));
    let why = "Deployment test/podinfo is the target of Canary test/other (its apisix-canary.dev/canary annotation \
               names it); a Deployment is released by one Canary: delete one of them";
    w.o.protection = unprotected(why);
    for _ in 0..3 {
        let requeue = w.step();
        assert!(requeue.is_some_and(|d| d <= Duration::from_secs(30)), "looked at again: {requeue:?}");
    }
    assert_eq!(w.o.status.phase, Some(Phase::Initializing));
    assert_eq!(w.o.status.message.as_deref(), Some(format!("Not initialized: {why}").as_str()));
    assert_eq!(w.events, [format!("Halt podinfo.test initialization: {why}")], "said once");
    assert!(w.alerts.is_empty(), "no 'initialization completed' alert: {:?}", w.alerts);
    // The other Canary goes: this one takes the Deployment over and initializes.
    w.o.protection = Protection::Claim;
    w.run(5);
    assert_eq!(w.o.status.phase, Some(Phase::Initialized));
    assert_eq!(w.o.status.message.as_deref(), Some(INITIALIZED));
}

#[test]
fn a_release_that_could_not_run_keeps_the_canary_initializing() {
    let mut w = World::new(plan(&[]));
    w.o.refusal = Some("Service test/podinfo not found (set spec.service.port to have it generated)".into());
    w.step();
    assert_eq!(w.o.status.phase, Some(Phase::Initializing));
    assert!(w.events[0].ends_with("Service test/podinfo not found (set spec.service.port to have it generated)"));
    // A release arrives meanwhile: the lock keeps the Deployment paused, the status says why.
    w.set_image("6.0.1");
    w.step();
    assert_eq!(w.o.status.phase, Some(Phase::Initializing));
    assert!(w.o.target.paused && w.o.canary.is_none() && w.o.route_weight.is_none());
    // Fixed: initialized on the stable revision, and the release starts.
    w.o.refusal = None;
    w.run(100);
    assert_eq!(w.o.status.promoted, Some(rev("6.0.1")));
    assert_eq!(w.o.status.phase, Some(Phase::Succeeded));
    assert!(w.events.contains(&"New revision detected! Scaling up podinfo.test".to_owned()), "{:?}", w.events);
}

#[test]
fn losing_the_target_between_releases_is_said_and_a_release_in_flight_ends_by_its_rules() {
    let mut w = World::released(plan(&[]), "6.0.1");
    w.run(100);
    assert_eq!(w.o.status.phase, Some(Phase::Succeeded));
    // Between releases: another opt-in took the Deployment.
    let why = "Deployment test/podinfo is opted in by its apisix-canary.dev/route annotation";
    w.o.protection = unprotected(why);
    w.step();
    assert_eq!(w.o.status.phase, Some(Phase::Initializing));
    assert_eq!(w.o.status.promoted, Some(rev("6.0.1")), "the stable revision is remembered");
    // During a release, the lock holds the Deployment: the analysis goes on.
    let mut w = World::released(plan(&[]), "6.0.2");
    until(&mut w, 20, |w| w.o.status.weight == 20);
    w.o.protection = unprotected(why);
    w.run(100);
    assert_eq!(w.o.status.phase, Some(Phase::Succeeded));
}

#[test]
fn an_apex_service_that_drifted_is_applied_again_whatever_the_phase() {
    let mut w = World::released(plan(&[]), "6.0.1");
    until(&mut w, 20, |w| w.o.status.weight == 20);
    w.o.apex = Apex::Stale;
    w.step();
    assert!(w.log.iter().any(|a| matches!(a, Action::ApplyApex)), "{:?}", w.log);
    assert_eq!(w.o.apex, Apex::Current);
    assert_eq!(w.o.status.weight, 20, "the release is not disturbed");
    w.run(100);
    assert_eq!(w.o.status.phase, Some(Phase::Succeeded));
}
