//! The archived data as XNAT's listings show it: an experiment's scans (from its document), an item's own
//! resources (its resource folders) and a resource's files (its catalog's entries, as they lie on disk).
//!
//! A file is reachable only through its catalog: a path that no entry of the resource's catalog names, or
//! that names nothing on disk inside the resource's folder, is not a file of the resource. What the
//! catalog says of each file (digest, format, content) is reported as the catalog says it; whether the
//! bytes still match is the refresh's `verify` to tell (or the download's digest check, see the HTTP side).

use crate::error::{Error, Result};
use crate::fs::tree::{Kind, RelPath, Tree};
use crate::import::incoming::entries_below;
use crate::model::catalog::CatalogError;
use crate::model::catalog_stream::{EntryHead, StreamedCatalog};
use crate::model::session::SessionDoc;
use crate::refresh::index::entry_key;
use crate::site::layout::{Archive, ExperimentDir, Parent, ParentKind, ResourceDir, subdirs};
use crate::site::uri::{ExperimentRef, Item, Resource, ResourceUri, Side};
use std::collections::HashMap;

/// A scan of an archived experiment: XNAT's scan listing columns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScanRow {
    pub id: String,
    pub kind: String,
    pub quality: String,
    pub series_description: String,
    pub xsi_type: String,
    pub note: String,
}

/// A resource of an item: its label, what its catalog says it holds, and the files it lists that exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRow {
    pub dir: ResourceDir,
    pub format: String,
    pub content: String,
    pub file_count: u64,
    pub file_size: u64,
}

/// A file of a resource: its path below the resource folder (XNAT's `Name`), its size on disk and what its
/// catalog entry says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRow {
    pub name: String,
    pub size: u64,
    pub digest: String,
    pub format: String,
    pub content: String,
    /// Its catalog entry's tags.
    pub tags: Vec<String>,
    /// Where it lies in the archive tree.
    pub path: RelPath,
}

/// An experiment, found by label or accession ID, with its document.
pub fn experiment(archive: &Archive, r: &ExperimentRef) -> Result<(ExperimentDir, SessionDoc)> {
    let e = archive.experiment(r)?;
    let Some(doc_path) = &e.document else {
        return Err(Error::NotFound(format!(
            "experiment {} of project {} has no document beside its folder; it was not archived by this service",
            e.label, e.project
        )));
    };
    let bytes = archive.tree().read(doc_path)?;
    let doc = SessionDoc::parse(&bytes).map_err(|why| crate::model::session::unreadable(doc_path.as_str(), &why))?;
    Ok((e, doc))
}

/// The scans of an experiment, in document order.
pub fn scans(archive: &Archive, r: &ExperimentRef) -> Result<Vec<ScanRow>> {
    Ok(scans_of(&experiment(archive, r)?.1))
}

/// The scans a session document lists, in its order.
pub fn scans_of(doc: &SessionDoc) -> Vec<ScanRow> {
    doc.scans()
        .into_iter()
        .map(|scan| {
            let el = doc.scan_element(&scan.id);
            let field = |local: &str| {
                el.and_then(|e| e.elements().find(|c| c.local_name() == local))
                    .map(|c| c.text().trim().to_string())
                    .unwrap_or_default()
            };
            ScanRow {
                quality: field("quality"),
                series_description: field("series_description"),
                note: field("note"),
                id: scan.id,
                kind: scan.kind.unwrap_or_default(),
                xsi_type: scan.xsi_type.unwrap_or_default(),
            }
        })
        .collect()
}

