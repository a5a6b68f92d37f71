use super::*;

fn policy(cert: i64, ca: i64, grace: i64) -> Policy {
    Policy {
        dns_names: vec!["apisix-canary.apisix-canary.svc".into(), "localhost".into()],
        cert_validity: Duration::seconds(cert),
        ca_validity: Duration::seconds(ca),
        grace: Duration::seconds(grace),
    }
}

fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
}

fn parsed(material: &Material) -> Parsed {
    check(material, material.changed_at.unwrap()).expect("usable material")
}

#[test]
fn nothing_stored_creates_a_ca_and_a_serving_certificate_it_signed() {
    let policy = policy(3600, 36_000, 10);
    let (material, change) = next(None, &policy, t0()).unwrap().unwrap();
    assert_eq!(change, Change::Created);
    let p = parsed(&material);
    assert_eq!(p.cas.len(), 1);
    assert_eq!(p.leaf.issuer, p.cas[0].0.subject);
    assert_eq!(p.leaf.dns_names, policy.dns_names);
    assert_eq!(p.leaf.not_after, t0() + Duration::seconds(3600));
    assert_eq!(p.cas[0].0.not_after, t0() + Duration::seconds(36_000));
    // Served as is until a third of the serving certificate's life is left.
    assert_eq!(next(Some(&material), &policy, t0() + Duration::seconds(2399)).unwrap(), None);
}

#[test]
fn a_serving_certificate_is_renewed_from_the_same_ca_when_a_third_of_its_life_is_left() {
    let policy = policy(3600, 36_000, 10);
    let (material, _) = next(None, &policy, t0()).unwrap().unwrap();
    let at = t0() + Duration::seconds(2401);
    let (renewed, change) = next(Some(&material), &policy, at).unwrap().unwrap();
    assert_eq!(change, Change::CertRenewed);
    assert_eq!(renewed.ca_pem, material.ca_pem, "the bundle stays: the API server already trusts it");
    assert_eq!(renewed.ca_key_pem, material.ca_key_pem);
    assert_ne!(renewed.cert_pem, material.cert_pem);
    assert_ne!(renewed.key_pem, material.key_pem);
    assert_eq!(parsed(&renewed).leaf.not_after, at + Duration::seconds(3600));
}

#[test]
fn changed_dns_names_reissue_the_serving_certificate() {
    let (material, _) = next(None, &policy(3600, 36_000, 10), t0()).unwrap().unwrap();
    let mut other = policy(3600, 36_000, 10);
    other.dns_names = vec!["webhook.other.svc".into()];
    let later = t0() + Duration::seconds(11);
    let (renewed, change) = next(Some(&material), &other, later).unwrap().unwrap();
    assert_eq!(change, Change::CertRenewed);
    assert_eq!(parsed(&renewed).leaf.dns_names, vec!["webhook.other.svc"]);
}

#[test]
fn unusable_material_is_replaced_and_says_why() {
    let policy = policy(3600, 36_000, 10);
    let (good, _) = next(None, &policy, t0()).unwrap().unwrap();
    let (other, _) = next(None, &policy, t0()).unwrap().unwrap();
    let cases = [
        (Material { ca_pem: "not a certificate".into(), ..good.clone() }, "ca.crt: no certificate"),
        (Material { ca_key_pem: other.ca_key_pem.clone(), ..good.clone() }, "ca.key is not the key of the first CA"),
        (
            Material { ca_pem: other.ca_pem.clone(), ca_key_pem: other.ca_key_pem.clone(), ..good.clone() },
            "which ca.crt does not hold",
        ),
        (
            Material {
                key_pem: "-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n".into(),
                ..good.clone()
            },
            "tls.key",
        ),
    ];
    for (material, why) in cases {
        let err = usable(&material, t0()).expect_err(why);
        assert!(err.0.contains(why), "{err} should say {why:?}");
        let (replaced, change) = next(Some(&material), &policy, t0()).unwrap().unwrap();
        assert_eq!(change, Change::Replaced);
        usable(&replaced, t0()).unwrap();
    }
    let expired = t0() + Duration::seconds(36_001);
    assert!(usable(&good, expired).unwrap_err().0.contains("the CA expired"));
    assert_eq!(next(Some(&good), &policy, expired).unwrap().unwrap().1, Change::Replaced);
}

