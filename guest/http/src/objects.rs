//! Archived objects as XNAT's `items` JSON (`http-surface.md` §4, tier C): what xnatpy fetches after
//! `PrearchiveSession.archive()` to build the experiment object, and what `exp.subject` fetches.
//!
//! ```json
//! {"items":[{"children":[],"meta":{"xsi:type":"xnat:mrSessionData","isHistory":false},
//!            "data_fields":{"ID":"XNAT_E00001","project":"P","subject_ID":"XNAT_S00001","label":"E1",...}}]}
//! ```

use serde_json::{Map, Value, json};
use xnat_core::fs::tree::Tree;
use xnat_core::model::session::SessionDoc;
use xnat_core::site::layout::{Archive, document_root};
use xnat_core::site::uri::{Item, ResourceUri};

use crate::formats::{self, HttpError};
use crate::message::Response;

/// Fields of an experiment document copied into `data_fields` when present (besides ID, project, label).
const EXPERIMENT_FIELDS: &[&str] = &["subject_ID", "date", "time", "modality", "scanner", "operator", "note"];
const EXPERIMENT_ATTRS: &[&str] = &["UID", "visit_id", "session_type", "acquisition_site"];

/// `GET` of an experiment or subject URI (`/data/projects/P/subjects/S/experiments/E`, `/data/archive/...`,
/// `/data/experiments/ID`, `/data/subjects/ID`, ...): JSON `items`, or with `xml` the stored document.
/// `None` when the path names something else (the router answers 404).
pub fn get(archive: &Tree, path: &str, xml: bool) -> Option<Result<Response, HttpError>> {
    let uri = ResourceUri::parse(path).ok()?;
    if uri.resource.is_some() {
        return None;
    }
    let site = Archive::new(archive);
    match uri.item {
        Item::Experiment(r) => Some(site.experiment(&r).map_err(HttpError::from).and_then(|e| {
            let Some(doc_path) = e.document else {
                return Err(HttpError::not_found(&format!(
                    "experiment {} of project {} has no document ({}/{}.xml); it was not archived by this \
                     service — restore its document, or refresh it with XNAT",
                    e.label,
                    e.project,
                    e.folder.parent(),
                    e.label
                )));
            };
            let bytes = archive.read(&doc_path)?;
            if xml {
                return Ok(Response::new(200, formats::XML, bytes));
            }
            let doc = SessionDoc::parse(&bytes)
                .map_err(|why| HttpError::from(xnat_core::model::session::unreadable(doc_path.as_str(), &why)))?;
            Ok(items(experiment_item(&doc, &e.project, &e.label)))
        })),
        Item::Subject { project, subject } => {
            Some(site.subject(project.as_deref(), &subject).map_err(HttpError::from).and_then(|s| {
                let Some(doc_path) = s.document else {
                    return Err(HttpError::not_found(&format!(
                        "subject {} of project {} has no document ({}.xml)",
                        s.label, s.project, s.folder
                    )));
                };
                if xml {
                    return Ok(Response::new(200, formats::XML, archive.read(&doc_path)?));
                }
                let root = document_root(archive, &doc_path)?;
                let mut fields = Map::new();
                fields.insert("ID".into(), root.attr("ID").unwrap_or(&s.label).into());
                fields.insert("project".into(), root.attr("project").unwrap_or(&s.project).into());
                fields.insert("label".into(), root.attr("label").unwrap_or(&s.label).into());
                Ok(items(item("xnat:subjectData", fields)))
            }))
        }
        Item::Scan { experiment, scan } => Some((|| {
            let (e, doc) = xnat_core::site::browse::experiment(&site, &experiment)?;
            let Some(el) = doc.scan_element(&scan) else {
                return Err(HttpError::not_found(&format!("scan {scan} of experiment {} does not exist", e.label)));
            };
            let mut fields = Map::new();
            // Its attributes (ID, type, UID, ...) and its simple children (quality, series_description, ...),
            // as XNAT's data_fields have them; no namespace declarations, no xsi:type (that is the meta's).
            for (name, value) in &el.attrs {
                if !name.contains(':') && name != "xmlns" {
                    fields.insert(name.clone(), value.as_str().into());
                }
            }
            for child in el.elements() {
                let text = child.text();
                if child.elements().next().is_none() && !text.trim().is_empty() {
                    fields.insert(child.local_name().into(), text.trim().into());
                }
            }
            fields.insert("image_session_ID".into(), doc.id().unwrap_or(&e.label).into());
            fields.entry("project").or_insert_with(|| e.project.clone().into());
            let xsi_type = el.attr("xsi:type").unwrap_or("xnat:imageScanData");
            Ok(items(item(xsi_type, fields)))
        })()),
        _ => None,
    }
}

fn experiment_item(doc: &SessionDoc, project: &str, label: &str) -> Value {
    let mut fields = Map::new();
    fields.insert("ID".into(), doc.id().unwrap_or(label).into());
    fields.insert("project".into(), doc.project().unwrap_or(project).into());
    fields.insert("label".into(), doc.label().unwrap_or(label).into());
    for f in EXPERIMENT_FIELDS {
        let value = if *f == "subject_ID" { doc.subject_id() } else { doc.field(f) };
        if let Some(v) = value {
            fields.insert((*f).into(), v.trim().into());
        }
    }
    for a in EXPERIMENT_ATTRS {
        if let Some(v) = doc.attr(a) {
            fields.insert((*a).into(), v.into());
        }
    }
    item(&doc.xsi_type(), fields)
}

fn item(xsi_type: &str, fields: Map<String, Value>) -> Value {
    json!({ "children": [], "meta": { "xsi:type": xsi_type, "isHistory": false }, "data_fields": fields })
}

fn items(item: Value) -> Response {
    Response::new(200, formats::JSON, json!({ "items": [item] }).to_string())
}
