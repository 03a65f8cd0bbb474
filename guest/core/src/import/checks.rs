//! XNAT's validation checks on the incoming session's own files, as notices (`archive-service.md` §2):
//! scan catalogs and their DICOM entries (codes 20–22), every catalog entry's file (21, FAIL) and every
//! resource URI (13). Read-only; not for the destination checks (those need the plan: `plan.rs`).

use crate::error::{Error, Result};
use crate::fs::tree::{RelPath, Tree};
use crate::import::incoming::{CatalogStats, EntryRef, FilesBelow, SessionFiles};
use crate::import::request::{Notice, NoticeKind};
use crate::model::session::{Scan, ScanFile, SessionDoc};
use crate::site::names::relative_uri;
use foldhash::HashSet;

/// Codes 21, 20 and 22 on the incoming session's scan resources (`dir`: the session folder).
pub fn check_dicom(pre: &Tree, files: &SessionFiles, dir: &RelPath, incoming: &SessionDoc) -> Result<Vec<Notice>> {
    let mut notices = Vec::new();
    for scan in incoming.scans() {
        for file in &scan.files {
            notices.extend(check_scan_resource(pre, files, dir, &scan, file)?);
        }
    }
    Ok(notices)
}

/// Codes 21, 20 and 22 on one scan resource: its catalog is there and readable, lists every file in its
/// folder, and — for DICOM — lists DICOM entries with UIDs, each UID once.
fn check_scan_resource(
    pre: &Tree,
    files: &SessionFiles,
    dir: &RelPath,
    scan: &Scan,
    file: &ScanFile,
) -> Result<Vec<Notice>> {
    let mut notices = Vec::new();
    let Some(rel) = relative_uri(&file.uri, dir) else { return Ok(notices) };
    let Ok(cat_path) = dir.join_path(&rel) else { return Ok(notices) };
    let read = match files.catalog_entries(pre, &cat_path) {
        Ok(read) => read,
        Err(Error::NotFound(_)) => {
            notices.push(Notice::new(21, NoticeKind::Warn, "Expected a catalog file, however it was missing."));
            return Ok(notices);
        }
        Err(e) => return Err(e),
    };
    let Some(entries) = read.as_ref() else {
        notices.push(Notice::new(
            21,
            NoticeKind::Warn,
            format!("Expected a catalog file, however {rel} cannot be read."),
        ));
        return Ok(notices);
    };
    let below = files.below(pre, &cat_path.parent())?;
    let unlisted = unlisted_files(&below, &cat_path, entries);
    if !unlisted.is_empty() {
        notices.push(Notice::new(
            20,
            NoticeKind::Warn,
            format!(
                "Scan {} resource {} holds files its catalog does not list: {}",
                scan.id,
                file.label,
                unlisted.join(", ")
            ),
        ));
    }
    if file.format.as_deref().is_some_and(|f| f.eq_ignore_ascii_case("DICOM"))
        && entries.iter().any(|(_, uid, dcm)| !dcm || uid.is_none())
    {
        notices.push(Notice::new(
            20,
            NoticeKind::Warn,
            format!(
                "Scan {} resource {} is DICOM but lists entries that are not DICOM or have no UID",
                scan.id, file.label
            ),
        ));
    }
    // Hashed, not ordered: UIDs (and file names) share long prefixes, and every ordered comparison walks them.
    let mut seen = HashSet::default();
    for uid in entries.iter().filter_map(|(_, u, _)| u.as_deref()) {
        if !seen.insert(uid) {
            notices.push(Notice::new(
                22,
                NoticeKind::Warn,
                format!("Duplicate SOP Instance UID {uid} in scan {}", scan.id),
            ));
            break;
        }
    }
    Ok(notices)
}

/// The files in a catalog's folder (and below) that none of its entries lists, the catalog itself aside.
fn unlisted_files(below: &FilesBelow, cat_path: &RelPath, entries: &[EntryRef]) -> Vec<String> {
    let listed: HashSet<&str> = entries.iter().map(|(u, _, _)| u.as_str()).collect();
    let mut unlisted: Vec<String> =
        below.paths().filter(|f| *f != cat_path.name() && !listed.contains(f)).map(str::to_string).collect();
    unlisted.sort();
    unlisted
}

/// Code 21 (FAIL): every entry of every catalog in the session must name a file that is there, inside the
/// catalog's folder. An entry without its file would be archived as a promise the archive cannot keep
/// (and with overwrite=delete could replace an archived instance with nothing).
///
/// Also gives, by catalog path, the `file_count` and `file_size` of every readable catalog (its entries that
/// name a regular file, and their bytes), which the same look at each entry finds.
pub fn check_entries(pre: &Tree, files: &SessionFiles) -> Result<EntryChecks> {
    let mut notices = Vec::new();
    let mut stats = Vec::new();
    for cat_path in files.catalogs()? {
        let read = files.catalog_entries(pre, &cat_path)?;
        let Some(entries) = read.as_ref() else { continue };
        let below = files.below(pre, &cat_path.parent())?;
        let mut missing = Vec::new();
        let (mut count, mut size) = (0u64, 0u64);
        for (uri, _, _) in entries {
            match below.file_len(pre, uri)? {
                Some(len) => {
                    count += 1;
                    size += len;
                }
                None => missing.push(uri.clone()),
            }
        }
        stats.push((cat_path.clone(), (count, size)));
        if !missing.is_empty() {
            let shown: Vec<&str> = missing.iter().take(10).map(String::as_str).collect();
            let more = if missing.len() > 10 { format!(" and {} more", missing.len() - 10) } else { String::new() };
            let rel = cat_path.strip_prefix(files.dir()).unwrap_or(cat_path.as_str()).to_string();
            notices.push(Notice::new(
                21,
                NoticeKind::Fail,
                format!(
                    "Catalog {rel} lists files that are not in its folder: {}{more}; \
                     put the files back or refresh the catalog before archiving",
                    shown.join(", ")
                ),
            ));
        }
    }
    Ok(EntryChecks { notices, stats })
}

/// What [`check_entries`] found: its notices, and each readable catalog's statistics by its path.
pub struct EntryChecks {
    pub notices: Vec<Notice>,
    pub stats: Vec<(RelPath, CatalogStats)>,
}

/// Code 13: every resource `URI` of the incoming document (scans, session resources, assessors,
/// reconstructions) must name a place inside the session folder; one that points into another session,
/// at a host path or a drive, or climbs out with `..`, fails validation and so cannot be archived.
pub fn check_uris(dir: &RelPath, incoming: &SessionDoc) -> Vec<Notice> {
    let mut bad = Vec::new();
    collect_bad_uris(incoming.root(), dir, &mut bad);
    let mut notices = Vec::new();
    for uri in bad {
        notices.push(Notice::new(
            13,
            NoticeKind::Fail,
            format!(
                "Invalid resource URI {uri:?}: resource catalogs must lie inside the session folder \
                 (a path relative to it, such as SCANS/1/DICOM/scan_1_catalog.xml); fix the session document"
            ),
        ));
    }
    notices
}

fn collect_bad_uris(el: &crate::xml::Element, dir: &RelPath, out: &mut Vec<String>) {
    if let Some(uri) = el.attr("URI")
        && relative_uri(uri, dir).is_none()
    {
        out.push(uri.to_string());
    }
    for c in el.elements() {
        collect_bad_uris(c, dir, out);
    }
}
