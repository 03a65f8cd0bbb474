//! XNAT's default rules for naming what a DICOM file belongs to, and what it is called on disk.
//!
//! * Project, subject and session come from the request when it names them; else from the header as XNAT's
//!   classic DICOM object identifier reads it: `Project:`, `Subject:` and `Session:` in the patient comments
//!   (0010,4000), study comments (0032,4000) or additional patient history (0010,21B0); else the project from
//!   the study description (0008,1030), then the accession number (0008,0050); the subject from the patient's
//!   name (0010,0010); the session from the patient ID (0010,0020). A project from a header is kept only if
//!   the site has it; else the session goes to Unassigned.
//! * Labels are cleaned as XNAT cleans them (characters outside letters, digits, `-` and `_` become `_`).
//! * A file is named `${StudyInstanceUID}-${SeriesNumber}-${InstanceNumber}-${hash}.dcm`, XNAT's default
//!   naming, with the hash of the SOP class and instance UIDs (ours: 8 hex digits of xxh3).

use crate::model::session::clean_value;
use crate::receive::dicom::Header;

/// A value named in one of the header's comment fields as `Key: value` (XNAT's `Project:`, `Subject:`,
/// `Session:`): the word after the key, up to white space or `;`.
pub fn from_comments(header: &Header, key: &str) -> Option<String> {
    for field in [&header.patient_comments, &header.study_comments, &header.additional_patient_history] {
        let mut rest = field.as_str();
        while let Some(at) = find_ignore_case(rest, key) {
            let after = rest[at + key.len()..].trim_start();
            if let Some(value) = after.strip_prefix(':') {
                let value: String =
                    value.trim_start().chars().take_while(|c| !c.is_whitespace() && *c != ';' && *c != ',').collect();
                if !value.is_empty() {
                    return Some(value);
                }
            }
            rest = &rest[at + key.len()..];
        }
    }
    None
}

fn find_ignore_case(haystack: &str, needle: &str) -> Option<usize> {
    haystack.to_ascii_lowercase().find(&needle.to_ascii_lowercase())
}

/// The project a header names, by XNAT's rules (not yet checked against the site).
pub fn project_of(header: &Header) -> Option<String> {
    from_comments(header, "Project")
        .or_else(|| non_empty(&header.study_description))
        .or_else(|| non_empty(&header.accession_number))
        .map(|p| clean_value(&p))
        .filter(|p| !p.is_empty())
}

/// The subject label a header gives, by XNAT's rules.
pub fn subject_of(header: &Header) -> Option<String> {
    from_comments(header, "Subject")
        .or_else(|| non_empty(&header.patient_name))
        .map(|s| label(&s))
        .filter(|s| !s.is_empty())
}

/// The session label a header gives, by XNAT's rules; when it gives none, the subject and the modality
/// (`SUBJ_MR`), else the study's date and modality — never empty.
pub fn session_of(header: &Header) -> String {
    let named = from_comments(header, "Session").or_else(|| non_empty(&header.patient_id)).map(|s| label(&s));
    match named.filter(|s| !s.is_empty()) {
        Some(s) => s,
        None => {
            let modality = header.modality_or("DICOM");
            let stem = subject_of(header).unwrap_or_else(|| {
                if header.study_date.is_empty() { "session".into() } else { header.study_date.clone() }
            });
            label(&format!("{stem}_{modality}"))
        }
    }
}

/// A label cleaned as XNAT cleans labels, with DICOM's name separators (`^`) and runs of them made `_`
/// and trailing separators dropped (`Doe^John^^` → `Doe_John`).
pub fn label(raw: &str) -> String {
    let cleaned = clean_value(raw.trim_end_matches(['^', ' ', '\0']));
    let cleaned: String =
        cleaned.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    cleaned.chars().take(crate::site::names::MAX_IDENTIFIER).collect()
}

/// The file name XNAT's default DICOM naming gives: `${StudyInstanceUID}-${SeriesNumber}-${InstanceNumber}-${hash}.dcm`.
pub fn file_name(header: &Header) -> String {
    let hash = xxhash_rust::xxh3::xxh3_64(format!("{}\0{}", header.sop_class_uid, header.sop_instance_uid).as_bytes());
    let part = |s: &str| if s.is_empty() { "0".to_string() } else { label(s) };
    format!(
        "{}-{}-{}-{:08x}.dcm",
        label(&header.study_instance_uid).replace('_', "."),
        part(&header.series_number),
        part(&header.instance_number),
        hash as u32
    )
}

/// The scan ID a series gets: its series number (XNAT's), `0` when it has none.
pub fn scan_id(header: &Header) -> String {
    let n = label(header.series_number.trim());
    if n.is_empty() { "0".into() } else { n }
}

fn non_empty(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            study_instance_uid: "1.2.3".into(),
            sop_instance_uid: "1.2.3.4.5".into(),
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.4".into(),
            series_number: "4".into(),
            instance_number: "12".into(),
            patient_name: "Doe^John^^".into(),
            patient_id: "PID 7".into(),
            study_description: "Brain Study".into(),
            accession_number: "ACC1".into(),
            modality: "MR".into(),
            ..Header::default()
        }
    }

    #[test]
    fn xnat_default_identification() {
        let h = header();
        assert_eq!(project_of(&h).as_deref(), Some("Brain_Study"));
        assert_eq!(subject_of(&h).as_deref(), Some("Doe_John"));
        assert_eq!(session_of(&h), "PID_7");
        let mut c = h.clone();
        c.patient_comments = "Project: TRIAL Subject:S01 ; Session: S01_MR1".into();
        assert_eq!(project_of(&c).as_deref(), Some("TRIAL"));
        assert_eq!(subject_of(&c).as_deref(), Some("S01"));
        assert_eq!(session_of(&c), "S01_MR1");
        let mut bare = h.clone();
        bare.study_description.clear();
        assert_eq!(project_of(&bare).as_deref(), Some("ACC1"), "then the accession number");
        bare.accession_number.clear();
        assert_eq!(project_of(&bare), None);
        bare.patient_id.clear();
        assert_eq!(session_of(&bare), "Doe_John_MR", "no patient ID: subject and modality");
    }

    #[test]
    fn file_names_follow_xnat_and_are_safe() {
        let h = header();
        let name = file_name(&h);
        assert!(name.starts_with("1.2.3-4-12-") && name.ends_with(".dcm"), "{name}");
        crate::fs::tree::check_segment(&name).unwrap();
        let mut odd = h.clone();
        odd.series_number = "../x".into();
        odd.study_instance_uid = "../../etc".into();
        crate::fs::tree::check_segment(&file_name(&odd)).unwrap();
        assert_eq!(scan_id(&odd), "___x");
        odd.series_number.clear();
        assert_eq!(scan_id(&odd), "0");
    }
}
