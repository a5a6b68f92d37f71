//! The API of apisix-canary: annotation keys and their rules, field errors, durations.

pub mod alert_provider;
pub mod annotations;
pub mod apisix_route;
pub mod canary;
pub mod duration;
pub mod field;
pub mod metric_template;
pub mod revision;
pub mod rules;
