//! Compiled components kept ready to map: the machine code of a component, stored uncompressed in the
//! user's cache folder (`$XDG_CACHE_HOME/xnat-archive/compiled`, else `~/.cache/xnat-archive/compiled`) and
//! mapped into memory on the next start instead of being hashed with SHA-256, read, zstd-decompressed and
//! copied.
//!
//! Every command of the CLI starts a process, so its start-up is part of every job. With wasmtime's own cache
//! alone a start hashes the component with SHA-256, then reads, zstd-decompresses and copies its compiled code:
//! about 40 ms on this project's 2-core machine for a refresh of an empty resource (BENCHMARKS.md section 4).
//! Here a start maps the stored file, whose pages are read as they run: about 8 ms (20 ms when the file was read
//! instead of mapped). The file is named by the component's XXH3, which the build computes (hashing its 2.5 MB
//! at every start took ~1 ms, most of it reading them from the binary). The first start of a new build compiles
//! as before (through wasmtime's cache) and stores the result; anything that goes wrong on the way — no cache
//! folder, a file that does not load — falls back to that, so this only ever saves time.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use wasmtime::Engine;
use wasmtime::component::Component;

/// The component of `bytes` (whose XXH3-128 is `xxh3`) compiled for `engine`, from the store when it is there.
pub(crate) fn component(engine: &Engine, bytes: &[u8], xxh3: u128) -> wasmtime::Result<Component> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|d| !d.is_empty()).map(|h| PathBuf::from(h).join(".cache")));
    match cache {
        Some(cache) => component_in(engine, bytes, xxh3, &cache),
        None => Component::new(engine, bytes),
    }
}

/// [`component`], with the user's cache folder `cache`.
fn component_in(engine: &Engine, bytes: &[u8], xxh3: u128, cache: &std::path::Path) -> wasmtime::Result<Component> {
    let path = stored_path(engine, xxh3, cache);
    if path.is_file() {
        // SAFETY: the file was written by `store` below: the serialisation of a component wasmtime compiled
        // for an engine with this compatibility hash (part of the name), in the user's own cache folder,
        // moved into place whole. wasmtime checks its header against the engine before using it; its trust
        // is that of wasmtime's own cache, which loads compiled code from the same folder. It is mapped, not
        // read: no writer of this store ever changes a file in place (each stores a new file and renames it
        // over the old one, which leaves a mapping of the old one intact, as does removing it). A file cut
        // short in place by hand while a command runs would stop that command (SIGBUS), as a kill would:
        // every write of ours is atomic and every lock is taken over, so nothing is lost or half-written.
        if let Ok(component) = unsafe { Component::deserialize_file(engine, &path) } {
            return Ok(component);
        }
    }
    let component = Component::new(engine, bytes)?;
    store(&component, &path);
    Ok(component)
}

/// Where the compiled form of a component for `engine` is stored: named by the component's XXH3-128 (`xxh3`)
/// and the engine's compatibility hash (wasmtime's version and the settings that change compiled code).
fn stored_path(engine: &Engine, xxh3: u128, cache: &std::path::Path) -> PathBuf {
    let mut compat = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut compat);
    let name = format!("{:032x}-{:016x}.cwasm", xxh3, compat.finish());
    cache.join("xnat-archive").join("compiled").join(name)
}

/// Stores `component` at `path`, whole or not at all (a temporary file moved into place); failures are
/// ignored: the next start compiles again.
fn store(component: &Component, path: &std::path::Path) {
    let Some(dir) = path.parent() else { return };
    let Ok(bytes) = component.serialize() else { return };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let Ok(mut tmp) = tempfile::NamedTempFile::new_in(dir) else { return };
    if std::io::Write::write_all(&mut tmp, &bytes).is_ok() && tmp.as_file().sync_all().is_ok() {
        let _ = tmp.persist(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_component_is_mapped_the_next_time_and_a_damaged_one_is_compiled_again() {
        let cache = tempfile::tempdir().unwrap();
        // wasmtime's cache makes the compiles below cheap after the first run of the suite.
        let engine = crate::wasm::engine::build(&crate::wasm::engine::config()).unwrap();
        let (bytes, xxh3) = (crate::COMPONENT, crate::wasm::runtime::COMPONENT_XXH3);
        component_in(&engine, bytes, xxh3, cache.path()).unwrap();
        let path = stored_path(&engine, xxh3, cache.path());
        assert!(path.is_file(), "stored at {}", path.display());
        assert!(path.starts_with(cache.path().join("xnat-archive/compiled")));
        let mapped = component_in(&engine, bytes, xxh3, cache.path()).unwrap();
        assert!(mapped.component_type().exports(&engine).count() >= 6, "the library's exports");
        drop(mapped);
        // Damaged by hand (never in place while a component maps it: see the SAFETY note above).
        std::fs::write(&path, b"not compiled code").unwrap();
        component_in(&engine, bytes, xxh3, cache.path()).expect("compiled again");
        assert_ne!(std::fs::read(&path).unwrap(), b"not compiled code", "and stored again");
    }

    /// The key the build computed for the embedded component is its XXH3-128.
    #[test]
    fn the_embedded_component_s_key_is_its_hash() {
        assert_eq!(crate::wasm::runtime::COMPONENT_XXH3, xxhash_rust::xxh3::xxh3_128(crate::COMPONENT));
    }
}
