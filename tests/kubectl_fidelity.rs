//! The sim is no kinder than a cluster (issue 16): what kube-apiserver 1.33 refuses, it
//! refuses in the same words; what a cluster shows (schemas for `explain`, the events of
//! its controllers, pods and namespaces terminating), it shows. Each through the real
//! kubectl.

#[path = "support/binaries.rs"]
mod binaries;
#[path = "support/kubectl.rs"]
mod kubectl;

use kubectl::{dir_file, fixture, start};
