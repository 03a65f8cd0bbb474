"""pyxnat 1.6.4, unmodified, against one tenant of `xnat-archive serve` over the generated demo site.

Driven by tests/clients.rs, which checks the trees afterwards. pyxnat sends HTTP Basic on every request and
reads every listing as CSV. It has no archive, validate or refresh helpers, so those go through its generic
`Interface.post`, with parameters in the query string and in a form body as users write them. Prints one
JSON object of what it saw; any assertion failure exits non-zero.

Usage: python pyxnat_client.py SERVER USER PASSWORD
"""

import hashlib
import json
import os
import sys
import tempfile

from pyxnat import Interface

server, user, password = sys.argv[1:4]
seen = {}

intf = Interface(server=server, user=user, password=password)
prearchive = intf.manage.prearchive

rows = prearchive.get()
seen["sessions"] = sorted("/".join(r) for r in rows)
trial = next(r for r in rows if r[2] == "T001_PET1")
seen["status"] = prearchive.status(trial)
uri = prearchive.get_uri(trial)
seen["uri"] = uri
seen["scans"] = sorted(prearchive.get_scans(trial))
scan = seen["scans"][0]
# pyxnat's JsonTable.get answers a single value as a string, several as a list.
resources = prearchive.get_resources(trial, scan)
seen["resources"] = [resources] if isinstance(resources, str) else resources
files = prearchive.get_files(trial, scan, seen["resources"][0])
seen["files"] = [files] if isinstance(files, str) else files

# validate-archive, as pyxnat users call it: parameters in the query string.
r = intf.post("/data/services/validate-archive", params={"src": uri, "format": "json"})
assert r.status_code == 200, (r.status_code, r.text)
seen["validation"] = r.json()["ResultSet"]["Result"]

# archive with the parameters in a form body (XNAT reads body parameters first).
r = intf.post("/data/services/archive", data={"src": uri, "overwrite": "append"})
assert r.status_code == 200, (r.status_code, r.text)
assert r.headers["content-type"].startswith("text/uri-list"), r.headers
archived = r.text.strip()
seen["archived"] = archived

# refresh, options comma-joined as curl and most scripts send them.
resource = archived.removeprefix("/data")
r = intf.post("/data/services/refresh/catalog", params={"resource": resource, "options": "checksum,delete"})
assert r.status_code == 200, (r.status_code, r.text)
seen["refresh_body"] = r.text

# pyxnat's own check that the archive landed (the subject's experiment listing, by label or ID).
project = intf.select.project("TRIAL")
seen["exists"] = [
    project.subject("T001").experiment("T001_PET1").exists(),
    project.subject("T001").experiment("NOT_ARCHIVED").exists(),
    project.subject("T001").exists(),
]
seen["experiment_id"] = project.subject("T001").experiment("T001_PET1").id()

# The archived experiment walked with pyxnat's select: every file fetched (the driver compares the bytes with
# what the prearchive held), and a resource fetched as a zip and extracted.
exp = project.subject("T001").experiment("T001_PET1")
walked = {}
with tempfile.TemporaryDirectory() as t:
    for sid in exp.scans().get():
        scan = exp.scan(sid)
        for rid in scan.resources().get():
            resource = scan.resource(rid)  # pyxnat lists resources by their IDs; the label is an attribute
            label = resource.label()
            for name in resource.files().get():
                dest = resource.file(name).get(os.path.join(t, f"{sid}-{rid}-{name}"))
                with open(dest, "rb") as fh:
                    walked[f"SCANS/{sid}/{label}/{name}"] = hashlib.md5(fh.read()).hexdigest()
    seen["walked"] = walked
    first = sorted(exp.scans().get())[0]
    seen["scan_type"] = exp.scan(first).attrs.get("type")
    os.makedirs(os.path.join(t, "zip"))
    exp.scan(first).resource("DICOM").get(os.path.join(t, "zip"), extract=True)
    extracted = {}
    for folder, _, names in os.walk(os.path.join(t, "zip")):
        for n in names:
            with open(os.path.join(folder, n), "rb") as fh:
                extracted[n] = hashlib.md5(fh.read()).hexdigest()
    seen["resource_zip"] = extracted

# A refresh of something that does not exist: a clear 404, not a silent 200.
r = intf.post("/data/services/refresh/catalog", params={"resource": "/archive/projects/DEMO/subjects/NOBODY"})
seen["refresh_unknown"] = [r.status_code, r.text]

# reset and delete, pyxnat's own prearchive helpers.
ct = next(r for r in prearchive.get() if r[2] == "SUBJ3_CT1")
prearchive.reset(ct)
seen["after_reset"] = prearchive.status(ct)
prearchive.delete(prearchive.get_uri(ct))
seen["after_delete"] = sorted("/".join(r) for r in prearchive.get())

seen["version"] = intf.version().decode() if isinstance(intf.version(), bytes) else intf.version()
intf.disconnect()
print(json.dumps(seen))
