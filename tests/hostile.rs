//! End to end: hostile input through the real component, by the CLI (`xnat-archive`) and by HTTP
//! (`xnat-archive serve`, one server for every HTTP case): traversal in every parameter and path segment,
//! session documents and catalogs that are broken, huge, deep, entity bombs or not UTF-8, and file-system
//! oddities (names that are not UTF-8, symbolic links, FIFOs, files where folders belong) in prearchive
//! sessions and archive resources.
//!
//! Every case is one request, checked for three things: a clear answer (a 4xx status or CLI exit 2–8 with a
//! JSON error, a report line in a refresh report; a 500 only as `corrupt`/`io` with a message; never a
//! trap, exit 1 or a hang), both trees byte-identical unless the answer says what changed (a refresh's
//! written catalog, a refused archive's CONFLICT/ERROR status and log), and the next good request served.

mod common;

use common::http::{FORM, form, login_cookie, raw_bytes};
use common::server::{Server, TenantSpec};
use common::snapshot;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::io::Read as _;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use xnat_archive::generator;

type Snap = BTreeMap<String, String>;

const PASSWORD: &str = "hostile-pw-42";
/// The archived experiment every site holds (archived from the generated DEMO/SUBJ1_MR1).
const EXP: &str = "/archive/projects/DEMO/subjects/SUBJ1/experiments/SUBJ1_MR1";
/// Its first scan's DICOM resource folder, relative to the archive.
const RES: &str = "DEMO/arc001/SUBJ1_MR1/SCANS/1/DICOM";
/// The READY session (project DEMO) the prearchive cases spoil.
const SESSION: &str = "SUBJ2_MR1";
/// How long one request may take before it counts as a hang.
const HANG: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------------------
// Sites

/// A prearchive and an archive: the generated demo site with DEMO/SUBJ1_MR1 archived.
#[derive(Clone)]
struct Site {
    pre: PathBuf,
    arc: PathBuf,
}

impl Site {
    fn at(dir: &Path) -> Site {
        Site { pre: dir.join("prearchive"), arc: dir.join("archive") }
    }
    fn p(&self) -> &str {
        self.pre.to_str().unwrap()
    }
    fn a(&self) -> &str {
        self.arc.to_str().unwrap()
    }
    /// The timestamp folder of DEMO's [`SESSION`].
    fn ts(&self) -> String {
        static TS: OnceLock<String> = OnceLock::new();
        TS.get_or_init(|| timestamp_of(&template().pre, "DEMO", SESSION)).clone()
    }
    fn src(&self) -> String {
        format!("/data/prearchive/projects/DEMO/{}/{SESSION}", self.ts())
    }
    fn session_dir(&self) -> PathBuf {
        self.pre.join("DEMO").join(self.ts()).join(SESSION)
    }
    fn document(&self) -> PathBuf {
        self.pre.join("DEMO").join(self.ts()).join(format!("{SESSION}.xml"))
    }
    fn scan_dicom(&self) -> PathBuf {
        self.session_dir().join("SCANS/1/DICOM")
    }
    fn scan_catalog(&self) -> PathBuf {
        self.scan_dicom().join("scan_1_catalog.xml")
    }
    fn res(&self) -> PathBuf {
        self.arc.join(RES)
    }
    fn res_catalog(&self) -> PathBuf {
        self.res().join("scan_1_catalog.xml")
    }
    fn exp_doc(&self) -> PathBuf {
        self.arc.join("DEMO/arc001/SUBJ1_MR1.xml")
    }
    /// A file the scan catalogs list (the first by name, not a catalog).
    fn first_file(dir: &Path) -> PathBuf {
        let mut names: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
            .collect();
        names.sort();
        names.remove(0)
    }
    fn snap(&self) -> (Snap, Snap) {
        (snapshot(&self.pre), snapshot(&self.arc))
    }
}

fn timestamp_of(prearchive: &Path, project: &str, folder: &str) -> String {
    fs::read_dir(prearchive.join(project))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .find(|ts| prearchive.join(project).join(ts).join(folder).is_dir())
        .unwrap_or_else(|| panic!("no session {project}/*/{folder} in {}", prearchive.display()))
}

/// Writes the generated site into `site` and archives DEMO/SUBJ1_MR1 there.
fn populate(site: &Site) {
    fs::create_dir_all(&site.pre).unwrap();
    fs::create_dir_all(&site.arc).unwrap();
    if fs::read_dir(&site.pre).unwrap().next().is_none() {
        generator::write_site(&site.pre, &site.arc).unwrap();
    }
    let src = format!("/data/prearchive/projects/DEMO/{}/SUBJ1_MR1", timestamp_of(&site.pre, "DEMO", "SUBJ1_MR1"));
    let out = common::cli(&["archive", "--prearchive", site.p(), "--archive", site.a(), "--src", &src, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

/// The pristine site, written once per run.
fn template() -> &'static Site {
    static T: OnceLock<Site> = OnceLock::new();
    T.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let site = Site::at(&dir);
        populate(&site);
        site
    })
}

/// Copies a tree of folders and files (what the generator and the archive write).
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = e.file_type().unwrap();
        if t.is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Empties a folder (following nothing: links and FIFOs are removed as entries).
fn clear(dir: &Path) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            fs::remove_dir_all(e.path()).unwrap();
        } else {
            fs::remove_file(e.path()).unwrap();
        }
    }
}

