//! XNAT's names: identifiers (project ids, subject and session labels) and the resource URIs that session
//! documents hold, relative to their session folder (D15). Checks only; not for finding anything on disk.

use crate::error::{Error, Result};
use crate::fs::tree::RelPath;

/// XNAT's rule for IDs and labels after cleaning (`XftStringUtils.REGEX_VALID_ID`), and at most
/// [`MAX_IDENTIFIER`] characters.
pub fn valid_identifier(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_IDENTIFIER && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The longest project id, subject or session label (and prearchive session folder) accepted: each becomes a
/// file or folder name, also inside longer ones (`.<label>.lock`, `.~xnat-tmp-<label>.xml.<unique>`), and a
/// name the file system cannot hold must be refused as a bad request before anything is written.
pub const MAX_IDENTIFIER: usize = 200;

/// Why `s` is not a valid identifier, for validation notices.
pub fn identifier_problem(s: &str) -> String {
    if s.len() > MAX_IDENTIFIER {
        format!(
            "Identifiers cannot be longer than {MAX_IDENTIFIER} characters: {}...",
            s.chars().take(32).collect::<String>()
        )
    } else {
        format!("Identifiers cannot use special characters: {s}")
    }
}

/// A project id a request names (an archive's `project` or `dest`, a move's `newProject`) must be an XNAT
/// identifier. A plain folder name is not enough: `..%2fB` would become a folder whose URI
/// (`/archive/projects/..%2fB/...`) decodes to a path out of the tree, so that no request could name it.
pub fn check_project_id(project: &str) -> Result<()> {
    if valid_identifier(project) {
        return Ok(());
    }
    Err(Error::BadRequest(format!(
        "{project:?} is not a valid project id: XNAT project ids are letters, digits, '-' and '_', at most \
         {MAX_IDENTIFIER} of them"
    )))
}

/// A resource URI from a session document as a path relative to the session folder (D15), or `None` when
/// it does not name a place inside the session. Relative URIs (`SCANS/2/...`, `./SCANS/...`) are taken as
/// they are; absolute ones written by XNAT (`/data/prearchive/P/TS/F/SCANS/...`) are cut after the
/// session's own `/<TIMESTAMP>/<FOLDER>/`. Backslashes count as separators. Refused: `..`, `.` and empty
/// segments, absolute paths elsewhere, Windows drive paths (`C:`), NUL.
pub fn relative_uri(uri: &str, session_dir: &RelPath) -> Option<String> {
    let uri = uri.replace('\\', "/");
    let rel = if uri.starts_with('/') {
        let marker = format!("/{}/{}/", session_dir.parent().name(), session_dir.name());
        uri.rfind(&marker).map(|i| uri[i + marker.len()..].to_string())?
    } else {
        let mut u = uri.as_str();
        while let Some(rest) = u.strip_prefix("./") {
            u = rest;
        }
        u.to_string()
    };
    let inside = !rel.is_empty()
        && rel.split('/').all(|seg| crate::fs::tree::check_segment(seg).is_ok())
        && !rel.split('/').next().is_some_and(|first| first.contains(':'));
    inside.then_some(rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_ids_are_xnat_identifiers() {
        for good in ["DEMO", "trial_2", "A-1", "Unassigned"] {
            assert!(check_project_id(good).is_ok(), "{good}");
        }
        for bad in ["", "..", ".", "../B", "..%2fB", "%2e%2e", "a/b", "a\\b", "A B", "P.1", "/B"] {
            let e = check_project_id(bad).unwrap_err();
            assert!(matches!(&e, Error::BadRequest(m) if m.contains("not a valid project id")), "{bad}: {e:?}");
        }
    }

    #[test]
    fn relative_uris() {
        let dir = RelPath::new("P/20240101_000000000/S1").unwrap();
        assert_eq!(relative_uri("SCANS/2/DICOM/c.xml", &dir).as_deref(), Some("SCANS/2/DICOM/c.xml"));
        assert_eq!(relative_uri("./SCANS/2/c.xml", &dir).as_deref(), Some("SCANS/2/c.xml"));
        assert_eq!(
            relative_uri("/data/xnat/prearchive/P/20240101_000000000/S1/SCANS/2/c.xml", &dir).as_deref(),
            Some("SCANS/2/c.xml")
        );
        assert_eq!(relative_uri("/elsewhere/c.xml", &dir), None);
        for outside in [
            "../20240101_000000000/OTHER/SCANS/2/c.xml",
            "SCANS/../../OTHER/c.xml",
            "..\\..\\OTHER\\c.xml",
            "SCANS\\2\\..\\..\\..\\c.xml",
            "/etc/passwd",
            "/data/xnat/prearchive/P/20240101_000000000/OTHER/SCANS/2/c.xml",
            "C:\\xnat\\prearchive\\c.xml",
            "C:/xnat/c.xml",
            "",
            "./",
            "SCANS//c.xml",
        ] {
            assert_eq!(relative_uri(outside, &dir), None, "{outside}");
        }
        assert_eq!(relative_uri("SCANS\\2\\c.xml", &dir).as_deref(), Some("SCANS/2/c.xml"));
    }
}
