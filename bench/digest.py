#!/usr/bin/env python3
"""Timing driver for bench/digest.sh (run that, not this).

Times MD5 and SHA-256 of one file inside the xnat-archive component (a dry-run catalog refresh that adds
the file with a digest) against native md5sum/sha256sum on the same, page-cached file, in one run, and
prints markdown tables: times, throughput, component-vs-native ratios, and the host's peak RSS.
"""

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

MIB = 1 << 20


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True, help="target/release/xnat-archive")
    p.add_argument("--archive", required=True, help="the temp archive root")
    p.add_argument("--file", required=True, help="the big file (inside resources/DATA)")
    p.add_argument("--small-file", required=True, help="the 16 MiB file (inside resources/SMALL)")
    p.add_argument("--native-rust", help="bench/native-digest binary (optional extra contender)")
    p.add_argument("--runs", type=int, required=True)
    return p.parse_args()


def refresh_cmd(args, label, sha256=False, dry_run=True):
    cmd = [args.bin, "refresh", "--archive", args.archive,
           "--resource", f"/archive/projects/BENCH/resources/{label}",
           "--options", "append,checksum", "--json"]
    if dry_run:
        cmd.append("--dry-run")
    if sha256:
        cmd.append("--sha256")
    return cmd


def check_refresh(stdout, expect_added, what):
    """The refresh must succeed on exactly one resource and add exactly `expect_added` files."""
    doc = json.loads(stdout)
    reports = doc.get("reports")
    if not reports or len(reports) != 1:
        sys.exit(f"{what}: unexpected JSON: {stdout[:500]}")
    r = reports[0]
    status = r["outcome"]["status"]
    if status == "failed" or len(r["added"]) != expect_added:
        sys.exit(f"{what}: expected {expect_added} added file(s), got {r['added']} (outcome {status})")


