//! apisix-canary: canary releases for Kubernetes services behind Apache APISIX.
//!
//! ```text
//!  kubectl set image ──▶ kube-apiserver ──AdmissionReview──▶ server ──▶ admission::deployment
//!                              ▲                                  pure: mutate / validate (release::lock)
//!                              └──── JSON patch: paused=true + lock ◀──────┘
//!
//!  watches ──▶ controller ──observe──▶ release::lifecycle::decide(now) ──▶ actions ──▶ API writes, Events
//!                  │                        └─ checks due ──▶ analysis (Prometheus, canary-only)
//!                  └─ only the holder of the Lease (lease) writes
//! ```
//!
//! A write to an opted-in Deployment that changes its pod template is a release: the
//! mutating webhook pauses the Deployment and records the lock (stable and canary
//! revisions) in its annotations, so the stable pods keep serving while the canary is
//! analysed. The controller then runs the canary copies and the weighted route step by
//! step, and promotes (one write unpauses and drops the lock) or rolls back (route to
//! stable first). The validating webhook rejects bad settings with Kubernetes field errors.
//!
//! Modules:
//! - [`release`]: the typed core. [`release::plan::Plan`] (the analysis, parsed once
//!   from annotations or a Canary), [`release::lock`] (the lock on the Deployment and
//!   every transition of it), [`release::revision::Revision`], [`release::lifecycle`]
//!   (the release as a pure `decide`), [`release::copies`] (the canary Deployment and
//!   Service); [`route`] the generated ApisixRoute.
//! - [`controller`]: the I/O shell of the lifecycle: watches, observe, act, Events,
//!   annotation-mode Canaries, the controller's metrics.
//! - [`analysis`]: the built-in metrics (success rate, P99) from APISIX's series in
//!   Prometheus, canary-only by default, judged in Flagger's words.
//! - [`admission`]: the AdmissionReview protocol and thin per-kind handlers over
//!   `release`; [`conversion`]: the ConversionReview handler.
//! - [`api`]: the resource types, annotation keys, the rules of each setting, field errors;
//!   [`api::canary::convert`] Canary v1beta1 <-> v1alpha1, pure.
//! - [`runtime`]: one metrics registry, cancellation, readiness gates and the admin port
//!   for every component; [`lease`] leader election (only the holder writes);
//!   [`server`] the HTTPS webhook component; [`web`] the HTTP plumbing of every port; [`tls`] the reloading
//!   certificate store and dev certificates; [`admin`] `/live`, `/ready`, `/metrics`;
//!   [`metrics`]; [`telemetry`] logs.
//! - [`cli`] the commands; [`manifests`] the generated CRDs and webhook configurations;
//!   [`rbac`] the permissions of `serve`, which the chart renders.
//! - Behind the `testbed` feature (on by default, off in the shipped build): `testbed`,
//!   our webhook server installed into the simulated cluster (the `sim` crate, which
//!   knows nothing of this one) for `apisix-canary sim` and the tests; `demo`,
//!   SCENARIO.md's three acts played on it, with our controller, in process.

pub mod admin;
pub mod admission;
pub mod analysis;
pub mod api;
pub mod cli;
pub mod controller;
pub mod conversion;
#[cfg(feature = "testbed")]
pub mod demo;
pub mod lease;
pub mod manifests;
pub mod metrics;
pub mod rbac;
pub mod release;
pub mod report;
pub mod route;
pub mod runtime;
pub mod server;
pub mod telemetry;
#[cfg(feature = "testbed")]
pub mod testbed;
pub mod tls;
pub mod web;
