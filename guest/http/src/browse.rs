//! The archived data over XNAT's REST API: an experiment's scans, an item's resources, a resource's files
//! (tables in `format=json|csv|xml`, with XNAT's column names) and one file's bytes.
//!
//! ```text
//! GET /data[/archive]/experiments/ID/scans                                  scans
//! GET /data[/archive]/projects/P[/subjects/S]/experiments/E/scans           (E: label or ID)
//! GET …/experiments/E[/scans/N|/assessors/A[/in|/out]|/reconstructions/R[/in|/out]]/resources
//! GET /data[/archive]/projects/P[/subjects/S]/resources
//! GET …/resources/R/files                                                  files of a resource (R: label)
//! GET …/resources/R/files/PATH                                             one file (HEAD, Range, ETag)
//! ```
//!
//! A resource's ID (`xnat_abstractresource_id`, which XNAT numbers in its database) is its label here, so the
//! URIs clients build from it (`…/resources/DICOM/files`) resolve. Downloads: only files the resource's catalog
//! lists; the `ETag` is the catalog's digest; a whole-file download is checked against that digest before
//! a byte is sent, and a file that no longer matches is answered `409` (run a refresh `verify` to see what
//! changed), never served as if it were the archived file. Range requests are served unchecked (the client
//! has the `ETag` to check the whole).

use xnat_core::error::Error;
use xnat_core::model::digest::{Algorithm, Hasher};
use xnat_core::site::browse::{self, FileRow};
use xnat_core::site::layout::Archive;
use xnat_core::site::uri::{Item, ResourceUri, Side};

use crate::context::Context;
use crate::formats::{self, Format, HttpError, Table};
use crate::listings::encode;
use crate::message::{Request, Response};
use crate::params::Params;

/// What a path asks for.
enum Wanted<'p> {
    Scans,
    Resources(Side),
    Files,
    File(Vec<&'p str>),
}

/// Answers a GET or HEAD of the archived data; `None` when the path is not one of these.
pub fn route(method: &str, req: &Request, params: &Params, ctx: &Context) -> Option<Result<Response, HttpError>> {
    let raw: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
    if !matches!(raw.first(), Some(&("data" | "REST"))) || raw.len() < 3 {
        return None;
    }
    let n = raw.len();
    let files_at = raw.iter().enumerate().rev().find(|&(i, s)| *s == "files" && i >= 2 && raw[i - 2] == "resources");
    let (prefix, wanted) = match (raw[n - 1], files_at) {
        (_, Some((i, _))) if i == n - 1 => (&raw[..i], Wanted::Files),
        (_, Some((i, _))) => (&raw[..i], Wanted::File(raw[i + 1..].to_vec())),
        ("scans", None) => (&raw[..n - 1], Wanted::Scans),
        ("resources", None) => match raw[n - 2] {
            "in" => (&raw[..n - 2], Wanted::Resources(Side::In)),
            "out" => (&raw[..n - 2], Wanted::Resources(Side::Out)),
            _ => (&raw[..n - 1], Wanted::Resources(Side::Unspecified)),
        },
        _ => return None,
    };
    if method != "GET" {
        return None;
    }
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
    let format = || Format::from_params(params, Format::Json);
    Some(match (uri, wanted) {
        (ResourceUri { item: Item::Experiment(e), resource: None }, Wanted::Scans) => {
            (|| Ok(scans_table(&browse::scans(&archive, &e)?, &listing).response(format()?, 200)))()
        }
        (ResourceUri { item, resource: None }, Wanted::Resources(side)) => {
            (|| Ok(resources_table(&archive, &item, side)?.response(format()?, 200)))()
        }
        (ResourceUri { item, resource: Some(r) }, wanted @ (Wanted::Files | Wanted::File(_))) => {
            let label = r.label?;
            (|| {
                let dir = browse::resource(&archive, &item, &label, r.side)?;
                match wanted {
                    Wanted::File(name) => {
                        let name = decoded(&name)?;
                        download(req, ctx, &browse::file(&ctx.archive, &dir, &name)?)
                    }
                    _ => {
                        Ok(files_table(&browse::files(&ctx.archive, &dir)?, &label, &listing).response(format()?, 200))
                    }
                }
            })()
        }
        _ => return None,
    })
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
            r.dir.label.clone(),
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
            String::new(),
            f.format.clone(),
            f.content.clone(),
            label.into(),
            f.digest.clone(),
        ]);
    }
    t
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
