//! End to end: the library component in other hosts — Node (jco + preview2-shim, `examples/node`), Python
//! (PyPI `wasmtime`, `examples/python`), the `wasmtime` CLI, `wasm-tools` — and the Rust embedding example
//! (`examples/embed.rs`), each on a site written by `xnat-archive demo --dir`; and the HTTP component under
//! the stock `wasmtime serve`, with the command README.md shows.
//!
//! Each test installs what it needs, cached in gitignored places so that reruns are fast:
//! `examples/node/node_modules` and `examples/node/generated` (jco's output), `target/venv`, `target/tools`
//! (`cargo install --root`). A test whose tool is missing (node, npm, python3) FAILS; nothing skips them
//! silently. For local iteration, leave the slow ones out by name, so that the runner counts them as
//! filtered: `cargo test --release --test hosts -- --skip wasmtime --skip wasm_tools`.

mod common;

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

use common::*;

const WASMTIME_CLI: (&str, &str) = ("wasmtime-cli", "48.0.8");
const WASM_TOOLS: (&str, &str) = ("wasm-tools", "1.263.0");

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().canonicalize().unwrap()
}

fn target() -> PathBuf {
    workspace().join("target")
}

/// The component embedded in this build of xnat-archive, as a file for the other hosts.
fn component() -> &'static Path {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let dir = target().join("hosts");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("xnat_plugin.wasm");
        if std::fs::read(&file).ok().as_deref() != Some(xnat_archive::COMPONENT) {
            std::fs::write(&file, xnat_archive::COMPONENT).unwrap();
        }
        file
    })
}

/// A site written by `xnat-archive demo --dir`: a prearchive of seven sessions (the generator's six left,
/// and the one the demo imported) and an archive where DEMO's SUBJ1_MR1 has been archived and refreshed.
fn site() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    let out = cli(&["demo", "--dir", site.to_str().unwrap()]);
    assert!(out.status.success(), "xnat-archive demo failed:\n{}", String::from_utf8_lossy(&out.stderr));
    (dir, site)
}

