//! The JSON each service documents for an incoming webhook, and the URL to post it to:
//! Slack's attachment, MS Teams' connector MessageCard (what Flagger posts), Discord's
//! Slack-compatible endpoint, and our own shape for any other endpoint.

use k8s_openapi::jiff::Timestamp;
use serde_json::{Map, Value, json};

use super::{Destination, Notice};
use crate::api::alert_provider::Kind;
use crate::release::plan::Severity;

/// Who speaks in Slack and Discord when the AlertProvider names nobody.
pub const USERNAME: &str = "apisix-canary";
/// The MessageCard's summary (what Teams shows in notifications).
pub const SUMMARY: &str = "apisix-canary canary analysis";

/// The URL and the body of `notice` for `kind`, sent at `now`.
pub fn request(kind: Kind, dest: &Destination, notice: &Notice, now: Timestamp) -> (http::Uri, Value) {
    let chat = || slack(notice, dest.channel.as_deref(), dest.username.as_deref());
    match kind {
        Kind::Slack => (dest.address.clone(), chat()),
        Kind::Discord => (discord_url(&dest.address), chat()),
        Kind::MsTeams => (dest.address.clone(), msteams(notice)),
        Kind::Webhook => (dest.address.clone(), webhook(notice, now)),
    }
}

/// Slack's names for the attachment bar's colour.
pub fn slack_color(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "good",
        Severity::Warn => "warning",
        Severity::Error => "danger",
    }
}

/// The same colours in hex, as a MessageCard's `themeColor` takes them.
pub fn theme_color(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "2EB886",
        Severity::Warn => "DAA038",
        Severity::Error => "A30200",
    }
}

/// A Slack incoming-webhook message: one attachment, coloured by severity, its fields
/// one per line.
pub fn slack(notice: &Notice, channel: Option<&str>, username: Option<&str>) -> Value {
    let fields: Vec<Value> =
        notice.fields.iter().map(|(title, value)| json!({"title": title, "value": value, "short": false})).collect();
    let mut body = Map::new();
    if let Some(channel) = channel {
        body.insert("channel".into(), json!(channel));
    }
    body.insert("username".into(), json!(username.unwrap_or(USERNAME)));
    body.insert(
        "attachments".into(),
        json!([{
            "color": slack_color(notice.severity),
            "author_name": notice.subject(),
            "text": notice.message,
            "mrkdwn_in": ["text"],
            "fields": fields,
        }]),
    );
    Value::Object(body)
}

/// An MS Teams connector MessageCard, as Flagger posts it.
pub fn msteams(notice: &Notice) -> Value {
    let facts: Vec<Value> = notice.fields.iter().map(|(name, value)| json!({"name": name, "value": value})).collect();
    json!({
        "@type": "MessageCard",
        "@context": "http://schema.org/extensions",
        "themeColor": theme_color(notice.severity),
        "summary": SUMMARY,
        "sections": [{
            "activityTitle": notice.message,
            "activitySubtitle": notice.subject(),
            "facts": facts,
        }],
    })
}

/// Our JSON for any endpoint: the notice itself, with the time it was sent (RFC 3339).
/// A field title given twice keeps its last value.
pub fn webhook(notice: &Notice, now: Timestamp) -> Value {
    let fields: Map<String, Value> = notice.fields.iter().map(|(t, v)| (t.clone(), json!(v))).collect();
    json!({
        "name": notice.canary,
        "namespace": notice.namespace,
        "target": notice.target,
        "phase": notice.phase,
        "severity": notice.severity.as_str(),
        "message": notice.message,
        "fields": fields,
        "timestamp": now.to_string(),
    })
}

