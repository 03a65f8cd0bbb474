//! The prearchive: sessions waiting to be archived (`archive-service.md` §3).
//!
//! ```text
//! <prearchive>/<PROJECT>/<TIMESTAMP>/<FOLDER>/       the session's files (SCANS/..., RESOURCES/..., logs/)
//! <prearchive>/<PROJECT>/<TIMESTAMP>/<FOLDER>.xml    its session document, beside the folder (XNAT's layout)
//! <prearchive>/<TIMESTAMP>/<FOLDER>[.xml]            Unassigned sessions, directly under the root
//! <prearchive>/<PROJECT>/<TIMESTAMP>/.<FOLDER>.status  ours: a status XNAT keeps in its database (CONFLICT, ERROR)
//! <prearchive>/<PROJECT>/<TIMESTAMP>/.<FOLDER>.lock    ours: held while an operation runs (D13)
//! <prearchive>/<PROJECT>/<TIMESTAMP>/.<FOLDER>.journal ours: an archive's intent, until it is done (D14)
//! ```
//!
//! The listing is derived from disk as XNAT derives it when it rebuilds its table (no document → RECEIVING,
//! unreadable → ERROR, no ID → READY, an ID → ARCHIVING), overlaid with our persisted status and with the
//! in-progress status of a held lock (`_ARCHIVING`, ...).

use crate::error::{Error, Result};
use crate::fs::lock::Lock;
use crate::fs::tree::{FileStamp, Kind, Listed, RelPath, Stamps, Tree, check_segment};
use crate::import::table::{DocFields, Listing, Opened, Table};
use crate::model::session::SessionDoc;
use chrono::{DateTime, Datelike as _, NaiveDate, NaiveDateTime, Timelike as _};
use percent_encoding::percent_decode_str;

/// The folders a row is made of, from the prearchive's root: the root (0), its projects and Unassigned timestamp
/// folders (1), the projects' timestamp folders (2), where a session's document and our files lie, and the
/// sessions' folders (3), whose time a session without a document shows.
const WATCHED_DEPTH: u32 = 3;

/// The pseudo-project of sessions that have none.
pub const UNASSIGNED: &str = "Unassigned";

/// A prearchive session: project (None = Unassigned), timestamp folder, session folder.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionRef {
    pub project: Option<String>,
    pub timestamp: String,
    pub folder: String,
}

impl SessionRef {
    /// A session address, accepted only if it can name exactly one session: a project id that is an XNAT
    /// identifier and not a timestamp (`Unassigned` or none: the root), a timestamp folder name that is a
    /// timestamp, and a session folder name the prearchive lists (no dot, not `temp-unpack`). Anything else
    /// is a bad request, so that no action can take a project's timestamp folder, or a folder inside a
    /// session, for a session.
    pub fn new(project: Option<&str>, timestamp: &str, folder: &str) -> Result<SessionRef> {
        let project = project.filter(|p| !p.is_empty() && *p != UNASSIGNED);
        if let Some(p) = project
            && (is_timestamp(p) || crate::site::names::check_project_id(p).is_err())
        {
            return Err(Error::BadRequest(format!(
                "{p:?} is not a prearchive project: project ids are XNAT identifiers (letters, digits, '-', '_') \
                 and never timestamps; name /prearchive/projects/PROJECT/TIMESTAMP/FOLDER"
            )));
        }
        if !is_timestamp(timestamp) {
            return Err(Error::BadRequest(format!(
                "{timestamp:?} is not a prearchive timestamp folder (yyyyMMdd_HHmmssSSS); name \
                 /prearchive/projects/PROJECT/TIMESTAMP/FOLDER"
            )));
        }
        if !is_session_folder(folder) {
            return Err(Error::BadRequest(format!(
                "{folder:?} is not a prearchive session folder name (no dots, separators or reserved names, at most \
                 {} bytes)",
                crate::site::names::MAX_IDENTIFIER
            )));
        }
        Ok(SessionRef { project: project.map(str::to_string), timestamp: timestamp.into(), folder: folder.into() })
    }

    /// A session a listing came across, in a timestamp folder [`Prearchive::timestamp_dirs`] gave (whose
    /// project and timestamp it checked as [`SessionRef::new`] checks them): `None` unless `folder` names one.
    fn listed(project: Option<&str>, timestamp: &str, folder: &str) -> Option<SessionRef> {
        is_session_folder(folder).then(|| SessionRef {
            project: project.filter(|p| !p.is_empty() && *p != UNASSIGNED).map(str::to_string),
            timestamp: timestamp.into(),
            folder: folder.into(),
        })
    }

    /// Parses `src`: `/prearchive/projects/P/TS/FOLDER`, with or without `/data` (or `/REST`).
    pub fn parse_src(src: &str) -> Result<SessionRef> {
        let bad = |why: &str| Error::BadRequest(format!("Invalid src URI ({src}): {why}"));
        let body = src.strip_prefix('/').ok_or_else(|| bad("it must start with /data/prearchive/projects/"))?;
        let body = body.strip_suffix('/').unwrap_or(body);
        let mut segs: Vec<String> = Vec::new();
        for s in body.split('/') {
            let d = percent_decode_str(s).decode_utf8().map_err(|_| bad("a segment is not UTF-8"))?;
            check_segment(&d).map_err(|_| bad("a segment is empty, '.', '..' or holds a separator"))?;
            segs.push(d.into_owned());
        }
        let mut s: Vec<&str> = segs.iter().map(String::as_str).collect();
        if matches!(s.first(), Some(&"data") | Some(&"REST")) {
            s.remove(0);
        }
        match s.as_slice() {
            ["prearchive", "projects", p, ts, f] => SessionRef::new(Some(p), ts, f),
            ["archive", ..] | ["projects", ..] | ["experiments", ..] | ["subjects", ..] => {
                Err(bad("an archive URI is not a prearchive session; name /prearchive/projects/P/TIMESTAMP/FOLDER"))
            }
            _ => Err(bad("expected /prearchive/projects/PROJECT/TIMESTAMP/FOLDER")),
        }
    }

    /// The project as listings show it.
    pub fn project_name(&self) -> &str {
        self.project.as_deref().unwrap_or(UNASSIGNED)
    }

    /// `/prearchive/projects/P/TS/F`, the `url` column.
    pub fn url(&self) -> String {
        format!("/prearchive/projects/{}/{}/{}", self.project_name(), self.timestamp, self.folder)
    }

