//! Getting data in, end to end: `xnat-archive import` and `prearchive commit` through the library
//! component, and `POST /data/services/import` through `serve` — a 2 GiB zip streamed under a 512 MiB
//! memory cap, and an upload whose client goes away mid-body. (xnatpy and pyxnat import pydicom's own test
//! files in `tests/clients.rs`.)

mod common;

use std::io::{Read, Write};
use std::path::Path;

use common::http::basic;
use common::server::{Server, TenantSpec};
use xnat_core::receive::samples::{dicom, zip_of};

const PASSWORD: &str = "import-pw-1";

/// Every prearchive session folder (`PROJECT/TIMESTAMP/FOLDER`) with its status from the CLI's listing.
fn rows(pre: &Path) -> Vec<(String, String)> {
    let (code, v) = common::cli_json(&["prearchive", "list", "--prearchive", pre.to_str().unwrap()]);
    assert_eq!(code, 0, "{v}");
    v["ResultSet"]["Result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["url"].as_str().unwrap().to_string(), r["status"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn the_cli_imports_zips_and_gradual_files_through_the_component() {
    let dir = tempfile::tempdir().unwrap();
    let (pre, arch) = (dir.path().join("pre"), dir.path().join("arch"));
    std::fs::create_dir_all(&pre).unwrap();
    std::fs::create_dir_all(arch.join("DEMO")).unwrap();
    let a: Vec<Vec<u8>> = (1..=3).map(|n| dicom("1.4.1", "1.4.1.1", "2", n, "MR", "SUBJ1")).collect();
    let b = dicom("1.4.2", "1.4.2.1", "5", 1, "CT", "SUBJ2");
    let zip = dir.path().join("upload.zip");
    std::fs::write(
        &zip,
        zip_of(&[("a/1.dcm", &a[0]), ("a/2.dcm", &a[1]), ("a/3.dcm", &a[2]), ("b.dcm", &b), ("x.txt", b"x")]),
    )
    .unwrap();
    let p = pre.to_str().unwrap();
    let (code, v) =
        common::cli_json(&["import", zip.to_str().unwrap(), "--prearchive", p, "--archive", arch.to_str().unwrap()]);
    assert_eq!(code, 0, "{v}");
    let out = &v["import"];
    assert_eq!((out["files"].as_u64(), out["refused"][0]["file"].as_str()), (Some(4), Some("x.txt")), "{v}");
    // The headers name project DEMO (study description), which the archive has.
    let sessions = rows(&pre);
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    assert!(
        sessions.iter().all(|(url, status)| url.starts_with("/prearchive/projects/DEMO/") && status == "READY"),
        "{sessions:?}"
    );
    // Every file is in its session byte for byte.
    let mr = sessions.iter().find(|(u, _)| u.ends_with("/SUBJ1_MR1")).unwrap();
    let folder = pre.join(mr.0.trim_start_matches("/prearchive/projects/"));
    let files = common::snapshot(&folder.join("SCANS/2/DICOM"));
    let mut got: Vec<&String> = files.iter().filter(|(p, _)| p.ends_with(".dcm")).map(|(_, m)| m).collect();
    let mut want: Vec<String> = a.iter().map(|f| common::md5_hex(f)).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want.iter().collect::<Vec<_>>());

    // gradual-DICOM, one file per call: RECEIVING until `prearchive commit`.
    let g = dicom("1.4.3", "1.4.3.1", "1", 1, "MR", "SUBJ3");
    let single = dir.path().join("one.dcm");
    std::fs::write(&single, &g).unwrap();
    let (code, v) = common::cli_json(&[
        "import",
        single.to_str().unwrap(),
        "--prearchive",
        p,
        "--project",
        "DEMO",
        "--handler",
        "gradual-DICOM",
    ]);
    assert_eq!(code, 0, "{v}");
    let uri = v["import"]["uris"][0].as_str().unwrap().to_string();
    let src = uri.trim_start_matches("/data");
    assert!(rows(&pre).contains(&(src.to_string(), "RECEIVING".to_string())), "{:?}", rows(&pre));
    let out = common::cli(&["prearchive", "commit", "--prearchive", p, "--src", &uri]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(rows(&pre).contains(&(src.to_string(), "READY".to_string())));

    // A zip with a path that leaves the folder: refused whole (exit 2), nothing new in the prearchive.
    let before = common::snapshot(&pre);
    let evil = dir.path().join("evil.zip");
    std::fs::write(&evil, zip_of(&[("ok.dcm", &b), ("../../outside.dcm", &b)])).unwrap();
    let out = common::cli(&["import", evil.to_str().unwrap(), "--prearchive", p]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("outside the upload"));
    assert_eq!(common::snapshot(&pre), before);
    assert!(!dir.path().join("outside.dcm").exists());
}

/// A DICOM file of `pixels` bytes of pixel data (explicit VR little endian), written to `out` as it is made.
fn big_dicom(out: &mut dyn Write, n: u32, pixels: u64) -> std::io::Result<()> {
    let small = dicom("1.9.9", "1.9.9.1", "3", n, "MR", "BIG");
    // The generated file ends with its pixel data: the header (tag, VR, reserved, length) and 512 bytes.
    let head = &small[..small.len() - 512 - 12];
    out.write_all(head)?;
    out.write_all(b"\xe0\x7f\x10\x00OW\x00\x00")?;
    out.write_all(&(pixels as u32).to_le_bytes())?;
    let chunk: Vec<u8> = (0..1 << 20).map(|i| (i * 7 + n as usize) as u8).collect();
    let mut left = pixels;
    while left > 0 {
        let take = left.min(chunk.len() as u64) as usize;
        out.write_all(&chunk[..take])?;
        left -= take as u64;
    }
    Ok(())
}

#[test]
fn a_two_gib_upload_streams_to_disk_under_a_512_mib_cap() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::server::configure(dir.path(), &[TenantSpec::with("A", "memory_mib = 512")], PASSWORD);
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    const FILES: u32 = 16;
    const PIXELS: u64 = 128 << 20;
    // The zip is made as it is sent: a writer thread, a pipe, the request body.
    let (mut reader, writer) = std::io::pipe().unwrap();
    let maker = std::thread::spawn(move || {
        let mut zip = zip::ZipWriter::new_stream(writer);
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        for n in 1..=FILES {
            zip.start_file(format!("big/{n}.dcm"), opts).unwrap();
            big_dicom(&mut zip, n, PIXELS).unwrap();
        }
        zip.finish().unwrap();
    });
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut response = agent
        .post(server.url(
            "/A/data/services/import?import-handler=DICOM-zip&project=DEMO&subject=BIG&session=BIG_MR&format=json",
        ))
        .header("Authorization", &basic("admin", PASSWORD))
        .header("Content-Type", "application/zip")
        .send(ureq::SendBody::from_reader(&mut reader))
        .expect("an answer");
    maker.join().unwrap();
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap();
    assert_eq!(status, 200, "{body}\n{}", server.log());
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["files"], FILES, "{v}");
    let uri = v["uris"][0].as_str().unwrap();
    let folder = dir.path().join("A/prearchive").join(uri.trim_start_matches("/data/prearchive/projects/"));
    let dicom_dir = folder.join("SCANS/3/DICOM");
    let sizes: u64 = std::fs::read_dir(&dicom_dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".dcm"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(sizes > u64::from(FILES) * PIXELS, "{sizes}");
    // Spot-check one file's bytes against a fresh copy of what was sent.
    let mut want = Vec::new();
    big_dicom(&mut want, 1, PIXELS).unwrap();
    let entry = common::entries(&dicom_dir.join("scan_3_catalog.xml"))
        .into_values()
        .find(|e| e.attr("instanceNumber") == Some("1"))
        .unwrap();
    assert_eq!(entry.attr("digest"), Some(common::md5_hex(&want).as_str()));
    let mut got = Vec::new();
    std::fs::File::open(dicom_dir.join(entry.attr("URI").unwrap())).unwrap().read_to_end(&mut got).unwrap();
    assert!(got == want, "the file arrived byte for byte");
    assert!(!server.log().contains("memory"), "{}", server.log());
    assert!(std::fs::read_dir(dir.path().join("A/prearchive/.xnat-archive/uploads")).unwrap().next().is_none());
}