/// The item's own resources (not those of its parts: an experiment's are its `RESOURCES`, not its scans'),
/// on `side` for an assessor or reconstruction, each with what its catalog lists.
pub fn resources(archive: &Archive, item: &Item, side: Side) -> Result<Vec<ResourceRow>> {
    let parent = archive.parent(item)?;
    let dirs = own_resources(archive, &parent, side)?;
    // The document's resource elements say a resource's format and content (XNAT's columns); the catalog's
    // own attributes stand in where the document has none.
    let described = match (item, &parent.owner) {
        (Item::Scan { .. } | Item::Experiment(_), Some(owner)) => {
            SessionDoc::parse(&archive.tree().read(&owner.document)?).ok()
        }
        _ => None,
    };
    let of_document = |label: &str| -> Option<Labels> {
        let doc = described.as_ref()?;
        let (holder, element) = match item {
            Item::Scan { scan, .. } => (doc.scan_element(scan)?, "file"),
            _ => (doc.root().elements().find(|e| e.local_name() == "resources")?, "resource"),
        };
        let el = holder.elements().find(|e| e.local_name() == element && e.attr("label") == Some(label))?;
        Some((el.attr("format").unwrap_or_default().to_string(), el.attr("content").unwrap_or_default().to_string()))
    };
    dirs.into_iter()
        .map(|dir| {
            let (files, frame) = listed(archive.tree(), &dir)?;
            let (format, content) = match (of_document(&dir.label), frame.unwrap_or_default()) {
                (Some((f, c)), (cf, cc)) => (if f.is_empty() { cf } else { f }, if c.is_empty() { cc } else { c }),
                (None, catalog) => catalog,
            };
            Ok(ResourceRow {
                file_count: files.len() as u64,
                file_size: files.iter().map(|f| f.size).sum(),
                format,
                content,
                dir,
            })
        })
        .collect()
}

/// One resource of an item, by label, or by the ID [`resource_id`] gives it (what clients build URIs from).
pub fn resource(archive: &Archive, item: &Item, label: &str, side: Side) -> Result<ResourceDir> {
    let parent = archive.parent(item)?;
    let dir = parent.resource(archive, label, side);
    if archive.tree().is_dir(&dir.folder)? {
        return Ok(dir);
    }
    if !label.is_empty() && label.bytes().all(|b| b.is_ascii_digit()) {
        let own = own_resources(archive, &parent, side)?;
        if let Some(dir) = own.into_iter().find(|d| resource_id(d) == label) {
            return Ok(dir);
        }
    }
    Err(Error::NotFound(format!("resource {label} of {} does not exist", parent.uri)))
}

/// A resource's ID in listings (XNAT's `xnat_abstractresource_id`, a number its database gives each resource):
/// a number made from the resource's archive URI, so that the same resource always has the same ID and two
/// resources of one item (or of two scans: clients keep resources by this ID) never share one.
pub fn resource_id(dir: &ResourceDir) -> String {
    (xxhash_rust::xxh3::xxh3_64(dir.uri.as_bytes()) % 2_000_000_000 + 1).to_string()
}

/// The files of a resource that its catalog lists and that exist, in catalog order.
pub fn files(tree: &Tree, dir: &ResourceDir) -> Result<Vec<FileRow>> {
    Ok(listed(tree, dir)?.0)
}

/// One file of a resource, by its path below the resource folder; only a file its catalog lists that lies in
/// the folder as [`files`] would show it (a regular file, reached through no link). The catalog is read up to
/// the entry and only that path is looked at: a download from a large resource walks none of it.
pub fn file(tree: &Tree, dir: &ResourceDir, name: &str) -> Result<FileRow> {
    let not_listed =
        || Error::NotFound(format!("{name} is not a file of resource {} (its catalog does not list it)", dir.uri));
    let Some(catalog) = catalog_of(tree, dir)? else { return Err(not_listed()) };
    if name == catalog.name() {
        return Err(not_listed());
    }
    let Ok(path) = dir.folder.join_path(name) else { return Err(not_listed()) };
    let mut found = None;
    StreamedCatalog::read(tree.open(&catalog)?, &mut |head| {
        if found.is_none() && entry_key(&|a| head.attr(a), &dir.folder).as_deref() == Some(name) {
            found = Some(row(head, name.to_string(), 0, path.clone()));
        }
    })
    .map_err(|e| unreadable(&catalog, e))?;
    let mut row = found.ok_or_else(not_listed)?;
    // Every folder on the way is a folder (not a link), and the file a regular file, as the listing sees them.
    let mut at = dir.folder.clone();
    let mut steps = name.split('/').peekable();
    while let Some(step) = steps.next() {
        at = at.join(step)?;
        match (tree.kind(&at)?, steps.peek()) {
            (Some(Kind::Dir), Some(_)) => {}
            (Some(Kind::File { len }), None) => row.size = len,
            _ => return Err(not_listed()),
        }
    }
    Ok(row)
}

