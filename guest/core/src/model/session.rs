//! An image session document (`xnat:MRSession`, `xnat:CTSession`, ...): what the prearchive holds beside
//! each session folder and what we keep beside each archived experiment. Read from and written back to its
//! element tree, so nothing this code does not know is lost.

use crate::error::{Error, Result};
use crate::xml::{self, AttributeOrder, Element, Indent, Node};

/// The XNAT data namespace.
pub const XNAT_NS: &str = "http://nrg.wustl.edu/xnat";

/// A session document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDoc {
    root: Element,
}

/// A scan as the document lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    pub id: String,
    pub uid: Option<String>,
    /// `xnat:mrScanData`, ...
    pub xsi_type: Option<String>,
    pub kind: Option<String>,
    /// The scan's resources: (label, URI relative to the session folder, format).
    pub files: Vec<ScanFile>,
}

/// A resource of a scan (`xnat:file`) or of the session (`xnat:resources/xnat:resource`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanFile {
    pub label: String,
    pub uri: String,
    pub format: Option<String>,
}

impl SessionDoc {
    pub fn parse(bytes: &[u8]) -> Result<SessionDoc, String> {
        let root = xml::parse(bytes).map_err(|e| e.to_string())?;
        Ok(SessionDoc { root })
    }

    /// The document's root with only the direct children a prearchive listing shows (date, time, subject,
    /// patient): the rest (the scans, most of a document) is read and checked as [`SessionDoc::parse`]
    /// checks it, but not built. Only for reading those fields: never write it back.
    pub(crate) fn parse_heading(bytes: &[u8]) -> Result<SessionDoc, String> {
        const SHOWN: [&str; 5] = ["date", "time", "subject_ID", "dcmPatientName", "dcmPatientId"];
        let root =
            xml::parse_pruned(bytes, &|depth, name| depth == 1 && SHOWN.contains(&name)).map_err(|e| e.to_string())?;
        Ok(SessionDoc { root })
    }

    pub fn from_root(root: Element) -> SessionDoc {
        SessionDoc { root }
    }

    pub fn root(&self) -> &Element {
        &self.root
    }

    pub fn root_mut(&mut self) -> &mut Element {
        &mut self.root
    }

    pub fn to_xml(&self) -> String {
        xml::write(&self.root, AttributeOrder::Kept, Indent::Pretty)
    }

    fn prefix(&self) -> String {
        let p = self.root.prefix_for(XNAT_NS).unwrap_or("xnat");
        if p.is_empty() { String::new() } else { format!("{p}:") }
    }

    /// The root element's name, e.g. `xnat:MRSession`.
    pub fn element_name(&self) -> &str {
        &self.root.name
    }

    /// The data type as XNAT names it in `xsi:type` and JSON: `xnat:mrSessionData` for `xnat:MRSession`.
    pub fn xsi_type(&self) -> String {
        if let Some(t) = self.root.attr("xsi:type") {
            return t.to_string();
        }
        data_type(self.root.local_name())
    }

    /// The two letters XNAT uses when it renames a clashing scan (`MR`, `CT`, `PT`).
    pub fn modality_code(&self) -> String {
        modality_code(&self.xsi_type())
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.root.attr(name).filter(|v| !v.trim().is_empty())
    }

    pub fn set_attr(&mut self, name: &str, value: &str) {
        self.root.set_attr(name, value);
    }

    /// The text of a direct child element (`date`, `subject_ID`, `dcmPatientName`, ...), if not blank.
    pub fn field(&self, local: &str) -> Option<String> {
        self.root.elements().find(|e| e.local_name() == local).map(|e| e.text()).filter(|t| !t.trim().is_empty())
    }

    /// Sets a direct child's text, creating it before the first of `before` (schema order) if missing.
    pub fn set_field(&mut self, local: &str, value: &str, before: &[&str]) {
        if let Some(e) = self.root.elements_mut().find(|e| e.local_name() == local) {
            e.children = vec![Node::Text(value.to_string())];
            return;
        }
        let mut el = Element::new(format!("{}{local}", self.prefix()));
        el.children.push(Node::Text(value.to_string()));
        let at = self
            .root
            .children
            .iter()
            .position(|n| matches!(n, Node::Element(e) if before.contains(&e.local_name())))
            .unwrap_or(self.root.children.len());
        self.root.children.insert(at, Node::Element(el));
    }

