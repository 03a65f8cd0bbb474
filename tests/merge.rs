//! The archive's merge against its floor (issue 11, P3): archiving a session whose files join an experiment's
//! existing scan folder (`overwrite=append`: each file renamed on its own, the two catalogs merged), through
//! the real `xnat-archive` command line and component, against rename(2) in a loop over as many files between
//! two folders of the same file system.
//!
//! Both are measured in interleaved rounds, each on a fresh copy of one site (the order alternating from round
//! to round, the disk synced before each), so that the machine's hour weighs on both alike; the report gives
//! the minimum and the median of each and their ratios (the bound: 2). Each merge is checked (every
//! file of both sessions in the scan folder, one catalog listing them all) before its time counts.
//!
//! The test command runs 200 files in 3 rounds; `bench/merge.sh` 10,000 files in 15 (`XNAT_MERGE_FILES`,
//! `XNAT_MERGE_ROUNDS`).
//!
//! And P3's last bound: an archive into an empty place and a merge take the same time whatever the files'
//! sizes (within 1.2×): the same number of files of each size (`XNAT_SIZE_BYTES`, comma-separated; the test
//! command 1 KiB and 64 KiB, 50 files, 3 rounds; `bench/merge.sh` 1 KiB and 1 MiB, 1,000 files, 7 rounds:
//! `XNAT_SIZE_FILES`, `XNAT_SIZE_ROUNDS`), interleaved by round. A round's site is a copy whose DICOM files are
//! links to the template's (an archive renames them and never writes into them; every other file is copied).
//!
//! The reports (markdown) go to stdout (`--nocapture`).

mod common;

use common::*;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use xnat_archive::generator::{self, Modality, SessionSpec};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).map_or(default, |v| v.trim().parse().unwrap_or_else(|_| panic!("{name}: a count")))
}

/// Runs a command that must succeed.
fn run(program: &str, args: &[&Path]) {
    let status = Command::new(program).args(args).status().unwrap();
    assert!(status.success(), "{program} {args:?}: {status}");
}

/// A generated site at `template` (`prearchive`, `archive`) with one more session in the prearchive: an
/// experiment `label` of project DEMO whose one scan holds `n` files of `size` bytes.
fn write_template(template: &Path, label: &str, n: usize, size: usize) -> SessionSpec {
    let (pre, arc) = (template.join("prearchive"), template.join("archive"));
    generator::write_site(&pre, &arc).unwrap();
    let mut first = SessionSpec::new(Some("DEMO"), label, Modality::Mr, 4242);
    first.label = Some(label.into());
    first.scans.truncate(1);
    first.scans[0].files = n;
    first.scans[0].file_size = size;
    generator::write_session(&pre, &first).unwrap();
    first
}