/// Puts `site` back to the template's contents (the folders themselves stay: a server holds them).
fn restore(site: &Site) {
    for (dir, from) in [(&site.pre, &template().pre), (&site.arc, &template().arc)] {
        clear(dir);
        copy_tree(from, dir);
    }
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().expect("run mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

/// A file name that is not UTF-8, inside `dir`.
fn not_utf8(dir: &Path, stem: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt as _;
    let mut name = stem.to_vec();
    name.extend_from_slice(b"\xff\xfe.dcm");
    dir.join(std::ffi::OsStr::from_bytes(&name))
}

// ---------------------------------------------------------------------------------------------------------
// Requests, answers and the two ways to send them

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Apply,
    Verify,
}

/// One request, as both the CLI and HTTP can make it.
#[derive(Clone, Debug)]
enum Op {
    List(Option<String>),
    /// validate-archive: (parameter, value) with parameters src, project, subject, session, dest.
    Validate(Vec<(&'static str, String)>),
    Archive(Vec<(&'static str, String)>),
    Delete(String),
    Move(String, String),
    Reset(String),
    Refresh(String, Mode),
    Create(String),
    /// HTTP only: a method and a raw request target below the tenant (`/data/...`).
    Raw(&'static str, Vec<u8>),
}

impl Op {
    fn writes(&self) -> bool {
        match self {
            Op::List(_) | Op::Validate(_) | Op::Refresh(_, Mode::Verify) => false,
            Op::Raw(method, _) => !matches!(*method, "GET" | "HEAD"),
            _ => true,
        }
    }
}

/// What came back: an HTTP status (CLI exit codes mapped onto them), the error kind and message if it
/// failed, and the JSON.
#[derive(Debug)]
struct Answer {
    status: u16,
    kind: Option<String>,
    message: String,
    json: Value,
}

impl Answer {
    fn ok(&self) -> bool {
        self.status < 300
    }
    /// The refresh reports, if any.
    fn reports(&self) -> Vec<Value> {
        self.json["reports"].as_array().cloned().unwrap_or_default()
    }
}

trait Driver {
    fn name(&self) -> &'static str;
    /// The site it serves, if it has its own (the HTTP tenant).
    fn site(&self) -> Option<&Site> {
        None
    }
    /// Sends `op` to `site`; `Err` when the answer is not clear at all (trap, exit 1, hang, no JSON).
    fn send(&self, site: &Site, op: &Op) -> Result<Answer, String>;
}

/// The first error an answer carries: (kind, message), top-level, in a row (archived, moved, deleted,
/// reset) or in a failed report.
fn error_of(v: &Value) -> Option<(String, String)> {
    let pick = |e: &Value| Some((e["kind"].as_str()?.to_string(), e["message"].as_str()?.to_string()));
    let rows = || v.as_object().into_iter().flat_map(|o| o.values()).filter_map(Value::as_array).flatten();
    pick(&v["error"])
        .or_else(|| rows().find_map(|r| pick(&r["error"])))
        .or_else(|| rows().find_map(|r| pick(&r["outcome"]["error"])))
}

struct Cli;

impl Cli {
    fn args(site: &Site, op: &Op) -> Option<Vec<String>> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
        match op {
            Op::List(project) => {
                push(&["prearchive", "list", "--prearchive", site.p()]);
                if let Some(p) = project {
                    push(&["--project", p]);
                }
            }
            Op::Validate(params) | Op::Archive(params) => {
                let command = if matches!(op, Op::Validate(_)) { "validate" } else { "archive" };
                push(&[command, "--prearchive", site.p(), "--archive", site.a()]);
                for (name, value) in params {
                    let flag = match *name {
                        "overwrite" => "--overwrite",
                        other => &format!("--{other}"),
                    };
                    push(&[flag, value]);
                }
            }
            Op::Delete(src) => push(&["prearchive", "delete", "--prearchive", site.p(), "--src", src]),
            Op::Move(src, to) => {
                push(&["prearchive", "move", "--prearchive", site.p(), "--src", src, "--new-project", to])
            }
            Op::Reset(src) => push(&["prearchive", "reset-status", "--prearchive", site.p(), "--src", src]),
            Op::Refresh(uri, mode) => {
                push(&["refresh", "--archive", site.a(), "--resource", uri]);
                if *mode == Mode::Verify {
                    push(&["--verify"]);
                }
            }
            Op::Create(uri) => push(&["resource", "create", "--archive", site.a(), "--resource", uri, "--format", "X"]),
            Op::Raw(..) => return None,
        }
        a.push("--json".into());
        Some(a)
    }
}

impl Driver for Cli {
    fn name(&self) -> &'static str {
        "cli"
    }

    fn send(&self, site: &Site, op: &Op) -> Result<Answer, String> {
        let args = Cli::args(site, op).ok_or("not a CLI request")?;
        let mut child = Command::new(common::server::BIN)
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run xnat-archive");
        let mut out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut o = Vec::new();
            let _ = out.read_to_end(&mut o);
            o
        });
        let err_reader = std::thread::spawn(move || {
            let mut e = Vec::new();
            let _ = err.read_to_end(&mut e);
            e
        });
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > HANG {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("hung for {HANG:?}"));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let stdout = String::from_utf8_lossy(&reader.join().unwrap()).into_owned();
        let stderr = String::from_utf8_lossy(&err_reader.join().unwrap()).into_owned();
        let Some(code) = status.code() else { return Err(format!("killed by a signal; stderr: {stderr}")) };
        for bad in ["panicked", "trap", "backtrace", "unreachable"] {
            if stderr.contains(bad) {
                return Err(format!("exit {code}, {bad:?} on stderr: {stderr}"));
            }
        }
        let json: Value = serde_json::from_str(&stdout)
            .map_err(|e| format!("exit {code}, stdout not JSON ({e}): {stdout} {stderr}"))?;
        let status = match code {
            0 => 200,
            2 => 400,
            3 => 403,
            4 => 404,
            5 => 409,
            6 => 423,
            7 | 8 => 500,
            other => return Err(format!("exit {other}: {stdout} {stderr}")),
        };
        let (kind, message) = match error_of(&json) {
            Some((k, m)) => (Some(k), m),
            None if code != 0 => return Err(format!("exit {code} without an error: {json}")),
            None => (None, String::new()),
        };
        if let Some(k) = &kind {
            let expected = ["", "", "bad-request", "forbidden", "not-found", "conflict", "locked", "io", "corrupt"];
            if code != 0 && expected.get(code as usize) != Some(&k.as_str()) {
                return Err(format!("exit {code} with error kind {k}: {json}"));
            }
        }
        Ok(Answer { status, kind, message, json })
    }
}

/// `xnat-archive serve` with tenant A, whose site the cases change and restore between requests.
struct Http {
    server: Server,
    cookie: String,
    site: Site,
    _dir: tempfile::TempDir,
}

impl Http {
    /// Starts the server over a copy of the template.
    fn start() -> Http {
        let dir = tempfile::tempdir().unwrap();
        template();
        let config = common::server::configure(
            dir.path(),
            &[TenantSpec::with("A", "request_timeout_secs = 60\nmax_concurrent = 8")],
            PASSWORD,
        );
        let site = Site::at(&dir.path().join("A"));
        restore(&site);
        let server = Server::start(&["--config", config.to_str().unwrap()]);
        let cookie = login_cookie(&server, "A", "admin", PASSWORD);
        Http { server, cookie, site, _dir: dir }
    }
}

impl Http {
    /// (method, target, form body) of an operation.
    fn request(op: &Op) -> (&'static str, Vec<u8>, String) {
        let params = |p: &[(&str, String)]| form(&p.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>());
        match op {
            Op::List(None) => ("GET", b"/data/prearchive/projects?format=json".to_vec(), String::new()),
            Op::List(Some(p)) => {
                ("GET", format!("/data/prearchive/projects/{p}?format=json").into_bytes(), String::new())
            }
            Op::Validate(p) => ("POST", b"/data/services/validate-archive?format=json".to_vec(), params(p)),
            Op::Archive(p) => ("POST", b"/data/services/archive?format=json".to_vec(), params(p)),
            Op::Delete(src) => {
                ("POST", b"/data/services/prearchive/delete?format=json".to_vec(), form(&[("src", src)]))
            }
            Op::Move(src, to) => (
                "POST",
                b"/data/services/prearchive/move?format=json".to_vec(),
                form(&[("src", src), ("newProject", to)]),
            ),
            Op::Reset(src) => {
                ("POST", b"/data/services/prearchive/rebuild?format=json".to_vec(), form(&[("src", src)]))
            }
            Op::Refresh(uri, _) => {
                ("POST", b"/data/services/refresh/catalog?format=json".to_vec(), form(&[("resource", uri)]))
            }
            Op::Create(uri) => ("PUT", format!("/data{uri}?format=X").into_bytes(), String::new()),
            Op::Raw(method, target) => (method, target.clone(), String::new()),
        }
    }
}

impl Driver for Http {
    fn name(&self) -> &'static str {
        "http"
    }

    fn site(&self) -> Option<&Site> {
        Some(&self.site)
    }

    fn send(&self, _site: &Site, op: &Op) -> Result<Answer, String> {
        if matches!(op, Op::Refresh(_, Mode::Verify)) {
            return Err("not an HTTP request".into());
        }
        let (method, target, body) = Http::request(op);
        let mut full = b"/A".to_vec();
        full.extend_from_slice(&target);
        let headers = if body.is_empty() { self.cookie.clone() } else { format!("{}{FORM}", self.cookie) };
        let started = Instant::now();
        let answer = raw_bytes(&self.server.address(), method, &full, &headers, body.as_bytes(), HANG);
        if started.elapsed() >= HANG {
            return Err(format!("hung for {HANG:?}"));
        }
        let json: Value = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
        let (kind, message) = match error_of(&json) {
            Some((k, m)) => (Some(k), m),
            None if answer.status >= 400 => (None, answer.body.trim().to_string()),
            None => (None, String::new()),
        };
        if answer.status >= 400 && message.is_empty() {
            return Err(format!("{} without a message: {answer:?}", answer.status));
        }
        if answer.status >= 500 && !matches!(kind.as_deref(), Some("corrupt" | "io")) {
            return Err(format!("{} {kind:?}: {}", answer.status, answer.body));
        }
        let mut json = json;
        if json.is_null() {
            json = Value::String(answer.body.clone());
        }
        Ok(Answer { status: answer.status, kind, message, json })
    }
}

// ---------------------------------------------------------------------------------------------------------
// Cases and their checks

/// What counts as the right answer to a case.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Want {
    /// A refusal: 400 or 404.
    Refused,
    /// 400 or 404, or success that stays inside the project's own folders (labels are cleaned, not paths).
    RefusedOrInside,
    /// Read-only requests that may succeed or fail clearly (listings, validation of a spoiled session).
    Clear,
    /// The stored data is unreadable: a 500 `corrupt`/`io`, a 409 for a session already marked ERROR, or a
    /// failed report; anything but success.
    Unreadable,
    /// Valid after all (BOM, CRLF): success.
    Served,
    /// A refresh that succeeds and reports the file whose name is not UTF-8 as skipped (not cataloged).
    SkippedNotUtf8,
    /// A listing that is served and shows the spoiled session as ERROR.
    ErrorRow,
}

