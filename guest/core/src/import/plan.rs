//! How an archive request for one prearchive session is resolved and checked, before anything moves:
//! destination project, label and subject (`archive-service.md` §4.2–4.3, D3), the existing experiment,
//! XNAT's validation notices (§2, D11), and — for the archive itself — the exact list of file moves,
//! catalog merges and scan renames (§4.6–4.7, D1).
//!
//! `validate-archive` turns a plan into its notices; `archive` executes it (`journal.rs`).

use crate::error::{Error, Result};
use crate::fs::ahead::WalkAhead;
use crate::fs::tree::{Kind, RelPath, Stamps, Tree};
use crate::import::checks::{check_dicom, check_entries, check_uris};
use crate::import::incoming::{
    CatalogRead, CatalogStats, SessionFiles, find_catalogs, find_catalogs_listed, leads_to_catalogs,
    listed_for_catalogs, read_catalog, read_catalog_entries,
};
use crate::import::merge::KnownFiles;
use crate::import::prearchive::{Prearchive, SessionRef};
use crate::import::request::{Notice, NoticeKind, Overwrite, Params};
use crate::model::catalog::Catalog;
use crate::model::session::{SessionDoc, clean_value};
use crate::site::layout::{Archive, CURRENT_ARC, ExperimentDir, document_root};
use crate::site::names::{check_project_id, identifier_problem, relative_uri, valid_identifier};
use crate::site::uri::{ExperimentRef, Item, ResourceUri};
// Maps of paths and UIDs of up to millions of files: foldhash, seeded per map, as the refresh's index.
use foldhash::HashMap;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

/// The subject an archived session will belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectChoice {
    pub label: String,
    /// The ID of an existing subject; `None` when a new one will be created.
    pub id: Option<String>,
    /// The project the subject's document lives in.
    pub project: String,
}

/// An experiment already in the archive under the destination.
#[derive(Debug, Clone)]
pub struct Existing {
    pub dir: ExperimentDir,
    pub doc: Option<SessionDoc>,
}

/// One file operation of a merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Rename a prearchive path to an archive path.
    Move { from: RelPath, to: RelPath },
    /// Set an existing archive file aside before an incoming file replaces it (overwrite=delete).
    Backup { file: RelPath, to: RelPath },
    /// Merge an incoming catalog into an existing one, entry by entry.
    MergeCatalog { from: RelPath, into: RelPath },
}

/// Everything an archive of one session will do.
#[derive(Debug, Clone)]
pub struct Plan {
    pub session: SessionRef,
    pub incoming: SessionDoc,
    pub project: String,
    pub label: String,
    pub subject: Option<SubjectChoice>,
    pub existing: Option<Existing>,
    /// The experiment folder in the archive.
    pub target: RelPath,
    pub notices: Vec<Notice>,
    /// Incoming scan id → the id it gets (renamed `<id>-<MM><n>`, or adopted from a same-UID scan).
    pub scan_ids: BTreeMap<String, String>,
    pub steps: Vec<Step>,
    /// The incoming session's own checks and listing, once made (see [`plan_again`]).
    incoming_checks: Option<IncomingChecks>,
    /// The archived catalogs a merge writes into, as the plan read them under the destination's lock: the
    /// merge starts from these readings (its write checks that the file is still what was read).
    pub merge_reads: HashMap<RelPath, Rc<CatalogRead>>,
    /// The files the merges' statistics count, as the plan saw them (see [`KnownFiles`]).
    pub merge_files: Option<Rc<KnownFiles>>,
}

/// What the checks of the incoming session alone found, and the listing they read.
#[derive(Debug, Clone)]
struct IncomingChecks {
    notices: Vec<Notice>,
    files: Rc<SessionFiles>,
    /// `file_count` and `file_size` of each readable catalog of the session, by its path (see `check_entries`).
    stats: Rc<Vec<(RelPath, CatalogStats)>>,
}

impl Plan {
    /// A plan for `session` into `project` that does nothing yet.
    fn new(session: &SessionRef, incoming: SessionDoc, project: String) -> Plan {
        Plan {
            session: session.clone(),
            incoming,
            project,
            label: String::new(),
            subject: None,
            existing: None,
            target: RelPath::root(),
            notices: Vec::new(),
            scan_ids: BTreeMap::new(),
            steps: Vec::new(),
            incoming_checks: None,
            merge_reads: HashMap::default(),
            merge_files: None,
        }
    }

    fn notice(&mut self, code: u32, kind: NoticeKind, message: impl Into<String>) {
        self.notices.push(Notice::new(code, kind, message));
    }

    /// Whether a notice says the session cannot be archived as asked (FAIL).
    pub fn fails(&self) -> bool {
        self.notices.iter().any(|n| n.kind == NoticeKind::Fail)
    }

    pub fn has(&self, code: u32) -> bool {
        self.notices.iter().any(|n| n.code == code)
    }

