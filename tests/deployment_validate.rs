//! Every rule of the validating webhook for Deployment annotations, with the exact
//! field-error text a user sees behind `admission webhook ... denied the request:`.

use apisix_canary::admission::deployment::{Review, validate};
use apisix_canary::release::plan::{OptIn, Plan};
use kube::core::DynamicObject;
use kube::core::admission::Operation;
use serde_json::{Value, json};

fn deploy(annotations: &[(&str, &str)]) -> DynamicObject {
    let ann: serde_json::Map<String, Value> =
        annotations.iter().map(|(k, v)| ((*k).to_owned(), Value::from(*v))).collect();
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "podinfo", "namespace": "test", "annotations": ann},
        "spec": {"template": {"spec": {"containers": [{"name": "podinfod", "image": "podinfo:6.0.0"}]}}}
    }))
    .unwrap()
}

fn errors_of(annotations: &[(&str, &str)]) -> Vec<String> {
    let new = deploy(annotations);
    let v = validate(&Review { operation: &Operation::Create, old: None, new: Some(&new) });
    v.errors.iter().map(ToString::to_string).collect()
}

const R: (&str, &str) = ("apisix-canary.dev/route", "podinfo");

/// Annotations in, the exact field errors out.
type Case<'a> = (Vec<(&'a str, &'a str)>, Vec<String>);

#[test]
fn each_rule_names_field_value_and_what_is_allowed() {
    let a = |k: &str| format!("metadata.annotations[apisix-canary.dev/{k}]");
    let cases: Vec<Case> = vec![
        (
            vec![R, ("apisix-canary.dev/max-weight", "150")],
            vec![format!("{}: Invalid value: \"150\": must be between 1 and 100", a("max-weight"))],
        ),
        (
            vec![R, ("apisix-canary.dev/max-weight", "0")],
            vec![format!("{}: Invalid value: \"0\": must be between 1 and 100", a("max-weight"))],
        ),
        (
            vec![R, ("apisix-canary.dev/step-weight", "ten")],
            vec![format!("{}: Invalid value: \"ten\": must be an integer between 1 and 100", a("step-weight"))],
        ),
        (
            vec![R, ("apisix-canary.dev/step-weight", "60"), ("apisix-canary.dev/max-weight", "50")],
            vec![format!("{}: Invalid value: \"60\": must be less than or equal to max-weight (50)", a("step-weight"))],
        ),
        (
            vec![R, ("apisix-canary.dev/step-weight", "60")],
            vec![format!(
                "{}: Invalid value: \"60\": must be less than or equal to max-weight (50, the default)",
                a("step-weight")
            )],
        ),
        (
            vec![R, ("apisix-canary.dev/step-weights", "10,5")],
            vec![format!("{}: Invalid value: \"10,5\": weights must be strictly increasing", a("step-weights"))],
        ),
        (
            vec![R, ("apisix-canary.dev/step-weights", "10,60"), ("apisix-canary.dev/max-weight", "50")],
            vec![format!("{}: Invalid value: \"10,60\": must not go above max-weight (50)", a("step-weights"))],
        ),
        (
            vec![R, ("apisix-canary.dev/threshold", "0")],
            vec![format!("{}: Invalid value: \"0\": must be at least 1", a("threshold"))],
        ),
        (
            vec![R, ("apisix-canary.dev/interval", "10x")],
            vec![format!(
                "{}: Invalid value: \"10x\": must be a duration such as 500ms, 10s, 1m or 1h30m",
                a("interval")
            )],
        ),
        (
            vec![R, ("apisix-canary.dev/interval", "100ms")],
            vec![format!("{}: Invalid value: \"100ms\": must be between 1s and 24h", a("interval"))],
        ),
        (
            vec![R, ("apisix-canary.dev/max-request-duration", "20m")],
            vec![format!("{}: Invalid value: \"20m\": must be between 1ms and 10m", a("max-request-duration"))],
        ),
        (
            vec![R, ("apisix-canary.dev/min-success-rate", "101")],
            vec![format!("{}: Invalid value: \"101\": must be a number between 0 and 100", a("min-success-rate"))],
        ),
        (
            vec![R, ("apisix-canary.dev/progress-deadline-seconds", "0")],
            vec![format!(
                "{}: Invalid value: \"0\": must be a whole number of seconds between 1 and 86400",
                a("progress-deadline-seconds")
            )],
        ),
        (
            vec![R, ("apisix-canary.dev/skip-analysis", "yes")],
            vec![format!("{}: Unsupported value: \"yes\": supported values: \"false\", \"true\"", a("skip-analysis"))],
        ),
        (
            vec![("apisix-canary.dev/route", "Podinfo_v2")],
            vec![format!(
                "{}: Invalid value: \"Podinfo_v2\": a lowercase RFC 1123 subdomain must consist of lower case \
             alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
                a("route")
            )],
        ),
        (
            vec![R, ("apisix-canary.dev/max-wieght", "50")],
            vec![format!(
                "{}: Forbidden: unknown annotation; did you mean apisix-canary.dev/max-weight?",
                a("max-wieght")
            )],
        ),
        (
            vec![("apisix-canary.dev/rout", "podinfo")],
            vec![format!("{}: Forbidden: unknown annotation; did you mean apisix-canary.dev/route?", a("rout"))],
        ),
        (
            vec![R, ("apisix-canary.dev/canary", "podinfo")],
            vec![format!(
                "{}: Forbidden: may not be set together with apisix-canary.dev/route: the Canary's spec.routeRef \
             names the route",
                a("canary")
            )],
        ),
        (
            vec![("apisix-canary.dev/canary", "podinfo"), ("apisix-canary.dev/max-weight", "50")],
            vec![format!(
                "{}: Forbidden: the analysis is defined by the Canary named in apisix-canary.dev/canary; set it there",
                a("max-weight")
            )],
        ),
        (
            vec![("apisix-canary.dev/max-weight", "50")],
            vec![format!(
                "{}: Required value: apisix-canary.dev/max-weight has no effect without apisix-canary.dev/route",
                a("route")
            )],
        ),
        (
            vec![R, ("apisix-canary.dev/stable-revision", "v1")],
            vec![format!(
                "{}: Invalid value: \"v1\": must be a revision: 10 lowercase hexadecimal characters",
                a("stable-revision")
            )],
        ),
    ];
    for (annotations, want) in cases {
        assert_eq!(errors_of(&annotations), want, "{annotations:?}");
    }
}