type Setup = std::rc::Rc<dyn Fn(&Site)>;

struct Case {
    name: String,
    op: Op,
    want: Want,
    /// Prepares the hostile tree (the site is put back after the case).
    setup: Option<Setup>,
    /// A file (relative to the site's folder) that must stay byte-identical whatever the answer.
    keep: Option<&'static str>,
}

fn case(name: impl Into<String>, op: Op, want: Want) -> Case {
    Case { name: name.into(), op, want, setup: None, keep: None }
}

/// Paths that differ between two snapshots. The prearchive listing's table (`.xnat-archive/prearchive-table`,
/// a cache of document rows that any listing may write once documents have settled for 2 s, whatever else
/// the request does) is not data and is left out.
fn changed(before: &Snap, after: &Snap) -> Vec<String> {
    let cache = |p: &String| {
        p == ".xnat-archive/"
            || p.starts_with(".xnat-archive/prearchive-table")
            || p.starts_with(".xnat-archive/.~xnat-tmp-prearchive-table")
    };
    let mut out: Vec<String> =
        before.iter().filter(|(p, h)| after.get(*p) != Some(*h)).map(|(p, _)| p.clone()).collect();
    out.extend(after.keys().filter(|p| !before.contains_key(*p)).cloned());
    out.retain(|p| !cache(p));
    out
}

/// Checks one answer against its case and the trees before and after. Returns what is wrong.
fn judge(
    c: &Case,
    site: &Site,
    a: &Answer,
    before: &(Snap, Snap),
    after: &(Snap, Snap),
    driver: &dyn Driver,
) -> Vec<String> {
    let mut wrong = Vec::new();
    let (pre, arc) = (changed(&before.0, &after.0), changed(&before.1, &after.1));
    if let Some(keep) = c.keep {
        let (tree, rel) = if let Some(rel) = keep.strip_prefix("archive/") { (&arc, rel) } else { (&pre, &keep[11..]) };
        if tree.iter().any(|p| p == rel) {
            wrong.push(format!("{keep} changed"));
        }
    }
    let empty_listing = matches!(c.op, Op::List(_)) && a.ok() && rows(&a.json).is_empty();
    match c.want {
        Want::Refused if !matches!(a.status, 400 | 404) && !empty_listing => {
            wrong.push(format!("not refused: {} {}", a.status, a.json))
        }
        Want::RefusedOrInside if !matches!(a.status, 200 | 400 | 404) => {
            wrong.push(format!("neither refused nor served: {} {}", a.status, a.json))
        }
        Want::Unreadable if a.ok() && !a.reports().iter().any(|r| r["outcome"]["status"] == "failed") => {
            wrong.push(format!("unreadable data served: {} {}", a.status, a.json))
        }
        Want::Unreadable if a.status == 500 && !matches!(a.kind.as_deref(), Some("corrupt" | "io")) => {
            wrong.push(format!("500 that is not corrupt or io: {:?} {}", a.kind, a.message))
        }
        Want::Served if !a.ok() => wrong.push(format!("not served: {} {}", a.status, a.json)),
        Want::SkippedNotUtf8
            if !a.ok()
                || !a.reports().iter().any(|r| {
                    r["skipped"].as_array().is_some_and(|s| {
                        s.iter().any(|k| k["reason"].as_str().is_some_and(|w| w.contains("not valid UTF-8")))
                    })
                }) =>
        {
            wrong.push(format!("the name that is not UTF-8 is not reported as skipped: {} {}", a.status, a.json))
        }
        Want::ErrorRow => {
            let row = rows(&a.json).into_iter().find(|r| r["folderName"] == SESSION);
            if !a.ok() || row.as_ref().map(|r| r["status"].clone()) != Some(Value::from("ERROR")) {
                wrong.push(format!("the listing does not show {SESSION} as ERROR: {} {row:?}", a.status));
            }
        }
        _ => {}
    }
    if a.status >= 500 && !matches!(a.kind.as_deref(), Some("corrupt" | "io")) {
        wrong.push(format!("{} that is not corrupt or io: {:?}", a.status, a.kind));
    }
    if !c.op.writes() || (!a.ok() && !matches!(c.op, Op::Archive(_) | Op::Refresh(..))) {
        if !pre.is_empty() || !arc.is_empty() {
            wrong.push(format!("{} answered {} but changed {pre:?} {arc:?}", c.name, a.status));
        }
        return wrong;
    }
    match &c.op {
        Op::Archive(_) if !a.ok() => {
            // A refused archive may mark the session CONFLICT or ERROR, with its reason in the session's logs.
            if !arc.is_empty() {
                wrong.push(format!("a refused archive changed the archive: {arc:?}"));
            }
            if !pre.is_empty() {
                let ts = site.ts();
                let ok = |p: &String| {
                    *p == format!("DEMO/{ts}/.{SESSION}.status") || p.starts_with(&format!("DEMO/{ts}/{SESSION}/logs/"))
                };
                if !pre.iter().all(ok) {
                    wrong.push(format!("a refused archive changed more than its status and log: {pre:?}"));
                }
                let status =
                    fs::read_to_string(site.pre.join(format!("DEMO/{ts}/.{SESSION}.status"))).unwrap_or_default();
                let expected = if a.status == 409 { "CONFLICT" } else { "ERROR" };
                if status.lines().next() != Some(expected) {
                    wrong.push(format!("answered {} but the status file says {status:?}", a.status));
                }
                match driver.send(site, &Op::List(Some("DEMO".into()))) {
                    Ok(l) => {
                        let rows = rows(&l.json);
                        let row = rows.iter().find(|r| r["folderName"] == SESSION);
                        if row.map(|r| r["status"].clone()) != Some(Value::from(expected)) {
                            wrong.push(format!("the listing does not show {expected}: {row:?}"));
                        }
                    }
                    Err(e) => wrong.push(format!("the listing after it: {e}")),
                }
            }
        }
        Op::Archive(_) => {
            // Served: the session left the prearchive for an experiment of its own project.
            if let Some(p) = pre.iter().find(|p| !p.starts_with(&format!("DEMO/{}", site.ts()))) {
                wrong.push(format!("the archive changed {p} in the prearchive"));
            }
            if let Some(p) = arc.iter().find(|p| !p.starts_with("DEMO/") && !p.starts_with(".xnat/")) {
                wrong.push(format!("the archive wrote {p} outside project DEMO"));
            }
        }
        Op::Refresh(..) => {
            // Only what a report says it wrote: its catalog, and the experiment document for statistics.
            if !pre.is_empty() {
                wrong.push(format!("a refresh changed the prearchive: {pre:?}"));
            }
            let reports = a.reports();
            let written: Vec<String> = reports
                .iter()
                .filter(|r| r["outcome"]["status"] == "written")
                .filter_map(|r| r["catalog"].as_str().map(str::to_string))
                .collect();
            let stats = reports.iter().any(|r| r["stats_written"] == true);
            for p in &arc {
                let doc = p.ends_with(".xml") && p.matches('/').count() == 2 && p.contains("/arc001/");
                if !(written.contains(p) || stats && doc) {
                    wrong.push(format!("the refresh changed {p}, which no report says it wrote: {}", a.json));
                }
            }
            for r in &reports {
                if r["outcome"]["status"] == "failed"
                    && r["outcome"]["error"]["message"].as_str().is_none_or(str::is_empty)
                {
                    wrong.push(format!("a failed report without a message: {r}"));
                }
            }
        }
        _ => wrong.push(format!("{} was served ({}) and changed {pre:?} {arc:?}", c.name, a.status)),
    }
    wrong
}