    /// `file_count` and `file_size` of each readable catalog of the incoming session, by the path it will have
    /// below `target` when the session folder is moved there whole (none before the session was checked).
    pub fn incoming_stats(&self, target: &RelPath) -> HashMap<RelPath, CatalogStats> {
        let Some(checks) = &self.incoming_checks else { return HashMap::default() };
        let dir = self.session.dir();
        checks
            .stats
            .iter()
            .filter_map(|(cat, stats)| Some((target.join_path(cat.strip_prefix(&dir)?).ok()?, *stats)))
            .collect()
    }
}

/// Resolves and checks one session. `Err` only for what stops even validation: an unknown session, a
/// session still receiving, an unreadable document, a contradictory request.
pub fn plan(pre: &Tree, arch: &Tree, session: &SessionRef, params: &Params) -> Result<Plan> {
    plan_with(pre, arch, session, params, Scope::Whole)
}

/// Where the session goes (project, label, subject, the experiment already there and how its scans match), and
/// nothing that looks at the session's files: for the archive to lock the destination first when it merges,
/// then plan the whole archive under that lock ([`plan`]), or else to check the session ([`plan_checks`]).
pub fn plan_head(pre: &Tree, arch: &Tree, session: &SessionRef, params: &Params) -> Result<Head> {
    resolve(pre, arch, session, params)
}

/// [`plan`] from its `head`, without a merge's file moves (nor the notices only they give, code 14): where the
/// session goes and every other check, for the archive to know which destination to lock before it plans the
/// moves under that lock ([`plan_again`]).
pub fn plan_checks(pre: &Tree, arch: &Tree, params: &Params, head: Head) -> Result<Plan> {
    plan_from(pre, arch, params, head, Scope::Checks)
}

/// [`plan`] made again (under the destination's lock, for what the archive holds now), reusing `first`'s
/// checks of the incoming session and its listing: the session is locked, so they still hold.
pub fn plan_again(pre: &Tree, arch: &Tree, session: &SessionRef, params: &Params, first: Plan) -> Result<Plan> {
    match first.incoming_checks {
        Some(checks) => plan_with(pre, arch, session, params, Scope::Again(checks)),
        None => plan(pre, arch, session, params),
    }
}

/// A plan's start ([`plan_head`]): where the session goes, and whether that was found. When it was not (no
/// project, an Unassigned session, no label) the plan is whole as it is: its notice says why it fails.
pub struct Head {
    plan: Plan,
    resolved: bool,
}

impl std::ops::Deref for Head {
    type Target = Plan;
    fn deref(&self) -> &Plan {
        &self.plan
    }
}

/// How much of a plan [`plan_from`] makes beyond its head.
enum Scope {
    /// Everything but a merge's moves ([`plan_checks`]).
    Checks,
    /// Everything ([`plan`]).
    Whole,
    /// Everything, the incoming session's checks taken from a first plan ([`plan_again`]).
    Again(IncomingChecks),
}

fn plan_with(pre: &Tree, arch: &Tree, session: &SessionRef, params: &Params, scope: Scope) -> Result<Plan> {
    let head = resolve(pre, arch, session, params)?;
    plan_from(pre, arch, params, head, scope)
}

/// The destination of a session: its project, label, subject and the experiment already there.
fn resolve(pre: &Tree, arch: &Tree, session: &SessionRef, params: &Params) -> Result<Head> {
    let prearchive = Prearchive::new(pre);
    prearchive.require(session)?;
    let incoming = prearchive.document(session)?.ok_or_else(|| {
        Error::Conflict(format!(
            "{} is RECEIVING: its session document {} has not been written yet; archive it when it is READY",
            session.url(),
            session.document()
        ))
    })?;
    let dest = Dest::parse(params.dest.as_deref())?;
    let project =
        agree("project", params.project.as_deref(), dest.project.as_deref())?.or_else(|| session.project.clone());
    let label_param = agree("session label", params.label.as_deref(), dest.experiment.as_deref())?;
    let subject_param = agree("subject", params.subject.as_deref(), dest.subject.as_deref())?;

    let mut plan = Plan::new(session, incoming.clone(), project.clone().unwrap_or_default());
    // Code 6: no destination project.
    let Some(project) = project else {
        plan.notice(6, NoticeKind::Fail, "unable to identify destination project");
        return Ok(Head { plan, resolved: false });
    };
    check_project_id(&project)?;
    // An Unassigned session cannot be archived even into a named project (XNAT answers 400): it must be
    // moved into the project first. Validation says so instead of promising an archive that would fail.
    if session.project.is_none() {
        plan.notice(
            6,
            NoticeKind::Fail,
            format!("the session is Unassigned; move it to project {project} first, then archive it"),
        );
        return Ok(Head { plan, resolved: false });
    }

    let Some(label) = deduce_label(&mut plan, label_param) else { return Ok(Head { plan, resolved: false }) };
    plan.label = label.clone();
    plan.subject = deduce_subject(&mut plan, arch, &project, subject_param)?;
    plan.target = RelPath::new(&project)?.join(CURRENT_ARC)?.join(&label)?;
    if let Some(dir) = existing_experiment(arch, &project, &label, &incoming)? {
        let doc = match &dir.document {
            Some(d) => Some(SessionDoc::from_root(document_root(arch, d)?)),
            None => None,
        };
        plan.target = dir.folder.clone();
        check_existing(&mut plan, arch, &dir, doc.as_ref())?;
        plan.existing = Some(Existing { dir, doc });
    }
    Ok(Head { plan, resolved: true })
}

