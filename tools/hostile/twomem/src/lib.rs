//! Hostile test tool `twomem`: a component with two linear memories, which
//! grows each by 40 MiB (see `twomem.wat`). It proves `memory_mb` bounds the
//! total of a call's memories, not each one.
//!
//! No Rust toolchain emits a component with two memories, so the component
//! is written in the component text format and assembled by `wat`; the host's
//! build script calls [`component`] and installs the result beside the other
//! hostile tools.

/// The component, as text.
pub const WAT: &str = include_str!("../twomem.wat");

/// The component, assembled.
pub fn component() -> Result<Vec<u8>, wat::Error> {
    wat::parse_str(WAT)
}

#[cfg(test)]
mod tests {
    #[test]
    fn assembles_to_a_component() {
        let bytes = super::component().unwrap();
        assert_eq!(&bytes[..4], b"\0asm");
        // Layer 1: a component, not a core module.
        assert_eq!(u16::from_le_bytes([bytes[6], bytes[7]]), 1);
    }
}
