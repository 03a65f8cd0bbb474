//! The archived data over XNAT's REST API: an experiment's scans, an item's resources, a resource's files
//! (tables in `format=json|csv|xml|html`, with XNAT's column names), one file's bytes, and zips.
//!
//! ```text
//! GET /data[/archive]/experiments/ID/scans                                  scans
//! GET /data[/archive]/projects/P[/subjects/S]/experiments/E/scans           (E: label or ID)
//! GET …/experiments/E[/scans/N|/assessors/A[/in|/out]|/reconstructions/R[/in|/out]]/resources
//! GET /data[/archive]/projects/P[/subjects/S]/resources
//! GET …/resources/R/files[?format=zip]                                     files of a resource (R: label or ID)
//! GET …/resources/R/files/PATH                                             one file (HEAD, Range, ETag)
//! GET …/experiments/E/scans/1,2|ALL[/resources/R]/files[?format=zip]      files of chosen scans
//! GET …/experiments/E/files[?format=zip]                                    every file of the experiment
//! ```
//!
//! A resource's ID (`xnat_abstractresource_id`, which XNAT numbers in its database) is a number made from
//! its URI here ([`browse::resource_id`]); a resource is found by that ID or by its label, so the URIs
//! clients build from either (`…/resources/1234567/files`, `…/resources/DICOM/files`) resolve.
//!
//! Only files the resource's catalog lists are served. The `ETag` is the catalog's digest; a whole-file
//! download is checked against it before a byte is sent, and a file that no longer matches is answered
//! `409` (run a refresh `verify` to see what changed), never served as if it were the archived file. Range
//! requests are served unchecked (the client has the `ETag` to check the whole). A zip streams as it is
//! written ([`write_zip`]) and is cut off, never finished, at a file that no longer matches.

use std::io::{Read as _, Write};
use xnat_core::error::Error;
use xnat_core::model::digest::{Algorithm, Hasher};
use xnat_core::site::browse::{self, Bundle, FileRow};
use xnat_core::site::layout::Archive;
use xnat_core::site::uri::{Item, ResourceUri, Side};

use crate::context::Context;
use crate::formats::{self, Format, HttpError, Table};
use crate::listings::encode;
use crate::message::{Request, Response, ZipMember};
use crate::params::Params;

/// What a path asks for.
enum Wanted<'p> {
    Scans,
    Resources(Side),
    /// The files of one resource (its URI's segments).
    Files,
    /// One file of one resource.
    File(Vec<&'p str>),
    /// The files of an experiment's scans (`ALL` or a comma list), of one label or all.
    ScanFiles {
        selector: String,
        label: Option<String>,
    },
    /// Every file of an experiment: its own resources and its scans'.
    ExperimentFiles,
}

