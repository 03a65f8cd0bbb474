//! A generated XNAT site (prearchive and archive in a temporary folder) driven through the real CLI, for
//! the archive and data-safety suites.

use super::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use xnat_archive::generator::{self, Modality, SessionSpec};

pub struct Site {
    _dir: tempfile::TempDir,
    pub pre: PathBuf,
    pub arch: PathBuf,
}

impl Site {
    /// Our own files left in either tree: journals, locks, temporary and set-aside files.
    pub fn leftovers(&self) -> Vec<String> {
        snapshot(&self.pre)
            .into_keys()
            .chain(snapshot(&self.arch).into_keys())
            .filter(|p| p.contains(".journal") || p.ends_with(".lock") || p.contains(".~xnat-"))
            .collect()
    }

    pub fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let pre = dir.path().join("prearchive");
        let arch = dir.path().join("archive");
        generator::write_site(&pre, &arch).unwrap();
        Site { _dir: dir, pre, arch }
    }
    pub fn p(&self) -> &str {
        self.pre.to_str().unwrap()
    }
    pub fn a(&self) -> &str {
        self.arch.to_str().unwrap()
    }
    pub fn add(&self, spec: &SessionSpec) -> String {
        generator::write_session(&self.pre, spec).unwrap();
        src(spec)
    }
    pub fn archive(&self, srcs: &[&str], extra: &[&str]) -> (i32, Value) {
        let mut args = vec!["archive", "--prearchive", self.p(), "--archive", self.a()];
        for s in srcs {
            args.extend(["--src", s]);
        }
        args.extend_from_slice(extra);
        cli_json(&args)
    }
    pub fn validate(&self, src: &str, extra: &[&str]) -> Vec<(u32, String, String)> {
        let mut args = vec!["validate", "--prearchive", self.p(), "--archive", self.a(), "--src", src];
        args.extend_from_slice(extra);
        let (code, v) = cli_json(&args);
        assert_eq!(code, 0, "{v}");
        v["ResultSet"]["Result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["code"].as_str().unwrap().parse().unwrap(),
                    r["type"].as_str().unwrap().to_string(),
                    r["message"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
    pub fn rows(&self) -> Vec<Value> {
        let (code, v) = cli_json(&["prearchive", "list", "--prearchive", self.p()]);
        assert_eq!(code, 0, "{v}");
        v["ResultSet"]["Result"].as_array().unwrap().clone()
    }
    pub fn status(&self, src: &str) -> Option<String> {
        let url = src.trim_start_matches("/data");
        self.rows().iter().find(|r| r["url"] == url).map(|r| r["status"].as_str().unwrap().to_string())
    }
}

pub fn src(spec: &SessionSpec) -> String {
    format!(
        "/data/prearchive/projects/{}/{}/{}",
        spec.project.as_deref().unwrap_or("Unassigned"),
        spec.timestamp,
        spec.folder
    )
}

/// The one archived row of a single-session archive: (uri, error kind).
pub fn one(v: &Value) -> (Option<String>, Option<String>) {
    let rows = v["archived"].as_array().unwrap_or_else(|| panic!("{v}"));
    assert_eq!(rows.len(), 1, "{v}");
    (rows[0]["uri"].as_str().map(str::to_string), rows[0]["error"]["kind"].as_str().map(str::to_string))
}

/// Files below a folder (relative path → MD5), leaving out logs and what `skip` names.
pub fn files(root: &Path, skip: &dyn Fn(&str) -> bool) -> BTreeMap<String, String> {
    if !root.exists() {
        return BTreeMap::new();
    }
    snapshot(root).into_iter().filter(|(p, _)| !p.ends_with('/') && !p.starts_with("logs/") && !skip(p)).collect()
}

pub fn spec(project: &str, folder: &str, modality: Modality, seed: u64) -> SessionSpec {
    let mut s = SessionSpec::new(Some(project), folder, modality, seed);
    s.subject = Some("SUBJ1".into());
    s
}

/// A second session of the experiment `spec` was archived as, holding as many other instances of its first
/// scan's series as that scan has files: archived with `overwrite=append`, each of its files moves on its own
/// into the existing scan folder and the two catalogs merge. (Written as instances 1..=2n, the first n then
/// dropped with their entries and files.)
pub fn other_instances(pre: &Path, spec: &SessionSpec, seed: u64) -> SessionSpec {
    let n = spec.scans[0].files;
    let mut more = SessionSpec::new(spec.project.as_deref(), &spec.folder, Modality::Mr, seed);
    more.label = spec.label.clone();
    more.subject = spec.subject.clone();
    more.study_uid = spec.study_uid.clone();
    more.scans = spec.scans.clone();
    more.scans[0].files = 2 * n;
    generator::write_session(pre, &more).unwrap();
    let cat_path = more.session_dir(pre).join(SessionSpec::catalog_uri(&more.scans[0]));
    let mut cat = xnat_core::model::catalog::Catalog::parse(&std::fs::read(&cat_path).unwrap()).unwrap();
    let first: std::collections::HashSet<String> =
        (1..=n).map(|i| generator::file_name(&more, &more.scans[0], i)).collect();
    let dropped: Vec<_> =
        cat.entry_locs().into_iter().filter(|l| first.contains(cat.entry(l).uri().unwrap())).collect();
    assert_eq!(dropped.len(), n);
    cat.remove_entries(&dropped);
    std::fs::write(&cat_path, cat.to_xml()).unwrap();
    for name in &first {
        std::fs::remove_file(cat_path.parent().unwrap().join(name)).unwrap();
    }
    more
}
