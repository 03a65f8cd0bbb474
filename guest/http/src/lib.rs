//! The XNAT HTTP component: XNAT's REST surface for the prearchive, the import service and the catalog
//! refresh (`http-surface.md` tiers A–C), served over `xnat-core`, exported as
//! `wasi:http/incoming-handler`.
//!
//! The handler is a plain function, [`handle`], over this crate's own [`Request`], [`Response`] and
//! [`Context`], so routing, parameters, formats and the auth flows unit-test natively. Only the glue at the
//! bottom of this file (built for `wasm32` alone) knows about `wasi:http`: it reads the request, builds the
//! [`Context`] from the component's environment and its preopened directories, calls [`handle`] and writes
//! the response.
//!
//! # The component's contract with its host
//!
//! * Preopened directories: the archive at `/archive`, the prearchive at `/prearchive`.
//! * Environment (read once per request):
//!   - `XNAT_USERS`: `user:<argon2 PHC hash>` entries separated by `;`. Absent or empty: nobody can log in,
//!     every request but `GET /` is 401.
//!   - `XNAT_SECRET`: the key that signs session tokens (HMAC-SHA256). Absent or empty: no tokens; the login
//!     answers 200 with an empty body, which makes xnatpy fall back to HTTP Basic.
//!   - `XNAT_TENANT` (default `default`): bound into every token, so a token of one tenant fails on another.
//!   - `XNAT_BASE_PATH` (default empty): the prefix the host strips before forwarding (`/demo`); the cookie's
//!     `Path`.
//!   - `XNAT_TOKEN_TTL` (seconds, default 3600), `XNAT_SITE_ID` (default `XNAT`, for new accession IDs).
//!   - `XNAT_ADMINS`: user names, separated by `,`, who may run `POST /data/services/archive/recover`.
//!   - `XNAT_ARCHIVE_FAULT_POINT`, `XNAT_ARCHIVE_PAUSE_MS`: the archive's test switches, as in the library
//!     component; a host passes them only in tests.
//!
//! A malformed setting makes every request but `GET /` answer 500 with a message naming the setting.

pub mod auth;
pub mod credentials;
pub mod formats;
pub mod listings;
pub mod objects;
pub mod params;
pub mod routes;
#[cfg(test)]
mod tests;

pub use routes::handle;

use crate::credentials::Users;
use xnat_core::fs::tree::Tree;
use xnat_core::import::request::Faults;

/// Where the host grants the archive tree inside the component.
pub const ARCHIVE: &str = "/archive";
/// Where the host grants the prearchive tree inside the component.
pub const PREARCHIVE: &str = "/prearchive";
/// The largest request body read (form parameters only; nothing is uploaded through this surface).
pub const MAX_BODY: usize = 1 << 20;

