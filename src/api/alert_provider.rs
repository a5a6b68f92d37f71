//! `AlertProvider` (apisix-canary.dev/v1beta1): where release events are posted.

// kube's derive repeats `printcolumn(...)` keys by design.
#![allow(clippy::duplicated_attributes)]

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::metric_template::LocalRef;

/// Incoming-webhook services we post to.
pub const TYPES: &[&str] = &["slack", "msteams", "discord", "webhook"];

/// The service an AlertProvider posts to: its `type`, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Slack,
    MsTeams,
    /// Discord's Slack-compatible endpoint (`<address>/slack`).
    Discord,
    /// Any endpoint taking our own JSON.
    Webhook,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Slack, Kind::MsTeams, Kind::Discord, Kind::Webhook];

    /// The name as written in `spec.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Slack => "slack",
            Kind::MsTeams => "msteams",
            Kind::Discord => "discord",
            Kind::Webhook => "webhook",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a Canary's `alerts` post the release's events, and as whom.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "apisix-canary.dev",
    version = "v1beta1",
    kind = "AlertProvider",
    namespaced,
    doc = "An incoming webhook (Slack, MS Teams, Discord, or any JSON endpoint) that receives release alerts",
    derive = "PartialEq",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type")
)]
#[serde(rename_all = "camelCase")]
pub struct AlertProviderSpec {
    /// `slack`, `msteams`, `discord`, or `webhook` (a generic JSON POST).
    #[serde(rename = "type")]
    pub type_: String,
    /// The incoming-webhook URL, an absolute http or https URL; or set `secretRef` to a
    /// Secret with key `address`. One of the two is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// A Secret in the AlertProvider's namespace with key `address` (which wins over
    /// `address`), and optionally `proxy` (which wins over `proxy`) and `token` (sent as
    /// a bearer token by type `webhook`). Read at every alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalRef>,
    /// Sent as the message's `channel` by types `slack` and `discord` (Slack posts there
    /// instead of in the webhook's own channel); ignored by `msteams` and `webhook`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The name messages are posted as by types `slack` and `discord` (default
    /// `apisix-canary`); ignored by `msteams` and `webhook`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// An HTTP(S) proxy to post through (an absolute URL); or the Secret's key `proxy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_the_types() {
        let names: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names, TYPES);
        for kind in Kind::ALL {
            assert_eq!(Kind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(Kind::parse("Slack"), None);
        assert_eq!(Kind::parse("pagerduty"), None);
    }
}
