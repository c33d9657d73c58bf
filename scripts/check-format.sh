#!/usr/bin/env bash
# Fails when a C++ file differs from the repository's .clang-format style.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
mapfile -t files < <(git ls-files '*.cpp' '*.hpp' 2>/dev/null || find proxy common config tests -name '*.[ch]pp')
[ ${#files[@]} -eq 0 ] && exit 0
if ! clang-format --dry-run --Werror "${files[@]}"; then
  echo "format check failed: run  clang-format -i \$(git ls-files '*.cpp' '*.hpp')" >&2
  exit 1
fi