/// The plan from its `head`: as much as `scope` asks.
fn plan_from(pre: &Tree, arch: &Tree, params: &Params, head: Head, scope: Scope) -> Result<Plan> {
    let Head { mut plan, resolved } = head;
    if !resolved {
        return Ok(plan);
    }
    let moves = !matches!(scope, Scope::Checks);
    // A merge's first archived folder, listed by the host from when it has listed the session's files.
    let mut archived_ahead = None;
    let checks = match scope {
        Scope::Again(checks) => checks,
        Scope::Checks | Scope::Whole => {
            let dir = plan.session.dir();
            let files = list_reading_catalogs(pre, &dir, &plan.incoming)?;
            if moves && plan.existing.is_some() {
                archived_ahead = first_merge_folder(&plan, &files).map(|folder| {
                    let walk = arch.walk_ahead(&folder);
                    (folder, walk)
                });
            }
            let mut notices = check_uris(&dir, &plan.incoming);
            let entries = check_entries(pre, &files)?;
            notices.extend(entries.notices);
            notices.extend(check_dicom(pre, &files, &dir, &plan.incoming)?);
            IncomingChecks { notices, files: Rc::new(files), stats: Rc::new(entries.stats) }
        }
    };
    plan.notices.extend(checks.notices.iter().cloned());
    if plan.existing.is_some() && moves {
        plan_merge(&mut plan, pre, arch, params.overwrite, &checks.files, archived_ahead)?;
    }
    plan.incoming_checks = Some(checks);
    plan.notices.sort_by_key(|n| n.code);
    Ok(plan)
}

/// The incoming session's files, listed by the host while the catalogs its document names are read (the
/// checks read them next); listed at once when it names none.
fn list_reading_catalogs(pre: &Tree, dir: &RelPath, incoming: &SessionDoc) -> Result<SessionFiles> {
    fn named(el: &crate::xml::Element, dir: &RelPath, out: &mut Vec<RelPath>) {
        if let Some(rel) = el.attr("URI").and_then(|uri| relative_uri(uri, dir))
            && rel.ends_with("_catalog.xml")
            && let Ok(path) = dir.join_path(&rel)
        {
            out.push(path);
        }
        for c in el.elements() {
            named(c, dir, out);
        }
    }
    let mut catalogs = Vec::new();
    named(incoming.root(), dir, &mut catalogs);
    if catalogs.is_empty() {
        return SessionFiles::list(pre, dir);
    }
    let mut ahead = pre.walk_ahead(dir);
    // A catalog that cannot be read now is read again by the checks, which say why.
    let read = catalogs.into_iter().filter_map(|path| Some((path.clone(), read_catalog_entries(pre, &path).ok()?)));
    let read: Vec<_> = read.collect();
    let files = SessionFiles::list_ahead(pre, &mut ahead, dir)?;
    files.read_already(read);
    Ok(files)
}

/// The archived folder the first incoming catalog would go to, which a merge looks at first ([`catalogs_to_merge`]).
fn first_merge_folder(plan: &Plan, files: &SessionFiles) -> Option<RelPath> {
    let rel = files.paths().find(|rel| rel.ends_with("_catalog.xml"))?;
    Some(plan.target.join_path(&map_path(rel, &plan.scan_ids)).ok()?.parent())
}

/// Code 8: the label, the first non-empty of the session/label parameters, the document's label, the
/// folder and the document's ID (§4.2), cleaned; code 13 when it is no identifier. `None` after a notice.
fn deduce_label(plan: &mut Plan, label_param: Option<String>) -> Option<String> {
    let raw = label_param
        .or_else(|| plan.incoming.label().map(str::to_string))
        .or_else(|| Some(plan.session.folder.clone()))
        .or_else(|| plan.incoming.id().map(str::to_string));
    let Some(label) = raw.map(|l| clean_value(&l)).filter(|l| !l.is_empty()) else {
        plan.notice(8, NoticeKind::Fail, "unable to deduce session label");
        return None;
    };
    if !valid_identifier(&label) {
        plan.notice(13, NoticeKind::Fail, identifier_problem(&label));
        return None;
    }
    Some(label)
}

