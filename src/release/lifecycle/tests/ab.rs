//! An A/B release (`match` with `iterations`): the matching requests all go to the
//! canary at once, each passing interval is an iteration, promotion after the last; a
//! failed check is no iteration.

use super::*;
use crate::release::plan::{AbTest, MatchExpr};

fn ab(iterations: u32) -> Plan {
    let insider = MatchExpr { scope: "Header", name: Some("x-canary".into()), op: "Equal", value: "insider".into() };
    Plan { ab: Some(AbTest { rules: vec![vec![insider]], iterations }), steps: vec![100], max_weight: 100, ..plan(&[]) }
}

#[test]
fn the_mode_is_said_as_status_and_report_show_it() {
    assert_eq!(ab(3).mode(), "A/B (x-canary, 3 iterations)");
    let sticky = crate::release::plan::Sticky { cookie: "canary".into(), attributes: String::new() };
    assert_eq!(Plan { sticky: Some(sticky), ..plan(&[]) }.mode(), "sticky (cookie canary)");
    assert_eq!(plan(&[]).mode(), "weighted");
}

#[test]
fn every_passing_interval_is_an_iteration_and_the_last_promotes() {
    let mut w = World::released(ab(3), "6.0.1");
    w.run(100);
    assert_eq!(w.o.status.phase, Some(Phase::Succeeded), "{:?}", w.events);
    let said: Vec<&str> = w.events.iter().filter(|e| e.starts_with("Advance")).map(String::as_str).collect();
    assert_eq!(
        said,
        [
            "Advance podinfo.test canary iteration 1/3",
            "Advance podinfo.test canary iteration 2/3",
            "Advance podinfo.test canary iteration 3/3"
        ]
    );
    let weights: Vec<u32> =
        w.log.iter().filter_map(|a| if let Action::SetWeight(v) = a { Some(*v) } else { None }).collect();
    assert_eq!(weights, [0, 100], "made at 0, then all of the matching requests at once");
}

#[test]
fn a_failed_check_is_no_iteration_and_the_threshold_rolls_back() {
    let mut w = World::released(ab(5), "6.0.2");
    until(&mut w, 20, |w| w.o.status.iterations == 1);
    w.halt = halting;
    w.run(100);
    assert_eq!(w.o.status.phase, Some(Phase::Failed));
    assert_eq!(w.o.status.failed_checks, 3);
    assert!(!w.events.iter().any(|e| e.contains("iteration 2/5")), "{:?}", w.events);
    let to_stable = w.log.iter().rposition(|a| matches!(a, Action::RouteToStable)).unwrap();
    let deleted = w.log.iter().rposition(|a| matches!(a, Action::DeleteGenerated)).unwrap();
    assert!(to_stable < deleted, "the matching requests go back to the stable before the canary goes");
}
