#!/usr/bin/env bash
# Installs what is missing, builds ringlb (Release and ASan+UBSan) and runs every test, then
# fuzzes the config loader (a minute), the PROXY protocol and ClientHello parsers and the TLS
# server side (30 s each).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
started=$(date +%s)
# phase WHAT: a heading with the time since the start, so a slow CI run says where it went.
phase() { echo "== $* (at $(( $(date +%s) - started )) s)"; }
phase "install missing packages"
scripts/install-deps.sh test
phase "format"
scripts/check-format.sh
phase "build (release)"
scripts/build.sh release
phase "build (asan+ubsan)"
scripts/build.sh asan
phase "tests (release)"
ctest --test-dir build/release --output-on-failure -j2 --timeout 600
phase "tests (asan+ubsan)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build/asan --output-on-failure -j2 --timeout 900

phase "build (tsan: the unit tests whose code runs on several threads)"
scripts/build.sh tsan
phase "tests (tsan)"
TSAN_OPTIONS=halt_on_error=1 build/tsan/ringlb_tsan_tests

# fuzz TARGET CORPUS RUNS MAX_LEN WHAT: runs build/fuzz/TARGET on a copy of tests/fuzz/corpus/CORPUS
# (new inputs stay in build/; a crash saves its input in build/fuzz/). A fixed seed and run count
# make each step repeatable; longer fuzzing with other seeds is done by hand, e.g.
# build/fuzz/config_fuzz -max_total_time=600 tests/fuzz/corpus/config.
fuzz() {
  local target=$1 corpus=$2 runs=$3 max_len=$4 what=$5
  phase "fuzz ($what, $runs runs)"
  rm -rf "build/fuzz/corpus-$corpus"
  cp -r "tests/fuzz/corpus/$corpus" "build/fuzz/corpus-$corpus"
  "build/fuzz/$target" -seed=1 -runs="$runs" -timeout=10 -rss_limit_mb=2048 -max_len="$max_len" \
    -artifact_prefix=build/fuzz/ -print_final_stats=1 "build/fuzz/corpus-$corpus" || {
    echo "fuzz: the $what failed on the input saved in build/fuzz/ (after the fix, add it to" \
         "tests/fuzz/corpus/$corpus and a unit test)" >&2
    exit 1
  }
}
phase "build (fuzz targets)"
scripts/build.sh fuzz
# About a minute here.
fuzz config_fuzz config 200000 8192 "config loader"
# About 30 s; -max_len reaches the largest v2 header taken (16 + 4096 bytes).
fuzz proxy_protocol_fuzz proxy_protocol 120000 4200 "PROXY protocol parser"
# About 80-130 s in CI (each run parses every prefix of its input up to 2 KiB).
fuzz client_hello_fuzz client_hello 12000 4096 "ClientHello parser"
# About 30 s (a handshake attempt per run).
fuzz tls_server_fuzz tls_server 150000 4096 "TLS server side"

phase "benchmark harness (quick mode: checks that it runs and fills every cell; asserts no timing)"
tests/bench/run --quick --out build/bench-quick </dev/null
phase "TLS benchmark (quick mode: handshakes, bulk and origination with and without a pool; fills every cell, asserts no timing)"
tests/bench/tls_bench.py --quick </dev/null
phase "done"
