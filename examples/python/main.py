"""The xnat:archive library component in Python: listing, validation and refresh on a site written by
``xnat-archive demo --dir SITE``, with read-only and read-write grants, and the sandbox put to the test.

    python -m venv venv && venv/bin/pip install -r requirements.txt
    venv/bin/python main.py COMPONENT.wasm SITE [UPLOAD.zip]

COMPONENT.wasm is the library component (``target/guest/wasm32-wasip2/release/xnat_plugin.wasm`` after a
build). With UPLOAD.zip (a zip of DICOM files), it is imported into the site's prearchive (project DEMO).
Prints what each call returned; exits 1 if anything did not behave as expected.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from wasmtime import WasmtimeError

from xnat_archive import ComponentError, Grant, Limits, Progress, XnatArchive, plain

failures = 0


def check(ok: bool, what: str) -> None:
    global failures
    print(f"{'ok  ' if ok else 'FAIL'}  {what}")
    if not ok:
        failures += 1


def brief(report) -> str:
    outcome = report.outcome
    text = f"{'/'.join(report.resource.split('/')[-3:])}: {outcome.tag}"
    if outcome.tag == "failed":
        text += f" ({outcome.payload.tag}: {outcome.payload.payload})"
    if report.added:
        text += f", added {' '.join(report.added)}"
    return text


def attempt(f):
    """(value, None) or (None, the component's error)."""
    try:
        return f(), None
    except ComponentError as e:
        return None, e


def main() -> int:
    if len(sys.argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        return 2
    wasm, site = sys.argv[1], Path(sys.argv[2]).resolve()
    prearchive, archive = str(site / "prearchive"), str(site / "archive")
    lib = XnatArchive(wasm)

    # --- the prearchive listing: /prearchive read-only ------------------------------------------------------
    read_pre = Grant("/prearchive", prearchive, writable=False)
    rows = lib.prearchive_list([read_pre])
    print(f"prearchive.list-sessions → {len(rows)} sessions")
    for row in rows:
        print(f"      {row.project}/{row.timestamp}/{getattr(row, 'folder-name')}  {row.status}")
    check(bool(rows) and all(r.url.startswith("/prearchive/projects/") for r in rows), "the listing has rows with XNAT urls")

    # --- validate-archive: /prearchive and /archive, both read-only ---------------------------------------
    anon = next(r for r in rows if r.project == "Unassigned")
    notices = lib.validate([read_pre, Grant("/archive", archive, writable=False)], anon.url)
    print(f"validation.validate({anon.url}) →")
    for n in notices:
        print(f"      {n.code} {n.kind} {n.message}")
    check(any(n.code == 6 and n.kind == "FAIL" for n in notices), "an Unassigned session cannot be archived (code 6 FAIL)")

    # --- refresh: one directory, /archive, read-only then read-write --------------------------------------
    session = "/archive/projects/DEMO/subjects/SUBJ1/experiments/SUBJ1_MR1"
    scan1 = f"{session}/scans/1/resources/DICOM"
    scan_dir = site / "archive/DEMO/arc001/SUBJ1_MR1/SCANS/1/DICOM"
    catalog = scan_dir / "scan_1_catalog.xml"
    read_arc = [Grant("/archive", archive, writable=False)]
    write_arc = [Grant("/archive", archive, writable=True)]

    reports = lib.refresh(read_arc, [session], mode="verify")
    print("catalogs.refresh(verify, read-only) →")
    for r in reports:
        print(f"      {brief(r)}")
    check(bool(reports) and all(r.outcome.tag == "unchanged" for r in reports), "verify: every catalog matches the disk")

    (scan_dir / "added-by-python.txt").write_text("a file the catalog does not list yet\n")
    before = catalog.read_bytes()
    reports = lib.refresh(read_arc, [scan1], mode="apply")
    print("catalogs.refresh(apply, read-only) →")
    for r in reports:
        print(f"      {brief(r)}")
    check(
        len(reports) == 1 and reports[0].outcome.tag == "failed" and reports[0].outcome.payload.tag == "forbidden",
        "apply under a read-only grant is refused (forbidden)",
    )
    check(catalog.read_bytes() == before, "the catalog is byte-identical after the refused write")

    class Recorded(Progress):
        def __init__(self) -> None:
            self.phases: list[str] = []
            self.units = 0

        def begin(self, phase: str, total: int) -> None:
            self.phases.append(f"{phase} ({total})")

        def advance(self, units: int) -> None:
            self.units += units

    progress = Recorded()
    reports = lib.refresh(write_arc, [scan1], mode="apply", user="python", progress=progress)
    print("catalogs.refresh(apply, read-write) →")
    for r in reports:
        print(f"      {brief(r)}")
    print(f"      progress: {', '.join(progress.phases) or 'none'}; {progress.units} units")
    check(
        len(reports) == 1 and reports[0].outcome.tag == "written" and "added-by-python.txt" in reports[0].added,
        "apply under a read-write grant writes the catalog",
    )
    check("added-by-python.txt" in catalog.read_text(), "the catalog on disk lists the new file")
    check(bool(progress.phases), "the host received progress (xnat:archive/progress)")

    reports = lib.refresh(read_arc, [session], mode="verify")
    check(all(r.outcome.tag == "unchanged" for r in reports), "verify after the write: clean")

    # --- the archived data: scans, resources, files and their bytes, /archive read-only --------------------
    scans = lib.archived_scans(read_arc, session)
    print(f"archive-data.scans({session}) → {[s.id for s in scans]}")
    check(bool(scans) and all(getattr(s, "xsi-type").startswith("xnat:") for s in scans), "the experiment's scans")
    resources = lib.archived_resources(read_arc, f"{session}/scans/1")
    check([r.label for r in resources] == ["DICOM"], "scan 1's resources: DICOM")
    by_id = f"{session}/scans/1/resources/{resources[0].id}"
    files = lib.archived_files(read_arc, by_id)
    check(len(files) == getattr(resources[0], "file-count") and len(files) > 0, "its files, the resource named by ID")
    whole = all(
        lib.archived_read_file(read_arc, scan1, f.name, chunk=700) == (scan_dir / f.name).read_bytes() for f in files
    )
    check(whole, "every file read in 700-byte chunks is byte for byte the file on disk")
    _, error = attempt(lambda: lib.archived_read_file(read_arc, scan1, "scan_1_catalog.xml"))
    check(error is not None and error.kind == "not-found", "a file its catalog does not list cannot be read")

    # --- the sandbox ------------------------------------------------------------------------------------
    # Not granted: with only /archive, the prearchive does not exist for the component.
    _, error = attempt(lambda: lib.prearchive_list(read_arc))
    print(f"prearchive.list-sessions with only /archive granted → {error}")
    check(error is not None, "a directory that is not granted cannot be read")

    # Symbolic links inside the grant that lead out of it (relative and absolute) are not followed; the same
    # tree inside the grant is refreshed (dry-run, nothing written).
    outside = site / "outside-the-grant"
    (outside / "resources/NOTES").mkdir(parents=True, exist_ok=True)
    (outside / "resources/NOTES/secret.txt").write_text("not for the component\n")
    (site / "archive/INSIDE/resources/NOTES").mkdir(parents=True, exist_ok=True)
    (site / "archive/INSIDE/resources/NOTES/note.txt").write_text("inside the grant\n")
    os.symlink("../outside-the-grant", site / "archive/ESCAPE")
    os.symlink(outside, site / "archive/ESCAPEABS")
    for project in ["INSIDE", "ESCAPE", "ESCAPEABS"]:
        uri = f"/archive/projects/{project}/resources/NOTES"
        value, error = attempt(lambda: lib.refresh(write_arc, [uri], mode="dry-run"))
        shown = str(error) if error else "; ".join(brief(r) for r in value)
        print(f"catalogs.refresh(dry-run, {uri}) → {shown}")
        if project == "INSIDE":
            check(value is not None and "note.txt" in value[0].added, "inside the grant: the file is found")
        else:
            kind = "a relative" if project == "ESCAPE" else "an absolute"
            seen = json.dumps(plain(value)) + str(error)
            check("secret.txt" not in seen, f"{project} ({kind} symlink out of the grant): nothing outside is seen")

    # --- limits -------------------------------------------------------------------------------------------
    try:
        lib.prearchive_list([read_pre], limits=Limits(memory_bytes=1 << 20))
        refused = None
    except WasmtimeError as e:
        refused = str(e).splitlines()[0]
    print(f"prearchive.list-sessions with 1 MiB of memory → {refused}")
    check(refused is not None, "a call beyond its memory limit is stopped by the host")
    rows = lib.prearchive_list([read_pre], limits=Limits(memory_bytes=64 << 20, timeout=30.0))
    check(len(rows) > 0, "within its limits (64 MiB, 30 s) it runs")

    # --- getting data in: importer.import, the upload's folder granted read-only at /upload ------------------
    if len(sys.argv) == 4:
        upload = sys.argv[3]
        before = Path(upload).read_bytes()
        write_pre = Grant("/prearchive", prearchive, writable=True)
        outcome = lib.import_([write_pre] + read_arc, upload, {"import-handler": "DICOM-zip", "project": "DEMO"})
        print(f"importer.import({os.path.basename(upload)}) → {outcome.uris}, {outcome.files} files")
        check(
            outcome.files > 0 and len(outcome.uris) == 1 and outcome.uris[0].startswith("/data/prearchive/projects/DEMO/"),
            "a zip of DICOM files is sorted into one prearchive session",
        )
        rows = lib.prearchive_list([read_pre], "DEMO")
        check(any(outcome.uris[0].endswith(r.url) and r.status == "READY" for r in rows), "its session is READY")
        check(Path(upload).read_bytes() == before, "the upload itself is untouched (/upload is read-only)")
        _, error = attempt(lambda: lib.import_([read_pre] + read_arc, upload, {"project": "DEMO"}))
        print(f"importer.import with /prearchive read-only → {error}")
        check(error is not None, "without a writable prearchive nothing can be imported")

    print(f"{failures} check(s) failed" if failures else "python: all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
