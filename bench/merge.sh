#!/usr/bin/env bash
# The archive's merge (issue 11, P3): archiving FILES files into an experiment's existing scan folder against a
# rename(2) loop over as many, in ROUNDS interleaved rounds on fresh copies of one site; min and median of each.
#
#   bench/merge.sh [FILES=10000] [ROUNDS=15]
#
# Runs tests/merge.rs (the test command runs it with 200 files in 3 rounds) and prints its report. About 2 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
export XNAT_MERGE_FILES=${1:-10000} XNAT_MERGE_ROUNDS=${2:-15}
source bench/report.sh
run_report merge '^Merge:' 'Each round'
