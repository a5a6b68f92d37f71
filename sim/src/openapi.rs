//! OpenAPI v3 as kube-apiserver 1.33 serves it: the discovery root and, per
//! group-version, a document with the kinds' schemas (k8s-openapi's for the built-in
//! kinds, the CRDs' own for custom resources, see [`builtin`] and [`crd`]) that
//! `kubectl explain` reads, and PATCH operations carrying `x-kubernetes-group-version-kind`
//! and the `fieldValidation` parameter, from which kubectl learns that the server
//! validates fields (so it does not validate on the client).
//!
//! Documents are built on first use and cached by the resources they describe (a CRD
//! change is a new `Resource`, hence a new document); each is served as the bytes built
//! then, under an ETag that is the hash of those bytes, which the root lists as
//! `?hash=` so that kubectl's HTTP cache refetches exactly the documents that changed.

mod builtin;
mod crd;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha512};

use super::httpd::{Body, full, json_response};
use super::resources::{Resource, Resources};
use super::status::ApiError;

/// `api/v1`, `apis/apps/v1`, ...
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") }
}

/// One group-version's document, serialized once.
#[derive(Debug)]
pub struct Document {
    pub bytes: Bytes,
    /// Hex SHA-512 of `bytes`, as kube-openapi computes its ETags.
    pub etag: String,
}

/// A cached document and the resources it was built from (held, so that an identity
/// compared against is never a freed and reused allocation).
struct Entry {
    from: Vec<Arc<Resource>>,
    document: Arc<Document>,
}

/// Documents by group-version path. A few per path: processes running several sims
/// (tests) ask for the same group-version with different CRDs in turn.
static CACHE: LazyLock<Mutex<HashMap<String, Vec<Entry>>>> = LazyLock::new(Mutex::default);
const ENTRIES_PER_PATH: usize = 4;

/// The same resources: the same `Arc` (a CRD is replaced, never changed in place), or
/// equal values (the built-in kinds every sim creates alike).
fn same(a: &[Arc<Resource>], b: &[Arc<Resource>]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(a, b)| Arc::ptr_eq(a, b) || a == b)
}

/// The document of `gv` (`api/v1`, `apis/<group>/<version>`), or `None` if nothing is
/// served there.
pub fn document(resources: &Resources, gv: &str) -> Option<Arc<Document>> {
    let serving: Vec<Arc<Resource>> =
        resources.snapshot().into_iter().filter(|r| r.versions.iter().any(|v| gv_path(&r.group, v) == gv)).collect();
    if serving.is_empty() {
        return None;
    }
    // Newest first: after a CRD change the current entry matches by identity at once.
    let cached = |cache: &HashMap<String, Vec<Entry>>| {
        cache.get(gv)?.iter().rev().find(|e| same(&e.from, &serving)).map(|e| e.document.clone())
    };
    if let Some(document) = cached(&CACHE.lock().unwrap_or_else(|p| p.into_inner())) {
        return Some(document);
    }
    // Built outside the lock: the first build of a large group takes a while, and two
    // requests racing here only build the same document twice.
    let document = Arc::new(build(gv, &serving));
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    let entries = cache.entry(gv.to_owned()).or_default();
    if entries.len() >= ENTRIES_PER_PATH {
        entries.remove(0);
    }
    entries.push(Entry { from: serving, document: document.clone() });
    Some(document)
}

