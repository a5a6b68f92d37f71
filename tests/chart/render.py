"""Renders and lints charts/apisix-canary with Helm's own library (helm-python-sdk) and
checks it against what the binary generates. Run by tests/chart.rs with the venv that
.ci/run creates: render.py REPO BINARY. Exits non-zero with every problem listed."""

import filecmp
import subprocess
import sys
import tempfile
from pathlib import Path

import helm_python as helm
import yaml

REPO = Path(sys.argv[1])
BINARY = sys.argv[2]
CHART = REPO / "charts" / "apisix-canary"
NAMESPACE = "apisix-canary"
problems = []


def check(ok, message):
    if not ok:
        problems.append(message)


def docs(text):
    return [d for d in yaml.safe_load_all(text) if d]


def render(values):
    chart = helm.Chart.load(str(CHART))
    out = chart.render(values, name="apisix-canary", namespace=NAMESPACE, is_install=True)
    objects = []
    for path, text in sorted(out.items()):
        for d in docs(text):
            check(isinstance(d, dict) and "apiVersion" in d and "kind" in d, f"{path}: not an object: {d!r}")
            objects.append(d)
    return objects


def by_kind(objects):
    found = {}
    for o in objects:
        found.setdefault((o["apiVersion"], o["kind"]), []).append(o)
    return found


