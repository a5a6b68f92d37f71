//! Where an AlertProvider posts: its spec and its Secret (Flagger's keys `address`,
//! `proxy`, and our `token`) turned into one checked [`Destination`].

use std::collections::BTreeMap;
use std::fmt;

use crate::api::alert_provider::{AlertProviderSpec, Kind, TYPES};
use crate::api::field::Path;
use crate::api::rules;

/// Secret keys, Flagger's names.
pub const ADDRESS_KEY: &str = "address";
pub const PROXY_KEY: &str = "proxy";
/// A bearer token for type `webhook`.
pub const TOKEN_KEY: &str = "token";

/// A resolved AlertProvider: where to post, through what, and as whom.
#[derive(Clone, PartialEq, Eq)]
pub struct Destination {
    /// `<name>.<namespace>` of the AlertProvider, which messages name.
    pub provider: String,
    /// The incoming-webhook URL (for Discord, as written: `/slack` is added when sent).
    pub address: http::Uri,
    /// An absolute http(s) proxy URL.
    pub proxy: Option<String>,
    /// Sent as `Authorization: Bearer` (type `webhook` only: the chat services' URLs
    /// carry their own credentials, and a token is not theirs to see).
    pub token: Option<String>,
    pub channel: Option<String>,
    pub username: Option<String>,
}

/// The address and token are credentials: shown as the host and `<redacted>` only.
impl fmt::Debug for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Destination")
            .field("provider", &self.provider)
            .field("host", &self.address.host().unwrap_or_default())
            .field("proxy", &self.proxy)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("channel", &self.channel)
            .field("username", &self.username)
            .finish()
    }
}

/// Why an AlertProvider cannot be posted to. Values read from the Secret are never
/// quoted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("AlertProvider {provider}: unsupported type {type_:?}: supported types: {}", TYPES.join(", "))]
    Type { provider: String, type_: String },
    #[error("AlertProvider {provider}: set address, or secretRef to a Secret with the key address")]
    NoAddress { provider: String },
    #[error("AlertProvider {provider}: Secret {secret} not found")]
    NoSecret { provider: String, secret: String },
    #[error("AlertProvider {provider}: Secret {secret} has no key \"address\"")]
    NoAddressKey { provider: String, secret: String },
    /// `field` says where the bad URL was: `proxy "squid:3128"`, `Secret slack-url key "address"`.
    #[error("AlertProvider {provider}: {field} is not an absolute http or https URL")]
    Url { provider: String, field: String },
}

