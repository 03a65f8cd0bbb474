//! End to end: the data-safety defects of the archive services, each reproduced through the real
//! `xnat-archive` host and component — addresses that do not name one session, archives that would unlink
//! archived files or carry URIs out of their session — with both trees compared before and after.

mod common;

use common::site::*;
use common::*;
use std::fs;
use xnat_archive::generator::{self, Modality, SessionSpec};

const TS: &str = "20240103_130000000";

/// Two READY sessions of project PROJ under one timestamp folder, beside the demo site.
fn two_in_one_timestamp(site: &Site) -> (String, String) {
    let mut a = spec("PROJ", "A1", Modality::Mr, 501);
    let mut b = spec("PROJ", "B1", Modality::Mr, 502);
    a.timestamp = TS.into();
    b.timestamp = TS.into();
    (site.add(&a), site.add(&b))
}

fn trees(site: &Site) -> (std::collections::BTreeMap<String, String>, std::collections::BTreeMap<String, String>) {
    (snapshot(&site.pre), snapshot(&site.arch))
}

#[test]
fn a_prearchive_address_that_is_not_one_session_changes_nothing() {
    let site = Site::new();
    two_in_one_timestamp(&site);
    let unassigned = site.rows().into_iter().find(|r| r["project"] == "Unassigned").expect("an Unassigned session");
    let u_url = unassigned["url"].as_str().unwrap().to_string();
    let before = trees(&site);
    let not_sessions = [
        // project PROJ's timestamp folder, taken for an Unassigned session
        format!("/data/prearchive/projects/Unassigned/PROJ/{TS}"),
        // a folder inside an Unassigned session, taken for a session of project <timestamp>
        format!("/data{}/SCANS", u_url.replacen("/Unassigned", "", 1)),
        format!("/data/prearchive/projects/PROJ/{TS}/A1/SCANS"),
        format!("/data/prearchive/projects/PROJ/{TS}/A1.xml"),
        "/data/prearchive/projects/PROJ/not_a_time/A1".to_string(),
    ];
    for src in &not_sessions {
        for (command, extra) in [("delete", vec![]), ("move", vec!["--new-project", "Q"]), ("reset-status", vec![])] {
            let mut args = vec!["prearchive", command, "--prearchive", site.p(), "--src", src];
            args.extend(extra.iter());
            let (code, v) = cli_json(&args);
            assert!(matches!(code, 2 | 4), "{command} {src}: exit {code} {v}");
        }
        let (code, v) = site.archive(&[src], &[]);
        assert!(matches!(code, 2 | 4), "archive {src}: exit {code} {v}");
        let (code, v) = cli_json(&["validate", "--prearchive", site.p(), "--archive", site.a(), "--src", src]);
        assert!(matches!(code, 2 | 4), "validate {src}: exit {code} {v}");
        assert_eq!(trees(&site), before, "{src} changed a tree");
    }
    // The listing of a project whose name is a timestamp is empty, not the Unassigned sessions' insides.
    let (code, v) = cli_json(&["prearchive", "list", "--prearchive", site.p(), "--project", TS]);
    assert!(code == 2 || v["ResultSet"]["Result"].as_array().is_some_and(|r| r.is_empty()), "{v}");
    // The two sessions are still there, READY.
    for folder in ["A1", "B1"] {
        let row = site.rows().into_iter().find(|r| r["folderName"] == folder).unwrap();
        assert_eq!(row["status"], "READY", "{row}");
    }
}

/// A site with session S1 (one scan of two files) archived; its spec and experiment folder.
fn archived_s1(seed: u64) -> (Site, SessionSpec, std::path::PathBuf) {
    let site = Site::new();
    let mut first = spec("DEMO", "S1", Modality::Mr, seed);
    first.scans.truncate(1);
    first.scans[0].files = 2;
    let src = site.add(&first);
    assert_eq!(site.archive(&[&src], &[]).0, 0);
    let target = site.arch.join("DEMO/arc001/S1");
    (site, first, target)
}

