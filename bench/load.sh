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
source bench/report.sh
run_report load '^Load:' '^Archived'
