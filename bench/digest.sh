#!/usr/bin/env bash
# MD5 and SHA-256 inside the xnat-archive component vs native md5sum/sha256sum on the same file.
#
#   bench/digest.sh [SIZE_MIB] [RUNS]        (from the repository root; defaults 1024 MiB, 5 runs)
#
# Builds the release host, writes a temporary archive with one SIZE_MIB file of random bytes in
# BENCH/resources/DATA (plus a 16 MiB file in SMALL and an empty EMPTY resource), warms the page cache,
# checks that the component's digests equal md5sum/sha256sum, then times every contender RUNS times and
# prints markdown tables (see BENCHMARKS.md). The timed component runs are dry runs: read-only grant,
# nothing written. Set BENCH_NO_NATIVE_RUST=1 to skip the extra native-Rust contender.
set -euo pipefail

SIZE_MIB=${1:-1024}
RUNS=${2:-5}
SMALL_MIB=16
[[ $SIZE_MIB =~ ^[1-9][0-9]*$ ]] || { echo "SIZE_MIB must be a positive integer, got '$SIZE_MIB'" >&2; exit 2; }
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "RUNS must be a positive integer, got '$RUNS'" >&2; exit 2; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BIN=$ROOT/target/release/xnat-archive

echo "== building (cargo build --release -p xnat-archive)" >&2
cargo build --release -p xnat-archive >&2

NATIVE_RUST=
if [[ -z ${BENCH_NO_NATIVE_RUST:-} ]]; then
    echo "== building bench/native-digest (same md-5/sha2 crates, native x86_64)" >&2
    if cargo build --release --quiet --manifest-path bench/native-digest/Cargo.toml \
        --target-dir "$ROOT/target/bench-native" >&2; then
        NATIVE_RUST=$ROOT/target/bench-native/release/native-digest
    else
        echo "warning: bench/native-digest did not build; running without the native-Rust contender" >&2
    fi
fi

T=$(mktemp -d "${TMPDIR:-/tmp}/xnat-digest-bench.XXXXXX")
trap 'rm -rf -- "$T"' EXIT
# Run private copies, so that a rebuild by someone else during the run cannot swap the binaries mid-way.
cp "$BIN" "$T/xnat-archive"
BIN=$T/xnat-archive
if [[ -n $NATIVE_RUST ]]; then
    cp "$NATIVE_RUST" "$T/native-digest"
    NATIVE_RUST=$T/native-digest
fi
# A private wasmtime compilation cache (wasmtime keeps it under $XDG_CACHE_HOME; the host uses it when it
# enables the cache): the first, untimed run of each contender fills it, so the timed component runs measure a
# warm cache, whatever the user's own cache holds. Without the cache the host compiles on every run; the
# "cold" start-up row shows that cost either way.
export XDG_CACHE_HOME=$T/xdg-cache
mkdir -p "$XDG_CACHE_HOME"

RES=$T/archive/BENCH/resources
mkdir -p "$RES/DATA" "$RES/SMALL" "$RES/EMPTY" "$RES/CHECK_MD5" "$RES/CHECK_SHA256"
FILE=$RES/DATA/random.bin
SMALL=$RES/SMALL/random.bin

echo "== writing $SIZE_MIB MiB and $SMALL_MIB MiB of /dev/urandom bytes under $T" >&2
head -c "$((SIZE_MIB << 20))" /dev/urandom >"$FILE"
head -c "$((SMALL_MIB << 20))" /dev/urandom >"$SMALL"

echo "== warming the page cache" >&2
cat "$FILE" "$SMALL" >/dev/null

# Correctness, untimed: refresh (apply mode) two resources holding hard links to the small file, with MD5 and
# with SHA-256, and find md5sum's and sha256sum's digests in the catalogs written.
ln "$SMALL" "$RES/CHECK_MD5/random.bin"
ln "$SMALL" "$RES/CHECK_SHA256/random.bin"
"$BIN" refresh --archive "$T/archive" --resource /archive/projects/BENCH/resources/CHECK_MD5 \
    --options append,checksum --json >/dev/null
"$BIN" refresh --archive "$T/archive" --resource /archive/projects/BENCH/resources/CHECK_SHA256 \
    --options append,checksum --sha256 --json >/dev/null
md5=$(md5sum "$SMALL" | cut -d' ' -f1)
sha=$(sha256sum "$SMALL" | cut -d' ' -f1)
grep -q "digest=\"$md5\"" "$RES/CHECK_MD5/CHECK_MD5_catalog.xml" ||
    { echo "component MD5 differs from md5sum ($md5)" >&2; exit 1; }
grep -q "digest=\"$sha\"" "$RES/CHECK_SHA256/CHECK_SHA256_catalog.xml" ||
    { echo "component SHA-256 differs from sha256sum ($sha)" >&2; exit 1; }
echo "== digests agree: component MD5 = md5sum, component SHA-256 = sha256sum" >&2

# The machine and the code measured.
. bench/report.sh
echo "### Run $(date -u +%Y-%m-%dT%H:%MZ): bench/digest.sh $SIZE_MIB $RUNS"
echo
machine "$BIN"
echo
python3 bench/digest.py --bin "$BIN" --archive "$T/archive" --file "$FILE" --small-file "$SMALL" \
    --runs "$RUNS" ${NATIVE_RUST:+--native-rust "$NATIVE_RUST"}