/// The archived session S1, then a second S1 whose catalog names an archived instance (same UID) under a
/// new file name that is not in the prearchive.
#[test]
fn overwrite_delete_never_unlinks_an_archived_file() {
    let (site, first, target) = archived_s1(61);
    let archived = snapshot(&target);

    let mut again = first.clone();
    again.timestamp = "20250101_101010101".into();
    let src = site.add(&again);
    let dir = again.session_dir(&site.pre);
    let catalog = dir.join(SessionSpec::catalog_uri(&again.scans[0]));
    let text = fs::read_to_string(&catalog).unwrap();
    let kept = generator::file_name(&again, &again.scans[0], 1);
    let renamed = text.replacen(&format!("URI=\"{kept}\""), "URI=\"zzz.dcm\"", 1);
    assert_ne!(text, renamed, "the catalog names {kept}");
    fs::write(&catalog, renamed).unwrap();
    fs::remove_file(catalog.parent().unwrap().join(&kept)).unwrap();

    let notices = site.validate(&src, &[]);
    assert!(
        notices.iter().any(|(code, kind, m)| *code == 21 && kind == "FAIL" && m.contains("zzz.dcm")),
        "an entry without its file fails validation: {notices:?}"
    );
    let before = trees(&site);
    let (code, v) = site.archive(&[&src], &["--overwrite", "delete"]);
    assert_eq!(code, 2, "{v}");
    assert_eq!(trees(&site), before, "a refused archive changes nothing");
    assert_eq!(snapshot(&target), archived);
}

#[test]
fn overwrite_delete_replaces_a_renamed_instance_through_the_journal() {
    let (site, first, target) = archived_s1(62);
    let old_name = generator::file_name(&first, &first.scans[0], 1);
    let old_file = target.join(SessionSpec::dicom_dir(&first.scans[0])).join(&old_name);
    assert!(old_file.is_file());

    // The same instance again, under a new name, with its file: overwrite=delete replaces the old one.
    let mut again = first.clone();
    again.timestamp = "20250101_101010101".into();
    let src = site.add(&again);
    let dir = again.session_dir(&site.pre);
    let dicom = dir.join(SessionSpec::dicom_dir(&again.scans[0]));
    let catalog = dir.join(SessionSpec::catalog_uri(&again.scans[0]));
    let text = fs::read_to_string(&catalog).unwrap();
    fs::write(&catalog, text.replacen(&format!("URI=\"{old_name}\""), "URI=\"zzz.dcm\"", 1)).unwrap();
    fs::rename(dicom.join(&old_name), dicom.join("zzz.dcm")).unwrap();
    let bytes = fs::read(dicom.join("zzz.dcm")).unwrap();
    let (code, v) = site.archive(&[&src], &["--overwrite", "delete"]);
    assert_eq!(code, 0, "{v}");
    let new_file = target.join(SessionSpec::dicom_dir(&first.scans[0])).join("zzz.dcm");
    assert_eq!(fs::read(&new_file).unwrap(), bytes);
    let cat = entries(&target.join(SessionSpec::catalog_uri(&first.scans[0])));
    assert!(cat.contains_key("zzz.dcm"), "{:?}", cat.keys());
    for uri in cat.keys() {
        assert!(old_file.parent().unwrap().join(uri).is_file(), "entry {uri} has its file");
    }
}

#[test]
fn resource_uris_that_leave_the_session_fail_validation_and_are_refused() {
    let site = Site::new();
    for (n, uri) in [
        "../20240101_000000000/OTHER/SCANS/1/DICOM/scan_1_catalog.xml",
        "/etc/passwd",
        "C:\\xnat\\prearchive\\DEMO\\x_catalog.xml",
        "SCANS\\1\\..\\..\\..\\..\\OTHER\\x_catalog.xml",
        "SCANS/1/../../../x_catalog.xml",
    ]
    .iter()
    .enumerate()
    {
        let mut s = spec("DEMO", &format!("U{n}"), Modality::Mr, 700 + n as u64);
        s.scans.truncate(1);
        let src = site.add(&s);
        let doc_path = s.document_path(&site.pre);
        let doc = fs::read_to_string(&doc_path).unwrap();
        let good = SessionSpec::catalog_uri(&s.scans[0]);
        let xml_uri = uri.replace('&', "&amp;");
        let bad = doc.replacen(&format!("URI=\"{good}\""), &format!("URI=\"{xml_uri}\""), 1);
        assert_ne!(doc, bad, "the document names {good}");
        fs::write(&doc_path, bad).unwrap();
        let notices = site.validate(&src, &[]);
        assert!(
            notices.iter().any(|(code, kind, m)| *code == 13 && kind == "FAIL" && m.contains("Invalid resource URI")),
            "{uri}: {notices:?}"
        );
        let before = trees(&site);
        let (code, v) = site.archive(&[&src], &[]);
        assert_eq!(code, 2, "{uri}: {v}");
        assert_eq!(trees(&site), before, "{uri}: a refused archive changes nothing");
    }
}

