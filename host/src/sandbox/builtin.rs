//! The example tools, embedded in the binary.
//!
//! `cargo install --path host` copies one file; a default tools directory
//! pointing into the build tree would be gone (or stale) by the time the
//! binary runs. So `build.rs` embeds the examples' bytes with
//! `include_bytes!` and their blake3 digests (computed once, at build time:
//! hashing 3.5 MB at every start would cost a millisecond). Only the real
//! examples are embedded; the hostile and test-kit tools stay in the build
//! tree for the tests.

/// One embedded tool.
#[derive(Debug)]
pub struct Builtin {
    /// Its file name, as it would appear in a tools directory (`echo.wasm`).
    pub file: &'static str,
    /// blake3 of `bytes`, hex (the same digest a file would get).
    pub digest: &'static str,
    /// The component.
    pub bytes: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/builtin_tools.rs"));

/// Every embedded tool, in a stable order.
pub fn all() -> &'static [Builtin] {
    BUILTIN
}

/// The embedded component whose file is `file` (`echo.wasm`), if any.
pub fn bytes(file: &str) -> Option<&'static [u8]> {
    BUILTIN.iter().find(|b| b.file == file).map(|b| b.bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_digests_are_of_the_embedded_bytes() {
        assert_eq!(super::all().len(), 8);
        for b in super::all() {
            assert_eq!(
                blake3::hash(b.bytes).to_hex().as_str(),
                b.digest,
                "{}",
                b.file
            );
        }
        assert!(super::bytes("echo.wasm").is_some());
        assert!(
            super::bytes("spin.wasm").is_none(),
            "no hostile tool is embedded"
        );
    }
}
