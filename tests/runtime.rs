//! The host's own guarantees, through the real component: read-only grants refuse writes, limits stop the
//! component, and a runtime can be shared between threads.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use xnat_archive::{
    Grant, Limits, NoProgress, RefreshMode, RefreshRequest, ResourceOutcome, ResourceSpec, Runtime, demo,
};

fn demo_site() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    demo::write_site(dir.path()).unwrap();
    dir
}

/// Every file under `root` with its bytes, sorted.
fn snapshot(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push((path.strip_prefix(root).unwrap().display().to_string(), fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn request(mode: RefreshMode) -> RefreshRequest {
    RefreshRequest { resources: vec![demo::EXPERIMENT.into()], mode, ..Default::default() }
}

#[test]
fn runtime_is_shareable() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Runtime>();
}

#[test]
fn read_only_grant_refuses_writes() {
    let site = demo_site();
    let before = snapshot(site.path());
    let runtime = Runtime::new().unwrap();
    let grants = [Grant::archive(site.path(), false)];

    // An apply-mode refresh that has changes to write, under a read-only grant.
    let result = runtime.refresh(&grants, &Limits::default(), request(RefreshMode::Apply), NoProgress).unwrap();
    if let Ok(reports) = &result {
        for r in reports {
            assert!(!matches!(r.outcome, ResourceOutcome::Written), "a write succeeded under a read-only grant: {r:?}");
        }
    }
    let created = runtime
        .create_resource(
            &grants,
            &Limits::default(),
            ResourceSpec {
                resource: "/data/archive/projects/DEMO/subjects/SUBJ1/experiments/MR1/resources/NEW".into(),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(created.is_err(), "create-resource succeeded under a read-only grant: {created:?}");
    assert_eq!(snapshot(site.path()), before, "the archive changed under a read-only grant");

    // The same refresh with a writable grant does write.
    let grants = [Grant::archive(site.path(), true)];
    let reports =
        runtime.refresh(&grants, &Limits::default(), request(RefreshMode::Apply), NoProgress).unwrap().unwrap();
    assert!(reports.iter().any(|r| matches!(r.outcome, ResourceOutcome::Written)), "{reports:?}");
    assert_ne!(snapshot(site.path()), before);
}

#[test]
fn nothing_but_the_grant_is_visible() {
    let site = demo_site();
    let runtime = Runtime::new().unwrap();
    // Granted somewhere else than /archive: the component finds no archive.
    let grants = [Grant::read_only(site.path(), "/elsewhere")];
    let result = runtime.refresh(&grants, &Limits::default(), request(RefreshMode::Verify), NoProgress).unwrap();
    let failed = match result {
        Err(_) => true,
        Ok(reports) => reports.iter().all(|r| matches!(r.outcome, ResourceOutcome::Failed { .. })),
    };
    assert!(failed, "the component reached an archive it was not granted");
}

#[test]
fn memory_limit_stops_the_component() {
    let site = demo_site();
    let runtime = Runtime::new().unwrap();
    let limits = Limits { memory_bytes: 64 << 10, timeout: None };
    let err = runtime
        .refresh(&[Grant::archive(site.path(), false)], &limits, request(RefreshMode::Verify), NoProgress)
        .unwrap_err();
    assert!(format!("{err:#}").contains("out of memory"), "{err:#}");
}

#[test]
fn timeout_stops_the_component() {
    let site = demo_site();
    // Enough data that hashing it takes far longer than the timeout.
    let dicom = site.path().join("DEMO/arc001/MR1/SCANS/2/DICOM");
    let block: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    for i in 0..96 {
        fs::write(dicom.join(format!("big{i}.dcm")), &block).unwrap();
    }
    let runtime = Runtime::new().unwrap();
    let limits = Limits { timeout: Some(Duration::from_millis(1)), ..Limits::default() };
    let start = Instant::now();
    let err = runtime
        .refresh(&[Grant::archive(site.path(), false)], &limits, request(RefreshMode::Verify), NoProgress)
        .unwrap_err();
    assert!(format!("{err:#}").contains("time limit"), "{err:#}");
    assert!(start.elapsed() < Duration::from_secs(5), "stopped only after {:?}", start.elapsed());

    // The runtime is still usable after a trapped call.
    let limits = Limits { timeout: Some(Duration::from_secs(60)), ..Limits::default() };
    let reports = runtime
        .refresh(&[Grant::archive(site.path(), false)], &limits, request(RefreshMode::Verify), NoProgress)
        .unwrap()
        .unwrap();
    assert!(!reports.is_empty());
}
