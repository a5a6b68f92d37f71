//! The API of apisix-canary: annotation keys and their rules, field errors, durations.

pub mod annotations;
pub mod duration;
pub mod field;
pub mod rules;