#[test]
fn an_upload_whose_client_goes_away_mid_body_imports_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::server::configure(dir.path(), &[TenantSpec::new("A")], PASSWORD);
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    let pre = dir.path().join("A/prearchive");
    let before = common::snapshot(&pre);
    let files: Vec<Vec<u8>> = (1..=40).map(|n| dicom("1.3.3", "1.3.3.1", "1", n, "MR", "CUT")).collect();
    let named: Vec<(String, &[u8])> = files.iter().enumerate().map(|(i, f)| (format!("{i}.dcm"), &f[..])).collect();
    let refs: Vec<(&str, &[u8])> = named.iter().map(|(n, f)| (n.as_str(), *f)).collect();
    let zip = zip_of(&refs);
    let mut stream = std::net::TcpStream::connect(server.address()).unwrap();
    let head = format!(
        "POST /A/data/services/import?project=DEMO HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Type: application/zip\r\nContent-Length: {}\r\n\r\n",
        basic("admin", PASSWORD),
        zip.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&zip[..zip.len() / 2]).unwrap();
    stream.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    drop(stream);
    // The request ends (the server answers or drops it): its staging folder was made (the uploads folder
    // exists only once an upload began) and is gone again; then nothing of it is in the prearchive.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let uploads = pre.join(".xnat-archive/uploads");
    let done = || uploads.read_dir().is_ok_and(|mut d| d.next().is_none());
    while !done() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(done(), "the upload's staging folder was not made and removed within a minute\n{}", server.log());
    let after = common::snapshot(&pre);
    let new: Vec<&String> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    assert!(new.iter().all(|k| k.starts_with(".xnat-archive/")), "left behind: {new:?}\n{}", server.log());
    assert!(uploads.read_dir().map_or(true, |mut d| d.next().is_none()), "the staging folder is emptied");
    // The server still serves, and a whole upload of the same zip then succeeds.
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut response = agent
        .post(server.url("/A/data/services/import?project=DEMO"))
        .header("Authorization", &basic("admin", PASSWORD))
        .send(&zip[..])
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "{}", response.body_mut().read_to_string().unwrap());
}
