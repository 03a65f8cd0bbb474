//! Deterministic, realistic XNAT prearchive sessions for the demo and the end-to-end tests: XNAT's
//! prearchive layout (`archive-service.md` §3.1), session documents and `cat:DCMCatalog`s with real MD5
//! digests (§5), and small DICOM-shaped files. The same seed always gives the same bytes.
//!
//! Not for real images: the files are DICOM-shaped bytes, enough for catalogs, digests and sizes.

use md5::{Digest as _, Md5};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use xnat_core::xml::{self, AttributeOrder, Element, Indent};

/// The UID root every generated UID lives under (a root reserved for examples and tests).
pub const UID_ROOT: &str = "1.2.826.0.1.3680043.8.498";

use xnat_core::model::catalog::{CAT_NS, XSI_NS};
use xnat_core::model::session::{self, XNAT_NS};

/// The imaging modality of a session; it selects the document's root element, the scans' `xsi:type`,
/// the scanner and the usual series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Modality {
    /// `xnat:MRSession` (`xnat:mrSessionData`) with `xnat:mrScanData` scans.
    Mr,
    /// `xnat:CTSession` (`xnat:ctSessionData`) with `xnat:ctScanData` scans.
    Ct,
    /// `xnat:PETSession` (`xnat:petSessionData`) with `xnat:petScanData` scans, DICOM modality `PT`.
    Pet,
}

impl Modality {
    /// The root element of the session document (`xnat:MRSession`).
    pub fn element(self) -> &'static str {
        match self {
            Modality::Mr => "xnat:MRSession",
            Modality::Ct => "xnat:CTSession",
            Modality::Pet => "xnat:PETSession",
        }
    }

    /// The session's data type (`xnat:mrSessionData`), as XNAT derives it from the element.
    pub fn data_type(self) -> String {
        session::data_type(xml::local(self.element()))
    }

    /// The `xsi:type` of its scans (`xnat:mrScanData`).
    pub fn scan_type(self) -> &'static str {
        match self {
            Modality::Mr => "xnat:mrScanData",
            Modality::Ct => "xnat:ctScanData",
            Modality::Pet => "xnat:petScanData",
        }
    }

    /// The DICOM modality code, the document's `modality` attribute (`MR`, `CT`, `PT`).
    pub fn code(self) -> String {
        session::modality_code(&self.data_type())
    }

    /// The scanner: (manufacturer, model, station name).
    pub fn scanner(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Modality::Mr => ("SIEMENS", "Prisma", "MRC40001"),
            Modality::Ct => ("GE MEDICAL SYSTEMS", "Revolution CT", "CTAWP71344"),
            Modality::Pet => ("SIEMENS", "Biograph Vision 600", "PETCT01"),
        }
    }

    /// The usual series of a session, in acquisition order: (scan ID, series description).
    pub fn series(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Modality::Mr => &[("1", "localizer"), ("2", "T1w_MPR"), ("3", "T2w_SPC"), ("4", "BOLD_rest")],
            Modality::Ct => &[("1", "Topogram"), ("2", "Head 5.0"), ("3", "Head 1.0"), ("4", "Head 1.0 Bone")],
            Modality::Pet => &[("1", "CT AC"), ("2", "PET AC"), ("3", "PET NAC"), ("4", "PET AC Dynamic")],
        }
    }
}

/// One scan: its DICOM resource holds `files` files of about `file_size` bytes each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanSpec {
    /// The scan ID (the series number), also its folder under `SCANS/`.
    pub id: String,
    /// The series description; also the scan's `type`.
    pub series_description: String,
    /// How many DICOM files (one frame each; instance numbers `1..=files`).
    pub files: usize,
    /// The size of each file in bytes; raised to fit the header when smaller (see [`dicom_bytes`]).
    pub file_size: usize,
    /// The SeriesInstanceUID: the scan's and its catalog's `UID`.
    pub series_uid: String,
}

