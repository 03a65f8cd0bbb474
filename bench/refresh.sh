#!/usr/bin/env bash
# Catalog refresh through the xnat-archive component against native baselines (issue 11: P1 hashing, P6
# SHA-256, P2 metadata walk, P7 unchanged data), ratios from one run.
#
#   bench/refresh.sh [RUNS] [SMALL_FILES]     (from the repository root; defaults 3 runs, 100000 small files)
#
# Builds the release host, writes in a temporary folder (removed at the end) 10,000 files of 105 KiB (1 GiB),
# 1,000 files of 1 MiB and SMALL_FILES files of 1 KiB, checks the component's results (entry counts, digests
# equal to md5sum/sha256sum, a same-size rewrite caught by the unchanged-data stamp), then times every
# contender RUNS times, interleaved, and prints markdown (see BENCHMARKS.md section 4). About 5 minutes.
set -euo pipefail

RUNS=${1:-3}
SMALL=${2:-100000}
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "RUNS must be a positive integer, got '$RUNS'" >&2; exit 2; }
[[ $SMALL =~ ^[1-9][0-9]*$ ]] || { echo "SMALL_FILES must be a positive integer, got '$SMALL'" >&2; exit 2; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
. bench/report.sh
private_host refresh
echo "### Run $(date -u +%Y-%m-%dT%H:%MZ): bench/refresh.sh $RUNS $SMALL"
echo
machine "$T/xnat-archive"
echo
python3 bench/refresh.py --bin "$T/xnat-archive" --root "$T/data" --runs "$RUNS" --small-files "$SMALL"
