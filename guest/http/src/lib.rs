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
//!   - `XNAT_VERIFIED_USER`: set by a host that has checked this request's credentials itself (the
//!     `xnat-archive serve` gate, with [`routes::admit`]): the user, who must be in `XNAT_USERS`; the
//!     credentials are not checked again. A host sets it per request, never from anything the client sent.
//!   - `XNAT_ALLOWED_ORIGINS`: origins (`https://xnat.example.org`), separated by `,`, whose pages may change
//!     things besides the request's own `Host` (a proxy that rewrites `Host`); see [`browser`].
//!   - `XNAT_ARCHIVE_FAULT_POINT`, `XNAT_ARCHIVE_PAUSE_MS`: the archive's test switches, as in the library
//!     component; a host passes them only in tests.
//!
//! A malformed setting makes every request but `GET /` answer 500 with a message naming the setting.

pub mod auth;
pub mod browse;
pub mod browser;
pub mod context;
pub mod credentials;
pub mod formats;
pub mod import;
pub mod listings;
pub mod message;
pub mod objects;
pub mod params;
pub mod routes;
pub mod sessions;
#[cfg(test)]
mod tests;

pub use context::{ARCHIVE, Context, PREARCHIVE};
pub use message::{MAX_BODY, Request, Response};
pub use routes::handle;

/// The `wasi:http/incoming-handler` export.
#[cfg(target_arch = "wasm32")]
mod component {
    use super::{ARCHIVE, Context, MAX_BODY, PREARCHIVE, Request, Response, handle};
    use wasi::exports::http::incoming_handler::Guest;
    use wasi::http::types::{
        Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
    };
    use wasi::io::streams::StreamError;
    use xnat_core::fs::instances::Instances;
    use xnat_core::fs::tree::Tree;

    // The imports besides WASI and wasi:http: the host's knowledge of instances, for locks (D13), its
    // digests of files, its listings of folders and its renames beneath folders the component opened (the
    // descriptors are the `wasi` crate's, as xnat-core's).
    wit_bindgen::generate!({
        world: "http-imports",
        path: "../../wit",
        with: {
            "wasi:filesystem/types@0.2.12": wasi::filesystem::types,
            "wasi:io/streams@0.2.12": wasi::io::streams,
            "wasi:io/error@0.2.12": wasi::io::error,
            "wasi:io/poll@0.2.12": wasi::io::poll,
            "wasi:clocks/wall-clock@0.2.12": wasi::clocks::wall_clock,
        },
    });
    use xnat::archive::{digests, holders, listings, renames};
    use xnat_core::fs::{HostEntry, HostListing, HostRenames};
    use xnat_core::refresh::{Algorithm, Hasher, HostDigests};

    /// The host's folder listings (WIT `listings`).
    const HOST_LISTING: HostListing = HostListing {
        lists: listings::lists,
        list_folder: |folder, path| Ok(listings::list_folder(folder, path)?.into_iter().map(host_entry).collect()),
        walk_tree: listings::walk_tree,
        next_walked: |ticket| {
            listings::next_walked(ticket).map(|f| (f.path, f.entries.into_iter().map(host_entry).collect()))
        },
        end_walk: listings::end_walk,
        watch_tree: listings::watch_tree,
    };

    /// One entry of the host's listings as the tree takes it.
    fn host_entry(e: listings::ListedEntry) -> HostEntry {
        HostEntry {
            name: e.name,
            utf8: e.utf8,
            kind: e.type_,
            size: e.size,
            modified: e.modified,
            changed: e.changed,
            identity: e.identity,
        }
    }

    /// The host's renames (WIT `renames`).
    const HOST_RENAMES: HostRenames = HostRenames {
        renames: renames::renames,
        rename_files: |source, destination, pairs| {
            renames::rename_files(source, destination, pairs).map_err(|f| (f.index, f.code))
        },
        start_renames: renames::start_renames,
        renamed: |ticket| renames::renamed(ticket).map_err(|f| (f.index, f.code)),
    };

    /// A hasher that asks the host's digests (WIT `digests`) first.
    fn hasher() -> Hasher {
        Hasher::with_host(HostDigests {
            computes: digests::computes,
            digest_files: |folder, paths, algorithm| {
                digests::digest_files(
                    folder,
                    paths,
                    match algorithm {
                        Algorithm::Md5 => xnat::archive::types::DigestAlgorithm::Md5,
                        Algorithm::Sha256 => xnat::archive::types::DigestAlgorithm::Sha256,
                    },
                )
            },
        })
    }

    struct Component;

