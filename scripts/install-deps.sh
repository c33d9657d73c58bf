#!/usr/bin/env bash
# Installs the Debian 12 packages ringlb needs to build, test and benchmark. Idempotent: only
# missing packages are installed. Usage: scripts/install-deps.sh [build|test|bench]
set -euo pipefail
what=${1:-test}
# ninja-build: scripts/build.sh uses Ninja for a new build directory (see there for why).
build_pkgs=(build-essential cmake ninja-build pkg-config liburing-dev libboost-dev libboost-system-dev
            libtomlplusplus-dev prometheus-cpp-dev libssl-dev curl nlohmann-json3-dev
            libc-ares-dev)
# clang builds the fuzz targets; libFuzzer's runtime is in libclang-rt-14-dev, only a
# recommendation of clang (and recommendations are not installed here).
# The container image is built with buildah (vfs storage, chroot isolation) and run with podman
# on runc: no Docker engine here, and crun fails on this host's hybrid cgroups (scripts/podman-env.sh).
# dnsmasq-base is the real DNS server the resolver's tests run on a loopback port (no service).
# umoci and skopeo inspect and copy OCI layouts and archives; catatonit is the init of the pause
# container podman builds for every pod (`podman kube play`).
# The front-end tests run real peers: HAProxy (bench_pkgs) sending and accepting PROXY headers,
# and openssl's s_server and s_client (with curl) as TLS servers and clients for SNI routing.
test_pkgs=(libgtest-dev libgmock-dev clang-format libseccomp-dev python3 prometheus iproute2
           clang libclang-rt-14-dev buildah podman runc umoci skopeo catatonit dnsmasq-base
           openssl)
# redis-server/redis-tools and postgresql are real workloads nobody here wrote, proxied in the
# benchmark (redis-benchmark, pgbench); the harness runs its own instances, never the services.
bench_pkgs=(wrk iperf3 haproxy nginx libnginx-mod-stream linux-perf procps redis-server redis-tools
            postgresql)
# The deployment tests: node and npm run Helm, TypeScript and kubernetes-types from the npm
# registry (scripts/helm-tools.sh); systemd-analyze verifies the systemd unit; unshare and setpriv
# rebuild its sandbox. Debian's nodejs comes without npm (its own package); NodeSource's has it.
deploy_pkgs=(nodejs systemd util-linux)
command -v npm >/dev/null || deploy_pkgs+=(npm)
pkgs=("${build_pkgs[@]}")
case "$what" in
  build) ;;
  test) pkgs+=("${test_pkgs[@]}" "${deploy_pkgs[@]}" "${bench_pkgs[@]}") ;;
  bench) pkgs+=("${test_pkgs[@]}" "${deploy_pkgs[@]}" "${bench_pkgs[@]}") ;;
  *) echo "usage: $0 [build|test|bench]" >&2; exit 2 ;;
esac
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "installing: ${missing[*]}" >&2
$sudo apt-get update -qq
# Debian's nginx and haproxy packages try to start system services; the benchmark runs its own
# instances, so keep the package scripts from starting them.
export DEBIAN_FRONTEND=noninteractive
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
  $sudo chmod +x /usr/sbin/policy-rc.d
  trap '$sudo rm -f /usr/sbin/policy-rc.d' EXIT
fi
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