/// Every half second for three CA lifetimes, with an API server that learns a new
/// bundle up to `lag` late and replicas that pick up a new serving certificate up to
/// `lag` late: whatever pair of (bundle, certificate) may meet in a handshake, the
/// certificate is valid and signed by a CA of the bundle. That is "no failed webhook
/// call" as a proof, for every policy `Policy::check` accepts, tight ones included.
#[test]
fn rotating_the_ca_never_leaves_a_served_certificate_untrusted() {
    // (cert, CA, grace) in half seconds, and the lag (the reload interval).
    for (cert, ca, grace, lag) in [(40, 120, 8, 4), (12, 40, 7, 1), (18, 40, 6, 2), (20, 60, 9, 2), (13, 40, 8, 1)] {
        let half = |n: i64| Duration::milliseconds(500 * n);
        let policy = Policy { cert_validity: half(cert), ca_validity: half(ca), grace: half(grace), ..policy(1, 2, 0) };
        policy.check(half(lag)).unwrap_or_else(|e| panic!("{policy:?}: {e}"));
        let (mut material, _) = next(None, &policy, t0()).unwrap().unwrap();
        let mut history = vec![(t0(), subjects(&material), parsed(&material).leaf)];
        let mut changes = Vec::new();
        for step in 1..=(3 * ca + 2) {
            let now = t0() + half(step);
            if let Some((m, change)) = next(Some(&material), &policy, now).unwrap() {
                changes.push(change);
                material = m;
                history.push((now, subjects(&material), parsed(&material).leaf));
            }
            // In effect at `now`: the latest write older than `lag`, and every later one.
            let settled = history.iter().rposition(|(at, ..)| *at + half(lag) <= now).unwrap_or(0);
            let live = &history[settled..];
            for (_, bundle, _) in live {
                for (_, _, leaf) in live {
                    let at = format!("{policy:?} at +{}ms", 500 * step);
                    assert!(
                        bundle.contains(&leaf.issuer),
                        "{at}: a certificate of {} meets a bundle {bundle:?}",
                        leaf.issuer
                    );
                    assert!(
                        now < leaf.not_after,
                        "{at}: a certificate expired at {} may be served; {:?}",
                        leaf.not_after,
                        history
                            .iter()
                            .map(|(t, b, l)| (
                                (*t - t0()).as_seconds_f64(),
                                b.len(),
                                (l.not_after - t0()).as_seconds_f64()
                            ))
                            .collect::<Vec<_>>()
                    );
                }
            }
        }
        let rotations = changes.iter().filter(|c| **c == Change::CaRotated).count();
        assert!(rotations >= 3, "three CA lifetimes rotate the CA at least three times: {changes:?}");
        assert!(changes.iter().filter(|c| **c == Change::OldCaDropped).count() >= rotations - 1, "{changes:?}");
        assert!(!changes.contains(&Change::Replaced), "{changes:?}");
    }
}

#[test]
fn policies_that_could_serve_an_expired_certificate_are_refused() {
    let interval = Duration::milliseconds(500);
    let check = |cert, ca, grace| policy(cert, ca, grace).check(interval);
    assert!(check(6, 20, 3).is_ok());
    assert!(check(11, 20, 3).unwrap_err().contains("at most half"));
    assert!(check(6, 20, 6).unwrap_err().contains("too short"));
    assert!(check(2, 60, 1).unwrap_err().contains("too short"), "a third of 2 s is not two reloads");
}

#[test]
fn a_serving_certificate_longer_than_the_ca_does_not_renew_in_a_loop() {
    let policy = policy(3600, 600, 5);
    let (mut material, _) = next(None, &policy, t0()).unwrap().unwrap();
    let mut changes = 0;
    for second in 1..=600 {
        if let Some((m, _)) = next(Some(&material), &policy, t0() + Duration::seconds(second)).unwrap() {
            material = m;
            changes += 1;
        }
    }
    // One CA rotation (at 400 s), its new certificate, the old CA dropped.
    assert!(changes <= 4, "{changes} changes in 600 s");
}

fn subjects(material: &Material) -> Vec<String> {
    parsed(material).cas.into_iter().map(|(info, _)| info.subject).collect()
}
