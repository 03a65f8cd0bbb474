#!/usr/bin/env bash
# Listing throughput (issue 11, P4): the prearchive listing through `serve` with 16 connections, against
# GET /data/version in the same run, for 10 and 1,000 sessions, with the server's CPU per request.
#
#   bench/listing.sh [SECONDS_PER_MEASUREMENT=10]
#
# Runs tests/listing.rs (the test command runs it for 1 s each) and prints its report.
set -euo pipefail
cd "$(dirname "$0")/.."
export XNAT_LISTING_SECS=${1:-10}
echo "commit $(git rev-parse --short HEAD); $(nproc) cores; $(date -u +%Y-%m-%dT%H:%MZ)"
log=target/listing.log
mkdir -p target
status=0
cargo test --release --test listing -- --nocapture --test-threads 1 >"$log" 2>&1 || status=$?
sed -n '/Listing throughput/,/trivial endpoint/p' "$log"
grep -A20 panicked "$log" || true
grep '^test result' "$log"
exit $status