/// Code 11: the subject, from the parameters, the document's subject or its DICOM patient name (§4.3),
/// found in the archive or to be created; code 13 when it is no identifier.
fn deduce_subject(
    plan: &mut Plan,
    arch: &Tree,
    project: &str,
    subject_param: Option<String>,
) -> Result<Option<SubjectChoice>> {
    let raw = subject_param
        .or_else(|| plan.incoming.subject_id())
        .or_else(|| plan.incoming.field("dcmPatientName"))
        .map(|s| clean_value(&s))
        .filter(|s| !s.is_empty());
    match raw {
        None => plan.notice(11, NoticeKind::Fail, "Unable to identify subject."),
        Some(s) if !valid_identifier(&s) => plan.notice(13, NoticeKind::Fail, identifier_problem(&s)),
        Some(s) => return Ok(Some(find_subject(arch, project, &s)?)),
    }
    Ok(None)
}

/// The experiment already archived: by label under the project, or by the document's ID anywhere.
fn existing_experiment(
    arch: &Tree,
    project: &str,
    label: &str,
    incoming: &SessionDoc,
) -> Result<Option<ExperimentDir>> {
    let site = Archive::new(arch);
    let by_label =
        if arch.is_dir(&RelPath::new(project)?)? { site.experiment_by_label(project, label).ok() } else { None };
    Ok(match incoming.id() {
        Some(id) if by_label.is_none() => site.experiment(&ExperimentRef::Id(id.to_string())).ok(),
        _ => by_label,
    })
}

/// Two spellings of one parameter must agree (D3).
fn agree(what: &str, param: Option<&str>, dest: Option<&str>) -> Result<Option<String>> {
    let param = param.map(str::trim).filter(|s| !s.is_empty());
    match (param, dest) {
        (Some(p), Some(d)) if p != d => {
            Err(Error::BadRequest(format!("the {what} is given twice and the values differ: {p:?} and dest's {d:?}")))
        }
        (Some(p), _) => Ok(Some(p.to_string())),
        (None, d) => Ok(d.map(str::to_string)),
    }
}

/// `dest=/archive/projects/P[/subjects/S[/experiments/E]]`.
#[derive(Default)]
struct Dest {
    project: Option<String>,
    subject: Option<String>,
    experiment: Option<String>,
}

impl Dest {
    fn parse(dest: Option<&str>) -> Result<Dest> {
        let Some(dest) = dest.map(str::trim).filter(|d| !d.is_empty()) else { return Ok(Dest::default()) };
        let bad = || {
            Error::BadRequest(format!(
                "dest {dest:?} must be /archive/projects/P, /archive/projects/P/subjects/S or \
                 /archive/projects/P/subjects/S/experiments/E"
            ))
        };
        let uri = ResourceUri::parse(dest).map_err(|_| bad())?;
        if uri.resource.is_some() {
            return Err(bad());
        }
        match uri.item {
            Item::Project(p) => Ok(Dest { project: Some(p), ..Default::default() }),
            Item::Subject { project: Some(p), subject } => {
                Ok(Dest { project: Some(p), subject: Some(subject), experiment: None })
            }
            Item::Experiment(ExperimentRef::InProject { project, subject, experiment }) => {
                Ok(Dest { project: Some(project), subject, experiment: Some(experiment) })
            }
            _ => Err(bad()),
        }
    }
}

/// Finds the subject by label in the project (case-insensitive, XNAT-2865), else by ID anywhere.
fn find_subject(arch: &Tree, project: &str, wanted: &str) -> Result<SubjectChoice> {
    let subjects = RelPath::new(project)?.join("subjects")?;
    if arch.is_dir(&subjects)? {
        for (name, kind) in arch.list(&subjects)? {
            let label = match kind {
                Kind::File { .. } => name.strip_suffix(".xml"),
                Kind::Dir => Some(name.as_str()),
                _ => None,
            };
            if let Some(label) = label
                && label.eq_ignore_ascii_case(wanted)
            {
                let doc = subjects.join(&format!("{label}.xml"))?;
                let id = match arch.kind(&doc)? {
                    Some(Kind::File { .. }) => document_root(arch, &doc)?.attr("ID").map(str::to_string),
                    _ => None,
                };
                return Ok(SubjectChoice { label: label.to_string(), id, project: project.to_string() });
            }
        }
    }
    if let Ok(s) = Archive::new(arch).subject(None, wanted)
        && let Some(doc) = &s.document
        && document_root(arch, doc)?.attr("ID") == Some(wanted)
    {
        return Ok(SubjectChoice { label: s.label, id: Some(wanted.to_string()), project: s.project });
    }
    Ok(SubjectChoice { label: wanted.to_string(), id: None, project: project.to_string() })
}

/// A scan as it is in the existing experiment.
struct ExistingScan {
    id: String,
    uid: Option<String>,
}

