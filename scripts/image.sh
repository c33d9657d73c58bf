#!/usr/bin/env bash
# Builds the ringlb container image localhost/ringlb:VERSION (also tagged :latest) with buildah
# from deploy/Containerfile: FROM scratch, the Release binary (build/release/ringlb, built first
# when missing or out of date) and exactly the shared libraries it loads. No registry and no
# Docker engine are needed; storage and configuration are this checkout's (scripts/podman-env.sh).
#
#   scripts/image.sh [--echo] [--archive FILE]
#
# Prints the image reference on its last stdout line (everything else goes to stderr).
# --archive FILE also writes the image as an OCI archive (`podman load -i FILE`,
# `skopeo copy oci-archive:FILE ...`). RINGLB_IMAGE_BINARY=PATH packages another binary (the
# tests pass the one they were built with).
# --echo packages the test and demo backend ringlb-echo instead (build/release/ringlb-echo, from
# tests/tools/ringlb-echo.Containerfile) as localhost/ringlb-echo:VERSION: the app container of
# the sidecar pod test (KubePlayTest, tests/integration/container_test.cpp), the same way,
# without a config file.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
archive=""
program=ringlb
containerfile=$root/deploy/Containerfile
while [ $# -gt 0 ]; do
  case "$1" in
    --archive) [ $# -ge 2 ] || { echo "--archive needs a FILE" >&2; exit 2; }; archive=$2; shift 2 ;;
    --echo) program=ringlb-echo; containerfile=$root/tests/tools/ringlb-echo.Containerfile; shift ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: $0 [--echo] [--archive FILE]" >&2; exit 2 ;;
  esac
done
if [ -n "$archive" ]; then
  mkdir -p "$(dirname "$archive")"
  archive=$(cd "$(dirname "$archive")" && pwd)/$(basename "$archive")
fi

# One build at a time per checkout (tests may run in parallel): they share the context directory.
mkdir -p "$root/build"
exec 9>"$root/build/image.lock"
flock 9

binary=${RINGLB_IMAGE_BINARY:-}
if [ -z "$binary" ]; then
  binary=$root/build/release/$program
  if [ -f "$root/build/release/CMakeCache.txt" ]; then
    # Up to date with the sources: a no-op when nothing changed.
    cmake --build "$root/build/release" --target "$program" -j"$(nproc)" >&2
  else
    # Only what the image needs; scripts/test.sh turns the tests on again in the same directory.
    RINGLB_TESTS=${RINGLB_TESTS:-OFF} "$root/scripts/build.sh" release >&2
  fi
fi
[ -x "$binary" ] || { echo "image: no $program binary at $binary" >&2; exit 1; }

if [ "$program" = ringlb ]; then
  # The version the binary reports ("ringlb 0.1.0" on its first line).
  version=$("$binary" version | awk 'NR == 1 { print $2 }')
  [ -n "$version" ] || { echo "image: $binary version printed no version" >&2; exit 1; }
else
  # ringlb-echo has no version command: the project's.
  version=$(sed -n 's/^project(ringlb VERSION \([0-9.]*\).*/\1/p' "$root/CMakeLists.txt")
fi
name=localhost/$program
ref=$name:$version

# shellcheck source=scripts/podman-env.sh
. "$root/scripts/podman-env.sh"

# The build context: a root filesystem holding only what the program needs.
context=$root/build/image
[ "$program" = ringlb ] || context=$root/build/image-$program
rm -rf "$context"
rootfs=$context/rootfs
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc"
install -m 0755 "$binary" "$rootfs/usr/local/bin/$program"
strip --strip-unneeded "$rootfs/usr/local/bin/$program"
# Every library the dynamic loader would map, at the path it would find it, and the loader itself
# (the line without "=>"). linux-vdso has no file: the kernel provides it.
libs=$(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
for lib in $libs; do
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
done
if [ "$program" = ringlb ]; then
  install -m 0644 -D "$root/deploy/ringlb.toml" "$rootfs/etc/ringlb/ringlb.toml"
fi
printf 'root:x:0:0:root:/root:/sbin/nologin\nringlb:x:65532:65532:ringlb:/nonexistent:/sbin/nologin\n' \
  >"$rootfs/etc/passwd"
printf 'root:x:0:\nringlb:x:65532:\n' >"$rootfs/etc/group"
cp "$containerfile" "$context/Containerfile"

previous=$(podman image inspect --format '{{.Id}}' "$ref" 2>/dev/null || true)
# A fixed creation time (the last commit's) and fixed file times, so the same inputs give the
# same image ID.
stamp=$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 0)
find "$rootfs" -exec touch -h -d "@$stamp" {} +
buildah build --quiet --timestamp "$stamp" --build-arg VERSION="$version" \
  -f "$context/Containerfile" -t "$ref" -t "$name:latest" "$context" >&2
current=$(podman image inspect --format '{{.Id}}' "$ref")
# The image the tags moved away from, unless a container still uses it.
if [ -n "$previous" ] && [ "$previous" != "$current" ]; then
  podman rmi "$previous" >/dev/null 2>&1 || true
fi
size=$(podman image inspect --format '{{.Size}}' "$ref")
echo "image: $ref ($current, $((size / 1024)) KiB)" >&2

if [ -n "$archive" ]; then
  rm -f "$archive"
  buildah push --quiet --signature-policy "$RINGLB_SIGNATURE_POLICY" "$ref" \
    "oci-archive:$archive:$ref" >&2
  echo "image: OCI archive $archive ($(($(stat -c %s "$archive") / 1024)) KiB)" >&2
fi
echo "$ref"
