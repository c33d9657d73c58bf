#!/usr/bin/env bash
# Installs what is missing, builds a Release ringlb and runs it on examples/quickstart.toml in
# front of two demo backends (ringlb-echo in HTTP mode on 127.0.0.1:9001 and :9002).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/install-deps.sh build
RINGLB_TESTS=OFF scripts/build.sh release
bin=build/release
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM
for i in 1 2; do
  "$bin/ringlb-echo" --listen "127.0.0.1:900$i" --mode http --name "backend-$i" &
  pids+=($!)
done
cat <<'TXT'

ringlb is starting on 127.0.0.1:8080 in front of backend-1 (127.0.0.1:9001) and backend-2 (:9002).
Try it from another terminal:
    curl http://127.0.0.1:8080/        # answers alternate: "hello from backend-1" / "backend-2"
    curl http://127.0.0.1:9901/metrics # Prometheus metrics (admin endpoint, loopback only)
    curl http://127.0.0.1:9901/backends
    curl -X POST http://127.0.0.1:9901/backends/demo/127.0.0.1:9002/drain   # then /enable
    kill -HUP $(pgrep -x ringlb)       # reload examples/quickstart.toml after editing it
Stop with Ctrl-C (ringlb drains: see "Graceful drain" in the README).

TXT
"$bin/ringlb" run examples/quickstart.toml &
pids+=($!)
wait "${pids[-1]}"
