//! End to end: catalog refresh and resource creation through the real `xnat-archive` host and the real
//! component, on archive trees built from real XNAT catalogs (`tests/fixtures/`).

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

const DEBUG_RES: &str = "P/arc001/E1/RESOURCES/DEBUG_OUTPUT";
const DEBUG_URI: &str = "/data/archive/projects/P/subjects/S1/experiments/E1/resources/DEBUG_OUTPUT";
const SCAN_RES: &str = "P/arc001/E1/SCANS/4/DICOM";
const SCAN_URI: &str = "/archive/experiments/XNAT_E00001/scans/4/resources/DICOM";

/// The files the tests delete from the materialised DEBUG_OUTPUT resource.
const REMOVED: [&str; 4] = [
    "out.txt",
    "wrapup-command-was-here/testTree.txt",
    "LEVEL0.da3c96f78155.1/L5D4/L4F2",
    "LEVEL0.9a57d981d92d.1/L5D1/L4D4/L3D4/L2D4/L1D3/L0F2",
];
/// The files the tests add (catalogued by append).
const ADDED: [&str; 5] = [".cache/x.bin", ".hidden", "new dir/deep/new file.txt", "with space.txt", "ünïcødé-名前.txt"];

struct Site {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Site {
    fn arg(&self) -> &str {
        self.root.to_str().unwrap()
    }
    fn res(&self) -> PathBuf {
        self.root.join(DEBUG_RES)
    }
    fn catalog(&self) -> PathBuf {
        self.res().join("DEBUG_OUTPUT_catalog.xml")
    }
}

/// An archive with project P, subject S1 and experiment E1 (documents as we keep them), holding the
/// DEBUG_OUTPUT resource on disk, changed as `REMOVED` and `ADDED` say.
fn debug_site() -> Site {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("archive");
    fs::create_dir_all(root.join("P/subjects")).unwrap();
    fs::write(
        root.join("P/subjects/S1.xml"),
        r#"<xnat:Subject xmlns:xnat="http://nrg.wustl.edu/xnat" ID="XNAT_S00001" project="P" label="S1"/>"#,
    )
    .unwrap();
    fs::create_dir_all(root.join("P/arc001/E1")).unwrap();
    fs::write(
        root.join("P/arc001/E1.xml"),
        r#"<?xml version="1.0" encoding="UTF-8"?>
<xnat:MRSession xmlns:xnat="http://nrg.wustl.edu/xnat" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ID="XNAT_E00001" project="P" label="E1">
	<xnat:resources>
		<xnat:resource label="DEBUG_OUTPUT" URI="RESOURCES/DEBUG_OUTPUT/DEBUG_OUTPUT_catalog.xml" xsi:type="xnat:resourceCatalog"/>
	</xnat:resources>
	<xnat:subject_ID>XNAT_S00001</xnat:subject_ID>
	<xnat:scans>
		<xnat:scan ID="4" type="MPRAGE" xsi:type="xnat:mrScanData">
			<xnat:file label="DICOM" URI="/data/xnat/archive/P/arc001/E1/SCANS/4/DICOM/scan_4_catalog.xml" format="DICOM" content="RAW" xsi:type="xnat:resourceCatalog"/>
		</xnat:scan>
	</xnat:scans>
</xnat:MRSession>"#,
    )
    .unwrap();
    let site = Site { _dir: dir, root };
    materialise(&fixture("DEBUG_OUTPUT_catalog.xml"), &site.res(), "DEBUG_OUTPUT_catalog.xml");
    for f in REMOVED {
        fs::remove_file(site.res().join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    }
    for (i, f) in ADDED.iter().enumerate() {
        let p = site.res().join(f);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, vec![b'a' + i as u8; i * 10 + 1]).unwrap();
    }
    fs::write(site.res().join(".~lock-out1.txt"), b"").unwrap();
    std::os::unix::fs::symlink("out1.txt", site.res().join("link.txt")).unwrap();
    site
}

fn refresh(site: &Site, uri: &str, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["refresh", "--archive", site.arg(), "--resource", uri, "--user", "tester"];
    args.extend_from_slice(extra);
    cli_json(&args)
}

/// The single report of a one-resource refresh.
fn report(v: &Value) -> &Value {
    let reports = v["reports"].as_array().unwrap_or_else(|| panic!("no reports: {v}"));
    assert_eq!(reports.len(), 1, "{v}");
    &reports[0]
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Files of the fixture whose invented content cannot match the stored digest.
fn expected_mismatches(res: &Path) -> BTreeSet<String> {
    fixture_files(&fixture("DEBUG_OUTPUT_catalog.xml"))
        .into_iter()
        .filter(|f| !REMOVED.contains(&f.uri.as_str()))
        .filter(|f| md5_hex(&fs::read(res.join(&f.uri)).unwrap()) != f.digest)
        .map(|f| f.uri)
        .collect()
}

fn size_on_disk(res: &Path, rel: &str) -> u64 {
    fs::metadata(res.join(rel)).unwrap().len()
}

#[test]
fn debug_output_with_all_four_options() {
    let site = debug_site();
    let mismatched = expected_mismatches(&site.res());
    assert!(!mismatched.is_empty() && mismatched.len() < 12, "{mismatched:?}");
    let (code, v) = refresh(&site, DEBUG_URI, &[]);
    assert_eq!(code, 0, "{v}");
    let r = report(&v);
    assert_eq!(r["outcome"]["status"], "written", "{r}");
    assert_eq!(r["catalog"], format!("{DEBUG_RES}/DEBUG_OUTPUT_catalog.xml"));
    assert_eq!(strings(&r["added"]), set(&ADDED));
    assert_eq!(strings(&r["removed"]), set(&REMOVED));
    let reported: BTreeSet<String> =
        r["mismatches"].as_array().unwrap().iter().map(|m| m["path"].as_str().unwrap().to_string()).collect();
    assert_eq!(reported, mismatched);
    let skipped = r["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert_eq!(skipped[0]["path"], "link.txt");
    assert!(skipped[0]["reason"].as_str().unwrap().contains("symbolic link"));

    // The catalog: every file on disk once, nothing else; digests and sizes right.
    let entries = entries(&site.catalog());
    let on_disk: BTreeSet<String> = snapshot(&site.res())
        .into_iter()
        .filter(|(p, h)| !p.ends_with('/') && !h.starts_with("->"))
        .map(|(p, _)| p)
        .filter(|p| p != "DEBUG_OUTPUT_catalog.xml" && !p.starts_with(".~lock-"))
        .collect();
    assert_eq!(entries.keys().cloned().collect::<BTreeSet<_>>(), on_disk);
    assert_eq!(entries.len(), 8201 - REMOVED.len() + ADDED.len());
    let mut total = 0;
    let mut zeros = 0;
    for (uri, e) in &entries {
        let bytes = fs::read(site.res().join(uri)).unwrap();
        assert_eq!(e.attr("digest"), Some(md5_hex(&bytes).as_str()), "{uri}");
        assert_eq!(meta(e, "SIZE"), Some(bytes.len().to_string()), "{uri}");
        assert_eq!(e.attr("ID"), Some(uri.as_str()));
        if bytes == [0u8; 4096] {
            assert_eq!(e.attr("digest"), Some(ZERO_4096_MD5));
            zeros += 1;
        }
        total += bytes.len() as u64;
    }
    assert_eq!(zeros, 8190 - 2);
    assert_eq!(r["file_count"], entries.len() as u64);
    assert_eq!(r["file_size"], total);
    // Untouched fixture facts survive: XNAT's old size metaField, creator, the AUDIT history.
    let hello = fixture_files(&fixture("DEBUG_OUTPUT_catalog.xml")).into_iter().find(|f| f.uri == "hello.txt").unwrap();
    assert_eq!(meta(&entries["hello.txt"], "size_in_bytes"), Some(hello.size.to_string()));
    assert_eq!(entries["hello.txt"].attr("createdBy"), Some("admin"));
    assert_eq!(entries["with space.txt"].attr("createdBy"), Some("tester"));
    let root = xnat_core::xml::parse(&fs::read(site.catalog()).unwrap()).unwrap();
    let audit = find(&root, "AUDIT").unwrap();
    assert!(audit.starts_with("8623:Mon Apr 08 19:50:34 GMT 2019=Added:8201|"), "{audit}");
    assert!(audit.ends_with(&format!("=Added:5;Modified:{};Removed:4", 8201 - 4)), "{audit}");
    assert_eq!(find(&root, "PROJECT").as_deref(), Some("P"));

    // populateStats went into the session document.
    let doc = fs::read_to_string(site.root.join("P/arc001/E1.xml")).unwrap();
    assert!(doc.contains(&format!("file_count=\"{}\"", entries.len())), "{doc}");
    assert!(doc.contains(&format!("file_size=\"{total}\"")), "{doc}");
    assert_eq!(r["stats_written"], true);

    // A second run has nothing to do and writes nothing; verify agrees.
    let before = snapshot(&site.root);
    let (code, v) = refresh(&site, DEBUG_URI, &[]);
    assert_eq!((code, &report(&v)["outcome"]["status"]), (0, &Value::from("unchanged")), "{v}");
    let (code, v) = refresh(&site, DEBUG_URI, &["--verify"]);
    assert_eq!(code, 0);
    let r = report(&v);
    assert_eq!(r["outcome"]["status"], "unchanged", "{r}");
    assert!(r["mismatches"].as_array().unwrap().is_empty());
    assert_eq!(snapshot(&site.root), before);
}

fn find(root: &xnat_core::xml::Element, meta_name: &str) -> Option<String> {
    root.elements()
        .filter(|c| c.local_name() == "metaFields")
        .flat_map(|c| c.elements())
        .find(|m| m.attr("name") == Some(meta_name))
        .map(|m| m.text())
}

#[test]
fn each_option_alone_and_in_all_three_spellings() {
    // append only: new files come in without digests; missing entries stay.
    let site = debug_site();
    let (code, v) = refresh(&site, DEBUG_URI, &["--options", "append"]);
    assert_eq!(code, 0, "{v}");
    let r = report(&v);
    assert_eq!(strings(&r["added"]), set(&ADDED));
    assert!(r["removed"].as_array().unwrap().is_empty() && r["mismatches"].as_array().unwrap().is_empty());
    let e = entries(&site.catalog());
    assert_eq!(e.len(), 8201 + ADDED.len());
    assert!(REMOVED.iter().all(|f| e.contains_key(*f)));
    assert!(ADDED.iter().all(|f| e[*f].attr("digest").is_none()));
    assert_eq!(meta(&e["with space.txt"], "SIZE"), Some(size_on_disk(&site.res(), "with space.txt").to_string()));

    // delete only: the missing entries go, nothing new comes in.
    let site = debug_site();
    let (_, v) = refresh(&site, DEBUG_URI, &["--options", "delete"]);
    let r = report(&v);
    assert_eq!(strings(&r["removed"]), set(&REMOVED));
    assert!(r["added"].as_array().unwrap().is_empty());
    let e = entries(&site.catalog());
    assert_eq!(e.len(), 8201 - REMOVED.len());
    assert!(ADDED.iter().all(|f| !e.contains_key(*f)));

    // checksum only: stale digests replaced and reported, entries neither added nor removed.
    let site = debug_site();
    let want = expected_mismatches(&site.res());
    let (_, v) = refresh(&site, DEBUG_URI, &["--checksum"]);
    let r = report(&v);
    let got: BTreeSet<String> =
        r["mismatches"].as_array().unwrap().iter().map(|m| m["path"].as_str().unwrap().to_string()).collect();
    assert_eq!(got, want);
    let e = entries(&site.catalog());
    assert_eq!(e.len(), 8201);
    for f in &want {
        assert_eq!(e[f].attr("digest"), Some(md5_hex(&fs::read(site.res().join(f)).unwrap()).as_str()));
    }

    // populateStats only: counts what exists, writes it into the document.
    let site = debug_site();
    let (_, v) = refresh(&site, DEBUG_URI, &["--options", "populateStats"]);
    let r = report(&v);
    assert_eq!(r["file_count"], 8201 - REMOVED.len() as u64);
    assert_eq!(r["stats_written"], true);
    assert!(fs::read_to_string(site.root.join("P/arc001/E1.xml")).unwrap().contains("file_count=\"8197\""));

    // The same selection spelled three ways gives the same result.
    let mut seen = Vec::new();
    for spelling in [
        &["--options", "append,delete"][..],
        &["--options", "append", "--options", "delete"][..],
        &["--append", "--delete"][..],
    ] {
        let site = debug_site();
        let (code, v) = refresh(&site, DEBUG_URI, spelling);
        assert_eq!(code, 0, "{v}");
        let r = report(&v);
        seen.push((strings(&r["added"]), strings(&r["removed"]), r["mismatches"].as_array().unwrap().len()));
    }
    assert!(seen.iter().all(|s| *s == seen[0]), "{seen:?}");
    assert_eq!(seen[0], (set(&ADDED), set(&REMOVED), 0));
}

#[test]
fn dry_run_and_verify_report_and_write_nothing() {
    let site = debug_site();
    let before = snapshot(&site.root);
    for mode in ["--dry-run", "--verify"] {
        let (code, v) = refresh(&site, DEBUG_URI, &[mode]);
        assert_eq!(code, 0, "{v}");
        let r = report(&v);
        assert_eq!(r["outcome"]["status"], "not-written", "{mode}: {r}");
        assert_eq!(strings(&r["added"]), set(&ADDED));
        assert_eq!(strings(&r["removed"]), set(&REMOVED));
        assert_eq!(snapshot(&site.root), before, "{mode} changed the tree");
    }
}

#[test]
fn scan_4_dicom_entries_keep_uid_and_instance_number() {
    let site = debug_site();
    let res = site.root.join(SCAN_RES);
    materialise(&fixture("scan_4_catalog.xml"), &res, "scan_4_catalog.xml");
    let original = entries(&res.join("scan_4_catalog.xml"));
    let (code, v) = cli_json(&["refresh", "--archive", site.arg(), "--resource", SCAN_URI]);
    assert_eq!(code, 0, "{v}");
    let r = report(&v);
    assert_eq!(r["resource"], "/archive/projects/P/subjects/S1/experiments/E1/scans/4/resources/DICOM");
    assert_eq!(r["mismatches"].as_array().unwrap().len(), 176, "the fixture's content is invented");
    assert_eq!(r["file_count"], 176);
    let after = entries(&res.join("scan_4_catalog.xml"));
    assert_eq!(after.len(), 176);
    for (uri, before) in &original {
        let e = &after[uri];
        for keep in ["UID", "instanceNumber", "xsi:type", "format", "createdBy", "createdTime"] {
            assert_eq!(e.attr(keep), before.attr(keep), "{uri} {keep}");
        }
        assert_eq!(e.attr("xsi:type"), Some("cat:dcmEntry"));
        assert_eq!(e.attr("digest"), Some(md5_hex(&fs::read(res.join(uri)).unwrap()).as_str()));
    }
    let root = xnat_core::xml::parse(&fs::read(res.join("scan_4_catalog.xml")).unwrap()).unwrap();
    assert_eq!(root.local_name(), "DCMCatalog");
    assert!(root.elements().any(|e| e.local_name() == "dimensions" && e.attr("z") == Some("176")));
    assert!(root.elements().any(|e| e.local_name() == "orientation" && e.text() == "Sag"));
    // The stats reach the document through XNAT's absolute catalog URI.
    let doc = fs::read_to_string(site.root.join("P/arc001/E1.xml")).unwrap();
    assert!(doc.contains("file_count=\"176\""), "{doc}");

    // D6: a DICOM catalog is not rewritten when nothing changed.
    let bytes = fs::read(res.join("scan_4_catalog.xml")).unwrap();
    let (_, v) = cli_json(&["refresh", "--archive", site.arg(), "--resource", SCAN_URI]);
    assert_eq!(report(&v)["outcome"]["status"], "unchanged", "{v}");
    assert_eq!(fs::read(res.join("scan_4_catalog.xml")).unwrap(), bytes);
}

/// A catalog saved by an editor that adds a byte-order mark and CRLF line ends refreshes through the component
/// like any other: every entry kept with its UID, written back as XNAT writes catalogs, unchanged next time.
#[test]
fn a_catalog_with_a_byte_order_mark_and_crlf_line_ends_refreshes() {
    let site = debug_site();
    let res = site.root.join(SCAN_RES);
    materialise(&fixture("scan_4_catalog.xml"), &res, "scan_4_catalog.xml");
    let cat = res.join("scan_4_catalog.xml");
    let original = entries(&cat);
    let crlf = fs::read_to_string(&cat).unwrap().replace('\n', "\r\n");
    fs::write(&cat, [&b"\xEF\xBB\xBF"[..], crlf.as_bytes()].concat()).unwrap();
    let (code, v) = cli_json(&["refresh", "--archive", site.arg(), "--resource", SCAN_URI]);
    assert_eq!((code, &report(&v)["outcome"]["status"]), (0, &Value::from("written")), "{}", report(&v)["outcome"]);
    let written = fs::read(&cat).unwrap();
    assert!(written.starts_with(b"<?xml") && !written.contains(&b'\r'), "written as XNAT writes catalogs");
    let after = entries(&cat);
    assert_eq!(after.len(), original.len());
    for (uri, before) in &original {
        assert_eq!(after[uri].attr("UID"), before.attr("UID"), "{uri}");
    }
    let (_, v) = cli_json(&["refresh", "--archive", site.arg(), "--resource", SCAN_URI]);
    assert_eq!(report(&v)["outcome"]["status"], "unchanged", "{}", report(&v)["outcome"]);
    assert_eq!(fs::read(&cat).unwrap(), written);
}

#[test]
fn a_session_refresh_cascades_to_its_scans() {
    let site = debug_site();
    materialise(&fixture("scan_4_catalog.xml"), &site.root.join(SCAN_RES), "scan_4_catalog.xml");
    let (code, v) = cli_json(&[
        "refresh",
        "--archive",
        site.arg(),
        "--resource",
        "/archive/projects/P/subjects/S1/experiments/E1",
        "--options",
        "append,delete,populateStats",
    ]);
    assert_eq!(code, 0, "{v}");
    let catalogs: Vec<&str> = v["reports"].as_array().unwrap().iter().map(|r| r["catalog"].as_str().unwrap()).collect();
    assert_eq!(catalogs, [format!("{DEBUG_RES}/DEBUG_OUTPUT_catalog.xml"), format!("{SCAN_RES}/scan_4_catalog.xml")]);
}

#[test]
fn a_second_catalog_skips_the_resource_and_changes_nothing() {
    let site = debug_site();
    fs::create_dir_all(site.res().join("backup")).unwrap();
    fs::copy(fixture("scan_4_catalog.xml"), site.res().join("backup/copy.xml")).unwrap();
    let before = snapshot(&site.root);
    let (code, v) = refresh(&site, DEBUG_URI, &[]);
    assert_eq!(code, 0, "{v}");
    let r = report(&v);
    assert_eq!(r["outcome"]["status"], "skipped");
    assert!(r["outcome"]["reason"].as_str().unwrap().contains("backup/copy.xml"), "{r}");
    assert_eq!(snapshot(&site.root), before);
}

#[test]
fn malformed_and_empty_catalogs_are_reported_and_left_byte_identical() {
    let full = fs::read(fixture("DEBUG_OUTPUT_catalog.xml")).unwrap();
    let deep = format!(
        "<cat:Catalog xmlns:cat=\"http://nrg.wustl.edu/catalog\">{}{}</cat:Catalog>",
        "<cat:entries>".repeat(200_000),
        "</cat:entries>".repeat(200_000)
    );
    for broken in [Vec::new(), full[..full.len() / 2].to_vec(), b"not xml at all".to_vec(), deep.into_bytes()] {
        let site = debug_site();
        fs::write(site.catalog(), &broken).unwrap();
        let before = snapshot(&site.root);
        let (code, v) = refresh(&site, DEBUG_URI, &[]);
        assert_eq!(code, 8, "{v}");
        let r = report(&v);
        assert_eq!(r["outcome"]["status"], "failed");
        assert_eq!(r["outcome"]["error"]["kind"], "corrupt", "{r}");
        assert_eq!(fs::read(site.catalog()).unwrap(), broken);
        assert_eq!(snapshot(&site.root), before);
    }
}

#[test]
fn a_read_only_grant_refuses_to_write_and_changes_nothing() {
    use xnat_archive::{Grant, Limits, NoProgress, RefreshRequest, ResourceOutcome, Runtime};
    let site = debug_site();
    let before = snapshot(&site.root);
    let runtime = Runtime::new().unwrap();
    let request = RefreshRequest { resources: vec![DEBUG_URI.into()], ..Default::default() };
    let reports = runtime
        .refresh(&[Grant::archive(&site.root, false)], &Limits::default(), request, NoProgress)
        .unwrap()
        .unwrap();
    match &reports[0].outcome {
        ResourceOutcome::Failed { error } => {
            assert_eq!(error.kind(), "forbidden", "{error}");
            assert!(error.message().contains("read-only") || error.message().contains("permission"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(snapshot(&site.root), before);
}

#[test]
fn bad_and_unknown_uris_get_their_own_exit_codes() {
    let site = debug_site();
    for (uri, code, kind) in [
        ("/archive/projects/P/../../etc", 2, "bad-request"),
        ("/archive/projects/%2e%2e/resources/x", 2, "bad-request"),
        ("/etc/passwd", 2, "bad-request"),
        ("/archive/projects/P/resources/R/files/a.txt", 2, "bad-request"),
        ("/data/prearchive/projects/P/20240101_120000/S", 2, "bad-request"),
        ("/archive/projects/NOPE", 4, "not-found"),
        ("/archive/experiments/XNAT_E09999", 4, "not-found"),
        ("/archive/projects/P/subjects/S1/experiments/E1/resources/NOPE", 4, "not-found"),
    ] {
        let (got, v) = refresh(&site, uri, &[]);
        assert_eq!((got, v["error"]["kind"].as_str()), (code, Some(kind)), "{uri}: {v}");
    }
    let out = cli(&["refresh", "--archive", site.arg(), "--resource", "/archive/projects/NOPE"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("project NOPE does not exist"));
}

#[test]
fn create_a_resource_then_refresh_fills_it() {
    let site = debug_site();
    let uri = "/data/archive/projects/P/subjects/S1/experiments/E1/scans/4/resources/NIFTI";
    let (code, v) = cli_json(&[
        "resource",
        "create",
        "--archive",
        site.arg(),
        "--resource",
        uri,
        "--format",
        "NIFTI",
        "--content",
        "T1",
    ]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["created"]["catalog"], "P/arc001/E1/SCANS/4/NIFTI/4_catalog.xml");
    let (code, v) = cli_json(&["resource", "create", "--archive", site.arg(), "--resource", uri]);
    assert_eq!((code, v["error"]["kind"].as_str()), (5, Some("conflict")), "{v}");
    fs::write(site.root.join("P/arc001/E1/SCANS/4/NIFTI/t1.nii.gz"), b"nifti").unwrap();
    let (code, v) = refresh(&site, uri, &[]);
    assert_eq!(code, 0, "{v}");
    let r = report(&v);
    assert_eq!(strings(&r["added"]), set(&["t1.nii.gz"]));
    let doc = fs::read_to_string(site.root.join("P/arc001/E1.xml")).unwrap();
    assert!(doc.contains("URI=\"SCANS/4/NIFTI/4_catalog.xml\"") && doc.contains("file_count=\"1\""), "{doc}");
}

/// A refresh lock left by a refresh that died (its memory cap, a kill): while its lease runs the resource
/// fails as `locked` and sets exit code 6 (it was not refreshed); once the lease ran out it is taken over.
#[test]
fn a_held_refresh_lock_sets_the_exit_code_and_a_dead_one_is_taken_over() {
    let site = debug_site();
    let lock = site.res().join(".~lock-DEBUG_OUTPUT_catalog.xml.refresh");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    fs::write(&lock, format!("REFRESHING\nowner dead\nsince {now}\nexpires {}\n", now + 60)).unwrap();
    let before = snapshot(&site.root);
    let (code, v) = refresh(&site, DEBUG_URI, &[]);
    assert_eq!(code, 6, "{v}");
    let r = report(&v);
    assert_eq!(
        (r["outcome"]["status"].as_str(), r["outcome"]["error"]["kind"].as_str()),
        (Some("failed"), Some("locked"))
    );
    assert!(r["outcome"]["error"]["message"].as_str().unwrap().contains("lease until"), "{r}");
    assert_eq!(snapshot(&site.root), before);
    fs::write(&lock, format!("REFRESHING\nowner dead\nsince {}\nexpires {}\n", now - 100, now - 70)).unwrap();
    let (code, v) = refresh(&site, DEBUG_URI, &[]);
    assert_eq!(code, 0, "{v}");
    assert!(!lock.exists());
}

/// Running out of memory is one outcome, exit code 9, wherever in the refresh the component meets its
/// limit (a trap, or an allocation failure it would report as an I/O error); the catalog stays whole. A
/// trapped instance cannot remove its refresh lock or the catalog it was writing, but both name the
/// instance, which the host knows is gone: the next refresh takes the lock over at once (no lease to wait
/// out) and removes the orphaned temporary file. The 8,201-entry catalog, every entry of which this refresh rewrites, fits in 16 MiB
/// (issue 11, P5: the catalog is streamed, never held; held as a tree it needed 52 MiB).
#[test]
fn running_out_of_memory_is_always_exit_code_9() {
    let site = debug_site();
    let before = fs::read(site.catalog()).unwrap();
    let names = || {
        let mut v: Vec<String> =
            fs::read_dir(site.res()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    };
    let names_before = names();
    for mib in [2, 4, 8, 12] {
        let m = mib.to_string();
        let out = cli(&["refresh", "--archive", site.arg(), "--resource", DEBUG_URI, "--memory", &m, "--json"]);
        assert_eq!(out.status.code(), Some(9), "--memory {mib}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains("ran out of memory"));
        assert_eq!(fs::read(site.catalog()).unwrap(), before, "--memory {mib}");
        // What a trapped instance leaves: its lock, and the catalog it was writing (the catalog is written as it
        // is read, so the limit may be met midway).
        let left: Vec<String> = names()
            .into_iter()
            .filter(|n| {
                *n != ".~lock-DEBUG_OUTPUT_catalog.xml.refresh"
                    && !n.starts_with(".~xnat-tmp-DEBUG_OUTPUT_catalog.xml.")
            })
            .collect();
        assert_eq!(left, names_before, "--memory {mib}");
    }
    let (code, v) = refresh(&site, DEBUG_URI, &["--memory", "16"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(names(), names_before, "the dead instances' lock and temporary files were cleared");
    assert_eq!(report(&v)["file_count"].as_u64(), Some(8201 - REMOVED.len() as u64 + ADDED.len() as u64), "{v}");
}

/// The opt-in unchanged-data stamp through the component (WASI's file times and identities): files hashed
/// once are trusted while they stay as they were, and any file that changed in a way the listing can see —
/// new bytes with a new modification time, or a new file renamed into place with the old size and time — is
/// hashed again and its new digest caught. The stamp itself is never cataloged.
#[test]
fn unchanged_files_are_trusted_through_the_component_until_they_change() {
    let site = debug_site();
    let opts = ["--options", "append,checksum", "--trust-unchanged"];
    let (code, v) = refresh(&site, DEBUG_URI, &opts);
    assert_eq!(code, 0, "{v}");
    let count = report(&v)["file_count"].as_u64().unwrap();
    assert!(count > 100, "{v}");
    // The fixture's files were written just now: the stamp leaves out those changed in the two seconds before.
    assert!(site.res().join(".~lock-DEBUG_OUTPUT_catalog.xml.stamp").exists());
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let (_, v) = refresh(&site, DEBUG_URI, &opts);
    let trusted = report(&v)["trusted"].as_u64().unwrap();
    assert!(trusted <= count - ADDED.len() as u64, "the files added just before were left out: {v}");
    let (_, v) = refresh(&site, DEBUG_URI, &opts);
    let r = report(&v);
    assert_eq!((r["trusted"].as_u64(), r["outcome"]["status"].as_str()), (Some(count), Some("unchanged")), "{v}");
    assert!(r["added"].as_array().unwrap().is_empty() && !v.to_string().contains(".stamp"), "{v}");

    // Same size, new bytes, new modification time; and a new file renamed over another with the old size and
    // modification time (only its identity differs).
    let res = site.res();
    let rewritten = "with space.txt";
    let old = fs::read(res.join(rewritten)).unwrap();
    fs::write(res.join(rewritten), vec![b'#'; old.len()]).unwrap();
    let replaced = ".hidden";
    let (bytes, mtime) = (fs::read(res.join(replaced)).unwrap(), fs::metadata(res.join(replaced)).unwrap().modified());
    let tmp = res.join("../replacement.tmp");
    fs::write(&tmp, vec![b'~'; bytes.len()]).unwrap();
    fs::File::options().write(true).open(&tmp).unwrap().set_modified(mtime.unwrap()).unwrap();
    fs::rename(&tmp, res.join(replaced)).unwrap();
    let (code, v) = refresh(&site, DEBUG_URI, &opts);
    assert_eq!(code, 0, "{v}");
    let r = report(&v);
    let caught: BTreeSet<String> =
        r["mismatches"].as_array().unwrap().iter().map(|m| m["path"].as_str().unwrap().to_string()).collect();
    assert_eq!(caught, set(&[rewritten, replaced]), "{v}");
    assert_eq!(r["trusted"].as_u64(), Some(count - 2), "{v}");
    let digests = catalog_digests(&site.catalog());
    assert_eq!(digests[rewritten], md5_hex(&fs::read(res.join(rewritten)).unwrap()));
    assert_eq!(digests[replaced], md5_hex(&fs::read(res.join(replaced)).unwrap()));
    // verify never trusts the stamp.
    let (_, v) = refresh(&site, DEBUG_URI, &["--verify"]);
    assert_eq!(report(&v)["trusted"], 0, "{v}");
}

/// Entry URI → digest of a catalog on disk.
fn catalog_digests(path: &Path) -> std::collections::BTreeMap<String, String> {
    let cat = xnat_core::model::catalog::Catalog::parse(&fs::read(path).unwrap()).unwrap();
    cat.entry_locs()
        .iter()
        .map(|l| cat.entry(l))
        .map(|e| (e.uri().unwrap().to_string(), e.attr("digest").unwrap_or("").to_string()))
        .collect()
}

/// The host's digests (WIT `digests`, on every core) and the component's agree with native hashing, for MD5
/// and SHA-256, over batches of files in nested folders.
#[test]
fn every_digest_the_host_computes_is_the_files_own() {
    use sha2::Digest as _;
    let site = debug_site();
    fs::remove_file(site.catalog()).unwrap();
    let (code, v) = refresh(&site, DEBUG_URI, &["--options", "append,checksum", "--sha256"]);
    assert_eq!(code, 0, "{v}");
    let digests = catalog_digests(&site.catalog());
    assert!(digests.len() > 100, "{v}");
    for (uri, digest) in &digests {
        let bytes = fs::read(site.res().join(uri)).unwrap();
        assert_eq!(digest, &hex::encode(sha2::Sha256::digest(&bytes)), "{uri}");
    }
    // Verify hashes each file again with the algorithm of its stored digest: no mismatch, all SHA-256.
    let (code, v) = refresh(&site, DEBUG_URI, &["--verify"]);
    assert_eq!((code, report(&v)["mismatches"].as_array().unwrap().len()), (0, 0), "{v}");
    // A file changed since: caught, with its new digest.
    fs::write(site.res().join("with space.txt"), b"changed").unwrap();
    let (_, v) = refresh(&site, DEBUG_URI, &["--verify"]);
    let m = &report(&v)["mismatches"];
    assert_eq!(m.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(m[0]["actual"], hex::encode(sha2::Sha256::digest(b"changed")), "{v}");
}

/// The files below `dir` (not entering links), in the order a walk that lists each folder in name order and
/// enters each subfolder where it meets it takes them: the order a refresh appends them in.
fn walk_order(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().into_string().unwrap();
        let rel = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
        let kind = e.file_type().unwrap();
        if kind.is_dir() {
            walk_order(&e.path(), &rel, out);
        } else if kind.is_file() && !name.ends_with("_catalog.xml") {
            out.push(rel);
        }
    }
}

/// A deep, wide tree refreshed through the component (whose walk the host makes while the catalog is read,
/// WIT `walk-tree`) is walked exactly as a folder-by-folder walk would: every file, in that walk's order
/// (names that sort between a folder and its contents, folders at many depths), a linked folder not entered;
/// unchanged on a second run; files removed deep inside found gone.
#[test]
fn a_deep_tree_is_walked_in_order_and_whole() {
    let site = debug_site();
    let uri = "/data/archive/projects/P/subjects/S1/experiments/E1/scans/4/resources/DEEP";
    let (code, v) = cli_json(&["resource", "create", "--archive", site.arg(), "--resource", uri]);
    assert_eq!(code, 0, "{v}");
    let res = site.root.join("P/arc001/E1/SCANS/4/DEEP");
    for top in ["a", "a b", "a-b", "a.b", "B", "z"] {
        for sub in 0..12 {
            let folder = res.join(top).join(format!("s{sub:02}")).join(if sub % 3 == 0 { "deeper/still" } else { "" });
            fs::create_dir_all(&folder).unwrap();
            for f in 0..3 {
                fs::write(folder.join(format!("f{f}.dcm")), format!("{top}{sub}{f}")).unwrap();
            }
        }
        fs::write(res.join(format!("{top}.txt")), top).unwrap();
    }
    fs::write(res.join("a/s00.txt"), b"between a folder and the next").unwrap();
    std::os::unix::fs::symlink("a", res.join("linked")).unwrap();
    let mut expected = Vec::new();
    walk_order(&res, "", &mut expected);
    assert_eq!(expected.len(), 6 * 12 * 3 + 6 + 1);

    let (code, v) = refresh(&site, uri, &["--options", "append,delete"]);
    assert_eq!(code, 0, "{v}");
    let r = report(&v);
    let added: Vec<&str> = r["added"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(added, expected, "every file, in the walk's order");
    assert!(r["skipped"].as_array().unwrap().iter().any(|s| s["path"] == "linked"), "the linked folder: {r}");
    let catalog = fs::read(res.join("4_catalog.xml")).unwrap();
    let cat = xnat_core::model::catalog::Catalog::parse(&catalog).unwrap();
    let uris: Vec<String> =
        cat.entry_locs().iter().map(|l| cat.entry(l).uri().unwrap_or_default().to_string()).collect();
    assert_eq!(uris, expected, "the catalog lists them in that order");

    let (code, v) = refresh(&site, uri, &["--options", "append,delete"]);
    assert_eq!((code, &report(&v)["outcome"]["status"]), (0, &Value::from("unchanged")), "{v}");

    let gone = ["a/s00/deeper/still/f1.dcm", "z/s11/f2.dcm", "a.b/s06/deeper/still/f0.dcm"];
    for g in gone {
        fs::remove_file(res.join(g)).unwrap();
    }
    let (code, v) = refresh(&site, uri, &["--options", "append,delete"]);
    assert_eq!(code, 0, "{v}");
    let r = report(&v);
    assert_eq!(strings(&r["removed"]), set(&gone), "{r}");
    assert!(r["added"].as_array().unwrap().is_empty(), "{r}");
}
