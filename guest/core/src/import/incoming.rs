//! A session's files as its catalogs list them and as they are on disk: the catalogs below a folder, a
//! catalog's entries, the files below a folder. Shared by the checks and the merge plan; reads only.

use crate::error::Result;
use crate::fs::ahead::WalkAhead;
use crate::fs::tree::{Kind, RelPath, Stamps, Tree, path_below};
use crate::model::catalog_stream::{EntryHead, StreamedCatalog};
use foldhash::HashMap;
use foldhash::fast::RandomState;
use hashbrown::HashTable;
use std::cell::RefCell;
use std::hash::BuildHasher;
use std::rc::Rc;

/// A catalog entry as the checks and the merge plan read it: its path relative to the catalog folder (`./`
/// removed), its SOP instance UID, and whether it is a `dcmEntry`.
pub type EntryRef = (String, Option<String>, bool);

/// A catalog's `file_count` and `file_size`: how many of its entries name a regular file, and their bytes.
pub type CatalogStats = (u64, u64);

/// Every catalog file (by name or content) directly in a resource folder or below it.
pub fn find_catalogs(tree: &Tree, folder: &RelPath) -> Result<Vec<RelPath>> {
    find_catalogs_listed(folder, &mut |f| listed_for_catalogs(tree, f))
}

/// A folder's entries, by name with what each is; `None` when it is not a folder.
pub(crate) type Entries = Option<Vec<(String, Kind)>>;

/// [`find_catalogs`], each folder's entries from `listing` (`None`: not a folder); only its folders and
/// catalogs are looked at.
pub(crate) fn find_catalogs_listed(
    folder: &RelPath,
    listing: &mut dyn FnMut(&RelPath) -> Result<Entries>,
) -> Result<Vec<RelPath>> {
    let mut out = Vec::new();
    let Some(entries) = listing(folder)? else { return Ok(out) };
    for (name, kind) in entries.into_iter().filter(|(name, kind)| leads_to_catalogs(name, kind)) {
        let p = folder.join(&name)?;
        match kind {
            Kind::Dir => out.extend(find_catalogs_listed(&p, listing)?),
            _ => out.push(p),
        }
    }
    Ok(out)
}

/// What [`find_catalogs`] looks at in a folder: its folders and its catalogs.
pub(crate) fn leads_to_catalogs(name: &str, kind: &Kind) -> bool {
    match kind {
        Kind::Dir => true,
        Kind::File { .. } => name.ends_with("_catalog.xml"),
        _ => false,
    }
}

/// A folder's folders and catalogs, from one listing; `None` when it is not a folder.
pub(crate) fn listed_for_catalogs(tree: &Tree, folder: &RelPath) -> Result<Entries> {
    if !tree.is_dir(folder)? {
        return Ok(None);
    }
    Ok(Some(tree.list(folder)?.into_iter().filter(|(name, kind)| leads_to_catalogs(name, kind)).collect()))
}

/// The entries of the catalog at `path`, in document order, read as the file streams (no tree is built);
/// `None` when the file is not a readable catalog.
pub fn read_catalog_entries(tree: &Tree, path: &RelPath) -> Result<Option<Vec<EntryRef>>> {
    Ok(read_catalog(tree, path)?.map(|read| read.entries))
}

/// A catalog as one streamed reading saw it: its frame and the places of its entries (what a later write of
/// it needs, and which that write checks against the file), and its entries.
#[derive(Debug, Clone)]
pub struct CatalogRead {
    pub streamed: StreamedCatalog,
    pub entries: Vec<EntryRef>,
}

/// [`read_catalog_entries`], keeping the reading.
pub fn read_catalog(tree: &Tree, path: &RelPath) -> Result<Option<CatalogRead>> {
    let file = tree.open(path)?;
    let mut entries = Vec::new();
    let read = StreamedCatalog::read(file, &mut |e| entries.push(entry_ref(e)));
    Ok(read.ok().map(|streamed| CatalogRead { streamed, entries }))
}

