//! Links the HTTP component with 4 MiB of initial memory (the program's data and stack take ~1.6 MiB, the
//! rest is heap the allocator starts with) instead of the linker's least: a host that serves each request
//! from a fresh instance then needs no `memory.grow` for a usual request. Growing costs the host two
//! `mprotect`s a request (grow, then shrink back when the slot is reused), each a TLB shoot-down on every
//! core; pages of the initial memory that are never written cost nothing.
fn main() {
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        println!("cargo:rustc-link-arg-cdylib=--initial-memory={}", 4 << 20);
    }
}
