//! The simulated kube-apiserver's HTTP surface: discovery, the REST verbs on every
//! resource path, watches. `kube::Client` talks to it unchanged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::cluster::{Cluster, Ctx, DeleteOptions, Patch, Written};
use super::httpd::{Body, error_response, full, json_response};
use super::resources::{Resource, Target};
use super::selector::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::table::Shape;
use super::watch;

/// `POST`: every open watch ends now, as when an API server restarts.
pub const CUT_WATCHES_PATH: &str = "/sim/cut-watches";

/// The Kubernetes version the sim claims to be.
pub const VERSION: (&str, &str) = ("1", "33");

/// Shared by every request of one simulated API server.
#[derive(Debug)]
pub struct ApiServer {
    pub cluster: Arc<Cluster>,
    /// Set: every resource request is written there, as kube-apiserver's audit log.
    audit: Option<super::audit::AuditLog>,
    /// Fired to cut every open watch stream (clients must resume).
    /// What ends the open watches, by the User-Agent of their clients.
    cuts: Mutex<std::collections::HashMap<String, CancellationToken>>,
    /// Fired once at shutdown.
    pub stop: CancellationToken,
    /// The fault rules in force (none unless a test sets some).
    pub faults: super::faults::Injector,
    /// The load tester, whose pods `kubectl exec` runs commands in.
    pub loadtester: std::sync::OnceLock<super::loadtest::LoadTester>,
}

/// A parsed resource path.
#[derive(Debug, Clone)]
struct Path {
    group: String,
    version: String,
    namespace: Option<String>,
    plural: String,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_path(path: &str) -> Option<Path> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", version, rest @ ..] => (String::new(), (*version).to_owned(), rest),
        ["apis", group, version, rest @ ..] => ((*group).to_owned(), (*version).to_owned(), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() && !matches!(rest, ["status" | "finalize"]) => {
            (Some((*ns).to_owned()), rest)
        }
        _ => (None, rest),
    };
    let (plural, name, sub) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, sub] => (*plural, Some(*name), Some(*sub)),
        _ => return None,
    };
    Some(Path {
        group,
        version,
        namespace,
        plural: plural.to_owned(),
        name: name.map(str::to_owned),
        sub: sub.map(str::to_owned),
    })
}

