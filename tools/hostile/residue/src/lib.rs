//! Hostile test tool `residue`: looks for anything an earlier call left in
//! its linear memory, then leaves some of its own.
//!
//! Each call gets a fresh instance, but the pooling allocator reuses memory
//! slots, and keeps their pages resident where it can (`sandbox/engine.rs`).
//! This tool proves a reused slot reads as zero: it counts the non-zero
//! bytes of a zero-initialised static (`.bss`, which the guest trusts the
//! host to have zeroed) and of pages it grows itself, then fills both with
//! `plant` for the next call to find.
//!
//! Built by the build like the examples but kept out of the default tools
//! directory: it exists to prove the sandbox holds.

use toolhost_sdk::{Context, Deserialize, JsonSchema, Serialize, ToolError};

/// Zero-initialised, so in `.bss`: never written by a data segment.
static mut STATIC: [u8; 8192] = [0; 8192];

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// What to leave behind for the next call (empty: leave nothing).
    #[serde(default)]
    pub plant: String,
}

#[derive(Serialize, JsonSchema)]
pub struct Found {
    /// Non-zero bytes found in the zero-initialised static.
    pub static_nonzero: u32,
    /// Non-zero bytes found in the freshly grown pages.
    pub grown_nonzero: u32,
    /// Whether the grown pages exist (`memory.grow` succeeded).
    pub grew: bool,
}

fn nonzero(bytes: &[u8]) -> u32 {
    bytes.iter().filter(|b| **b != 0).count() as u32
}

fn fill(bytes: &mut [u8], with: &[u8]) {
    if with.is_empty() {
        return;
    }
    for (b, w) in bytes.iter_mut().zip(with.iter().cycle()) {
        *b = *w;
    }
}

pub fn run(input: Input, _ctx: &Context) -> Result<Found, ToolError> {
    // SAFETY: one call runs on one thread; nothing else holds the static.
    let stat: &mut [u8] = unsafe { &mut *core::ptr::addr_of_mut!(STATIC) };
    let static_nonzero = nonzero(stat);
    fill(stat, input.plant.as_bytes());
    let grown = grow_and_look(input.plant.as_bytes());
    Ok(Found {
        static_nonzero,
        grown_nonzero: grown.unwrap_or(0),
        grew: grown.is_some(),
    })
}

/// Grows memory 0 by 16 pages nothing else knows of, counts their non-zero
/// bytes and fills them with `plant`; `None` if the memory cannot grow.
#[cfg(target_arch = "wasm32")]
fn grow_and_look(plant: &[u8]) -> Option<u32> {
    const PAGES: usize = 16;
    const PAGE: usize = 65_536;
    let before = core::arch::wasm32::memory_grow(0, PAGES);
    if before == usize::MAX {
        return None;
    }
    // SAFETY: these pages were just added to memory 0 and nothing else (the
    // allocator included) knows of them.
    let grown: &mut [u8] =
        unsafe { core::slice::from_raw_parts_mut((before * PAGE) as *mut u8, PAGES * PAGE) };
    let found = nonzero(grown);
    fill(grown, plant);
    Some(found)
}

#[cfg(not(target_arch = "wasm32"))]
fn grow_and_look(_plant: &[u8]) -> Option<u32> {
    None
}

toolhost_sdk::export_tool! {
    name: "residue",
    description: "Counts what an earlier call left in memory, and leaves some.",
    effect: Pure,
    run: run,
}
