//! Archiving (`POST /data/services/archive`) and validating (`POST /data/services/validate-archive`) a
//! prearchive session — see `plan.rs` for how a request is resolved and checked, `journal.rs` for how an
//! archive survives a crash.
//!
//! This file is the public surface: the request, the notices and the per-session outcomes.

use crate::error::{Error, Result};
use crate::fs::lock::Lock;
use crate::fs::tree::{Durable, Kind, RelPath, Tree};
use crate::import::journal::{Checkpoints, Journal, journaled_sessions, recover_session};
use crate::import::plan::{Plan, plan, plan_again, plan_checks, plan_head};
use crate::import::prearchive::{Prearchive, SessionRef, Status};
use crate::import::request::{Archived, Faults, Notice, NoticeKind, Overwrite, Params, Recovered};
use crate::progress::Progress;
use crate::site::layout::{Archive, document_id, document_root};
use crate::xml::Element;

/// Validates one session; writes nothing (`validate-archive` simulates overwrite=none with merging
/// allowed, as XNAT's validator does).
pub fn validate(prearchive: &Tree, archive: &Tree, params: &Params) -> Result<Vec<Notice>> {
    let session = match params.src.as_slice() {
        [] => return Err(Error::NotFound("Unknown prearchive session.".into())),
        [one] => SessionRef::parse_src(one)?,
        _ => return Err(Error::BadRequest("Cannot validate multiple sessions in one request.".into())),
    };
    Ok(plan(prearchive, archive, &session, params)?.notices)
}

/// Archives each named session in turn. A malformed `src` fails the whole request before anything is
/// touched; each session's own failure is reported in its row, and the session stays in the prearchive
/// with status CONFLICT (for a 409) or ERROR.
pub fn archive(
    prearchive: &Tree,
    archive: &Tree,
    params: &Params,
    faults: Faults,
    progress: &mut dyn Progress,
) -> Result<Vec<Archived>> {
    if params.src.is_empty() {
        return Err(Error::NotFound("Unknown prearchive session.".into()));
    }
    let sessions = params.src.iter().map(|s| SessionRef::parse_src(s)).collect::<Result<Vec<_>>>()?;
    if sessions.len() > 1 && params.label.is_some() {
        return Err(Error::BadRequest("a batch of sessions cannot share one label; archive them one by one".into()));
    }
    let mut cp = Checkpoints::new(faults);
    progress.begin("archive", sessions.len() as u64);
    let mut out = Vec::new();
    for s in &sessions {
        let result = archive_one(prearchive, archive, s, params, &mut cp);
        progress.advance(1);
        out.push(Archived { src: s.url(), result });
    }
    progress.end();
    Ok(out)
}

