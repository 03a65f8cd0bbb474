//! Catalog refresh (`POST /data/services/refresh/catalog`): bring each resource's catalog back in line
//! with the files in its folder, as XNAT 1.8.3+ does (`catalog-refresh.md` §3.1–3.2), with D4–D9:
//!
//! * one walk of the folder (symbolic links never followed but reported; hidden files included; XNAT's
//!   `.~lock-*` files and our own temporary files left out) matched against the catalog's entries by
//!   their relative path, `./` and percent-encoding normalised (D9);
//! * append, checksum, delete and populateStats as XNAT does them; a digest that no longer matches is
//!   replaced and reported (D5); DICOM entries keep their UID and instance number and are rewritten only
//!   when something really changed (D6);
//! * a second catalog in the folder skips the resource and says so (D8); a catalog that cannot be
//!   parsed is reported and left byte-identical;
//! * the catalog is written atomically, only if something changed and only if nobody else changed it
//!   since it was read (D7), under a `.~lock-<catalog>.refresh` lock file created exclusively (D13);
//! * `verify` and `dry-run` compute the same report and write nothing;
//! * opt-in, files unchanged since the last hashing refresh are not hashed again (`unchanged.rs`).

pub mod resource;
mod unchanged;

use crate::error::{Error, Result};
use crate::fs::lock::Lock;
use crate::fs::tree::{FileStamp, Kind, RelPath, TEMP_PREFIX, Tree};
use crate::model::audit::{Stamp, append_change_set};
use crate::model::catalog::{Catalog, CatalogKind, EntryLoc};
pub use crate::model::digest::Algorithm;
pub use crate::model::digest::Hasher;
#[cfg(target_os = "wasi")]
pub use crate::model::digest::HostDigests;
use crate::model::digest::{BATCH_BYTES, BATCH_FILES};
use crate::progress::Progress;
use crate::site::document;
use crate::site::layout::{Archive, ResourceDir};
use crate::site::uri::ResourceUri;
use crate::xml::{Element, Node};
use percent_encoding::percent_decode_str;
// The index holds one key per catalog entry (up to millions): foldhash, seeded per map, instead of SipHash.
use foldhash::HashMap;

/// The four operations. All false means XNAT's default: all four.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    pub append: bool,
    pub checksum: bool,
    pub delete: bool,
    pub populate_stats: bool,
}

impl Options {
    pub const ALL: Options = Options { append: true, checksum: true, delete: true, populate_stats: true };

    /// XNAT's names of the operations (`options=append,checksum,...`).
    pub const NAMES: [&'static str; 4] = ["append", "checksum", "delete", "populateStats"];

    fn or_default(self) -> Options {
        if self == Options::default() { Options::ALL } else { self }
    }

    /// Switches on the operation XNAT calls `name`; `false` for a name XNAT does not have.
    pub fn set(&mut self, name: &str) -> bool {
        let flag = match name {
            "append" => &mut self.append,
            "checksum" => &mut self.checksum,
            "delete" => &mut self.delete,
            "populateStats" => &mut self.populate_stats,
            _ => return false,
        };
        *flag = true;
        true
    }
}

/// What a refresh may do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    /// Write what the options change.
    #[default]
    Apply,
    /// Report what the options would change; write nothing.
    DryRun,
    /// Hash everything and compare catalog and disk (all four operations); write nothing.
    Verify,
}

/// One refresh call.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub resources: Vec<String>,
    pub options: Options,
    pub algorithm: Algorithm,
    pub mode: Mode,
    pub user: Option<String>,
    pub event_id: Option<i64>,
    /// With `checksum`: do not hash files the unchanged-data stamp shows unchanged, and keep the stamp
    /// (`unchanged.rs`). Never in `verify`, which reads every byte. Off by default.
    pub trust_unchanged: bool,
}

/// What happened to one resource.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Outcome {
    Written,
    #[default]
    Unchanged,
    NotWritten,
    Skipped(String),
    Failed(Error),
}

/// A stored digest that does not match its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub path: String,
    pub stored: String,
    pub actual: String,
}

/// A file that was not cataloged, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
}

/// The report for one resource. Paths are relative to the catalog's folder; `catalog` to the archive.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResourceReport {
    pub resource: String,
    pub catalog: String,
    pub outcome: Outcome,
    pub catalog_created: bool,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub modified: Vec<String>,
    pub mismatches: Vec<Mismatch>,
    pub skipped: Vec<Skipped>,
    pub file_count: u64,
    pub file_size: u64,
    pub stats_written: bool,
    /// Files not hashed because the unchanged-data stamp shows them unchanged (`trust_unchanged`).
    pub trusted: u64,
}

/// Refreshes every resource the request names, one after another. A malformed or unknown URI fails the
/// whole call before anything is touched; a resource that cannot be refreshed gets a `Failed` report and
/// the others go on.
/// Files are hashed by `hasher` (the host's digests, when the adapter made it with them).
pub fn refresh(
    archive: &Tree,
    req: &Request,
    hasher: &mut Hasher,
    progress: &mut dyn Progress,
) -> Result<Vec<ResourceReport>> {
    if req.resources.is_empty() {
        return Err(Error::BadRequest("no resource given; name at least one resource URI".into()));
    }
    let site = Archive::new(archive);
    let mut dirs = Vec::new();
    for uri in &req.resources {
        dirs.extend(site.resources(&ResourceUri::parse(uri)?)?);
    }
    let stamp = Stamp::now(req.event_id, req.user.clone());
    let options = match req.mode {
        Mode::Verify => Options::ALL,
        _ => req.options.or_default(),
    };
    let mut reports = Vec::with_capacity(dirs.len());
    for dir in &dirs {
        let trusting = req.trust_unchanged && options.checksum && req.mode != Mode::Verify;
        let mut job = Job {
            tree: archive,
            dir,
            options,
            req,
            stamp: &stamp,
            hasher: &mut *hasher,
            progress: &mut *progress,
            unchanged: trusting.then(Trust::default),
        };
        reports.push(job.run());
    }
    Ok(reports)
}

