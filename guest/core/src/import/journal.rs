//! The intent journal of an archive (D14): written before anything moves, so that an archive cut short —
//! by a crash, a kill, a full disk — is finished or rolled back on the next access or by `recover`, with
//! every file present exactly once.
//!
//! `<prearchive>/<P>/<TS>/.<FOLDER>.journal` lists every step; `.<FOLDER>.journal.xml` keeps the incoming
//! session document. Steps before the `committed` mark only rename files and are undone by renaming them
//! back; steps after it (catalog merges, documents, the log line, clean-up) are repeatable and are done
//! again until the `posted` mark. A numbered fault point after every step lets tests stop the process dead
//! at each one.
//!
//! The file is JSON Lines (version 3), one object per line, so that an administrator can read it and the
//! marks can be appended (each one line, then an fsync) without rewriting what is there:
//!
//! ```text
//! {"journal":"xnat-archive","version":3,"session":{"project":"P","timestamp":"20240101_120000000","folder":"MR1"},
//!  "project":"P","label":"MR1","target":"P/arc001/MR1","experiment":"XNAT_E00001",
//!  "subject":{"label":"SUBJ1","id":"XNAT_S00001"},"mode":"new","overwrite":"none","quarantine":false,
//!  "trigger":true,"scans":{"2":"2-MR1"}}                       (the header: one line in the file)
//! {"move":{"from":"P/20240101_120000000/MR1","to":"P/arc001/MR1"}}
//! {"moves":{"from":"P/20240101_120000000/MR1/SCANS/4/DICOM","to":"P/arc001/MR1/SCANS/4/DICOM","names":["1.dcm","2.dcm"]}}
//! {"backup":{"file":"P/arc001/MR1/…","to":"P/arc001/MR1/.~xnat-replaced-20240101_120000000/…"}}
//! {"merge-catalog":{"from":"P/20240101_120000000/MR1/…/scan_2_catalog.xml","into":"P/arc001/MR1/…"}}
//! {"mark":"committed"}
//! {"mark":"posted"}
//! ```
//!
//! A `moves` line is the moves of files that keep their names from one folder into another, in order (a merge's
//! thousands of files into a scan's folder: a line of up to 1,024 names instead of a line a file, a journal a
//! third the size). Version 2 (the same lines but `moves`) is read too.
//!
//! The session's project is `null` for Unassigned; `scans` maps incoming scan IDs to archived ones. Blank
//! lines are skipped; anything else that is not exactly this (an unknown key, step or mark, a path that could
//! leave its tree, an overwrite XNAT does not have) makes the whole journal corrupt, and nothing it lists is
//! done. A journal in the tab-separated line format 1 of earlier versions is recognised and refused with a
//! message that says so.

use crate::error::{Error, Result};
use crate::fs::moves::{MovePair, MoveStopped, PendingMoves};
use crate::fs::tree::{Kind, RelPath, Tree};
use crate::import::incoming::{CatalogRead, CatalogStats, FilesBelow, read_catalog_entries};
use crate::import::merge::{self, KnownFiles, Prepared, catalog_stats, merge_catalog};
use crate::import::plan::{Plan, Step};
use crate::import::prearchive::{Prearchive, SessionRef};
use crate::import::request::{Faults, Overwrite};
use crate::model::session::{self, SessionDoc};
use crate::site::layout::document_root;
use crate::site::names::relative_uri;
use crate::xml::{Element, Node};
use foldhash::{HashMap, HashSet};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::rc::Rc;

/// The `journal` and `version` of the header this version writes and reads.
const NAME: &str = "xnat-archive";
const VERSION: u32 = 3;

/// The versions this reads: 2 has no `moves` lines.
const VERSIONS_READ: std::ops::RangeInclusive<u32> = 2..=3;

/// The names a `moves` line lists at most.
const NAMES_PER_LINE: usize = 1024;
/// How many moves one call to the host makes at most (a checkpoint, which renews the locks, between calls).
const MOVES_AT_ONCE: usize = 1024;
/// How many moves are started on the host's thread and not finished, at most.
const MOVES_STARTED_AT_MOST: usize = 64 * MOVES_AT_ONCE;
/// The first line of the line format 1 of earlier versions: recognised only to say what the file is.
const FORMAT_1_MAGIC: &str = "xnat-archive-journal\t1";

/// What an archive of one session does, as written to its journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Journal {
    pub session: SessionRef,
    pub project: String,
    pub label: String,
    pub target: RelPath,
    pub experiment_id: String,
    pub subject_label: String,
    pub subject_id: String,
    pub merge: bool,
    pub overwrite: Overwrite,
    pub quarantine: bool,
    pub trigger_pipelines: bool,
    pub scan_ids: BTreeMap<String, String>,
    pub steps: Vec<Step>,
    pub committed: bool,
    pub posted: bool,
    /// `file_count` and `file_size` of catalogs in the archive (by path) that this run has already read with
    /// their folders' files: the incoming session's, looked at by the plan, and the catalogs it merged. Not
    /// written: a journal read from its file knows none, and every catalog is read again.
    pub known_stats: HashMap<RelPath, CatalogStats>,
    /// The archived catalogs this run's plan read, which the merges start from (see [`Plan::merge_reads`]).
    pub known_reads: KnownReads,
}

/// Readings of archived catalogs made by this run, and the files its plan saw: a cache, not part of what a
/// journal says (two journals are equal whatever they hold) and never written — a journal read from its file
/// knows none.
#[derive(Clone, Default)]
pub struct KnownReads {
    pub catalogs: HashMap<RelPath, Rc<CatalogRead>>,
    pub files: Option<Rc<KnownFiles>>,
}

impl std::fmt::Debug for KnownReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KnownReads({} catalogs)", self.catalogs.len())
    }
}

impl PartialEq for KnownReads {
    fn eq(&self, _: &KnownReads) -> bool {
        true
    }
}

impl Eq for KnownReads {}

/// Stops the process dead when the numbered point is reached (tests only).
pub struct Checkpoints {
    faults: Faults,
    seen: u32,
}

impl Checkpoints {
    pub fn new(faults: Faults) -> Self {
        Checkpoints { faults, seen: 0 }
    }

    /// The pause a test asked for; always `None` in builds without the `test-switches` feature.
    pub fn pause_ms(&self) -> Option<u64> {
        if cfg!(feature = "test-switches") { self.faults.pause_ms } else { None }
    }

    /// The pause a test asked for before the first file moves; always `None` without `test-switches`.
    pub fn pause_before_moves_ms(&self) -> Option<u64> {
        if cfg!(feature = "test-switches") { self.faults.pause_before_moves_ms } else { None }
    }

    /// How many steps may be done between two checkpoints, of `wanted`: one when a test stops the process
    /// at a numbered point, so that it can stop after every step.
    pub fn steps_at_once(&self, wanted: usize) -> usize {
        if cfg!(feature = "test-switches") && self.faults.point.is_some() { 1 } else { wanted.max(1) }
    }

    /// One step done: renews the leases of the locks held (an error: a lock was lost, stop here), and in
    /// tests stops the process dead at the chosen point.
    pub fn pass(&mut self) -> Result<()> {
        self.seen += 1;
        // A kill: no unwinding, no clean-up, nothing after this point runs. Test builds only.
        if cfg!(feature = "test-switches") && self.faults.point == Some(self.seen) {
            std::process::exit(86);
        }
        crate::fs::lock::Lock::renew_due()
    }
}