/// The scans of the experiment `uri` names (`/archive/experiments/ID`, `/archive/projects/P/.../experiments/E`).
pub fn scans_at(archive: &Tree, uri: &str) -> Result<Vec<ScanRow>> {
    match ResourceUri::parse(uri)? {
        ResourceUri { item: Item::Experiment(e), resource: None } => scans(&Archive::new(archive), &e),
        _ => Err(Error::BadRequest(format!("{uri} does not name an experiment; name one to list its scans"))),
    }
}

/// The own resources of the item `uri` names.
pub fn resources_at(archive: &Tree, uri: &str) -> Result<Vec<ResourceRow>> {
    match ResourceUri::parse(uri)? {
        ResourceUri { item, resource: None } => resources(&Archive::new(archive), &item, Side::Unspecified),
        _ => Err(Error::BadRequest(format!("{uri} names a resource; name the item whose resources to list"))),
    }
}

/// The resource `uri` names (by label or ID).
pub fn resource_at(archive: &Tree, uri: &str) -> Result<ResourceDir> {
    match ResourceUri::parse(uri)? {
        ResourceUri { item, resource: Some(Resource { label: Some(label), side }) } => {
            resource(&Archive::new(archive), &item, &label, side)
        }
        _ => Err(Error::BadRequest(format!("{uri} does not name a resource (…/resources/LABEL)"))),
    }
}

/// Up to `length` bytes of the listed file `name` of the resource `uri` names, from `offset` (fewer at its
/// end, none past it).
pub fn read_file(archive: &Tree, uri: &str, name: &str, offset: u64, length: u32) -> Result<Vec<u8>> {
    use std::io::{Read as _, Seek as _};
    let f = file(archive, &resource_at(archive, uri)?, name)?;
    let mut opened = archive.open(&f.path)?;
    let io = |e: std::io::Error| Error::io(f.path.as_str(), &e);
    opened.seek(std::io::SeekFrom::Start(offset)).map_err(io)?;
    let mut out = Vec::with_capacity(length.min(16 << 20) as usize);
    opened.take(u64::from(length)).read_to_end(&mut out).map_err(io)?;
    Ok(out)
}

/// A resource to download, with the folder its files go to inside a zip (XNAT's layout:
/// `E1/scans/2-T1/resources/DICOM/files/...`, `E1/resources/NOTES/files/...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    pub dir: ResourceDir,
    pub folder: String,
}

/// What of an experiment a download takes: its scans named by `scans` (`ALL`, or a comma list of IDs or
/// types, as XNAT accepts), only their resources labelled `label` when given; with `own`, the experiment's
/// own resources too (unless a label is given that they do not have).
pub fn experiment_bundles(
    archive: &Archive,
    r: &ExperimentRef,
    scans: Option<&str>,
    label: Option<&str>,
    own: bool,
) -> Result<Vec<Bundle>> {
    let (e, doc) = experiment(archive, r)?;
    let wanted = |dir: &ResourceDir| label.is_none_or(|l| l == dir.label);
    let mut out = Vec::new();
    let item = Item::Experiment(r.clone());
    if own {
        let parent = archive.parent(&item)?;
        for dir in own_resources(archive, &parent, Side::Unspecified)?.into_iter().filter(|d| wanted(d)) {
            out.push(Bundle { folder: format!("{}/resources/{}/files", e.label, dir.label), dir });
        }
    }
    if let Some(selector) = scans {
        let all = scans_of(&doc);
        let picked: Vec<&ScanRow> = if selector.eq_ignore_ascii_case("ALL") {
            all.iter().collect()
        } else {
            let names: Vec<&str> = selector.split(',').map(str::trim).filter(|n| !n.is_empty()).collect();
            let picked: Vec<&ScanRow> =
                all.iter().filter(|s| names.iter().any(|n| *n == s.id || *n == s.kind)).collect();
            if let Some(missing) = names.iter().find(|n| !all.iter().any(|s| s.id == **n || s.kind == **n)) {
                return Err(Error::NotFound(format!(
                    "scan {missing} of experiment {} does not exist (name scans by ID or type, or ALL)",
                    e.label
                )));
            }
            picked
        };
        for scan in picked {
            let scan_item = Item::Scan { experiment: r.clone(), scan: scan.id.clone() };
            let parent = match archive.parent(&scan_item) {
                Ok(p) => p,
                Err(Error::NotFound(_)) => continue, // listed by the document, no folder: nothing to send
                Err(e) => return Err(e),
            };
            for dir in own_resources(archive, &parent, Side::Unspecified)?.into_iter().filter(|d| wanted(d)) {
                let folder =
                    format!("{}/scans/{}-{}/resources/{}/files", e.label, scan.id, folder_safe(&scan.kind), dir.label);
                out.push(Bundle { folder, dir });
            }
        }
    }
    Ok(out)
}

