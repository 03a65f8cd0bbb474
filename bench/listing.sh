#!/usr/bin/env bash
# Listing throughput (issue 11, P4): the prearchive listing through `serve` with 16 connections, against
# GET /data/version in the same run (for 10 sessions in three alternating rounds: the ratio is their median),
# for 10 and 1,000 sessions, with the server's CPU per request (and the listing of one session alone, which
# splits a listing's CPU into what any listing costs and what each further session adds).
#
#   bench/listing.sh [SECONDS_PER_MEASUREMENT=10]
#
# Runs tests/listing.rs (the test command runs it for 1 s each) and prints its report.
set -euo pipefail
cd "$(dirname "$0")/.."
export XNAT_LISTING_SECS=${1:-10}
source bench/report.sh
run_report listing 'Listing throughput' 'each further session'
