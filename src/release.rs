//! The release lifecycle: revisions of a pod template and the lock on a Deployment.

pub mod copies;
pub mod lifecycle;
pub mod lock;
pub mod plan;
pub mod revision;
