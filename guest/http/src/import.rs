//! `POST /data/services/import`: an upload streamed to disk, then sorted into the prearchive (or archived)
//! by `xnat_core::receive`.
//!
//! The body is the file itself (xnatpy's `services.import_`, `inbody=true`, any content type but a form),
//! or a `multipart/form-data` form whose file part is the file and whose other parts are parameters (curl
//! `-F`, XNAT's upload page). It goes to the prearchive's staging folder as it arrives, 256 KiB at a time:
//! memory stays flat whatever its size. A body that ends before its `Content-Length`, or fails mid-way,
//! imports nothing.
//!
//! The answer is XNAT's: the new sessions' URIs, one per line (`/data/prearchive/projects/P/TS/FOLDER`, or
//! `/data/archive/projects/P/subjects/S/experiments/E` when archived); `format=json` adds what was refused.

use crate::Context;
use crate::formats::{self, HttpError};
use crate::message::{Request, Response};
use crate::params::Params;
use std::io::Read;
use xnat_core::progress::NoProgress;
use xnat_core::receive::{self, upload::Staging};

/// The largest upload taken (the staging folder must hold it, then the sessions made of it).
pub const MAX_UPLOAD: u64 = 64 << 30;

/// The largest text part of a multipart form (a parameter).
const MAX_FIELD: usize = 64 << 10;