impl Journal {
    /// The journal of `plan`, whose steps and readings it takes (a merge's 10,000 steps are moved, not copied).
    pub fn from_plan(
        plan: &mut Plan,
        experiment_id: String,
        subject_id: String,
        params: &crate::import::request::Params,
    ) -> Self {
        Journal {
            session: plan.session.clone(),
            project: plan.project.clone(),
            label: plan.label.clone(),
            target: plan.target.clone(),
            experiment_id,
            subject_label: plan.subject.as_ref().map(|s| s.label.clone()).unwrap_or_default(),
            subject_id,
            merge: plan.existing.is_some(),
            overwrite: params.overwrite,
            quarantine: params.quarantine,
            trigger_pipelines: params.trigger_pipelines,
            scan_ids: plan.scan_ids.clone(),
            steps: if plan.existing.is_some() {
                std::mem::take(&mut plan.steps)
            } else {
                vec![Step::Move { from: plan.session.dir(), to: plan.target.clone() }]
            },
            committed: false,
            posted: false,
            // A new experiment is the session folder moved whole: its catalogs and files are where the plan
            // saw them, below the target.
            known_stats: if plan.existing.is_some() { HashMap::default() } else { plan.incoming_stats(&plan.target) },
            known_reads: KnownReads { catalogs: std::mem::take(&mut plan.merge_reads), files: plan.merge_files.take() },
        }
    }

    /// The journal's text: the header line, a line per step, a line per mark already passed.
    fn encode(&self) -> String {
        // One buffer for every line (a merge lists a step per file), each step's paths borrowed.
        let mut text = Vec::with_capacity(256 + self.steps.len() * 64);
        push_line(&mut text, &self.header());
        let mut rest = self.steps.as_slice();
        while let Some(step) = rest.first() {
            match same_folder_moves(rest) {
                Some((from, to, names)) if names.len() > 1 => {
                    rest = &rest[names.len()..];
                    push_line(&mut text, &Entry::Moves { from, to, names });
                }
                _ => {
                    rest = &rest[1..];
                    push_line(&mut text, &Entry::from(step));
                }
            }
        }
        for (passed, mark) in [(self.committed, Mark::Committed), (self.posted, Mark::Posted)] {
            if passed {
                push_line(&mut text, &Entry::<&str>::Mark(mark));
            }
        }
        String::from_utf8(text).expect("serde_json writes UTF-8")
    }

    /// The first line's fields, as they are written.
    fn header(&self) -> Header {
        let s = &self.session;
        Header {
            journal: NAME.into(),
            version: VERSION,
            session: SessionFields {
                project: s.project.clone(),
                timestamp: s.timestamp.clone(),
                folder: s.folder.clone(),
            },
            project: self.project.clone(),
            label: self.label.clone(),
            target: self.target.as_str().into(),
            experiment: self.experiment_id.clone(),
            subject: SubjectFields { label: self.subject_label.clone(), id: self.subject_id.clone() },
            mode: if self.merge { Mode::Merge } else { Mode::New },
            overwrite: self.overwrite.as_str().into(),
            quarantine: self.quarantine,
            trigger: self.trigger_pipelines,
            scans: self.scan_ids.clone(),
        }
    }

    /// Reads a journal's text (the fuzz target's entry point; [`Journal::read`] reads it from a session).
    pub fn parse(text: &str) -> Result<Journal> {
        Journal::decode(text)
    }

    /// The header, then the steps and marks; every error names its line (counted from 1, blank ones too).
    fn decode(text: &str) -> Result<Journal> {
        let mut lines = text.lines().zip(1..).filter(|(line, _)| !line.trim().is_empty());
        let Some((first, n)) = lines.next() else {
            return Err(corrupt(1, "there is no header line (the file is empty)"));
        };
        let mut journal = read_header(first).and_then(Journal::from_header).map_err(|why| corrupt(n, why))?;
        for (line, n) in lines {
            match serde_json::from_str::<Entry>(line).map_err(|e| corrupt(n, json_error(&e)))? {
                Entry::Mark(Mark::Committed) => journal.committed = true,
                Entry::Mark(Mark::Posted) => journal.posted = true,
                entry => entry.push_steps(&mut journal.steps).map_err(|why| corrupt(n, why))?,
            }
        }
        Ok(journal)
    }

    /// The journal a header describes, every name checked; no steps or marks yet.
    fn from_header(h: Header) -> std::result::Result<Journal, String> {
        let s = &h.session;
        let session = SessionRef::new(s.project.as_deref(), &s.timestamp, &s.folder)
            .map_err(|e| format!("session: {}", e.message()))?;
        let overwrite = Overwrite::parse(&h.overwrite)
            .ok_or_else(|| format!("overwrite {:?} is none of \"none\", \"append\", \"delete\"", h.overwrite))?;
        Ok(Journal {
            session,
            project: h.project,
            label: h.label,
            target: checked_path("target", &h.target)?,
            experiment_id: h.experiment,
            subject_label: h.subject.label,
            subject_id: h.subject.id,
            merge: h.mode == Mode::Merge,
            overwrite,
            quarantine: h.quarantine,
            trigger_pipelines: h.trigger,
            scan_ids: h.scans,
            steps: Vec::new(),
            committed: false,
            posted: false,
            known_stats: HashMap::default(),
            known_reads: KnownReads::default(),
        })
    }

    /// Reads the journal of a session, if it has one. A journal that is not this session's, or that names
    /// any path outside this session's folder and its own destination experiment, is refused as corrupt
    /// and nothing it says is done: a journal planted or damaged cannot move anyone else's data.
    pub fn read(pre: &Tree, session: &SessionRef) -> Result<Option<Journal>> {
        match pre.read(&session.journal_file()) {
            Ok(bytes) => {
                let journal = Journal::decode(&String::from_utf8_lossy(&bytes))?;
                journal.confine(session).map_err(|why| {
                    Error::Corrupt(format!(
                        "the archive journal {} {why}; nothing it lists was touched — an administrator must look \
                         at it (move it aside to release the session)",
                        session.journal_file()
                    ))
                })?;
                Ok(Some(journal))
            }
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Checks that every path the journal names lies where an archive of `session` may touch: moves and
    /// catalog merges from inside the session's folder into the destination experiment, backups inside
    /// the experiment, and the experiment `<project>/arc###/<label>` of the journal's own project and label.
    fn confine(&self, session: &SessionRef) -> std::result::Result<(), String> {
        if self.session != *session {
            return Err(format!("belongs to another session ({})", self.session));
        }
        let t = &self.target;
        let arc = t.parent();
        let arc_ok =
            arc.name().strip_prefix("arc").is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        if t.name() != self.label || arc.parent().as_str() != self.project || !arc_ok {
            return Err(format!("names the destination {t}, which is not {}/arc###/{}", self.project, self.label));
        }
        let dir = session.dir();
        let inside = |p: &RelPath, base: &RelPath| p.strip_prefix(base).is_some();
        let backups = t.join(&format!(".~xnat-replaced-{}", session.timestamp)).map_err(|e| e.to_string())?;
        for step in &self.steps {
            let ok = match step {
                Step::Move { from, to } => inside(from, &dir) && inside(to, t),
                Step::Backup { file, to } => {
                    inside(file, t) && !inside(file, &backups) && inside(to, &backups) && to != &backups
                }
                Step::MergeCatalog { from, into } => inside(from, &dir) && inside(into, t) && into != t,
            };
            if !ok {
                return Err(format!("lists a step outside {dir} and {t}: {step:?}"));
            }
        }
        Ok(())
    }

    /// Writes the journal and the incoming document's copy, before anything moves.
    pub fn write(&self, pre: &Tree, incoming: &SessionDoc) -> Result<()> {
        pre.write_atomic(&snapshot(&self.session), incoming.to_xml().as_bytes())?;
        pre.write_atomic(&self.session.journal_file(), self.encode().as_bytes())
    }

    /// Appends one mark to the journal and syncs it to disk before anything after it runs.
    fn mark(&mut self, pre: &Tree, mark: Mark) -> Result<()> {
        let path = pre.path(&self.session.journal_file());
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(self.session.journal_file().as_str(), &e))?;
        let mut line = Vec::new();
        push_line(&mut line, &Entry::<&str>::Mark(mark));
        f.write_all(&line)
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io(self.session.journal_file().as_str(), &e))?;
        match mark {
            Mark::Committed => self.committed = true,
            Mark::Posted => self.posted = true,
        }
        Ok(())
    }

