//! The request and the response as the handler sees them: method, path, query, headers and body in; status,
//! headers and body out. Plain data with small helpers; not for parsing parameters (`params.rs`) or
//! formatting tables (`formats.rs`).

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};

/// The content types of the responses.
pub const TEXT: &str = "text/plain; charset=utf-8";
pub const JSON: &str = "application/json";
pub const CSV: &str = "text/csv; charset=utf-8";
pub const XML: &str = "application/xml";
pub const HTML: &str = "text/html; charset=utf-8";
pub const URI_LIST: &str = "text/uri-list";
pub const BINARY: &str = "application/octet-stream";
pub const ZIP: &str = "application/zip";

/// The largest request body read into memory (form parameters). Uploads (`routes::streams_body`) are not
/// read into memory: they stream to disk.
pub const MAX_BODY: usize = 1 << 20;

/// The reader of a body left unread.
type BodyReader = Box<dyn std::io::Read + Send>;

/// A request body left unread, for the handler to stream (uploads): taken once.
#[derive(Clone, Default)]
pub struct BodyStream(Option<std::sync::Arc<std::sync::Mutex<Option<BodyReader>>>>);

impl BodyStream {
    pub fn new(reader: impl std::io::Read + Send + 'static) -> BodyStream {
        BodyStream(Some(std::sync::Arc::new(std::sync::Mutex::new(Some(Box::new(reader))))))
    }

    /// The body's reader, the first time it is asked for.
    pub fn take(&self) -> Option<BodyReader> {
        self.0.as_ref().and_then(|cell| cell.lock().ok()?.take())
    }
}

impl std::fmt::Debug for BodyStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "BodyStream(unread)" } else { "BodyStream(none)" })
    }
}

/// An HTTP request, as the handler sees it.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: Method,
    /// The path, still percent-encoded, after the host stripped its base path: `/data/services/archive`.
    pub path: String,
    /// The query string without `?`, still encoded.
    pub query: String,
    /// The headers (names are case-insensitive; a repeated header keeps every value, in arrival order).
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// The body, unread, when the route streams it (`routes::streams_body`); `body` is empty then.
    pub stream: BodyStream,
}

impl Request {
    /// A request for `path_with_query` (`/data/auth?format=json`). A method that is not a token (RFC 9110)
    /// cannot arrive over HTTP; it is kept as the extension method `INVALID`, which no route takes.
    pub fn new(method: &str, path_with_query: &str) -> Request {
        let (path, query) = path_with_query.split_once('?').unwrap_or((path_with_query, ""));
        let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
            .unwrap_or_else(|_| Method::from_bytes(b"INVALID").expect("a token"));
        Request {
            method,
            path: if path.is_empty() { "/".into() } else { path.into() },
            query: query.into(),
            ..Request::default()
        }
    }

    /// Adds a header value. A name or value that HTTP cannot carry (a control character, a name that is
    /// not a token) is left out: no client can have sent it.
    pub fn with_header(mut self, name: &str, value: &str) -> Request {
        append(&mut self.headers, name, value.as_bytes());
        self
    }

    /// Adds a header value as it arrived (bytes); as [`Request::with_header`].
    pub fn append_header(&mut self, name: &str, value: &[u8]) {
        append(&mut self.headers, name, value);
    }

    /// A form body (`application/x-www-form-urlencoded`).
    pub fn with_form(self, body: &str) -> Request {
        let mut r = self.with_header("content-type", "application/x-www-form-urlencoded");
        r.body = body.as_bytes().to_vec();
        r
    }

    /// The first value of a header, if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every value of a header that is text.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.get_all(name).into_iter().filter_map(|v| v.to_str().ok())
    }
}

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// A file streamed as the body instead of `body` (downloads).
    pub file: Option<FileBody>,
    /// A zip of these files streamed as the body instead of `body` (length unknown until written).
    pub zip: Option<Box<[ZipMember]>>,
    /// A `HEAD`: the headers (`content-length` included) without the body.
    pub head: bool,
}

/// A file of a streamed zip: its name inside the zip, its path inside the component, its size and the
/// digest its catalog records (checked as it is copied; empty: none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZipMember {
    pub name: String,
    pub path: std::path::PathBuf,
    pub size: u64,
    pub digest: String,
}

/// The part of a file a response streams: its path inside the component, where it starts and how long it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileBody {
    pub path: std::path::PathBuf,
    pub offset: u64,
    pub len: u64,
}

impl Response {
    /// A response with `status` (a code from 100 to 599; anything else is a bug here and answers 500).
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let headers = HeaderMap::new();
        Response { status, headers, body: body.into(), file: None, zip: None, head: false }
            .with_header("content-type", content_type)
    }

    /// `200` streaming a file of `size` bytes.
    pub fn file(content_type: &str, path: std::path::PathBuf, size: u64) -> Response {
        Response { file: Some(FileBody { path, offset: 0, len: size }), ..Response::new(200, content_type, Vec::new()) }
    }

    /// `200` streaming a zip of `members`.
    pub fn zip(members: Vec<ZipMember>) -> Response {
        Response { zip: Some(members.into_boxed_slice()), ..Response::new(200, ZIP, Vec::new()) }
    }

    /// `206` streaming `len` bytes of a file from `offset` (a range request).
    pub fn file_part(content_type: &str, path: std::path::PathBuf, offset: u64, len: u64) -> Response {
        Response { file: Some(FileBody { path, offset, len }), ..Response::new(206, content_type, Vec::new()) }
    }

    /// `200 text/plain` with `text`.
    pub fn text(text: impl Into<String>) -> Response {
        Response::new(200, TEXT, text.into())
    }

    /// `200` with no body.
    pub fn empty() -> Response {
        Response::new(200, TEXT, Vec::new())
    }

    /// Adds a header value; one HTTP cannot carry (a line break in a value) is left out rather than sent.
    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        append(&mut self.headers, name, value.as_bytes());
        self
    }

    /// The first value of a header, if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as text (lossy), for tests and logs.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Appends a header value, if HTTP can carry the name and the value.
fn append(headers: &mut HeaderMap, name: &str, value: &[u8]) {
    if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_bytes(value)) {
        headers.append(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_case_insensitive_repeatable_and_never_carry_a_line_break() {
        let r = Request::new("get", "/data?x=1")
            .with_header("Cookie", "a=1")
            .with_header("cookie", "b=2")
            .with_header("X-Bad", "one\r\nSet-Cookie: evil=1")
            .with_header("bad name", "x");
        assert_eq!((r.method.as_str(), r.path.as_str(), r.query.as_str()), ("GET", "/data", "x=1"));
        assert_eq!(r.headers_named("COOKIE").collect::<Vec<_>>(), ["a=1", "b=2"]);
        assert_eq!(r.header("x-bad"), None);
        assert_eq!(r.headers.len(), 2);
        assert_eq!(Request::new("G E T", "/").method.as_str(), "INVALID");
        let out = Response::text("hi").with_header("Content-Disposition", "attachment\nX: y");
        assert_eq!(out.header("content-disposition"), None);
        assert_eq!(out.header("CONTENT-TYPE"), Some(TEXT));
        assert_eq!(Response::new(42, TEXT, "").status, 500);
    }
}
