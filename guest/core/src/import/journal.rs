//! The intent journal of an archive (D14): written before anything moves, so that an archive cut short —
//! by a crash, a kill, a full disk — is finished or rolled back on the next access or by `recover`, with
//! every file present exactly once.
//!
//! `<prearchive>/<P>/<TS>/.<FOLDER>.journal` lists every step; `.<FOLDER>.journal.xml` keeps the incoming
//! session document. Steps before the `committed` mark only rename files and are undone by renaming them
//! back; steps after it (catalog merges, documents, the log line, clean-up) are repeatable and are done
//! again until the `posted` mark. A numbered fault point after every step lets tests stop the process dead
//! at each one.

use crate::error::{Error, Result};
use crate::fs::tree::{Kind, RelPath, Tree};
use crate::import::plan::{Plan, Step};
use crate::import::prearchive::{Prearchive, SessionRef};
use crate::import::request::{Faults, Overwrite};
use crate::model::catalog::Catalog;
use crate::model::session::{self, SessionDoc};
use crate::site::layout::document_root;
use crate::site::names::relative_uri;
use crate::xml::{Element, Node};
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use std::collections::BTreeMap;
use std::io::Write;

const MAGIC: &str = "xnat-archive-journal\t1";
const FIELD: &AsciiSet = &CONTROLS.add(b'%').add(b'\t');

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
}

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
    pub fn from_plan(
        plan: &Plan,
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
                plan.steps.clone()
            } else {
                vec![Step::Move { from: plan.session.dir(), to: plan.target.clone() }]
            },
            committed: false,
            posted: false,
        }
    }

    fn encode(&self) -> String {
        let f = |s: &str| utf8_percent_encode(s, FIELD).to_string();
        let mut lines = vec![MAGIC.to_string()];
        let mut kv = |k: &str, vals: &[&str]| {
            let mut l = k.to_string();
            for v in vals {
                l.push('\t');
                l.push_str(&f(v));
            }
            lines.push(l);
        };
        let s = &self.session;
        kv("session", &[s.project_name(), &s.timestamp, &s.folder]);
        kv("project", &[&self.project]);
        kv("label", &[&self.label]);
        kv("target", &[self.target.as_str()]);
        kv("experiment", &[&self.experiment_id]);
        kv("subject", &[&self.subject_label, &self.subject_id]);
        kv("mode", &[if self.merge { "merge" } else { "new" }]);
        kv("overwrite", &[self.overwrite.as_str()]);
        kv("quarantine", &[&self.quarantine.to_string()]);
        kv("trigger", &[&self.trigger_pipelines.to_string()]);
        for (a, b) in &self.scan_ids {
            kv("scan", &[a, b]);
        }
        for step in &self.steps {
            match step {
                Step::Move { from, to } => kv("move", &[from.as_str(), to.as_str()]),
                Step::Backup { file, to } => kv("backup", &[file.as_str(), to.as_str()]),
                Step::MergeCatalog { from, into } => kv("mergecat", &[from.as_str(), into.as_str()]),
            }
        }
        lines.join("\n") + "\n"
    }

    /// Reads a journal's text (the fuzz target's entry point; [`Journal::read`] reads it from a session).
    pub fn parse(text: &str) -> Result<Journal> {
        Journal::decode(text)
    }

    fn decode(text: &str) -> Result<Journal> {
        let bad = |why: &str| Error::Corrupt(format!("archive journal cannot be read: {why}"));
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Err(bad("not a journal"));
        }
        let mut j = Journal {
            session: SessionRef { project: None, timestamp: String::new(), folder: String::new() },
            project: String::new(),
            label: String::new(),
            target: RelPath::root(),
            experiment_id: String::new(),
            subject_label: String::new(),
            subject_id: String::new(),
            merge: false,
            overwrite: Overwrite::None,
            quarantine: false,
            trigger_pipelines: true,
            scan_ids: BTreeMap::new(),
            steps: Vec::new(),
            committed: false,
            posted: false,
        };
        for line in lines {
            let mut parts = line.split('\t');
            let key = parts.next().unwrap_or("");
            let vals: Vec<String> = parts.map(|p| percent_decode_str(p).decode_utf8_lossy().into_owned()).collect();
            let v = |i: usize| vals.get(i).cloned().ok_or_else(|| bad(&format!("short line {key}")));
            let path = |i: usize| -> Result<RelPath> { RelPath::new(&v(i)?) };
            match key {
                "session" => j.session = SessionRef::new(Some(&v(0)?), &v(1)?, &v(2)?)?,
                "project" => j.project = v(0)?,
                "label" => j.label = v(0)?,
                "target" => j.target = path(0)?,
                "experiment" => j.experiment_id = v(0)?,
                "subject" => {
                    j.subject_label = v(0)?;
                    j.subject_id = v(1)?;
                }
                "mode" => j.merge = v(0)? == "merge",
                "overwrite" => j.overwrite = Overwrite::parse(&v(0)?).unwrap_or_default(),
                "quarantine" => j.quarantine = v(0)? == "true",
                "trigger" => j.trigger_pipelines = v(0)? == "true",
                "scan" => {
                    j.scan_ids.insert(v(0)?, v(1)?);
                }
                "move" => j.steps.push(Step::Move { from: path(0)?, to: path(1)? }),
                "backup" => j.steps.push(Step::Backup { file: path(0)?, to: path(1)? }),
                "mergecat" => j.steps.push(Step::MergeCatalog { from: path(0)?, into: path(1)? }),
                "committed" => j.committed = true,
                "posted" => j.posted = true,
                "" => {}
                other => return Err(bad(&format!("unknown line {other:?}"))),
            }
        }
        Ok(j)
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

    fn mark(&mut self, pre: &Tree, mark: &str) -> Result<()> {
        let path = pre.path(&self.session.journal_file());
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(self.session.journal_file().as_str(), &e))?;
        f.write_all(format!("{mark}\n").as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io(self.session.journal_file().as_str(), &e))?;
        match mark {
            "committed" => self.committed = true,
            "posted" => self.posted = true,
            _ => {}
        }
        Ok(())
    }

    /// Runs the journal from wherever it stands to the end. `cp` passes a fault point after every step.
    pub fn run(&mut self, pre: &Tree, arch: &Tree, cp: &mut Checkpoints) -> Result<String> {
        if !self.committed {
            for step in self.steps.clone() {
                match step {
                    Step::Move { from, to } => {
                        if pre.kind(&from)?.is_some() {
                            if let Some(Kind::File { .. }) = arch.kind(&to)? {
                                return Err(Error::Conflict(format!(
                                    "{to} appeared in the archive during the archive; nothing was replaced"
                                )));
                            }
                            arch.create_dir_all(&to.parent())?;
                            pre.rename_to(&from, arch, &to)?;
                        }
                    }
                    Step::Backup { file, to } => {
                        if arch.kind(&file)?.is_some() && arch.kind(&to)?.is_none() {
                            arch.create_dir_all(&to.parent())?;
                            arch.rename_to(&file, arch, &to)?;
                        }
                    }
                    Step::MergeCatalog { .. } => continue,
                }
                cp.pass()?;
            }
            self.mark(pre, "committed")?;
            cp.pass()?;
        }
        if !self.posted {
            self.post(pre, arch, cp)?;
            self.mark(pre, "posted")?;
            cp.pass()?;
        }
        self.clean_up(pre, arch, cp)?;
        Ok(self.uri())
    }

    /// `/data/archive/projects/P/subjects/S/experiments/LABEL`.
    pub fn uri(&self) -> String {
        format!("/data/archive/projects/{}/subjects/{}/experiments/{}", self.project, self.subject_label, self.label)
    }

    /// After the commit: catalogs merged, the subject's and experiment's documents, the log line.
    fn post(&self, pre: &Tree, arch: &Tree, cp: &mut Checkpoints) -> Result<()> {
        for step in &self.steps {
            if let Step::MergeCatalog { from, into } = step {
                merge_catalog(pre, arch, from, into, self.overwrite == Overwrite::Delete)?;
            }
        }
        cp.pass()?;
        let incoming = SessionDoc::parse(&pre.read(&snapshot(&self.session))?)
            .map_err(|why| crate::model::session::unreadable(snapshot(&self.session).as_str(), &why))?;
        let doc = self.experiment_document(arch, incoming)?;
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
    fn experiment_document(&self, arch: &Tree, incoming: SessionDoc) -> Result<SessionDoc> {
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
        recompute_stats(arch, &self.target, doc.root_mut())?;
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

/// `file_count`/`file_size` of every resource element from its catalog: entries whose file exists.
fn recompute_stats(arch: &Tree, target: &RelPath, el: &mut Element) -> Result<()> {
    if let Some(uri) = el.attr("URI").map(str::to_string)
        && !uri.starts_with('/')
        && let Ok(cat_path) = target.join_path(uri.trim_start_matches("./"))
        && let Ok(bytes) = arch.read(&cat_path)
        && let Ok(cat) = Catalog::parse(&bytes)
    {
        let folder = cat_path.parent();
        let (mut count, mut size) = (0u64, 0u64);
        for loc in cat.entry_locs() {
            let Some(u) = cat.entry(&loc).uri() else { continue };
            if let Ok(p) = folder.join_path(u.trim_start_matches("./"))
                && let Some(Kind::File { len }) = arch.kind(&p)?
            {
                count += 1;
                size += len;
            }
        }
        el.set_attr("file_count", count.to_string());
        el.set_attr("file_size", size.to_string());
    }
    for c in el.elements_mut() {
        recompute_stats(arch, target, c)?;
    }
    Ok(())
}

/// Merges an incoming catalog (still in the prearchive) into the archive's, entry by entry. Repeatable:
/// an entry already there is updated, not added twice. With `replace`, an existing entry for the same
/// DICOM instance under another name gives way to the incoming one — but only once its file has been set
/// aside by the plan's backup step and the incoming file is in place. This runs after the commit, so it
/// never deletes or moves a file: it only rewrites the catalog.
fn merge_catalog(pre: &Tree, arch: &Tree, from: &RelPath, into: &RelPath, replace: bool) -> Result<()> {
    let Ok(incoming_bytes) = pre.read(from) else { return Ok(()) };
    let incoming =
        Catalog::parse(&incoming_bytes).map_err(|e| Error::Corrupt(format!("catalog {from} cannot be read ({e})")))?;
    let mut target = Catalog::parse(&arch.read(into)?)
        .map_err(|e| Error::Corrupt(format!("catalog {into} cannot be read ({e}); it was left untouched")))?;
    let folder = into.parent();
    let is_file = |uri: &str| -> Result<bool> {
        Ok(match folder.join_path(uri) {
            Ok(p) => matches!(arch.kind(&p)?, Some(Kind::File { .. })),
            Err(_) => false,
        })
    };
    let mut by_uri: BTreeMap<String, crate::model::catalog::EntryLoc> = BTreeMap::new();
    let mut by_uid: BTreeMap<String, (crate::model::catalog::EntryLoc, String)> = BTreeMap::new();
    for loc in target.entry_locs() {
        let e = target.entry(&loc);
        let uri = e.uri().unwrap_or("").trim_start_matches("./").to_string();
        if let Some(uid) = e.attr("UID").filter(|u| !u.is_empty()) {
            by_uid.insert(uid.to_string(), (loc.clone(), uri.clone()));
        }
        by_uri.insert(uri, loc);
    }
    let mut drop = Vec::new();
    let mut added = Vec::new();
    for loc in incoming.entry_locs() {
        let e = incoming.entry(&loc);
        let uri = e.uri().unwrap_or("").trim_start_matches("./").to_string();
        if let Some(existing) = by_uri.get(&uri) {
            let mut t = target.entry_mut(existing);
            for (k, v) in &e.element().attrs {
                t.set_attr(k, v);
            }
            continue;
        }
        if replace
            && let Some((old, old_uri)) = e.attr("UID").and_then(|u| by_uid.get(u))
            && !is_file(old_uri)?
            && is_file(&uri)?
        {
            drop.push(old.clone());
        }
        let mut el = e.element().clone();
        el.name = target.new_entry("").name;
        added.push(el);
    }
    target.remove_entries(&drop);
    for el in added {
        target.push_entry(el);
    }
    arch.write_atomic(into, target.to_xml().as_bytes())
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

    fn journal(lines: &[&str]) -> String {
        let mut text = format!("{MAGIC}\nsession\tP\t20240101_000000000\tS1\nproject\tP\nlabel\tS1\n");
        for l in lines {
            text.push_str(l);
            text.push('\n');
        }
        text
    }

    /// Without the `test-switches` feature (every build but the end-to-end tests'), a fault point or a pause
    /// asked for is ignored: a release host or server can never be stopped dead or slowed by them.
    #[cfg(not(feature = "test-switches"))]
    #[test]
    fn release_builds_ignore_the_test_switches() {
        let mut cp = Checkpoints::new(Faults { point: Some(1), pause_ms: Some(60_000) });
        for _ in 0..3 {
            cp.pass().unwrap();
        }
        assert_eq!(cp.pause_ms(), None);
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
        let s = SessionRef::new(Some("P"), "20240101_000000000", "S1").unwrap();
        let snapshot = || std::process::Command::new("find").arg(d.path()).output().unwrap().stdout;
        for planted in [
            // Roll-back would "move back" another project's experiment into this session.
            journal(&["target\tP/arc001/S1", "move\tP/20240101_000000000/S1/SCANS\tOTHER/arc001/E9/SCANS"]),
            journal(&["target\tOTHER/arc001/E9", "move\tP/20240101_000000000/S1/SCANS\tOTHER/arc001/E9/SCANS"]),
            journal(&["target\tP/arc001/S1", "move\tP/20240101_000000000/S2\tP/arc001/S1/x"]),
            journal(&[
                "target\tP/arc001/S1",
                "backup\tOTHER/arc001/E9/SCANS/1/x.dcm\tP/arc001/S1/.~xnat-replaced-20240101_000000000/x",
            ]),
            journal(&["target\tP/arc001/S1", "backup\tP/arc001/S1/a\tP/elsewhere/x"]),
            journal(&["target\tP/arc001/S1", "mergecat\tP/20240101_000000000/S1/c.xml\tOTHER/arc001/E9/c.xml"]),
            journal(&["target\tP/arcX/S1"]),
            journal(&["target\tP/arc001/S1", "committed"])
                .replace("session\tP\t20240101_000000000\tS1", "session\tQ\t20240101_000000000\tS1"),
        ] {
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
            journal(&["target\tP/arc001/S1", "move\tP/20240101_000000000/S1\tP/arc001/S1"]),
        )
        .unwrap();
        assert!(Journal::read(&pre, &s).unwrap().is_some());
    }
}