/// One prearchive session, everything [`write_session`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSpec {
    /// The project; `None` = Unassigned (the session sits directly under the prearchive root).
    pub project: Option<String>,
    /// The upload timestamp folder: `yyyyMMdd_HHmmssSSS` (18 characters) or legacy `yyyyMMdd_HHmmss`.
    pub timestamp: String,
    /// The session folder name.
    pub folder: String,
    /// The document's `label` attribute (`None` → omitted).
    pub label: Option<String>,
    /// The `xnat:subject_ID` text, a subject label in the prearchive (`None` → element omitted).
    pub subject: Option<String>,
    /// `xnat:dcmPatientName` and `xnat:dcmPatientId`.
    pub patient_name: String,
    /// The modality.
    pub modality: Modality,
    /// The StudyInstanceUID: the document's `UID` attribute.
    pub study_uid: String,
    /// `xnat:date`, `yyyy-MM-dd`.
    pub date: String,
    /// `xnat:time`, `HH:mm:ss`.
    pub time: String,
    /// The scans, in document order.
    pub scans: Vec<ScanSpec>,
    /// `false` → no `<FOLDER>.xml` is written: the session is still being received (status RECEIVING).
    pub with_document: bool,
}

impl SessionSpec {
    /// A session with defaults derived from `seed`: label `folder`, subject and patient `PAT<seed>`,
    /// a scan date in 2024 and an upload timestamp an hour later (`yyyyMMdd_HHmmssSSS`), the first 2–4
    /// of the modality's usual series with 3–5 files of about 2 KiB each, the study UID
    /// `1.2.826.0.1.3680043.8.498.<seed>` and series UIDs `<study UID>.<scan ID>`.
    pub fn new(project: Option<&str>, folder: &str, modality: Modality, seed: u64) -> SessionSpec {
        let mut rng = Rng::new(seed);
        let (month, day) = (1 + rng.below(12), 1 + rng.below(28));
        let (hour, minute, second, millis) = (7 + rng.below(11), rng.below(60), rng.below(60), rng.below(1000));
        let study_uid = format!("{UID_ROOT}.{seed}");
        let count = 2 + rng.below(3) as usize;
        let scans = modality.series()[..count]
            .iter()
            .map(|(id, description)| ScanSpec {
                id: id.to_string(),
                series_description: description.to_string(),
                files: 3 + rng.below(3) as usize,
                file_size: 1792 + rng.below(513) as usize,
                series_uid: format!("{study_uid}.{id}"),
            })
            .collect();
        let patient = format!("PAT{seed:04}");
        SessionSpec {
            project: project.map(str::to_string),
            timestamp: format!("2024{month:02}{day:02}_{:02}{minute:02}{second:02}{millis:03}", hour + 1),
            folder: folder.to_string(),
            label: Some(folder.to_string()),
            subject: Some(patient.clone()),
            patient_name: patient,
            modality,
            study_uid,
            date: format!("2024-{month:02}-{day:02}"),
            time: format!("{hour:02}:{minute:02}:{second:02}"),
            scans,
            with_document: true,
        }
    }

    /// The timestamp folder: `<prearchive>/<PROJECT>/<TIMESTAMP>`, or `<prearchive>/<TIMESTAMP>` when Unassigned.
    pub fn timestamp_dir(&self, prearchive: &Path) -> PathBuf {
        match &self.project {
            Some(p) => prearchive.join(p).join(&self.timestamp),
            None => prearchive.join(&self.timestamp),
        }
    }

    /// The session folder, `<timestamp dir>/<FOLDER>`.
    pub fn session_dir(&self, prearchive: &Path) -> PathBuf {
        self.timestamp_dir(prearchive).join(&self.folder)
    }

    /// The session document, `<timestamp dir>/<FOLDER>.xml` (beside the folder, not inside it).
    pub fn document_path(&self, prearchive: &Path) -> PathBuf {
        self.timestamp_dir(prearchive).join(format!("{}.xml", self.folder))
    }

    /// A scan's DICOM resource folder relative to the session folder: `SCANS/<id>/DICOM`.
    pub fn dicom_dir(scan: &ScanSpec) -> String {
        format!("SCANS/{}/DICOM", scan.id)
    }

    /// A scan's catalog relative to the session folder: `SCANS/<id>/DICOM/scan_<id>_catalog.xml`, the
    /// `URI` of the scan's `xnat:file`.
    pub fn catalog_uri(scan: &ScanSpec) -> String {
        format!("SCANS/{0}/DICOM/scan_{0}_catalog.xml", scan.id)
    }
}

