//! Shared pieces of the end-to-end suites: real XNAT fixtures materialised as archive trees, the real
//! `xnat-archive` binary, and semantic comparison of trees and catalogs.
#![allow(dead_code)]

pub mod http;
pub mod python;
pub mod server;
pub mod site;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use xnat_core::xml::{self, Element};

/// The MD5 of 4,096 zero bytes, as stored 8,190 times in `DEBUG_OUTPUT_catalog.xml`.
pub const ZERO_4096_MD5: &str = "620f0b67a91f7f74151bc5be745b7110";

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(name)
}

/// Runs the real CLI.
pub fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xnat-archive")).args(args).output().expect("run xnat-archive")
}

/// Runs the real CLI with extra environment variables (the test-only fault and pause switches).
pub fn cli_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xnat-archive"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run xnat-archive")
}

/// Parses a CLI run's stdout as JSON.
pub fn json_of(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("stdout is not JSON ({e}):\n{stdout}\nstderr:\n{}", String::from_utf8_lossy(&out.stderr))
    })
}

/// Runs the CLI with `--json` and returns (exit code, parsed stdout).
pub fn cli_json(args: &[&str]) -> (i32, serde_json::Value) {
    let mut all: Vec<&str> = args.to_vec();
    all.push("--json");
    let out = cli(&all);
    let code = out.status.code().expect("exit code");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("{args:?}: stdout is not JSON ({e}):\n{stdout}\nstderr:\n{}", String::from_utf8_lossy(&out.stderr))
    });
    (code, value)
}

/// Runs the CLI with `args` and `--json`, checks its JSON answer with `check` (exit code 0 first), and returns
/// how long the run took (process start and component included).
pub fn cli_timed(args: &[&str], check: impl Fn(&serde_json::Value)) -> std::time::Duration {
    let started = std::time::Instant::now();
    let (code, v) = cli_json(args);
    let took = started.elapsed();
    assert_eq!(code, 0, "{args:?}: {v}");
    check(&v);
    took
}

/// One file of a catalog fixture: its path and the size its entry records.
pub struct FixtureFile {
    pub uri: String,
    pub size: u64,
    pub digest: String,
}

/// The entries of a catalog fixture, nested sets included.
pub fn fixture_files(catalog: &Path) -> Vec<FixtureFile> {
    let root = xml::parse(&std::fs::read(catalog).unwrap()).unwrap();
    let mut out = Vec::new();
    collect(&root, &mut out);
    out
}

fn collect(el: &Element, out: &mut Vec<FixtureFile>) {
    if el.local_name() == "entry" {
        let size = el
            .elements()
            .flat_map(|m| m.elements())
            .find(|m| matches!(m.attr("name"), Some("SIZE") | Some("size_in_bytes")))
            .map(|m| m.text().parse().unwrap())
            .unwrap_or(0);
        out.push(FixtureFile {
            uri: el.attr("URI").unwrap().to_string(),
            size,
            digest: el.attr("digest").unwrap_or("").to_string(),
        });
    }
    for c in el.elements() {
        collect(c, out);
    }
}

/// Writes every file a catalog lists into `folder` (4,096 zero bytes where the digest says so, otherwise
/// as many bytes as its size, derived from its path), and copies the catalog in as `catalog_name`.
pub fn materialise(catalog: &Path, folder: &Path, catalog_name: &str) -> Vec<FixtureFile> {
    let files = fixture_files(catalog);
    for f in &files {
        let path = folder.join(&f.uri);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let bytes = if f.digest == ZERO_4096_MD5 {
            vec![0u8; 4096]
        } else {
            let seed = f.uri.bytes().fold(7u8, |a, b| a.wrapping_mul(31).wrapping_add(b));
            (0..f.size).map(|i| seed.wrapping_add(i as u8)).collect()
        };
        std::fs::write(path, bytes).unwrap();
    }
    std::fs::create_dir_all(folder).unwrap();
    std::fs::copy(catalog, folder.join(catalog_name)).unwrap();
    files
}

/// Every file below `root` with its bytes' MD5 (links as `-> target`, FIFOs and the like by kind), to compare
/// trees.
pub fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let t = e.file_type().unwrap();
        if t.is_symlink() {
            out.insert(rel, format!("-> {}", std::fs::read_link(&p).unwrap().display()));
        } else if t.is_dir() {
            out.insert(format!("{rel}/"), String::new());
            walk(root, &p, out);
        } else if t.is_file() {
            out.insert(rel, md5_hex(&std::fs::read(&p).unwrap()));
        } else {
            // A FIFO, socket or device: reading it could block forever.
            out.insert(rel, "(not a regular file)".to_string());
        }
    }
}

pub fn md5_hex(bytes: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(bytes))
}

/// A catalog's entries by URI: attributes and metaFields, for semantic checks.
pub fn entries(catalog: &Path) -> BTreeMap<String, Element> {
    let root = xml::parse(&std::fs::read(catalog).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", catalog.display()));
    let mut out = BTreeMap::new();
    gather(&root, &mut out);
    out
}

fn gather(el: &Element, out: &mut BTreeMap<String, Element>) {
    if el.local_name() == "entry" {
        out.insert(el.attr("URI").unwrap().to_string(), el.clone());
    }
    for c in el.elements() {
        gather(c, out);
    }
}

/// An entry's metaField value.
pub fn meta(entry: &Element, name: &str) -> Option<String> {
    entry.elements().flat_map(|m| m.elements()).find(|m| m.attr("name") == Some(name)).map(|m| m.text())
}