struct Job<'a> {
    tree: &'a Tree,
    dir: &'a ResourceDir,
    options: Options,
    req: &'a Request,
    stamp: &'a Stamp,
    hasher: &'a mut Hasher,
    progress: &'a mut dyn Progress,
    /// With `trust_unchanged`: the stamp, the files' stamps as listed, and each file's digest now stored.
    unchanged: Option<Trust>,
}

#[derive(Default)]
struct Trust {
    stamps: unchanged::Stamps,
    listed: HashMap<String, FileStamp>,
    digests: Vec<(String, String)>,
}

/// The entry an index key maps to, and whether the walk saw its file.
struct Indexed {
    loc: EntryLoc,
    seen: Seen,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Seen {
    No,
    File(u64),
    /// A symbolic link or something else that is neither updated nor removed.
    Untouchable,
}

impl Job<'_> {
    fn run(&mut self) -> ResourceReport {
        let mut report = ResourceReport { resource: self.dir.uri.clone(), ..Default::default() };
        if let Err(e) = self.refresh(&mut report) {
            // A held lock is a failure of this resource like any other: it was not refreshed, and the
            // caller's exit code or status says so.
            report.outcome = Outcome::Failed(e);
        }
        report
    }

    fn refresh(&mut self, report: &mut ResourceReport) -> Result<()> {
        let folder = &self.dir.folder;
        // 1. The catalog: exactly one at the top of the folder, or none (then a new one).
        let mut found = Vec::new();
        for (name, kind) in self.tree.list(folder)? {
            if matches!(kind, Kind::File { .. }) && self.is_catalog(&folder.join(&name)?)? {
                found.push(name);
            } else if !matches!(kind, Kind::File { .. } | Kind::NotUtf8) && name.ends_with("_catalog.xml") {
                // The catalog's name on a symbolic link, a FIFO or a folder: the catalog is not readable as a
                // file. Making a new one beside it would leave the resource with two catalogs and lose what
                // the unreadable one holds (DICOM UIDs), so the resource fails and nothing is written.
                return Err(Error::Corrupt(format!(
                    "catalog {folder}/{name} is not a regular file ({}); it was left untouched and no other \
                     catalog was made — replace it by the catalog file itself",
                    match kind {
                        Kind::Symlink => "a symbolic link",
                        Kind::Dir => "a folder",
                        _ => "a FIFO, socket or device",
                    }
                )));
            }
        }
        if found.len() > 1 {
            report.catalog = folder.join(&found[0])?.as_str().to_string();
            report.outcome = Outcome::Skipped(format!(
                "the folder holds more than one catalog ({}); XNAT would skip it silently — keep one and move the others out",
                found.join(", ")
            ));
            return Ok(());
        }
        let writing = self.req.mode == Mode::Apply;
        let (catalog_path, original, mut catalog) = match found.pop() {
            Some(name) => {
                let path = folder.join(&name)?;
                let bytes = self.tree.read(&path)?;
                let cat = Catalog::parse(&bytes).map_err(|e| {
                    Error::Corrupt(format!("catalog {path} cannot be read ({e}); it was left untouched — restore it from a backup or fix it by hand"))
                })?;
                (path, Some(bytes), cat)
            }
            None => {
                let path = folder.join(&format!("{}_catalog.xml", self.dir.catalog_id))?;
                report.catalog_created = true;
                (path, None, Catalog::new(CatalogKind::Plain, &self.dir.catalog_id))
            }
        };
        report.catalog = catalog_path.as_str().to_string();

        // 2. The refresh lock (only when we may write).
        let lock = if writing { Some(self.lock(&catalog_path)?) } else { None };
        let result = self.refresh_locked(report, &catalog_path, original.as_deref(), &mut catalog);
        if let Some(lock) = lock {
            lock.release()?;
        }
        result
    }

    fn refresh_locked(
        &mut self,
        report: &mut ResourceReport,
        catalog_path: &RelPath,
        original: Option<&[u8]>,
        catalog: &mut Catalog,
    ) -> Result<()> {
        // 3. Index the entries by the relative path they stand for; read the unchanged-data stamp if trusted.
        let mut index = index_entries(catalog, &self.dir.folder, report);
        if let Some(trust) = &mut self.unchanged {
            trust.stamps = unchanged::Stamps::read(self.tree, catalog_path)?;
        }
        // 4. Walk the folder.
        let mut files = Vec::new();
        if let Some(second) = self.walk(&self.dir.folder, "", catalog_path, &mut files, &mut report.skipped)? {
            report.outcome = Outcome::Skipped(format!(
                "a second catalog lies in the folder ({second}); nothing was changed — XNAT would skip this resource silently; move the extra catalog out"
            ));
            report.skipped.clear();
            return Ok(());
        }
        mark_seen(&mut index, &files, report);
        // 5. Update the entries whose files exist; append the others.
        let (modified, new_entries) = self.update_entries(catalog, &index, &files, report)?;
        // 6. Entries whose files are gone, and the new ones in place.
        let gone = self.settle(catalog, &index, new_entries, report);
        // 7. Write what changed, then the stamp of what was hashed.
        let changed = Changes { modified, gone };
        self.write(report, catalog_path, original, catalog, changed)?;
        self.write_stamp(report, catalog_path)
    }

    /// With `trust_unchanged`, in apply mode: records what the files look like now, with their digests, unless
    /// every file was trusted from the stamp as it is.
    fn write_stamp(&mut self, report: &ResourceReport, catalog_path: &RelPath) -> Result<()> {
        let Some(trust) = &self.unchanged else { return Ok(()) };
        if self.req.mode != Mode::Apply
            || (report.trusted as usize == trust.digests.len() && trust.stamps.len() == trust.digests.len())
        {
            return Ok(());
        }
        let now_ns = self.stamp.time.timestamp_nanos_opt().and_then(|t| u64::try_from(t).ok()).unwrap_or(0);
        let files = trust
            .digests
            .iter()
            .filter_map(|(rel, digest)| Some((rel.as_str(), trust.listed.get(rel)?, digest.as_str())));
        unchanged::Stamps::write(self.tree, catalog_path, now_ns, files)
    }