/// The SOP instance UID of file `n` (1-based, the instance number) of a scan: `<series UID>.<n>`, or
/// `<study UID>.<scan ID>.<n>` when the scan has no series UID.
pub fn sop_uid(spec: &SessionSpec, scan: &ScanSpec, n: usize) -> String {
    format!("{}.{n}", series_uid(spec, scan))
}

/// The name of file `n` of a scan, after XNAT's default DICOM file naming
/// `${StudyInstanceUID}-${SeriesNumber}-${InstanceNumber}-${hash of the SOP instance UID}.dcm`.
pub fn file_name(spec: &SessionSpec, scan: &ScanSpec, n: usize) -> String {
    let hash = Rng::new(fnv1a(sop_uid(spec, scan, n).as_bytes())).next() as u32;
    format!("{}-{}-{n}-{hash:08x}.dcm", spec.study_uid, scan.id)
}

/// The bytes of file `n` of a scan: a 128-byte zero preamble, `DICM`, a (0002,0003) Media Storage SOP
/// Instance UID element (explicit VR little endian) holding [`sop_uid`], then pseudo-random bytes seeded
/// by that UID up to `file_size` (or just past the UID when `file_size` is smaller).
pub fn dicom_bytes(spec: &SessionSpec, scan: &ScanSpec, n: usize) -> Vec<u8> {
    let uid = sop_uid(spec, scan, n);
    let mut value = uid.clone().into_bytes();
    if value.len() % 2 == 1 {
        value.push(0); // UI values are padded with NUL to an even length
    }
    let mut bytes = Vec::with_capacity(scan.file_size.max(140 + value.len()));
    bytes.extend_from_slice(&[0; 128]);
    bytes.extend_from_slice(b"DICM");
    bytes.extend_from_slice(&[0x02, 0x00, 0x03, 0x00, b'U', b'I']);
    bytes.extend_from_slice(&(value.len() as u16).to_le_bytes());
    bytes.extend_from_slice(&value);
    let mut rng = Rng::new(fnv1a(uid.as_bytes()));
    while bytes.len() < scan.file_size {
        let word = rng.next().to_le_bytes();
        let take = word.len().min(scan.file_size - bytes.len());
        bytes.extend_from_slice(&word[..take]);
    }
    bytes
}

/// Writes one session into `prearchive`: its DICOM files, one `cat:DCMCatalog` per scan and, when
/// `with_document`, the session document `<FOLDER>.xml` beside the folder (written last, as XNAT's
/// builder does). Existing files are overwritten. Returns the session folder.
pub fn write_session(prearchive: &Path, spec: &SessionSpec) -> io::Result<PathBuf> {
    let session = spec.session_dir(prearchive);
    let mut sizes = Vec::with_capacity(spec.scans.len());
    for scan in &spec.scans {
        let dir = session.join(SessionSpec::dicom_dir(scan));
        fs::create_dir_all(&dir)?;
        let mut entries = Vec::with_capacity(scan.files);
        let mut total = 0u64;
        for n in 1..=scan.files {
            let name = file_name(spec, scan, n);
            let bytes = dicom_bytes(spec, scan, n);
            fs::write(dir.join(&name), &bytes)?;
            total += bytes.len() as u64;
            entries.push(Element::with(
                "cat:entry",
                &[
                    ("URI", &name),
                    ("ID", &name),
                    ("name", &name),
                    ("UID", &sop_uid(spec, scan, n)),
                    ("instanceNumber", &n.to_string()),
                    ("format", "DICOM"),
                    ("digest", &hex::encode(Md5::digest(&bytes))),
                    ("xsi:type", "cat:dcmEntry"),
                ],
                Vec::new(),
            ));
        }
        let catalog = Element::with(
            "cat:DCMCatalog",
            &[("UID", &series_uid(spec, scan)), ("xmlns:cat", CAT_NS), ("xmlns:xsi", XSI_NS)],
            vec![
                Element::with("cat:entries", &[], entries),
                Element::with(
                    "cat:dimensions",
                    &[("x", "256"), ("y", "256"), ("z", &scan.files.to_string())],
                    Vec::new(),
                ),
            ],
        );
        let xml = xml::write(&catalog, AttributeOrder::Sorted, Indent::Flat);
        fs::write(dir.join(format!("scan_{}_catalog.xml", scan.id)), xml)?;
        sizes.push(total);
    }
    if spec.with_document {
        let xml = xml::write(&document(spec, &session, &sizes)?, AttributeOrder::Kept, Indent::Pretty);
        fs::write(spec.document_path(prearchive), xml)?;
    }
    Ok(session)
}