pub fn import(req: &Request, params: &Params, ctx: &Context) -> Result<Response, HttpError> {
    let multipart = multipart_boundary(req)?;
    let is_form = content_type(req).eq_ignore_ascii_case("application/x-www-form-urlencoded");
    if is_form {
        return Err(HttpError::bad_request(
            "the body is a form, not a file: send the zip as the body (inbody=true) or as a multipart/form-data file",
        ));
    }
    // Parameters in the query are checked before the body is taken: a bad request reads no upload.
    let mut pairs: Vec<(String, String)> = params.pairs().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    if multipart.is_none() {
        receive::Request::from_params(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
    }
    let staging = Staging::unique(&ctx.prearchive)?;
    let body = staging.body();
    let received = match &multipart {
        Some(boundary) => read_multipart(req, ctx, &body, boundary, &mut pairs),
        None => copy_body(req, ctx, &body),
    };
    if let Err(e) = received {
        staging.remove();
        return Err(e);
    }
    let mut request = match receive::Request::from_params(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        Ok(r) => r,
        Err(e) => {
            staging.remove();
            return Err(e.into());
        }
    };
    request.site_id = Some(ctx.site_id.clone());
    let now_millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(ctx.now as i64 * 1000, |d| d.as_millis() as i64);
    let out = receive::import(&ctx.prearchive, Some(&ctx.archive), &request, staging, now_millis, &mut NoProgress)?;
    if params.value("format").is_some_and(|f| f.eq_ignore_ascii_case("json")) {
        let rejected: Vec<serde_json::Value> =
            out.rejected.iter().map(|(file, why)| serde_json::json!({"file": file, "reason": why})).collect();
        let body = serde_json::json!({
            "uris": out.uris,
            "files": out.files,
            "duplicates": out.duplicates,
            "rejected": rejected,
        });
        return Ok(Response::new(200, formats::JSON, body.to_string()));
    }
    let mut text = String::new();
    for uri in &out.uris {
        text.push_str(uri);
        text.push_str("\r\n");
    }
    Ok(Response::new(200, "text/plain;charset=UTF-8", text))
}

fn content_type(req: &Request) -> &str {
    req.header("content-type").unwrap_or("").split(';').next().unwrap_or("").trim()
}

fn multipart_boundary(req: &Request) -> Result<Option<String>, HttpError> {
    if !content_type(req).eq_ignore_ascii_case("multipart/form-data") {
        return Ok(None);
    }
    multer::parse_boundary(req.header("content-type").unwrap_or(""))
        .map(Some)
        .map_err(|e| HttpError::bad_request(&format!("the multipart/form-data body names no boundary ({e})")))
}

/// The body as a reader: the stream the host left unread, or (tests, small bodies) the bytes read already.
fn body_reader(req: &Request) -> Box<dyn Read + Send> {
    match req.stream.take() {
        Some(stream) => stream,
        None => Box::new(std::io::Cursor::new(req.body.clone())),
    }
}

/// Copies the whole body into `to`; a body shorter than its `Content-Length` was cut off.
fn copy_body(req: &Request, ctx: &Context, to: &xnat_core::fs::tree::RelPath) -> Result<(), HttpError> {
    let mut reader = body_reader(req);
    let (size, _) = receive::upload::write_counted(&ctx.prearchive, to, &mut reader, MAX_UPLOAD)?;
    check_length(req, size)?;
    if size == 0 {
        return Err(HttpError::bad_request("the upload is empty; send a zip of DICOM files (or one DICOM file)"));
    }
    Ok(())
}

fn check_length(req: &Request, size: u64) -> Result<(), HttpError> {
    if let Some(len) = req.header("content-length").and_then(|l| l.trim().parse::<u64>().ok())
        && len != size
    {
        return Err(HttpError::bad_request(&format!(
            "the upload was cut off: {size} of the {len} bytes announced arrived; nothing was imported. Send it again"
        )));
    }
    Ok(())
}

/// A multipart form: its first file part into `to`, its text parts added to `pairs`.
fn read_multipart(
    req: &Request,
    ctx: &Context,
    to: &xnat_core::fs::tree::RelPath,
    boundary: &str,
    pairs: &mut Vec<(String, String)>,
) -> Result<(), HttpError> {
    let reader = body_reader(req);
    let counted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stream = ReadStream { reader, buf: vec![0; 256 * 1024], counted: counted.clone() };
    let mut form = multer::Multipart::new(stream, boundary);
    let bad = |e: multer::Error| {
        HttpError::bad_request(&format!("the multipart/form-data body cannot be read ({e}); nothing was imported"))
    };
    let mut file_seen = false;
    while let Some(mut field) = block_on(form.next_field()).map_err(bad)? {
        let name = field.name().unwrap_or("").to_string();
        if field.file_name().is_some()
            || (!file_seen && field.content_type().is_some_and(|m| m.essence_str() != "text/plain"))
        {
            if file_seen {
                return Err(HttpError::bad_request("the form holds more than one file; send one zip per upload"));
            }
            file_seen = true;
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(ctx.prearchive.path(to))
                .map_err(|e| HttpError::from(xnat_core::error::Error::io(to.as_str(), &e)))?;
            let mut size = 0u64;
            while let Some(chunk) = block_on(field.chunk()).map_err(bad)? {
                size += chunk.len() as u64;
                if size > MAX_UPLOAD {
                    return Err(HttpError::new(
                        413,
                        "bad-request",
                        &format!("the upload is larger than {MAX_UPLOAD} bytes; split it"),
                    ));
                }
                std::io::Write::write_all(&mut out, &chunk)
                    .map_err(|e| HttpError::from(xnat_core::error::Error::io(to.as_str(), &e)))?;
            }
        } else {
            let mut value = Vec::new();
            while let Some(chunk) = block_on(field.chunk()).map_err(bad)? {
                value.extend_from_slice(&chunk);
                if value.len() > MAX_FIELD {
                    return Err(HttpError::bad_request(&format!(
                        "form field {name:?} is longer than {MAX_FIELD} bytes"
                    )));
                }
            }
            pairs.push((name, String::from_utf8_lossy(&value).into_owned()));
        }
    }
    check_length(req, counted.load(std::sync::atomic::Ordering::Relaxed))?;
    if !file_seen {
        return Err(HttpError::bad_request("the multipart form holds no file; add the zip as a file part"));
    }
    Ok(())
}

/// A blocking reader as the stream multer reads: each poll reads the next chunk, so it is always ready.
struct ReadStream {
    reader: Box<dyn Read + Send>,
    buf: Vec<u8>,
    counted: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl futures_util::Stream for ReadStream {
    type Item = Result<bytes::Bytes, std::io::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            return std::task::Poll::Ready(match this.reader.read(&mut this.buf) {
                Ok(0) => None,
                Ok(n) => {
                    this.counted.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                    Some(Ok(bytes::Bytes::copy_from_slice(&this.buf[..n])))
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => Some(Err(e)),
            });
        }
    }
}

/// Runs a future whose every poll is ready (multer over [`ReadStream`]): no waiting, no runtime. A future
/// that stays pending (it cannot, over that stream) is an error rather than a spin.
fn block_on<T, F: std::future::Future<Output = Result<T, multer::Error>>>(future: F) -> Result<T, multer::Error> {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    for _ in 0..1_000_000 {
        if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
    Err(multer::Error::StreamReadFailed("the multipart reader stalled".into()))
}