    /// Removes a direct child element.
    pub fn remove_field(&mut self, local: &str) {
        self.root.children.retain(|n| !matches!(n, Node::Element(e) if e.local_name() == local));
    }

    pub fn id(&self) -> Option<&str> {
        self.attr("ID").filter(|id| !id.eq_ignore_ascii_case("NULL"))
    }
    pub fn label(&self) -> Option<&str> {
        self.attr("label")
    }
    pub fn project(&self) -> Option<&str> {
        self.attr("project")
    }
    /// The StudyInstanceUID.
    pub fn uid(&self) -> Option<&str> {
        self.attr("UID")
    }
    pub fn subject_id(&self) -> Option<String> {
        self.field("subject_ID").or_else(|| self.attr("subject_ID").map(str::to_string))
    }

    fn scans_el(&self) -> Option<&Element> {
        self.root.elements().find(|e| e.local_name() == "scans")
    }

    /// The scans, in document order.
    pub fn scans(&self) -> Vec<Scan> {
        let Some(scans) = self.scans_el() else { return Vec::new() };
        scans
            .elements()
            .filter(|e| e.local_name() == "scan")
            .map(|s| Scan {
                id: s.attr("ID").unwrap_or("").to_string(),
                uid: s.attr("UID").filter(|u| !u.is_empty()).map(str::to_string),
                xsi_type: s.attr("xsi:type").map(str::to_string),
                kind: s.attr("type").map(str::to_string),
                files: s
                    .elements()
                    .filter(|f| f.local_name() == "file")
                    .map(|f| ScanFile {
                        label: f.attr("label").unwrap_or("").to_string(),
                        uri: f.attr("URI").unwrap_or("").to_string(),
                        format: f.attr("format").map(str::to_string),
                    })
                    .collect(),
            })
            .collect()
    }

    /// The session's own resources (`xnat:resources/xnat:resource`).
    pub fn resources(&self) -> Vec<ScanFile> {
        self.root
            .elements()
            .filter(|e| e.local_name() == "resources")
            .flat_map(|r| r.elements())
            .map(|f| ScanFile {
                label: f.attr("label").unwrap_or("").to_string(),
                uri: f.attr("URI").unwrap_or("").to_string(),
                format: f.attr("format").map(str::to_string),
            })
            .collect()
    }

    /// A scan element, for editing.
    pub fn scan_mut(&mut self, id: &str) -> Option<&mut Element> {
        let scans = self.root.elements_mut().find(|e| e.local_name() == "scans")?;
        scans.elements_mut().find(|e| e.local_name() == "scan" && e.attr("ID") == Some(id))
    }

    /// The scan element itself (to copy into another document).
    pub fn scan_element(&self, id: &str) -> Option<&Element> {
        self.scans_el()?.elements().find(|e| e.local_name() == "scan" && e.attr("ID") == Some(id))
    }

    /// Appends a scan element (from another document) to `xnat:scans`, creating it if needed.
    pub fn push_scan(&mut self, scan: Element) {
        if self.scans_el().is_none() {
            let name = format!("{}scans", self.prefix());
            let at = self
                .root
                .children
                .iter()
                .position(|n| {
                    matches!(n, Node::Element(e) if ["reconstructions", "assessors", "dcmAccessionNumber", "dcmPatientId",
                        "dcmPatientName", "dcmPatientBirthDate", "dcmPatientWeight", "coil", "fieldStrength", "marker",
                        "stabilization"].contains(&e.local_name()))
                })
                .unwrap_or(self.root.children.len());
            self.root.children.insert(at, Node::Element(Element::new(name)));
        }
        let scans = self.root.elements_mut().find(|e| e.local_name() == "scans").expect("just made");
        scans.children.push(Node::Element(scan));
    }