/// The document of the resources `serving` at `gv`.
fn build(gv: &str, serving: &[Arc<Resource>]) -> Document {
    let version = gv.rsplit('/').next().unwrap_or_default();
    let builtins: Vec<builtin::Gvk<'_>> =
        serving.iter().filter(|r| r.crd.is_none()).map(|r| (r.group.as_str(), version, r.kind.as_str())).collect();
    let (mut schemas, names) = builtin::components(&builtins);
    let mut names = names.into_iter();
    let mut paths = Map::new();
    for r in serving {
        let name = match &r.crd {
            Some(crd) => crd::add(r, version, crd, &mut schemas),
            None => names.next().flatten().unwrap_or_else(|| {
                // A built-in kind without a typed form: an object, as kube publishes a
                // schemaless kind (a unit test keeps every built-in kind typed).
                let name = crd::schema_name(&r.group, version, &r.kind);
                let gvk = json!([{"group": r.group, "version": version, "kind": r.kind}]);
                schemas.insert(name.clone(), json!({"type": "object", "x-kubernetes-group-version-kind": gvk}));
                name
            }),
        };
        paths.insert(item_path(gv, r), json!({"patch": patch(r, version, &name)}));
    }
    let title = if serving.iter().all(|r| r.crd.is_some()) {
        json!({"title": "Kubernetes CRD Swagger", "version": "v0.1.0"})
    } else {
        let (major, minor) = super::apiserver::VERSION;
        json!({"title": "Kubernetes", "version": format!("v{major}.{minor}.0")})
    };
    let document = json!({"openapi": "3.0.0", "info": title, "paths": paths, "components": {"schemas": schemas}});
    let bytes = Bytes::from(serde_json::to_vec(&document).unwrap_or_default());
    let etag = Sha512::digest(&bytes).iter().map(|b| format!("{b:02X}")).collect();
    Document { bytes, etag }
}