def children_cpu():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_once(contender):
    """Runs a contender once; returns (wall-clock seconds, CPU seconds user+sys of the process and its threads).
    Output is captured (and checked), never printed."""
    env = None
    if contender.get("cold_cache_in"):
        # A new, empty wasmtime cache folder (wasmtime puts it under $XDG_CACHE_HOME): the component is compiled.
        fresh = tempfile.mkdtemp(dir=contender["cold_cache_in"])
        env = dict(os.environ, XDG_CACHE_HOME=fresh)
    c0 = children_cpu()
    t0 = time.perf_counter()
    p = subprocess.run(contender["cmd"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    t1 = time.perf_counter()
    c1 = children_cpu()
    if env is not None:
        shutil.rmtree(env["XDG_CACHE_HOME"])
    if p.returncode != 0:
        sys.exit(f"{contender['name']}: exit {p.returncode}\n{p.stderr}")
    contender["check"](p.stdout)
    return t1 - t0, c1 - c0


def max_rss_kib(cmd, check, env=None):
    """Peak RSS (KiB) of `cmd`, from /usr/bin/time -v, else from getrusage in a fresh interpreter."""
    if os.access("/usr/bin/time", os.X_OK):
        p = subprocess.run(["/usr/bin/time", "-v"] + cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=env)
        if p.returncode != 0:
            sys.exit(f"{cmd}: exit {p.returncode}\n{p.stderr}")
        check(p.stdout)
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
        if not m:
            sys.exit(f"/usr/bin/time -v printed no maximum RSS:\n{p.stderr}")
        return int(m.group(1)), "/usr/bin/time -v"
    # Fallback: a fresh python whose only child is cmd, so RUSAGE_CHILDREN's ru_maxrss is cmd's (KiB on Linux).
    code = ("import resource,subprocess,sys;"
            "p=subprocess.run(sys.argv[1:],stdout=subprocess.PIPE);"
            "sys.stderr.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss));"
            "sys.stdout.write(p.stdout.decode());sys.exit(p.returncode)")
    p = subprocess.run([sys.executable, "-c", code] + cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       env=env)
    if p.returncode != 0:
        sys.exit(f"{cmd}: exit {p.returncode}")
    check(p.stdout)
    return int(p.stderr.strip()), "getrusage(RUSAGE_CHILDREN).ru_maxrss"


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def fmt(x, nd=3):
    return "—" if x is None else f"{x:.{nd}f}"


def main():
    args = parse_args()
    size = os.path.getsize(args.file)
    size_mib = size / MIB
    small_mib = os.path.getsize(args.small_file) / MIB

    def native_check(expect_path):
        def check(out):
            if not re.fullmatch(r"[0-9a-f]{32,64}  " + re.escape(expect_path) + r"\n", out):
                sys.exit(f"unexpected digest output: {out!r}")
        return check

    one = lambda what: (lambda out: check_refresh(out, 1, what))
    none = lambda what: (lambda out: check_refresh(out, 0, what))

    contenders = [
        {"key": "md5sum", "name": "`md5sum` (coreutils)", "cmd": ["md5sum", args.file],
         "check": native_check(args.file), "mib": size_mib},
        {"key": "sha256sum", "name": "`sha256sum` (coreutils)", "cmd": ["sha256sum", args.file],
         "check": native_check(args.file), "mib": size_mib},
    ]
    if args.native_rust:
        contenders += [
            {"key": "rust-md5", "name": "native Rust `md-5` (extra)", "cmd": [args.native_rust, "md5", args.file],
             "check": native_check(args.file), "mib": size_mib},
            {"key": "rust-sha256", "name": "native Rust `sha2` (extra)",
             "cmd": [args.native_rust, "sha256", args.file], "check": native_check(args.file), "mib": size_mib},
        ]
    contenders += [
        {"key": "comp-md5", "name": "component MD5", "cmd": refresh_cmd(args, "DATA"),
         "check": one("component MD5"), "mib": size_mib, "component": True},
        {"key": "comp-sha256", "name": "component SHA-256", "cmd": refresh_cmd(args, "DATA", sha256=True),
         "check": one("component SHA-256"), "mib": size_mib, "component": True},
        {"key": "startup", "name": "component start-up (empty resource)", "cmd": refresh_cmd(args, "EMPTY"),
         "check": none("component start-up"), "mib": None},
        {"key": "cold", "name": "component start-up, cold compilation cache (reference)",
         "cmd": refresh_cmd(args, "EMPTY"), "check": none("component cold start-up"), "mib": None,
         "cold_cache_in": os.path.dirname(os.path.abspath(args.archive))},
    ]

    # One untimed run of each (also proves every command works before anything is timed), then RUNS rounds,
    # interleaved so that any drift in machine load spreads over all contenders alike.
    load_before = loadavg()
    for c in contenders:
        run_once(c)
        c["times"], c["cpus"] = [], []
    for r in range(args.runs):
        for c in contenders:
            wall, cpu = run_once(c)
            c["times"].append(wall)
            c["cpus"].append(cpu)
        print(f"  round {r + 1}/{args.runs} done", file=sys.stderr)

    load_after = loadavg()
    by = {c["key"]: c for c in contenders}
    for c in contenders:
        c["median"] = statistics.median(c["times"])
        c["min"] = min(c["times"])
        c["cpu"] = min(c["cpus"])
    st_med, st_min, st_cpu = by["startup"]["median"], by["startup"]["min"], by["startup"]["cpu"]

    print(f"File: {size_mib:.0f} MiB of /dev/urandom bytes, page-cached; {args.runs} timed runs per contender "
          f"(after one untimed run), interleaved; wall-clock via time.perf_counter around each process. "
          f"Load average (1/5/15 min) before the timed runs {load_before}, after {load_after}: other work "
          f"on the machine shows up as spread between min and median.")
    print()
    print("| contender | median s | min s | MiB/s (min) | MiB/s (min − start-up) | min CPU s |")
    print("|---|---:|---:|---:|---:|---:|")
    for c in contenders:
        if c["mib"] is None:
            print(f"| {c['name']} | {fmt(c['median'])} | {fmt(c['min'])} | — | — | {fmt(c['cpu'])} |")
            continue
        raw = c["mib"] / c["min"]
        net = c["mib"] / (c["min"] - st_min) if c.get("component") and c["min"] > st_min else None
        print(f"| {c['name']} | {fmt(c['median'])} | {fmt(c['min'])} | {raw:.0f} | "
              f"{'—' if net is None else f'{net:.0f}'} | {fmt(c['cpu'])} |")
    print()
    print("Speed vs native = native time / component time (1.00 = as fast as native, 0.50 = twice as slow). "
          "'net' subtracts the start-up row (same statistic) from the component time. "
          "CPU = user+sys seconds of the process (all threads), min over the runs: less disturbed by other "
          "load on the machine than wall-clock.")
    print()
    print("| digest | baseline | baseline min s | component min s | speed vs native (min) | (min, net) "
          "| (median) | (median, net) | (CPU, net) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    pairs = [("MD5", "md5sum", "comp-md5"), ("SHA-256", "sha256sum", "comp-sha256")]
    if args.native_rust:
        pairs += [("MD5", "rust-md5", "comp-md5"), ("SHA-256", "rust-sha256", "comp-sha256")]
    for alg, nk, ck in pairs:
        n, c = by[nk], by[ck]
        ratio = lambda num, den: f"{num / den:.2f}" if den > 0 else "—"
        print(f"| {alg} | {n['name']} | {fmt(n['min'])} | {fmt(c['min'])} | {ratio(n['min'], c['min'])} | "
              f"{ratio(n['min'], c['min'] - st_min)} | {ratio(n['median'], c['median'])} | "
              f"{ratio(n['median'], c['median'] - st_med)} | {ratio(n['cpu'], c['cpu'] - st_cpu)} |")
    print()

    # Memory: peak RSS of the host process (wasmtime + the component's linear memory), big file vs small file.
    rows = []
    for label, what, mib, expect in [("DATA", "component MD5", size_mib, 1),
                                     ("SMALL", "component MD5", small_mib, 1),
                                     ("EMPTY", "component start-up", 0, 0)]:
        kib, tool = max_rss_kib(refresh_cmd(args, label), lambda out: check_refresh(out, expect, what))
        rows.append((f"{what}, {mib:.0f} MiB file" if expect else f"{what} (empty resource)", kib))
    fresh = tempfile.mkdtemp(dir=by["cold"]["cold_cache_in"])
    kib, _ = max_rss_kib(refresh_cmd(args, "EMPTY"), lambda out: check_refresh(out, 0, "cold start-up"),
                         env=dict(os.environ, XDG_CACHE_HOME=fresh))
    shutil.rmtree(fresh)
    rows.append(("component start-up, cold compilation cache (empty resource)", kib))
    kib, _ = max_rss_kib(["md5sum", args.file], native_check(args.file))
    rows.append((f"`md5sum`, {size_mib:.0f} MiB file (reference)", kib))
    print(f"Peak RSS of the whole process ({tool}):")
    print()
    print("| run | max RSS MiB |")
    print("|---|---:|")
    for what, kib in rows:
        print(f"| {what} | {kib / 1024:.1f} |")
    print()

    print("Raw wall-clock seconds per run:")
    print()
    for c in contenders:
        print(f"- {c['name']}: " + ", ".join(f"{t:.3f}" for t in c["times"])
              + " (CPU " + ", ".join(f"{t:.3f}" for t in c["cpus"]) + ")")


if __name__ == "__main__":
    main()
