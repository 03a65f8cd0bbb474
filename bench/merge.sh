#!/usr/bin/env bash
# The archive's merge (issue 11, P3): archiving FILES files into an experiment's existing scan folder against a
# rename(2) loop over as many, in ROUNDS interleaved rounds on fresh copies of one site; min and median of each.
# Then an archive into an empty place and a merge of 1,000 files of 1 KiB and of 1 MiB (7 interleaved rounds):
# their times by file size.
#
#   bench/merge.sh [FILES=10000] [ROUNDS=15]
#
# Runs tests/merge.rs (the test command runs it with 200 files in 3 rounds, and 50 files of 1 and 64 KiB) and
# prints its reports. About 6 minutes (the 1 MiB files: 2 GB written once).
set -euo pipefail
cd "$(dirname "$0")/.."
export XNAT_MERGE_FILES=${1:-10000} XNAT_MERGE_ROUNDS=${2:-15}
export XNAT_SIZE_FILES=1000 XNAT_SIZE_BYTES=1024,1048576 XNAT_SIZE_ROUNDS=7
source bench/report.sh
run_report merge '^Merge' 'Each round'