/// Writes a demo site. In `archive`: the projects `DEMO` and `TRIAL` (their folders) and two existing
/// subjects, `DEMO/subjects/SUBJ1.xml` (`XNAT_S00001`) and `TRIAL/subjects/T001.xml` (`XNAT_S00002`), each
/// with its folder. In `prearchive`: DEMO gets MR sessions of SUBJ1 and SUBJ2 and a CT session of SUBJ3;
/// TRIAL a PET session of T001 and an MR session of T002 under a legacy 15-character timestamp;
/// Unassigned an MR session with neither label nor subject; and DEMO one more MR session (SUBJ4) still
/// being received (no document). Returns the sessions' specs in that order.
pub fn write_site(prearchive: &Path, archive: &Path) -> io::Result<Vec<SessionSpec>> {
    for (project, subject, id) in [("DEMO", "SUBJ1", "XNAT_S00001"), ("TRIAL", "T001", "XNAT_S00002")] {
        let subjects = archive.join(project).join("subjects");
        fs::create_dir_all(subjects.join(subject))?;
        let doc = Element::with(
            "xnat:Subject",
            &[("xmlns:xnat", XNAT_NS), ("ID", id), ("project", project), ("label", subject)],
            Vec::new(),
        );
        fs::write(subjects.join(format!("{subject}.xml")), xml::write(&doc, AttributeOrder::Kept, Indent::Pretty))?;
    }
    let session = |project: Option<&str>, subject: Option<&str>, folder: &str, modality, seed| {
        let mut spec = SessionSpec::new(project, folder, modality, seed);
        if let Some(s) = subject {
            spec.subject = Some(s.to_string());
            spec.patient_name = s.to_string();
        }
        spec
    };
    let mut legacy = session(Some("TRIAL"), Some("T002"), "T002_MR1", Modality::Mr, 2002);
    legacy.timestamp.truncate(15);
    let mut unassigned = session(None, None, "ANON01_MR", Modality::Mr, 3001);
    unassigned.label = None;
    unassigned.subject = None;
    unassigned.patient_name = "ANON01".into();
    let mut receiving = session(Some("DEMO"), Some("SUBJ4"), "SUBJ4_MR1", Modality::Mr, 1004);
    receiving.with_document = false;
    let specs = vec![
        session(Some("DEMO"), Some("SUBJ1"), "SUBJ1_MR1", Modality::Mr, 1001),
        session(Some("DEMO"), Some("SUBJ2"), "SUBJ2_MR1", Modality::Mr, 1002),
        session(Some("DEMO"), Some("SUBJ3"), "SUBJ3_CT1", Modality::Ct, 1003),
        session(Some("TRIAL"), Some("T001"), "T001_PET1", Modality::Pet, 2001),
        legacy,
        unassigned,
        receiving,
    ];
    for spec in &specs {
        write_session(prearchive, spec)?;
    }
    Ok(specs)
}

