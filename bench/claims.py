#!/usr/bin/env python3
"""How archiving one session scales with the size of the archive (issue 11 P8: ID claims).

    python3 bench/claims.py --bin target/release/xnat-archive [--other OLD_BINARY] [--runs 3] [--sizes 0,1000,10000]

Writes the demo site into a temporary folder, then, for each size N, fills the project's arc001 with N more
experiment documents (copies of the demo's archived session document, each with its own ID and label) and
times archiving the same prearchive session (SUBJ2_MR1, restored before each run, untimed) into it. Every
claim of a new accession ID must make sure no document already uses it, so this shows what that costs as
the archive grows. With --other, a second binary (e.g. an older build) runs in the same rounds. Prints
markdown; removes its folder.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from digest import fmt, loadavg, run_once  # noqa: E402

SESSION = "/prearchive/projects/DEMO/20241015_084356783/SUBJ2_MR1"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True)
    p.add_argument("--other", help="a second build to time in the same rounds")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--sizes", default="0,1000,10000")
    a = p.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    bins = [("this build", a.bin)] + ([("other build", a.other)] if a.other else [])
    root = tempfile.mkdtemp(prefix="xnat-claims-bench.")
    try:
        site = os.path.join(root, "site")
        subprocess.run([a.bin, "demo", "--dir", site], stdout=subprocess.DEVNULL, check=True)
        pre, arch = os.path.join(site, "prearchive"), os.path.join(site, "archive")
        pristine = os.path.join(root, "pristine")
        shutil.copytree(pre, pristine, symlinks=True)
        arc = os.path.join(arch, "DEMO", "arc001")
        with open(os.path.join(arc, "SUBJ1_MR1.xml")) as f:
            template = f.read()
        if 'ID="XNAT_E00001"' not in template or 'label="SUBJ1_MR1"' not in template:
            sys.exit("the demo's archived document changed: update bench/claims.py")

        def restore():
            shutil.rmtree(pre)
            shutil.copytree(pristine, pre, symlinks=True)
            for leftover in ("SUBJ2_MR1", "SUBJ2_MR1.xml"):
                path = os.path.join(arc, leftover)
                if os.path.isdir(path):
                    shutil.rmtree(path)
                elif os.path.exists(path):
                    os.unlink(path)

        def check(stdout):
            doc = json.loads(stdout)
            if "SUBJ2_MR1" not in json.dumps(doc) or "error" in doc:
                sys.exit(f"archive failed: {stdout[:500]}")

        rows, have = [], 0
        print(f"Load average before: {loadavg()}. {a.runs} timed runs per build and size after one untimed run, "
              f"interleaved; wall-clock seconds of `xnat-archive archive --src {SESSION} --json`.", file=sys.stderr)
        for n in sizes:
            for i in range(have, n):
                doc = template.replace('ID="XNAT_E00001"', f'ID="BULK_E{i:06}"').replace(
                    'label="SUBJ1_MR1"', f'label="BULK{i:06}"')
                with open(os.path.join(arc, f"BULK{i:06}.xml"), "w") as f:
                    f.write(doc)
            have = max(have, n)
            times = {name: [] for name, _ in bins}
            for rnd in range(a.runs + 1):
                for name, binary in bins:
                    restore()
                    cmd = [binary, "archive", "--prearchive", pre, "--archive", arch, "--src", SESSION, "--json"]
                    wall, _ = run_once({"name": name, "cmd": cmd, "check": check})
                    if rnd:
                        times[name].append(wall)
            rows.append((n, times))
            print(f"   {n} experiments done", file=sys.stderr)
        print(f"Archiving one session into a project that already holds N more experiments ({a.runs} runs each, "
              f"min / median wall-clock s; load after {loadavg()}):")
        print()
        print("| N | " + " | ".join(f"{name} min | {name} median" for name, _ in bins) + " |")
        print("|---:|" + "---:|---:|" * len(bins))
        for n, times in rows:
            cells = " | ".join(f"{fmt(min(times[name]))} | {fmt(statistics.median(times[name]))}" for name, _ in bins)
            print(f"| {n:,} | {cells} |")
        print()
        base = rows[0]
        for name, _ in bins:
            per = [(n, (min(t[name]) - min(base[1][name])) / n * 1e6) for n, t in rows[1:] if n]
            print(f"- {name}: cost per existing experiment " + ", ".join(f"{us:.0f} µs at N = {n:,}" for n, us in per)
                  + " (min time at N minus min time at N = 0, over N)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