    /// Adds a custom field (`xnat:fields/xnat:field name=...`), XNAT's place for site-specific values.
    pub fn set_custom_field(&mut self, name: &str, value: &str) {
        let p = self.prefix();
        if !self.root.elements().any(|e| e.local_name() == "fields") {
            let at = self
                .root
                .children
                .iter()
                .position(|n| {
                    matches!(n, Node::Element(e) if !["sharing", "date", "time", "duration", "delay", "note",
                        "investigator", "validation", "resources"].contains(&e.local_name()))
                })
                .unwrap_or(self.root.children.len());
            self.root.children.insert(at, Node::Element(Element::new(format!("{p}fields"))));
        }
        let fields = self.root.elements_mut().find(|e| e.local_name() == "fields").expect("just made");
        if let Some(f) = fields.elements_mut().find(|f| f.attr("name") == Some(name)) {
            f.children = vec![Node::Text(value.into())];
            return;
        }
        let mut f = Element::new(format!("{p}field"));
        f.attrs.push(("name".into(), name.into()));
        f.children.push(Node::Text(value.into()));
        fields.children.push(Node::Element(f));
    }

    pub fn custom_field(&self, name: &str) -> Option<String> {
        self.root
            .elements()
            .filter(|e| e.local_name() == "fields")
            .flat_map(|f| f.elements())
            .find(|f| f.attr("name") == Some(name))
            .map(|f| f.text())
    }
}

/// XNAT's `cleanValue`: spaces and `` ` ~ ! @ # $ % ^ & * ( ) + = [ ] { } | \ / ? : ; " ' , . < > `` become `_`.
pub fn clean_value(raw: &str) -> String {
    raw.trim()
        .chars()
        .map(|c| if c == ' ' || "`~!@#$%^&*()+=[]{}|\\/?:;\"',.<>".contains(c) { '_' } else { c })
        .collect()
}

/// A scan's DICOM resource as a session document lists it: `xnat:file` of type `xnat:resourceCatalog`,
/// label and format DICOM, content RAW, its catalog's URI (relative to the session folder), file count and size.
pub fn dicom_resource(catalog_uri: &str, file_count: usize, file_size: u64) -> Element {
    Element::with(
        "xnat:file",
        &[
            ("xsi:type", "xnat:resourceCatalog"),
            ("label", "DICOM"),
            ("format", "DICOM"),
            ("content", "RAW"),
            ("URI", catalog_uri),
            ("file_count", &file_count.to_string()),
            ("file_size", &file_size.to_string()),
        ],
        Vec::new(),
    )
}

/// The error for a session document that cannot be read.
pub fn unreadable(path: &str, why: &str) -> Error {
    Error::Corrupt(format!("session document {path} cannot be read ({why}); fix it or rebuild it from the DICOM"))
}

/// The child elements of experiment and subject documents from `resources` on, in XNAT's schema order
/// (`xnat:experimentData`, `xnat:subjectAssessorData`, `xnat:imageSessionData`, `xnat:subjectData`): where a
/// new element goes, before the first of those that follow it.
pub const SCHEMA_ORDER: &[&str] = &[
    "resources",
    "fields",
    "acquisition_site",
    "subject_ID",
    "age",
    "regions",
    "scanner",
    "operator",
    "prearchivePath",
    "scans",
    "reconstructions",
    "assessors",
    "dcmAccessionNumber",
    "dcmPatientId",
    "dcmPatientName",
    "dcmPatientBirthDate",
    "dcmPatientWeight",
    "coil",
    "fieldStrength",
    "marker",
    "stabilization",
    "demographics",
    "metadata",
    "addID",
    "experiments",
];

/// The elements the schema places after `name` (none for a name it does not order).
pub fn after(name: &str) -> &'static [&'static str] {
    SCHEMA_ORDER.iter().position(|n| *n == name).map_or(&[], |i| &SCHEMA_ORDER[i + 1..])
}