#[test]
fn step_weights_win_over_step_weight_as_in_flagger() {
    let new = deploy(&[R, ("apisix-canary.dev/step-weights", "5,10"), ("apisix-canary.dev/step-weight", "5")]);
    let v = validate(&Review { operation: &Operation::Create, old: None, new: Some(&new) });
    assert!(v.errors.is_empty());
    assert_eq!(
        v.warnings(),
        [
            "metadata.annotations[apisix-canary.dev/step-weight]: ignored: apisix-canary.dev/step-weights is set and takes precedence"
        ]
    );
}

#[test]
fn unknown_key_far_from_any_lists_the_known_ones() {
    let errs = errors_of(&[R, ("apisix-canary.dev/colour", "blue")]);
    assert_eq!(errs.len(), 1);
    assert!(errs[0].contains("known keys under apisix-canary.dev/: route, canary, step-weight"), "{}", errs[0]);
}

#[test]
fn every_problem_in_one_answer() {
    let new = deploy(&[
        R,
        ("apisix-canary.dev/max-weight", "150"),
        ("apisix-canary.dev/interval", "soon"),
        ("apisix-canary.dev/thresold", "5"),
    ]);
    let v = validate(&Review { operation: &Operation::Create, old: None, new: Some(&new) });
    assert_eq!(v.errors.len(), 3);
    let message = v.errors.to_string();
    assert!(message.starts_with('[') && message.ends_with(']'), "{message}");
    for field in [
        "max-weight]",
        "interval]",
        "thresold]: Forbidden: unknown annotation; did you mean apisix-canary.dev/threshold?",
    ] {
        assert!(message.contains(field), "{field} missing from {message}");
    }
}