    /// Updates the entries of the files found and makes entries for the files the catalog lacks (with
    /// their sizes, added in [`Job::settle`]). Returns how many entries changed, and the new ones. Files are
    /// hashed in batches (one call to the host's digests each, when it offers them).
    fn update_entries(
        &mut self,
        catalog: &mut Catalog,
        index: &HashMap<String, Indexed>,
        files: &[(String, Kind)],
        report: &mut ResourceReport,
    ) -> Result<(usize, Vec<(Element, u64)>)> {
        let to_hash = if self.options.checksum {
            files.iter().filter(|(_, k)| matches!(k, Kind::File { .. })).count() as u64
        } else {
            0
        };
        self.progress.begin(&self.dir.uri, to_hash);
        let mut modified = 0usize;
        let mut new_entries = Vec::new();
        let mut rest = files;
        while !rest.is_empty() {
            let batch = &rest[..batch_len(rest)];
            rest = &rest[batch.len()..];
            Lock::renew_due()?;
            let digests = self.digests(catalog, index, batch, report)?;
            for ((rel, kind), digest) in batch.iter().zip(digests) {
                let Kind::File { len } = kind else { continue };
                if let Some(ix) = index.get(rel) {
                    if self.update_entry(catalog, &ix.loc, rel, *len, digest) {
                        report.modified.push(rel.clone());
                        modified += 1;
                    }
                } else if self.options.append {
                    new_entries.push((self.new_entry(catalog, rel, digest), *len));
                    report.added.push(rel.clone());
                }
            }
        }
        self.progress.end();
        Ok((modified, new_entries))
    }

    /// The digest to store for each file of a batch (`None` for what is not hashed): trusted from the
    /// stamp, or hashed, compared with the stored digest and reported when they differ.
    fn digests(
        &mut self,
        catalog: &Catalog,
        index: &HashMap<String, Indexed>,
        batch: &[(String, Kind)],
        report: &mut ResourceReport,
    ) -> Result<Vec<Option<String>>> {
        let mut out = vec![None; batch.len()];
        if !self.options.checksum {
            return Ok(out);
        }
        // What each file needs: hashing with which algorithm, and its stored digest (to compare).
        let mut to_hash = Vec::new();
        let mut hashed = Vec::new();
        for (i, (rel, kind)) in batch.iter().enumerate() {
            if !matches!(kind, Kind::File { .. }) {
                continue;
            }
            let entry = match index.get(rel) {
                Some(ix) => Some(catalog.entry(&ix.loc)),
                None if self.options.append => None,
                None => continue,
            };
            let digest = entry.and_then(|e| e.attr("digest")).map(str::trim).filter(|d| !d.is_empty());
            if let (Some(trust), Some(d)) = (&mut self.unchanged, digest)
                && trust.stamps.unchanged(rel, trust.listed.get(rel), d)
            {
                trust.digests.push((rel.to_owned(), d.to_owned()));
                report.trusted += 1;
                self.progress.advance(1);
                out[i] = Some(d.to_owned());
                continue;
            }
            let alg = digest.and_then(Algorithm::of_stored).unwrap_or(self.req.algorithm);
            to_hash.push((self.dir.folder.join_path(rel)?, alg));
            hashed.push((i, digest.map(str::to_owned)));
        }
        let actual = self.hasher.files(self.tree, &to_hash)?;
        for ((i, stored), actual) in hashed.into_iter().zip(actual) {
            let rel = &batch[i].0;
            self.progress.advance(1);
            let kept = match stored {
                // A stored digest that only differs in case is kept as it is.
                Some(s) if s.eq_ignore_ascii_case(&actual) => s,
                Some(s) => {
                    report.mismatches.push(Mismatch { path: rel.clone(), stored: s, actual: actual.clone() });
                    actual
                }
                None => actual,
            };
            if let Some(trust) = &mut self.unchanged {
                trust.digests.push((rel.to_owned(), kept.clone()));
            }
            out[i] = Some(kept);
        }
        Ok(out)
    }

    /// Brings one entry in line with its file (`rel`, `len` bytes, `digest` when checksummed); whether it
    /// changed.
    fn update_entry(
        &mut self,
        catalog: &mut Catalog,
        loc: &EntryLoc,
        rel: &str,
        len: u64,
        digest: Option<String>,
    ) -> bool {
        let is_dicom = catalog.entry(loc).is_dicom();
        let name = rel.rsplit('/').next().unwrap_or(rel);
        let stamp = &self.stamp;
        let mut e = catalog.entry_mut(loc);
        let mut changed = false;
        if let Some(user) = &stamp.user {
            changed |= e.fill_attr("createdBy", user);
        }
        changed |= e.fill_attr("createdTime", stamp.entry_time());
        changed |= e.fill_attr("createdEventId", stamp.event());
        changed |= e.set_attr("ID", rel);
        changed |= e.set_attr("cachePath", rel);
        changed |= e.set_attr("name", name);
        changed |= e.set_meta_field("SIZE", &len.to_string());
        if is_dicom {
            changed |= e.set_attr("format", "DICOM");
        }
        if let Some(d) = digest {
            changed |= e.set_attr("digest", &d);
        }
        if changed {
            if let Some(user) = &stamp.user {
                e.set_attr("modifiedBy", user);
            }
            e.set_attr("modifiedTime", stamp.entry_time());
            e.set_attr("modifiedEventId", stamp.event());
        }
        changed
    }

    /// A new entry for a file the catalog lacks (its size is added in [`Job::settle`]).
    fn new_entry(&mut self, catalog: &Catalog, rel: &str, digest: Option<String>) -> Element {
        let mut e = catalog.new_entry(rel);
        e.attrs.push(("ID".into(), rel.to_owned()));
        e.attrs.push(("cachePath".into(), rel.to_owned()));
        e.attrs.push(("name".into(), rel.rsplit('/').next().unwrap_or(rel).to_owned()));
        e.attrs.push(("createdTime".into(), self.stamp.entry_time().to_owned()));
        e.attrs.push(("createdEventId".into(), self.stamp.event().to_owned()));
        if let Some(user) = &self.stamp.user {
            e.attrs.push(("createdBy".into(), user.clone()));
        }
        if let Some(d) = digest {
            e.attrs.push(("digest".into(), d));
        }
        e
    }

