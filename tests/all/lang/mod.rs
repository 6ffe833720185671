//! Tools in other languages than Rust, each through its SDK and toolchain,
//! against the same host contracts.

mod js;