fn text(out: &Output) -> String {
    format!("--- stdout\n{}--- stderr\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Runs a command; a program that is not installed fails the test with what to do.
fn output(cmd: &mut Command) -> Output {
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.output().unwrap_or_else(|e| {
        if e.kind() == ErrorKind::NotFound {
            panic!("`{program}` is not installed, and this test needs it; install it (or leave this test out by name with `-- --skip`)")
        }
        panic!("cannot run {program}: {e}")
    })
}

/// Runs a command that must succeed.
fn run(cmd: &mut Command) -> Output {
    let out = output(cmd);
    assert!(out.status.success(), "{cmd:?} failed ({}):\n{}", out.status, text(&out));
    out
}

/// Tool installs one at a time (two `cargo install`s on two cores only slow each other down).
fn install_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// `target/tools/bin/<bin>`, installed with `cargo install --locked --root target/tools` unless that
/// version is there already.
fn cargo_tool((krate, version): (&str, &str), bin: &str) -> PathBuf {
    let _lock = install_lock();
    let root = target().join("tools");
    let path = root.join("bin").join(bin);
    let installed = Command::new(&path)
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success() && String::from_utf8_lossy(&out.stdout).contains(version));
    if !installed {
        eprintln!("installing {krate} {version} into {} (once; minutes)", root.display());
        run(Command::new(env!("CARGO"))
            .args(["install", "--locked", "--root"])
            .arg(&root)
            .arg(format!("{krate}@{version}"))
            // The outer build's settings are not the install's.
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS"));
    }
    path
}

/// A stamp file holding `key`: true when it already did (the cached step can be skipped).
fn stamped(stamp: &Path, key: &str) -> bool {
    std::fs::read_to_string(stamp).is_ok_and(|s| s == key)
}

// ---------------------------------------------------------------------------------------------------------
// Node: jco + @bytecodealliance/preview2-shim

/// `examples/node` with its packages installed (`npm ci`, when package-lock.json changed) and the component
/// transpiled into `examples/node/generated` (when the component changed).
fn node_example() -> &'static Path {
    static READY: OnceLock<PathBuf> = OnceLock::new();
    READY.get_or_init(|| {
        let dir = workspace().join("examples/node");
        let node = run(Command::new("node").arg("--version"));
        let major: u32 = String::from_utf8_lossy(&node.stdout)
            .trim()
            .trim_start_matches('v')
            .split('.')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(major >= 20, "Node {major} is too old for jco 1.35 and the preview2 shim: Node 20 or later is needed");

        let lock = std::fs::read(dir.join("package-lock.json")).unwrap();
        let stamp = dir.join("node_modules/.xnat-archive-stamp");
        if !stamped(&stamp, &md5_hex(&lock)) {
            eprintln!("npm ci in {}", dir.display());
            run(Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(&dir));
            std::fs::write(&stamp, md5_hex(&lock)).unwrap();
        }

        let generated = dir.join("generated");
        let key = format!("{} {}", md5_hex(xnat_archive::COMPONENT), md5_hex(&lock));
        let stamp = generated.join(".xnat-archive-stamp");
        if !stamped(&stamp, &key) {
            let _ = std::fs::remove_dir_all(&generated);
            run(Command::new(dir.join("node_modules/.bin/jco"))
                .args(["transpile"])
                .arg(component())
                .args(["--instantiation", "async", "--name", "xnat_plugin", "--no-typescript", "--quiet", "-o"])
                .arg(&generated)
                .current_dir(&dir));
            std::fs::write(&stamp, key).unwrap();
        }
        dir
    })
}

#[test]
fn node_lists_validates_refreshes_with_grants_and_keeps_the_sandbox() {
    let dir = node_example();
    let (_tmp, site) = site();
    let out = output(Command::new("node").arg("main.mjs").arg(&site).arg(dir.join("generated")).current_dir(dir));
    let shown = text(&out);
    println!("{shown}");
    assert!(out.status.success() && shown.contains("node: all checks passed"), "examples/node/main.mjs:\n{shown}");

    // What the host saw, checked again from here.
    let catalog = site.join("archive/DEMO/arc001/SUBJ1_MR1/SCANS/1/DICOM/scan_1_catalog.xml");
    assert!(std::fs::read_to_string(catalog).unwrap().contains("added-by-node.txt"));
    assert!(shown.contains("failed (forbidden: cannot write"), "the read-only refusal:\n{shown}");
    assert!(!shown.contains("secret.txt"), "a file outside the grant showed up:\n{shown}");
}

#[test]
fn node_shim_alone_refuses_writes_with_not_supported() {
    let dir = node_example();
    let (_tmp, site) = site();
    let before = snapshot(&site.join("archive/DEMO/arc001/SUBJ1_MR1/SCANS/1/DICOM"));
    let out = output(Command::new("node").arg("shim-alone.mjs").arg(&site).arg(dir.join("generated")).current_dir(dir));
    let shown = text(&out);
    println!("{shown}");
    assert!(
        out.status.success() && shown.contains("shim alone: behaves as README.md describes"),
        "examples/node/shim-alone.mjs (if the shim changed, examples/node/README.md needs a new look):\n{shown}"
    );
    assert!(shown.contains("Not supported (os error 58)"), "{shown}");
    let mut after = snapshot(&site.join("archive/DEMO/arc001/SUBJ1_MR1/SCANS/1/DICOM"));
    after.remove("added-by-shim.txt");
    assert_eq!(before, after, "the shim alone changed the resource's files");
}

// ---------------------------------------------------------------------------------------------------------
// Python: the PyPI wasmtime package

/// `target/venv` with `examples/python/requirements.txt` installed (again when it changed).
fn python_venv() -> PathBuf {
    common::python::venv("venv", &workspace().join("examples/python/requirements.txt"))
}

#[test]
fn python_lists_validates_refreshes_with_grants_and_keeps_the_sandbox() {
    let python = python_venv();
    let (_tmp, site) = site();
    // A zip of DICOM files (written by dicom-rs) for the example's import.
    let upload = _tmp.path().join("upload.zip");
    let files: Vec<Vec<u8>> =
        (1..=3).map(|n| xnat_core::receive::samples::dicom("1.8.1", "1.8.1.1", "4", n, "MR", "PY1")).collect();
    let zip = xnat_core::receive::samples::zip_of(&[("1.dcm", &files[0]), ("2.dcm", &files[1]), ("3.dcm", &files[2])]);
    std::fs::write(&upload, zip).unwrap();
    let out = output(
        Command::new(python)
            .arg("-B") // no __pycache__ in examples/python
            .arg("main.py")
            .arg(component())
            .arg(&site)
            .arg(&upload)
            .current_dir(workspace().join("examples/python")),
    );
    let shown = text(&out);
    println!("{shown}");
    assert!(out.status.success() && shown.contains("python: all checks passed"), "examples/python/main.py:\n{shown}");

    let catalog = site.join("archive/DEMO/arc001/SUBJ1_MR1/SCANS/1/DICOM/scan_1_catalog.xml");
    assert!(std::fs::read_to_string(catalog).unwrap().contains("added-by-python.txt"));
    assert!(!shown.contains("secret.txt"), "a file outside the grant showed up:\n{shown}");
}

// ---------------------------------------------------------------------------------------------------------
// The Rust embedding example

/// `target/release/examples/embed`: `cargo test` builds the examples; built here when it did not (`cargo
/// test --test hosts`).
fn embed_example() -> PathBuf {
    // The test binary is target/<profile>/deps/hosts-<hash>; the examples are in target/<profile>/examples.
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let example = profile_dir.join("examples").join("embed");
    if !example.exists() {
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "-p", "xnat-archive", "--example", "embed"]).current_dir(workspace());
        if release {
            cmd.arg("--release");
        }
        run(&mut cmd);
    }
    example
}

