//! The Kubernetes permissions `serve` needs, one row per resource, each saying where
//! the calls are made. The chart's ClusterRole and Role are rendered from this table
//! (`apisix-canary rbac` writes `charts/apisix-canary/files/rbac.yaml`); a test walks
//! `src/` and fails when the code uses an `Api<Kind>` that no row grants.
//!
//! Only the server's calls count: `status`, `report`, `promote` and friends run with
//! the user's own credentials, and the sim and the demo talk to the simulated cluster.

use serde::Serialize;

/// Where a row applies: every namespace (ClusterRole) or only ours (Role).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Cluster,
    OwnNamespace,
}

/// When a row applies: always, or only in the self-signed certificate mode
/// (`serve --self-signed-secret`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Always,
    SelfSigned,
}

/// In `names`, replaced by the chart with the name of our webhook configurations.
pub const WEBHOOK_CONFIGURATION: &str = "${webhookConfiguration}";
/// In `names`, replaced by the chart with the name of the self-signed Secret.
pub const SELF_SIGNED_SECRET: &str = "${selfSignedSecret}";

/// One resource and the verbs the server calls on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// The Rust type used as `Api<Kind>`; a subresource names its parent's kind.
    pub kind: &'static str,
    pub group: &'static str,
    pub resource: &'static str,
    pub verbs: &'static [&'static str],
    pub scope: Scope,
    pub mode: Mode,
    /// `resourceNames`: empty for every object of the resource.
    pub names: &'static [&'static str],
}

const fn grant(
    kind: &'static str,
    group: &'static str,
    resource: &'static str,
    verbs: &'static [&'static str],
) -> Grant {
    Grant { kind, group, resource, verbs, scope: Scope::Cluster, mode: Mode::Always, names: &[] }
}

/// A row of the self-signed mode.
const fn self_signed(
    kind: &'static str,
    group: &'static str,
    resource: &'static str,
    verbs: &'static [&'static str],
    scope: Scope,
    names: &'static [&'static str],
) -> Grant {
    Grant { kind, group, resource, verbs, scope, mode: Mode::SelfSigned, names }
}

