//! The import service's front half: `POST /data/services/import` — uploaded DICOM sorted into prearchive
//! sessions (and, with an archive destination, archived in the same call by [`crate::import::archive`]).
//!
//! Flow: the caller writes the upload's body into a [`upload::Staging`] folder; [`import`] takes it apart
//! ([`upload`]: a zip entry by entry, bounded; or one file), reads each file's header ([`dicom`]), places it
//! into its session and scan ([`session`], named by [`naming`]), then builds each session ([`build`]:
//! catalogs, then the document — READY). gradual-DICOM places one file and leaves its session receiving until
//! it is built ([`commit`]).

pub mod build;
pub mod dicom;
pub mod naming;
pub mod samples;
pub mod session;
pub mod upload;

use crate::error::{Error, Result};
use crate::fs::tree::Tree;
use crate::import::prearchive::{SessionRef, UNASSIGNED};
use crate::import::request::{Faults, Overwrite, Params};
use crate::progress::Progress;
use session::{Placement, Receiver, Target};
use upload::{Bounds, Staging};

/// XNAT's import handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// A zip of DICOM files, sorted into sessions and built at once.
    DicomZip,
    /// One DICOM file; its session stays receiving until it is built.
    GradualDicom,
    /// XNAT's older session importer, which unpacks the archive and builds sessions from its files: taken
    /// as DICOM-zip (ECAT files and anything not DICOM are reported, not kept).
    SessionImporter,
}

impl Handler {
    pub fn parse(name: &str) -> Result<Handler> {
        match name.to_ascii_lowercase().as_str() {
            "dicom-zip" => Ok(Handler::DicomZip),
            "gradual-dicom" => Ok(Handler::GradualDicom),
            "si" | "session-importer" => Ok(Handler::SessionImporter),
            _ => Err(Error::BadRequest(format!(
                "import-handler {name:?} is not one this server has; use DICOM-zip, gradual-DICOM or SI"
            ))),
        }
    }
}

/// Where the import puts its sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `/prearchive` (the project from the parameters or the headers) or `/prearchive/projects/P`.
    Prearchive { project: Option<String> },
    /// `/archive/projects/P[/subjects/S[/experiments/E]]`: into the prearchive, then archived.
    Archive { project: String, subject: Option<String>, experiment: Option<String> },
}

impl Destination {
    /// Parses `dest` (with or without `/data`).
    pub fn parse(dest: &str) -> Result<Destination> {
        let bad = || {
            Error::BadRequest(format!(
                "dest {dest:?} is not an import destination; use /prearchive, /prearchive/projects/P or \
                 /archive/projects/P[/subjects/S[/experiments/E]]"
            ))
        };
        let path = dest.trim().trim_end_matches('/');
        let path = path.strip_prefix("/data").unwrap_or(path);
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let checked = |p: &str| -> Result<String> {
            crate::site::names::check_project_id(p)?;
            Ok(p.to_string())
        };
        match segs.as_slice() {
            ["prearchive"] => Ok(Destination::Prearchive { project: None }),
            ["prearchive", "projects", p] => {
                Ok(Destination::Prearchive { project: if *p == UNASSIGNED { None } else { Some(checked(p)?) } })
            }
            ["archive", "projects", p, rest @ ..] => {
                let project = checked(p)?;
                match rest {
                    [] => Ok(Destination::Archive { project, subject: None, experiment: None }),
                    ["subjects", s] => {
                        Ok(Destination::Archive { project, subject: Some(s.to_string()), experiment: None })
                    }
                    ["subjects", s, "experiments", e] => Ok(Destination::Archive {
                        project,
                        subject: Some(s.to_string()),
                        experiment: Some(e.to_string()),
                    }),
                    _ => Err(bad()),
                }
            }
            _ => Err(bad()),
        }
    }
}

/// An import request, by XNAT's parameter names.
#[derive(Debug, Clone)]
pub struct Request {
    /// `import-handler`; `None`: a zip is DICOM-zip, anything else gradual-DICOM.
    pub handler: Option<Handler>,
    pub dest: Destination,
    pub project: Option<String>,
    pub subject: Option<String>,
    /// `session` (or `label`, `EXPT_LABEL`).
    pub session: Option<String>,
    pub overwrite: Overwrite,
    pub quarantine: bool,
    pub trigger_pipelines: bool,
    /// `Ignore-Unparsable`: files that are not DICOM are skipped without failing an upload that holds
    /// no DICOM at all.
    pub ignore_unparsable: bool,
    /// The site id of accession numbers when archiving.
    pub site_id: Option<String>,
    pub bounds: Bounds,
}

