//! The stable driver's inputs: seeds from the real-shaped fixtures, and a mutator that
//! bends them as a broken client, a hostile user or a bit flip would. JSON targets are
//! mutated as trees (values replaced, removed, copied, nested deep; annotations set to
//! odd values), then some as bytes; one input in twenty is random bytes.

#![allow(dead_code)]

use std::path::Path;

use serde_json::{Value, json};

use crate::fuzz::Target;

/// The fixtures each target starts from.
pub fn seeds(target: Target) -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let files = |dir: &str, ext: &str| -> Vec<Vec<u8>> {
        let mut paths: Vec<_> = std::fs::read_dir(root.join(dir))
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == ext))
            .collect();
        paths.sort();
        paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
    };
    match target {
        Target::MutateDeployments | Target::ValidateDeployments => {
            [files("admission", "json"), files("admission/reference", "json")].concat()
        }
        Target::ValidateCanaries => files("canaries", "yaml")
            .iter()
            .flat_map(|yaml| {
                let object: Value =
                    serde_saphyr::from_str(std::str::from_utf8(yaml).unwrap()).expect("a Canary fixture");
                [canary_review(&object, None), canary_review(&object, Some(&object))]
            })
            .collect(),
        Target::Convert => [files("conversion/pass", "json"), files("conversion/fail", "json")].concat(),
        Target::Annotations => files("admission", "json")
            .iter()
            .filter_map(|review| {
                let review: Value = serde_json::from_slice(review).ok()?;
                let annotations = review.pointer("/request/object/metadata/annotations")?.as_object()?;
                Some(annotations.iter().map(|(k, v)| format!("{k}={}\n", v.as_str().unwrap_or_default())).collect())
            })
            .map(String::into_bytes)
            .chain(["route=podinfo\nstep-weights=5,10,20\nmax-weight=20\ninterval=10s\n".into()])
            .collect(),
        Target::Duration => DURATIONS.iter().map(|d| d.as_bytes().to_vec()).collect(),
        Target::Template => TEMPLATES.iter().map(|t| t.as_bytes().to_vec()).collect(),
    }
}

/// A Canary CREATE (or UPDATE from `old`) as kube-apiserver sends it to the webhook.
fn canary_review(object: &Value, old: Option<&Value>) -> Vec<u8> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "0c5f3d2e-4a1b-4c7d-9e8f-000000000042",
            "kind": {"group": group, "version": version, "kind": "Canary"},
            "resource": {"group": group, "version": version, "resource": "canaries"},
            "requestKind": {"group": group, "version": version, "kind": "Canary"},
            "requestResource": {"group": group, "version": version, "resource": "canaries"},
            "name": object["metadata"]["name"],
            "namespace": object["metadata"]["namespace"].as_str().unwrap_or("test"),
            "operation": if old.is_some() { "UPDATE" } else { "CREATE" },
            "userInfo": {"username": "kubernetes-admin", "groups": ["kubeadm:cluster-admins", "system:authenticated"]},
            "object": object,
            "oldObject": old,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions", "fieldManager": "kubectl-client-side-apply"}
        }
    }))
    .unwrap()
}

const DURATIONS: &[&str] =
    &["10s", "1m", "1m30s", "500ms", "1.5h", "0", "2h0m0s", "1µs", "1μs", "100us", "3ns", "0.5s", ".5s", "1.s", "90m"];

const TEMPLATES: &[&str] = &[
    r#"sum(rate(apisix_http_status{route=~"{{ namespace }}_{{ route }}_.+",code!~"5.."}[{{ interval }}]))"#,
    "histogram_quantile(0.99, sum(rate(apisix_http_latency_bucket{type=\"upstream\"}[{{interval}}])) by (le))",
    "{{ variables.x }} * 100",
    "up{job=\"{{ target }}\", namespace=\"{{namespace}}\"}",
    "no variables at all",
];

/// Values that break parsers: limits, signs, types, encodings, sizes.
const STRINGS: &[&str] = &[
    "",
    " ",
    "0",
    "-1",
    "1",
    "100",
    "101",
    "4294967296",
    "18446744073709551616",
    "1e309",
    "NaN",
    "-Inf",
    "0.5",
    "true",
    "false",
    "null",
    "10s",
    "-10s",
    "0s",
    "1h1h",
    "5,10,20",
    "20,10,5",
    "5,,10",
    "5,10,",
    "99,100",
    "podinfo",
    "Podinfo",
    "a/b",
    "../x",
    "\u{0}",
    "\u{feff}",
    "é",
    "😀",
    "\\",
    "\"",
    "{{",
    "}}",
    "{{ namespace }}",
    "{{ variables.",
    "apisix-canary.dev/route",
    "apps/v1",
    "apisix-canary.dev/v1alpha1",
    "apisix-canary.dev/v1beta1",
    "Deployment",
    "Canary",
    "CREATE",
    "UPDATE",
    "DELETE",
    "CONNECT",
    "status",
    "scale",
];

