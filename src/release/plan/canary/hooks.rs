//! The webhooks and alerts of a v1beta1 Canary: Flagger's types and fields, with
//! `muteAlert` for the gates and `disableTLS` for a hook with a self-signed certificate.

use std::collections::BTreeSet;

use super::super::{Alert, HookKind, Severity, Webhook, defaults};
use super::flagger::reference;
use super::unique_name;
use crate::api::canary::v1beta1;
use crate::api::field::{FieldError, Findings, Path};
use crate::api::rules;

/// The hooks whose "waiting for approval" alert `muteAlert` silences (Flagger's gates).
const GATES: [HookKind; 3] = [HookKind::ConfirmRollout, HookKind::ConfirmTrafficIncrease, HookKind::ConfirmPromotion];

pub(super) fn webhooks(list: &[v1beta1::Webhook], p: &Path, f: &mut Findings) -> Vec<Webhook> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(list.len());
    for (i, w) in list.iter().enumerate() {
        let wp = p.index(i);
        unique_name(&w.name, "a webhook", &wp, &mut seen, f);
        let kind = match w.type_.as_deref() {
            None => Some(HookKind::Rollout),
            Some(t) => HookKind::parse(t).or_else(|| {
                f.errors.push(FieldError::not_supported(&wp.child("type"), t, HookKind::NAMES));
                None
            }),
        };
        let url = rules::http_url(&wp.child("url"), &w.url).map_err(|e| f.errors.push(e)).ok();
        let timeout = match &w.timeout {
            Some(raw) => rules::webhook_timeout(&wp.child("timeout"), raw).map_err(|e| f.errors.push(e)).ok(),
            None => Some(defaults::WEBHOOK_TIMEOUT),
        };
        let retries = match w.retries {
            Some(n) => rules::webhook_retries(&wp.child("retries"), n.into()).map_err(|e| f.errors.push(e)).ok(),
            None => Some(0),
        };
        let mute_alert = w.mute_alert.unwrap_or(false);
        if let Some(kind) = kind.filter(|k| mute_alert && !GATES.contains(k)) {
            let why = format!(
                "ignored: only the gates (confirm-rollout, confirm-traffic-increase, confirm-promotion) send a \
                 waiting alert, and this hook is {kind}"
            );
            f.warnings.push((wp.child("muteAlert"), why));
        }
        if let (Some(kind), Some(url), Some(timeout), Some(retries)) = (kind, url, timeout, retries) {
            let metadata = w.metadata.clone().unwrap_or_default();
            let disable_tls = w.disable_tls.unwrap_or(false);
            out.push(Webhook { name: w.name.clone(), kind, url, timeout, metadata, retries, mute_alert, disable_tls });
        }
    }
    out
}

pub(super) fn alerts(list: &[v1beta1::Alert], p: &Path, f: &mut Findings) -> Vec<Alert> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(list.len());
    for (i, a) in list.iter().enumerate() {
        let ap = p.index(i);
        unique_name(&a.name, "an alert", &ap, &mut seen, f);
        let severity = match a.severity.as_deref() {
            None => Some(Severity::Info),
            Some(s) => Severity::parse(s).or_else(|| {
                f.errors.push(FieldError::not_supported(&ap.child("severity"), s, Severity::NAMES));
                None
            }),
        };
        reference(&a.provider_ref, "AlertProvider", &ap.child("providerRef"), f);
        if let Some(severity) = severity {
            out.push(Alert {
                name: a.name.clone(),
                severity,
                provider: a.provider_ref.name.clone(),
                provider_namespace: a.provider_ref.namespace.clone(),
            });
        }
    }
    out
}
