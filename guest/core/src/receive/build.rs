//! Building a received session, as XNAT's session builder does: every file under `SCANS/<scan>/DICOM/` read
//! again (its header, its MD5), one `cat:DCMCatalog` per scan (`scan_<scan>_catalog.xml`: the series UID,
//! one `cat:dcmEntry` per file with its SOP instance UID, instance number and digest), then the session
//! document beside the folder — written last, so a session is READY only once everything it lists is there.
//! The receiving marker goes after the document.
//!
//! The document's type follows the study's modalities (`xnat:MRSession`, `xnat:PETSession` for PET/CT, …,
//! `xnat:OtherDicomSession`); each scan's type follows its series' modality (`xnat:mrScanData`, …,
//! `xnat:scScanData` for secondary captures, `xnat:otherDicomScanData`).

use crate::error::{Error, Result};
use crate::fs::tree::{Kind, RelPath, Tree};
use crate::import::prearchive::{Prearchive, SessionRef};
use crate::model::catalog::{CAT_NS, XSI_NS};
use crate::model::digest::{Algorithm, Hasher};
use crate::model::session::XNAT_NS;
use crate::receive::dicom::{self, Header};
use crate::receive::session::{marker_path, read_marker};
use crate::xml::{self, AttributeOrder, Element, Indent};
use std::collections::BTreeMap;

/// What a build made of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    pub session: SessionRef,
    /// False when no file of it could be kept: the session was removed.
    pub kept: bool,
    pub scans: usize,
    pub files: usize,
    /// Files left out of the catalogs, and why.
    pub skipped: Vec<(String, String)>,
}

struct File {
    name: String,
    header: Header,
    md5: String,
}

/// Builds the session `s`, which must be receiving (have its marker).
pub fn build(pre: &Tree, s: &SessionRef) -> Result<Built> {
    let prearchive = Prearchive::new(pre);
    prearchive.require(s)?;
    let lock = prearchive.lock(s, "BUILDING")?;
    let result = build_locked(pre, s);
    lock.release()?;
    result
}

fn build_locked(pre: &Tree, s: &SessionRef) -> Result<Built> {
    let marker = read_marker(pre, s)?.ok_or_else(|| {
        Error::Conflict(format!("{} is not being received: it was built already (its status says what it is)", s.url()))
    })?;
    let mut hasher = Hasher::default();
    let mut scans: BTreeMap<String, Vec<File>> = BTreeMap::new();
    let mut skipped = Vec::new();
    let scans_dir = s.dir().join("SCANS")?;
    let listed = match pre.list(&scans_dir) {
        Err(Error::NotFound(_)) => Vec::new(),
        other => other?,
    };
    for (scan, kind) in listed {
        if kind != Kind::Dir {
            continue;
        }
        let dir = scans_dir.join(&scan)?.join("DICOM")?;
        let files = match pre.list(&dir) {
            Err(Error::NotFound(_)) => continue,
            other => other?,
        };
        for (name, kind) in files {
            if !matches!(kind, Kind::File { .. }) || name.ends_with(".xml") || name.starts_with('.') {
                continue;
            }
            let path = dir.join(&name)?;
            let mut f = pre.open(&path)?;
            let len = f.metadata().map_err(|e| Error::io(path.as_str(), &e))?.len();
            match dicom::read_header(&mut f, len) {
                Ok(header) => {
                    let md5 = hasher.file(pre, &path, Algorithm::Md5, &mut |_| {})?;
                    scans.entry(scan.clone()).or_default().push(File { name, header, md5 });
                }
                Err(why) => skipped.push((format!("SCANS/{scan}/DICOM/{name}"), why.to_string())),
            }
        }
    }
    let files: usize = scans.values().map(Vec::len).sum();
    if files == 0 {
        // Nothing to build: the session goes, with its marker; no empty session is left READY.
        pre.remove_dir_all(&s.dir())?;
        let _ = pre.remove_file(&marker_path(s));
        let _ = pre.remove_dir_if_empty(&s.timestamp_dir());
        return Ok(Built { session: s.clone(), kept: false, scans: 0, files: 0, skipped });
    }
    let mut scan_elements = Vec::new();
    let mut modalities = Vec::new();
    for (id, files) in &mut scans {
        files.sort_by(|a, b| {
            number(&a.header.instance_number).cmp(&number(&b.header.instance_number)).then(a.name.cmp(&b.name))
        });
        let first = &files[0].header;
        modalities.push(first.modality_or("OT"));
        let dir = scans_dir.join(id)?.join("DICOM")?;
        let catalog_name = format!("scan_{id}_catalog.xml");
        pre.write_atomic(&dir.join(&catalog_name)?, catalog(first, files).as_bytes())?;
        scan_elements.push(scan_element(id, first, files, &format!("SCANS/{id}/DICOM/{catalog_name}"), pre, &dir)?);
    }
    scan_elements.sort_by_key(|a| scan_order(a.attr("ID").unwrap_or("")));
    let header = &scans.values().next().expect("files > 0")[0].header;
    let doc = document(s, header, marker.subject.as_deref(), &modalities, scan_elements, pre);
    pre.write_atomic(&s.document(), xml::write(&doc, AttributeOrder::Kept, Indent::Pretty).as_bytes())?;
    pre.remove_file(&marker_path(s))?;
    match pre.remove_file(&s.status_file()) {
        Ok(()) | Err(Error::NotFound(_)) => {}
        Err(e) => return Err(e),
    }
    Ok(Built { session: s.clone(), kept: true, scans: scans.len(), files, skipped })
}

