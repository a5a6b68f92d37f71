//! apisix-canary: canary releases for Kubernetes services behind Apache APISIX.
//!
//! ```text
//!  kubectl set image ──▶ kube-apiserver ──AdmissionReview──▶ server ──▶ admission::deployment
//!                              ▲                                            │ pure: mutate / validate
//!                              └──── JSON patch: paused=true + lock ◀───────┘
//! ```
//!
//! A write to an opted-in Deployment that changes its pod template is a release: the
//! mutating webhook pauses the Deployment and records the lock (stable and canary
//! revisions) in its annotations, so the stable pods keep serving while the canary is
//! analysed. The validating webhook rejects bad annotations with Kubernetes field errors.
//!
//! Modules: [`cli`] the commands; [`server`] the HTTPS webhook port and its router;
//! [`admission`] the AdmissionReview protocol and the per-kind logic; [`api`] annotation
//! keys, rules and field errors; [`release`] revisions and the lock; [`tls`] the
//! reloading certificate store and dev certificates; [`admin`] `/live`, `/ready`,
//! `/metrics`; [`metrics`]; [`telemetry`] logs; [`testbed`] our webhook server
//! installed into the simulated cluster (the `sim` crate) for `apisix-canary sim` and
//! the end-to-end tests.

pub mod admin;
pub mod admission;
pub mod api;
pub mod cli;
pub mod conversion;
pub mod manifests;
pub mod metrics;
pub mod release;
pub mod runtime;
pub mod server;
pub mod telemetry;
pub mod testbed;
pub mod tls;