/// An entry as the checks and the merge read it ([`EntryRef`]).
pub fn entry_ref(e: &EntryHead) -> EntryRef {
    let uri = e.attr("URI").unwrap_or("").trim_start_matches("./").to_string();
    (uri, e.attr("UID").filter(|u| !u.is_empty()).map(str::to_string), e.is_dicom())
}

/// Everything below `folder` but folders, as paths relative to it with what each is (one listing per
/// folder: a regular file is stat-ed once, nothing is opened), taken from `ahead` where the host walked
/// `folder` ahead ([`Tree::walk_ahead`]).
pub fn entries_below(
    tree: &Tree,
    ahead: &mut WalkAhead,
    folder: &RelPath,
    prefix: &str,
    out: &mut Vec<(String, Kind)>,
) -> Result<()> {
    if !tree.is_dir(folder)? {
        return Ok(());
    }
    for (name, kind, _) in tree.list_ahead(ahead, folder, Stamps::None)? {
        let rel = path_below(prefix, &name);
        match kind {
            Kind::Dir => entries_below(tree, ahead, &folder.join(&name)?, &rel, out)?,
            _ => out.push((rel, kind)),
        }
    }
    Ok(())
}

/// Everything in an incoming session folder but folders, from one listing of each of its folders: the
/// validation checks and the plan read this instead of listing or stat-ing again.
#[derive(Debug, Clone)]
pub struct SessionFiles {
    dir: RelPath,
    /// Paths relative to the session folder, with what each is.
    entries: Vec<(String, Kind)>,
    /// Indices into `entries`, ordered by path: what lies below one folder is one run of them.
    by_path: Vec<u32>,
    /// Indices into `entries`, by the hash of the path: a merge looks up each of its files (paths of DICOM
    /// files share long prefixes, which a search in `by_path` compares again and again).
    by_hash: HashTable<u32>,
    hasher: RandomState,
    /// The catalogs' entries, read once for every check and the plan ([`SessionFiles::catalog_entries`]).
    catalogs: RefCell<HashMap<String, Rc<Option<Vec<EntryRef>>>>>,
    /// What lies below a folder of the session, made once for every check ([`SessionFiles::below`]).
    below: RefCell<HashMap<RelPath, Rc<FilesBelow>>>,
}

impl SessionFiles {
    pub fn list(tree: &Tree, dir: &RelPath) -> Result<SessionFiles> {
        SessionFiles::list_ahead(tree, &mut WalkAhead::default(), dir)
    }

    /// [`SessionFiles::list`], taken from `ahead` where the host walked `dir` ahead ([`Tree::walk_ahead`]).
    pub fn list_ahead(tree: &Tree, ahead: &mut WalkAhead, dir: &RelPath) -> Result<SessionFiles> {
        let mut entries = Vec::new();
        entries_below(tree, ahead, dir, "", &mut entries)?;
        let mut by_path: Vec<u32> = (0..entries.len() as u32).collect();
        by_path.sort_unstable_by(|&a, &b| entries[a as usize].0.cmp(&entries[b as usize].0));
        let hasher = RandomState::default();
        let mut by_hash = HashTable::with_capacity(entries.len());
        for (i, (rel, _)) in entries.iter().enumerate() {
            let hash = |&i: &u32| hasher.hash_one(entries[i as usize].0.as_str());
            by_hash.insert_unique(hasher.hash_one(rel.as_str()), i as u32, hash);
        }
        Ok(SessionFiles {
            dir: dir.clone(),
            entries,
            by_path,
            by_hash,
            hasher,
            catalogs: RefCell::default(),
            below: RefCell::default(),
        })
    }

