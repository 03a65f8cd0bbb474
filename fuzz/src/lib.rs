//! Fuzz harnesses: one `pub fn <target>(data: &[u8])` per target, each panicking when a property fails.
//!
//! The same functions run in two places:
//! * the coverage-guided fuzzer: `fuzz_targets/<target>.rs` hands them libFuzzer's inputs (built with the
//!   `libfuzzer` feature by `cargo fuzz … --sanitizer none`, which needs no nightly; `bench/fuzz.sh`);
//! * `cargo test`: [`tests`] replays every seed of `seeds/<target>/` and a few thousand deterministic
//!   mutations of them, so a property that breaks shows up in the normal test command.
//!
//! Input sizes are whatever the fuzzer gives (libFuzzer's `-max_len`, 4 KiB by default): deep element
//! nesting within that size stays far from the stack's limit.

use std::path::{Component, Path};

use xnat_core::fs::tree::{RelPath, check_segment};
use xnat_core::import::journal::Journal;
use xnat_core::import::plan::Step;
use xnat_core::model::catalog::Catalog;
use xnat_core::model::session::SessionDoc;
use xnat_core::site::uri::{ExperimentRef, Item, ResourceUri};
use xnat_http::Request;
use xnat_http::params::Params;

/// Catalog reader and writer: whatever parses is written as a catalog that parses again, with the same
/// entries, and writing is stable: `write(parse(write(parse(x)))) == write(parse(x))`.
pub fn catalog(data: &[u8]) {
    let Ok(first) = Catalog::parse(data) else { return };
    let xml = first.to_xml();
    let second =
        Catalog::parse(xml.as_bytes()).unwrap_or_else(|e| panic!("the written catalog does not parse ({e}):\n{xml}"));
    assert_eq!(second.to_xml(), xml, "writing the re-read catalog changed it");
    assert_eq!(second.kind(), first.kind());
    assert_eq!(second.id(), first.id());
    let (a, b) = (first.entry_locs(), second.entry_locs());
    assert_eq!(a.len(), b.len(), "entries were lost or gained by a write:\n{xml}");
    for (la, lb) in a.iter().zip(&b) {
        let (ea, eb) = (first.entry(la), second.entry(lb));
        assert_eq!(ea.uri(), eb.uri());
        assert_eq!(ea.is_dicom(), eb.is_dicom());
        assert_eq!(ea.meta_field("size_in_bytes"), eb.meta_field("size_in_bytes"));
    }
}

/// DICOM header reading (the import): never panics, and a file it accepts has the UIDs the import sorts by
/// and names that are plain path segments (its file name and scan ID become folders and files).
pub fn dicom(data: &[u8]) {
    use xnat_core::receive::{dicom, naming};
    let Ok(header) = dicom::read_header(&mut std::io::Cursor::new(data), data.len() as u64) else { return };
    assert!(!header.study_instance_uid.is_empty() && !header.sop_instance_uid.is_empty());
    assert!(!header.series_instance_uid.is_empty());
    for name in [naming::file_name(&header), naming::scan_id(&header), naming::session_of(&header)] {
        check_segment(&name).unwrap_or_else(|e| panic!("{name:?} is not one path segment: {e}"));
    }
}

/// Session document reader and writer: the same properties as [`catalog`], and the accessors the archive
/// uses never panic.
pub fn session(data: &[u8]) {
    let Ok(first) = SessionDoc::parse(data) else { return };
    let xml = first.to_xml();
    let _ = (first.element_name(), first.xsi_type(), first.modality_code(), first.subject_id());
    let _ = (first.uid(), first.field("date"), first.custom_field("x"));
    let second = SessionDoc::parse(xml.as_bytes())
        .unwrap_or_else(|e| panic!("the written document does not parse ({e}):\n{xml}"));
    assert_eq!(second.to_xml(), xml, "writing the re-read document changed it");
    assert_eq!(first.scans(), second.scans(), "a write changed the scans");
    assert_eq!(first.resources(), second.resources(), "a write changed the resources");
    assert_eq!((first.id(), first.label(), first.project()), (second.id(), second.label(), second.project()));
    assert_eq!((first.xsi_type(), first.subject_id()), (second.xsi_type(), second.subject_id()));
}

