//! The demo sites.
//!
//! * [`write_import_site`]: what `xnat-archive demo` runs on — a generated prearchive with seven sessions
//!   and an archive with the projects `DEMO` and `TRIAL` ([`crate::generator::write_site`]), in
//!   `<dir>/prearchive` and `<dir>/archive`.
//! * [`write_site`]: a small archive site for refresh alone — one project `DEMO`, one subject `SUBJ1`, one MR
//!   session `MR1` with a DICOM scan whose catalog is out of date (a file missing from it, an entry whose
//!   file is gone) and a `NOTES` session resource whose catalog is empty. The runtime tests use it: it is
//!   the smallest archive on which an apply-mode refresh has something to write.
//!
//! Not for running the demo: the `demo` command (the CLI's `cli/demo.rs`) does that.

use std::io;
use std::path::{Path, PathBuf};

use super::generator::{self, SessionSpec};

/// The project of the session the demo archives.
pub const DEMO_PROJECT: &str = "DEMO";
/// The folder (and label) of the session the demo validates and archives: subject SUBJ1's MR session.
pub const DEMO_SESSION: &str = "SUBJ1_MR1";

/// A generated prearchive and archive, as [`write_import_site`] writes them.
#[derive(Debug, Clone)]
pub struct ImportSite {
    /// `<dir>/prearchive`, to grant at [`crate::PREARCHIVE`].
    pub prearchive: PathBuf,
    /// `<dir>/archive`, to grant at [`crate::ARCHIVE`].
    pub archive: PathBuf,
    /// The sessions written into the prearchive, in the generator's order.
    pub sessions: Vec<SessionSpec>,
}

impl ImportSite {
    /// The `src` of a session (`/prearchive/projects/P/TS/FOLDER`; `Unassigned` for none).
    pub fn src(spec: &SessionSpec) -> String {
        format!(
            "/prearchive/projects/{}/{}/{}",
            spec.project.as_deref().unwrap_or("Unassigned"),
            spec.timestamp,
            spec.folder
        )
    }

    /// The session the demo archives: [`DEMO_PROJECT`]'s [`DEMO_SESSION`].
    pub fn demo_session(&self) -> &SessionSpec {
        self.sessions
            .iter()
            .find(|s| s.project.as_deref() == Some(DEMO_PROJECT) && s.folder == DEMO_SESSION)
            .expect("the generator writes DEMO's SUBJ1_MR1")
    }
}

/// Writes the generated site into `<dir>/prearchive` and `<dir>/archive` (`dir` is created if missing).
/// Refuses (`AlreadyExists`) when either folder exists and is not empty, so that an earlier run's archive
/// is never mixed with a new prearchive.
pub fn write_import_site(dir: &Path) -> io::Result<ImportSite> {
    let prearchive = dir.join("prearchive");
    let archive = dir.join("archive");
    for folder in [&prearchive, &archive] {
        if folder.is_dir() && std::fs::read_dir(folder)?.next().is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} already holds files (an earlier demo?); pick a new or empty --dir", folder.display()),
            ));
        }
        std::fs::create_dir_all(folder)?;
    }
    let sessions = generator::write_site(&prearchive, &archive)?;
    Ok(ImportSite { prearchive, archive, sessions })
}

/// The session of the refresh-only site ([`write_site`]), as the URI a refresh takes.
pub const EXPERIMENT: &str = "/data/archive/projects/DEMO/subjects/SUBJ1/experiments/MR1";

const SCAN_CATALOG: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<cat:DCMCatalog xmlns:cat="http://nrg.wustl.edu/catalog" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" UID="1.2.826.0.1.3680043.8.498.2">
	<cat:entries>
		<cat:entry ID="1.dcm" UID="1.2.826.0.1.3680043.8.498.2.1" URI="1.dcm" format="DICOM" instanceNumber="1" name="1.dcm" xsi:type="cat:dcmEntry"/>
		<cat:entry ID="2.dcm" UID="1.2.826.0.1.3680043.8.498.2.2" URI="2.dcm" format="DICOM" instanceNumber="2" name="2.dcm" xsi:type="cat:dcmEntry"/>
		<cat:entry ID="gone.dcm" UID="1.2.826.0.1.3680043.8.498.2.9" URI="gone.dcm" format="DICOM" instanceNumber="9" name="gone.dcm" xsi:type="cat:dcmEntry"/>
	</cat:entries>
