"""xnatpy 0.8.1, unmodified, against one tenant of `xnat-archive serve` over the generated demo site.

Driven by tests/clients.rs, which checks the trees afterwards. Connects with default options (the data
model is parsed from the server's schemas), lists the prearchive, walks a session's scans, resources and
files, validates through the generic `session.post`, archives (getting the experiment object back),
refreshes its catalogs with every option, and provokes the errors a user meets: a conflict, an unknown
session. Prints one JSON object of what it saw; any assertion failure exits non-zero.

Usage: python xnatpy_client.py SERVER USER PASSWORD
"""

import hashlib
import json
import os
import re
import sys
import tempfile
import zipfile

import xnat
from xnat.exceptions import XNATResponseError

server, user, password = sys.argv[1:4]
seen = {}

with xnat.connect(server, user=user, password=password) as session:
    seen["logged_in_user"] = session.logged_in_user

    ready = session.prearchive.sessions()
    everything = session.prearchive.sessions(allow_receiving=True)
    seen["ready"] = sorted(f"{s.project}/{s.label}" for s in ready)
    seen["receiving"] = sorted(f"{s.project}/{s.label}" for s in everything if s.status == "RECEIVING")
    assert all(s.status != "RECEIVING" for s in ready)
    demo = session.prearchive.find(project="DEMO", subject="SUBJ1")
    assert len(demo) == 1, demo
    subj1 = demo[0]
    # Every column parses the way xnatpy parses it (timestamps, dates).
    for s in ready:
        s.timestamp, s.uploaded, s.lastmod, s.scan_date

    # Scans, resources and files of the session still in the prearchive; a file's bytes match its digest.
    scans = subj1.scans
    seen["scans"] = sorted(scans.keys())
    scan = scans[seen["scans"][0]]
    dicom = scan.resources["DICOM"]
    files = dicom.files
    seen["dicom_files"] = len(files)
    assert dicom.file_count == len(files) and dicom.file_size == sum(f.size for f in files.values())
    first = files[0]
    with first.open() as fh:
        data = fh.read()
    assert data[128:132] == b"DICM", data[:140]
    assert len(data) == first.size
    digest = first.data.get("digest", "")
    assert digest == "" or hashlib.md5(data).hexdigest() == digest, (digest, hashlib.md5(data).hexdigest())

    # validate-archive has no helper in either client: the generic post, as users write it.
    rows = session.post("/data/services/validate-archive", query={"src": subj1.uri}, format="json").json()
    seen["validation"] = rows["ResultSet"]["Result"]

    # archive(): read what we need first (the row is gone once archived, and xnatpy forgets it).
    label, project = subj1.label, subj1.project
    experiment = subj1.archive()
    seen["experiment"] = {
        "class": type(experiment).__name__,
        "id": experiment.id,
        "label": experiment.label,
        "project": experiment.project,
        "subject_id": experiment.subject_id,
        "fulluri": experiment.fulluri,
    }
    assert re.fullmatch(r"XNAT_E\d{5}", experiment.id), experiment.id
    assert (experiment.label, experiment.project) == (label, project)

    # Refresh: by object (its fulluri, subject and experiment by ID) and by label path, with every option.
    session.services.refresh_catalog(experiment, checksum=True, delete=True, append=True, populate_stats=True)
    session.services.refresh_catalog(
        f"/archive/projects/DEMO/subjects/SUBJ1/experiments/{label}", checksum=True, populate_stats=True
    )

    # The archived experiment walked as users walk it: scans, resources, files and every file's bytes (the
    # driver compares them with what the prearchive held), a scan's own fields, and the zips.
    walked = {}
    for scan in experiment.scans.values():
        for resource in scan.resources.values():
            assert resource.file_count == len(resource.files), (resource.file_count, len(resource.files))
            for path, f in resource.files.items():
                with f.open() as fh:
                    walked[f"SCANS/{scan.id}/{resource.label}/{path}"] = hashlib.md5(fh.read()).hexdigest()
    seen["walked"] = walked
    first_scan = experiment.scans[sorted(experiment.scans.keys())[0]]
    seen["scan_fields"] = {"id": first_scan.id, "type": first_scan.type, "series": first_scan.series_description}
    dicom = first_scan.resources["DICOM"]
    one = next(iter(dicom.files.values()))
    with tempfile.TemporaryDirectory() as t:
        one.download(os.path.join(t, "one"), verbose=False)  # xnatpy checks the bytes against the digest
        seen["one_size"] = [os.path.getsize(os.path.join(t, "one")), int(one.size)]

    def tree_md5(root):
        out = {}
        for folder, _, names in os.walk(root):
            for n in names:
                p = os.path.join(folder, n)
                with open(p, "rb") as fh:
                    out[os.path.relpath(p, root)] = hashlib.md5(fh.read()).hexdigest()
        return out

    with tempfile.TemporaryDirectory() as t:
        experiment.download_dir(t, verbose=False)
        seen["download_dir"] = tree_md5(t)
    with tempfile.TemporaryDirectory() as t:
        first_scan.download(os.path.join(t, "scan.zip"), verbose=False)
        with zipfile.ZipFile(os.path.join(t, "scan.zip")) as z:
            assert z.testzip() is None
            seen["scan_zip"] = sorted(z.namelist())
    with tempfile.TemporaryDirectory() as t:
        where = dicom.download_dir(t, verbose=False)
        seen["resource_dir"] = sorted(tree_md5(where).values())

    # An Unassigned session: validation says it must be moved first; moved into DEMO, it is archived under
    # a new subject and label.
    anon = next(s for s in ready if s.project == "Unassigned")
    rows = session.post(
        "/data/services/validate-archive", query={"src": anon.uri, "project": "DEMO"}, format="json"
    ).json()["ResultSet"]["Result"]
    seen["unassigned_validation"] = [(r["code"], r["type"]) for r in rows]
    folder = anon.folder_name
    anon.move("DEMO", asynchronous=False)
    anon = next(s for s in session.prearchive.sessions(project="DEMO") if s.folder_name == folder)
    moved = anon.archive(subject="ANON01", experiment="ANON01_MR1", overwrite="none")
    seen["unassigned"] = {"label": moved.label, "project": moved.project, "subject_id": moved.subject_id}

    # A second session aimed at the archived experiment without overwrite: XNAT's 409, marked CONFLICT.
    subj2 = next(s for s in session.prearchive.sessions() if s.label == "SUBJ2_MR1")
    try:
        subj2.archive(subject="SUBJ1", experiment=label)
        raise AssertionError("archiving onto an existing experiment without overwrite succeeded")
    except XNATResponseError as e:
        seen["conflict"] = str(e)
    subj2.clearcache()
    seen["conflict_status"] = subj2.status

    # An unknown session: 404, and the error says so.
    try:
        session.post(
            "/data/services/validate-archive",
            query={"src": "/data/prearchive/projects/DEMO/20000101_000000000/NOPE"},
            format="json",
        )
        raise AssertionError("validating an unknown session succeeded")
    except XNATResponseError as e:
        seen["unknown"] = str(e)

print(json.dumps(seen))