#[test]
fn embed_example_lists_a_prearchive() {
    let example = embed_example();
    let (_tmp, site) = site();
    let out = run(Command::new(&example).arg(site.join("prearchive")));
    let rows = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{rows}");
    assert_eq!(
        rows.lines().count(),
        7,
        "six generated sessions are left after the demo archived one, and it imported one:\n{rows}"
    );
    assert!(rows.lines().any(|l| l.starts_with("READY") && l.ends_with("/SUBJ5_MR1")), "the imported session");
    assert!(rows.lines().any(|l| l.starts_with("READY") && l.contains("Unassigned/") && l.ends_with("/ANON01_MR")));
    assert!(rows.lines().any(|l| l.starts_with("RECEIVING") && l.ends_with("/SUBJ4_MR1")));

    let out = run(Command::new(&example).arg(site.join("prearchive")).arg("TRIAL"));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);

    // A directory that does not exist cannot be granted: a host failure, exit status 1, saying so.
    let out = output(Command::new(&example).arg(site.join("no-such-dir")));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot grant"), "{}", text(&out));
}

// ---------------------------------------------------------------------------------------------------------
// wasm-tools: the contract as compiled into the component

#[test]
fn wasm_tools_prints_the_library_world() {
    let wasm_tools = cargo_tool(WASM_TOOLS, "wasm-tools");
    let out = run(Command::new(wasm_tools).args(["component", "wit"]).arg(component()));
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    let world: Vec<&str> = printed.lines().skip_while(|l| !l.starts_with("world ")).take_while(|l| *l != "}").collect();
    println!("{}", world.join("\n"));
    for line in [
        "  import xnat:archive/progress@0.1.0;",
        "  import xnat:archive/holders@0.1.0;",
        "  import xnat:archive/digests@0.1.0;",
        "  import xnat:archive/listings@0.1.0;",
        "  import xnat:archive/types@0.1.0;",
        "  export xnat:archive/catalogs@0.1.0;",
        "  export xnat:archive/prearchive@0.1.0;",
        "  export xnat:archive/validation@0.1.0;",
        "  export xnat:archive/archiver@0.1.0;",
        "  export xnat:archive/archive-data@0.1.0;",
        "  export xnat:archive/importer@0.1.0;",
    ] {
        assert!(world.contains(&line), "the component's world lacks `{}`:\n{}", line.trim(), world.join("\n"));
    }
    // Beyond those, the component imports WASI 0.2 only (no wasi:http, no sockets: a plain WASI host runs it).
    for line in world.iter().filter(|l| l.trim_start().starts_with("import ")) {
        let name = line.trim().trim_start_matches("import ");
        assert!(
            name.starts_with("xnat:archive/")
                || ["wasi:io/", "wasi:clocks/", "wasi:cli/", "wasi:filesystem/", "wasi:random/"]
                    .iter()
                    .any(|p| name.starts_with(p)),
            "unexpected import {name}"
        );
        assert!(!name.starts_with("wasi:") || name.contains("@0.2."), "not WASI 0.2: {name}");
    }

    // Every function of wit/archive.wit, with its signature, is in the compiled contract.
    let squash = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let printed = squash(&printed);
    let source = std::fs::read_to_string(workspace().join("wit/archive.wit")).unwrap();
    let functions: Vec<String> =
        source.lines().map(str::trim).filter(|l| l.contains(": func(") && !l.starts_with("///")).map(squash).collect();
    assert!(functions.len() >= 12, "found only {} functions in wit/archive.wit", functions.len());
    for f in &functions {
        assert!(printed.contains(f.as_str()), "the component lacks `{f}` (rebuilt from another wit/archive.wit?)");
    }
}