fn archive_one(pre: &Tree, arch: &Tree, s: &SessionRef, params: &Params, cp: &mut Checkpoints) -> Result<String> {
    let prearchive = Prearchive::new(pre);
    // A session whose archive was cut short may have its folder in the archive already: its journal says
    // where everything is, and recovery below brings it back or finishes it.
    if pre.kind(&s.journal_file())?.is_none() {
        prearchive.require(s)?;
    }
    if s.project.is_none() {
        return Err(Error::BadRequest(
            "Cannot archive sessions from the Unassigned folder. Move the session to a project first.".into(),
        ));
    }
    let lock = prearchive.lock(s, "ARCHIVING")?;
    // An archive of this session that was cut short: finish or roll it back first (D14).
    if let Some((action, detail)) = recover_session(pre, arch, s)?
        && action == "completed"
    {
        lock.release()?;
        prearchive.remove_empty_parents(s)?;
        return Ok(detail);
    }
    cp.pass()?;
    if let Some(ms) = cp.pause_ms() {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    if let Err(e) = archivable(&prearchive, s, params) {
        lock.release()?;
        return Err(e);
    }
    let result = archive_locked(pre, arch, s, params, cp);
    match &result {
        Ok(_) => {
            lock.release()?;
            prearchive.remove_empty_parents(s)?;
        }
        Err(Error::Io(m)) if m.contains("run recover") => lock.keep(),
        Err(e) => {
            record_failure(&prearchive, s, e);
            lock.release()?;
        }
    }
    result
}

/// D12: a session is archived from READY, or from CONFLICT with overwrite.
fn archivable(prearchive: &Prearchive, s: &SessionRef, params: &Params) -> Result<()> {
    match prearchive.status_without_lock(s)? {
        Status::Ready => Ok(()),
        Status::Conflict if params.overwrite != Overwrite::None => Ok(()),
        other => Err(Error::Conflict(format!(
            "{} is {}; only READY sessions (or CONFLICT ones with overwrite=append or delete) can be archived{}",
            s.url(),
            other.as_str(),
            if other == Status::Error { " — fix the cause, then reset its status" } else { "" }
        ))),
    }
}

/// A failed archive marks the session: a conflict CONFLICT, a fault ERROR (as XNAT does), with the reason
/// in its status and log. A wrong request changes nothing — no status, no log line — so that the same
/// session can be archived with better parameters right away.
fn record_failure(prearchive: &Prearchive, s: &SessionRef, e: &Error) {
    let status = match e {
        Error::Conflict(_) => Status::Conflict,
        Error::Io(_) | Error::Corrupt(_) | Error::Forbidden(_) => Status::Error,
        _ => return,
    };
    if prearchive.exists(s).unwrap_or(false) {
        let _ = prearchive.set_status(s, &status, Some(e.message()));
        let _ = prearchive.log(s, &format!("Unable to archive {}: {e}", s.folder));
    }
}

fn archive_locked(pre: &Tree, arch: &Tree, s: &SessionRef, params: &Params, cp: &mut Checkpoints) -> Result<String> {
    // The destination is locked too, so that two sessions cannot become one experiment at once; a merge's
    // moves are planned only under that lock (what the archive holds may change until then).
    let lock_path = |plan: &Plan| plan.target.parent().join(&format!(".{}.lock", plan.label));
    let lock_destination = |plan: &Plan| -> Result<(Lock, RelPath)> {
        arch.create_dir_all(&plan.target.parent())?;
        let path = lock_path(plan)?;
        Ok((Lock::acquire(arch, &path, "ARCHIVING", "the destination experiment")?, path))
    };
    let head = plan_head(pre, arch, s, params)?;
    let (mut plan, (label_lock, locked)) =
        if head.existing.is_some() && params.overwrite != Overwrite::None && !head.fails() {
            // A merge: the destination exists, so it is locked at once and the whole plan made under the lock — the
            // host lists the experiment's folder while the session is checked. Whatever would refuse the session
            // refuses it there (`decide` below), and the lock is released.
            let label_lock = lock_destination(&head)?;
            (plan(pre, arch, s, params)?, label_lock)
        } else {
            // Anything else is checked before the destination is locked (a session refused creates nothing), and
            // planned again under the lock.
            let first = plan_checks(pre, arch, params, head)?;
            decide(&first, params.overwrite)?;
            let label_lock = lock_destination(&first)?;
            (plan_again(pre, arch, s, params, first)?, label_lock)
        };
    if lock_path(&plan)? != locked {
        return Err(Error::Conflict(format!(
            "the destination of {} changed while it was planned ({locked} was locked, the plan found {}); archive \
             it again",
            s.url(),
            plan.target
        )));
    }
    decide(&plan, params.overwrite)?;
    let site = site_id(params.site_id.as_deref());
    // The subject first: one whose document cannot be read stops the archive before an experiment ID is
    // claimed for nothing.
    let subject = plan.subject.clone().expect("decide() refuses plans without a subject");
    let subject_id = match &subject.id {
        Some(id) => id.clone(),
        None => create_subject(arch, &subject.project, &subject.label, &site, s)?,
    };
    let experiment_id = match plan.existing.as_ref().and_then(|e| e.doc.as_ref()).and_then(|d| d.id()) {
        Some(id) => id.to_string(),
        None => claim_id(arch, &site, 'E', s)?,
    };
    let mut journal = Journal::from_plan(&mut plan, experiment_id, subject_id, params);
    journal.write(pre, &plan.incoming)?;
    // What is left of the plan is not needed any more: its readings are the journal's now.
    drop(plan);
    cp.pass()?;
    if let Some(ms) = cp.pause_before_moves_ms() {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    let result = match journal.run(pre, arch, cp) {
        Ok(uri) => Ok(uri),
        Err(e) if !journal.committed => match journal.roll_back(pre, arch) {
            Ok(()) => Err(e),
            Err(undo) => Err(Error::Io(format!(
                "archiving failed ({e}) and undoing it failed too ({undo}); run recover to finish or roll it back"
            ))),
        },
        Err(e) => Err(Error::Io(format!("archiving stopped after its commit ({e}); run recover to finish it"))),
    };
    label_lock.release()?;
    result
}

/// Whether a plan may be carried out with this overwrite mode (D1); the first reason it may not.
fn decide(plan: &Plan, overwrite: Overwrite) -> Result<()> {
    if let Some(n) = plan.notices.iter().find(|n| n.kind == NoticeKind::Fail) {
        return Err(Error::BadRequest(n.message.clone()));
    }
    let msg = |code: u32| plan.notices.iter().find(|n| n.code == code).map(|n| n.message.clone()).unwrap_or_default();
    if plan.existing.is_some() && overwrite == Overwrite::None {
        return Err(Error::Conflict(msg(1)));
    }
    if plan.has(5) && overwrite != Overwrite::Delete {
        return Err(Error::Conflict(format!("{} Retry with overwrite=delete to merge anyway.", msg(5))));
    }
    if plan.has(14) && overwrite == Overwrite::Append {
        return Err(Error::Conflict(format!(
            "{} overwrite=append never replaces a file; use overwrite=delete to replace them.",
            msg(14)
        )));
    }
    if overwrite == Overwrite::None
        && let Some(w) = plan.notices.iter().find(|n| n.kind == NoticeKind::Warn)
    {
        return Err(Error::BadRequest(format!(
            "{} (code {}). Retry with overwrite=append to archive it anyway.",
            w.message, w.code
        )));
    }
    Ok(())
}

/// Creates a new subject's document (`<P>/subjects/<LABEL>.xml`) exclusively and returns its ID. When
/// another archive created it first, that subject's ID is used. Like XNAT, a subject is kept even if the
/// archive that created it fails later.
fn create_subject(arch: &Tree, project: &str, label: &str, site: &str, s: &SessionRef) -> Result<String> {
    let subjects = RelPath::new(project)?.join("subjects")?;
    arch.create_dir_all(&subjects)?;
    let doc = subjects.join(&format!("{label}.xml"))?;
    if arch.kind(&doc)?.is_none() {
        let id = claim_id(arch, site, 'S', s)?;
        let mut root = Element::new("xnat:Subject");
        root.attrs = vec![
            ("xmlns:xnat".into(), crate::model::session::XNAT_NS.into()),
            ("ID".into(), id.clone()),
            ("project".into(), project.into()),
            ("label".into(), label.into()),
        ];
        let xml = crate::xml::write(&root, crate::xml::AttributeOrder::Kept, crate::xml::Indent::Pretty);
        if arch.create_new_complete(&doc, xml.as_bytes(), Durable::Yes)? {
            return Ok(id);
        }
    }
    document_root(arch, &doc)?
        .attr("ID")
        .map(str::to_string)
        .ok_or_else(|| Error::Corrupt(format!("subject document {doc} has no ID")))
}

/// XNAT's site id cleaning: spaces, quotes and `^` dropped, `-` made `_` (D16).
fn site_id(raw: Option<&str>) -> String {
    let id: String = raw
        .unwrap_or("XNAT")
        .chars()
        .filter(|c| !matches!(c, ' ' | '"' | '\'' | '^'))
        .map(|c| if c == '-' { '_' } else { c })
        .collect();
    if id.is_empty() { "XNAT".into() } else { id }
}

/// Claims the next free `<SITE>_E#####` / `<SITE>_S#####` (D16): a claim file created exclusively under
/// `<archive>/.xnat/ids/`, skipping IDs the documents already use. Two processes can never get one ID.
fn claim_id(arch: &Tree, site: &str, code: char, s: &SessionRef) -> Result<String> {
    let ids = RelPath::new(".xnat")?.join("ids")?;
    arch.create_dir_all(&ids)?;
    let prefix = format!("{site}_{code}");
    let claimed = arch.list(&ids)?.iter().filter(|(n, _)| n.starts_with(&prefix)).count() as u64;
    let used = used_ids(arch, code)?;
    let mut n = claimed + 1;
    loop {
        let id = format!("{prefix}{n:05}");
        if !used.contains(&id) && arch.create_new(&ids.join(&id)?, s.url().as_bytes())? {
            return Ok(id);
        }
        n += 1;
    }
}

/// IDs in the archive's documents: experiments (`E`) or subjects (`S`).
fn used_ids(arch: &Tree, code: char) -> Result<std::collections::BTreeSet<String>> {
    let site = Archive::new(arch);
    let mut out = std::collections::BTreeSet::new();
    for p in site.projects()? {
        let pdir = RelPath::new(&p)?;
        let folders = if code == 'E' { site.arcs(&pdir)? } else { vec![pdir.join("subjects")?] };
        for f in folders {
            if !arch.is_dir(&f)? {
                continue;
            }
            for (name, kind) in arch.list(&f)? {
                if matches!(kind, Kind::File { .. })
                    && name.ends_with(".xml")
                    && let Ok(Some(id)) = document_id(arch, &f.join(&name)?)
                {
                    out.insert(id);
                }
            }
        }
    }
    Ok(out)
}

/// How [`recover`] treats locks that are still within their lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locks {
    /// Break every lock: the administrator's command line, run when nothing else runs (a holder killed a
    /// moment ago is recovered at once, without waiting for its lease).
    Break,
    /// Respect live leases: a session whose lock is held is reported `in-progress` and left alone (what a
    /// server offers while other requests run).
    Respect,
}

/// Finishes or rolls back every interrupted archive, and removes the locks that died with their process.
pub fn recover(prearchive: &Tree, archive: &Tree, locks: Locks) -> Result<Vec<Recovered>> {
    let pre = Prearchive::new(prearchive);
    let mut out = Vec::new();
    for s in journaled_sessions(prearchive)? {
        if locks == Locks::Break {
            let _ = prearchive.remove_file(&s.lock_file());
        }
        let lock = match pre.lock(&s, "RECOVERING") {
            Ok(lock) => lock,
            Err(Error::Locked(m)) => {
                out.push(Recovered { src: s.url(), action: "in-progress".into(), detail: m });
                continue;
            }
            Err(e) => return Err(e),
        };
        if let Some((action, detail)) = recover_session(prearchive, archive, &s)? {
            out.push(Recovered { src: s.url(), action, detail });
        }
        lock.release()?;
        pre.remove_empty_parents(&s)?;
    }
    // Locks left by processes that died before they wrote a journal, or after they removed it; and the
    // destination locks of archives into the archive tree. With `Respect`, only those whose lease ran out.
    let clear = |tree: &Tree, path: &RelPath| -> Result<()> {
        match locks {
            Locks::Break => match tree.remove_file(path) {
                Ok(()) | Err(Error::NotFound(_)) => Ok(()),
                Err(e) => Err(e),
            },
            Locks::Respect => match Lock::acquire(tree, path, "RECOVERING", "a lock") {
                Ok(lock) => lock.release(),
                Err(Error::Locked(_)) => Ok(()),
                Err(e) => Err(e),
            },
        }
    };
    for s in stray_locks(prearchive)? {
        clear(prearchive, &s.lock_file())?;
        pre.remove_empty_parents(&s)?;
    }
    let site = Archive::new(archive);
    for p in site.projects()? {
        for arc in site.arcs(&RelPath::new(&p)?)? {
            for (name, kind) in archive.list(&arc)? {
                if matches!(kind, Kind::File { .. }) && name.starts_with('.') && name.ends_with(".lock") {
                    clear(archive, &arc.join(&name)?)?;
                }
            }
        }
    }
    Ok(out)
}

/// Sessions whose lock has no journal beside it.
fn stray_locks(pre: &Tree) -> Result<Vec<SessionRef>> {
    let mut out = Vec::new();
    for s in Prearchive::new(pre).sessions_with(".lock")? {
        if pre.kind(&s.journal_file())?.is_none() {
            out.push(s);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;
    use std::fs;
    use std::path::Path;

    struct Site {
        _d: tempfile::TempDir,
        pre: Tree,
        arch: Tree,
        root: std::path::PathBuf,
    }

    fn site() -> Site {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().to_path_buf();
        fs::create_dir_all(root.join("pre")).unwrap();
        fs::create_dir_all(root.join("arch/P")).unwrap();
        Site { pre: Tree::new(root.join("pre")), arch: Tree::new(root.join("arch")), root, _d: d }
    }

    /// A session with scans (id, series uid, files); file content depends on `salt`.
    fn session(
        root: &Path,
        project: &str,
        ts: &str,
        folder: &str,
        study: &str,
        scans: &[(&str, &str, usize)],
        salt: &str,
    ) -> String {
        let dir = root.join("pre").join(project).join(ts).join(folder);
        let mut scan_xml = String::new();
        for (id, uid, n) in scans {
            let res = dir.join(format!("SCANS/{id}/DICOM"));
            fs::create_dir_all(&res).unwrap();
            let mut entries = String::new();
            for i in 1..=*n {
                let name = format!("{id}-{i}.dcm");
                fs::write(res.join(&name), format!("DICM {uid}.{i} {salt}")).unwrap();
                entries.push_str(&format!(
                    r#"<cat:entry xsi:type="cat:dcmEntry" URI="{name}" ID="{name}" UID="{uid}.{i}" instanceNumber="{i}" format="DICOM"/>"#
                ));
            }
            fs::write(
                res.join(format!("scan_{id}_catalog.xml")),
                format!(r#"<cat:DCMCatalog xmlns:cat="http://nrg.wustl.edu/catalog" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" UID="{uid}"><cat:entries>{entries}</cat:entries></cat:DCMCatalog>"#),
            )
            .unwrap();
            scan_xml.push_str(&format!(
                r#"<xnat:scan ID="{id}" type="T1" UID="{uid}" xsi:type="xnat:mrScanData"><xnat:file xsi:type="xnat:resourceCatalog" label="DICOM" format="DICOM" content="RAW" URI="SCANS/{id}/DICOM/scan_{id}_catalog.xml"/></xnat:scan>"#
            ));
        }
        fs::write(
            root.join("pre").join(project).join(ts).join(format!("{folder}.xml")),
            format!(
                r#"<xnat:MRSession xmlns:xnat="http://nrg.wustl.edu/xnat" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ID="" project="{project}" label="{folder}" UID="{study}"><xnat:subject_ID>SUBJ1</xnat:subject_ID><xnat:prearchivePath>/x/{project}/{ts}/{folder}</xnat:prearchivePath><xnat:scans>{scan_xml}</xnat:scans></xnat:MRSession>"#
            ),
        )
        .unwrap();
        format!("/data/prearchive/projects/{project}/{ts}/{folder}")
    }

    fn params(src: &str, overwrite: Overwrite) -> Params {
        Params { src: vec![src.into()], overwrite, trigger_pipelines: true, ..Default::default() }
    }

    fn run(s: &Site, p: &Params) -> Result<String> {
        let mut r = archive(&s.pre, &s.arch, p, Faults::default(), &mut NoProgress).unwrap();
        r.pop().unwrap().result
    }

    fn codes(n: &[Notice]) -> Vec<(u32, &'static str)> {
        n.iter().map(|n| (n.code, n.kind.as_str())).collect()
    }

    #[test]
    fn a_new_session_moves_in_one_piece() {
        let s = site();
        let src = session(
            &s.root,
            "P",
            "20240101_120000000",
            "MR1",
            "1.2.3",
            &[("2", "1.2.3.2", 3), ("3", "1.2.3.3", 2)],
            "a",
        );
        assert!(validate(&s.pre, &s.arch, &params(&src, Overwrite::None)).unwrap().is_empty());
        let uri = run(&s, &params(&src, Overwrite::None)).unwrap();
        assert_eq!(uri, "/data/archive/projects/P/subjects/SUBJ1/experiments/MR1");
        let a = s.root.join("arch/P/arc001");
        assert!(a.join("MR1/SCANS/2/DICOM/2-1.dcm").is_file());
        assert!(!s.root.join("pre/P").exists(), "empty prearchive parents are removed");
        let doc = SessionDocTest::read(&a.join("MR1.xml"));
        assert_eq!(doc.attr("ID"), Some("XNAT_E00001"));
        assert!(doc.text_of("subject_ID") == "XNAT_S00001");
        assert!(!doc.xml.contains("prearchivePath"));
        assert!(doc.xml.contains("file_count=\"3\"") && doc.xml.contains("file_count=\"2\""), "{}", doc.xml);
        assert!(s.root.join("arch/P/subjects/SUBJ1.xml").is_file());
        assert!(fs::read_dir(a.join("MR1/logs")).unwrap().count() == 1);
        // The same subject is found again; a second new session gets the next ID.
        let src2 = session(&s.root, "P", "20240102_120000000", "MR2", "1.2.4", &[("2", "1.2.4.2", 1)], "b");
        run(&s, &params(&src2, Overwrite::None)).unwrap();
        let doc2 = SessionDocTest::read(&a.join("MR2.xml"));
        assert_eq!(doc2.attr("ID"), Some("XNAT_E00002"));
        assert_eq!(doc2.text_of("subject_ID"), "XNAT_S00001");
    }

    /// Every resource's `file_count` and `file_size` in the experiment's document, and what its catalog and
    /// files on disk give (entries whose file is there, and their bytes).
    /// A resource's URI, its statistics as written and as on disk.
    type Written = (String, (u64, u64), (u64, u64));

    fn stats_written_and_on_disk(experiment: &Path, doc: &Path) -> Vec<Written> {
        fn walk(el: &crate::xml::Element, experiment: &Path, out: &mut Vec<Written>) {
            if let (Some(uri), Some(count), Some(size)) = (el.attr("URI"), el.attr("file_count"), el.attr("file_size"))
            {
                let cat_path = experiment.join(uri);
                let cat = Catalog::parse(&fs::read(&cat_path).unwrap()).unwrap();
                let (mut n, mut bytes) = (0, 0);
                for loc in cat.entry_locs() {
                    if let Ok(m) = fs::symlink_metadata(cat_path.parent().unwrap().join(cat.entry(&loc).uri().unwrap()))
                        && m.is_file()
                    {
                        n += 1;
                        bytes += m.len();
                    }
                }
                out.push((uri.to_string(), (count.parse().unwrap(), size.parse().unwrap()), (n, bytes)));
            }
            for c in el.elements() {
                walk(c, experiment, out);
            }
        }
        let doc = crate::model::session::SessionDoc::parse(&fs::read(doc).unwrap()).unwrap();
        let mut out = Vec::new();
        walk(doc.root(), experiment, &mut out);
        out
    }

    #[test]
    fn the_statistics_written_are_those_of_the_catalogs_and_files_archived() {
        let s = site();
        let (a, doc) = (s.root.join("arch/P/arc001/MR1"), s.root.join("arch/P/arc001/MR1.xml"));
        let check = |what: &str, resources: usize| {
            let stats = stats_written_and_on_disk(&a, &doc);
            assert_eq!(stats.len(), resources, "{what}: {stats:?}");
            for (uri, written, on_disk) in &stats {
                assert_eq!(written, on_disk, "{what}: {uri}");
            }
        };
        // New: the session moved whole (its statistics from the checks' look at it).
        let src = session(
            &s.root,
            "P",
            "20240101_120000000",
            "MR1",
            "1.2.3",
            &[("2", "1.2.3.2", 3), ("3", "1.2.3.3", 2)],
            "a",
        );
        run(&s, &params(&src, Overwrite::None)).unwrap();
        check("new", 2);
        // Merged (append): scan 3 gains files under new names (its statistics from the merge), scan 5 is new.
        let src = session(&s.root, "P", "20240102_120000000", "MR1", "1.2.3", &[("5", "1.2.3.5", 2)], "longer salt");
        fs::create_dir_all(s.root.join("pre/P/20240102_120000000/MR1/SCANS/3/DICOM")).unwrap();
        let more = s.root.join("pre/P/20240102_120000000/MR1/SCANS/3/DICOM");
        fs::write(more.join("3-9.dcm"), "DICM 1.2.3.3.9 a much longer body").unwrap();
        fs::write(
            more.join("scan_3_catalog.xml"),
            r#"<cat:DCMCatalog xmlns:cat="http://nrg.wustl.edu/catalog" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" UID="1.2.3.3"><cat:entries><cat:entry xsi:type="cat:dcmEntry" URI="3-9.dcm" ID="3-9.dcm" UID="1.2.3.3.9" format="DICOM"/></cat:entries></cat:DCMCatalog>"#,
        )
        .unwrap();
        let doc_path = s.root.join("pre/P/20240102_120000000/MR1.xml");
        let text = fs::read_to_string(&doc_path).unwrap().replace(
            "<xnat:scans>",
            r#"<xnat:scans><xnat:scan ID="3" type="T1" UID="1.2.3.3" xsi:type="xnat:mrScanData"><xnat:file xsi:type="xnat:resourceCatalog" label="DICOM" format="DICOM" content="RAW" URI="SCANS/3/DICOM/scan_3_catalog.xml"/></xnat:scan>"#,
        );
        fs::write(&doc_path, text).unwrap();
        run(&s, &params(&src, Overwrite::Append)).unwrap();
        check("merged with append", 3);
        assert!(stats_written_and_on_disk(&a, &doc).iter().any(|(uri, w, _)| uri.contains("scan_3_") && w.0 == 3));
        // Merged (delete): scan 2's instances replaced by other bytes.
        let src =
            session(&s.root, "P", "20240103_120000000", "MR1", "1.2.3", &[("2", "1.2.3.2", 4)], "replaced, longer");
        run(&s, &params(&src, Overwrite::Delete)).unwrap();
        check("merged with delete", 3);
    }

    #[test]
    fn existing_experiments_by_overwrite_mode() {
        let s = site();
        let src = session(&s.root, "P", "20240101_120000000", "MR1", "1.2.3", &[("2", "1.2.3.2", 2)], "a");
        run(&s, &params(&src, Overwrite::None)).unwrap();
        // Same label again: scan 2 with the same UID (merge, clashing files) and scan 4 new.
        let src = session(
            &s.root,
            "P",
            "20240103_120000000",
            "MR1",
            "1.2.3",
            &[("2", "1.2.3.2", 3), ("4", "1.2.3.4", 1)],
            "b",
        );
        let notices = validate(&s.pre, &s.arch, &params(&src, Overwrite::None)).unwrap();
        assert_eq!(codes(&notices), [(1, "CONFLICT"), (14, "CONFLICT"), (16, "CONFLICT")]);
        let e = run(&s, &params(&src, Overwrite::None)).unwrap_err();
        assert!(matches!(&e, Error::Conflict(m) if m.contains("Session already exists")), "{e:?}");
        let pre = Prearchive::new(&s.pre);
        let sref = SessionRef::parse_src(&src).unwrap();
        assert_eq!(pre.status(&sref).unwrap(), Status::Conflict);
        let e = run(&s, &params(&src, Overwrite::Append)).unwrap_err();
        assert!(
            matches!(&e, Error::Conflict(m) if m.contains("matching files") || m.contains("same resources")),
            "{e:?}"
        );
        assert!(pre.exists(&sref).unwrap(), "a refused archive leaves the session where it was");
        // delete: merged, the clashing files replaced, the new file and scan added.
        run(&s, &params(&src, Overwrite::Delete)).unwrap();
        let a = s.root.join("arch/P/arc001/MR1");
        assert_eq!(fs::read_to_string(a.join("SCANS/2/DICOM/2-1.dcm")).unwrap(), "DICM 1.2.3.2.1 b");
        assert!(a.join("SCANS/2/DICOM/2-3.dcm").is_file() && a.join("SCANS/4/DICOM/4-1.dcm").is_file());
        let cat = Catalog::parse(&fs::read(a.join("SCANS/2/DICOM/scan_2_catalog.xml")).unwrap()).unwrap();
        assert_eq!(cat.entry_locs().len(), 3);
        let doc = SessionDocTest::read(&s.root.join("arch/P/arc001/MR1.xml"));
        assert!(doc.xml.contains("ID=\"4\"") && doc.xml.contains("file_count=\"3\""), "{}", doc.xml);
        assert!(!a.join(".~xnat-replaced-20240103_120000000").exists());
        assert!(!s.root.join("pre/P").exists());
    }

    /// A merge goes into the catalog the archived folder lists first, even when another file sits where the
    /// incoming catalog would go (which is read early, while the host lists the folder, and then let go).
    #[test]
    fn a_merge_goes_into_the_catalog_the_archived_folder_holds() {
        let s = site();
        let src = session(&s.root, "P", "20240101_120000000", "MR1", "1.2.3", &[("2", "1.2.3.2", 2)], "a");
        run(&s, &params(&src, Overwrite::None)).unwrap();
        let dicom = s.root.join("arch/P/arc001/MR1/SCANS/2/DICOM");
        // The archived catalog under another name, its first instance under another file name too.
        let catalog = fs::read_to_string(dicom.join("scan_2_catalog.xml")).unwrap();
        fs::write(dicom.join("a_2_catalog.xml"), catalog.replace(r#""2-1.dcm""#, r#""old-1.dcm""#)).unwrap();
        fs::rename(dicom.join("2-1.dcm"), dicom.join("old-1.dcm")).unwrap();
        let decoy = r#"<cat:Catalog xmlns:cat="http://nrg.wustl.edu/catalog"><cat:entries/></cat:Catalog>"#;
        fs::write(dicom.join("scan_2_catalog.xml"), decoy).unwrap();
        let src = session(&s.root, "P", "20240103_120000000", "MR1", "1.2.3", &[("2", "1.2.3.2", 3)], "b");
        // Instance 1 arrives under another name than the archived catalog's: the checks read that catalog.
        let notices = validate(&s.pre, &s.arch, &params(&src, Overwrite::Append)).unwrap();
        assert!(notices.iter().any(|n| n.code == 14 && n.message.contains("same resources")), "{notices:?}");
        run(&s, &params(&src, Overwrite::Delete)).unwrap();
        let cat = Catalog::parse(&fs::read(dicom.join("a_2_catalog.xml")).unwrap()).unwrap();
        assert_eq!(cat.entry_locs().len(), 3, "merged into the catalog listed first");
        assert_eq!(fs::read_to_string(dicom.join("scan_2_catalog.xml")).unwrap(), decoy, "the other file untouched");
        assert_eq!(fs::read_to_string(dicom.join("2-3.dcm")).unwrap(), "DICM 1.2.3.2.3 b");
    }

    #[test]
    fn clashing_scan_numbers_are_renamed() {
        let s = site();
        let src = session(&s.root, "P", "20240101_120000000", "MR1", "1.2.3", &[("2", "1.2.3.2", 1)], "a");
        run(&s, &params(&src, Overwrite::None)).unwrap();
        let src = session(&s.root, "P", "20240104_120000000", "MR1", "1.2.3", &[("2", "9.9.9.2", 2)], "c");
        let notices = validate(&s.pre, &s.arch, &params(&src, Overwrite::Append)).unwrap();
        assert_eq!(codes(&notices), [(1, "CONFLICT"), (17, "CONFLICT")]);
        assert!(notices[1].message.contains("2-MR1"));
        run(&s, &params(&src, Overwrite::Append)).unwrap();
        let a = s.root.join("arch/P/arc001/MR1");
        assert!(a.join("SCANS/2-MR1/DICOM/scan_2-MR1_catalog.xml").is_file());
        assert_eq!(fs::read_to_string(a.join("SCANS/2-MR1/DICOM/2-1.dcm")).unwrap(), "DICM 9.9.9.2.1 c");
        assert_eq!(fs::read_to_string(a.join("SCANS/2/DICOM/2-1.dcm")).unwrap(), "DICM 1.2.3.2.1 a");
        let doc = SessionDocTest::read(&s.root.join("arch/P/arc001/MR1.xml"));
        assert!(doc.xml.contains("URI=\"SCANS/2-MR1/DICOM/scan_2-MR1_catalog.xml\""), "{}", doc.xml);
    }

    #[test]
    fn requests_that_cannot_be_archived() {
        let s = site();
        let src = session(&s.root, "P", "20240101_120000000", "MR1", "1.2.3", &[("2", "1.2.3.2", 1)], "a");
        // Unassigned, unknown, receiving, bad src, contradictory dest.
        fs::create_dir_all(s.root.join("pre/20240101_000000000/U1")).unwrap();
        let u = "/data/prearchive/projects/Unassigned/20240101_000000000/U1";
        assert!(matches!(run(&s, &params(u, Overwrite::None)), Err(Error::BadRequest(m)) if m.contains("Unassigned")));
        // Validation does not promise what archive refuses: naming a project still fails with code 6.
        fs::write(
            s.root.join("pre/20240101_000000000/U1.xml"),
            r#"<xnat:MRSession xmlns:xnat="http://nrg.wustl.edu/xnat" ID="" label="U1"/>"#,
        )
        .unwrap();
        let mut into_p = params(u, Overwrite::None);
        into_p.project = Some("P".into());
        let notices = validate(&s.pre, &s.arch, &into_p).unwrap();
        assert!(notices.iter().any(|n| n.code == 6 && n.message.contains("move it to project P")), "{notices:?}");
        let unknown = "/data/prearchive/projects/P/20240101_120000000/NOPE";
        assert!(matches!(run(&s, &params(unknown, Overwrite::None)), Err(Error::NotFound(_))));
        fs::create_dir_all(s.root.join("pre/P/20240101_120000000/RCV")).unwrap();
        let rcv = "/data/prearchive/projects/P/20240101_120000000/RCV";
        assert!(matches!(run(&s, &params(rcv, Overwrite::None)), Err(Error::Conflict(m)) if m.contains("RECEIVING")));
        let bad = params("/data/archive/projects/P/subjects/S/experiments/E", Overwrite::None);
        assert!(matches!(
            archive(&s.pre, &s.arch, &bad, Faults::default(), &mut NoProgress),
            Err(Error::BadRequest(_))
        ));
        let mut p = params(&src, Overwrite::None);
        p.project = Some("Q".into());
        p.dest = Some("/archive/projects/P".into());
        assert!(matches!(run(&s, &p), Err(Error::BadRequest(m)) if m.contains("differ")));
        // Label and subject from the parameters, cleaned as XNAT cleans them.
        let mut p = params(&src, Overwrite::None);
        p.label = Some("My Session.1".into());
        p.subject = Some("New Subject".into());
        assert_eq!(run(&s, &p).unwrap(), "/data/archive/projects/P/subjects/New_Subject/experiments/My_Session_1");
        // Validating writes nothing and needs one session.
        let two = Params { src: vec![src.clone(), src.clone()], ..Default::default() };
        assert!(matches!(validate(&s.pre, &s.arch, &two), Err(Error::BadRequest(m)) if m.contains("multiple")));
    }

    #[test]
    fn dicom_checks() {
        let s = site();
        let src = session(
            &s.root,
            "P",
            "20240101_120000000",
            "MR1",
            "1.2.3",
            &[("2", "1.2.3.2", 2), ("3", "1.2.3.3", 1)],
            "a",
        );
        let d = s.root.join("pre/P/20240101_120000000/MR1/SCANS");
        fs::write(d.join("2/DICOM/stray.txt"), "x").unwrap();
        fs::remove_file(d.join("3/DICOM/scan_3_catalog.xml")).unwrap();
        let n = validate(&s.pre, &s.arch, &params(&src, Overwrite::None)).unwrap();
        assert_eq!(codes(&n), [(20, "WARN"), (21, "WARN")]);
        assert!(
            matches!(run(&s, &params(&src, Overwrite::None)), Err(Error::BadRequest(m)) if m.contains("overwrite=append"))
        );
    }

    /// Reading documents in tests.
    struct SessionDocTest {
        xml: String,
        root: crate::xml::Element,
    }

    impl SessionDocTest {
        fn read(p: &Path) -> Self {
            let xml = fs::read_to_string(p).unwrap();
            let root = crate::xml::parse(xml.as_bytes()).unwrap();
            SessionDocTest { xml, root }
        }
        fn attr(&self, a: &str) -> Option<&str> {
            self.root.attr(a)
        }
        fn text_of(&self, local: &str) -> String {
            self.root.elements().find(|e| e.local_name() == local).map(|e| e.text()).unwrap_or_default()
        }
    }

    use crate::model::catalog::Catalog;
}
