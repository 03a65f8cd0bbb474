#!/usr/bin/env bash
# Coverage-guided fuzzing of the fuzz/ crate's targets with libFuzzer, on stable Rust.
#
#   bench/fuzz.sh [RUNS | SECONDSs] [TARGET...]
#
#   RUNS        executions per target (default 10000000, the issue's bar); `600s` means 600 seconds instead
#   TARGET      catalog session uri params journal dicom http (default: all, one after the other)
#
# cargo-fuzz drives the build and the run. With `--sanitizer none` it passes rustc only stable flags
# (-Cpasses=sancov-module, -Cllvm-args=-sanitizer-coverage-{inline-8bit-counters,pc-table,trace-compares},
# --cfg fuzzing, debug assertions and overflow checks on), and libfuzzer-sys builds libFuzzer with the
# machine's C++ compiler: no nightly, no RUSTC_BOOTSTRAP. cargo-fuzz itself is installed once, cached in
# target/fuzz-tools. Each target starts from its committed seeds (fuzz/seeds/<target>) and grows a corpus in
# target/fuzz-corpus/<target> (not committed); crashes land in target/fuzz-artifacts/<target>/ and are
# replayed with `cargo fuzz run --sanitizer none --features libfuzzer <target> <crash-file>`.
#
# Environment: FUZZ_NICE (default 10) and FUZZ_JOBS (cargo build jobs, default 1) keep the machine usable.
set -euo pipefail
cd "$(dirname "$0")/.."

limit=${1:-10000000}
shift || true
[[ $limit =~ ^[1-9][0-9]*s?$ ]] || { echo "the budget must be a number of runs or of seconds (600s), got '$limit'" >&2; exit 2; }
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(catalog session uri params journal dicom http)

tools=$PWD/target/fuzz-tools
if ! [ -x "$tools/bin/cargo-fuzz" ]; then
    echo "installing cargo-fuzz into $tools (once)"
    cargo install cargo-fuzz --version 0.13.2 --locked --root "$tools" -j "${FUZZ_JOBS:-1}"
fi
export PATH=$tools/bin:$PATH

case $limit in
    *s) budget=(-max_total_time="${limit%s}") ;;
    *) budget=(-runs="$limit") ;;
esac

CARGO_BUILD_JOBS=${FUZZ_JOBS:-1} cargo fuzz build --sanitizer none --features libfuzzer

logs=target/fuzz-logs
mkdir -p "$logs"
summary=$logs/summary.md
echo "| target | executions | exec/s | seconds | coverage | corpus | result |" >"$summary"
echo "|---|---:|---:|---:|---:|---:|---|" >>"$summary"
failed=0
for t in "${targets[@]}"; do
    corpus=target/fuzz-corpus/$t
    artifacts=target/fuzz-artifacts/$t
    mkdir -p "$corpus" "$artifacts"
    echo "== $t: ${budget[*]}"
    start=$(date +%s.%N)
    status=0
    nice -n "${FUZZ_NICE:-10}" cargo fuzz run --sanitizer none --features libfuzzer "$t" "$corpus" "fuzz/seeds/$t" -- \
        "${budget[@]}" -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$artifacts/" >"$logs/$t.log" 2>&1 || status=$?
    end=$(date +%s.%N)
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t.log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$logs/$t.log" | tail -1)
    cov=$({ grep -E '^#[0-9]+' "$logs/$t.log" || true; } | tail -1 | sed -n 's/.* cov: \([0-9]*\) ft: \([0-9]*\).*/\1 edges, \2 features/p')
    seconds=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", b - a }')
    units=$(find "$corpus" -type f | wc -l)
    if [ "$status" -eq 0 ]; then
        result=ok
    else
        failed=1
        result="FAILED (exit $status): $(grep -m1 -E 'panicked at|ERROR: libFuzzer|deadly signal' "$logs/$t.log" || true); \
artifacts: $(ls "$artifacts" | tr '\n' ' ')"
    fi
    echo "| $t | ${runs:-?} | ${rate:-?} | $seconds | ${cov:-?} | $units | $result |" | tee -a "$summary"
done
echo
cat "$summary"
exit $failed