/// Resource-URI grammar: never panics, and every name a parsed URI yields is one plain path segment, so
/// the folders it leads to stay inside the archive.
pub fn uri(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(parsed) = ResourceUri::parse(&text) else { return };
    let mut names: Vec<&str> = Vec::new();
    fn experiment(e: &ExperimentRef) -> Vec<&str> {
        match e {
            ExperimentRef::Id(id) => vec![id.as_str()],
            ExperimentRef::InProject { project, subject, experiment } => {
                [Some(project.as_str()), subject.as_deref(), Some(experiment.as_str())].into_iter().flatten().collect()
            }
        }
    }
    match &parsed.item {
        Item::Project(p) => names.push(p),
        Item::Subject { project, subject } => names.extend(project.as_deref().into_iter().chain([subject.as_str()])),
        Item::Experiment(e) => names.extend(experiment(e)),
        Item::Scan { experiment: e, scan: x }
        | Item::Assessor { experiment: e, assessor: x }
        | Item::Reconstruction { experiment: e, reconstruction: x } => {
            names.extend(experiment(e));
            names.push(x);
        }
    }
    if let Some(label) = parsed.resource.as_ref().and_then(|r| r.label.as_deref()) {
        names.push(label);
    }
    for name in names {
        assert!(check_segment(name).is_ok(), "{text:?} yields the name {name:?}, which is not one plain segment");
        let path = RelPath::root().join(name).expect("a plain segment joins");
        assert_relative(&path, &text);
    }
}

/// The query and form parser: any query, content type and body; the accessors keep their promises.
///
/// Input: `query \n content-type \n body` (missing parts are empty).
pub fn params(data: &[u8]) {
    let mut parts = data.splitn(3, |&b| b == b'\n');
    let query = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let content_type = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let body = parts.next().unwrap_or_default().to_vec();
    let mut req = Request::new("POST", "/data/services/archive");
    req.query = query;
    if !content_type.is_empty() {
        req = req.with_header("Content-Type", &content_type);
    }
    req.body = body;
    let Ok(p) = Params::parse(&req) else {
        assert!(!req.body.is_empty(), "an empty body cannot be a bad form");
        return;
    };
    let query_only = Params::parse(&Request { body: Vec::new(), ..req.clone() }).expect("a query always parses");
    for name in ["src", "session", "label", "EXPT_LABEL", "options", "format", "append", "quarantine", "a", ""] {
        let all = p.all(name);
        assert_eq!(p.get(name), all.first().copied());
        assert_eq!(p.contains(name), !all.is_empty());
        assert!(all.len() >= query_only.all(name).len(), "the body's values replaced the query's");
        if let Some(v) = p.value(name) {
            assert!(!v.is_empty() && v == v.trim(), "value({name}) = {v:?}");
        }
        for item in p.list(name) {
            assert!(!item.is_empty() && item == item.trim() && !item.contains(','), "list({name}) has {item:?}");
        }
        let _ = (p.on_unless_false(name), p.only_if_true(name));
    }
    if let Ok(Some(v)) = p.synonym(&["session", "label", "EXPT_LABEL"]) {
        assert!(!v.is_empty() && v == v.trim());
    }
}

/// The archive journal reader: never panics, and every path a journal names stays inside its tree.
pub fn journal(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(j) = Journal::parse(&text) else { return };
    assert_relative(&j.target, &text);
    for step in &j.steps {
        let (a, b) = match step {
            Step::Move { from, to } => (from, to),
            Step::Backup { file, to } => (file, to),
            Step::MergeCatalog { from, into } => (from, into),
        };
        assert_relative(a, &text);
        assert_relative(b, &text);
    }
    let s = &j.session;
    for seg in [s.project.as_deref().unwrap_or("x"), &s.timestamp, &s.folder] {
        assert!(check_segment(seg).is_ok(), "{text:?}: session segment {seg:?}");
    }
    let _ = j.uri();
}

/// A path that cannot leave the tree it is relative to.
fn assert_relative(p: &RelPath, input: &str) {
    let s = p.as_str();
    assert!(!s.starts_with('/') && !s.contains('\\') && !s.contains('\0'), "{input:?} yields the path {s:?}");
    if !p.is_root() {
        assert!(s.split('/').all(|seg| !matches!(seg, "" | "." | "..")), "{input:?} yields the path {s:?}");
    }
    assert!(Path::new(s).components().all(|c| matches!(c, Component::Normal(_))), "{input:?} yields {s:?}");
}

mod http;
pub use http::{http, http_request};

#[cfg(test)]
mod tests;