/// Answers a GET or HEAD of the archived data; `None` when the path is not one of these.
pub fn route(method: &str, req: &Request, params: &Params, ctx: &Context) -> Option<Result<Response, HttpError>> {
    if method != "GET" {
        return None;
    }
    let raw: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
    if !matches!(raw.first(), Some(&("data" | "REST"))) || raw.len() < 3 {
        return None;
    }
    let (prefix, wanted) = match parse(&raw) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => return None,
        Err(e) => return Some(Err(e)),
    };
    let uri = ResourceUri::parse(&format!("/{}", prefix.join("/"))).ok()?;
    // URIs in the tables: XNAT's `/data/...` form of this path (xnatpy takes `/data/archive/` apart).
    let listing = {
        let mut segs: Vec<&str> = raw.clone();
        segs[0] = "data";
        if segs.get(1) == Some(&"archive") {
            segs.remove(1);
        }
        format!("/{}", segs.join("/"))
    };
    let archive = Archive::new(&ctx.archive);
    let zip = params.value("format").is_some_and(|f| f.eq_ignore_ascii_case("zip"));
    let format = || Format::from_params(params, Format::Json);
    Some(match (uri, wanted) {
        (ResourceUri { item: Item::Experiment(e), resource: None }, Wanted::Scans) => (|| {
            // XNAT's scan URIs name the experiment by its accession ID, however it was asked for.
            let (dir, doc) = browse::experiment(&archive, &e)?;
            let base = match doc.id().filter(|id| !id.is_empty()) {
                Some(id) => format!("/data/experiments/{}/scans", encode(id)),
                None => format!("/data/projects/{}/experiments/{}/scans", encode(&dir.project), encode(&dir.label)),
            };
            Ok(scans_table(&browse::scans_of(&doc), &base).response(format()?, 200))
        })(),
        (ResourceUri { item, resource: None }, Wanted::Resources(side)) => {
            (|| Ok(resources_table(&archive, &item, side)?.response(format()?, 200)))()
        }
        (ResourceUri { item, resource: Some(r) }, wanted @ (Wanted::Files | Wanted::File(_))) => {
            let label = r.label?;
            (|| {
                let dir = browse::resource(&archive, &item, &label, r.side)?;
                let label = dir.label.clone();
                match wanted {
                    Wanted::File(name) => {
                        let name = decoded(&name)?;
                        download(req, ctx, &browse::file(&ctx.archive, &dir, &name)?)
                    }
                    _ if zip => zipped(ctx, &[browse::bundle(&archive, &item, dir)?], &label),
                    _ => {
                        Ok(files_table(&browse::files(&ctx.archive, &dir)?, &label, &listing).response(format()?, 200))
                    }
                }
            })()
        }
        (
            ResourceUri { item: Item::Experiment(e), resource: None },
            wanted @ (Wanted::ScanFiles { .. } | Wanted::ExperimentFiles),
        ) => (|| {
            let bundles = match &wanted {
                Wanted::ScanFiles { selector, label } => {
                    browse::experiment_bundles(&archive, &e, Some(selector), label.as_deref(), false)?
                }
                _ => browse::experiment_bundles(&archive, &e, Some("ALL"), None, true)?,
            };
            let name = bundles.first().map_or("files", |b| b.folder.split('/').next().unwrap_or("files"));
            if zip {
                return zipped(ctx, &bundles, name);
            }
            Ok(bundles_table(ctx, &bundles)?.response(format()?, 200))
        })(),
        _ => return None,
    })
}

/// The item's segments and what is asked of it; `None` for paths that are not the archived data's.
fn parse<'p>(raw: &[&'p str]) -> Result<Option<(Vec<&'p str>, Wanted<'p>)>, HttpError> {
    let n = raw.len();
    let files_at = raw
        .iter()
        .enumerate()
        .rev()
        .find(|&(i, s)| *s == "files" && i >= 2 && matches!(raw[i - 2], "resources" | "scans" | "experiments"))
        .map(|(i, _)| i);
    let Some(i) = files_at else {
        return Ok(match raw[n - 1] {
            "scans" => Some((raw[..n - 1].to_vec(), Wanted::Scans)),
            "resources" => Some(match raw[n - 2] {
                "in" => (raw[..n - 2].to_vec(), Wanted::Resources(Side::In)),
                "out" => (raw[..n - 2].to_vec(), Wanted::Resources(Side::Out)),
                _ => (raw[..n - 1].to_vec(), Wanted::Resources(Side::Unspecified)),
            }),
            _ => None,
        });
    };
    let several = |sel: &str| sel.eq_ignore_ascii_case("ALL") || sel.contains(',');
    Ok(Some(match raw[i - 2] {
        // …/scans/1,2/resources/DICOM/files: that label of several scans
        "resources" if i >= 4 && raw[i - 4] == "scans" && several(&decoded(&[raw[i - 3]])?) => {
            if i + 1 < n {
                return Ok(None);
            }
            let (selector, label) = (decoded(&[raw[i - 3]])?, decoded(&[raw[i - 1]])?);
            (raw[..i - 4].to_vec(), Wanted::ScanFiles { selector, label: Some(label) })
        }
        "resources" if i + 1 == n => (raw[..i].to_vec(), Wanted::Files),
        "resources" => (raw[..i].to_vec(), Wanted::File(raw[i + 1..].to_vec())),
        _ if i + 1 < n => return Ok(None),
        "scans" => (raw[..i - 2].to_vec(), Wanted::ScanFiles { selector: decoded(&[raw[i - 1]])?, label: None }),
        _ => (raw[..i].to_vec(), Wanted::ExperimentFiles),
    }))
}