fn number(s: &str) -> (i64, String) {
    (s.trim().parse().unwrap_or(i64::MAX), s.to_string())
}

/// Scans in XNAT's order: by the number their ID starts with, then by the ID.
fn scan_order(id: &str) -> (i64, String) {
    let digits: String = id.chars().take_while(char::is_ascii_digit).collect();
    (digits.parse().unwrap_or(i64::MAX), id.to_string())
}

fn catalog(first: &Header, files: &[File]) -> String {
    let entries = files
        .iter()
        .map(|f| {
            let mut attrs = vec![
                ("URI", f.name.as_str()),
                ("ID", f.name.as_str()),
                ("name", f.name.as_str()),
                ("UID", f.header.sop_instance_uid.as_str()),
            ];
            if !f.header.instance_number.is_empty() {
                attrs.push(("instanceNumber", f.header.instance_number.as_str()));
            }
            attrs.extend([("format", "DICOM"), ("digest", f.md5.as_str()), ("xsi:type", "cat:dcmEntry")]);
            Element::with("cat:entry", &attrs, Vec::new())
        })
        .collect();
    let root = Element::with(
        "cat:DCMCatalog",
        &[("UID", &first.series_instance_uid), ("xmlns:cat", CAT_NS), ("xmlns:xsi", XSI_NS)],
        vec![Element::with("cat:entries", &[], entries)],
    );
    xml::write(&root, AttributeOrder::Kept, Indent::Pretty)
}

fn scan_element(
    id: &str,
    first: &Header,
    files: &[File],
    catalog_uri: &str,
    pre: &Tree,
    dir: &RelPath,
) -> Result<Element> {
    let mut size = 0u64;
    for f in files {
        if let Some(Kind::File { len: s }) = pre.kind(&dir.join(&f.name)?)? {
            size += s;
        }
    }
    let frames: u64 = files.iter().map(|f| f.header.number_of_frames).sum();
    let resource = crate::model::session::dicom_resource(catalog_uri, files.len(), size);
    let modality = first.modality_or("OT");
    let mut attrs = vec![("ID", id)];
    let kind = if first.series_description.is_empty() { None } else { Some(first.series_description.as_str()) };
    if let Some(k) = kind {
        attrs.push(("type", k));
    }
    attrs.push(("UID", &first.series_instance_uid));
    let scan_type = scan_type(&modality, &first.sop_class_uid);
    attrs.push(("xsi:type", &scan_type));
    let mut children = Vec::new();
    if let Some(k) = kind {
        children.push(Element::with_text("xnat:series_description", k));
    }
    children.extend(scanner(first));
    children.push(Element::with_text("xnat:modality", &modality));
    children.push(Element::with_text("xnat:frames", &frames.to_string()));
    children.push(resource);
    Ok(Element::with("xnat:scan", &attrs, children))
}

/// The session document, element order per xnat.xsd.
fn document(
    s: &SessionRef,
    h: &Header,
    subject: Option<&str>,
    modalities: &[String],
    scans: Vec<Element>,
    pre: &Tree,
) -> Element {
    let name = session_element(modalities);
    let mut attrs = vec![("xmlns:xnat", XNAT_NS), ("xmlns:xsi", XSI_NS), ("ID", "")];
    if let Some(p) = &s.project {
        attrs.push(("project", p));
    }
    attrs.push(("label", &s.folder));
    let code = crate::model::session::modality_code(&crate::model::session::data_type(name));
    attrs.push(("modality", &code));
    attrs.push(("UID", &h.study_instance_uid));
    let mut children = Vec::new();
    if let Some(d) = dicom_date(&h.study_date) {
        children.push(Element::with_text("xnat:date", &d));
    }
    if let Some(t) = dicom_time(&h.study_time) {
        children.push(Element::with_text("xnat:time", &t));
    }
    if let Some(subject) = subject {
        children.push(Element::with_text("xnat:subject_ID", subject));
    }
    children.extend(scanner(h));
    children.push(Element::with_text("xnat:prearchivePath", &pre.path(&s.dir()).to_string_lossy()));
    children.push(Element::with("xnat:scans", &[], scans));
    for (field, value) in [
        ("xnat:dcmAccessionNumber", &h.accession_number),
        ("xnat:dcmPatientId", &h.patient_id),
        ("xnat:dcmPatientName", &h.patient_name),
    ] {
        if !value.is_empty() {
            children.push(Element::with_text(field, value));
        }
    }
    if let Some(d) = dicom_date(&h.patient_birth_date) {
        children.push(Element::with_text("xnat:dcmPatientBirthDate", &d));
    }
    Element::with(&format!("xnat:{name}"), &attrs, children)
}

