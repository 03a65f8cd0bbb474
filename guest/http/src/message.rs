//! The request and the response as the handler sees them: method, path, query, headers and body in; status,
//! headers and body out. Plain data with small helpers; not for parsing parameters (`params.rs`) or
//! formatting tables (`formats.rs`).

/// The content types of the responses.
pub const TEXT: &str = "text/plain; charset=utf-8";
pub const JSON: &str = "application/json";
pub const CSV: &str = "text/csv; charset=utf-8";
pub const XML: &str = "application/xml";
pub const URI_LIST: &str = "text/uri-list";
pub const BINARY: &str = "application/octet-stream";

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
        Response::new(200, TEXT, text.into())
    }

    /// `200` with no body.
    pub fn empty() -> Response {
        Response::new(200, TEXT, Vec::new())
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
