//! A small demo archive site in XNAT's layout: one project `DEMO`, one subject `SUBJ1`, one MR session
//! `MR1` with a DICOM scan whose catalog is out of date (a file missing from it, an entry whose file is
//! gone) and a `NOTES` session resource whose catalog is empty. Used by `xnat-archive demo`.

use std::io;
use std::path::Path;

/// The session of the demo site, as the URI a refresh takes.
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

/// Writes the demo site into `archive` (created if missing). Files of an earlier demo are overwritten, so
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
