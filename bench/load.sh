#!/usr/bin/env bash
# The load test in full (issue 10): two tenants, 64 good clients, 60 s without and 60 s with an attacker
# (slow connections, password guessing, oversized bodies), loopback only.
#
#   bench/load.sh [CLIENTS] [SECONDS_PER_PHASE] [SESSIONS_PER_TENANT]
#
# Runs tests/load.rs (the test command runs the same code in a short form) and prints its report, a
# markdown block for BENCHMARKS.md, on stdout; it fails if any good request failed or any file was lost.
set -euo pipefail
cd "$(dirname "$0")/.."
export XNAT_LOAD_CLIENTS=${1:-64} XNAT_LOAD_SECS=${2:-60} XNAT_LOAD_SESSIONS=${3:-1000}
echo "commit $(git rev-parse --short HEAD); $(nproc) cores; $(date -u +%Y-%m-%dT%H:%MZ)"
log=target/load.log
mkdir -p target
status=0
cargo test --release --test load -- --nocapture --test-threads 1 >"$log" 2>&1 || status=$?
sed -n '/^Load:/,/^Archived/p' "$log"
grep -A20 panicked "$log" || true
grep '^test result' "$log"
echo "(the whole output: $log)"
exit $status
