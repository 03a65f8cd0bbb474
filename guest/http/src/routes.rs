//! The router: method and path → handler, each handler a thin mapping of parameters onto an `xnat-core`
//! call and of its result onto XNAT's response (`http-surface.md` §5, tiers A–C; statuses per D2).
//!
//! Every path but `GET /`, the login and the logout needs an authenticated caller (see [`crate::auth`]);
//! unknown paths are 404 only once the caller is known, so they reveal nothing to strangers.

use percent_encoding::percent_decode_str;
use serde_json::{Value, json};
use xnat_core::import::archive;
use xnat_core::import::contents;
use xnat_core::import::prearchive::{Prearchive, Row, SessionRef};
use xnat_core::import::request::{self, Overwrite};
use xnat_core::progress::NoProgress;
use xnat_core::refresh::resource::{self, ResourceSpec};
use xnat_core::refresh::{self, Outcome, ResourceReport};

use crate::auth::{self, Principal};
use crate::browser;
use crate::context::Context;
use crate::formats::{self, Format, HttpError, Table};
use crate::listings::{self, encode};
use crate::message::{Request, Response};
use crate::objects;
use crate::params::Params;

pub use crate::formats::failure;

/// The XNAT version this surface reports: 1.8.x makes xnatpy use its 1.7+ model loader.
pub const XNAT_VERSION: &str = "1.8.10";

const XNAT_XSD: &str = include_str!("schemas/xnat.xsd");
const XDAT_XSD: &str = include_str!("schemas/xdat.xsd");

/// Handles one request. Never fails: every error becomes its response (plain text, or JSON with
/// `format=json`).
pub fn handle(req: &Request, ctx: &Context) -> Response {
    let head = req.method == "HEAD";
    let method = if head { "GET" } else { req.method.as_str() };
    let params = match Params::parse(req) {
        Ok(p) => p,
        Err(e) => return browser::harden(e.response(false)),
    };
    let json_errors = params.value("format").is_some_and(|f| f.eq_ignore_ascii_case("json"));
    let mut response = browser::refuse_cross_site(req, &ctx.allowed_origins)
        .and_then(|()| route(method, req, &params, ctx))
        .unwrap_or_else(|e| e.response(json_errors));
    if head {
        response.body.clear();
        response.head = response.file.is_some();
    }
    browser::harden(response)
}

/// One request on its way through the router: what each area's table needs to pick and call a handler.
struct Call<'a> {
    method: &'a str,
    segs: &'a [&'a str],
    req: &'a Request,
    params: &'a Params,
    ctx: &'a Context,
}

impl Call<'_> {
    /// `Ok` if the path takes this method, else 405 listing the ones it takes.
    fn allow(&self, allowed: &[&str]) -> Result<(), HttpError> {
        if allowed.contains(&self.method) {
            Ok(())
        } else {
            Err(HttpError::method_not_allowed(self.method, &self.req.path, allowed))
        }
    }

    /// The listing format the caller asked for (JSON by default, as XNAT).
    fn format(&self) -> Result<Format, HttpError> {
        Format::from_params(self.params, Format::Json)
    }
}

/// What a router table answers: `None` when the path is not one of its own.
type Routed = Option<Result<Response, HttpError>>;

fn route(method: &str, req: &Request, params: &Params, ctx: &Context) -> Result<Response, HttpError> {
    let owned = segments(&req.path)?;
    let segs: Vec<&str> = owned.iter().map(String::as_str).collect();
    let call = Call { method, segs: &segs, req, params, ctx };
    let Some(who) = admit_segments(method, &segs, req, ctx)? else {
        return open_routes(&call).unwrap_or_else(|| Err(not_offered(method, &req.path)));
    };
    site_routes(&call, &who)
        .or_else(|| listing_routes(&call))
        .or_else(|| prearchive_routes(&call))
        .or_else(|| service_routes(&call, &who))
        .or_else(|| crate::browse::route(method, req, params, ctx))
        .or_else(|| object_routes(&call))
        .unwrap_or_else(|| Err(not_offered(method, &req.path)))
}

/// Who is asking, as the router decides it before anything runs: `None` on the paths open to anyone (the
/// banner, the login, the logout), the caller on every other path, or the refusal (401, with the exact text
/// pyxnat expects on its first request). A host may run this itself before it lets a request in (it needs
/// no body).
pub fn admit(req: &Request, ctx: &Context) -> Result<Option<Principal>, HttpError> {
    let head = req.method == "HEAD";
    let method = if head { "GET" } else { req.method.as_str() };
    let owned = segments(&req.path)?;
    let segs: Vec<&str> = owned.iter().map(String::as_str).collect();
    admit_segments(method, &segs, req, ctx)
}

