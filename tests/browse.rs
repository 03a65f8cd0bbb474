//! The archived data over REST through `xnat-archive serve` (issue 12): after archiving a generated
//! session, its scans, resources and files are listed as XNAT lists them, every file downloads byte for
//! byte as it was in the prearchive (whole, by range, in zips of a resource, of chosen scans and of the
//! experiment), a file that changed under its catalog is refused, and a 2 GiB experiment zips under a
//! 64 MiB memory cap.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;

mod common;

use common::http::basic;
use common::server::{Server, TenantSpec};
use xnat_archive::generator::{self, Modality, SessionSpec};

const PASSWORD: &str = "browse-pw-1";

struct Client {
    server: Server,
    agent: ureq::Agent,
    auth: String,
}

impl Client {
    fn start(dir: &Path, extra: &'static str) -> Client {
        let config = common::server::configure(dir, &[TenantSpec::with("A", extra)], PASSWORD);
        let server = Server::start(&["--config", config.to_str().unwrap()]);
        let agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        Client { server, agent, auth: basic("admin", PASSWORD) }
    }

    /// `GET path` of the tenant, with credentials and `header`: the answer as it arrives (body unread).
    fn call(&self, path: &str, header: Option<(&str, &str)>) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let mut req = self.agent.get(self.server.url(&format!("/A{path}"))).header("Authorization", &self.auth);
        if let Some((name, value)) = header {
            req = req.header(name, value);
        }
        req.call()
    }

    /// (status, headers we look at, body).
    fn get_with(&self, path: &str, header: Option<(&str, &str)>) -> (u16, BTreeMap<String, String>, Vec<u8>) {
        let mut response = self.call(path, header).expect("an answer");
        let status = response.status().as_u16();
        let headers = ["content-length", "content-range", "etag", "content-type", "accept-ranges"]
            .iter()
            .filter_map(|h| Some((h.to_string(), response.headers().get(*h)?.to_str().ok()?.to_string())))
            .collect();
        let body = response.body_mut().with_config().limit(1 << 30).read_to_vec().unwrap();
        (status, headers, body)
    }

    fn get(&self, path: &str) -> Vec<u8> {
        let (status, _, body) = self.get_with(path, None);
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
        body
    }

    fn rows(&self, path: &str) -> Vec<serde_json::Value> {
        let json: serde_json::Value = serde_json::from_slice(&self.get(path)).unwrap();
        json["ResultSet"]["Result"].as_array().unwrap_or_else(|| panic!("{path}: {json}")).clone()
    }

    fn post(&self, path: &str) -> (u16, String) {
        let mut response = self
            .agent
            .post(self.server.url(&format!("/A{path}")))
            .header("Authorization", &self.auth)
            .send_empty()
            .expect("an answer");
        (response.status().as_u16(), response.body_mut().read_to_string().unwrap_or_default())
    }

    /// Archives the generated session `folder` of project DEMO; its prearchive files (path below the
    /// session folder → bytes) as they were, and the experiment's URI.
    fn archive(&self, dir: &Path, folder: &str) -> (BTreeMap<String, Vec<u8>>, String) {
        let row = self
            .rows("/data/prearchive/projects/DEMO?format=json")
            .into_iter()
            .find(|r| r["folderName"] == folder)
            .unwrap_or_else(|| panic!("no session {folder}"));
        let url = row["url"].as_str().unwrap().to_string();
        let session = dir.join("A/prearchive").join(url.trim_start_matches("/prearchive/projects/"));
        let mut before = BTreeMap::new();
        collect(&session, "", &mut before);
        let (status, answer) = self.post(&format!("/data/services/archive?src={url}"));
        assert_eq!(status, 200, "{answer}");
        (before, answer.trim().to_string())
    }
}

/// Every file below `dir` (path relative to it → bytes).
fn collect(dir: &Path, prefix: &str, out: &mut BTreeMap<String, Vec<u8>>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let rel = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
        if entry.file_type().unwrap().is_dir() {
            collect(&entry.path(), &rel, out);
        } else {
            out.insert(rel, std::fs::read(entry.path()).unwrap());
        }
    }
}