/// Discord's Slack-compatible endpoint: the webhook URL with `/slack` added to its path
/// (once; a query string stays after it).
pub fn discord_url(address: &http::Uri) -> http::Uri {
    let path = address.path().trim_end_matches('/');
    if path.ends_with("/slack") {
        return address.clone();
    }
    let path_and_query = match address.query() {
        Some(query) => format!("{path}/slack?{query}"),
        None => format!("{path}/slack"),
    };
    let mut parts = address.clone().into_parts();
    // Cannot fail: a valid path with a plain segment added.
    parts.path_and_query = path_and_query.parse().ok();
    http::Uri::from_parts(parts).unwrap_or_else(|_| address.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::canary::Phase;

    fn notice(severity: Severity) -> Notice {
        Notice {
            canary: "podinfo".into(),
            namespace: "test".into(),
            target: "podinfo".into(),
            phase: Phase::Progressing,
            severity,
            message: "New revision detected, progressing canary analysis.".into(),
            fields: vec![
                ("Target".into(), "Deployment/podinfo.test".into()),
                ("Failed checks threshold".into(), "5".into()),
                ("Progress deadline".into(), "60s".into()),
                ("Traffic routing".into(), "Weight step: 10 max: 50".into()),
            ],
        }
    }

    fn dest(address: &str) -> Destination {
        Destination {
            provider: "chat.test".into(),
            address: address.parse().unwrap(),
            proxy: None,
            token: None,
            channel: None,
            username: None,
        }
    }

    fn slack_fields() -> Value {
        json!([
            {"title": "Target", "value": "Deployment/podinfo.test", "short": false},
            {"title": "Failed checks threshold", "value": "5", "short": false},
            {"title": "Progress deadline", "value": "60s", "short": false},
            {"title": "Traffic routing", "value": "Weight step: 10 max: 50", "short": false},
        ])
    }

    #[test]
    fn slack_attachment() {
        let dest = Destination { channel: Some("#releases".into()), username: Some("flagger".into()), ..dest(HOOK) };
        let (url, body) = request(Kind::Slack, &dest, &notice(Severity::Info), Timestamp::UNIX_EPOCH);
        assert_eq!(url, HOOK);
        assert_eq!(
            body,
            json!({
                "channel": "#releases",
                "username": "flagger",
                "attachments": [{
                    "color": "good",
                    "author_name": "podinfo.test",
                    "text": "New revision detected, progressing canary analysis.",
                    "mrkdwn_in": ["text"],
                    "fields": slack_fields(),
                }],
            })
        );
    }

    const HOOK: &str = "https://hooks.slack.com/services/T/B/X";

    #[test]
    fn slack_defaults_and_colours() {
        let mut error = notice(Severity::Error);
        error.message = "Failed checks threshold reached 5".into();
        error.fields.clear();
        assert_eq!(
            slack(&error, None, None),
            json!({
                "username": "apisix-canary",
                "attachments": [{
                    "color": "danger",
                    "author_name": "podinfo.test",
                    "text": "Failed checks threshold reached 5",
                    "mrkdwn_in": ["text"],
                    "fields": [],
                }],
            })
        );
        assert_eq!(slack(&notice(Severity::Warn), None, None)["attachments"][0]["color"], "warning");
    }

    #[test]
    fn msteams_message_card() {
        let (url, body) = request(
            Kind::MsTeams,
            &dest("https://example.webhook.office.com/webhookb2/x"),
            &notice(Severity::Warn),
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(url, "https://example.webhook.office.com/webhookb2/x");
        assert_eq!(
            body,
            json!({
                "@type": "MessageCard",
                "@context": "http://schema.org/extensions",
                "themeColor": "DAA038",
                "summary": "apisix-canary canary analysis",
                "sections": [{
                    "activityTitle": "New revision detected, progressing canary analysis.",
                    "activitySubtitle": "podinfo.test",
                    "facts": [
                        {"name": "Target", "value": "Deployment/podinfo.test"},
                        {"name": "Failed checks threshold", "value": "5"},
                        {"name": "Progress deadline", "value": "60s"},
                        {"name": "Traffic routing", "value": "Weight step: 10 max: 50"},
                    ],
                }],
            })
        );
    }

    #[test]
    fn discord_gets_the_slack_payload_on_its_slack_endpoint() {
        let (url, body) = request(
            Kind::Discord,
            &dest("https://discord.com/api/webhooks/123/abc"),
            &notice(Severity::Info),
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(url, "https://discord.com/api/webhooks/123/abc/slack");
        assert_eq!(
            body,
            json!({
                "username": "apisix-canary",
                "attachments": [{
                    "color": "good",
                    "author_name": "podinfo.test",
                    "text": "New revision detected, progressing canary analysis.",
                    "mrkdwn_in": ["text"],
                    "fields": slack_fields(),
                }],
            })
        );
        let cases = [
            ("https://discord.com/api/webhooks/123/abc/", "https://discord.com/api/webhooks/123/abc/slack"),
            ("https://discord.com/api/webhooks/123/abc/slack", "https://discord.com/api/webhooks/123/abc/slack"),
            (
                "https://discord.com/api/webhooks/123/abc?wait=true",
                "https://discord.com/api/webhooks/123/abc/slack?wait=true",
            ),
            ("http://discord-relay.ops:8080", "http://discord-relay.ops:8080/slack"),
        ];
        for (address, want) in cases {
            assert_eq!(discord_url(&address.parse().unwrap()), want, "{address}");
        }
    }

    #[test]
    fn webhook_json() {
        let now: Timestamp = "2025-03-01T12:30:00Z".parse().unwrap();
        let mut n = notice(Severity::Info);
        n.fields.push(("Progress deadline".into(), "120s".into()));
        let (url, body) = request(Kind::Webhook, &dest("http://alerts.ops:8080/hook"), &n, now);
        assert_eq!(url, "http://alerts.ops:8080/hook");
        assert_eq!(
            body,
            json!({
                "name": "podinfo",
                "namespace": "test",
                "target": "podinfo",
                "phase": "Progressing",
                "severity": "info",
                "message": "New revision detected, progressing canary analysis.",
                "fields": {
                    "Target": "Deployment/podinfo.test",
                    "Failed checks threshold": "5",
                    "Progress deadline": "120s",
                    "Traffic routing": "Weight step: 10 max: 50",
                },
                "timestamp": "2025-03-01T12:30:00Z",
            })
        );
    }
}