fn query(req: &Request<Incoming>) -> HashMap<String, String> {
    req.uri()
        .query()
        .map(|q| {
            q.split('&')
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    Some((decode(k)?, decode(v)?))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Percent-decoding of a query component (`+` is a space).
fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The verb and object of a resource request, as kube-apiserver's authorizer sees them.
fn attributes(req: &Request<Incoming>) -> Option<super::audit::Attributes> {
    let p = parse_path(req.uri().path().trim_end_matches('/'))?;
    let watch = query(req).get("watch").is_some_and(|w| w == "true" || w == "1");
    Some(super::audit::Attributes {
        verb: super::audit::Attributes::verb(req.method(), p.name.is_some(), watch),
        group: p.group,
        version: p.version,
        resource: p.plural,
        subresource: p.sub,
        namespace: p.namespace,
        name: p.name,
    })
}

impl ApiServer {
    pub fn new(cluster: Arc<Cluster>, stop: CancellationToken, audit: Option<super::audit::AuditLog>) -> Self {
        Self {
            cluster,
            audit,
            cuts: Mutex::default(),
            stop,
            faults: Default::default(),
            loadtester: Default::default(),
        }
    }

    /// Ends every open watch stream now (of the clients whose User-Agent contains
    /// `agent`, when given); clients resume from their last version.
    pub fn cut_watches(&self, agent: Option<&str>) {
        let mut cuts = self.cuts.lock().unwrap_or_else(|p| p.into_inner());
        cuts.retain(|ua, token| {
            let hit = agent.is_none_or(|a| ua.contains(a));
            if hit {
                token.cancel();
            }
            !hit
        });
    }

    /// What ends the watches of a client with this User-Agent.
    fn cut_token(&self, agent: &str) -> CancellationToken {
        self.cuts.lock().unwrap_or_else(|p| p.into_inner()).entry(agent.to_owned()).or_default().clone()
    }

    /// Answers one request.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_owned();
        let method = req.method().clone();
        if path == super::faults::PATH {
            return super::faults::endpoint(&self.faults, req).await;
        }
        if path == CUT_WATCHES_PATH && method == Method::POST {
            // `?compact=true`: the history goes too, so resuming watches get 410 Gone;
            // `?userAgent=S`: only the watches of clients whose User-Agent contains S.
            let q = query(&req);
            if q.get("compact").is_some_and(|c| c == "true") {
                self.cluster.store.compact();
            }
            self.cut_watches(q.get("userAgent").map(String::as_str));
            return json_response(StatusCode::OK, &json!({"cut": true}));
        }
        // What the authorizer would see, once for the fault rules and the audit log.
        let agent = req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let (uri, received) = (req.uri().to_string(), k8s_openapi::jiff::Timestamp::now());
        let attributes = if self.audit.is_some() || self.faults.armed() { attributes(&req) } else { None };
        let fault = attributes.as_ref().filter(|_| self.faults.armed()).and_then(|a| {
            self.faults.hit(&super::faults::Request {
                verb: a.verb,
                resource: &a.resource,
                subresource: a.subresource.as_deref(),
                user_agent: &agent,
            })
        });
        if let Some(delay) = fault.as_ref().and_then(super::faults::Fault::delay) {
            tokio::time::sleep(delay).await;
        }
        if let Some(super::faults::Fault::Error { code, retry_after_seconds }) = fault {
            let error = super::faults::Fault::error(code, retry_after_seconds, &path);
            tracing::debug!(%method, path, code, "sim api fault injected");
            return error_response(&error);
        }
        let result = self.route(req).await;
        let response = result.unwrap_or_else(|e| error_response(&e));
        tracing::debug!(%method, path, status = response.status().as_u16(), "sim api request");
        if let (Some(audit), Some(attributes)) = (&self.audit, &attributes) {
            audit.record(&uri, &agent, attributes, response.status().as_u16(), received);
        }
        if fault == Some(super::faults::Fault::LoseResponse) {
            // Served, but the connection breaks before the answer's body arrives.
            let (parts, _) = response.into_parts();
            return Response::from_parts(parts, super::faults::lost());
        }
        response
    }

    async fn route(self: &Arc<Self>, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
        let path = req.uri().path().trim_end_matches('/').to_owned();
        let resources = &self.cluster.resources;
        match path.as_str() {
            "/version" => {
                let (major, minor) = VERSION;
                return Ok(json_response(
                    StatusCode::OK,
                    &json!({
                        "major": major, "minor": minor, "gitVersion": format!("v{major}.{minor}.0-apisix-canary-sim"),
                        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
                        "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64",
                    }),
                ));
            }
            "/healthz" | "/livez" | "/readyz" => return Ok(Response::new(full("ok"))),
            "/api" => {
                return Ok(json_response(
                    StatusCode::OK,
                    &json!({
                        "kind": "APIVersions", "versions": ["v1"],
                        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
                    }),
                ));
            }
            "/apis" => return Ok(json_response(StatusCode::OK, &resources.group_list())),
            "/openapi/v3" => return Ok(json_response(StatusCode::OK, &super::openapi::root(resources))),
            _ => {}
        }
        if let Some(gv) = path.strip_prefix("/openapi/v3/") {
            let if_none_match = req.headers().get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok());
            return super::openapi::respond(resources, gv, query(&req).get("hash").map(String::as_str), if_none_match);
        }
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        match parts.as_slice() {
            ["api", version] => return discovery(resources.resource_list("", version)),
            ["apis", group] => {
                let list = resources.group_list();
                let found = list["groups"].as_array().and_then(|g| g.iter().find(|g| g["name"] == *group)).cloned();
                return match found {
                    Some(mut g) => {
                        g["kind"] = json!("APIGroup");
                        g["apiVersion"] = json!("v1");
                        Ok(json_response(StatusCode::OK, &g))
                    }
                    None => Err(ApiError::NotFound { kind: "groups".into(), name: (*group).into() }),
                };
            }
            ["apis", group, version] => return discovery(resources.resource_list(group, version)),
            _ => {}
        }
        let Some(p) = parse_path(&path) else {
            return Err(ApiError::NotFound { kind: "paths".into(), name: path });
        };
        let resource = resources.find(&p.group, &p.version, &p.plural).ok_or_else(|| ApiError::NotFound {
            kind: "resources".into(),
            name: format!("{}/{}/{}", p.group, p.version, p.plural),
        })?;
        self.resource(req, p, resource).await
    }

    async fn resource(
        self: &Arc<Self>,
        req: Request<Incoming>,
        p: Path,
        r: Arc<Resource>,
    ) -> Result<Response<Body>, ApiError> {
        let q = query(&req);
        if r.group.is_empty() && r.plural == "pods" && p.sub.as_deref() == Some("exec") {
            let namespace = p.namespace.clone().unwrap_or_default();
            let target = Target { resource: &r, version: &p.version, namespace: &namespace };
            let pod = self.cluster.get(&target, p.name.as_deref().unwrap_or_default()).await?;
            let tester = self.loadtester.get().cloned().ok_or_else(|| ApiError::Internal("no load tester".into()))?;
            return super::exec::respond(req, &pod, tester, self.stop.clone());
        }
        let all_namespaces = r.namespaced && p.namespace.is_none();
        let namespace = if r.namespaced { p.namespace.clone().unwrap_or_default() } else { String::new() };
        let target = Target { resource: &r, version: &p.version, namespace: &namespace };
        let mut ctx = Ctx::user("kubernetes-admin");
        // The manager: ?fieldManager, else the User-Agent's product, as kube-apiserver does.
        let agent = req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("unknown").to_owned();
        ctx.field_manager = match q.get("fieldManager") {
            Some(m) => m.clone(),
            None => agent.split('/').next().unwrap_or("unknown").to_owned(),
        };
        ctx.dry_run = q.get("dryRun").is_some_and(|v| v == "All");
        ctx.force = q.get("force").is_some_and(|v| v == "true");
        ctx.field_validation = super::builtin::FieldValidation::parse(q.get("fieldValidation").map(String::as_str));
        let method = req.method().clone();
        let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let shape =
            super::table::wanted(accept, q.get("includeObject").map(String::as_str)).map_err(ApiError::BadRequest)?;
        let content_type =
            req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        // kube-apiserver's limit on a request body.
        let body = http_body_util::Limited::new(req.into_body(), 3 * 1024 * 1024)
            .collect()
            .await
            .map_err(|e| ApiError::BadRequest(format!("cannot read the request body: {e}")))?
            .to_bytes();
        let media = content_type.split(';').next().unwrap_or_default().trim();
        // What is not protobuf or YAML is read as JSON (kubectl's `--raw` sends no type).
        let json_body = media != super::protobuf::MEDIA_TYPE && !media.contains("yaml");
        if ctx.field_validation != super::builtin::FieldValidation::Ignore && json_body {
            ctx.duplicates = super::decode::duplicate_fields(&body);
        }
        let parse = |body: &Bytes| -> Result<Value, ApiError> {
            let value: Value = if media == super::protobuf::MEDIA_TYPE {
                super::protobuf::decode(body).map_err(|e| match e {
                    // As kube-apiserver answers a custom resource sent as protobuf.
                    super::protobuf::Error::NoSchema { api_version, kind } => ApiError::UnsupportedMediaType(format!(
                        "the body of the request was in an unknown format - accepted media types include: \
                         application/json, application/yaml (no protobuf schema for {api_version} {kind})"
                    )),
                    super::protobuf::Error::Malformed(why) => {
                        ApiError::BadRequest(format!("the body of the request was in an unknown format: {why}"))
                    }
                })?
            } else {
                serde_json::from_slice(body).map_err(|e| {
                    ApiError::BadRequest(format!("the body of the request was in an unknown format: {e}"))
                })?
            };
            if value.is_object() {
                Ok(value)
            } else {
                Err(ApiError::BadRequest(
                    "the body of the request was in an unknown format: expected a JSON object".into(),
                ))
            }
        };
        let cluster = &self.cluster;
        match (method, p.name.as_deref()) {
            (Method::GET, None) if q.get("watch").is_some_and(|w| w == "true" || w == "1") => {
                let (label, field) = selectors(&q)?;
                let options = watch::Options {
                    resource: r.clone(),
                    version: p.version.clone(),
                    namespace: (!all_namespaces).then(|| namespace.clone()),
                    label,
                    field,
                    resource_version: q.get("resourceVersion").cloned().unwrap_or_default(),
                    bookmarks: q.get("allowWatchBookmarks").is_some_and(|v| v == "true"),
                    timeout: q.get("timeoutSeconds").and_then(|t| t.parse().ok()),
                    send_initial_events: q.get("sendInitialEvents").is_some_and(|v| v == "true"),
                    shape,
                };
                let cut = self.cut_token(&agent);
                watch::stream(cluster.clone(), options, cut, self.stop.clone()).await
            }
            (Method::GET, None) => {
                let (label, field) = selectors(&q)?;
                let (items, rv) = cluster.list(&target, all_namespaces, &label, &field).await?;
                match shape {
                    Shape::Table(include) => {
                        let table = super::table::table(&r, &p.version, &items, &rv.to_string(), include);
                        return Ok(json_response(StatusCode::OK, &table));
                    }
                    Shape::Metadata => {
                        return Ok(json_response(StatusCode::OK, &super::table::partial_list(&items, &rv.to_string())));
                    }
                    Shape::Object => {}
                }
                Ok(json_response(
                    StatusCode::OK,
                    &json!({
                        "kind": format!("{}List", r.kind),
                        "apiVersion": r.api_version(&p.version),
                        "metadata": {"resourceVersion": rv.to_string()},
                        "items": items,
                    }),
                ))
            }
            (Method::GET, Some(name)) => {
                let object = cluster.get(&target, name).await?;
                if r.group.is_empty() && r.plural == "pods" && p.sub.as_deref() == Some("log") {
                    let query = super::logs::Query::parse(&q)?;
                    return super::logs::respond(cluster.clone(), &object, query, self.stop.clone());
                }
                let object = match p.sub.as_deref() {
                    Some("scale") if r.scale.is_some() => super::cluster::scale_of(&r, &object),
                    Some("status") | None => match shape {
                        Shape::Table(include) => {
                            let rv =
                                object.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or_default();
                            super::table::table(&r, &p.version, std::slice::from_ref(&object), rv, include)
                        }
                        Shape::Metadata => super::table::partial(&object),
                        Shape::Object => object,
                    },
                    Some(other) => {
                        return Err(ApiError::NotFound {
                            kind: format!("{}/{other}", target.qualified()),
                            name: name.into(),
                        });
                    }
                };
                Ok(json_response(StatusCode::OK, &object))
            }
            (Method::POST, None) if r.plural == "selfsubjectaccessreviews" => {
                // Answered, never stored: an admin kubeconfig may do everything.
                let mut review = parse(&body)?;
                review["status"] = json!({"allowed": true, "reason": "the simulated cluster allows every request"});
                review["metadata"]["creationTimestamp"] = Value::Null;
                Ok(json_response(StatusCode::CREATED, &review))
            }
            (Method::POST, None) => {
                let written = cluster.create(&ctx, &target, parse(&body)?).await?;
                Ok(written_response(StatusCode::CREATED, written))
            }
            (Method::PUT, Some(name)) => {
                let written = cluster.replace(&ctx, &target, name, p.sub.as_deref(), parse(&body)?).await?;
                Ok(written_response(StatusCode::OK, written))
            }
            (Method::PATCH, Some(name)) => {
                let patch = match media {
                    "application/merge-patch+json" => Patch::Merge(parse(&body)?),
                    "application/strategic-merge-patch+json" => Patch::Strategic(parse(&body)?),
                    "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                        let text = std::str::from_utf8(&body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
                        let applied: Value = serde_saphyr::from_str(text)
                            .map_err(|e| ApiError::BadRequest(format!("error decoding YAML: {e}")))?;
                        if !q.contains_key("fieldManager") {
                            return Err(ApiError::BadRequest(
                                "PATCH, application/apply-patch+yaml: fieldManager is required for apply requests"
                                    .into(),
                            ));
                        }
                        Patch::Apply(applied)
                    }
                    "application/json-patch+json" => Patch::Json(
                        serde_json::from_slice(&body)
                            .map_err(|e| ApiError::BadRequest(format!("invalid JSON patch: {e}")))?,
                    ),
                    other => {
                        return Err(ApiError::UnsupportedMediaType(format!(
                            "the body of the request was in an unknown format - accepted media types include: \
                             application/json-patch+json, application/merge-patch+json, \
                             application/strategic-merge-patch+json (got {other:?})"
                        )));
                    }
                };
                let written = cluster.patch(&ctx, &target, name, p.sub.as_deref(), &patch).await?;
                Ok(written_response(StatusCode::OK, written))
            }
            (Method::DELETE, Some(name)) => {
                let options = delete_options(&body, &q, &mut ctx)?;
                let written = cluster.delete(&ctx, &target, name, &options).await?;
                Ok(written_response(StatusCode::OK, written))
            }
            (Method::DELETE, None) => {
                let (label, field) = selectors(&q)?;
                let options = delete_options(&body, &q, &mut ctx)?;
                let (items, _) = cluster.list(&target, all_namespaces, &label, &field).await?;
                let mut deleted = Vec::new();
                for item in items {
                    let name = item.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_owned();
                    let namespace = item.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default();
                    let here = Target { namespace, ..target.clone() };
                    deleted.push(cluster.delete(&ctx, &here, &name, &options).await?.object);
                }
                Ok(json_response(
                    StatusCode::OK,
                    &json!({"kind": format!("{}List", r.kind), "apiVersion": r.api_version(&p.version),
                    "metadata": {}, "items": deleted}),
                ))
            }
            (method, _) => {
                Err(ApiError::MethodNotAllowed(format!("{method} is not supported on {}", target.qualified())))
            }
        }
    }
}