/// The session document, element order per xnat.xsd. `sizes` holds each scan's total bytes.
fn document(spec: &SessionSpec, session: &Path, sizes: &[u64]) -> io::Result<Element> {
    let mut attrs = vec![("xmlns:xnat", XNAT_NS), ("xmlns:xsi", XSI_NS), ("ID", "")];
    if let Some(p) = &spec.project {
        attrs.push(("project", p));
    }
    if let Some(l) = &spec.label {
        attrs.push(("label", l));
    }
    let modality = spec.modality.code();
    attrs.push(("modality", &modality));
    attrs.push(("UID", &spec.study_uid));
    let (manufacturer, model, station) = spec.modality.scanner();
    let mut children = vec![Element::with_text("xnat:date", &spec.date), Element::with_text("xnat:time", &spec.time)];
    if let Some(s) = &spec.subject {
        children.push(Element::with_text("xnat:subject_ID", s));
    }
    let mut scanner = Element::with_text("xnat:scanner", station);
    scanner.attrs = vec![("manufacturer".into(), manufacturer.into()), ("model".into(), model.into())];
    children.push(scanner);
    children.push(Element::with_text("xnat:prearchivePath", &std::path::absolute(session)?.to_string_lossy()));
    let scans = spec
        .scans
        .iter()
        .zip(sizes)
        .map(|(scan, size)| {
            let files = scan.files.to_string();
            let resource = session::dicom_resource(&SessionSpec::catalog_uri(scan), scan.files, *size);
            Element::with(
                "xnat:scan",
                &[
                    ("ID", &scan.id),
                    ("type", &scan.series_description),
                    ("UID", &series_uid(spec, scan)),
                    ("xsi:type", spec.modality.scan_type()),
                ],
                vec![
                    Element::with_text("xnat:series_description", &scan.series_description),
                    Element::with_text("xnat:frames", &files),
                    resource,
                ],
            )
        })
        .collect();
    children.push(Element::with("xnat:scans", &[], scans));
    children.push(Element::with_text("xnat:dcmPatientId", &spec.patient_name));
    children.push(Element::with_text("xnat:dcmPatientName", &spec.patient_name));
    Ok(Element::with(spec.modality.element(), &attrs, children))
}

fn series_uid(spec: &SessionSpec, scan: &ScanSpec) -> String {
    if scan.series_uid.is_empty() { format!("{}.{}", spec.study_uid, scan.id) } else { scan.series_uid.clone() }
}