/// The files of several resources, each row's URI naming its own resource.
fn bundles_table(ctx: &Context, bundles: &[Bundle]) -> Result<Table, HttpError> {
    let mut t = files_table(&[], "", "");
    for b in bundles {
        let listing = format!("/data{}/files", b.dir.uri.strip_prefix("/archive").unwrap_or(&b.dir.uri));
        let rows = files_table(&browse::files(&ctx.archive, &b.dir)?, &b.dir.label, &listing);
        t.rows.extend(rows.rows);
    }
    Ok(t)
}

/// A zip of the bundles' files, streamed as it is written (XNAT's folder layout inside).
fn zipped(ctx: &Context, bundles: &[Bundle], name: &str) -> Result<Response, HttpError> {
    let mut members = Vec::new();
    for b in bundles {
        for f in browse::files(&ctx.archive, &b.dir)? {
            members.push(ZipMember {
                name: format!("{}/{}", b.folder, f.name),
                path: ctx.archive.path(&f.path),
                size: f.size,
                digest: f.digest,
            });
        }
    }
    Ok(Response::zip(members)
        .with_header("content-disposition", &format!("attachment; filename=\"{}.zip\"", name.replace('"', "_"))))
}

fn scans_table(rows: &[browse::ScanRow], listing: &str) -> Table {
    let mut t =
        Table::new(&["xsiType", "xnat_imagescandata_id", "note", "series_description", "ID", "quality", "type", "URI"]);
    for s in rows {
        t.push(vec![
            s.xsi_type.clone(),
            s.id.clone(),
            s.note.clone(),
            s.series_description.clone(),
            s.id.clone(),
            s.quality.clone(),
            s.kind.clone(),
            format!("{listing}/{}", encode(&s.id)),
        ]);
    }
    t
}

/// XNAT's resource table. No `URI` column: xnatpy takes a row with a URI and no ID for a file.
fn resources_table(archive: &Archive, item: &Item, side: Side) -> Result<Table, HttpError> {
    let mut t = Table::new(&[
        "xnat_abstractresource_id",
        "label",
        "element_name",
        "category",
        "cat_id",
        "cat_desc",
        "file_count",
        "file_size",
        "tags",
        "content",
        "format",
    ]);
    let (category, cat_id) = match item {
        Item::Scan { scan, .. } => ("scans", scan.clone()),
        Item::Assessor { assessor, .. } => ("assessors", assessor.clone()),
        Item::Reconstruction { reconstruction, .. } => ("reconstructions", reconstruction.clone()),
        _ => ("resources", String::new()),
    };
    for r in browse::resources(archive, item, side)? {
        t.push(vec![
            browse::resource_id(&r.dir),
            r.dir.label,
            "xnat:resourceCatalog".into(),
            category.into(),
            cat_id.clone(),
            String::new(),
            r.file_count.to_string(),
            r.file_size.to_string(),
            String::new(),
            r.content,
            r.format,
        ]);
    }
    Ok(t)
}

fn files_table(rows: &[FileRow], label: &str, listing: &str) -> Table {
    let mut t = Table::new(&[
        "Name",
        "Size",
        "URI",
        "collection",
        "file_tags",
        "file_format",
        "file_content",
        "cat_ID",
        "digest",
    ]);
    for f in rows {
        let uri = format!("{listing}/{}", f.name.split('/').map(encode).collect::<Vec<_>>().join("/"));
        t.push(vec![
            f.name.clone(),
            f.size.to_string(),
            uri,
            label.into(),
            f.tags.join(","),
            f.format.clone(),
            f.content.clone(),
            label.into(),
            f.digest.clone(),
        ]);
    }
    t
}