    /// Runs the journal from wherever it stands to the end. `cp` passes a fault point after every step.
    pub fn run(&mut self, pre: &Tree, arch: &Tree, cp: &mut Checkpoints) -> Result<String> {
        let mut prepared = HashMap::default();
        if !self.committed {
            // While the host moves the files, the merged catalogs are written beside the archived ones; then
            // what only that needed is freed (a merge of 10,000 files: ~3 ms of frees), still beside the moves.
            let mut known = std::mem::take(&mut self.known_reads);
            run_moves(&self.steps, pre, arch, cp, &mut || {
                prepared = self.prepare_merges(pre, arch, &known);
                known.files = None;
                known.catalogs.retain(|into, _| !prepared.contains_key(into));
            })?;
            self.known_reads = known;
            self.mark(pre, Mark::Committed)?;
            cp.pass()?;
        }
        if !self.posted {
            self.post(pre, arch, cp, prepared)?;
            self.mark(pre, Mark::Posted)?;
            cp.pass()?;
        }
        self.clean_up(pre, arch, cp)?;
        Ok(self.uri())
    }

    /// `/data/archive/projects/P/subjects/S/experiments/LABEL`.
    pub fn uri(&self) -> String {
        format!("/data/archive/projects/{}/subjects/{}/experiments/{}", self.project, self.subject_label, self.label)
    }