fn rows(v: &Value) -> Vec<Value> {
    v["ResultSet"]["Result"].as_array().cloned().unwrap_or_default()
}

/// The next good request: the listing, with every session of the generated site still there.
fn still_served(driver: &dyn Driver, site: &Site) -> Result<(), String> {
    let a = driver.send(site, &Op::List(None))?;
    if !a.ok() || rows(&a.json).len() < 3 {
        return Err(format!("the listing after it: {} {}", a.status, a.json));
    }
    Ok(())
}

/// Runs one case on `site` (already prepared) and returns what is wrong with it.
fn run_case(driver: &dyn Driver, site: &Site, c: &Case, before: (Snap, Snap)) -> (Vec<String>, (Snap, Snap)) {
    let answer = driver.send(site, &c.op);
    let after = site.snap();
    let mut wrong = match answer {
        Ok(a) => judge(c, site, &a, &before, &after, driver),
        Err(e) => vec![e],
    };
    if let Err(e) = still_served(driver, site) {
        wrong.push(e);
    }
    (wrong.into_iter().map(|w| format!("[{}] {}: {w}", driver.name(), c.name)).collect(), after)
}

/// A fresh copy of the template.
fn fresh() -> (tempfile::TempDir, Site) {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::at(dir.path());
    copy_tree(&template().pre, &site.pre);
    copy_tree(&template().arc, &site.arc);
    (dir, site)
}

fn skipped(driver: &dyn Driver, c: &Case) -> bool {
    driver.name() == "cli" && matches!(c.op, Op::Raw(..))
        || driver.name() == "http" && matches!(c.op, Op::Refresh(_, Mode::Verify))
}

/// Runs `cases` through `driver` on one site (a copy of the template for the CLI, tenant A for HTTP), each
/// prepared by its setup and put back afterwards. Returns what is wrong, one line per problem.
fn run_all(driver: &dyn Driver, cases: &[Case]) -> Vec<String> {
    let (_dir, own) = fresh();
    let site = driver.site().unwrap_or(&own);
    let pristine = site.snap();
    let mut wrong = Vec::new();
    for c in cases.iter().filter(|c| !skipped(driver, c)) {
        if let Some(setup) = &c.setup {
            setup(site);
        }
        // Without a setup the site is the pristine one (it is put back whenever a case changed it).
        let before = if c.setup.is_some() { site.snap() } else { pristine.clone() };
        let (w, after) = run_case(driver, site, c, before);
        wrong.extend(w);
        if c.setup.is_some() || after != pristine {
            restore(site);
        }
    }
    wrong
}

/// How many cases a driver runs.
fn count(driver: &dyn Driver, cases: &[Case]) -> usize {
    cases.iter().filter(|c| !skipped(driver, c)).count()
}

/// A good archive and refresh after all cases (on the HTTP tenant, or a fresh copy).
fn good_work_is_done(driver: &dyn Driver, site: &Site) {
    let ts = timestamp_of(&site.pre, "TRIAL", "T001_PET1");
    let src = format!("/data/prearchive/projects/TRIAL/{ts}/T001_PET1");
    let a = driver.send(site, &Op::Archive(vec![("src", src)])).unwrap();
    assert!(a.ok(), "a good archive: {} {}", a.status, a.json);
    let a = driver.send(site, &Op::Refresh(EXP.into(), Mode::Apply)).unwrap();
    assert!(a.ok(), "a good refresh: {} {}", a.status, a.json);
}

fn report(what: &str, driver: &dyn Driver, cases: &[Case], wrong: Vec<String>) {
    eprintln!("{what} [{}]: {} cases, {} problems", driver.name(), count(driver, cases), wrong.len());
    assert!(wrong.is_empty(), "{what} [{}]: {} problems:\n{}", driver.name(), wrong.len(), wrong.join("\n"));
}

fn long(c: char, n: usize) -> String {
    std::iter::repeat_n(c, n).collect()
}

// ---------------------------------------------------------------------------------------------------------
// 1. Traversal in every parameter and path segment

