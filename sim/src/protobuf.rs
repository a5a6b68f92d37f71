//! Request bodies in Kubernetes' protobuf encoding, which client-go (and so kubectl)
//! sends for the built-in kinds: `kubectl create namespace|configmap|secret|deployment`,
//! `kubectl run`, `kubectl auth can-i`, `kubectl create token`.
//!
//! A body is the magic `k8s\0`, then a `runtime.Unknown` envelope naming the apiVersion
//! and kind, whose `raw` bytes are the object as that kind's message. The messages are
//! read by the Kubernetes schemas themselves (`proto/`, compiled by `build.rs`), so every
//! kind of a stable API version decodes the same way, into the JSON kube-apiserver's own
//! JSON encoding would give. The answer goes back as JSON, which client-go accepts too.

use std::collections::HashMap;
use std::sync::OnceLock;

use k8s_openapi::jiff::Timestamp;
use prost_reflect::{DescriptorPool, DynamicMessage, MapKey, MessageDescriptor, ReflectMessage as _, Value as Proto};
use serde_json::{Map, Value};

/// The media type of the protobuf encoding.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The four bytes before every protobuf body.
const MAGIC: &[u8] = b"k8s\0";

const UNKNOWN: &str = "apimachinery.pkg.runtime.Unknown";
const TIME: &str = "apimachinery.pkg.apis.meta.v1.Time";
const MICRO_TIME: &str = "apimachinery.pkg.apis.meta.v1.MicroTime";
const DURATION: &str = "apimachinery.pkg.apis.meta.v1.Duration";
const FIELDS_V1: &str = "apimachinery.pkg.apis.meta.v1.FieldsV1";
const RAW_EXTENSION: &str = "apimachinery.pkg.runtime.RawExtension";
const QUANTITY: &str = "apimachinery.pkg.api.resource.Quantity";
const INT_OR_STRING: &str = "apimachinery.pkg.util.intstr.IntOrString";

/// The schemas, and each kind's message by (group's first label or `core`, version, kind).
struct Schemas {
    pool: DescriptorPool,
    kinds: HashMap<(String, String, String), MessageDescriptor>,
}

fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let pool = DescriptorPool::decode(&include_bytes!(concat!(env!("OUT_DIR"), "/kubernetes.fds"))[..])
            .expect("build.rs wrote a valid descriptor set");
        let mut kinds = HashMap::new();
        for file in pool.files() {
            // `k8s.io/api/apps/v1`, `k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1`.
            let go_package = file.file_descriptor_proto().options.as_ref().and_then(|o| o.go_package.clone());
            let mut path = go_package.as_deref().unwrap_or_default().rsplit('/');
            let (Some(version), Some(group)) = (path.next(), path.next()) else { continue };
            for message in file.messages() {
                kinds.insert((group.to_owned(), version.to_owned(), message.name().to_owned()), message);
            }
        }
        Schemas { pool, kinds }
    })
}

/// The group's directory in the Kubernetes source: `apps`, `rbac` for
/// `rbac.authorization.k8s.io`, `core` for the legacy group.
fn group_dir(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((group, version)) => (group.split('.').next().unwrap_or(group), version),
        None => ("core", api_version),
    }
}

/// Why a body could not be read: kube-apiserver answers these 400, or 415 for a kind it
/// has no protobuf schema for (custom resources).
#[derive(Debug, PartialEq, Eq)]
pub enum Error {
    Malformed(String),
    NoSchema { api_version: String, kind: String },
}