    /// The merges into archived catalogs this run's plan read, each written beside its catalog (see
    /// [`merge::prepare`]): a catalog two merges go into is left to the merges after the commit.
    fn prepare_merges<'t>(&self, pre: &Tree, arch: &'t Tree, reads: &KnownReads) -> HashMap<RelPath, Prepared<'t>> {
        let mut merges: HashMap<&RelPath, Vec<&RelPath>> = HashMap::default();
        for step in &self.steps {
            if let Step::MergeCatalog { from, into } = step {
                merges.entry(into).or_default().push(from);
            }
        }
        let replace = self.overwrite == Overwrite::Delete;
        let known = reads.files.as_ref().map(|files| merge::Moved::new(files, &self.session.dir(), &self.steps));
        let mut prepared = HashMap::default();
        for (into, from) in merges {
            if let ([from], Some(read)) = (from.as_slice(), reads.catalogs.get(into))
                && let Some(merge) = merge::prepare(pre, arch, from, into, replace, Rc::clone(read), known.as_ref())
            {
                prepared.insert(into.clone(), merge);
            }
        }
        prepared
    }

    /// After the commit: catalogs merged (or the merges `prepared`, put in place), the subject's and
    /// experiment's documents, the log line.
    fn post(
        &self,
        pre: &Tree,
        arch: &Tree,
        cp: &mut Checkpoints,
        mut prepared: HashMap<RelPath, Prepared>,
    ) -> Result<()> {
        let mut known = self.known_stats.clone();
        // Each reading serves the first merge into its catalog only: a second one reads what the first wrote.
        let mut reads = self.known_reads.catalogs.clone();
        let replace = self.overwrite == Overwrite::Delete;
        for step in &self.steps {
            if let Step::MergeCatalog { from, into } = step
                && let Some(stats) =
                    merge_catalog(pre, arch, from, into, replace, reads.remove(into), prepared.remove(into))?
            {
                known.insert(into.clone(), stats);
            }
        }
        cp.pass()?;
        let incoming = SessionDoc::parse(&pre.read(&snapshot(&self.session))?)
            .map_err(|why| crate::model::session::unreadable(snapshot(&self.session).as_str(), &why))?;
        let doc = self.experiment_document(arch, incoming, &known)?;
        let doc_path = self.target.parent().join(&format!("{}.xml", self.label))?;
        arch.write_atomic(&doc_path, doc.to_xml().as_bytes())?;
        cp.pass()?;
        let logs = self.target.join("logs")?;
        arch.create_dir_all(&logs)?;
        let line = format!(
            "{} archived {} as {} ({}), subject {} ({}), overwrite={}\n",
            crate::model::audit::Stamp::now(None, None).audit_date(),
            self.session.url(),
            self.label,
            self.experiment_id,
            self.subject_label,
            self.subject_id,
            self.overwrite.as_str()
        );
        let _ = arch.create_new(&logs.join(&format!("archive-{}.log", self.session.timestamp))?, line.as_bytes())?;
        cp.pass()?;
        Ok(())
    }

    /// The archived experiment's document: the existing one with the new scans added (merge), or the
    /// incoming one (new); IDs, subject and label set; URIs relative; stats recomputed.
    fn experiment_document(
        &self,
        arch: &Tree,
        incoming: SessionDoc,
        known: &HashMap<RelPath, CatalogStats>,
    ) -> Result<SessionDoc> {
        let doc_path = self.target.parent().join(&format!("{}.xml", self.label))?;
        let existing = match arch.kind(&doc_path)? {
            Some(Kind::File { .. }) => Some(SessionDoc::from_root(document_root(arch, &doc_path)?)),
            _ => None,
        };
        let mut doc = match (self.merge, existing) {
            (true, Some(doc)) => self.merged_scans(doc, &incoming),
            _ => self.renumbered(incoming),
        };
        doc.set_attr("ID", &self.experiment_id);
        doc.set_attr("project", &self.project);
        doc.set_attr("label", &self.label);
        doc.remove_field("prearchivePath");
        doc.set_field("subject_ID", &self.subject_id, session::after("subject_ID"));
        if self.quarantine {
            doc.set_custom_field("quarantine", "true");
        }
        if !self.trigger_pipelines {
            doc.set_custom_field("triggerPipelines", "false");
        }
        recompute_stats(arch, &self.target, doc.root_mut(), known)?;
        Ok(doc)
    }

    /// The existing document with the incoming scans merged in: new scans added, and the resources an
    /// existing scan lacks added to it (URIs made relative to the experiment, scans renamed).
    fn merged_scans(&self, mut doc: SessionDoc, incoming: &SessionDoc) -> SessionDoc {
        let dir = self.session.dir();
        for scan in incoming.scans() {
            let new_id = self.scan_ids.get(&scan.id).cloned().unwrap_or(scan.id.clone());
            let Some(el) = incoming.scan_element(&scan.id) else { continue };
            let mut el = el.clone();
            el.set_attr("ID", &new_id);
            rewrite_uris(&mut el, &dir, &self.scan_ids);
            if doc.scan_element(&new_id).is_none() {
                doc.push_scan(el);
            } else if let Some(target) = doc.scan_mut(&new_id) {
                let labels: Vec<String> =
                    target.elements().filter_map(|f| f.attr("label").map(str::to_string)).collect();
                for f in el.elements().filter(|f| f.local_name() == "file") {
                    if !f.attr("label").is_some_and(|l| labels.iter().any(|x| x == l)) {
                        target.children.push(Node::Element(f.clone()));
                    }
                }
            }
        }
        doc
    }

    /// The incoming document as the new experiment's: URIs relative to it, scans renamed.
    fn renumbered(&self, mut doc: SessionDoc) -> SessionDoc {
        rewrite_uris(doc.root_mut(), &self.session.dir(), &self.scan_ids);
        for scan in doc.scans() {
            if let Some(new) = self.scan_ids.get(&scan.id)
                && *new != scan.id
                && let Some(el) = doc.scan_mut(&scan.id)
            {
                el.set_attr("ID", new);
            }
        }
        doc
    }

    /// Removes the prearchive copy, backups, the journal; the lock goes last.
    fn clean_up(&self, pre: &Tree, arch: &Tree, cp: &mut Checkpoints) -> Result<()> {
        let s = &self.session;
        if pre.kind(&s.dir())?.is_some() {
            pre.remove_dir_all(&s.dir())?;
        }
        cp.pass()?;
        for step in &self.steps {
            if let Step::Backup { to, .. } = step
                && arch.kind(&to.parent())?.is_some()
            {
                let root = self.target.join(&format!(".~xnat-replaced-{}", s.timestamp))?;
                if arch.kind(&root)?.is_some() {
                    arch.remove_dir_all(&root)?;
                }
            }
        }
        for f in [s.document(), s.status_file(), snapshot(s)] {
            match pre.remove_file(&f) {
                Ok(()) | Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        pre.remove_file(&s.journal_file())?;
        cp.pass()?;
        Ok(())
    }

    /// Undoes the moves of an archive that did not reach its commit: every file goes back.
    pub fn roll_back(&self, pre: &Tree, arch: &Tree) -> Result<()> {
        for step in self.steps.iter().rev() {
            match step {
                Step::Move { from, to } => {
                    if pre.kind(from)?.is_none() && arch.kind(to)?.is_some() {
                        pre.create_dir_all(&from.parent())?;
                        arch.rename_to(to, pre, from)?;
                    }
                }
                Step::Backup { file, to } => {
                    if arch.kind(file)?.is_none() && arch.kind(to)?.is_some() {
                        arch.rename_to(to, arch, file)?;
                    }
                }
                Step::MergeCatalog { .. } => {}
            }
        }
        // Folders the moves created and left empty.
        if self.merge {
            remove_empty_dirs(arch, &self.target)?;
        }
        for f in [snapshot(&self.session), self.session.journal_file()] {
            match pre.remove_file(&f) {
                Ok(()) | Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// The steps before the commit: moves (those that follow one another as a batch, as many at once as the
/// checkpoints allow) and backups, in order, each batch or backup followed by a checkpoint. Batches of moves
/// are started on the host's thread one after another, up to a backup (which waits for them) or the end;
/// `while_moving` runs once, while the last ones move.
fn run_moves(
    steps: &[Step],
    pre: &Tree,
    arch: &Tree,
    cp: &mut Checkpoints,
    while_moving: &mut dyn FnMut(),
) -> Result<()> {
    // The folders this run made or found: thousands of files moving into one folder make it once.
    // (One removed behind our back fails the rename; the journal then runs again from there.)
    let mut folders: HashSet<RelPath> = HashSet::default();
    let mut pending: VecDeque<PendingMoves> = VecDeque::new();
    let mut last = RelPath::root();
    let mut folder_of = |to: &RelPath| -> Result<()> {
        // Moves come folder by folder: most go where the one before went.
        if !last.is_root() && to.split_name().0 == last.as_str() {
            return Ok(());
        }
        let parent = to.parent();
        if !folders.contains(&parent) {
            arch.create_dir_all(&parent)?;
            folders.insert(parent.clone());
        }
        last = parent;
        Ok(())
    };
    let mut i = 0;
    while i < steps.len() {
        match &steps[i] {
            Step::Move { .. } => {
                let moves: Vec<MovePair> = steps[i..]
                    .iter()
                    .map_while(|step| match step {
                        Step::Move { from, to } => Some((from, to)),
                        _ => None,
                    })
                    .take(cp.steps_at_once(MOVES_AT_ONCE))
                    .collect();
                i += moves.len();
                for (_, to) in &moves {
                    folder_of(to)?;
                }
                // Started pairs are bounded (the host's own bound is twice this).
                while pending.iter().map(|p| p.pairs().len()).sum::<usize>() >= MOVES_STARTED_AT_MOST {
                    finish_moves(pre, arch, &mut pending, cp)?;
                }
                pending.push_back(pre.start_moves_new(arch, moves));
                if cp.steps_at_once(2) == 1 {
                    // A test stops the process after a numbered step: one batch at a time.
                    finish_moves(pre, arch, &mut pending, cp)?;
                }
            }
            Step::Backup { file, to } => {
                i += 1;
                while !pending.is_empty() {
                    finish_moves(pre, arch, &mut pending, cp)?;
                }
                if arch.kind(file)?.is_some() && arch.kind(to)?.is_none() {
                    folder_of(to)?;
                    arch.rename_to(file, arch, to)?;
                }
                cp.pass()?;
            }
            Step::MergeCatalog { .. } => i += 1,
        }
    }
    while_moving();
    while !pending.is_empty() {
        finish_moves(pre, arch, &mut pending, cp)?;
    }
    Ok(())
}

/// The first batch of moves started, finished (past files already moved: [`moved_past`]), then a checkpoint.
fn finish_moves(pre: &Tree, arch: &Tree, pending: &mut VecDeque<PendingMoves>, cp: &mut Checkpoints) -> Result<()> {
    if let Some(moves) = pending.pop_front() {
        let pairs = moves.pairs().to_vec();
        if let Err(stopped) = moves.finish() {
            moved_past(pre, arch, &pairs, stopped)?;
        }
        cp.pass()?;
    }
    Ok(())
}

/// After a batch of `moves` stopped: moves never replace a file, so a file already moved (by an earlier run of
/// this journal, cut short) is passed over and the rest moved; anything at a destination stops the archive.
fn moved_past(pre: &Tree, arch: &Tree, moves: &[MovePair], stopped: MoveStopped) -> Result<()> {
    let (mut rest, mut stopped) = (moves, stopped);
    loop {
        let MoveStopped { index, error } = stopped;
        match (error, rest.get(index)) {
            (Error::NotFound(_), Some((from, _))) if pre.kind(from)?.is_none() => rest = &rest[index + 1..],
            (Error::Conflict(_), Some((_, to))) => {
                return Err(Error::Conflict(format!(
                    "{to} appeared in the archive during the archive; nothing was replaced"
                )));
            }
            (e, _) => return Err(e),
        }
        match pre.move_files_new(arch, rest) {
            Ok(()) => return Ok(()),
            Err(next) => stopped = next,
        }
    }
}

/// The journal's first line, as it is in the file: plain strings, checked when made into a [`Journal`].
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    journal: String,
    version: u32,
    session: SessionFields,
    project: String,
    label: String,
    target: String,
    experiment: String,
    subject: SubjectFields,
    mode: Mode,
    overwrite: String,
    quarantine: bool,
    trigger: bool,
    scans: BTreeMap<String, String>,
}

/// The header's `journal` and `version` alone (any other field ignored), read first to name another version.
#[derive(Deserialize)]
struct Identity {
    journal: String,
    version: u32,
}

/// The prearchive session the journal belongs to (`project` null: Unassigned).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionFields {
    project: Option<String>,
    timestamp: String,
    folder: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubjectFields {
    label: String,
    id: String,
}

/// A new experiment, or scans merged into an existing one.
#[derive(Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Mode {
    New,
    Merge,
}

/// Every line after the header: one step of the plan, or a mark appended as the run passes it.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
enum Entry<S = String> {
    Move {
        from: S,
        to: S,
    },
    /// Moves of the files `names` from the folder `from` into the folder `to`, in order.
    Moves {
        from: S,
        to: S,
        names: Vec<S>,
    },
    Backup {
        file: S,
        to: S,
    },
    MergeCatalog {
        from: S,
        into: S,
    },
    Mark(Mark),
}

/// The marks, in the order a run passes them.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Mark {
    /// Every rename is done: from here on the archive is finished, never rolled back.
    Committed,
    /// Catalogs, documents and the log line are written: only the clean-up is left.
    Posted,
}

impl<'s> From<&'s Step> for Entry<&'s str> {
    fn from(step: &'s Step) -> Entry<&'s str> {
        let s = |p: &'s RelPath| p.as_str();
        match step {
            Step::Move { from, to } => Entry::Move { from: s(from), to: s(to) },
            Step::Backup { file, to } => Entry::Backup { file: s(file), to: s(to) },
            Step::MergeCatalog { from, into } => Entry::MergeCatalog { from: s(from), into: s(into) },
        }
    }
}

impl Entry {
    /// Appends the steps this line names (one, or a `moves` line's run of moves), their paths checked (a
    /// mark is no step).
    fn push_steps(self, steps: &mut Vec<Step>) -> std::result::Result<(), String> {
        let step = match self {
            Entry::Move { from, to } => Step::Move { from: checked_path("from", &from)?, to: checked_path("to", &to)? },
            Entry::Backup { file, to } => {
                Step::Backup { file: checked_path("file", &file)?, to: checked_path("to", &to)? }
            }
            Entry::MergeCatalog { from, into } => {
                Step::MergeCatalog { from: checked_path("from", &from)?, into: checked_path("into", &into)? }
            }
            Entry::Moves { from, to, names } => return push_moves(&from, &to, &names, steps),
            Entry::Mark(mark) => return Err(format!("the mark {mark:?} is not a step")),
        };
        steps.push(step);
        Ok(())
    }
}

/// The longest run of moves at the start of `steps` (at most [`NAMES_PER_LINE`]) whose files keep their names from
/// one folder into one other: the two folders and the names, for a `moves` line; `None` when the first step is
/// no such move.
fn same_folder_moves(steps: &[Step]) -> Option<(&str, &str, Vec<&str>)> {
    fn split(step: &Step) -> Option<(&str, &str, &str)> {
        let Step::Move { from, to } = step else { return None };
        let ((from_dir, name), (to_dir, to_name)) = (from.split_name(), to.split_name());
        (name == to_name && !from_dir.is_empty() && !to_dir.is_empty()).then_some((from_dir, to_dir, name))
    }
    let (from, to, first) = split(steps.first()?)?;
    let mut names = vec![first];
    for step in &steps[1..] {
        match split(step) {
            Some((f, t, name)) if f == from && t == to && names.len() < NAMES_PER_LINE => names.push(name),
            _ => break,
        }
    }
    Some((from, to, names))
}

/// Appends the steps of a `moves` line: each name moved from the folder `from` into the folder `to`.
fn push_moves(from: &str, to: &str, names: &[String], steps: &mut Vec<Step>) -> std::result::Result<(), String> {
    if names.is_empty() {
        return Err("a moves line names no file".into());
    }
    let (from, to) = (checked_path("from", from)?, checked_path("to", to)?);
    let named = |folder: &RelPath, name: &str| folder.join(name).map_err(|e| format!("name {name:?}: {}", e.message()));
    steps.reserve(names.len());
    for name in names {
        steps.push(Step::Move { from: named(&from, name)?, to: named(&to, name)? });
    }
    Ok(())
}

/// The header line read: a JSON object naming this journal format, of the version this reads.
fn read_header(line: &str) -> std::result::Result<Header, String> {
    if line == FORMAT_1_MAGIC {
        return Err("this journal was written by an earlier xnat-archive (line format 1), which this version \
                    does not read; nothing it lists was touched — finish it with that earlier version's \
                    `recover`, or move it aside to release the session"
            .into());
    }
    // What the file is, before its fields: a journal of another version may well have other fields.
    if let Ok(id) = serde_json::from_str::<Identity>(line) {
        if id.journal != NAME {
            return Err(format!("not an {NAME} journal (\"journal\":{:?})", id.journal));
        }
        if !VERSIONS_READ.contains(&id.version) {
            return Err(format!(
                "version {} is not one this xnat-archive reads ({} to {})",
                id.version,
                VERSIONS_READ.start(),
                VERSIONS_READ.end()
            ));
        }
    }
    serde_json::from_str(line).map_err(|e| format!("header: {}", json_error(&e)))
}

/// A path the journal names, checked as every path in a tree is.
fn checked_path(what: &str, path: &str) -> std::result::Result<RelPath, String> {
    RelPath::new(path).map_err(|e| format!("{what} {path:?}: {}", e.message()))
}

/// One line of the journal at the end of `out`: the value as compact JSON (which escapes every control
/// character), then `\n`.
fn push_line<T: Serialize>(out: &mut Vec<u8>, value: &T) {
    serde_json::to_writer(&mut *out, value)
        .expect("a journal line is strings, numbers, booleans and string-keyed maps");
    out.push(b'\n');
}

/// serde_json's message without its position: every line is one JSON text, so its own line is always 1.
fn json_error(e: &serde_json::Error) -> String {
    let message = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    match message.strip_suffix(&position) {
        Some(m) => format!("{m} (column {})", e.column()),
        None => message,
    }
}

fn corrupt(line: usize, why: impl std::fmt::Display) -> Error {
    Error::Corrupt(format!("archive journal cannot be read: line {line}: {why}"))
}

/// The copy of the incoming document kept with the journal.
fn snapshot(s: &SessionRef) -> RelPath {
    s.timestamp_dir().join(&format!(".{}.journal.xml", s.folder)).expect("checked")
}

/// Removes empty folders below `dir` (not `dir` itself).
fn remove_empty_dirs(tree: &Tree, dir: &RelPath) -> Result<()> {
    if !tree.is_dir(dir)? {
        return Ok(());
    }
    for (name, kind) in tree.list(dir)? {
        if kind == Kind::Dir {
            let p = dir.join(&name)?;
            remove_empty_dirs(tree, &p)?;
            tree.remove_dir_if_empty(&p)?;
        }
    }
    Ok(())
}

/// Resource URIs made relative to the session folder (D15), renamed scans' catalogs renamed.
fn rewrite_uris(el: &mut Element, session_dir: &RelPath, scan_ids: &BTreeMap<String, String>) {
    if let Some(uri) = el.attr("URI").map(str::to_string)
        && let Some(rel) = relative_uri(&uri, session_dir)
    {
        el.set_attr("URI", crate::import::plan::map_path(&rel, scan_ids));
    }
    for c in el.elements_mut() {
        rewrite_uris(c, session_dir, scan_ids);
    }
}

/// `file_count`/`file_size` of every resource element from its catalog: entries whose file exists (`known`:
/// those of catalogs this run has read already).
fn recompute_stats(
    arch: &Tree,
    target: &RelPath,
    el: &mut Element,
    known: &HashMap<RelPath, CatalogStats>,
) -> Result<()> {
    if let Some(uri) = el.attr("URI").map(str::to_string)
        && !uri.starts_with('/')
        && let Ok(cat_path) = target.join_path(uri.trim_start_matches("./"))
    {
        let stats = match known.get(&cat_path) {
            Some(stats) => Some(*stats),
            None => match read_catalog_entries(arch, &cat_path) {
                Ok(Some(entries)) => {
                    let files = FilesBelow::list(arch, &cat_path.parent())?;
                    Some(catalog_stats(arch, &files, entries.iter().map(|(uri, _, _)| uri.as_str()))?)
                }
                _ => None,
            },
        };
        if let Some((count, size)) = stats {
            el.set_attr("file_count", count.to_string());
            el.set_attr("file_size", size.to_string());
        }
    }
    for c in el.elements_mut() {
        recompute_stats(arch, target, c, known)?;
    }
    Ok(())
}

/// Every session with a journal, whether its folder is still there or not.
pub fn journaled_sessions(pre: &Tree) -> Result<Vec<SessionRef>> {
    Prearchive::new(pre).sessions_with(".journal")
}

/// Finishes (after its commit) or rolls back (before it) the interrupted archive of `session`.
/// The caller holds the session's lock.
pub fn recover_session(pre: &Tree, arch: &Tree, session: &SessionRef) -> Result<Option<(String, String)>> {
    let Some(mut journal) = Journal::read(pre, session)? else { return Ok(None) };
    let mut cp = Checkpoints::new(Faults::default());
    if journal.committed {
        let uri = journal.run(pre, arch, &mut cp)?;
        Ok(Some(("completed".into(), uri)))
    } else {
        journal.roll_back(pre, arch)?;
        let prearchive = Prearchive::new(pre);
        prearchive.log(session, "An interrupted archive was rolled back; the session is as it was before it.")?;
        Ok(Some(("rolled-back".into(), format!("{} is back in the prearchive", session.url()))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const TS: &str = "20240101_000000000";

    fn path(p: &str) -> RelPath {
        RelPath::new(p).unwrap()
    }

    fn mv(from: &str, to: &str) -> Step {
        Step::Move { from: path(from), to: path(to) }
    }

    fn backup(file: &str, to: &str) -> Step {
        Step::Backup { file: path(file), to: path(to) }
    }

    fn merge_catalog(from: &str, into: &str) -> Step {
        Step::MergeCatalog { from: path(from), into: path(into) }
    }

    /// A journal of the session `P/20240101_000000000/S1` into `target` with these steps, as `write` puts it.
    fn journal(target: &str, steps: &[Step]) -> Journal {
        Journal {
            session: SessionRef::new(Some("P"), TS, "S1").unwrap(),
            project: "P".into(),
            label: "S1".into(),
            target: path(target),
            experiment_id: "XNAT_E00001".into(),
            subject_label: "SUBJ1".into(),
            subject_id: "XNAT_S00001".into(),
            merge: false,
            overwrite: Overwrite::None,
            quarantine: false,
            trigger_pipelines: true,
            scan_ids: BTreeMap::new(),
            steps: steps.to_vec(),
            committed: false,
            posted: false,
            known_stats: HashMap::default(),
            known_reads: KnownReads::default(),
        }
    }

    /// A merge journal whose every name holds spaces, `%`, tabs, newlines, quotes and non-ASCII,
    /// with one step of each kind.
    fn odd_journal() -> Journal {
        let folder = "MR 1 %41\t\"ü\"\n";
        let session = SessionRef::new(Some("P_1"), TS, folder).unwrap();
        let dir = session.dir();
        let target = path("P_1/arc001").join(folder).unwrap();
        let under = |base: &RelPath, rel: &str| base.join_path(rel).unwrap();
        let replaced = format!(".~xnat-replaced-{TS}/SCANS/2 %2F/a\t\"1\".dcm");
        Journal {
            session,
            project: "P_1".into(),
            label: folder.into(),
            experiment_id: "XNAT_E\t\"00001\"".into(),
            subject_label: "Sübject 1 %20\n".into(),
            subject_id: "XNAT_S00001".into(),
            merge: true,
            overwrite: Overwrite::Delete,
            quarantine: true,
            trigger_pipelines: false,
            scan_ids: BTreeMap::from([("2 %2F".into(), "2 %2F-\"MR\"\t1".into()), ("ß".into(), "ß".into())]),
            steps: vec![
                Step::Move { from: under(&dir, "SCANS/2 %2F/a\t\"1\".dcm"), to: under(&target, "SCANS/2/é\n.dcm") },
                Step::Backup { file: under(&target, "SCANS/2 %2F/a\t\"1\".dcm"), to: under(&target, &replaced) },
                Step::MergeCatalog { from: under(&dir, "SCANS/2/cat %.xml"), into: under(&target, "SCANS/2/cat.xml") },
            ],
            target,
            committed: false,
            posted: false,
            known_stats: HashMap::default(),
            known_reads: KnownReads::default(),
        }
    }

    /// A prearchive and an archive in a temporary folder, the odd journal written as an archive writes it.
    fn written_odd_journal(d: &tempfile::TempDir) -> (Tree, Journal) {
        let pre = Tree::new(d.path().join("pre"));
        let mut j = odd_journal();
        fs::create_dir_all(pre.path(&j.session.dir())).unwrap();
        let doc = SessionDoc::parse(br#"<xnat:MRSession xmlns:xnat="http://nrg.wustl.edu/xnat"/>"#).unwrap();
        j.write(&pre, &doc).unwrap();
        j.mark(&pre, Mark::Committed).unwrap();
        j.mark(&pre, Mark::Posted).unwrap();
        (pre, j)
    }

    /// Without the `test-switches` feature (every build but the end-to-end tests'), a fault point or a pause
    /// asked for is ignored: a release host or server can never be stopped dead or slowed by them.
    #[cfg(not(feature = "test-switches"))]
    #[test]
    fn release_builds_ignore_the_test_switches() {
        let mut cp =
            Checkpoints::new(Faults { point: Some(1), pause_ms: Some(60_000), pause_before_moves_ms: Some(60_000) });
        for _ in 0..3 {
            cp.pass().unwrap();
        }
        assert_eq!(cp.pause_ms(), None);
        assert_eq!(cp.pause_before_moves_ms(), None);
    }

    #[test]
    fn odd_names_survive_write_marks_and_read() {
        let d = tempfile::tempdir().unwrap();
        let (pre, j) = written_odd_journal(&d);
        assert!(j.committed && j.posted);
        let read = Journal::read(&pre, &j.session).unwrap().expect("the journal is there");
        assert_eq!(read, j);
        assert_eq!(Journal::parse(&j.encode()).unwrap(), j);
        let before_marks = Journal { committed: false, posted: false, ..j.clone() };
        assert_eq!(Journal::parse(&before_marks.encode()).unwrap(), before_marks);
    }

    #[test]
    fn the_file_is_one_json_object_per_line() {
        let d = tempfile::tempdir().unwrap();
        let (pre, j) = written_odd_journal(&d);
        let text = String::from_utf8(pre.read(&j.session.journal_file()).unwrap()).unwrap();
        assert!(text.ends_with("}\n"), "{text}");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1 + j.steps.len() + 2, "{text}");
        let values: Vec<serde_json::Value> =
            lines.iter().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect();
        assert!(values.iter().all(serde_json::Value::is_object), "{text}");
        let header = &values[0];
        assert_eq!((&header["journal"], &header["version"]), (&"xnat-archive".into(), &3.into()));
        assert_eq!(header["session"]["folder"], j.session.folder.as_str());
        assert_eq!(header["subject"]["label"], j.subject_label.as_str());
        assert_eq!(
            (&header["mode"], &header["overwrite"], &header["trigger"]),
            (&"merge".into(), &"delete".into(), &false.into())
        );
        assert_eq!(header["scans"]["2 %2F"], "2 %2F-\"MR\"\t1");
        let tags: Vec<&str> =
            values[1..].iter().map(|v| v.as_object().unwrap().keys().next().unwrap().as_str()).collect();
        assert_eq!(tags, ["move", "backup", "merge-catalog", "mark", "mark"]);
        assert_eq!(values[1]["move"]["to"], j.target.join_path("SCANS/2/é\n.dcm").unwrap().as_str());
        assert_eq!(lines[4..], [r#"{"mark":"committed"}"#, r#"{"mark":"posted"}"#]);
    }

    #[test]
    fn every_malformed_line_is_a_corrupt_journal_naming_the_line() {
        let good = journal("P/arc001/S1", &[mv("P/20240101_000000000/S1", "P/arc001/S1")]).encode();
        let header = good.lines().next().unwrap();
        let with = |line: &str| format!("{good}\n{line}\n{{\"mark\":\"committed\"}}\n");
        for (text, line, why) in [
            (with(r#"{"move":{"from":"P/20240101_000000000/S1","#), 4, "EOF while parsing"),
            (with("move\tP/20240101_000000000/S1\tP/arc001/S1"), 4, "expected value"),
            (good.replace(r#""trigger":true"#, r#""trigger":true,"priority":1"#), 1, "unknown field `priority`"),
            (
                with(r#"{"move":{"from":"P/20240101_000000000/S1/a","to":"P/arc001/S1/a","mode":"x"}}"#),
                4,
                "unknown field `mode`",
            ),
            (with(r#"{"delete":{"file":"P/arc001/S1/a"}}"#), 4, "unknown variant `delete`"),
            (with(r#"{"mark":"abandoned"}"#), 4, "unknown variant `abandoned`"),
            (
                with(r#"{"move":{"from":"P/20240101_000000000/S1/../../../etc","to":"P/arc001/S1/etc"}}"#),
                4,
                "from \"P/",
            ),
            (with(r#"{"backup":{"file":"/etc/passwd","to":"P/arc001/S1/x"}}"#), 4, "not a plain file or folder name"),
            (good.replace(r#""overwrite":"none""#, r#""overwrite":"replace""#), 1, "overwrite \"replace\""),
            (good.replace(r#""version":3"#, r#""version":4,"signed":true"#), 1, "version 4 is not one"),
            (
                good.replace(r#""version":3"#, r#""version":1"#),
                1,
                "version 1 is not one this xnat-archive reads (2 to 3)",
            ),
            (
                with(r#"{"moves":{"from":"P/20240101_000000000/S1/1","to":"P/arc001/S1/1","names":[]}}"#),
                4,
                "names no file",
            ),
            (
                with(r#"{"moves":{"from":"P/20240101_000000000/S1/1","to":"P/arc001/S1/1","names":["a","../../x"]}}"#),
                4,
                "name \"../../x\"",
            ),
            (
                with(r#"{"moves":{"from":"P/20240101_000000000/S1/1","to":"P/arc001/S1/1","names":["a/b"]}}"#),
                4,
                "name \"a/b\"",
            ),
            (
                with(r#"{"moves":{"from":"P/20240101_000000000/S1/1","to":"P/arc001/S1/1"}}"#),
                4,
                "missing field `names`",
            ),
            (good.replace(r#""label":"S1","#, ""), 1, "missing field `label`"),
            (format!("{good}{header}\n"), 3, "unknown variant `journal`"),
            (String::new(), 1, "no header line"),
            (format!("xnat-archive-journal\t1\nsession\tP\t{TS}\tS1\n"), 1, "earlier xnat-archive (line format 1)"),
        ] {
            match Journal::parse(&text) {
                Err(Error::Corrupt(m)) => {
                    let at = format!("archive journal cannot be read: line {line}: ");
                    assert!(m.starts_with(&at) && m.contains(why), "{text:?}: {m}");
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
        // Blank lines are skipped (and counted), wherever they are.
        let spaced = format!("\n{}\n \n", good.replace('\n', "\n\n"));
        assert_eq!(Journal::parse(&spaced).unwrap(), Journal::parse(&good).unwrap());
    }

    /// A merge's moves into one folder are written a `moves` line of at most 1,024 names each, and read back as
    /// the same steps; a file renamed on its way, or another pair of folders, starts a line of its own.
    #[test]
    fn a_merges_moves_are_lines_of_names_and_read_back_as_they_were() {
        let (from, to) = ("P/20240101_000000000/S1/SCANS/1/DICOM", "P/arc001/S1/SCANS/1/DICOM");
        let mut steps: Vec<Step> =
            (0..2500).map(|i| mv(&format!("{from}/1.3.12.{i}.dcm"), &format!("{to}/1.3.12.{i}.dcm"))).collect();
        steps.insert(1200, mv(&format!("{from}/renamed.dcm"), &format!("{to}/other name.dcm")));
        steps.push(mv(&format!("{from}/x \"q\".dcm"), "P/arc001/S1/SCANS/2/DICOM/x \"q\".dcm"));
        steps.push(merge_catalog(&format!("{from}/c.xml"), &format!("{to}/c.xml")));
        let j = Journal { merge: true, ..journal("P/arc001/S1", &steps) };
        let text = j.encode();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let shape: Vec<(String, usize)> = lines[1..]
            .iter()
            .map(|v| {
                let (tag, value) = v.as_object().unwrap().iter().next().unwrap();
                (tag.clone(), value.get("names").and_then(|n| n.as_array()).map_or(1, Vec::len))
            })
            .collect();
        let expected: Vec<(String, usize)> = [
            ("moves", 1024),
            ("moves", 176),
            ("move", 1),
            ("moves", 1024),
            ("moves", 276),
            ("move", 1),
            ("merge-catalog", 1),
        ]
        .iter()
        .map(|(tag, n)| (tag.to_string(), *n))
        .collect();
        assert_eq!(shape, expected);
        assert_eq!(lines[1]["moves"]["from"], from);
        assert_eq!(lines[1]["moves"]["names"][3], "1.3.12.3.dcm");
        assert_eq!(Journal::parse(&text).unwrap(), j);
        assert!(text.len() < 2500 * 50, "a line a folder, not a line a file: {} bytes", text.len());
    }

    /// A journal an earlier version wrote (version 2: a `move` line a file) is still read, so that an archive it
    /// left cut short is finished or rolled back after an upgrade.
    #[test]
    fn a_version_2_journal_is_still_read() {
        let j = journal(
            "P/arc001/S1",
            &[
                mv("P/20240101_000000000/S1/1/a.dcm", "P/arc001/S1/1/a.dcm"),
                mv("P/20240101_000000000/S1/1/b.dcm", "P/arc001/S1/1/b.dcm"),
            ],
        );
        let header = j.encode().lines().next().unwrap().replace(r#""version":3"#, r#""version":2"#);
        let text = format!(
            "{header}\n{}\n{}\n{{\"mark\":\"committed\"}}\n",
            r#"{"move":{"from":"P/20240101_000000000/S1/1/a.dcm","to":"P/arc001/S1/1/a.dcm"}}"#,
            r#"{"move":{"from":"P/20240101_000000000/S1/1/b.dcm","to":"P/arc001/S1/1/b.dcm"}}"#
        );
        assert_eq!(Journal::parse(&text).unwrap(), Journal { committed: true, ..j });
    }

    #[test]
    fn a_journal_of_the_line_format_1_is_refused_untouched() {
        let d = tempfile::tempdir().unwrap();
        let pre = Tree::new(d.path());
        let s = SessionRef::new(Some("P"), TS, "S1").unwrap();
        fs::create_dir_all(d.path().join("P").join(TS).join("S1")).unwrap();
        let old = format!("xnat-archive-journal\t1\nsession\tP\t{TS}\tS1\ntarget\tP/arc001/S1\n");
        fs::write(pre.path(&s.journal_file()), &old).unwrap();
        match Journal::read(&pre, &s) {
            Err(Error::Corrupt(m)) => {
                assert!(m.contains("line format 1") && m.contains("nothing it lists was touched"), "{m}");
                assert!(m.contains("`recover`") && m.contains("move it aside"), "{m}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(fs::read_to_string(pre.path(&s.journal_file())).unwrap(), old);
    }

    #[test]
    fn a_planted_journal_moves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let (pre_dir, arch_dir) = (d.path().join("pre"), d.path().join("arch"));
        fs::create_dir_all(pre_dir.join("P/20240101_000000000/S1/SCANS/1")).unwrap();
        fs::write(pre_dir.join("P/20240101_000000000/S1/SCANS/1/a.dcm"), b"a").unwrap();
        fs::create_dir_all(arch_dir.join("OTHER/arc001/E9/SCANS/1")).unwrap();
        fs::write(arch_dir.join("OTHER/arc001/E9/SCANS/1/x.dcm"), b"precious").unwrap();
        let (pre, arch) = (Tree::new(&pre_dir), Tree::new(&arch_dir));
        let s = SessionRef::new(Some("P"), TS, "S1").unwrap();
        let snapshot = || std::process::Command::new("find").arg(d.path()).output().unwrap().stdout;
        for planted in [
            // Roll-back would "move back" another project's experiment into this session.
            journal("P/arc001/S1", &[mv("P/20240101_000000000/S1/SCANS", "OTHER/arc001/E9/SCANS")]),
            journal("OTHER/arc001/E9", &[mv("P/20240101_000000000/S1/SCANS", "OTHER/arc001/E9/SCANS")]),
            journal("P/arc001/S1", &[mv("P/20240101_000000000/S2", "P/arc001/S1/x")]),
            // A `moves` line into another project's scan folder.
            journal(
                "P/arc001/S1",
                &[
                    mv("P/20240101_000000000/S1/SCANS/1/a.dcm", "OTHER/arc001/E9/SCANS/1/a.dcm"),
                    mv("P/20240101_000000000/S1/SCANS/1/b.dcm", "OTHER/arc001/E9/SCANS/1/b.dcm"),
                ],
            ),
            journal(
                "P/arc001/S1",
                &[backup("OTHER/arc001/E9/SCANS/1/x.dcm", "P/arc001/S1/.~xnat-replaced-20240101_000000000/x")],
            ),
            journal("P/arc001/S1", &[backup("P/arc001/S1/a", "P/elsewhere/x")]),
            journal("P/arc001/S1", &[merge_catalog("P/20240101_000000000/S1/c.xml", "OTHER/arc001/E9/c.xml")]),
            journal("P/arcX/S1", &[]),
            Journal {
                session: SessionRef::new(Some("Q"), TS, "S1").unwrap(),
                committed: true,
                ..journal("P/arc001/S1", &[])
            },
        ]
        .map(|j| j.encode())
        {
            fs::write(pre_dir.join("P/20240101_000000000/.S1.journal"), &planted).unwrap();
            let before = snapshot();
            match recover_session(&pre, &arch, &s) {
                Err(Error::Corrupt(m)) => assert!(m.contains("nothing it lists was touched"), "{m}"),
                other => panic!("{planted}: {other:?}"),
            }
            assert_eq!(snapshot(), before, "{planted}");
        }
        // The journal of a real archive passes.
        fs::write(
            pre_dir.join("P/20240101_000000000/.S1.journal"),
            journal("P/arc001/S1", &[mv("P/20240101_000000000/S1", "P/arc001/S1")]).encode(),
        )
        .unwrap();
        assert!(Journal::read(&pre, &s).unwrap().is_some());
    }

    /// A merge's moves of the files of `S1/SCANS/1` into an existing scan folder of `P/arc001/S1`.
    fn merge_moves(d: &tempfile::TempDir, files: &[&str]) -> (Tree, Tree, Journal) {
        let (pre_dir, arch_dir) = (d.path().join("pre"), d.path().join("arch"));
        let scan = pre_dir.join("P/20240101_000000000/S1/SCANS/1");
        fs::create_dir_all(&scan).unwrap();
        fs::create_dir_all(arch_dir.join("P/arc001/S1/SCANS/1")).unwrap();
        for f in files {
            fs::write(scan.join(f), f.as_bytes()).unwrap();
        }
        let steps: Vec<Step> = files
            .iter()
            .map(|f| mv(&format!("P/20240101_000000000/S1/SCANS/1/{f}"), &format!("P/arc001/S1/SCANS/1/{f}")))
            .collect();
        (Tree::new(&pre_dir), Tree::new(&arch_dir), Journal { merge: true, ..journal("P/arc001/S1", &steps) })
    }

    #[test]
    fn a_file_that_appears_where_one_moves_stops_the_archive_and_is_never_replaced() {
        let d = tempfile::tempdir().unwrap();
        let (pre, arch, j) = merge_moves(&d, &["a.dcm", "b.dcm", "c.dcm"]);
        let intruder = d.path().join("arch/P/arc001/S1/SCANS/1/b.dcm");
        fs::write(&intruder, b"someone else's").unwrap();
        match run_moves(&j.steps, &pre, &arch, &mut Checkpoints::new(Faults::default()), &mut || {}) {
            Err(Error::Conflict(m)) => assert!(m.contains("b.dcm appeared in the archive"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(fs::read(&intruder).unwrap(), b"someone else's");
        j.roll_back(&pre, &arch).unwrap();
        for f in ["a.dcm", "b.dcm", "c.dcm"] {
            let back = d.path().join("pre/P/20240101_000000000/S1/SCANS/1").join(f);
            assert_eq!(fs::read(back).unwrap(), f.as_bytes(), "{f} is back where it was");
        }
        assert_eq!(fs::read(&intruder).unwrap(), b"someone else's", "the roll-back leaves it too");
    }

    #[test]
    fn moves_run_again_after_a_cut_pass_over_the_files_already_moved() {
        let d = tempfile::tempdir().unwrap();
        let files: Vec<String> = (0..MOVES_AT_ONCE + 10).map(|i| format!("f{i:05}.dcm")).collect();
        let names: Vec<&str> = files.iter().map(String::as_str).collect();
        let (pre, arch, j) = merge_moves(&d, &names);
        // Cut short after some of the first batch and one file of the second.
        let (pre_scan, arc_scan) =
            (d.path().join("pre/P/20240101_000000000/S1/SCANS/1"), d.path().join("arch/P/arc001/S1/SCANS/1"));
        for f in names.iter().take(100).chain([&names[MOVES_AT_ONCE + 3]]) {
            fs::rename(pre_scan.join(f), arc_scan.join(f)).unwrap();
        }
        run_moves(&j.steps, &pre, &arch, &mut Checkpoints::new(Faults::default()), &mut || {}).unwrap();
        assert_eq!(fs::read_dir(&pre_scan).unwrap().count(), 0, "everything moved");
        for f in &names {
            assert_eq!(fs::read(arc_scan.join(f)).unwrap(), f.as_bytes(), "{f}");
        }
    }
}