    /// Removes the entries whose files are gone (with `delete`), appends the new ones with their sizes,
    /// and counts the resource's files. Returns how many entries were removed.
    fn settle(
        &self,
        catalog: &mut Catalog,
        index: &HashMap<String, Indexed>,
        new_entries: Vec<(Element, u64)>,
        report: &mut ResourceReport,
    ) -> usize {
        let (mut gone, mut count, mut size) = (Vec::new(), 0u64, 0u64);
        let mut by_loc: Vec<(&String, &Indexed)> = index.iter().collect();
        by_loc.sort_by(|a, b| a.1.loc.cmp(&b.1.loc));
        for (key, ix) in by_loc {
            match ix.seen {
                Seen::File(len) => {
                    count += 1;
                    size += len;
                }
                Seen::Untouchable => {}
                Seen::No if self.options.delete => {
                    gone.push(ix.loc.clone());
                    report.removed.push(key.clone());
                }
                Seen::No => {}
            }
        }
        catalog.remove_entries(&gone);
        for (mut e, len) in new_entries {
            e.children.push(Node::Element(size_meta_fields(catalog, len)));
            catalog.push_entry(e);
            count += 1;
            size += len;
        }
        report.file_count = count;
        report.file_size = size;
        gone.len()
    }

    /// Writes the catalog (if it changed and the mode writes) unless someone else changed it meanwhile, and
    /// the owner's statistics; sets the report's outcome.
    fn write(
        &mut self,
        report: &mut ResourceReport,
        catalog_path: &RelPath,
        original: Option<&[u8]>,
        catalog: &mut Catalog,
        changes: Changes,
    ) -> Result<()> {
        let catalog_changed =
            report.catalog_created || !report.added.is_empty() || changes.modified > 0 || changes.gone > 0;
        let writing = self.req.mode == Mode::Apply;
        let mut wrote = false;
        if catalog_changed && writing {
            catalog.set_meta_field("PROJECT", &self.dir.project);
            if let Some(cs) = self.stamp.change_set(report.added.len(), changes.modified, changes.gone) {
                let audit = append_change_set(catalog.meta_field("AUDIT").as_deref(), &cs);
                catalog.set_meta_field("AUDIT", &audit);
            }
            if let Some(original) = original
                && self.tree.read(catalog_path)? != original
            {
                return Err(Error::Conflict(format!(
                    "catalog {catalog_path} was changed by someone else during the refresh; nothing was written — run the refresh again"
                )));
            }
            self.tree.write_atomic(catalog_path, catalog.to_xml().as_bytes())?;
            wrote = true;
        }
        let mut stats_changed = false;
        if self.options.populate_stats
            && let Some(owner) = &self.dir.owner
        {
            stats_changed =
                document::set_stats(self.tree, owner, catalog_path, report.file_count, report.file_size, writing)?;
            report.stats_written = stats_changed && writing;
            wrote |= report.stats_written;
        }
        report.outcome = if wrote {
            Outcome::Written
        } else if catalog_changed || stats_changed {
            Outcome::NotWritten
        } else {
            Outcome::Unchanged
        };
        Ok(())
    }

    /// Walks `dir` (relative `prefix` inside the resource folder), collecting files and what else it sees.
    /// Returns the path of a second catalog if it meets one.
    fn walk(
        &mut self,
        dir: &RelPath,
        prefix: &str,
        catalog: &RelPath,
        files: &mut Vec<(String, Kind)>,
        skipped: &mut Vec<Skipped>,
    ) -> Result<Option<String>> {
        for (name, kind, file_stamp) in self.tree.list_with(dir, self.unchanged.is_some())? {
            let rel = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
            if let (Some(trust), Some(file_stamp)) = (&mut self.unchanged, file_stamp) {
                trust.listed.insert(rel.clone(), file_stamp);
            }
            let path = dir.join(&name)?;
            match kind {
                Kind::Dir => {
                    if let Some(second) = self.walk(&path, &rel, catalog, files, skipped)? {
                        return Ok(Some(second));
                    }
                }
                Kind::Symlink => {
                    skipped.push(Skipped {
                        path: rel.clone(),
                        reason: "symbolic link: not followed, not cataloged".into(),
                    });
                    files.push((rel, Kind::Symlink));
                }
                Kind::Other => {
                    skipped.push(Skipped { path: rel.clone(), reason: "not a regular file or folder".into() });
                    files.push((rel, Kind::Other));
                }
                Kind::NotUtf8 => {
                    skipped.push(Skipped {
                        path: rel.clone(),
                        reason: "the name is not valid UTF-8: not cataloged (XNAT catalogs hold UTF-8 paths); \
                                 rename it"
                            .into(),
                    });
                    files.push((rel, Kind::NotUtf8));
                }
                Kind::File { .. } => {
                    if &path == catalog || name.starts_with(".~lock-") || name.starts_with(TEMP_PREFIX) {
                        continue;
                    }
                    if self.is_catalog(&path)? {
                        return Ok(Some(rel));
                    }
                    files.push((rel, kind));
                }
            }
        }
        Ok(None)
    }

    /// `*_catalog.xml`, or any `.xml` whose root element is a catalog.
    fn is_catalog(&self, path: &RelPath) -> Result<bool> {
        let name = path.name();
        if name.starts_with(TEMP_PREFIX) || name.starts_with(".~lock-") {
            return Ok(false);
        }
        if name.ends_with("_catalog.xml") {
            return Ok(true);
        }
        if !name.to_ascii_lowercase().ends_with(".xml") {
            return Ok(false);
        }
        let mut head = vec![0u8; 4096];
        let n = {
            use std::io::Read;
            let mut f = self.tree.open(path)?;
            let mut n = 0;
            while n < head.len() {
                match f.read(&mut head[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) => return Err(Error::io(path.as_str(), &e)),
                }
            }
            n
        };
        Ok(root_is_catalog(&head[..n]))
    }

