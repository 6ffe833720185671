//! Host-side bindings of the `toolhost:tool/tool@0.1.0` world, generated from
//! the guest SDK's WIT, so host and guests cannot disagree on it.

wasmtime::component::bindgen!({
    path: "../guest-sdk/wit",
    world: "tool",
    exports: { default: async },
});

pub use self::toolhost::tool::types::Effect;