/// Every permission of the server. Server-side apply (`Patch::Apply`) is authorized as
/// `patch`, also when it creates the object, so the copies need no `create`.
pub const GRANTS: &[Grant] = &[
    // controller.rs: Controller::new(canaries) and owns(Canary) list+watch;
    // controller.rs reconcile and canaries.rs get_opt; canaries.rs creates the Canary of
    // an annotation-mode Deployment, patches its spec, deletes it on opt-out;
    // finalizer() and act.rs Consume patch metadata.
    grant("Canary", "apisix-canary.dev", "canaries", &["get", "list", "watch", "create", "patch", "delete"]),
    // act.rs SetStatus: patch_status.
    grant("Canary", "apisix-canary.dev", "canaries/status", &["patch"]),
    // checks.rs: templates.get_opt.
    grant("MetricTemplate", "apisix-canary.dev", "metrictemplates", &["get"]),
    // analysis/alerts.rs: Api::<AlertProvider>.get.
    grant("AlertProvider", "apisix-canary.dev", "alertproviders", &["get"]),
    // controller.rs: watches + owns (list, watch); observe.rs get_opt of the target and
    // of `<d>-canary`; act.rs apply_canary (server-side apply) and write_lock (merge
    // patch); delete_generated deletes `<d>-canary`. A server-side apply that creates
    // the object is authorized as a create too.
    grant("Deployment", "apps", "deployments", &["get", "list", "watch", "create", "patch", "delete"]),
    // controller.rs owns (list, watch); observe.rs get_opt; act.rs apply_canary
    // (server-side apply of `<svc>-canary`, a create the first time) and delete_generated.
    grant("Service", "", "services", &["get", "list", "watch", "create", "patch", "delete"]),
    // controller.rs owns (list, watch); observe.rs get_opt of the user's and the
    // generated route; act.rs set_weight create, merge patch, get; delete_generated.
    grant("ApisixRoute", "apisix.apache.org", "apisixroutes", &["get", "list", "watch", "create", "patch", "delete"]),
    // observe.rs: rs.list, the ReplicaSets of the target.
    grant("ReplicaSet", "apps", "replicasets", &["list"]),
    // checks.rs ready_addresses: slices.list.
    grant("EndpointSlice", "discovery.k8s.io", "endpointslices", &["list"]),
    // controller/events.rs publish: create, and patch to bump a series' count.
    grant("Event", "", "events", &["create", "patch"]),
    // checks.rs (MetricTemplate secretRef) and analysis/alerts.rs (AlertProvider
    // secretRef): get.
    grant("Secret", "", "secrets", &["get"]),
    // lease.rs / lease/election.rs: kube-lease-manager gets, creates (AutoCreate) and
    // patches the Lease; election.rs reads it back with get. Our namespace only.
    Grant {
        kind: "Lease",
        group: "coordination.k8s.io",
        resource: "leases",
        verbs: &["get", "create", "patch"],
        scope: Scope::OwnNamespace,
        mode: Mode::Always,
        names: &[],
    },
    // tls/selfsigned.rs load and tick: the first replica creates the Secret (a create
    // cannot be limited to a name); the leader replaces it to renew (get is granted above).
    self_signed("Secret", "", "secrets", &["create"], Scope::OwnNamespace, &[]),
    self_signed("Secret", "", "secrets", &["update"], Scope::OwnNamespace, &[SELF_SIGNED_SECRET]),
    // tls/selfsigned.rs inject: get_opt, then a JSON patch of each webhook's caBundle.
    self_signed(
        "MutatingWebhookConfiguration",
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
        &["get", "patch"],
        Scope::Cluster,
        &[WEBHOOK_CONFIGURATION],
    ),
    self_signed(
        "ValidatingWebhookConfiguration",
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
        &["get", "patch"],
        Scope::Cluster,
        &[WEBHOOK_CONFIGURATION],
    ),
    // tls/selfsigned.rs inject: get_opt, then a merge patch of the conversion's caBundle.
    self_signed(
        "CustomResourceDefinition",
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        &["get", "patch"],
        Scope::Cluster,
        &["canaries.apisix-canary.dev"],
    ),
];

/// A Kubernetes PolicyRule, as the chart writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<String>,
    pub verbs: Vec<String>,
}

/// The rules of the ClusterRole and of the Role in our namespace, and those the
/// self-signed mode adds to each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rules {
    pub cluster_rules: Vec<Rule>,
    pub namespace_rules: Vec<Rule>,
    pub self_signed: ModeRules,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModeRules {
    pub cluster_rules: Vec<Rule>,
    pub namespace_rules: Vec<Rule>,
}

fn rules(scope: Scope, mode: Mode) -> Vec<Rule> {
    let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
    GRANTS
        .iter()
        .filter(|g| g.scope == scope && g.mode == mode)
        .map(|g| Rule {
            api_groups: vec![g.group.to_owned()],
            resources: vec![g.resource.to_owned()],
            resource_names: strings(g.names),
            verbs: strings(g.verbs),
        })
        .collect()
}

pub fn rules_of_grants() -> Rules {
    Rules {
        cluster_rules: rules(Scope::Cluster, Mode::Always),
        namespace_rules: rules(Scope::OwnNamespace, Mode::Always),
        self_signed: ModeRules {
            cluster_rules: rules(Scope::Cluster, Mode::SelfSigned),
            namespace_rules: rules(Scope::OwnNamespace, Mode::SelfSigned),
        },
    }
}

/// One API call as the authorizer sees it (an audit log's verb and objectRef).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub verb: String,
    pub group: String,
    /// `resource` or `resource/subresource`.
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