/// `xnat:scanner`: the station name, with the manufacturer and model as attributes (none when the header
/// names none of them).
fn scanner(h: &Header) -> Option<Element> {
    let attrs: Vec<(&str, &str)> = [("manufacturer", h.manufacturer.as_str()), ("model", h.model.as_str())]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect();
    (!attrs.is_empty() || !h.station.is_empty()).then(|| {
        let mut scanner = Element::with_text("xnat:scanner", &h.station);
        scanner.attrs = attrs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        scanner
    })
}

/// The session element a study's modalities make: the first of XNAT's session modalities found, in its
/// order of precedence (PET before CT and MR: a PET/CT study is a PET session).
fn session_element(modalities: &[String]) -> &'static str {
    const ORDER: &[(&str, &str)] = &[
        ("PT", "PETSession"),
        ("MR", "MRSession"),
        ("CT", "CTSession"),
        ("NM", "NMSession"),
        ("US", "USSession"),
        ("XA", "XASession"),
        ("RF", "RFSession"),
        ("CR", "CRSession"),
        ("DX", "DXSession"),
        ("MG", "MGSession"),
        ("IO", "IOSession"),
        ("OP", "OPSession"),
        ("OPT", "OPTSession"),
        ("ECG", "ECGSession"),
        ("EPS", "EPSSession"),
        ("HD", "HDSession"),
        ("ES", "ESSession"),
        ("GM", "GMSession"),
        ("SM", "SMSession"),
        ("XC", "XCSession"),
        ("SEG", "SegSession"),
        ("SR", "SRSession"),
    ];
    ORDER.iter().find(|(m, _)| modalities.iter().any(|x| x == m)).map_or("OtherDicomSession", |(_, e)| e)
}

/// A scan's type from its series' modality (and SOP class, for secondary captures).
fn scan_type(modality: &str, sop_class: &str) -> String {
    const SECONDARY_CAPTURE: &str = "1.2.840.10008.5.1.4.1.1.7";
    let known = [
        ("MR", "mrScanData"),
        ("CT", "ctScanData"),
        ("PT", "petScanData"),
        ("NM", "nmScanData"),
        ("US", "usScanData"),
        ("XA", "xaScanData"),
        ("RF", "rfScanData"),
        ("CR", "crScanData"),
        ("DX", "dxScanData"),
        ("MG", "mgScanData"),
        ("IO", "ioScanData"),
        ("OP", "opScanData"),
        ("OPT", "optScanData"),
        ("ECG", "ecgScanData"),
        ("EPS", "epsScanData"),
        ("HD", "hdScanData"),
        ("ES", "esScanData"),
        ("GM", "gmScanData"),
        ("SM", "smScanData"),
        ("XC", "xcScanData"),
        ("SEG", "segScanData"),
        ("SR", "srScanData"),
        ("RTIMAGE", "rtImageScanData"),
    ];
    if sop_class.starts_with(SECONDARY_CAPTURE) {
        return "xnat:scScanData".into();
    }
    known.iter().find(|(m, _)| *m == modality).map_or("xnat:otherDicomScanData".into(), |(_, t)| format!("xnat:{t}"))
}

/// DICOM's `YYYYMMDD` as XNAT's `YYYY-MM-DD`.
fn dicom_date(d: &str) -> Option<String> {
    let d = d.trim();
    let digits = d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| format!("{}-{}-{}", &d[..4], &d[4..6], &d[6..8]))
}

/// DICOM's `HHMMSS[.ffffff]` as XNAT's `HH:MM:SS`.
fn dicom_time(t: &str) -> Option<String> {
    let t = t.trim();
    let whole = t.split('.').next().unwrap_or("").replace(':', "");
    if whole.len() < 4 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let sec = whole.get(4..6).unwrap_or("00");
    Some(format!("{}:{}:{}", &whole[..2], &whole[2..4], sec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_times_and_types() {
        assert_eq!(dicom_date("20040119").as_deref(), Some("2004-01-19"));
        assert_eq!(dicom_date("2004"), None);
        assert_eq!(dicom_time("072730.123").as_deref(), Some("07:27:30"));
        assert_eq!(dicom_time("0727").as_deref(), Some("07:27:00"));
        assert_eq!(dicom_time("x"), None);
        assert_eq!(session_element(&["CT".into(), "PT".into()]), "PETSession");
        assert_eq!(session_element(&["OT".into()]), "OtherDicomSession");
        assert_eq!(scan_type("MR", "1.2.840.10008.5.1.4.1.1.4"), "xnat:mrScanData");
        assert_eq!(scan_type("OT", "1.2.840.10008.5.1.4.1.1.7"), "xnat:scScanData");
        assert_eq!(scan_type("RTDOSE", "1.2.840.10008.5.1.4.1.1.481.2"), "xnat:otherDicomScanData");
        assert_eq!(scan_order("10"), (10, "10".into()));
        assert!(scan_order("2") < scan_order("10") && scan_order("4") < scan_order("4-1"));
    }
}