fn existing_scans(arch: &Tree, dir: &ExperimentDir, doc: Option<&SessionDoc>) -> Result<Vec<ExistingScan>> {
    let mut out: Vec<ExistingScan> =
        doc.map(|d| d.scans().into_iter().map(|s| ExistingScan { id: s.id, uid: s.uid }).collect()).unwrap_or_default();
    let scans = dir.folder.join("SCANS")?;
    if arch.is_dir(&scans)? {
        for (id, kind) in arch.list(&scans)? {
            if kind == Kind::Dir && !out.iter().any(|s| s.id == id) {
                // No document entry: the series UID of its DICOM catalog, if any.
                let uid = find_catalogs(arch, &scans.join(&id)?)?
                    .into_iter()
                    .find_map(|c| Catalog::parse(&arch.read(&c).ok()?).ok()?.root().attr("UID").map(str::to_string));
                out.push(ExistingScan { id, uid });
            }
        }
    }
    Ok(out)
}

/// Codes 1–5, 19, 16–18 against an existing experiment.
fn check_existing(plan: &mut Plan, arch: &Tree, dir: &ExperimentDir, doc: Option<&SessionDoc>) -> Result<()> {
    plan.notice(1, NoticeKind::Conflict, "Session already exists, retry with overwrite enabled");
    if dir.label != plan.label {
        plan.notice(2, NoticeKind::Fail, "Invalid modification of session label via archive process.");
    }
    if dir.project != plan.project {
        plan.notice(3, NoticeKind::Fail, "Invalid modification of session project via archive process.");
    }
    if let (Some(existing), Some(subject)) = (&dir.subject, &plan.subject)
        && !existing.eq_ignore_ascii_case(&subject.label)
    {
        plan.notice(
            4,
            NoticeKind::Fail,
            format!(
                "Invalid modification of session subject via archive process.: {} Already Exists for another Subject",
                dir.label
            ),
        );
    }
    if let Some(doc) = doc {
        if let (Some(a), Some(b)) = (doc.uid(), plan.incoming.uid())
            && a != b
        {
            plan.notice(5, NoticeKind::Conflict, "Invalid modification of session UID via archive process.");
        }
        if doc.xsi_type() != plan.incoming.xsi_type() {
            plan.notice(
                19,
                NoticeKind::Fail,
                "Invalid modification of session modality via archive process.  Data may require a manual merge.",
            );
        }
    }
    match_scans(plan, &existing_scans(arch, dir, doc)?);
    Ok(())
}

/// Codes 16–18: each incoming scan against the experiment's scans — the same scan (kept), the same UID
/// under another number (its files join that scan), or the same number with another UID (renamed as
/// XNAT's `correctScanID` renames it). Fills `plan.scan_ids`.
fn match_scans(plan: &mut Plan, existing: &[ExistingScan]) {
    let code = plan.incoming.modality_code();
    let mut taken: BTreeSet<String> = existing.iter().map(|s| s.id.clone()).collect();
    for scan in plan.incoming.scans() {
        let same_id = existing.iter().find(|e| e.id == scan.id);
        let same_uid = scan.uid.as_ref().and_then(|u| existing.iter().find(|e| e.uid.as_ref() == Some(u)));
        match (same_id, same_uid) {
            (Some(e), _) if e.uid == scan.uid || e.uid.is_none() || scan.uid.is_none() => {
                plan.notice(
                    16,
                    NoticeKind::Conflict,
                    format!("Session already contains a scan ({}) with the same UID and number.", scan.id),
                );
                plan.scan_ids.insert(scan.id.clone(), scan.id.clone());
            }
            (_, Some(e)) => {
                plan.notice(
                    18,
                    NoticeKind::Conflict,
                    format!(
                        "Session already contains a scan ({}) with the same UID as scan {}; its files join scan {}.",
                        e.id, scan.id, e.id
                    ),
                );
                plan.scan_ids.insert(scan.id.clone(), e.id.clone());
            }
            (Some(_), None) => {
                let new_id = rename_scan(&scan.id, &code, &taken);
                plan.notice(
                    17,
                    NoticeKind::Conflict,
                    format!(
                        "Session already contains a scan ({}) with the same number and a different UID; \
                         the new scan will be renamed {new_id} during archive.",
                        scan.id
                    ),
                );
                taken.insert(new_id.clone());
                plan.scan_ids.insert(scan.id.clone(), new_id);
            }
            (None, None) => {
                taken.insert(scan.id.clone());
                plan.scan_ids.insert(scan.id.clone(), scan.id.clone());
            }
        }
    }
}

/// XNAT's `correctScanID`: `<id>-<MM><n>`, reusing the stem of an id that already looks like that.
fn rename_scan(id: &str, code: &str, taken: &BTreeSet<String>) -> String {
    let stem = match id.rsplit_once('-') {
        Some((stem, tail)) if tail.starts_with(code) && tail[code.len()..].chars().all(|c| c.is_ascii_digit()) => stem,
        _ => id,
    };
    (1..).map(|n| format!("{stem}-{code}{n}")).find(|c| !taken.contains(c)).expect("some name is free")
}

