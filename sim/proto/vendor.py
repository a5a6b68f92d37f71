#!/usr/bin/env python3
"""Copies the Kubernetes protobuf schemas the sim decodes (stable API versions and
apimachinery) from a checkout of kube-rs/k8s-pb, without their comments.

    python3 sim/proto/vendor.py /path/to/k8s-pb

Vendored from k8s-pb 357bf44 (Kubernetes 1.36). The schemas are data: sim/build.rs compiles them into a descriptor set with protox.
"""
import pathlib
import re
import sys

FILES = [
    "apimachinery/pkg/api/resource",
    "apimachinery/pkg/apis/meta/v1",
    "apimachinery/pkg/runtime",
    "apimachinery/pkg/runtime/schema",
    "apimachinery/pkg/util/intstr",
    "apiextensions-apiserver/pkg/apis/apiextensions/v1",
    "kube-aggregator/pkg/apis/apiregistration/v1",
] + [
    f"api/{group}/v1"
    for group in [
        "admissionregistration", "apps", "authentication", "authorization", "autoscaling", "batch",
        "certificates", "coordination", "core", "discovery", "events", "flowcontrol", "networking",
        "node", "policy", "rbac", "scheduling", "storage",
    ]
] + ["api/autoscaling/v2"]

LICENSE = re.compile(r"/\*.*?\*/", re.S)
COMMENT = re.compile(r"^\s*//.*\n", re.M)


def main(repo: str) -> None:
    source = pathlib.Path(repo) / "k8s-pb-codegen" / "protos"
    target = pathlib.Path(__file__).parent
    for name in FILES:
        text = (source / name / "generated.proto").read_text()
        body = COMMENT.sub("", LICENSE.sub("", text, count=1))
        body = re.sub(r"\n{3,}", "\n\n", body).strip() + "\n"
        out = target / name / "generated.proto"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("// Copyright The Kubernetes Authors. Apache License 2.0.\n"
                       f"// From kube-rs/k8s-pb, k8s-pb-codegen/protos/{name}, comments removed.\n\n" + body)


if __name__ == "__main__":
    main(sys.argv[1])
