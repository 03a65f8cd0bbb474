//! Builds the guest components (`xnat-plugin`, the library component, and `xnat-http`, the HTTP component,
//! for `wasm32-wasip2`) and puts them in `OUT_DIR` for `include_bytes!`.
//!
//! The guests are built by one nested `cargo` with its own target directory (`<workspace>/target/guest`), so it
//! never waits on the lock of the outer build's target directory, and without the outer build's flags.
//! With the host's `test-switches` feature (test builds only) the components get the archive's test
//! switches, in `<workspace>/target/guest-test`.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const GUEST_TARGET: &str = "wasm32-wasip2";
/// The guest packages and the components they build.
const GUESTS: [(&str, &str); 2] = [("xnat-plugin", "xnat_plugin.wasm"), ("xnat-http", "xnat_http.wasm")];

/// Variables set by the outer build that must not reach the nested one: they would change its flags, its
/// target or its target directory, or wrap rustc in clippy.
const LEAKY_ENV: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_BUILD_TARGET",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_PRIMARY_PACKAGE",
];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir.parent().expect("host/ lives inside the workspace").to_path_buf();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));

    for path in ["guest", "wit", "Cargo.lock", "Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", workspace.join(path).display());
    }

    ensure_target();
    for wasm in build_guests(&workspace) {
        let dest = out_dir.join(wasm.file_name().expect("a component file"));
        std::fs::copy(&wasm, &dest)
            .unwrap_or_else(|e| panic!("cannot copy {} to {}: {e}", wasm.display(), dest.display()));
        // Its XXH3-128: the library component's names its compiled form (`src/wasm/compiled.rs`), so that a
        // start never reads the embedded bytes unless it must compile them.
        let bytes = std::fs::read(&dest).unwrap_or_else(|e| panic!("cannot read {}: {e}", dest.display()));
        let key = dest.with_extension("wasm.xxh3");
        std::fs::write(&key, format!("0x{:032x}", xxhash_rust::xxh3::xxh3_128(&bytes)))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", key.display()));
    }
}

/// Installs the guest target with rustup when this toolchain lacks it, so that a fresh machine needs no
/// manual step (rustup's automatic install of toolchain-file targets may be switched off).
fn ensure_target() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let libdir = Command::new(&rustc).args(["--print", "target-libdir", "--target", GUEST_TARGET]).output();
    let installed = match libdir {
        Ok(out) if out.status.success() => Path::new(String::from_utf8_lossy(&out.stdout).trim()).is_dir(),
        _ => false,
    };
    if installed {
        return;
    }
    println!("cargo:warning=installing the {GUEST_TARGET} target with rustup (needed to build the component)");
    let status = Command::new("rustup").args(["target", "add", GUEST_TARGET]).status();
    if !matches!(status, Ok(s) if s.success()) {
        panic!(
            "the {GUEST_TARGET} Rust target is not installed and `rustup target add {GUEST_TARGET}` failed; \
             install it by hand and build again"
        );
    }
}

/// Runs the nested cargo and returns the paths of the built components.
fn build_guests(workspace: &Path) -> Vec<PathBuf> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // Test builds (the host's `test-switches` feature) get components with the archive's test switches,
    // in a target directory of their own so that switching between the two never rebuilds either.
    let testing = env::var_os("CARGO_FEATURE_TEST_SWITCHES").is_some();
    let target_dir = workspace.join("target").join(if testing { "guest-test" } else { "guest" });
    let packages: Vec<&str> = GUESTS.iter().flat_map(|(package, _)| ["-p", package]).collect();

    let mut cmd = Command::new(&cargo);
    cmd.arg("build")
        .args(&packages)
        .args(if testing { &["--features", "xnat-plugin/test-switches,xnat-http/test-switches"][..] } else { &[] })
        .args(["--release", "--target", GUEST_TARGET])
        .arg("--target-dir")
        .arg(&target_dir)
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"));
    for var in LEAKY_ENV {
        cmd.env_remove(var);
    }
    // The components keep their function names (backtraces, `XNAT_ARCHIVE_PERFMAP` profiles) but no DWARF:
    // 7 of the library component's 8 MB, which every start would hash for wasmtime's cache of compiled code.
    cmd.env("CARGO_PROFILE_RELEASE_DEBUG", "false").env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo");
    // WebAssembly's 128-bit SIMD, a standard feature of every engine the components run on (wasmtime, V8,
    // SpiderMonkey): `memchr`, UTF-8 checks and the XML reader's scans take 16 bytes a step. Reading a
    // 100,000-entry catalog took 10-19 % less (BENCHMARKS.md).
    cmd.env("CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS", "-C target-feature=+simd128");
    // One unit of code for each component, optimised whole (fat LTO): the XML reader's calls into quick-xml
    // and core's string checks are inlined across crates. The unchanged refresh of 100,000 entries took 15 %
    // less, the listing of 10,000 sessions 15 % less (BENCHMARKS.md); each component builds ~40 s longer.
    cmd.env("CARGO_PROFILE_RELEASE_LTO", "fat").env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1");

    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} to build the guest component: {e}", cargo.to_string_lossy()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Shown by cargo when this script fails, or with `cargo build -vv`.
    eprintln!("{stderr}");

    if !output.status.success() {
        if stderr.contains("can't find crate for `core`")
            || stderr.contains("can't find crate for `std`")
            || stderr.contains("target may not be installed")
        {
            panic!(
                "the {GUEST_TARGET} Rust target is not installed, so the guest component cannot be built.\n\
                 Run `rustup target add {GUEST_TARGET}` and build again \
                 (rust-toolchain.toml lists it, so rustup normally installs it by itself)."
            );
        }
        panic!(
            "building the guest components failed ({}): `{} build {} --release --target {GUEST_TARGET}`; \
             its output is above.",
            output.status,
            cargo.to_string_lossy(),
            packages.join(" ")
        );
    }

    GUESTS
        .iter()
        .map(|(_, artifact)| {
            let wasm = target_dir.join(GUEST_TARGET).join("release").join(artifact);
            assert!(wasm.is_file(), "the guest build succeeded but {} is missing", wasm.display());
            wasm
        })
        .collect()
}