    /// [`read_catalog_entries`] of a catalog in the session, read the first time it is asked for.
    pub fn catalog_entries(&self, tree: &Tree, path: &RelPath) -> Result<Rc<Option<Vec<EntryRef>>>> {
        if let Some(known) = self.catalogs.borrow().get(path.as_str()) {
            return Ok(known.clone());
        }
        let read = Rc::new(read_catalog_entries(tree, path)?);
        self.catalogs.borrow_mut().insert(path.as_str().to_string(), read.clone());
        Ok(read)
    }

    /// Catalogs read before the listing was made (while the host listed), as [`SessionFiles::catalog_entries`]
    /// reads them: kept for those the listing shows as catalogs, as if read now (the session is locked).
    pub fn read_already(&self, catalogs: Vec<(RelPath, Option<Vec<EntryRef>>)>) {
        for (path, read) in catalogs {
            let is_catalog = path.strip_prefix(&self.dir).and_then(|rel| self.kind(rel));
            if matches!(is_catalog, Some(Kind::File { .. })) && path.name().ends_with("_catalog.xml") {
                self.catalogs.borrow_mut().insert(path.as_str().to_string(), Rc::new(read));
            }
        }
    }

    /// What the listing found at `rel` (relative to the session folder); `None` for a folder or nothing.
    pub fn kind(&self, rel: &str) -> Option<Kind> {
        let found = self.by_hash.find(self.hasher.hash_one(rel), |&i| self.entries[i as usize].0 == rel)?;
        Some(self.entries[*found as usize].1)
    }

    /// The session folder.
    pub fn dir(&self) -> &RelPath {
        &self.dir
    }

    /// Every path (relative to the session folder), folders aside.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(rel, _)| rel.as_str())
    }

    /// The catalogs (`*_catalog.xml` regular files), as paths in the tree.
    pub fn catalogs(&self) -> Result<Vec<RelPath>> {
        self.entries
            .iter()
            .filter(|(rel, kind)| matches!(kind, Kind::File { .. }) && rel.ends_with("_catalog.xml"))
            .map(|(rel, _)| self.dir.join_path(rel))
            .collect()
    }

    /// What lies below `folder` (a path in the tree): from this listing when it is inside the session
    /// folder, else from a listing of its own.
    pub fn below(&self, tree: &Tree, folder: &RelPath) -> Result<Rc<FilesBelow>> {
        if let Some(known) = self.below.borrow().get(folder) {
            return Ok(known.clone());
        }
        let below = Rc::new(self.below_once(tree, folder)?);
        self.below.borrow_mut().insert(folder.clone(), below.clone());
        Ok(below)
    }

    fn below_once(&self, tree: &Tree, folder: &RelPath) -> Result<FilesBelow> {
        let Some(inside) = folder.strip_prefix(&self.dir) else { return FilesBelow::list(tree, folder) };
        let prefix = if inside.is_empty() { String::new() } else { format!("{inside}/") };
        // The paths that start with the prefix are one run of the sorted ones (a session of many scans is
        // not filtered whole once per catalog).
        let path = |i: &u32| self.entries[*i as usize].0.as_str();
        let first = self.by_path.partition_point(|i| path(i) < prefix.as_str());
        let entries = self.by_path[first..]
            .iter()
            .map_while(|i| {
                let (rel, kind) = &self.entries[*i as usize];
                rel.strip_prefix(prefix.as_str()).map(|r| (r.to_string(), *kind))
            })
            .collect();
        Ok(FilesBelow::new(folder, entries))
    }
}

/// What lies below a catalog's folder (folders aside) from one listing of each folder, for checking a
/// catalog's entries without a look at each entry's file.
#[derive(Debug, Clone)]
pub struct FilesBelow {
    folder: RelPath,
    /// Path relative to the folder → what it is.
    entries: HashMap<String, Kind>,
}

impl FilesBelow {
    pub fn list(tree: &Tree, folder: &RelPath) -> Result<FilesBelow> {
        FilesBelow::list_ahead(tree, &mut WalkAhead::default(), folder)
    }