/// Writes the members as one zip to `out`, each file's bytes read as they go (stored, not compressed: DICOM
/// hardly compresses, and the zip streams at the speed of the disk). Each member is checked against its
/// catalog digest as it is copied: a file whose bytes no longer match ends the zip there with an error
/// (the response is cut off, so no client takes the zip for a whole one).
pub fn write_zip(members: &[ZipMember], out: &mut dyn Write) -> std::io::Result<()> {
    let open = std::cell::Cell::new(true);
    let mut zip = zip::ZipWriter::new_stream(Gate { out, open: &open });
    let written = write_members(&mut zip, members);
    if written.is_err() {
        // The zip writer finishes the archive when dropped: closed, the directory it would write for the
        // members so far never reaches the client, and nothing passes for a whole zip.
        open.set(false);
    }
    written?;
    zip.finish().map_err(std::io::Error::other)?;
    Ok(())
}

/// A writer that refuses every write once closed.
struct Gate<'a, 'o> {
    out: &'a mut (dyn Write + 'o),
    open: &'a std::cell::Cell<bool>,
}

impl Write for Gate<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !self.open.get() {
            return Err(std::io::Error::other("the zip was cut off"));
        }
        self.out.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

fn write_members<W: Write>(
    zip: &mut zip::ZipWriter<zip::write::StreamWriter<W>>,
    members: &[ZipMember],
) -> std::io::Result<()> {
    use zip::write::SimpleFileOptions;
    let mut buf = vec![0u8; 64 * 1024];
    for m in members {
        let options = SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(m.size >= u32::MAX as u64);
        // A file removed since its catalog was read (a refresh or a merge at work) is left out: the zip holds
        // what is there, as a listing made a moment later would show it.
        let mut file = match std::fs::File::open(&m.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            opened => opened?,
        };
        zip.start_file(m.name.as_str(), options).map_err(std::io::Error::other)?;
        let mut check = Check::of(&m.digest);
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            check.update(&buf[..n]);
            zip.write_all(&buf[..n])?;
        }
        if let Some(actual) = check.finish()
            && !actual.eq_ignore_ascii_case(&m.digest)
        {
            return Err(std::io::Error::other(format!(
                "{} no longer matches its catalog digest ({} expected, {actual} read); the zip was cut off here",
                m.name, m.digest
            )));
        }
    }
    Ok(())
}

/// A digest computed while a file is copied, by the algorithm of its stored digest.
enum Check {
    None,
    Md5(md5::Md5),
    Sha256(sha2::Sha256),
}