/// The moves, backups and catalog merges of an archive into an existing experiment, and code 14.
fn plan_merge(
    plan: &mut Plan,
    pre: &Tree,
    arch: &Tree,
    overwrite: Overwrite,
    incoming: &Rc<SessionFiles>,
    ahead: Option<(RelPath, WalkAhead)>,
) -> Result<()> {
    let src = plan.session.dir();
    let files: Vec<String> = incoming.paths().map(str::to_string).collect();
    let mut present = Present { tree: arch, folders: HashMap::default(), ahead };
    let MergeTargets { catalogs: merged_catalogs, read_order, reads } =
        catalogs_to_merge(plan, arch, &mut present, &files)?;
    // The archived entries of those catalogs by DICOM UID → URI (a later catalog's entry wins), borrowed from
    // the readings: a merge into a catalog of 10,000 entries makes no copy of their UIDs and URIs.
    let existing_uids: HashMap<&str, &str> = read_order
        .iter()
        .flat_map(|cat| reads[cat].entries.iter())
        .filter_map(|(uri, uid, _)| Some((uid.as_deref()?, uri.as_str())))
        .collect();
    let mut matching_files = false;
    let mut same_resources = false;
    // Files come folder by folder (a scan's thousands of files in one): a folder's paths are checked and
    // mapped once, and each file's only by its name.
    let mut folder: Option<FolderPaths> = None;
    plan.steps.reserve(files.len());
    for rel in &files {
        let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        if folder.as_ref().is_none_or(|f| f.dir != dir) {
            let mut paths = FolderPaths::new(rel, dir, &src, &plan.target, &plan.scan_ids)?;
            paths.listed = paths.to.as_ref().and_then(|to| present.listed(to));
            folder = Some(paths);
        }
        let paths = folder.as_ref().expect("set above");
        let from = paths.from.join(name)?;
        if let Some(into) = merged_catalogs.get(rel) {
            // DICOM instances already in the existing catalog under another file name.
            if let Some(entries) = incoming.catalog_entries(pre, &from)?.as_ref() {
                for (uri, uid, _) in entries {
                    if let Some(old_uri) = uid.as_deref().and_then(|u| existing_uids.get(u))
                        && old_uri != uri
                    {
                        same_resources = true;
                    }
                }
            }
            if overwrite == Overwrite::Delete {
                backup_replaced_instances(plan, pre, arch, &from, into)?;
            }
            plan.steps.push(Step::MergeCatalog { from, into: into.clone() });
            continue;
        }
        let (to, there) = match (&paths.to, &paths.listed) {
            (Some(dir), Some(listed)) => (dir.join(name)?, listed.kinds.contains_key(name)),
            (Some(dir), None) => (dir.join(name)?, present.holds(dir, name)?),
            (None, _) => {
                let to = plan.target.join_path(&map_path(rel, &plan.scan_ids))?;
                let there = present.at(&to)?;
                (to, there)
            }
        };
        let is_meta = rel.ends_with(".xml") || rel.ends_with(".log");
        if there {
            if !is_meta {
                matching_files = true;
            }
            if overwrite == Overwrite::Delete || is_meta {
                let backup = plan
                    .target
                    .join(&format!(".~xnat-replaced-{}", plan.session.timestamp))?
                    .join_path(&map_path(rel, &plan.scan_ids))?;
                plan.steps.push(Step::Backup { file: to.clone(), to: backup });
            }
        }
        plan.steps.push(Step::Move { from, to });
    }
    // The folder's own handle on its listing goes first, so that each listing is taken below, not copied.
    drop(folder);
    let archived = present
        .folders
        .into_iter()
        .filter_map(|(folder, listed)| Some((folder, Rc::try_unwrap(listed?).unwrap_or_else(|l| (*l).clone()).kinds)))
        .collect();
    plan.merge_files = Some(Rc::new(KnownFiles { archived, session: Rc::clone(incoming) }));
    drop(existing_uids);
    plan.merge_reads = reads;
    if same_resources {
        plan.notice(14, NoticeKind::Conflict, "Session already exists with the same resources.");
    } else if matching_files {
        plan.notice(14, NoticeKind::Conflict, "Session already exists with matching files.");
    }
    Ok(())
}

/// A folder of the incoming session (`dir`, relative to it) where a merge's files come from, and where they go
/// in the experiment: `to` is `None` when its scan is renamed, which may rename a file too ([`map_path`]).
struct FolderPaths<'r> {
    dir: &'r str,
    from: RelPath,
    to: Option<RelPath>,
    /// What is in `to` (when it could be listed): each file looked up by its name alone.
    listed: Option<Rc<Listed>>,
}