/// 200,000 nested elements in a session document: the listing shows the session as ERROR, validate and
/// archive answer "corrupt" — the component never crashes — and the next good request is served.
#[test]
fn a_deeply_nested_session_document_is_an_error_row_not_a_crash() {
    let site = Site::new();
    let mut s = spec("DEMO", "DEEP", Modality::Mr, 801);
    s.scans.truncate(1);
    let src = site.add(&s);
    let deep = format!(
        "<xnat:MRSession xmlns:xnat=\"http://nrg.wustl.edu/xnat\">{}{}</xnat:MRSession>",
        "<xnat:scans>".repeat(200_000),
        "</xnat:scans>".repeat(200_000)
    );
    fs::write(s.document_path(&site.pre), deep).unwrap();
    let before = trees(&site);
    let row = site.rows().into_iter().find(|r| r["folderName"] == "DEEP").unwrap();
    assert_eq!(row["status"], "ERROR", "{row}");
    let (code, v) = cli_json(&["validate", "--prearchive", site.p(), "--archive", site.a(), "--src", &src]);
    assert_eq!(code, 8, "{v}");
    // An ERROR session is not archived (409: fix the cause, then reset its status); nothing changes.
    let (code, v) = site.archive(&[&src], &[]);
    assert_eq!(code, 5, "{v}");
    assert!(v.to_string().contains("is ERROR"), "{v}");
    assert_eq!(trees(&site), before);
    assert_eq!(site.rows().len(), 8, "the next request is served");
}

/// Rewrites a lock file's lease as if it had run out `secs` ago (the holder died and stopped renewing).
fn expire_lease(lock: &std::path::Path, secs: i64) {
    let text = fs::read_to_string(lock).unwrap();
    let past = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64 - secs;
    let aged: Vec<String> = text
        .lines()
        .map(|l| if l.starts_with("expires ") { format!("expires {past}") } else { l.to_string() })
        .collect();
    assert!(aged.iter().any(|l| l.starts_with("expires ")), "{text}");
    fs::write(lock, aged.join("\n") + "\n").unwrap();
}

/// Rewrites a lock file as if another machine sharing the file system had taken it: an instance this host
/// cannot tell about, so only the lease decides.
fn from_another_machine(lock: &std::path::Path) {
    let text = fs::read_to_string(lock).unwrap();
    let foreign: Vec<String> = text
        .lines()
        .map(|l| if l.starts_with("instance ") { "instance 0123456789abcdef-1-1-1-1".into() } else { l.to_string() })
        .collect();
    fs::write(lock, foreign.join("\n") + "\n").unwrap();
}