/// The object in a protobuf request body, as JSON.
pub fn decode(body: &[u8]) -> Result<Value, Error> {
    let raw = body.strip_prefix(MAGIC).ok_or_else(|| {
        Error::Malformed("the body does not start with the protobuf magic number (k8s\\0)".to_owned())
    })?;
    let s = schemas();
    let envelope = s.pool.get_message_by_name(UNKNOWN).expect("runtime.Unknown is in the schemas");
    let envelope = DynamicMessage::decode(envelope, raw).map_err(|e| Error::Malformed(e.to_string()))?;
    let text = |message: &DynamicMessage, name: &str| match message.get_field_by_name(name).as_deref() {
        Some(Proto::String(s)) => s.clone(),
        _ => String::new(),
    };
    let type_meta = match envelope.get_field_by_name("typeMeta").as_deref() {
        Some(Proto::Message(m)) => m.clone(),
        _ => return Err(Error::Malformed("the envelope names no apiVersion and kind".to_owned())),
    };
    let (api_version, kind) = (text(&type_meta, "apiVersion"), text(&type_meta, "kind"));
    if !text(&envelope, "contentEncoding").is_empty() {
        return Err(Error::Malformed("a content encoding is not supported".to_owned()));
    }
    let (group, version) = group_dir(&api_version);
    let descriptor = s
        .kinds
        .get(&(group.to_owned(), version.to_owned(), kind.clone()))
        .ok_or_else(|| Error::NoSchema { api_version: api_version.clone(), kind: kind.clone() })?;
    let object = match envelope.get_field_by_name("raw").as_deref() {
        Some(Proto::Bytes(b)) => DynamicMessage::decode(descriptor.clone(), b.clone()),
        _ => DynamicMessage::decode(descriptor.clone(), &[][..]),
    }
    .map_err(|e| Error::Malformed(format!("{api_version} {kind}: {e}")))?;
    let mut json = match message(&object) {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    // Objects carry their type in the envelope only; JSON has it first.
    let mut typed = Map::new();
    typed.insert("apiVersion".to_owned(), Value::from(api_version));
    typed.insert("kind".to_owned(), Value::from(kind));
    typed.append(&mut json);
    Ok(Value::Object(typed))
}

/// A message as Kubernetes' JSON encoding writes it: its own wire types for times,
/// quantities, int-or-strings and embedded JSON, and otherwise an object of the fields
/// that are set. Go's protobuf encoder writes every field that is not a pointer, empty
/// or not, where its JSON encoder leaves empty ones out (`omitempty`): empty strings,
/// zero times and (see [`MEANINGFUL_ZEROS`]) zeros are left out here too.
fn message(m: &DynamicMessage) -> Value {
    let field = |name: &str| m.get_field_by_name(name).map(|v| v.into_owned());
    match m.descriptor().full_name() {
        TIME | MICRO_TIME => {
            let seconds = field("seconds").and_then(|v| v.as_i64()).unwrap_or(0);
            let nanos = field("nanos").and_then(|v| v.as_i32()).unwrap_or(0);
            match Timestamp::new(seconds, nanos) {
                Ok(_) if seconds == 0 && nanos == 0 => Value::Null,
                Ok(t) if m.descriptor().full_name() == TIME => {
                    Value::from(t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
                }
                Ok(t) => Value::from(t.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()),
                Err(_) => Value::Null,
            }
        }
        QUANTITY => Value::from(field("string").and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()),
        INT_OR_STRING => match field("type").and_then(|v| v.as_i64()) {
            Some(1) => Value::from(field("strVal").and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()),
            _ => Value::from(field("intVal").and_then(|v| v.as_i32()).unwrap_or(0)),
        },
        DURATION => Value::from(go_duration(field("duration").and_then(|v| v.as_i64()).unwrap_or(0))),
        RAW_EXTENSION | FIELDS_V1 => {
            let raw = field("raw").or_else(|| field("Raw"));
            match raw.as_ref().and_then(Proto::as_bytes) {
                Some(b) if !b.is_empty() => serde_json::from_slice(b).unwrap_or(Value::Null),
                _ => Value::Null,
            }
        }
        _ => {
            let mut object = Map::new();
            for (descriptor, value) in m.fields() {
                if let Some(json) = field_value(descriptor.name(), value) {
                    object.insert(descriptor.name().to_owned(), json);
                }
            }
            Value::Object(object)
        }
    }
}

/// Pointer fields (`*int32`, `*bool`) whose zero differs from their absence, which
/// kube-apiserver would default to something else: written only when set, so a zero
/// on the wire is the client's. Every other zero or `false` is a plain Go field's,
/// which Go's protobuf encoder always writes and its JSON encoder leaves out.
const MEANINGFUL_ZEROS: &[&str] = &[
    "activeDeadlineSeconds",
    "allowPrivilegeEscalation",
    "automountServiceAccountToken",
    "backoffLimit",
    "completions",
    "enableServiceLinks",
    "expirationSeconds",
    "failedJobsHistoryLimit",
    "minReplicas",
    "parallelism",
    "progressDeadlineSeconds",
    "replicas",
    "revisionHistoryLimit",
    "successfulJobsHistoryLimit",
    "terminationGracePeriodSeconds",
    "ttlSecondsAfterFinished",
];

/// One field's value; `None` when Kubernetes' JSON would leave it out.
fn field_value(name: &str, value: &Proto) -> Option<Value> {
    let zero = match value {
        Proto::Bool(b) => !b,
        Proto::I32(n) => *n == 0,
        Proto::I64(n) => *n == 0,
        Proto::U32(n) => *n == 0,
        Proto::U64(n) => *n == 0,
        _ => false,
    };
    if zero && !MEANINGFUL_ZEROS.contains(&name) {
        return None;
    }
    value_of(value)
}

/// A value; `None` when it is empty and Kubernetes' JSON would leave it out.
fn value_of(value: &Proto) -> Option<Value> {
    Some(match value {
        Proto::String(s) if s.is_empty() => return None,
        Proto::String(s) => Value::from(s.as_str()),
        Proto::Message(m) => match message(m) {
            Value::Null => return None,
            v => v,
        },
        Proto::List(items) if items.is_empty() => return None,
        Proto::List(items) => Value::Array(items.iter().map(element).collect()),
        Proto::Map(entries) if entries.is_empty() => return None,
        Proto::Map(entries) => {
            let mut sorted: Vec<(String, Value)> = entries.iter().map(|(k, v)| (key(k), element(v))).collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(sorted.into_iter().collect())
        }
        scalar => element(scalar),
    })
}

/// A value inside a list or a map, where empty values are kept (`""` is a value there).
fn element(value: &Proto) -> Value {
    use base64::Engine as _;
    match value {
        Proto::Bool(b) => Value::from(*b),
        Proto::I32(n) => Value::from(*n),
        Proto::I64(n) => Value::from(*n),
        Proto::U32(n) => Value::from(*n),
        Proto::U64(n) => Value::from(*n),
        Proto::F32(n) => serde_json::Number::from_f64(f64::from(*n)).map_or(Value::Null, Value::Number),
        Proto::F64(n) => serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number),
        Proto::String(s) => Value::from(s.as_str()),
        // `[]byte` is base64 in Go's JSON (Secret.data, ConfigMap.binaryData).
        Proto::Bytes(b) => Value::from(base64::engine::general_purpose::STANDARD.encode(b)),
        Proto::EnumNumber(n) => Value::from(*n),
        Proto::Message(m) => message(m),
        Proto::List(_) | Proto::Map(_) => value_of(value).unwrap_or(Value::Null),
    }
}

fn key(k: &MapKey) -> String {
    match k {
        MapKey::Bool(b) => b.to_string(),
        MapKey::I32(n) => n.to_string(),
        MapKey::I64(n) => n.to_string(),
        MapKey::U32(n) => n.to_string(),
        MapKey::U64(n) => n.to_string(),
        MapKey::String(s) => s.clone(),
    }
}

/// A `metav1.Duration` as Go's `time.Duration.String()` writes it: `1h2m3.5s`, `300ms`.
fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".to_owned();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    if n < 1_000_000_000 {
        let (unit, per) = if n < 1_000 {
            ("ns", 1)
        } else if n < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{sign}{}{unit}", fraction(n, per));
    }
    let (h, m) = (n / 3_600_000_000_000, n / 60_000_000_000 % 60);
    let s = fraction(n % 60_000_000_000, 1_000_000_000);
    match (h, m) {
        (0, 0) => format!("{sign}{s}s"),
        (0, m) => format!("{sign}{m}m{s}s"),
        (h, m) => format!("{sign}{h}h{m}m{s}s"),
    }
}