fn traversal_cases() -> Vec<Case> {
    let t = template();
    let ts = t.ts();
    let (pre, arc) = (t.p().to_string(), t.a().to_string());
    let good_src = t.src();
    let srcs = [
        ("dot-dot", "/data/prearchive/projects/../../archive/DEMO/arc001/SUBJ1_MR1".to_string()),
        ("dot-dot-after-session", format!("/data/prearchive/projects/DEMO/{ts}/{SESSION}/../../../TRIAL")),
        ("encoded-dots", "/data/prearchive/projects/%2e%2e/%2e%2e/archive".to_string()),
        ("encoded-slash", format!("/data/prearchive/projects/DEMO/{ts}/..%2f..%2f..%2fTRIAL")),
        ("encoded-slash-in-folder", format!("/data/prearchive/projects/DEMO/{ts}/{SESSION}%2f..%2f..")),
        ("double-encoded", "/data/prearchive/projects/%252e%252e/%252e%252e/archive".to_string()),
        ("backslashes", format!("/data/prearchive/projects/DEMO/{ts}/..\\..\\TRIAL")),
        ("encoded-backslashes", format!("/data/prearchive/projects/DEMO/{ts}/..%5c..%5cTRIAL")),
        ("nul-at-end", format!("/data/prearchive/projects/DEMO/{ts}/{SESSION}%00")),
        ("nul-in-project", format!("/data/prearchive/projects/DEMO%00/{ts}/{SESSION}")),
        ("absolute-host-path", format!("{pre}/DEMO/{ts}/{SESSION}")),
        ("etc-passwd", "/etc/passwd".to_string()),
        ("windows-path", format!("C:\\xnat\\prearchive\\DEMO\\{ts}\\{SESSION}")),
        ("windows-drive-segment", format!("/data/prearchive/projects/C:/{ts}/{SESSION}")),
        ("overlong-folder", format!("/data/prearchive/projects/DEMO/{ts}/{}", long('F', 4000))),
        ("overlong-project", format!("/data/prearchive/projects/{}/{ts}/{SESSION}", long('P', 300))),
        ("not-utf8", format!("/data/prearchive/projects/DEMO/{ts}/%ff%fe")),
    ];
    let mut cases = Vec::new();
    for (name, src) in &srcs {
        cases.push(case(format!("validate src {name}"), Op::Validate(vec![("src", src.clone())]), Want::Refused));
        cases.push(case(format!("archive src {name}"), Op::Archive(vec![("src", src.clone())]), Want::Refused));
        let action = match cases.len() / 2 % 3 {
            0 => Op::Delete(src.clone()),
            1 => Op::Move(src.clone(), "TRIAL".into()),
            _ => Op::Reset(src.clone()),
        };
        cases.push(case(format!("{action:?} src {name}").replace(&**src, ""), action, Want::Refused));
    }
    let projects = [
        ("dot-dot", "..".to_string()),
        ("dot-dot-slash", "../TRIAL".to_string()),
        ("encoded-dots", "%2e%2e".to_string()),
        ("inner-dot-dot", "DEMO/../TRIAL".to_string()),
        ("absolute", "/etc".to_string()),
        ("windows-drive", "C:\\x".to_string()),
        ("nul", "DEMO%00".to_string()),
        ("overlong", long('P', 300)),
        ("backslash", "a\\b".to_string()),
    ];
    for (name, p) in &projects {
        for (what, op) in [
            ("validate", Op::Validate(vec![("src", good_src.clone()), ("project", p.clone())])),
            ("archive", Op::Archive(vec![("src", good_src.clone()), ("project", p.clone())])),
            ("move newProject", Op::Move(good_src.clone(), p.clone())),
        ] {
            cases.push(case(format!("{what} project {name}"), op, Want::Refused));
        }
    }
    let dests = [
        ("dot-dot", "/archive/projects/../../etc".to_string()),
        ("encoded-dots", "/archive/projects/%2e%2e/DEMO".to_string()),
        ("encoded-slash", "/archive/projects/DEMO/subjects/..%2f..%2fTRIAL".to_string()),
        ("absolute-host-path", format!("{arc}/DEMO")),
        ("windows-path", "C:\\archive\\DEMO".to_string()),
        ("nul", "/archive/projects/DEMO/subjects/SUBJ2/experiments/%00".to_string()),
        ("overlong-project", format!("/archive/projects/{}", long('P', 300))),
        ("double-encoded", "/archive/projects/%252e%252e/DEMO".to_string()),
    ];
    for (name, d) in &dests {
        for (what, op) in [
            ("validate", Op::Validate(vec![("src", good_src.clone()), ("dest", d.clone())])),
            ("archive", Op::Archive(vec![("src", good_src.clone()), ("dest", d.clone())])),
        ] {
            cases.push(case(format!("{what} dest {name}"), op, Want::Refused));
        }
    }
    // Subject and session labels are identifiers that XNAT cleans, not paths: a traversal names a label of
    // the project's own, or is refused; a label too long for a file name is refused.
    let labels = [
        ("dot-dot", "..".to_string()),
        ("dot-dot-slash", "../../TRIAL/subjects/T001".to_string()),
        ("encoded-dots", "%2e%2e".to_string()),
        ("nul", "SUBJ2%00".to_string()),
        ("absolute", "/etc/passwd".to_string()),
        ("windows", "C:\\x\\..\\y".to_string()),
    ];
    for (name, l) in &labels {
        for param in ["subject", "session"] {
            for (what, op) in [
                ("validate", Op::Validate(vec![("src", good_src.clone()), (param, l.clone())])),
                ("archive", Op::Archive(vec![("src", good_src.clone()), (param, l.clone())])),
            ] {
                cases.push(case(format!("{what} {param} {name}"), op, Want::RefusedOrInside));
            }
        }
    }
    for param in ["subject", "session"] {
        let op = Op::Archive(vec![("src", good_src.clone()), (param, long('L', 300))]);
        cases.push(case(format!("archive {param} overlong"), op, Want::Refused));
    }
    let resources = [
        ("dot-dot", "/archive/projects/../../etc".to_string()),
        ("encoded-dots", format!("{EXP}/%2e%2e")),
        ("encoded-slash", "/archive/experiments/..%2f..%2fetc".to_string()),
        ("encoded-backslash", "/archive/projects/DEMO/resources/..%5c..%5cx".to_string()),
        ("absolute-host-path", format!("{arc}/DEMO/arc001/SUBJ1_MR1")),
        ("windows-path", "C:\\archive\\DEMO".to_string()),
        ("nul", "/archive/projects/DEMO%00".to_string()),
        ("resource-dots", format!("{EXP}/scans/1/resources/%2e%2e/files")),
        ("scan-slashes", format!("{EXP}/scans/..%2f..%2f..%2f..%2f..%2fTRIAL/resources/DICOM")),
        ("overlong-project", format!("/archive/projects/{}", long('P', 300))),
        ("overlong-resource", format!("{EXP}/resources/{}", long('R', 4000))),
        ("not-utf8", "/archive/projects/DEMO/subjects/SUBJ1/experiments/%ff".to_string()),
    ];
    for (name, r) in &resources {
        cases.push(case(format!("refresh {name}"), Op::Refresh(r.clone(), Mode::Apply), Want::Refused));
        cases.push(case(format!("refresh --verify {name}"), Op::Refresh(r.clone(), Mode::Verify), Want::Refused));
    }
    for (name, r) in [
        ("dot-dot", format!("{EXP}/resources/%2e%2e")),
        ("encoded-slash", format!("{EXP}/resources/..%2f..%2fx")),
        ("backslash", format!("{EXP}/resources/a%5cb")),
        ("nul", "/archive/projects/DEMO/resources/%00".to_string()),
        ("overlong", format!("{EXP}/resources/{}", long('R', 300))),
    ] {
        cases.push(case(format!("create resource {name}"), Op::Create(r), Want::Refused));
    }
    for (name, p) in [
        ("dot-dot", ".."),
        ("encoded-dots", "%2e%2e"),
        ("encoded-slashes", "..%2f..%2f..%2f"),
        ("encoded-backslashes", "..%5c..%5c"),
        ("nul", "DEMO%00"),
        ("not-utf8", "%ff%fe"),
    ] {
        cases.push(case(format!("list project {name}"), Op::List(Some(p.to_string())), Want::Refused));
    }
    // HTTP only: path segments of the session URL, of its files, and of archive listings.
    let session = format!("/data/prearchive/projects/DEMO/{ts}/{SESSION}");
    let files = format!("{session}/scans/1/resources/DICOM/files");
    for (name, method, target) in [
        ("session dots", "GET", format!("/data/prearchive/projects/DEMO/{ts}/%2e%2e")),
        ("session slashes", "GET", format!("{session}%2f..%2f..")),
        ("session backslashes", "DELETE", format!("/data/prearchive/projects/DEMO/{ts}/..%5c..%5cTRIAL")),
        ("session nul", "GET", format!("{session}%00")),
        (
            "session move dots",
            "POST",
            format!("/data/prearchive/projects/DEMO/{ts}/%2e%2e?action=move&newProject=TRIAL"),
        ),
        ("file slashes", "GET", format!("{files}/..%2f..%2f..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd")),
        ("file absolute", "GET", format!("{files}/%2fetc%2fpasswd")),
        ("file windows", "GET", format!("{files}/C:%5cWindows%5cwin.ini")),
        ("file nul", "GET", format!("{files}/x%00.dcm")),
        ("file overlong", "GET", format!("{files}/{}", long('N', 4000))),
        ("scan dots", "GET", format!("{session}/scans/%2e%2e/resources")),
        ("subject dots", "GET", "/data/archive/projects/DEMO/subjects/%2e%2e/experiments".to_string()),
        ("experiment nul", "GET", "/data/experiments/%00".to_string()),
        ("project not utf8", "GET", "/data/prearchive/projects/%ff%fe".to_string()),
    ] {
        cases.push(case(format!("raw {name}"), Op::Raw(method, target.into_bytes()), Want::Refused));
    }
    cases
}

