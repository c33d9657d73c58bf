#!/usr/bin/env bash
# Configures and builds ringlb. Usage: scripts/build.sh [release|asan|tsan|fuzz] (build dir:
# build/<kind>). fuzz: only the libFuzzer targets of tests/fuzz (config_fuzz,
# proxy_protocol_fuzz, client_hello_fuzz, tls_server_fuzz), with clang, ASan and UBSan.
# tsan: only the threaded unit tests (ringlb_tsan_tests), with ThreadSanitizer.
set -euo pipefail
kind=${1:-release}
root=$(cd "$(dirname "$0")/.." && pwd)
case "$kind" in
  release) args=(-DCMAKE_BUILD_TYPE=Release) ;;
  asan) args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DRINGLB_SANITIZE=ON) ;;
  tsan) args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DRINGLB_TSAN=ON) ;;
  fuzz) args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DRINGLB_FUZZ=ON -DCMAKE_CXX_COMPILER=clang++) ;;
  *) echo "usage: $0 [release|asan|tsan|fuzz]" >&2; exit 2 ;;
esac
args+=(-DRINGLB_TESTS="${RINGLB_TESTS:-ON}")
cmake -S "$root" -B "$root/build/$kind" "${args[@]}" >/dev/null
targets=()
[ "$kind" = tsan ] && targets=(--target ringlb_tsan_tests)
cmake --build "$root/build/$kind" -j"$(nproc)" "${targets[@]}"