fn admit_segments(method: &str, segs: &[&str], req: &Request, ctx: &Context) -> Result<Option<Principal>, HttpError> {
    if is_open(method, segs) {
        return Ok(None);
    }
    let who = auth::authenticate(req, ctx).map_err(|e| match segs {
        // pyxnat's first request: this exact body becomes its "Authentication failed".
        ["data", "JSESSION"] if e.status == 401 => HttpError { message: auth::PYXNAT_401.into(), ..e },
        _ => e,
    })?;
    Ok(Some(who))
}

/// Whether the route streams the request's body itself (uploads): the component's glue then leaves the body
/// unread for it instead of reading at most [`crate::MAX_BODY`] bytes into memory.
pub fn streams_body(method: &str, path: &str) -> bool {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    method.eq_ignore_ascii_case("POST")
        && segments(path).is_ok_and(|s| s.iter().map(String::as_str).eq(["data", "services", "import"]))
}

/// Whether a request may change the trees. The host grants the tenant's directories read-only when it
/// cannot: reading the archive (its listings, documents, files and zips) and a refresh's `verify` or
/// `dry-run` named in the query. Decided from the method and target alone, before any body is read;
/// anything not known to only read may write (the prearchive listing does: it keeps its table).
pub fn writes(method: &str, target: &str) -> bool {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let Ok(owned) = segments(path) else { return true };
    let segs: Vec<&str> = owned.iter().map(String::as_str).collect();
    let archive_read = matches!(
        segs.as_slice(),
        ["data", "archive", "projects" | "experiments" | "subjects", ..]
            | ["data", "projects" | "experiments" | "subjects", ..]
    );
    match method {
        "GET" | "HEAD" => !archive_read,
        "POST" if segs == ["data", "services", "refresh", "catalog"] => !matches!(
            refresh_mode_in(form_urlencoded::parse(query.as_bytes())),
            Some(refresh::Mode::Verify | refresh::Mode::DryRun)
        ),
        _ => true,
    }
}

/// The refresh mode the parameters ask for: `mode=apply|verify|dry-run`, or `verify=true` / `dryRun=true`
/// (our additions: XNAT's refresh only applies). `None` when none is named.
fn refresh_mode_in<'a>(
    pairs: impl Iterator<Item = (std::borrow::Cow<'a, str>, std::borrow::Cow<'a, str>)>,
) -> Option<refresh::Mode> {
    let mut mode = None;
    for (name, value) in pairs {
        let on = || !matches!(value.to_ascii_lowercase().as_str(), "false" | "0" | "no");
        let named = match name.as_ref() {
            "mode" => match value.to_ascii_lowercase().replace('_', "-").as_str() {
                "apply" => Some(refresh::Mode::Apply),
                "verify" => Some(refresh::Mode::Verify),
                "dry-run" | "dryrun" => Some(refresh::Mode::DryRun),
                _ => Some(refresh::Mode::Apply), // refused by the handler; never read-only on a guess
            },
            "verify" if on() => Some(refresh::Mode::Verify),
            "dryRun" | "dry-run" | "dryrun" if on() => Some(refresh::Mode::DryRun),
            _ => None,
        };
        mode = named.or(mode);
    }
    mode
}

/// The paths open to anyone: the banner, the login (any method: a wrong one is 405) and the logout.
fn is_open(method: &str, segs: &[&str]) -> bool {
    matches!(segs, [] | ["data", "services", "auth"]) || (segs == ["data", "JSESSION"] && method == "DELETE")
}

/// Open to anyone: the banner, the login and the logout.
fn open_routes(c: &Call) -> Routed {
    Some(match c.segs {
        [] => c
            .allow(&["GET"])
            .map(|()| Response::text("XNAT archive services (xnat-archive): the REST API is under /data\n")),
        ["data", "services", "auth"] => c.allow(&["PUT", "POST"]).and_then(|()| auth::login(c.req, c.params, c.ctx)),
        ["data", "JSESSION"] if c.method == "DELETE" => auth::logout(c.req, c.params, c.ctx),
        _ => return None,
    })
}