/// The first [`KEYS`] are annotation keys (ours, then one we do not know).
const ANNOTATION_KEYS: usize = 23;

const KEYS: &[&str] = &[
    "apisix-canary.dev/route",
    "apisix-canary.dev/canary",
    "apisix-canary.dev/step-weight",
    "apisix-canary.dev/step-weights",
    "apisix-canary.dev/step-weight-promotion",
    "apisix-canary.dev/max-weight",
    "apisix-canary.dev/interval",
    "apisix-canary.dev/threshold",
    "apisix-canary.dev/min-success-rate",
    "apisix-canary.dev/max-request-duration",
    "apisix-canary.dev/judge",
    "apisix-canary.dev/confidence",
    "apisix-canary.dev/progress-deadline-seconds",
    "apisix-canary.dev/skip-analysis",
    "apisix-canary.dev/suspend",
    "apisix-canary.dev/abort",
    "apisix-canary.dev/promote",
    "apisix-canary.dev/stable-revision",
    "apisix-canary.dev/canary-revision",
    "apisix-canary.dev/failed-revision",
    "apisix-canary.dev/retry",
    "apisix-canary.dev/promoted-revision",
    "apisix-canary.dev/unknown",
    "uid",
    "name",
    "namespace",
    "paused",
    "replicas",
    "template",
    "spec",
    "metadata",
    "annotations",
    "analysis",
    "metrics",
    "stepWeights",
    "maxWeight",
    "interval",
    "threshold",
    "webhooks",
    "objects",
    "desiredAPIVersion",
    "apiVersion",
    "kind",
];

/// A reproducible stream of inputs for one target.
pub struct Mutator {
    rng: fastrand::Rng,
    seeds: Vec<Vec<u8>>,
    target: Target,
}

impl Mutator {
    pub fn new(target: Target, seed: u64) -> Self {
        Self { rng: fastrand::Rng::with_seed(seed), seeds: seeds(target), target }
    }

    /// The next input into `out` (its buffer is reused).
    pub fn next_into(&mut self, out: &mut Vec<u8>) {
        out.clear();
        if self.rng.u8(..20) == 0 {
            let len = self.rng.usize(..512);
            out.extend((0..len).map(|_| self.rng.u8(..)));
            return;
        }
        let seed = &self.seeds[self.rng.usize(..self.seeds.len())];
        if self.target.is_json() {
            let mut tree: Value = serde_json::from_slice(seed).expect("a JSON seed");
            for _ in 0..=self.rng.usize(..4) {
                self.tree(&mut tree);
            }
            if self.rng.bool() {
                serde_json::to_writer(&mut *out, &tree).unwrap();
            } else {
                serde_json::to_writer_pretty(&mut *out, &tree).unwrap();
            }
            if self.rng.u8(..4) == 0 {
                self.bytes(out);
            }
        } else {
            out.extend_from_slice(seed);
            for _ in 0..=self.rng.usize(..4) {
                self.text(out);
            }
        }
    }

    fn string(&mut self) -> String {
        match self.rng.u8(..40) {
            // Past every limit of ours that counts characters (63, 253, 1,024 ...).
            0 => "x".repeat(self.rng.usize(..70_000)),
            1..=4 => (0..self.rng.usize(..40)).map(|_| self.rng.char(..)).collect(),
            _ => STRINGS[self.rng.usize(..STRINGS.len())].to_owned(),
        }
    }

    fn scalar(&mut self) -> Value {
        match self.rng.u8(..8) {
            0 => Value::Null,
            1 => json!(self.rng.bool()),
            2 => json!([i64::MIN, -1, 0, 1, 100, 101, i64::MAX][self.rng.usize(..7)]),
            3 => json!([u64::MAX, 1u64 << 32, 1u64 << 53][self.rng.usize(..3)]),
            4 => json!([0.5, -0.0, 1e308, -1e-308, 99.999][self.rng.usize(..5)]),
            5 => json!([]),
            6 => json!({}),
            _ => json!(self.string()),
        }
    }