    /// Takes `.~lock-<catalog>.refresh` beside the catalog, exclusively (XNAT's refresh-lock name).
    fn lock(&self, catalog: &RelPath) -> Result<Lock> {
        let lock = catalog.parent().join(&format!(".~lock-{}.refresh", catalog.name()))?;
        Lock::acquire(self.tree, &lock, "REFRESHING", &format!("catalog {catalog} (another refresh)"))
    }
}

/// How many of `files` (from the first) make the next hashing batch: at most [`BATCH_FILES`] and, past the
/// first, at most [`BATCH_BYTES`] of regular files in all.
fn batch_len(files: &[(String, Kind)]) -> usize {
    let mut bytes = 0u64;
    for (i, (_, kind)) in files.iter().enumerate().take(BATCH_FILES) {
        if let Kind::File { len } = kind {
            bytes = bytes.saturating_add(*len);
            if bytes > BATCH_BYTES && i > 0 {
                return i;
            }
        }
    }
    files.len().min(BATCH_FILES)
}

fn cat_prefix(catalog: &Catalog) -> String {
    let p = catalog.root().prefix();
    if p.is_empty() { String::new() } else { format!("{p}:") }
}

/// Whether the first element of `head` is a `Catalog`/`DCMCatalog` in the catalog namespace.
fn root_is_catalog(head: &[u8]) -> bool {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(head);
    let mut buf = Vec::new();
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                let (prefix, local) = name.split_once(':').unwrap_or(("", &name));
                let decl = if prefix.is_empty() { "xmlns".to_string() } else { format!("xmlns:{prefix}") };
                let ns_ok = e.attributes().flatten().any(|a| {
                    a.key.as_ref() == decl.as_bytes() && a.value.as_ref() == crate::model::catalog::CAT_NS.as_bytes()
                });
                return ns_ok && matches!(local, "Catalog" | "DCMCatalog");
            }
            Ok(Event::Eof) | Err(_) => return false,
            Ok(_) => buf.clear(),
        }
    }
}

/// The relative path an entry stands for (D9): its `URI` when relative, with `\`, `./` and
/// percent-encoding normalised; for absolute URIs and URLs its `cachePath`, else its `ID`, else the part
/// of the path below the resource folder.
fn entry_key(entry: &crate::xml::Element, folder: &RelPath) -> Option<String> {
    let uri = entry.attr("URI").map(|u| u.replace('\\', "/")).filter(|u| !u.is_empty());
    let absolute = |u: &str| u.starts_with('/') || u.contains("://");
    match uri {
        Some(u) if !absolute(&u) => Some(normalise(&u)),
        other => {
            let from_attr = ["cachePath", "ID"]
                .iter()
                .filter_map(|a| entry.attr(a))
                .map(|v| v.replace('\\', "/"))
                .find(|v| !v.is_empty() && !absolute(v))
                .map(|v| normalise(&v));
            from_attr.or_else(|| {
                let u = other?;
                let path = u.strip_prefix("file://").unwrap_or(&u);
                let marker = format!("/{}/", folder.as_str());
                // Outside the folder: a key no walked file has, so delete removes it as XNAT does.
                Some(path.find(&marker).map_or(u.clone(), |i| normalise(&path[i + marker.len()..])))
            })
        }
    }
}

fn normalise(path: &str) -> String {
    let decoded = if path.contains('%') {
        percent_decode_str(path).decode_utf8().map(|c| c.into_owned()).unwrap_or_else(|_| path.to_string())
    } else {
        path.to_string()
    };
    decoded.split('/').filter(|s| !s.is_empty() && *s != ".").collect::<Vec<_>>().join("/")
}

/// How many entries a refresh changed and removed.
struct Changes {
    modified: usize,
    gone: usize,
}

/// The catalog's entries by the relative path they stand for; entries listed twice or naming nothing are
/// reported and left as they are.
fn index_entries(catalog: &Catalog, folder: &RelPath, report: &mut ResourceReport) -> HashMap<String, Indexed> {
    let mut index: HashMap<String, Indexed> = HashMap::default();
    for loc in catalog.entry_locs() {
        let entry = catalog.entry(&loc);
        match entry_key(entry.element(), folder) {
            Some(key) => {
                if index.insert(key.clone(), Indexed { loc, seen: Seen::No }).is_some() {
                    report.skipped.push(Skipped {
                        path: key,
                        reason: "listed twice in the catalog; the last entry is used, the earlier one left as it is"
                            .into(),
                    });
                }
            }
            None => report.skipped.push(Skipped {
                path: entry.attr("ID").unwrap_or("").to_string(),
                reason: "catalog entry without URI, cachePath or ID; left as it is".into(),
            }),
        }
    }
    index
}

/// Marks the entries whose files the walk found. Entries below something the walk could not enter (a
/// symbolic link to a folder, a name that is not UTF-8, a special file) cannot be checked: they are kept
/// and reported, never deleted.
fn mark_seen(index: &mut HashMap<String, Indexed>, files: &[(String, Kind)], report: &mut ResourceReport) {
    for (rel, kind) in files {
        if let Some(ix) = index.get_mut(rel) {
            ix.seen = match kind {
                Kind::File { len } => Seen::File(*len),
                _ => Seen::Untouchable,
            };
        }
    }
    let blocked: Vec<&str> =
        files.iter().filter(|(_, k)| !matches!(k, Kind::File { .. })).map(|(r, _)| r.as_str()).collect();
    if blocked.is_empty() {
        return;
    }
    let mut below: Vec<(&String, &mut Indexed)> = index
        .iter_mut()
        .filter(|(key, ix)| {
            ix.seen == Seen::No && blocked.iter().any(|b| key.strip_prefix(b).is_some_and(|rest| rest.starts_with('/')))
        })
        .collect();
    below.sort_by(|a, b| a.0.cmp(b.0));
    for (key, ix) in below {
        ix.seen = Seen::Untouchable;
        report.skipped.push(Skipped {
            path: key.clone(),
            reason: "cataloged below a symbolic link or an entry that cannot be read; kept, not checked".into(),
        });
    }
}