    /// The timestamp folder.
    pub fn timestamp_dir(&self) -> RelPath {
        let base = match &self.project {
            Some(p) => RelPath::new(p).expect("checked"),
            None => RelPath::root(),
        };
        base.join(&self.timestamp).expect("checked")
    }

    pub fn dir(&self) -> RelPath {
        self.timestamp_dir().join(&self.folder).expect("checked")
    }
    pub fn document(&self) -> RelPath {
        self.beside(&format!("{}.xml", self.folder))
    }
    pub fn status_file(&self) -> RelPath {
        self.beside(&format!(".{}.status", self.folder))
    }
    pub fn lock_file(&self) -> RelPath {
        self.beside(&format!(".{}.lock", self.folder))
    }
    pub fn journal_file(&self) -> RelPath {
        self.beside(&format!(".{}.journal", self.folder))
    }
    fn beside(&self, name: &str) -> RelPath {
        self.timestamp_dir().join(name).expect("checked")
    }
}

impl std::fmt::Display for SessionRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url())
    }
}

/// XNAT's prearchive statuses (`PrearcUtils.PrearcStatus`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Ready,
    Receiving,
    Building,
    Archiving,
    Moving,
    Deleting,
    Conflict,
    Error,
    /// An operation is running: `_ARCHIVING`, `_MOVING`, `_DELETING`, ...
    InProgress(String),
}

impl Status {
    pub fn as_str(&self) -> String {
        match self {
            Status::Ready => "READY".into(),
            Status::Receiving => "RECEIVING".into(),
            Status::Building => "BUILDING".into(),
            Status::Archiving => "ARCHIVING".into(),
            Status::Moving => "MOVING".into(),
            Status::Deleting => "DELETING".into(),
            Status::Conflict => "CONFLICT".into(),
            Status::Error => "ERROR".into(),
            Status::InProgress(op) => format!("_{op}"),
        }
    }

    fn parse(s: &str) -> Option<Status> {
        Some(match s.trim() {
            "READY" => Status::Ready,
            "RECEIVING" => Status::Receiving,
            "BUILDING" => Status::Building,
            "ARCHIVING" => Status::Archiving,
            "MOVING" => Status::Moving,
            "DELETING" => Status::Deleting,
            "CONFLICT" => Status::Conflict,
            "ERROR" => Status::Error,
            _ => return None,
        })
    }
}

/// One row of the listing: XNAT's 19 columns, in XNAT's order.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Row {
    pub project: String,
    pub timestamp: String,
    pub lastmod: String,
    pub uploaded: String,
    pub scan_date: String,
    pub scan_time: String,
    pub subject: String,
    pub folder_name: String,
    pub name: String,
    pub tag: String,
    pub status: String,
    pub url: String,
    pub autoarchive: String,
    pub prevent_anon: String,
    pub prevent_auto_commit: String,
    pub source: String,
    pub visit: String,
    pub protocol: String,
    pub timezone: String,
}

impl Row {
    /// XNAT's column names (`DatabaseSession`), in its order.
    pub const COLUMNS: [&'static str; 19] = [
        "project",
        "timestamp",
        "lastmod",
        "uploaded",
        "scan_date",
        "scan_time",
        "subject",
        "folderName",
        "name",
        "tag",
        "status",
        "url",
        "autoarchive",
        "prevent_anon",
        "prevent_auto_commit",
        "SOURCE",
        "VISIT",
        "PROTOCOL",
        "TIMEZONE",
    ];

    /// The values, in the order of [`Row::COLUMNS`].
    pub fn into_values(self) -> [String; 19] {
        [
            self.project,
            self.timestamp,
            self.lastmod,
            self.uploaded,
            self.scan_date,
            self.scan_time,
            self.subject,
            self.folder_name,
            self.name,
            self.tag,
            self.status,
            self.url,
            self.autoarchive,
            self.prevent_anon,
            self.prevent_auto_commit,
            self.source,
            self.visit,
            self.protocol,
            self.timezone,
        ]
    }
}

/// Which of a session's files (beside its folder, in its timestamp folder) a listing showed, with the
/// document's stamp when the listing took it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Seen {
    folder: bool,
    document: bool,
    lock: bool,
    status: bool,
    journal: bool,
    document_stamp: Option<FileStamp>,
}

impl Seen {
    /// Nothing known: every file is looked for.
    const UNKNOWN: Seen =
        Seen { folder: true, document: true, lock: true, status: true, journal: true, document_stamp: None };

    /// The sessions among a timestamp folder's entries — a folder, or a journal whose folder has moved —
    /// with what was seen of each, by folder name.
    fn sessions(entries: &[Listed]) -> std::collections::BTreeMap<String, Seen> {
        let mut all: std::collections::BTreeMap<String, Seen> = std::collections::BTreeMap::new();
        for (name, kind, stamp) in entries {
            if *kind == Kind::Dir {
                all.entry(name.clone()).or_default().folder = true;
            }
            // Whatever it is (a FIFO or a folder where a lock or document belongs is the session's error,
            // which the row reports): a name of one of its files marks the session's file as there.
            let ours = name.strip_prefix('.').and_then(|n| n.rsplit_once('.'));
            let (folder, which) = match (ours, name.strip_suffix(".xml")) {
                (Some((folder, "lock")), _) => (folder, 0),
                (Some((folder, "status")), _) => (folder, 1),
                (Some((folder, "journal")), _) => (folder, 2),
                (_, Some(folder)) => (folder, 3),
                _ => continue,
            };
            let seen = all.entry(folder.to_string()).or_default();
            match which {
                0 => seen.lock = true,
                1 => seen.status = true,
                2 => seen.journal = true,
                _ => {
                    seen.document = true;
                    seen.document_stamp = *stamp;
                }
            }
        }
        all.retain(|_, seen| seen.folder || seen.journal);
        all
    }
}

/// The prearchive tree, read and changed through its grant.
pub struct Prearchive<'a> {
    tree: &'a Tree,
}

impl<'a> Prearchive<'a> {
    pub fn new(tree: &'a Tree) -> Self {
        Prearchive { tree }
    }

