//! XNAT's archive listings as tables (`format=json|csv|xml`): the projects, a project's subjects, and a
//! project's (or one subject's) experiments, read from the folders and documents of the archive. pyxnat's
//! `select(...).exists()` and listings, and scripts that `curl …/data/projects?format=csv`, read these.
//!
//! What XNAT keeps in its database and we do not (insert dates and users, project titles and PIs) is
//! answered empty; a project's name and secondary ID are its ID, as XNAT shows a project created untitled.

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use xnat_core::fs::tree::Tree;
use xnat_core::model::session::SessionDoc;
use xnat_core::site::layout::{Archive, ExperimentDir, document_root};

use crate::formats::{Format, HttpError, Table};
use crate::message::Response;

/// `GET /data/projects`.
pub fn projects(archive: &Tree, format: Format) -> Result<Response, HttpError> {
    let mut t = Table::new(&["ID", "secondary_ID", "name", "description", "pi_firstname", "pi_lastname", "URI"]);
    for p in Archive::new(archive).projects()? {
        let uri = format!("/data/projects/{}", encode(&p));
        t.push(vec![p.clone(), p.clone(), p, String::new(), String::new(), String::new(), uri]);
    }
    Ok(t.response(format, 200))
}

/// `GET /data/projects/P/subjects`.
pub fn subjects(archive: &Tree, project: &str, format: Format) -> Result<Response, HttpError> {
    let mut t = Table::new(&["ID", "project", "label", "insert_date", "insert_user", "URI"]);
    for s in Archive::new(archive).subjects(project)? {
        let id = match &s.document {
            Some(doc) => document_root(archive, doc).ok().and_then(|r| r.attr("ID").map(str::to_string)),
            None => None,
        }
        .unwrap_or_else(|| s.label.clone());
        let uri = format!("/data/subjects/{}", encode(&id));
        t.push(vec![id, s.project, s.label, String::new(), String::new(), uri]);
    }
    Ok(t.response(format, 200))
}

/// `GET /data/projects/P/experiments`, or `…/subjects/S/experiments` (S by label or ID).
pub fn experiments(
    archive: &Tree,
    project: &str,
    subject: Option<&str>,
    format: Format,
) -> Result<Response, HttpError> {
    let site = Archive::new(archive);
    let subject = subject.map(|s| site.subject(Some(project), s)).transpose()?;
    let mut t = Table::new(&["ID", "project", "date", "xsiType", "label", "insert_date", "URI"]);
    for e in site.experiments(project)? {
        if subject.as_ref().is_some_and(|s| e.subject.as_deref() != Some(s.label.as_str())) {
            continue;
        }
        let (id, xsi_type, date) = described(archive, &e);
        let uri = format!("/data/experiments/{}", encode(&id));
        t.push(vec![id, e.project, date, xsi_type, e.label, String::new(), uri]);
    }
    Ok(t.response(format, 200))
}

/// An experiment's ID, type and date from its document; its label and no type when it has none (or it
/// cannot be read).
fn described(archive: &Tree, e: &ExperimentDir) -> (String, String, String) {
    let doc = e.document.as_ref().and_then(|d| archive.read(d).ok()).and_then(|b| SessionDoc::parse(&b).ok());
    match doc {
        Some(doc) => (
            doc.id().filter(|id| !id.is_empty()).unwrap_or(&e.label).to_string(),
            doc.xsi_type(),
            doc.field("date").unwrap_or_default().trim().to_string(),
        ),
        None => (e.label.clone(), String::new(), String::new()),
    }
}

/// A path segment percent-encoded for a URI in a listing.
pub fn encode(segment: &str) -> String {
    const SEGMENT: &AsciiSet = &CONTROLS.add(b'%').add(b'/').add(b'?').add(b'#').add(b' ');
    utf8_percent_encode(segment, SEGMENT).to_string()
}