fn min_and_median(mut times: Vec<Duration>) -> (Duration, Duration) {
    times.sort();
    let n = times.len();
    let median = if n % 2 == 1 { times[n / 2] } else { (times[n / 2 - 1] + times[n / 2]) / 2 };
    (times[0], median)
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

#[test]
fn a_merge_against_a_rename_loop_in_interleaved_rounds() {
    let (n, rounds) = (env_or("XNAT_MERGE_FILES", 200), env_or("XNAT_MERGE_ROUNDS", 3));
    assert!(n > 0 && rounds > 0, "XNAT_MERGE_FILES and XNAT_MERGE_ROUNDS must be at least 1");
    let dir = tempfile::tempdir().unwrap();

    // The site every round starts from: an experiment whose one scan holds n files, archived; a second
    // session of it with n other instances of the same series, in the prearchive.
    let template = dir.path().join("template");
    let (pre, arc) = (template.join("prearchive"), template.join("archive"));
    let first = write_template(&template, "MERGE_MR1", n, 1024);
    let (p, a) = (pre.to_str().unwrap(), arc.to_str().unwrap());
    cli_timed(&["archive", "--prearchive", p, "--archive", a, "--src", &site::src(&first)], |v| {
        assert!(v.to_string().contains("/experiments/MERGE_MR1") && !v.to_string().contains("\"error\":{"), "{v}");
    });
    let more = site::other_instances(&pre, &first, 4343);
    let scan = |arc: &Path| arc.join("DEMO/arc001/MERGE_MR1/SCANS").join(&more.scans[0].id).join("DICOM");
    let incoming = |pre: &Path| more.session_dir(pre).join("SCANS").join(&more.scans[0].id).join("DICOM");
    let names: Vec<_> = fs::read_dir(incoming(&pre)).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), n + 1, "the incoming scan folder: n files and the catalog");

    let (mut merges, mut loops) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let copy = dir.path().join(format!("round-{round}"));
        run("cp", &[Path::new("-a"), &template, &copy]);
        let (pre, arc) = (copy.join("prearchive"), copy.join("archive"));
        // The baseline's files: links to the incoming ones, in a folder of their own.
        let (from, to) = (copy.join("rename-from"), copy.join("rename-to"));
        fs::create_dir_all(&from).unwrap();
        fs::create_dir_all(&to).unwrap();
        for name in &names {
            fs::hard_link(incoming(&pre).join(name), from.join(name)).unwrap();
        }
        run("sync", &[]);
        let rename_loop = || {
            let started = Instant::now();
            for name in &names {
                fs::rename(from.join(name), to.join(name)).unwrap();
            }
            started.elapsed()
        };
        let (p, a) = (pre.to_str().unwrap(), arc.to_str().unwrap());
        let src = site::src(&more);
        let args = ["archive", "--prearchive", p, "--archive", a, "--src", &src, "--overwrite", "append"];
        let merge = || {
            cli_timed(&args, |v| {
                assert!(
                    v.to_string().contains("/experiments/MERGE_MR1") && !v.to_string().contains("\"error\":{"),
                    "{v}"
                )
            })
        };
        if round % 2 == 0 {
            merges.push(merge());
            loops.push(rename_loop());
        } else {
            loops.push(rename_loop());
            merges.push(merge());
        }
        // Every file of both sessions arrived, and the one catalog lists them all.
        let folder: Vec<_> = fs::read_dir(scan(&arc)).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(folder.len(), 2 * n + 1, "every file of both sessions, one catalog");
        let catalog = folder.iter().find(|f| f.extension().is_some_and(|e| e == "xml")).expect("the catalog");
        let cat = xnat_core::model::catalog::Catalog::parse(&fs::read(catalog).unwrap()).unwrap();
        assert_eq!(cat.entry_locs().len(), 2 * n, "the merged catalog lists every file");
        assert_eq!(fs::read_dir(&to).unwrap().count(), n + 1, "the loop renamed every file");
        fs::remove_dir_all(&copy).unwrap();
    }

    let ((merge_min, merge_med), (loop_min, loop_med)) = (min_and_median(merges.clone()), min_and_median(loops));
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "\nMerge: {n} files into an experiment's scan folder, {rounds} interleaved rounds.\n\n\
         | work | min ms | median ms |\n|---|---:|---:|\n\
         | rename(2) in a loop over the files (baseline) | {} | {} |\n\
         | `xnat-archive archive --overwrite append` (process start and component included) | {} | {} |\n\n\
         Merge / rename loop: {:.2} (medians), {:.2} (minimums); P3's bound: 2.\n\
         Each round's merge ms: {}.",
        ms(loop_min),
        ms(loop_med),
        ms(merge_min),
        ms(merge_med),
        ratio(merge_med, loop_med),
        ratio(merge_min, loop_min),
        merges.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(", ")
    );
}

/// A copy of `template` at `copy` whose DICOM files are hard links to the template's, every other file copied.
fn linked_copy(template: &Path, copy: &Path) {
    run("cp", &[Path::new("-al"), template, copy]);
    let mut folders = vec![copy.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_none_or(|e| e != "dcm") {
                let bytes = fs::read(&path).unwrap();
                fs::remove_file(&path).unwrap();
                fs::write(&path, bytes).unwrap();
            }
        }
    }
}

