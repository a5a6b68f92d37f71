//! A revision: a stable hash of a Deployment's pod template.
//!
//! Two templates that differ only in the `pod-template-hash` label, in key order or in
//! explicit `null`s are the same revision. The hash is SHA-256 over a canonical
//! encoding (keys sorted), cut to 10 hex characters like `pod-template-hash`.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
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
        let mut out = Vec::with_capacity(1024);
        write_canonical(template, &mut out, Skip::TemplateRoot);
        Self::of_encoding(&out)
    }

    /// [`Revision::of_template`] of a template read as a [`Template`]: the same value
    /// for the same JSON. Reading the admission fast parse's template this way rather
    /// than as a `Value` saves `serve` 7-10 % of its instructions per review (BENCHMARKS.md,
    /// "The second admission parse").
    pub fn of_parsed(template: &Template<'_>) -> Self {
        let mut out = Vec::with_capacity(1024);
        template.write_canonical(&mut out, Skip::TemplateRoot);
        Self::of_encoding(&out)
    }

    /// The canonical encoding is built whole and hashed at once: many small `update`s
    /// cost more than the hash itself.
    fn of_encoding(encoding: &[u8]) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let digest = Sha256::digest(encoding);
        let mut hex = String::with_capacity(LEN);
        for byte in &digest[..LEN / 2] {
            hex.push(char::from(HEX[usize::from(byte >> 4)]));
            hex.push(char::from(HEX[usize::from(byte & 0xf)]));
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
/// by concatenation. Object keys are sorted; `null` members and the
/// `metadata.labels.pod-template-hash` label are left out.
fn write_canonical(v: &Value, out: &mut Vec<u8>, at: Skip) {
    match v {
        Value::Null => out.push(b'n'),
        Value::Bool(b) => out.push(if *b { b't' } else { b'f' }),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_str(b's', s, out),
        Value::Array(items) => {
            write_len(b'a', items.len(), out);
            for item in items {
                write_canonical(item, out, Skip::None);
            }
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.iter().filter(|(k, v)| kept(k, v.is_null(), at)).map(|(k, _)| k).collect();
            keys.sort_unstable();
            write_len(b'o', keys.len(), out);
            for k in keys {
                out.extend_from_slice(&(k.len() as u64).to_le_bytes());
                out.extend_from_slice(k.as_bytes());
                write_canonical(&map[k], out, at.child(k));
            }
        }
    }
}

fn kept(key: &str, null: bool, at: Skip) -> bool {
    !(null || matches!(at, Skip::Labels) && key == POD_TEMPLATE_HASH)
}

impl Skip {
    fn child(self, key: &str) -> Skip {
        match (self, key) {
            (Skip::TemplateRoot, "metadata") => Skip::Metadata,
            (Skip::Metadata, "labels") => Skip::Labels,
            _ => Skip::None,
        }
    }
}

fn write_len(tag: u8, len: usize, out: &mut Vec<u8>) {
    out.push(tag);
    out.extend_from_slice(&(len as u64).to_le_bytes());
}

fn write_str(tag: u8, s: &str, out: &mut Vec<u8>) {
    write_len(tag, s.len(), out);
    out.extend_from_slice(s.as_bytes());
}

fn write_number(n: &serde_json::Number, out: &mut Vec<u8>) {
    use std::io::Write;
    // The length comes first: write the digits, then fill it in.
    write_len(b'd', 0, out);
    let start = out.len();
    let _ = write!(out, "{n}");
    let len = (out.len() - start) as u64;
    out[start - 8..start].copy_from_slice(&len.to_le_bytes());
}

/// A pod template read straight from JSON for its revision, without building a
/// `serde_json::Value`: strings are borrowed from the body where they have no escapes,
/// objects are kept as their members in order. Reading JSON into it fails exactly where
/// reading a `Value` fails (the same deserializer, the same depth limit), and
/// [`Revision::of_parsed`] hashes it as [`Revision::of_template`] hashes that `Value`.
#[derive(Debug, Clone, PartialEq)]
pub enum Template<'a> {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(Cow<'a, str>),
    Array(Vec<Template<'a>>),
    /// Members as they came, duplicates included (the last one counts, as in a `Value`).
    Object(Vec<(Cow<'a, str>, Template<'a>)>),
}

