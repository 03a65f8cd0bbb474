#!/usr/bin/env bash
# The guest memory a catalog refresh needs (issue 11, P5): the smallest --memory limit under which it succeeds,
# for XNAT's 8,201-entry DEBUG_OUTPUT catalog and for generated resources of SIZES files (first refresh and
# unchanged), and the bytes per entry it comes to. See BENCHMARKS.md section 7.
#
#   bench/memory.sh [SIZES]      (from the repository root; default 100000,1000000; about 10 minutes)
set -euo pipefail

SIZES=${1:-100000,1000000}
[[ $SIZES =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || { echo "SIZES must be numbers separated by commas, got '$SIZES'" >&2; exit 2; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
. bench/report.sh
private_host memory
echo "### Run $(date -u +%Y-%m-%dT%H:%MZ): bench/memory.sh $SIZES"
echo
machine "$T/xnat-archive"
echo
python3 bench/memory.py --bin "$T/xnat-archive" --root "$T/data" --sizes "$SIZES"
