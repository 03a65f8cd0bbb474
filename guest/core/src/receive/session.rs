//! Placing received DICOM files into prearchive sessions, XNAT's way: one session per study (its
//! StudyInstanceUID) and target, in a timestamp folder of its own under its project (Unassigned when it has
//! none), one scan per series (its SeriesInstanceUID) at `SCANS/<scan>/DICOM/<file>`, the scan ID its series
//! number — a second series with the same number becomes `<n>-1`, then `<n>-2`, …
//!
//! A session being received has a marker beside its folder, `.<FOLDER>.receiving` (JSON: its study, subject
//! and the scan ID of each series), and no document: the prearchive lists it as RECEIVING. Building it
//! ([`crate::receive::build`]) writes the catalogs and the document and removes the marker: READY. A later
//! file of the same study (gradual-DICOM) joins the session while its marker is there.
//!
//! A file whose SOP instance is already in its scan is a duplicate: the same bytes are dropped quietly (a
//! resend), different bytes are refused and the file already there is kept.

use crate::error::{Error, Result};
use crate::fs::lock::Lock;
use crate::fs::tree::{Kind, RelPath, Tree};
use crate::import::prearchive::{Prearchive, SessionRef};
use crate::model::digest::{Algorithm, Hasher};
use crate::receive::dicom::Header;
use crate::receive::naming;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where the request says files go; unnamed parts come from each file's header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    pub project: Option<String>,
    pub subject: Option<String>,
    pub session: Option<String>,
}

/// What became of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Placed in `session`, scan `scan`, as `name`.
    Placed { session: SessionRef, scan: String, name: String },
    /// The same bytes were already there.
    Duplicate { session: SessionRef, scan: String, name: String },
}

impl Placement {
    pub fn session(&self) -> &SessionRef {
        match self {
            Placement::Placed { session, .. } | Placement::Duplicate { session, .. } => session,
        }
    }
}

/// The marker of a session being received.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Marker {
    pub study: String,
    #[serde(default)]
    pub subject: Option<String>,
    /// Series instance UID → scan ID.
    #[serde(default)]
    pub series: BTreeMap<String, String>,
}

/// The marker's path for a session.
pub fn marker_path(s: &SessionRef) -> RelPath {
    s.timestamp_dir().join(&format!(".{}.receiving", s.folder)).expect("a checked folder name")
}

/// Reads a session's marker; `None` when it is not being received.
pub fn read_marker(tree: &Tree, s: &SessionRef) -> Result<Option<Marker>> {
    match tree.read(&marker_path(s)) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            Error::Corrupt(format!("{} cannot be read ({e}); delete the session and send it again", marker_path(s)))
        }),
        Err(Error::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

fn write_marker(tree: &Tree, s: &SessionRef, m: &Marker) -> Result<()> {
    tree.write_atomic(&marker_path(s), &serde_json::to_vec(m).expect("plain data"))
}

/// The sessions receiving files; places files into them.
pub struct Receiver<'a> {
    pre: &'a Tree,
    archive: Option<&'a Tree>,
    target: Target,
    /// Join sessions already being received (gradual-DICOM); else every study gets a new session.
    join_existing: bool,
    /// Sessions this receiver opened or joined: (project, study, label) → session.
    open: BTreeMap<(Option<String>, String, String), SessionRef>,
    /// The sessions each study's files went to, in order of their first file.
    touched: Vec<SessionRef>,
    now_millis: i64,
}

/// The lock every placement holds for its few file-system steps (concurrent gradual uploads of one study
/// must agree on its session and scan IDs).
const LOCK: &str = ".xnat-archive/receiving.lock";

