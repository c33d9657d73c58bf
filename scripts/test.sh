#!/usr/bin/env bash
# Installs what is missing, builds ringlb (Release and ASan+UBSan) and runs every test, then
# fuzzes the config loader (a minute), the PROXY protocol and ClientHello parsers (30 s each).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/install-deps.sh test
scripts/check-format.sh
scripts/build.sh release
scripts/build.sh asan
echo "== tests (release)"
ctest --test-dir build/release --output-on-failure -j2 --timeout 600
echo "== tests (asan+ubsan)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build/asan --output-on-failure -j2 --timeout 900

echo "== tests (tsan: the unit tests whose code runs on several threads)"
scripts/build.sh tsan
TSAN_OPTIONS=halt_on_error=1 build/tsan/ringlb_tsan_tests

echo "== fuzz (config loader, 200,000 runs)"
# On a copy of the corpus, so new inputs stay in build/; a crash saves its input in build/fuzz/.
# A fixed seed and run count make the step repeatable (about a minute here); longer fuzzing with
# other seeds is done by hand: build/fuzz/config_fuzz -max_total_time=600 CORPUS.
scripts/build.sh fuzz
rm -rf build/fuzz/corpus-config
cp -r tests/fuzz/corpus/config build/fuzz/corpus-config
build/fuzz/config_fuzz -seed=1 -runs=200000 -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
  -artifact_prefix=build/fuzz/ -print_final_stats=1 build/fuzz/corpus-config || {
  echo "fuzz: the config loader failed on the input saved in build/fuzz/ (after the fix, add" \
       "it to tests/fuzz/corpus/config)" >&2
  exit 1
}

echo "== fuzz (PROXY protocol parser, 120,000 runs)"
# Same way: fixed seed and run count (about 30 s here); -max_len lets inputs reach the largest
# v2 header taken (16 + 4096 bytes).
rm -rf build/fuzz/corpus-proxy-protocol
cp -r tests/fuzz/corpus/proxy_protocol build/fuzz/corpus-proxy-protocol
build/fuzz/proxy_protocol_fuzz -seed=1 -runs=120000 -timeout=10 -rss_limit_mb=2048 \
  -max_len=4200 -artifact_prefix=build/fuzz/ -print_final_stats=1 \
  build/fuzz/corpus-proxy-protocol || {
  echo "fuzz: the PROXY protocol parser failed on the input saved in build/fuzz/ (after the" \
       "fix, add it to tests/fuzz/corpus/proxy_protocol and a unit test)" >&2
  exit 1
}

echo "== fuzz (ClientHello parser, 12,000 runs)"
# Same style: about 30 s here (each run parses every prefix of its input up to 2 KiB); by hand:
# build/fuzz/client_hello_fuzz -max_len=4096 -max_total_time=600 CORPUS.
rm -rf build/fuzz/corpus-client-hello
cp -r tests/fuzz/corpus/client_hello build/fuzz/corpus-client-hello
build/fuzz/client_hello_fuzz -seed=1 -runs=12000 -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
  -artifact_prefix=build/fuzz/ -print_final_stats=1 build/fuzz/corpus-client-hello || {
  echo "fuzz: the ClientHello parser failed on the input saved in build/fuzz/ (after the fix," \
       "add it to tests/fuzz/corpus/client_hello and a unit test)" >&2
  exit 1
}

echo "== benchmark harness (quick mode: checks that it runs and fills every cell; asserts no timing)"
tests/bench/run --quick --out build/bench-quick </dev/null
