"""Getting DICOM in through XNAT's import service with the unmodified clients, on DICOM files nobody here
wrote: the test files pydicom ships in its wheel (CT, MR in several transfer syntaxes, big endian, implicit
VR, deflated, a truncated file, a bare data set without a file meta group).

  xnatpy  services.import_(zip, import_handler="DICOM-zip")    one CT study with a non-DICOM file and a
                                                                truncated MR in it; then validated,
                                                                archived with PrearchiveSession.archive and
                                                                downloaded
  xnatpy  services.import_(file, import_handler="gradual-DICOM") eight secondary captures of one study, one
                                                                request each, then committed
  pyxnat  post('/data/services/import', inbody=true)            the MR set, one zip per transfer syntax, and
                                                                one zip holding the same SOP instance twice

Prints one JSON report on its last line; the Rust test compares it with the trees.
Usage: import_client.py SERVER USER PASSWORD WORKDIR
"""

import hashlib
import json
import os
import sys
import zipfile

import pydicom
import pyxnat
import xnat

server, user, password, work = sys.argv[1:5]
data = os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files")
report = {"source": {}}


def md5(path):
    with open(path, "rb") as fh:
        return hashlib.md5(fh.read()).hexdigest()


def zipped(name, members):
    """A zip of pydicom test files, each under a folder of its own (a grouping a user might make)."""
    path = os.path.join(work, name)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for i, member in enumerate(members):
            source = os.path.join(data, member)
            report["source"][member] = md5(source)
            z.write(source, f"upload/{i % 2}/{member}")
    return path


with xnat.connect(server, user=user, password=password) as session:
    # One study (CT_small) with a text file and a truncated MR: the CT is imported, the others refused.
    ct_zip = zipped("ct.zip", ["CT_small.dcm", "MR_truncated.dcm", "README.txt"])
    pre = session.services.import_(ct_zip, project="DEMO", destination="/prearchive", import_handler="DICOM-zip")
    report["ct"] = {"class": type(pre).__name__, "uri": pre.uri, "status": pre.status, "label": pre.label,
                    "subject": pre.subject, "project": pre.project}
    scans = pre.scans
    report["ct"]["scans"] = sorted(scans.keys())
    rows = session.post("/data/services/validate-archive", query={"src": pre.uri}, format="json").json()
    report["ct"]["validation"] = rows["ResultSet"]["Result"]
    experiment = pre.archive(subject="CT_SUBJ", experiment="CT_SESSION")
    report["ct"]["experiment"] = {"label": experiment.label, "project": experiment.project, "id": experiment.id}
    downloaded = {}
    for scan in experiment.scans.values():
        for resource in scan.resources.values():
            for path, f in resource.files.items():
                with f.open() as fh:
                    downloaded[f"{scan.id}/{resource.label}/{path}"] = hashlib.md5(fh.read()).hexdigest()
    report["ct"]["downloaded"] = downloaded

    # gradual-DICOM: eight secondary captures of one study, one request each, into one receiving session.
    captures = ["SC_rgb_dcmtk_+eb+cr.dcm", "SC_rgb_dcmtk_+eb+cy+n1.dcm", "SC_rgb_dcmtk_+eb+cy+n2.dcm",
                "SC_rgb_dcmtk_+eb+cy+np.dcm", "SC_rgb_dcmtk_+eb+cy+s2.dcm", "SC_rgb_dcmtk_+eb+cy+s4.dcm",
                "SC_rgb_small_odd.dcm", "SC_rgb_small_odd_jpeg.dcm"]
    uris = set()
    for name in captures:
        path = os.path.join(data, name)
        report["source"][name] = md5(path)
        got = session.services.import_(path, project="DEMO", import_handler="gradual-DICOM",
                                       content_type="application/dicom")
        uris.add(got.uri)
        status = got.status
    report["gradual"] = {"uris": sorted(uris), "status_before_commit": status}
    (uri,) = uris
    session.post(uri, query={"action": "commit"})
    report["gradual"]["status_after_commit"] = session.get_json(uri)["ResultSet"]["Result"][0]["status"]

intf = pyxnat.Interface(server=server, user=user, password=password)
report["mr"] = {}
for name in ["MR_small.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm", "MR_small_expb.dcm",
             "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm", "image_dfl.dcm",
             "ExplVR_LitEndNoMeta.dcm"]:
    path = zipped(name + ".zip", [name])
    label = "MR_" + name.split(".")[0].replace("-", "_")
    with open(path, "rb") as fh:
        r = intf.post("/data/services/import", params={"import-handler": "DICOM-zip", "inbody": "true",
                                                       "dest": "/prearchive/projects/DEMO", "session": label}, data=fh)
    report["mr"][name] = {"status": r.status_code, "body": r.text.strip(), "label": label}

# Upload and archive in one call: XNAT's dest=/archive/projects/P/subjects/S/experiments/E.
path = zipped("rtplan.zip", ["rtplan.dcm"])
with open(path, "rb") as fh:
    r = intf.post("/data/services/import", params={"inbody": "true", "import-handler": "DICOM-zip",
                                                   "dest": "/archive/projects/DEMO/subjects/RT1/experiments/RT1_PLAN"},
                  data=fh)
report["archived"] = {"status": r.status_code, "body": r.text.strip(),
                      "exists": intf.select("/project/DEMO/subject/RT1/experiment/RT1_PLAN").exists()}

# The same SOP instance twice (two transfer syntaxes): XNAT's rule, the first kept, the second refused.
path = zipped("twice.zip", ["MR_small.dcm", "MR_small_bigendian.dcm"])
with open(path, "rb") as fh:
    r = intf.post("/data/services/import", params={"inbody": "true", "format": "json", "project": "DEMO",
                                                   "session": "TWICE"}, data=fh)
report["twice"] = {"status": r.status_code, "json": r.json()}
intf.disconnect()
print(json.dumps(report))