#[test]
fn traversal_cli() {
    let cases = traversal_cases();
    let wrong = run_all(&Cli, &cases);
    let (_dir, site) = fresh();
    good_work_is_done(&Cli, &site);
    report("traversal", &Cli, &cases, wrong);
}

// ---------------------------------------------------------------------------------------------------------
// 2. Session documents and catalogs: broken, empty, huge, deep, entity bombs, BOM/CRLF, wrong roots,
//    duplicates, bytes that are not UTF-8

#[derive(Clone, Copy, PartialEq)]
enum Doc {
    Session,
    Catalog,
}

/// Where the root element's start tag ends (after its name) and where its `>` is.
fn root_tag(bytes: &[u8]) -> (usize, usize) {
    let mut i = 0;
    loop {
        let lt = i + bytes[i..].iter().position(|&b| b == b'<').unwrap();
        if bytes[lt + 1].is_ascii_alphabetic() {
            let name_end = lt + bytes[lt..].iter().position(|b| b.is_ascii_whitespace() || *b == b'>').unwrap();
            let gt = lt + bytes[lt..].iter().position(|&b| b == b'>').unwrap();
            return (name_end, gt + 1);
        }
        i = lt + 1;
    }
}

fn splice(bytes: &[u8], at: usize, insert: &[u8]) -> Vec<u8> {
    [&bytes[..at], insert, &bytes[at..]].concat()
}

/// The first element `<name ...>...</name>` or `<name .../>`, as a byte range.
fn first_element(bytes: &[u8], name: &str) -> std::ops::Range<usize> {
    let text = String::from_utf8_lossy(bytes);
    let start = text.find(&format!("<{name} ")).unwrap_or_else(|| panic!("no <{name}> in {text}"));
    let close = format!("</{name}>");
    let tag_end = start + text[start..].find('>').unwrap();
    let end = if text.as_bytes()[tag_end - 1] == b'/' {
        tag_end + 1
    } else {
        start + text[start..].find(&close).unwrap() + close.len()
    };
    start..end
}

/// The hostile versions of a document: (name, bytes, still valid XML of its kind).
fn variants(orig: &[u8], doc: Doc) -> Vec<(&'static str, Vec<u8>, bool)> {
    let (name_end, content) = root_tag(orig);
    let mut huge = b" huge=\"".to_vec();
    huge.resize(huge.len() + 50 * 1024 * 1024, b'a');
    huge.push(b'"');
    let deep = [b"<a>".repeat(200_000), b"</a>".repeat(200_000)].concat();
    let mut laughs = String::from("<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n<!ENTITY lol \"lol\">\n");
    for i in 1..=9 {
        let prev = if i == 1 { "lol".to_string() } else { format!("lol{}", i - 1) };
        laughs.push_str(&format!("<!ENTITY lol{i} \"{}\">\n", format!("&{prev};").repeat(10)));
    }
    laughs.push_str("]>\n");
    let xxe = "<!DOCTYPE r [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>\n";
    let body = |prolog: &str, inner: &str| {
        let start = orig.windows(2).position(|w| w == b"?>").map_or(0, |p| p + 2);
        let mut out = prolog.as_bytes().to_vec();
        out.extend(splice(&orig[start..], content - start, inner.as_bytes()));
        out
    };
    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend(String::from_utf8_lossy(orig).replace("\r\n", "\n").replace('\n', "\r\n").into_bytes());
    let wrong_root: &[u8] = match doc {
        Doc::Session => br#"<cat:Catalog xmlns:cat="http://nrg.wustl.edu/catalog" ID="x"><cat:entries/></cat:Catalog>"#,
        Doc::Catalog => br#"<xnat:MRSession xmlns:xnat="http://nrg.wustl.edu/xnat" ID="" label="x"/>"#,
    };
    let dup = first_element(orig, if doc == Doc::Session { "xnat:scan" } else { "cat:entry" });
    let duplicated = splice(orig, dup.end, &orig[dup.clone()]);
    vec![
        ("truncated", orig[..orig.len() / 2].to_vec(), false),
        ("empty", Vec::new(), false),
        ("huge-attribute-50MB", splice(orig, name_end, &huge), false),
        ("nested-200000", splice(orig, content, &deep), false),
        ("billion-laughs", body(&laughs, "&lol9;"), false),
        ("external-entity", body(xxe, "&xxe;"), false),
        ("bom-crlf", bom, true),
        ("wrong-root", wrong_root.to_vec(), false),
        ("duplicate-ids", duplicated, true),
        ("not-utf8", splice(orig, name_end, b" bad=\"\xff\xfe\x80\""), false),
    ]
}

fn write_setup(path: fn(&Site) -> PathBuf, bytes: Vec<u8>) -> Setup {
    let bytes = std::rc::Rc::new(bytes);
    std::rc::Rc::new(move |site: &Site| fs::write(path(site), &*bytes).unwrap())
}

