//! What keeps a browser from being turned against the archive: a state-changing request that a page of
//! another origin made (its `Origin`, or else its `Referer`, names another origin than the request's
//! `Host`) is refused with 403 before anything runs, whatever its credentials; and every response tells
//! the browser not to guess its type (`X-Content-Type-Options: nosniff`) and not to render or run it as a
//! page (`Content-Security-Policy: default-src 'none'; frame-ancestors 'none'; sandbox`) — this surface
//! serves data, never pages, so a stored document that holds script stays inert.
//!
//! XNAT's own clients (xnatpy, pyxnat, curl, scripts) send neither `Origin` nor `Referer` and are not
//! affected. An operator behind a proxy that rewrites `Host` names the public origins in
//! `XNAT_ALLOWED_ORIGINS`. Not for authentication (`auth.rs`).

use crate::formats::HttpError;
use crate::message::{Request, Response};

/// The policy of every response: nothing loads, nothing frames it, and it runs as an opaque origin.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; frame-ancestors 'none'; sandbox";

/// Refuses a state-changing request sent from a page of another origin (403, nothing done).
pub fn refuse_cross_site(req: &Request, allowed_origins: &[String]) -> Result<(), HttpError> {
    if req.method.is_safe() {
        return Ok(());
    }
    let (header, source) = match (req.header("origin"), req.header("referer")) {
        (Some(origin), _) => ("Origin", origin),
        (None, Some(referer)) => ("Referer", referer),
        (None, None) => return Ok(()),
    };
    let Some(from) = origin_of(source) else {
        return Err(forbidden(header, source));
    };
    let own = req.header("host").map(|h| h.trim().to_ascii_lowercase());
    let same_host = own.is_some_and(|own| same_authority(&from, &own));
    let allowed = allowed_origins.iter().any(|a| origin_of(a).is_some_and(|a| a == from));
    if same_host || allowed { Ok(()) } else { Err(forbidden(header, source)) }
}

fn forbidden(header: &str, source: &str) -> HttpError {
    HttpError::new(
        403,
        "forbidden",
        &format!(
            "cross-site request refused: its {header} ({source}) is not this server's origin, so a page elsewhere \
             sent it; nothing was done. Send it from this server's own pages or a client that is not a browser \
             (an operator behind a proxy lists the public origin in XNAT_ALLOWED_ORIGINS)"
        ),
    )
}

/// Adds the headers every response carries.
pub fn harden(response: Response) -> Response {
    response
        .with_header("x-content-type-options", "nosniff")
        .with_header("content-security-policy", CONTENT_SECURITY_POLICY)
}

/// `scheme://authority` of an origin or a URL, lower case, without the scheme's default port; `None` for
/// anything else (`null`, a relative reference).
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.trim().split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if !matches!(scheme.as_str(), "http" | "https") {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?.to_ascii_lowercase();
    let authority = authority.rsplit_once('@').map_or(authority.as_str(), |(_, host)| host).to_string();
    if authority.is_empty() {
        return None;
    }
    let default_port = if scheme == "http" { ":80" } else { ":443" };
    let authority = authority.strip_suffix(default_port).unwrap_or(&authority).to_string();
    Some(format!("{scheme}://{authority}"))
}

/// Whether an origin names the same host and port as a `Host` header (whose scheme the request does not
/// say: a default port on either side matches the other side without one).
fn same_authority(origin: &str, host: &str) -> bool {
    let authority = origin.split_once("://").map_or(origin, |(_, a)| a);
    let bare = |h: &str| h.strip_suffix(":80").or_else(|| h.strip_suffix(":443")).unwrap_or(h).to_string();
    bare(authority) == bare(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, headers: &[(&str, &str)]) -> Request {
        headers.iter().fold(Request::new(method, "/data/prearchive/projects/P/TS/S"), |r, (n, v)| r.with_header(n, v))
    }

    #[test]
    fn state_changes_from_other_origins_are_refused() {
        let host = ("Host", "xnat.example:8080");
        for (method, headers, allowed) in [
            // Not a browser, or a browser on this server's own page.
            ("DELETE", vec![host], true),
            ("DELETE", vec![host, ("Origin", "http://xnat.example:8080")], true),
            ("POST", vec![host, ("Referer", "https://XNAT.example:8080/app/page?x=1")], true),
            ("DELETE", vec![("Host", "xnat.example"), ("Origin", "https://xnat.example")], true),
            // Reading is never refused here (SameSite and the same-origin policy keep the answers private).
            ("GET", vec![host, ("Origin", "http://evil.example")], true),
            // Another origin, an opaque one (a sandboxed document), or one that cannot be read.
            ("DELETE", vec![host, ("Origin", "http://evil.example")], false),
            ("PUT", vec![host, ("Origin", "http://xnat.example:8081")], false),
            ("POST", vec![host, ("Origin", "null")], false),
            ("POST", vec![host, ("Referer", "http://evil.example/x")], false),
            ("POST", vec![host, ("Origin", "http://evil.example"), ("Referer", "http://xnat.example:8080/")], false),
            ("POST", vec![("Origin", "http://xnat.example:8080")], false),
            ("PATCH", vec![host, ("Origin", "ftp://xnat.example:8080")], false),
        ] {
            let r = req(method, &headers);
            assert_eq!(refuse_cross_site(&r, &[]).is_ok(), allowed, "{method} {headers:?}");
        }
        let proxied = req("DELETE", &[("Host", "backend:9000"), ("Origin", "https://xnat.example")]);
        assert!(refuse_cross_site(&proxied, &[]).is_err());
        assert!(refuse_cross_site(&proxied, &["https://xnat.example:443".into()]).is_ok());
        let e = refuse_cross_site(&req("DELETE", &[host, ("Origin", "http://evil.example")]), &[]).unwrap_err();
        assert_eq!(e.status, 403);
        assert!(e.message.contains("http://evil.example") && e.message.contains("nothing was done"), "{}", e.message);
    }
}
