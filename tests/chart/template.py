"""Renders charts/apisix-canary with Helm's own library (helm-python-sdk), as `helm
template --include-crds` would, for tests that install the result with kubectl:
template.py CHART NAMESPACE VALUES_JSON OUT_DIR writes OUT_DIR/crds.yaml (the chart's
crds/, which Helm installs first and never templates) and OUT_DIR/templates.yaml (the
rendered templates in Helm's install order). Run by tests/chart_sim.rs in the venv
`.ci/run` makes."""

import json
import sys
from pathlib import Path

import helm_python as helm
import yaml

CHART, NAMESPACE, VALUES, OUT = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3]), Path(sys.argv[4])

# Helm's InstallOrder (pkg/release/util/kind_sorter.go); other kinds go last, in file order.
INSTALL_ORDER = [
    "PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy",
    "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList", "ConfigMap", "StorageClass",
    "PersistentVolume", "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole",
    "ClusterRoleList", "ClusterRoleBinding", "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding",
    "RoleBindingList", "Service", "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
    "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress", "APIService",
]

chart = helm.Chart.load(str(CHART))
rendered = chart.render(VALUES or None, name="apisix-canary", namespace=NAMESPACE, is_install=True)
objects = []
for path, text in sorted(rendered.items()):
    objects.extend(d for d in yaml.safe_load_all(text) if d)
rank = {kind: n for n, kind in enumerate(INSTALL_ORDER)}
objects.sort(key=lambda o: rank.get(o["kind"], len(INSTALL_ORDER)))  # stable: file order within a kind

OUT.mkdir(parents=True, exist_ok=True)
(OUT / "templates.yaml").write_text(yaml.safe_dump_all(objects, sort_keys=False))
(OUT / "crds.yaml").write_text("".join(c["data"] if c["data"].endswith("\n") else c["data"] + "\n" for c in chart.crds))
print(f"{len(objects)} objects, {len(chart.crds)} CRD files")