impl Request {
    /// A request from XNAT's parameters (name, value), in any order; unknown names are ignored as XNAT
    /// ignores them.
    pub fn from_params<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Request> {
        let mut handler = None;
        let mut dest = None;
        let mut req = Request {
            handler: None,
            dest: Destination::Prearchive { project: None },
            project: None,
            subject: None,
            session: None,
            overwrite: Overwrite::None,
            quarantine: false,
            trigger_pipelines: false,
            ignore_unparsable: false,
            site_id: None,
            bounds: Bounds::default(),
        };
        let on = |v: &str| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes");
        for (name, value) in pairs {
            let value = value.trim();
            let some = || (!value.is_empty()).then(|| value.to_string());
            match name {
                "import-handler" | "import_handler" => handler = some(),
                "dest" => dest = some(),
                "project" | "PROJECT_ID" => req.project = some(),
                "subject" | "SUBJECT_ID" => req.subject = some(),
                "session" | "label" | "EXPT_LABEL" => req.session = some(),
                "overwrite" => {
                    req.overwrite = match value.to_ascii_lowercase().as_str() {
                        "" | "false" => Overwrite::None,
                        "true" => Overwrite::Append,
                        v => Overwrite::parse(v).ok_or_else(|| {
                            Error::BadRequest(format!("overwrite={value} is not none, append or delete"))
                        })?,
                    }
                }
                "quarantine" => req.quarantine = on(value),
                "triggerPipelines" | "tiggerPipelines" => req.trigger_pipelines = on(value),
                "Ignore-Unparsable" | "ignore-unparsable" => req.ignore_unparsable = on(value),
                _ => {}
            }
        }
        req.handler = handler.as_deref().map(Handler::parse).transpose()?;
        if let Some(d) = dest {
            let bare = d.trim().trim_end_matches('/');
            req.dest = if matches!(bare, "/archive" | "/data/archive" | "archive") {
                // `dest=/archive` (xnatpy's `destination='/archive'`): archived, into the project named.
                let project = req.project.clone().ok_or_else(|| {
                    Error::BadRequest("dest=/archive needs project=P (or dest=/archive/projects/P)".into())
                })?;
                Destination::Archive { project, subject: None, experiment: None }
            } else {
                Destination::parse(&d)?
            };
        }
        // The destination names the project, subject and session as much as the parameters do.
        match &req.dest {
            Destination::Prearchive { project: Some(p) } => {
                check_same("project", req.project.as_deref(), p)?;
                req.project = Some(p.clone());
            }
            Destination::Archive { project, subject, experiment } => {
                check_same("project", req.project.as_deref(), project)?;
                req.project = Some(project.clone());
                if let Some(s) = subject {
                    check_same("subject", req.subject.as_deref(), s)?;
                    req.subject = Some(s.clone());
                }
                if let Some(e) = experiment {
                    check_same("session", req.session.as_deref(), e)?;
                    req.session = Some(e.clone());
                }
            }
            Destination::Prearchive { project: None } => {}
        }
        if let Some(p) = &req.project {
            crate::site::names::check_project_id(p)?;
        }
        for (what, v) in [("subject", &mut req.subject), ("session", &mut req.session)] {
            if let Some(raw) = v.as_deref() {
                let clean = naming::label(raw);
                if clean.is_empty() {
                    return Err(Error::BadRequest(format!("{what}={raw:?} is not a label")));
                }
                *v = Some(clean);
            }
        }
        Ok(req)
    }

    fn target(&self) -> Target {
        Target { project: self.project.clone(), subject: self.subject.clone(), session: self.session.clone() }
    }
}

fn check_same(what: &str, param: Option<&str>, dest: &str) -> Result<()> {
    match param {
        Some(p) if p != dest => {
            Err(Error::BadRequest(format!("{what}={p} and dest name different {what}s ({dest}); name one")))
        }
        _ => Ok(()),
    }
}

