#!/usr/bin/env python3
"""Driver for bench/memory.sh (run that, not this).

Issue 11, P5: the guest memory a catalog refresh needs, as the smallest `--memory` limit (in MiB) under which
`xnat-archive refresh` succeeds, found by bisection. For each size: the first refresh (no catalog: every
file is added, the catalog of N entries written) and an unchanged one (the N-entry catalog read, every file
listed and compared, nothing written), both with XNAT's default options (append, checksum, delete,
populateStats); plus the real 8,201-entry DEBUG_OUTPUT catalog from XNAT (tests/fixtures), first refresh
(every entry gains its SIZE) and unchanged. Each successful run's report is checked (entry counts, outcome).
Bytes per entry = (limit for N entries - limit for an empty resource) / N.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys

CATALOG_FIXTURE = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "DEBUG_OUTPUT_catalog.xml")


def args():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--sizes", default="100000,1000000")
    return p.parse_args()


def make_files(folder, count, per_dir=1000):
    for i in range(count):
        d = os.path.join(folder, f"d{i // per_dir:04}")
        if i % per_dir == 0:
            os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{i % per_dir:04}.dcm"), "wb") as f:
            f.write(b"%d" % i)


def fixture_resource(folder):
    """The DEBUG_OUTPUT catalog with every file it lists, of the size it says."""
    os.makedirs(folder, exist_ok=True)
    text = open(CATALOG_FIXTURE, encoding="utf-8").read()
    pattern = r'<cat:entry [^>]*URI="([^"]+)"[^>]*>\s*<cat:metaFields>\s*<cat:metaField name="size_in_bytes">(\d+)<'
    n = 0
    for m in re.finditer(pattern, text):
        p = os.path.join(folder, m.group(1))
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(b"x" * int(m.group(2)))
        n += 1
    return n


def main():
    a = args()
    arch = os.path.join(a.root, "archive")
    res = lambda label: os.path.join(arch, "BENCH", "resources", label)
    uri = lambda label: f"/archive/projects/BENCH/resources/{label}"
    catalog = lambda label: os.path.join(res(label), f"{label}_catalog.xml")

    def run(label, mib):
        cmd = [a.bin, "refresh", "--archive", arch, "--resource", uri(label), "--memory", str(mib), "--json"]
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if p.returncode == 9:
            return None
        if p.returncode != 0:
            sys.exit(f"{label} --memory {mib}: exit {p.returncode}: {p.stderr[-600:]}")
        return json.loads(p.stdout)["reports"][0]

    def smallest(label, hi, reset, check):
        """The smallest limit in MiB under which the refresh succeeds (`reset` before each try)."""
        lo = 1
        reset()
        r = run(label, hi)
        if r is None:
            sys.exit(f"{label}: does not fit in {hi} MiB")
        check(r)
        while hi - lo > max(1, hi // 64):
            mid = (lo + hi) // 2
            reset()
            if run(label, mid) is None:
                lo = mid
            else:
                hi = mid
        return hi

    def expect(n, status, added):
        def check(r):
            if r["file_count"] != n or len(r["added"]) != added or r["outcome"]["status"] != status:
                sys.exit(f"unexpected report: file_count {r['file_count']}, added {len(r['added'])}, {r['outcome']}")
        return check

    rows = []
    os.makedirs(res("EMPTY"), exist_ok=True)
    base = smallest("EMPTY", 64, lambda: None, lambda r: None)
    rows.append(("empty resource (no files)", 0, base, base))

    n = fixture_resource(res("DEBUG"))
    original = open(CATALOG_FIXTURE, "rb").read()
    def restore():
        with open(catalog("DEBUG"), "wb") as f:
            f.write(original)
    first = smallest("DEBUG", 256, restore, expect(n, "written", 0))
    run("DEBUG", 256)
    unchanged = smallest("DEBUG", 256, lambda: None, expect(n, "unchanged", 0))
    rows.append((f"XNAT's DEBUG_OUTPUT catalog ({n:,} entries, 3.0 MB)", n, first, unchanged))

    for size in [int(s) for s in a.sizes.split(",")]:
        label = f"N{size}"
        print(f"== {size:,} files", file=sys.stderr)
        make_files(res(label), size)
        def drop():
            if os.path.exists(catalog(label)):
                os.remove(catalog(label))
        first = smallest(label, 2048, drop, expect(size, "written", size))
        run(label, 2048)
        cat_mb = os.path.getsize(catalog(label)) / 1e6
        unchanged = smallest(label, 2048, lambda: None, expect(size, "unchanged", 0))
        rows.append((f"{size:,} files of a few bytes ({cat_mb:.0f} MB catalog)", size, first, unchanged))
        shutil.rmtree(res(label))

    print("| resource | entries | first refresh, MiB | bytes / entry | unchanged, MiB | bytes / entry |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, n, first, unchanged in rows:
        per = lambda m: f"{(m - base) * 2**20 / n:,.0f}" if n else "—"
        print(f"| {name} | {n:,} | {first} | {per(first)} | {unchanged} | {per(unchanged)} |")


if __name__ == "__main__":
    main()
