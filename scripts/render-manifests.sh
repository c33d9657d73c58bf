#!/usr/bin/env bash
# Renders the Helm chart (helm/ringlb) to plain Kubernetes manifests for people who do not use
# Helm: deploy/kubernetes/standalone.yaml (the chart's default values) and sidecar.yaml (the
# default values plus helm/ringlb/ci/sidecar-values.yaml: ringlb in front of an app on
# 127.0.0.1:8081). Run it after every chart change; the chart tests fail while the files differ.
# Usage: scripts/render-manifests.sh [OUTDIR]   (default: deploy/kubernetes)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/deploy/kubernetes}
eval "$("$root/scripts/helm-tools.sh")"
mkdir -p "$out"
chart="$root/helm/ringlb"

render() {  # FILE DESCRIPTION HELM-ARGS...
  local file=$1 what=$2
  shift 2
  {
    echo "# ringlb in $what, rendered by scripts/render-manifests.sh:"
    echo "#   helm template ringlb helm/ringlb${*:+ $*}"
    echo "# Do not edit: change the chart and run the script again (a test compares them)."
    echo "# Apply with: kubectl apply -n NAMESPACE -f $(basename "$file")"
    # helm prints the chart directory in "# Source:" lines relative to the chart, so the output
    # does not depend on where the checkout lives.
    (cd "$root" && "$HELM" template ringlb helm/ringlb "$@")
  } >"$file.tmp"
  mv "$file.tmp" "$file"
}

render "$out/standalone.yaml" "standalone mode (the chart's default values)"
render "$out/sidecar.yaml" "sidecar mode (a native sidecar in front of an app)" \
  -f helm/ringlb/ci/sidecar-values.yaml
echo "rendered $out/standalone.yaml $out/sidecar.yaml"
