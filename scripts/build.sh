#!/usr/bin/env bash
# Configures and builds ringlb. Usage: scripts/build.sh [release|asan] (build dir: build/<kind>)
set -euo pipefail
kind=${1:-release}
root=$(cd "$(dirname "$0")/.." && pwd)
case "$kind" in
  release) args=(-DCMAKE_BUILD_TYPE=Release) ;;
  asan) args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DRINGLB_SANITIZE=ON) ;;
  *) echo "usage: $0 [release|asan]" >&2; exit 2 ;;
esac
args+=(-DRINGLB_TESTS="${RINGLB_TESTS:-ON}")
cmake -S "$root" -B "$root/build/$kind" "${args[@]}" >/dev/null
cmake --build "$root/build/$kind" -j"$(nproc)"
