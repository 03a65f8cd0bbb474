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
//! * the catalog is never held whole: it is read as it streams (`model/catalog_stream.rs`), each entry
//!   indexed by its key with the facts an update compares (`index.rs`), and written again entry by entry;
//! * `verify` and `dry-run` compute the same report and write nothing (each entry's change is decided by the
//!   same update the write applies, `update.rs`);
//! * opt-in, files unchanged since the last hashing refresh are not hashed again (`unchanged.rs`).

pub(crate) mod index;
pub mod resource;
mod unchanged;
mod update;

use crate::error::{Error, Result};
use crate::fs::ahead::WalkAhead;
use crate::fs::lock::Lock;
use crate::fs::tree::{FileStamp, Kind, RelPath, Stamps, TEMP_PREFIX, Tree, check_segment, path_below};
use crate::model::audit::{Stamp, append_change_set};
use crate::model::catalog::CatalogKind;
use crate::model::catalog_stream::{Fate, StreamedCatalog, WriteError, fingerprint_of};
pub use crate::model::digest::Algorithm;
pub use crate::model::digest::Hasher;
#[cfg(target_os = "wasi")]
pub use crate::model::digest::HostDigests;
use crate::model::digest::{BATCH_BYTES, BATCH_FILES};
use crate::progress::Progress;
use crate::site::document;
use crate::site::layout::{Archive, ResourceDir};
use crate::site::uri::ResourceUri;
use foldhash::HashMap;
use index::{Facts, Index, Seen};
use update::{Probe, new_entry, update_entry};

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
            temps: Vec::new(),
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
    /// Temporary files the walk met beside the catalog.
    temps: Vec<String>,
}

#[derive(Default)]
struct Trust {
    stamps: unchanged::Stamps,
    listed: HashMap<String, FileStamp>,
    digests: Vec<(String, String)>,
}

/// What the walk found to write, decided before anything is written (so that `dry-run` reports it too).
#[derive(Default)]
struct Plan {
    /// Entries that change, by number: their file's relative path, size and digest, and whether a DICOM entry.
    updates: HashMap<u32, (String, u64, Option<String>, bool)>,
    /// Files the catalog lacks: relative path, size, digest.
    added: Vec<(String, u64, Option<String>)>,
    /// Entries whose files are gone, by number.
    gone: Vec<u32>,
    /// Entries kept without a file to match (gone without `delete`, or not to be touched).
    unmatched: usize,
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
        // The catalog found, or the one a refresh makes (`<ID>_catalog.xml`).
        let (catalog_path, exists) = match found.pop() {
            Some(name) => (folder.join(&name)?, true),
            None => (folder.join(&format!("{}_catalog.xml", self.dir.catalog_id))?, false),
        };
        if self.unchanged.is_some() && exists && self.unchanged_as_stamped(report, &catalog_path)? {
            return Ok(());
        }
        if let Some(trust) = &mut self.unchanged {
            trust.stamps = unchanged::Stamps::read(self.tree, &catalog_path)?;
        }
        // 2. The entries, indexed by the relative path they stand for, as the catalog is read — while the host
        // walks the folder, where it can (step 4 takes that walk). The catalog is opened first: what is read is
        // then never newer than what the walk sees, so an archive that adds files and their entries meanwhile
        // can only make files look new (appended, or the write refused as changed), never make entries look
        // gone.
        let mut index = Index::default();
        let source = if exists { Some(self.tree.open(&catalog_path)?) } else { None };
        let mut ahead = self.tree.walk_ahead(folder);
        let mut catalog = if let Some(file) = source {
            StreamedCatalog::read(file, &mut |head| index.add(head, folder)).map_err(|e| {
                Error::Corrupt(format!("catalog {catalog_path} cannot be read ({e}); it was left untouched — restore it from a backup or fix it by hand"))
            })?
        } else {
            report.catalog_created = true;
            StreamedCatalog::new(CatalogKind::Plain, &self.dir.catalog_id)
        };
        report.catalog = catalog_path.as_str().to_string();
        report.skipped.append(&mut index.skipped);

