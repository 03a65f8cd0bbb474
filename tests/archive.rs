//! End to end: validate-archive, archive (every overwrite mode, merges with scan renaming, batches), locks
//! between real concurrent processes, and crash safety — the archiving process killed at every step, then
//! `recover` — through the real `xnat-archive` host and component, on generated XNAT prearchive sessions.

mod common;

use common::site::*;
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use xnat_archive::generator::{self, Modality, SessionSpec};

#[test]
fn a_new_session_is_archived_whole_and_leaves_the_prearchive() {
    let site = Site::new();
    let s1 = "/data/prearchive/projects/DEMO/".to_string();
    let row = site.rows().into_iter().find(|r| r["folderName"] == "SUBJ1_MR1").unwrap();
    let src = format!("/data{}", row["url"].as_str().unwrap());
    assert!(src.starts_with(&s1));
    let session_dir = site.pre.join(src.trim_start_matches("/data/prearchive/projects/"));
    let before = files(&session_dir, &|_| false);
    assert!(site.validate(&src, &[]).is_empty());
    let (code, v) = site.archive(&[&src], &[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(one(&v).0.as_deref(), Some("/data/archive/projects/DEMO/subjects/SUBJ1/experiments/SUBJ1_MR1"));
    let target = site.arch.join("DEMO/arc001/SUBJ1_MR1");
    assert_eq!(files(&target, &|_| false), before, "every file moved, unchanged");
    assert!(!session_dir.exists());
    assert!(site.status(&src).is_none(), "the row is gone");
    let doc = fs::read_to_string(site.arch.join("DEMO/arc001/SUBJ1_MR1.xml")).unwrap();
    assert!(
        doc.contains("ID=\"XNAT_E00001\"") && doc.contains("<xnat:subject_ID>XNAT_S00001</xnat:subject_ID>"),
        "{doc}"
    );
    assert!(!doc.contains("prearchivePath") && !doc.contains(site.p()), "no host paths in the archive (D15)");
    assert!(fs::read_dir(target.join("logs")).unwrap().count() >= 1);
    // A new subject gets the next free ID and a document.
    let row = site.rows().into_iter().find(|r| r["folderName"] == "SUBJ2_MR1").unwrap();
    let (code, v) = site.archive(&[&format!("/data{}", row["url"].as_str().unwrap())], &["--quarantine"]);
    assert_eq!(code, 0, "{v}");
    let subj = fs::read_to_string(site.arch.join("DEMO/subjects/SUBJ2.xml")).unwrap();
    assert!(subj.contains("ID=\"XNAT_S00003\""), "{subj}");
    let doc = fs::read_to_string(site.arch.join("DEMO/arc001/SUBJ2_MR1.xml")).unwrap();
    assert!(doc.contains("XNAT_E00002") && doc.contains("name=\"quarantine\">true<"), "{doc}");
    // The archived session refreshes clean.
    let (code, v) = cli_json(&[
        "refresh",
        "--archive",
        site.a(),
        "--resource",
        "/data/archive/projects/DEMO/subjects/SUBJ1/experiments/SUBJ1_MR1",
        "--verify",
    ]);
    assert_eq!(code, 0, "{v}");
    for r in v["reports"].as_array().unwrap() {
        assert!(r["added"].as_array().unwrap().is_empty() && r["removed"].as_array().unwrap().is_empty(), "{r}");
        assert!(r["mismatches"].as_array().unwrap().is_empty(), "{r}");
    }
}

#[test]
fn every_overwrite_mode() {
    let site = Site::new();
    let first = site.add(&spec("DEMO", "MRX", Modality::Mr, 41));
    assert_eq!(site.archive(&[&first], &[]).0, 0);
    let target = site.arch.join("DEMO/arc001/MRX");
    let original = files(&target, &|_| false);

    // The same session again (same UIDs and files), one file changed on the way.
    let mut again = spec("DEMO", "MRX", Modality::Mr, 41);
    again.timestamp = "20250101_101010101".into();
    let src = site.add(&again);
    let changed = site.pre.join(format!("DEMO/{}/MRX", again.timestamp)).join(format!(
        "{}/{}",
        SessionSpec::dicom_dir(&again.scans[0]),
        generator::file_name(&again, &again.scans[0], 1)
    ));
    fs::write(&changed, b"changed on the scanner").unwrap();

    // none: an existing experiment is a conflict; the row says so and nothing moved.
    let (code, v) = site.archive(&[&src], &[]);
    assert_eq!((code, one(&v).1.as_deref()), (5, Some("conflict")), "{v}");
    assert_eq!(site.status(&src).as_deref(), Some("CONFLICT"));
    // append never replaces a file: the clash is a conflict.
    let (code, v) = site.archive(&[&src], &["--overwrite", "append"]);
    assert_eq!((code, one(&v).1.as_deref()), (5, Some("conflict")), "{v}");
    assert_eq!(files(&target, &|_| false), original);
    // delete merges and replaces the clashing file; nothing else is removed.
    let (code, v) = site.archive(&[&src], &["--overwrite", "delete"]);
    assert_eq!(code, 0, "{v}");
    let after = files(&target, &|p| p.ends_with("_catalog.xml"));
    let rel = changed.strip_prefix(site.pre.join(format!("DEMO/{}/MRX", again.timestamp))).unwrap();
    assert_eq!(after[rel.to_str().unwrap()], md5_hex(b"changed on the scanner"));
    for (p, _) in original.iter().filter(|(p, _)| !p.ends_with("_catalog.xml")) {
        assert!(after.contains_key(p), "{p} was removed");
    }

    // append with new scans only: merged, clashing scan numbers renamed <id>-MR<n>.
    let mut other = spec("DEMO", "MRX", Modality::Mr, 77);
    other.timestamp = "20250202_101010101".into();
    other.study_uid = again.study_uid.clone();
    let src = site.add(&other);
    let notices = site.validate(&src, &[]);
    assert!(notices.iter().any(|n| n.0 == 17), "{notices:?}");
    let (code, v) = site.archive(&[&src], &["--overwrite", "append"]);
    assert_eq!(code, 0, "{v}");
    let doc = fs::read_to_string(site.arch.join("DEMO/arc001/MRX.xml")).unwrap();
    let first_scan = &other.scans[0].id;
    assert!(doc.contains(&format!("ID=\"{first_scan}-MR1\"")), "{doc}");
    assert!(target.join(format!("SCANS/{first_scan}-MR1/DICOM/scan_{first_scan}-MR1_catalog.xml")).is_file());
}

#[test]
fn every_validation_code_we_produce() {
    let site = Site::new();
    let base = spec("DEMO", "BASE", Modality::Mr, 5);
    assert_eq!(site.archive(&[&site.add(&base)], &[]).0, 0);
    let codes = |src: &str| -> BTreeSet<(u32, String)> {
        site.validate(src, &[]).into_iter().map(|(c, t, _)| (c, t)).collect()
    };
    let has = |set: &BTreeSet<(u32, String)>, code: u32, kind: &str| set.contains(&(code, kind.to_string()));
    let mut n = 0;
    let mut variant = |f: &dyn Fn(&mut SessionSpec)| -> String {
        n += 1;
        let mut s = spec("DEMO", "BASE", Modality::Mr, 5);
        s.timestamp = format!("2025030{n}_101010101");
        f(&mut s);
        site.add(&s)
    };
    // 1, 14, 16: the same session again.
    let same = variant(&|_| {});
    let c = codes(&same);
    assert!(has(&c, 1, "CONFLICT") && has(&c, 14, "CONFLICT") && has(&c, 16, "CONFLICT"), "{c:?}");
    let msgs = site.validate(&same, &[]);
    assert_eq!(msgs[0].2, "Session already exists, retry with overwrite enabled");
    assert!(msgs.windows(2).all(|w| w[0].0 <= w[1].0), "sorted by code");
    // 17: same number, another series.
    let c = codes(&variant(&|s| s.scans[0].series_uid = "1.2.3.999".into()));
    assert!(has(&c, 17, "CONFLICT"), "{c:?}");
    // 18: same series under another number.
    let c = codes(&variant(&|s| s.scans[0].id = "99".into()));
    assert!(has(&c, 18, "CONFLICT"), "{c:?}");
    // 5: another study.
    let c = codes(&variant(&|s| s.study_uid = "1.2.3.4.5.6".into()));
    assert!(has(&c, 5, "CONFLICT"), "{c:?}");
    // 19: another modality under the same label.
    let c = codes(&variant(&|s| s.modality = Modality::Ct));
    assert!(has(&c, 19, "FAIL"), "{c:?}");
    // 4: another subject.
    let c = codes(&variant(&|s| s.subject = Some("SUBJ2".into())));
    assert!(has(&c, 4, "FAIL"), "{c:?}");
    // 11: no subject at all; 13: a subject XNAT cannot store.
    let c = codes(&variant(&|s| {
        s.subject = None;
        s.patient_name = String::new();
        s.label = Some("NOSUBJ".into());
    }));
    assert!(has(&c, 11, "FAIL"), "{c:?}");
    let c = codes(&variant(&|s| {
        s.subject = Some("Zoë".into());
        s.label = Some("UMLAUT".into());
    }));
    assert!(has(&c, 13, "FAIL"), "{c:?}");
    // 2 and 3: the document names the archived experiment's ID under another label / in another project.
    let id_src = variant(&|s| s.label = Some("RELABEL".into()));
    set_document_id(&site, &id_src, "XNAT_E00001");
    assert!(has(&codes(&id_src), 2, "FAIL"));
    let mut trial = spec("TRIAL", "BASE", Modality::Mr, 6);
    trial.timestamp = "20250309_101010101".into();
    let trial_src = site.add(&trial);
    set_document_id(&site, &trial_src, "XNAT_E00001");
    let c = codes(&trial_src);
    assert!(has(&c, 3, "FAIL"), "{c:?}");
    // 6: an Unassigned session has no destination project.
    let unassigned = site.rows().into_iter().find(|r| r["project"] == "Unassigned").unwrap();
    let c = codes(&format!("/data{}", unassigned["url"].as_str().unwrap()));
    assert!(has(&c, 6, "FAIL"), "{c:?}");
    // 20, 21, 22: the DICOM checks, on a new session.
    let mut fresh = spec("DEMO", "FRESH", Modality::Mr, 9);
    fresh.timestamp = "20250310_101010101".into();
    let fresh_src = site.add(&fresh);
    let dir = site.pre.join(format!("DEMO/{}/FRESH", fresh.timestamp));
    fs::write(dir.join(SessionSpec::dicom_dir(&fresh.scans[0])).join("stray.txt"), b"x").unwrap();
    fs::remove_file(dir.join(SessionSpec::catalog_uri(&fresh.scans[1]))).unwrap();
    let cat = dir.join(SessionSpec::catalog_uri(&fresh.scans[0]));
    let text = fs::read_to_string(&cat).unwrap();
    let dup = generator::sop_uid(&fresh, &fresh.scans[0], 2);
    fs::write(&cat, text.replace(&generator::sop_uid(&fresh, &fresh.scans[0], 1), &dup)).unwrap();
    let c = codes(&fresh_src);
    assert!(has(&c, 20, "WARN") && has(&c, 21, "WARN") && has(&c, 22, "WARN"), "{c:?}");
    // Validation wrote nothing.
    assert!(site.rows().iter().all(|r| r["status"] != "CONFLICT" && r["status"] != "ERROR"));
}

fn set_document_id(site: &Site, src: &str, id: &str) {
    let rel = src.trim_start_matches("/data/prearchive/projects/");
    let doc = site.pre.join(format!("{rel}.xml"));
    let text = fs::read_to_string(&doc).unwrap();
    fs::write(&doc, text.replacen("ID=\"\"", &format!("ID=\"{id}\""), 1)).unwrap();
}

#[test]
fn bad_sources_unknown_sessions_and_unassigned() {
    let site = Site::new();
    for (src, code) in [
        ("/data/prearchive/projects/DEMO/../../etc/passwd", 2),
        ("/data/prearchive/projects/DEMO/%2e%2e/x/y", 2),
        ("/data/archive/projects/DEMO/subjects/SUBJ1/experiments/X", 2),
        ("/prearchive/DEMO/20240101_000000000/X", 2),
        ("relative/path", 2),
        ("/data/prearchive/projects/DEMO/20240101_000000000/NOPE", 4),
    ] {
        let (got, v) = site.archive(&[src], &[]);
        assert_eq!(got, code, "{src}: {v}");
    }
    let unassigned = site.rows().into_iter().find(|r| r["project"] == "Unassigned").unwrap();
    let (code, v) = site.archive(&[&format!("/data{}", unassigned["url"].as_str().unwrap())], &["--project", "DEMO"]);
    assert_eq!(code, 2, "{v}");
    assert!(v.to_string().contains("Unassigned"), "{v}");
    let receiving = site.rows().into_iter().find(|r| r["status"] == "RECEIVING").unwrap();
    let (code, _) = site.archive(&[&format!("/data{}", receiving["url"].as_str().unwrap())], &[]);
    assert_eq!(code, 5);
    assert_eq!(site.rows().iter().filter(|r| r["status"] == "RECEIVING").count(), 1, "status unchanged");
}

#[test]
fn a_batch_archives_each_session_and_reports_each() {
    let site = Site::new();
    let a = site.add(&spec("DEMO", "B1", Modality::Mr, 11));
    let b = site.add(&spec("DEMO", "B2", Modality::Ct, 12));
    let (code, v) = site.archive(&[&a, &b], &[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["archived"].as_array().unwrap().len(), 2);
    let mut again = spec("DEMO", "B1", Modality::Mr, 11);
    again.timestamp = "20250404_101010101".into();
    let c = site.add(&again);
    let d = site.add(&spec("DEMO", "B3", Modality::Pet, 13));
    let (code, v) = site.archive(&[&c, &d], &[]);
    assert_eq!(code, 5, "{v}");
    let rows = v["archived"].as_array().unwrap();
    assert_eq!(rows[0]["error"]["kind"], "conflict");
    assert!(rows[1]["uri"].as_str().unwrap().ends_with("/experiments/B3"));
}

#[test]
fn two_processes_archiving_one_session_one_wins_the_other_is_locked() {
    let site = Site::new();
    let race = spec("DEMO", "RACE", Modality::Mr, 21);
    let src = site.add(&race);
    let args = ["archive", "--prearchive", site.p(), "--archive", site.a(), "--src", &src, "--json"];
    let bin = env!("CARGO_BIN_EXE_xnat-archive");
    let slow = std::process::Command::new(bin)
        .args(args)
        .env("XNAT_ARCHIVE_PAUSE_MS", "2500")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The slow archive holds the session's lock while it pauses: wait for that state, not for a time.
    let lock = race.timestamp_dir(&site.pre).join(".RACE.lock");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !lock.exists() {
        assert!(std::time::Instant::now() < deadline, "the first archive never took its lock");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let fast = cli(&args);
    let slow = slow.wait_with_output().unwrap();
    assert_eq!(fast.status.code(), Some(6), "{}", String::from_utf8_lossy(&fast.stdout));
    assert_eq!(one(&json_of(&fast)).1.as_deref(), Some("locked"));
    assert_eq!(slow.status.code(), Some(0), "{}", String::from_utf8_lossy(&slow.stdout));
    assert!(site.arch.join("DEMO/arc001/RACE.xml").is_file());
}

#[test]
fn concurrent_archives_never_share_an_id() {
    let site = Site::new();
    let bin = env!("CARGO_BIN_EXE_xnat-archive");
    let mut srcs = Vec::new();
    for i in 0..8u64 {
        let mut s = spec("DEMO", &format!("PAR{i}"), Modality::Mr, 100 + i);
        s.subject = Some(format!("NEWSUBJ{}", i % 3));
        srcs.push(site.add(&s));
    }
    let children: Vec<_> = srcs
        .iter()
        .map(|src| {
            std::process::Command::new(bin)
                .args(["archive", "--prearchive", site.p(), "--archive", site.a(), "--src", src, "--json"])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    }
    let mut ids = BTreeSet::new();
    let mut subjects: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for i in 0..8 {
        let doc = xnat_core::model::session::SessionDoc::parse(
            &fs::read(site.arch.join(format!("DEMO/arc001/PAR{i}.xml"))).unwrap(),
        )
        .unwrap();
        assert!(ids.insert(doc.id().unwrap().to_string()), "duplicate experiment ID");
        subjects.entry(format!("NEWSUBJ{}", i % 3)).or_default().insert(doc.subject_id().unwrap());
    }
    assert_eq!(ids.len(), 8);
    assert!(subjects.values().all(|ids| ids.len() == 1), "one subject, one ID: {subjects:?}");
    let distinct: BTreeSet<_> = subjects.values().flatten().collect();
    assert_eq!(distinct.len(), 3);
}

/// Kills the archive at fault point 1, 2, 3, … until it runs through, recovering after each kill, and
/// checks that every file is exactly once where it belongs with its original bytes.
fn crash_everywhere(merge: bool) -> u32 {
    let mut point = 1;
    loop {
        let site = Site::new();
        let mut incoming = spec("DEMO", "CRASH", Modality::Mr, 31);
        if merge {
            // An existing experiment with the same label: the incoming session merges into it, one of its
            // files replacing an archived one, a clashing scan number renamed.
            let mut first = spec("DEMO", "CRASH", Modality::Mr, 31);
            first.timestamp = "20240606_101010101".into();
            first.scans.truncate(2);
            assert_eq!(site.archive(&[&site.add(&first)], &[]).0, 0);
            incoming.scans[1].series_uid = "1.2.826.0.1.3680043.8.498.31.777".into();
        }
        let src = site.add(&incoming);
        let session_dir = site.pre.join(format!("DEMO/{}/CRASH", incoming.timestamp));
        if merge {
            let f = session_dir.join(SessionSpec::dicom_dir(&incoming.scans[0])).join(generator::file_name(
                &incoming,
                &incoming.scans[0],
                1,
            ));
            fs::write(f, b"replacement").unwrap();
        }
        let target = site.arch.join("DEMO/arc001/CRASH");
        let not_catalog = |p: &str| p.ends_with("_catalog.xml");
        let incoming_files = files(&session_dir, &|_| false);
        let archived_before = files(&target, &|_| false);

        let mut args = vec!["archive", "--prearchive", site.p(), "--archive", site.a(), "--src", &src, "--json"];
        if merge {
            args.extend(["--overwrite", "delete"]);
        }
        let p = point.to_string();
        let out = cli_env(&args, &[("XNAT_ARCHIVE_FAULT_POINT", &p)]);
        if out.status.success() {
            assert!(point > 10, "only {point} fault points");
            return point - 1;
        }
        // The process died mid-way: recover, then check.
        let (code, v) = cli_json(&["recover", "--prearchive", site.p(), "--archive", site.a()]);
        assert_eq!(code, 0, "point {point}: {v}");
        let leftovers = site.leftovers();
        assert!(leftovers.is_empty(), "point {point}: {leftovers:?}");
        if session_dir.exists() {
            // Rolled back: the session as it was, READY; the archive as it was.
            assert_eq!(files(&session_dir, &|_| false), incoming_files, "point {point}");
            assert_eq!(files(&target, &|_| false), archived_before, "point {point}");
            assert_eq!(site.status(&src).as_deref(), Some("READY"), "point {point}");
        } else {
            // Completed: everything in the archive, the row gone.
            assert!(site.status(&src).is_none(), "point {point}");
            let now = files(&target, &not_catalog);
            let renamed = |p: &str| {
                if merge {
                    let id = &incoming.scans[1].id;
                    p.replacen(&format!("SCANS/{id}/"), &format!("SCANS/{id}-MR1/"), 1)
                } else {
                    p.to_string()
                }
            };
            let mut expected: BTreeMap<String, String> =
                archived_before.into_iter().filter(|(p, _)| !not_catalog(p)).collect();
            for (p, h) in incoming_files.iter().filter(|(p, _)| !not_catalog(p)) {
                expected.insert(renamed(p), h.clone());
            }
            assert_eq!(now, expected, "point {point}");
            assert!(site.arch.join("DEMO/arc001/CRASH.xml").is_file());
        }
        point += 1;
    }
}

#[test]
fn killed_at_every_step_of_a_new_archive_then_recovered() {
    let points = crash_everywhere(false);
    assert!(points >= 10, "{points}");
}

#[test]
fn killed_at_every_step_of_a_merge_then_recovered() {
    let points = crash_everywhere(true);
    assert!(points >= 10, "{points}");
}

/// A file that appears in the experiment after the plan, where an incoming file is about to move, is never
/// replaced: the host's rename refuses it, the archive stops with a conflict and every moved file goes back.
#[test]
fn a_file_that_appears_where_a_file_moves_stops_the_archive_and_is_never_replaced() {
    let site = Site::new();
    // An archived experiment with scan 1, then a session of it with the other scans: their files move one by
    // one into new scan folders of the experiment.
    let mut first = spec("DEMO", "APPEAR", Modality::Mr, 51);
    first.timestamp = "20240707_101010101".into();
    first.scans.truncate(1);
    assert_eq!(site.archive(&[&site.add(&first)], &[]).0, 0);
    let mut incoming = spec("DEMO", "APPEAR", Modality::Mr, 51);
    incoming.scans.remove(0);
    let src = site.add(&incoming);
    let session_dir = site.pre.join(format!("DEMO/{}/APPEAR", incoming.timestamp));
    let before = files(&session_dir, &|_| false);
    let target = site.arch.join("DEMO/arc001/APPEAR");
    let archived_before = files(&target, &|_| false);

    let args =
        ["archive", "--prearchive", site.p(), "--archive", site.a(), "--src", &src, "--json", "--overwrite", "append"];
    let archive = std::process::Command::new(env!("CARGO_BIN_EXE_xnat-archive"))
        .args(args)
        .env("XNAT_ARCHIVE_PAUSE_BEFORE_MOVES_MS", "1500")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The journal is written (the plan is made) before the pause: then a file appears where the last incoming
    // file of the last scan goes.
    let journal = incoming.timestamp_dir(&site.pre).join(".APPEAR.journal");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !journal.exists() {
        assert!(std::time::Instant::now() < deadline, "the archive never wrote its journal");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let last = incoming.scans.last().unwrap();
    let dest = target.join(SessionSpec::dicom_dir(last)).join(generator::file_name(&incoming, last, last.files));
    fs::create_dir_all(dest.parent().unwrap()).unwrap();
    fs::write(&dest, b"written by someone else meanwhile").unwrap();
    let out = archive.wait_with_output().unwrap();
    let v = json_of(&out);
    assert_ne!(out.status.code(), Some(0), "{v}");
    assert_eq!(one(&v).1.as_deref(), Some("conflict"), "{v}");
    assert!(v.to_string().contains("appeared in the archive"), "{v}");

    assert_eq!(fs::read(&dest).unwrap(), b"written by someone else meanwhile", "never replaced");
    assert_eq!(files(&session_dir, &|_| false), before, "every moved file went back, bytes unchanged");
    let mut expected = archived_before;
    let rel = dest.strip_prefix(&target).unwrap().to_string_lossy().into_owned();
    expected.insert(rel.clone(), files(&target, &|_| false)[&rel].clone());
    assert_eq!(files(&target, &|_| false), expected, "the experiment as it was, and the file that appeared");
    assert_eq!(site.status(&src).as_deref(), Some("CONFLICT"));
    assert!(site.leftovers().is_empty(), "{:?}", site.leftovers());
}