impl<'r> FolderPaths<'r> {
    /// The folder of `rel`, a file's path in the session (`dir` is its folder part).
    fn new(
        rel: &str,
        dir: &'r str,
        src: &RelPath,
        target: &RelPath,
        scan_ids: &BTreeMap<String, String>,
    ) -> Result<Self> {
        let join = |base: &RelPath| if dir.is_empty() { Ok(base.clone()) } else { base.join_path(dir) };
        let to = if in_renamed_scan(rel, scan_ids) { None } else { Some(join(target)?) };
        Ok(FolderPaths { dir, from: join(src)?, to, listed: None })
    }
}

/// Whether anything is at a path of a tree, and the catalogs below a folder, from one listing of each folder: a
/// merge of thousands of files into one folder looks at the folder once, not at each file, and finds the
/// catalog it merges into in the same listing.
struct Present<'t> {
    tree: &'t Tree,
    /// Folder → what is in it; `None` when it could not be listed (then each path is looked at).
    folders: HashMap<RelPath, Option<Rc<Listed>>>,
    /// A folder the host is listing ahead ([`Tree::walk_ahead`]), taken by the first look at it.
    ahead: Option<(RelPath, WalkAhead)>,
}

/// A folder's entries by name, and those that may lead to catalogs (folders and catalogs) in name order.
#[derive(Default, Clone)]
struct Listed {
    kinds: HashMap<String, Kind>,
    leading: Vec<(String, Kind)>,
}

impl Present<'_> {
    fn listed(&mut self, folder: &RelPath) -> Option<Rc<Listed>> {
        if !self.folders.contains_key(folder) {
            let entries = match self.ahead.take() {
                Some((walked, mut ahead)) if walked == *folder => self
                    .tree
                    .list_ahead(&mut ahead, folder, Stamps::None)
                    .map(|listed| listed.into_iter().map(|(name, kind, _)| (name, kind)).collect()),
                other => {
                    self.ahead = other;
                    self.tree.list(folder)
                }
            };
            let listed = match entries {
                Ok(entries) => {
                    let leading =
                        entries.iter().filter(|(name, kind)| leads_to_catalogs(name, kind)).cloned().collect();
                    Some(Rc::new(Listed { kinds: entries.into_iter().collect(), leading }))
                }
                Err(Error::NotFound(_)) => Some(Rc::default()),
                Err(_) => None,
            };
            self.folders.insert(folder.clone(), listed);
        }
        self.folders[folder].clone()
    }

    fn at(&mut self, path: &RelPath) -> Result<bool> {
        self.holds(&path.parent(), path.name())
    }

    /// Whether `folder` holds an entry `name`.
    fn holds(&mut self, folder: &RelPath, name: &str) -> Result<bool> {
        match self.listed(folder) {
            Some(listed) => Ok(listed.kinds.contains_key(name)),
            None => Ok(self.tree.kind(&folder.join(name)?)?.is_some()),
        }
    }

    /// [`find_catalogs`], from the listings kept here.
    fn catalogs(&mut self, folder: &RelPath) -> Result<Vec<RelPath>> {
        find_catalogs_listed(folder, &mut |f| match self.listed(f) {
            Some(listed) => Ok(Some(listed.leading.clone())),
            None => listed_for_catalogs(self.tree, f),
        })
    }
}

/// The archived catalogs that incoming ones merge into.
struct MergeTargets {
    /// Incoming catalog (relative to the session) → the archived catalog it merges into.
    catalogs: BTreeMap<String, RelPath>,
    /// The archived catalogs read, in the order the incoming ones first named them.
    read_order: Vec<RelPath>,
    /// Each readable archived catalog as it was read.
    reads: HashMap<RelPath, Rc<CatalogRead>>,
}

/// Incoming resource catalogs whose resource folder already exists in the target: merged, not moved.
fn catalogs_to_merge(plan: &Plan, arch: &Tree, present: &mut Present, files: &[String]) -> Result<MergeTargets> {
    let mut merged_catalogs = BTreeMap::new();
    let mut read_order = Vec::new();
    let mut reads = HashMap::default();
    for rel in files.iter().filter(|rel| rel.ends_with("_catalog.xml")) {
        let mapped = plan.target.join_path(&map_path(rel, &plan.scan_ids))?;
        let to_folder = mapped.parent();
        // The catalog merged into is most often where the incoming one would go (the same scan archived
        // before): it is read while the host lists its folder, and that reading kept if the listing finds it
        // there. (Under the destination's lock, as the listing: either order reads the same.)
        let mut early = None;
        if !present.folders.contains_key(&to_folder) && !reads.contains_key(&mapped) {
            if present.ahead.as_ref().is_none_or(|(walked, _)| *walked != to_folder) {
                present.ahead = Some((to_folder.clone(), arch.walk_ahead(&to_folder)));
            }
            early = read_catalog(arch, &mapped).ok();
        }
        let Some(target_cat) = present.catalogs(&to_folder)?.into_iter().next() else { continue };
        if !reads.contains_key(&target_cat)
            && let Some(read) = match early {
                Some(read) if target_cat == mapped => read,
                _ => read_catalog(arch, &target_cat)?,
            }
        {
            read_order.push(target_cat.clone());
            reads.insert(target_cat.clone(), Rc::new(read));
        }
        merged_catalogs.insert(rel.clone(), target_cat);
    }
    Ok(MergeTargets { catalogs: merged_catalogs, read_order, reads })
}

