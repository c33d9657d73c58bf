#!/usr/bin/env bash
# Installs what is missing, builds ringlb (Release and ASan+UBSan) and runs every test.
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

echo "== benchmark harness (quick mode: checks that it runs and fills every cell; asserts no timing)"
tests/bench/run --quick --out build/bench-quick </dev/null
