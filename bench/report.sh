#!/usr/bin/env bash
# Shared by the benchmarks that run an end-to-end test in full (sourced, not run):
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