/// overwrite=delete: an archived file whose DICOM instance arrives under another name is replaced like a
/// clashing file, before the commit — set aside by a backup step (undone on roll-back), never deleted by
/// the catalog merge after it.
fn backup_replaced_instances(plan: &mut Plan, pre: &Tree, arch: &Tree, from: &RelPath, into: &RelPath) -> Result<()> {
    let (Some(incoming), Some(existing)) = (read_catalog_entries(pre, from)?, read_catalog_entries(arch, into)?) else {
        return Ok(());
    };
    let old_by_uid: BTreeMap<String, String> =
        existing.into_iter().filter_map(|(uri, uid, _)| Some((uid?, uri))).collect();
    for (uri, uid, _) in incoming {
        let Some(old_uri) = uid.and_then(|u| old_by_uid.get(&u)) else { continue };
        if *old_uri == uri {
            continue;
        }
        let Ok(old_file) = into.parent().join_path(old_uri) else { continue };
        let Some(inside) = old_file.strip_prefix(&plan.target) else { continue };
        if matches!(arch.kind(&old_file)?, Some(Kind::File { .. })) {
            let backup = plan.target.join(&format!(".~xnat-replaced-{}", plan.session.timestamp))?.join_path(inside)?;
            if !plan.steps.iter().any(|s| matches!(s, Step::Backup { file, .. } if *file == old_file)) {
                plan.steps.push(Step::Backup { file: old_file, to: backup });
            }
        }
    }
    Ok(())
}

/// A path of the incoming session with its scan renamed: `SCANS/<id>/...` → `SCANS/<new>/...`, and
/// `scan_<id>_catalog.xml` → `scan_<new>_catalog.xml`.
pub fn map_path(rel: &str, scan_ids: &BTreeMap<String, String>) -> String {
    // Most paths are not below a renamed scan (a merge maps every file's): told without taking them apart.
    if !in_renamed_scan(rel, scan_ids) {
        return rel.to_string();
    }
    let mut parts: Vec<String> = rel.split('/').map(str::to_string).collect();
    if parts.len() > 2
        && parts[0] == "SCANS"
        && let Some(new) = scan_ids.get(&parts[1])
        && *new != parts[1]
    {
        let old = std::mem::replace(&mut parts[1], new.clone());
        let last = parts.last_mut().expect("not empty");
        if let Some(rest) = last.strip_prefix(&format!("scan_{old}_")) {
            *last = format!("scan_{new}_{rest}");
        } else if *last == format!("{old}_catalog.xml") {
            *last = format!("{new}_catalog.xml");
        }
    }
    parts.join("/")
}

/// Whether `rel` lies below a scan folder (`SCANS/<id>/...`) whose scan is renamed.
fn in_renamed_scan(rel: &str, scan_ids: &BTreeMap<String, String>) -> bool {
    rel.strip_prefix("SCANS/")
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(old, _)| scan_ids.get(old).is_some_and(|new| new != old))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_renames_like_xnat() {
        let taken: BTreeSet<String> = ["4", "4-MR1"].iter().map(|s| s.to_string()).collect();
        assert_eq!(rename_scan("4", "MR", &taken), "4-MR2");
        assert_eq!(rename_scan("4-MR1", "MR", &taken), "4-MR2");
        assert_eq!(rename_scan("5", "PT", &taken), "5-PT1");
        let ids: BTreeMap<String, String> = [("4".to_string(), "4-MR2".to_string())].into();
        assert_eq!(map_path("SCANS/4/DICOM/scan_4_catalog.xml", &ids), "SCANS/4-MR2/DICOM/scan_4-MR2_catalog.xml");
        assert_eq!(map_path("SCANS/4/DICOM/a.dcm", &ids), "SCANS/4-MR2/DICOM/a.dcm");
        assert_eq!(map_path("RESOURCES/4/x", &ids), "RESOURCES/4/x");
        assert_eq!(map_path("SCANS/5/DICOM/a.dcm", &ids), "SCANS/5/DICOM/a.dcm");
        assert_eq!(map_path("SCANS/4", &ids), "SCANS/4");
        assert_eq!(map_path("SCANS/4/", &ids), "SCANS/4-MR2/");
    }
}