impl<'a> Receiver<'a> {
    /// `archive`, when granted, is where a project named by a header must exist to be used.
    pub fn new(
        pre: &'a Tree,
        archive: Option<&'a Tree>,
        target: Target,
        join_existing: bool,
        now_millis: i64,
    ) -> Receiver<'a> {
        Receiver { pre, archive, target, join_existing, open: BTreeMap::new(), touched: Vec::new(), now_millis }
    }

    /// The sessions files went to, in order of their first file.
    pub fn sessions(&self) -> &[SessionRef] {
        &self.touched
    }

    /// The project a file goes to: the request's, else its header's if the site has that project.
    fn project_for(&self, header: &Header) -> Option<String> {
        if let Some(p) = &self.target.project {
            return Some(p.clone());
        }
        let named = naming::project_of(header)?;
        match self.archive {
            Some(archive) => {
                let dir = RelPath::new(&named).ok()?;
                matches!(archive.kind(&dir), Ok(Some(Kind::Dir))).then_some(named)
            }
            None => None,
        }
    }

    /// Places the staged file `staged` (its header read, its MD5 known) into its session and scan.
    pub fn place(&mut self, staged: &RelPath, header: &Header, md5: &str) -> Result<Placement> {
        let project = self.project_for(header);
        let label = self.target.session.clone().unwrap_or_else(|| naming::session_of(header));
        let subject = self.target.subject.clone().or_else(|| naming::subject_of(header));
        let lock = self.lock()?;
        let result = self.place_locked(staged, header, md5, project, &label, subject);
        lock.release()?;
        result
    }

    fn lock(&self) -> Result<Lock> {
        let path = RelPath::new(LOCK)?;
        self.pre.create_dir_all(&path.parent())?;
        let mut waited = 0;
        loop {
            match Lock::acquire(self.pre, &path, "RECEIVING", "the prearchive's receiving") {
                Err(Error::Locked(_)) if waited < 30_000 => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    waited += 20;
                }
                other => return other,
            }
        }
    }

    fn place_locked(
        &mut self,
        staged: &RelPath,
        header: &Header,
        md5: &str,
        project: Option<String>,
        label: &str,
        subject: Option<String>,
    ) -> Result<Placement> {
        let key = (project.clone(), header.study_instance_uid.clone(), label.to_string());
        let session = match self.open.get(&key) {
            Some(s) => s.clone(),
            None => {
                let found = if self.join_existing {
                    self.receiving(project.as_deref(), &header.study_instance_uid, label)?
                } else {
                    None
                };
                let s = match found {
                    Some(s) => s,
                    None => self.new_session(project.as_deref(), label, &header.study_instance_uid, subject)?,
                };
                self.open.insert(key, s.clone());
                s
            }
        };
        if !self.touched.contains(&session) {
            self.touched.push(session.clone());
        }
        let mut marker = read_marker(self.pre, &session)?.ok_or_else(|| {
            Error::Conflict(format!(
                "{} is no longer being received (it was built, moved or deleted meanwhile); send the file again",
                session.url()
            ))
        })?;
        let scan = match marker.series.get(&header.series_instance_uid) {
            Some(id) => id.clone(),
            None => {
                let base = naming::scan_id(header);
                let taken: std::collections::BTreeSet<&String> = marker.series.values().collect();
                let id = std::iter::once(base.clone())
                    .chain((1..).map(|n| format!("{base}-{n}")))
                    .find(|id| !taken.contains(id))
                    .expect("an unbounded sequence");
                marker.series.insert(header.series_instance_uid.clone(), id.clone());
                write_marker(self.pre, &session, &marker)?;
                id
            }
        };
        let dir = session.dir().join("SCANS")?.join(&scan)?.join("DICOM")?;
        self.pre.create_dir_all(&dir)?;
        let name = naming::file_name(header);
        let dest = dir.join(&name)?;
        if self.pre.kind(&dest)?.is_some() {
            let there = Hasher::default().file(self.pre, &dest, Algorithm::Md5, &mut |_| {})?;
            let _ = self.pre.remove_file(staged);
            if there == md5 {
                return Ok(Placement::Duplicate { session, scan, name });
            }
            return Err(Error::Conflict(format!(
                "SOP instance {} is already in {} scan {scan} with different content; the file there was kept. \
                 Remove it first to replace it",
                header.sop_instance_uid,
                session.url()
            )));
        }
        self.pre.rename_to(staged, self.pre, &dest)?;
        Ok(Placement::Placed { session, scan, name })
    }

    /// A session of `project` receiving `study` under `label`, if there is one: one look per timestamp folder
    /// of that project (for its `.<label>.receiving` marker), none elsewhere.
    fn receiving(&self, project: Option<&str>, study: &str, label: &str) -> Result<Option<SessionRef>> {
        let pre = Prearchive::new(self.pre);
        let scope = project.unwrap_or(crate::import::prearchive::UNASSIGNED);
        for (p, ts, _) in pre.timestamp_dirs(Some(scope))? {
            let Ok(s) = SessionRef::new(p.as_deref(), &ts, label) else { continue };
            if self.pre.kind(&marker_path(&s))?.is_some()
                && read_marker(self.pre, &s)?.is_some_and(|m| m.study == study)
                && pre.exists(&s)?
            {
                return Ok(Some(s));
            }
        }
        Ok(None)
    }

    /// A new session in a timestamp folder of its own (the time now, made unique by its milliseconds).
    fn new_session(
        &self,
        project: Option<&str>,
        label: &str,
        study: &str,
        subject: Option<String>,
    ) -> Result<SessionRef> {
        if let Some(p) = project {
            self.pre.create_dir_all(&RelPath::new(p)?)?;
        }
        let mut millis = self.now_millis;
        for _ in 0..10_000 {
            let ts = timestamp(millis);
            let s = SessionRef::new(project, &ts, label)?;
            match self.pre.create_dir_new(&s.timestamp_dir()) {
                Ok(()) => {
                    self.pre.create_dir_new(&s.dir())?;
                    write_marker(self.pre, &s, &Marker { study: study.into(), subject, series: BTreeMap::new() })?;
                    return Ok(s);
                }
                Err(Error::Conflict(_)) => millis += 1,
                Err(e) if self.pre.kind(&s.timestamp_dir())?.is_some() => {
                    let _ = e;
                    millis += 1
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflict("no free timestamp folder for a new session; try again".into()))
    }
}

/// XNAT's timestamp folder name for a moment: `yyyyMMdd_HHmmssSSS` (UTC here).
pub fn timestamp(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis).unwrap_or_default().format("%Y%m%d_%H%M%S%3f").to_string()
}