/// `/apis/apps/v1/namespaces/{namespace}/deployments/{name}`: where kubectl explain
/// looks for a resource's kind, and its field validation for the PATCH parameters.
fn item_path(gv: &str, r: &Resource) -> String {
    if r.namespaced {
        format!("/{gv}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
    } else {
        format!("/{gv}/{}/{{name}}", r.plural)
    }
}

/// The PATCH operation of `r`'s objects. No request body is described: kubectl 1.33 would
/// read `application/strategic-merge-patch+json` in it as "compute apply's patches from
/// these schemas", and k8s-openapi's schemas lack the patch strategies and merge keys
/// (`x-kubernetes-patch-merge-key`); without it kubectl uses its compiled-in types for
/// the built-in kinds and a merge patch for custom resources, as it did before.
fn patch(r: &Resource, version: &str, schema: &str) -> Value {
    let query =
        |name: &str, type_: &str| json!({"name": name, "in": "query", "schema": {"type": type_, "uniqueItems": true}});
    let ok = json!({"$ref": format!("{}{schema}", builtin::COMPONENTS)});
    json!({
        "description": format!("partially update the specified {}", r.kind),
        "x-kubernetes-group-version-kind": {"group": r.group, "version": version, "kind": r.kind},
        "x-kubernetes-action": "patch",
        "parameters": [
            query("dryRun", "string"),
            query("fieldManager", "string"),
            query("fieldValidation", "string"),
            query("force", "boolean"),
        ],
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": ok}}}},
    })
}

/// `GET /openapi/v3`: every group-version's document, at the URL of its current hash.
pub fn root(resources: &Resources) -> Value {
    let mut gvs: Vec<String> =
        resources.snapshot().iter().flat_map(|r| r.versions.iter().map(|v| gv_path(&r.group, v))).collect();
    gvs.sort();
    gvs.dedup();
    let paths: Map<String, Value> = gvs
        .into_iter()
        .filter_map(|gv| {
            let document = document(resources, &gv)?;
            let url = format!("/openapi/v3/{gv}?hash={}", document.etag);
            Some((gv, json!({"serverRelativeURL": url})))
        })
        .collect();
    json!({"paths": paths})
}

/// `GET /openapi/v3/<gv>[?hash=H]`, as kube-openapi answers it: at the current hash the
/// document may be cached for good (`immutable`); at a stale one, a redirect to the
/// current; without one, the document with its ETag (`If-None-Match` gets a 304).
pub fn respond(
    resources: &Resources,
    gv: &str,
    hash: Option<&str>,
    if_none_match: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let document =
        document(resources, gv).ok_or_else(|| ApiError::NotFound { kind: "openapi".into(), name: gv.to_owned() })?;
    let header_value = |s: &str| HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static(""));
    if hash.is_some_and(|h| h != document.etag) {
        let mut response = json_response(StatusCode::MOVED_PERMANENTLY, &json!({}));
        let location = format!("/openapi/v3/{gv}?hash={}", document.etag);
        response.headers_mut().insert(header::LOCATION, header_value(&location));
        return Ok(response);
    }
    let etag = format!("\"{}\"", document.etag);
    let mut response = if if_none_match.is_some_and(|m| m.split(',').any(|t| t.trim() == etag || t.trim() == "*")) {
        let mut response = Response::new(full(Bytes::new()));
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        let mut response = Response::new(full(document.bytes.clone()));
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    };
    response.headers_mut().insert(header::ETAG, header_value(&etag));
    if hash.is_some() {
        let (now, year) =
            (k8s_openapi::jiff::Timestamp::now(), k8s_openapi::jiff::SignedDuration::from_hours(24 * 365));
        let expires = now.checked_add(year).unwrap_or(now);
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, immutable"));
        let expires = expires.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string();
        response.headers_mut().insert(header::EXPIRES, header_value(&expires));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(resources: &Resources, gv: &str) -> Value {
        serde_json::from_slice(&document(resources, gv).unwrap().bytes).unwrap()
    }

    #[test]
    fn builtin_document_has_the_kinds_and_their_operations() {
        let resources = Resources::default();
        let apps = parsed(&resources, "apis/apps/v1");
        let patch = &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"],
            json!({"group": "apps", "version": "v1", "kind": "Deployment"})
        );
        assert!(patch["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "fieldValidation"));
        let schemas = &apps["components"]["schemas"];
        assert!(schemas["io.k8s.api.apps.v1.ReplicaSet"]["properties"]["spec"].is_object());
        assert!(schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"].is_object());
        assert!(document(&resources, "apis/nosuch/v1").is_none());
    }

    #[test]
    fn documents_are_cached_and_a_crd_change_is_a_new_document() {
        let resources = Resources::default();
        let first = document(&resources, "api/v1").unwrap();
        assert!(Arc::ptr_eq(&first, &document(&resources, "api/v1").unwrap()));
        // Another sim's built-in kinds are equal: the same document.
        assert!(Arc::ptr_eq(&first, &document(&Resources::default(), "api/v1").unwrap()));

        let mut crd = json!({
            "metadata": {"name": "widgets.cache.example.com"},
            "spec": {"group": "cache.example.com", "scope": "Namespaced",
                "names": {"kind": "Widget", "plural": "widgets"},
                "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                    "type": "object", "properties": {"spec": {"type": "object", "description": "First."}}}}}]},
        });
        resources.upsert_crd(&crd);
        let before = document(&resources, "apis/cache.example.com/v1").unwrap();
        let root = root(&resources);
        let url = root["paths"]["apis/cache.example.com/v1"]["serverRelativeURL"].as_str().unwrap().to_owned();
        assert!(url.ends_with(&before.etag));
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["description"] = json!("Second.");
        resources.upsert_crd(&crd);
        let after = document(&resources, "apis/cache.example.com/v1").unwrap();
        assert_ne!(before.etag, after.etag);
        let text = String::from_utf8(after.bytes.to_vec()).unwrap();
        assert!(text.contains("Second.") && !text.contains("First."));
        let root = super::root(&resources);
        assert_ne!(root["paths"]["apis/cache.example.com/v1"]["serverRelativeURL"], url.as_str());
    }

    #[test]
    fn stale_hash_redirects_current_hash_is_immutable() {
        let resources = Resources::default();
        let etag = document(&resources, "apis/apps/v1").unwrap().etag.clone();
        let stale = respond(&resources, "apis/apps/v1", Some("0"), None).unwrap();
        assert_eq!(stale.status(), StatusCode::MOVED_PERMANENTLY);
        assert_eq!(stale.headers()[header::LOCATION], format!("/openapi/v3/apis/apps/v1?hash={etag}").as_str());
        let current = respond(&resources, "apis/apps/v1", Some(&etag), None).unwrap();
        assert_eq!(current.status(), StatusCode::OK);
        assert_eq!(current.headers()[header::CACHE_CONTROL], "public, immutable");
        let revalidated = respond(&resources, "apis/apps/v1", None, Some(&format!("\"{etag}\""))).unwrap();
        assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED);
    }
}