        // 3. The refresh lock (only when we may write).
        let lock = if writing { Some(self.lock(&catalog_path)?) } else { None };
        let result = self.refresh_locked(report, &catalog_path, &mut catalog, index, &mut ahead);
        if let Some(lock) = lock {
            lock.release()?;
        }
        result
    }

    fn refresh_locked(
        &mut self,
        report: &mut ResourceReport,
        catalog_path: &RelPath,
        catalog: &mut StreamedCatalog,
        mut index: Index,
        ahead: &mut WalkAhead,
    ) -> Result<()> {
        // 4. Walk the folder.
        let mut files = Vec::new();
        if let Some(second) = self.walk(ahead, &self.dir.folder, "", catalog_path, &mut files, &mut report.skipped)? {
            report.outcome = Outcome::Skipped(format!(
                "a second catalog lies in the folder ({second}); nothing was changed — XNAT would skip this resource silently; move the extra catalog out"
            ));
            report.skipped.clear();
            return Ok(());
        }
        if self.req.mode == Mode::Apply {
            // Under the refresh lock: a catalog written by an instance that died mid-write (its memory
            // limit) left its temporary file; nobody will finish it.
            let name = catalog_path.name();
            self.tree.remove_orphaned_temps(&self.dir.folder, name, self.temps.iter().map(String::as_str));
        }
        let places = index.mark_seen(&files, &mut report.skipped);
        // 5. Which entries the files change, and which files the catalog lacks.
        let mut plan = self.update_entries(&index, &files, &places, report)?;
        // 6. Entries whose files are gone; the counts.
        self.settle(&index, &mut plan, report);
        // 7. Write what changed, then the stamp of what was hashed.
        self.write(report, catalog_path, catalog, &plan)?;
        self.write_stamp(report, catalog_path, catalog, &plan)
    }

    /// With `trust_unchanged`: whether the catalog is byte for byte the one the stamp recorded and every file
    /// is listed exactly as stamped (none more, none less, nothing skipped). Then the report says so — nothing
    /// changes, every file trusted — and not one entry was read. Otherwise nothing of this look is kept and
    /// the refresh goes the whole way.
    fn unchanged_as_stamped(&mut self, report: &mut ResourceReport, catalog_path: &RelPath) -> Result<bool> {
        let Some(mark) = unchanged::Stamps::read_mark(self.tree, catalog_path) else { return Ok(false) };
        let file = self.tree.open(catalog_path)?;
        let fingerprint = fingerprint_of(file).map_err(|e| Error::io(catalog_path.as_str(), &e))?;
        if fingerprint.0 != mark.len {
            return Ok(false);
        }
        // The owner's statistics may be written: under the refresh lock, as always.
        let lock = if self.req.mode == Mode::Apply && self.options.populate_stats {
            Some(self.lock(catalog_path)?)
        } else {
            None
        };
        let result = self.files_as_stamped(catalog_path, &mark, fingerprint).and_then(|trusted| match trusted {
            Some(n) => {
                report.catalog = catalog_path.as_str().to_string();
                report.trusted = n;
                (report.file_count, report.file_size) = (mark.file_count, mark.file_size);
                self.stats_and_outcome(report, catalog_path, false, false).map(|()| true)
            }
            None => Ok(false),
        });
        if let Some(lock) = lock {
            lock.release()?;
        }
        if !matches!(result, Ok(true)) {
            self.temps.clear();
            if let Some(trust) = &mut self.unchanged {
                trust.listed.clear();
            }
        }
        result
    }

    /// How many files the walk finds, when the catalog (`fingerprint`) is the one `mark` recorded and the files
    /// are listed exactly as stamped, all of them and nothing beside them; `None` otherwise.
    fn files_as_stamped(
        &mut self,
        catalog_path: &RelPath,
        mark: &unchanged::CatalogMark,
        fingerprint: crate::model::catalog_stream::Fingerprint,
    ) -> Result<Option<u64>> {
        let (mut files, mut skipped) = (Vec::new(), Vec::new());
        let mut ahead = self.tree.walk_ahead(&self.dir.folder);
        if self.walk(&mut ahead, &self.dir.folder, "", catalog_path, &mut files, &mut skipped)?.is_some()
            || !skipped.is_empty()
        {
            return Ok(None);
        }
        let Some(trust) = &self.unchanged else { return Ok(None) };
        if files.len() as u64 != mark.file_count || files.iter().any(|(_, kind)| !matches!(kind, Kind::File { .. })) {
            return Ok(None);
        }
        let listed = files.iter().map(|(rel, _)| trust.listed.get(rel).map(|stamp| (rel.as_str(), stamp)));
        let Some(listed) = listed.collect::<Option<Vec<_>>>() else { return Ok(None) };
        let same = unchanged::listing_fingerprint(listed.into_iter()).is_some_and(|l| mark.is(fingerprint, l));
        Ok(same.then_some(mark.file_count))
    }

    /// The catalog is recorded in the stamp too when its entries are exactly the stamped files.
    fn write_stamp(
        &mut self,
        report: &ResourceReport,
        catalog_path: &RelPath,
        catalog: &StreamedCatalog,
        plan: &Plan,
    ) -> Result<()> {
        let Some(trust) = &self.unchanged else { return Ok(()) };
        let exact = report.skipped.is_empty() && plan.unmatched == 0 && trust.digests.len() as u64 == report.file_count;
        let facts = catalog.fingerprint().filter(|_| exact).map(|fp| (fp, report.file_count, report.file_size));
        // Not written again when every file was trusted as it is, unless the catalog can now be recorded (or
        // is no longer what was recorded).
        let same_mark = match (trust.stamps.catalog(), &facts) {
            (Some(mark), Some(facts)) => mark.records(facts),
            (recorded, now) => recorded.is_none() && now.is_none(),
        };
        if self.req.mode != Mode::Apply
            || (report.trusted as usize == trust.digests.len()
                && trust.stamps.len() == trust.digests.len()
                && same_mark)
        {
            return Ok(());
        }
        let now_ns = self.stamp.time.timestamp_nanos_opt().and_then(|t| u64::try_from(t).ok()).unwrap_or(0);
        let files = trust
            .digests
            .iter()
            .filter_map(|(rel, digest)| Some((rel.as_str(), trust.listed.get(rel)?, digest.as_str())));
        unchanged::Stamps::write(self.tree, catalog_path, now_ns, files, facts)
    }

    /// Decides which entries the files found change and which files the catalog lacks (nothing is changed
    /// yet). Files are hashed in batches (one call to the host's digests each, when it offers them).
    /// `places`: each file's entry in `index`, as [`Index::mark_seen`] found it.
    fn update_entries(
        &mut self,
        index: &Index,
        files: &[(String, Kind)],
        places: &[Option<u32>],
        report: &mut ResourceReport,
    ) -> Result<Plan> {
        let to_hash = if self.options.checksum {
            files.iter().filter(|(_, k)| matches!(k, Kind::File { .. })).count() as u64
        } else {
            0
        };
        self.progress.begin(&self.dir.uri, to_hash);
        let mut plan = Plan::default();
        let mut start = 0;
        while start < files.len() {
            let batch = &files[start..start + batch_len(&files[start..])];
            let batch_places = &places[start..start + batch.len()];
            start += batch.len();
            Lock::renew_due()?;
            let digests = self.digests(index, batch, batch_places, report)?;
            for (((rel, kind), digest), place) in batch.iter().zip(digests).zip(batch_places) {
                let Kind::File { len } = kind else { continue };
                if let Some(ix) = place.map(|p| index.at(p)) {
                    let mut probe = Probe { facts: &ix.facts, key: rel };
                    let dicom = ix.facts.has(Facts::DICOM);
                    if update_entry(&mut probe, self.stamp, (rel, *len, digest.as_deref()), dicom) {
                        report.modified.push(rel.clone());
                        plan.updates.insert(ix.entry, (rel.clone(), *len, digest, dicom));
                    }
                } else if self.options.append {
                    plan.added.push((rel.clone(), *len, digest));
                    report.added.push(rel.clone());
                }
            }
        }
        self.progress.end();
        Ok(plan)
    }

    /// The digest to store for each file of a batch (`None` for what is not hashed): trusted from the
    /// stamp, or hashed, compared with the stored digest and reported when they differ.
    fn digests(
        &mut self,
        index: &Index,
        batch: &[(String, Kind)],
        places: &[Option<u32>],
        report: &mut ResourceReport,
    ) -> Result<Vec<Option<String>>> {
        let mut out = vec![None; batch.len()];
        if !self.options.checksum {
            return Ok(out);
        }
        // What each file needs: hashing with which algorithm, and its stored digest (to compare).
        let mut to_hash = Vec::new();
        let mut hashed = Vec::new();
        for (i, ((rel, kind), place)) in batch.iter().zip(places).enumerate() {
            if !matches!(kind, Kind::File { .. }) {
                continue;
            }
            let stored = match place.map(|p| index.at(p)) {
                Some(ix) => ix.facts.digest.as_deref(),
                None if self.options.append => None,
                None => continue,
            };
            let digest = stored.map(str::trim).filter(|d| !d.is_empty());
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

    /// Marks the entries whose files are gone for removal (with `delete`) and counts the resource's files.
    fn settle(&self, index: &Index, plan: &mut Plan, report: &mut ResourceReport) {
        let (mut count, mut size) = (0u64, 0u64);
        // Only the entries gone are put in catalog order (usually few of the index's many).
        let mut gone: Vec<(u32, &str)> = Vec::new();
        for (key, ix) in index.iter() {
            match ix.seen {
                Seen::File(len) => {
                    count += 1;
                    size += len;
                }
                Seen::Untouchable => plan.unmatched += 1,
                Seen::No if self.options.delete => gone.push((ix.entry, key)),
                Seen::No => plan.unmatched += 1,
            }
        }
        gone.sort_unstable_by_key(|&(entry, _)| entry);
        for (entry, key) in gone {
            plan.gone.push(entry);
            report.removed.push(key.to_string());
        }
        for (_, len, _) in &plan.added {
            count += 1;
            size += len;
        }
        report.file_count = count;
        report.file_size = size;
    }

    /// Writes the catalog (if it changed and the mode writes) unless someone else changed it meanwhile, and
    /// the owner's statistics; sets the report's outcome.
    fn write(
        &mut self,
        report: &mut ResourceReport,
        catalog_path: &RelPath,
        catalog: &mut StreamedCatalog,
        plan: &Plan,
    ) -> Result<()> {
        let (modified, gone) = (plan.updates.len(), plan.gone.len());
        let catalog_changed = report.catalog_created || !report.added.is_empty() || modified > 0 || gone > 0;
        let writing = self.req.mode == Mode::Apply;
        let mut wrote = false;
        if catalog_changed && writing {
            let frame = catalog.frame_mut();
            frame.set_meta_field("PROJECT", &self.dir.project);
            if let Some(cs) = self.stamp.change_set(report.added.len(), modified, gone) {
                let audit = append_change_set(frame.meta_field("AUDIT").as_deref(), &cs);
                frame.set_meta_field("AUDIT", &audit);
            }
            let mut source = if report.catalog_created { None } else { Some(self.tree.open(catalog_path)?) };
            let mut removed = vec![false; catalog.len()];
            for &e in &plan.gone {
                removed[e as usize] = true;
            }
            let stamp = self.stamp;
            self.tree.write_atomic_with(catalog_path, &mut |sink| {
                let source = source.as_mut().map(|f| f as &mut dyn std::io::Read);
                let mut edit = |e: u32, entry: &mut crate::model::catalog::EntryMut| {
                    if let Some((rel, len, digest, dicom)) = plan.updates.get(&e) {
                        update_entry(entry, stamp, (rel, *len, digest.as_deref()), *dicom);
                    }
                };
                let mut added = |i: usize, frame: &crate::model::catalog::Catalog| {
                    let (rel, len, digest) = &plan.added[i];
                    new_entry(frame, stamp, (rel, *len, digest.as_deref()))
                };
                let fate = |e: u32| match (removed[e as usize], plan.updates.contains_key(&e)) {
                    (true, _) => Fate::Removed,
                    (false, true) => Fate::Edited,
                    (false, false) => Fate::Kept,
                };
                catalog.write(source, &fate, &mut edit, plan.added.len(), &mut added, sink).map_err(|e| match e {
                    WriteError::Changed => Error::Conflict(format!(
                        "catalog {catalog_path} was changed by someone else during the refresh; nothing was written — run the refresh again"
                    )),
                    WriteError::Io(e) => Error::io(catalog_path.as_str(), &e),
                })
            })?;
            wrote = true;
        }
        self.stats_and_outcome(report, catalog_path, wrote, catalog_changed)
    }

    /// With `populate_stats`, the owner's statistics; then the report's outcome, given whether the catalog
    /// was written and whether it changed.
    fn stats_and_outcome(
        &self,
        report: &mut ResourceReport,
        catalog_path: &RelPath,
        mut wrote: bool,
        catalog_changed: bool,
    ) -> Result<()> {
        let writing = self.req.mode == Mode::Apply;
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
        ahead: &mut WalkAhead,
        dir: &RelPath,
        prefix: &str,
        catalog: &RelPath,
        files: &mut Vec<(String, Kind)>,
        skipped: &mut Vec<Skipped>,
    ) -> Result<Option<String>> {
        let stamps = if self.unchanged.is_some() { Stamps::Full } else { Stamps::None };
        for (name, kind, file_stamp) in self.tree.list_ahead(ahead, dir, stamps)? {
            let rel = path_below(prefix, &name);
            if let (Some(trust), Some(file_stamp)) = (&mut self.unchanged, file_stamp) {
                trust.listed.insert(rel.clone(), file_stamp);
            }
            // A path is made only where one is needed (a folder, a name that may be a catalog's): a resource has
            // many files, and few of them are either.
            check_segment(&name)?;
            match kind {
                Kind::Dir => {
                    if let Some(second) = self.walk(ahead, &dir.join(&name)?, &rel, catalog, files, skipped)? {
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
                    if name.starts_with(TEMP_PREFIX) && prefix.is_empty() {
                        self.temps.push(name);
                        continue;
                    }
                    if name.starts_with(".~lock-") || name.starts_with(TEMP_PREFIX) {
                        continue;
                    }
                    if is_xml(&name) {
                        let path = dir.join(&name)?;
                        if &path == catalog {
                            continue;
                        }
                        if self.is_catalog(&path)? {
                            return Ok(Some(rel));
                        }
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
        if !is_xml(name) {
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

/// Whether a file name ends in `.xml`, in any case.
fn is_xml(name: &str) -> bool {
    name.len() >= 4 && name.as_bytes()[name.len() - 4..].eq_ignore_ascii_case(b".xml")
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::catalog::Catalog;
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
    fn xml_names_in_any_case_and_only_those() {
        for (name, xml) in
            [("a.xml", true), ("A.XmL", true), (".xml", true), ("xml", false), ("a.xmlx", false), ("\u{e9}.xm", false)]
        {
            assert_eq!(is_xml(name), xml, "{name}");
        }
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

    /// Counts the progress phases begun: a refresh that goes the whole way begins one per resource.
    #[derive(Default)]
    struct Phases(usize);

    impl Progress for Phases {
        fn begin(&mut self, _: &str, _: u64) {
            self.0 += 1;
        }
        fn advance(&mut self, _: u64) {}
        fn end(&mut self) {}
    }

    #[test]
    fn a_catalog_and_files_exactly_as_stamped_are_known_unchanged_without_reading_an_entry() {
        let (d, tree) = site();
        put(d.path(), "a.txt", b"hello");
        put(d.path(), "sub/b.txt", b"world");
        std::thread::sleep(std::time::Duration::from_millis(2100));
        let opts = Options { append: true, checksum: true, delete: true, ..Default::default() };
        let refresh_with = |mode: Mode| {
            let req = Request {
                resources: vec![URI.into()],
                options: opts,
                mode,
                trust_unchanged: true,
                ..Default::default()
            };
            let mut phases = Phases::default();
            let r = refresh(&tree, &req, &mut Hasher::default(), &mut phases).unwrap().pop().unwrap();
            (r, phases.0)
        };
        let (first, _) = refresh_with(Mode::Apply);
        assert_eq!((first.outcome, first.added.len()), (Outcome::Written, 2));
        // The catalog was written, its entries are exactly the two files: the stamp records it.
        for mode in [Mode::Apply, Mode::DryRun] {
            let (again, phases) = refresh_with(mode);
            assert_eq!(
                (&again.outcome, again.trusted, again.file_count, again.file_size),
                (&Outcome::Unchanged, 2, 2, 10)
            );
            assert_eq!(phases, 0, "nothing was read or hashed: {again:?}");
        }
        let cat_path = d.path().join(RES).join("R_catalog.xml");
        let catalog = fs::read(&cat_path).unwrap();

        // Any byte of the catalog changed (here a harmless comment): the whole way, same outcome.
        let mut edited = catalog.clone();
        edited.extend_from_slice(b"<!-- -->");
        fs::write(&cat_path, &edited).unwrap();
        let (r, phases) = refresh_with(Mode::DryRun);
        assert_eq!((&r.outcome, r.trusted, phases), (&Outcome::Unchanged, 2, 1), "{r:?}");
        fs::write(&cat_path, &catalog).unwrap();
        assert_eq!(refresh_with(Mode::DryRun).1, 0, "the same bytes again");

        // A file more, a file gone, a file whose listing differs, something skipped: the whole way.
        put(d.path(), "c.txt", b"new");
        let (r, phases) = refresh_with(Mode::DryRun);
        assert_eq!((r.added.len(), phases), (1, 1), "{r:?}");
        fs::remove_file(d.path().join(RES).join("c.txt")).unwrap();
        let b = d.path().join(RES).join("sub/b.txt");
        fs::rename(&b, d.path().join("b.txt")).unwrap();
        let (r, phases) = refresh_with(Mode::DryRun);
        assert_eq!((r.removed.len(), phases), (1, 1), "{r:?}");
        fs::rename(d.path().join("b.txt"), &b).unwrap();
        let (r, phases) = refresh_with(Mode::DryRun);
        assert_eq!(
            (&r.outcome, r.trusted, phases),
            (&Outcome::Unchanged, 1, 1),
            "moved back: a new change time: {r:?}"
        );
        let mtime = fs::metadata(&b).unwrap().modified().unwrap();
        fs::write(&b, b"WORLD").unwrap();
        fs::File::options().write(true).open(&b).unwrap().set_modified(mtime).unwrap();
        let (r, phases) = refresh_with(Mode::DryRun);
        assert_eq!((r.mismatches.len(), phases), (1, 1), "{r:?}");
        fs::write(&b, b"world").unwrap();
        std::os::unix::fs::symlink("a.txt", d.path().join(RES).join("link")).unwrap();
        let (r, phases) = refresh_with(Mode::DryRun);
        assert_eq!((r.skipped.len(), phases), (1, 1), "{r:?}");
    }

    #[test]
    fn a_catalog_with_entries_beyond_its_files_is_not_recorded_in_the_stamp() {
        let (d, tree) = site();
        put(d.path(), "a.txt", b"hello");
        put(d.path(), "gone.txt", b"bye");
        std::thread::sleep(std::time::Duration::from_millis(2100));
        let opts = Options { append: true, checksum: true, ..Default::default() };
        let req = Request { resources: vec![URI.into()], options: opts, trust_unchanged: true, ..Default::default() };
        refresh(&tree, &req, &mut Hasher::default(), &mut NoProgress).unwrap();
        fs::remove_file(d.path().join(RES).join("gone.txt")).unwrap();
        // Without `delete` the entry of gone.txt stays: the catalog is more than the stamped files.
        refresh(&tree, &req, &mut Hasher::default(), &mut NoProgress).unwrap();
        let mut phases = Phases::default();
        let with_delete = Request { options: Options { delete: true, ..opts }, ..req.clone() };
        let r = refresh(&tree, &with_delete, &mut Hasher::default(), &mut phases).unwrap().pop().unwrap();
        assert_eq!((r.removed.as_slice(), phases.0), (["gone.txt".to_string()].as_slice(), 1), "{r:?}");
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
}