/// `n / per` with its fraction, trailing zeros dropped.
fn fraction(n: u64, per: u64) -> String {
    let (whole, part) = (n / per, n % per);
    if part == 0 {
        return whole.to_string();
    }
    let digits = per.ilog10() as usize;
    let part = format!("{part:0digits$}");
    format!("{whole}.{}", part.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_read_as_go_writes_them() {
        for (nanos, want) in [
            (0, "0s"),
            (1, "1ns"),
            (1_500, "1.5µs"),
            (300_000_000, "300ms"),
            (1_000_000_000, "1s"),
            (90_000_000_000, "1m30s"),
            (3_723_500_000_000, "1h2m3.5s"),
            (-2_000_000_000, "-2s"),
        ] {
            assert_eq!(go_duration(nanos), want, "{nanos}");
        }
    }

    #[test]
    fn every_stable_group_has_its_kinds() {
        let s = schemas();
        for (api_version, kind) in [
            ("v1", "Namespace"),
            ("v1", "ConfigMap"),
            ("v1", "Secret"),
            ("v1", "Service"),
            ("v1", "Pod"),
            ("apps/v1", "Deployment"),
            ("batch/v1", "CronJob"),
            ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
            ("authorization.k8s.io/v1", "SelfSubjectAccessReview"),
            ("authentication.k8s.io/v1", "TokenRequest"),
            ("networking.k8s.io/v1", "Ingress"),
            ("policy/v1", "PodDisruptionBudget"),
            ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
            ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ] {
            let (group, version) = group_dir(api_version);
            assert!(
                s.kinds.contains_key(&(group.to_owned(), version.to_owned(), kind.to_owned())),
                "{api_version} {kind}"
            );
        }
    }

    /// A protobuf body of `kind` with the object's bytes `raw`, as client-go writes it.
    fn body(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        use prost_reflect::prost::Message as _;
        let pool = &schemas().pool;
        let mut type_meta = DynamicMessage::new(pool.get_message_by_name("apimachinery.pkg.runtime.TypeMeta").unwrap());
        type_meta.set_field_by_name("apiVersion", Proto::String(api_version.to_owned()));
        type_meta.set_field_by_name("kind", Proto::String(kind.to_owned()));
        let mut envelope = DynamicMessage::new(pool.get_message_by_name(UNKNOWN).unwrap());
        envelope.set_field_by_name("typeMeta", Proto::Message(type_meta));
        envelope.set_field_by_name("raw", Proto::Bytes(raw.to_vec().into()));
        [MAGIC, &envelope.encode_to_vec()].concat()
    }

    #[test]
    fn a_body_without_the_magic_broken_or_of_a_custom_kind_is_refused() {
        assert!(matches!(decode(b"{\"kind\": \"Namespace\"}"), Err(Error::Malformed(_))));
        assert!(matches!(decode(b"k8s\0\xff\xff"), Err(Error::Malformed(_))));
        assert!(matches!(decode(&body("v1", "Namespace", b"\x0a\x05ab")), Err(Error::Malformed(_))));
        assert_eq!(
            decode(&body("apisix-canary.dev/v1beta1", "Canary", b"")),
            Err(Error::NoSchema { api_version: "apisix-canary.dev/v1beta1".to_owned(), kind: "Canary".to_owned() })
        );
    }

    /// A Secret with a zero time, bytes, a label map, and Go's empty non-pointer strings.
    #[test]
    fn a_secret_reads_as_kube_apiserver_writes_it_in_json() {
        use prost_reflect::prost::Message as _;
        let pool = &schemas().pool;
        let mut meta =
            DynamicMessage::new(pool.get_message_by_name("apimachinery.pkg.apis.meta.v1.ObjectMeta").unwrap());
        meta.set_field_by_name("name", Proto::String("s1".to_owned()));
        meta.set_field_by_name("namespace", Proto::String(String::new()));
        let time = DynamicMessage::new(pool.get_message_by_name(TIME).unwrap());
        meta.set_field_by_name("creationTimestamp", Proto::Message(time));
        let labels = HashMap::from([(MapKey::String("app".to_owned()), Proto::String("web".to_owned()))]);
        meta.set_field_by_name("labels", Proto::Map(labels));
        let mut secret = DynamicMessage::new(pool.get_message_by_name("api.core.v1.Secret").unwrap());
        secret.set_field_by_name("metadata", Proto::Message(meta));
        let data = HashMap::from([
            (MapKey::String("a".to_owned()), Proto::Bytes(b"b".to_vec().into())),
            (MapKey::String("empty".to_owned()), Proto::Bytes(Vec::new().into())),
        ]);
        secret.set_field_by_name("data", Proto::Map(data));
        secret.set_field_by_name("type", Proto::String("Opaque".to_owned()));
        secret.set_field_by_name("immutable", Proto::Bool(true));
        let decoded = decode(&body("v1", "Secret", &secret.encode_to_vec())).unwrap();
        assert_eq!(
            decoded,
            serde_json::json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "s1", "labels": {"app": "web"}},
                "data": {"a": "Yg==", "empty": ""},
                "type": "Opaque",
                "immutable": true,
            })
        );
        assert_eq!(serde_json::to_string(&decoded).unwrap().find("apiVersion"), Some(2), "the type first");
    }
}