/// `?labelSelector=` and `?fieldSelector=`.
fn selectors(q: &HashMap<String, String>) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let label =
        LabelSelector::parse(q.get("labelSelector").map_or("", String::as_str)).map_err(ApiError::BadRequest)?;
    let field =
        FieldSelector::parse(q.get("fieldSelector").map_or("", String::as_str)).map_err(ApiError::BadRequest)?;
    Ok((label, field))
}

/// A DELETE's options (body `DeleteOptions` or query): the propagation policy and the
/// grace period, and a dry run marked on `ctx`.
fn delete_options(body: &Bytes, q: &HashMap<String, String>, ctx: &mut Ctx) -> Result<DeleteOptions, ApiError> {
    let options: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("invalid DeleteOptions: {e}")))?
    };
    if options.pointer("/dryRun/0") == Some(&json!("All")) {
        ctx.dry_run = true;
    }
    let propagation = options["propagationPolicy"]
        .as_str()
        .or(q.get("propagationPolicy").map(String::as_str))
        .unwrap_or("Background");
    let grace_period = match (options.get("gracePeriodSeconds"), q.get("gracePeriodSeconds")) {
        (Some(v), _) if !v.is_null() => Some(v.as_i64().ok_or_else(|| {
            ApiError::BadRequest(format!("invalid DeleteOptions: gracePeriodSeconds: not an integer: {v}"))
        })?),
        (_, Some(q)) => {
            Some(q.parse().map_err(|_| ApiError::BadRequest(format!("invalid gracePeriodSeconds: {q:?}")))?)
        }
        _ => None,
    };
    Ok(DeleteOptions { propagation: propagation.to_owned(), grace_period })
}