/// The bundle of one resource of any item: under the experiment's layout when it belongs to one.
pub fn bundle(archive: &Archive, item: &Item, dir: ResourceDir) -> Result<Bundle> {
    let folder = match item {
        Item::Scan { experiment: r, scan } => {
            let (e, doc) = experiment(archive, r)?;
            let kind = scans_of(&doc).into_iter().find(|s| s.id == *scan).map(|s| s.kind).unwrap_or_default();
            format!("{}/scans/{scan}-{}/resources/{}/files", e.label, folder_safe(&kind), dir.label)
        }
        Item::Experiment(r) => format!("{}/resources/{}/files", archive.experiment(r)?.label, dir.label),
        Item::Assessor { assessor: id, .. } | Item::Reconstruction { reconstruction: id, .. } => {
            format!("{id}/resources/{}/files", dir.label)
        }
        Item::Subject { subject, .. } => format!("{subject}/resources/{}/files", dir.label),
        Item::Project(p) => format!("{p}/resources/{}/files", dir.label),
    };
    Ok(Bundle { folder, dir })
}

/// A scan type as XNAT writes it into a folder name: anything but letters, digits, `-` and `_` becomes `_`.
fn folder_safe(kind: &str) -> String {
    kind.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

/// The item's own resource folders: an experiment's `RESOURCES`, an assessor's or reconstruction's `in` side
/// when asked for, else what XNAT's cascade gives the item (its own, for every other kind).
fn own_resources(archive: &Archive, parent: &Parent, side: Side) -> Result<Vec<ResourceDir>> {
    let folder = match (&parent.kind, side) {
        (ParentKind::Experiment, _) => parent.folder.join("RESOURCES")?,
        (ParentKind::Assessor | ParentKind::Reconstruction(_), Side::In) => parent.folder.join("in")?,
        _ => return parent.cascade(archive),
    };
    Ok(subdirs(archive.tree(), &folder)?.iter().map(|label| parent.resource(archive, label, side)).collect())
}

/// The catalog of a resource folder: the one `*_catalog.xml` at its top. `None` when it has none.
fn catalog_of(tree: &Tree, dir: &ResourceDir) -> Result<Option<RelPath>> {
    let mut found = Vec::new();
    for (name, kind) in tree.list(&dir.folder)? {
        if matches!(kind, Kind::File { .. }) && name.ends_with("_catalog.xml") && !name.starts_with('.') {
            found.push(name);
        }
    }
    match found.len() {
        0 => Ok(None),
        1 => Ok(Some(dir.folder.join(&found[0])?)),
        _ => Err(Error::Conflict(format!(
            "resource {} holds more than one catalog ({}); keep one (refresh reports the same)",
            dir.uri,
            found.join(", ")
        ))),
    }
}

/// A catalog's own `format` and `content`.
type Labels = (String, String);

/// The files a resource's catalog lists that lie in its folder, and the catalog's format and content.
fn listed(tree: &Tree, dir: &ResourceDir) -> Result<(Vec<FileRow>, Option<Labels>)> {
    // The host walks the folder while the catalog is read.
    let mut ahead = tree.walk_ahead(&dir.folder);
    let Some(catalog) = catalog_of(tree, dir)? else { return Ok((Vec::new(), None)) };
    let mut on_disk = Vec::new();
    entries_below(tree, &mut ahead, &dir.folder, "", &mut on_disk)?;
    let sizes: HashMap<String, u64> = on_disk
        .into_iter()
        .filter_map(|(path, kind)| match kind {
            Kind::File { len } => Some((path, len)),
            _ => None,
        })
        .collect();
    let mut rows = Vec::new();
    let mut shown = std::collections::HashSet::new();
    let file = tree.open(&catalog)?;
    let read = StreamedCatalog::read(file, &mut |head| {
        let Some(name) = entry_key(&|a| head.attr(a), &dir.folder) else { return };
        let Some(&size) = sizes.get(&name) else { return };
        if name == catalog.name() || !shown.insert(name.clone()) {
            return;
        }
        let Ok(path) = dir.folder.join_path(&name) else { return };
        rows.push(row(head, name, size, path));
    })
    .map_err(|e| unreadable(&catalog, e))?;
    let frame = read.frame();
    let labels = (
        frame.root().attr("format").unwrap_or_default().to_string(),
        frame.root().attr("content").unwrap_or_default().to_string(),
    );
    Ok((rows, Some(labels)))
}

/// A file's row from its catalog entry.
fn row(head: &EntryHead, name: String, size: u64, path: RelPath) -> FileRow {
    let attr = |a: &str| head.attr(a).unwrap_or_default().to_string();
    FileRow {
        size,
        digest: attr("digest"),
        format: attr("format"),
        content: attr("content"),
        tags: head.tags().map(str::to_string).collect(),
        path,
        name,
    }
}

fn unreadable(catalog: &RelPath, e: CatalogError) -> Error {
    Error::Corrupt(format!("catalog {catalog} cannot be read ({e}); refresh or restore it"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// An archive with one experiment whose scan 4 holds XNAT's real `scan_4_catalog.xml`: the first 3 of
    /// its entries' files on disk, one file its catalog does not list, and a session resource.
    fn site() -> (tempfile::TempDir, Tree, Vec<String>) {
        let d = tempfile::tempdir().unwrap();
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
        let catalog = fs::read_to_string(fixtures.join("scan_4_catalog.xml")).unwrap();
        let names: Vec<String> = catalog
            .split("URI=\"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .map(str::to_string)
            .filter(|n| n.ends_with(".dcm"))
            .collect();
        let scan = d.path().join("P/arc001/E1/SCANS/4/DICOM");
        fs::create_dir_all(&scan).unwrap();
        // The first entry gets two tags, as XNAT writes them after its metaFields.
        let (head, entries) = catalog.split_once("<cat:entries>").unwrap();
        let tags = "</cat:metaFields><cat:tags><cat:tag>T1w</cat:tag><cat:tag>qc-ok</cat:tag></cat:tags>";
        let tagged = format!("{head}<cat:entries>{}", entries.replacen("</cat:metaFields>", tags, 1));
        fs::write(scan.join("scan_4_catalog.xml"), &tagged).unwrap();
        for (i, n) in names.iter().take(3).enumerate() {
            fs::write(scan.join(n), vec![b'x'; 10 * (i + 1)]).unwrap();
        }
        fs::write(scan.join("not-listed.dcm"), b"secret").unwrap();
        fs::create_dir_all(d.path().join("P/arc001/E1/RESOURCES/NOTES")).unwrap();
        fs::write(
            d.path().join("P/arc001/E1.xml"),
            r#"<xnat:MRSession xmlns:xnat="http://nrg.wustl.edu/xnat" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ID="XNAT_E00001" project="P" label="E1"><xnat:scans><xnat:scan ID="4" type="T1" xsi:type="xnat:mrScanData"><xnat:quality>usable</xnat:quality><xnat:series_description> T1 MPRAGE </xnat:series_description><xnat:file label="DICOM" URI="SCANS/4/DICOM/scan_4_catalog.xml" format="DICOM" xsi:type="xnat:resourceCatalog"/></xnat:scan></xnat:scans></xnat:MRSession>"#,
        )
        .unwrap();
        let tree = Tree::new(d.path());
        (d, tree, names)
    }

    #[test]
    fn scans_resources_and_files_of_an_archived_experiment() {
        let (_d, tree, names) = site();
        let archive = Archive::new(&tree);
        let by_id = ExperimentRef::Id("XNAT_E00001".into());
        let by_label = ExperimentRef::InProject { project: "P".into(), subject: None, experiment: "E1".into() };
        let rows = scans(&archive, &by_id).unwrap();
        assert_eq!(rows, scans(&archive, &by_label).unwrap());
        assert_eq!((rows[0].id.as_str(), rows[0].kind.as_str(), rows[0].quality.as_str()), ("4", "T1", "usable"));
        assert_eq!((rows[0].series_description.as_str(), rows[0].xsi_type.as_str()), ("T1 MPRAGE", "xnat:mrScanData"));

        let scan = Item::Scan { experiment: by_id.clone(), scan: "4".into() };
        let res = resources(&archive, &scan, Side::Unspecified).unwrap();
        assert_eq!(res.len(), 1);
        assert_eq!((res[0].dir.label.as_str(), res[0].file_count, res[0].file_size), ("DICOM", 3, 60));
        assert_eq!(res[0].format, "DICOM", "from the document's resource element");
        let own = resources(&archive, &Item::Experiment(by_id.clone()), Side::Unspecified).unwrap();
        assert_eq!(own.iter().map(|r| r.dir.label.as_str()).collect::<Vec<_>>(), ["NOTES"], "not its scans'");
        assert_eq!(own[0].file_count, 0, "no catalog: nothing listed");

        let dicom = resource(&archive, &scan, "DICOM", Side::Unspecified).unwrap();
        let listed = files(&tree, &dicom).unwrap();
        assert_eq!(listed.iter().map(|f| f.name.clone()).collect::<Vec<_>>(), names[..3]);
        assert_eq!(listed[1].size, 20);
        assert_eq!((listed[0].tags.as_slice(), listed[1].tags.len()), (&["T1w".to_string(), "qc-ok".into()][..], 0));
        assert_eq!(listed[0].digest.len(), 32, "the catalog's digest: {:?}", listed[0]);
        assert_eq!(listed[0].path.as_str(), format!("P/arc001/E1/SCANS/4/DICOM/{}", names[0]));
        // Only what the catalog lists and the disk holds; never the catalog itself or anything outside.
        // A listed name that is a link on disk is no file of the resource, listed or fetched.
        let folder = tree.path(&dicom.folder);
        std::os::unix::fs::symlink(folder.join(&names[0]), folder.join(&names[4])).unwrap();
        assert_eq!(files(&tree, &dicom).unwrap().len(), 3);
        for name in ["not-listed.dcm", "scan_4_catalog.xml", names[4].as_str(), names[5].as_str(), "../../../E1.xml"] {
            assert!(matches!(file(&tree, &dicom, name), Err(Error::NotFound(_))), "{name}");
        }
        for (i, f) in listed.iter().enumerate() {
            assert_eq!(&file(&tree, &dicom, &names[i]).unwrap(), f, "one file = its row in the listing");
        }
        assert!(matches!(resource(&archive, &scan, "NIFTI", Side::Unspecified), Err(Error::NotFound(_))));
        // By URI, as the library component is called: a file in chunks; the resource by its ID too.
        let uri = "/archive/experiments/XNAT_E00001/scans/4/resources/DICOM";
        assert_eq!(scans_at(&tree, "/archive/projects/P/experiments/E1").unwrap(), rows);
        let id = resource_id(&resources_at(&tree, "/archive/experiments/XNAT_E00001/scans/4").unwrap()[0].dir);
        let by_id = format!("/archive/experiments/XNAT_E00001/scans/4/resources/{id}");
        assert_eq!(resource_at(&tree, &by_id).unwrap(), dicom);
        assert_eq!(read_file(&tree, uri, &names[2], 5, 100).unwrap(), vec![b'x'; 25]);
        assert_eq!(read_file(&tree, uri, &names[2], 30, 100).unwrap(), b"");
        assert!(matches!(read_file(&tree, uri, "not-listed.dcm", 0, 10), Err(Error::NotFound(_))));
        assert!(matches!(scans_at(&tree, uri), Err(Error::BadRequest(_))));
        assert!(matches!(scans(&archive, &ExperimentRef::Id("XNAT_E99".into())), Err(Error::NotFound(_))));
    }
}
