#!/usr/bin/env bash
# Scaling (issue 11, P8): refresh, archive and the prearchive listing at 1,000, 10,000 and 100,000 files (or
# sessions), each through the real CLI and component, with the time per unit (BENCHMARKS.md section 6).
#
#   bench/scaling.sh [SIZES=1000,10000,100000]
#
# Runs tests/scaling.rs (the test command runs it at 100 and 1,000) and prints its report. About 5 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
export XNAT_SCALING_SIZES=${1:-1000,10000,100000}
source bench/report.sh
run_report scaling 'Scaling:' 'Sizes run:'