/// 64-bit FNV-1a.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// SplitMix64: small, fast and the same everywhere.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (a negligible modulo bias is fine here).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use xnat_core::model::catalog::Catalog;

    /// Every file under `root`, by relative path, with `root`'s absolute path in contents replaced by `<ROOT>`.
    fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
        fn walk(dir: &Path, root: &Path, abs: &str, out: &mut BTreeMap<String, Vec<u8>>) {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let rel = path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
                if path.is_dir() {
                    out.insert(format!("{rel}/"), Vec::new());
                    walk(&path, root, abs, out);
                } else {
                    let bytes = fs::read(&path).unwrap();
                    let bytes = match String::from_utf8(bytes) {
                        Ok(s) => s.replace(abs, "<ROOT>").into_bytes(),
                        Err(e) => e.into_bytes(),
                    };
                    out.insert(rel, bytes);
                }
            }
        }
        let mut out = BTreeMap::new();
        let abs = std::path::absolute(root).unwrap().to_string_lossy().into_owned();
        walk(root, root, &abs, &mut out);
        out
    }

    fn site() -> (tempfile::TempDir, Vec<SessionSpec>) {
        let dir = tempfile::tempdir().unwrap();
        let specs = write_site(&dir.path().join("prearchive"), &dir.path().join("archive")).unwrap();
        (dir, specs)
    }

    fn child<'e>(el: &'e Element, name: &str) -> Option<&'e Element> {
        el.elements().find(|c| c.name == name)
    }

    #[test]
    fn site_has_the_layout_catalogs_and_documents() {
        let (dir, specs) = site();
        let (pre, arc) = (dir.path().join("prearchive"), dir.path().join("archive"));
        assert_eq!(specs.len(), 7);
        assert!(arc.join("TRIAL").is_dir() && arc.join("DEMO/subjects/SUBJ1").is_dir());
        let subject = xml::parse(&fs::read(arc.join("DEMO/subjects/SUBJ1.xml")).unwrap()).unwrap();
        assert_eq!(subject.name, "xnat:Subject");
        assert_eq!(
            (subject.attr("ID"), subject.attr("project"), subject.attr("label")),
            (Some("XNAT_S00001"), Some("DEMO"), Some("SUBJ1"))
        );
        assert!(arc.join("TRIAL/subjects/T001.xml").is_file());

        for spec in &specs {
            let session = spec.session_dir(&pre);
            assert!(session.is_dir(), "{session:?}");
            let expected_parent = match &spec.project {
                Some(p) => pre.join(p),
                None => pre.clone(),
            };
            assert_eq!(session.parent().unwrap().parent().unwrap(), expected_parent);
            assert!(matches!(spec.timestamp.len(), 15 | 18), "{}", spec.timestamp);
            let mut sizes = Vec::new();
            for scan in &spec.scans {
                let dicom = session.join(SessionSpec::dicom_dir(scan));
                let bytes = fs::read(session.join(SessionSpec::catalog_uri(scan))).unwrap();
                let catalog = Catalog::parse(&bytes).unwrap();
                assert_eq!(catalog.root().attr("UID"), Some(scan.series_uid.as_str()));
                let locs = catalog.entry_locs();
                assert_eq!(locs.len(), scan.files);
                let mut total = 0;
                for (i, loc) in locs.iter().enumerate() {
                    let entry = catalog.entry(loc);
                    assert!(entry.is_dicom());
                    let file = fs::read(dicom.join(entry.uri().unwrap())).unwrap();
                    assert_eq!(entry.attr("digest").unwrap(), hex::encode(Md5::digest(&file)));
                    assert_eq!(entry.attr("instanceNumber"), Some((i + 1).to_string().as_str()));
                    let uid = sop_uid(spec, scan, i + 1);
                    assert_eq!(entry.attr("UID"), Some(uid.as_str()));
                    assert_eq!(&file[128..132], b"DICM");
                    assert!(file.windows(uid.len()).any(|w| w == uid.as_bytes()));
                    assert_eq!(file.len(), scan.file_size);
                    total += file.len();
                }
                // The catalog and the files are all the resource folder holds.
                assert_eq!(fs::read_dir(&dicom).unwrap().count(), scan.files + 1);
                sizes.push(total);
            }

            let doc_path = spec.document_path(&pre);
            assert_eq!(doc_path.parent(), session.parent());
            if !spec.with_document {
                assert!(!doc_path.exists());
                continue;
            }
            let doc = xml::parse(&fs::read(&doc_path).unwrap()).unwrap();
            assert_eq!(doc.name, spec.modality.element());
            assert_eq!(doc.attr("ID"), Some(""));
            assert_eq!(doc.attr("project"), spec.project.as_deref());
            assert_eq!(doc.attr("label"), spec.label.as_deref());
            assert_eq!(doc.attr("modality"), Some(spec.modality.code().as_str()));
            assert_eq!(doc.attr("UID"), Some(spec.study_uid.as_str()));
            assert_eq!(child(&doc, "xnat:subject_ID").map(Element::text), spec.subject.clone());
            let path = child(&doc, "xnat:prearchivePath").unwrap().text();
            assert_eq!(Path::new(&path), std::path::absolute(&session).unwrap());
            let scans: Vec<&Element> = child(&doc, "xnat:scans").unwrap().elements().collect();
            assert_eq!(scans.len(), spec.scans.len());
            for ((el, scan), size) in scans.iter().zip(&spec.scans).zip(&sizes) {
                assert_eq!(el.attr("ID"), Some(scan.id.as_str()));
                assert_eq!(el.attr("xsi:type"), Some(spec.modality.scan_type()));
                let file = child(el, "xnat:file").unwrap();
                assert_eq!(file.attr("URI"), Some(SessionSpec::catalog_uri(scan).as_str()));
                assert_eq!(file.attr("file_count"), Some(scan.files.to_string().as_str()));
                assert_eq!(file.attr("file_size"), Some(size.to_string().as_str()));
            }
            let order: Vec<&str> = doc.elements().map(|e| e.name.as_str()).collect();
            let mut expected = vec!["xnat:date", "xnat:time", "xnat:subject_ID", "xnat:scanner"];
            expected.extend(["xnat:prearchivePath", "xnat:scans", "xnat:dcmPatientId", "xnat:dcmPatientName"]);
            expected.retain(|n| *n != "xnat:subject_ID" || spec.subject.is_some());
            assert_eq!(order, expected);
        }

        // The shapes the site promises.
        let unassigned = specs.iter().find(|s| s.project.is_none()).unwrap();
        assert!(pre.join(&unassigned.timestamp).join(format!("{}.xml", unassigned.folder)).is_file());
        assert!(unassigned.label.is_none() && unassigned.subject.is_none());
        assert!(specs.iter().any(|s| s.project.as_deref() == Some("TRIAL") && s.timestamp.len() == 15));
        assert_eq!(specs.iter().filter(|s| !s.with_document).count(), 1);
        let modalities: Vec<Modality> = specs.iter().map(|s| s.modality).collect();
        assert!(modalities.contains(&Modality::Ct) && modalities.contains(&Modality::Pet));
        // Small: the whole site stays well under a megabyte.
        let bytes: usize = tree(dir.path()).values().map(Vec::len).sum();
        assert!(bytes < 256 * 1024, "{bytes} bytes");
    }

    #[test]
    fn same_seed_same_tree() {
        let (a, specs_a) = site();
        let (b, specs_b) = site();
        assert_eq!(specs_a, specs_b);
        let (ta, tb) = (tree(a.path()), tree(b.path()));
        assert!(ta.len() > 50);
        assert_eq!(ta, tb);
        assert_eq!(
            SessionSpec::new(Some("P"), "F", Modality::Ct, 7),
            SessionSpec::new(Some("P"), "F", Modality::Ct, 7)
        );
        assert_ne!(
            SessionSpec::new(Some("P"), "F", Modality::Ct, 7),
            SessionSpec::new(Some("P"), "F", Modality::Ct, 8)
        );
    }

    #[test]
    fn defaults_follow_the_seed() {
        for seed in 0..200 {
            for modality in [Modality::Mr, Modality::Ct, Modality::Pet] {
                let spec = SessionSpec::new(None, "S", modality, seed);
                assert!((2..=4).contains(&spec.scans.len()));
                assert_eq!(spec.timestamp.len(), 18);
                assert!(spec.timestamp.bytes().enumerate().all(|(i, b)| (i == 8) == (b == b'_')));
                assert_eq!((spec.date.len(), spec.time.len()), (10, 8));
                assert_eq!(spec.study_uid, format!("{UID_ROOT}.{seed}"));
                for scan in &spec.scans {
                    assert!((3..=5).contains(&scan.files));
                    assert!((1536..=2560).contains(&scan.file_size));
                    assert!(scan.series_uid.starts_with(&spec.study_uid));
                    let uid = sop_uid(&spec, scan, scan.files);
                    assert!(uid.len() <= 64 && uid.split('.').all(|c| c == "0" || !c.starts_with('0')), "{uid}");
                }
            }
        }
    }

    #[test]
    fn odd_values_are_escaped_and_tiny_files_still_hold_their_uid() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = SessionSpec::new(Some("P&Q"), "S1", Modality::Pet, 42);
        spec.label = Some(r#"a<b>"c"&'d'"#.into());
        spec.patient_name = "O'BRIEN^KATE".into();
        spec.scans[0].file_size = 10;
        spec.scans[0].series_uid.clear();
        let session = write_session(dir.path(), &spec).unwrap();
        assert_eq!(session, dir.path().join("P&Q").join(&spec.timestamp).join("S1"));
        let doc = xml::parse(&fs::read(spec.document_path(dir.path())).unwrap()).unwrap();
        assert_eq!(doc.attr("label"), spec.label.as_deref());
        assert_eq!(doc.attr("project"), Some("P&Q"));
        assert_eq!(child(&doc, "xnat:dcmPatientName").unwrap().text(), "O'BRIEN^KATE");
        let scan = &spec.scans[0];
        let uid = sop_uid(&spec, scan, 1);
        assert_eq!(uid, format!("{}.{}.1", spec.study_uid, scan.id));
        let file = fs::read(session.join(SessionSpec::dicom_dir(scan)).join(file_name(&spec, scan, 1))).unwrap();
        assert!(file.len() > 10 && file.windows(uid.len()).any(|w| w == uid.as_bytes()));
        let catalog = Catalog::parse(&fs::read(session.join(SessionSpec::catalog_uri(scan))).unwrap()).unwrap();
        assert_eq!(catalog.root().attr("UID"), Some(format!("{}.{}", spec.study_uid, scan.id).as_str()));
    }
}