    impl Guest for Component {
        fn handle(request: IncomingRequest, out: ResponseOutparam) {
            let response = match read_request(&request) {
                Ok(req) => {
                    let now =
                        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                    // Locks taken in the trees name this instance to the host, which can tell when it is gone.
                    let instances = Instances { this: holders::this, alive: holders::alive };
                    let granted = |path| {
                        Tree::new(path).with_instances(instances).with_listing(HOST_LISTING).with_renames(HOST_RENAMES)
                    };
                    let mut ctx =
                        Context::from_env(|k| std::env::var(k).ok(), granted(ARCHIVE), granted(PREARCHIVE), now);
                    ctx.hasher = hasher;
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
            req.append_header(&name, &value);
        }
        // wasi:http carries the Host header as the request's authority.
        if req.header("host").is_none()
            && let Some(authority) = request.authority()
        {
            req.append_header("host", authority.as_bytes());
        }
        let fail = |why: &str| super::formats::failure(500, "io", &format!("cannot read the request body: {why}"));
        let body = request.consume().map_err(|()| fail("it was already taken"))?;
        if super::routes::streams_body(&method, &req.path) {
            // An upload: the route reads it as it arrives, after it has checked the request.
            let stream = body.stream().map_err(|()| fail("no stream"))?;
            req.stream = super::message::BodyStream::new(WasiBody { stream: Some(stream), _body: body });
            return Ok(req);
        }
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

    /// A request body as a reader, read as the handler asks for it. The stream is dropped before its body
    /// (fields drop in order), as wasi:http requires.
    struct WasiBody {
        stream: Option<wasi::io::streams::InputStream>,
        _body: IncomingBody,
    }

    impl std::io::Read for WasiBody {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let Some(stream) = &self.stream else { return Ok(0) };
            loop {
                match stream.blocking_read(buf.len().min(256 * 1024) as u64) {
                    Ok(chunk) if chunk.is_empty() => continue,
                    Ok(chunk) => {
                        buf[..chunk.len()].copy_from_slice(&chunk);
                        return Ok(chunk.len());
                    }
                    Err(StreamError::Closed) => {
                        self.stream = None;
                        return Ok(0);
                    }
                    Err(StreamError::LastOperationFailed(e)) => {
                        return Err(std::io::Error::other(format!("the request body failed: {}", e.to_debug_string())));
                    }
                }
            }
        }
    }

    /// Sends the response. A client that went away mid-body is no fault of ours: write errors end the
    /// response quietly instead of trapping.
    fn write_response(response: Response, out: ResponseOutparam) {
        let headers = Fields::new();
        for (name, value) in &response.headers {
            let _ = headers.append(name.as_str(), value.as_bytes());
        }
        // A zip's length is known once written: it goes out chunked.
        if response.zip.is_none() {
            let length = response.file.as_ref().map_or(response.body.len() as u64, |f| f.len);
            let _ = headers.set("content-length", &[length.to_string().into_bytes()]);
        }
        let outgoing = OutgoingResponse::new(headers);
        let _ = outgoing.set_status_code(response.status.as_u16());
        let Ok(body) = outgoing.body() else {
            return;
        };
        ResponseOutparam::set(out, Ok(outgoing));
        if response.head {
            let _ = OutgoingBody::finish(body, None);
            return;
        }
        if let Some(members) = &response.zip {
            let Ok(stream) = body.write() else { return };
            let mut out = std::io::BufWriter::with_capacity(64 * 1024, Chunks(&stream));
            let written = crate::browse::write_zip(members, &mut out).and_then(|()| std::io::Write::flush(&mut out));
            drop(out);
            drop(stream);
            // A zip cut short (a file that no longer matches its digest, a read error) must not end like a whole
            // one: the body is left unfinished, so the client sees the response fail.
            if written.is_ok() {
                let _ = OutgoingBody::finish(body, None);
            }
            return;
        }
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
                Some(file) => {
                    use std::io::{Read as _, Seek as _};
                    if let Ok(f) = std::fs::File::open(&file.path) {
                        let mut f = std::io::BufReader::new(f);
                        let _ = f.seek(std::io::SeekFrom::Start(file.offset));
                        let mut f = f.take(file.len);
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

    /// The response body as a `Write`: each write goes out at most 4096 bytes at a time (what
    /// `blocking-write-and-flush` takes).
    struct Chunks<'s>(&'s wasi::io::streams::OutputStream);

    impl std::io::Write for Chunks<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = buf.len().min(4096);
            self.0.blocking_write_and_flush(&buf[..n]).map_err(|e| std::io::Error::other(format!("{e:?}")))?;
            Ok(n)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    wasi::http::proxy::export!(Component);
}
