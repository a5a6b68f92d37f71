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
    volumes = {v["name"]: v for v in pod["volumes"]}
    self_signed = "APISIX_CANARY_SELF_SIGNED_SECRET" in env
    if self_signed:
        # The server keeps the Secret itself: nothing mounted, the names it patches given.
        secret = env["APISIX_CANARY_SELF_SIGNED_SECRET"]["value"]
        check("tls" not in volumes and "APISIX_CANARY_TLS_CERT" not in env, f"{mode}: a TLS mount in the selfSigned mode")
        check(env["APISIX_CANARY_SERVICE"]["value"] == service["metadata"]["name"], f"{mode}: APISIX_CANARY_SERVICE")
        for key in [("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"), ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration")]:
            check(env["APISIX_CANARY_WEBHOOK_CONFIGURATION"]["value"] == kinds[key][0]["metadata"]["name"], f"{mode}: APISIX_CANARY_WEBHOOK_CONFIGURATION")
        # Each is a duration the server parses.
        for name in ("APISIX_CANARY_CERT_VALIDITY", "APISIX_CANARY_CA_VALIDITY"):
            check(env[name]["value"].endswith("h"), f"{mode}: {name} {env[name]}")
    else:
        secret = volumes["tls"]["secret"]["secretName"]
        mount = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "tls")
        check(env["APISIX_CANARY_TLS_CERT"]["value"] == f"{mount}/tls.crt", f"{mode}: TLS files outside the mount")

    # RBAC: exactly the generated rules (the self-signed mode's too, named), bound to our ServiceAccount.
    want_cluster, want_namespace = list(rbac["clusterRules"]), list(rbac["namespaceRules"])
    if self_signed:
        named = lambda rules, placeholder, name: yaml.safe_load(yaml.safe_dump(rules).replace(placeholder, name))
        want_cluster += named(rbac["selfSigned"]["clusterRules"], "${webhookConfiguration}", "apisix-canary")
        want_namespace += named(rbac["selfSigned"]["namespaceRules"], "${selfSignedSecret}", secret)
    check(kinds[("rbac.authorization.k8s.io/v1", "ClusterRole")][0]["rules"] == want_cluster, f"{mode}: ClusterRole rules")
    role = kinds[("rbac.authorization.k8s.io/v1", "Role")][0]
    check(role["rules"] == want_namespace and role["metadata"]["namespace"] == NAMESPACE, f"{mode}: Role rules {role['rules']}")
    check("${" not in yaml.safe_dump(role) + yaml.safe_dump(kinds[("rbac.authorization.k8s.io/v1", "ClusterRole")][0]), f"{mode}: a placeholder left in RBAC")
    for binding in ("ClusterRoleBinding", "RoleBinding"):
        b = kinds[("rbac.authorization.k8s.io/v1", binding)][0]
        check(b["subjects"] == [{"kind": "ServiceAccount", "name": "apisix-canary", "namespace": NAMESPACE}], f"{mode}: {binding} subjects")

    pdb = kinds[("policy/v1", "PodDisruptionBudget")][0]
    check(pdb["spec"]["selector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items(), f"{mode}: PDB selects no pod")
    return kinds, secret


# The Dockerfile builds the image the Deployment runs: its user, ports and entrypoint.
dockerfile = (REPO / "Dockerfile").read_text()
run_stage = dockerfile.split("\nFROM ")[-1]
check("USER 65532:65532" in run_stage, "Dockerfile: the run stage's user is not the chart's runAsUser 65532")
check('ENTRYPOINT ["/usr/local/bin/apisix-canary"]' in run_stage, "Dockerfile: the binary is not the entrypoint (the chart passes args only)")
check("EXPOSE 8443 8080" in run_stage, "Dockerfile: ports differ from the chart's webhook 8443 and admin 8080")
check("--locked" in dockerfile, "Dockerfile: the build ignores Cargo.lock")
check("target" in (REPO / ".dockerignore").read_text().split(), ".dockerignore: target/ would be sent to the build")

# Defaults: selfSigned, nothing optional, and no caBundle (the server writes it).
defaults = render(None)
kinds, secret = check_common("defaults", defaults)
check(not (set(kinds) & (CERT_MANAGER | OPTIONAL)), f"defaults: optional objects rendered: {set(kinds) & (CERT_MANAGER | OPTIONAL)}")
check(secret == "apisix-canary-tls", f"defaults: self-signed Secret {secret}")
for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
    for w in kinds[("admissionregistration.k8s.io/v1", kind)][0]["webhooks"]:
        check("caBundle" not in w["clientConfig"], f"defaults: {kind} {w['name']} has a caBundle at install")

# existingSecret: the user's Secret mounted, the given caBundle written.
EXISTING = {"existingSecret": {"name": "my-tls", "caBundle": "Q0E="}}
kinds, secret = check_common("existingSecret", render(EXISTING))
check(secret == "my-tls", f"existingSecret: mounts {secret}")
for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
    for w in kinds[("admissionregistration.k8s.io/v1", kind)][0]["webhooks"]:
        check(w["clientConfig"].get("caBundle") == "Q0E=", f"existingSecret: {kind} {w['name']} caBundle")

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
for mode, values in [("defaults", None), ("existingSecret", EXISTING), ("certManager", {"certManager": {"enabled": True}})]:
    report = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE)
    bad = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    check(not bad, f"helm lint ({mode}): {bad}")

if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
print(f"chart ok: {len(defaults)} objects by default, {len(cm)} with cert-manager")