/// The destination of the AlertProvider `provider` (`<name>.<namespace>`) with `spec`,
/// and `secret`, the decoded data of the Secret its `secretRef` names (`None` when that
/// Secret does not exist; ignored without a `secretRef`).
///
/// When both are set, the Secret's `address` wins over `spec.address`, and its `proxy`
/// over `spec.proxy`: the Secret is where rotated credentials land. A Secret without
/// `address` leaves `spec.address` in force; with neither it is an error. Secret values
/// are trimmed (files read by `kubectl create secret --from-file` end with a newline),
/// and an empty one counts as absent.
pub fn resolve(
    provider: &str,
    spec: &AlertProviderSpec,
    secret: Option<&BTreeMap<String, String>>,
) -> Result<(Kind, Destination), ProviderError> {
    let owned = || provider.to_owned();
    let kind =
        Kind::parse(&spec.type_).ok_or_else(|| ProviderError::Type { provider: owned(), type_: spec.type_.clone() })?;
    let empty = BTreeMap::new();
    let (secret_name, data) = match (&spec.secret_ref, secret) {
        (None, _) => (None, &empty),
        (Some(r), Some(data)) => (Some(r.name.as_str()), data),
        (Some(r), None) => return Err(ProviderError::NoSecret { provider: owned(), secret: r.name.clone() }),
    };
    let key = |k: &str| data.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let from_secret = |k: &str| format!("Secret {} key {k:?}", secret_name.unwrap_or_default());
    let url = |raw: &str, field: String| {
        rules::http_url(&Path::new(""), raw).map_err(|_| ProviderError::Url { provider: owned(), field })
    };

    let address = match (key(ADDRESS_KEY), &spec.address) {
        (Some(raw), _) => url(raw, from_secret(ADDRESS_KEY))?,
        (None, Some(raw)) => url(raw, format!("address {raw:?}"))?,
        (None, None) => {
            return Err(match secret_name {
                Some(secret) => ProviderError::NoAddressKey { provider: owned(), secret: secret.to_owned() },
                None => ProviderError::NoAddress { provider: owned() },
            });
        }
    };
    let proxy = match (key(PROXY_KEY), spec.proxy.as_deref()) {
        (Some(raw), _) => Some(url(raw, from_secret(PROXY_KEY)).map(|_| raw.to_owned())?),
        (None, Some(raw)) => Some(url(raw, format!("proxy {raw:?}")).map(|_| raw.to_owned())?),
        (None, None) => None,
    };
    let token = key(TOKEN_KEY).filter(|_| kind == Kind::Webhook).map(str::to_owned);
    let set = |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
    let (channel, username) = (set(&spec.channel), set(&spec.username));
    Ok((kind, Destination { provider: owned(), address, proxy, token, channel, username }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::metric_template::LocalRef;

    const HOOK: &str = "https://hooks.slack.com/services/T/B/X";
    const ROTATED: &str = "https://hooks.slack.com/services/T/B/Y";

    fn spec(type_: &str, address: Option<&str>, secret: Option<&str>) -> AlertProviderSpec {
        AlertProviderSpec {
            type_: type_.into(),
            address: address.map(Into::into),
            secret_ref: secret.map(|name| LocalRef { name: name.into() }),
            ..Default::default()
        }
    }

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn dest(address: &str) -> Destination {
        Destination {
            provider: "slack.test".into(),
            address: address.parse().unwrap(),
            proxy: None,
            token: None,
            channel: None,
            username: None,
        }
    }

    #[test]
    fn the_address_comes_from_the_spec_or_the_secret_which_wins() {
        let cases = [
            (spec("slack", Some(HOOK), None), None, dest(HOOK)),
            // A Secret passed without a secretRef is not read.
            (spec("slack", Some(HOOK), None), Some(data(&[("address", ROTATED)])), dest(HOOK)),
            (
                spec("slack", None, Some("slack-url")),
                Some(data(&[("address", &format!("{ROTATED}\n"))])),
                dest(ROTATED),
            ),
            (spec("slack", Some(HOOK), Some("slack-url")), Some(data(&[("address", ROTATED)])), dest(ROTATED)),
            // Without the key, the spec's address stays in force.
            (spec("slack", Some(HOOK), Some("slack-url")), Some(data(&[("proxy", "")])), dest(HOOK)),
        ];
        for (spec, secret, want) in cases {
            let (kind, got) = resolve("slack.test", &spec, secret.as_ref()).unwrap();
            assert_eq!(kind, Kind::Slack);
            assert_eq!(got, want, "{spec:?} {secret:?}");
        }
    }

    #[test]
    fn errors_name_the_provider_and_the_secret() {
        let cases = [
            (
                spec("slack", None, Some("slack-url")),
                Some(data(&[("token", "t")])),
                "AlertProvider slack.test: Secret slack-url has no key \"address\"",
            ),
            (spec("slack", None, Some("slack-url")), None, "AlertProvider slack.test: Secret slack-url not found"),
            (
                spec("slack", None, None),
                None,
                "AlertProvider slack.test: set address, or secretRef to a Secret with the key address",
            ),
            (
                spec("pagerduty", Some(HOOK), None),
                None,
                "AlertProvider slack.test: unsupported type \"pagerduty\": supported types: slack, msteams, discord, webhook",
            ),
            (
                spec("slack", Some("hooks.slack.com/x"), None),
                None,
                "AlertProvider slack.test: address \"hooks.slack.com/x\" is not an absolute http or https URL",
            ),
            (
                spec("slack", None, Some("slack-url")),
                Some(data(&[("address", "xoxb-secret-value")])),
                "AlertProvider slack.test: Secret slack-url key \"address\" is not an absolute http or https URL",
            ),
            (
                spec("slack", Some(HOOK), Some("slack-url")),
                Some(data(&[("proxy", "squid:3128")])),
                "AlertProvider slack.test: Secret slack-url key \"proxy\" is not an absolute http or https URL",
            ),
            (
                AlertProviderSpec { proxy: Some("socks5://squid:1080".into()), ..spec("slack", Some(HOOK), None) },
                None,
                "AlertProvider slack.test: proxy \"socks5://squid:1080\" is not an absolute http or https URL",
            ),
        ];
        for (spec, secret, want) in cases {
            assert_eq!(resolve("slack.test", &spec, secret.as_ref()).unwrap_err().to_string(), want);
        }
    }

    #[test]
    fn proxy_token_channel_and_username() {
        let with_proxy = AlertProviderSpec {
            proxy: Some("http://squid.ops:3128".into()),
            channel: Some("#releases".into()),
            username: Some(" ".into()),
            ..spec("webhook", Some(HOOK), Some("hook-auth"))
        };
        let secret = data(&[("token", "s3cret\n")]);
        let (kind, got) = resolve("hook.ops", &with_proxy, Some(&secret)).unwrap();
        assert_eq!(kind, Kind::Webhook);
        assert_eq!(got.proxy.as_deref(), Some("http://squid.ops:3128"));
        assert_eq!(got.token.as_deref(), Some("s3cret"));
        assert_eq!(got.channel.as_deref(), Some("#releases"));
        assert_eq!(got.username, None, "a blank username is the default");
        let debug = format!("{got:?}");
        assert!(!debug.contains("s3cret") && !debug.contains("/services/"), "{debug}");

        // The Secret's proxy wins; a chat service never gets the token.
        let secret = data(&[("token", "s3cret"), ("proxy", "https://egress.ops:8443")]);
        let slack = AlertProviderSpec { type_: "slack".into(), ..with_proxy };
        let (_, got) = resolve("slack.ops", &slack, Some(&secret)).unwrap();
        assert_eq!(got.proxy.as_deref(), Some("https://egress.ops:8443"));
        assert_eq!(got.token, None);
    }
}