// ---------------------------------------------------------------------------------------------------------
// The wasmtime CLI: `wasmtime run --dir HOST::GUEST --invoke 'func(WAVE arguments)'`

/// The library component with `examples/wasmtime-cli/imports-noop.wat` composed into its own imports
/// (`wasm-tools component embed` + `component new` + `compose`), so that it imports WASI only.
fn component_with_noop_imports(wasm_tools: &Path) -> PathBuf {
    let example = workspace().join("examples/wasmtime-cli");
    let dir = target().join("hosts/imports-noop");
    let _ = std::fs::remove_dir_all(&dir);
    // The stub's WIT: its world, and the xnat:archive package as a dependency (only archive.wit, so that other
    // files in wit/ never matter here) with the WASI packages it uses.
    std::fs::create_dir_all(dir.join("wit/deps/archive")).unwrap();
    std::fs::copy(example.join("imports-noop.wit"), dir.join("wit/imports-noop.wit")).unwrap();
    std::fs::copy(workspace().join("wit/archive.wit"), dir.join("wit/deps/archive/archive.wit")).unwrap();
    for wasi in std::fs::read_dir(workspace().join("wit/deps")).unwrap() {
        let wasi = wasi.unwrap();
        std::fs::copy(wasi.path(), dir.join("wit/deps").join(wasi.file_name())).unwrap();
    }
    let tool = |args: &[&str]| run(Command::new(wasm_tools).args(args).current_dir(&dir));
    let wat = example.join("imports-noop.wat");
    tool(&["component", "embed", "wit", "--world", "noop", wat.to_str().unwrap(), "-o", "noop.core.wasm"]);
    tool(&["component", "new", "noop.core.wasm", "-o", "noop.wasm"]);
    let plugged = dir.join("xnat_plugin_noop_imports.wasm");
    tool(&["compose", component().to_str().unwrap(), "-d", "noop.wasm", "-o", plugged.to_str().unwrap()]);
    let out = tool(&["component", "wit", plugged.to_str().unwrap()]);
    let printed = String::from_utf8_lossy(&out.stdout);
    for import in ["progress", "holders", "digests", "listings", "renames"] {
        assert!(!printed.contains(&format!("import xnat:archive/{import}")), "still imports {import}:\n{printed}");
    }
    assert!(printed.contains("export xnat:archive/catalogs@0.1.0;"), "{printed}");
    plugged
}