#[test]
fn valid_settings_pass_with_warnings_where_risky() {
    let new = deploy(&[
        R,
        ("apisix-canary.dev/step-weight", "10"),
        ("apisix-canary.dev/max-weight", "50"),
        ("apisix-canary.dev/interval", "5s"),
        ("apisix-canary.dev/threshold", "1"),
        ("apisix-canary.dev/min-success-rate", "99.5"),
        ("apisix-canary.dev/max-request-duration", "500ms"),
        ("apisix-canary.dev/progress-deadline-seconds", "60"),
        ("apisix-canary.dev/skip-analysis", "false"),
        ("apisix-canary.dev/stable-revision", "53d0ab54bc"),
        ("apisix-canary.dev/canary-revision", "89a79df4a9"),
        ("unrelated.example.com/anything", "goes"),
    ]);
    let v = validate(&Review { operation: &Operation::Create, old: None, new: Some(&new) });
    assert!(v.errors.is_empty(), "{}", v.errors);
    assert_eq!(v.warnings.len(), 2, "{:?}", v.warnings);
    let warnings = v.warnings();
    assert!(warnings[0].starts_with("metadata.annotations[apisix-canary.dev/interval]: interval 5s is under 10s"));
    assert!(warnings[1].starts_with("metadata.annotations[apisix-canary.dev/threshold]: threshold 1"));
}

#[test]
fn parsed_settings_carry_the_values() {
    let new = deploy(&[
        R,
        ("apisix-canary.dev/step-weights", "5, 10,25"),
        ("apisix-canary.dev/interval", "1m30s"),
        ("apisix-canary.dev/min-success-rate", "99.5"),
    ]);
    let (opt_in, warnings) = Plan::from_annotations("podinfo", new.metadata.annotations.as_ref().unwrap()).unwrap();
    let OptIn::Inline(plan) = opt_in else { panic!("expected inline analysis, got {opt_in:?}") };
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(plan.target, "podinfo");
    assert_eq!(plan.route, "podinfo");
    // Without max-weight the last entry is the maximum.
    assert_eq!((plan.steps.as_slice(), plan.max_weight), ([5, 10, 25].as_slice(), 25));
    assert_eq!(plan.interval, std::time::Duration::from_secs(90));
    assert_eq!(plan.metrics[0].name, "request-success-rate");
    assert_eq!(plan.metrics[0].min, Some(99.5));
    // Defaults fill what was not written.
    assert_eq!(plan.threshold, 5);
    assert_eq!(plan.metrics[1].max, Some(500.0));
    assert_eq!(plan.progress_deadline, std::time::Duration::from_secs(600));
}

#[test]
fn updates_that_keep_our_annotations_are_not_rechecked() {
    // Stored before a rule existed: scaling it must still work.
    let old = deploy(&[R, ("apisix-canary.dev/max-weight", "150")]);
    let new = deploy(&[R, ("apisix-canary.dev/max-weight", "150"), ("team", "checkout")]);
    let v = validate(&Review { operation: &Operation::Update, old: Some(&old), new: Some(&new) });
    assert!(v.errors.is_empty());
    // Touching our annotations re-checks all of them.
    let touched = deploy(&[R, ("apisix-canary.dev/max-weight", "150"), ("apisix-canary.dev/interval", "10s")]);
    let v = validate(&Review { operation: &Operation::Update, old: Some(&old), new: Some(&touched) });
    assert_eq!(v.errors.len(), 1, "{}", v.errors);
}

#[test]
fn delete_is_never_denied() {
    let old = deploy(&[R, ("apisix-canary.dev/max-weight", "150")]);
    let v = validate(&Review { operation: &Operation::Delete, old: Some(&old), new: None });
    assert!(v.errors.is_empty());
}

#[test]
fn the_controllers_canary_copies_are_not_checked_as_user_settings() {
    let copy_of = ("apisix-canary.dev/copy-of-revision", "0123456789");
    assert_eq!(errors_of(&[copy_of]).len(), 1, "on a user's Deployment it is an unknown key");
    let mut copy = deploy(&[copy_of]);
    copy.metadata.owner_references = Some(vec![
        serde_json::from_value(json!({
            "apiVersion": "apisix-canary.dev/v1beta1", "kind": "Canary", "name": "podinfo",
            "uid": "1b9f1d2e-0000-4000-8000-000000000001", "controller": true
        }))
        .unwrap(),
    ]);
    let v = validate(&Review { operation: &Operation::Create, old: None, new: Some(&copy) });
    assert!(v.errors.is_empty(), "{}", v.errors);
}
