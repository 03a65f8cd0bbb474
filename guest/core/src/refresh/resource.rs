//! Creating a resource (`PUT|POST /data/archive/.../resources/LABEL`, `catalog-refresh.md` §2.4): its folder
//! and an empty catalog named as XNAT's catalog service names it, and — where the owner has a document —
//! the resource element with its `format`, `content`, `description` and `tags`.

use crate::error::{Error, Result};
use crate::fs::tree::{RelPath, Tree};
use crate::model::catalog::{Catalog, CatalogKind};
use crate::model::session;
use crate::site::document;
use crate::site::layout::{Archive, ParentKind, document_root, find_all};
use crate::site::uri::{ResourceUri, Side};
use crate::xml::{Element, Node};

/// What to create.
#[derive(Debug, Clone, Default)]
pub struct ResourceSpec {
    /// The resource URI, ending in `/resources/LABEL`.
    pub resource: String,
    pub format: Option<String>,
    pub content: Option<String>,
    pub description: Option<String>,
    /// `name=value`, `name:value` or bare values.
    pub tags: Vec<String>,
}

/// What was created; paths relative to the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub resource: String,
    pub folder: String,
    pub catalog: String,
}

/// Creates the resource. An existing label is a `Conflict` ("Specified resource already exists.").
pub fn create_resource(archive: &Tree, spec: &ResourceSpec) -> Result<Created> {
    let uri = ResourceUri::parse(&spec.resource)?;
    let Some(label) = uri.resource.as_ref().and_then(|r| r.label.clone()) else {
        return Err(Error::BadRequest(format!(
            "{:?} names no resource; the URI must end with /resources/LABEL",
            spec.resource
        )));
    };
    let side = uri.resource.as_ref().map_or(Side::Unspecified, |r| r.side);
    let site = Archive::new(archive);
    let parent = site.parent(&uri.item)?;
    let dir = parent.resource(&site, &label, side);
    if archive.kind(&dir.folder)?.is_some() {
        return Err(Error::Conflict(format!("Specified resource already exists: {} ({})", dir.uri, dir.folder)));
    }
    let catalog = dir.folder.join(&format!("{}_catalog.xml", dir.catalog_id))?;

    // The owner's document first: reading it may fail, and then nothing is created.
    let owner = match &dir.owner {
        Some(owner) => Some((owner.clone(), document_root(archive, &owner.document)?)),
        None => None,
    };

    archive.create_dir_all(&dir.folder.parent())?;
    archive.create_dir_new(&dir.folder).map_err(|e| match e {
        Error::Conflict(_) => Error::Conflict(format!("Specified resource already exists: {}", dir.uri)),
        e => e,
    })?;
    let mut cat = Catalog::new(CatalogKind::Plain, &dir.catalog_id);
    cat.set_meta_field("PROJECT", &dir.project);
    if let Err(e) = archive.write_atomic(&catalog, cat.to_xml().as_bytes()) {
        let _ = std::fs::remove_dir(archive.path(&dir.folder));
        return Err(e);
    }

    if let Some((owner, mut root)) = owner {
        let rel = catalog.strip_prefix(&owner.base).unwrap_or(catalog.as_str()).to_string();
        if add_to_document(&mut root, &parent.kind, &label, &rel, spec) {
            document::save(archive, &owner.document, &root)?;
        }
    }
    Ok(Created { resource: dir.uri, folder: dir.folder.as_str().to_string(), catalog: catalog.as_str().to_string() })
}

/// Adds the resource element where XNAT keeps it. Returns false when the document has no place for it
/// (assessors and reconstructions keep their resources in their own documents).
fn add_to_document(root: &mut Element, kind: &ParentKind, label: &str, uri: &str, spec: &ResourceSpec) -> bool {
    let x = document::xnat_prefix(root);
    let q = |l: &str| {
        if x.is_empty() { l.to_string() } else { format!("{x}:{l}") }
    };
    let make = |name: &str, content: Option<&str>| {
        let mut el = Element::new(q(name));
        el.attrs.push(("label".into(), label.into()));
        el.attrs.push(("URI".into(), uri.into()));
        for (k, v) in
            [("format", spec.format.as_deref()), ("content", content), ("description", spec.description.as_deref())]
        {
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                el.attrs.push((k.into(), v.into()));
            }
        }
        el.attrs.push(("xsi:type".into(), "xnat:resourceCatalog".into()));
        let tags = tags(&spec.tags, &q);
        if !tags.children.is_empty() {
            el.children.push(Node::Element(tags));
        }
        el
    };
    match kind {
        ParentKind::Scan(id) => {
            let scan = find_scan(root, id);
            let Some(scan) = scan else { return false };
            // XNAT: the first resource of a typed scan is RAW unless told otherwise.
            let first = !scan.elements().any(|e| e.local_name() == "file");
            let content = spec.content.clone().or_else(|| (first && scan.attr("type").is_some()).then(|| "RAW".into()));
            let el = make("file", content.as_deref());
            document::insert_before(scan, el, &["validation", "startTime", "parameters"]);
            true
        }
        ParentKind::Experiment | ParentKind::Subject => {
            let el = make("resource", spec.content.as_deref());
            if !root.elements().any(|e| e.local_name() == "resources") {
                document::insert_before(root, Element::new(q("resources")), session::after("resources"));
            }
            let resources = root.elements_mut().find(|e| e.local_name() == "resources").expect("just inserted");
            resources.children.push(Node::Element(el));
            true
        }
        _ => false,
    }
}

fn find_scan<'e>(root: &'e mut Element, id: &str) -> Option<&'e mut Element> {
    if root.local_name() == "scan" && root.attr("ID") == Some(id) {
        return Some(root);
    }
    root.elements_mut().find_map(|c| find_scan(c, id))
}

