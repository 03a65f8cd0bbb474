//! The `http` target: the HTTP handler over a small site in a temporary directory, made once per process.
//!
//! ```text
//! <tmp>/canary.txt        the fence: nothing here may change
//! <tmp>/outside/…         the fence: a look-alike of the trees, where a `..` that got through would write
//! <tmp>/site/pre/…        the prearchive tree: sessions MR1, MR2 (P) and CT1 (Q)
//! <tmp>/site/arch/…       the archive tree: MR3 archived, with a NOTES resource
//! ```
//!
//! On Linux, inotify watches every folder: an event in the fence fails the run; an event in the trees
//! means the request wrote, and the trees are put back as they were first made. Elsewhere the same is done
//! by walking the folders after every request (slower).

use std::fs;
use std::path::{Component, Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use xnat_core::fs::tree::Tree;
use xnat_http::{Context, Request, Response};

/// The HTTP handler: never panics, answers a valid status with a content type, streams only files inside
/// its two trees, and writes nothing outside them.
///
/// Input: `METHOD TARGET` on the first line, then `name: value` header lines, then an empty line and the
/// body. Unless the input brings its own `Authorization` or `Cookie` header, the request carries a valid
/// session cookie of the site's administrator, so the fuzzer reaches the handlers behind the login.
pub fn http(data: &[u8]) {
    let site = Site::get();
    let mut site = site.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let req = http_request(data, &site.token);
    let response = xnat_http::handle(&req, &site.ctx);
    if site.check(&req, &response) {
        site.restore();
    }
}

/// Parses the `http` target's input format (see [`http`]).
pub fn http_request(data: &[u8], token: &str) -> Request {
    let split = data.windows(2).position(|w| w == b"\n\n");
    let (head, body) = match split {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split('\n');
    let first = lines.next().unwrap_or("");
    let (method, target) = first.split_once(' ').unwrap_or((first, "/"));
    let mut req = Request::new(method, target);
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            req = req.with_header(name.trim(), value.trim());
        }
    }
    if req.header("authorization").is_none() && req.header("cookie").is_none() {
        req = req.with_header("Cookie", &format!("JSESSIONID={token}"));
    }
    req.body = body.to_vec();
    req
}

const NOW: u64 = 1_700_000_000;
const SECRET: &[u8] = b"fuzz-secret";
const TS: &str = "20240101_120000000";

type Snapshot = Vec<(PathBuf, Option<Vec<u8>>)>;

pub(crate) struct Site {
    dir: tempfile::TempDir,
    pub(crate) ctx: Context,
    pub(crate) token: String,
    /// The trees' first state: (path relative to `site/`, `None` for a folder, or the file's bytes).
    snapshot: Snapshot,
    watch: Watch,
}

