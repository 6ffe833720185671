//! toolhost's end-to-end suite: real components built from source by the
//! build, real files, the real binary. One binary, a module per area.

mod agent;
mod audit;
mod capabilities;
mod cli;
mod config_check;
mod docs;
mod hostile;
mod idempotency;
mod install;
mod lang;
mod loading;
mod mcp;
mod metrics;
mod model;
mod people;
mod reconcile;
mod robustness;
mod sandbox;
mod shared_store;
mod support;
mod support_http;
mod telemetry;
mod trust;
mod web;