    /// One change somewhere in the tree, reached by a random walk from the root.
    fn tree(&mut self, root: &mut Value) {
        let op = self.rng.u8(..10);
        if op == 0 {
            // An annotation where the hooks read them.
            let key = KEYS[self.rng.usize(..ANNOTATION_KEYS)].to_owned();
            let value = self.string();
            let side = ["object", "oldObject"][self.rng.usize(..2)];
            if let Some(request) = root.get_mut("request").and_then(Value::as_object_mut)
                && let Some(object) = request.get_mut(side).and_then(Value::as_object_mut)
            {
                let meta = object.entry("metadata").or_insert_with(|| json!({}));
                if let Some(meta) = meta.as_object_mut() {
                    let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
                    if let Some(a) = annotations.as_object_mut() {
                        a.insert(key, json!(value));
                    }
                }
            }
            return;
        }
        let donor = if op == 1 { Some(self.walk(root).clone()) } else { None };
        let node = self.walk(root);
        match (op, node) {
            (1, node) => *node = donor.unwrap_or_default(),
            (2, Value::Object(map)) if !map.is_empty() => {
                let key = map.keys().nth(self.rng.usize(..map.len())).cloned().unwrap();
                map.remove(&key);
            }
            (2, Value::Array(items)) if !items.is_empty() => {
                items.remove(self.rng.usize(..items.len()));
            }
            (3, Value::Object(map)) => {
                let key = KEYS[self.rng.usize(..KEYS.len())].to_owned();
                let value = self.scalar();
                map.insert(key, value);
            }
            (3, Value::Array(items)) if !items.is_empty() => {
                let copy = items[self.rng.usize(..items.len())].clone();
                items.push(copy);
            }
            (4, node) => {
                let depth = self.rng.usize(1..300);
                let mut nested = std::mem::take(node);
                for _ in 0..depth {
                    nested = if self.rng.bool() { json!([nested]) } else { json!({"a": nested}) };
                }
                *node = nested;
            }
            (5, Value::String(s)) => {
                let cut = self.rng.usize(..=s.len());
                if s.is_char_boundary(cut) {
                    s.truncate(cut);
                }
                let tail = self.string();
                s.push_str(&tail);
            }
            (_, node) => *node = self.scalar(),
        }
    }

    fn walk<'a>(&mut self, mut node: &'a mut Value) -> &'a mut Value {
        loop {
            let len = match &*node {
                Value::Object(m) => m.len(),
                Value::Array(a) => a.len(),
                _ => 0,
            };
            if len == 0 || self.rng.u8(..5) == 0 {
                return node;
            }
            let i = self.rng.usize(..len);
            node = match node {
                Value::Object(m) => m.values_mut().nth(i).unwrap(),
                Value::Array(a) => &mut a[i],
                _ => unreachable!(),
            };
        }
    }

    /// A byte-level change: what a truncated body or a bit flip gives.
    fn bytes(&mut self, out: &mut Vec<u8>) {
        if out.is_empty() {
            return;
        }
        let at = self.rng.usize(..out.len());
        match self.rng.u8(..5) {
            0 => out.truncate(at),
            1 => out[at] ^= 1 << self.rng.u8(..8),
            2 => out[at] = [0, 0x80, 0xc3, 0xff, b'"', b'\\', b'{', b']'][self.rng.usize(..8)],
            3 => {
                let end = self.rng.usize(at..=out.len().min(at + 64));
                let chunk = out[at..end].to_vec();
                out.splice(at..at, chunk);
            }
            _ => {
                let end = self.rng.usize(at..=out.len().min(at + 64));
                out.drain(at..end);
            }
        }
    }

    /// A change to a text input: a token spliced in, a piece cut or doubled, a byte.
    fn text(&mut self, out: &mut Vec<u8>) {
        let at = self.rng.usize(..=out.len());
        match self.rng.u8(..4) {
            0 => {
                let token = match self.target {
                    Target::Annotations => {
                        let key = KEYS[self.rng.usize(..ANNOTATION_KEYS)];
                        format!("\n{key}={}\n", self.string())
                    }
                    Target::Duration => {
                        let unit = ["ns", "us", "µs", "ms", "s", "m", "h", ".", "", "e"][self.rng.usize(..10)];
                        format!("{}{unit}", self.rng.u64(..) >> self.rng.u32(..64))
                    }
                    _ => ["{{", "}}", "{{ variables.x }}", "{{ nope }}", "{{ }}", "{", "}"][self.rng.usize(..7)]
                        .to_owned(),
                };
                out.splice(at..at, token.into_bytes());
            }
            _ => self.bytes(out),
        }
    }
}
