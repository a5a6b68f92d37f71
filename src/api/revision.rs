//! A revision: a stable hash of a Deployment's pod template.
//!
//! Two templates that differ only in the `pod-template-hash` label, in key order or in
//! explicit `null`s are the same revision. The hash is SHA-256 over a canonical
//! encoding (keys sorted), cut to 10 hex characters like `pod-template-hash`.

use std::fmt;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The label kube-controller-manager adds to ReplicaSet templates; not part of a release.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

const LEN: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Revision(String);

impl Revision {
    /// The revision of a pod template (`spec.template` of a Deployment).
    pub fn of_template(template: &Value) -> Self {
        let mut hasher = Sha256::new();
        write_canonical(template, &mut hasher, Skip::TemplateRoot);
        let digest = hasher.finalize();
        let mut hex = String::with_capacity(LEN);
        for byte in &digest[..LEN / 2] {
            hex.push_str(&format!("{byte:02x}"));
        }
        Self(hex)
    }

    /// Accepts what [`Revision::of_template`] produces: 10 lowercase hex characters.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = s.len() == LEN && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for Revision {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Revision {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!("{s:?} is not a revision: 10 lowercase hexadecimal characters"))
        })
    }
}

impl schemars::JsonSchema for Revision {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Revision".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[0-9a-f]{10}$",
            "description": "A revision: the hash of a pod template, 10 lowercase hexadecimal characters"
        })
    }

    fn inline_schema() -> bool {
        true
    }
}

impl PartialEq<str> for Revision {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

/// Where in the template the walk is, to drop `metadata.labels.pod-template-hash`.
#[derive(Clone, Copy)]
enum Skip {
    TemplateRoot,
    Metadata,
    Labels,
    None,
}

/// A tagged, length-prefixed encoding: unambiguous, so distinct values never collide
/// by concatenation.
fn write_canonical(v: &Value, h: &mut Sha256, at: Skip) {
    match v {
        Value::Null => h.update(b"n"),
        Value::Bool(b) => h.update(if *b { b"t" } else { b"f" }),
        Value::Number(n) => {
            let s = n.to_string();
            h.update(b"d");
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        }
        Value::String(s) => {
            h.update(b"s");
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        }
        Value::Array(items) => {
            h.update(b"a");
            h.update((items.len() as u64).to_le_bytes());
            for item in items {
                write_canonical(item, h, Skip::None);
            }
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map
                .iter()
                .filter(|(k, v)| !(v.is_null() || matches!(at, Skip::Labels) && *k == POD_TEMPLATE_HASH))
                .map(|(k, _)| k)
                .collect();
            keys.sort_unstable();
            h.update(b"o");
            h.update((keys.len() as u64).to_le_bytes());
            for k in keys {
                h.update((k.len() as u64).to_le_bytes());
                h.update(k.as_bytes());
                let next = match (at, k.as_str()) {
                    (Skip::TemplateRoot, "metadata") => Skip::Metadata,
                    (Skip::Metadata, "labels") => Skip::Labels,
                    _ => Skip::None,
                };
                write_canonical(&map[k], h, next);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template(image: &str) -> Value {
        json!({
            "metadata": {"labels": {"app": "podinfo"}},
            "spec": {"containers": [{"name": "podinfod", "image": image, "ports": [{"containerPort": 9898}]}]}
        })
    }

    #[test]
    fn same_template_same_revision() {
        let a = Revision::of_template(&template("stefanprodan/podinfo:6.0.0"));
        let b = Revision::of_template(&template("stefanprodan/podinfo:6.0.0"));
        assert_eq!(a, b);
        assert_eq!(a.as_str().len(), 10);
        assert_eq!(Revision::parse(a.as_str()), Some(a));
    }

    #[test]
    fn image_change_is_a_new_revision() {
        let a = Revision::of_template(&template("stefanprodan/podinfo:6.0.0"));
        let b = Revision::of_template(&template("stefanprodan/podinfo:6.0.1"));
        assert_ne!(a, b);
    }

    #[test]
    fn ignores_pod_template_hash_key_order_and_nulls() {
        let base = Revision::of_template(&template("x"));
        let mut hashed = template("x");
        hashed["metadata"]["labels"]["pod-template-hash"] = json!("5f7c8d9b4");
        assert_eq!(Revision::of_template(&hashed), base);

        let reordered: Value = serde_json::from_str(
            r#"{"spec":{"containers":[{"ports":[{"containerPort":9898}],"image":"x","name":"podinfod"}]},
                "metadata":{"labels":{"app":"podinfo"},"annotations":null}}"#,
        )
        .unwrap();
        assert_eq!(Revision::of_template(&reordered), base);
    }

    #[test]
    fn pod_template_hash_elsewhere_counts() {
        // Only the label is ignored: the same key as an env var name is a real change.
        let base = Revision::of_template(&template("x"));
        let mut other = template("x");
        other["spec"]["pod-template-hash"] = json!("1");
        assert_ne!(Revision::of_template(&other), base);
    }

    #[test]
    fn array_order_matters() {
        let a = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let b = json!({"spec": {"containers": [{"name": "b"}, {"name": "a"}]}});
        assert_ne!(Revision::of_template(&a), Revision::of_template(&b));
    }

    #[test]
    fn serde_reads_only_revisions() {
        let r: Revision = serde_json::from_value(json!("0123456789")).unwrap();
        assert_eq!(serde_json::to_value(&r).unwrap(), json!("0123456789"));
        let e = serde_json::from_value::<Revision>(json!("podinfo-6")).unwrap_err().to_string();
        assert!(e.contains("\"podinfo-6\" is not a revision"), "{e}");
    }

    #[test]
    fn parse_rejects_non_revisions() {
        for s in ["", "abc", "ABCDEF0123", "abcdef012g", "abcdef01234"] {
            assert_eq!(Revision::parse(s), None, "{s}");
        }
    }
}
