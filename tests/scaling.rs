//! Scaling (issue 11, P8): the cost of a refresh, an archive and a prearchive listing as the work grows
//! tenfold, each through the real `xnat-archive` command line and component, with its time per file (or
//! session) so that a step worse than linear shows as a growing column.
//!
//! The test command runs sizes 100 and 1,000; `bench/scaling.sh` 1,000, 10,000 and 100,000 (set by
//! `XNAT_SCALING_SIZES`, comma-separated). Each result is checked (entry counts, files archived, rows listed)
//! before its time counts. The archives are measured on three sessions (and merges into three experiments), and
//! the best run counts, as the best run of their baselines does. The report (markdown) goes to stdout (`--nocapture`).

mod common;

use common::*;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};
use xnat_archive::generator::{self, Modality, SessionSpec};

/// How many times each archive is measured (on as many sessions): its best run counts, as the baselines' do.
const RUNS: usize = 3;

/// An archive with project P and experiment E1 whose resource R holds `files` files of 1 KiB in folders of
/// 1,000; returns the resource's URI.
fn resource_of(archive: &Path, files: usize) -> String {
    fs::create_dir_all(archive.join("P/subjects")).unwrap();
    fs::write(
        archive.join("P/subjects/S1.xml"),
        r#"<xnat:Subject xmlns:xnat="http://nrg.wustl.edu/xnat" ID="XNAT_S00001" project="P" label="S1"/>"#,
    )
    .unwrap();
    fs::create_dir_all(archive.join("P/arc001/E1")).unwrap();
    fs::write(
        archive.join("P/arc001/E1.xml"),
        r#"<xnat:MRSession xmlns:xnat="http://nrg.wustl.edu/xnat" ID="XNAT_E00001" project="P" label="E1"><xnat:subject_ID>XNAT_S00001</xnat:subject_ID></xnat:MRSession>"#,
    )
    .unwrap();
    let res = archive.join("P/arc001/E1/RESOURCES/R");
    for i in 0..files {
        let dir = res.join(format!("d{}", i / 1000));
        if i % 1000 == 0 {
            fs::create_dir_all(&dir).unwrap();
        }
        fs::write(dir.join(format!("f{i:06}.dat")), format!("{i:01024}")).unwrap();
    }
    "/archive/projects/P/subjects/S1/experiments/E1/resources/R".into()
}

/// One report's counts must be as given.
fn added_and_count(v: &serde_json::Value, added: usize, count: usize) {
    let r = &v["reports"][0];
    assert_eq!(r["added"].as_array().map(Vec::len), Some(added), "{v}");
    assert_eq!(r["file_count"].as_u64(), Some(count as u64), "{v}");
}

fn us_per(d: Duration, n: usize) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6 / n as f64)
}