fn document_cases() -> Vec<Case> {
    let t = template();
    let mut cases = Vec::new();
    let mut add = |name: String, op: Op, want: Want, setup: &Setup, keep: Option<&'static str>| {
        cases.push(Case { name, op, want, setup: Some(setup.clone()), keep });
    };
    let src = || vec![("src", t.src())];
    // The prearchive session's document: listed as ERROR, refused by validation and archive.
    for (name, bytes, valid) in variants(&fs::read(t.document()).unwrap(), Doc::Session) {
        let setup = write_setup(Site::document, bytes);
        let n = |op: &str| format!("session document {name}: {op}");
        let (list, refused) = if valid { (Want::Clear, Want::Served) } else { (Want::ErrorRow, Want::Unreadable) };
        let refused = if name == "duplicate-ids" { Want::Clear } else { refused };
        // An empty document is one still being written (RECEIVING, validation 409); a well-formed document
        // with another root is read as a session without a subject (validation FAIL 11, archive refused).
        let (list, validate) = match name {
            "empty" => (Want::Clear, Want::Unreadable),
            "wrong-root" => (Want::Clear, Want::Clear),
            _ => (list, if valid { Want::Served } else { Want::Unreadable }),
        };
        add(n("list"), Op::List(None), list, &setup, None);
        add(n("validate"), Op::Validate(src()), validate, &setup, None);
        add(n("archive"), Op::Archive(src()), refused, &setup, None);
    }
    // A scan catalog in the prearchive session: validated and archived as what it is, never rewritten.
    for (name, bytes, _) in variants(&fs::read(t.scan_catalog()).unwrap(), Doc::Catalog) {
        let setup = write_setup(Site::scan_catalog, bytes);
        let n = |op: &str| format!("prearchive catalog {name}: {op}");
        add(n("validate"), Op::Validate(src()), Want::Clear, &setup, None);
        add(n("archive"), Op::Archive(src()), Want::Clear, &setup, None);
    }
    // An archived resource's catalog: a failed report, the catalog byte-identical.
    let res_catalog = "archive/DEMO/arc001/SUBJ1_MR1/SCANS/1/DICOM/scan_1_catalog.xml";
    for (name, bytes, valid) in variants(&fs::read(t.res_catalog()).unwrap(), Doc::Catalog) {
        let setup = write_setup(Site::res_catalog, bytes);
        let n = |op: &str| format!("archive catalog {name}: {op}");
        let want = if valid { Want::Clear } else { Want::Unreadable };
        let keep = (!valid).then_some(res_catalog);
        let uri = format!("{EXP}/scans/1/resources/DICOM");
        add(n("refresh"), Op::Refresh(uri.clone(), Mode::Apply), want, &setup, keep);
        add(n("refresh --verify"), Op::Refresh(uri, Mode::Verify), want, &setup, keep);
    }
    // The archived experiment's document: refresh answers clearly and never rewrites a broken one.
    for (name, bytes, valid) in variants(&fs::read(t.exp_doc()).unwrap(), Doc::Session) {
        let setup = write_setup(Site::exp_doc, bytes);
        let keep = (!valid).then_some("archive/DEMO/arc001/SUBJ1_MR1.xml");
        add(
            format!("experiment document {name}: refresh"),
            Op::Refresh(EXP.into(), Mode::Apply),
            Want::Clear,
            &setup,
            keep,
        );
    }
    cases
}

#[test]
fn documents_cli() {
    let cases = document_cases();
    let wrong = run_all(&Cli, &cases);
    report("documents", &Cli, &cases, wrong);
}

// ---------------------------------------------------------------------------------------------------------
// 3. File names that are not UTF-8, symbolic links, FIFOs and files where folders belong

fn setup(f: impl Fn(&Site) + 'static) -> Setup {
    std::rc::Rc::new(f)
}

/// Replaces a folder or file by a plain file.
fn file_instead(path: &Path) {
    if path.is_dir() {
        fs::remove_dir_all(path).unwrap();
    } else {
        fs::remove_file(path).unwrap();
    }
    fs::write(path, b"not a folder\n").unwrap();
}

/// A folder outside both trees, with a file in it.
fn outside() -> &'static Path {
    static O: OnceLock<PathBuf> = OnceLock::new();
    O.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        fs::write(dir.join("secret.dcm"), b"outside the grants\n").unwrap();
        dir
    })
}