impl Check {
    fn of(stored: &str) -> Check {
        use sha2::Digest as _;
        match Algorithm::of_stored(stored) {
            Some(Algorithm::Md5) => Check::Md5(md5::Md5::new()),
            Some(Algorithm::Sha256) => Check::Sha256(sha2::Sha256::new()),
            None => Check::None,
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        use sha2::Digest as _;
        match self {
            Check::None => {}
            Check::Md5(h) => h.update(bytes),
            Check::Sha256(h) => h.update(bytes),
        }
    }

    fn finish(self) -> Option<String> {
        use sha2::Digest as _;
        match self {
            Check::None => None,
            Check::Md5(h) => Some(hex::encode(h.finalize())),
            Check::Sha256(h) => Some(hex::encode(h.finalize())),
        }
    }
}

/// The path below `…/files/`, percent-decoded segment by segment.
fn decoded(segments: &[&str]) -> Result<String, HttpError> {
    let mut out = Vec::new();
    for s in segments {
        let d = percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map_err(|_| HttpError::bad_request(&format!("the path segment {s:?} is not UTF-8 once decoded")))?;
        out.push(d.into_owned());
    }
    Ok(out.join("/"))
}

/// One file: whole (checked against its catalog digest first), or the one byte range asked for.
fn download(req: &Request, ctx: &Context, f: &FileRow) -> Result<Response, HttpError> {
    let etag = (!f.digest.is_empty()).then(|| format!("\"{}\"", f.digest));
    let with_tags = |r: Response| {
        let r = r.with_header("accept-ranges", "bytes");
        match &etag {
            Some(tag) => r.with_header("etag", tag),
            None => r,
        }
    };
    if let Some(tag) = &etag
        && req
            .headers
            .get("if-none-match")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == tag))
    {
        return Ok(with_tags(Response::new(304, formats::BINARY, Vec::new())));
    }
    let path = ctx.archive.path(&f.path);
    let range = req.headers.get("range").and_then(|v| v.to_str().ok());
    if let Some(spec) = range {
        match byte_range(spec, f.size) {
            Some(Ok((start, len))) => {
                let end = start + len - 1;
                let r = Response::file_part(formats::BINARY, path, start, len)
                    .with_header("content-range", &format!("bytes {start}-{end}/{}", f.size));
                return Ok(with_tags(r));
            }
            Some(Err(())) => {
                return Err(HttpError::new(
                    416,
                    "range-not-satisfiable",
                    &format!("{spec} is not a range of this file of {} bytes", f.size),
                )
                .with_header("content-range", &format!("bytes */{}", f.size)));
            }
            None => {} // not one byte range: the whole file, as RFC 9110 allows
        }
    }
    if req.method != "HEAD"
        && let Some(alg) = Algorithm::of_stored(&f.digest)
    {
        let actual = Hasher::default().file(&ctx.archive, &f.path, alg, &mut |_| {})?;
        if !actual.eq_ignore_ascii_case(&f.digest) {
            return Err(HttpError::from(Error::Conflict(format!(
                "{} no longer matches its catalog (digest {}, the file's bytes now {actual}); it was not sent — run \
                 the refresh with verify on its resource to see what changed, and restore the file or refresh the catalog",
                f.name, f.digest
            ))));
        }
    }
    Ok(with_tags(Response::file(formats::BINARY, path, f.size)))
}

/// The one byte range of `spec` (`bytes=A-B`, `bytes=A-`, `bytes=-N`) within `size` bytes, as (start, length):
/// `None` when `spec` is not one byte range (then the whole file is sent), `Err` when it lies outside.
fn byte_range(spec: &str, size: u64) -> Option<Result<(u64, u64), ()>> {
    let ranges = spec.trim().strip_prefix("bytes=")?;
    if ranges.contains(',') {
        return None;
    }
    let (a, b) = ranges.trim().split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let parsed = |s: &str| s.parse::<u64>().ok();
    let (start, end) = match (a.is_empty(), b.is_empty()) {
        (true, false) => {
            let n = parsed(b)?;
            if n == 0 {
                return Some(Err(()));
            }
            (size.saturating_sub(n), size.checked_sub(1)?)
        }
        (false, true) => (parsed(a)?, size.saturating_sub(1)),
        (false, false) => {
            let (s, e) = (parsed(a)?, parsed(b)?);
            if e < s {
                return None;
            }
            (s, e.min(size.saturating_sub(1)))
        }
        (true, true) => return None,
    };
    if size == 0 || start >= size {
        return Some(Err(()));
    }
    Some(Ok((start, end - start + 1)))
}

#[cfg(test)]
mod tests {
    use super::byte_range;

    #[test]
    fn byte_ranges() {
        assert_eq!(byte_range("bytes=0-9", 100), Some(Ok((0, 10))));
        assert_eq!(byte_range("bytes=90-", 100), Some(Ok((90, 10))));
        assert_eq!(byte_range("bytes=-5", 100), Some(Ok((95, 5))));
        assert_eq!(byte_range("bytes=-500", 100), Some(Ok((0, 100))));
        assert_eq!(byte_range("bytes=50-500", 100), Some(Ok((50, 50))));
        assert_eq!(byte_range("bytes=100-", 100), Some(Err(())));
        assert_eq!(byte_range("bytes=-0", 100), Some(Err(())));
        assert_eq!(byte_range("bytes=0-0", 0), Some(Err(())));
        assert_eq!(byte_range("bytes=0-1,5-6", 100), None);
        assert_eq!(byte_range("bytes=9-3", 100), None);
        assert_eq!(byte_range("items=0-9", 100), None);
        assert_eq!(byte_range("bytes=x-9", 100), None);
    }
}
