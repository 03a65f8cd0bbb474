#!/usr/bin/env python3
"""Timing driver for bench/refresh.sh (run that, not this).

Catalog refresh through the xnat-archive component against native baselines on the same files, in one run
(issue 11: P1 hashing, P6 SHA-256, P2 metadata walk, P7 unchanged data). Builds the trees, checks the
component's results (entry counts, digests equal to md5sum/sha256sum, a same-size rewrite caught) before it
times anything, then times every contender RUNS times, interleaved, and prints markdown tables.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from digest import fmt, loadavg, max_rss_kib, run_once  # noqa: E402

CAT = "{http://nrg.wustl.edu/catalog}"


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True)
    p.add_argument("--root", required=True, help="an empty temporary folder")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--small-files", type=int, default=100_000)
    return p.parse_args()


def make_files(folder, count, size, per_dir, rand=True):
    """`count` files of `size` bytes in sub-folders of `per_dir` files; returns their paths."""
    paths = []
    same = os.urandom(size)
    for i in range(count):
        d = os.path.join(folder, f"d{i // per_dir:04}")
        if i % per_dir == 0:
            os.makedirs(d, exist_ok=True)
        p = os.path.join(d, f"f{i % per_dir:05}.dcm")
        with open(p, "wb") as f:
            f.write(os.urandom(size) if rand else same)
        paths.append(p)
    return paths


def link_tree(paths, src, dst):
    """Hard links of `paths` (inside src) under dst: the same bytes and inodes in another resource folder."""
    for p in paths:
        q = os.path.join(dst, os.path.relpath(p, src))
        os.makedirs(os.path.dirname(q), exist_ok=True)
        os.link(p, q)


def report_of(stdout, what):
    doc = json.loads(stdout)
    reports = doc.get("reports") or []
    if len(reports) != 1 or reports[0]["outcome"]["status"] == "failed":
        sys.exit(f"{what}: unexpected report: {stdout[:800]}")
    return reports[0]


def expect(what, **want):
    def check(stdout):
        r = report_of(stdout, what)
        got = {"added": len(r["added"]), "removed": len(r["removed"]), "modified": len(r["modified"]),
               "mismatches": len(r["mismatches"]), "trusted": r.get("trusted", 0), "status": r["outcome"]["status"],
               "file_count": r["file_count"]}
        for k, v in want.items():
            if got[k] != v:
                sys.exit(f"{what}: expected {k}={v}, got {got[k]} ({got})")
    return check


def lines_check(n, what):
    def check(stdout):
        if stdout.count("\n") != n:
            sys.exit(f"{what}: expected {n} lines of output, got {stdout.count(chr(10))}")
    return check


def catalog_digests(path):
    root = ET.parse(path).getroot()
    return {e.get("URI"): e.get("digest") for e in root.iter() if e.tag in (CAT + "entry", CAT + "dcmEntry")}


def native_digests(tool, paths, base):
    out = subprocess.run([tool] + paths, stdout=subprocess.PIPE, check=True, text=True).stdout
    return {os.path.relpath(line[line.index("  ") + 2:], base): line.split()[0] for line in out.splitlines()}


def main():
    a = parse_args()
    arch = os.path.join(a.root, "archive")
    res = os.path.join(arch, "BENCH", "resources")
    folder = lambda label: os.path.join(res, label)
    uri = lambda label: f"/archive/projects/BENCH/resources/{label}"
    catalog = lambda label: os.path.join(folder(label), f"{label}_catalog.xml")
    stamp = lambda label: os.path.join(folder(label), f".~lock-{label}_catalog.xml.stamp")

    def refresh(label, options, *extra):
        return [a.bin, "refresh", "--archive", arch, "--resource", uri(label), "--options", options, "--json", *extra]

    n_hash, hash_size, n_big, big_size, n_small = 10_000, 107_374, 1_000, 1 << 20, a.small_files
    print(f"== writing the trees under {a.root}", file=sys.stderr)
    hashed = make_files(folder("HASH"), n_hash, hash_size, 100)
    big = make_files(folder("BIG"), n_big, big_size, 100)
    small = make_files(folder("SMALL"), n_small, 1024, 1000, rand=False)
    for label in ("P7", "SHA"):
        link_tree(hashed, folder("HASH"), folder(label))
    # Files changed less than two seconds before an unchanged-data stamp is written are left out of it.
    time.sleep(2.5)
    print("== warming the page cache", file=sys.stderr)
    subprocess.run(["cat"] + hashed + big, stdout=subprocess.DEVNULL, check=True)

    # ---- correctness, untimed ----
    print("== checking results", file=sys.stderr)
    md5 = native_digests("md5sum", hashed, folder("HASH"))
    sha = native_digests("sha256sum", hashed, folder("HASH"))
    run_once({"name": "P7 first", "cmd": refresh("P7", "append,checksum", "--trust-unchanged"),
              "check": expect("P7 first", added=n_hash, trusted=0)})
    if catalog_digests(catalog("P7")) != md5:
        sys.exit("component MD5 digests differ from md5sum's")
    run_once({"name": "SHA", "cmd": refresh("SHA", "append,checksum", "--sha256"),
              "check": expect("SHA", added=n_hash)})
    if catalog_digests(catalog("SHA")) != sha:
        sys.exit("component SHA-256 digests differ from sha256sum's")
    run_once({"name": "P7 trusted", "cmd": refresh("P7", "append,checksum", "--trust-unchanged"),
              "check": expect("P7 trusted", trusted=n_hash, status="unchanged")})
    # A file rewritten with the same size (new bytes, new modification time) is hashed and caught.
    victim = os.path.join(folder("P7"), "d0000", "f00000.dcm")
    os.unlink(victim)  # a hard link: give P7 its own copy, leave HASH's bytes alone
    with open(victim, "wb") as f:
        f.write(os.urandom(hash_size))
    run_once({"name": "P7 rewritten", "cmd": refresh("P7", "append,checksum", "--trust-unchanged"),
              "check": expect("P7 rewritten", trusted=n_hash - 1, mismatches=1)})
    print("== results agree: digests = md5sum/sha256sum; a same-size rewrite is caught", file=sys.stderr)
    time.sleep(2.5)  # the rewritten file settles, so the timed first runs' stamps hold every file

    def fresh(*labels):
        def prepare():
            for label in labels:
                for p in (catalog(label), stamp(label)):
                    if os.path.exists(p):
                        os.unlink(p)
        return prepare

    hash_gib = n_hash * hash_size / (1 << 30)
    contenders = [
        # P1 / P6: hashing 10,000 files (dry runs: every run hashes everything, nothing is written)
        {"key": "md5sum", "name": f"`md5sum` over the {n_hash:,} files", "cmd": ["md5sum"] + hashed,
         "check": lines_check(n_hash, "md5sum")},
        {"key": "c-md5", "name": "refresh `append,checksum` (MD5, dry run)",
         "cmd": refresh("HASH", "append,checksum", "--dry-run"), "check": expect("c-md5", added=n_hash)},
        # P1 on one core: both pinned to the first CPU (the host then hashes on one thread)
        {"key": "md5sum-1", "name": "`md5sum`, one core (`taskset -c 0`)", "cmd": ["taskset", "-c", "0", "md5sum"] + hashed,
         "check": lines_check(n_hash, "md5sum")},
        {"key": "c-md5-1", "name": "refresh `append,checksum` (MD5, dry run), one core (`taskset -c 0`)",
         "cmd": ["taskset", "-c", "0"] + refresh("HASH", "append,checksum", "--dry-run"),
         "check": expect("c-md5-1", added=n_hash)},
        {"key": "sha256sum", "name": f"`sha256sum` over the {n_hash:,} files", "cmd": ["sha256sum"] + hashed,
         "check": lines_check(n_hash, "sha256sum")},
        {"key": "c-sha", "name": "refresh `append,checksum --sha256` (dry run)",
         "cmd": refresh("HASH", "append,checksum", "--dry-run", "--sha256"), "check": expect("c-sha", added=n_hash)},
        # P2: the metadata walk over many small files
        {"key": "find", "name": f"`find -printf '%s'` over {n_small:,} files",
         "cmd": ["find", folder("SMALL"), "-type", "f", "-name", "*.dcm", "-printf", "%s\n"], "check": lines_check(n_small, "find")},
        {"key": "c-walk", "name": "refresh `append,delete`, no catalog yet", "prepare": fresh("SMALL"),
         "cmd": refresh("SMALL", "append,delete"), "check": expect("c-walk", added=n_small)},
        {"key": "c-walk2", "name": "refresh `append,delete`, unchanged",
         "cmd": refresh("SMALL", "append,delete"), "check": expect("c-walk2", added=0, status="unchanged")},
        # P7: unchanged data, 1 GiB in 10,000 and in 1,000 files
        {"key": "p7-first", "name": f"P7 first refresh, {n_hash:,} files ({hash_gib:.2f} GiB)",
         "prepare": fresh("P7"), "cmd": refresh("P7", "append,checksum", "--trust-unchanged"),
         "check": expect("p7-first", added=n_hash, trusted=0)},
        {"key": "p7-again", "name": f"P7 unchanged re-check, {n_hash:,} files",
         "cmd": refresh("P7", "append,checksum", "--trust-unchanged"),
         "check": expect("p7-again", trusted=n_hash, status="unchanged")},
        {"key": "p7b-first", "name": f"P7 first refresh, {n_big:,} files (1 GiB)", "prepare": fresh("BIG"),
         "cmd": refresh("BIG", "append,checksum", "--trust-unchanged"),
         "check": expect("p7b-first", added=n_big, trusted=0)},
        {"key": "p7b-again", "name": f"P7 unchanged re-check, {n_big:,} files",
         "cmd": refresh("BIG", "append,checksum", "--trust-unchanged"),
         "check": expect("p7b-again", trusted=n_big, status="unchanged")},
    ]
    by_key = {c["key"]: c for c in contenders}
    # Each unchanged/re-check contender runs right after the first run of its tree, which wrote the catalog and
    # the stamp it checks against (the files are older than two seconds, so the stamp leaves none out).
    print(f"== {a.runs} timed rounds after one untimed round; load before: {loadavg()}", file=sys.stderr)
    load_before = loadavg()
    times = {c["key"]: [] for c in contenders}
    for rnd in range(a.runs + 1):
        for c in contenders:
            if c.get("prepare"):
                c["prepare"]()
            wall, cpu = run_once(c)
            if rnd > 0:
                times[c["key"]].append((wall, cpu))
        print(f"   round {rnd} done", file=sys.stderr)
    load_after = loadavg()

    rss = {}
    for key in ("c-md5", "c-walk2", "p7-again"):
        c = by_key[key]
        rss[key] = max_rss_kib(c["cmd"], c["check"])[0]

    print(f"Load average (1/5/15 min) before the timed runs {load_before}, after {load_after}. "
          f"{a.runs} timed rounds after one untimed round, interleaved; wall-clock via time.perf_counter around "
          f"each process; CPU = user+sys of the process and its threads.")
    print()
    print("| contender | median s | min s | min CPU s | runs (wall s) |")
    print("|---|---:|---:|---:|---|")
    for c in contenders:
        t = times[c["key"]]
        walls = [w for w, _ in t]
        print(f"| {c['name']} | {fmt(statistics.median(walls))} | {fmt(min(walls))} | "
              f"{fmt(min(cpu for _, cpu in t))} | {', '.join(fmt(w) for w in walls)} |")
    print()
    mn = lambda k: min(w for w, _ in times[k])
    med = lambda k: statistics.median(w for w, _ in times[k])
    two = (os.cpu_count() or 1) >= 2
    rows = [
        ("P1 MD5 refresh vs `md5sum`", "c-md5", "md5sum",
         "≤ 0.6 (two cores)" if two else "≤ 1.05 (one core)", 0.6 if two else 1.05),
        ("P1 MD5 refresh vs `md5sum`, both on one core", "c-md5-1", "md5sum-1", "≤ 1.05 (one core)", 1.05),
        ("P6 SHA-256 refresh vs `sha256sum`", "c-sha", "sha256sum", "≤ 0.5", 0.5),
        ("P2 walk, first, vs `find`", "c-walk", "find", "≤ 3", 3),
        ("P2 walk, unchanged, vs `find`", "c-walk2", "find", "≤ 2", 2),
        (f"P7 re-check vs first refresh, {n_hash:,} files", "p7-again", "p7-first", "≤ 0.05", 0.05),
        (f"P7 re-check vs first refresh, {n_big:,} files", "p7b-again", "p7b-first", "≤ 0.05", 0.05),
    ]
    print("Time ratios (component time / baseline time; lower is better):")
    print()
    print("| work | ratio (min) | ratio (median) | issue 11 target | met (min) |")
    print("|---|---:|---:|---|---|")
    for name, k, base, target, bound in rows:
        r = mn(k) / mn(base)
        print(f"| {name} | {r:.2f} | {med(k) / med(base):.2f} | {target} | {'yes' if r <= bound else 'no'} |")
    print()
    print(f"Peak RSS of the host: MD5 dry run over {n_hash:,} files {rss['c-md5'] / 1024:.0f} MiB; "
          f"unchanged walk of {n_small:,} files {rss['c-walk2'] / 1024:.0f} MiB; "
          f"P7 re-check of {n_hash:,} files {rss['p7-again'] / 1024:.0f} MiB.")


if __name__ == "__main__":
    main()
