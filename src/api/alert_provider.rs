//! `AlertProvider` (apisix-canary.dev/v1beta1): where release events are posted.

// kube's derive repeats `printcolumn(...)` keys by design.
#![allow(clippy::duplicated_attributes)]

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::metric_template::LocalRef;

/// Incoming-webhook services we post to.
pub const TYPES: &[&str] = &["slack", "msteams", "discord", "webhook"];

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
    /// The incoming-webhook URL; or set `secretRef` to a Secret with key `address`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// An HTTP(S) proxy to post through; or the Secret's key `proxy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
}
