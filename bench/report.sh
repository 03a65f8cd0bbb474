#!/usr/bin/env bash
# Shared by the benchmarks (sourced, not run). For those that run an end-to-end test in full:
#   run_report TEST FIRST_LINE_PATTERN LAST_LINE_PATTERN
# runs `cargo test --release --test TEST` with its output in target/TEST.log, prints the machine and commit,
# the report (the lines from FIRST to LAST), any panic and the result, and returns the test's status.
run_report() {
    local test=$1 first=$2 last=$3 log=target/$1.log status=0
    echo "commit $(git rev-parse --short HEAD); $(nproc) cores; $(date -u +%Y-%m-%dT%H:%MZ)"
    mkdir -p target
    cargo test --release --test "$test" -- --nocapture --test-threads 1 >"$log" 2>&1 || status=$?
    sed -n "/$first/,/$last/p" "$log"
    grep -A20 panicked "$log" || true
    grep '^test result' "$log"
    echo "(the whole output: $log)"
    return $status
}

# Prints the machine, toolchain and code a benchmark ran on, as markdown list items:  machine BINARY
machine() {
    local wasmtime dirty
    wasmtime=$(awk '/^name = "wasmtime"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
    dirty=$(git status --porcelain -- guest host wit Cargo.toml Cargo.lock 2>/dev/null | wc -l)
    echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), nproc $(nproc)" \
         "(SHA-NI: $(grep -qw sha_ni /proc/cpuinfo && echo yes || echo no))"
    echo "- Memory: $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo); kernel $(uname -r)"
    echo "- $(rustc --version); wasmtime $wasmtime (Cargo.lock); $(md5sum --version | head -1)"
    echo "- Code: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
         "$([[ $dirty -gt 0 ]] && echo "plus $dirty uncommitted change(s) under guest/ host/ wit/ or the manifests" || echo "(clean)");" \
         "binary sha256 $(sha256sum "$1" | cut -c1-12), $(($(stat -c %s "$1") >> 20)) MiB"
}

# Builds the release host and sets T to a new temporary folder (removed on exit) holding a private copy of the
# binary (a rebuild during the run cannot swap it), a private wasmtime cache (XDG_CACHE_HOME, filled by each
# benchmark's untimed round) and an empty data/ folder:  private_host NAME
private_host() {
    echo "== building (cargo build --release -p xnat-archive)" >&2
    cargo build --release -p xnat-archive >&2
    T=$(mktemp -d "${TMPDIR:-/tmp}/xnat-$1-bench.XXXXXX")
    trap 'rm -rf -- "$T"' EXIT
    cp target/release/xnat-archive "$T/xnat-archive"
    export XDG_CACHE_HOME=$T/xdg-cache
    mkdir -p "$XDG_CACHE_HOME" "$T/data"
}
