//! What a prearchive session holds, as XNAT's prearchive listings show it: its scans (`…/scans`), a scan's
//! resources (`…/scans/N/resources`) and a resource's files (`…/resources/R/files[/PATH]`), read from the
//! session document and the resources' catalogs.
//!
//! A file is reachable only through its catalog: a path that no entry of the resource's catalog names is
//! not found, so these listings never expose anything but the session's own listed files.

use crate::error::{Error, Result};
use crate::fs::tree::{Kind, RelPath};
use crate::import::prearchive::{Prearchive, SessionRef};
use crate::model::catalog::Catalog;
use crate::model::session::{Scan, ScanFile, SessionDoc};
use crate::site::names::relative_uri;

/// A scan row: the same as the archive's listing shows ([`ScanRow`]).
pub use crate::site::browse::ScanRow;

/// A resource row: its label, format and content, and the files its catalog lists that exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRow {
    pub label: String,
    pub format: String,
    pub content: String,
    pub file_count: u64,
    pub file_size: u64,
}

/// A file row: a resource's file as the archive's listings show it (the same row: [`FileRow`]).
pub use crate::site::browse::FileRow;

/// The scans of a session, in document order.
pub fn scans(pre: &Prearchive, s: &SessionRef) -> Result<Vec<ScanRow>> {
    Ok(crate::site::browse::scans_of(&document(pre, s)?))
}

/// The resources of one scan.
pub fn resources(pre: &Prearchive, s: &SessionRef, scan: &str) -> Result<Vec<ResourceRow>> {
    let scan = find_scan(&document(pre, s)?, s, scan)?;
    let mut out = Vec::new();
    for file in &scan.files {
        let (count, size) = match listed(pre, s, file) {
            Ok(Some((_, files))) => (files.len() as u64, files.iter().map(|f| f.size).sum()),
            // A resource whose catalog is missing or unreadable holds nothing one could fetch.
            Ok(None) | Err(Error::Corrupt(_)) => (0, 0),
            Err(e) => return Err(e),
        };
        let (format, content) = catalog_labels(pre, s, file);
        out.push(ResourceRow {
            label: file.label.clone(),
            format: file.format.clone().or(format).unwrap_or_default(),
            content: content.unwrap_or_default(),
            file_count: count,
            file_size: size,
        });
    }
    Ok(out)
}

/// The files of one resource of one scan that its catalog lists and that exist.
pub fn files(pre: &Prearchive, s: &SessionRef, scan: &str, resource: &str) -> Result<Vec<FileRow>> {
    let file = find_resource(pre, s, scan, resource)?;
    match listed(pre, s, &file)? {
        Some((_, files)) => Ok(files),
        None => Err(Error::NotFound(format!(
            "resource {resource} of scan {scan} of {} has no catalog; rebuild the session",
            s.url()
        ))),
    }
}

/// The path (in the prearchive tree) and size of one listed file, for download.
pub fn file(pre: &Prearchive, s: &SessionRef, scan: &str, resource: &str, name: &str) -> Result<(RelPath, u64)> {
    let res = find_resource(pre, s, scan, resource)?;
    let found = listed(pre, s, &res)?.and_then(|(_, files)| files.into_iter().find(|f| f.name == name));
    found.map(|f| (f.path, f.size)).ok_or_else(|| {
        Error::NotFound(format!("{name} is not a file of resource {resource} of scan {scan} of {}", s.url()))
    })
}

fn document(pre: &Prearchive, s: &SessionRef) -> Result<SessionDoc> {
    pre.require(s)?;
    pre.document(s)?.ok_or_else(|| {
        Error::NotFound(format!(
            "{} has no session document yet (it is still being received); its scans are listed once it is built",
            s.url()
        ))
    })
}

fn find_scan(doc: &SessionDoc, s: &SessionRef, scan: &str) -> Result<Scan> {
    doc.scans()
        .into_iter()
        .find(|x| x.id == scan)
        .ok_or_else(|| Error::NotFound(format!("scan {scan} of {} does not exist", s.url())))
}