/// `<cat:metaFields><cat:metaField name="SIZE">len</cat:metaField></cat:metaFields>` in the catalog's prefix.
fn size_meta_fields(catalog: &Catalog, len: u64) -> Element {
    let mut fields = Element::new(format!("{}metaFields", cat_prefix(catalog)));
    let mut field = Element::new(format!("{}metaField", cat_prefix(catalog)));
    field.attrs.push(("name".into(), "SIZE".into()));
    field.children.push(Node::Text(len.to_string()));
    fields.children.push(Node::Element(field));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;
    use std::fs;
    use std::path::Path;

    const RES: &str = "P/arc001/E1/RESOURCES/R";
    const URI: &str = "/archive/projects/P/experiments/E1/resources/R";

    fn site() -> (tempfile::TempDir, Tree) {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join(RES)).unwrap();
        let tree = Tree::new(dir.path());
        (dir, tree)
    }

    fn put(root: &Path, rel: &str, bytes: &[u8]) {
        let p = root.join(RES).join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, bytes).unwrap();
    }

    fn run(tree: &Tree, options: Options, mode: Mode) -> ResourceReport {
        let req = Request {
            resources: vec![URI.into()],
            options,
            mode,
            user: Some("admin".into()),
            event_id: Some(7),
            ..Default::default()
        };
        let mut r = refresh(tree, &req, &mut Hasher::default(), &mut NoProgress).unwrap();
        assert_eq!(r.len(), 1);
        r.pop().unwrap()
    }

    fn catalog(root: &Path) -> Catalog {
        Catalog::parse(&fs::read(root.join(RES).join("R_catalog.xml")).unwrap()).unwrap()
    }

    fn uris(cat: &Catalog) -> Vec<String> {
        let mut v: Vec<String> = cat.entry_locs().iter().map(|l| cat.entry(l).uri().unwrap().to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn batches_are_bounded_by_files_and_bytes() {
        let files = |lens: &[u64]| -> Vec<(String, Kind)> {
            lens.iter().map(|&len| (String::new(), Kind::File { len })).collect()
        };
        assert_eq!(batch_len(&files(&[1; 200])), BATCH_FILES);
        assert_eq!(batch_len(&files(&[1; 3])), 3);
        // One file larger than a batch is a batch of its own; bytes stop a batch before it overflows.
        assert_eq!(batch_len(&files(&[BATCH_BYTES * 2, 1])), 1);
        assert_eq!(batch_len(&files(&[BATCH_BYTES / 2, BATCH_BYTES / 2 - 1, 1, 1])), 3);
        // Folders and links weigh nothing.
        let mut mixed = files(&[BATCH_BYTES]);
        mixed.push((String::new(), Kind::Dir));
        mixed.push((String::new(), Kind::Symlink));
        assert_eq!(batch_len(&mixed), 3);
    }

    #[test]
    fn many_batches_hash_every_file_and_report_each_mismatch_once() {
        let (d, tree) = site();
        let count = BATCH_FILES * 2 + 5;
        for i in 0..count {
            put(d.path(), &format!("f{i:03}"), format!("file {i}").as_bytes());
        }
        assert_eq!(run(&tree, Options::default(), Mode::Apply).added.len(), count);
        for i in [0, BATCH_FILES, count - 1] {
            put(d.path(), &format!("f{i:03}"), b"changed");
        }
        let r = run(&tree, Options { checksum: true, ..Default::default() }, Mode::Verify);
        let mut bad: Vec<&str> = r.mismatches.iter().map(|m| m.path.as_str()).collect();
        bad.sort();
        assert_eq!(bad, [format!("f{:03}", 0), format!("f{BATCH_FILES:03}"), format!("f{:03}", count - 1)]);
        let md5_changed = "8977dfac2f8e04cb96e66882235f5aba"; // md5("changed")
        assert!(r.mismatches.iter().all(|m| m.actual == md5_changed), "{:?}", r.mismatches);
    }

    #[test]
    fn creates_the_missing_catalog_and_appends_everything() {
        let (d, tree) = site();
        put(d.path(), "a.txt", b"hello");
        put(d.path(), "sub dir/é.txt", b"");
        put(d.path(), ".hidden", b"h");
        put(d.path(), ".~lock-a.txt", b"");
        let r = run(&tree, Options::default(), Mode::Apply);
        assert_eq!(r.outcome, Outcome::Written);
        assert!(r.catalog_created);
        assert_eq!(r.catalog, format!("{RES}/R_catalog.xml"));
        assert_eq!(r.added, [".hidden", "a.txt", "sub dir/é.txt"]);
        assert_eq!((r.file_count, r.file_size), (3, 6));
        let cat = catalog(d.path());
        assert_eq!(cat.id(), Some("R"));
        assert_eq!(cat.meta_field("PROJECT").as_deref(), Some("P"));
        assert!(
            cat.meta_field("AUDIT").unwrap().starts_with("7:")
                && cat.meta_field("AUDIT").unwrap().ends_with("=Added:3")
        );
        let a = cat.entry_locs().into_iter().map(|l| cat.entry(&l)).find(|e| e.uri() == Some("a.txt")).unwrap();
        assert_eq!(a.attr("digest"), Some("5d41402abc4b2a76b9719d911017c592"));
        assert_eq!(a.meta_field("SIZE").as_deref(), Some("5"));
        assert_eq!(a.attr("createdBy"), Some("admin"));
        // A second refresh finds nothing to do and writes nothing.
        let before = fs::read(d.path().join(RES).join("R_catalog.xml")).unwrap();
        let again = run(&tree, Options::default(), Mode::Apply);
        assert_eq!(again.outcome, Outcome::Unchanged, "{again:?}");
        assert_eq!(fs::read(d.path().join(RES).join("R_catalog.xml")).unwrap(), before);
        assert!(!d.path().join(RES).join(".~lock-R_catalog.xml.refresh").exists());
    }

    #[test]
    fn delete_mismatch_and_normalised_matching() {
        let (d, tree) = site();
        put(d.path(), "a.txt", b"hello");
        put(d.path(), "b c.txt", b"x");
        put(
            d.path(),
            "R_catalog.xml",
            br#"<cat:Catalog xmlns:cat="http://nrg.wustl.edu/catalog" ID="R"><cat:entries>
            <cat:entry URI="./a.txt" ID="a.txt" digest="00000000000000000000000000000000"/>
            <cat:entry URI="b%20c.txt" ID="b c.txt"/>
            <cat:entry URI="gone.txt" ID="gone.txt"/></cat:entries></cat:Catalog>"#,
        );
        // Without delete the missing entry stays; nothing is appended twice.
        let r = run(&tree, Options { append: true, checksum: true, ..Default::default() }, Mode::Apply);
        assert!(r.added.is_empty(), "{r:?}");
        assert_eq!(
            r.mismatches,
            [Mismatch {
                path: "a.txt".into(),
                stored: "0".repeat(32),
                actual: "5d41402abc4b2a76b9719d911017c592".into()
            }]
        );
        assert_eq!(uris(&catalog(d.path())), ["./a.txt", "b%20c.txt", "gone.txt"]);
        assert_eq!((r.file_count, r.file_size), (2, 6));
        let r = run(&tree, Options { delete: true, ..Default::default() }, Mode::Apply);
        assert_eq!(r.removed, ["gone.txt"]);
        assert_eq!(uris(&catalog(d.path())), ["./a.txt", "b%20c.txt"]);
        assert!(catalog(d.path()).meta_field("AUDIT").unwrap().contains("|7:"));
    }

    #[test]
    fn dry_run_and_verify_write_nothing() {
        let (d, tree) = site();
        put(d.path(), "a.txt", b"hello");
        put(d.path(), "R_catalog.xml", br#"<cat:Catalog xmlns:cat="http://nrg.wustl.edu/catalog" ID="R"><cat:entries><cat:entry URI="gone"/></cat:entries></cat:Catalog>"#);
        let before = fs::read(d.path().join(RES).join("R_catalog.xml")).unwrap();
        for mode in [Mode::DryRun, Mode::Verify] {
            let r = run(&tree, Options::default(), mode);
            assert_eq!(r.outcome, Outcome::NotWritten);
            assert_eq!(
                (r.added.as_slice(), r.removed.as_slice()),
                (&["a.txt".to_string()][..], &["gone".to_string()][..])
            );
            assert_eq!(fs::read(d.path().join(RES).join("R_catalog.xml")).unwrap(), before);
        }
        assert_eq!(fs::read_dir(d.path().join(RES)).unwrap().count(), 2);
    }

    #[test]
    fn second_catalog_corrupt_catalog_and_lock_change_nothing() {
        let (d, tree) = site();
        put(d.path(), "a.txt", b"hello");
        put(d.path(), "R_catalog.xml", br#"<cat:Catalog xmlns:cat="http://nrg.wustl.edu/catalog" ID="R"/>"#);
        put(
            d.path(),
            "old/backup.xml",
            br#"<?xml version="1.0"?><cat:Catalog xmlns:cat="http://nrg.wustl.edu/catalog"/>"#,
        );
        let before = fs::read(d.path().join(RES).join("R_catalog.xml")).unwrap();
        let r = run(&tree, Options::default(), Mode::Apply);
        assert!(matches!(&r.outcome, Outcome::Skipped(m) if m.contains("old/backup.xml")), "{r:?}");
        assert_eq!(fs::read(d.path().join(RES).join("R_catalog.xml")).unwrap(), before);
        fs::remove_dir_all(d.path().join(RES).join("old")).unwrap();

        for broken in [&b""[..], b"<cat:Catalog xmlns:cat=\"http://nrg.wustl.edu/catalog\"><cat:entries>"] {
            put(d.path(), "R_catalog.xml", broken);
            let r = run(&tree, Options::default(), Mode::Apply);
            assert!(matches!(&r.outcome, Outcome::Failed(Error::Corrupt(_))), "{r:?}");
            assert_eq!(fs::read(d.path().join(RES).join("R_catalog.xml")).unwrap(), broken);
        }

        put(d.path(), "R_catalog.xml", &before);
        let now = chrono::Utc::now().timestamp();
        put(d.path(), ".~lock-R_catalog.xml.refresh", format!("REFRESHING\nsince {now}\n").as_bytes());
        let r = run(&tree, Options::default(), Mode::Apply);
        assert!(matches!(&r.outcome, Outcome::Failed(Error::Locked(m)) if m.contains("another refresh")), "{r:?}");
        assert_eq!(fs::read(d.path().join(RES).join("R_catalog.xml")).unwrap(), before);
        // A lock left behind long ago is taken over.
        put(d.path(), ".~lock-R_catalog.xml.refresh", format!("x\nsince {}\n", now - 3600).as_bytes());
        assert_eq!(run(&tree, Options::default(), Mode::Apply).outcome, Outcome::Written);
    }

    #[test]
    fn entries_below_a_symlinked_folder_or_a_bad_name_are_kept_and_reported() {
        use std::os::unix::ffi::OsStrExt;
        let (d, tree) = site();
        put(d.path(), "real/x.dcm", b"x");
        put(d.path(), "a.txt", b"a");
        let opts = Options { append: true, checksum: true, delete: true, populate_stats: false };
        assert_eq!(run(&tree, opts, Mode::Apply).added, ["a.txt", "real/x.dcm"]);
        // The folder becomes a link to itself elsewhere: its entry cannot be checked, so it stays.
        let res = d.path().join(RES);
        fs::rename(res.join("real"), d.path().join("elsewhere")).unwrap();
        std::os::unix::fs::symlink(d.path().join("elsewhere"), res.join("real")).unwrap();
        // A name that is not UTF-8 does not stop the refresh of the rest.
        fs::write(res.join(std::ffi::OsStr::from_bytes(b"bad-\xff.dcm")), b"b").unwrap();
        put(d.path(), "c.txt", b"c");
        let r = run(&tree, opts, Mode::Apply);
        assert!(r.removed.is_empty(), "{r:?}");
        assert_eq!(r.added, ["c.txt"]);
        assert!(r.skipped.iter().any(|s| s.path == "real/x.dcm" && s.reason.contains("kept")), "{r:?}");
        assert!(r.skipped.iter().any(|s| s.path.starts_with("bad-") && s.reason.contains("UTF-8")), "{r:?}");
        let cat = fs::read_to_string(res.join("R_catalog.xml")).unwrap();
        assert!(cat.contains("URI=\"real/x.dcm\""), "{cat}");
    }

    #[test]
    fn unchanged_files_are_trusted_only_when_asked_and_only_while_unchanged() {
        let (d, tree) = site();
        put(d.path(), "a.txt", b"hello");
        put(d.path(), "sub/b.txt", b"world");
        // Files changed less than two seconds before a stamp is written are left out of it.
        std::thread::sleep(std::time::Duration::from_millis(2100));
        let opts = Options { append: true, checksum: true, ..Default::default() };
        let refresh_with = |trust_unchanged: bool, mode: Mode| {
            let req =
                Request { resources: vec![URI.into()], options: opts, mode, trust_unchanged, ..Default::default() };
            refresh(&tree, &req, &mut Hasher::default(), &mut NoProgress).unwrap().pop().unwrap()
        };
        let stamp = d.path().join(RES).join(".~lock-R_catalog.xml.stamp");
        let first = refresh_with(true, Mode::Apply);
        assert_eq!((first.outcome, first.added.len(), first.trusted), (Outcome::Written, 2, 0));
        assert!(stamp.exists());
        let again = refresh_with(true, Mode::Apply);
        assert_eq!((&again.outcome, again.trusted), (&Outcome::Unchanged, 2), "{again:?}");
        assert!(again.skipped.is_empty(), "the stamp is never cataloged: {again:?}");
        // Off by default, and never in verify: everything is hashed.
        assert_eq!(refresh_with(false, Mode::Apply).trusted, 0);
        assert_eq!(refresh_with(true, Mode::Verify).trusted, 0);

        // Rewritten with the same size, its modification time set back: the status-change time moved.
        let b = d.path().join(RES).join("sub/b.txt");
        let mtime = fs::metadata(&b).unwrap().modified().unwrap();
        fs::write(&b, b"WORLD").unwrap();
        fs::File::options().write(true).open(&b).unwrap().set_modified(mtime).unwrap();
        let r = refresh_with(true, Mode::Apply);
        assert_eq!(r.trusted, 1, "{r:?}");
        assert_eq!(r.mismatches.len(), 1);
        assert_eq!(r.mismatches[0].path, "sub/b.txt");
        assert_eq!(r.mismatches[0].actual, "5289492cf082446ca4a6eec9f72f1ec3");

        // A digest edited in the catalog is not the one the stamp recorded: the file is hashed again.
        let cat_path = d.path().join(RES).join("R_catalog.xml");
        let text = fs::read_to_string(&cat_path).unwrap().replace("5d41402abc4b2a76b9719d911017c592", &"0".repeat(32));
        fs::write(&cat_path, text).unwrap();
        let r = refresh_with(true, Mode::Apply);
        assert_eq!(r.mismatches.iter().map(|m| m.path.as_str()).collect::<Vec<_>>(), ["a.txt"], "{r:?}");
        assert!(fs::read_to_string(&cat_path).unwrap().contains("5d41402abc4b2a76b9719d911017c592"));
    }

    #[test]
    fn stats_go_into_the_session_document() {
        let (d, tree) = site();
        put(d.path(), "a.txt", b"hello");
        fs::write(
            d.path().join("P/arc001/E1.xml"),
            r#"<xnat:MRSession xmlns:xnat="http://nrg.wustl.edu/xnat" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ID="XNAT_E00001" label="E1" project="P"><xnat:resources><xnat:resource xsi:type="xnat:resourceCatalog" label="R" URI="RESOURCES/R/R_catalog.xml"/></xnat:resources></xnat:MRSession>"#,
        )
        .unwrap();
        let r = run(&tree, Options::default(), Mode::Apply);
        assert!(r.stats_written);
        let doc = crate::xml::parse(&fs::read(d.path().join("P/arc001/E1.xml")).unwrap()).unwrap();
        let res = crate::site::layout::find_all(&doc, &|e| e.local_name() == "resource").unwrap();
        assert_eq!((res.attr("file_count"), res.attr("file_size")), (Some("1"), Some("5")));
    }

    #[test]
    fn entry_keys() {
        let folder = RelPath::new("P/arc001/E/SCANS/1/DICOM").unwrap();
        let e = |attrs: &[(&str, &str)]| {
            let mut el = crate::xml::Element::new("cat:entry");
            el.attrs = attrs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            entry_key(&el, &folder)
        };
        assert_eq!(e(&[("URI", "./x/./a.dcm")]).as_deref(), Some("x/a.dcm"));
        assert_eq!(e(&[("URI", "sub\\a%20b.dcm")]).as_deref(), Some("sub/a b.dcm"));
        assert_eq!(e(&[("URI", "/data/xnat/archive/P/arc001/E/SCANS/1/DICOM/a.dcm")]).as_deref(), Some("a.dcm"));
        assert_eq!(e(&[("URI", "/somewhere/a.dcm"), ("cachePath", "c.dcm")]).as_deref(), Some("c.dcm"));
        assert_eq!(e(&[("URI", "https://x/y"), ("ID", "i.dcm")]).as_deref(), Some("i.dcm"));
        assert_eq!(e(&[("URI", "/elsewhere/a.dcm")]).as_deref(), Some("/elsewhere/a.dcm"));
        assert_eq!(e(&[]), None);
    }
}