#[test]
fn archive_and_merge_times_do_not_depend_on_file_sizes() {
    let (n, rounds) = (env_or("XNAT_SIZE_FILES", 50), env_or("XNAT_SIZE_ROUNDS", 3));
    let sizes: Vec<usize> = std::env::var("XNAT_SIZE_BYTES")
        .unwrap_or_else(|_| "1024,65536".into())
        .split(',')
        .map(|s| s.trim().parse().expect("XNAT_SIZE_BYTES: comma-separated byte counts"))
        .collect();
    assert!(n > 0 && rounds > 0 && sizes.len() >= 2, "at least one file, one round and two sizes");
    let dir = tempfile::tempdir().unwrap();

    // A template per size: a session of n files of that size, and a second session of the same experiment
    // with n other instances, both in the prearchive.
    let templates: Vec<(std::path::PathBuf, SessionSpec, SessionSpec)> = sizes
        .iter()
        .map(|&size| {
            let template = dir.path().join(format!("template-{size}"));
            let first = write_template(&template, "SIZED_MR1", n, size);
            let more = site::other_instances(&template.join("prearchive"), &first, 4343);
            (template, first, more)
        })
        .collect();
    let (mut empty_place, mut merges) = (vec![Vec::new(); sizes.len()], vec![Vec::new(); sizes.len()]);
    for round in 0..rounds {
        let order: Vec<usize> =
            if round % 2 == 0 { (0..sizes.len()).collect() } else { (0..sizes.len()).rev().collect() };
        for k in order {
            let (template, first, more) = &templates[k];
            let copy = dir.path().join(format!("round-{round}-{k}"));
            linked_copy(template, &copy);
            run("sync", &[]);
            let (pre, arc) = (copy.join("prearchive"), copy.join("archive"));
            let (p, a) = (pre.to_str().unwrap(), arc.to_str().unwrap());
            let archived = |v: &serde_json::Value| {
                assert!(
                    v.to_string().contains("/experiments/SIZED_MR1") && !v.to_string().contains("\"error\":{"),
                    "{v}"
                )
            };
            empty_place[k]
                .push(cli_timed(&["archive", "--prearchive", p, "--archive", a, "--src", &site::src(first)], archived));
            let (src, append) = (site::src(more), "append");
            let args = ["archive", "--prearchive", p, "--archive", a, "--src", &src, "--overwrite", append];
            merges[k].push(cli_timed(&args, archived));
            let scan = arc.join("DEMO/arc001/SIZED_MR1/SCANS").join(&more.scans[0].id).join("DICOM");
            let files: Vec<_> = fs::read_dir(&scan).unwrap().map(|e| e.unwrap().path()).collect();
            assert_eq!(files.len(), 2 * n + 1, "every file of both sessions, one catalog");
            let dcm = files.iter().find(|f| f.extension().is_some_and(|e| e == "dcm")).unwrap();
            assert!(fs::metadata(dcm).unwrap().len() >= sizes[k] as u64, "files of {} bytes", sizes[k]);
            fs::remove_dir_all(&copy).unwrap();
        }
    }

    let mut report = format!(
        "\nMerge and archive by file size: {n} files of each size, {rounds} interleaved rounds.\n\n\
         | file size (bytes) | into an empty place: min / median ms | merge: min / median ms |\n|---:|---:|---:|\n"
    );
    let medians: Vec<(Duration, Duration)> = (0..sizes.len())
        .map(|k| {
            let ((e_min, e_med), (m_min, m_med)) =
                (min_and_median(empty_place[k].clone()), min_and_median(merges[k].clone()));
            report += &format!("| {} | {} / {} | {} / {} |\n", sizes[k], ms(e_min), ms(e_med), ms(m_min), ms(m_med));
            (e_med, m_med)
        })
        .collect();
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    let (small, large) = (medians[0], medians[medians.len() - 1]);
    report += &format!(
        "\nLargest / smallest files, medians: into an empty place {:.2}, merge {:.2}; P3's bound: 1.2.\n\
         Each round's ms (into an empty place, merge) by size: {}.",
        ratio(large.0, small.0),
        ratio(large.1, small.1),
        (0..sizes.len())
            .map(|k| format!(
                "{}: {}",
                sizes[k],
                empty_place[k]
                    .iter()
                    .zip(&merges[k])
                    .map(|(e, m)| format!("{}/{}", ms(*e), ms(*m)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );
    println!("{report}");
}