    /// [`FilesBelow::list`], taken from `ahead` where the host walked `folder` ahead ([`Tree::walk_ahead`]).
    pub fn list_ahead(tree: &Tree, ahead: &mut WalkAhead, folder: &RelPath) -> Result<FilesBelow> {
        let mut found = Vec::new();
        entries_below(tree, ahead, folder, "", &mut found)?;
        Ok(FilesBelow::new(folder, found))
    }

    fn new(folder: &RelPath, entries: Vec<(String, Kind)>) -> FilesBelow {
        FilesBelow { folder: folder.clone(), entries: entries.into_iter().collect() }
    }

    /// Every path below the folder (relative to it), files or not.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// The size of the regular file an entry's URI (relative to the folder, `./` removed) names; `None` when
    /// it names none or leaves the folder. A file the listing did not show is looked at on its own (one
    /// behind a linked folder, which the listing does not enter).
    pub fn file_len(&self, tree: &Tree, uri: &str) -> Result<Option<u64>> {
        // The listing holds well-formed paths below the folder only, so a URI found in it needs no checking.
        match self.entries.get(uri) {
            Some(Kind::File { len }) => return Ok(Some(*len)),
            Some(_) => return Ok(None),
            None => {}
        }
        let Ok(path) = self.folder.join_path(uri) else { return Ok(None) };
        Ok(match tree.kind(&path)? {
            Some(Kind::File { len }) => Some(len),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_below_answer_from_one_listing_and_look_at_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let res = dir.path().join("R");
        std::fs::create_dir_all(res.join("sub")).unwrap();
        std::fs::create_dir_all(dir.path().join("elsewhere")).unwrap();
        std::fs::write(res.join("a.dcm"), b"abc").unwrap();
        std::fs::write(res.join("sub/b.dcm"), b"bb").unwrap();
        std::fs::write(dir.path().join("elsewhere/c.dcm"), b"c").unwrap();
        std::fs::write(dir.path().join("outside.dcm"), b"o").unwrap();
        std::os::unix::fs::symlink("../elsewhere", res.join("linked")).unwrap();
        std::os::unix::fs::symlink("a.dcm", res.join("alias.dcm")).unwrap();
        let tree = Tree::new(dir.path());
        let files = FilesBelow::list(&tree, &RelPath::new("R").unwrap()).unwrap();
        assert_eq!(files.file_len(&tree, "a.dcm").unwrap(), Some(3));
        assert_eq!(files.file_len(&tree, "sub/b.dcm").unwrap(), Some(2));
        // Behind a linked folder: not in the listing, found by its own look (as before the listing).
        assert_eq!(files.file_len(&tree, "linked/c.dcm").unwrap(), Some(1));
        // A link is not a regular file; nothing missing, outside or malformed is one.
        for uri in ["alias.dcm", "missing.dcm", "sub", "../outside.dcm", "sub//b.dcm", "/etc/passwd"] {
            assert_eq!(files.file_len(&tree, uri).unwrap(), None, "{uri}");
        }
    }

    #[test]
    fn catalogs_read_before_the_listing_count_only_where_it_shows_a_catalog() {
        let dir = tempfile::tempdir().unwrap();
        let scan = dir.path().join("S/SCANS/1/DICOM");
        std::fs::create_dir_all(&scan).unwrap();
        std::fs::write(scan.join("scan_1_catalog.xml"), b"<c/>").unwrap();
        std::fs::write(scan.join("notes.xml"), b"<c/>").unwrap();
        std::fs::create_dir_all(dir.path().join("S/elsewhere")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("S/elsewhere"), dir.path().join("S/SCANS/2")).unwrap();
        let tree = Tree::new(dir.path());
        let files = SessionFiles::list(&tree, &RelPath::new("S").unwrap()).unwrap();
        let early = |uri: &str| -> Option<Vec<EntryRef>> { Some(vec![(uri.to_string(), None, false)]) };
        let path = |p: &str| RelPath::new(p).unwrap();
        files.read_already(
            [
                "S/SCANS/1/DICOM/scan_1_catalog.xml",
                "S/SCANS/1/DICOM/notes.xml",
                "S/SCANS/2/scan_2_catalog.xml",
                "T/x_catalog.xml",
            ]
            .iter()
            .map(|p| (path(p), early(p)))
            .collect(),
        );
        let known = |p: &str| files.catalogs.borrow().get(p).map(|r| r.is_some());
        assert_eq!(known("S/SCANS/1/DICOM/scan_1_catalog.xml"), Some(true), "a catalog the listing shows");
        assert_eq!(known("S/SCANS/1/DICOM/notes.xml"), None, "not a catalog");
        assert_eq!(known("S/SCANS/2/scan_2_catalog.xml"), None, "behind a link the listing does not enter");
        assert_eq!(known("T/x_catalog.xml"), None, "outside the session");
        let read = files.catalog_entries(&tree, &path("S/SCANS/1/DICOM/scan_1_catalog.xml")).unwrap();
        assert_eq!(read.as_ref().as_ref().unwrap()[0].0, "S/SCANS/1/DICOM/scan_1_catalog.xml", "not read again");
    }

    #[test]
    fn one_listing_of_a_session_serves_its_catalogs_and_their_folders() {
        let dir = tempfile::tempdir().unwrap();
        let scan = dir.path().join("S/SCANS/1/DICOM");
        std::fs::create_dir_all(&scan).unwrap();
        std::fs::write(scan.join("scan_1_catalog.xml"), b"<c/>").unwrap();
        std::fs::write(scan.join("x.dcm"), b"12345").unwrap();
        std::fs::create_dir_all(dir.path().join("S/SCANS/1/DICOM_catalog.xml")).unwrap(); // a folder, not a catalog
        std::fs::create_dir_all(dir.path().join("T")).unwrap();
        std::fs::write(dir.path().join("T/t.dcm"), b"t").unwrap();
        let tree = Tree::new(dir.path());
        let files = SessionFiles::list(&tree, &RelPath::new("S").unwrap()).unwrap();
        let catalogs: Vec<String> = files.catalogs().unwrap().iter().map(|c| c.as_str().to_string()).collect();
        assert_eq!(catalogs, ["S/SCANS/1/DICOM/scan_1_catalog.xml"]);
        let below = files.below(&tree, &RelPath::new("S/SCANS/1/DICOM").unwrap()).unwrap();
        let mut paths: Vec<&str> = below.paths().collect();
        paths.sort();
        assert_eq!(paths, ["scan_1_catalog.xml", "x.dcm"]);
        assert_eq!(below.file_len(&tree, "x.dcm").unwrap(), Some(5));
        // Folders whose names extend one another are told apart (`1`, `1.5`, `10`).
        for (scan, file) in [("1.5", "a.dcm"), ("10", "b.dcm")] {
            let d = dir.path().join("S/SCANS").join(scan).join("DICOM");
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(file), b"x").unwrap();
        }
        let files = SessionFiles::list(&tree, &RelPath::new("S").unwrap()).unwrap();
        for (folder, want) in [
            ("S/SCANS/1", vec!["DICOM/scan_1_catalog.xml", "DICOM/x.dcm"]),
            ("S/SCANS/1.5", vec!["DICOM/a.dcm"]),
            ("S/SCANS/10/DICOM", vec!["b.dcm"]),
        ] {
            let below = files.below(&tree, &RelPath::new(folder).unwrap()).unwrap();
            let mut paths: Vec<&str> = below.paths().collect();
            paths.sort();
            assert_eq!(paths, want, "{folder}");
        }
        // A folder outside the session is listed on its own.
        let outside = files.below(&tree, &RelPath::new("T").unwrap()).unwrap();
        assert_eq!(outside.file_len(&tree, "t.dcm").unwrap(), Some(1));
    }
}
