//! Helpers shared by the end-to-end modules.

pub mod model_server;