</cat:DCMCatalog>
"#;

const NOTES_CATALOG: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<cat:Catalog xmlns:cat="http://nrg.wustl.edu/catalog" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ID="NOTES"/>
"#;

const SESSION: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<xnat:MRSession xmlns:xnat="http://nrg.wustl.edu/xnat" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ID="XNAT_E00001" label="MR1" modality="MR" project="DEMO">
	<xnat:resources>
		<xnat:resource label="NOTES" URI="RESOURCES/NOTES/NOTES_catalog.xml" xsi:type="xnat:resourceCatalog"/>
	</xnat:resources>
	<xnat:subject_ID>XNAT_S00001</xnat:subject_ID>
	<xnat:scans>
		<xnat:scan ID="2" type="T1w" xsi:type="xnat:mrScanData">
			<xnat:file label="DICOM" URI="SCANS/2/DICOM/scan_2_catalog.xml" content="RAW" format="DICOM" xsi:type="xnat:resourceCatalog"/>
		</xnat:scan>
	</xnat:scans>
</xnat:MRSession>
"#;

const SUBJECT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<xnat:Subject xmlns:xnat="http://nrg.wustl.edu/xnat" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ID="XNAT_S00001" label="SUBJ1" project="DEMO"/>
"#;

const NOTES: &str = "Demo notes for session MR1.\n";

/// Writes the refresh-only site into `archive` (created if missing). Files of an earlier demo are overwritten, so
/// the site starts out of date again; nothing else in `archive` is touched.
pub fn write_site(archive: &Path) -> io::Result<()> {
    let session = archive.join("DEMO").join("arc001").join("MR1");
    let dicom = session.join("SCANS").join("2").join("DICOM");
    let notes = session.join("RESOURCES").join("NOTES");
    let subjects = archive.join("DEMO").join("subjects");
    for dir in [&dicom, &notes, &subjects] {
        std::fs::create_dir_all(dir)?;
    }
    for n in 1..=3u8 {
        std::fs::write(dicom.join(format!("{n}.dcm")), fake_dicom(n))?;
    }
    std::fs::write(dicom.join("scan_2_catalog.xml"), SCAN_CATALOG)?;
    std::fs::write(notes.join("notes.txt"), NOTES)?;
    std::fs::write(notes.join("NOTES_catalog.xml"), NOTES_CATALOG)?;
    std::fs::write(archive.join("DEMO").join("arc001").join("MR1.xml"), SESSION)?;
    std::fs::write(subjects.join("SUBJ1.xml"), SUBJECT)?;
    Ok(())
}

/// Deterministic bytes shaped like a DICOM file (128-byte preamble, `DICM`), not a real image.
fn fake_dicom(instance: u8) -> Vec<u8> {
    let mut bytes = vec![0u8; 128];
    bytes.extend_from_slice(b"DICM");
    bytes.extend_from_slice(format!("xnat-archive demo instance {instance}\n").as_bytes());
    bytes.extend((0..256u16).map(|i| (i as u8).wrapping_mul(instance)));
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_site_is_written_once() {
        let dir = tempfile::tempdir().unwrap();
        let site = write_import_site(dir.path()).unwrap();
        let spec = site.demo_session();
        assert_eq!(ImportSite::src(spec), format!("/prearchive/projects/DEMO/{}/SUBJ1_MR1", spec.timestamp));
        assert!(spec.session_dir(&site.prearchive).is_dir());
        assert!(site.archive.join("DEMO/subjects/SUBJ1.xml").is_file());
        let again = write_import_site(dir.path()).unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
    }
}