/// Who the caller is, the session, and what the clients ask of the site before they start.
fn site_routes(c: &Call, who: &Principal) -> Routed {
    let answer = |allowed: &[&str], respond: &dyn Fn() -> Result<Response, HttpError>| {
        Some(c.allow(allowed).and_then(|()| respond()))
    };
    match c.segs {
        ["data", "auth"] => answer(&["GET"], &|| Ok(auth::whoami(who))),
        // POST is how XNAT's wiki makes a session: `curl -u user:pass -X POST …/data/JSESSION`.
        ["data", "JSESSION"] => answer(&["GET", "POST", "DELETE"], &|| auth::jsession(who, c.ctx)),
        ["data", "version"] => answer(&["GET"], &|| Ok(Response::text(XNAT_VERSION))),
        ["xapi", "siteConfig", "buildInfo"] => answer(&["GET"], &|| {
            let info = json!({ "version": XNAT_VERSION, "buildNumber": "1", "tag": XNAT_VERSION });
            Ok(Response::new(200, formats::JSON, info.to_string()))
        }),
        ["xapi", "schemas"] => answer(&["GET"], &|| Ok(Response::new(200, formats::JSON, r#"["xnat","xdat"]"#))),
        ["xapi", "schemas", name] | ["xapi", "schemas", name, _] => {
            answer(&["GET"], &|| match name.strip_suffix(".xsd").unwrap_or(name) {
                "xnat" => Ok(Response::new(200, formats::XML, XNAT_XSD)),
                "xdat" => Ok(Response::new(200, formats::XML, XDAT_XSD)),
                other => Err(HttpError::not_found(&format!("no schema {other}; this server has xnat and xdat"))),
            })
        }
        ["data", "search", "elements"] => {
            answer(&["GET"], &|| Ok(Response::new(200, formats::JSON, r#"{"ResultSet":{"Result":[]}}"#)))
        }
        _ => None,
    }
}

/// The archive's projects, subjects and experiments, as XNAT lists them (also under `/data/archive`).
fn listing_routes(c: &Call) -> Routed {
    let segs = match c.segs {
        ["data", "archive", rest @ ..] if rest.first() == Some(&"projects") => rest,
        ["data", rest @ ..] => rest,
        _ => return None,
    };
    let archive = &c.ctx.archive;
    let listing: Box<dyn Fn(Format) -> Result<Response, HttpError>> = match *segs {
        ["projects"] => Box::new(|f| listings::projects(archive, f)),
        ["projects", project, "subjects"] => Box::new(move |f| listings::subjects(archive, project, f)),
        ["projects", project, "experiments"] => Box::new(move |f| listings::experiments(archive, project, None, f)),
        ["projects", project, "subjects", subject, "experiments"] => {
            Box::new(move |f| listings::experiments(archive, project, Some(subject), f))
        }
        _ => return None,
    };
    Some(c.allow(&["GET"]).and_then(|()| listing(c.format()?)))
}

/// The prearchive: listings, one session (its row, actions and deletion) and its contents.
fn prearchive_routes(c: &Call) -> Routed {
    let (params, ctx) = (c.params, c.ctx);
    Some(match c.segs {
        ["data", "prearchive"] | ["data", "prearchive", "projects"] => {
            c.allow(&["GET"]).and_then(|()| prearchive_list(params, ctx, None))
        }
        ["data", "prearchive", "projects", project] => {
            c.allow(&["GET"]).and_then(|()| prearchive_list(params, ctx, Some(project)))
        }
        ["data", "prearchive", "projects", project, timestamp, folder] => {
            c.allow(&["GET", "POST", "DELETE"]).and_then(|()| {
                let session = SessionRef::new(Some(project), timestamp, folder)?;
                match c.method {
                    "GET" => prearchive_session(params, ctx, &session),
                    "POST" => prearchive_action(params, ctx, &session),
                    _ => {
                        Prearchive::new(&ctx.prearchive).delete(&session)?;
                        Ok(Response::empty())
                    }
                }
            })
        }
        ["data", "prearchive", "projects", project, timestamp, folder, "scans", tail @ ..] => {
            c.allow(&["GET"]).and_then(|()| {
                let session = SessionRef::new(Some(project), timestamp, folder)?;
                prearchive_contents(params, ctx, &session, tail)
            })
        }
        _ => return None,
    })
}

/// The services, all POST: validate, archive, recover, the prearchive's batch actions, catalog refresh.
fn service_routes(c: &Call, who: &Principal) -> Routed {
    let (params, ctx) = (c.params, c.ctx);
    let service: Box<dyn Fn() -> Result<Response, HttpError>> = match c.segs {
        ["data", "services", "validate-archive"] => Box::new(|| validate(params, ctx)),
        ["data", "services", "archive"] => Box::new(|| archive(params, ctx)),
        ["data", "services", "archive", "recover"] => Box::new(|| recover(params, ctx, who)),
        ["data", "services", "prearchive", action @ ("move" | "delete" | "rebuild")] => {
            Box::new(move || prearchive_batch(action, params, ctx))
        }
        ["data", "services", "refresh", "catalog"] => Box::new(|| refresh_catalog(params, ctx, who)),
        ["data", "services", "import"] => Box::new(|| crate::import::import(c.req, params, ctx)),
        _ => return None,
    };
    // The method is checked first: a GET of a service must not run it.
    Some(c.allow(&["POST"]).and_then(|()| service()))
}

/// The archive's objects: resource creation and the experiment and subject documents.
fn object_routes(c: &Call) -> Routed {
    match c.segs {
        ["data", item, .., "resources", _] if is_archive_step(item) && matches!(c.method, "PUT" | "POST") => {
            Some(create_resource(c.req, c.params, c.ctx))
        }
        ["data", item, ..] if is_archive_step(item) && c.method == "GET" => {
            let xml = c.params.value("format").is_some_and(|f| f.eq_ignore_ascii_case("xml"));
            objects::get(&c.ctx.archive, &c.req.path, xml)
        }
        _ => None,
    }
}

fn not_offered(method: &str, path: &str) -> HttpError {
    HttpError::not_found(&format!(
        "{method} {path} is not offered by this server (XNAT's prearchive, archive and catalog refresh services, \
         and the experiment and subject documents, are)"
    ))
}

fn is_archive_step(step: &str) -> bool {
    matches!(step, "archive" | "projects" | "experiments" | "subjects")
}

/// The path's segments, percent-decoded; `/REST` is XNAT's old name for `/data`.
fn segments(path: &str) -> Result<Vec<String>, HttpError> {
    let mut out = Vec::new();
    for s in path.split('/').filter(|s| !s.is_empty()) {
        let decoded = percent_decode_str(s)
            .decode_utf8()
            .map_err(|_| HttpError::bad_request(&format!("the path segment {s:?} is not UTF-8 once decoded")))?;
        out.push(decoded.into_owned());
    }
    if out.first().is_some_and(|s| s == "REST") {
        out[0] = "data".into();
    }
    Ok(out)
}

// ----- prearchive -----------------------------------------------------------------------------------------

fn rows_table(rows: impl IntoIterator<Item = Row>) -> Table {
    let mut t = Table::new(&Row::COLUMNS);
    for r in rows {
        t.push(r.into_values().into());
    }
    t
}

/// `GET /data/prearchive[/projects[/P]]`: every row, or those of the named projects (a comma list, in the
/// path or in `project=`).
fn prearchive_list(params: &Params, ctx: &Context, project: Option<&str>) -> Result<Response, HttpError> {
    let format = Format::from_params(params, Format::Json)?;
    let pre = Prearchive::new(&ctx.prearchive);
    let wanted: Vec<&str> = project
        .or_else(|| params.value("project"))
        .map(|p| p.split(',').map(str::trim).filter(|p| !p.is_empty()).collect())
        .unwrap_or_default();
    let rows = if wanted.is_empty() {
        pre.list(None)?
    } else {
        let mut rows = Vec::new();
        for p in wanted {
            rows.extend(pre.list(Some(p))?);
        }
        rows
    };
    Ok(rows_table(rows).response(format, 200))
}

/// `GET /data/prearchive/projects/P/TS/F`: the row (a one-row table), or with `format=xml` the session
/// document.
fn prearchive_session(params: &Params, ctx: &Context, s: &SessionRef) -> Result<Response, HttpError> {
    let format = Format::from_params(params, Format::Json)?;
    let pre = Prearchive::new(&ctx.prearchive);
    pre.require(s)?;
    if format == Format::Xml {
        return match ctx.prearchive.read(&s.document()) {
            Ok(bytes) if !bytes.iter().all(u8::is_ascii_whitespace) => Ok(Response::new(200, formats::XML, bytes)),
            Ok(_) | Err(xnat_core::error::Error::NotFound(_)) => Err(HttpError::not_found(&format!(
                "The named session exists, but its XNAT session document is not available ({} is {}); \
                 wait until the session has been received and built",
                s.url(),
                pre.status(s)?.as_str()
            ))),
            Err(e) => Err(e.into()),
        };
    }
    Ok(rows_table([pre.row(s)?]).response(format, 200))
}

/// `POST /data/prearchive/projects/P/TS/F?action=reset-status|build|move&newProject=Q`. The answer is the
/// session's row with `format=json|csv|xml`, otherwise its URI (`text/uri-list`), as XNAT answers a build.
fn prearchive_action(params: &Params, ctx: &Context, s: &SessionRef) -> Result<Response, HttpError> {
    let format = match params.value("format").map(str::to_ascii_lowercase).as_deref() {
        Some("json") => Some(Format::Json),
        Some("csv") => Some(Format::Csv),
        Some("xml") => Some(Format::Xml),
        _ => None,
    };
    let pre = Prearchive::new(&ctx.prearchive);
    let row = match params.value("action") {
        // A session still receiving (gradual-DICOM) is built: catalogs and document, READY (XNAT's commit).
        Some("commit" | "build" | "rebuild")
            if xnat_core::receive::session::read_marker(&ctx.prearchive, s)?.is_some() =>
        {
            let built = xnat_core::receive::commit(&ctx.prearchive, s)?;
            if !built.kept {
                return Err(HttpError::bad_request(&format!(
                    "{} held no DICOM file that could be kept; it was removed",
                    s.url()
                )));
            }
            pre.row(s)?
        }
        Some("commit") => {
            return Err(HttpError::new(409, "conflict", &format!("{} is not receiving: nothing to commit", s.url())));
        }
        // Our status is derived from the files on every read: a rebuild is a reset of the stored status.
        Some("reset-status" | "build" | "rebuild") => pre.reset_status(s)?,
        Some("move") => {
            let target = new_project(params)?;
            let moved = pre.move_to(s, target)?;
            pre.row(&moved)?
        }
        Some(other) => {
            return Err(HttpError::bad_request(&format!(
                "action={other} is not offered; use action=reset-status, action=build or action=move&newProject=P"
            )));
        }
        None => {
            return Err(HttpError::bad_request(
                "action is missing; use action=reset-status, action=build or action=move&newProject=P",
            ));
        }
    };
    Ok(match format {
        Some(f) => rows_table([row]).response(f, 200),
        None => Response::new(200, formats::URI_LIST, format!("/data{}\r\n", row.url)),
    })
}

/// `GET …/P/TS/F/scans[/N/resources[/R/files[/PATH]]]`: a session's scans, a scan's resources, a
/// resource's files (tables, as XNAT's prearchive listings), or one file's bytes.
fn prearchive_contents(params: &Params, ctx: &Context, s: &SessionRef, tail: &[&str]) -> Result<Response, HttpError> {
    let pre = Prearchive::new(&ctx.prearchive);
    let format = || Format::from_params(params, Format::Json);
    match tail {
        [] => {
            // No `xsiType` column: xnatpy would take it for the listing's object type (a prearchive scan).
            let mut t = Table::new(&["ID", "type", "series_description"]);
            for scan in contents::scans(&pre, s)? {
                t.push(vec![scan.id, scan.kind, scan.series_description]);
            }
            Ok(t.response(format()?, 200))
        }
        [scan, "resources"] => {
            let mut t = Table::new(&["label", "format", "content", "file_count", "file_size"]);
            for r in contents::resources(&pre, s, scan)? {
                t.push(vec![r.label, r.format, r.content, r.file_count.to_string(), r.file_size.to_string()]);
            }
            Ok(t.response(format()?, 200))
        }
        [scan, "resources", resource, "files"] => {
            let base = format!("/data{}/scans/{}/resources/{}/files", s.url(), encode(scan), encode(resource));
            let mut t = Table::new(&["Name", "Size", "URI", "digest", "format", "content"]);
            for f in contents::files(&pre, s, scan, resource)? {
                let uri = format!("{base}/{}", f.name.split('/').map(encode).collect::<Vec<_>>().join("/"));
                t.push(vec![f.name, f.size.to_string(), uri, f.digest, f.format, f.content]);
            }
            Ok(t.response(format()?, 200))
        }
        [scan, "resources", resource, "files", name @ ..] if !name.is_empty() => {
            let (path, size) = contents::file(&pre, s, scan, resource, &name.join("/"))?;
            Ok(Response::file(formats::BINARY, ctx.prearchive.path(&path), size))
        }
        _ => Err(not_offered("GET", &format!("/data{}/scans/{}", s.url(), tail.join("/")))),
    }
}

fn new_project(params: &Params) -> Result<&str, HttpError> {
    params.value("newProject").ok_or_else(|| {
        HttpError::bad_request(
            "newProject is missing or empty: name the project to move the session to (or Unassigned)",
        )
    })
}

/// `POST /data/services/prearchive/{move,delete,rebuild}` (`src`…): the table of the sessions' rows (for
/// delete, as they were). Every session is tried; if any failed, the answer is the first failure's status
/// with a message listing each failed session.
fn prearchive_batch(action: &str, params: &Params, ctx: &Context) -> Result<Response, HttpError> {
    let format = Format::from_params(params, Format::Json)?;
    let srcs = sources(params)?;
    if srcs.is_empty() {
        return Err(HttpError::not_found(
            "Unknown prearchive session: name it with src=/prearchive/projects/P/TIMESTAMP/FOLDER",
        ));
    }
    let target = if action == "move" { Some(new_project(params)?) } else { None };
    let sessions = srcs.iter().map(|s| SessionRef::parse_src(s)).collect::<Result<Vec<_>, _>>()?;
    let pre = Prearchive::new(&ctx.prearchive);
    let mut rows = Vec::new();
    let mut failed: Vec<(String, HttpError)> = Vec::new();
    for s in &sessions {
        let done = match (action, target) {
            ("move", Some(t)) => pre.move_to(s, t).and_then(|m| pre.row(&m)),
            ("delete", _) => pre.require(s).and_then(|()| pre.row(s)).and_then(|row| pre.delete(s).map(|()| row)),
            _ => pre.reset_status(s),
        };
        match done {
            Ok(row) => rows.push(row),
            Err(e) => failed.push((s.url(), e.into())),
        }
    }
    match failed.len() {
        0 => Ok(rows_table(rows).response(format, 200)),
        1 if sessions.len() == 1 => Err(failed.remove(0).1),
        n => {
            let (status, kind) = (failed[0].1.status, failed[0].1.kind);
            let list: Vec<String> = failed.iter().map(|(u, e)| format!("{u}: {}", e.message)).collect();
            Err(HttpError::new(
                status,
                kind,
                &format!("{n} of {} sessions failed ({}); the others succeeded", sessions.len(), list.join("; ")),
            ))
        }
    }
}

/// The sessions a request names: `src` (repeated), and/or the `project` (or `PROJECT_ID`) +
/// `PREARC_TIMESTAMP` + `PREARC_SESSION_FOLDER` (repeated) triple.
fn sources(params: &Params) -> Result<Vec<String>, HttpError> {
    let mut srcs: Vec<String> =
        params.all("src").into_iter().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect();
    let timestamp = params.value("PREARC_TIMESTAMP");
    let folders: Vec<&str> =
        params.all("PREARC_SESSION_FOLDER").into_iter().map(str::trim).filter(|f| !f.is_empty()).collect();
    if timestamp.is_some() || !folders.is_empty() {
        let project = params.value("PROJECT_ID").or_else(|| params.value("project"));
        let (Some(project), Some(ts), false) = (project, timestamp, folders.is_empty()) else {
            return Err(HttpError::bad_request(
                "name a session by project (or PROJECT_ID), PREARC_TIMESTAMP and PREARC_SESSION_FOLDER together, \
                 or by src=/prearchive/projects/P/TIMESTAMP/FOLDER",
            ));
        };
        if project.len() > MAX_NAME || ts.len() > MAX_NAME {
            return Err(HttpError::bad_request(&format!(
                "a project or timestamp longer than {MAX_NAME} characters names no prearchive session"
            )));
        }
        for f in folders {
            srcs.push(format!("/prearchive/projects/{}/{}/{}", encode(project), encode(ts), encode(f)));
        }
    }
    if srcs.len() > MAX_BATCH {
        return Err(HttpError::bad_request(&format!(
            "{} sessions named in one request; name at most {MAX_BATCH} and send the rest in further requests",
            srcs.len()
        )));
    }
    Ok(srcs)
}

/// The most sessions one batch request may name: each is a lock, a plan and a row, held at once.
const MAX_BATCH: usize = 1000;
/// The longest project or timestamp name accepted (folder names on common file systems stop at 255 bytes).
const MAX_NAME: usize = 255;

// ----- validate and archive ---------------------------------------------------------------------------------

fn archive_params(params: &Params, ctx: &Context) -> Result<request::Params, HttpError> {
    let overwrite = match params.value("overwrite") {
        None => Overwrite::None,
        Some(name) => Overwrite::parse(name).ok_or_else(|| {
            HttpError::bad_request(&format!(
                "overwrite={} is not known; use none, append or delete",
                name.to_ascii_lowercase()
            ))
        })?,
    };
    Ok(request::Params {
        src: sources(params)?,
        project: params.value("project").map(str::to_string),
        subject: params.synonym(&["subject", "SUBJECT_ID"])?,
        label: params.synonym(&["session", "label", "EXPT_LABEL"])?,
        dest: params.value("dest").map(str::to_string),
        overwrite,
        quarantine: params.only_if_true("quarantine"),
        trigger_pipelines: params.on_unless_false("triggerPipelines").unwrap_or(true),
        site_id: Some(ctx.site_id.clone()),
    })
}

/// `POST /data/services/archive/recover` (ours; administrators only, `XNAT_ADMINS`): finishes or rolls back
/// every archive that was cut short and clears locks whose holder died — respecting live leases, so that
/// archives still running are reported `in-progress` and left alone. A table (src, action, detail).
fn recover(params: &Params, ctx: &Context, who: &Principal) -> Result<Response, HttpError> {
    if !ctx.admins.contains(&who.user) {
        return Err(HttpError::from(xnat_core::error::Error::Forbidden(format!(
            "recovery is for administrators; {} is not one (the tenant's XNAT_ADMINS names them)",
            who.user
        ))));
    }
    let format = Format::from_params(params, Format::Json)?;
    let recovered = archive::recover(&ctx.prearchive, &ctx.archive, archive::Locks::Respect)?;
    let mut t = Table::new(&["src", "action", "detail"]);
    for r in recovered {
        t.push(vec![r.src, r.action, r.detail]);
    }
    Ok(t.response(format, 200))
}

/// `POST /data/services/validate-archive`: the (code, type, message) table; empty means archivable.
fn validate(params: &Params, ctx: &Context) -> Result<Response, HttpError> {
    let format = Format::from_params(params, Format::Json)?;
    let notices = archive::validate(&ctx.prearchive, &ctx.archive, &archive_params(params, ctx)?)?;
    let mut t = Table::new(&["code", "type", "message"]);
    for n in notices {
        t.push(vec![n.code.to_string(), n.kind.as_str().to_string(), n.message]);
    }
    Ok(t.response(format, 200))
}

/// `POST /data/services/archive`: one session → `200 text/uri-list` with the experiment's URI, or the
/// session's error; several → a table (src, status, uri, message), with the first failure's status if
/// any failed.
fn archive(params: &Params, ctx: &Context) -> Result<Response, HttpError> {
    let format = Format::from_params(params, Format::Json)?;
    let request = archive_params(params, ctx)?;
    let mut results = archive::archive(&ctx.prearchive, &ctx.archive, &request, ctx.faults, &mut NoProgress)?;
    if results.len() == 1 {
        let uri = results.remove(0).result?;
        return Ok(Response::new(200, formats::URI_LIST, format!("{uri}\r\n")));
    }
    let mut t = Table::new(&["src", "status", "uri", "message"]);
    let mut status = 200;
    for a in results {
        match a.result {
            Ok(uri) => t.push(vec![a.src, "200".into(), uri, String::new()]),
            Err(e) => {
                let e = HttpError::from(e);
                if status == 200 {
                    status = e.status;
                }
                t.push(vec![a.src, e.status.to_string(), String::new(), e.message]);
            }
        }
    }
    Ok(t.response(format, status))
}

// ----- refresh and resources ------------------------------------------------------------------------------

/// `POST /data/services/refresh/catalog`: `resource` (repeated); `options` repeated and/or comma-joined;
/// `append=`, `checksum=`, `delete=`, `populateStats=` switches; `trustUnchanged=true` (ours, not XNAT's: see
/// the refresh's unchanged-data stamp). 200 with an empty body, or with
/// `format=json` the per-resource reports; a resource that failed gives its status.
fn refresh_catalog(params: &Params, ctx: &Context, who: &Principal) -> Result<Response, HttpError> {
    let json = match params.value("format").map(str::to_ascii_lowercase).as_deref() {
        None => false,
        Some("json") => true,
        Some(other) => {
            return Err(HttpError::bad_request(&format!(
                "format={other} is not offered by the refresh; it answers with an empty body, or its report with \
                 format=json"
            )));
        }
    };
    let mode = refresh_mode(params)?;
    // A verify or dry run says what it found: its report, unless a format was named.
    let json = json || (mode != refresh::Mode::Apply && params.value("format").is_none());
    let request = refresh::Request {
        options: refresh_options(params)?,
        trust_unchanged: params.on_unless_false("trustUnchanged") == Some(true),
        mode,
        ..refresh_request(params, who)
    };
    let reports = refresh::refresh(&ctx.archive, &request, &mut (ctx.hasher)(), &mut NoProgress)?;
    let failure = reports.iter().find_map(|r| match &r.outcome {
        Outcome::Failed(e) => Some((r.resource.clone(), HttpError::from(e.clone()))),
        _ => None,
    });
    if json {
        let status = failure.as_ref().map_or(200, |(_, e)| e.status);
        let body = json!({ "reports": reports.iter().map(report_json).collect::<Vec<_>>() });
        return Ok(Response::new(status, formats::JSON, body.to_string()));
    }
    match failure {
        Some((resource, e)) => Err(HttpError { message: format!("{resource}: {}", e.message), ..e }),
        None => Ok(Response::empty()),
    }
}

/// `mode=apply|verify|dry-run` (or `verify=true`, `dryRun=true`); apply when none is named.
fn refresh_mode(params: &Params) -> Result<refresh::Mode, HttpError> {
    if let Some(mode) = params.value("mode")
        && !matches!(mode.to_ascii_lowercase().replace('_', "-").as_str(), "apply" | "verify" | "dry-run" | "dryrun")
    {
        return Err(HttpError::bad_request(&format!(
            "mode={mode} is not a refresh mode; use apply (the default), verify (hash everything and compare, write \
             nothing) or dry-run (report what the options would change, write nothing)"
        )));
    }
    let pairs = ["mode", "verify", "dryRun", "dry-run", "dryrun"].into_iter().flat_map(|name| {
        params.all(name).into_iter().map(move |v| (std::borrow::Cow::Borrowed(name), std::borrow::Cow::Borrowed(v)))
    });
    Ok(refresh_mode_in(pairs).unwrap_or(refresh::Mode::Apply))
}

/// The operations: `options=append,checksum` (a list) and `append=true`-style switches, by XNAT's names.
fn refresh_options(params: &Params) -> Result<refresh::Options, HttpError> {
    let mut options = refresh::Options::default();
    for name in params.list("options") {
        if !options.set(name) {
            return Err(HttpError::bad_request(&format!(
                "unknown option {name:?}; options are append, checksum, delete and populateStats"
            )));
        }
    }
    for name in refresh::Options::NAMES {
        if params.on_unless_false(name) == Some(true) {
            options.set(name);
        }
    }
    Ok(options)
}

/// The resources named (`resource=`, one or more) and the user, with default options.
fn refresh_request(params: &Params, who: &Principal) -> refresh::Request {
    refresh::Request {
        resources: params
            .all("resource")
            .into_iter()
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(String::from)
            .collect(),
        user: Some(who.user.clone()),
        ..refresh::Request::default()
    }
}

/// A refresh report as the host's JSON shows it (`xnat-archive refresh --json`).
fn report_json(r: &ResourceReport) -> Value {
    let outcome = match &r.outcome {
        Outcome::Written => json!({ "status": "written" }),
        Outcome::Unchanged => json!({ "status": "unchanged" }),
        Outcome::NotWritten => json!({ "status": "not-written" }),
        Outcome::Skipped(reason) => json!({ "status": "skipped", "reason": reason }),
        Outcome::Failed(e) => {
            let e = HttpError::from(e.clone());
            json!({ "status": "failed", "error": { "kind": e.kind, "message": e.message } })
        }
    };
    let mismatches: Vec<Value> =
        r.mismatches.iter().map(|m| json!({ "path": m.path, "stored": m.stored, "actual": m.actual })).collect();
    let skipped: Vec<Value> = r.skipped.iter().map(|s| json!({ "path": s.path, "reason": s.reason })).collect();
    json!({
        "resource": r.resource,
        "catalog": r.catalog,
        "outcome": outcome,
        "catalog_created": r.catalog_created,
        "added": r.added,
        "removed": r.removed,
        "modified": r.modified,
        "mismatches": mismatches,
        "skipped": skipped,
        "file_count": r.file_count,
        "file_size": r.file_size,
        "stats_written": r.stats_written,
        "trusted": r.trusted,
    })
}

/// `PUT|POST …/resources/LABEL` with `format`, `content`, `description`, `tags`: the resource folder and its
/// empty catalog. 200 with an empty body; 409 if it exists.
fn create_resource(req: &Request, params: &Params, ctx: &Context) -> Result<Response, HttpError> {
    let text = |name: &str| params.value(name).map(str::to_string);
    let spec = ResourceSpec {
        resource: req.path.clone(),
        format: text("format"),
        content: text("content"),
        description: text("description"),
        tags: params.list("tags").into_iter().map(str::to_string).collect(),
    };
    resource::create_resource(&ctx.archive, &spec)?;
    Ok(Response::empty())
}