impl Site {
    fn get() -> &'static Mutex<Site> {
        static SITE: OnceLock<Mutex<Site>> = OnceLock::new();
        SITE.get_or_init(|| Mutex::new(Site::new()))
    }

    pub(crate) fn new() -> Site {
        // In memory where the machine offers it: the trees are rewritten after every request that wrote. The
        // process id in the name lets a later process remove what a killed one left (statics are not dropped).
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
        remove_stale(&base);
        let dir = tempfile::Builder::new()
            .prefix(&format!("xnat-fuzz-http-{}-", std::process::id()))
            .tempdir_in(base)
            .expect("a temporary directory");
        let root = dir.path();
        for d in ["site/pre", "site/arch", "outside/P/arc001", "outside/pre/P"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::write(root.join("canary.txt"), "canary").unwrap();
        fs::write(root.join("outside/P/arc001/MR9.xml"), "<outside/>").unwrap();
        let cheap = argon2::Params::new(64, 1, 1, None).unwrap();
        let hash = xnat_http::credentials::hash_password_with("admin-pw", b"saltsaltsaltsalt", cheap).unwrap();
        let mut ctx = Context::new(Tree::new(root.join("site/arch")), Tree::new(root.join("site/pre")), NOW);
        ctx.users = xnat_http::credentials::Users::parse(&format!("admin:{hash}")).unwrap();
        ctx.secret = Some(SECRET.to_vec());
        let token = xnat_http::auth::issue(&ctx, "admin").unwrap();
        let watch = Watch::new(root);
        let mut site = Site { dir, ctx, token, snapshot: Vec::new(), watch };
        for folder in ["MR1", "MR2", "MR3"] {
            site.prearchive_session("P", folder, 2);
        }
        site.prearchive_session("Q", "CT1", 1);
        // One archived experiment with a resource of its own, so the archive's GETs and refresh find data.
        for (method, target) in [
            ("POST", format!("/data/services/archive?src=/prearchive/projects/P/{TS}/MR3&subject=SUBJ1")),
            ("PUT", "/data/projects/P/subjects/SUBJ1/experiments/MR3/resources/NOTES?format=TXT".into()),
        ] {
            let r = xnat_http::handle(&http_request(format!("{method} {target}").as_bytes(), &site.token), &site.ctx);
            assert_eq!(r.status, 200, "{method} {target}: {}", r.body_text());
        }
        fs::write(site.root().join("arch/P/arc001/MR3/RESOURCES/NOTES/readme.txt"), "notes").unwrap();
        site.snapshot = snapshot(&site.root());
        site.watch.trees(&site.root());
        site
    }

    pub(crate) fn root(&self) -> PathBuf {
        self.dir.path().join("site")
    }

    /// A prearchive session with one DICOM scan of `files` files, as XNAT's receiver leaves it.
    fn prearchive_session(&self, project: &str, folder: &str, files: usize) {
        let base = self.root().join("pre").join(project).join(TS);
        let res = base.join(folder).join("SCANS/2/DICOM");
        fs::create_dir_all(&res).unwrap();
        let mut entries = String::new();
        for i in 1..=files {
            fs::write(res.join(format!("{i}.dcm")), format!("DICM {folder} {i}")).unwrap();
            entries.push_str(&format!(
                r#"<cat:entry xsi:type="cat:dcmEntry" URI="{i}.dcm" ID="{i}.dcm" UID="1.2.{i}" format="DICOM"/>"#
            ));
        }
        let catalog = format!(
            r#"<cat:DCMCatalog xmlns:cat="http://nrg.wustl.edu/catalog" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" UID="1.2"><cat:entries>{entries}</cat:entries></cat:DCMCatalog>"#
        );
        fs::write(res.join("scan_2_catalog.xml"), catalog).unwrap();
        let doc = format!(
            r#"<xnat:MRSession xmlns:xnat="http://nrg.wustl.edu/xnat" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ID="" project="{project}" label="{folder}" UID="1.2.{folder}"><xnat:date>2023-12-31</xnat:date><xnat:subject_ID>SUBJ1</xnat:subject_ID><xnat:scans><xnat:scan ID="2" type="T1" UID="1.2.{folder}.2" xsi:type="xnat:mrScanData"><xnat:file xsi:type="xnat:resourceCatalog" label="DICOM" format="DICOM" content="RAW" URI="SCANS/2/DICOM/scan_2_catalog.xml"/></xnat:scan></xnat:scans></xnat:MRSession>"#
        );
        fs::write(base.join(format!("{folder}.xml")), doc).unwrap();
    }

    /// Checks the response and the fence; returns whether the request wrote into the trees.
    pub(crate) fn check(&mut self, req: &Request, r: &Response) -> bool {
        let what = || format!("{} {}?{} → {}: {}", req.method, req.path, req.query, r.status, r.body_text());
        assert!((100..=599).contains(&r.status.as_u16()), "{}", what());
        assert!(r.header("content-type").is_some(), "no content type: {}", what());
        if let Some(xnat_http::message::FileBody { path, .. }) = &r.file {
            let inside = [self.root().join("pre"), self.root().join("arch")].iter().any(|t| path.starts_with(t));
            let plain = path.components().all(|c| matches!(c, Component::Normal(_) | Component::RootDir));
            assert!(inside && plain, "streams {path:?} from outside the trees: {}", what());
        }
        let changes = self.watch.changes(self.dir.path());
        assert!(changes.fence.is_empty(), "written outside the trees ({:?}): {}", changes.fence, what());
        changes.trees
    }

    /// Puts the two trees back as they were first made.
    fn restore(&mut self) {
        let root = self.root();
        for tree in ["pre", "arch"] {
            fs::remove_dir_all(root.join(tree)).unwrap();
            fs::create_dir(root.join(tree)).unwrap();
        }
        for (rel, bytes) in &self.snapshot {
            match bytes {
                None => fs::create_dir_all(root.join(rel)).unwrap(),
                Some(b) => fs::write(root.join(rel), b).unwrap(),
            }
        }
        self.watch.trees(&root);
    }
}

