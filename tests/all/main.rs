//! toolhost's end-to-end suite: real components built from source by the
//! build, real files, the real binary. One binary, a module per area.

mod capabilities;
mod cli;
mod hostile;
mod idempotency;
mod loading;
mod mcp;
mod model;
mod sandbox;
mod support;
mod support_http;