    pub fn tree(&self) -> &'a Tree {
        self.tree
    }

    /// Every session, or those of one project (`Unassigned` for the root), sorted. A session whose archive
    /// was cut short after its folder moved is still listed (its journal beside it says so), so that it
    /// can be seen and archived again, which finishes or rolls back the cut-short archive first.
    pub fn sessions(&self, project: Option<&str>) -> Result<Vec<SessionRef>> {
        let mut out = std::collections::BTreeSet::new();
        for (p, ts, dir) in self.timestamp_dirs(project)? {
            for (name, kind) in self.list_if_there(&dir)? {
                let folder = match kind {
                    Kind::Dir => Some(name.as_str()),
                    Kind::File { .. } => name.strip_prefix('.').and_then(|n| n.strip_suffix(".journal")),
                    _ => None,
                };
                if let Some(folder) = folder
                    && let Ok(s) = SessionRef::new(p.as_deref(), &ts, folder)
                {
                    out.insert(s);
                }
            }
        }
        Ok(out.into_iter().collect())
    }

    /// The timestamp folders, of every project or of one (`Unassigned` for the root): (project, timestamp,
    /// folder). Our own files (`.<FOLDER>.lock`, `.journal`, ...) live in these folders.
    pub fn timestamp_dirs(&self, project: Option<&str>) -> Result<Vec<(Option<String>, String, RelPath)>> {
        let mut out = Vec::new();
        for (name, kind) in self.tree.list(&RelPath::root())? {
            if kind != Kind::Dir || skipped_name(&name) {
                continue;
            }
            if is_timestamp(&name) {
                if project.is_none_or(|p| p == UNASSIGNED) {
                    out.push((None, name.clone(), RelPath::new(&name)?));
                }
            } else if project.is_none_or(|p| p == name) && crate::site::names::check_project_id(&name).is_ok() {
                let pdir = RelPath::new(&name)?;
                for (ts, k) in self.list_if_there(&pdir)? {
                    if k == Kind::Dir && is_timestamp(&ts) {
                        out.push((Some(name.clone()), ts.clone(), pdir.join(&ts)?));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Sessions that have one of our files (`.<FOLDER><suffix>`, e.g. `.journal`) beside them, whether their
    /// folder is still there or not.
    pub fn sessions_with(&self, suffix: &str) -> Result<Vec<SessionRef>> {
        let mut out = Vec::new();
        for (p, ts, dir) in self.timestamp_dirs(None)? {
            for (name, kind) in self.list_if_there(&dir)? {
                if let (Kind::File { .. }, Some(folder)) =
                    (kind, name.strip_prefix('.').and_then(|n| n.strip_suffix(suffix)))
                    && let Ok(s) = SessionRef::new(p.as_deref(), &ts, folder)
                {
                    out.push(s);
                }
            }
        }
        Ok(out)
    }

    /// A folder's entries; none when it is gone. Archives, moves and deletes remove emptied timestamp and
    /// project folders while other requests list them: a folder that vanished has no sessions.
    fn list_if_there(&self, dir: &RelPath) -> Result<Vec<(String, Kind)>> {
        match self.tree.list(dir) {
            Err(Error::NotFound(_)) => Ok(Vec::new()),
            listed => listed,
        }
    }

    /// Whether the session's folder exists.
    pub fn exists(&self, s: &SessionRef) -> Result<bool> {
        self.tree.is_dir(&s.dir())
    }

    /// `NotFound` unless the session exists.
    pub fn require(&self, s: &SessionRef) -> Result<()> {
        if self.exists(s)? {
            Ok(())
        } else {
            Err(Error::NotFound(format!("{} not found: no such prearchive session", s.url())))
        }
    }

    /// The session document; `None` while none has been written (receiving).
    pub fn document(&self, s: &SessionRef) -> Result<Option<SessionDoc>> {
        self.read_document(s, SessionDoc::parse).0
    }

    /// [`Prearchive::document`] with only what a listing row shows ([`SessionDoc::parse_heading`]: for the
    /// row only, never written back), and the document's modification time.
    fn heading(&self, s: &SessionRef) -> (Result<Option<SessionDoc>>, Option<i64>) {
        self.read_document(s, SessionDoc::parse_heading)
    }

    /// The document parsed by `parse` (`None` while none has been written), and its modification time when
    /// it is there (from the same look at the file).
    fn read_document(
        &self,
        s: &SessionRef,
        parse: fn(&[u8]) -> std::result::Result<SessionDoc, String>,
    ) -> (Result<Option<SessionDoc>>, Option<i64>) {
        let path = s.document();
        match self.tree.read_stamped(&path) {
            Ok((bytes, modified)) if bytes.iter().all(u8::is_ascii_whitespace) => (Ok(None), modified),
            Ok((bytes, modified)) => {
                let parsed = parse(&bytes).map_err(|why| crate::model::session::unreadable(path.as_str(), &why));
                (parsed.map(Some), modified)
            }
            Err(Error::NotFound(_)) => (Ok(None), None),
            Err(e) => (Err(e), None),
        }
    }

    /// The status: a running operation, else our persisted one, else XNAT's derivation from disk.
    pub fn status(&self, s: &SessionRef) -> Result<Status> {
        Ok(self.status_and_message(s)?.0)
    }

    /// The status and, for a persisted one, the message that explains it.
    pub fn status_and_message(&self, s: &SessionRef) -> Result<(Status, Option<String>)> {
        self.status_given(s, &Seen::UNKNOWN, || implied_status(&self.document(s)))
    }

    /// [`Prearchive::status_and_message`], looking only for the files `seen` may hold, with the status the
    /// session's document implies from `implied` (asked only when no lock or status file says otherwise).
    fn status_given(
        &self,
        s: &SessionRef,
        seen: &Seen,
        implied: impl FnOnce() -> Status,
    ) -> Result<(Status, Option<String>)> {
        match if seen.lock { Lock::holder(self.tree, &s.lock_file()) } else { Ok(None) } {
            Ok(Some(h)) => return Ok((Status::InProgress(h.operation), None)),
            Ok(None) => {}
            // A lock that cannot be read (a FIFO, a folder) is this session's problem: its row says ERROR
            // and why, and the listing of the others goes on (it failed as a whole).
            Err(e) => return Ok((Status::Error, Some(format!("its lock file cannot be read: {}", e.message())))),
        }
        if let Ok(bytes) =
            if seen.status { self.tree.read(&s.status_file()) } else { Err(Error::NotFound(String::new())) }
        {
            let text = String::from_utf8_lossy(&bytes);
            let mut lines = text.lines();
            if let Some(st) = lines.next().and_then(Status::parse) {
                let msg: Vec<&str> = lines.collect();
                return Ok((st, (!msg.is_empty()).then(|| msg.join("\n"))));
            }
        }
        Ok((implied(), None))
    }

    /// Persists a status (CONFLICT, ERROR, ...) with the message that explains it.
    pub fn set_status(&self, s: &SessionRef, status: &Status, message: Option<&str>) -> Result<()> {
        let body = format!("{}\n{}", status.as_str(), message.unwrap_or(""));
        self.tree.write_atomic(&s.status_file(), body.trim_end().as_bytes())
    }

    /// Forgets the persisted status: the row goes back to what the disk says (XNAT's `reset-status`).
    pub fn reset_status(&self, s: &SessionRef) -> Result<Row> {
        self.require(s)?;
        if let Some(h) = Lock::holder(self.tree, &s.lock_file())? {
            return Err(Error::Locked(format!(
                "Operation already in progress on this prearchive entry ({}); reset it when that is done",
                h.operation
            )));
        }
        match self.tree.remove_file(&s.status_file()) {
            Ok(()) | Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        self.row(s)
    }

    /// Locks the session for an operation (`ARCHIVING`, `MOVING`, `DELETING`).
    pub fn lock(&self, s: &SessionRef, operation: &str) -> Result<Lock> {
        Lock::acquire(self.tree, &s.lock_file(), operation, "this prearchive entry")
    }

    /// The listing row of one session.
    pub fn row(&self, s: &SessionRef) -> Result<Row> {
        let seen = Seen { document: self.tree.kind(&s.document())?.is_some(), ..Seen::UNKNOWN };
        let row = self.row_seen(s, &seen, None)?;
        Ok(row.unwrap_or_else(|| self.row_of(s, Status::Receiving, DocFields::default(), String::new())))
    }

    /// The row of a session as a listing of its timestamp folder saw it (`seen`); `None` when it is gone
    /// by now (archived, moved or deleted while the listing ran). With a `table`, what the document shows is
    /// taken from it while the document's stamp is the remembered one, and remembered when read.
    fn row_seen(&self, s: &SessionRef, seen: &Seen, mut table: Option<(&mut Table, &str)>) -> Result<Option<Row>> {
        let remembered = match (table.as_mut(), seen.document_stamp) {
            (Some((t, session)), Some(stamp)) => t.get(session, &stamp).cloned().map(|f| (f, stamp)),
            (Some((t, session)), None) => {
                t.forget(session);
                None
            }
            (None, _) => None,
        };
        let (fields, modified) = match remembered {
            Some((fields, stamp)) => (fields, stamp.modified_ns.map(|ns| (ns / 1_000_000) as i64)),
            None if seen.document => {
                let (read, modified) = self.heading(s);
                let fields = doc_fields(&read);
                if let (Some((t, session)), Some(stamp)) = (table, seen.document_stamp) {
                    // An error reading the file (not its content) may pass: only what was read is remembered.
                    match &read {
                        Err(Error::Io(_) | Error::NotFound(_)) => t.forget(session),
                        _ => t.remember(session, &stamp, &fields),
                    }
                }
                (fields, modified)
            }
            None => (DocFields { status: Status::Receiving.as_str(), ..DocFields::default() }, None),
        };
        let (status, _) = self.status_given(s, seen, || Status::parse(&fields.status).unwrap_or(Status::Error))?;
        let modified =
            modified.map_or_else(|| self.tree.modified_millis(&if seen.document { s.document() } else { s.dir() }), Ok);
        let lastmod = match modified {
            Ok(millis) => sql_timestamp(millis),
            Err(_) if !self.exists(s)? && self.tree.kind(&s.journal_file())?.is_none() => return Ok(None),
            Err(_) => String::new(),
        };
        Ok(Some(self.row_of(s, status, fields, lastmod)))
    }

    /// A row from what was read of the session.
    fn row_of(&self, s: &SessionRef, status: Status, doc: DocFields, lastmod: String) -> Row {
        Row {
            project: s.project_name().to_string(),
            timestamp: s.timestamp.clone(),
            lastmod,
            uploaded: uploaded(&s.timestamp),
            scan_date: doc.scan_date,
            scan_time: doc.scan_time,
            subject: doc.subject,
            folder_name: s.folder.clone(),
            name: doc.name.unwrap_or_else(|| s.folder.clone()),
            tag: doc.tag,
            status: status.as_str(),
            url: s.url(),
            autoarchive: "Manual".into(),
            prevent_anon: "false".into(),
            prevent_auto_commit: "false".into(),
            source: String::new(),
            visit: doc.visit,
            protocol: doc.protocol,
            timezone: String::new(),
        }
    }

    /// The listing: every session, or one project's.
    ///
    /// One read of each timestamp folder tells which of a session's files exist (its folder, document,
    /// lock, status and journal) and the document's stamp; a row costs the document's read, or nothing when
    /// the prearchive table remembers the document under that stamp ([`super::table`]). A session archived,
    /// moved or deleted while the listing runs is left out. Where the host watches the prearchive, a listing
    /// that finds the host's mark unchanged since the table kept a whole listing is that listing.
    pub fn list(&self, project: Option<&str>) -> Result<Vec<Row>> {
        // Asked before anything is read: whatever changes from now on moves the mark.
        let mark = self.tree.watch(&RelPath::root(), WATCHED_DEPTH);
        let mut table = match Table::open(self.tree, mark.as_deref()) {
            Opened::Kept(rows) => {
                return Ok(match project {
                    None => rows,
                    Some(p) => rows.into_iter().filter(|row| row.project == p).collect(),
                });
            }
            Opened::Table(table) => table,
        };
        let mut rows = std::collections::BTreeMap::new();
        // A listing of every project is kept whole, with the mark.
        let whole = project.is_none();
        for (p, ts, dir) in self.timestamp_dirs(project)? {
            let listed = match self.tree.list_with(&dir, Stamps::Times) {
                Err(Error::NotFound(_)) => Vec::new(),
                listed => listed?,
            };
            for (folder, seen) in Seen::sessions(&listed) {
                if let Some(s) = SessionRef::listed(p.as_deref(), &ts, &folder) {
                    let session = s.dir();
                    if let Some(row) = self.row_seen(&s, &seen, Some((&mut table, session.as_str())))? {
                        rows.insert(s, row);
                    }
                }
            }
        }
        let rows: Vec<Row> = rows.into_values().collect();
        let listing = mark.as_deref().filter(|_| whole).map(|mark| Listing { mark, rows: &rows });
        let scope = |session: &str| match project {
            None => true,
            Some(UNASSIGNED) => session.split('/').next().is_some_and(is_timestamp),
            Some(p) => session.strip_prefix(p).is_some_and(|rest| rest.starts_with('/')),
        };
        table.finish(self.tree, scope, listing);
        Ok(rows)
    }

    /// Deletes a session: its folder, document and our files, then empty parent folders. Allowed from
    /// RECEIVING, READY, CONFLICT and ERROR (XNAT's rule), never while locked.
    pub fn delete(&self, s: &SessionRef) -> Result<()> {
        self.require(s)?;
        let lock = self.lock(s, "DELETING")?;
        let status = self.status_without_lock(s)?;
        if !matches!(status, Status::Receiving | Status::Ready | Status::Conflict | Status::Error) {
            return Err(Error::Conflict(format!(
                "{} is {}; only RECEIVING, READY, CONFLICT or ERROR sessions can be deleted",
                s.url(),
                status.as_str()
            )));
        }
        if self.tree.kind(&s.journal_file())?.is_some() {
            return Err(Error::Conflict(format!("{} has an unfinished archive; run recover first", s.url())));
        }
        self.tree.remove_dir_all(&s.dir())?;
        for f in [s.document(), s.status_file()] {
            match self.tree.remove_file(&f) {
                Ok(()) | Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        lock.release()?;
        self.remove_empty_parents(s)
    }

    /// Moves a session to another project (or `Unassigned`): document first, then the folder, then the
    /// old document, so a crash at any point loses nothing. The moved session is READY.
    pub fn move_to(&self, s: &SessionRef, new_project: &str) -> Result<SessionRef> {
        crate::site::names::check_project_id(new_project)?;
        self.require(s)?;
        let target = SessionRef::new(Some(new_project), &s.timestamp, &s.folder)?;
        if target == *s {
            return Err(Error::BadRequest(format!("{} is already in project {new_project}", s.url())));
        }
        let lock = self.lock(s, "MOVING")?;
        let status = self.status_without_lock(s)?;
        if !matches!(status, Status::Receiving | Status::Ready | Status::Conflict | Status::Error) {
            return Err(Error::Conflict(format!("{} is {}; it cannot be moved now", s.url(), status.as_str())));
        }
        if self.tree.kind(&target.dir())?.is_some() || self.tree.kind(&target.document())?.is_some() {
            return Err(Error::Conflict(format!("{} already exists", target.url())));
        }
        self.tree.create_dir_all(&target.timestamp_dir())?;
        if let Some(mut doc) = self.document(s)? {
            match &target.project {
                Some(p) => doc.set_attr("project", p),
                None => {
                    doc.root_mut().remove_attr("project");
                }
            }
            if let Some(path) = doc.field("prearchivePath") {
                let old_tail = format!("/{}", s.dir().as_str());
                if let Some(stem) = path.strip_suffix(&old_tail) {
                    doc.set_field("prearchivePath", &format!("{stem}/{}", target.dir().as_str()), &[]);
                }
            }
            self.tree.write_atomic(&target.document(), doc.to_xml().as_bytes())?;
        }
        self.tree.rename_to(&s.dir(), self.tree, &target.dir())?;
        for f in [s.document(), s.status_file()] {
            match self.tree.remove_file(&f) {
                Ok(()) | Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        lock.release()?;
        self.remove_empty_parents(s)?;
        Ok(target)
    }

    /// The status as if no lock were held (for the holder of the lock).
    pub fn status_without_lock(&self, s: &SessionRef) -> Result<Status> {
        if let Ok(bytes) = self.tree.read(&s.status_file())
            && let Some(st) = String::from_utf8_lossy(&bytes).lines().next().and_then(Status::parse)
        {
            return Ok(st);
        }
        Ok(match self.document(s) {
            Ok(None) => Status::Receiving,
            Err(_) => Status::Error,
            Ok(Some(doc)) if doc.id().is_some() => Status::Archiving,
            Ok(Some(_)) => Status::Ready,
        })
    }

    /// Removes the timestamp folder and then the project folder, each only if empty.
    pub fn remove_empty_parents(&self, s: &SessionRef) -> Result<()> {
        let ts = s.timestamp_dir();
        if self.tree.remove_dir_if_empty(&ts)? && s.project.is_some() {
            self.tree.remove_dir_if_empty(&ts.parent())?;
        }
        Ok(())
    }

    /// Writes a line to the session's `logs/<millis>.log`, as XNAT logs prearchive events.
    pub fn log(&self, s: &SessionRef, message: &str) -> Result<()> {
        let logs = s.dir().join("logs")?;
        self.tree.create_dir_all(&logs)?;
        let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        let mut n = 0;
        loop {
            let name = if n == 0 { format!("{millis}.log") } else { format!("{millis}-{n}.log") };
            if self.tree.create_new(&logs.join(&name)?, message.as_bytes())? {
                return Ok(());
            }
            n += 1;
        }
    }
}

/// `yyyyMMdd_HHmmssSSS` (18 characters) or the legacy `yyyyMMdd_HHmmss`, naming a real moment.
/// The status a session's document implies, as XNAT's rebuild of its table derives it: none → RECEIVING,
/// unreadable → ERROR, an ID → ARCHIVING, else READY.
fn implied_status(document: &Result<Option<SessionDoc>>) -> Status {
    match document {
        Ok(None) => Status::Receiving,
        Err(_) => Status::Error,
        Ok(Some(doc)) if doc.id().is_some() => Status::Archiving,
        Ok(Some(_)) => Status::Ready,
    }
}

/// What a row shows from a session's document (read as `document`).
fn doc_fields(document: &Result<Option<SessionDoc>>) -> DocFields {
    let status = implied_status(document).as_str();
    let Ok(Some(doc)) = document else { return DocFields { status, ..DocFields::default() } };
    let field = |f: &str| doc.field(f).unwrap_or_default();
    let attr = |a: &str| doc.attr(a).map(str::to_string).unwrap_or_default();
    DocFields {
        status,
        scan_date: field("date"),
        scan_time: field("time"),
        subject: doc.subject_id().or_else(|| doc.field("dcmPatientName")).unwrap_or_default(),
        name: doc.label().map(str::to_string).or_else(|| doc.field("dcmPatientId")),
        tag: attr("UID"),
        visit: attr("visit_id"),
        protocol: attr("protocol"),
    }
}

pub fn is_timestamp(name: &str) -> bool {
    timestamp(name).is_some()
}

/// The moment a timestamp folder's name gives (XNAT writes it in the server's zone; read as is):
/// `yyyyMMdd_HHmmssSSS` or `yyyyMMdd_HHmmss`, digits only, a real date and time. Read field by field (every
/// folder of a listing is tried; a format string would be parsed again for each).
fn timestamp(name: &str) -> Option<NaiveDateTime> {
    if !matches!(name.len(), 15 | 18) || name.as_bytes()[8] != b'_' {
        return None;
    }
    let digits = |at: std::ops::Range<usize>| -> Option<u32> {
        let field = name.get(at)?;
        field.bytes().all(|b| b.is_ascii_digit()).then(|| field.parse().ok())?
    };
    let millis = if name.len() == 18 { digits(15..18)? } else { 0 };
    let date = NaiveDate::from_ymd_opt(digits(0..4)? as i32, digits(4..6)?, digits(6..8)?)?;
    date.and_hms_milli_opt(digits(9..11)?, digits(11..13)?, digits(13..15)?, millis)
}

/// Whether `name` may be a session's folder: one the prearchive lists, within XNAT's length for identifiers.
fn is_session_folder(name: &str) -> bool {
    check_segment(name).is_ok() && !skipped_name(name) && name.len() <= crate::site::names::MAX_IDENTIFIER
}

/// Names XNAT's trawler passes over: anything with a dot (documents, our files) and `temp-unpack`.
fn skipped_name(name: &str) -> bool {
    name.contains('.') || name == "temp-unpack"
}

/// The `uploaded` column from the timestamp folder: `2024-01-01 12:00:00.123` (`java.sql.Timestamp`).
pub fn uploaded(ts: &str) -> String {
    timestamp(ts).map(sql_format).unwrap_or_default()
}

/// Milliseconds since the epoch as `java.sql.Timestamp.toString()` prints them (UTC).
fn sql_timestamp(millis: i64) -> String {
    sql_format(DateTime::from_timestamp_millis(millis).unwrap_or_default().naive_utc())
}

/// `java.sql.Timestamp.toString()`: seconds, then the milliseconds without trailing zeros (`.0` for none).
fn sql_format(t: NaiveDateTime) -> String {
    let (date, time, millis) = (t.date(), t.time(), t.and_utc().timestamp_subsec_millis());
    // Every row has two: written digit by digit (`format!` is most of a row's cost inside the component),
    // except for what that cannot write (a year outside 0–9999, a leap second).
    if let (Ok(year @ 0..=9999), 0..=999) = (u32::try_from(date.year()), millis) {
        fn digits(out: &mut String, n: u32, width: u32) {
            for place in (0..width).rev() {
                out.push(char::from(b'0' + (n / 10u32.pow(place) % 10) as u8));
            }
        }
        let mut out = String::with_capacity(23);
        digits(&mut out, year, 4);
        for (sep, n) in
            [('-', date.month()), ('-', date.day()), (' ', time.hour()), (':', time.minute()), (':', time.second())]
        {
            out.push(sep);
            digits(&mut out, n, 2);
        }
        out.push('.');
        match millis {
            0 => out.push('0'),
            m if m % 100 == 0 => digits(&mut out, m / 100, 1),
            m if m % 10 == 0 => digits(&mut out, m / 10, 2),
            m => digits(&mut out, m, 3),
        }
        return out;
    }
    let millis = format!("{millis:03}");
    let millis = millis.trim_end_matches('0');
    let (date, time) = (t.date(), t.time());
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{}",
        date.year(),
        date.month(),
        date.day(),
        time.hour(),
        time.minute(),
        time.second(),
        if millis.is_empty() { "0" } else { millis }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_written_as_java_sql_timestamp_writes_them() {
        let at = |y, mo, d, h, mi, s, ms| {
            chrono::NaiveDate::from_ymd_opt(y, mo, d).unwrap().and_hms_milli_opt(h, mi, s, ms).unwrap()
        };
        assert_eq!(sql_format(at(2024, 3, 5, 7, 8, 9, 0)), "2024-03-05 07:08:09.0");
        assert_eq!(sql_format(at(2024, 12, 31, 23, 59, 59, 100)), "2024-12-31 23:59:59.1");
        assert_eq!(sql_format(at(999, 1, 1, 0, 0, 0, 120)), "0999-01-01 00:00:00.12");
        assert_eq!(sql_format(at(2024, 1, 1, 0, 0, 0, 5)), "2024-01-01 00:00:00.005");
        assert_eq!(sql_format(at(2024, 1, 1, 0, 0, 0, 999)), "2024-01-01 00:00:00.999");
        assert_eq!(sql_format(at(2024, 1, 1, 0, 0, 0, 40)), "2024-01-01 00:00:00.04");
        assert_eq!(sql_format(at(12345, 6, 7, 1, 2, 3, 450)), "12345-06-07 01:02:03.45");
        assert_eq!(sql_format(at(2016, 12, 31, 23, 59, 59, 1500)), "2016-12-31 23:59:59.15", "a leap second");
    }

    #[test]
    fn one_folder_read_tells_which_files_each_session_has() {
        let file = |name: &str| (name.to_string(), Kind::File { len: 1 }, None);
        let dir = |name: &str| (name.to_string(), Kind::Dir, None);
        let entries = vec![
            dir("A"),
            file("A.xml"),
            file(".A.lock"),
            file(".A.status"),
            dir("B"),
            file(".C.journal"),
            file(".C.lock"),
            file("D.xml"),
            file(".E.lock"),
            file(".tmp-123"),
            dir("F.xml"),
        ];
        let seen = Seen::sessions(&entries);
        let expect = |folder, document, lock, status, journal| Seen {
            folder,
            document,
            lock,
            status,
            journal,
            document_stamp: None,
        };
        assert_eq!(seen["A"], expect(true, true, true, true, false));
        assert_eq!(seen["B"], expect(true, false, false, false, false));
        assert_eq!(seen["C"], expect(false, false, true, false, true), "its folder moved: the journal says so");
        assert_eq!(seen["F.xml"], expect(true, false, false, false, false), "a folder, whatever its name");
        assert!(!seen.contains_key("F"), "a document alone is no session");
        // A FIFO where the document belongs is seen (its row then says ERROR), as is a folder for a lock.
        let odd = vec![dir("G"), ("G.xml".to_string(), Kind::Other, None), dir(".G.lock")];
        assert_eq!(Seen::sessions(&odd)["G"], expect(true, true, true, false, false));
        assert_eq!(seen.len(), 4, "a document, lock or temporary file alone is no session: {seen:?}");
    }
    use std::fs;

    fn doc(project: Option<&str>, label: &str, id: &str) -> String {
        let p = project.map(|p| format!(" project=\"{p}\"")).unwrap_or_default();
        format!(
            r#"<xnat:MRSession xmlns:xnat="http://nrg.wustl.edu/xnat" ID="{id}"{p} label="{label}" UID="1.2.3"><xnat:date>2024-01-31</xnat:date><xnat:time>09:12:33</xnat:time><xnat:subject_ID>SUBJ1</xnat:subject_ID><xnat:prearchivePath>/data/pre/{}/20240131_091500123/{label}</xnat:prearchivePath></xnat:MRSession>"#,
            project.unwrap_or("x")
        )
    }

    fn site() -> (tempfile::TempDir, Tree) {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for (dir, document) in [
            ("P/20240131_091500123/S1", Some(doc(Some("P"), "S1", ""))),
            ("P/20240131_091500123/S2", None),
            ("P/20230101_101010/OLD", Some(doc(Some("P"), "OLD", "XNAT_E00009"))),
            ("Q/20240201_000000000/BAD", Some("<not xml".to_string())),
            ("20240301_120000500/U1", Some(doc(None, "U1", ""))),
        ] {
            fs::create_dir_all(r.join(dir).join("SCANS")).unwrap();
            if let Some(text) = document {
                fs::write(r.join(format!("{dir}.xml")), text).unwrap();
            }
        }
        fs::create_dir_all(r.join("temp-unpack/x")).unwrap();
        fs::create_dir_all(r.join("P/not-a-timestamp/S9")).unwrap();
        let t = Tree::new(r);
        (d, t)
    }

    #[test]
    fn timestamps_are_real_moments_and_print_as_java_sql_timestamps() {
        for (name, printed) in [
            ("20240131_091500123", "2024-01-31 09:15:00.123"),
            ("20240131_091500120", "2024-01-31 09:15:00.12"),
            ("20240131_091500000", "2024-01-31 09:15:00.0"),
            ("20240229_235959999", "2024-02-29 23:59:59.999"),
            ("20240131_091500", "2024-01-31 09:15:00.0"),
        ] {
            assert!(is_timestamp(name), "{name}");
            assert_eq!(uploaded(name), printed);
        }
        for name in [
            "20241399_120000000",
            "20230229_120000000",
            "20240101_250000000",
            "2024010_1120000000",
            "+2024010_120000000",
            "20240101_12000000x",
            "20240101-120000000",
            "20240101_1200000",
            "PROJ",
            "",
        ] {
            assert!(!is_timestamp(name), "{name}");
            assert_eq!(uploaded(name), "");
        }
    }

    #[test]
    fn discovery_rows_and_statuses() {
        let (_d, tree) = site();
        let pre = Prearchive::new(&tree);
        let rows = pre.list(None).unwrap();
        let got: Vec<(String, String, String)> =
            rows.iter().map(|r| (r.project.clone(), r.folder_name.clone(), r.status.clone())).collect();
        assert_eq!(
            got,
            [
                ("Unassigned".into(), "U1".into(), "READY".into()),
                ("P".into(), "OLD".into(), "ARCHIVING".into()),
                ("P".into(), "S1".into(), "READY".into()),
                ("P".into(), "S2".into(), "RECEIVING".into()),
                ("Q".into(), "BAD".into(), "ERROR".into()),
            ]
        );
        let s1 = &rows[2];
        assert_eq!(s1.url, "/prearchive/projects/P/20240131_091500123/S1");
        assert_eq!(
            (s1.uploaded.as_str(), s1.scan_date.as_str(), s1.scan_time.as_str()),
            ("2024-01-31 09:15:00.123", "2024-01-31", "09:12:33")
        );
        assert_eq!((s1.subject.as_str(), s1.name.as_str(), s1.tag.as_str()), ("SUBJ1", "S1", "1.2.3"));
        assert_eq!(rows[1].uploaded, "2023-01-01 10:10:10.0");
        assert_eq!(pre.list(Some("Unassigned")).unwrap().len(), 1);
        assert_eq!(pre.list(Some("P")).unwrap().len(), 3);
        assert!(pre.list(Some("NONE")).unwrap().is_empty());
    }

    /// Sets every session document's modification time an hour back, as if written long before the listing.
    fn settle(root: &std::path::Path, documents: &[&str]) {
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for d in documents {
            fs::File::options().write(true).open(root.join(d)).unwrap().set_modified(hour_ago).unwrap();
        }
    }

    #[test]
    fn the_table_gives_the_rows_the_documents_give_until_a_document_changes() {
        use crate::import::table::{TABLE_FILE, edit, remembered};
        let (d, tree) = site();
        let docs = ["P/20240131_091500123/S1.xml", "P/20230101_101010/OLD.xml", "Q/20240201_000000000/BAD.xml"];
        settle(d.path(), &docs);
        let pre = Prearchive::new(&tree);
        let read = pre.list(None).unwrap();
        let sessions = |tree: &Tree| remembered(tree).into_iter().map(|(s, _)| s).collect::<Vec<_>>();
        // The settled documents are remembered (a broken one as ERROR too); the fresh one (U1) is not yet.
        assert_eq!(sessions(&tree), ["P/20230101_101010/OLD", "P/20240131_091500123/S1", "Q/20240201_000000000/BAD"]);
        assert_eq!(remembered(&tree)[2].1.status, "ERROR");
        assert_eq!(pre.list(None).unwrap(), read, "rows from the table are the rows from the documents");

        // Rows come from the table while the documents' stamps are the remembered ones ...
        edit(&tree, |f| {
            if f.name.as_deref() == Some("S1") {
                f.name = Some("FROM-TABLE".into());
            }
        });
        let names = |rows: Vec<Row>| rows.into_iter().map(|r| r.name).collect::<Vec<_>>();
        assert_eq!(names(pre.list(Some("P")).unwrap()), ["OLD", "FROM-TABLE", "S2"]);
        // ... and never once a document changed (here: its size, and its inode's change time).
        fs::write(d.path().join(docs[0]), doc(Some("P"), "S1-RELABELLED", "")).unwrap();
        settle(d.path(), &docs[..1]);
        assert_eq!(names(pre.list(Some("P")).unwrap()), ["OLD", "S1-RELABELLED", "S2"]);
        let names_kept = |tree: &Tree| remembered(tree).into_iter().filter_map(|(_, f)| f.name).collect::<Vec<_>>();
        assert_eq!(names_kept(&tree), ["OLD", "S1-RELABELLED"], "FROM-TABLE is forgotten; BAD has no name");

        // A project's listing forgets its sessions that went, and keeps the others'.
        fs::remove_dir_all(d.path().join("P/20230101_101010")).unwrap();
        assert_eq!(names(pre.list(Some("P")).unwrap()), ["S1-RELABELLED", "S2"]);
        assert_eq!(sessions(&tree), ["P/20240131_091500123/S1", "Q/20240201_000000000/BAD"]);

        // A table that cannot be written is no error: the listing reads the documents.
        fs::remove_file(d.path().join(TABLE_FILE)).unwrap();
        fs::create_dir(d.path().join(TABLE_FILE)).unwrap();
        assert_eq!(pre.list(None).unwrap().len(), 4);
    }

    #[test]
    fn src_grammar() {
        let s = SessionRef::parse_src("/data/prearchive/projects/P/20240131_091500123/S1").unwrap();
        assert_eq!(s, SessionRef::new(Some("P"), "20240131_091500123", "S1").unwrap());
        assert_eq!(
            SessionRef::parse_src("/prearchive/projects/Unassigned/20240301_120000500/U1/").unwrap().project,
            None
        );
        for bad in [
            "prearchive/projects/P/T/F",
            "/data/prearchive/projects/P/T",
            "/data/prearchive/projects/P/../F/x",
            "/data/prearchive/projects/P/%2e%2e/F",
            "/data/archive/projects/P/subjects/S/experiments/E",
            "/data/prearchive/projects/P/T/F/extra",
            "/etc/passwd",
        ] {
            assert!(matches!(SessionRef::parse_src(bad), Err(Error::BadRequest(_))), "{bad}");
        }
    }

    #[test]
    fn an_address_names_exactly_one_session_or_is_refused() {
        let (d, tree) = site();
        let before = std::process::Command::new("find").arg(d.path()).output().unwrap().stdout;
        let pre = Prearchive::new(&tree);
        for bad in [
            // A project's timestamp folder taken for an Unassigned session.
            "/prearchive/projects/Unassigned/P/20240131_091500123",
            // A folder inside an Unassigned session taken for a session of "project" <timestamp>.
            "/prearchive/projects/20240301_120000500/U1/SCANS",
            // Not a timestamp, a folder with a dot, a reserved name, a project that is no identifier.
            "/prearchive/projects/P/not-a-timestamp/S9",
            "/prearchive/projects/P/20240131_091500123/S1.xml",
            "/prearchive/projects/P/20240131_091500123/temp-unpack",
            "/prearchive/projects/P%20Q/20240131_091500123/S1",
        ] {
            match SessionRef::parse_src(bad) {
                Err(Error::BadRequest(_)) => {}
                other => panic!("{bad}: {other:?}"),
            }
        }
        // Addresses that parse but name no session are not found, for every action.
        let ghost = SessionRef::new(Some("P"), "20240131_091500123", "NONE").unwrap();
        assert!(matches!(pre.delete(&ghost), Err(Error::NotFound(_))));
        assert!(matches!(pre.move_to(&ghost, "Q"), Err(Error::NotFound(_))));
        assert!(matches!(pre.reset_status(&ghost), Err(Error::NotFound(_))));
        let after = std::process::Command::new("find").arg(d.path()).output().unwrap().stdout;
        assert_eq!(before, after, "nothing may change");
    }

    #[test]
    fn statuses_persist_lock_and_reset() {
        let (_d, tree) = site();
        let pre = Prearchive::new(&tree);
        let s = SessionRef::new(Some("P"), "20240131_091500123", "S1").unwrap();
        pre.set_status(&s, &Status::Conflict, Some("Session already exists")).unwrap();
        assert_eq!(pre.status_and_message(&s).unwrap(), (Status::Conflict, Some("Session already exists".into())));
        let lock = pre.lock(&s, "ARCHIVING").unwrap();
        assert_eq!(pre.row(&s).unwrap().status, "_ARCHIVING");
        assert!(matches!(pre.reset_status(&s), Err(Error::Locked(_))));
        assert!(matches!(pre.delete(&s), Err(Error::Locked(_))));
        lock.release().unwrap();
        assert_eq!(pre.reset_status(&s).unwrap().status, "READY");
    }

    #[test]
    fn move_and_delete() {
        let (d, tree) = site();
        let pre = Prearchive::new(&tree);
        let s = SessionRef::new(Some("P"), "20240131_091500123", "S1").unwrap();
        for bad in ["..%2fQ", "../Q", "Q.1"] {
            assert!(matches!(pre.move_to(&s, bad), Err(Error::BadRequest(_))), "{bad}");
        }
        assert!(!d.path().join("..%2fQ").exists() && pre.exists(&s).unwrap());
        let moved = pre.move_to(&s, "Q").unwrap();
        assert_eq!(moved.url(), "/prearchive/projects/Q/20240131_091500123/S1");
        let doc = pre.document(&moved).unwrap().unwrap();
        assert_eq!(doc.project(), Some("Q"));
        assert_eq!(doc.field("prearchivePath").as_deref(), Some("/data/pre/Q/20240131_091500123/S1"));
        assert!(!pre.exists(&s).unwrap());
        assert!(d.path().join("P/20240131_091500123/S2").is_dir());
        let u = pre.move_to(&moved, UNASSIGNED).unwrap();
        assert_eq!(u.project, None);
        assert!(pre.document(&u).unwrap().unwrap().project().is_none());
        pre.delete(&u).unwrap();
        assert!(!d.path().join("20240131_091500123").exists());
        assert!(matches!(pre.delete(&u), Err(Error::NotFound(_))));
        let old = SessionRef::new(Some("P"), "20230101_101010", "OLD").unwrap();
        assert!(matches!(pre.delete(&old), Err(Error::Conflict(_))));
    }
}