/// An HTTP request, as the handler sees it.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// `GET`, `PUT`, ... (upper case).
    pub method: String,
    /// The path, still percent-encoded, after the host stripped its base path: `/data/services/archive`.
    pub path: String,
    /// The query string without `?`, still encoded.
    pub query: String,
    /// Header names in lower case, in arrival order; a repeated header appears once per value.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// A request for `path_with_query` (`/data/auth?format=json`).
    pub fn new(method: &str, path_with_query: &str) -> Request {
        let (path, query) = path_with_query.split_once('?').unwrap_or((path_with_query, ""));
        Request {
            method: method.to_ascii_uppercase(),
            path: if path.is_empty() { "/".into() } else { path.into() },
            query: query.into(),
            ..Request::default()
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// A form body (`application/x-www-form-urlencoded`).
    pub fn with_form(self, body: &str) -> Request {
        let mut r = self.with_header("content-type", "application/x-www-form-urlencoded");
        r.body = body.as_bytes().to_vec();
        r
    }

    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Every value of a header.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// An HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// A file streamed as the body instead of `body` (downloads): its path inside the component, its size.
    pub file: Option<(std::path::PathBuf, u64)>,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response { status, headers: vec![("content-type".into(), content_type.into())], body: body.into(), file: None }
    }

    /// `200` streaming a file of `size` bytes.
    pub fn file(content_type: &str, path: std::path::PathBuf, size: u64) -> Response {
        Response { file: Some((path, size)), ..Response::new(200, content_type, Vec::new()) }
    }

    /// `200 text/plain` with `text`.
    pub fn text(text: impl Into<String>) -> Response {
        Response::new(200, formats::TEXT, text.into())
    }

    /// `200` with no body.
    pub fn empty() -> Response {
        Response::new(200, formats::TEXT, Vec::new())
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy), for tests and logs.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What one request runs with: the two trees, the users and token settings, and the time.
#[derive(Debug, Clone)]
pub struct Context {
    pub archive: Tree,
    pub prearchive: Tree,
    pub users: Users,
    /// The token signing key; `None` when tokens are disabled.
    pub secret: Option<Vec<u8>>,
    pub tenant: String,
    /// `""` or `/demo`: the prefix the host strips, used as the cookie path.
    pub base_path: String,
    pub token_ttl: u64,
    pub site_id: String,
    /// Seconds since the Unix epoch.
    pub now: u64,
    pub faults: Faults,
    /// Users who may run administrators' services (recovery), from `XNAT_ADMINS` (names separated by `,`).
    pub admins: Vec<String>,
    /// A malformed setting: every request but `GET /` answers 500 with this message.
    pub config_error: Option<String>,
}

impl Context {
    /// A context with no users, no secret and default settings, over two trees.
    pub fn new(archive: Tree, prearchive: Tree, now: u64) -> Context {
        Context {
            archive,
            prearchive,
            users: Users::default(),
            secret: None,
            tenant: "default".into(),
            base_path: String::new(),
            token_ttl: 3600,
            site_id: "XNAT".into(),
            now,
            faults: Faults::default(),
            admins: Vec::new(),
            config_error: None,
        }
    }

    /// The context from environment variables (`var` looks one up), as described in the crate docs.
    pub fn from_env(var: impl Fn(&str) -> Option<String>, archive: Tree, prearchive: Tree, now: u64) -> Context {
        let mut ctx = Context::new(archive, prearchive, now);
        let mut problems = Vec::new();
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        match Users::parse(&var("XNAT_USERS").unwrap_or_default()) {
            Ok(users) => ctx.users = users,
            Err(e) => problems.push(format!("XNAT_USERS: {e}")),
        }
        ctx.secret = var("XNAT_SECRET").filter(|s| !s.is_empty()).map(String::into_bytes);
        if let Some(tenant) = set("XNAT_TENANT") {
            let tenant = tenant.trim().to_string();
            if tenant.contains(['|', ':', ';']) || tenant.contains(char::is_whitespace) {
                problems.push(format!("XNAT_TENANT {tenant:?} holds '|', ':', ';' or spaces; choose a plain name"));
            }
            ctx.tenant = tenant;
        }
        if let Some(base) = set("XNAT_BASE_PATH") {
            let base = base.trim().trim_end_matches('/');
            ctx.base_path =
                if base.is_empty() || base.starts_with('/') { base.to_string() } else { format!("/{base}") };
            if ctx.base_path.contains([';', ',', ' ', '\r', '\n']) {
                problems.push(format!("XNAT_BASE_PATH {base:?} cannot be a cookie path; use a plain path like /demo"));
            }
        }
        if let Some(ttl) = set("XNAT_TOKEN_TTL") {
            match ttl.trim().parse::<u64>() {
                Ok(n) if n > 0 => ctx.token_ttl = n,
                _ => problems.push(format!("XNAT_TOKEN_TTL {ttl:?} is not a positive number of seconds")),
            }
        }
        ctx.admins = var("XNAT_ADMINS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect();
        if let Some(site) = set("XNAT_SITE_ID") {
            ctx.site_id = site.trim().to_string();
        }
        ctx.faults = Faults {
            point: set("XNAT_ARCHIVE_FAULT_POINT").and_then(|v| v.trim().parse().ok()),
            pause_ms: set("XNAT_ARCHIVE_PAUSE_MS").and_then(|v| v.trim().parse().ok()),
        };
        if !problems.is_empty() {
            ctx.config_error = Some(format!(
                "the server is misconfigured ({}); the operator must fix the tenant's settings",
                problems.join("; ")
            ));
        }
        ctx
    }
}

/// The `wasi:http/incoming-handler` export.
#[cfg(target_arch = "wasm32")]
mod component {
    use super::{ARCHIVE, Context, MAX_BODY, PREARCHIVE, Request, Response, handle};
    use wasi::exports::http::incoming_handler::Guest;
    use wasi::http::types::{
        Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
    };
    use wasi::io::streams::StreamError;
    use xnat_core::fs::lock::{Instances, set_instances};
    use xnat_core::fs::tree::Tree;

    // The one import besides WASI and wasi:http: the host's knowledge of instances, for locks (D13).
    wit_bindgen::generate!({
        world: "http-imports",
        path: "../../wit",
    });
    use xnat::archive::holders;

    struct Component;

    impl Guest for Component {
        fn handle(request: IncomingRequest, out: ResponseOutparam) {
            set_instances(Instances { this: holders::this, alive: holders::alive });
            let response = match read_request(&request) {
                Ok(req) => {
                    let now =
                        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                    let ctx =
                        Context::from_env(|k| std::env::var(k).ok(), Tree::new(ARCHIVE), Tree::new(PREARCHIVE), now);
                    handle(&req, &ctx)
                }
                Err(response) => response,
            };
            write_response(response, out);
        }
    }

    fn read_request(request: &IncomingRequest) -> Result<Request, Response> {
        let method = match request.method() {
            Method::Get => "GET".to_string(),
            Method::Head => "HEAD".into(),
            Method::Post => "POST".into(),
            Method::Put => "PUT".into(),
            Method::Delete => "DELETE".into(),
            Method::Connect => "CONNECT".into(),
            Method::Options => "OPTIONS".into(),
            Method::Trace => "TRACE".into(),
            Method::Patch => "PATCH".into(),
            Method::Other(m) => m.to_ascii_uppercase(),
        };
        let mut req = Request::new(&method, &request.path_with_query().unwrap_or_else(|| "/".into()));
        for (name, value) in request.headers().entries() {
            req.headers.push((name.to_ascii_lowercase(), String::from_utf8_lossy(&value).into_owned()));
        }
        let fail = |why: &str| super::formats::failure(500, "io", &format!("cannot read the request body: {why}"));
        let body = request.consume().map_err(|()| fail("it was already taken"))?;
        {
            let stream = body.stream().map_err(|()| fail("no stream"))?;
            loop {
                match stream.blocking_read(64 * 1024) {
                    Ok(chunk) => {
                        req.body.extend_from_slice(&chunk);
                        if req.body.len() > MAX_BODY {
                            return Err(super::formats::failure(
                                413,
                                "bad-request",
                                "the request body is larger than 1 MiB; send parameters, not files",
                            ));
                        }
                    }
                    Err(StreamError::Closed) => break,
                    Err(StreamError::LastOperationFailed(e)) => return Err(fail(&e.to_debug_string())),
                }
            }
        }
        drop(IncomingBody::finish(body));
        Ok(req)
    }

    /// Sends the response. A client that went away mid-body is no fault of ours: write errors end the
    /// response quietly instead of trapping.
    fn write_response(response: Response, out: ResponseOutparam) {
        let headers = Fields::new();
        for (name, value) in &response.headers {
            let _ = headers.append(name, value.as_bytes());
        }
        let length = response.file.as_ref().map_or(response.body.len() as u64, |(_, size)| *size);
        let _ = headers.set("content-length", &[length.to_string().into_bytes()]);
        let outgoing = OutgoingResponse::new(headers);
        let _ = outgoing.set_status_code(response.status);
        let Ok(body) = outgoing.body() else {
            return;
        };
        ResponseOutparam::set(out, Ok(outgoing));
        if let Ok(stream) = body.write() {
            match &response.file {
                None => {
                    for chunk in response.body.chunks(4096) {
                        if stream.blocking_write_and_flush(chunk).is_err() {
                            break;
                        }
                    }
                }
                // Streamed in chunks (never whole in memory). A file that shrank since it was listed ends the
                // body early; the client sees fewer bytes than content-length, as from any server.
                Some((path, _)) => {
                    use std::io::Read as _;
                    if let Ok(mut f) = std::fs::File::open(path) {
                        let mut buf = vec![0u8; 64 * 1024];
                        // blocking-write-and-flush takes at most 4096 bytes per call.
                        'file: while let Ok(n) = f.read(&mut buf) {
                            if n == 0 {
                                break;
                            }
                            for chunk in buf[..n].chunks(4096) {
                                if stream.blocking_write_and_flush(chunk).is_err() {
                                    break 'file;
                                }
                            }
                        }
                    }
                }
            }
            drop(stream);
        }
        let _ = OutgoingBody::finish(body, None);
    }

    wasi::http::proxy::export!(Component);
}