/// The `src` of the Unassigned session of a demo site (`/prearchive/projects/Unassigned/TS/ANON01_MR`).
fn unassigned_src(site: &Path) -> String {
    for entry in std::fs::read_dir(site.join("prearchive")).unwrap() {
        let timestamp = entry.unwrap().file_name().into_string().unwrap();
        if site.join("prearchive").join(&timestamp).join("ANON01_MR").is_dir() {
            return format!("/prearchive/projects/Unassigned/{timestamp}/ANON01_MR");
        }
    }
    panic!("the demo site has no Unassigned session ANON01_MR");
}

#[test]
fn wasmtime_cli_invokes_exports_with_wave_arguments() {
    let wasmtime = cargo_tool(WASMTIME_CLI, "wasmtime");
    let wasm_tools = cargo_tool(WASM_TOOLS, "wasm-tools");
    let (_tmp, site) = site();
    let pre = format!("{}::/prearchive", site.join("prearchive").display());
    let arc = format!("{}::/archive", site.join("archive").display());
    let invoke = |flags: &[&str], dirs: &[&str], call: &str, wasm: &Path| {
        let mut cmd = Command::new(&wasmtime);
        cmd.arg("run").args(flags);
        for dir in dirs {
            cmd.args(["--dir", dir]);
        }
        let out = output(cmd.args(["--invoke", call]).arg(wasm).env("RUST_BACKTRACE", "0"));
        let dirs: String = dirs.iter().map(|d| format!(" --dir {d}")).collect();
        println!("$ wasmtime run {}{dirs} --invoke '{call}' {}\n{}", flags.join(" "), wasm.display(), text(&out));
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), text(&out))
    };
    let get = format!("get(\"{}\")", unassigned_src(&site));

    // 1. The component as built imports xnat:archive/progress, which the CLI cannot provide: it refuses to
    //    instantiate it.
    let (ok, _, shown) = invoke(&[], &[&pre], &get, component());
    assert!(!ok, "{shown}");
    assert!(
        shown.contains(
            "component imports instance `xnat:archive/progress@0.1.0`, but a matching implementation was not found"
        ),
        "{shown}"
    );
    // 2. `-W unknown-imports-trap=y` stubs progress, but also every WASI interface the component imports at
    //    another 0.2 minor than wasmtime's own (the component imports 0.2.12): the first file access traps
    //    (bytecodealliance/wasmtime#10663), or — since the core crate also calls wasi:filesystem itself, which
    //    brings the clocks' `pollable` in at 0.2.12 — the stubbed clocks cannot even be linked with the real
    //    `wasi:io`. Either way the flag is no way to run it.
    let (ok, _, shown) = invoke(&["-W", "unknown-imports-trap=y"], &[&pre], &get, component());
    assert!(!ok, "{shown}");
    assert!(
        shown.contains("unknown import: `wasi:filesystem/preopens@") || shown.contains("mismatched resource types"),
        "{shown}"
    );

    // With the no-op imports composed in, every export with a name --invoke can parse runs.
    let plugged = component_with_noop_imports(&wasm_tools);

    // 3. The listing by its WIT name (not `list`, a WIT keyword that --invoke's WAVE names cannot escape).
    let (ok, stdout, shown) = invoke(&[], &[&pre], "list-sessions(none)", &plugged);
    assert!(ok && stdout.starts_with("ok([{project: ") && stdout.contains("folder-name: \"ANON01_MR\""), "{shown}");

    // 4. Interface functions by their bare name, records in WAVE (option fields may be left out).
    let (ok, stdout, shown) = invoke(&[], &[&pre], &get, &plugged);
    assert!(ok && stdout.starts_with("ok({project: \"Unassigned\"") && stdout.contains("status: \"READY\""), "{shown}");

    let validate = format!(
        "validate({{src: [\"{}\"], overwrite: %none, quarantine: false, trigger-pipelines: false}})",
        unassigned_src(&site)
    );
    let (ok, stdout, shown) = invoke(&[], &[&pre, &arc], &validate, &plugged);
    assert!(
        ok && stdout.contains("{code: 6, kind: \"FAIL\", message: \"unable to identify destination project\"}"),
        "{shown}"
    );

    let session = "/archive/projects/DEMO/subjects/SUBJ1/experiments/SUBJ1_MR1";
    let refresh = |resource: &str, mode: &str| {
        format!("refresh({{resources: [\"{resource}\"], options: {{}}, algorithm: md5, mode: {mode}}})")
    };
    let (ok, stdout, shown) = invoke(&[], &[&arc], &refresh(session, "verify"), &plugged);
    assert!(ok && stdout.starts_with("ok([") && stdout.matches("outcome: unchanged").count() == 2, "{shown}");

    // --dir is always read-write in the CLI (no read-only grants): an apply writes.
    let scan = site.join("archive/DEMO/arc001/SUBJ1_MR1/SCANS/1/DICOM");
    std::fs::write(scan.join("added-by-cli.txt"), "not cataloged yet\n").unwrap();
    let (ok, stdout, shown) =
        invoke(&[], &[&arc], &refresh(&format!("{session}/scans/1/resources/DICOM"), "apply"), &plugged);
    assert!(ok && stdout.contains("outcome: written") && stdout.contains("added: [\"added-by-cli.txt\"]"), "{shown}");
    assert!(std::fs::read_to_string(scan.join("scan_1_catalog.xml")).unwrap().contains("added-by-cli.txt"));

    // Limits: -W max-memory-size and -W timeout, per run.
    let (ok, _, shown) = invoke(&["-W", "max-memory-size=268435456", "-W", "timeout=30s"], &[&pre], &get, &plugged);
    assert!(ok, "{shown}");
    let (ok, _, shown) = invoke(&["-W", "max-memory-size=1048576"], &[&pre], &get, &plugged);
    assert!(!ok, "the component ran within 1 MiB of memory:\n{shown}");

    // The component's errors come back as `err(...)` on stdout (the exit status stays 0).
    let (ok, stdout, shown) = invoke(&[], &[&pre], "get(\"/prearchive/projects/X/20240101_000000000/Y\")", &plugged);
    assert!(ok && stdout.starts_with("err(not-found("), "{shown}");

    // 5. The sandbox: a symlink inside the grant that leads out of it is not followed.
    let outside = site.join("outside-the-grant/resources/NOTES");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "not for the component\n").unwrap();
    std::os::unix::fs::symlink("../outside-the-grant", site.join("archive/ESCAPE")).unwrap();
    let (ok, stdout, shown) =
        invoke(&[], &[&arc], &refresh("/archive/projects/ESCAPE/resources/NOTES", "dry-run"), &plugged);
    assert!(ok && stdout.starts_with("err(not-found(") && !shown.contains("secret.txt"), "{shown}");
}