impl Template<'_> {
    fn write_canonical(&self, out: &mut Vec<u8>, at: Skip) {
        match self {
            Template::Null => out.push(b'n'),
            Template::Bool(b) => out.push(if *b { b't' } else { b'f' }),
            Template::Number(n) => write_number(n, out),
            Template::String(s) => write_str(b's', s, out),
            Template::Array(items) => {
                write_len(b'a', items.len(), out);
                for item in items {
                    item.write_canonical(out, Skip::None);
                }
            }
            Template::Object(members) => {
                // Sorted by key, stably: of equal keys the last one is the member.
                let mut sorted: Vec<&(Cow<'_, str>, Template<'_>)> = members.iter().collect();
                sorted.sort_by(|a, b| a.0.cmp(&b.0));
                let mut kept_members: Vec<(&str, &Template<'_>)> = Vec::with_capacity(sorted.len());
                for (i, (k, v)) in sorted.iter().map(|m| (&m.0, &m.1)).enumerate() {
                    let last_of_key = sorted.get(i + 1).is_none_or(|next| next.0 != *k);
                    if last_of_key && kept(k, matches!(v, Template::Null), at) {
                        kept_members.push((k, v));
                    }
                }
                write_len(b'o', kept_members.len(), out);
                for (k, v) in kept_members {
                    out.extend_from_slice(&(k.len() as u64).to_le_bytes());
                    out.extend_from_slice(k.as_bytes());
                    v.write_canonical(out, at.child(k));
                }
            }
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Template<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TemplateVisitor(std::marker::PhantomData))
    }
}

struct TemplateVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for TemplateVisitor<'a> {
    type Value = Template<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Template::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Template::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Template::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        // As `Value` does: a non-finite float is null.
        Ok(serde_json::Number::from_f64(v).map_or(Template::Null, Template::Number))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Template::String(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Template::String(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Template::String(Cow::Owned(v)))
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Template::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        Template::deserialize(d)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Template::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Template::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::new();
        while let Some(key) = map.next_key::<Key<'a>>()? {
            members.push((key.0, map.next_value()?));
        }
        Ok(Template::Object(members))
    }
}

/// An object key, borrowed when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Key<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
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

    /// `Revision::of_parsed` must give what `of_template` gives for the same JSON: key
    /// order, duplicate keys (the last counts), nulls, the pod-template-hash label,
    /// escapes, numbers of every kind.
    #[test]
    fn parsed_templates_have_the_revision_of_their_value() {
        let texts = [
            "null",
            "{}",
            "[]",
            r#"{"metadata":{"labels":{"app":"x","pod-template-hash":"1"}},"spec":{"containers":[{"name":"a"}]}}"#,
            r#"{"spec":{"b":1,"a":2,"a":3},"metadata":{"labels":null,"annotations":{"k":null}}}"#,
            r#"{"metadata":{"labels":{"pod-template-hash":null,"z":"\u00e9\"\\\n"}},"x":[null,true,false]}"#,
            r#"{"n":[0,-1,18446744073709551615,-9223372036854775808,1.5,-2.25e-7,1e300,3.0,0.1]}"#,
            r#"{"a":{"a":{"a":[[],{},[{"b\u0000":"c"}]]}},"a":{"x":1},"pod-template-hash":"kept at the root"}"#,
            r#"{"metadata":{"name":"m","metadata":{"labels":{"pod-template-hash":"kept deeper"}}}}"#,
        ];
        for text in texts {
            let value: Value = serde_json::from_str(text).unwrap();
            let parsed: Template<'_> = serde_json::from_str(text).unwrap();
            assert_eq!(Revision::of_parsed(&parsed), Revision::of_template(&value), "{text}");
        }
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