fn unzip(bytes: Vec<u8>) -> BTreeMap<String, Vec<u8>> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a whole zip");
    (0..zip.len())
        .map(|i| {
            let mut f = zip.by_index(i).unwrap();
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes).unwrap();
            (f.name().unwrap().to_string(), bytes)
        })
        .collect()
}

#[test]
fn archived_scans_resources_and_files_list_and_download_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let c = Client::start(dir.path(), "");
    let (before, uri) = c.archive(dir.path(), "SUBJ1_MR1");
    assert!(uri.starts_with("/data/archive/projects/DEMO/subjects/"), "{uri}");
    let exp = uri.trim_start_matches("/data/archive");
    let experiment = &c.rows("/data/projects/DEMO/experiments?format=json")[0];
    let id = experiment["ID"].as_str().unwrap().to_string();
    let label = experiment["label"].as_str().unwrap().to_string();

    let scans = c.rows(&format!("/data/experiments/{id}/scans?format=json"));
    assert_eq!(scans, c.rows(&format!("{uri}/scans?format=json")), "by ID and by label, with /archive");
    assert!(!scans.is_empty());
    let mut zipped_by_hand = BTreeMap::new();
    for scan in &scans {
        let sid = scan["ID"].as_str().unwrap();
        assert!(scan["xsiType"].as_str().unwrap().starts_with("xnat:"), "{scan}");
        let resources = c.rows(&format!("/data{exp}/scans/{sid}/resources?format=json"));
        for r in &resources {
            let rlabel = r["label"].as_str().unwrap();
            let files = c.rows(&format!("/data/experiments/{id}/scans/{sid}/resources/{rlabel}/files?format=json"));
            assert_eq!(r["file_count"].as_str(), Some(files.len().to_string().as_str()), "{r}");
            assert!(!files.is_empty());
            for f in &files {
                let name = f["Name"].as_str().unwrap();
                let uri = f["URI"].as_str().unwrap();
                assert!(uri.starts_with("/data/experiments/") && uri.contains("/files/"), "{uri}");
                let (status, headers, body) = c.get_with(uri, None);
                assert_eq!(status, 200, "{uri}");
                let original = &before[&format!("SCANS/{sid}/{rlabel}/{name}")];
                assert_eq!(&body, original, "{uri}: byte for byte what the prearchive held");
                assert_eq!(headers["content-length"], original.len().to_string());
                assert_eq!(f["Size"].as_str(), Some(original.len().to_string().as_str()));
                let kind = folder_safe(scan["type"].as_str().unwrap());
                zipped_by_hand.insert(format!("{label}/scans/{sid}-{kind}/resources/{rlabel}/files/{name}"), body);
            }
            // One resource as a zip: its own files, XNAT's folders.
            let zip = unzip(c.get(&format!("/data{exp}/scans/{sid}/resources/{rlabel}/files?format=zip")));
            assert_eq!(zip.len(), files.len());
            assert!(zip.iter().all(|(k, v)| zipped_by_hand.get(k) == Some(v)), "{:?}", zip.keys());
        }
    }
    // Every scan, by ALL and by a list; the whole experiment (no experiment resources here).
    let all_ids: Vec<&str> = scans.iter().map(|s| s["ID"].as_str().unwrap()).collect();
    for path in [
        format!("/data/experiments/{id}/scans/ALL/files?format=zip"),
        format!("{uri}/scans/{}/files?format=zip", all_ids.join(",")),
        format!("/data/experiments/{id}/files?format=zip"),
    ] {
        assert_eq!(unzip(c.get(&path)), zipped_by_hand, "{path}");
    }
    let listed = c.rows(&format!("/data/experiments/{id}/scans/ALL/files?format=json"));
    assert_eq!(listed.len(), zipped_by_hand.len());

    // A range, the catalog digest as ETag once a refresh computed it, and a file changed under its catalog.
    let (status, _) =
        c.post(&format!("/data/services/refresh/catalog?resource=/archive/experiments/{id}&options=checksum"));
    assert_eq!(status, 200);
    let sid = all_ids[0];
    let files = c.rows(&format!("/data/experiments/{id}/scans/{sid}/resources/DICOM/files?format=json"));
    let file_uri = files[0]["URI"].as_str().unwrap();
    let (status, headers, part) = c.get_with(file_uri, Some(("Range", "bytes=4-131")));
    assert_eq!(status, 206);
    let whole = c.get(file_uri);
    assert_eq!(part, whole[4..132]);
    assert_eq!(headers["content-range"], format!("bytes 4-131/{}", whole.len()));
    let digest = files[0]["digest"].as_str().unwrap();
    assert_eq!(digest, format!("{:x}", <md5::Md5 as md5::Digest>::digest(&whole)));
    assert_eq!(headers["etag"], format!("\"{digest}\""));
    let path = find(&dir.path().join("A/archive/DEMO"), files[0]["Name"].as_str().unwrap()).expect("in the archive");
    let mut changed = whole.clone();
    changed[0] ^= 0x55;
    std::fs::write(&path, &changed).unwrap();
    let (status, _, body) = c.get_with(file_uri, None);
    assert_eq!(status, 409, "{}", String::from_utf8_lossy(&body));
    // The zip that holds it is cut off: no client can take it for a whole one.
    let cut = c
        .call(&format!("/data/experiments/{id}/scans/ALL/files?format=zip"), None)
        .and_then(|mut r| r.body_mut().with_config().limit(1 << 30).read_to_vec());
    assert!(cut.map_or(true, |bytes| zip::ZipArchive::new(std::io::Cursor::new(bytes)).is_err()));
    std::fs::write(&path, &whole).unwrap();
    assert_eq!(c.get(file_uri), whole);
}

