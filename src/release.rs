//! The typed core of a release: the parsed analysis ([`plan`]), the lock on the
//! Deployment and its transitions ([`lock`]), the lifecycle as a pure function
//! ([`lifecycle`]) and the canary copies ([`copies`]).

pub mod copies;
pub mod lifecycle;
pub mod lock;
pub mod plan;

/// Revisions are part of the API (annotations, the Canary status); the release core
/// works in them.
pub use crate::api::revision;
