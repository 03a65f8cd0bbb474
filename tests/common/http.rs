//! A client for `xnat-archive serve` that sends requests exactly as written (no client normalises a path
//! or a query): raw requests on a connection of their own, form bodies, logins.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use super::server::Server;

/// The header of a form body.
pub const FORM: &str = "Content-Type: application/x-www-form-urlencoded\r\n";

/// A response read off the wire: the status, the head (status line and headers, as sent) and the body.
#[derive(Debug)]
pub struct Raw {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Raw {
    /// The value of a header (names compared ignoring case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The body as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.body).ok()
    }
}

/// Sends `method target` with `headers` (each ending in `\r\n`) and `body` exactly as written, on a
/// connection of its own, and reads the whole answer (at most `timeout`).
pub fn raw_bytes(address: &str, method: &str, target: &[u8], headers: &str, body: &[u8], timeout: Duration) -> Raw {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(timeout)).unwrap();
    let length = if body.is_empty() { String::new() } else { format!("Content-Length: {}\r\n", body.len()) };
    let mut request = format!("{method} ").into_bytes();
    request.extend_from_slice(target);
    request.extend_from_slice(
        format!(" HTTP/1.1\r\nHost: {address}\r\n{headers}{length}Connection: close\r\n\r\n").as_bytes(),
    );
    request.extend_from_slice(body);
    stream.write_all(&request).unwrap();
    read_raw(&mut stream)
}

/// Reads an answer until the server closes the connection.
pub fn read_raw(stream: &mut TcpStream) -> Raw {
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status =
        head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    Raw { status, head: head.to_owned(), body: body.to_owned() }
}

/// [`raw_bytes`] with a text target and body, 60 s at most.
pub fn raw(address: &str, method: &str, target: &str, headers: &str, body: &str) -> Raw {
    raw_bytes(address, method, target.as_bytes(), headers, body.as_bytes(), Duration::from_secs(60))
}

/// An `application/x-www-form-urlencoded` body (values encoded as a browser would).
pub fn form(pairs: &[(&str, &str)]) -> String {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    pairs
        .iter()
        .map(|(k, v)| {
            format!("{}={}", utf8_percent_encode(k, NON_ALPHANUMERIC), utf8_percent_encode(v, NON_ALPHANUMERIC))
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// An `Authorization: Basic` value.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// Logs in to `tenant` (`PUT /data/services/auth`) and returns the `Cookie: JSESSIONID=…\r\n` header line.
pub fn login_cookie(server: &Server, tenant: &str, user: &str, password: &str) -> String {
    let body = form(&[("username", user), ("password", password)]);
    let answer = raw(&server.address(), "PUT", &format!("/{tenant}/data/services/auth"), FORM, &body);
    assert_eq!(answer.status, 200, "login to {tenant}: {answer:?}");
    format!("Cookie: JSESSIONID={}\r\n", answer.body.trim())
}