/// The first file named `name` below `dir`.
fn find(dir: &Path, name: &str) -> Option<std::path::PathBuf> {
    for entry in std::fs::read_dir(dir).ok()? {
        let entry = entry.ok()?;
        if entry.file_type().ok()?.is_dir() {
            if let Some(found) = find(&entry.path(), name) {
                return Some(found);
            }
        } else if entry.file_name() == name {
            return Some(entry.path());
        }
    }
    None
}

fn folder_safe(kind: &str) -> String {
    kind.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

#[test]
fn a_two_gib_experiment_zips_as_it_streams_under_a_64_mib_cap() {
    let dir = tempfile::tempdir().unwrap();
    let c = Client::start(dir.path(), "memory_mib = 64");
    let (_, uri) = c.archive(dir.path(), "SUBJ2_MR1");
    let experiment = &c.rows("/data/projects/DEMO/experiments?format=json")[0];
    let id = experiment["ID"].as_str().unwrap().to_string();
    let scan = c.rows(&format!("/data/experiments/{id}/scans?format=json"))[0]["ID"].as_str().unwrap().to_string();
    // Two files of 1 GiB (sparse: no disk is written) join the scan's DICOM resource through a refresh.
    let dicom = find_dir(&dir.path().join("A/archive/DEMO"), &format!("SCANS/{scan}/DICOM")).expect("the scan folder");
    const GIB: u64 = 1 << 30;
    for n in ["big-1.bin", "big-2.bin"] {
        std::fs::File::create(dicom.join(n)).unwrap().set_len(GIB).unwrap();
    }
    let resource = format!("{}/scans/{scan}/resources/DICOM", uri.trim_start_matches("/data"));
    let (status, answer) = c.post(&format!("/data/services/refresh/catalog?resource={resource}&options=append"));
    assert_eq!(status, 200, "{answer}");

    let mut response = c.call(&format!("/data/experiments/{id}/scans/ALL/files?format=zip"), None).expect("an answer");
    assert_eq!(response.status().as_u16(), 200);
    let mut reader = response.body_mut().with_config().limit(u64::MAX).reader();
    let (mut total, mut tail, mut buf) = (0u64, Vec::new(), vec![0u8; 1 << 20]);
    loop {
        let n = reader.read(&mut buf).expect("the zip streams to its end");
        if n == 0 {
            break;
        }
        total += n as u64;
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > 1 << 16 {
            tail.drain(..tail.len() - (1 << 16));
        }
    }
    assert!(total > 2 * GIB, "{total} bytes");
    // The end of central directory record closes the stream (the zip is whole).
    assert!(tail.windows(4).any(|w| w == b"PK\x05\x06"), "no end of central directory");
    let log = c.server.log();
    assert!(!log.contains("memory"), "{log}");
}

/// The folder ending in `suffix` below `dir`.
fn find_dir(dir: &Path, suffix: &str) -> Option<std::path::PathBuf> {
    if dir.to_str()?.ends_with(suffix) {
        return Some(dir.to_path_buf());
    }
    for entry in std::fs::read_dir(dir).ok()? {
        let entry = entry.ok()?;
        if entry.file_type().ok()?.is_dir()
            && let Some(found) = find_dir(&entry.path(), suffix)
        {
            return Some(found);
        }
    }
    None
}

#[test]
fn refresh_verify_and_dry_run_over_http_report_and_leave_the_archive_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let c = Client::start(dir.path(), "");
    let (_, uri) = c.archive(dir.path(), "SUBJ1_MR1");
    let resource = uri.trim_start_matches("/data");
    let archive = dir.path().join("A/archive");
    // A file changed behind the catalog's back, once the catalog knows its checksum.
    let (status, _) = c.post(&format!("/data/services/refresh/catalog?resource={resource}&options=checksum"));
    assert_eq!(status, 200);
    let some = find_dir(&archive, "DICOM").unwrap();
    let file = std::fs::read_dir(&some)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "dcm"))
        .unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[200] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();
    std::fs::write(some.join("late.dcm"), b"arrived after the archive").unwrap();
    let before = common::snapshot(&archive);
    for query in ["mode=verify", "verify=true", "options=append,checksum&mode=dry-run", "options=append&dryRun=true"] {
        let (status, body) = c.post(&format!("/data/services/refresh/catalog?resource={resource}&{query}"));
        assert_eq!(status, 200, "{query}: {body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        let reports = json["reports"].as_array().unwrap();
        let differing: Vec<&serde_json::Value> =
            reports.iter().filter(|r| !r["added"].as_array().unwrap().is_empty()).collect();
        assert_eq!(differing.len(), 1, "{query}: {body}");
        assert_eq!(differing[0]["added"], serde_json::json!(["late.dcm"]));
        if query.contains("verify") {
            let name = file.file_name().unwrap().to_str().unwrap();
            assert!(reports.iter().any(|r| r["mismatches"].as_array().unwrap().iter().any(|m| m["path"] == name)));
        }
        assert!(reports.iter().all(|r| r["outcome"]["status"] != "written"), "{body}");
        assert_eq!(common::snapshot(&archive), before, "{query} changed the archive");
    }
}