/// Removes the sites of processes that are gone (Linux: `/proc/<pid>` tells).
fn remove_stale(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else { return };
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("xnat-fuzz-http-").and_then(|r| r.split('-').next()) else { continue };
        if pid.parse::<u32>().is_ok() && Path::new("/proc/self").exists() && !Path::new("/proc").join(pid).exists() {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// Every folder and file under `dir` (symbolic links are not followed), parents before children.
fn snapshot(dir: &Path) -> Snapshot {
    fn walk(base: &Path, rel: &Path, out: &mut Snapshot) {
        let mut entries: Vec<_> = fs::read_dir(base.join(rel)).unwrap().map(|e| e.unwrap()).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let rel = rel.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                out.push((rel.clone(), None));
                walk(base, &rel, out);
            } else {
                out.push((rel.clone(), Some(fs::read(base.join(&rel)).unwrap_or_default())));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, Path::new(""), &mut out);
    out
}

/// What changed since the last look.
struct Changes {
    /// Something in the trees.
    trees: bool,
    /// What changed in the fence.
    fence: Vec<String>,
}

/// Tells what a request changed, by inotify: the fence (`<tmp>`, `<tmp>/site`, `<tmp>/outside/…`) and
/// every folder of the trees are watched.
#[cfg(target_os = "linux")]
struct Watch {
    inotify: inotify::Inotify,
    fence: Vec<(inotify::WatchDescriptor, PathBuf)>,
    buffer: Vec<u8>,
}

#[cfg(target_os = "linux")]
impl Watch {
    const MASK: inotify::WatchMask = inotify::WatchMask::MODIFY
        .union(inotify::WatchMask::ATTRIB)
        .union(inotify::WatchMask::CLOSE_WRITE)
        .union(inotify::WatchMask::CREATE)
        .union(inotify::WatchMask::DELETE)
        .union(inotify::WatchMask::DELETE_SELF)
        .union(inotify::WatchMask::MOVE_SELF)
        .union(inotify::WatchMask::MOVED_FROM)
        .union(inotify::WatchMask::MOVED_TO);

    fn new(top: &Path) -> Watch {
        let inotify = inotify::Inotify::init().expect("inotify");
        let mut w = Watch { inotify, fence: Vec::new(), buffer: vec![0; 64 * 1024] };
        let mut dirs = vec![top.to_path_buf(), top.join("site")];
        dirs.extend(
            snapshot(&top.join("outside"))
                .into_iter()
                .filter(|(_, b)| b.is_none())
                .map(|(p, _)| top.join("outside").join(p)),
        );
        dirs.push(top.join("outside"));
        for d in dirs {
            let wd = w.inotify.watches().add(&d, Self::MASK).expect("an inotify watch");
            w.fence.push((wd, d));
        }
        w
    }

    /// Watches every folder of the trees (after they were made anew), and forgets what happened so far.
    fn trees(&mut self, site: &Path) {
        for tree in ["pre", "arch"] {
            let root = site.join(tree);
            let dirs = snapshot(&root).into_iter().filter(|(_, b)| b.is_none()).map(|(p, _)| root.join(p));
            for d in std::iter::once(root.clone()).chain(dirs) {
                self.inotify.watches().add(&d, Self::MASK).expect("an inotify watch");
            }
        }
        while self.inotify.read_events(&mut self.buffer).is_ok_and(|mut e| e.next().is_some()) {}
    }

    fn changes(&mut self, _top: &Path) -> Changes {
        let mut changes = Changes { trees: false, fence: Vec::new() };
        loop {
            let events = match self.inotify.read_events(&mut self.buffer) {
                Ok(events) => events,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("inotify: {e}"),
            };
            let mut any = false;
            for e in events {
                any = true;
                if e.mask.contains(inotify::EventMask::IGNORED) {
                    continue;
                }
                match self.fence.iter().find(|(wd, _)| *wd == e.wd) {
                    Some((_, dir)) => changes.fence.push(format!("{:?} {}/{:?}", e.mask, dir.display(), e.name)),
                    None => changes.trees = true,
                }
            }
            if !any {
                break;
            }
        }
        changes
    }
}

/// Elsewhere: the fence and the trees are walked after every request.
#[cfg(not(target_os = "linux"))]
struct Watch {
    fence: Snapshot,
    trees: Snapshot,
}

#[cfg(not(target_os = "linux"))]
impl Watch {
    fn new(top: &Path) -> Watch {
        Watch { fence: Self::fence(top), trees: Vec::new() }
    }

    fn fence(top: &Path) -> Snapshot {
        let mut names: Snapshot = fs::read_dir(top).unwrap().map(|e| (e.unwrap().file_name().into(), None)).collect();
        names.extend(fs::read_dir(top.join("site")).unwrap().map(|e| (e.unwrap().file_name().into(), None)));
        names.sort();
        names.extend(snapshot(&top.join("outside")));
        names.push(("canary".into(), fs::read(top.join("canary.txt")).ok()));
        names
    }

    fn trees(&mut self, site: &Path) {
        self.trees = snapshot(site);
    }

    fn changes(&mut self, top: &Path) -> Changes {
        let fence = if Self::fence(top) == self.fence { Vec::new() } else { vec!["the fence changed".into()] };
        Changes { trees: snapshot(&top.join("site")) != self.trees, fence }
    }
}
