//! The typed core of a release: the parsed analysis ([`plan`]), the lock on the
//! Deployment and its transitions ([`lock`]), the lifecycle as a pure function
//! ([`lifecycle`]), the canary copies ([`copies`]), the apex Service a Canary may
//! generate ([`apex`]) and a Canary's claim on its target ([`claim`]).

pub mod apex;
pub mod claim;
pub mod copies;
pub mod lifecycle;
pub mod lock;
pub mod mirror;
pub mod observe;
pub mod plan;
pub mod status;

/// Revisions are part of the API (annotations, the Canary status); the release core
/// works in them.
pub use crate::api::revision;