// ---------------------------------------------------------------------------------------------------------
// The HTTP component under the stock `wasmtime serve`

/// The HTTP component embedded in this build (`target/guest/wasm32-wasip2/release/xnat_http.wasm`), as a
/// file of its own.
fn http_component() -> PathBuf {
    let dir = target().join("hosts");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("xnat_http.wasm");
    if std::fs::read(&file).ok().as_deref() != Some(xnat_archive::HTTP_COMPONENT) {
        std::fs::write(&file, xnat_archive::HTTP_COMPONENT).unwrap();
    }
    file
}

/// The `src` of a project's session in a demo site.
fn session_src(site: &Path, project: &str, folder: &str) -> String {
    let dir = site.join("prearchive").join(project);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let timestamp = entry.unwrap().file_name().into_string().unwrap();
        if dir.join(&timestamp).join(folder).is_dir() {
            return format!("/prearchive/projects/{project}/{timestamp}/{folder}");
        }
    }
    panic!("the demo site has no session {project}/*/{folder}");
}

/// A child process killed (and reaped) when dropped, so that a failing test leaves no server behind.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn wasmtime_serve_runs_the_http_component_with_directory_grants() {
    let wasmtime = cargo_tool(WASMTIME_CLI, "wasmtime");
    let wasm_tools = cargo_tool(WASM_TOOLS, "wasm-tools");
    let (_tmp, site) = site();
    let component = http_component();
    let address = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().to_string()
    };

    // README.md's lines, run as written but for where things are on this machine.
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let section =
        readme.split("### Under stock `wasmtime serve`").nth(1).expect("README.md: the wasmtime serve section");
    let block = section.split("```sh\n").nth(1).and_then(|b| b.split("```").next()).expect("its sh block");
    let password = block
        .split("echo -n '")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .expect("the block hashes a password with echo -n '...'");
    let curl = format!("curl -u admin:{password} 'http://127.0.0.1:8080/data/prearchive/projects?format=json'");
    assert!(block.lines().any(|l| l == curl), "README.md's block ends with `{curl}`:\n{block}");
    let mut script: String = block.lines().filter(|l| !l.starts_with("curl ")).map(|l| format!("{l}\n")).collect();
    let bin = env!("CARGO_BIN_EXE_xnat-archive");
    // The no-op imports are built and plugged in where this test keeps its files, with this machine's tools.
    let noop = target().join("hosts/serve-noop");
    let _ = std::fs::remove_dir_all(&noop);
    assert!(script.contains("/tmp/noop/") && script.contains("wasm-tools "), "{block}");
    script = script.replace("/tmp/noop", &noop.display().to_string());
    script = script.replace("wasm-tools ", &format!("{} ", wasm_tools.display()));
    for (written, here) in [
        ("xnat-archive hash-password", format!("{bin} hash-password")),
        ("wasmtime serve", format!("exec {} serve", wasmtime.display())),
        ("127.0.0.1:8080", address.clone()),
        ("/data/xnat/prearchive::", format!("{}::", site.join("prearchive").display())),
        ("/data/xnat/archive::", format!("{}::", site.join("archive").display())),
        ("target/guest/wasm32-wasip2/release/xnat_http.wasm", component.display().to_string()),
    ] {
        assert_eq!(script.matches(written).count(), 1, "README.md's command has `{written}` once:\n{block}");
        script = script.replace(written, &here);
    }
    println!("$ sh -c '{script}'");
    let mut child = Killed(
        Command::new("sh")
            .args(["-c", &script])
            .current_dir(workspace())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run sh"),
    );

    // Ready once it says where it serves (wasmtime prints it when the component is compiled and it listens).
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = std::sync::Arc::new(Mutex::new(String::new()));
    let (lines, sink) = (std::io::BufReader::new(child.0.stderr.take().unwrap()), stderr.clone());
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in lines.lines().map_while(Result::ok) {
            if line.starts_with("Serving HTTP on ") {
                let _ = tx.send(());
            }
            sink.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    let stdout = child.0.stdout.take().unwrap();
    std::thread::spawn(move || std::io::copy(&mut { stdout }, &mut std::io::sink()));
    if rx.recv_timeout(std::time::Duration::from_secs(120)).is_err() {
        panic!("wasmtime serve did not start serving within 120 s:\n{}", stderr.lock().unwrap());
    }

    let url = |path: &str| format!("http://{address}{path}");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(60)))
        .build()
        .into();
    let text = |response: Result<ureq::http::Response<ureq::Body>, ureq::Error>| {
        let mut response = response.expect("wasmtime serve answered");
        let status = response.status().as_u16();
        let cookie = response.headers().get("set-cookie").map(|v| v.to_str().unwrap().to_owned());
        (status, response.body_mut().read_to_string().unwrap_or_default(), cookie)
    };
    let rows = |body: &str| -> Vec<serde_json::Value> {
        let json: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
        json["ResultSet"]["Result"].as_array().unwrap_or_else(|| panic!("no ResultSet: {body}")).clone()
    };

    // The README's curl: HTTP Basic, the prearchive listing of the demo site.
    use base64::Engine as _;
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("admin:{password}")));
    let listing = url("/data/prearchive/projects?format=json");
    let (status, body, _) = text(agent.get(&listing).header("Authorization", &basic).call());
    assert_eq!(status, 200, "{body}");
    assert_eq!(rows(&body).len(), 7, "the demo site's seven sessions: {body}");
    let (status, _, _) = text(agent.get(&listing).call());
    assert_eq!(status, 401, "no credentials");

    // Login: the token as body and cookie (tenant prefix: none, so the cookie's path is /).
    let (status, token, cookie) =
        text(agent.put(&url("/data/services/auth")).send_form([("username", "admin"), ("password", password)]));
    assert_eq!(status, 200, "{token}");
    let cookie = cookie.expect("a JSESSIONID cookie");
    let attributes: Vec<&str> = cookie.split(';').map(str::trim).collect();
    assert!(attributes[0] == format!("JSESSIONID={token}") && attributes.contains(&"Path=/"), "{cookie}");
    let session = format!("JSESSIONID={token}");
    let (status, body, _) = text(agent.get(&listing).header("Cookie", &session).call());
    assert_eq!((status, rows(&body).len()), (200, 7), "{body}");

    // validate-archive, then archive: files move from one grant to the other.
    let src = session_src(&site, "DEMO", "SUBJ2_MR1");
    let post = |path: &str, form: &[(&str, &str)]| {
        text(agent.post(&url(path)).header("Cookie", &session).send_form(form.iter().copied()))
    };
    let (status, body, _) = post("/data/services/validate-archive", &[("src", &src), ("format", "json")]);
    assert_eq!(status, 200, "{body}");
    assert!(rows(&body).iter().all(|n| n["type"] != "FAIL"), "archivable: {body}");
    let (status, uri, _) = post("/data/services/archive", &[("src", &src)]);
    assert_eq!(
        (status, uri.trim()),
        (200, "/data/archive/projects/DEMO/subjects/SUBJ2/experiments/SUBJ2_MR1"),
        "{uri}"
    );
    let experiment = site.join("archive/DEMO/arc001/SUBJ2_MR1");
    assert!(site.join("archive/DEMO/arc001/SUBJ2_MR1.xml").is_file(), "the experiment document");
    assert!(!site.join(src.replace("/prearchive/projects/", "prearchive/")).exists(), "gone from the prearchive");
    let (status, body, _) = text(agent.get(&listing).header("Cookie", &session).call());
    assert_eq!((status, rows(&body).len()), (200, 6), "{body}");

    // refresh/catalog: a file added to a scan's resource is cataloged.
    let scan = std::fs::read_dir(experiment.join("SCANS")).unwrap().next().unwrap().unwrap().file_name();
    let scan = scan.to_str().unwrap();
    let dicom = experiment.join("SCANS").join(scan).join("DICOM");
    std::fs::write(dicom.join("added-by-wasmtime-serve.txt"), "not cataloged yet\n").unwrap();
    let resource = format!("/archive/projects/DEMO/subjects/SUBJ2/experiments/SUBJ2_MR1/scans/{scan}/resources/DICOM");
    let (status, body, _) = post("/data/services/refresh/catalog", &[("resource", &resource), ("format", "json")]);
    assert_eq!(status, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["reports"][0]["outcome"]["status"], "written", "{body}");
    assert_eq!(report["reports"][0]["added"], serde_json::json!(["added-by-wasmtime-serve.txt"]), "{body}");
    let catalog = std::fs::read_to_string(dicom.join(format!("scan_{scan}_catalog.xml"))).unwrap();
    assert!(catalog.contains("added-by-wasmtime-serve.txt"), "{catalog}");

    // The grants are all it sees: a src that leaves them is refused.
    let (status, body, _) =
        post("/data/services/validate-archive", &[("src", "/prearchive/projects/../../../etc/x/y")]);
    assert_eq!(status, 400, "{body}");

    drop(child);
    let log = stderr.lock().unwrap().clone();
    assert!(!log.contains("error") && !log.contains("panicked"), "wasmtime serve's log:\n{log}");
}