#[test]
fn refresh_archive_and_listing_scale_linearly() {
    let sizes: Vec<usize> = std::env::var("XNAT_SCALING_SIZES")
        .unwrap_or_else(|_| "100,1000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("XNAT_SCALING_SIZES: comma-separated counts"))
        .collect();
    let mut report = String::from(
        "Scaling: wall time of one `xnat-archive` run (process start and component included), and per unit.\n\n\
         | work | units | s | µs per unit |\n|---|---:|---:|---:|\n",
    );
    let mut ratios = String::new();
    let mut row = |work: &str, n: usize, d: Duration| {
        report += &format!("| {work} | {n} | {:.3} | {} |\n", d.as_secs_f64(), us_per(d, n));
    };
    // Untimed: the first run of a new build compiles the component into wasmtime's cache.
    let warm = tempfile::tempdir().unwrap();
    assert!(cli(&["prearchive", "list", "--prearchive", warm.path().to_str().unwrap()]).status.success());
    for &n in &sizes {
        // Refresh: a first one (no catalog: every file added and hashed), an unchanged walk, a re-hash.
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("archive");
        let uri = resource_of(&archive, n);
        let a = archive.to_str().unwrap();
        let refresh =
            |options: &str| ["refresh", "--archive", a, "--resource", &uri, "--options", options].map(String::from);
        let run = |args: [String; 7], check: &dyn Fn(&serde_json::Value)| {
            cli_timed(&args.iter().map(String::as_str).collect::<Vec<_>>(), check)
        };
        row(
            "refresh `append,checksum`, no catalog yet",
            n,
            run(refresh("append,checksum"), &|v| added_and_count(v, n, n)),
        );
        row("refresh `append,delete`, unchanged", n, run(refresh("append,delete"), &|v| added_and_count(v, 0, n)));
        row(
            "refresh `checksum`, unchanged (every file hashed)",
            n,
            run(refresh("checksum"), &|v| added_and_count(v, 0, n)),
        );
        drop(dir);

        // Archive: sessions whose one scan holds n files, each into an empty place in a project; then a second
        // session of each experiment merged into it. Both sides of each ratio are the best of RUNS: three
        // experiments, each archived and merged once (an archive cannot run twice on one session), against
        // `find` and the rename loop over each.
        let dir = tempfile::tempdir().unwrap();
        let (pre, arc) = (dir.path().join("prearchive"), dir.path().join("archive"));
        generator::write_site(&pre, &arc).unwrap();
        let (p, a) = (pre.to_str().unwrap().to_string(), arc.to_str().unwrap().to_string());
        let firsts: Vec<SessionSpec> = (0..RUNS)
            .map(|k| {
                let label = format!("BIG_MR{}", k + 1);
                let mut spec = SessionSpec::new(Some("DEMO"), &label, Modality::Mr, 4242 + k as u64);
                spec.label = Some(label);
                spec.scans.truncate(1);
                spec.scans[0].files = n;
                spec.scans[0].file_size = 1024;
                generator::write_session(&pre, &spec).unwrap();
                spec
            })
            .collect();
        let (mut baseline, mut took) = (Duration::MAX, Duration::MAX);
        for spec in &firsts {
            // The baseline of P3: listing and stat-ing the session's files natively (warm, as the archive runs).
            let session = spec.session_dir(&pre);
            let find = || {
                let started = Instant::now();
                let out = std::process::Command::new("find").arg(&session).args(["-printf", "%s\n"]).output().unwrap();
                assert!(out.status.success() && out.stdout.split(|b| *b == b'\n').count() > n, "find lists every file");
                started.elapsed()
            };
            find();
            baseline = baseline.min(find()).min(find());
            let src = format!("/prearchive/projects/DEMO/{}/{}", spec.timestamp, spec.folder);
            let label = spec.folder.clone();
            took = took.min(cli_timed(&["archive", "--prearchive", &p, "--archive", &a, "--src", &src], |v| {
                assert!(v.to_string().contains(&format!("/experiments/{label}")), "{v}");
            }));
            let scan = arc.join("DEMO/arc001").join(&spec.folder).join("SCANS").join(&spec.scans[0].id).join("DICOM");
            assert_eq!(fs::read_dir(&scan).unwrap().count(), n + 1, "every file and the catalog arrived");
        }
        row("`find -printf '%s'` over the session (baseline)", n, baseline);
        row("archive one session into an empty place", n, took);
        ratios += &format!(
            "- {n} files: archive into an empty place / `find` over the session = {:.1}\n",
            took.as_secs_f64() / baseline.as_secs_f64()
        );

        // Merge: a second session of each experiment holding n other instances of the same series, archived
        // with overwrite=append: each file moves on its own into the existing scan folder and the two catalogs
        // merge. (Written as instances 1..=2n, the first n then dropped with their entries.) The baseline of
        // P3: rename(2) in a loop over as many files, between two folders of one file system.
        let mores: Vec<SessionSpec> =
            firsts.iter().enumerate().map(|(k, spec)| site::other_instances(&pre, spec, 4343 + k as u64)).collect();
        let (mut renames, mut took) = (Duration::MAX, Duration::MAX);
        for (k, more) in mores.iter().enumerate() {
            let incoming = more.session_dir(&pre).join("SCANS").join(&more.scans[0].id).join("DICOM");
            let (from, to) = (dir.path().join(format!("rename-from-{k}")), dir.path().join(format!("rename-to-{k}")));
            fs::create_dir_all(&from).unwrap();
            fs::create_dir_all(&to).unwrap();
            let names: Vec<_> = fs::read_dir(&incoming).unwrap().map(|e| e.unwrap().file_name()).collect();
            for name in &names {
                fs::hard_link(incoming.join(name), from.join(name)).unwrap();
            }
            let started = Instant::now();
            for name in &names {
                fs::rename(from.join(name), to.join(name)).unwrap();
            }
            renames = renames.min(started.elapsed());
            let src = format!("/prearchive/projects/DEMO/{}/{}", more.timestamp, more.folder);
            let label = more.folder.clone();
            took = took.min(cli_timed(
                &["archive", "--prearchive", &p, "--archive", &a, "--src", &src, "--overwrite", "append"],
                |v| {
                    assert!(
                        v.to_string().contains(&format!("/experiments/{label}"))
                            && !v.to_string().contains("\"error\":{"),
                        "{v}"
                    );
                },
            ));
            let scan = arc.join("DEMO/arc001").join(&more.folder).join("SCANS").join(&more.scans[0].id).join("DICOM");
            assert_eq!(fs::read_dir(&scan).unwrap().count(), 2 * n + 1, "every file of both sessions, one catalog");
        }
        row("rename(2) in a loop over the incoming files (baseline)", n, renames);
        row("archive merging them into the experiment", n, took);
        ratios += &format!(
            "- {n} files: archive merging into an experiment / rename loop = {:.1}\n",
            took.as_secs_f64() / renames.as_secs_f64()
        );
        drop(dir);

        // Listing: a prearchive of n sessions (each a document and one scan of one file).
        let dir = tempfile::tempdir().unwrap();
        let pre = dir.path().join("prearchive");
        fs::create_dir_all(&pre).unwrap();
        for i in 0..n as u64 {
            let mut spec = SessionSpec::new(Some("DEMO"), &format!("L{i:06}"), Modality::Mr, 90_000 + i);
            spec.scans.truncate(1);
            spec.scans[0].files = 1;
            generator::write_session(&pre, &spec).unwrap();
        }
        let took = cli_timed(&["prearchive", "list", "--prearchive", pre.to_str().unwrap()], |v| {
            assert_eq!(v["ResultSet"]["Result"].as_array().map(Vec::len), Some(n), "every session listed");
        });
        row("prearchive listing", n, took);
    }
    report += &format!(
        "\nP3 (issue 11: into an empty place at most 3, a merge at most 2):\n\n{ratios}\nSizes run: {sizes:?}.\n"
    );
    println!("{report}");
}