#[test]
fn reading_while_a_refresh_rewrites_the_catalogs_sees_whole_states_and_never_fails() {
    let dir = tempfile::tempdir().unwrap();
    let c = std::sync::Arc::new(Client::start(dir.path(), "max_concurrent = 8"));
    let (_, uri) = c.archive(dir.path(), "SUBJ1_MR1");
    let id = c.rows("/data/projects/DEMO/experiments?format=json")[0]["ID"].as_str().unwrap().to_string();
    let scan = c.rows(&format!("/data/experiments/{id}/scans?format=json"))[0]["ID"].as_str().unwrap().to_string();
    let dicom = find_dir(&dir.path().join("A/archive/DEMO"), &format!("SCANS/{scan}/DICOM")).unwrap();
    let files = format!("/data/experiments/{id}/scans/{scan}/resources/DICOM/files");
    let n = c.rows(&format!("{files}?format=json")).len();
    let resource = format!("{}/scans/{scan}/resources/DICOM", uri.trim_start_matches("/data"));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The writer: a file comes and goes, and each time a refresh (checksum, append, delete) rewrites the catalog.
    // Each file that comes has a name of its own: a zip made from a catalog read two rounds earlier would
    // rightly be cut off at a file of the same name and other content (it no longer matches its digest).
    let writer = {
        let (c, stop, resource) = (c.clone(), stop.clone(), resource.clone());
        std::thread::spawn(move || {
            let mut rounds = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || rounds < 4 {
                let extra = dicom.join(format!("extra{}.dcm", rounds / 2));
                if rounds % 2 == 0 {
                    std::fs::write(&extra, format!("round {rounds}")).unwrap();
                } else {
                    std::fs::remove_file(&extra).unwrap();
                }
                let q = format!("/data/services/refresh/catalog?resource={resource}&options=checksum,append,delete");
                let (status, body) = c.post(&q);
                assert_eq!(status, 200, "{body}");
                rounds += 1;
            }
            rounds
        })
    };
    let started = std::time::Instant::now();
    let mut reads = 0;
    while started.elapsed() < std::time::Duration::from_secs(4) {
        let (status, _, body) = c.get_with(&format!("{files}?format=json"), None);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let json: serde_json::Value = serde_json::from_slice(&body).expect("a whole listing");
        let count = json["ResultSet"]["Result"].as_array().unwrap().len();
        assert!(count == n || count == n + 1, "{count} files: a catalog seen half-written?");
        let (status, _, zipped) = c.get_with(&format!("{files}?format=zip"), None);
        assert_eq!(status, 200);
        let zip = unzip(zipped);
        assert!(zip.len() == n || zip.len() == n + 1, "{} files zipped", zip.len());
        reads += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds = writer.join().unwrap();
    assert!(reads > 3 && rounds >= 4, "{reads} reads against {rounds} refreshes");
}

#[test]
fn the_library_component_offers_the_same_reads_to_a_rust_host_under_a_read_only_grant() {
    use xnat_archive::{Error, Grant, Limits, Runtime};
    let dir = tempfile::tempdir().unwrap();
    let (pre, arc) = (dir.path().join("prearchive"), dir.path().join("archive"));
    std::fs::create_dir_all(&pre).unwrap();
    std::fs::create_dir_all(&arc).unwrap();
    xnat_archive::generator::write_site(&pre, &arc).unwrap();
    let (runtime, limits) = (Runtime::new().unwrap(), Limits::default());
    let rows = runtime.prearchive_list(&[Grant::prearchive(&pre, false)], &limits, Some("DEMO")).unwrap().unwrap();
    let src = rows.iter().find(|r| r.folder_name == "SUBJ2_MR1").unwrap().url.clone();
    let (p, a) = (pre.to_str().unwrap(), arc.to_str().unwrap());
    let (code, json) = common::cli_json(&["archive", "--prearchive", p, "--archive", a, "--src", &src]);
    assert_eq!(code, 0, "{json}");
    let read_only = [Grant::archive(&arc, false)];
    let before = common::snapshot(&arc);
    let experiment = "/archive/projects/DEMO/subjects/SUBJ2/experiments/SUBJ2_MR1";
    let scans = runtime.archived_scans(&read_only, &limits, experiment).unwrap().unwrap();
    assert!(!scans.is_empty() && scans.iter().all(|s| s.xsi_type.starts_with("xnat:")), "{scans:?}");
    let mut read = 0;
    for scan in &scans {
        let item = format!("{experiment}/scans/{}", scan.id);
        for r in runtime.archived_resources(&read_only, &limits, &item).unwrap().unwrap() {
            let by_id = format!("{item}/resources/{}", r.id);
            let files = runtime.archived_files(&read_only, &limits, &by_id).unwrap().unwrap();
            assert_eq!(files.len() as u64, r.file_count);
            let folder = find_dir(&arc.join("DEMO"), &format!("SUBJ2_MR1/SCANS/{}/{}", scan.id, r.label)).unwrap();
            for f in files {
                let mut bytes = Vec::new();
                loop {
                    let part = runtime
                        .archived_read_file(&read_only, &limits, &r.uri, &f.name, bytes.len() as u64, 1000)
                        .unwrap()
                        .unwrap();
                    if part.is_empty() {
                        break;
                    }
                    bytes.extend(part);
                }
                assert_eq!(bytes, std::fs::read(folder.join(&f.name)).unwrap(), "{}", f.name);
                read += 1;
            }
        }
    }
    assert!(read > 0);
    let missing =
        runtime.archived_read_file(&read_only, &limits, &format!("{experiment}/scans/1/resources/DICOM"), "x", 0, 10);
    assert!(matches!(missing.unwrap(), Err(Error::NotFound(_))));
    assert_eq!(common::snapshot(&arc), before, "reading changed nothing");
}

/// A session of experiment `base`'s series holding instances `from..=to` only (the generator writes
/// 1..=to; the others are dropped with their catalog entries).
fn more_instances(pre: &Path, base: &SessionSpec, seed: u64, from: usize, to: usize) -> String {
    let mut more = SessionSpec::new(Some("DEMO"), &base.folder, Modality::Mr, seed);
    more.label = base.label.clone();
    more.subject = base.subject.clone();
    more.study_uid = base.study_uid.clone();
    more.scans = base.scans.clone();
    more.scans[0].files = to;
    generator::write_session(pre, &more).unwrap();
    let cat_path = more.session_dir(pre).join(SessionSpec::catalog_uri(&more.scans[0]));
    let mut cat = xnat_core::model::catalog::Catalog::parse(&std::fs::read(&cat_path).unwrap()).unwrap();
    let dropped: std::collections::HashSet<String> =
        (1..from).map(|i| generator::file_name(&more, &more.scans[0], i)).collect();
    let locs: Vec<_> = cat.entry_locs().into_iter().filter(|l| dropped.contains(cat.entry(l).uri().unwrap())).collect();
    cat.remove_entries(&locs);
    std::fs::write(&cat_path, cat.to_xml()).unwrap();
    for name in &dropped {
        std::fs::remove_file(cat_path.parent().unwrap().join(name)).unwrap();
    }
    format!("/prearchive/projects/DEMO/{}/{}", more.timestamp, more.folder)
}

#[test]
fn reading_while_archives_merge_into_the_experiment_sees_whole_states() {
    let dir = tempfile::tempdir().unwrap();
    let c = std::sync::Arc::new(Client::start(dir.path(), "max_concurrent = 8"));
    let pre = dir.path().join("A/prearchive");
    const N: usize = 20;
    let mut base = SessionSpec::new(Some("DEMO"), "MERGE_MR1", Modality::Mr, 7001);
    base.scans.truncate(1);
    base.scans[0].files = N;
    generator::write_session(&pre, &base).unwrap();
    let (status, uri) =
        c.post(&format!("/data/services/archive?src=/prearchive/projects/DEMO/{}/MERGE_MR1", base.timestamp));
    assert_eq!(status, 200, "{uri}");
    let sources: Vec<String> =
        (1..=3).map(|k| more_instances(&pre, &base, 7001 + k as u64, k * N + 1, (k + 1) * N)).collect();
    let files = format!("{}/scans/{}/resources/DICOM/files", uri.trim(), base.scans[0].id);
    let files = files.replacen("/data/archive", "/data", 1);
    // The writer: three sessions merge into the experiment, one after another (overwrite=append).
    let writer = {
        let c = c.clone();
        std::thread::spawn(move || {
            for src in sources {
                std::thread::sleep(std::time::Duration::from_millis(300));
                let (status, body) = c.post(&format!("/data/services/archive?src={src}&overwrite=append"));
                assert_eq!(status, 200, "{body}");
            }
        })
    };
    let mut seen = Vec::new();
    while !writer.is_finished() {
        let (status, _, body) = c.get_with(&format!("{files}?format=json"), None);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let json: serde_json::Value = serde_json::from_slice(&body).expect("a whole listing");
        let count = json["ResultSet"]["Result"].as_array().unwrap().len();
        let (status, _, zipped) = c.get_with(&format!("{files}?format=zip"), None);
        assert_eq!(status, 200);
        let zipped = unzip(zipped).len();
        for n in [count, zipped] {
            assert!(n % N == 0 && n >= N, "{n} files: a merge seen half-done?");
        }
        seen.push(count);
    }
    writer.join().unwrap();
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "never back to an older state: {seen:?}");
    let mut states = seen.clone();
    states.dedup();
    assert!(states.len() >= 2, "the reads ran while the merges did: {seen:?}");
    assert_eq!(c.rows(&format!("{files}?format=json")).len(), 4 * N);
}