/// `<xnat:tags>` from `name=value`, `name:value` or bare values (comma lists are split too).
fn tags(raw: &[String], q: &dyn Fn(&str) -> String) -> Element {
    let mut tags = Element::new(q("tags"));
    for t in raw.iter().flat_map(|t| t.split(',')).map(str::trim).filter(|t| !t.is_empty()) {
        let mut tag = Element::new(q("tag"));
        let (name, value) = match t.split_once(['=', ':']) {
            Some((n, v)) => (Some(n.trim()), v.trim()),
            None => (None, t),
        };
        if let Some(n) = name {
            tag.attrs.push(("name".into(), n.into()));
        }
        tag.children.push(Node::Text(value.into()));
        tags.children.push(Node::Element(tag));
    }
    tags
}

/// Whether a document lists a resource element for `catalog` (used by tests and the refresh report).
pub fn listed(tree: &Tree, doc: &RelPath, label: &str) -> Result<bool> {
    let root = document_root(tree, doc)?;
    Ok(find_all(&root, &|e| matches!(e.local_name(), "file" | "resource") && e.attr("label") == Some(label)).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn site() -> (tempfile::TempDir, Tree) {
        let d = tempfile::tempdir().unwrap();
        for dir in ["P/arc001/E1/SCANS/2/DICOM", "P/subjects/S1", "P/arc001/E1/ASSESSORS/FS1"] {
            fs::create_dir_all(d.path().join(dir)).unwrap();
        }
        fs::write(
            d.path().join("P/arc001/E1.xml"),
            r#"<xnat:MRSession xmlns:xnat="http://nrg.wustl.edu/xnat" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ID="XNAT_E00001" label="E1" project="P"><xnat:subject_ID>XNAT_S00001</xnat:subject_ID><xnat:scans><xnat:scan ID="2" type="T1" xsi:type="xnat:mrScanData"><xnat:frames>1</xnat:frames></xnat:scan><xnat:scan ID="3" type="T2" xsi:type="xnat:mrScanData"/></xnat:scans></xnat:MRSession>"#,
        )
        .unwrap();
        let t = Tree::new(d.path());
        (d, t)
    }

    fn create(tree: &Tree, uri: &str) -> Result<Created> {
        create_resource(
            tree,
            &ResourceSpec {
                resource: uri.into(),
                format: Some("NIFTI".into()),
                tags: vec!["a=b,c".into()],
                ..Default::default()
            },
        )
    }

    #[test]
    fn naming_per_parent_kind() {
        let (d, tree) = site();
        let cases = [
            ("/archive/projects/P/resources/PR", "P/resources/PR/PR_catalog.xml", "PR"),
            ("/archive/projects/P/subjects/S1/resources/SR", "P/subjects/S1/SR/SR_catalog.xml", "SR"),
            ("/archive/projects/P/experiments/E1/resources/ER", "P/arc001/E1/RESOURCES/ER/ER_catalog.xml", "ER"),
            (
                "/archive/projects/P/experiments/E1/scans/3/resources/NIFTI",
                "P/arc001/E1/SCANS/3/NIFTI/3_catalog.xml",
                "3",
            ),
            (
                "/archive/experiments/XNAT_E00001/assessors/FS1/resources/STATS",
                "P/arc001/E1/ASSESSORS/FS1/STATS/STATS_catalog.xml",
                "STATS",
            ),
            (
                "/archive/experiments/XNAT_E00001/assessors/FS1/in/resources/T1",
                "P/arc001/E1/ASSESSORS/FS1/in/T1/T1_catalog.xml",
                "T1",
            ),
        ];
        for (uri, catalog, id) in cases {
            let c = create(&tree, uri).unwrap_or_else(|e| panic!("{uri}: {e}"));
            assert_eq!(c.catalog, catalog);
            let cat = Catalog::parse(&fs::read(d.path().join(catalog)).unwrap()).unwrap();
            assert_eq!(cat.id(), Some(id));
            assert!(cat.entry_locs().is_empty());
            assert!(matches!(create(&tree, uri), Err(Error::Conflict(m)) if m.contains("already exists")));
        }
        let doc = fs::read_to_string(d.path().join("P/arc001/E1.xml")).unwrap();
        let root = crate::xml::parse(doc.as_bytes()).unwrap();
        let file = find_all(&root, &|e| e.local_name() == "file").unwrap();
        assert_eq!(file.attr("URI"), Some("SCANS/3/NIFTI/3_catalog.xml"));
        assert_eq!(file.attr("content"), Some("RAW"));
        assert_eq!(file.attr("format"), Some("NIFTI"));
        assert!(doc.contains("<xnat:tag name=\"a\">b</xnat:tag>") && doc.contains("<xnat:tag>c</xnat:tag>"), "{doc}");
        assert!(listed(&tree, &RelPath::new("P/arc001/E1.xml").unwrap(), "ER").unwrap());
    }

    #[test]
    fn bad_and_unknown_parents() {
        let (_d, tree) = site();
        assert!(matches!(create(&tree, "/archive/projects/P/experiments/E1"), Err(Error::BadRequest(_))));
        assert!(matches!(
            create(&tree, "/archive/projects/P/experiments/E1/scans/9/resources/X"),
            Err(Error::NotFound(_))
        ));
        assert!(matches!(create(&tree, "/archive/projects/Q/resources/X"), Err(Error::NotFound(_))));
        assert!(matches!(create(&tree, "/archive/projects/P/resources/.."), Err(Error::BadRequest(_))));
    }
}