fn filesystem_cases() -> Vec<Case> {
    let t = template();
    let src = || vec![("src", t.src())];
    let res_uri = format!("{EXP}/scans/1/resources/DICOM");
    let mut cases = Vec::new();
    let mut add = |name: &str, ops: Vec<(Op, Want)>, keep: Option<&'static str>, s: Setup| {
        for (op, want) in ops {
            let what = match &op {
                Op::List(_) => "list",
                Op::Validate(_) => "validate",
                Op::Archive(_) => "archive",
                Op::Refresh(_, Mode::Verify) => "refresh --verify",
                Op::Refresh(..) => "refresh",
                _ => "request",
            };
            cases.push(Case { name: format!("{name}: {what}"), op, want, setup: Some(s.clone()), keep });
        }
    };
    let session = |want_validate: Want, want_archive: Want| {
        vec![(Op::List(None), Want::Clear), (Op::Validate(src()), want_validate), (Op::Archive(src()), want_archive)]
    };
    let clear = || session(Want::Clear, Want::Clear);
    // In a prearchive session.
    add("session: name not UTF-8", clear(), None, setup(|s| fs::write(not_utf8(&s.scan_dicom(), b"x"), b"x").unwrap()));
    add(
        "session: link to a file",
        clear(),
        None,
        setup(|s| symlink(Site::first_file(&s.scan_dicom()), s.scan_dicom().join("link.dcm")).unwrap()),
    );
    add("session: link to a folder", clear(), None, setup(|s| symlink("..", s.scan_dicom().join("up")).unwrap()));
    add(
        "session: link out of the tree",
        clear(),
        None,
        setup(|s| symlink(outside(), s.scan_dicom().join("out")).unwrap()),
    );
    add(
        "session: cataloged file is a link out",
        clear(),
        None,
        setup(|s| {
            let f = Site::first_file(&s.scan_dicom());
            fs::remove_file(&f).unwrap();
            symlink(outside().join("secret.dcm"), f).unwrap();
        }),
    );
    add("session: FIFO", clear(), None, setup(|s| mkfifo(&s.scan_dicom().join("fifo.dcm"))));
    add(
        "session: cataloged file is a FIFO",
        clear(),
        None,
        setup(|s| {
            let f = Site::first_file(&s.scan_dicom());
            fs::remove_file(&f).unwrap();
            mkfifo(&f);
        }),
    );
    add("session: a file named SCANS", clear(), None, setup(|s| file_instead(&s.session_dir().join("SCANS"))));
    add(
        "session: document is a FIFO",
        vec![
            (Op::List(None), Want::ErrorRow),
            (Op::Validate(src()), Want::Unreadable),
            (Op::Archive(src()), Want::Unreadable),
        ],
        None,
        setup(|s| {
            fs::remove_file(s.document()).unwrap();
            mkfifo(&s.document());
        }),
    );
    add(
        "session: status file is a FIFO",
        vec![(Op::List(None), Want::Clear), (Op::Archive(src()), Want::Clear)],
        None,
        setup(|s| mkfifo(&s.session_dir().with_file_name(format!(".{SESSION}.status")))),
    );
    add(
        "session: lock file is a FIFO",
        vec![(Op::List(None), Want::Clear), (Op::Archive(src()), Want::Clear)],
        None,
        setup(|s| mkfifo(&s.session_dir().with_file_name(format!(".{SESSION}.lock")))),
    );
    add(
        "session: folder is a link out of the tree",
        clear(),
        None,
        setup(|s| {
            let dir = s.session_dir();
            let away = outside().join(format!("moved-{}", std::process::id()));
            if !away.exists() {
                copy_tree(&dir, &away);
            }
            fs::remove_dir_all(&dir).unwrap();
            symlink(&away, &dir).unwrap();
        }),
    );
    add("session: folder is a file", clear(), None, setup(|s| file_instead(&s.session_dir())));
    add(
        "prearchive: a file where the timestamp folder is",
        vec![(Op::List(None), Want::Clear), (Op::Archive(src()), Want::Refused)],
        None,
        setup(|s| file_instead(&s.pre.join("DEMO").join(s.ts()))),
    );
    add(
        "prearchive: a file where project TRIAL's folder is",
        vec![(Op::List(None), Want::Clear), (Op::Archive(src()), Want::Clear)],
        None,
        setup(|s| file_instead(&s.pre.join("TRIAL"))),
    );
    // In an archived resource: refresh catalogs what it can and reports the rest.
    let refresh = |apply: Want| {
        vec![(Op::Refresh(res_uri.clone(), Mode::Apply), apply), (Op::Refresh(res_uri.clone(), Mode::Verify), apply)]
    };
    add(
        "resource: link to a file",
        refresh(Want::Served),
        None,
        setup(|s| symlink(Site::first_file(&s.res()), s.res().join("link.dcm")).unwrap()),
    );
    add(
        "resource: link to a folder",
        refresh(Want::Served),
        None,
        setup(|s| symlink("..", s.res().join("up")).unwrap()),
    );
    add(
        "resource: link out of the tree",
        refresh(Want::Served),
        None,
        setup(|s| symlink(outside(), s.res().join("out")).unwrap()),
    );
    add("resource: FIFO", refresh(Want::Served), None, setup(|s| mkfifo(&s.res().join("fifo.dcm"))));
    add(
        "resource: cataloged file is a FIFO",
        refresh(Want::Clear),
        None,
        setup(|s| {
            let f = Site::first_file(&s.res());
            fs::remove_file(&f).unwrap();
            mkfifo(&f);
        }),
    );
    for (name, how) in [("FIFO", 0), ("link", 1), ("folder", 2)] {
        add(
            &format!("resource: the catalog is a {name}"),
            refresh(Want::Unreadable),
            None,
            setup(move |s| {
                let cat = s.res_catalog();
                fs::remove_file(&cat).unwrap();
                match how {
                    0 => mkfifo(&cat),
                    1 => {
                        fs::copy(template().res_catalog(), outside().join("catalog.xml")).unwrap();
                        symlink(outside().join("catalog.xml"), &cat).unwrap();
                    }
                    _ => fs::create_dir(&cat).unwrap(),
                }
            }),
        );
    }
    add(
        "resource: folder is a link out of the tree",
        refresh(Want::Clear),
        None,
        setup(|s| {
            let away = outside().join(format!("res-{}", std::process::id()));
            if !away.exists() {
                copy_tree(&s.res(), &away);
            }
            fs::remove_dir_all(s.res()).unwrap();
            symlink(&away, s.res()).unwrap();
        }),
    );
    let experiment = |want: Want| {
        vec![
            (Op::Refresh(EXP.into(), Mode::Apply), want),
            (Op::Refresh(EXP.into(), Mode::Verify), want),
            (Op::Archive(src()), Want::Clear),
        ]
    };
    add(
        "archive: a file named SCANS",
        experiment(Want::Clear),
        None,
        setup(|s| file_instead(&s.arc.join("DEMO/arc001/SUBJ1_MR1/SCANS"))),
    );
    add(
        "archive: a file where arc001 is",
        experiment(Want::Refused),
        None,
        setup(|s| file_instead(&s.arc.join("DEMO/arc001"))),
    );
    add(
        "archive: a file where project DEMO's folder is",
        experiment(Want::Refused),
        None,
        setup(|s| file_instead(&s.arc.join("DEMO"))),
    );
    add(
        "archive: the experiment document is a FIFO",
        experiment(Want::Clear),
        None,
        setup(|s| {
            fs::remove_file(s.exp_doc()).unwrap();
            mkfifo(&s.exp_doc());
        }),
    );
    cases
}

/// Cases that were defects when the suite was written (see the test below).
fn former_defect_cases() -> Vec<Case> {
    let t = template();
    let res_uri = format!("{EXP}/scans/1/resources/DICOM");
    let not_utf8_name = setup(|s| fs::write(not_utf8(&s.res(), b"y"), b"y").unwrap());
    let subject_fifo = setup(|s| {
        let doc = s.arc.join("DEMO/subjects/SUBJ1.xml");
        fs::remove_file(&doc).unwrap();
        mkfifo(&doc);
    });
    vec![
        Case {
            name: "resource: name not UTF-8: refresh".into(),
            op: Op::Refresh(res_uri.clone(), Mode::Apply),
            want: Want::SkippedNotUtf8,
            setup: Some(not_utf8_name.clone()),
            keep: None,
        },
        Case {
            name: "resource: name not UTF-8: refresh --verify".into(),
            op: Op::Refresh(res_uri, Mode::Verify),
            want: Want::SkippedNotUtf8,
            setup: Some(not_utf8_name),
            keep: None,
        },
        Case {
            name: "archive: the subject document is a FIFO: archive".into(),
            op: Op::Archive(vec![("src", t.src()), ("subject", "SUBJ1".into())]),
            want: Want::Clear,
            setup: Some(subject_fifo),
            keep: None,
        },
    ]
}

/// Former defects: (1) a file name that is not UTF-8 in an archive resource: `wasi:filesystem` ends the
/// directory listing at it (it used to make the refresh fail with a cryptic message; a partial listing must
/// never pass for a whole one, or refresh would delete the entries it did not see). This host lists folders
/// itself (WIT `listings`) and names such a file, so the refresh now goes on and reports it as skipped, as
/// it does natively; through a host without `listings` that refresh fails clearly, changing nothing
/// (`guest/core/src/fs/tree.rs`, `Failure::NotUtf8`); (2) an archive whose subject document cannot be read (a FIFO) is
/// refused before it claims an experiment ID (it used to leave `.xnat/ids/XNAT_E00002`).
#[test]
fn former_defects() {
    let cases = former_defect_cases();
    let mut wrong = run_all(&Cli, &cases);
    let h = Http::start();
    wrong.extend(run_all(&h, &cases));
    assert!(wrong.is_empty(), "{} problems:\n{}", wrong.len(), wrong.join("\n"));
}

#[test]
fn filesystem_cli() {
    let cases = filesystem_cases();
    let wrong = run_all(&Cli, &cases);
    report("file system", &Cli, &cases, wrong);
}

/// Every table through one `xnat-archive serve` (tenant A, put back after each case), then a good archive and
/// refresh on it; the server is stopped at the end and must exit 0.
#[test]
fn all_tables_http() {
    let h = Http::start();
    let tables: [(&str, Vec<Case>); 3] =
        [("traversal", traversal_cases()), ("documents", document_cases()), ("file system", filesystem_cases())];
    let mut wrong = Vec::new();
    for (what, cases) in &tables {
        let w = run_all(&h, cases);
        eprintln!("{what} [http]: {} cases, {} problems", count(&h, cases), w.len());
        wrong.extend(w);
    }
    good_work_is_done(&h, &h.site);
    let Http { server, .. } = h;
    assert!(server.stop().success(), "serve exits 0");
    assert!(wrong.is_empty(), "[http] {} problems:\n{}", wrong.len(), wrong.join("\n"));
}