/// `kill -9` mid-archive: the session's lock names its operation, its instance and its lease with dates.
/// The next archive on this machine sees the instance is gone and takes the lock over at once; a lock of an
/// instance on another machine (which this host cannot check) is taken over only once its lease ran out.
/// Either way the journal is rolled back and the session archived whole — no `recover`.
#[test]
fn a_dead_archives_lock_is_taken_over_and_its_journal_recovered() {
    let site = Site::new();
    let mut s = spec("DEMO", "KILLED", Modality::Mr, 901);
    s.scans.truncate(2);
    let src = site.add(&s);
    let session_dir = s.session_dir(&site.pre);
    let incoming = snapshot(&session_dir);
    let args = ["archive", "--prearchive", site.p(), "--archive", site.a(), "--src", &src, "--json"];
    let kill = || {
        // Point 3: the session's folder has moved into the archive, the journal is not committed.
        let out = cli_env(&args, &[("XNAT_ARCHIVE_FAULT_POINT", "3")]);
        assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(!session_dir.exists() && site.arch.join("DEMO/arc001/KILLED").is_dir(), "killed mid-way");
    };
    kill();
    let lock = s.timestamp_dir(&site.pre).join(".KILLED.lock");
    let text = fs::read_to_string(&lock).unwrap();
    assert!(text.starts_with("ARCHIVING\nowner ") && text.contains(" UTC\nexpires "), "{text}");
    assert!(text.contains("\ninstance "), "the lock names its instance: {text}");
    // The session is still listed, in progress, although its folder is in the archive now.
    let row = site.rows().into_iter().find(|r| r["folderName"] == "KILLED").expect("the row is still there");
    assert_eq!(row["status"], "_ARCHIVING", "{row}");

    // Its process is gone, on this machine: the next archive takes over at once, within the lease.
    let (code, v) = site.archive(&[&src], &[]);
    assert_eq!(code, 0, "{v}");
    let target = site.arch.join("DEMO/arc001/KILLED");
    assert!(target.is_dir() && !session_dir.exists());

    // Again, as if killed on another machine: refused (423, with dates) while the lease runs.
    fs::remove_dir_all(&target).unwrap();
    let src = site.add(&s);
    kill();
    let dest_lock = site.arch.join("DEMO/arc001/.KILLED.lock");
    for l in [&lock, &dest_lock] {
        if l.exists() {
            from_another_machine(l);
        }
    }
    let (code, v) = site.archive(&[&src], &[]);
    assert_eq!(code, 6, "{v}");
    let msg = v.to_string();
    assert!(msg.contains("ARCHIVING since 20") && msg.contains("lease until"), "a date, not seconds: {msg}");
    expire_lease(&lock, 1);
    if dest_lock.exists() {
        expire_lease(&dest_lock, 1);
    }
    let (code, v) = site.archive(&[&src], &[]);
    assert_eq!(code, 0, "{v}");
    let target = site.arch.join("DEMO/arc001/KILLED");
    let logs = |m: std::collections::BTreeMap<String, String>| -> std::collections::BTreeMap<String, String> {
        m.into_iter().filter(|(p, _)| !p.starts_with("logs")).collect()
    };
    assert_eq!(logs(snapshot(&target)), logs(incoming), "every file once, unchanged");
    let leftovers = site.leftovers();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// `recover --respect-leases` (what `serve` runs at start and after a request it stopped): a session whose
/// lock another machine may still hold (a live lease, an instance this host cannot check) is reported
/// `in-progress` and left alone; plain `recover`, for when nothing else runs, breaks the lock and rolls the
/// session back.
#[test]
fn recover_respecting_leases_leaves_a_live_foreign_archive_alone() {
    let site = Site::new();
    let mut s = spec("DEMO", "FOREIGN", Modality::Mr, 902);
    s.scans.truncate(2);
    let src = site.add(&s);
    let incoming = snapshot(&s.session_dir(&site.pre));
    let args = ["archive", "--prearchive", site.p(), "--archive", site.a(), "--src", &src, "--json"];
    let out = cli_env(&args, &[("XNAT_ARCHIVE_FAULT_POINT", "3")]);
    assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lock = s.timestamp_dir(&site.pre).join(".FOREIGN.lock");
    let dest_lock = site.arch.join("DEMO/arc001/.FOREIGN.lock");
    for l in [&lock, &dest_lock] {
        if l.exists() {
            from_another_machine(l);
        }
    }

    let recover = ["recover", "--prearchive", site.p(), "--archive", site.a()];
    let (code, v) = cli_json(&[&recover[..], &["--respect-leases"]].concat());
    assert_eq!(code, 0, "{v}");
    let rows = v["recovered"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{v}");
    assert_eq!(rows[0]["action"], "in-progress", "{v}");
    assert!(src.ends_with(rows[0]["src"].as_str().unwrap()), "{v}");
    assert!(rows[0]["detail"].as_str().unwrap().contains("lease until"), "{v}");
    assert!(lock.exists() && !s.session_dir(&site.pre).exists(), "left alone");

    let (code, v) = cli_json(&recover);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["recovered"][0]["action"], "rolled-back", "{v}");
    assert!(!lock.exists() && !dest_lock.exists());
    let logs = |m: std::collections::BTreeMap<String, String>| -> std::collections::BTreeMap<String, String> {
        m.into_iter().filter(|(p, _)| !p.starts_with("logs")).collect()
    };
    assert_eq!(logs(snapshot(&s.session_dir(&site.pre))), logs(incoming), "every file back, unchanged");
}
