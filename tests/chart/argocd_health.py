"""Runs charts/apisix-canary/files/argocd-health.lua in a real Lua (lupa: Lua 5.1, the
language of Argo CD's gopher-lua, and Lua 5.4) against the cases of
tests/fixtures/argocd/health.yaml, as Argo CD does: the Canary as the global `obj`, the
returned table read as {status, message}. Also checks that every case is shaped as the
Canary CRD says (charts/apisix-canary/crds/crds.yaml), that every phase of the CRD has a
case, and that every condition message is one the controller writes
(src/release/lifecycle/messages.rs). Run by tests/chart.rs; exits non-zero listing
every problem."""

import copy
import re
import sys
from pathlib import Path

import yaml
from lupa import lua51, lua54

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "charts" / "apisix-canary" / "files" / "argocd-health.lua"
FIXTURES = REPO / "tests" / "fixtures" / "argocd" / "health.yaml"
CRDS = REPO / "charts" / "apisix-canary" / "crds" / "crds.yaml"
MESSAGES = REPO / "src" / "release" / "lifecycle" / "messages.rs"
# What Argo CD accepts from a health check.
ARGO_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}

problems = []


def check(ok, message):
    if not ok:
        problems.append(message)


def to_python(lua, value):
    if lua.eval("type")(value) == "table":
        return {k: to_python(lua, v) for k, v in value.items()}
    return value


def health(runtime, obj):
    """The table the script returns for obj, in a fresh interpreter like Argo CD's."""
    lua = runtime.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    return to_python(lua, lua.execute(SCRIPT.read_text()))


def canary_schema():
    for crd in yaml.safe_load_all(CRDS.read_text()):
        if crd and crd["spec"]["names"]["kind"] == "Canary":
            (v1beta1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
            return v1beta1["schema"]["openAPIV3Schema"]
    sys.exit(f"{CRDS}: no Canary CRD")


TYPES = {"string": str, "integer": int, "boolean": bool, "object": dict, "array": list, "number": (int, float)}


def conforms(value, schema, path):
    """apiextensions' checks that matter for a fixture: types, enums, known fields."""
    if value is None:
        check(schema.get("nullable", False), f"{path}: null")
        return
    if schema.get("x-kubernetes-int-or-string"):
        check(isinstance(value, (int, str)), f"{path}: {value!r} is no int-or-string")
        return
    t = schema.get("type")
    if t:
        ok = isinstance(value, TYPES[t]) and not (t in ("integer", "number") and isinstance(value, bool))
        check(ok, f"{path}: {value!r} is no {t}")
    if "enum" in schema:
        check(value in schema["enum"], f"{path}: {value!r} not one of {schema['enum']}")
    if isinstance(value, dict) and not schema.get("x-kubernetes-preserve-unknown-fields"):
        props = schema.get("properties", {})
        for k, v in value.items():
            if k in props:
                conforms(v, props[k], f"{path}.{k}")
            elif isinstance(schema.get("additionalProperties"), dict):
                conforms(v, schema["additionalProperties"], f"{path}.{k}")
            else:
                check(False, f"{path}.{k}: not a field of the Canary CRD")
        for k in schema.get("required", []):
            check(k in value, f"{path}.{k}: required")
    if isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            conforms(v, schema["items"], f"{path}[{i}]")


def controller_messages():
    """The Promoted condition's messages: each constant, or a prefix ending in ':'."""
    consts = re.findall(r'pub const \w+: &str = "((?:[^"\\]|\\.)*)";', MESSAGES.read_text())
    check(len(consts) > 5, f"{MESSAGES}: no message constants found")
    return consts


fixtures = yaml.safe_load(FIXTURES.read_text())
base = yaml.safe_load((FIXTURES.parent / fixtures["canary"]).read_text())
schema = canary_schema()
phases = [p for p in schema["properties"]["status"]["properties"]["phase"]["enum"] if p is not None]
messages = controller_messages()
seen_phases = set()
for case in fixtures["cases"]:
    name = case["name"]
    obj = copy.deepcopy(base)
    obj["spec"].update(case.get("spec", {}))
    if "status" in case:
        obj["status"] = case["status"]
    for part in ("spec", "status"):
        if part in obj:
            conforms(obj[part], schema["properties"][part], f"{name}: {part}")
    status = obj.get("status", {})
    seen_phases.add(status.get("phase"))
    for c in status.get("conditions", []):
        m = c.get("message")
        known = m is None or m in messages or any(p.endswith(":") and m.startswith(p + " ") for p in messages)
        check(known, f"{name}: condition message {m!r} is not one the controller writes ({MESSAGES.name})")
        check(c.get("reason") == status.get("phase", "Initializing"), f"{name}: condition reason {c.get('reason')!r} is not the phase")
    for runtime in (lua51, lua54):
        try:
            got = health(runtime, obj)
        except Exception as e:  # a Lua error: Argo CD shows the resource as Unknown
            problems.append(f"{name} ({runtime.LUA_VERSION}): the script failed: {e}")
            continue
        check(set(got) == {"status", "message"}, f"{name}: returned fields {sorted(got)}")
        check(got.get("status") in ARGO_STATUSES, f"{name}: status {got.get('status')!r} is not one Argo CD knows")
        check(got == case["health"], f"{name} (Lua {'.'.join(map(str, runtime.LUA_VERSION))}): got {got}, want {case['health']}")

for phase in phases:
    check(phase in seen_phases, f"phase {phase} (Canary CRD) has no case in {FIXTURES.name}")
    runtime_obj = copy.deepcopy(base)
    runtime_obj["status"] = {"phase": phase}
    check(health(lua51, runtime_obj)["status"] != "Unknown", f"phase {phase}: the script says Unknown")

if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
print(f"argocd-health.lua ok: {len(fixtures['cases'])} cases, {len(phases)} phases, Lua 5.1 and 5.4")