/// Whether the rules of a server in `own_namespace` allow `call`, with the self-signed
/// rows when `self_signed`, their placeholders replaced by `named`.
pub fn allows(call: &Call, own_namespace: &str, self_signed: bool, named: impl Fn(&str) -> String) -> bool {
    GRANTS.iter().any(|g| {
        let scope_ok = g.scope == Scope::Cluster || call.namespace.as_deref() == Some(own_namespace);
        let mode_ok = g.mode == Mode::Always || self_signed;
        let names_ok = g.names.is_empty() || call.name.as_ref().is_some_and(|n| g.names.iter().any(|x| named(x) == *n));
        scope_ok
            && mode_ok
            && names_ok
            && g.group == call.group
            && g.resource == call.resource
            && g.verbs.contains(&call.verb.as_str())
    })
}

/// Where the chart reads the rules, relative to the repository.
pub const CHART_FILE: &str = "charts/apisix-canary/files/rbac.yaml";
const HEADER: &str = "# Generated by `apisix-canary rbac` from src/rbac.rs: do not edit.\n";

/// `charts/apisix-canary/files/rbac.yaml`.
pub fn yaml() -> Result<String, serde_saphyr::SerializeError> {
    Ok(format!("{HEADER}{}", serde_saphyr::to_string(&rules_of_grants())?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::Path;

    /// Code that never talks to a real cluster with the server's ServiceAccount, and
    /// this file, whose examples are not calls.
    const NOT_THE_SERVER: &[&str] = &["testbed", "sim", "demo", "rbac"];

    fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
            if NOT_THE_SERVER.contains(&stem) {
                continue;
            }
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// The kinds written as `Api<Kind>` or `Api::<Kind>`, also through the controller's
    /// cached metadata (`Api<Cached<Kind>>`, `Api<PartialObjectMeta<Kind>>`); one-letter
    /// generics skipped.
    fn kinds_used(source: &str) -> BTreeSet<String> {
        let mut kinds = BTreeSet::new();
        for opener in ["Api<", "Api::<"] {
            for (at, _) in source.match_indices(opener) {
                let preceded = source[..at].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_');
                if preceded {
                    continue;
                }
                let rest = &source[at + opener.len()..];
                let rest = ["Cached<", "PartialObjectMeta<"].iter().find_map(|p| rest.strip_prefix(p)).unwrap_or(rest);
                let kind: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if kind.len() > 1 {
                    kinds.insert(kind);
                }
            }
        }
        kinds
    }

    #[test]
    fn every_kind_the_code_uses_is_granted() {
        let mut files = Vec::new();
        rust_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
        let granted: BTreeSet<&str> = GRANTS.iter().map(|g| g.kind).collect();
        let mut missing = Vec::new();
        let mut used = BTreeSet::new();
        for file in &files {
            let source = std::fs::read_to_string(file).unwrap();
            for kind in kinds_used(&source) {
                if !granted.contains(kind.as_str()) {
                    missing.push(format!("{kind} in {}", file.display()));
                }
                used.insert(kind);
            }
        }
        assert!(missing.is_empty(), "Api<Kind> uses with no row in rbac::GRANTS: {missing:?}");
        // And no row for a kind the code never names: least privilege.
        let unused: Vec<_> = granted.iter().filter(|k| !used.contains(**k)).collect();
        assert!(unused.is_empty(), "rows in rbac::GRANTS for kinds the code never uses: {unused:?}");
    }

    #[test]
    fn the_scan_sees_the_forms_the_code_writes() {
        let source = "let a: Api<Canary> = x; Api::<Secret>::namespaced(c, n); fn api<K>() -> Api<K>; MyApi<Nope>; \
                      Api::<Cached<Service>>::all(c)";
        let kinds = ["Canary", "Secret", "Service"].map(str::to_owned);
        assert_eq!(kinds_used(source), BTreeSet::from(kinds));
    }

    #[test]
    fn one_row_per_resource_and_known_verbs_only() {
        let known = ["get", "list", "watch", "create", "update", "patch", "delete"];
        let mut seen = BTreeSet::new();
        for g in GRANTS {
            let key = (g.group, g.resource, g.scope == Scope::Cluster, g.mode == Mode::Always, g.names);
            assert!(seen.insert(key), "two rows for {}/{}", g.group, g.resource);
            // Kubernetes cannot limit a create or a list to names.
            assert!(g.names.is_empty() || !g.verbs.iter().any(|v| ["create", "list", "watch"].contains(v)), "{g:?}");
            assert!(g.verbs.iter().all(|v| known.contains(v)), "unknown verb in {:?}", g);
            // A watch without a list never starts: a watcher lists first.
            assert!(!g.verbs.contains(&"watch") || g.verbs.contains(&"list"), "{:?}", g);
        }
    }

    #[test]
    fn leases_only_in_our_namespace() {
        let r = rules_of_grants();
        assert_eq!(r.namespace_rules.len(), 1);
        assert_eq!(r.namespace_rules[0].resources, ["leases"]);
        assert!(r.cluster_rules.iter().all(|rule| rule.resources != ["leases"]));
    }

    #[test]
    fn allows_reads_the_rows_as_kubernetes_rbac_does() {
        let call = |verb: &str, group: &str, resource: &str, ns: Option<&str>, name: Option<&str>| Call {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            namespace: ns.map(Into::into),
            name: name.map(Into::into),
        };
        let named = |p: &str| if p == SELF_SIGNED_SECRET { "tls".to_owned() } else { "apisix-canary".to_owned() };
        let allowed = |c: &Call, self_signed: bool| allows(c, "apisix-canary", self_signed, named);
        assert!(allowed(&call("patch", "apisix-canary.dev", "canaries/status", Some("shop"), Some("a")), false));
        assert!(!allowed(&call("update", "apisix-canary.dev", "canaries/status", Some("shop"), Some("a")), false));
        assert!(allowed(&call("create", "coordination.k8s.io", "leases", Some("apisix-canary"), None), false));
        assert!(
            !allowed(&call("create", "coordination.k8s.io", "leases", Some("shop"), None), false),
            "own namespace only"
        );
        assert!(!allowed(&call("delete", "", "events", Some("shop"), Some("e")), false));
        assert!(
            !allowed(&call("update", "", "secrets", Some("apisix-canary"), Some("tls")), false),
            "self-signed rows off"
        );
        assert!(allowed(&call("update", "", "secrets", Some("apisix-canary"), Some("tls")), true));
        assert!(!allowed(&call("update", "", "secrets", Some("apisix-canary"), Some("other")), true), "named");
        assert!(!allowed(&call("update", "", "secrets", Some("shop"), Some("tls")), true), "own namespace only");
        let webhooks = "mutatingwebhookconfigurations";
        assert!(allowed(&call("patch", "admissionregistration.k8s.io", webhooks, None, Some("apisix-canary")), true));
        assert!(!allowed(&call("patch", "admissionregistration.k8s.io", webhooks, None, Some("istio")), true));
    }

    #[test]
    fn the_self_signed_mode_writes_only_its_own_objects() {
        let r = rules_of_grants().self_signed;
        for rule in &r.cluster_rules {
            assert!(!rule.resource_names.is_empty(), "a cluster-wide write of every object: {rule:?}");
        }
        let crd_names: Vec<String> = crate::manifests::crds(&crate::manifests::Target::default())
            .into_iter()
            .filter(|c| c.spec.conversion.as_ref().is_some_and(|c| c.strategy == "Webhook"))
            .filter_map(|c| c.metadata.name)
            .collect();
        let crd_rule = r.cluster_rules.iter().find(|r| r.resources == ["customresourcedefinitions"]).unwrap();
        assert_eq!(crd_rule.resource_names, crd_names, "the CRDs whose conversion is ours");
        assert!(r.namespace_rules.iter().all(|rule| rule.resources == ["secrets"]));
    }
}