fn discovery(list: Option<Value>) -> Result<Response<Body>, ApiError> {
    list.map(|l| json_response(StatusCode::OK, &l))
        .ok_or_else(|| ApiError::NotFound { kind: "groupversions".into(), name: String::new() })
}

/// The written object, with webhook warnings as `Warning` headers.
fn written_response(code: StatusCode, written: Written) -> Response<Body> {
    let code = if written.created { code } else { StatusCode::OK };
    let mut response = json_response(code, &written.object);
    for w in &written.warnings {
        let text = format!("299 - \"{}\"", w.replace('\\', "\\\\").replace('"', "\\\""));
        if let Ok(value) = HeaderValue::from_str(&text) {
            response.headers_mut().append(header::WARNING, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let p = parse_path("/apis/apps/v1/namespaces/test/deployments/podinfo/scale").unwrap();
        assert_eq!(
            (p.group.as_str(), p.namespace.as_deref(), p.plural.as_str()),
            ("apps", Some("test"), "deployments")
        );
        assert_eq!((p.name.as_deref(), p.sub.as_deref()), (Some("podinfo"), Some("scale")));
        let ns = parse_path("/api/v1/namespaces/test").unwrap();
        assert_eq!((ns.plural.as_str(), ns.name.as_deref(), ns.namespace), ("namespaces", Some("test"), None));
        let status = parse_path("/api/v1/namespaces/test/status").unwrap();
        assert_eq!((status.plural.as_str(), status.sub.as_deref()), ("namespaces", Some("status")));
        let all = parse_path("/api/v1/pods").unwrap();
        assert_eq!((all.plural.as_str(), all.namespace), ("pods", None));
        assert!(parse_path("/foo").is_none());
        assert_eq!(decode("app%3Dweb%2Cenv+in+(a)").as_deref(), Some("app=web,env in (a)"));
    }
}