/// What an import did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The URIs XNAT answers with: `/data/prearchive/projects/P/TS/FOLDER` for each session in the
    /// prearchive, `/data/archive/projects/P/subjects/S/experiments/E` for each archived one.
    pub uris: Vec<String>,
    /// The prearchive sessions made or joined (before any archiving).
    pub sessions: Vec<SessionRef>,
    /// Files placed.
    pub files: usize,
    /// Files dropped as exact resends of files already there.
    pub duplicates: usize,
    /// Files not imported, and why: (name in the upload, reason).
    pub rejected: Vec<(String, String)>,
}

/// Imports the upload whose body is in `staging` (`staging.body()`), then removes the staging folder.
/// `archive` is needed for an archive destination and to keep a project a header names.
pub fn import(
    pre: &Tree,
    archive: Option<&Tree>,
    request: &Request,
    mut staging: Staging<'_>,
    now_millis: i64,
    progress: &mut dyn Progress,
) -> Result<Outcome> {
    let result = run(pre, archive, request, &mut staging, now_millis, progress);
    staging.remove();
    result
}

fn run(
    pre: &Tree,
    archive: Option<&Tree>,
    request: &Request,
    staging: &mut Staging<'_>,
    now_millis: i64,
    progress: &mut dyn Progress,
) -> Result<Outcome> {
    if let (Some(p), Some(archive)) = (&request.project, archive) {
        crate::site::layout::Archive::new(archive).project(p)?;
    }
    if matches!(request.dest, Destination::Archive { .. }) && archive.is_none() {
        return Err(Error::BadRequest(
            "an archive destination needs the archive granted; import into the prearchive".into(),
        ));
    }
    let body = staging.body();
    let mut head = [0u8; 4];
    let head_len = {
        use std::io::Read;
        let mut f = pre.open(&body)?;
        f.read(&mut head).map_err(|e| Error::io(body.as_str(), &e))?
    };
    let is_zip = upload::looks_like_zip(&head[..head_len]);
    let handler = request.handler.unwrap_or(if is_zip { Handler::DicomZip } else { Handler::GradualDicom });
    let gradual = handler == Handler::GradualDicom;
    if gradual && matches!(request.dest, Destination::Archive { .. }) {
        return Err(Error::BadRequest(
            "gradual-DICOM receives into the prearchive, one file at a time; build the session, then archive it \
             (or send a zip with DICOM-zip to archive in one call)"
                .into(),
        ));
    }
    let mut receiver = Receiver::new(pre, archive, request.target(), gradual, now_millis);
    let mut out = Outcome::default();
    let mut take = |staged: upload::Staged, out: &mut Outcome| -> Result<()> {
        let header = {
            let mut f = pre.open(&staged.path)?;
            dicom::read_header(&mut f, staged.size)
        };
        match header {
            Ok(header) => match receiver.place(&staged.path, &header, &staged.md5) {
                Ok(Placement::Placed { .. }) => out.files += 1,
                Ok(Placement::Duplicate { .. }) => out.duplicates += 1,
                Err(Error::Conflict(why)) => out.rejected.push((staged.source, why)),
                Err(e) => return Err(e),
            },
            Err(why) => {
                let _ = pre.remove_file(&staged.path);
                out.rejected.push((staged.source, why.to_string()));
            }
        }
        Ok(())
    };
    if handler == Handler::GradualDicom {
        if is_zip {
            return Err(Error::BadRequest(
                "gradual-DICOM takes one DICOM file per request; send a zip with DICOM-zip".into(),
            ));
        }
        let staged = upload::Staged {
            path: body.clone(),
            source: "the request body".into(),
            size: pre_size(pre, &body)?,
            md5: md5_of(pre, &body)?,
        };
        take(staged, &mut out)?;
    } else {
        if !is_zip {
            return Err(Error::BadRequest(format!(
                "{} takes a zip of DICOM files; this upload is not a zip (send one DICOM file with \
                 import-handler=gradual-DICOM)",
                if handler == Handler::DicomZip { "DICOM-zip" } else { "SI" }
            )));
        }
        let mut count = 0u64;
        let outcome = &mut out;
        let result = upload::each_zip_entry(pre, &body, staging, request.bounds, &mut |staged| {
            count += 1;
            if count.is_multiple_of(64) {
                progress.advance(64);
            }
            take(staged, outcome)
        });
        if let Err(e) = result {
            discard(pre, receiver.sessions());
            return Err(e);
        }
    }
    out.sessions = receiver.sessions().to_vec();
    if out.files + out.duplicates == 0 {
        if !gradual {
            discard(pre, &out.sessions);
        }
        let reasons: Vec<String> = out.rejected.iter().take(5).map(|(n, why)| format!("{n}: {why}")).collect();
        if out.rejected.is_empty() {
            return Err(Error::BadRequest("the upload holds no files; send a zip of DICOM files".into()));
        }
        if !request.ignore_unparsable || gradual {
            let status = if out.rejected.iter().all(|(_, why)| why.contains("already in")) {
                Error::Conflict
            } else {
                Error::BadRequest
            };
            return Err(status(format!(
                "no file of the upload was imported ({} refused): {}",
                out.rejected.len(),
                reasons.join("; ")
            )));
        }
        return Ok(out);
    }
    if gradual {
        out.uris = out.sessions.iter().map(|s| format!("/data{}", s.url())).collect();
        return Ok(out);
    }
    let mut built_sessions = Vec::new();
    for s in &out.sessions {
        let built = build::build(pre, s)?;
        if built.kept {
            built_sessions.push(s.clone());
        }
        out.rejected.extend(built.skipped);
    }
    match &request.dest {
        Destination::Prearchive { .. } => {
            out.uris = built_sessions.iter().map(|s| format!("/data{}", s.url())).collect();
        }
        Destination::Archive { .. } => {
            let archive = archive.expect("checked above");
            if built_sessions.len() > 1 && request.session.is_some() {
                return Err(Error::BadRequest(format!(
                    "the upload holds {} studies but one session label was given; they are in the prearchive \
                     ({}); archive them one by one",
                    built_sessions.len(),
                    built_sessions.iter().map(|s| s.url()).collect::<Vec<_>>().join(", ")
                )));
            }
            let params = Params {
                src: built_sessions.iter().map(|s| format!("/data{}", s.url())).collect(),
                project: request.project.clone(),
                subject: request.subject.clone(),
                label: request.session.clone(),
                dest: None,
                overwrite: request.overwrite,
                quarantine: request.quarantine,
                trigger_pipelines: request.trigger_pipelines,
                site_id: request.site_id.clone(),
            };
            for archived in crate::import::archive::archive(pre, archive, &params, Faults::default(), progress)? {
                match archived.result {
                    Ok(uri) => out.uris.push(uri),
                    Err(e) => {
                        return Err(e.clone().with_message(format!(
                            "{} was received into the prearchive as {} but could not be archived: {}",
                            if out.uris.is_empty() { "the upload" } else { "a session of the upload" },
                            archived.src,
                            e.message()
                        )));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Builds a receiving session (XNAT's `action=commit` of a prearchive session): READY, or gone when none of
/// its files could be kept.
pub fn commit(pre: &Tree, s: &SessionRef) -> Result<build::Built> {
    build::build(pre, s)
}

/// Removes the sessions a zip import made and could not finish. Only zip imports call this: they never
/// join a session (each study gets a new one), so these hold nothing but what this import placed.
fn discard(pre: &Tree, sessions: &[SessionRef]) {
    for s in sessions {
        if matches!(session::read_marker(pre, s), Ok(Some(_))) {
            let _ = pre.remove_dir_all(&s.dir());
            let _ = pre.remove_file(&session::marker_path(s));
            let _ = pre.remove_dir_if_empty(&s.timestamp_dir());
        }
    }
}

fn pre_size(pre: &Tree, rel: &crate::fs::tree::RelPath) -> Result<u64> {
    match pre.kind(rel)? {
        Some(crate::fs::tree::Kind::File { len }) => Ok(len),
        _ => Err(Error::NotFound(format!("{rel} is gone"))),
    }
}

fn md5_of(pre: &Tree, rel: &crate::fs::tree::RelPath) -> Result<String> {
    crate::model::digest::Hasher::default().file(pre, rel, crate::model::digest::Algorithm::Md5, &mut |_| {})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::tree::RelPath;
    use crate::import::prearchive::{Prearchive, Status};
    use crate::model::catalog::Catalog;
    use crate::model::session::SessionDoc;
    use crate::progress::NoProgress;
    use crate::receive::samples::{dicom, zip_of};
    use md5::{Digest, Md5};

    struct Site {
        _dir: tempfile::TempDir,
        pre: Tree,
        arch: Tree,
    }

    fn site() -> Site {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("pre")).unwrap();
        std::fs::create_dir_all(dir.path().join("arch/DEMO")).unwrap();
        let pre = Tree::new(dir.path().join("pre"));
        let arch = Tree::new(dir.path().join("arch"));
        Site { _dir: dir, pre, arch }
    }

    fn run(site: &Site, params: &[(&str, &str)], body: &[u8]) -> Result<Outcome> {
        let request = Request::from_params(params.iter().copied())?;
        let staging = Staging::unique(&site.pre)?;
        std::fs::write(site.pre.path(&staging.body()), body).unwrap();
        import(&site.pre, Some(&site.arch), &request, staging, 1_706_700_000_000, &mut NoProgress)
    }

    fn md5(b: &[u8]) -> String {
        hex::encode(Md5::digest(b))
    }

    #[test]
    fn a_zip_is_sorted_into_sessions_and_scans_and_built() {
        let s = site();
        let (a, b) = ("1.2.3.1", "1.2.3.2");
        let a1 = dicom(a, "1.2.3.1.1", "4", 1, "MR", "SUBJ1");
        let a2 = dicom(a, "1.2.3.1.1", "4", 2, "MR", "SUBJ1");
        let a3 = dicom(a, "1.2.3.1.2", "4", 1, "MR", "SUBJ1"); // another series with number 4
        let b1 = dicom(b, "1.2.3.2.1", "2", 1, "CT", "SUBJ2");
        let mut truncated = a2.clone();
        truncated.truncate(a2.len() - 100);
        let zip = zip_of(&[
            ("x/a1.dcm", &a1),
            ("x/a2.dcm", &a2),
            ("x/a2-again.dcm", &a2),
            ("x/a3.dcm", &a3),
            ("y/b1", &b1),
            ("notes.txt", b"not dicom"),
            ("x/cut.dcm", &truncated),
            ("__MACOSX/._a1.dcm", b"fork"),
        ]);
        let out = run(&s, &[("import-handler", "DICOM-zip")], &zip).unwrap();
        assert_eq!((out.files, out.duplicates), (4, 1), "{out:?}");
        // The truncated copy of a2 has a2's SOP instance but other bytes: refused, the whole one kept.
        let names: Vec<&str> = out.rejected.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["notes.txt", "x/cut.dcm"], "{:?}", out.rejected);
        assert!(out.rejected[1].1.contains("truncated"), "{:?}", out.rejected[1]);
        assert_eq!(out.uris.len(), 2);
        // The header's project (study description DEMO) exists in the archive: the sessions go there.
        let pre = Prearchive::new(&s.pre);
        let sessions = pre.sessions(Some("DEMO")).unwrap();
        assert_eq!(sessions.len(), 2, "{sessions:?}");
        for session in &sessions {
            assert_eq!(pre.status(session).unwrap(), Status::Ready);
            assert!(out.uris.contains(&format!("/data{}", session.url())));
        }
        let mr = sessions.iter().find(|x| x.folder == "SUBJ1_MR1").unwrap();
        let doc = pre.document(mr).unwrap().unwrap();
        assert_eq!(doc.element_name(), "xnat:MRSession");
        assert_eq!((doc.uid(), doc.label(), doc.project()), (Some(a), Some("SUBJ1_MR1"), Some("DEMO")));
        assert_eq!(doc.subject_id().as_deref(), Some("SUBJ1_Test"));
        assert_eq!(doc.field("date").as_deref(), Some("2024-01-31"));
        assert_eq!(doc.field("time").as_deref(), Some("10:15:30"));
        let scans = doc.scans();
        let ids: Vec<&str> = scans.iter().map(|x| x.id.as_str()).collect();
        assert_eq!(ids, ["4", "4-1"], "a second series numbered 4 becomes 4-1");
        assert_eq!(scans[0].uid.as_deref(), Some("1.2.3.1.1"));
        let cat_path = mr.dir().join_path(&scans[0].files[0].uri).unwrap();
        let cat = Catalog::parse(&s.pre.read(&cat_path).unwrap()).unwrap();
        let entries = cat.entry_locs();
        assert_eq!(entries.len(), 2);
        for (loc, bytes) in entries.iter().zip([&a1, &a2]) {
            let e = cat.entry(loc);
            let file = s.pre.read(&cat_path.parent().join(e.uri().unwrap()).unwrap()).unwrap();
            assert_eq!(&file, bytes, "the file is the upload's bytes");
            assert_eq!(e.attr("digest"), Some(md5(bytes).as_str()));
        }
        assert_eq!(cat.root().attr("UID"), Some("1.2.3.1.1"));
        let ct = sessions.iter().find(|x| x.folder == "SUBJ2_CT1").unwrap();
        assert_eq!(pre.document(ct).unwrap().unwrap().element_name(), "xnat:CTSession");
        // Nothing of the upload is left in the staging folder.
        assert!(s.pre.list(&RelPath::new(upload::UPLOADS).unwrap()).unwrap().is_empty());
    }

    #[test]
    fn parameters_name_the_target_and_a_headers_project_must_exist() {
        let s = site();
        let f = dicom("1.9", "1.9.1", "1", 1, "MR", "P1");
        let out = run(&s, &[("project", "DEMO"), ("subject", "S 1"), ("session", "MY/SESSION")], &zip_of(&[("f", &f)]))
            .unwrap();
        assert_eq!(out.sessions[0].folder, "MY_SESSION");
        let doc = Prearchive::new(&s.pre).document(&out.sessions[0]).unwrap().unwrap();
        assert_eq!(doc.subject_id().as_deref(), Some("S_1"));
        // A header naming a project the site lacks: Unassigned.
        let mut other = site();
        std::fs::remove_dir(other.arch.path(&RelPath::new("DEMO").unwrap())).unwrap();
        other.arch = Tree::new(other.arch.root());
        let out = run(&other, &[], &zip_of(&[("f", &f)])).unwrap();
        assert_eq!(out.sessions[0].project, None, "{:?}", out.sessions);
        assert!(out.uris[0].starts_with("/data/prearchive/projects/Unassigned/"), "{:?}", out.uris);
        // A named project the site lacks is refused.
        let e = run(&other, &[("project", "NOPE")], &zip_of(&[("f", &f)])).unwrap_err();
        assert!(matches!(e, Error::NotFound(_)), "{e:?}");
        assert!(matches!(run(&s, &[("dest", "/nowhere")], b"x"), Err(Error::BadRequest(_))));
        assert!(matches!(run(&s, &[("dest", "/archive")], b"x"), Err(Error::BadRequest(m)) if m.contains("project")));
        let r = Request::from_params([("dest", "/archive"), ("project", "DEMO")]).unwrap();
        assert_eq!(r.dest, Destination::Archive { project: "DEMO".into(), subject: None, experiment: None });
        assert!(matches!(run(&s, &[("import-handler", "nope")], b"x"), Err(Error::BadRequest(_))));
    }

    #[test]
    fn bad_zips_are_refused_and_leave_nothing() {
        let s = site();
        let f = dicom("1.9", "1.9.1", "1", 1, "MR", "P1");
        let pre = Prearchive::new(&s.pre);
        for (name, zip) in [
            ("traversal", zip_of(&[("ok.dcm", &f), ("../../evil.dcm", &f)])),
            ("absolute", zip_of(&[("ok.dcm", &f), ("/etc/evil.dcm", &f)])),
        ] {
            let e = run(&s, &[], &zip).unwrap_err();
            assert!(matches!(&e, Error::BadRequest(m) if m.contains("outside")), "{name}: {e:?}");
            assert!(pre.sessions(None).unwrap().is_empty(), "{name}");
        }
        // A bomb: 64 MiB of zeros in a zip of about 64 KiB, beyond 100× (the floor lowered for the test).
        let zeros = vec![0u8; 64 << 20];
        let bomb = zip_of(&[("ok.dcm", &f), ("zeros.dcm", &zeros)]);
        let request = Request {
            bounds: Bounds { ratio: 100, floor: 1 << 20, entries: 100 },
            ..Request::from_params([]).unwrap()
        };
        let staging = Staging::new(&s.pre, "bomb").unwrap();
        std::fs::write(s.pre.path(&staging.body()), &bomb).unwrap();
        let e = import(&s.pre, Some(&s.arch), &request, staging, 0, &mut NoProgress).unwrap_err();
        assert!(matches!(&e, Error::BadRequest(m) if m.contains("zip bomb")), "{e:?}");
        assert!(pre.sessions(None).unwrap().is_empty());
        // A damaged zip (cut in the middle), and one with no DICOM at all.
        let whole = zip_of(&[("a.dcm", &f)]);
        assert!(matches!(run(&s, &[], &whole[..whole.len() / 2]), Err(Error::BadRequest(_))));
        let e = run(&s, &[], &zip_of(&[("a.txt", b"hello")])).unwrap_err();
        assert!(matches!(&e, Error::BadRequest(m) if m.contains("not a DICOM")), "{e:?}");
        assert!(pre.sessions(None).unwrap().is_empty());
        assert!(s.pre.list(&RelPath::new(upload::UPLOADS).unwrap()).unwrap().is_empty());
    }

    #[test]
    fn gradual_files_join_their_session_until_it_is_committed() {
        let s = site();
        let files: Vec<Vec<u8>> = (1..=3).map(|n| dicom("1.7", "1.7.1", "5", n, "MR", "G1")).collect();
        let mut uris = Vec::new();
        for f in &files {
            let out = run(&s, &[("import-handler", "gradual-DICOM"), ("project", "DEMO")], f).unwrap();
            uris.extend(out.uris);
        }
        uris.dedup();
        assert_eq!(uris.len(), 1, "{uris:?}");
        let pre = Prearchive::new(&s.pre);
        let session = SessionRef::parse_src(&uris[0]).unwrap();
        assert_eq!(pre.status(&session).unwrap(), Status::Receiving);
        // A resend is dropped; a different file with the same SOP instance is refused.
        let again = run(&s, &[("import-handler", "gradual-DICOM"), ("project", "DEMO")], &files[0]).unwrap();
        assert_eq!(again.duplicates, 1);
        let mut forged = files[0].clone();
        let last = forged.len() - 1;
        forged[last] ^= 0xff;
        let e = run(&s, &[("import-handler", "gradual-DICOM"), ("project", "DEMO")], &forged).unwrap_err();
        assert!(matches!(e, Error::Conflict(_)), "{e:?}");
        let built = commit(&s.pre, &session).unwrap();
        assert_eq!((built.kept, built.scans, built.files), (true, 1, 3));
        assert_eq!(pre.status(&session).unwrap(), Status::Ready);
        let doc: SessionDoc = pre.document(&session).unwrap().unwrap();
        assert_eq!(doc.scans()[0].id, "5");
        assert!(matches!(commit(&s.pre, &session), Err(Error::Conflict(_))), "built once");
        // Eight senders at once, one file each, of one new study: one session, every file in it.
        let many: Vec<Vec<u8>> = (1..=8).map(|n| dicom("1.8", "1.8.1", "6", n, "MR", "C1")).collect();
        std::thread::scope(|scope| {
            for f in &many {
                let s = &s;
                scope.spawn(move || run(s, &[("import-handler", "gradual-DICOM"), ("project", "DEMO")], f).unwrap());
            }
        });
        let joined: Vec<SessionRef> =
            pre.sessions(Some("DEMO")).unwrap().into_iter().filter(|x| x.folder == "C1_MR1").collect();
        assert_eq!(joined.len(), 1, "{joined:?}");
        assert_eq!(commit(&s.pre, &joined[0]).unwrap().files, 8);
        // A gradual upload into the archive is refused, as is a zip through gradual-DICOM.
        let e =
            run(&s, &[("import-handler", "gradual-DICOM"), ("dest", "/archive/projects/DEMO")], &files[0]).unwrap_err();
        assert!(matches!(e, Error::BadRequest(_)));
    }
}