fn find_resource(pre: &Prearchive, s: &SessionRef, scan: &str, resource: &str) -> Result<ScanFile> {
    let scan_row = find_scan(&document(pre, s)?, s, scan)?;
    scan_row
        .files
        .into_iter()
        .find(|f| f.label == resource)
        .ok_or_else(|| Error::NotFound(format!("resource {resource} of scan {scan} of {} does not exist", s.url())))
}

/// The catalog's path in the prearchive tree, if the resource's URI points into the session folder.
fn catalog_path(s: &SessionRef, file: &ScanFile) -> Result<Option<RelPath>> {
    match relative_uri(&file.uri, &s.dir()) {
        Some(rel) => s.dir().join_path(&rel).map(Some),
        None => Ok(None),
    }
}

fn read_catalog(pre: &Prearchive, path: &RelPath) -> Result<Option<Catalog>> {
    match pre.tree().read(path) {
        Ok(bytes) => {
            Catalog::parse(&bytes).map(Some).map_err(|e| Error::Corrupt(format!("catalog {path} is unreadable: {e}")))
        }
        Err(Error::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The resource's catalog-level format and content labels (`cat:Catalog/@format`, `@content`), if any.
fn catalog_labels(pre: &Prearchive, s: &SessionRef, file: &ScanFile) -> (Option<String>, Option<String>) {
    let cat = catalog_path(s, file).ok().flatten().and_then(|p| read_catalog(pre, &p).ok().flatten());
    let attr = |name: &str| cat.as_ref().and_then(|c| c.root().attr(name)).map(str::to_string);
    (attr("format"), attr("content"))
}

/// The catalog and its entries whose files exist: (path in the tree, row), in catalog order. `None` when
/// the resource has no catalog.
type Listed = (RelPath, Vec<FileRow>);

fn listed(pre: &Prearchive, s: &SessionRef, file: &ScanFile) -> Result<Option<Listed>> {
    let Some(path) = catalog_path(s, file)? else { return Ok(None) };
    let Some(cat) = read_catalog(pre, &path)? else { return Ok(None) };
    let folder = path.parent();
    let mut rows = Vec::new();
    for loc in cat.entry_locs() {
        let entry = cat.entry(&loc);
        let Some(uri) = entry.uri() else { continue };
        // Entry URIs are relative to the catalog's folder; anything else (absolute, `..`) is not served.
        let Ok(rel) = folder.join_path(uri.trim_start_matches("./")) else { continue };
        let Some(Kind::File { len }) = pre.tree().kind(&rel)? else { continue };
        let text = |name: &str| entry.attr(name).unwrap_or_default().to_string();
        rows.push(FileRow {
            name: uri.trim_start_matches("./").to_string(),
            size: len,
            digest: text("digest"),
            format: text("format"),
            content: text("content"),
            tags: entry.tags(),
            path: rel,
        });
    }
    Ok(Some((path, rows)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::tree::Tree;
    use std::fs;

    const DOC: &str = r#"<xnat:MRSession xmlns:xnat="http://nrg.wustl.edu/xnat" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ID="" project="P" label="S1">
<xnat:scans>
<xnat:scan ID="2" type="T1" xsi:type="xnat:mrScanData"><xnat:file label="DICOM" URI="/data/xnat/prearchive/P/20240101_000000000/S1/SCANS/2/DICOM/scan_2_catalog.xml" format="DICOM"/><xnat:series_description>t1_mprage</xnat:series_description></xnat:scan>
<xnat:scan ID="3" type="T2" xsi:type="xnat:mrScanData"><xnat:file label="DICOM" URI="SCANS/3/DICOM/scan_3_catalog.xml" format="DICOM"/></xnat:scan>
</xnat:scans></xnat:MRSession>"#;

    const CATALOG: &str = r#"<cat:DCMCatalog xmlns:cat="http://nrg.wustl.edu/catalog" ID="scan_2" content="RAW"><cat:entries>
<cat:entry URI="1.dcm" ID="a" digest="d1" format="DICOM"/>
<cat:entry URI="sub/2.dcm" ID="b"/>
<cat:entry URI="missing.dcm" ID="c"/>
<cat:entry URI="../../../../S1.xml" ID="escape"/>
<cat:entry URI="/etc/passwd" ID="absolute"/>
</cat:entries></cat:DCMCatalog>"#;

    fn site() -> (tempfile::TempDir, SessionRef) {
        let d = tempfile::tempdir().unwrap();
        let ts = d.path().join("P/20240101_000000000");
        fs::create_dir_all(ts.join("S1/SCANS/2/DICOM/sub")).unwrap();
        fs::create_dir_all(ts.join("S1/SCANS/3/DICOM")).unwrap();
        fs::write(ts.join("S1.xml"), DOC).unwrap();
        fs::write(ts.join("S1/SCANS/2/DICOM/scan_2_catalog.xml"), CATALOG).unwrap();
        fs::write(ts.join("S1/SCANS/2/DICOM/1.dcm"), b"12345").unwrap();
        fs::write(ts.join("S1/SCANS/2/DICOM/sub/2.dcm"), b"123").unwrap();
        (d, SessionRef::new(Some("P"), "20240101_000000000", "S1").unwrap())
    }

    #[test]
    fn lists_scans_resources_and_only_catalogued_existing_files() {
        let (d, s) = site();
        let tree = Tree::new(d.path());
        let pre = Prearchive::new(&tree);
        let scans = scans(&pre, &s).unwrap();
        assert_eq!(scans.len(), 2);
        assert_eq!(
            scans[0],
            ScanRow {
                id: "2".into(),
                kind: "T1".into(),
                series_description: "t1_mprage".into(),
                xsi_type: "xnat:mrScanData".into(),
                ..ScanRow::default()
            }
        );
        let res = resources(&pre, &s, "2").unwrap();
        assert_eq!((res[0].label.as_str(), res[0].file_count, res[0].file_size), ("DICOM", 2, 8));
        assert_eq!((res[0].format.as_str(), res[0].content.as_str()), ("DICOM", "RAW"));
        // Scan 3's catalog is missing: listed, empty.
        assert_eq!(resources(&pre, &s, "3").unwrap()[0].file_count, 0);
        let names: Vec<_> = files(&pre, &s, "2", "DICOM").unwrap().into_iter().map(|f| f.name).collect();
        assert_eq!(names, ["1.dcm", "sub/2.dcm"]);
        let (path, size) = file(&pre, &s, "2", "DICOM", "sub/2.dcm").unwrap();
        assert_eq!((path.as_str(), size), ("P/20240101_000000000/S1/SCANS/2/DICOM/sub/2.dcm", 3));
        for name in ["missing.dcm", "../../../../S1.xml", "/etc/passwd", "scan_2_catalog.xml"] {
            assert!(matches!(file(&pre, &s, "2", "DICOM", name), Err(Error::NotFound(_))), "{name}");
        }
        assert!(matches!(resources(&pre, &s, "9"), Err(Error::NotFound(_))));
        assert!(matches!(files(&pre, &s, "2", "NIFTI"), Err(Error::NotFound(_))));
        assert!(matches!(files(&pre, &s, "3", "DICOM"), Err(Error::NotFound(_))));
    }

    #[test]
    fn a_receiving_or_unknown_session_has_no_scans_to_list() {
        let (d, s) = site();
        let tree = Tree::new(d.path());
        let pre = Prearchive::new(&tree);
        fs::remove_file(d.path().join("P/20240101_000000000/S1.xml")).unwrap();
        let Err(Error::NotFound(m)) = scans(&pre, &s) else { panic!("a receiving session") };
        assert!(m.contains("still being received"), "{m}");
        let other = SessionRef::new(Some("P"), "20240101_000000000", "S9").unwrap();
        assert!(matches!(scans(&pre, &other), Err(Error::NotFound(_))));
    }
}