/// The data type XNAT gives a session document's root element: `xnat:mrSessionData` for `MRSession`.
pub fn data_type(local_name: &str) -> String {
    let stem = local_name.strip_suffix("Session").unwrap_or(local_name);
    // The leading capitals are lowercased (`MR` → `mr`, `PETMR` → `petmr`), except the one that starts a
    // lowercase word after them (`OtherDicom` → `otherDicom`, `Seg` → `seg`).
    let caps = stem.chars().take_while(char::is_ascii_uppercase).count();
    let lower = if caps == stem.len() || caps <= 1 { caps.max(1) } else { caps - 1 };
    let (head, tail) = stem.split_at(lower.min(stem.len()));
    format!("xnat:{}{tail}SessionData", head.to_ascii_lowercase())
}

/// The two letters of a session data type's modality (`MR`, `CT`, `PT` for `xnat:petSessionData`), which
/// XNAT uses when it renames a clashing scan and writes as the document's `modality`.
pub fn modality_code(data_type: &str) -> String {
    let code: String = xml::local(data_type).to_ascii_uppercase().chars().take(2).collect();
    if code == "PE" { "PT".into() } else { code }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"<xnat:MRSession xmlns:xnat="http://nrg.wustl.edu/xnat" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ID="" project="P" label="L" UID="1.2.3">
        <xnat:date>2024-01-31</xnat:date><xnat:subject_ID>SUBJ1</xnat:subject_ID>
        <xnat:scans><xnat:scan ID="2" type="T1" UID="1.2.3.2" xsi:type="xnat:mrScanData">
        <xnat:file xsi:type="xnat:resourceCatalog" label="DICOM" URI="SCANS/2/DICOM/scan_2_catalog.xml" format="DICOM"/></xnat:scan></xnat:scans>
        <xnat:dcmPatientName>PN</xnat:dcmPatientName></xnat:MRSession>"#;

    #[test]
    fn data_type_and_modality_code_follow_xnat() {
        for (element, expected_type, code) in [
            ("MRSession", "xnat:mrSessionData", "MR"),
            ("CTSession", "xnat:ctSessionData", "CT"),
            ("PETSession", "xnat:petSessionData", "PT"),
            ("PETMRSession", "xnat:petmrSessionData", "PT"),
            ("OtherDicomSession", "xnat:otherDicomSessionData", "OT"),
            ("SegSession", "xnat:segSessionData", "SE"),
        ] {
            assert_eq!(data_type(element), expected_type);
            assert_eq!(modality_code(&data_type(element)), code);
        }
    }

    #[test]
    fn reads_the_fields_archiving_needs() {
        let mut d = SessionDoc::parse(DOC.as_bytes()).unwrap();
        assert_eq!(d.id(), None);
        assert_eq!((d.label(), d.project(), d.uid()), (Some("L"), Some("P"), Some("1.2.3")));
        assert_eq!(d.subject_id().as_deref(), Some("SUBJ1"));
        assert_eq!(d.xsi_type(), "xnat:mrSessionData");
        assert_eq!(d.modality_code(), "MR");
        let scans = d.scans();
        assert_eq!(scans[0].id, "2");
        assert_eq!(scans[0].files[0].uri, "SCANS/2/DICOM/scan_2_catalog.xml");
        d.set_custom_field("quarantine", "true");
        d.set_field("subject_ID", "XNAT_S00001", &[]);
        let again = SessionDoc::parse(d.to_xml().as_bytes()).unwrap();
        assert_eq!(again.custom_field("quarantine").as_deref(), Some("true"));
        assert_eq!(again.subject_id().as_deref(), Some("XNAT_S00001"));
        let names: Vec<&str> = again.root().elements().map(|e| e.local_name()).collect();
        assert_eq!(names, ["date", "fields", "subject_ID", "scans", "dcmPatientName"]);
    }

    #[test]
    fn clean_value_like_xnat() {
        assert_eq!(clean_value(" My Session (2).v1 "), "My_Session__2__v1");
        assert_eq!(clean_value("ok-name_1"), "ok-name_1");
    }

    #[test]
    fn pet_maps_to_pt() {
        let d = SessionDoc::parse(br#"<xnat:PETSession xmlns:xnat="http://nrg.wustl.edu/xnat"/>"#).unwrap();
        assert_eq!(d.xsi_type(), "xnat:petSessionData");
        assert_eq!(d.modality_code(), "PT");
    }
}
