"""What the chart scripts of tests/chart/ share: the chart rendered with its default
values by Helm's own library (helm-python-sdk), as the release `apisix-canary` in the
namespace `apisix-canary`, and the objects keyed and compared field by field."""

from pathlib import Path

import helm_python as helm
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "apisix-canary"
MANIFESTS = REPO / "manifests"
RELEASE = "apisix-canary"
NAMESPACE = "apisix-canary"

# Labels only Helm can write; a kustomize install leaves them out.
HELM_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")


def docs(text):
    return [d for d in yaml.safe_load_all(text) if d]


def render(values=None):
    """The chart's templates, as (template path, object) in Helm's order of paths."""
    chart = helm.Chart.load(str(CHART))
    out = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return [(path, d) for path, text in sorted(out.items()) for d in docs(text)]


def crds():
    """The chart's crds/ objects, which Helm installs before the templates."""
    chart = helm.Chart.load(str(CHART))
    return [(c["filename"], d) for c in chart.crds for d in docs(c["data"])]


def key(obj):
    meta = obj.get("metadata", {})
    return (obj.get("apiVersion"), obj.get("kind"), meta.get("namespace", ""), meta.get("name"))


def show(k):
    api_version, kind, namespace, name = k
    return f"{kind} {namespace + '/' if namespace else ''}{name} ({api_version})"


def without_helm_labels(obj):
    """A copy with Helm's own labels removed from every `labels` map of the object
    (its metadata and any pod template's)."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k == "labels" and isinstance(v, dict):
                v = {lk: lv for lk, lv in v.items() if lk not in HELM_LABELS}
                if not v:
                    continue
            out[k] = without_helm_labels(v)
        return out
    if isinstance(obj, list):
        return [without_helm_labels(v) for v in obj]
    return obj


def without_ca_bundle(obj):
    """A copy without `caBundle` anywhere: it is injected or patched in a cluster."""
    if isinstance(obj, dict):
        return {k: without_ca_bundle(v) for k, v in obj.items() if k != "caBundle"}
    if isinstance(obj, list):
        return [without_ca_bundle(v) for v in obj]
    return obj


def namespace_object(objects):
    """The Namespace of the install: the labels every rendered object carries."""
    common = None
    for o in objects:
        labels = o.get("metadata", {}).get("labels", {})
        common = dict(labels) if common is None else {k: v for k, v in common.items() if labels.get(k) == v}
    meta = {"name": NAMESPACE}
    if common:
        meta["labels"] = common
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def diff(a, b, path=""):
    """Every field where a and b differ, as (path, a's value, b's value)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in list(a) + [k for k in b if k not in a]:
            sub = f"{path}.{k}" if path else str(k)
            if k not in b:
                out.append((sub, a[k], "<absent>"))
            elif k not in a:
                out.append((sub, "<absent>", b[k]))
            else:
                out += diff(a[k], b[k], sub)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in diff(x, y, f"{path}[{i}]")]
    same = type(a) is type(b) and a == b
    return [] if same else [(path, a, b)]