EXPECTED = {
    ("v1", "ServiceAccount"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    ("policy/v1", "PodDisruptionBudget"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"),
    ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"),
}
CERT_MANAGER = {("cert-manager.io/v1", "Issuer"), ("cert-manager.io/v1", "Certificate")}
OPTIONAL = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("v1", "ConfigMap"),
}

# What the binary generates.
with tempfile.TemporaryDirectory() as tmp:
    subprocess.run([BINARY, "manifests", "--out-dir", tmp], check=True, capture_output=True)
    generated_webhooks = by_kind(docs(Path(tmp, "webhooks.yaml").read_text()))
    check(
        filecmp.cmp(Path(tmp, "crds.yaml"), CHART / "crds" / "crds.yaml", shallow=False),
        "charts/apisix-canary/crds/crds.yaml drifted: run `cargo run -- crds > charts/apisix-canary/crds/crds.yaml`",
    )
rbac_text = subprocess.run([BINARY, "rbac"], check=True, capture_output=True, text=True).stdout
check(
    rbac_text == (CHART / "files" / "rbac.yaml").read_text(),
    "charts/apisix-canary/files/rbac.yaml drifted: run `cargo run -- rbac > charts/apisix-canary/files/rbac.yaml`",
)
check(
    (CHART / "files" / "dashboard.json").read_bytes() == (REPO / "dashboards" / "apisix-canary.json").read_bytes(),
    "charts/apisix-canary/files/dashboard.json drifted: copy dashboards/apisix-canary.json",
)
rbac = yaml.safe_load(rbac_text)
crd_names = [d["metadata"]["name"] for d in docs((CHART / "crds" / "crds.yaml").read_text())]
check(
    crd_names == ["canaries.apisix-canary.dev", "metrictemplates.apisix-canary.dev", "alertproviders.apisix-canary.dev"],
    f"CRD names: {crd_names}",
)


def strip_ca(webhooks):
    out = []
    for w in webhooks:
        w = dict(w)
        w["clientConfig"] = {k: v for k, v in w["clientConfig"].items() if k != "caBundle"}
        out.append(w)
    return out


def check_common(mode, objects):
    kinds = by_kind(objects)
    for key in kinds:
        check(key in EXPECTED | CERT_MANAGER | OPTIONAL, f"{mode}: unexpected {key}")
    for key in EXPECTED:
        check(len(kinds.get(key, [])) == 1, f"{mode}: {len(kinds.get(key, []))} of {key}, want 1")
    if problems:
        return kinds, None

    # Webhooks: the generated configurations, but for caBundle and labels.
    for key in [
        ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"),
        ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"),
    ]:
        ours, theirs = kinds[key][0], generated_webhooks[key][0]
        check(ours["metadata"]["name"] == theirs["metadata"]["name"], f"{mode}: {key[1]} name")
        check(strip_ca(ours["webhooks"]) == strip_ca(theirs["webhooks"]), f"{mode}: {key[1]} webhooks differ from `apisix-canary manifests`:\n{ours['webhooks']}\n!=\n{theirs['webhooks']}")

    # Service: named as the webhooks and the CRD conversion say; 443 -> the webhook port.
    service = kinds[("v1", "Service")][0]
    check(service["metadata"]["name"] == "apisix-canary" and service["metadata"]["namespace"] == NAMESPACE, f"{mode}: Service name")
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    check(ports.get("webhook", {}).get("port") == 443 and ports["webhook"].get("targetPort") == "webhook", f"{mode}: webhook port {ports.get('webhook')}")
    check(ports.get("metrics", {}).get("targetPort") == "admin", f"{mode}: metrics port {ports.get('metrics')}")

    # Deployment: ports, probes, env, hardening.
    deployment = kinds[("apps/v1", "Deployment")][0]
    check(deployment["spec"]["replicas"] == 2, f"{mode}: replicas")
    pod = deployment["spec"]["template"]["spec"]
    check(pod["serviceAccountName"] == kinds[("v1", "ServiceAccount")][0]["metadata"]["name"], f"{mode}: service account")
    check(service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items(), f"{mode}: Service selects no pod")
    check("podAntiAffinity" in pod.get("affinity", {}), f"{mode}: no anti-affinity")
    (container,) = pod["containers"]
    cports = {p["name"]: p["containerPort"] for p in container["ports"]}
    check(cports == {"webhook": 8443, "admin": 8080}, f"{mode}: container ports {cports}")
    check(container["livenessProbe"]["httpGet"] == {"path": "/live", "port": "admin"}, f"{mode}: liveness")
    check(container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "admin"}, f"{mode}: readiness")
    env = {e["name"]: e for e in container["env"]}
    check(env["POD_NAME"].get("valueFrom") == {"fieldRef": {"fieldPath": "metadata.name"}}, f"{mode}: POD_NAME")
    check(env["POD_NAMESPACE"].get("valueFrom") == {"fieldRef": {"fieldPath": "metadata.namespace"}}, f"{mode}: POD_NAMESPACE")
    check(env["APISIX_CANARY_ADDR"]["value"] == "0.0.0.0:8443", f"{mode}: APISIX_CANARY_ADDR")
    check(env["APISIX_CANARY_ADMIN_ADDR"]["value"] == "0.0.0.0:8080", f"{mode}: APISIX_CANARY_ADMIN_ADDR")
    check(container["args"] == ["serve"], f"{mode}: args")
    sc = container["securityContext"]
    check(sc.get("runAsNonRoot") is True, f"{mode}: runAsNonRoot")
    check(sc.get("readOnlyRootFilesystem") is True, f"{mode}: readOnlyRootFilesystem")
    check(sc.get("allowPrivilegeEscalation") is False, f"{mode}: allowPrivilegeEscalation")
    check(sc.get("capabilities") == {"drop": ["ALL"]}, f"{mode}: capabilities")
    check(pod["securityContext"].get("seccompProfile") == {"type": "RuntimeDefault"}, f"{mode}: pod seccomp")
    check(pod["securityContext"].get("runAsNonRoot") is True, f"{mode}: pod runAsNonRoot")
    res = container.get("resources", {})
    check("cpu" in res.get("requests", {}) and "memory" in res.get("requests", {}), f"{mode}: requests")
    check("cpu" not in res.get("limits", {}), f"{mode}: a CPU limit")
    secret = next(v["secret"]["secretName"] for v in pod["volumes"] if v["name"] == "tls")

    # RBAC: exactly the generated rules, bound to our ServiceAccount.
    check(kinds[("rbac.authorization.k8s.io/v1", "ClusterRole")][0]["rules"] == rbac["clusterRules"], f"{mode}: ClusterRole rules")
    role = kinds[("rbac.authorization.k8s.io/v1", "Role")][0]
    check(role["rules"] == rbac["namespaceRules"] and role["metadata"]["namespace"] == NAMESPACE, f"{mode}: Role rules")
    for binding in ("ClusterRoleBinding", "RoleBinding"):
        b = kinds[("rbac.authorization.k8s.io/v1", binding)][0]
        check(b["subjects"] == [{"kind": "ServiceAccount", "name": "apisix-canary", "namespace": NAMESPACE}], f"{mode}: {binding} subjects")

    pdb = kinds[("policy/v1", "PodDisruptionBudget")][0]
    check(pdb["spec"]["selector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items(), f"{mode}: PDB selects no pod")
    return kinds, secret


# Defaults: existingSecret, nothing optional.
defaults = render(None)
kinds, secret = check_common("defaults", defaults)
check(not (set(kinds) & (CERT_MANAGER | OPTIONAL)), f"defaults: optional objects rendered: {set(kinds) & (CERT_MANAGER | OPTIONAL)}")
check(secret == "apisix-canary-tls", f"defaults: TLS Secret {secret}")

# cert-manager: Issuer, Certificate into the mounted Secret, cainjector annotations.
cm = render({"certManager": {"enabled": True}})
kinds, secret = check_common("certManager", cm)
cert = kinds[("cert-manager.io/v1", "Certificate")][0]
check(cert["spec"]["secretName"] == secret, f"certManager: Certificate writes {cert['spec']['secretName']}, pods mount {secret}")
check("apisix-canary.apisix-canary.svc" in cert["spec"]["dnsNames"], f"certManager: dnsNames {cert['spec']['dnsNames']}")
check(cert["spec"]["issuerRef"]["name"] == kinds[("cert-manager.io/v1", "Issuer")][0]["metadata"]["name"], "certManager: issuerRef")
for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
    annotations = kinds[("admissionregistration.k8s.io/v1", kind)][0]["metadata"].get("annotations", {})
    check(annotations.get("cert-manager.io/inject-ca-from") == f"{NAMESPACE}/{cert['metadata']['name']}", f"certManager: {kind} cainjector annotation")

# The optional objects all at once.
extras = by_kind(render({"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}, "grafanaDashboard": {"enabled": True}}))
for key in OPTIONAL:
    check(len(extras.get(key, [])) == 1, f"optional: {key} missing")
if not problems:
    rule = extras[("monitoring.coreos.com/v1", "PrometheusRule")][0]
    alerts = [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]]
    check(len(alerts) == 3, f"PrometheusRule alerts: {alerts}")
    dashboard = extras[("v1", "ConfigMap")][0]["data"]["apisix-canary.json"]
    check(dashboard.strip() == (REPO / "dashboards" / "apisix-canary.json").read_text().strip(), "dashboard ConfigMap differs from the file")

# Helm's linter, strict, for each mode: no warning, no error.
for mode, values in [("defaults", None), ("certManager", {"certManager": {"enabled": True}})]:
    report = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE)
    bad = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    check(not bad, f"helm lint ({mode}): {bad}")

if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
print(f"chart ok: {len(defaults)} objects by default, {len(cm)} with cert-manager")
